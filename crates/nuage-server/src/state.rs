//! `Nuage`: the one struct that holds the server's stores and settings, shared by every
//! handler.

use anyhow::{Context, Result};
use nuage_blob::{ChunkStore, Provider};
use nuage_core::ChunkerConfig;
use nuage_core::chunk::SealOptions;
use nuage_meta::{Meta, ProviderRecord};

use crate::config::ServerConfig;
use crate::grants::Grants;
use crate::metrics::Metrics;

/// The state of a provider taken out by `nuage admin provider remove`.
pub const REMOVED: &str = "removed";

/// The settings of a provider added with `nuage admin provider add`, unless it was removed
/// since; `None` for the providers of the configuration file.
pub fn added_at_run_time(r: &ProviderRecord) -> Option<Result<nuage_blob::ProviderConfig>> {
    let settings = r.settings.as_deref().filter(|_| r.state != REMOVED)?;
    Some(serde_json::from_str(settings).with_context(|| format!("the settings of provider {}", r.name)))
}

/// The link server's state.
#[derive(Debug)]
pub struct Nuage {
    /// Accounts, namespace, chunk index.
    pub meta: Meta,
    /// The providers under placement.
    pub store: ChunkStore,
    /// Chunk sizes.
    pub chunker: ChunkerConfig,
    /// Compression.
    pub seal: SealOptions,
    /// The configuration it was built from.
    pub config: ServerConfig,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Grant signing and verification keys.
    pub grants: Grants,
    /// Chunks waiting for the rest of their replicas (direct uploads).
    pub replicas: crate::replicas::Replicas,
    /// Simple uploads under way in this process, by lease holder (an upload and its retries
    /// share one): a failed attempt drops its leases when no other is running.
    pub(crate) attempts: crate::leases::Attempts,
    /// Providers added at run time that failed to open, and when: tried again after a
    /// while, not on every refresh of the registry.
    pub(crate) open_failures: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Nuage {
    /// Opens the database (migrating it) and the providers of `config`.
    pub async fn open(mut config: ServerConfig) -> Result<Nuage> {
        let chunker = config.chunking.chunker()?;
        config.http.validate()?;
        if config.workers.upload_lease_secs < 120 {
            anyhow::bail!("[workers] upload_lease_secs is at least 120 (an upload needs time to commit)");
        }
        for e in &mut config.edges {
            let parsed =
                e.url.parse::<crate::config::EdgeLink>().map_err(anyhow::Error::msg).context("[[edges]]")?;
            e.url = parsed.url; // normalized: no trailing '/'
        }
        let seal = config.chunking.seal();
        let url = config.database_url();
        if url.starts_with("sqlite:") {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
        }
        let meta = Meta::open(&url).await.context("opening the metadata database")?;
        let registry = meta.providers().await?;
        let mut providers = Vec::new();
        let mut records = Vec::new();
        for c in config.providers() {
            match registry.iter().find(|r| r.name == c.name) {
                Some(r) if r.settings.is_some() => anyhow::bail!(
                    "provider {} is both in the configuration and added with `nuage admin provider add`: \
                     take it out of the configuration",
                    c.name
                ),
                Some(r) if r.state == REMOVED => {
                    tracing::warn!(
                        "provider {} was removed (`nuage admin provider remove`): not opened; \
                         take it out of the configuration",
                        c.name
                    );
                    continue;
                }
                _ => {}
            }
            records.push(ProviderRecord {
                name: c.name.clone(),
                scheme: c.kind.scheme().to_owned(),
                region: c.region.clone(),
                state: "active".into(),
                weight: c.weight,
                settings: None,
            });
            let name = c.name.clone();
            providers.push(Provider::open(c).await.with_context(|| format!("opening provider {name}"))?);
        }
        meta.register_providers(&records).await?;
        // A provider added at run time that does not open is left to the state refresh, which
        // tries again later: one bad entry does not keep every server down.
        let mut open_failures = std::collections::HashMap::new();
        for r in &registry {
            let opened = match added_at_run_time(r) {
                None => continue,
                Some(Ok(c)) => crate::workers::open_bounded(c).await,
                Some(Err(e)) => Err(format!("{e:#}")),
            };
            match opened {
                Ok(p) => providers.push(p),
                Err(e) => {
                    tracing::warn!("opening provider {} (added at run time): {e}", r.name);
                    open_failures.insert(r.name.clone(), std::time::Instant::now());
                }
            }
        }
        let store = ChunkStore::new(providers, config.buckets.placement()).context("[buckets] placement")?;
        let grants = Grants::load(&meta, config.grants).await.context("loading the grant keys")?;
        let nuage = Nuage {
            meta,
            store,
            chunker,
            seal,
            config,
            metrics: Metrics::default(),
            attempts: Default::default(),
            grants,
            replicas: Default::default(),
            open_failures: std::sync::Mutex::new(open_failures),
        };
        // A provider being drained takes no new chunk from the first request on.
        crate::workers::refresh_provider_states(&nuage).await?;
        Ok(nuage)
    }

    /// Every ten minutes: rotates the grant key when it is due and forgets expired upload
    /// sessions and chunk leases. Runs until the process ends.
    pub fn spawn_housekeeping(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let nuage = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tick.tick().await;
                if let Err(e) = nuage.grants.rotate_if_due(&nuage.meta).await {
                    tracing::warn!("grant key rotation: {e}");
                }
                if let Err(e) = nuage.meta.drop_upload_sessions_expired_before(nuage_meta::now_ms()).await {
                    tracing::warn!("dropping expired upload sessions: {e}");
                }
                if let Err(e) = nuage.meta.drop_expired_leases().await {
                    tracing::warn!("dropping expired chunk leases: {e}");
                }
                if let Err(e) = nuage.meta.drop_idle_attempts(nuage_meta::now_ms() - 3_600_000).await {
                    tracing::warn!("dropping idle password attempts: {e}");
                }
            }
        })
    }
}
