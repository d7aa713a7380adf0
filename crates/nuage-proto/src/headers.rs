//! The names of nuage's own headers, lower case (HTTP/1.1 names are case-insensitive; the
//! `http` crate wants them lower case).

/// The version id a write made or a read served (`PUT`, `GET`, `HEAD`, `DELETE` of an object).
pub const VERSION: &str = "x-nuage-version";

/// A grant: the signed permission to put or get one chunk (`PUT`/`GET /v1/chunks/{address}`
/// and an edge's chunk reads; also accepted as `?grant=` on reads).
pub const GRANT: &str = "x-nuage-grant";

/// The key of a chunk of a normal bucket, base64url, sent with the chunk (never for an
/// end-to-end bucket, whose keys the server never sees).
pub const CHUNK_KEY: &str = "x-nuage-chunk-key";

/// The key that makes a retried write answer what its first attempt did (any printable
/// ASCII, at most 255 bytes).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The lengths of the parts a version was assembled from (an S3 multipart upload of two
/// parts or more), sent with its content: `LEN` or `LENxCOUNT` runs, comma separated
/// (`8388608x12,1048576`). Its ETag is then the content hash of those parts
/// (`nuage_core::ContentHasher`), not the BLAKE3 of the whole.
pub const PARTS: &str = "x-nuage-parts";
