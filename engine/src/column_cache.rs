//! The column cache: decoded Arrow columns of published Parquet files, kept
//! in memory between queries.
//!
//! Most of an ad-hoc query's time over Parquet is spent decoding: a scan of
//! `event` at 10M events is 0.2 s of dictionary pages turned into strings,
//! every time, while the filter and aggregate over it take 30 ms. Files are
//! immutable (compaction writes new paths), so a column decoded once stays
//! right until its file leaves the catalog. The cache keeps such columns,
//! one Arrow array per file and column, and the `events` scan serves them
//! ([`CachedScanExec`]) instead of decoding the file again. This is what
//! InfluxDB 3's Parquet cache and GreptimeDB's read cache do for the same
//! reason; it is also the "columnar Arrow in memory" half of Beacon's
//! storage for the files that are queried.
//!
//! Policy (decided here; see ARCHITECTURE.md):
//! - **Filled by queries.** A scan loads the columns it needs of each file
//!   on first use; later scans read them from memory. Warming after
//!   flushes only forgets files that left the catalog.
//! - **All or nothing per scan.** A scan uses the cache when its whole
//!   working set (the needed columns of every file it reads, cached or not)
//!   fits in the budget; otherwise it reads Parquet as before and caches
//!   nothing. A scan larger than the cache would otherwise evict its own
//!   first files to make room for its last ones, on every run.
//! - **Least recently used columns go first** when a load needs room;
//!   the columns of the scan being served (of every file it reads) are
//!   never evicted for it, and nothing is evicted for a load that could
//!   not fit anyway.
//! - **Not for JSON columns, empty projections or `SELECT *`.** The JSON
//!   columns (`properties`, `context`, `traits`) are most of a file's bytes,
//!   and the queries over them are selective: the Parquet reader's late
//!   materialization serves them better. A scan without columns (`count(*)`)
//!   is answered from statistics.
//! - **Estimates before loading.** Whether a working set fits is decided
//!   before decoding, on the bytes per row of all earlier loads of the
//!   same column name (a default per type before the first). A load that
//!   turns out larger than the room left is still used by its query, then
//!   dropped (and decoded again by the next scan that needs it).
//! - **Chunks of 8192 rows.** A file's column is kept as the reader's
//!   batches, not one array: DataFusion charges a batch for the whole
//!   buffers it points into, so slices of a file-wide array would make a
//!   sort over cached columns look a hundred times its size to the
//!   query's memory pool.
//!
//! Memory held by the cache is outside the per-query memory pools and
//! bounded by `engine.column_cache_bytes`. Not bounded by it: a column
//! evicted while a running query still holds it (freed when that query
//! ends), and loads in progress (each scan partition decodes at most one
//! file at a time).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

/// Rows per cached chunk (DataFusion's default batch size).
pub const CHUNK_ROWS: usize = 8192;

/// One file's column: its chunks in row order.
pub type Chunks = Arc<Vec<ArrayRef>>;

/// Decoded columns of published files, shared by every workspace's
/// sessions (cheap to clone).
#[derive(Clone)]
pub struct ColumnCache {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    state: Mutex<State>,
    /// Scans served from the cache.
    scans: AtomicUsize,
    /// Columns decoded into the cache (one per file and column).
    loads: AtomicUsize,
}

#[derive(Default)]
struct State {
    used: usize,
    tick: u64,
    files: HashMap<PathBuf, FileEntry>,
    /// Decoded bytes and rows of every load of each column name.
    sizes: HashMap<String, (f64, f64)>,
}

struct FileEntry {
    tenant: String,
    columns: HashMap<usize, Cached>,
    /// Held while the file's missing columns are read, so that two
    /// partitions of one scan decode them once.
    loading: Arc<tokio::sync::Mutex<()>>,
}

struct Cached {
    chunks: Chunks,
    bytes: usize,
    used_at: u64,
}

/// The files and columns of one scan: what a load for it must not evict.
#[derive(Debug)]
pub struct ScanSet {
    files: HashSet<PathBuf>,
    columns: Vec<usize>,
}

impl ScanSet {
    fn holds(&self, path: &Path, column: usize) -> bool {
        self.columns.contains(&column) && self.files.contains(path)
    }
}

