//! The event store: admission, group commit to the WAL, the queryable
//! in-memory tail, flushes to Parquet, compaction, retention and recovery.
//!
//! ```text
//! ingest() ─ dedupe reserve ─ Arrow batch ─ admission (buffer bytes) ─┐
//!                                                                      ▼ bounded queue
//!                      WAL writer thread: append group ─ fsync ─ tail.active += batch ─ ack
//! flush(): seal (active → flushing, new WAL segment) ─ write Parquet per tenant/day
//!          ─ catalog commit {files, checkpoint} ─ drop flushing ─ delete old WAL segments
//! ```
//!
//! Invariants:
//! - An event is acknowledged only after its WAL record is synced and it is
//!   in the in-memory tail (so it is queryable the moment the client hears
//!   "accepted").
//! - The tail is appended in WAL sequence order by the single writer thread,
//!   so a seal cuts it at a sequence number `S`: everything `<= S` is in
//!   `flushing`, everything later in `active`.
//! - Files and the checkpoint `S` are published in one catalog transaction;
//!   WAL segments are deleted only after that commit. Replay skips records
//!   `<= checkpoint`, so nothing is lost and nothing is stored twice.
//! - A query snapshot takes files, `flushing` and `active` under one lock, and
//!   a flush publishes its files and drops `flushing` under the same lock, so a
//!   row is never seen twice or missed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::batch::events_to_batch;
use crate::catalog::{Catalog, FileMeta};
use crate::config::IngestConfig;
use crate::dedupe::{Deduper, Verdict, id_hash};
use crate::event::Event;
use crate::schema::{columns, event_schema};
use crate::storage;
use crate::wal::{self, SegmentWriter};
use crate::{Error, Result};

/// Metric names of the store.
pub mod metric_names {
    /// Counter: events accepted.
    pub const EVENTS_ACCEPTED: &str = "beacon_ingest_events_accepted_total";
    /// Counter: events answered as duplicates.
    pub const EVENTS_DUPLICATE: &str = "beacon_ingest_events_duplicate_total";
    /// Counter: bytes of accepted Arrow data.
    pub const BYTES_ACCEPTED: &str = "beacon_ingest_bytes_total";
    /// Counter: requests refused for a full buffer.
    pub const BACKPRESSURE: &str = "beacon_ingest_backpressure_total";
    /// Histogram: seconds to write and sync one WAL commit group.
    pub const WAL_SYNC_SECONDS: &str = "beacon_wal_sync_seconds";
    /// Histogram: requests per WAL commit group.
    pub const WAL_GROUP_SIZE: &str = "beacon_wal_group_requests";
    /// Histogram: seconds per flush.
    pub const FLUSH_SECONDS: &str = "beacon_flush_seconds";
    /// Counter: rows flushed to Parquet.
    pub const FLUSHED_ROWS: &str = "beacon_flush_rows_total";
    /// Gauge: bytes buffered in memory.
    pub const BUFFER_BYTES: &str = "beacon_buffer_bytes";
    /// Gauge: published Parquet files.
    pub const FILES: &str = "beacon_parquet_files";
    /// Gauge: bytes of published Parquet files.
    pub const FILE_BYTES: &str = "beacon_parquet_bytes";
    /// Counter: files merged away by compaction.
    pub const COMPACTED_FILES: &str = "beacon_compacted_files_total";
}

/// Source of the current time (microseconds since the epoch, UTC).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now_us(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

/// A batch accepted into the store, as published on the live feed.
#[derive(Debug, Clone)]
pub struct AcceptedBatch {
    /// Workspace.
    pub tenant: String,
    /// WAL sequence number.
    pub seq: u64,
    /// The events.
    pub batch: RecordBatch,
}

/// What happened to the events of one [`Store::ingest`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReceipt {
    /// Events newly stored.
    pub accepted: usize,
    /// Positions (in the input) of events already stored earlier.
    pub duplicates: Vec<usize>,
    /// WAL sequence number of the stored batch (0 if nothing was stored).
    pub seq: u64,
}

/// What a query of one workspace sees: published files plus the in-memory tail.
#[derive(Debug, Clone)]
pub struct TenantSnapshot {
    /// Absolute paths of the files with their metadata.
    pub files: Vec<(PathBuf, FileMeta)>,
    /// In-memory rows not yet in files.
    pub batches: Vec<RecordBatch>,
    /// Every accepted batch with a WAL sequence number up to this one is in
    /// the snapshot, and none after it (consumers of [`Store::subscribe`]
    /// use it to skip what a snapshot already holds).
    pub seq: u64,
}

/// Sizes of one workspace's data.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TenantStats {
    /// Rows in memory.
    pub memory_rows: usize,
    /// Published files.
    pub files: usize,
    /// Rows in files.
    pub file_rows: u64,
    /// Bytes of files.
    pub file_bytes: u64,
}

