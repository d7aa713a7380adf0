//! The error type of nuage-blob.

use std::fmt;

use nuage_core::Address;

/// What can go wrong when storing or fetching chunks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration that cannot work (duplicate names, impossible policy, bad settings).
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// The bucket or container a provider points at does not exist.
    #[error("provider {provider}: {what} does not exist (create it first)")]
    ContainerMissing {
        /// Provider name.
        provider: String,
        /// What is missing, e.g. `bucket "x" at http://...`.
        what: String,
    },
    /// A provider could not be reached or refused the request.
    #[error("provider {provider}: {operation}: {source}")]
    Provider {
        /// Provider name.
        provider: String,
        /// What was asked of it.
        operation: Operation,
        /// What OpenDAL reported.
        #[source]
        source: opendal::Error,
    },
    /// A provider was skipped because it has been failing; it will be probed again later.
    #[error("provider {provider} is marked down after repeated failures")]
    ProviderDown {
        /// Provider name.
        provider: String,
    },
    /// The bytes a provider returned do not hash to the address asked for.
    #[error("provider {provider} returned corrupt bytes for chunk {address}")]
    Corrupt {
        /// Provider name.
        provider: String,
        /// The chunk.
        address: Address,
    },
    /// The bytes given to store do not hash to the address they were given under.
    #[error("bytes do not match address {address}")]
    AddressMismatch {
        /// The address claimed.
        address: Address,
    },
    /// No provider holds the chunk.
    #[error("chunk {address} not found on any provider")]
    NotFound {
        /// The chunk.
        address: Address,
    },
    /// Providers that may hold the chunk all failed; the problems say how.
    #[error("chunk {address} unavailable: {}", summarize(problems))]
    Unavailable {
        /// The chunk.
        address: Address,
        /// One entry per placement tried.
        problems: Vec<PlacementProblem>,
    },
    /// Too few providers stored the chunk to meet the write quorum.
    #[error(
        "chunk {address}: stored on {stored} provider(s), write quorum is {needed}: {}",
        summarize(problems)
    )]
    QuorumNotMet {
        /// The chunk.
        address: Address,
        /// The write quorum.
        needed: usize,
        /// How many providers hold it now.
        stored: usize,
        /// Why the others did not.
        problems: Vec<PlacementProblem>,
    },
}

impl Error {
    /// Whether asking again at once may succeed. A provider's failure is temporary only
    /// while OpenDAL says so: once its retry layer has tried and given up, the error is
    /// persistent, and trying again at once only repeats what the layer did (the store's
    /// health record and the workers' next pass are what try again later). A provider
    /// marked down, and placements that could not all be served, are temporary: another
    /// attempt may find the providers back.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Provider { source, .. } => source.is_temporary(),
            Error::ProviderDown { .. } | Error::Unavailable { .. } | Error::QuorumNotMet { .. } => true,
            _ => false,
        }
    }

    /// The provider the error is about, when it is about one.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Error::ContainerMissing { provider, .. }
            | Error::Provider { provider, .. }
            | Error::ProviderDown { provider }
            | Error::Corrupt { provider, .. } => Some(provider),
            _ => None,
        }
    }

    /// What was asked of the provider, for an error of a provider's answer.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Error::Provider { operation, .. } => Some(*operation),
            _ => None,
        }
    }
}

/// What a provider was asked to do, as errors and logs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Build the provider from its configuration.
    Open,
    /// Check that its bucket or container exists.
    Check,
    /// Write, read back and delete a probe object.
    Probe,
    /// Store a chunk.
    Write,
    /// Make stored chunks durable (a local folder's sync).
    Sync,
    /// Look up whether it holds a chunk, and its size.
    Stat,
    /// Read a chunk.
    Read,
    /// Sign a request for a direct upload.
    Presign,
    /// Delete a chunk.
    Delete,
    /// List the chunks it holds.
    List,
    /// Remove the temporary files of interrupted writes.
    Sweep,
}

impl Operation {
    /// The one string form, as logs and messages show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::Check => "check",
            Operation::Probe => "probe",
            Operation::Write => "write",
            Operation::Sync => "sync",
            Operation::Stat => "stat",
            Operation::Read => "read",
            Operation::Presign => "presign",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::Sweep => "sweep",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// Whether a provider refused a write for want of room (a full disk, a storage quota,
    /// an object store's `507 Insufficient Storage`), as opposed to failing.
    pub fn is_full(&self) -> bool {
        match self {
            Error::Provider { source, .. } => is_full(source),
            _ => false,
        }
    }
}

/// Whether an OpenDAL error says that the provider is out of room: an I/O error of a full
/// disk or quota anywhere in its chain, or the answer of an object store that is full.
pub(crate) fn is_full(e: &opendal::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && (matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
                || matches!(io.raw_os_error(), Some(28 | 122)))
        {
            return true;
        }
        cause = c.source();
    }
    // Object stores say it in their answer (MinIO's `XMinioStorageFull`, HTTP 507).
    let text = e.to_string();
    text.contains("StorageFull") || text.contains("InsufficientStorage") || text.contains("status: 507")
}

fn summarize(problems: &[PlacementProblem]) -> String {
    if problems.is_empty() {
        return "no provider could take it".to_owned();
    }
    problems.iter().map(|p| format!("{} {}", p.provider, p.kind)).collect::<Vec<_>>().join("; ")
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with one placement of one chunk: the event the repair worker consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementProblem {
    /// The chunk.
    pub address: Address,
    /// The provider.
    pub provider: String,
    /// What was wrong.
    pub kind: ProblemKind,
}

/// The kinds of [`PlacementProblem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The provider answered that it does not have the chunk.
    Missing,
    /// The provider returned bytes that do not hash to the address.
    Corrupt,
    /// The provider failed (unreachable, timed out, refused); the message says how.
    Unavailable(String),
    /// The provider was skipped because it is marked down.
    Skipped,
    /// The provider has no room for the write (a full disk or storage quota).
    Full,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Missing => f.write_str("missing"),
            ProblemKind::Corrupt => f.write_str("corrupt"),
            ProblemKind::Unavailable(m) => write!(f, "unavailable ({m})"),
            ProblemKind::Skipped => f.write_str("skipped (marked down)"),
            ProblemKind::Full => f.write_str("full (no room for the write)"),
        }
    }
}
