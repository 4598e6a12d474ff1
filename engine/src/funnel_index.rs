//! The funnel index: `window_funnel` and `funnel_steps` without scanning
//! strings.
//!
//! A funnel query groups a workspace's events by person
//! (`coalesce(user_id, anonymous_id)`) or by session (`session_id`) and
//! walks each group's matching events in time order. Over the Parquet files
//! that means decoding three string columns and hashing a high-cardinality
//! string key for every row: most of the query's time.
//!
//! The index keeps, per published file, four integer columns: the person
//! and the session as dense ids, the `(type, event)` pair as a dense id (a
//! "combo"), and the timestamp (20 bytes a row). Ids come from one
//! dictionary per workspace, so a person has the same id in every file.
//! Each file is indexed once, when [`FunnelIndex::warm`] runs after a flush
//! or compaction (or when a query first needs it); files are immutable and
//! compaction writes new paths, whose entries replace the old ones. The
//! in-memory tail is indexed per query.
//!
//! [`FunnelIndexRule`] (a logical optimizer rule) replaces an aggregate of
//! exactly this shape by a scan of the index, and leaves every other plan
//! alone:
//!
//! - one group key: `coalesce(user_id, anonymous_id)` or `session_id`;
//! - one aggregate: `window_funnel` or `funnel_steps` with constant window
//!   and mode, `timestamp` as its time, no `DISTINCT`, `FILTER` or `ORDER BY`;
//! - step (and exclusion) conditions that read only `type` and `event`;
//! - below it only filters, aliases and column projections over `events`,
//!   whose conditions each read only `type` and `event`, or compare
//!   `timestamp` with a constant, or are `<key> IS NOT NULL`.
//!
//! Conditions on `type` and `event` are evaluated once per distinct pair,
//! with the same physical expressions the raw plan would run, so the index
//! answers exactly what the raw aggregate answers (tested against the raw
//! plan on real data in `engine/tests/it/real_data.rs`). Groups are then
//! formed by a counting sort on the dense ids, and each is evaluated by the
//! aggregate's own [`evaluate_into`].
//!
//! Memory: 20 bytes per indexed event plus the dictionaries (one entry per
//! distinct person, session and combo). [`EngineConfig::funnel_index_bytes`]
//! bounds the cached sequences: past it, files are indexed for the query
//! that needs them and not kept. 0 turns the index off.
//!
//! [`EngineConfig::funnel_index_bytes`]: crate::EngineConfig::funnel_index_bytes

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, Int32Builder, ListBuilder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use async_trait::async_trait;
use beacon_ingest::TenantSnapshot;
use beacon_ingest::schema::{columns, timestamp_type};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::{TableProvider, TableType, provider_as_source, source_as_provider};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Between, BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, Projection,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, create_physical_expr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::TryStreamExt;
use rayon::prelude::*;

use crate::provider::EventsTableProvider;
use crate::udf::funnel::{EXCLUDE_BIT, FunnelMode, FunnelRow, FunnelUdaf, evaluate_into};

/// Id of a missing (NULL) person, session or combo.
const NULL_ID: u32 = u32::MAX;

/// Bytes an indexed event takes.
const ROW_BYTES: usize = 3 * size_of::<u32>() + size_of::<i64>();

/// Columns a file's sequences are built from.
const COLUMNS: [&str; 6] = [
    columns::TYPE,
    columns::EVENT,
    columns::USER_ID,
    columns::ANONYMOUS_ID,
    columns::SESSION_ID,
    columns::TIMESTAMP,
];

/// Name of the index's table in rewritten plans (shown by `EXPLAIN`).
pub const INDEX_TABLE: &str = "beacon_funnel_index";

/// Dense ids for strings.
#[derive(Default)]
struct Interner {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    fn id(&mut self, s: &str) -> Result<u32> {
        if let Some(&id) = self.ids.get(s) {
            return Ok(id);
        }
        let id = match u32::try_from(self.names.len()) {
            Ok(id) if id != NULL_ID => id,
            _ => {
                return Err(DataFusionError::ResourcesExhausted(
                    "funnel index: more than 4 billion distinct keys in one workspace".into(),
                ));
            }
        };
        let name: Arc<str> = Arc::from(s);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        Ok(id)
    }
}

/// `(type, event)` of a combo.
type Combo = (Option<String>, Option<String>);

/// One workspace's dictionaries.
#[derive(Default)]
struct Dicts {
    persons: Interner,
    sessions: Interner,
    combo_ids: HashMap<Combo, u32>,
    combos: Vec<Combo>,
}