/// Result of one flush.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlushReport {
    /// Rows written.
    pub rows: usize,
    /// Files written.
    pub files: usize,
    /// WAL checkpoint after the flush.
    pub checkpoint: u64,
}

#[derive(Debug, Default)]
struct TenantTail {
    active: Vec<RecordBatch>,
    active_bytes: usize,
    flushing: Vec<RecordBatch>,
    flushing_bytes: usize,
}

#[derive(Debug, Default)]
struct MemState {
    tails: HashMap<String, TenantTail>,
    files: HashMap<String, Vec<FileMeta>>,
    active_bytes: usize,
    /// Bytes sealed but not yet published (non-zero after a failed flush).
    flushing_bytes: usize,
    /// Highest WAL sequence number appended to a tail.
    applied_seq: u64,
}

impl MemState {
    fn append(&mut self, tenant: &str, batch: RecordBatch, bytes: usize) {
        let tail = self.tails.entry(tenant.to_owned()).or_default();
        tail.active.push(batch);
        tail.active_bytes += bytes;
        self.active_bytes += bytes;
        // Many tiny batches make scans slow: every 128 small appends, merge
        // those (only the new ones, so no row is copied twice per merge level).
        const MERGE: usize = 128;
        let n = tail.active.len();
        if n >= 2 * MERGE {
            let recent = &tail.active[n - MERGE..];
            if storage::total_rows(recent) < MERGE * 1024
                && let Ok(merged) = concat_batches(&event_schema(), recent)
            {
                tail.active.truncate(n - MERGE);
                tail.active.push(merged);
            }
        }
    }

    fn seal(&mut self) {
        for tail in self.tails.values_mut() {
            tail.flushing.append(&mut tail.active);
            tail.flushing_bytes += std::mem::take(&mut tail.active_bytes);
        }
        self.flushing_bytes += std::mem::take(&mut self.active_bytes);
    }
}

enum WalRequest {
    Append {
        tenant: String,
        batch: RecordBatch,
        ipc: Vec<u8>,
        bytes: usize,
        hashes: Vec<u128>,
        received_us: i64,
        reply: oneshot::Sender<Result<u64>>,
    },
    Seal {
        reply: oneshot::Sender<Result<Seal>>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Seal {
    /// Last sequence number in `flushing`.
    last_seq: u64,
    /// First sequence number of the segment that stays.
    keep_from: u64,
}

#[derive(Debug)]
struct Inner {
    config: IngestConfig,
    data_dir: PathBuf,
    wal_dir: PathBuf,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    state: RwLock<MemState>,
    dedupe: Deduper,
    wal_tx: RwLock<Option<mpsc::Sender<WalRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    buffered_bytes: AtomicUsize,
    poisoned: AtomicBool,
    feed: broadcast::Sender<Arc<AcceptedBatch>>,
    /// Serializes compaction and retention (which replace files).
    maintenance: Mutex<()>,
    /// Serializes flushes. Not `maintenance`: a flush only adds files, so
    /// it can commit while a long compaction (every cold month of a
    /// workspace, the first time) is merging, and ingest is not held up.
    flushing: Mutex<()>,
    pending_deletes: Mutex<Vec<(PathBuf, Instant)>>,
    last_flush: Mutex<Instant>,
    /// Deleted workspaces ([`Store::delete_tenant`]): the writer refuses
    /// their appends, so nothing queued behind a deletion comes back.
    deleted: RwLock<HashSet<String>>,
}

/// The event store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append { tenant, .. } => write!(f, "Append({tenant})"),
            Self::Seal { .. } => f.write_str("Seal"),
        }
    }
}

