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
    /// Wrong share-link passwords, to space out guesses.
    pub unlock_throttle: crate::shares::UnlockThrottle,
}

impl Nuage {
    /// Opens the database (migrating it) and the providers of `config`.
    pub async fn open(mut config: ServerConfig) -> Result<Nuage> {
        let chunker = config.chunking.chunker()?;
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
        let mut providers = Vec::new();
        let mut records = Vec::new();
        for c in config.providers() {
            records.push(ProviderRecord {
                name: c.name.clone(),
                scheme: c.kind.scheme().to_owned(),
                region: c.region.clone(),
                state: "active".into(),
                weight: c.weight,
            });
            let name = c.name.clone();
            providers.push(Provider::open(c).await.with_context(|| format!("opening provider {name}"))?);
        }
        meta.register_providers(&records).await?;
        let store = ChunkStore::new(providers, config.buckets.placement()).context("[buckets] placement")?;
        let grants = Grants::load(&meta, config.grants).await.context("loading the grant keys")?;
        let nuage = Nuage {
            meta,
            store,
            chunker,
            seal,
            config,
            metrics: Metrics::default(),
            grants,
            replicas: Default::default(),
            unlock_throttle: Default::default(),
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
            }
        })
    }
}
