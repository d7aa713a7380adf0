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

mod errors;
mod front;
pub mod keys;

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
    let mut builder = s3s::service::S3ServiceBuilder::new(front::Front { nuage, region, location });
    builder.set_auth(keys.clone());
    builder.set_access(keys);
    if let Some(d) = &config.domain {
        builder.set_host(s3s::host::SingleDomain::new(d).context("[s3] domain")?);
    }
    let s3 = builder.build();
    let service = tower::service_fn(move |request: axum::extract::Request| {
        let s3 = s3.clone();
        async move {
            let request = request.map(s3s::Body::http_body_unsync);
            Ok::<_, Infallible>(match s3.call(request).await {
                Ok(answer) => answer.map(axum::body::Body::new).into_response(),
                Err(e) => {
                    tracing::error!("S3 request: {e:?}");
                    http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            })
        }
    });
    Ok(axum::Router::new().fallback_service(service))
}
