//! What a provider answers besides bytes: the outcome of a write, a request signed in advance.

/// What [`crate::Provider::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The chunk was written.
    Written,
    /// The provider already held the address; nothing was rewritten.
    AlreadyPresent,
}

/// A request to a provider signed in advance (see [`crate::Provider::presign_put`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// HTTP method.
    pub method: String,
    /// The whole URL, signature included.
    pub url: String,
    /// Headers the request must carry.
    pub headers: Vec<(String, String)>,
}
