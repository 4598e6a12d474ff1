//! Beacon's ingest path and storage.
//!
//! - [`schema`]: the Arrow schema of events and its column names.
//! - [`decode`]: Segment-compatible request bodies to validated [`Event`]s,
//!   with per-event rejections and field promotion.
//! - [`batch`]: events to Arrow record batches.
//! - [`wal`]: the write-ahead log (checksummed segments, group commit).
//! - [`store`]: the [`Store`]: admission, dedupe, WAL, queryable in-memory
//!   tail, Parquet flushes, compaction, retention and recovery.
//! - [`storage`]: the Parquet layout and atomic file publication.
//! - [`catalog`]: the SQLite metadata database (workspaces, keys, manifest).
//!
//! This crate depends on no other workspace crate.

pub mod batch;
pub mod catalog;
pub mod config;
pub mod decode;
pub mod dedupe;
mod error;
pub mod event;
pub mod schema;
pub mod storage;
pub mod store;
pub mod wal;

pub use catalog::{Catalog, FileMeta, NewKey, Role, Scope, Tenant, UserRole};
pub use config::IngestConfig;
pub use error::{Error, Result};
pub use event::{Event, EventType};
pub use store::{Clock, Store, SystemClock, TenantSnapshot};
