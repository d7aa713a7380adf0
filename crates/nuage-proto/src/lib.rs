//! The wire of nuage's HTTP API that both ends must spell alike: the server (`nuage-server`),
//! the client (`nuage-client`) and the edge. It holds names and parsers, no I/O and no HTTP
//! library: a front end maps these onto its own types.
//!
//! - [`headers`]: the names of nuage's own headers.
//! - [`range`]: the `Range` and `If-Range` request headers (RFC 9110 §14, §13.1.5).
#![deny(missing_docs)]

pub mod headers;
pub mod range;
