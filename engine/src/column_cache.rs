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
//!   the columns of the scan being served are never evicted for it.
//! - **Not for JSON columns, empty projections or `SELECT *`.** The JSON
//!   columns (`properties`, `context`, `traits`) are most of a file's bytes,
//!   and the queries over them are selective: the Parquet reader's late
//!   materialization serves them better. A scan without columns (`count(*)`)
//!   is answered from statistics.
//! - **Estimates before loading.** Whether a working set fits is decided
//!   before decoding, on bytes per row learned from earlier loads of the
//!   same column (a default per type before the first). A load that turns
//!   out larger than the room left is still used by its query, then
//!   dropped.
//!
//! Memory held by the cache is outside the per-query memory pools and
//! bounded by `engine.column_cache_bytes`; a column evicted while a running
//! query still holds it is freed when that query ends.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::{cast, concat};
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
    /// Decoded bytes per row of each column name, from the last load.
    row_bytes: HashMap<String, f64>,
}

struct FileEntry {
    tenant: String,
    columns: HashMap<usize, Cached>,
    /// Held while the file's missing columns are read, so that two
    /// partitions of one scan decode them once.
    loading: Arc<tokio::sync::Mutex<()>>,
}

struct Cached {
    array: ArrayRef,
    bytes: usize,
    used_at: u64,
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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("column cache lock")
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
                        let per_row = state
                            .row_bytes
                            .get(field.name())
                            .copied()
                            .unwrap_or_else(|| default_row_bytes(field.data_type()));
                        total += per_row * *rows as f64;
                    }
                }
            }
        }
        total <= self.inner.limit as f64
    }

    /// The `columns` of the file at `path` (`rows` rows), from the cache or
    /// decoded now (and kept when they fit).
    pub async fn file_columns(
        &self,
        schema: &SchemaRef,
        tenant: &str,
        path: &Path,
        columns: &[usize],
    ) -> Result<Vec<ArrayRef>> {
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
        let mut present: HashMap<usize, ArrayRef> = HashMap::new();
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
                        present.insert(*c, Arc::clone(&cached.array));
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
            tokio::task::spawn_blocking(move || read_columns(&schema, &path, &missing))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))??
        };
        let mut guard = self.state();
        let state = &mut *guard;
        let mut new_bytes = 0;
        for (&c, array) in missing.iter().zip(&read) {
            let bytes = array.get_array_memory_size();
            if !array.is_empty() {
                state.row_bytes.insert(
                    schema.field(c).name().clone(),
                    bytes as f64 / array.len() as f64,
                );
            }
            new_bytes += bytes;
        }
        // The file may have left the catalog (and the cache) meanwhile.
        let keep = state.files.contains_key(path)
            && state.make_room(new_bytes, self.inner.limit, path, columns);
        state.tick += 1;
        let tick = state.tick;
        if keep && let Some(entry) = state.files.get_mut(path) {
            for (&c, array) in missing.iter().zip(&read) {
                entry.columns.insert(
                    c,
                    Cached {
                        array: Arc::clone(array),
                        bytes: array.get_array_memory_size(),
                        used_at: tick,
                    },
                );
            }
            state.used += new_bytes;
            self.inner.loads.fetch_add(missing.len(), Ordering::Relaxed);
        }
        drop(guard);
        for (c, array) in missing.into_iter().zip(read) {
            present.insert(c, array);
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

    /// Counts a scan served by the cache.
    fn served(&self) {
        self.inner.scans.fetch_add(1, Ordering::Relaxed);
    }
}

impl State {
    /// The cached `columns` of `path`, when all are cached (marking them
    /// used).
    fn lookup(&mut self, path: &Path, columns: &[usize]) -> Option<Vec<ArrayRef>> {
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
                    Arc::clone(&cached.array)
                })
                .collect(),
        )
    }

    /// Evicts least recently used columns, other than `path`'s `keep`, until
    /// `bytes` more fit under `limit`; false when they cannot.
    fn make_room(&mut self, bytes: usize, limit: usize, path: &Path, keep: &[usize]) -> bool {
        if bytes > limit {
            return false;
        }
        while self.used + bytes > limit {
            let victim = self
                .files
                .iter()
                .flat_map(|(p, e)| {
                    e.columns
                        .iter()
                        .map(move |(c, cached)| (p, *c, cached.used_at))
                })
                .filter(|(p, c, _)| !(p.as_path() == path && keep.contains(c)))
                .min_by_key(|(_, _, used_at)| *used_at)
                .map(|(p, c, _)| (p.clone(), c));
            let Some((p, c)) = victim else {
                return false;
            };
            if let Some(e) = self.files.get_mut(&p)
                && let Some(cached) = e.columns.remove(&c)
            {
                self.used -= cached.bytes;
            }
        }
        true
    }
}

/// Decoded bytes per row assumed for a column never loaded.
fn default_row_bytes(t: &DataType) -> f64 {
    match t.primitive_width() {
        Some(w) => w as f64 + 0.125,
        None => 32.0,
    }
}