impl fmt::Debug for ColumnCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnCache")
            .field("limit", &self.inner.limit)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl ColumnCache {
    /// A cache holding at most `limit` bytes of columns (0: off).
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                state: Mutex::default(),
                scans: AtomicUsize::new(0),
                loads: AtomicUsize::new(0),
            }),
        }
    }

    /// True unless the cache is off.
    pub fn enabled(&self) -> bool {
        self.inner.limit > 0
    }

    /// Bytes of cached columns.
    pub fn bytes(&self) -> usize {
        self.state().used
    }

    /// Most bytes the cache keeps.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Scans planned on the cache so far.
    pub fn scans(&self) -> usize {
        self.inner.scans.load(Ordering::Relaxed)
    }

    /// Columns of files decoded into the cache so far.
    pub fn loads(&self) -> usize {
        self.inner.loads.load(Ordering::Relaxed)
    }

    /// The state; a panic while it was held leaves it consistent (every
    /// update of `used` goes with its map change), so poisoning is ignored.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a scan of `columns` (indexes into `schema`) of `files`
    /// (path, rows) fits in the cache, counting what is cached at its size
    /// and the rest at its estimated size.
    pub fn admits(
        &self,
        schema: &SchemaRef,
        files: &[(PathBuf, usize)],
        columns: &[usize],
    ) -> bool {
        if !self.enabled() {
            return false;
        }
        let state = self.state();
        let mut total = 0f64;
        for (path, rows) in files {
            let entry = state.files.get(path);
            for &c in columns {
                match entry.and_then(|e| e.columns.get(&c)) {
                    Some(cached) => total += cached.bytes as f64,
                    None => {
                        let field = schema.field(c);
                        let per_row = match state.sizes.get(field.name()) {
                            Some((bytes, rows)) if *rows > 0.0 => bytes / rows,
                            _ => default_row_bytes(field.data_type()),
                        };
                        total += per_row * *rows as f64;
                    }
                }
            }
        }
        total <= self.inner.limit as f64
    }

    /// The `columns` of the file at `path`, which has `rows` rows, from the
    /// cache or decoded now (and kept when they fit without evicting
    /// anything of `scan`).
    pub async fn file_columns(
        &self,
        schema: &SchemaRef,
        tenant: &str,
        path: &Path,
        rows: usize,
        scan: &ScanSet,
    ) -> Result<Vec<Chunks>> {
        let columns = &scan.columns;
        let loading = {
            let mut state = self.state();
            if let Some(found) = state.lookup(path, columns) {
                return Ok(found);
            }
            let entry = state
                .files
                .entry(path.to_owned())
                .or_insert_with(|| FileEntry {
                    tenant: tenant.to_owned(),
                    columns: HashMap::new(),
                    loading: Arc::default(),
                });
            Arc::clone(&entry.loading)
        };
        let _loading = loading.lock().await;
        // Columns cached now are taken here, so that evictions for other
        // scans while this one reads cannot take them away.
        let mut present: HashMap<usize, Chunks> = HashMap::new();
        let missing: Vec<usize> = {
            let mut state = self.state();
            if let Some(found) = state.lookup(path, columns) {
                return Ok(found);
            }
            let entry = state.files.get(path);
            columns
                .iter()
                .copied()
                .filter(|c| match entry.and_then(|e| e.columns.get(c)) {
                    Some(cached) => {
                        present.insert(*c, Arc::clone(&cached.chunks));
                        false
                    }
                    None => true,
                })
                .collect()
        };
        let read = {
            let schema = Arc::clone(schema);
            let path = path.to_owned();
            let missing = missing.clone();
            tokio::task::spawn_blocking(move || read_columns(&schema, &path, rows, &missing))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))??
        };
        let mut guard = self.state();
        let state = &mut *guard;
        let mut new_bytes = 0;
        for (&c, chunks) in missing.iter().zip(&read) {
            let bytes = chunks_bytes(chunks);
            let size = state
                .sizes
                .entry(schema.field(c).name().clone())
                .or_default();
            size.0 += bytes as f64;
            size.1 += rows as f64;
            new_bytes += bytes;
        }
        // Kept only into the entry this load locked: the file may have
        // left the catalog (and the cache) meanwhile, and a new entry for
        // it belongs to another load.
        let same_entry = state
            .files
            .get(path)
            .is_some_and(|e| Arc::ptr_eq(&e.loading, &loading));
        let keep = same_entry && state.make_room(new_bytes, self.inner.limit, scan);
        state.tick += 1;
        let tick = state.tick;
        if keep && let Some(entry) = state.files.get_mut(path) {
            let mut replaced = 0;
            for (&c, chunks) in missing.iter().zip(&read) {
                let cached = Cached {
                    chunks: Arc::clone(chunks),
                    bytes: chunks_bytes(chunks),
                    used_at: tick,
                };
                if let Some(old) = entry.columns.insert(c, cached) {
                    replaced += old.bytes;
                }
            }
            for (c, cached) in entry.columns.iter_mut() {
                if present.contains_key(c) {
                    cached.used_at = tick;
                }
            }
            state.used = state.used + new_bytes - replaced;
            self.inner.loads.fetch_add(missing.len(), Ordering::Relaxed);
        }
        drop(guard);
        for (c, chunks) in missing.into_iter().zip(read) {
            present.insert(c, chunks);
        }
        columns
            .iter()
            .map(|c| {
                present.get(c).cloned().ok_or_else(|| {
                    DataFusionError::Internal(format!("column {c} neither cached nor read"))
                })
            })
            .collect()
    }

    /// Files with cached columns.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state()
            .files
            .iter()
            .filter(|(_, e)| !e.columns.is_empty())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Forgets `tenant`'s files that are not in `live` (compacted away).
    pub fn retain(&self, tenant: &str, live: &HashSet<&PathBuf>) {
        let mut state = self.state();
        let gone: Vec<PathBuf> = state
            .files
            .iter()
            .filter(|(p, e)| e.tenant == tenant && !live.contains(p))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(e) = state.files.remove(&p) {
                state.used -= e.columns.values().map(|c| c.bytes).sum::<usize>();
            }
        }
    }

    /// Forgets every file of a deleted workspace.
    pub fn forget(&self, tenant: &str) {
        self.retain(tenant, &HashSet::new());
    }

    /// Counts a scan served by the cache.
    fn served(&self) {
        self.inner.scans.fetch_add(1, Ordering::Relaxed);
    }
}

