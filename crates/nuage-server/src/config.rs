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

use crate::listener::HttpConfig;

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8420`).
    pub listen: SocketAddr,
    /// Timeouts and the connection cap of the port.
    pub http: HttpConfig,
    /// Every other key of the file: the service's settings.
    pub service: ServiceConfig,
}

impl<'de> Deserialize<'de> for ServerConfig {
    /// The file as one table: `listen` and `[http]` are taken out, and the rest is the
    /// service's, which refuses a key it does not know. (`#[serde(flatten)]` would let a
    /// typo through: a flattened struct is handed only the keys it names.)
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let mut config = ServerConfig::default();
        if let Some(v) = table.remove("listen") {
            config.listen = v.try_into().map_err(|e| D::Error::custom(format!("listen: {e}")))?;
        }
        if let Some(v) = table.remove("http") {
            config.http = v.try_into().map_err(|e| D::Error::custom(format!("[http]: {e}")))?;
        }
        config.service = toml::Value::Table(table).try_into().map_err(D::Error::custom)?;
        Ok(config)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8420)),
            http: HttpConfig::default(),
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

    /// Applies `NUAGE_LISTEN`, `NUAGE_DATA_DIR` and `NUAGE_DATABASE_URL` when set.
    pub fn apply_env(&mut self) -> Result<()> {
        if let Some(v) = std::env::var("NUAGE_LISTEN").ok().filter(|v| !v.is_empty()) {
            self.listen = v.parse().with_context(|| format!("NUAGE_LISTEN={v}"))?;
        }
        self.service.apply_env();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_and_the_service_share_one_file_and_typos_are_refused() {
        let c: ServerConfig = toml::from_str("").unwrap();
        assert_eq!(c.listen.port(), 8420);
        assert_eq!(c.service.database_url(), "sqlite:./nuage-data/meta.db");
        let c: ServerConfig = toml::from_str(
            "listen = '127.0.0.1:9000'\ndata_dir = '/srv/nuage'\n[http]\nheader_timeout_secs = 5\n[buckets]\nreplicas = 2",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.http.header_timeout_secs, 5);
        assert_eq!(c.service.data_dir, std::path::PathBuf::from("/srv/nuage"));
        assert_eq!(c.service.buckets.replicas, 2);
        for typo in ["listn = '1.2.3.4:5'", "[buckets]\nreplica = 2", "[http]\nheader_timeout = 5"] {
            assert!(toml::from_str::<ServerConfig>(typo).is_err(), "{typo}");
        }
    }
}
