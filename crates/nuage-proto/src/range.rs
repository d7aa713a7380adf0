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

/// A single byte range as a `Range` header asks it, before the object's size is known.
/// Numbers too large for a `u64` are read as `u64::MAX`, which means the same thing here (a
/// first byte past any end, a last byte or a suffix that takes everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-` or `bytes=first-last` (`last` inclusive; one below `first` makes the
    /// range invalid, which [`ByteRange::resolve`] ignores once `first` is in the object).
    Span {
        /// First byte.
        first: u64,
        /// Last byte, inclusive; none: to the end.
        last: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Reads a `Range` header. `None` for what a server may ignore and answer whole (RFC
    /// 9110 §14.2): another unit, several ranges, a malformed value.
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.trim().split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let number = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX); // only digits: too large
        match (first, last) {
            ("", n) if digits(n) => Some(ByteRange::Suffix(number(n))),
            (a, "") if digits(a) => Some(ByteRange::Span { first: number(a), last: None }),
            (a, b) if digits(a) && digits(b) => {
                Some(ByteRange::Span { first: number(a), last: Some(number(b)) })
            }
            _ => None,
        }
    }

    /// What this range is of an object of `size` bytes.
    pub fn resolve(self, size: u64) -> RangeRequest {
        match self {
            ByteRange::Suffix(0) => RangeRequest::Unsatisfiable,
            ByteRange::Suffix(_) if size == 0 => RangeRequest::Unsatisfiable,
            ByteRange::Suffix(n) => RangeRequest::Partial { start: size.saturating_sub(n), end: size },
            ByteRange::Span { first, .. } if first >= size => RangeRequest::Unsatisfiable,
            ByteRange::Span { first, last: Some(last) } if last < first => RangeRequest::Full, // invalid
            ByteRange::Span { first, last } => RangeRequest::Partial {
                start: first,
                end: last.map_or(size, |l| l.saturating_add(1).min(size)),
            },
        }
    }
}

/// Interprets `header` for an object of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    header.and_then(ByteRange::parse).map_or(RangeRequest::Full, |r| r.resolve(size))
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
        check(Some("bytes=-99999999999999999999999"), 0, Unsatisfiable);
        check(Some("bytes=99999999999999999999999-"), 10, Unsatisfiable);
        check(Some("bytes=0-99999999999999999999999"), 10, Partial { start: 0, end: 10 });
        check(Some("bytes=5-2"), 10, Full);
        check(Some("bytes=0-1,3-4"), 10, Full);
        check(Some("items=0-1"), 10, Full);
        check(Some("bytes=a-b"), 10, Full);
        check(Some("bytes=-"), 10, Full);
    }
}