impl State {
    /// The cached `columns` of `path`, when all are cached (marking them
    /// used).
    fn lookup(&mut self, path: &Path, columns: &[usize]) -> Option<Vec<Chunks>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.files.get_mut(path)?;
        if !columns.iter().all(|c| entry.columns.contains_key(c)) {
            return None;
        }
        Some(
            columns
                .iter()
                .map(|c| {
                    let cached = entry.columns.get_mut(c).expect("checked above");
                    cached.used_at = tick;
                    Arc::clone(&cached.chunks)
                })
                .collect(),
        )
    }

    /// Evicts least recently used columns outside `scan` until `bytes`
    /// more fit under `limit`; false (and nothing evicted) when they
    /// cannot.
    fn make_room(&mut self, bytes: usize, limit: usize, scan: &ScanSet) -> bool {
        if self.used + bytes <= limit {
            return true;
        }
        let mut victims: Vec<(u64, PathBuf, usize, usize)> = self
            .files
            .iter()
            .flat_map(|(p, e)| {
                e.columns
                    .iter()
                    .filter(|(c, _)| !scan.holds(p, **c))
                    .map(|(c, cached)| (cached.used_at, p.clone(), *c, cached.bytes))
            })
            .collect();
        let evictable: usize = victims.iter().map(|v| v.3).sum();
        if self.used - evictable + bytes > limit {
            return false;
        }
        victims.sort_unstable_by_key(|v| v.0);
        for (_, p, c, _) in victims {
            if self.used + bytes <= limit {
                break;
            }
            if let Some(e) = self.files.get_mut(&p)
                && let Some(cached) = e.columns.remove(&c)
            {
                self.used -= cached.bytes;
            }
        }
        true
    }
}

fn chunks_bytes(chunks: &[ArrayRef]) -> usize {
    chunks.iter().map(|a| a.get_array_memory_size()).sum()
}

/// Decoded bytes per row assumed for a column never loaded.
fn default_row_bytes(t: &DataType) -> f64 {
    match t.primitive_width() {
        Some(w) => w as f64 + 0.125,
        None => 32.0,
    }
}

