//! Incremental rollups: the `events_rollup` and `items_rollup` tables.
//!
//! `events_rollup`: one row per (15-minute UTC bucket, event, key
//! dimensions) with the event count and the revenue sum. `items_rollup`:
//! one row per (bucket, key dimensions of the order, product) of the line
//! items of completed orders (`properties.products[]`, as the
//! `order_items` view reads them) with the quantity, the line amount, the
//! number of orders and the product's name and category (their `max`).
//! An order is one event, so it falls in one group per product, and the
//! order counts of groups add up to the distinct orders of any union of
//! them (message ids are unique in `events`: ingest deduplicates them).
//!
//! Every Parquet file is rolled up once, when the engine first needs it or
//! when [`Rollups::warm`] runs after a flush (files are immutable;
//! compaction writes new paths, whose rollups replace the old ones), and
//! cached in memory and on disk: `<data dir>/rollups/v<VERSION>/<workspace>/
//! <file stem>.{events,items}.arrow` (Arrow IPC), so a restarted server
//! reads a few megabytes instead of decoding every event again (the first
//! dashboard after a restart at 10M events waited 4.9 s for it). The files
//! on disk are only a cache: one that is missing, unreadable or of another
//! schema is rolled up again, a changed rollup definition bumps
//! [`VERSION`], and files of dropped Parquet files are deleted. The
//! in-memory tail (bounded by the flush size) is rolled up per session. A
//! session's rollup tables are the union of the rollups of exactly the
//! files and tail batches of its snapshot, so they always equal an
//! aggregate of its `events` table: late events land in new files or the
//! tail and are summed in like any other.
//!
//! Fifteen minutes divides every time-zone offset in use, so a bucket never
//! straddles a local hour or day: business-time buckets of `bucket` equal
//! those of the events' timestamps. The analytics API answers from the
//! rollups whenever its filters and breakdown use only rollup dimensions
//! (see [`DIMENSIONS`]); results are identical to the raw answer (tested on
//! real data in `engine/tests/it/real_data.rs`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use beacon_ingest::TenantSnapshot;
use beacon_ingest::schema::event_schema;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::Result;
use crate::provider::EventsTableProvider;

/// Name of the event rollup table in every analytics session.
pub const ROLLUP_TABLE: &str = "events_rollup";

/// Name of the line-item rollup table in every analytics session.
pub const ITEMS_TABLE: &str = "items_rollup";

/// Version of the rollup definitions; rollups on disk of another version
/// are not read (and are deleted).
pub const VERSION: u32 = 1;

/// Property names (as the analytics API resolves them) that are rollup
/// columns, with the column.
pub const DIMENSIONS: [(&str, &str); 12] = [
    ("event", "event"),
    ("channel", "channel"),
    ("location", "location_id"),
    ("location_id", "location_id"),
    ("staff", "staff_id"),
    ("staff_id", "staff_id"),
    ("payment_method", "payment_method"),
    ("currency", "currency"),
    ("country", "country"),
    ("properties.country", "country"),
    ("type", "type"),
    ("status", "status"),
];

/// The bucket and the dimension columns of both rollups, as SQL over
/// `events`' columns.
const KEYS: &str = "date_bin(INTERVAL '15 minutes', timestamp, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket, \
     type, event, channel, location_id, staff_id, payment_method, currency, status, \
     json_as_text(properties, 'country') AS country";

/// The aggregate that builds the event rollup from `src`.
fn rollup_sql(src: &str) -> String {
    format!(
        "SELECT {KEYS}, count(*) AS events, sum(revenue) AS revenue, count(revenue) AS revenue_events \
         FROM {src} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"
    )
}

/// The aggregate that builds the line-item rollup from `src`.
fn items_sql(src: &str) -> String {
    format!(
        "SELECT bucket, type, event, channel, location_id, staff_id, payment_method, currency, status, country, \
                product_id, max(name) AS name, max(category) AS category, sum(quantity) AS quantity, \
                CAST(sum(amount) AS DECIMAL(38, 4)) AS amount, count(DISTINCT message_id) AS orders \
         FROM (SELECT bucket, type, event, channel, location_id, staff_id, payment_method, currency, status, \
                      country, message_id, {fields} \
               FROM (SELECT {KEYS}, message_id, unnest(json_get_array(properties, 'products')) AS item \
                     FROM {src} WHERE event = 'Order Completed')) \
         WHERE product_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11",
        fields = crate::views::item_fields!(),
    )
}

/// The two rollups of one file (or of a tail).
#[derive(Debug, Clone)]
struct Parts {
    events: RecordBatch,
    items: RecordBatch,
}

