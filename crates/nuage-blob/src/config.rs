//! Provider configuration, as it appears in nuage's TOML file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A credential: deserialized from configuration, never printed in logs or messages. It is
/// serialized as it is, for the link server's database, which keeps the settings of the
/// providers added at run time (`nuage admin provider add`) next to the chunk keys.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// One provider of chunk storage.
///
/// ```toml
/// [[providers]]
/// name = "local"
/// scheme = "fs"
/// root = "./nuage-data/chunks"
///
/// [[providers]]
/// name = "s3-eu"
/// scheme = "s3"
/// bucket = "nuage-chunks"
/// endpoint = "https://s3.eu-west-3.amazonaws.com"
/// region = "eu-west-3"
/// access_key_id = "..."
/// secret_access_key = "..."
/// ```
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct ProviderConfig {
    /// A unique name, used in placements and logs.
    pub name: String,
    /// Where the provider is: for S3, the signing region (default `us-east-1`); for the
    /// others a label (informational for now).
    #[serde(default)]
    pub region: Option<String>,
    /// Relative share of new chunks this provider receives (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Time limit of one operation, in seconds (default 30).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The service and its settings.
    #[serde(flatten)]
    pub kind: ProviderKind,
}

fn default_weight() -> u32 {
    1
}

fn default_timeout_secs() -> u64 {
    30
}

impl ProviderConfig {
    /// A provider named `name` of the given kind, with default weight and timeout.
    pub fn new(name: impl Into<String>, kind: ProviderKind) -> Self {
        ProviderConfig {
            name: name.into(),
            region: None,
            weight: default_weight(),
            timeout_secs: default_timeout_secs(),
            kind,
        }
    }

    /// The same provider with another operation time limit, in seconds.
    pub fn with_timeout(self, timeout_secs: u64) -> Self {
        ProviderConfig { timeout_secs, ..self }
    }

    /// The operation time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

/// The service behind a provider, selected by `scheme` in TOML.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "scheme", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderKind {
    /// Process memory: lost on exit. For tests.
    Memory,
    /// A local folder; created if missing.
    Fs {
        /// The folder.
        root: PathBuf,
    },
    /// Any S3-compatible service (path-style requests).
    S3 {
        /// The bucket, which must exist.
        bucket: String,
        /// Service URL, e.g. `https://s3.eu-west-3.amazonaws.com` or `http://127.0.0.1:9000`.
        endpoint: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
        /// Folder inside the bucket (default: the bucket's root).
        #[serde(default)]
        root: Option<String>,
    },
    /// Azure Blob Storage (or Azurite).
    Azblob {
        /// The container, which must exist.
        container: String,
        /// Service URL, e.g. `https://ACCOUNT.blob.core.windows.net` or
        /// `http://127.0.0.1:10000/devstoreaccount1`.
        endpoint: String,
        /// Storage account name.
        account_name: String,
        /// Storage account key (base64).
        account_key: Secret,
        /// Folder inside the container (default: the container's root).
        #[serde(default)]
        root: Option<String>,
    },
}

impl ProviderKind {
    /// The scheme name, as written in configuration.
    pub fn scheme(&self) -> &'static str {
        match self {
            ProviderKind::Memory => "memory",
            ProviderKind::Fs { .. } => "fs",
            ProviderKind::S3 { .. } => "s3",
            ProviderKind::Azblob { .. } => "azblob",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        providers: Vec<ProviderConfig>,
    }

    #[test]
    fn parses_every_scheme_and_hides_secrets() {
        let f: File = toml::from_str(
            r#"
            [[providers]]
            name = "mem"
            scheme = "memory"

            [[providers]]
            name = "local"
            scheme = "fs"
            root = "/tmp/x"
            weight = 2

            [[providers]]
            name = "s3"
            scheme = "s3"
            bucket = "b"
            endpoint = "http://127.0.0.1:9000"
            access_key_id = "ak"
            secret_access_key = "very-secret"

            [[providers]]
            name = "az"
            scheme = "azblob"
            container = "c"
            endpoint = "http://127.0.0.1:10000/devstoreaccount1"
            account_name = "devstoreaccount1"
            account_key = "a2V5"
            root = "nuage"
            "#,
        )
        .unwrap();
        let schemes: Vec<_> = f.providers.iter().map(|p| p.kind.scheme()).collect();
        assert_eq!(schemes, ["memory", "fs", "s3", "azblob"]);
        assert_eq!(f.providers[1].weight, 2);
        let printed = format!("{:?}", f.providers);
        assert!(!printed.contains("very-secret") && !printed.contains("a2V5"), "{printed}");
    }

    #[test]
    fn the_s3_region_is_the_provider_region_and_settings_survive_a_json_round_trip() {
        let f: File = toml::from_str(
            r#"
            [[providers]]
            name = "s3"
            scheme = "s3"
            bucket = "b"
            endpoint = "https://s3.eu-west-3.amazonaws.com"
            region = "eu-west-3"
            access_key_id = "ak"
            secret_access_key = "very-secret"
            root = "nuage/"

            [[providers]]
            name = "az"
            scheme = "azblob"
            container = "c"
            endpoint = "http://127.0.0.1:10000/devstoreaccount1"
            account_name = "devstoreaccount1"
            account_key = "a2V5"
            weight = 3
            timeout_secs = 5

            [[providers]]
            name = "local"
            scheme = "fs"
            root = "/srv/nuage"
            "#,
        )
        .unwrap();
        assert_eq!(f.providers[0].region.as_deref(), Some("eu-west-3"));
        for p in &f.providers {
            let json = serde_json::to_string(p).unwrap();
            let back: ProviderConfig = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(&back, p);
        }
    }

    #[test]
    fn rejects_unknown_scheme_and_missing_fields() {
        for bad in [
            "[[providers]]\nname = 'x'\nscheme = 'ftp'",
            "[[providers]]\nname = 'x'\nscheme = 's3'\nbucket = 'b'",
            "[[providers]]\nname = 'x'\nscheme = 'fs'\nroot = '/a'\nbucket = 'typo'",
        ] {
            assert!(toml::from_str::<File>(bad).is_err(), "{bad}");
        }
    }
}
