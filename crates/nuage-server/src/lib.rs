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
pub use config::{EdgeLink, ServerConfig};
pub use error::{ApiError, ApiResult};
pub use nuage_http::HttpConfig;
pub use nuage_proto::NewToken;
pub use nuage_service::names::{MAX_KEY_BYTES, check_bucket, check_key};
pub use nuage_service::{Metrics, Nuage, auth, grants, workers};
pub use openapi::document as openapi_document;
pub use routes::router;

/// Serves the API on `listener` with the port's limits `http` until the process gets
/// SIGINT or SIGTERM, then finishes the requests in flight. The housekeeping (grant key
/// rotation, expired upload sessions) and the background workers run while it serves.
pub async fn serve_on(nuage: Arc<Nuage>, listener: tokio::net::TcpListener, http: HttpConfig) -> Result<()> {
    http.validate()?;
    let mut background = workers::spawn(&nuage);
    background.push(nuage.spawn_housekeeping());
    let served = nuage_http::serve(listener, router(nuage), http, nuage_http::shutdown_signal())
        .await
        .context("serving");
    for task in background {
        task.abort();
    }
    served
}