impl Dicts {
    fn combo(&mut self, ty: Option<&str>, event: Option<&str>) -> u32 {
        let key = (ty.map(str::to_owned), event.map(str::to_owned));
        if let Some(&id) = self.combo_ids.get(&key) {
            return id;
        }
        let id = self.combos.len() as u32;
        self.combos.push(key.clone());
        self.combo_ids.insert(key, id);
        id
    }
}

/// The integer columns of one file (or of the in-memory tail).
#[derive(Default)]
struct Sequences {
    person: Vec<u32>,
    session: Vec<u32>,
    combo: Vec<u32>,
    ts: Vec<i64>,
}

impl Sequences {
    fn keys(&self, key: Key) -> &[u32] {
        match key {
            Key::Person => &self.person,
            Key::Session => &self.session,
        }
    }

    fn bytes(&self) -> usize {
        self.ts.capacity() * ROW_BYTES
    }

    /// Frees what appending in batches over-allocated.
    fn shrink(&mut self) {
        self.person.shrink_to_fit();
        self.session.shrink_to_fit();
        self.combo.shrink_to_fit();
        self.ts.shrink_to_fit();
    }

    /// Appends `batch`'s rows (it has at least [`COLUMNS`]).
    fn append(&mut self, dicts: &mut Dicts, batch: &RecordBatch) -> Result<()> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| DataFusionError::Internal(format!("funnel index: no column {name}")))
        };
        let utf8 = |name: &str| -> Result<ArrayRef> { Ok(cast(&column(name)?, &DataType::Utf8)?) };
        let (ty, event) = (utf8(columns::TYPE)?, utf8(columns::EVENT)?);
        let (user, anonymous) = (utf8(columns::USER_ID)?, utf8(columns::ANONYMOUS_ID)?);
        let session = utf8(columns::SESSION_ID)?;
        let ts = cast(&column(columns::TIMESTAMP)?, &timestamp_type())?;
        let (ty, event) = (ty.as_string::<i32>(), event.as_string::<i32>());
        let (user, anonymous) = (user.as_string::<i32>(), anonymous.as_string::<i32>());
        let session = session.as_string::<i32>();
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        fn value(a: &StringArray, i: usize) -> Option<&str> {
            a.is_valid(i).then(|| a.value(i))
        }
        let mut combos: HashMap<(Option<&str>, Option<&str>), u32> = HashMap::new();
        let n = batch.num_rows();
        self.person.reserve(n);
        self.session.reserve(n);
        self.combo.reserve(n);
        self.ts.reserve(n);
        for i in 0..n {
            if ts.is_null(i) {
                // A row without a time matches no funnel step (the
                // aggregate skips it); the schema does not allow it.
                continue;
            }
            let pair = (value(ty, i), value(event, i));
            let combo = *combos
                .entry(pair)
                .or_insert_with(|| dicts.combo(pair.0, pair.1));
            let person = match value(user, i).or_else(|| value(anonymous, i)) {
                Some(p) => dicts.persons.id(p)?,
                None => NULL_ID,
            };
            let session = match value(session, i) {
                Some(s) => dicts.sessions.id(s)?,
                None => NULL_ID,
            };
            self.person.push(person);
            self.session.push(session);
            self.combo.push(combo);
            self.ts.push(ts.value(i));
        }
        Ok(())
    }
}

/// One workspace's index.
#[derive(Default)]
struct TenantIndex {
    dicts: Mutex<Dicts>,
    files: Mutex<HashMap<PathBuf, Arc<Sequences>>>,
}

impl fmt::Debug for TenantIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.files.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("TenantIndex")
            .field("files", &files)
            .finish()
    }
}

impl TenantIndex {
    fn dicts(&self) -> std::sync::MutexGuard<'_, Dicts> {
        self.dicts.lock().expect("funnel index dictionary lock")
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Sequences>>> {
        self.files.lock().expect("funnel index file lock")
    }

