//! The service endpoints: grant keys and edges (`/v1/grant-keys`, `/v1/edges`).

use serde::{Deserialize, Serialize};

/// A key that verifies grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantKeyView {
    /// Key id, as carried in grants.
    pub id: u32,
    /// Ed25519 public key, base64url.
    pub public_key: String,
    /// When it stopped signing (Unix ms); it verifies until its last grants expire.
    #[serde(default)]
    pub retired_at: Option<i64>,
}

/// An edge cache, as clients reach it; also how `[[edges]]` names one in the configuration
/// (where the service refuses keys it does not know).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeLink {
    /// Its base URL, e.g. `https://edge-eu.example.net`.
    pub url: String,
    /// Its region: clients configured with the same region use it first.
    #[serde(default)]
    pub region: Option<String>,
}

impl std::str::FromStr for EdgeLink {
    type Err = String;

    /// `URL` or `URL=REGION`.
    fn from_str(s: &str) -> Result<EdgeLink, String> {
        let (url, region) = match s.rsplit_once('=') {
            Some((u, r)) if !r.contains('/') => (u, Some(r.to_owned())),
            _ => (s, None),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{s:?}: an edge is URL or URL=REGION, with an http(s) URL"));
        }
        Ok(EdgeLink { url: url.trim_end_matches('/').to_owned(), region })
    }
}

/// The edge caches clients may read chunks through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeList {
    /// Edges with their regions; empty when the server knows none.
    pub edges: Vec<EdgeLink>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_is_a_url_with_an_optional_region() {
        let e: EdgeLink = "https://edge.example.net/=eu".parse().unwrap();
        assert_eq!(e, EdgeLink { url: "https://edge.example.net".into(), region: Some("eu".into()) });
        let e: EdgeLink = "http://h:9/a=b/c".parse().unwrap();
        assert_eq!(e.region, None, "a `=` inside the path is no region");
        assert!("edge.example.net".parse::<EdgeLink>().is_err());
    }
}
