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
