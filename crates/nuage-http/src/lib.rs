//! The HTTP layer under nuage's fronts (the link server's `/v1`, the edge; S3 and the web
//! app next): the accept loop with the limits an open port needs ([`listener`]), extractors
//! whose refusals are JSON errors with a stable code ([`extract`]), and the error answer
//! itself ([`HttpError`]). No rule of nuage lives here: only HTTP.
#![deny(missing_docs)]

pub mod error;
pub mod extract;
pub mod listener;

pub use error::{HttpError, body_error};
pub use listener::{BodyTooSlow, HttpConfig, serve, shutdown_signal};
