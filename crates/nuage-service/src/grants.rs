//! The server's grant keys: signing with the current key, verifying with every key that may
//! still have grants in flight, and rotating.
//!
//! Keys live in the metadata database, so every server sharing it signs and verifies with
//! the same keys. A server that meets a grant signed by a key it has not loaded yet (another
//! server rotated) reloads the keys, at most once every few seconds.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use nuage_core::Address;
use nuage_core::grant::{Grant, GrantError, GrantSigner, GrantVerifier, Operation};
use nuage_meta::{GrantKey, Meta, now_ms};

use crate::config::GrantsConfig;

/// How often an unknown key id may trigger a reload of the keys.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Signing and verifying keys, refreshed from the database.
#[derive(Debug)]
pub struct Grants {
    config: GrantsConfig,
    keys: RwLock<Keys>,
    last_reload: Mutex<Option<Instant>>,
}

#[derive(Debug)]
struct Keys {
    signer: Arc<GrantSigner>,
    signer_created_at: i64,
    verifier: GrantVerifier,
    public: Vec<(u32, [u8; 32], Option<i64>)>,
}

fn key_id(k: &GrantKey) -> u32 {
    u32::try_from(k.id).unwrap_or(u32::MAX)
}

impl Grants {
    /// Loads the keys, making the first one (or a new one, when the current key is due for
    /// rotation) if needed.
    pub async fn load(meta: &Meta, config: GrantsConfig) -> nuage_meta::Result<Grants> {
        let grants = Grants {
            config,
            keys: RwLock::new(Self::read(meta, config).await?),
            last_reload: Mutex::new(None),
        };
        grants.rotate_if_due(meta).await?;
        Ok(grants)
    }

    async fn read(meta: &Meta, config: GrantsConfig) -> nuage_meta::Result<Keys> {
        let mut all = meta.grant_keys().await?;
        if !all.iter().any(|k| k.retired_at.is_none()) {
            let seed: [u8; 32] = rand::random();
            let public = GrantSigner::from_seed(0, &seed).public_key();
            meta.rotate_grant_key(seed, public).await?;
            all = meta.grant_keys().await?;
        }
        // Keys retired longer ago than a grant lives have no grant left to verify.
        let horizon = now_ms() - Self::ttl_ms(config);
        let current = all.iter().rev().find(|k| k.retired_at.is_none()).expect("made above");
        let usable: Vec<&GrantKey> =
            all.iter().filter(|k| k.retired_at.is_none_or(|r| r >= horizon)).collect();
        Ok(Keys {
            signer: Arc::new(GrantSigner::from_seed(key_id(current), &current.seed)),
            signer_created_at: current.created_at,
            verifier: GrantVerifier::new(usable.iter().map(|k| (key_id(k), k.public_key))),
            public: usable.iter().map(|k| (key_id(k), k.public_key, k.retired_at)).collect(),
        })
    }

    fn ttl_ms(config: GrantsConfig) -> i64 {
        i64::try_from(config.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The lifetime of a grant made now, in ms.
    pub fn ttl(&self) -> i64 {
        Self::ttl_ms(self.config)
    }

    /// Makes a new signing key when the current one is older than `key_rotation_days`;
    /// returns whether it did. Grants signed by the old key keep verifying.
    pub async fn rotate_if_due(&self, meta: &Meta) -> nuage_meta::Result<bool> {
        let created = self.keys.read().expect("grant keys lock").signer_created_at;
        let max_age = i64::from(self.config.key_rotation_days) * 86_400_000;
        if self.config.key_rotation_days == 0 || now_ms() - created < max_age {
            return Ok(false);
        }
        self.rotate(meta).await?;
        Ok(true)
    }

    /// Makes a new signing key now.
    pub async fn rotate(&self, meta: &Meta) -> nuage_meta::Result<()> {
        let seed: [u8; 32] = rand::random();
        let public = GrantSigner::from_seed(0, &seed).public_key();
        meta.rotate_grant_key(seed, public).await?;
        meta.drop_grant_keys_retired_before(now_ms() - 2 * self.ttl()).await?;
        self.reload(meta).await
    }

    async fn reload(&self, meta: &Meta) -> nuage_meta::Result<()> {
        let keys = Self::read(meta, self.config).await?;
        *self.keys.write().expect("grant keys lock") = keys;
        *self.last_reload.lock().expect("reload lock") = Some(Instant::now());
        Ok(())
    }

    /// Signs a grant for `op` on `address`, valid for the configured lifetime.
    pub fn sign(&self, op: Operation, address: Address, scope: u64, max_size: u64) -> (String, i64) {
        let expires_at = now_ms().saturating_add(self.ttl());
        (self.sign_until(op, address, scope, max_size, expires_at), expires_at)
    }

    /// Signs a grant that expires at `expires_at` (Unix ms; the caller keeps it within the
    /// configured lifetime, so that key rotation stays safe).
    pub fn sign_until(
        &self,
        op: Operation,
        address: Address,
        scope: u64,
        max_size: u64,
        expires_at: i64,
    ) -> String {
        let signer = self.keys.read().expect("grant keys lock").signer.clone();
        signer.sign(&Grant { op, key_id: 0, address, scope, max_size, expires_at })
    }

    /// Verifies a grant; a signature by a key this server has not loaded yet triggers one
    /// reload of the keys (rate-limited) before it is refused as forged.
    pub async fn verify(
        &self,
        meta: &Meta,
        text: &str,
        op: Operation,
        address: &Address,
    ) -> Result<Grant, GrantError> {
        let first = self.keys.read().expect("grant keys lock").verifier.verify(text, op, address, now_ms());
        if first != Err(GrantError::Forged) {
            return first;
        }
        let due = self.last_reload.lock().expect("reload lock").is_none_or(|t| t.elapsed() >= RELOAD_EVERY);
        if !due || self.reload(meta).await.is_err() {
            return first;
        }
        self.keys.read().expect("grant keys lock").verifier.verify(text, op, address, now_ms())
    }

    /// The public keys that verify grants now: `(id, key, retired_at)`.
    pub fn public_keys(&self) -> Vec<(u32, [u8; 32], Option<i64>)> {
        self.keys.read().expect("grant keys lock").public.clone()
    }
}
