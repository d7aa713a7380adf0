//! The error type of nuage-core.

/// What can go wrong while parsing or opening nuage's formats.
///
/// Every parser of outside input returns one of these rather than panicking.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A chunker configuration outside what FastCDC supports.
    #[error("invalid chunker configuration: {0}")]
    InvalidChunkerConfig(String),
    /// Stored chunk bytes that do not parse as the stored-chunk format.
    #[error("malformed stored chunk: {0}")]
    MalformedChunk(&'static str),
    /// A stored chunk whose format version, cipher or compression this build does not know.
    #[error("unsupported stored chunk: {0}")]
    UnsupportedChunk(String),
    /// The authentication tag did not verify: wrong key, or bytes altered.
    #[error("chunk failed authentication (wrong key or corrupted ciphertext)")]
    Authentication,
    /// Bytes whose BLAKE3 hash is not the address they were fetched under.
    #[error("address mismatch: expected {expected}, got {actual}")]
    AddressMismatch {
        /// The address the caller asked for.
        expected: String,
        /// The address of the bytes received.
        actual: String,
    },
    /// The opened plaintext does not have the length its manifest declares.
    #[error("chunk plaintext length mismatch: expected {expected}, got {actual}")]
    LengthMismatch {
        /// Length declared by the manifest.
        expected: u64,
        /// Length actually decoded.
        actual: u64,
    },
    /// Manifest bytes that are truncated, oversized or inconsistent.
    #[error("malformed manifest: {0}")]
    MalformedManifest(String),
    /// An end-to-end key that does not open what it was given.
    #[error("end-to-end encryption: {0}")]
    Crypto(String),
    /// A textual address that is not 64 lowercase hex digits.
    #[error("{0:?} is not a chunk address (64 hex digits)")]
    InvalidAddress(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