    /// The sequences of the file at `path`: cached, or read now (and kept
    /// when `budget` admits them); the flag says whether they are kept.
    fn file(&self, path: &Path, budget: &Budget) -> Result<(Arc<Sequences>, bool)> {
        if let Some(s) = self.cached().get(path) {
            return Ok((Arc::clone(s), true));
        }
        let file = std::fs::File::open(path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let mask = ProjectionMask::columns(builder.parquet_schema(), COLUMNS);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()?;
        let mut seq = Sequences::default();
        for batch in reader {
            let batch = batch?;
            seq.append(&mut self.dicts(), &batch)?;
        }
        seq.shrink();
        let seq = Arc::new(seq);
        let mut cached = self.cached();
        let kept = !cached.contains_key(path) && budget.take(seq.bytes());
        if kept {
            cached.insert(path.to_owned(), Arc::clone(&seq));
        }
        Ok((seq, kept))
    }
}

/// Bytes the cached sequences may take.
#[derive(Debug, Default)]
struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + bytes <= self.limit).then_some(used + bytes)
            })
            .is_ok()
    }

    fn fits(&self, bytes: usize) -> bool {
        self.used.load(Ordering::Acquire).saturating_add(bytes) <= self.limit
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The funnel index of every workspace (cheap to clone, shared).
#[derive(Debug, Clone, Default)]
pub struct FunnelIndex {
    tenants: Arc<Mutex<HashMap<String, Arc<TenantIndex>>>>,
    budget: Arc<Budget>,
    answered: Arc<AtomicUsize>,
}

impl FunnelIndex {
    /// An index whose cached sequences take at most `bytes` (0: off).
    pub fn new(bytes: usize) -> Self {
        Self {
            tenants: Arc::default(),
            budget: Arc::new(Budget {
                limit: bytes,
                used: AtomicUsize::new(0),
            }),
            answered: Arc::default(),
        }
    }

    /// True unless the index is off.
    pub fn enabled(&self) -> bool {
        self.budget.limit > 0
    }

    /// Funnel aggregates answered from the index so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// Bytes of cached sequences.
    pub fn bytes(&self) -> usize {
        self.budget.used.load(Ordering::Acquire)
    }

    fn tenant(&self, tenant: &str) -> Arc<TenantIndex> {
        let mut tenants = self.tenants.lock().expect("funnel index lock");
        Arc::clone(tenants.entry(tenant.to_owned()).or_default())
    }

    /// Forgets a deleted workspace's index.
    pub fn forget(&self, tenant: &str) {
        let index = self.tenants.lock().expect("funnel index lock").remove(tenant);
        if let Some(index) = index {
            for (_, s) in index.cached().drain() {
                self.budget.give(s.bytes());
            }
        }
    }

    /// Indexes the files of `snapshot` not indexed yet and forgets files no
    /// longer in it (blocking: reads Parquet; the server calls it after
    /// flushes and compactions).
    pub fn warm(&self, tenant: &str, snapshot: &TenantSnapshot) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let index = self.tenant(tenant);
        let live: HashSet<&PathBuf> = snapshot.files.iter().map(|(p, _)| p).collect();
        {
            let mut cached = index.cached();
            let gone: Vec<PathBuf> = cached
                .keys()
                .filter(|p| !live.contains(p))
                .cloned()
                .collect();
            for p in gone {
                if let Some(s) = cached.remove(&p) {
                    self.budget.give(s.bytes());
                }
            }
        }
        for (path, meta) in &snapshot.files {
            // A file the budget cannot keep is left to the queries that
            // need it (reading it here would be thrown away).
            let estimate = usize::try_from(meta.rows)
                .unwrap_or(usize::MAX)
                .saturating_mul(ROW_BYTES);
            if !index.cached().contains_key(path) && !self.budget.fits(estimate) {
                continue;
            }
            index.file(path, &self.budget)?;
        }
        Ok(())
    }
}

/// What a funnel groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// `coalesce(user_id, anonymous_id)`.
    Person,
    /// `session_id`.
    Session,
}

/// One funnel aggregate the index answers.
#[derive(Debug)]
struct FunnelQuery {
    index: FunnelIndex,
    tenant: String,
    snapshot: TenantSnapshot,
    key: Key,
    /// `window_funnel` (a level) or `funnel_steps` (times).
    level: bool,
    window_us: i64,
    mode: FunnelMode,
    steps: usize,
    /// Step (and exclusion) conditions over a `(type, event)` batch, with
    /// their mask bit.
    conditions: Vec<(u64, Arc<dyn PhysicalExpr>)>,
    /// Row filters over a `(type, event)` batch.
    filters: Vec<Arc<dyn PhysicalExpr>>,
    /// Inclusive time bounds, microseconds.
    time: (i64, i64),
    /// Rows without a key are filtered out (else they form one group).
    drop_null_key: bool,
    /// `(key, value)` as the aggregate outputs them.
    schema: SchemaRef,
}

/// The schema conditions are evaluated on: one row per combo.
fn combo_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::TYPE, DataType::Utf8, true),
        Field::new(columns::EVENT, DataType::Utf8, true),
    ]))
}

/// Groups per output batch.
const GROUPS_PER_BATCH: usize = 1 << 16;

