//! The provider registry: the providers of the configuration and those added at run time
//! (`nuage admin provider add`), opened when the server starts and followed while it runs
//! (added, removed, draining), so that every server on one database places chunks on the
//! same set.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nuage_blob::{ChunkStore, Provider};
use nuage_meta::{Meta, ProviderRecord, ProviderState};

use crate::providers::added_at_run_time;

use crate::config::ServiceConfig;
use crate::grants::Grants;
use crate::metrics::Metrics;
use crate::state::Nuage;

/// How long the registry refresh waits for a provider added at run time to open.
const OPEN_WITHIN: Duration = Duration::from_secs(5);
/// How long a provider added at run time that failed to open is left before another try.
const REOPEN_AFTER: Duration = Duration::from_secs(30);

impl Nuage {
    /// Opens the database (migrating it) and the providers of `config`.
    pub async fn open(mut config: ServiceConfig) -> Result<Nuage> {
        let chunker = config.chunking.chunker()?;
        if config.workers.upload_lease_secs < 120 {
            anyhow::bail!("[workers] upload_lease_secs is at least 120 (an upload needs time to commit)");
        }
        if !(1..=4096).contains(&config.chunking.write_memory_mib) {
            anyhow::bail!(
                "[chunking] write_memory_mib is 1 ..= 4096 (MiB of sealed chunks on their way to the providers)"
            );
        }
        if config.workers.multipart_idle_secs < 120 {
            anyhow::bail!("[workers] multipart_idle_secs is at least 120 (a part needs time to upload)");
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
                Some(r) if r.state == ProviderState::Removed => {
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
                state: ProviderState::Active,
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
                Some(Ok(c)) => open_bounded(c).await,
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
        // Made here when there is none, by the server's own user.
        let access_key = crate::server_key::ServerKey::load(&config.access_key_file(), true)?;
        let write_memory = crate::state::WriteMemory::new(config.chunking.write_memory_mib << 20);
        let nuage = Nuage {
            write_memory,
            meta,
            store,
            chunker,
            seal,
            config,
            metrics: Metrics::default(),
            attempts: Default::default(),
            grants,
            replicas: Default::default(),
            access_key,
            open_failures: std::sync::Mutex::new(open_failures),
        };
        // A provider being drained takes no new chunk from the first request on.
        refresh_provider_states(&nuage).await?;
        crate::paces::follow_paces(&nuage).await?;
        Ok(nuage)
    }
}

/// Reads the providers' states from the database (a drain may be started by another
/// process: `nuage admin provider drain`) into the chunk store; returns the providers that
/// are not active, with their states (`draining` or `drained`).
///
/// The provider set follows the registry too: a provider added at run time (`nuage admin
/// provider add`) is opened and joins the store, one removed (`nuage admin provider
/// remove`) leaves it. A provider that fails to open is tried again on the next refresh.
pub async fn refresh_provider_states(nuage: &Nuage) -> nuage_meta::Result<Vec<(String, ProviderState)>> {
    let mut inactive = Vec::new();
    for r in nuage.meta.providers().await? {
        if r.state == ProviderState::Removed {
            nuage.open_failures.lock().expect("open failures lock").remove(&r.name);
            if nuage.store.remove_provider(&r.name).is_some() {
                tracing::info!("provider {} removed", r.name);
            }
            continue;
        }
        if let Some(config) = added_at_run_time(&r) {
            let failed_lately = |name: &str| {
                let failures = nuage.open_failures.lock().expect("open failures lock");
                failures.get(name).is_some_and(|at| at.elapsed() < REOPEN_AFTER)
            };
            let current = match &config {
                Ok(c) => nuage.store.provider(&r.name).is_some_and(|p| p.config() == c),
                Err(_) => false,
            };
            if !current && !failed_lately(&r.name) {
                let opened = match config {
                    Ok(c) => open_bounded(c).await,
                    Err(e) => Err(format!("{e:#}")),
                };
                match opened {
                    Ok(p) => {
                        p.set_draining(r.state != ProviderState::Active);
                        // Settings changed (removed and added again): the new ones.
                        nuage.store.remove_provider(&r.name);
                        if nuage.store.add_provider(p).is_ok() {
                            tracing::info!("provider {} added", r.name);
                        }
                        nuage.open_failures.lock().expect("open failures lock").remove(&r.name);
                    }
                    Err(e) => {
                        tracing::warn!(
                            "opening provider {} (added at run time): {e}; trying again in {} s",
                            r.name,
                            REOPEN_AFTER.as_secs()
                        );
                        let mut failures = nuage.open_failures.lock().expect("open failures lock");
                        failures.insert(r.name.clone(), Instant::now());
                    }
                }
            }
        }
        if let Some(p) = nuage.store.provider(&r.name) {
            p.set_draining(r.state != ProviderState::Active);
            if r.state != ProviderState::Active {
                inactive.push((r.name, r.state));
            }
        }
    }
    Ok(inactive)
}

/// Opens a provider added at run time, within [`OPEN_WITHIN`]: the registry's refresh (and
/// so the states of the others) waits for it.
pub async fn open_bounded(c: nuage_blob::ProviderConfig) -> Result<Provider, String> {
    match tokio::time::timeout(OPEN_WITHIN, Provider::open(c)).await {
        Ok(opened) => opened.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", OPEN_WITHIN.as_secs())),
    }
}
