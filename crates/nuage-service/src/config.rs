//! The service's part of the configuration file: everything but the fronts' ports (those
//! are `nuage-server`'s `ServerConfig`, which holds this one). Every field is optional;
//! `docs/configuration.md` lists them with their defaults. Environment variables override
//! the file (see [`ServiceConfig::apply_env`]).

pub use nuage_proto::EdgeLink;
use std::path::PathBuf;

use anyhow::{Context, Result};
use nuage_blob::{Placement, ProviderConfig, ProviderKind};
use nuage_core::ChunkerConfig;
use nuage_core::chunk::{Compression, SealOptions};
use serde::Deserialize;

/// The service's settings: the configuration file without the ports of the fronts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Data folder: the SQLite database and the default local provider (default `./nuage-data`).
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…` (default: `sqlite:<data_dir>/meta.db`).
    pub database_url: Option<String>,
    /// Lifetime of tokens made by `login`, in days (default 90).
    pub token_ttl_days: u32,
    /// Providers (default: one local folder, `<data_dir>/chunks`).
    pub providers: Vec<ProviderConfig>,
    /// Defaults of new buckets.
    pub buckets: BucketDefaults,
    /// Chunk sizes and compression.
    pub chunking: ChunkingConfig,
    /// Signed grants for chunk transfers.
    pub grants: GrantsConfig,
    /// Edge caches clients may read chunks through (`nuage edge`), listed at `/v1/edges`.
    #[serde(deserialize_with = "edges")]
    pub edges: Vec<EdgeLink>,
    /// Background workers (scrub, repair).
    pub workers: WorkersConfig,
    /// The file of the server's key that seals S3 access keys' secrets in the database
    /// (default `<data_dir>/access-keys.key`, made by the server when it first starts).
    /// Every server of one database must read the same key.
    pub access_key_file: Option<PathBuf>,
}

/// Background workers: when they run and how fast.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Seconds from the start of one scrub pass to the start of the next (default 604800, a
    /// week); 0 turns the background scrub off (`nuage admin scrub` still runs one).
    pub scrub_every_secs: u64,
    /// Bytes per second a scrub reads from the providers (default 50 MB/s).
    pub scrub_bytes_per_sec: u64,
    /// Seconds from the start of one repair pass to the start of the next (default 3600);
    /// 0 turns the background repair off.
    pub repair_every_secs: u64,
    /// Bytes per second a repair reads and writes (default 50 MB/s).
    pub repair_bytes_per_sec: u64,
    /// Seconds from the start of one garbage collection to the start of the next (default
    /// 86400, a day); 0 turns the background collector off (`nuage admin gc` still runs one).
    pub gc_every_secs: u64,
    /// Seconds a chunk stays after the last version referencing it is gone, before the
    /// collector deletes it from every provider (default 86400).
    pub gc_grace_secs: u64,
    /// Chunks per second the collector deletes at most (default 200).
    pub gc_deletes_per_sec: u64,
    /// Bytes per second a drain reads and writes, moving chunks off a provider (default
    /// 50 MB/s; 0: as fast as it goes).
    pub migrate_bytes_per_sec: u64,
    /// Seconds an upload may take from storing its first chunk to its commit (default
    /// 21600, six hours). Its chunks are leased for that long, and the collector never
    /// deletes a leased chunk; an upload that takes longer is refused at its commit
    /// (`upload_lease_expired`). The leases of an upload cut short by a crash last that long
    /// too, keeping its chunks from the collector. At least 120.
    pub upload_lease_secs: u64,
    /// Seconds an S3 multipart upload lives past its start or its last part (default
    /// 604800, a week): its parts' chunks are leased and their room held on the account's
    /// quota until it completes, is aborted, or stays idle that long (then the collector
    /// takes them). At least 120.
    pub multipart_idle_secs: u64,
    /// Seconds between two passes of the buckets' lifecycle rules (default 3600; 0: none).
    pub lifecycle_every_secs: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            scrub_every_secs: 604_800,
            scrub_bytes_per_sec: 50_000_000,
            repair_every_secs: 3600,
            repair_bytes_per_sec: 50_000_000,
            gc_every_secs: 86_400,
            gc_grace_secs: 86_400,
            gc_deletes_per_sec: 200,
            migrate_bytes_per_sec: 50_000_000,
            upload_lease_secs: 21_600,
            multipart_idle_secs: 604_800,
            lifecycle_every_secs: 3600,
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            data_dir: PathBuf::from("./nuage-data"),
            database_url: None,
            token_ttl_days: 90,
            providers: Vec::new(),
            buckets: BucketDefaults::default(),
            chunking: ChunkingConfig::default(),
            grants: GrantsConfig::default(),
            edges: Vec::new(),
            workers: WorkersConfig::default(),
            access_key_file: None,
        }
    }
}

/// Grants: the signed, short-lived permissions devices present to put or get one chunk.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsConfig {
    /// Lifetime of a grant, in seconds (default 3600).
    pub ttl_secs: u64,
    /// A new signing key is made when the current one is this many days old (default 30).
    /// Retired keys keep verifying for one grant lifetime, so grants in flight stay valid.
    pub key_rotation_days: u32,
    /// How long a smart upload may take between its start and its commit, in seconds
    /// (default 86400).
    pub upload_ttl_secs: u64,
}

impl Default for GrantsConfig {
    fn default() -> Self {
        GrantsConfig { ttl_secs: 3600, key_rotation_days: 30, upload_ttl_secs: 86_400 }
    }
}

/// What a bucket gets when its creator does not say.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BucketDefaults {
    /// Copies of each chunk on distinct providers (default 1).
    pub replicas: u32,
    /// Copies stored before a write succeeds (default: `replicas`).
    pub write_quorum: Option<u32>,
    /// Versions kept per key, 0 for all (default 10).
    pub keep_versions: u32,
}

impl Default for BucketDefaults {
    fn default() -> Self {
        BucketDefaults { replicas: 1, write_quorum: None, keep_versions: 10 }
    }
}

impl BucketDefaults {
    /// The default placement.
    pub fn placement(&self) -> Placement {
        Placement::replicas(self.replicas as usize)
            .with_quorum(self.write_quorum.unwrap_or(self.replicas) as usize)
    }
}

/// Chunk sizes (bytes) and compression.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingConfig {
    /// Smallest chunk (default 256 KiB).
    pub min_size: usize,
    /// Target average chunk (default 1 MiB).
    pub avg_size: usize,
    /// Largest chunk (default 4 MiB).
    pub max_size: usize,
    /// zstd level, 0 for no compression (default 1).
    pub zstd_level: i32,
    /// MiB of chunks between their cutting and their storing, across all the writes of a
    /// server (default 32, 1 ..= 4096).
    pub write_memory_mib: usize,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        let c = ChunkerConfig::default();
        ChunkingConfig {
            min_size: c.min_size,
            avg_size: c.avg_size,
            max_size: c.max_size,
            zstd_level: 1,
            write_memory_mib: 32,
        }
    }
}

impl ChunkingConfig {
    /// The chunker settings, validated.
    pub fn chunker(&self) -> Result<ChunkerConfig> {
        let c = ChunkerConfig { min_size: self.min_size, avg_size: self.avg_size, max_size: self.max_size };
        c.validate().context("[chunking]")?;
        Ok(c)
    }

    /// The seal options.
    pub fn seal(&self) -> SealOptions {
        let compression =
            if self.zstd_level == 0 { Compression::None } else { Compression::Zstd(self.zstd_level) };
        SealOptions { compression }
    }
}

impl ServiceConfig {
    /// Applies `NUAGE_DATA_DIR` and `NUAGE_DATABASE_URL` when set.
    pub fn apply_env(&mut self) {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = var("NUAGE_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("NUAGE_DATABASE_URL") {
            self.database_url = Some(v);
        }
    }

    /// The file of the key that seals access keys' secrets (`access_key_file`, else in the
    /// data folder).
    pub fn access_key_file(&self) -> PathBuf {
        self.access_key_file.clone().unwrap_or_else(|| self.data_dir.join("access-keys.key"))
    }

    /// The database URL, defaulting to SQLite in the data folder.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("meta.db").display()))
    }

    /// The providers, defaulting to one local folder in the data folder.
    pub fn providers(&self) -> Vec<ProviderConfig> {
        if self.providers.is_empty() {
            vec![ProviderConfig::new("local", ProviderKind::Fs { root: self.data_dir.join("chunks") })]
        } else {
            self.providers.clone()
        }
    }
}

/// `[[edges]]`: each an `EdgeLink` with no key but `url` and `region`. (The wire's
/// `EdgeLink` takes fields it does not know, as a client reading a newer server must; the
/// file refuses them, as a typo.)
pub fn edges<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<EdgeLink>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        url: String,
        #[serde(default)]
        region: Option<String>,
    }
    let entries = Vec::<Entry>::deserialize(d)?;
    Ok(entries.into_iter().map(|e| EdgeLink { url: e.url, region: e.region }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults_and_typos_are_refused() {
        let c: ServiceConfig = toml::from_str("").unwrap();
        assert_eq!(c.database_url(), "sqlite:./nuage-data/meta.db");
        assert_eq!(c.providers()[0].kind.scheme(), "fs");
        assert_eq!(c.buckets.placement(), Placement::replicas(1));
        let c: ServiceConfig =
            toml::from_str("[buckets]\nreplicas = 2\nwrite_quorum = 1\n[chunking]\nzstd_level = 0").unwrap();
        assert_eq!(c.buckets.placement(), Placement::replicas(2).with_quorum(1));
        assert_eq!(c.chunking.seal().compression, Compression::None);
        assert!(toml::from_str::<ServiceConfig>("[buckets]\nreplica = 2").is_err());
        let c: ServiceConfig =
            toml::from_str("[[edges]]\nurl = 'http://e:1'\nregion = 'eu'\n[[edges]]\nurl = 'http://f'")
                .unwrap();
        assert_eq!(c.edges[0], "http://e:1=eu".parse().unwrap());
        assert_eq!(c.edges[1], "http://f/".parse().unwrap());
        assert!(toml::from_str::<ServiceConfig>("[[edges]]\nurl = 'http://e'\nregon = 'eu'").is_err());
    }
}
