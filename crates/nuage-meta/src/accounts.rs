//! Accounts, API tokens and the provider registry.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::{is_unique_violation, now_ms};
use crate::{Error, Meta, ProviderState, Result};

/// An account: the unit of ownership, quota and change sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Byte quota over every kept version, or none.
    pub quota_bytes: Option<u64>,
    /// Bytes used by every kept version (old versions count until they are pruned).
    pub used_bytes: u64,
    /// The last change sequence number handed out.
    pub change_seq: i64,
}

/// An account's secrets, read only by the server when it must seal or authenticate.
#[derive(Clone)]
pub struct AccountSecrets {
    /// The argon2 PHC string of the password, if one is set.
    pub password_hash: Option<String>,
    /// The account's convergence secret (chunk keys derive from it).
    pub convergence_secret: [u8; 32],
}

impl std::fmt::Debug for AccountSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountSecrets(<redacted>)")
    }
}

/// A token as the store knows it: its hash, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Id (shown to the user, used to revoke).
    pub id: i64,
    /// Owner.
    pub account_id: i64,
    /// A label ("cli on laptop").
    pub name: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Expiry, Unix ms, or none.
    pub expires_at: Option<i64>,
    /// Revocation time, Unix ms, if revoked.
    pub revoked_at: Option<i64>,
}

/// How much later than a provider became drained an upload must have begun not to hold up
/// its removal (Unix ms).
pub const CLOCK_MARGIN_MS: i64 = 10_000;

/// What [`Meta::remove_provider`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The provider is `removed`.
    Removed,
    /// Refused: the provider is not `drained` (or not in the registry).
    NotDrained,
    /// Refused: placements are left on it.
    PlacementsLeft(i64),
    /// Refused: uploads that began before the provider was drained may still commit.
    UploadsPending(i64),
}

/// A provider as recorded in the registry. Its `Debug` leaves the settings out (they hold
/// credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderRecord {
    /// Unique name.
    pub name: String,
    /// OpenDAL scheme.
    pub scheme: String,
    /// Region label.
    pub region: Option<String>,
    /// Active, draining (its chunks are moving to the others), drained (none left) or
    /// removed.
    pub state: ProviderState,
    /// Placement weight.
    pub weight: u32,
    /// The settings of a provider added at run time (`nuage admin provider add`), as JSON;
    /// `None` for a provider of the configuration file.
    pub settings: Option<String>,
}

