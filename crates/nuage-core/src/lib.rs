//! nuage-core: the formats and pure computations of nuage's chunk path.
//!
//! Everything here is deterministic and free of I/O beyond reading from a caller's
//! [`std::io::Read`]: no files, no network, no async, no SQL. The crates around it store and
//! move what this crate produces.
//!
//! - [`chunker`]: content-defined chunking (FastCDC 2020) over any reader, with bounded memory.
//! - [`chunk`]: convergent encryption of one chunk into its stored form, and back.
//! - [`address`]: the content address of stored bytes, and the provider object key derived
//!   from it.
//! - [`manifest`]: the ordered list of chunks that makes one file version.
//! - [`pipeline`]: chunk + seal a whole stream, on one thread or two.
//! - [`e2e`]: the end-to-end content key and sealed manifests.
//! - [`url`]: percent-encoding of URL paths and query values.
//! - [`grant`]: Ed25519-signed, short-lived permissions for one operation on one address.
//! - [`stamp`]: what tells a file unchanged without reading it.
#![deny(missing_docs)]

pub mod address;
pub mod chunk;
pub mod chunker;
pub mod date;
pub mod e2e;
mod error;
pub mod grant;
pub mod key;
pub mod manifest;
pub mod pipeline;
pub mod stamp;
pub mod url;

pub use address::Address;
pub use chunk::{ChunkKey, Compression, ConvergenceSecret, SealOptions, SealedChunk};
pub use chunker::{Chunker, ChunkerConfig};
pub use error::{Error, Result};
pub use manifest::{ContentHasher, Manifest, ManifestEntry, ManifestPart};