impl FunnelQuery {
    /// Runs the funnel (blocking).
    /// Runs the funnel (blocking); `with_keys`: fill the key column (else
    /// it is left NULL: the plan does not read it).
    fn compute(
        &self,
        reservation: &mut MemoryReservation,
        with_keys: bool,
    ) -> Result<Vec<RecordBatch>> {
        self.index.answered.fetch_add(1, Ordering::Relaxed);
        let index = self.index.tenant(&self.tenant);
        let (lo, hi) = self.time;
        let mut seqs = Vec::new();
        for (path, meta) in &self.snapshot.files {
            if meta.max_ts_us < lo || meta.min_ts_us > hi {
                continue;
            }
            let (seq, kept) = index.file(path, &self.index.budget)?;
            if !kept {
                // Read for this query only: its memory is the query's.
                reservation.try_grow(seq.bytes())?;
            }
            seqs.push(seq);
        }
        let mut tail = Sequences::default();
        for batch in &self.snapshot.batches {
            tail.append(&mut index.dicts(), batch)?;
        }
        reservation.try_grow(tail.bytes())?;
        seqs.push(Arc::new(tail));
        // Key names only when the plan reads the key column.
        let (combos, n, names) = {
            let d = index.dicts();
            let keys = match self.key {
                Key::Person => &d.persons.names,
                Key::Session => &d.sessions.names,
            };
            let names = with_keys.then(|| keys.clone());
            (d.combos.clone(), keys.len(), names)
        };
        reservation.try_grow(
            combos.len() * (size_of::<Combo>() + 2 * size_of::<u64>())
                + names
                    .as_ref()
                    .map_or(0, |n| n.len() * size_of::<Arc<str>>()),
        )?;
        let rows_in: usize = seqs.iter().map(|s| s.ts.len()).sum();
        if u32::try_from(rows_in).is_err() {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "funnel index: {rows_in} events in one query; at most {}",
                u32::MAX
            )));
        }
        let (pass, masks) = self.combo_masks(&combos)?;
        // Per combo: 0 = row filtered out, 1 = kept but matches no
        // condition, 2 = kept and matches one.
        let status: Vec<u8> = pass
            .iter()
            .zip(&masks)
            .map(|(&p, &m)| u8::from(p) * (1 + u8::from(m != 0)))
            .collect();
        // Slot `n` is the NULL key.
        // counts, offsets, their working copy and `seen`.
        reservation.try_grow((n + 1) * (size_of::<u32>() + 2 * size_of::<usize>() + 1))?;
        let mut counts = vec![0u32; n + 1];
        let mut seen = vec![false; n + 1];
        let null_slot = if self.drop_null_key { None } else { Some(n) };
        let key = self.key;
        let kept = |s| kept_rows(s, key, &status, (lo, hi), null_slot);
        for s in &seqs {
            for (k, c, _) in kept(s) {
                seen[k] = true;
                counts[k] += u32::from(status[c as usize] == 2);
            }
        }
        let mut offsets = Vec::with_capacity(n + 2);
        let mut total = 0usize;
        offsets.push(0);
        for &c in &counts {
            total += c as usize;
            offsets.push(total);
        }
        drop(counts);
        reservation.try_grow(total * size_of::<FunnelRow>())?;
        let mut rows = vec![FunnelRow { ts: 0, mask: 0 }; total];
        let mut next = offsets.clone();
        for s in &seqs {
            for (k, c, t) in kept(s).filter(|&(_, c, _)| status[c as usize] == 2) {
                rows[next[k]] = FunnelRow {
                    ts: t,
                    mask: masks[c as usize],
                };
                next[k] += 1;
            }
        }
        drop(next);
        drop(seqs);
        // Disjoint row slices per batch of groups, evaluated in parallel.
        let mut parts: Vec<(Range<usize>, &mut [FunnelRow])> = Vec::new();
        let mut rest: &mut [FunnelRow] = &mut rows;
        let mut start = 0;
        while start <= n {
            let end = (start + GROUPS_PER_BATCH).min(n + 1);
            let (part, tail) = rest.split_at_mut(offsets[end] - offsets[start]);
            rest = tail;
            parts.push((start..end, part));
            start = end;
        }
        parts
            .into_par_iter()
            .map(|(groups, part)| self.emit(groups, part, &offsets, &seen, n, names.as_deref()))
            .filter(|b| !matches!(b, Ok(b) if b.num_rows() == 0))
            .collect()
    }

    /// Per combo: whether its rows pass the filters, and its step mask.
    fn combo_masks(&self, combos: &[Combo]) -> Result<(Vec<bool>, Vec<u64>)> {
        let ty: StringArray = combos.iter().map(|(t, _)| t.as_deref()).collect();
        let event: StringArray = combos.iter().map(|(_, e)| e.as_deref()).collect();
        let batch = RecordBatch::try_new(combo_schema(), vec![Arc::new(ty), Arc::new(event)])?;
        let truth = |expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch| -> Result<BooleanArray> {
            let value = expr.evaluate(batch)?.into_array(batch.num_rows())?;
            if value.data_type() == &DataType::Null {
                // A NULL condition holds for no row (as in the aggregate).
                return Ok(BooleanArray::new_null(value.len()));
            }
            match value.as_boolean_opt() {
                Some(b) => Ok(b.clone()),
                None => Err(DataFusionError::Internal(format!(
                    "funnel index: condition {expr} is not boolean"
                ))),
            }
        };
        let holds = |b: &BooleanArray, i: usize| b.is_valid(i) && b.value(i);
        let mut pass = vec![true; combos.len()];
        for f in &self.filters {
            let b = truth(f, &batch)?;
            for (i, p) in pass.iter_mut().enumerate() {
                *p &= holds(&b, i);
            }
        }
        // Steps are evaluated on the pairs that pass the filters only, as
        // the aggregate sees only the rows that pass them.
        let kept: Vec<u32> = (0..combos.len() as u32)
            .filter(|&i| pass[i as usize])
            .collect();
        let kept_batch = arrow::compute::take_record_batch(
            &batch,
            &arrow::array::UInt32Array::from(kept.clone()),
        )?;
        let mut masks = vec![0u64; combos.len()];
        for (bit, c) in &self.conditions {
            let b = truth(c, &kept_batch)?;
            for (j, &i) in kept.iter().enumerate() {
                if holds(&b, j) {
                    masks[i as usize] |= bit;
                }
            }
        }
        Ok((pass, masks))
    }

    /// The output rows of `groups` (whose rows are `rows`).
    fn emit(
        &self,
        groups: Range<usize>,
        rows: &mut [FunnelRow],
        offsets: &[usize],
        seen: &[bool],
        n: usize,
        names: Option<&[Arc<str>]>,
    ) -> Result<RecordBatch> {
        let base = offsets[groups.start];
        let mut keys = StringBuilder::new();
        let mut levels = Int32Builder::new();
        let mut lists = ListBuilder::new(Float64Builder::new());
        let mut times = Vec::new();
        for k in groups {
            if !seen[k] {
                continue;
            }
            match names {
                Some(names) if k < n => keys.append_value(&names[k]),
                _ => keys.append_null(),
            }
            let group = &mut rows[offsets[k] - base..offsets[k + 1] - base];
            let kept = evaluate_into(group, self.steps, self.window_us, self.mode, &mut times);
            if self.level {
                levels.append_option(kept.then_some(times.len() as i32));
            } else if kept {
                for &t in &times {
                    lists.values().append_value(t as f64 / 1e6);
                }
                lists.append(true);
            } else {
                lists.append(false);
            }
        }
        let value: ArrayRef = if self.level {
            Arc::new(levels.finish())
        } else {
            Arc::new(lists.finish())
        };
        let value = match self.schema.field(1).data_type() {
            t if t == value.data_type() => value,
            t => cast(&value, t)?,
        };
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![Arc::new(keys.finish()), value],
        )?)
    }
}

