//! The `Range` request header, single range only (`bytes=a-b`, `bytes=a-`, `bytes=-n`).

/// What a `Range` header asks of an object of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole object with `200` (absent header, another unit,
    /// several ranges or a malformed value; RFC 9110 lets a server ignore those).
    Full,
    /// Send bytes `start..end` (end exclusive) with `206`.
    Partial {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The range lies outside the object: `416`.
    Unsatisfiable,
}

/// Interprets `header` for an object of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (first, last) {
        ("", n) if digits(n) => match n.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            Ok(_) if size == 0 => RangeRequest::Unsatisfiable,
            Ok(n) => RangeRequest::Partial { start: size.saturating_sub(n), end: size },
            Err(_) => RangeRequest::Partial { start: 0, end: size }, // suffix longer than u64: all
        },
        (a, b) if digits(a) && (b.is_empty() || digits(b)) => {
            let Ok(start) = a.parse::<u64>() else { return RangeRequest::Unsatisfiable };
            if start >= size {
                return RangeRequest::Unsatisfiable;
            }
            let end = if b.is_empty() {
                size
            } else {
                match b.parse::<u64>() {
                    Ok(last) if last < start => return RangeRequest::Full, // invalid: ignored
                    Ok(last) => last.saturating_add(1).min(size),
                    Err(_) => size,
                }
            };
            RangeRequest::Partial { start, end }
        }
        _ => RangeRequest::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    fn check(header: Option<&str>, size: u64, expected: RangeRequest) {
        assert_eq!(parse(header, size), expected, "{header:?} on {size}");
    }

    #[test]
    fn ranges() {
        check(None, 10, Full);
        check(Some("bytes=0-0"), 10, Partial { start: 0, end: 1 });
        check(Some("bytes=2-5"), 10, Partial { start: 2, end: 6 });
        check(Some("bytes=2-"), 10, Partial { start: 2, end: 10 });
        check(Some("bytes=5-100"), 10, Partial { start: 5, end: 10 });
        check(Some("bytes=-3"), 10, Partial { start: 7, end: 10 });
        check(Some("bytes=-30"), 10, Partial { start: 0, end: 10 });
        check(Some("bytes=10-"), 10, Unsatisfiable);
        check(Some("bytes=10-20"), 10, Unsatisfiable);
        check(Some("bytes=-0"), 10, Unsatisfiable);
        check(Some("bytes=0-"), 0, Unsatisfiable);
        check(Some("bytes=-5"), 0, Unsatisfiable);
        check(Some("bytes=99999999999999999999999-"), 10, Unsatisfiable);
        check(Some("bytes=0-99999999999999999999999"), 10, Partial { start: 0, end: 10 });
        check(Some("bytes=5-2"), 10, Full);
        check(Some("bytes=0-1,3-4"), 10, Full);
        check(Some("items=0-1"), 10, Full);
        check(Some("bytes=a-b"), 10, Full);
        check(Some("bytes=-"), 10, Full);
    }
}
