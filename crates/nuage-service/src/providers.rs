//! The rules of the provider registry: which provider may be drained, added or removed, and
//! when. The registry itself is rows of `nuage-meta` (`providers`); every running server
//! follows it. `nuage admin provider` is the first caller; an admin API would be the next,
//! with the same rules.
//!
//! - A drain needs enough other active providers, readable by every server, for every
//!   bucket's copies.
//! - An added provider is a real, writable store that the configuration file does not name
//!   already; its settings are kept in the registry so every server opens it alike.
//! - Only a drained provider that holds nothing is removed: no placement, no chunk object
//!   on the provider itself, and no upload that began before the drain still able to commit
//!   there.

use futures::TryStreamExt;
use nuage_blob::{Provider, ProviderConfig, ProviderKind};
use nuage_core::Address;
use nuage_meta::{Meta, ProviderRecord, ProviderState, Removal};

use crate::{ErrorKind, ServiceError, ServiceResult};

/// The settings of a provider added at run time (`Registry::add`), unless it was removed
/// since; `None` for the providers of the configuration file.
pub fn added_at_run_time(r: &ProviderRecord) -> Option<ServiceResult<ProviderConfig>> {
    let settings = r.settings.as_deref().filter(|_| r.state != ProviderState::Removed)?;
    Some(serde_json::from_str(settings).map_err(|e| {
        let message = format!("the settings of provider {} in the registry: {e}", r.name);
        ServiceError::new(ErrorKind::Internal, "internal", message)
    }))
}

/// The registry as one caller sees it: the providers not removed, and those of the
/// configuration file.
#[derive(Debug)]
pub struct Registry {
    records: Vec<ProviderRecord>,
    configured: Vec<ProviderConfig>,
}

impl Registry {
    /// Reads the registry; `configured` are the providers of the configuration file.
    pub async fn read(meta: &Meta, configured: Vec<ProviderConfig>) -> ServiceResult<Registry> {
        let mut records = meta.providers().await?;
        records.retain(|p| p.state != ProviderState::Removed);
        Ok(Registry { records, configured })
    }

    /// The providers not removed, by name.
    pub fn records(&self) -> &[ProviderRecord] {
        &self.records
    }

    /// Whether the configuration file names `name`.
    pub fn in_config(&self, name: &str) -> bool {
        self.configured.iter().any(|c| c.name == name)
    }

