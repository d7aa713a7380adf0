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

/// Whether a `Range` may be honoured under `If-Range` (RFC 9110 §13.1.5): always without
/// one; with an entity-tag, only the version's strong `etag` (quoted, as sent); with a date,
/// only exactly the version's `last_modified`, and only for a request `pinned` to one
/// version (two versions of a key made within one second share a date, so a date is no
/// strong validator of "the current one"). A weak tag never matches.
pub fn if_range_allows(if_range: Option<&str>, etag: &str, last_modified: &str, pinned: bool) -> bool {
    match if_range.map(str::trim) {
        None => true,
        Some(v) if v.starts_with('"') || v.starts_with("W/") => v == etag,
        Some(v) => pinned && v == last_modified,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;
    use proptest::prelude::*;

    /// What `bytes=FIRST-LAST` means, written the other way round from `parse`: from the
    /// numbers to the answer.
    fn model(first: Option<u128>, last: Option<u128>, size: u64) -> RangeRequest {
        let size = u128::from(size);
        let partial = |start: u128, end: u128| Partial { start: start as u64, end: end as u64 };
        match (first, last) {
            (None, None) => Full,
            (None, Some(0)) => Unsatisfiable,
            (None, Some(_)) if size == 0 => Unsatisfiable,
            (None, Some(n)) => partial(size - n.min(size), size),
            (Some(a), _) if a >= size => Unsatisfiable,
            (Some(a), Some(b)) if b < a => Full,
            (Some(a), Some(b)) => partial(a, (b + 1).min(size)),
            (Some(a), None) => partial(a, size),
        }
    }

    proptest! {
        /// Any header on any size: no panic, and a partial answer lies inside the object
        /// and is not empty.
        #[test]
        fn any_header_is_safe(header in ".{0,40}", size in any::<u64>()) {
            if let Partial { start, end } = parse(Some(&header), size) {
                prop_assert!(start < end && end <= size, "{header:?} on {size}: {start}..{end}");
            }
        }

        /// Well-formed single ranges, numbers up to beyond u64, mean what RFC 9110 says.
        #[test]
        fn single_ranges_follow_the_rfc(
            first in proptest::option::of(0u128..(u128::from(u64::MAX) + 1000)),
            last in proptest::option::of(0u128..(u128::from(u64::MAX) + 1000)),
            size in prop_oneof![0u64..64, any::<u64>()],
            small in 0u128..80,
        ) {
            // Half the time, numbers near the object's size, where the edges are.
            let (first, last) = if small % 2 == 0 {
                (first.map(|_| small / 2), last.map(|_| small % 70))
            } else {
                (first, last)
            };
            let text = |n: Option<u128>| n.map(|n| n.to_string()).unwrap_or_default();
            let header = format!("bytes={}-{}", text(first), text(last));
            let expected = match (first, last) {
                // Beyond u64 the parser cannot count: a start that large is past any end,
                // a suffix or an end that large takes everything.
                (Some(a), _) if a > u128::from(u64::MAX) => Unsatisfiable,
                (None, Some(n)) if n > u128::from(u64::MAX) && size > 0 => Partial { start: 0, end: size },
                _ => model(first, last, size),
            };
            prop_assert_eq!(parse(Some(&header), size), expected, "{} on {}", header, size);
        }

        /// If-Range lets a range through for the version's own strong tag only, or its
        /// exact date on a pinned request; never for a weak tag, another tag or a date of
        /// an unpinned request.
        #[test]
        fn if_range_names_one_version(
            mine in "[0-9a-f]{64}",
            other in "[0-9a-f]{64}",
            secs in 0u64..4_000_000_000,
            pinned in any::<bool>(),
            junk in ".{0,30}",
        ) {
            let etag = format!("\"{mine}\"");
            let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
            prop_assert!(if_range_allows(None, &etag, &date, pinned));
            prop_assert!(if_range_allows(Some(&etag), &etag, &date, pinned));
            let weak = format!("W/{}", etag);
            prop_assert!(!if_range_allows(Some(&weak), &etag, &date, pinned));
            let theirs = format!("\"{}\"", other);
            prop_assert_eq!(if_range_allows(Some(&theirs), &etag, &date, pinned), other == mine);
            prop_assert_eq!(if_range_allows(Some(&date), &etag, &date, pinned), pinned);
            let later = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs + 1));
            prop_assert!(!if_range_allows(Some(&later), &etag, &date, pinned));
            prop_assert!(!if_range_allows(Some(&junk), &etag, &date, pinned), "{:?}", junk);
        }
    }

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
