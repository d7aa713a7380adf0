//! Validation of bucket names and object keys: the rules every entry point shares.

use crate::ApiError;

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// A bucket name: 3 to 63 of `a-z 0-9 - .`, starting and ending with a letter or digit.
pub fn check_bucket(name: &str) -> Result<(), ApiError> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_bucket_name",
            "a bucket name has 3 to 63 characters among a-z, 0-9, '-' and '.', and starts and ends with a letter or digit",
        ))
    }
}

/// An object key: 1 to 1024 bytes, no control character (NUL included), `/`-separated
/// segments that are neither empty nor `.` nor `..` (so that a key is always a safe
/// relative path when downloaded).
pub fn check_key(key: &str) -> Result<(), ApiError> {
    let problem = if key.is_empty() {
        Some("the key is empty")
    } else if key.len() > MAX_KEY_BYTES {
        Some("the key is longer than 1024 bytes")
    } else if key.chars().any(char::is_control) {
        Some("the key contains a control character (NUL included)")
    } else if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        Some("the key has an empty, '.' or '..' path segment")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(ApiError::bad_request("invalid_key", p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, ok: bool) {
        assert_eq!(check_key(key).is_ok(), ok, "{key:?}");
    }

    #[test]
    fn keys() {
        check("a", true);
        check("photos/2026/été.jpg", true);
        check("a b/c..d/.hidden", true);
        check(&"x".repeat(1024), true);
        check(&"x".repeat(1025), false);
        check("", false);
        check("../etc/passwd", false);
        check("a/../b", false);
        check("a/./b", false);
        check("/abs", false);
        check("trailing/", false);
        check("a//b", false);
        check("nul\0byte", false);
        check("new\nline", false);
    }

    #[test]
    fn buckets() {
        for ok in ["abc", "my-bucket.2026", "0ab"] {
            assert!(check_bucket(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "Abc", "-abc", "abc-", "a_b_c", &"a".repeat(64), "a/b"] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
    }
}