impl std::fmt::Debug for ProviderRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRecord")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("region", &self.region)
            .field("state", &self.state)
            .field("weight", &self.weight)
            .field("settings", &self.settings.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

const ACCOUNT_COLUMNS: &str = "id, name, quota_bytes, used_bytes, change_seq";

fn account(row: &AnyRow) -> Result<Account> {
    Ok(Account {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        quota_bytes: row.try_get::<Option<i64>, _>(2)?.map(|q| q as u64),
        used_bytes: row.try_get::<i64, _>(3)? as u64,
        change_seq: row.try_get(4)?,
    })
}

fn token(row: &AnyRow) -> Result<Token> {
    Ok(Token {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        name: row.try_get(2)?,
        created_at: row.try_get(3)?,
        expires_at: row.try_get(4)?,
        revoked_at: row.try_get(5)?,
    })
}

const TOKEN_COLUMNS: &str = "id, account_id, name, created_at, expires_at, revoked_at";

impl Meta {
    /// Creates an account with its convergence secret and, optionally, a password hash
    /// and a quota.
    pub async fn create_account(
        &self,
        name: &str,
        password_hash: Option<&str>,
        quota_bytes: Option<u64>,
        convergence_secret: [u8; 32],
    ) -> Result<Account> {
        let _w = self.write_guard().await;
        let row = sqlx::query(&format!(
            "INSERT INTO accounts (name, password_hash, convergence_secret, quota_bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {ACCOUNT_COLUMNS}"
        ))
        .bind(name)
        .bind(password_hash.map(str::to_owned))
        .bind(convergence_secret.to_vec())
        .bind(quota_bytes.map(|q| q as i64))
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) { Error::AccountExists(name.to_owned()) } else { e.into() }
        })?;
        account(&row)
    }

    /// The account of this id.
    pub async fn account(&self, id: i64) -> Result<Account> {
        let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::AccountNotFound)?;
        account(&row)
    }

    /// The account of this name.
    pub async fn account_by_name(&self, name: &str) -> Result<Account> {
        let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::AccountNotFound)?;
        account(&row)
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account).collect()
    }

    /// The secrets of an account.
    pub async fn account_secrets(&self, id: i64) -> Result<AccountSecrets> {
        let row = sqlx::query("SELECT password_hash, convergence_secret FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::AccountNotFound)?;
        let secret: Vec<u8> = row.try_get(1)?;
        Ok(AccountSecrets {
            password_hash: row.try_get(0)?,
            convergence_secret: secret
                .try_into()
                .map_err(|_| Error::Corrupt("convergence secret is not 32 bytes".into()))?,
        })
    }

    /// The account's convergence secret (which never changes: kept once read).
    pub async fn convergence_secret(&self, id: i64) -> Result<[u8; 32]> {
        let generation = match self.secrets.get(&id) {
            Ok(secret) => return Ok(secret),
            Err(generation) => generation,
        };
        let secret = self.account_secrets(id).await?.convergence_secret;
        self.secrets.keep(generation, id, secret);
        Ok(secret)
    }

    /// Sets (or clears) the password hash of an account.
    pub async fn set_password_hash(&self, id: i64, hash: Option<&str>) -> Result<()> {
        let _w = self.write_guard().await;
        let done = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
            .bind(hash.map(str::to_owned))
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::AccountNotFound);
        }
        Ok(())
    }

    /// The quota of an account, as read in the last [`crate::FRESH_FOR`] (at once after a
    /// change made here): for a writer to know whether to hold room before it stores. Only
    /// that: every commit checks the quota again in its transaction.
    pub async fn quota_of(&self, id: i64) -> Result<Option<u64>> {
        let generation = match self.recent_quotas.get(&id) {
            Ok(quota) => return Ok(quota),
            Err(generation) => generation,
        };
        let quota = self.account(id).await?.quota_bytes;
        self.recent_quotas.keep(generation, id, quota);
        Ok(quota)
    }

    /// Sets (or clears) the quota of an account.
    pub async fn set_quota(&self, id: i64, quota_bytes: Option<u64>) -> Result<()> {
        let _w = self.write_guard().await;
        let done = sqlx::query("UPDATE accounts SET quota_bytes = $1 WHERE id = $2")
            .bind(quota_bytes.map(|q| q as i64))
            .bind(id)
            .execute(&self.pool)
            .await;
        // After the change: a read that began before it is not kept (see `recent`).
        self.recent_quotas.forget(|a| *a == id);
        let done = done?;
        if done.rows_affected() == 0 {
            return Err(Error::AccountNotFound);
        }
        Ok(())
    }

    /// Records a new token by the BLAKE3 hash of its secret text.
    pub async fn create_token(
        &self,
        account_id: i64,
        token_hash: [u8; 32],
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<Token> {
        let _w = self.write_guard().await;
        let row = sqlx::query(&format!(
            "INSERT INTO tokens (account_id, token_hash, name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(account_id)
        .bind(token_hash.to_vec())
        .bind(name)
        .bind(now_ms())
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        token(&row)
    }

    /// The token whose secret hashes to `token_hash`, revoked or expired ones included
    /// (the caller tells the user which).
    pub async fn token_by_hash(&self, token_hash: [u8; 32]) -> Result<Option<Token>> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = $1"))
            .bind(token_hash.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token).transpose()
    }

    /// The tokens of an account, newest first.
    pub async fn tokens(&self, account_id: i64) -> Result<Vec<Token>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE account_id = $1 ORDER BY id DESC"
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token).collect()
    }

    /// Revokes one of the account's tokens; false if it has no such token.
    pub async fn revoke_token(&self, account_id: i64, token_id: i64) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(token_id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the providers of the running configuration (insert or update by name).
    /// Providers recorded before and absent now keep their rows: placements may point there.
    pub async fn register_providers(&self, providers: &[ProviderRecord]) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        for p in providers {
            sqlx::query(
                "INSERT INTO providers (name, scheme, region, state, weight, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
                 scheme = excluded.scheme, region = excluded.region, weight = excluded.weight, \
                 updated_at = excluded.updated_at",
            )
            .bind(&p.name)
            .bind(&p.scheme)
            .bind(p.region.clone())
            .bind(p.state.as_str())
            .bind(i64::from(p.weight))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds a provider at run time, active, with its settings; a name that was removed
    /// before may be added again. [`Error::ProviderExists`] if the registry has one of that
    /// name in any other state.
    pub async fn add_provider(&self, p: &ProviderRecord) -> Result<()> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "INSERT INTO providers (name, scheme, region, state, weight, updated_at, settings) \
             VALUES ($1, $2, $3, $7, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
             scheme = excluded.scheme, region = excluded.region, state = excluded.state, weight = excluded.weight, \
             updated_at = excluded.updated_at, settings = excluded.settings WHERE providers.state = $8",
        )
        .bind(&p.name)
        .bind(&p.scheme)
        .bind(p.region.clone())
        .bind(i64::from(p.weight))
        .bind(now_ms())
        .bind(p.settings.clone())
        .bind(ProviderState::Active.as_str())
        .bind(ProviderState::Removed.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 { Ok(()) } else { Err(Error::ProviderExists(p.name.clone())) }
    }

    /// Takes a drained provider out, in one statement that checks that no placement is left
    /// on it and that no upload that began before it became drained (and so may have
    /// written there) can still commit: no live lease taken before, no live upload session
    /// with chunks declared and not committed opened before ("before" with a margin of
    /// [`CLOCK_MARGIN_MS`]: the times come from several servers' clocks, and a server sees a
    /// drain up to a few seconds late). Its row stays, in state `removed`, without its
    /// settings. When refused, nothing changes and the answer says why.
    pub async fn remove_provider(&self, name: &str) -> Result<Removal> {
        let _w = self.write_guard().await;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE providers SET state = $4, settings = NULL, updated_at = $1 WHERE name = $2 \
             AND state = $5 AND NOT EXISTS (SELECT 1 FROM placements WHERE provider = $2) \
             AND NOT EXISTS (SELECT 1 FROM chunk_leases WHERE expires_at > $1 AND leased_at < providers.updated_at + $3) \
             AND NOT EXISTS (SELECT 1 FROM upload_sessions s WHERE s.expires_at > $1 AND s.created_at < providers.updated_at + $3 \
                 AND EXISTS (SELECT 1 FROM upload_session_chunks d WHERE d.session_id = s.id))",
        )
        .bind(now)
        .bind(name)
        .bind(CLOCK_MARGIN_MS)
        .bind(ProviderState::Removed.as_str())
        .bind(ProviderState::Drained.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Removal::Removed);
        }
        let Some(row) = sqlx::query("SELECT state, updated_at FROM providers WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(Removal::NotDrained);
        };
        let (state, drained_at): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
        if state.parse::<ProviderState>()? != ProviderState::Drained {
            return Ok(Removal::NotDrained);
        }
        let placements: i64 =
            sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM placements WHERE provider = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
        if placements > 0 {
            return Ok(Removal::PlacementsLeft(placements));
        }
        let uploads: i64 = sqlx::query_scalar(
            "SELECT CAST((SELECT COUNT(DISTINCT holder) FROM chunk_leases WHERE expires_at > $1 AND leased_at < $2) \
             + (SELECT COUNT(*) FROM upload_sessions s WHERE s.expires_at > $1 AND s.created_at < $2 \
                 AND EXISTS (SELECT 1 FROM upload_session_chunks d WHERE d.session_id = s.id)) AS BIGINT)",
        )
        .bind(now)
        .bind(drained_at + CLOCK_MARGIN_MS)
        .fetch_one(&self.pool)
        .await?;
        Ok(Removal::UploadsPending(uploads))
    }

    /// Sets a provider's state; false when the registry has no such provider (or only a
    /// removed one).
    pub async fn set_provider_state(&self, name: &str, state: ProviderState) -> Result<bool> {
        let _w = self.write_guard().await;
        let done =
            sqlx::query("UPDATE providers SET state = $1, updated_at = $2 WHERE name = $3 AND state <> $4")
                .bind(state.as_str())
                .bind(now_ms())
                .bind(name)
                .bind(ProviderState::Removed.as_str())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a draining provider `drained` if no placement is left on it, in one statement
    /// (a provider activated meanwhile stays active); says whether it did.
    pub async fn mark_drained(&self, name: &str) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE providers SET state = $3, updated_at = $1 WHERE name = $2 AND state = $4 \
             AND NOT EXISTS (SELECT 1 FROM placements WHERE provider = $2)",
        )
        .bind(now_ms())
        .bind(name)
        .bind(ProviderState::Drained.as_str())
        .bind(ProviderState::Draining.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The most copies any bucket asks for (0 with no bucket).
    pub async fn max_bucket_replicas(&self) -> Result<i64> {
        let n: Option<i64> = sqlx::query_scalar("SELECT CAST(MAX(replicas) AS BIGINT) FROM buckets")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// The provider registry, by name.
    pub async fn providers(&self) -> Result<Vec<ProviderRecord>> {
        let rows =
            sqlx::query("SELECT name, scheme, region, state, weight, settings FROM providers ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderRecord {
                    name: r.try_get(0)?,
                    scheme: r.try_get(1)?,
                    region: r.try_get(2)?,
                    state: r.try_get::<String, _>(3)?.parse()?,
                    weight: r.try_get::<i64, _>(4)? as u32,
                    settings: r.try_get(5)?,
                })
            })
            .collect()
    }
}