/// Reads `columns` (indexes into `schema`) of the Parquet file at `path`,
/// which the catalog says has `rows` rows, each as chunks of
/// [`CHUNK_ROWS`] rows of the table's type. A column the file lacks
/// (written before it existed) is all NULL; a value the table's type
/// cannot hold is an error, as in DataFusion's own schema adaptation.
fn read_columns(
    schema: &SchemaRef,
    path: &Path,
    rows: usize,
    columns: &[usize],
) -> Result<Vec<Chunks>> {
    let file = std::fs::File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let file_schema = Arc::clone(builder.schema());
    let in_file: Vec<Option<usize>> = columns
        .iter()
        .map(|&c| file_schema.index_of(schema.field(c).name()).ok())
        .collect();
    let roots: Vec<usize> = in_file.iter().flatten().copied().collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(CHUNK_ROWS)
        .build()?;
    let strict = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let mut chunks: Vec<Vec<ArrayRef>> = vec![Vec::new(); columns.len()];
    let mut read = 0;
    for batch in reader {
        let batch = batch?;
        let n = batch.num_rows();
        read += n;
        for (i, at) in in_file.iter().enumerate() {
            let want = schema.field(columns[i]).data_type();
            let array = match at {
                Some(at) => {
                    let name = file_schema.field(*at).name();
                    let column = batch.column_by_name(name).ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "{}: column {name} not read",
                            path.display()
                        ))
                    })?;
                    if column.data_type() == want {
                        Arc::clone(column)
                    } else {
                        cast_with_options(column, want, &strict)?
                    }
                }
                None => new_null_array(want, n),
            };
            chunks[i].push(array);
        }
    }
    if read != rows {
        return Err(DataFusionError::Execution(format!(
            "{}: the file has {read} rows, the catalog {rows}",
            path.display()
        )));
    }
    Ok(chunks.into_iter().map(Arc::new).collect())
}

/// Rows `start..start + len` of one file, read by one partition.
#[derive(Debug, Clone, Copy)]
struct Piece {
    file: usize,
    start: usize,
    len: usize,
}

/// Scans published files from the [`ColumnCache`], loading what it lacks.
/// Rows are dealt to partitions in contiguous ranges of equal size (a file
/// may be split between two), in file order.
#[derive(Debug)]
pub struct CachedScanExec {
    cache: ColumnCache,
    tenant: String,
    table_schema: SchemaRef,
    files: Arc<Vec<(PathBuf, usize)>>,
    scan: Arc<ScanSet>,
    parts: Vec<Vec<Piece>>,
    properties: Arc<PlanProperties>,
}

