//! nuage's link server: the `/v1` HTTP API over the metadata store ([`nuage_meta`]) and
//! the chunk store ([`nuage_blob`]). It holds links and keys, never bytes of its own: an
//! object body is cut, sealed and placed on providers while it streams in, and read back
//! from them while it streams out.

#![deny(missing_docs)]

mod api;
mod caller;
pub mod config;
mod error;
mod objects;
mod openapi;
mod routes;
mod shares;
mod uploads;

use std::sync::Arc;

use anyhow::{Context, Result};

pub use api::issue_token;
pub use config::{EdgeLink, ServerConfig, parse_s3_listen};
pub use error::{ApiError, ApiResult};
pub use nuage_http::HttpConfig;
pub use nuage_proto::NewToken;
pub use nuage_s3::S3Config;
pub use nuage_service::names::{MAX_KEY_BYTES, check_bucket, check_key};
pub use nuage_service::{Metrics, Nuage, auth, grants, workers};
pub use openapi::document as openapi_document;
pub use routes::router;

/// How long the background workers have, once the server stops serving, to end their unit
/// of work (a batch: its cursor saved, its claim given back) before they are dropped.
pub const WORKERS_STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the API on `listener` with the port's limits `http` until the process gets
/// SIGINT or SIGTERM, then finishes the requests in flight and stops the background workers
/// (housekeeping, scrub, repair, the collector, drains), which run while it serves.
pub async fn serve_on(nuage: Arc<Nuage>, listener: tokio::net::TcpListener, http: HttpConfig) -> Result<()> {
    serve_fronts(nuage, listener, None, http).await
}

/// As [`serve_on`], with the S3 endpoint ([`nuage_s3`]) on a port of its own when `s3`
/// gives one: both fronts over one service, under the same port limits, stopping together.
pub async fn serve_fronts(
    nuage: Arc<Nuage>,
    listener: tokio::net::TcpListener,
    s3: Option<(tokio::net::TcpListener, &nuage_s3::S3Config)>,
    http: HttpConfig,
) -> Result<()> {
    use futures::FutureExt;
    http.validate()?;
    let s3 = match s3 {
        Some((listener, config)) => Some((listener, nuage_s3::router(nuage.clone(), config)?)),
        None => None,
    };
    let background = workers::spawn(&nuage);
    let shutdown = nuage_http::shutdown_signal().shared();
    let api = nuage_http::serve(listener, router(nuage), http, shutdown.clone());
    let s3 = async {
        match s3 {
            Some((listener, app)) => nuage_http::serve(listener, app, http, shutdown.clone()).await,
            None => Ok(()),
        }
    };
    let (api, s3) = tokio::join!(api, s3);
    background.stop(WORKERS_STOP_DEADLINE).await;
    api.context("serving")?;
    s3.context("serving S3")
}
