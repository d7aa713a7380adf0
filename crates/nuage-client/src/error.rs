//! `ClientError`: what went wrong talking to the server, and whether trying again may help.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable code (docs/api.md).
        code: String,
        /// Explanation.
        message: String,
    },
    /// The server could not be reached, or the connection broke.
    #[error("talking to the server: {0}")]
    Http(#[from] reqwest::Error),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// Downloaded bytes do not hash to the object's ETag.
    #[error("{0}: downloaded content does not match its ETag")]
    Integrity(PathBuf),
    /// The caller's progress callback asked to stop; a later call resumes.
    #[error("interrupted")]
    Interrupted,
    /// An end-to-end key, passphrase or share password does not open what it should, or is
    /// missing.
    #[error("{0}")]
    Key(String),
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A server address that is not an `http://` or `https://` URL.
    #[error(
        "{0:?} is not a server URL: give it with its scheme, e.g. http://127.0.0.1:8420 or https://nuage.example.net"
    )]
    ServerUrl(String),
    /// Temporary failures lasted the whole retry window.
    #[error("{what}: {cause}; gave up after {waited} of retrying")]
    GaveUp {
        /// What was being done.
        what: String,
        /// How long the outage had lasted, in words.
        waited: String,
        /// The last failure, in words.
        cause: String,
        /// The last failure.
        #[source]
        source: Box<ClientError>,
    },
    /// A download stopped by a failure that outlasted the retry window; what arrived is kept
    /// and the same call resumes it.
    #[error(
        "{what} was cut: {cause} for {waited}; what arrived is kept: run the same command again to resume"
    )]
    Cut {
        /// What was being downloaded.
        what: String,
        /// How long the outage had lasted, in words.
        waited: String,
        /// The last failure, in words.
        cause: String,
        /// Why it stopped.
        #[source]
        source: Box<ClientError>,
    },
}

impl ClientError {
    /// The API error code, if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the same request may succeed later (connection trouble, 502, 503, 504).
    pub fn is_temporary(&self) -> bool {
        match self {
            // A body cut short (the connection closed mid-stream) is a decode error with an
            // I/O error under it; a body that is no JSON has none.
            ClientError::Http(e) => {
                e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || (e.is_decode() && cut(e))
            }
            ClientError::Api { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}

/// Whether an I/O error lies under `e`: the connection, not the content, failed.
fn cut(e: &reqwest::Error) -> bool {
    io_cause(e).is_some()
}

/// The I/O error under `e`, if any.
pub(crate) fn io_cause(e: &reqwest::Error) -> Option<&io::Error> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cause = c.source();
    }
    None
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ClientError + '_ {
    move |source| ClientError::Io { path: path.to_owned(), source }
}

/// Result of the SDK.
pub type ClientResult<T> = Result<T, ClientError>;