impl Store {
    /// Opens the store in `data_dir`: removes orphan files, rebuilds the
    /// dedupe index, replays the WAL and starts the writer thread.
    pub fn open(
        config: IngestConfig,
        data_dir: &Path,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let wal_dir = data_dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
        let files = catalog.files()?;
        let published: HashSet<String> = files.iter().map(|f| f.path.clone()).collect();
        let orphans = storage::remove_orphans(data_dir, &published)?;
        if orphans > 0 {
            tracing::info!(orphans, "Removed unpublished files left by an earlier run.");
        }
        let now = clock.now_us();
        let window_us = i64::try_from(config.dedupe_window.as_micros()).unwrap_or(i64::MAX);
        let dedupe = Deduper::default();
        let mut state = MemState::default();
        for file in files {
            if file.max_received_us >= now.saturating_sub(window_us) {
                let ids = storage::read_message_ids(&data_dir.join(&file.path))?;
                dedupe.remember(
                    &file.tenant_id,
                    ids.iter().map(|(id, at)| (id_hash(id), *at)),
                );
            }
            state
                .files
                .entry(file.tenant_id.clone())
                .or_default()
                .push(file);
        }
        let checkpoint = catalog.checkpoint()?;
        let deleted = catalog.deleted_tenants()?;
        let mut buffered = 0usize;
        let mut replayed = 0usize;
        let last_seq = wal::replay(&wal_dir, |record| {
            if record.seq <= checkpoint || deleted.contains(&record.tenant) {
                return Ok(());
            }
            note_ids(&dedupe, &record.tenant, &record.batch)?;
            let bytes = held_bytes(&record.batch);
            buffered += bytes;
            replayed += record.batch.num_rows();
            state.append(&record.tenant, record.batch, bytes);
            Ok(())
        })?;
        let last_seq = last_seq.max(checkpoint);
        state.applied_seq = last_seq;
        wal::delete_empty_segments(&wal_dir)?;
        tracing::info!(
            checkpoint,
            last_seq,
            replayed,
            "Recovered the write-ahead log."
        );
        let segment = SegmentWriter::create(&wal_dir, last_seq + 1, config.sync)?;
        let (tx, rx) = mpsc::channel(config.wal_queue);
        let (feed, _) = broadcast::channel(config.live_feed_capacity);
        let inner = Arc::new(Inner {
            data_dir: data_dir.to_owned(),
            wal_dir,
            catalog,
            clock,
            state: RwLock::new(state),
            dedupe,
            wal_tx: RwLock::new(Some(tx)),
            writer: Mutex::new(None),
            buffered_bytes: AtomicUsize::new(buffered),
            poisoned: AtomicBool::new(false),
            feed,
            maintenance: Mutex::new(()),
            flushing: Mutex::new(()),
            pending_deletes: Mutex::new(Vec::new()),
            last_flush: Mutex::new(Instant::now()),
            deleted: RwLock::new(deleted),
            config,
        });
        let writer_inner = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("beacon-wal".into())
            .spawn(move || writer_loop(&writer_inner, rx, segment, last_seq + 1))
            .map_err(|e| Error::io("wal writer thread", e))?;
        *inner.writer.lock() = Some(handle);
        let store = Self { inner };
        store.update_gauges();
        Ok(store)
    }