/// The rows of `s` that pass the filters (`status` > 0) within `time`, as
/// (group slot, combo, timestamp); NULL keys go to `null_slot` or are
/// left out.
fn kept_rows<'a>(
    s: &'a Sequences,
    key: Key,
    status: &'a [u8],
    (lo, hi): (i64, i64),
    null_slot: Option<usize>,
) -> impl Iterator<Item = (usize, u32, i64)> + 'a {
    s.keys(key)
        .iter()
        .zip(&s.combo)
        .zip(&s.ts)
        .filter_map(move |((&k, &c), &t)| {
            if status[c as usize] == 0 || t < lo || t > hi {
                return None;
            }
            let slot = if k != NULL_ID { k as usize } else { null_slot? };
            Some((slot, c, t))
        })
}

/// The index as a table: one row per group, `(key, value)`.
#[derive(Debug)]
struct FunnelTable {
    query: Arc<FunnelQuery>,
}

#[async_trait]
impl TableProvider for FunnelTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.query.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection = projection.cloned();
        let schema = match &projection {
            Some(p) => Arc::new(self.query.schema.project(p)?),
            None => Arc::clone(&self.query.schema),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(FunnelIndexExec {
            query: Arc::clone(&self.query),
            projection,
            properties,
        }))
    }
}

