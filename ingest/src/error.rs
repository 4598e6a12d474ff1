//! Errors of the ingest crate.

use std::path::PathBuf;

/// Result with the ingest [`enum@Error`] as default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while storing or reading events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The in-memory buffer is full; the caller should retry later.
    #[error("ingest buffer is full ({buffered_bytes} of {limit_bytes} bytes); retry later")]
    Backpressure {
        /// Bytes currently buffered.
        buffered_bytes: usize,
        /// The configured limit.
        limit_bytes: usize,
    },
    /// An event with the same message id is being written by another request.
    #[error(
        "an event with messageId {message_id:?} is being written by a concurrent request; retry later"
    )]
    InFlight {
        /// The message id.
        message_id: String,
    },
    /// The write-ahead log failed earlier and refuses further writes until restart.
    #[error("write-ahead log is unavailable after an earlier write failure")]
    WalPoisoned,
    /// The write-ahead log writer has stopped (shutdown).
    #[error("write-ahead log is shut down")]
    WalClosed,
    /// A write-ahead log segment is damaged in a place that is not a torn tail.
    #[error("write-ahead log segment {path} is corrupt at offset {offset}: {reason}")]
    WalCorrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// File system failure.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Arrow failure.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet failure.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Metadata database failure.
    #[error("metadata database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A tenant does not exist.
    #[error("unknown workspace {0}")]
    UnknownTenant(String),
    /// A setting has an invalid value.
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting {
        /// Setting name.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An API key was not found.
    #[error("no API key with prefix {0}")]
    UnknownKey(String),
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the failure is temporary and the client should retry.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Backpressure { .. } | Self::InFlight { .. } | Self::WalPoisoned | Self::WalClosed
        )
    }
}