    fn known(&self, name: &str) -> ServiceResult<&ProviderRecord> {
        self.records.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.records.iter().map(|p| p.name.as_str()).collect();
            ServiceError::new(
                ErrorKind::NotFound,
                "provider_not_found",
                format!("no provider {name} (the server knows: {})", names.join(", ")),
            )
        })
    }

    /// Starts moving every chunk off `name`. The other active providers that every server
    /// can open (named in the configuration, or added at run time) must be able to hold the
    /// copies of every bucket, the server's default of `default_replicas` included. (Drains
    /// started at once may still leave too few: a drain then keeps the chunks it cannot
    /// place, it never drops a copy.)
    pub async fn drain(&self, meta: &Meta, name: &str, default_replicas: u32) -> ServiceResult<()> {
        self.known(name)?;
        let others = self
            .records
            .iter()
            .filter(|p| {
                p.name != name
                    && p.state == ProviderState::Active
                    && (self.in_config(&p.name) || p.settings.is_some())
            })
            .count() as i64;
        let needed = meta.max_bucket_replicas().await?.max(i64::from(default_replicas));
        if others < needed {
            return Err(ServiceError::new(
                ErrorKind::Conflict,
                "too_few_providers",
                format!(
                    "cannot drain {name}: {others} other active provider(s), and buckets keep {needed} copies"
                ),
            ));
        }
        meta.set_provider_state(name, ProviderState::Draining).await?;
        Ok(())
    }

    /// Makes `name` take new chunks again (after a drain, or to stop one).
    pub async fn activate(&self, meta: &Meta, name: &str) -> ServiceResult<()> {
        self.known(name)?;
        meta.set_provider_state(name, ProviderState::Active).await?;
        Ok(())
    }

    /// Adds a provider: opens it, writes a test object, and records it with its settings
    /// (a folder's path made absolute, so that every server resolves it alike). Running
    /// servers place new chunks there once they read the registry again.
    pub async fn add(&self, meta: &Meta, mut settings: ProviderConfig) -> ServiceResult<ProviderRecord> {
        let name = settings.name.clone();
        if let ProviderKind::Fs { root } = &mut settings.kind {
            *root = std::path::absolute(&*root).map_err(|e| {
                ServiceError::invalid("invalid_provider", format!("the folder {}: {e}", root.display()))
            })?;
        }
        if matches!(settings.kind, ProviderKind::Memory) {
            return Err(ServiceError::invalid(
                "invalid_provider",
                "a memory provider lives and dies with one process: add an fs, s3 or azblob provider",
            ));
        }
        if self.in_config(&name) {
            return Err(ServiceError::new(
                ErrorKind::Conflict,
                "provider_exists",
                format!("provider {name} is in the configuration file already"),
            ));
        }
        if let Some(p) = self.records.iter().find(|p| p.name == name) {
            return Err(ServiceError::new(
                ErrorKind::Conflict,
                "provider_exists",
                format!("a provider named {name} exists already ({})", p.state),
            ));
        }
        let unreachable = |what: &str, e: nuage_blob::Error| {
            ServiceError::new(ErrorKind::Unavailable, "provider_unreachable", format!("{what} {name}: {e}"))
        };
        let p = Provider::open(settings.clone()).await.map_err(|e| unreachable("opening provider", e))?;
        p.check_writable().await.map_err(|e| unreachable("writing a test object to provider", e))?;
        let record = ProviderRecord {
            name: name.clone(),
            scheme: settings.kind.scheme().to_owned(),
            region: settings.region.clone(),
            state: ProviderState::Active,
            weight: settings.weight,
            settings: Some(
                serde_json::to_string(&settings)
                    .map_err(|e| ServiceError::internal("writing a provider's settings", e))?,
            ),
        };
        meta.add_provider(&record).await?;
        Ok(record)
    }

    /// Removes a drained provider that holds nothing: no placement in the index, no chunk
    /// object on the provider (it is listed), and no upload that may still commit chunks
    /// there. Running servers stop using it once they read the registry again.
    pub async fn remove(&self, meta: &Meta, name: &str) -> ServiceResult<()> {
        let r = self.known(name)?;
        let refused = |message: String| ServiceError::new(ErrorKind::Conflict, "provider_not_empty", message);
        if r.state != ProviderState::Drained {
            return Err(refused(format!(
                "{name} is {}: only an empty provider is removed; drain it first (`nuage admin provider drain {name}`)",
                r.state
            )));
        }
        let held: i64 =
            meta.placement_counts().await?.iter().filter(|(p, _, _)| p == name).map(|(_, _, n)| n).sum();
        if held > 0 {
            return Err(refused(format!("{name} still holds {held} placements: let its drain finish")));
        }
        let settings = match added_at_run_time(r) {
            Some(c) => c?,
            None => self.configured.iter().find(|c| c.name == name).cloned().ok_or_else(|| {
                ServiceError::new(
                    ErrorKind::Conflict,
                    "provider_not_configured",
                    format!("provider {name} is not in the configuration: cannot look at what it holds"),
                )
            })?,
        };
        let unreachable = |e: nuage_blob::Error| {
            ServiceError::new(
                ErrorKind::Unavailable,
                "provider_unreachable",
                format!("listing provider {name}: {e}"),
            )
        };
        let p = Provider::open(settings).await.map_err(unreachable)?;
        let listed: Vec<Address> =
            p.list().await.map_err(unreachable)?.try_collect().await.map_err(unreachable)?;
        if !listed.is_empty() {
            let listed: Vec<[u8; 32]> = listed.iter().map(|a| *a.as_bytes()).collect();
            let unknown = meta.unindexed(&listed).await?.len();
            let known = listed.len() - unknown;
            if known > 0 {
                return Err(refused(format!(
                    "{name} still holds {known} chunk objects of the index (copies a write left there \
                     unrecorded): `nuage admin provider drain {name}` again moves them; then remove again"
                )));
            }
            return Err(refused(format!(
                "{name} still holds {unknown} chunk objects the index does not know (copies of uploads \
                 that never committed): `nuage admin gc` deletes them once no upload leases them; then remove again"
            )));
        }
        match meta.remove_provider(name).await? {
            Removal::Removed => Ok(()),
            Removal::NotDrained => Err(refused(format!("{name} is no longer drained: nothing removed"))),
            Removal::PlacementsLeft(n) => Err(refused(format!(
                "{name} took {n} placements meanwhile: nothing removed; let its drain finish"
            ))),
            Removal::UploadsPending(n) => Err(refused(format!(
                "{n} uploads that began before {name} was drained (or within {} s after) may still commit \
                 chunks there: nothing removed; try again once they end (a simple upload within \
                 `[workers] upload_lease_secs`, a smart one when it commits or its session expires, \
                 `[grants] upload_ttl_secs`)",
                nuage_meta::CLOCK_MARGIN_MS / 1000
            ))),
        }
    }
}
