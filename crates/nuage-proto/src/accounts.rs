//! Logins, tokens and the account (`/v1/login`, `/v1/tokens`, `/v1/account`).

use serde::{Deserialize, Serialize};

/// `POST /v1/login` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Account name.
    pub account: String,
    /// Its password.
    pub password: String,
    /// A label for the token (default "login").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
}

/// A token as returned once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    /// The secret text: shown only now.
    pub token: String,
    /// Its id, to revoke it.
    pub id: i64,
    /// Expiry, Unix ms.
    pub expires_at: Option<i64>,
}

/// The account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    /// Account name.
    pub name: String,
    /// Quota on stored bytes, if any.
    pub quota_bytes: Option<u64>,
    /// Stored bytes charged to the account.
    pub used_bytes: u64,
    /// Sequence number of the account's last change.
    #[serde(default)]
    pub change_seq: i64,
}

/// `POST /v1/tokens` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A label for the token (default "api").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A token as listed (never its secret text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    /// Its id.
    pub id: i64,
    /// Its label.
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub expires_at: Option<i64>,
    /// Unix ms.
    pub revoked_at: Option<i64>,
    /// The token of this request.
    pub current: bool,
}

/// `GET /v1/tokens` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    /// Newest first.
    pub tokens: Vec<TokenView>,
}

/// `POST /v1/access-keys` body: an S3 access key of the caller's account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AccessKeyRequest {
    /// A label for the key (default "s3").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The only bucket it may reach; none: every bucket of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// It may only read.
    #[serde(default)]
    pub read_only: bool,
}

/// An S3 access key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessKeyView {
    /// Its id (the S3 access key id).
    pub id: String,
    /// Its label.
    pub name: String,
    /// The only bucket it reaches, if it is limited to one.
    pub bucket: Option<String>,
    /// It may only read.
    pub read_only: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub revoked_at: Option<i64>,
}

/// An S3 access key as returned once, at creation: with its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewAccessKey {
    /// The key.
    #[serde(flatten)]
    pub key: AccessKeyView,
    /// The secret: shown only now.
    pub secret: String,
}

/// `GET /v1/access-keys` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessKeyList {
    /// Newest first, revoked ones included.
    pub access_keys: Vec<AccessKeyView>,
}
