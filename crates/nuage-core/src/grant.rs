//! Grants: short-lived permissions for one operation on one chunk address (or one share),
//! signed by the link server with Ed25519.
//!
//! A device that may put or get a chunk receives a grant from the link server and presents
//! it to whoever holds the bytes: the server's chunk endpoint today, an edge cache later. The
//! holder verifies the grant with the server's *public* keys, so an edge can check grants but
//! never mint one.
//!
//! # Encoding, version 1
//!
//! `g1.` followed by the unpadded base64url encoding of 126 bytes: a 62-byte payload, then
//! the 64-byte Ed25519 signature of `"nuage grant v1\0" || payload`.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | format version, `1` |
//! | 1 | 1 | operation: `1` put chunk, `2` get chunk, `3` get share |
//! | 2 | 4 | signing key id (u32 LE) |
//! | 6 | 32 | chunk address (for a share: the share's 32-byte id) |
//! | 38 | 8 | scope (u64 LE): the bucket a put goes to, the share a get belongs to, or 0 |
//! | 46 | 8 | size limit in bytes (u64 LE) |
//! | 54 | 8 | expiry, Unix milliseconds (i64 LE) |
//!
//! # Key rotation
//!
//! Each signing key has an id that travels in the grant. A [`GrantVerifier`] holds every
//! public key that may still have grants in flight: the current one and those retired less
//! than a grant lifetime ago, so rotating the signing key never breaks a grant already
//! handed out.

use std::collections::HashMap;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Address;

const PREFIX: &str = "g1.";
const DOMAIN: &[u8] = b"nuage grant v1\0";
const PAYLOAD_LEN: usize = 62;
const SIGNATURE_LEN: usize = 64;

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Store one chunk.
    PutChunk,
    /// Read one chunk.
    GetChunk,
    /// Read the object behind one share link.
    GetShare,
}

impl Operation {
    fn id(self) -> u8 {
        match self {
            Operation::PutChunk => 1,
            Operation::GetChunk => 2,
            Operation::GetShare => 3,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Operation::PutChunk),
            2 => Some(Operation::GetChunk),
            3 => Some(Operation::GetShare),
            _ => None,
        }
    }
}

/// The content of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The operation allowed.
    pub op: Operation,
    /// The id of the key that signs (or signed) it.
    pub key_id: u32,
    /// The chunk address (or share id) it is for.
    pub address: Address,
    /// The bucket (put), share (get share) or 0: what the holder needs to act on it.
    pub scope: u64,
    /// The most bytes it allows to move.
    pub max_size: u64,
    /// When it stops being valid, Unix milliseconds.
    pub expires_at: i64,
}

impl Grant {
    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut p = [0u8; PAYLOAD_LEN];
        p[0] = 1;
        p[1] = self.op.id();
        p[2..6].copy_from_slice(&self.key_id.to_le_bytes());
        p[6..38].copy_from_slice(self.address.as_bytes());
        p[38..46].copy_from_slice(&self.scope.to_le_bytes());
        p[46..54].copy_from_slice(&self.max_size.to_le_bytes());
        p[54..62].copy_from_slice(&self.expires_at.to_le_bytes());
        p
    }

    fn parse(p: &[u8; PAYLOAD_LEN]) -> Option<Grant> {
        let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8 bytes"));
        if p[0] != 1 {
            return None;
        }
        Some(Grant {
            op: Operation::from_id(p[1])?,
            key_id: u32::from_le_bytes(p[2..6].try_into().expect("4 bytes")),
            address: Address::from_bytes(p[6..38].try_into().expect("32 bytes")),
            scope: u64_at(38),
            max_size: u64_at(46),
            expires_at: u64_at(54) as i64,
        })
    }
}

fn signed_message(payload: &[u8; PAYLOAD_LEN]) -> Vec<u8> {
    [DOMAIN, payload].concat()
}

/// Why a grant was refused. Each has its own error code at the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Not a grant, a signature that does not verify, or a key the verifier does not know.
    #[error("the grant is not one this server signed")]
    Forged,
    /// Past its expiry.
    #[error("the grant has expired")]
    Expired,
    /// Signed for another operation.
    #[error("the grant is for another operation")]
    WrongOperation,
    /// Signed for another address (or share).
    #[error("the grant is for another address")]
    WrongAddress,
}

impl GrantError {
    /// Its stable error code, the same at every front that checks grants.
    pub fn code(self) -> &'static str {
        match self {
            GrantError::Forged => "grant_forged",
            GrantError::Expired => "grant_expired",
            GrantError::WrongOperation => "grant_wrong_operation",
            GrantError::WrongAddress => "grant_wrong_address",
        }
    }
}

/// A signing key: the link server's side.
pub struct GrantSigner {
    key_id: u32,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for GrantSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantSigner").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl GrantSigner {
    /// The signer for key `key_id`, from its 32-byte Ed25519 seed (keep it secret).
    pub fn from_seed(key_id: u32, seed: &[u8; 32]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are an Ed25519 seed");
        GrantSigner { key_id, pair }
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public key that verifies this signer's grants.
    pub fn public_key(&self) -> [u8; 32] {
        self.pair.public_key().as_ref().try_into().expect("Ed25519 public keys have 32 bytes")
    }

    /// Signs `grant` (its `key_id` is replaced by this signer's) and returns its text form.
    pub fn sign(&self, grant: &Grant) -> String {
        let grant = Grant { key_id: self.key_id, ..*grant };
        let payload = grant.payload();
        let signature = self.pair.sign(&signed_message(&payload));
        let mut raw = Vec::with_capacity(PAYLOAD_LEN + SIGNATURE_LEN);
        raw.extend_from_slice(&payload);
        raw.extend_from_slice(signature.as_ref());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }
}

/// The public keys that grants may be signed with: what an edge or the server checks
/// grants against.
#[derive(Debug, Clone, Default)]
pub struct GrantVerifier {
    keys: HashMap<u32, [u8; 32]>,
}

impl GrantVerifier {
    /// A verifier trusting these `(key id, public key)` pairs.
    pub fn new(keys: impl IntoIterator<Item = (u32, [u8; 32])>) -> Self {
        GrantVerifier { keys: keys.into_iter().collect() }
    }

