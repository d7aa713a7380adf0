//! A bucket's CORS rules (what S3's PutBucketCors sets): which web origins may send which
//! requests to it from a browser, and what the answers then say to the browser. Kept as a
//! whole document (`bucket_configs`, kind `cors`), checked when set, matched as S3 matches
//! them: the first rule whose origins, methods and headers all allow the request.
//!
//! A browser's preflight (`OPTIONS`) carries no signature, and bucket names are an
//! account's own: the front finds the bucket by the access key the request names (a
//! presigned URL's `X-Amz-Credential`, or a signed request's `Authorization`), else as the
//! oldest bucket of that name ([`Nuage::cors_rules_for`]). The CORS headers only let a browser read an answer; the
//! request itself is checked as any other.

use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ServiceError, ServiceResult};
use crate::state::Nuage;

/// The kind under which the rules are kept.
const KIND: &str = "cors";

/// The most rules a bucket has (S3's limit).
pub const MAX_RULES: usize = 100;

/// The methods a rule may allow.
pub const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];

/// One rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    /// A label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Origins (`https://app.example`), each with at most one `*` standing for any text.
    pub allowed_origins: Vec<String>,
    /// Methods, of [`METHODS`].
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may name, each with at most one `*`; case does not count.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Answer headers the browser lets the page read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u32>,
}

/// What a request that a rule allows is answered with, besides its own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsAnswer {
    /// `Access-Control-Allow-Origin`: `*` when the rule allows any origin, else the origin.
    pub allow_origin: String,
    /// `Access-Control-Allow-Credentials: true` (not with `*`).
    pub allow_credentials: bool,
    /// `Access-Control-Allow-Methods` (preflight): the rule's methods.
    pub allow_methods: Vec<String>,
    /// `Access-Control-Allow-Headers` (preflight): the headers asked for.
    pub allow_headers: Vec<String>,
    /// `Access-Control-Expose-Headers`.
    pub expose_headers: Vec<String>,
    /// `Access-Control-Max-Age` (preflight).
    pub max_age_secs: Option<u32>,
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid("invalid_cors", message)
}

/// Whether `text` matches `pattern`, a text with at most one `*` standing for any text.
fn wildcard(pattern: &str, text: &str, fold_case: bool) -> bool {
    let (pattern, text) = if fold_case {
        (pattern.to_ascii_lowercase(), text.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), text.to_owned())
    };
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.len() >= head.len() + tail.len() && text.starts_with(head) && text.ends_with(tail)
        }
    }
}

/// Checks rules as S3 does: 1 to [`MAX_RULES`], each with an origin and a method, methods
/// of [`METHODS`], at most one `*` in an origin or a header, no control character.
pub fn check(rules: &[CorsRule]) -> ServiceResult<()> {
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(invalid(format!("a CORS configuration has 1 to {MAX_RULES} rules")));
    }
    for r in rules {
        if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
            return Err(invalid("each CORS rule names at least one origin and one method"));
        }
        if let Some(m) = r.allowed_methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
            return Err(invalid(format!(
                "{m:?} is not a method a CORS rule can allow (GET, PUT, POST, DELETE, HEAD)"
            )));
        }
        let texts = r.allowed_origins.iter().chain(&r.allowed_headers);
        if let Some(t) = texts.clone().find(|t| t.matches('*').count() > 1) {
            return Err(invalid(format!("{t:?} has more than one *")));
        }
        let all = texts.chain(&r.expose_headers).chain(r.id.iter());
        if all.clone().any(|t| t.is_empty() || t.len() > 1024 || t.chars().any(char::is_control)) {
            return Err(invalid("a CORS origin, header or id is empty, too long or has a control character"));
        }
    }
    Ok(())
}

/// The first of `rules` that allows a request from `origin` by `method` naming
/// `headers` (a preflight's `Access-Control-Request-Headers`; none for the request itself),
/// and what to answer.
pub fn allow(rules: &[CorsRule], origin: &str, method: &str, headers: &[&str]) -> Option<CorsAnswer> {
    let rule = rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard(o, origin, false))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| r.allowed_headers.iter().any(|a| wildcard(a, h, true)))
    })?;
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    Some(CorsAnswer {
        allow_origin: if any { "*".to_owned() } else { origin.to_owned() },
        allow_credentials: !any,
        allow_methods: rule.allowed_methods.clone(),
        allow_headers: headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        expose_headers: rule.expose_headers.clone(),
        max_age_secs: rule.max_age_secs,
    })
}

