//! nuage's object service: the rules every front end shares. The `/v1` API
//! (`nuage-server`) is the first front; S3, the web app and sync stand on the same service, so
//! a rule is written once, here, and a front only turns requests into calls and answers
//! into its own wire.
//!
//! - [`error`]: [`ServiceError`], whose [`ErrorKind`] each front maps to its own answer
//!   (an HTTP status and nuage's stable code for `/v1`; an S3 error code for S3). The
//!   errors of the metadata store and the chunk store become service errors here, once.
//! - [`names`]: the rules of bucket names and object keys.
//! - [`providers`]: the rules of the provider registry (drain, add, remove).
//!
//! Nothing here names an HTTP type: no status, no header, no body. The rest of the
//! semantics (objects, uploads, shares, the provider registry, the workers) moves here from
//! `nuage-server` in the slices of issue 15; ARCHITECTURE.md says which have.
#![deny(missing_docs)]

pub mod error;
pub mod names;
pub mod providers;

pub use error::{ErrorKind, ServiceError, ServiceResult};
