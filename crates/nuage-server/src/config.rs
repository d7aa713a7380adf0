//! The server's TOML configuration file: the port of the `/v1` API (`listen`, `[http]`) and
//! the service's settings ([`ServiceConfig`], every other table). Every field is optional;
//! `docs/configuration.md` lists them with their defaults. Environment variables override
//! the file (see [`ServerConfig::apply_env`]).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
pub use nuage_proto::EdgeLink;
pub use nuage_service::config::{BucketDefaults, ChunkingConfig, GrantsConfig, ServiceConfig, WorkersConfig};
use serde::Deserialize;

use nuage_http::HttpConfig;

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8420`).
    pub listen: SocketAddr,
    /// Timeouts and the connection cap of the port.
    pub http: HttpConfig,
    /// `[s3]`: the S3 endpoint (off in a file that does not set `[s3] listen`; on at
    /// `127.0.0.1:8430` in the embedded default).
    pub s3: nuage_s3::S3Config,
    /// Every other key of the file: the service's settings.
    pub service: ServiceConfig,
}

impl<'de> Deserialize<'de> for ServerConfig {
    /// The file's keys, each where it belongs: `listen` and `[http]` to the port, the rest
    /// to the service. Read through [`FileKeys`], which names every key, so that a typo is
    /// refused with its line and the list of the keys there are (`#[serde(flatten)]` would
    /// let it through: a flattened struct is handed only the keys it names). `[http]` is
    /// checked as it is read.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let f = FileKeys::deserialize(d)?;
        f.http.validate().map_err(|e| serde::de::Error::custom(format!("{e:#}")))?;
        f.s3.validate().map_err(|e| serde::de::Error::custom(format!("{e:#}")))?;
        Ok(ServerConfig {
            listen: f.listen,
            http: f.http,
            s3: f.s3,
            service: ServiceConfig {
                data_dir: f.data_dir,
                database_url: f.database_url,
                token_ttl_days: f.token_ttl_days,
                providers: f.providers,
                buckets: f.buckets,
                chunking: f.chunking,
                grants: f.grants,
                edges: f.edges,
                workers: f.workers,
                access_key_file: f.access_key_file,
            },
        })
    }
}

/// Every key of the file, as [`ServerConfig`] reads it; the service's keys mean what
/// [`ServiceConfig`] says, with its defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    s3: nuage_s3::S3Config,
    #[serde(default = "defaults::data_dir")]
    data_dir: std::path::PathBuf,
    #[serde(default)]
    database_url: Option<String>,
    #[serde(default = "defaults::token_ttl_days")]
    token_ttl_days: u32,
    #[serde(default)]
    providers: Vec<nuage_blob::ProviderConfig>,
    #[serde(default)]
    buckets: BucketDefaults,
    #[serde(default)]
    chunking: ChunkingConfig,
    #[serde(default)]
    grants: GrantsConfig,
    #[serde(default, deserialize_with = "nuage_service::config::edges")]
    edges: Vec<EdgeLink>,
    #[serde(default)]
    workers: WorkersConfig,
    #[serde(default)]
    access_key_file: Option<std::path::PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8420))
}

/// The service's defaults of the keys that have no `Default` of their own type.
mod defaults {
    pub(super) fn data_dir() -> std::path::PathBuf {
        nuage_service::ServiceConfig::default().data_dir
    }
    pub(super) fn token_ttl_days() -> u32 {
        nuage_service::ServiceConfig::default().token_ttl_days
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            http: HttpConfig::default(),
            s3: nuage_s3::S3Config { listen: Some(nuage_s3::DEFAULT_LISTEN), ..Default::default() },
            service: ServiceConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Applies `NUAGE_LISTEN`, `NUAGE_S3_LISTEN` (an address, or `off`), `NUAGE_DATA_DIR`
    /// and `NUAGE_DATABASE_URL` when set.
    pub fn apply_env(&mut self) -> Result<()> {
        if let Some(v) = std::env::var("NUAGE_LISTEN").ok().filter(|v| !v.is_empty()) {
            self.listen = v.parse().with_context(|| format!("NUAGE_LISTEN={v}"))?;
        }
        if let Some(v) = std::env::var("NUAGE_S3_LISTEN").ok().filter(|v| !v.is_empty()) {
            self.s3.listen = parse_s3_listen(&v).with_context(|| format!("NUAGE_S3_LISTEN={v}"))?;
        }
        self.service.apply_env();
        Ok(())
    }
}

/// An S3 listen address as the command line and the environment give it: an address, or
/// `off` for none.
pub fn parse_s3_listen(v: &str) -> Result<Option<SocketAddr>> {
    if v == "off" { Ok(None) } else { Ok(Some(v.parse().context("an address (IP:PORT) or `off`")?)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_and_the_service_share_one_file_and_typos_are_refused() {
        let c: ServerConfig = toml::from_str("").unwrap();
        assert_eq!(c.listen.port(), 8420);
        assert_eq!(c.s3.listen, None, "a file without [s3] listen has no S3 endpoint");
        assert_eq!(ServerConfig::default().s3.listen, Some(nuage_s3::DEFAULT_LISTEN));
        assert_eq!(c.service.database_url(), "sqlite:./nuage-data/meta.db");
        let c: ServerConfig = toml::from_str(
            "listen = '127.0.0.1:9000'\ndata_dir = '/srv/nuage'\n[http]\nheader_timeout_secs = 5\n[buckets]\nreplicas = 2",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.http.header_timeout_secs, 5);
        assert_eq!(c.service.data_dir, std::path::PathBuf::from("/srv/nuage"));
        assert_eq!(c.service.buckets.replicas, 2);
        let c: ServerConfig =
            toml::from_str("[s3]\nlisten = '127.0.0.1:9001'\ndomain = 's3.example.org'").unwrap();
        assert_eq!(
            (c.s3.listen.map(|a| a.port()), c.s3.domain.as_deref()),
            (Some(9001), Some("s3.example.org"))
        );
        for typo in [
            "listn = '1.2.3.4:5'",
            "[buckets]\nreplica = 2",
            "[http]\nheader_timeout = 5",
            "[s3]\nlisten_on = '127.0.0.1:1'",
        ] {
            assert!(toml::from_str::<ServerConfig>(typo).is_err(), "{typo}");
        }
        // A typo is shown where it is, with the keys there are, the port's among them.
        let e =
            toml::from_str::<ServerConfig>("data_dir = '/d'\nlistn = '1.2.3.4:5'").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("`listen`") && e.contains("`workers`"), "{e}");
        let e =
            toml::from_str::<ServerConfig>("[buckets]\nreplicas = 1\nreplica = 2").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("`replicas`"), "{e}");
        // [http] is checked as it is read.
        assert!(toml::from_str::<ServerConfig>("[http]\nheader_timeout_secs = 0").is_err());
    }
}