    /// The configuration in use.
    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// True once a WAL failure made the store refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::Acquire)
    }

    /// Bytes currently held in memory.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.buffered_bytes.load(Ordering::Acquire)
    }

    /// Subscribes to the feed of accepted batches (bounded; slow receivers lag).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AcceptedBatch>> {
        self.inner.feed.subscribe()
    }

    /// Stores events durably. Returns once they are in the synced WAL and
    /// queryable; events whose `messageId` was stored before are skipped and
    /// reported as duplicates.
    pub async fn ingest(&self, tenant: &str, events: Vec<Event>) -> Result<IngestReceipt> {
        if events.is_empty() {
            return Ok(IngestReceipt::default());
        }
        if self.is_poisoned() {
            return Err(Error::WalPoisoned);
        }
        let inner = &self.inner;
        let hashes: Vec<u128> = events.iter().map(|e| id_hash(&e.message_id)).collect();
        let verdicts = inner
            .dedupe
            .reserve(tenant, &hashes)
            .map_err(|i| Error::InFlight {
                message_id: events[i].message_id.clone(),
            })?;
        let mut duplicates = Vec::new();
        let mut fresh = Vec::with_capacity(events.len());
        let mut fresh_hashes = Vec::with_capacity(events.len());
        for (i, (event, verdict)) in events.into_iter().zip(verdicts).enumerate() {
            match verdict {
                Verdict::New => {
                    fresh_hashes.push(hashes[i]);
                    fresh.push(event);
                }
                Verdict::Duplicate => duplicates.push(i),
            }
        }
        metrics::counter!(metric_names::EVENTS_DUPLICATE).increment(duplicates.len() as u64);
        if fresh.is_empty() {
            return Ok(IngestReceipt {
                accepted: 0,
                duplicates,
                seq: 0,
            });
        }
        let mut reservation = Reservation {
            inner,
            tenant,
            hashes: fresh_hashes,
            bytes: 0,
            armed: true,
        };
        let batch = events_to_batch(&fresh)?;
        let bytes = batch.get_array_memory_size();
        let limit = inner.config.max_buffer_bytes;
        let before = inner.buffered_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > limit {
            inner.buffered_bytes.fetch_sub(bytes, Ordering::AcqRel);
            metrics::counter!(metric_names::BACKPRESSURE).increment(1);
            return Err(Error::Backpressure {
                buffered_bytes: before,
                limit_bytes: limit,
            });
        }
        reservation.bytes = bytes;
        let ipc = wal::encode_batch(&batch)?;
        let sender = inner.wal_tx.read().clone().ok_or(Error::WalClosed)?;
        let (reply, response) = oneshot::channel();
        let accepted = fresh.len();
        let request = WalRequest::Append {
            tenant: tenant.to_owned(),
            batch,
            ipc,
            bytes,
            hashes: reservation.hashes.clone(),
            received_us: inner.clock.now_us(),
            reply,
        };
        // Cancel-safe: if this future is dropped while waiting for queue
        // space, nothing was sent and the guard undoes the reservation.
        sender.send(request).await.map_err(|_| Error::WalClosed)?;
        reservation.armed = false;
        // From here on the writer thread owns the reservation and the bytes:
        // it commits or releases them even if this future is dropped.
        let seq = response.await.map_err(|_| Error::WalClosed)??;
        metrics::counter!(metric_names::EVENTS_ACCEPTED).increment(accepted as u64);
        metrics::counter!(metric_names::BYTES_ACCEPTED).increment(bytes as u64);
        Ok(IngestReceipt {
            accepted,
            duplicates,
            seq,
        })
    }

    /// What a query of `tenant` sees now.
    pub fn snapshot(&self, tenant: &str) -> TenantSnapshot {
        let state = self.inner.state.read();
        let files = state
            .files
            .get(tenant)
            .map(|files| {
                files
                    .iter()
                    .map(|f| (self.inner.data_dir.join(&f.path), f.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let batches = state
            .tails
            .get(tenant)
            .map(|t| t.flushing.iter().chain(t.active.iter()).cloned().collect())
            .unwrap_or_default();
        TenantSnapshot {
            files,
            batches,
            seq: state.applied_seq,
        }
    }

    /// Sizes of a workspace's data.
    pub fn tenant_stats(&self, tenant: &str) -> TenantStats {
        let state = self.inner.state.read();
        let mut stats = TenantStats::default();
        if let Some(tail) = state.tails.get(tenant) {
            stats.memory_rows =
                storage::total_rows(&tail.active) + storage::total_rows(&tail.flushing);
        }
        if let Some(files) = state.files.get(tenant) {
            stats.files = files.len();
            stats.file_rows = files.iter().map(|f| f.rows).sum();
            stats.file_bytes = files.iter().map(|f| f.bytes).sum();
        }
        stats
    }

    /// True when a flush is due by size or age (or an earlier one failed).
    pub fn flush_due(&self) -> bool {
        let (active, flushing) = {
            let state = self.inner.state.read();
            (state.active_bytes, state.flushing_bytes)
        };
        let pending = active + flushing;
        active >= self.inner.config.flush_bytes
            || (pending > 0
                && self.inner.last_flush.lock().elapsed() >= self.inner.config.flush_interval)
    }

    /// Writes the in-memory tail to Parquet and truncates the WAL. Blocking:
    /// call from a blocking thread.
    pub fn flush(&self) -> Result<FlushReport> {
        let inner = &self.inner;
        let _guard = inner.flushing.lock();
        let started = Instant::now();
        *inner.last_flush.lock() = Instant::now();
        let seal = self.seal()?;
        let work: Vec<(String, Vec<RecordBatch>)> = {
            let state = inner.state.read();
            state
                .tails
                .iter()
                .filter(|(_, t)| !t.flushing.is_empty())
                .map(|(tenant, t)| (tenant.clone(), t.flushing.clone()))
                .collect()
        };
        let mut written: Vec<FileMeta> = Vec::new();
        let result = (|| -> Result<()> {
            for (tenant, batches) in &work {
                for (date, part) in storage::split_by_day(batches)? {
                    written.push(storage::write_file(&inner.data_dir, tenant, &date, &part)?);
                }
            }
            inner
                .catalog
                .commit_files(&written, &[], Some(seal.last_seq))
        })();
        if let Err(e) = result {
            for f in &written {
                let _ = std::fs::remove_file(inner.data_dir.join(&f.path));
            }
            tracing::error!(error = %e, "Flush failed; the data stays in memory and in the WAL.");
            return Err(e);
        }
        let rows: usize = written.iter().map(|f| f.rows as usize).sum();
        {
            let mut state = inner.state.write();
            for f in &written {
                state
                    .files
                    .entry(f.tenant_id.clone())
                    .or_default()
                    .push(f.clone());
            }
            let mut freed = 0;
            for (tenant, _) in &work {
                if let Some(tail) = state.tails.get_mut(tenant) {
                    tail.flushing.clear();
                    freed += std::mem::take(&mut tail.flushing_bytes);
                }
            }
            state.flushing_bytes -= freed;
            inner.buffered_bytes.fetch_sub(freed, Ordering::AcqRel);
        }
        wal::delete_segments_before(&inner.wal_dir, seal.keep_from)?;
        metrics::histogram!(metric_names::FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(metric_names::FLUSHED_ROWS).increment(rows as u64);
        self.update_gauges();
        if rows > 0 {
            tracing::debug!(
                rows,
                files = written.len(),
                checkpoint = seal.last_seq,
                "Flushed to Parquet."
            );
        }
        Ok(FlushReport {
            rows,
            files: written.len(),
            checkpoint: seal.last_seq,
        })
    }

    fn seal(&self) -> Result<Seal> {
        let sender = self.inner.wal_tx.read().clone().ok_or(Error::WalClosed)?;
        let (reply, response) = oneshot::channel();
        sender
            .blocking_send(WalRequest::Seal { reply })
            .map_err(|_| Error::WalClosed)?;
        response.blocking_recv().map_err(|_| Error::WalClosed)?
    }

    /// Compaction, retention, deferred deletes and dedupe eviction. Blocking.
    pub fn maintain(&self) -> Result<()> {
        self.apply_retention()?;
        self.compact()?;
        self.delete_expired_files();
        let window_us =
            i64::try_from(self.inner.config.dedupe_window.as_micros()).unwrap_or(i64::MAX);
        self.inner
            .dedupe
            .evict(self.inner.clock.now_us().saturating_sub(window_us));
        self.update_gauges();
        Ok(())
    }

    /// Merges small files, in two tiers:
    ///
    /// - **Days.** The files of a UTC day partition are merged once it has
    ///   `compaction_min_files` of them (flushes write one file per day
    ///   touched, and late events add more).
    /// - **Cold months.** A UTC month that ended at least
    ///   `compaction_cold_after` ago has all its files merged into one
    ///   month file (`date=YYYY-MM`), sorted by time. A year of a small
    ///   shop is then a dozen files of full row groups rather than 365
    ///   small ones, and every engine pays per file opened and per row
    ///   group decoded (ARCHITECTURE.md has the measurement). Late events
    ///   for a cold month land in a day file of that month again; they are
    ///   merged into the month once `compaction_min_files` of them exist,
    ///   so a trickle of late events does not rewrite the month every
    ///   time.
    ///
    /// A merge takes at most `compaction_max_file_bytes` of files (the
    /// smallest first), and files larger than that are left alone. It
    /// streams ([`storage::merge_files`]): memory is a batch per file
    /// merged, not the month. Returns the number of files merged away.
    pub fn compact(&self) -> Result<usize> {
        let inner = &self.inner;
        let _guard = inner.maintenance.lock();
        let cold_after_us =
            i64::try_from(inner.config.compaction_cold_after.as_micros()).unwrap_or(i64::MAX);
        let cold_before = inner.clock.now_us().saturating_sub(cold_after_us);
        let groups: Vec<(String, Vec<FileMeta>)> = {
            let state = inner.state.read();
            let mut groups: HashMap<(String, String), Vec<FileMeta>> = HashMap::new();
            // Cold months that already have a month file (of any size).
            let mut compacted: HashSet<(String, String)> = HashSet::new();
            for files in state.files.values() {
                for f in files {
                    let month = storage::month_of(&f.date);
                    let key = if storage::month_end_us(month).is_some_and(|end| end <= cold_before)
                    {
                        month.to_owned()
                    } else {
                        f.date.clone()
                    };
                    if storage::is_month(&f.date) {
                        compacted.insert((f.tenant_id.clone(), key.clone()));
                    }
                    if f.bytes <= inner.config.compaction_max_file_bytes {
                        groups
                            .entry((f.tenant_id.clone(), key))
                            .or_default()
                            .push(f.clone());
                    }
                }
            }
            groups
                .into_iter()
                .filter_map(|(id, mut g)| {
                    g.sort_by_key(|f| f.bytes);
                    let mut total = 0;
                    g.retain(|f| {
                        total += f.bytes;
                        total <= inner.config.compaction_max_file_bytes
                    });
                    let due = if storage::is_month(&id.1) {
                        let days = g.iter().filter(|f| !storage::is_month(&f.date)).count();
                        g.len() >= 2
                            && (days >= inner.config.compaction_min_files
                                || !compacted.contains(&id))
                    } else {
                        g.len() >= inner.config.compaction_min_files
                    };
                    // Written order (uuid7 names): equal times stay in
                    // the order they were stored.
                    g.sort_by(|a, b| a.path.cmp(&b.path));
                    due.then_some((id.1, g))
                })
                .collect()
        };
        let mut merged = 0;
        for (key, group) in groups {
            let inputs: Vec<PathBuf> = group.iter().map(|f| inner.data_dir.join(&f.path)).collect();
            let new = storage::merge_files(&inner.data_dir, &group[0].tenant_id, &key, &inputs)?;
            let removed: Vec<String> = group.iter().map(|f| f.path.clone()).collect();
            if let Err(e) = inner
                .catalog
                .commit_files(std::slice::from_ref(&new), &removed, None)
            {
                let _ = std::fs::remove_file(inner.data_dir.join(&new.path));
                return Err(e);
            }
            self.replace_files(&new.tenant_id.clone(), &removed, Some(new));
            merged += removed.len();
        }
        metrics::counter!(metric_names::COMPACTED_FILES).increment(merged as u64);
        Ok(merged)
    }

    /// Applies each workspace's retention by UTC day, as day partitions
    /// always did: events before the UTC day of `now - retention_days` go.
    /// Files wholly before that day are unpublished; a month file that
    /// straddles it is rewritten without the expired rows (at most once a
    /// day, since the cut moves by days). Returns the number of files
    /// dropped or cut.
    pub fn apply_retention(&self) -> Result<usize> {
        let inner = &self.inner;
        let _guard = inner.maintenance.lock();
        let now = inner.clock.now_us();
        let mut changed = 0;
        for tenant in inner.catalog.tenants()? {
            let Some(days) = tenant.retention_days else {
                continue;
            };
            let before = changed;
            let cutoff_us = now
                .saturating_sub(i64::from(days).saturating_mul(storage::MICROS_PER_DAY))
                .div_euclid(storage::MICROS_PER_DAY)
                .saturating_mul(storage::MICROS_PER_DAY);
            let (expired, straddling): (Vec<FileMeta>, Vec<FileMeta>) = {
                let state = inner.state.read();
                state
                    .files
                    .get(&tenant.id)
                    .map(|files| {
                        files
                            .iter()
                            .filter(|f| f.min_ts_us < cutoff_us)
                            .cloned()
                            .partition(|f| f.max_ts_us < cutoff_us)
                    })
                    .unwrap_or_default()
            };
            if !expired.is_empty() {
                let expired: Vec<String> = expired.into_iter().map(|f| f.path).collect();
                inner.catalog.commit_files(&[], &expired, None)?;
                self.replace_files(&tenant.id, &expired, None);
                changed += expired.len();
            }
            for f in straddling {
                let input = [inner.data_dir.join(&f.path)];
                let new = storage::merge_files_from(
                    &inner.data_dir,
                    &tenant.id,
                    &f.date,
                    &input,
                    cutoff_us,
                )?;
                let removed = [f.path];
                if let Err(e) =
                    inner
                        .catalog
                        .commit_files(std::slice::from_ref(&new), &removed, None)
                {
                    let _ = std::fs::remove_file(inner.data_dir.join(&new.path));
                    return Err(e);
                }
                self.replace_files(&tenant.id, &removed, Some(new));
                changed += 1;
            }
            if changed > before {
                tracing::info!(tenant = %tenant.id, files = changed - before, cutoff_us, "Applied retention.");
            }
        }
        Ok(changed)
    }

    fn replace_files(&self, tenant: &str, removed: &[String], added: Option<FileMeta>) {
        let inner = &self.inner;
        {
            let mut state = inner.state.write();
            let files = state.files.entry(tenant.to_owned()).or_default();
            files.retain(|f| !removed.contains(&f.path));
            files.extend(added);
        }
        let due = Instant::now() + inner.config.delete_grace;
        inner
            .pending_deletes
            .lock()
            .extend(removed.iter().map(|p| (inner.data_dir.join(p), due)));
        if inner.config.delete_grace.is_zero() {
            self.delete_expired_files();
        }
    }

    fn delete_expired_files(&self) {
        let now = Instant::now();
        let mut pending = self.inner.pending_deletes.lock();
        let deleted = self.inner.deleted.read();
        pending.retain(|(path, due)| {
            if *due > now {
                return true;
            }
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "Could not delete a replaced file.");
                    return true;
                }
            // A deleted workspace's directories go with its last files
            // (only theirs: a live workspace's flush may be creating one).
            if storage::tenant_of_path(path).is_some_and(|t| deleted.contains(t)) {
                for dir in path.ancestors().skip(1).take(2) {
                    if std::fs::remove_dir(dir).is_err() {
                        break;
                    }
                }
            }
            false
        });
    }

    /// Deletes a workspace's events: the catalog tombstones it and drops
    /// its keys and file manifest in one transaction (from then on it does
    /// not exist for any lookup, and a restart does not bring it back);
    /// its in-memory tail and dedupe ids are dropped, appends still queued
    /// for it are refused, its files are deleted after `delete_grace`
    /// (queries already running keep reading them), and a flush
    /// checkpoints past its records so that the WAL segments holding them
    /// are deleted before this returns. Blocking.
    pub fn delete_tenant(&self, tenant: &str, deleted_by: Option<&str>) -> Result<TenantStats> {
        let inner = &self.inner;
        let stats = self.tenant_stats(tenant);
        {
            let _maintenance = inner.maintenance.lock();
            let _flushing = inner.flushing.lock();
            let paths = inner.catalog.delete_tenant(tenant, deleted_by)?;
            inner.deleted.write().insert(tenant.to_owned());
            let freed = {
                let mut state = inner.state.write();
                state.files.remove(tenant);
                match state.tails.remove(tenant) {
                    Some(tail) => {
                        state.active_bytes -= tail.active_bytes;
                        state.flushing_bytes -= tail.flushing_bytes;
                        tail.active_bytes + tail.flushing_bytes
                    }
                    None => 0,
                }
            };
            inner.buffered_bytes.fetch_sub(freed, Ordering::AcqRel);
            inner.dedupe.forget(tenant);
            let due = Instant::now() + inner.config.delete_grace;
            inner
                .pending_deletes
                .lock()
                .extend(paths.iter().map(|p| (inner.data_dir.join(p), due)));
        }
        self.delete_expired_files();
        self.flush()?;
        self.update_gauges();
        tracing::info!(tenant, files = stats.files, rows = stats.file_rows + stats.memory_rows as u64, "Deleted a workspace's events.");
        Ok(stats)
    }

    /// Flushes everything and stops the WAL writer. Blocking.
    pub fn shutdown(&self) -> Result<FlushReport> {
        let report = self.flush();
        self.inner.wal_tx.write().take();
        if let Some(handle) = self.inner.writer.lock().take() {
            let _ = handle.join();
        }
        report
    }

    fn update_gauges(&self) {
        let state = self.inner.state.read();
        let (mut files, mut bytes) = (0usize, 0u64);
        for list in state.files.values() {
            files += list.len();
            bytes += list.iter().map(|f| f.bytes).sum::<u64>();
        }
        metrics::gauge!(metric_names::FILES).set(files as f64);
        metrics::gauge!(metric_names::FILE_BYTES).set(bytes as f64);
        metrics::gauge!(metric_names::BUFFER_BYTES).set(self.buffered_bytes() as f64);
    }
}

fn note_ids(dedupe: &Deduper, tenant: &str, batch: &RecordBatch) -> Result<()> {
    let ids = batch
        .column_by_name(columns::MESSAGE_ID)
        .ok_or_else(|| arrow::error::ArrowError::SchemaError("no message_id column".into()))?
        .as_string::<i32>();
    let received = batch
        .column_by_name(columns::RECEIVED_AT)
        .ok_or_else(|| arrow::error::ArrowError::SchemaError("no received_at column".into()))?
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let pairs = ids.iter().zip(received.values().iter());
    dedupe.remember(
        tenant,
        pairs.filter_map(|(id, at)| id.map(|id| (id_hash(id), *at))),
    );
    Ok(())
}

/// Undoes a dedupe reservation and its buffered bytes when dropped, unless
/// it was handed over to the WAL writer (which then commits or releases it).
struct Reservation<'a> {
    inner: &'a Inner,
    tenant: &'a str,
    hashes: Vec<u128>,
    bytes: usize,
    armed: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.dedupe.release(self.tenant, &self.hashes);
            self.inner
                .buffered_bytes
                .fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

struct Pending {
    seq: u64,
    tenant: String,
    batch: RecordBatch,
    bytes: usize,
    hashes: Vec<u128>,
    received_us: i64,
    reply: oneshot::Sender<Result<u64>>,
}

/// The bytes a batch read back from the WAL holds. Its columns are slices
/// of one IPC message buffer, and `get_array_memory_size` counts that whole
/// buffer once per column buffer (tens of times the data), which after a
/// restart with a large tail refused ingest as if the buffer were full
/// until a flush.
fn held_bytes(batch: &RecordBatch) -> usize {
    use arrow::array::Array;
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// The group-commit loop: the only writer of the WAL and of the tail.
fn writer_loop(
    inner: &Inner,
    mut rx: mpsc::Receiver<WalRequest>,
    mut segment: SegmentWriter,
    mut next_seq: u64,
) {
    let max_group = inner.config.wal_group_max;
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        metrics::histogram!(metric_names::WAL_GROUP_SIZE).record(group.len() as f64);
        let started = Instant::now();
        let mut pending: Vec<Pending> = Vec::new();
        let mut seals = Vec::new();
        let mut failure: Option<String> = None;
        for request in group {
            match request {
                WalRequest::Append {
                    tenant,
                    batch,
                    ipc,
                    bytes,
                    hashes,
                    received_us,
                    reply,
                } => {
                    let rejected = if inner.poisoned.load(Ordering::Acquire) {
                        Some(Error::WalPoisoned)
                    } else if inner.deleted.read().contains(&tenant) {
                        Some(Error::UnknownTenant(tenant.clone()))
                    } else if failure.is_some() {
                        Some(Error::WalClosed)
                    } else {
                        match segment.append(next_seq, &tenant, &ipc) {
                            Ok(()) => None,
                            Err(e) => {
                                failure = Some(e.to_string());
                                Some(e)
                            }
                        }
                    };
                    if let Some(e) = rejected {
                        inner.dedupe.release(&tenant, &hashes);
                        inner.buffered_bytes.fetch_sub(bytes, Ordering::AcqRel);
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    pending.push(Pending {
                        seq: next_seq,
                        tenant,
                        batch,
                        bytes,
                        hashes,
                        received_us,
                        reply,
                    });
                    next_seq += 1;
                }
                WalRequest::Seal { reply } => seals.push(reply),
            }
        }
        let synced = if failure.is_none() && !pending.is_empty() {
            segment.sync().map_err(|e| e.to_string())
        } else {
            match failure {
                Some(f) => Err(f),
                None => Ok(()),
            }
        };
        match synced {
            Ok(()) => {
                if !pending.is_empty() {
                    metrics::histogram!(metric_names::WAL_SYNC_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                }
                let gone: Vec<Pending>;
                {
                    // Checked again under the state lock: a deletion that
                    // began after the check above removes the tail under
                    // this lock too, so a batch is either removed with it
                    // or refused here.
                    let deleted = inner.deleted.read();
                    let mut state = inner.state.write();
                    (pending, gone) = std::mem::take(&mut pending)
                        .into_iter()
                        .partition(|p| !deleted.contains(&p.tenant));
                    for p in &pending {
                        state.append(&p.tenant, p.batch.clone(), p.bytes);
                        state.applied_seq = state.applied_seq.max(p.seq);
                    }
                }
                for p in gone {
                    inner.dedupe.release(&p.tenant, &p.hashes);
                    inner.buffered_bytes.fetch_sub(p.bytes, Ordering::AcqRel);
                    let _ = p.reply.send(Err(Error::UnknownTenant(p.tenant)));
                }
                for p in pending {
                    inner.dedupe.commit(&p.tenant, &p.hashes, p.received_us);
                    let _ = inner.feed.send(Arc::new(AcceptedBatch {
                        tenant: p.tenant,
                        seq: p.seq,
                        batch: p.batch,
                    }));
                    let _ = p.reply.send(Ok(p.seq));
                }
            }
            Err(reason) => {
                tracing::error!(error = %reason, "Write-ahead log write failed; rolling back the commit group.");
                if let Err(e) = segment.rollback() {
                    tracing::error!(error = %e, "Write-ahead log rollback failed; refusing writes until restart.");
                    inner.poisoned.store(true, Ordering::Release);
                }
                for p in pending {
                    inner.dedupe.release(&p.tenant, &p.hashes);
                    inner.buffered_bytes.fetch_sub(p.bytes, Ordering::AcqRel);
                    let _ = p.reply.send(Err(Error::WalClosed));
                }
                next_seq = segment.first_seq().max(next_seq);
                // Sequence numbers of rolled-back records are not reused: gaps are allowed.
            }
        }
        if !seals.is_empty() {
            let result = (|| -> Result<Seal> {
                if inner.poisoned.load(Ordering::Acquire) {
                    return Err(Error::WalPoisoned);
                }
                if !segment.is_empty() {
                    segment = SegmentWriter::create(segment.dir(), next_seq, inner.config.sync)?;
                }
                inner.state.write().seal();
                Ok(Seal {
                    last_seq: next_seq - 1,
                    keep_from: segment.first_seq(),
                })
            })();
            for reply in seals {
                let _ = reply.send(match &result {
                    Ok(seal) => Ok(*seal),
                    Err(Error::WalPoisoned) => Err(Error::WalPoisoned),
                    Err(e) => Err(Error::io("wal seal", std::io::Error::other(format!("{e}")))),
                });
            }
        } else if segment.len() >= inner.config.wal_segment_bytes
            && !inner.poisoned.load(Ordering::Acquire)
        {
            match SegmentWriter::create(segment.dir(), next_seq, inner.config.sync) {
                Ok(new) => segment = new,
                Err(e) => {
                    tracing::warn!(error = %e, "Could not start a new WAL segment; continuing in the current one.")
                }
            }
        }
    }
    if let Err(e) = segment.sync() {
        tracing::error!(error = %e, "Final WAL sync failed.");
    }
}

#[cfg(test)]
mod tests;