/// Runs a [`FunnelQuery`].
#[derive(Debug)]
struct FunnelIndexExec {
    query: Arc<FunnelQuery>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for FunnelIndexExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FunnelIndexExec: key={:?}, steps={}, files={}",
            self.query.key,
            self.query.steps,
            self.query.snapshot.files.len()
        )
    }
}

impl ExecutionPlan for FunnelIndexExec {
    fn name(&self) -> &str {
        "FunnelIndexExec"
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
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let query = Arc::clone(&self.query);
        let projection = self.projection.clone();
        let mut reservation =
            MemoryConsumer::new("FunnelIndexExec").register(context.memory_pool());
        let run = async move {
            let with_keys = projection.as_ref().is_none_or(|p| p.contains(&0));
            let batches = tokio::task::spawn_blocking(move || {
                let out = query.compute(&mut reservation, with_keys);
                drop(reservation);
                out
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
            let batches: Vec<Result<RecordBatch>> = batches
                .into_iter()
                .map(|b| match &projection {
                    Some(p) => Ok(b.project(p)?),
                    None => Ok(b),
                })
                .collect();
            Ok::<_, DataFusionError>(futures::stream::iter(batches))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(run).try_flatten(),
        )))
    }
}

/// Rewrites funnel aggregates the index can answer (see the module docs).
#[derive(Debug)]
pub struct FunnelIndexRule {
    index: FunnelIndex,
    tenant: String,
}

impl FunnelIndexRule {
    /// The rule for `tenant`'s sessions.
    pub fn new(index: FunnelIndex, tenant: &str) -> Self {
        Self {
            index,
            tenant: tenant.to_owned(),
        }
    }
}

impl OptimizerRule for FunnelIndexRule {
    fn name(&self) -> &str {
        "beacon_funnel_index"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match self.rewrite_aggregate(aggregate, config)? {
            Some(new) => Ok(Transformed::yes(new)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

fn is_column(e: &Expr, name: &str) -> bool {
    matches!(unalias(e), Expr::Column(c) if c.name == name)
}

/// The key `e` groups by, if the index has it.
fn key_of(e: &Expr) -> Option<Key> {
    match unalias(e) {
        Expr::Column(c) if c.name == columns::SESSION_ID => Some(Key::Session),
        // The simplifier's form of the same coalesce.
        Expr::Case(case)
            if case.expr.is_none()
                && case.when_then_expr.len() == 1
                && matches!(case.when_then_expr[0].0.as_ref(),
                            Expr::IsNotNull(c) if is_column(c, columns::USER_ID))
                && is_column(&case.when_then_expr[0].1, columns::USER_ID)
                && case
                    .else_expr
                    .as_deref()
                    .is_some_and(|e| is_column(e, columns::ANONYMOUS_ID)) =>
        {
            Some(Key::Person)
        }
        Expr::ScalarFunction(f)
            if f.name() == "coalesce"
                && f.args.len() == 2
                && is_column(&f.args[0], columns::USER_ID)
                && is_column(&f.args[1], columns::ANONYMOUS_ID) =>
        {
            Some(Key::Person)
        }
        _ => None,
    }
}

/// True when `e` reads only `type` and `event`, deterministically.
fn on_combo(e: &Expr) -> bool {
    let mut ok = !e.is_volatile();
    e.apply(|e| {
        match e {
            Expr::Column(c) if c.name == columns::TYPE || c.name == columns::EVENT => {}
            Expr::Column(_)
            | Expr::ScalarSubquery(_)
            | Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::OuterReferenceColumn(..)
            | Expr::Placeholder(_)
            | Expr::AggregateFunction(_)
            | Expr::WindowFunction(_) => ok = false,
            _ => {}
        }
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })
    .expect("the visit cannot fail");
    ok
}

/// `e` with its column references unqualified.
fn unqualified(e: &Expr) -> Result<Expr> {
    e.clone()
        .transform(|e| match e {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                c.name,
            )))),
            other => Ok(Transformed::no(other)),
        })
        .data()
}

/// A microsecond timestamp constant.
fn micros(e: &Expr) -> Option<i64> {
    match unalias(e) {
        Expr::Literal(ScalarValue::TimestampMicrosecond(Some(v), _), _) => Some(*v),
        _ => None,
    }
}

