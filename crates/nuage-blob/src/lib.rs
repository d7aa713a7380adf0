//! nuage-blob: where chunk bytes live.
//!
//! - [`Provider`]: one storage provider (memory, local folder, S3, Azure Blob) reached
//!   through Apache OpenDAL, holding stored chunks under keys derived from their address,
//!   with a health record that lets a failing provider be skipped quickly.
//! - [`ChunkStore`]: several providers under a placement policy (`replicas = N` with a
//!   write quorum): parallel writes, verified reads that fall back across placements and
//!   report every bad placement as a [`PlacementProblem`].
//!
//! This crate never sees a key or a plaintext byte: it stores and verifies ciphertext by
//! address.
#![deny(missing_docs)]

mod answer;
mod config;
mod error;
mod fs;
mod health;
mod provider;
mod sas;
mod store;

pub use answer::{Presigned, PutOutcome};
pub use config::{ProviderConfig, ProviderKind, Secret};
pub use error::{Error, Operation, PlacementProblem, ProblemKind, Result};
pub use provider::Provider;
pub use store::{ChunkStore, Placement, PutReport, Read, StoredChunk};
