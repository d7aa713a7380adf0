//! Validation of bucket names and object keys: the rules every entry point shares.

use crate::ApiError;

pub use nuage_core::key::MAX_KEY_BYTES;

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

/// An object key in its one form (NFC), or `400 invalid_key` saying which rule it breaks
/// (the rules: [`nuage_core::key`]).
pub fn check_key(raw: &str) -> Result<String, ApiError> {
    nuage_core::key::normalize(raw).map_err(|e| ApiError::bad_request("invalid_key", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