/// Narrows `time` by `e` when `e` compares `timestamp` with a constant.
fn time_bound(e: &Expr, time: &mut (i64, i64)) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, v) = if is_column(left, columns::TIMESTAMP) {
                (*op, micros(right))
            } else if is_column(right, columns::TIMESTAMP) {
                match op.swap() {
                    Some(op) => (op, micros(left)),
                    None => return false,
                }
            } else {
                return false;
            };
            let Some(v) = v else { return false };
            match op {
                Operator::Gt => time.0 = time.0.max(v.saturating_add(1)),
                Operator::GtEq => time.0 = time.0.max(v),
                Operator::Lt => time.1 = time.1.min(v.saturating_sub(1)),
                Operator::LtEq => time.1 = time.1.min(v),
                Operator::Eq => *time = (time.0.max(v), time.1.min(v)),
                _ => return false,
            }
            true
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_column(expr, columns::TIMESTAMP) => match (micros(low), micros(high)) {
            (Some(l), Some(h)) => {
                *time = (time.0.max(l), time.1.min(h));
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// True when `e` is `<key> IS NOT NULL` (or, for a person, the
/// simplifier's `user_id IS NOT NULL OR anonymous_id IS NOT NULL`).
fn key_not_null(e: &Expr, key: Key) -> bool {
    match e {
        Expr::IsNotNull(inner) => key_of(inner) == Some(key),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) if key == Key::Person => {
            let not_null =
                |e: &Expr, name: &str| matches!(e, Expr::IsNotNull(c) if is_column(c, name));
            (not_null(left, columns::USER_ID) && not_null(right, columns::ANONYMOUS_ID))
                || (not_null(left, columns::ANONYMOUS_ID) && not_null(right, columns::USER_ID))
        }
        _ => false,
    }
}

impl FunnelIndexRule {
    fn rewrite_aggregate(
        &self,
        aggregate: &Aggregate,
        config: &dyn OptimizerConfig,
    ) -> Result<Option<LogicalPlan>> {
        if aggregate.group_expr.len() != 1 || aggregate.aggr_expr.len() != 1 {
            return Ok(None);
        }
        let Expr::AggregateFunction(AggregateFunction { func, params }) =
            unalias(&aggregate.aggr_expr[0])
        else {
            return Ok(None);
        };
        let Some(udaf) = (func.inner().as_ref() as &dyn std::any::Any).downcast_ref::<FunnelUdaf>()
        else {
            return Ok(None);
        };
        if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
            return Ok(None);
        }
        // The output: (key Utf8, value) exactly as the aggregate has it.
        let fields = aggregate.schema.fields();
        if fields.len() != 2 || fields[0].data_type() != &DataType::Utf8 {
            return Ok(None);
        }
        // Rows: filters, aliases and projections over `events`. Expressions
        // are rewritten through projections (common subexpression
        // elimination moves repeated step conditions into one) so that
        // they read the table's columns.
        let mut group = unalias(&aggregate.group_expr[0]).clone();
        let mut args: Vec<Expr> = params.args.iter().map(|a| unalias(a).clone()).collect();
        let mut predicates: Vec<Expr> = Vec::new();
        let mut node = aggregate.input.as_ref();
        let scan = loop {
            match node {
                LogicalPlan::Filter(f) => {
                    predicates.extend(split_conjunction(&f.predicate).into_iter().cloned());
                    node = &f.input;
                }
                LogicalPlan::SubqueryAlias(a) => node = &a.input,
                LogicalPlan::Projection(p) => {
                    let outputs: HashMap<&str, &Expr> = p
                        .schema
                        .fields()
                        .iter()
                        .zip(&p.expr)
                        .map(|(f, e)| (f.name().as_str(), unalias(e)))
                        .collect();
                    let through = |e: &mut Expr| -> Result<()> {
                        *e = e
                            .clone()
                            .transform(|e| match e {
                                Expr::Column(c) => match outputs.get(c.name.as_str()) {
                                    Some(&inner) => Ok(Transformed::yes(inner.clone())),
                                    None => Ok(Transformed::no(Expr::Column(c))),
                                },
                                other => Ok(Transformed::no(other)),
                            })
                            .data()?;
                        Ok(())
                    };
                    through(&mut group)?;
                    for e in args.iter_mut().chain(predicates.iter_mut()) {
                        through(e)?;
                    }
                    node = &p.input;
                }
                LogicalPlan::TableScan(s) => break s,
                _ => return Ok(None),
            }
        };
        if scan.fetch.is_some() {
            return Ok(None);
        }
        let provider = source_as_provider(&scan.source)?;
        let Some(events) =
            (provider.as_ref() as &dyn std::any::Any).downcast_ref::<EventsTableProvider>()
        else {
            return Ok(None);
        };
        for f in &scan.filters {
            predicates.extend(split_conjunction(f).into_iter().cloned());
        }
        let Some(key) = key_of(&group) else {
            return Ok(None);
        };
        let level = udaf.is_level();
        let fixed = if level { 3 } else { 4 };
        if args.len() <= fixed || !is_column(&args[2], columns::TIMESTAMP) {
            return Ok(None);
        }
        let window_s = match unalias(&args[0]) {
            Expr::Literal(v, _) => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(w))) if w >= 0 => w,
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        let mode = match unalias(&args[1]) {
            Expr::Literal(
                ScalarValue::Utf8(Some(m))
                | ScalarValue::LargeUtf8(Some(m))
                | ScalarValue::Utf8View(Some(m)),
                _,
            ) => match FunnelMode::parse(m) {
                Some(mode) => mode,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        let schema = DFSchema::try_from(combo_schema())?;
        // The session's options, as the physical planner would pass them.
        let mut props = datafusion::logical_expr::execution_props::ExecutionProps::new();
        props.config_options = Some(config.options());
        if let Some(start) = config.query_execution_start_time() {
            props.query_execution_start_time = Some(start);
        }
        let physical = |e: &Expr| -> Option<Arc<dyn PhysicalExpr>> {
            let e = unqualified(e).ok()?;
            create_physical_expr(&e, &schema, &props, &PhysicalPlanningContext::default()).ok()
        };
        let mut time = (i64::MIN, i64::MAX);
        let mut drop_null_key = false;
        let mut filters = Vec::new();
        for p in &predicates {
            let p = unalias(p);
            if matches!(p, Expr::Literal(ScalarValue::Boolean(Some(true)), _)) {
                continue;
            }
            if key_not_null(p, key) {
                drop_null_key = true;
            } else if time_bound(p, &mut time) {
            } else if on_combo(p) {
                match physical(p) {
                    Some(f) => filters.push(f),
                    None => return Ok(None),
                }
            } else {
                return Ok(None);
            }
        }
        let mut conditions = Vec::new();
        for (i, c) in args[3..].iter().enumerate() {
            let bit = if level {
                1u64 << i
            } else if i == 0 {
                EXCLUDE_BIT
            } else {
                1u64 << (i - 1)
            };
            if !on_combo(c) {
                return Ok(None);
            }
            match physical(c) {
                Some(p) => conditions.push((bit, p)),
                None => return Ok(None),
            }
        }
        let out = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, true),
            Field::new("value", fields[1].data_type().clone(), true),
        ]));
        let query = FunnelQuery {
            index: self.index.clone(),
            tenant: self.tenant.clone(),
            snapshot: events.snapshot().clone(),
            key,
            level,
            window_us: window_s.saturating_mul(1_000_000),
            mode,
            steps: args.len() - fixed,
            conditions,
            filters,
            time,
            drop_null_key,
            schema: Arc::clone(&out),
        };
        let table = Arc::new(FunnelTable {
            query: Arc::new(query),
        });
        let scan =
            LogicalPlanBuilder::scan(INDEX_TABLE, provider_as_source(table), None)?.build()?;
        let exprs = aggregate
            .schema
            .iter()
            .zip(["key", "value"])
            .map(|((qualifier, field), name)| {
                Expr::Column(Column::new(Some(INDEX_TABLE), name))
                    .alias_qualified(qualifier.cloned(), field.name())
            })
            .collect();
        Ok(Some(LogicalPlan::Projection(Projection::try_new(
            exprs,
            Arc::new(scan),
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_are_inclusive_and_exact() {
        let ts = || Expr::Column(Column::new_unqualified(columns::TIMESTAMP));
        let lit = |v: i64| Expr::Literal(ScalarValue::TimestampMicrosecond(Some(v), None), None);
        let mut time = (i64::MIN, i64::MAX);
        assert!(time_bound(&ts().gt_eq(lit(10)), &mut time));
        assert!(time_bound(&lit(20).gt(ts()), &mut time));
        assert_eq!(time, (10, 19));
        // A constant of another unit is not taken (it would need rounding).
        let millis = Expr::Literal(ScalarValue::TimestampMillisecond(Some(1), None), None);
        assert!(!time_bound(&ts().lt(millis), &mut time));
        assert!(!time_bound(&ts().not_eq(lit(5)), &mut time));
    }

    #[test]
    fn only_type_and_event_conditions_are_per_combo() {
        let col = |n: &str| Expr::Column(Column::new_unqualified(n));
        let text = |s: &str| Expr::Literal(ScalarValue::Utf8(Some(s.into())), None);
        assert!(on_combo(&col("event").eq(text("a"))));
        assert!(on_combo(
            &col("type").eq(text("page")).or(col("event").eq(text("b")))
        ));
        assert!(!on_combo(&col("channel").eq(text("web"))));
        assert!(!on_combo(&col("event").eq(col("user_id"))));
    }
}