    /// Checks that `text` is a grant signed by a known key, for `op` on `address`, still
    /// valid at `now_ms`. Returns its content (the caller enforces `max_size` and `scope`).
    pub fn verify(
        &self,
        text: &str,
        op: Operation,
        address: &Address,
        now_ms: i64,
    ) -> Result<Grant, GrantError> {
        let raw = text
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|raw| raw.len() == PAYLOAD_LEN + SIGNATURE_LEN)
            .ok_or(GrantError::Forged)?;
        let (payload, signature) = raw.split_at(PAYLOAD_LEN);
        let payload: &[u8; PAYLOAD_LEN] = payload.try_into().expect("split at PAYLOAD_LEN");
        let grant = Grant::parse(payload).ok_or(GrantError::Forged)?;
        let public = self.keys.get(&grant.key_id).ok_or(GrantError::Forged)?;
        // The signature is checked before any field is believed.
        UnparsedPublicKey::new(&ED25519, public)
            .verify(&signed_message(payload), signature)
            .map_err(|_| GrantError::Forged)?;
        if grant.op != op {
            return Err(GrantError::WrongOperation);
        }
        if grant.address != *address {
            return Err(GrantError::WrongAddress);
        }
        if now_ms >= grant.expires_at {
            return Err(GrantError::Expired);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(op: Operation, address: Address, expires_at: i64) -> Grant {
        Grant { op, key_id: 0, address, scope: 7, max_size: 1 << 20, expires_at }
    }

    #[test]
    fn a_signed_grant_verifies_and_only_for_what_it_says() {
        let signer = GrantSigner::from_seed(3, &[1; 32]);
        let verifier = GrantVerifier::new([(3, signer.public_key())]);
        let a = Address::of(b"chunk a");
        let b = Address::of(b"chunk b");
        let text = signer.sign(&grant(Operation::PutChunk, a, 1_000));
        let g = verifier.verify(&text, Operation::PutChunk, &a, 999).unwrap();
        assert_eq!((g.key_id, g.scope, g.max_size), (3, 7, 1 << 20));
        assert_eq!(verifier.verify(&text, Operation::PutChunk, &a, 1_000), Err(GrantError::Expired));
        assert_eq!(verifier.verify(&text, Operation::GetChunk, &a, 0), Err(GrantError::WrongOperation));
        assert_eq!(verifier.verify(&text, Operation::PutChunk, &b, 0), Err(GrantError::WrongAddress));
    }

    #[test]
    fn forgeries_are_refused() {
        let signer = GrantSigner::from_seed(1, &[1; 32]);
        let other = GrantSigner::from_seed(1, &[2; 32]);
        let verifier = GrantVerifier::new([(1, signer.public_key())]);
        let a = Address::of(b"a");
        let good = signer.sign(&grant(Operation::GetChunk, a, i64::MAX));
        // Another key under the same id, an unknown key id, and garbage.
        let wrong_key = other.sign(&grant(Operation::GetChunk, a, i64::MAX));
        let unknown_id = GrantSigner::from_seed(9, &[1; 32]).sign(&grant(Operation::GetChunk, a, i64::MAX));
        for text in [wrong_key.as_str(), &unknown_id, "", "g1.", "g1.AAAA", "x1.abc", &good[..good.len() - 1]]
        {
            assert_eq!(verifier.verify(text, Operation::GetChunk, &a, 0), Err(GrantError::Forged), "{text}");
        }
        // Every single-bit change of the payload or signature breaks it.
        let raw = URL_SAFE_NO_PAD.decode(&good[PREFIX.len()..]).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x10;
            let text = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bad));
            assert!(verifier.verify(&text, Operation::GetChunk, &a, 0).is_err(), "byte {i}");
        }
        assert!(verifier.verify(&good, Operation::GetChunk, &a, 0).is_ok());
    }

    #[test]
    fn rotation_keeps_grants_in_flight_valid() {
        let old = GrantSigner::from_seed(1, &[1; 32]);
        let new = GrantSigner::from_seed(2, &[2; 32]);
        let a = Address::of(b"a");
        let in_flight = old.sign(&grant(Operation::GetChunk, a, i64::MAX));
        let fresh = new.sign(&grant(Operation::GetChunk, a, i64::MAX));
        let both = GrantVerifier::new([(1, old.public_key()), (2, new.public_key())]);
        assert!(both.verify(&in_flight, Operation::GetChunk, &a, 0).is_ok());
        assert!(both.verify(&fresh, Operation::GetChunk, &a, 0).is_ok());
        // Once the old key is dropped (its grants have all expired), its grants are refused.
        let new_only = GrantVerifier::new([(2, new.public_key())]);
        assert_eq!(new_only.verify(&in_flight, Operation::GetChunk, &a, 0), Err(GrantError::Forged));
    }
}
