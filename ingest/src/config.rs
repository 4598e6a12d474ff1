//! Configuration of the ingest path and storage.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decode::Limits;
use crate::wal::SyncMode;

/// Ingest and storage settings (`[ingest]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Durability of acknowledgements.
    pub sync: SyncMode,
    /// Size at which a WAL segment is closed and a new one started.
    pub wal_segment_bytes: u64,
    /// Most ingest requests written and synced as one commit group.
    pub wal_group_max: usize,
    /// Capacity of the queue in front of the WAL writer (requests).
    pub wal_queue: usize,
    /// Flush the in-memory tail to Parquet at least this often.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// ... or as soon as it holds this many bytes.
    pub flush_bytes: usize,
    /// Most bytes held in memory (tail being written plus tail being
    /// flushed); beyond it ingest answers 503 with Retry-After.
    pub max_buffer_bytes: usize,
    /// A day partition with at least this many files is compacted; so is a
    /// cold month's month file with this many day files of late events.
    pub compaction_min_files: usize,
    /// Files larger than this are left alone by compaction.
    pub compaction_max_file_bytes: u64,
    /// A UTC month this long past its end is cold: its files are merged
    /// into one month file (`date=YYYY-MM`) instead of one file per day.
    #[serde(with = "humantime_serde")]
    pub compaction_cold_after: Duration,
    /// How long an accepted `messageId` is remembered for deduplication.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// How long replaced files stay on disk for queries that still read them.
    #[serde(with = "humantime_serde")]
    pub delete_grace: Duration,
    /// How often compaction, retention and cleanup run.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Capacity of the live feed of accepted batches (slow readers lag).
    pub live_feed_capacity: usize,
    /// Request and event limits.
    pub limits: Limits,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            sync: SyncMode::Fsync,
            wal_segment_bytes: 64 * 1024 * 1024,
            wal_group_max: 256,
            wal_queue: 1024,
            flush_interval: Duration::from_secs(60),
            flush_bytes: 64 * 1024 * 1024,
            max_buffer_bytes: 512 * 1024 * 1024,
            compaction_min_files: 8,
            compaction_max_file_bytes: 256 * 1024 * 1024,
            compaction_cold_after: Duration::from_secs(3 * 24 * 3600),
            dedupe_window: Duration::from_secs(8 * 24 * 3600),
            delete_grace: Duration::from_secs(120),
            maintenance_interval: Duration::from_secs(60),
            live_feed_capacity: 1024,
            limits: Limits::default(),
        }
    }
}

impl IngestConfig {
    /// Small buffers and short intervals for tests.
    pub fn test_config() -> Self {
        Self {
            wal_segment_bytes: 64 * 1024,
            flush_interval: Duration::from_millis(200),
            flush_bytes: 256 * 1024,
            max_buffer_bytes: 64 * 1024 * 1024,
            compaction_min_files: 3,
            delete_grace: Duration::ZERO,
            maintenance_interval: Duration::from_millis(200),
            ..Self::default()
        }
    }

    /// Settings that work but are probably unintended.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.dedupe_window < Duration::from_secs(7 * 24 * 3600) {
            warnings.push(format!(
                "ingest.dedupe_window is {:?}: retries older than that are stored twice",
                self.dedupe_window
            ));
        }
        warnings
    }

    /// Every problem with the settings, at once.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.wal_group_max == 0 {
            problems.push("ingest.wal_group_max must be at least 1".to_owned());
        }
        if self.wal_queue == 0 {
            problems.push("ingest.wal_queue must be at least 1".to_owned());
        }
        if self.max_buffer_bytes < self.flush_bytes {
            problems.push("ingest.max_buffer_bytes must be at least ingest.flush_bytes".to_owned());
        }
        if self.compaction_min_files < 2 {
            problems.push("ingest.compaction_min_files must be at least 2".to_owned());
        }
        if self.limits.max_batch_events == 0 {
            problems.push("ingest.limits.max_batch_events must be at least 1".to_owned());
        }
        if self.live_feed_capacity == 0 {
            problems.push("ingest.live_feed_capacity must be at least 1".to_owned());
        }
        problems
    }
}
