//! Validation of bucket names and object keys: the rules every entry point shares.

use nuage_meta::{Bucket, Meta};

use crate::{ServiceError, ServiceResult};

pub use nuage_core::key::MAX_KEY_BYTES;

/// A bucket name: 3 to 63 of `a-z 0-9 - .`, starting and ending with a letter or digit.
pub fn check_bucket(name: &str) -> Result<(), ServiceError> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "invalid_bucket_name",
            "a bucket name has 3 to 63 characters among a-z, 0-9, '-' and '.', and starts and ends with a letter or digit",
        ))
    }
}

/// An object key in its one form (NFC), or `400 invalid_key` saying which rule it breaks
/// (the rules: [`nuage_core::key`]).
pub fn check_key(raw: &str) -> Result<String, ServiceError> {
    nuage_core::key::normalize(raw).map_err(|e| ServiceError::invalid("invalid_key", e.to_string()))
}

/// An idempotency key as a client sent it (`Idempotency-Key`), or `invalid_idempotency_key`
/// unless it is 1 to 255 visible ASCII characters.
pub fn check_idempotency_key(raw: Option<&str>) -> ServiceResult<Option<String>> {
    match raw {
        None => Ok(None),
        Some(s) if (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(s.to_owned()))
        }
        Some(_) => Err(ServiceError::invalid(
            "invalid_idempotency_key",
            "an Idempotency-Key is 1 to 255 visible ASCII characters",
        )),
    }
}

/// The key a read or a delete names. Keys stored before the key rules (2026-12-02) may be
/// in another Unicode form, or break a rule added then (a backslash, a bidirectional
/// control); they stay readable and deletable by their exact spelling, never writable.
#[derive(Debug)]
pub enum ReadKey {
    /// An NFC key that follows the rules: nothing else to look for.
    Ready(String),
    /// A spelling a key stored earlier may have: the NFC form to try first, if there is one,
    /// then the key as sent.
    Legacy {
        /// The key in NFC when it follows the rules, else why it does not (the answer when
        /// the key as sent is not stored either).
        nfc: Result<String, ServiceError>,
        /// The key as sent.
        raw: String,
    },
}

/// [`ReadKey`] of `raw`, or `400 invalid_key` when no key, old or new, could be spelt so.
pub fn read_key(raw: &str) -> Result<ReadKey, ServiceError> {
    let checked = check_key(raw);
    let old_rules = !raw.is_empty()
        && raw.len() <= MAX_KEY_BYTES
        && !raw.chars().any(char::is_control)
        && !raw.split('/').any(|s| s.is_empty() || s == "." || s == "..");
    match checked {
        Ok(key) if key == raw || !old_rules => Ok(ReadKey::Ready(key)),
        Ok(key) => Ok(ReadKey::Legacy { nfc: Ok(key), raw: raw.to_owned() }),
        Err(e) if old_rules => Ok(ReadKey::Legacy { nfc: Err(e), raw: raw.to_owned() }),
        Err(e) => Err(e),
    }
}

/// The stored key a read or delete of `key` means in `bucket`: for a key already in its one
/// form, that form, at no cost; else the NFC form if the bucket has it, else the key as sent
/// if the bucket has that (stored before the rules), else the NFC form or the refusal.
pub async fn stored_key(meta: &Meta, bucket: &Bucket, key: ReadKey) -> ServiceResult<String> {
    let (nfc, raw) = match key {
        ReadKey::Ready(k) => return Ok(k),
        ReadKey::Legacy { nfc, raw } => (nfc, raw),
    };
    let held = |k: String| async move {
        match meta.versions(bucket, &k).await {
            Ok(v) if !v.is_empty() => Ok(Some(k)),
            Ok(_) | Err(nuage_meta::Error::ObjectNotFound) => Ok(None),
            Err(e) => Err(ServiceError::from(e)),
        }
    };
    if let Ok(nfc) = &nfc
        && let Some(k) = held(nfc.clone()).await?
    {
        return Ok(k);
    }
    if let Some(k) = held(raw).await? {
        return Ok(k);
    }
    nfc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_keys() {
        assert!(matches!(read_key("a/b"), Ok(ReadKey::Ready(k)) if k == "a/b"));
        assert!(
            matches!(read_key("cafe\u{301}"), Ok(ReadKey::Legacy { nfc: Ok(k), .. }) if k == "caf\u{e9}")
        );
        assert!(
            matches!(read_key("a\\b"), Ok(ReadKey::Legacy { nfc: Err(e), .. }) if e.code == "invalid_key")
        );
        assert!(read_key("../x").is_err());
        assert!(read_key("").is_err());
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