impl Nuage {
    /// The CORS rules of the caller's `bucket` (none: it has none).
    pub async fn cors(&self, caller: Caller, bucket: &str) -> ServiceResult<Option<Vec<CorsRule>>> {
        let b = self.meta.bucket(caller.account_id, bucket).await?;
        self.bucket_document(b.id, KIND).await
    }

    /// Sets the CORS rules of the caller's `bucket` (checked: `invalid_cors`), or with none
    /// removes them.
    pub async fn set_cors(
        &self,
        caller: Caller,
        bucket: &str,
        rules: Option<&[CorsRule]>,
    ) -> ServiceResult<()> {
        if let Some(rules) = rules {
            check(rules)?;
        }
        self.set_bucket_document(caller, bucket, KIND, rules).await
    }

    /// The CORS rules of bucket `name` as a request that may carry no signature finds it:
    /// of the account of `access_key` (an active key), or, with none, the oldest bucket of
    /// this name (so that an account making a bucket of a name already taken elsewhere
    /// cannot change what browsers are told of the first). None when there is no such
    /// bucket or it has no rules.
    pub async fn cors_rules_for(
        &self,
        access_key: Option<&str>,
        name: &str,
    ) -> ServiceResult<Option<Vec<CorsRule>>> {
        let bucket = match access_key {
            Some(id) => {
                let Some(key) = self.meta.access_key(id).await?.filter(|k| k.revoked_at.is_none()) else {
                    return Ok(None);
                };
                match self.meta.bucket(key.account_id, name).await {
                    Ok(b) => b,
                    Err(nuage_meta::Error::BucketNotFound) => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
            None => match self.meta.oldest_bucket_named(name).await? {
                Some(b) => b,
                None => return Ok(None),
            },
        };
        self.bucket_document(bucket.id, KIND).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            expose_headers: vec!["ETag".into()],
            max_age_secs: Some(600),
            id: None,
        }
    }

    #[test]
    fn the_first_rule_that_allows_origin_method_and_headers_answers() {
        let rules = [
            rule(&["https://app.example"], &["PUT", "GET"], &["content-type", "x-amz-*"]),
            rule(&["https://*.example.org"], &["GET"], &[]),
            rule(&["*"], &["HEAD"], &["*"]),
        ];
        let a = allow(&rules, "https://app.example", "PUT", &["Content-Type", "x-amz-date"]).unwrap();
        assert_eq!((a.allow_origin.as_str(), a.allow_credentials), ("https://app.example", true));
        assert_eq!(a.allow_methods, ["PUT", "GET"]);
        assert_eq!(a.allow_headers, ["content-type", "x-amz-date"]);
        assert!(allow(&rules, "https://app.example", "DELETE", &[]).is_none(), "method not allowed");
        assert!(
            allow(&rules, "https://app.example", "PUT", &["authorization"]).is_none(),
            "header not allowed"
        );
        assert!(allow(&rules, "https://evil.example", "PUT", &[]).is_none(), "origin not allowed");
        assert!(allow(&rules, "https://app.example.evil", "GET", &[]).is_none(), "no prefix match");
        assert!(allow(&rules, "https://a.example.org", "GET", &[]).is_some());
        assert!(allow(&rules, "http://a.example.org", "GET", &[]).is_none(), "another scheme");
        let any = allow(&rules, "https://anywhere", "HEAD", &["whatever"]).unwrap();
        assert_eq!((any.allow_origin.as_str(), any.allow_credentials), ("*", false));
    }

    #[test]
    fn rules_are_checked_as_s3_checks_them() {
        assert!(check(&[rule(&["*"], &["GET"], &[])]).is_ok());
        assert!(check(&[]).is_err());
        assert!(check(&[rule(&[], &["GET"], &[])]).is_err());
        assert!(check(&[rule(&["*"], &["PATCH"], &[])]).is_err());
        assert!(check(&[rule(&["https://*.*.example"], &["GET"], &[])]).is_err());
        assert!(check(&[rule(&["https://a\u{0}"], &["GET"], &[])]).is_err());
        assert!(check(&vec![rule(&["*"], &["GET"], &[]); MAX_RULES + 1]).is_err());
    }
}
