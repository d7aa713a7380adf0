//! Content addresses of stored chunks and the provider object keys derived from them.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// The BLAKE3 hash of a chunk's stored bytes (header + ciphertext + tag).
///
/// Anyone holding the bytes can check them against the address without any key, which is what
/// lets untrusted providers and edges serve chunks. The address says nothing about the
/// plaintext: it is a hash of ciphertext under a key derived from a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address([u8; 32]);

impl Address {
    /// Prefix of every chunk object key on a provider.
    pub const OBJECT_PREFIX: &'static str = "ch/";

    /// The address of `stored` bytes.
    pub fn of(stored: &[u8]) -> Address {
        Address(*blake3::hash(stored).as_bytes())
    }

    /// Wraps raw hash bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Address {
        Address(bytes)
    }

    /// The raw hash bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Checks that `stored` hashes to this address.
    pub fn verify(&self, stored: &[u8]) -> Result<()> {
        let actual = Address::of(stored);
        if actual == *self {
            Ok(())
        } else {
            Err(Error::AddressMismatch { expected: self.to_hex(), actual: actual.to_hex() })
        }
    }

    /// The object key under which providers keep this chunk: `ch/<first 2 hex>/<64 hex>`.
    ///
    /// The two-character fan-out keeps directories of the fs provider small (256 of them)
    /// and spreads S3 key prefixes. Nothing but the address goes into the key: no account,
    /// bucket, file name or plaintext hash ever reaches a provider.
    pub fn object_key(&self) -> String {
        let hex = self.to_hex();
        format!("{}{}/{}", Self::OBJECT_PREFIX, &hex[..2], hex)
    }

    /// Parses an object key made by [`Address::object_key`]; `None` for anything else.
    pub fn from_object_key(key: &str) -> Option<Address> {
        let rest = key.strip_prefix(Self::OBJECT_PREFIX)?;
        let (fan, hex) = rest.split_once('/')?;
        let address: Address = hex.parse().ok()?;
        (fan == &hex[..2]).then_some(address)
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        let valid = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(Error::InvalidAddress(s.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::InvalidAddress(s.to_owned()))?;
        Ok(Address(out))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", &self.to_hex()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_key_round_trips_and_reveals_only_the_address() {
        let a = Address::of(b"stored bytes");
        let key = a.object_key();
        assert_eq!(key, format!("ch/{}/{}", &a.to_hex()[..2], a.to_hex()));
        assert_eq!(Address::from_object_key(&key), Some(a));
    }

    #[test]
    fn parse_rejects_what_is_not_an_address() {
        fn check(input: &str, ok: bool) {
            assert_eq!(input.parse::<Address>().is_ok(), ok, "{input:?}");
        }
        check(&"a".repeat(64), true);
        check(&"A".repeat(64), false);
        check(&"a".repeat(63), false);
        check(&"a".repeat(65), false);
        check(&"g".repeat(64), false);
        check("", false);
        assert_eq!(Address::from_object_key("ch/zz/aaaa"), None);
        assert_eq!(Address::from_object_key(&format!("ch/bb/{}", "a".repeat(64))), None);
        assert_eq!(Address::from_object_key(&format!("tmp/aa/{}", "a".repeat(64))), None);
    }

    #[test]
    fn verify_detects_a_flipped_bit() {
        let mut bytes = b"some stored chunk".to_vec();
        let a = Address::of(&bytes);
        assert!(a.verify(&bytes).is_ok());
        bytes[3] ^= 1;
        assert!(matches!(a.verify(&bytes), Err(Error::AddressMismatch { .. })));
    }
}
