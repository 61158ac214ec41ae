//! Errors of the storage layer. Every variant is **fatal** for the replica
//! that sees it: the engine stops cleanly rather than keep voting without
//! its data.

use std::path::PathBuf;
use thiserror::Error;

/// A storage failure.
#[derive(Debug, Error)]
pub enum PersistenceError {
    /// An I/O operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Stored data failed verification.
    #[error("corrupted data in {path} at offset {offset}: {reason}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A record or snapshot could not be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// Another process holds the data directory.
    #[error("data directory is locked by another process ({path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The storage was used after a failure or was closed.
    #[error("storage unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}