impl CachedScanExec {
    /// A scan of `columns` (indexes into `table_schema`) of `files` (path,
    /// rows) in at most `partitions` partitions; each partition stops
    /// after the file in which it reaches `limit` rows.
    pub fn new(
        cache: ColumnCache,
        tenant: &str,
        table_schema: SchemaRef,
        files: Vec<(PathBuf, usize)>,
        columns: Vec<usize>,
        partitions: usize,
        limit: Option<usize>,
    ) -> Result<Self> {
        let schema = Arc::new(table_schema.project(&columns)?);
        let total: usize = files.iter().map(|(_, r)| r).sum();
        let n = partitions.clamp(1, total.max(1));
        let mut parts: Vec<Vec<Piece>> = vec![Vec::new(); n];
        let mut offset = 0;
        for (i, (_, rows)) in files.iter().enumerate() {
            let (lo, hi) = (offset, offset + rows);
            offset = hi;
            for (p, part) in parts.iter_mut().enumerate() {
                let (from, to) = (total * p / n, total * (p + 1) / n);
                let (s, e) = (lo.max(from), hi.min(to));
                if s < e {
                    part.push(Piece {
                        file: i,
                        start: s - lo,
                        len: e - s,
                    });
                }
            }
        }
        if let Some(limit) = limit {
            for part in &mut parts {
                let mut rows = 0;
                let keep = part
                    .iter()
                    .take_while(|p| {
                        let before = rows;
                        rows += p.len;
                        before < limit
                    })
                    .count();
                part.truncate(keep);
            }
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(n),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        cache.served();
        let scan = ScanSet {
            files: files.iter().map(|(p, _)| p.clone()).collect(),
            columns,
        };
        Ok(Self {
            cache,
            tenant: tenant.to_owned(),
            table_schema,
            files: Arc::new(files),
            scan: Arc::new(scan),
            parts,
            properties,
        })
    }
}

/// Batches of rows `start..start + len` of `columns` (each a file's chunks,
/// whose boundaries may differ between columns), none crossing a chunk
/// boundary of any column, so that every batch points into buffers of at
/// most [`CHUNK_ROWS`] rows.
fn batches_of(
    schema: &SchemaRef,
    columns: &[Chunks],
    start: usize,
    len: usize,
) -> Result<Vec<RecordBatch>> {
    // Per column: index of the chunk holding row `at`, and that chunk's
    // first row.
    let mut cursors: Vec<(usize, usize)> = vec![(0, 0); columns.len()];
    let mut out = Vec::with_capacity(len.div_ceil(CHUNK_ROWS));
    let (mut at, end) = (start, start + len);
    while at < end {
        let mut n = end - at;
        for (chunks, cursor) in columns.iter().zip(cursors.iter_mut()) {
            while cursor.0 < chunks.len() && cursor.1 + chunks[cursor.0].len() <= at {
                cursor.1 += chunks[cursor.0].len();
                cursor.0 += 1;
            }
            let chunk = chunks.get(cursor.0).ok_or_else(|| {
                DataFusionError::Internal(format!("cached column ends before row {at}"))
            })?;
            n = n.min(cursor.1 + chunk.len() - at);
        }
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .zip(&cursors)
            .map(|(chunks, (i, first))| chunks[*i].slice(at - first, n))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        out.push(RecordBatch::try_new_with_options(
            Arc::clone(schema),
            arrays,
            &options,
        )?);
        at += n;
    }
    Ok(out)
}

impl DisplayAs for CachedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .scan
            .columns
            .iter()
            .map(|&c| self.table_schema.field(c).name().as_str())
            .collect();
        // Each file as its partition directory and name (`date=.../x.parquet`),
        // the first ten unless verbose.
        let shown = match t {
            DisplayFormatType::Verbose => self.files.len(),
            _ => self.files.len().min(10),
        };
        let mut files: Vec<String> = self.files[..shown]
            .iter()
            .map(|(p, _)| {
                let mut parts = p.iter().rev().take(2).collect::<Vec<_>>();
                parts.reverse();
                parts
                    .iter()
                    .map(|s| s.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        if shown < self.files.len() {
            files.push(format!("... {} more", self.files.len() - shown));
        }
        write!(
            f,
            "CachedScanExec: partitions={}, projection=[{}], files=[{}]",
            self.parts.len(),
            names.join(", "),
            files.join(", ")
        )
    }
}

impl ExecutionPlan for CachedScanExec {
    fn name(&self) -> &str {
        "CachedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let pieces = self.parts.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("CachedScanExec has no partition {partition}"))
        })?;
        let schema = self.schema();
        let (cache, tenant, table_schema, files, scan) = (
            self.cache.clone(),
            self.tenant.clone(),
            Arc::clone(&self.table_schema),
            Arc::clone(&self.files),
            Arc::clone(&self.scan),
        );
        let out_schema = Arc::clone(&schema);
        let stream = futures::stream::iter(pieces)
            .then(move |piece| {
                let (cache, tenant, table_schema, files, scan, schema) = (
                    cache.clone(),
                    tenant.clone(),
                    Arc::clone(&table_schema),
                    Arc::clone(&files),
                    Arc::clone(&scan),
                    Arc::clone(&out_schema),
                );
                async move {
                    let (path, rows) = &files[piece.file];
                    let columns = cache
                        .file_columns(&table_schema, &tenant, path, *rows, &scan)
                        .await?;
                    let batches = batches_of(&schema, &columns, piece.start, piece.len)?;
                    Ok::<_, DataFusionError>(futures::stream::iter(batches.into_iter().map(Ok)))
                }
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::compute::concat;
    use arrow::datatypes::{Field, Int64Type, Schema};
    use datafusion::parquet::arrow::ArrowWriter;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new("added_later", DataType::Utf8, true),
        ]))
    }

    /// A file of `rows` rows, without the last column of [`schema`].
    fn write(dir: &Path, name: &str, rows: i64) -> PathBuf {
        let file_schema = Arc::new(schema().project(&[0, 1]).expect("project"));
        let n = Int64Array::from_iter_values(0..rows);
        let s = StringArray::from_iter((0..rows).map(|i| (i % 7 != 0).then(|| format!("v{i}"))));
        let batch = RecordBatch::try_new(Arc::clone(&file_schema), vec![Arc::new(n), Arc::new(s)])
            .expect("batch");
        let path = dir.join(name);
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(&path).expect("create"),
            file_schema,
            None,
        )
        .expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        path
    }

    fn scan(files: &[&PathBuf], columns: &[usize]) -> ScanSet {
        ScanSet {
            files: files.iter().map(|p| (*p).clone()).collect(),
            columns: columns.to_vec(),
        }
    }

    fn flat(chunks: &Chunks) -> ArrayRef {
        let refs: Vec<&dyn Array> = chunks.iter().map(|a| a.as_ref()).collect();
        concat(&refs).expect("concat")
    }

    #[tokio::test]
    async fn loads_once_evicts_least_recently_used_and_forgets_removed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(dir.path(), "a.parquet", 100_000);
        let b = write(dir.path(), "b.parquet", 100_000);
        let schema = schema();
        // Room for one file's `n` and `s` and half of another's.
        let probe = ColumnCache::new(usize::MAX);
        probe
            .file_columns(&schema, "t", &a, 100_000, &scan(&[&a], &[0, 1]))
            .await
            .expect("probe");
        let one_file = probe.bytes();
        let cache = ColumnCache::new(one_file + one_file / 2);

        let cols = cache
            .file_columns(&schema, "t", &a, 100_000, &scan(&[&a], &[0, 1, 2]))
            .await
            .expect("a");
        assert!(
            cols.iter()
                .all(|c| c.len() == 100_000usize.div_ceil(CHUNK_ROWS)),
            "kept in chunks of {CHUNK_ROWS} rows"
        );
        let (n, s, later) = (flat(&cols[0]), flat(&cols[1]), flat(&cols[2]));
        assert_eq!(n.as_primitive::<Int64Type>().value(99_999), 99_999);
        assert_eq!(s.as_string::<i32>().value(1), "v1");
        assert!(s.is_null(0));
        assert_eq!(
            later.null_count(),
            100_000,
            "a column the file lacks is NULL"
        );
        assert_eq!(cache.loads(), 3);
        // Cached: no new load, the same chunks.
        let again = cache
            .file_columns(&schema, "t", &a, 100_000, &scan(&[&a], &[1, 0]))
            .await
            .expect("a again");
        assert_eq!(cache.loads(), 3);
        assert!(Arc::ptr_eq(&again[1], &cols[0]));
        // Every batch of a scan points into one chunk per column, not into
        // the file's whole column (DataFusion charges a batch for the
        // buffers it points into).
        let exec = CachedScanExec::new(
            cache.clone(),
            "t",
            Arc::clone(&schema),
            vec![(a.clone(), 100_000)],
            vec![0, 1],
            1,
            None,
        )
        .expect("exec");
        let batches: Vec<RecordBatch> = exec
            .execute(0, Arc::new(TaskContext::default()))
            .expect("execute")
            .try_collect()
            .await
            .expect("collect");
        assert_eq!(cache.loads(), 3, "served from the cache");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 100_000);
        for b in &batches {
            assert!(
                b.get_array_memory_size() * 8 < one_file,
                "a batch of {} rows holds {} of the file's {one_file} bytes",
                b.num_rows(),
                b.get_array_memory_size()
            );
        }
        // A load that cannot fit without evicting its own scan's columns
        // is served, kept nowhere, and evicts nothing.
        let used = cache.bytes();
        let both = scan(&[&a, &b], &[0, 1]);
        let cols = cache
            .file_columns(&schema, "t", &b, 100_000, &both)
            .await
            .expect("b, not kept");
        assert_eq!(flat(&cols[0]).len(), 100_000);
        assert_eq!((cache.bytes(), cache.loads()), (used, 3));
        assert!(!cache.files().contains(&b));
        // `b` alone needs room: `a`'s least recently used columns go.
        cache
            .file_columns(&schema, "t", &b, 100_000, &scan(&[&b], &[0, 1]))
            .await
            .expect("b");
        assert!(
            cache.bytes() <= cache.limit(),
            "{} > {}",
            cache.bytes(),
            cache.limit()
        );
        assert_eq!(cache.loads(), 5);
        assert!(cache.files().contains(&b));
        // What does not fit is read and served, and not kept.
        let tiny = ColumnCache::new(1_000);
        let cols = tiny
            .file_columns(&schema, "t", &a, 100_000, &scan(&[&a], &[0]))
            .await
            .expect("tiny");
        assert_eq!(flat(&cols[0]).len(), 100_000);
        assert_eq!((tiny.bytes(), tiny.loads()), (0, 0));
        // A file whose row count is not the catalog's is an error.
        let err = tiny
            .file_columns(&schema, "t", &a, 99_999, &scan(&[&a], &[0]))
            .await
            .expect_err("row count");
        assert!(err.to_string().contains("the catalog 99999"), "{err}");
        // Files compaction removed are forgotten.
        cache.retain("other", &HashSet::new());
        assert!(cache.files().contains(&b), "another workspace's files stay");
        cache.retain("t", &HashSet::from([&a]));
        assert!(!cache.files().contains(&b));
        assert!(cache.bytes() <= one_file);
    }

    #[test]
    fn admits_by_learned_row_sizes() {
        let schema = schema();
        let cache = ColumnCache::new(1_000_000);
        let files = [(PathBuf::from("x"), 50_000)];
        // 8 bytes and a validity bit per row: 406 KB.
        assert!(cache.admits(&schema, &files, &[0]));
        // A string column is assumed at 32 bytes per row until learned.
        assert!(!cache.admits(&schema, &files, &[0, 1]));
        // Learned over every load: a tiny file's overhead does not set it.
        cache
            .state()
            .sizes
            .insert("s".into(), (4.0 * 100_000.0 + 640.0, 100_010.0));
        assert!(cache.admits(&schema, &files, &[0, 1]));
        assert!(!ColumnCache::new(0).admits(&schema, &files, &[0]));
    }

    #[test]
    fn batches_never_cross_a_chunk_of_any_column() {
        let ints =
            |r: std::ops::Range<i64>| -> ArrayRef { Arc::new(Int64Array::from_iter_values(r)) };
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
        ]));
        let a: Chunks = Arc::new(vec![ints(0..3), ints(3..8)]);
        let b: Chunks = Arc::new(vec![ints(100..104), ints(104..108)]);
        let batches = batches_of(&schema, &[a, b], 1, 6).expect("batches");
        let lens: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
        assert_eq!(lens, vec![2, 1, 3]);
        let values = |c: usize| -> Vec<i64> {
            batches
                .iter()
                .flat_map(|b| b.column(c).as_primitive::<Int64Type>().values().to_vec())
                .collect()
        };
        assert_eq!(values(0), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(values(1), vec![101, 102, 103, 104, 105, 106]);
        let past = batches_of(
            &schema,
            &[Arc::new(vec![ints(0..3)]), Arc::new(vec![ints(0..3)])],
            2,
            5,
        );
        assert!(
            past.is_err(),
            "rows past the columns' end are an error, not a panic"
        );
    }

    #[tokio::test]
    async fn partitions_split_rows_evenly_across_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(dir.path(), "a.parquet", 10);
        let b = write(dir.path(), "b.parquet", 30);
        let cache = ColumnCache::new(usize::MAX);
        let exec = CachedScanExec::new(
            cache.clone(),
            "t",
            schema(),
            vec![(a.clone(), 10), (b.clone(), 30)],
            vec![0],
            3,
            None,
        )
        .expect("exec");
        let lens: Vec<Vec<(usize, usize, usize)>> = exec
            .parts
            .iter()
            .map(|p| p.iter().map(|x| (x.file, x.start, x.len)).collect())
            .collect();
        assert_eq!(
            lens,
            vec![
                vec![(0, 0, 10), (1, 0, 3)],
                vec![(1, 3, 13)],
                vec![(1, 16, 14)]
            ]
        );
        let ctx = Arc::new(TaskContext::default());
        let mut seen = Vec::new();
        for p in 0..3 {
            let batches: Vec<RecordBatch> = exec
                .execute(p, Arc::clone(&ctx))
                .expect("execute")
                .try_collect()
                .await
                .expect("collect");
            for b in batches {
                seen.extend(
                    b.column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
            }
        }
        let want: Vec<i64> = (0..10).chain(0..30).collect();
        assert_eq!(seen, want);
        // A limit stops each partition after the piece that reaches it.
        let limited = CachedScanExec::new(
            cache,
            "t",
            schema(),
            vec![(a, 10), (b, 30)],
            vec![0],
            1,
            Some(5),
        )
        .expect("exec");
        assert_eq!(limited.parts[0].len(), 1);
    }
}
