//! Real and synthetic data for Beacon.
//!
//! - [`convert`]: the public datasets (Online Retail, hotel bookings, the
//!   REES46 clickstream, Telco churn, lead scoring) as Segment messages, with
//!   the mapping documented in `datasets/README.md`. The CSV reading (polars)
//!   is the `convert` feature, on by default; the `beacon` binary's release
//!   build leaves it out, so the server does not carry polars.
//! - [`generate`]: the built-in generator behind `beacon serve --demo` and
//!   `beacon datasets generate`, deterministic for a seed and calibrated on
//!   the real datasets (`datasets/calibration.json`).
//! - [`output`]: writing messages as NDJSON or as Parquet in Beacon's event
//!   schema, and reading either back.
//! - [`replay`]: sending a file to a running server through the public
//!   ingest API.

pub mod convert;
pub mod generate;
pub mod message;
pub mod output;
pub mod replay;
#[cfg(feature = "convert")]
mod table;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The data is not what the converter expects (a missing column, ...).
    #[error("{0}")]
    Data(String),
    /// File I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Arrow.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Ingest (decoding, batches).
    #[error(transparent)]
    Ingest(#[from] beacon_ingest::Error),
    /// A capability this build was compiled without.
    #[error("{0}")]
    NotBuilt(&'static str),
    /// HTTP while replaying.
    #[error("replay: {0}")]
    Replay(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
