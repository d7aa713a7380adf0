//! Objects and their versions (`/v1/buckets/{bucket}/objects`, `/versions`).

use serde::{Deserialize, Serialize};

/// An object version as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionView {
    /// Object key.
    pub key: String,
    /// Version id.
    pub version: i64,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Whole-file BLAKE3, hex (none for a tombstone).
    pub etag: Option<String>,
    /// `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// A delete marker (sent only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tombstone: bool,
}

/// What a `PUT` (or a restore) made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutAnswer {
    /// Bucket name.
    #[serde(default)]
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The version made (or found, if `replayed`).
    pub version: i64,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Whole-file BLAKE3, hex.
    pub etag: String,
    /// An earlier request with the same `Idempotency-Key` made this version.
    pub replayed: bool,
}

/// `?version=ID` on object reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct VersionQuery {
    /// A version id (default: the current version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `POST /v1/buckets/{bucket}/versions/{key}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The version to bring back (from the version list); a version behind a tombstone
    /// undeletes the key.
    pub version: i64,
}

/// Listing parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ListQuery {
    /// Only keys that start with this.
    #[serde(default)]
    pub prefix: String,
    /// Roll keys up to their common prefix at this delimiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Entries per page at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `next_page_token` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListingView {
    /// Live objects, in key order.
    pub objects: Vec<VersionView>,
    /// Common prefixes, ending with the delimiter.
    pub prefixes: Vec<String>,
    /// Pass back as `page_token` for the next page.
    pub next_page_token: Option<String>,
}

/// `GET /v1/buckets/{bucket}/versions/{key}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionList {
    /// Newest first, tombstones included.
    pub versions: Vec<VersionView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_says_tombstone_only_when_it_is_one() {
        let mut v = VersionView {
            key: "a/b".into(),
            version: 7,
            size: 3,
            etag: Some("ab".into()),
            content_type: None,
            created_at: 1,
            tombstone: false,
        };
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("tombstone"), "{text}");
        assert_eq!(serde_json::from_str::<VersionView>(&text).unwrap(), v);
        v.tombstone = true;
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains("\"tombstone\":true"), "{text}");
        assert_eq!(serde_json::from_str::<VersionView>(&text).unwrap(), v);
    }

    #[test]
    fn query_strings_leave_out_what_is_not_set() {
        let q = ListQuery { prefix: "p/".into(), limit: Some(5), ..ListQuery::default() };
        assert_eq!(serde_json::to_value(&q).unwrap(), serde_json::json!({"prefix": "p/", "limit": 5}));
    }
}