/// Reads `columns` (indexes into `schema`) of the Parquet file at `path`,
/// each as one array of the table's type. A column the file lacks (written
/// before it existed) is all NULL.
fn read_columns(schema: &SchemaRef, path: &Path, columns: &[usize]) -> Result<Vec<ArrayRef>> {
    let file = std::fs::File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let file_schema = Arc::clone(builder.schema());
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).map_err(|_| {
        DataFusionError::Execution(format!("{}: negative row count", path.display()))
    })?;
    let in_file: Vec<Option<usize>> = columns
        .iter()
        .map(|&c| file_schema.index_of(schema.field(c).name()).ok())
        .collect();
    let roots: Vec<usize> = in_file.iter().flatten().copied().collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()?;
    let mut chunks: Vec<Vec<ArrayRef>> = vec![Vec::new(); columns.len()];
    let mut read = 0;
    for batch in reader {
        let batch = batch?;
        read += batch.num_rows();
        for (i, at) in in_file.iter().enumerate() {
            if let Some(at) = at {
                let name = file_schema.field(*at).name();
                let column = batch.column_by_name(name).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "{}: column {name} not read",
                        path.display()
                    ))
                })?;
                chunks[i].push(Arc::clone(column));
            }
        }
    }
    if read != rows {
        return Err(DataFusionError::Execution(format!(
            "{}: read {read} of {rows} rows",
            path.display()
        )));
    }
    columns
        .iter()
        .zip(chunks)
        .map(|(&c, parts)| {
            let want = schema.field(c).data_type();
            let array = match parts.len() {
                0 => new_null_array(want, rows),
                1 => parts.into_iter().next().expect("one part"),
                _ => {
                    let refs: Vec<&dyn arrow::array::Array> =
                        parts.iter().map(|a| a.as_ref()).collect();
                    concat(&refs)?
                }
            };
            Ok(if array.data_type() == want {
                array
            } else {
                cast(&array, want)?
            })
        })
        .collect()
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
    files: Arc<Vec<PathBuf>>,
    columns: Arc<Vec<usize>>,
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
        Ok(Self {
            cache,
            tenant: tenant.to_owned(),
            table_schema,
            files: Arc::new(files.into_iter().map(|(p, _)| p).collect()),
            columns: Arc::new(columns),
            parts,
            properties,
        })
    }
}

impl DisplayAs for CachedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
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
            .map(|p| {
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
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let pieces = self.parts.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("CachedScanExec has no partition {partition}"))
        })?;
        let batch_size = context.session_config().batch_size().max(1);
        let schema = self.schema();
        let (cache, tenant, table_schema, files, columns) = (
            self.cache.clone(),
            self.tenant.clone(),
            Arc::clone(&self.table_schema),
            Arc::clone(&self.files),
            Arc::clone(&self.columns),
        );
        let out_schema = Arc::clone(&schema);
        let stream = futures::stream::iter(pieces)
            .then(move |piece| {
                let (cache, tenant, table_schema, files, columns, schema) = (
                    cache.clone(),
                    tenant.clone(),
                    Arc::clone(&table_schema),
                    Arc::clone(&files),
                    Arc::clone(&columns),
                    Arc::clone(&out_schema),
                );
                async move {
                    let arrays = cache
                        .file_columns(&table_schema, &tenant, &files[piece.file], &columns)
                        .await?;
                    let mut batches = Vec::with_capacity(piece.len.div_ceil(batch_size));
                    let mut at = piece.start;
                    let end = piece.start + piece.len;
                    while at < end {
                        let n = batch_size.min(end - at);
                        let sliced: Vec<ArrayRef> = arrays.iter().map(|a| a.slice(at, n)).collect();
                        let options = RecordBatchOptions::new().with_row_count(Some(n));
                        batches.push(RecordBatch::try_new_with_options(
                            Arc::clone(&schema),
                            sliced,
                            &options,
                        )?);
                        at += n;
                    }
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

    #[tokio::test]
    async fn loads_once_evicts_least_recently_used_and_forgets_removed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(dir.path(), "a.parquet", 100_000);
        let b = write(dir.path(), "b.parquet", 100_000);
        let schema = schema();
        // Room for a file's `n` (800 KB) and `s`, not for both files'.
        let probe = ColumnCache::new(usize::MAX);
        probe
            .file_columns(&schema, "t", &a, &[0, 1])
            .await
            .expect("probe");
        let one_file = probe.bytes();
        let cache = ColumnCache::new(one_file + one_file / 2);

        let cols = cache
            .file_columns(&schema, "t", &a, &[0, 1, 2])
            .await
            .expect("a");
        assert_eq!(cols[0].as_primitive::<Int64Type>().value(99_999), 99_999);
        assert_eq!(cols[1].as_string::<i32>().value(1), "v1");
        assert!(cols[1].is_null(0));
        assert_eq!(
            cols[2].null_count(),
            100_000,
            "a column the file lacks is NULL"
        );
        assert_eq!(cache.loads(), 3);
        // Cached: no new load, the same arrays.
        let again = cache
            .file_columns(&schema, "t", &a, &[1, 0])
            .await
            .expect("a again");
        assert_eq!(cache.loads(), 3);
        assert!(Arc::ptr_eq(&again[1], &cols[0]));
        // `b` needs room: `a`'s least recently used columns go.
        cache
            .file_columns(&schema, "t", &b, &[0, 1])
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
            .file_columns(&schema, "t", &a, &[0])
            .await
            .expect("tiny");
        assert_eq!(cols[0].len(), 100_000);
        assert_eq!((tiny.bytes(), tiny.loads()), (0, 0));
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
        cache.state().row_bytes.insert("s".into(), 4.0);
        assert!(cache.admits(&schema, &files, &[0, 1]));
        assert!(!ColumnCache::new(0).admits(&schema, &files, &[0]));
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
            vec![(a, 10), (b, 30)],
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
            vec![
                (dir.path().join("a.parquet"), 10),
                (dir.path().join("b.parquet"), 30),
            ],
            vec![0],
            1,
            Some(5),
        )
        .expect("exec");
        assert_eq!(limited.parts[0].len(), 1);
    }
}