impl Parts {
    async fn of(snapshot: TenantSnapshot) -> Result<Self> {
        let table = Arc::new(EventsTableProvider::new(event_schema(), snapshot));
        let mut ctx = SessionContext::new();
        datafusion_functions_json::register_all(&mut ctx)?;
        ctx.register_table("src", table)?;
        let (events_sql, items_sql) = (rollup_sql("src"), items_sql("src"));
        let (events, items) =
            futures::try_join!(collect(&ctx, &events_sql), collect(&ctx, &items_sql))?;
        Ok(Self { events, items })
    }
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<RecordBatch> {
    let df = ctx.sql(sql).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await?;
    let mut batches = Vec::new();
    while let Some(b) = stream.next().await {
        batches.push(b?);
    }
    Ok(concat_batches(&schema, &batches)?)
}

/// Rollups of published files, per workspace and path, in memory and (when
/// the engine has a data directory) on disk.
#[derive(Debug, Clone, Default)]
pub struct Rollups {
    files: Arc<Mutex<HashMap<String, HashMap<PathBuf, Parts>>>>,
    /// `<data dir>/rollups`; `None` keeps rollups in memory only.
    dir: Option<PathBuf>,
    /// Workspaces whose directory was swept of rollups of dropped files
    /// since start.
    swept: Arc<Mutex<HashSet<String>>>,
}

/// The rollup tables of one snapshot.
#[derive(Debug)]
pub struct Tables {
    /// `events_rollup`.
    pub events: Arc<MemTable>,
    /// `items_rollup`.
    pub items: Arc<MemTable>,
}

impl Rollups {
    /// Rollups kept on disk under `data_dir/rollups` as well as in memory.
    /// Rollups of other [`VERSION`]s found there are deleted.
    pub fn on_disk(data_dir: &Path) -> Self {
        let dir = data_dir.join("rollups");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let current = format!("v{VERSION}");
            for e in entries.flatten() {
                if e.file_name().to_str() != Some(current.as_str()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Self {
            dir: Some(dir),
            ..Self::default()
        }
    }

    /// The directory of a workspace's rollups on disk (`None` when they are
    /// kept in memory only, or the workspace id is not a plain name).
    fn tenant_dir(&self, tenant: &str) -> Option<PathBuf> {
        let plain = !tenant.is_empty()
            && tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let dir = self.dir.as_ref()?;
        plain.then(|| dir.join(format!("v{VERSION}")).join(tenant))
    }

    /// Forgets a deleted workspace's rollups (in memory and on disk).
    pub fn forget(&self, tenant: &str) {
        self.files.lock().expect("rollup cache lock").remove(tenant);
        if let Some(dir) = self.tenant_dir(tenant) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Rolls up the files of `snapshot` not seen yet (reading the rollups
    /// kept on disk where they are) and forgets files no longer in it;
    /// returns the rollups of exactly its files.
    async fn files(&self, tenant: &str, snapshot: &TenantSnapshot) -> Result<Vec<Parts>> {
        let missing: Vec<_> = {
            let cache = self.files.lock().expect("rollup cache lock");
            let known = cache.get(tenant);
            snapshot
                .files
                .iter()
                .filter(|(p, _)| known.is_none_or(|k| !k.contains_key(p)))
                .cloned()
                .collect()
        };
        let dir = self.tenant_dir(tenant);
        let mut fresh = Vec::with_capacity(missing.len());
        for (path, meta) in missing {
            let loaded = match dir.clone() {
                Some(d) => {
                    let p = path.clone();
                    tokio::task::spawn_blocking(move || read_parts(&d, &p))
                        .await
                        .ok()
                        .flatten()
                }
                None => None,
            };
            let parts = match loaded {
                Some(parts) => parts,
                None => {
                    let one = TenantSnapshot {
                        files: vec![(path.clone(), meta)],
                        batches: Vec::new(),
                        seq: snapshot.seq,
                    };
                    let parts = Parts::of(one).await?;
                    if let Some(d) = dir.clone() {
                        let (p, written) = (path.clone(), parts.clone());
                        // A rollup that cannot be kept on disk is rolled up
                        // again after a restart; nothing else depends on it.
                        let _ = tokio::task::spawn_blocking(move || {
                            if let Err(e) = write_parts(&d, &p, &written) {
                                tracing::warn!(error = %e, file = %p.display(), "Keeping a rollup on disk failed.");
                            }
                        })
                        .await;
                    }
                    parts
                }
            };
            fresh.push((path, parts));
        }
        let live: HashSet<&PathBuf> = snapshot.files.iter().map(|(p, _)| p).collect();
        let (out, dropped) = {
            let mut cache = self.files.lock().expect("rollup cache lock");
            let entry = cache.entry(tenant.to_owned()).or_default();
            entry.extend(fresh);
            let dropped: Vec<PathBuf> = entry
                .keys()
                .filter(|p| !live.contains(p))
                .cloned()
                .collect();
            entry.retain(|p, _| live.contains(p));
            let out = snapshot
                .files
                .iter()
                .filter_map(|(p, _)| entry.get(p).cloned())
                .collect();
            (out, dropped)
        };
        if let Some(d) = dir {
            let first = self
                .swept
                .lock()
                .expect("rollup sweep lock")
                .insert(tenant.to_owned());
            let live: HashSet<String> =
                snapshot.files.iter().filter_map(|(p, _)| stem(p)).collect();
            if first || !dropped.is_empty() {
                tokio::task::spawn_blocking(move || sweep(&d, &live));
            }
        }
        Ok(out)
    }

    /// The rollup tables of `snapshot`: its files' cached rollups and its
    /// tail rolled up now.
    pub async fn tables(&self, tenant: &str, snapshot: &TenantSnapshot) -> Result<Tables> {
        let mut parts = self.files(tenant, snapshot).await?;
        if !snapshot.batches.is_empty() || parts.is_empty() {
            // An empty snapshot still needs the tables' schemas.
            let tail = TenantSnapshot {
                files: Vec::new(),
                batches: snapshot.batches.clone(),
                seq: snapshot.seq,
            };
            parts.push(Parts::of(tail).await?);
        }
        let table = |pick: fn(&Parts) -> &RecordBatch| -> Result<Arc<MemTable>> {
            let schema = pick(&parts[0]).schema();
            let batches: Vec<RecordBatch> = parts
                .iter()
                .map(pick)
                .filter(|b| b.num_rows() > 0)
                .cloned()
                .collect();
            Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
        };
        Ok(Tables {
            events: table(|p| &p.events)?,
            items: table(|p| &p.items)?,
        })
    }

    /// Rolls up new files of `tenant` ahead of the next query (called after
    /// flushes and compactions, and at start).
    pub async fn warm(&self, tenant: &str, snapshot: &TenantSnapshot) -> Result<()> {
        self.files(tenant, snapshot).await.map(|_| ())
    }
}

/// The stem of a data file's name (files are named by a UUID).
fn stem(path: &Path) -> Option<String> {
    path.file_stem()?.to_str().map(str::to_owned)
}

fn part_paths(dir: &Path, file: &Path) -> Option<[PathBuf; 2]> {
    let stem = stem(file)?;
    Some([
        dir.join(format!("{stem}.events.arrow")),
        dir.join(format!("{stem}.items.arrow")),
    ])
}

/// The rollups of `file` kept on disk, if both are there and readable.
fn read_parts(dir: &Path, file: &Path) -> Option<Parts> {
    let [events, items] = part_paths(dir, file)?;
    let read = |path: &Path| -> Option<RecordBatch> {
        let f = std::fs::File::open(path).ok()?;
        let reader =
            arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(f), None).ok()?;
        let schema = reader.schema();
        let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().ok()?;
        concat_batches(&schema, &batches).ok()
    };
    Some(Parts {
        events: read(&events)?,
        items: read(&items)?,
    })
}

/// Keeps the rollups of `file` on disk (each written to a temporary name
/// and renamed, so a reader never sees half a file).
fn write_parts(dir: &Path, file: &Path, parts: &Parts) -> std::io::Result<()> {
    let Some(paths) = part_paths(dir, file) else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    for (path, batch) in paths.iter().zip([&parts.events, &parts.items]) {
        // Unique per write: two engines over one data directory (tests
        // compare them) may roll up the same file at once.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("arrow.{}-{n}.tmp", std::process::id()));
        let f = std::fs::File::create(&tmp)?;
        let mut w =
            arrow::ipc::writer::FileWriter::try_new(std::io::BufWriter::new(f), &batch.schema())
                .map_err(std::io::Error::other)?;
        w.write(batch).map_err(std::io::Error::other)?;
        w.finish().map_err(std::io::Error::other)?;
        drop(w);
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}

/// Deletes the rollups in `dir` of files not in `live` (stems).
fn sweep(dir: &Path, live: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let file_stem = name.split('.').next().unwrap_or_default();
        if !live.contains(file_stem) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
