//! nuage's S3 front end: the S3 API on a port of its own, a thin adapter over the object
//! service ([`nuage_service`]). [`s3s`] reads the requests, checks their signatures (SigV4
//! headers, presigned URLs, `aws-chunked` bodies and their signed trailers) and writes the
//! answers; this crate only maps each operation to the service's call and its errors to
//! S3's codes. No rule of puts, lists or commits lives here: an S3 write is the same
//! streaming write as a `/v1` `PUT`, and answers to the same conditions.
//!
//! Who may do what: a request is signed with an access key of an account (made with `nuage
//! admin key create`); the key may be limited to one bucket and to reads ([`keys`]).
//!
//! `docs/s3.md` lists each S3 operation as supported, partly or not.

#![deny(missing_docs)]

mod cors;
mod errors;
mod front;
pub mod keys;
mod lifecycle;
mod multipart;
mod versions;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::response::IntoResponse;
use nuage_service::Nuage;
use serde::Deserialize;

/// `[s3]`: the S3 endpoint.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Address of the S3 port; none: no S3 endpoint. A configuration file without it has
    /// none; the embedded default (no file) listens on [`DEFAULT_LISTEN`].
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The domain of virtual-hosted addressing (`BUCKET.DOMAIN`); path-style addressing
    /// (`DOMAIN/BUCKET`) works with or without it.
    #[serde(default)]
    pub domain: Option<String>,
    /// The region the endpoint names itself (GetBucketLocation, signatures may use any).
    #[serde(default)]
    pub region: Option<String>,
}

/// The S3 port of the embedded default.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8430);

/// The region reported when `[s3] region` is not set.
pub const DEFAULT_REGION: &str = "us-east-1";

impl S3Config {
    /// Refuses a domain that virtual-hosted addressing cannot use.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(d) = &self.domain {
            s3s::host::SingleDomain::new(d).map_err(|e| anyhow::anyhow!("[s3] domain {d:?}: {e}"))?;
        }
        Ok(())
    }
}

/// The S3 endpoint as an axum router (every path is S3's), over `nuage`.
pub fn router(nuage: Arc<Nuage>, config: &S3Config) -> anyhow::Result<axum::Router> {
    config.validate()?;
    let region = config.region.clone().unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let keys = keys::Keys::new(nuage.clone());
    let location = (region != DEFAULT_REGION).then(|| region.clone());
    let mut builder =
        s3s::service::S3ServiceBuilder::new(front::Front { nuage: nuage.clone(), region, location });
    builder.set_auth(keys.clone());
    builder.set_access(keys);
    let domain = match &config.domain {
        Some(d) => {
            s3s::host::SingleDomain::new(d).context("[s3] domain")?;
            builder.set_host(Domain(d.to_ascii_lowercase()));
            Some(Arc::new(Domain(d.to_ascii_lowercase())))
        }
        None => None,
    };
    let s3 = builder.build();
    let service = tower::service_fn(move |request: axum::extract::Request| {
        let (s3, nuage, domain) = (s3.clone(), nuage.clone(), domain.clone());
        async move {
            if let Some(refused) = refused_early(&request) {
                return Ok(refused);
            }
            let cross = cors::CrossOrigin::of(&request, bucket_named(&request, domain.as_deref()));
            if let Some(c) = cross.as_ref().filter(|c| c.is_preflight()) {
                return Ok(c.preflight(&nuage).await);
            }
            let request = request.map(s3s::Body::http_body_unsync);
            let mut response = match s3.call(request).await {
                Ok(answer) => answer.map(axum::body::Body::new).into_response(),
                Err(e) => {
                    tracing::error!("S3 request: {e:?}");
                    http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            };
            if let Some(c) = cross {
                c.decorate(&nuage, response.headers_mut()).await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    Ok(axum::Router::new().fallback_service(service))
}

/// The bucket a request names: by its host under `[s3] domain` (virtual-hosted), else the
/// first segment of its path.
fn bucket_named(request: &axum::extract::Request, domain: Option<&Domain>) -> Option<String> {
    use s3s::host::S3Host;
    let host = request.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    if let (Some(d), Some(host)) = (domain, host)
        && let Ok(v) = d.parse_host_header(host)
        && let Some(b) = v.bucket()
    {
        return Some(b.to_owned());
    }
    let first = request.uri().path().trim_start_matches('/').split('/').next().unwrap_or("");
    (!first.is_empty()).then(|| first.to_owned())
}

/// Virtual-hosted addressing under one domain: `BUCKET.DOMAIN[:PORT]` names the bucket;
/// any other host (the domain itself, an IP address, `localhost`, a name of the machine) is
/// path style. The port is never part of the name.
struct Domain(String);

impl s3s::host::S3Host for Domain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let bucket = name
            .len()
            .checked_sub(self.0.len() + 1)
            .filter(|&at| {
                name.is_char_boundary(at) && name[at..].eq_ignore_ascii_case(&format!(".{}", self.0))
            })
            .map(|at| &name[..at]);
        Ok(match bucket {
            Some(b) if !b.is_empty() => {
                s3s::host::VirtualHost::new(self.0.as_str()).with_bucket(b.to_ascii_lowercase())
            }
            _ => s3s::host::VirtualHost::new(name),
        })
    }
}

/// Requests refused before s3s reads them, so that their bodies are never read:
/// - a browser form upload (POST Object), which s3s would read whole into memory before the
///   key's scope is checked (not supported yet);
/// - a SigV2 signature in the `Authorization` header, which s3s accepts with no bound on its
///   date: a captured request could be replayed with another body for ever (SigV2 presigned
///   URLs carry an expiry and stay accepted).
fn refused_early(request: &axum::extract::Request) -> Option<axum::response::Response> {
    use s3s::{S3Error, S3ErrorCode};
    let header = |name: http::header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
    let error = if request.method() == http::Method::POST
        && header(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"))
    {
        S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "POST Object (browser form upload) is not supported yet",
        )
    } else if header(http::header::AUTHORIZATION).is_some_and(|a| a.starts_with("AWS ")) {
        S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "SigV2 signatures in the Authorization header are not accepted: sign with SigV4",
        )
    } else {
        return None;
    };
    Some(errors::refusal(error))
}

#[cfg(test)]
mod tests {
    use s3s::host::S3Host;

    use super::*;

    #[test]
    fn virtual_hosts_name_their_bucket_and_other_hosts_are_path_style() {
        let d = Domain("s3.test".into());
        let bucket = |host: &str| format!("{:?}", d.parse_host_header(host).unwrap());
        assert!(bucket("photos.s3.test:8430").contains("\"photos\""), "{}", bucket("photos.s3.test:8430"));
        assert!(bucket("Photos.S3.Test").contains("\"photos\""));
        for path_style in
            ["s3.test", "s3.test:8430", "localhost:8430", "127.0.0.1:8430", "[::1]:8430", "other.example"]
        {
            assert!(bucket(path_style).contains("bucket: None"), "{path_style}: {}", bucket(path_style));
        }
    }
}
