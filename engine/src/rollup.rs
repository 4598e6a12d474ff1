//! Incremental rollups: the `events_rollup` table.
//!
//! One row per (15-minute UTC bucket, event, key dimensions) with the event
//! count and the revenue sum. Every Parquet file is rolled up once, when the
//! engine first needs it or when [`Rollups::warm`] runs after a flush (files
//! are immutable; compaction writes new paths, whose rollups replace the old
//! ones), and cached; the in-memory tail (bounded by the flush size) is
//! rolled up per session. A session's `events_rollup` is the union of the
//! rollups of exactly the files and tail batches of its snapshot, so it
//! always equals an aggregate of its `events` table: late events land in
//! new files or the tail and are summed in like any other.
//!
//! Fifteen minutes divides every time-zone offset in use, so a bucket never
//! straddles a local hour or day: business-time buckets of `bucket` equal
//! those of the events' timestamps. The analytics API answers from the
//! rollup whenever its filters and breakdown use only rollup dimensions
//! (see [`DIMENSIONS`]); results are identical to the raw answer (tested on
//! real data in `engine/tests/it/real_data.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
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

/// Name of the rollup table in every analytics session.
pub const ROLLUP_TABLE: &str = "events_rollup";

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

/// The aggregate that builds a rollup from `src`.
fn rollup_sql(src: &str) -> String {
    format!(
        "SELECT date_bin(INTERVAL '15 minutes', timestamp, TIMESTAMP '1970-01-01T00:00:00Z') AS bucket, \
                type, event, channel, location_id, staff_id, payment_method, currency, status, \
                json_as_text(properties, 'country') AS country, \
                count(*) AS events, sum(revenue) AS revenue, count(revenue) AS revenue_events \
         FROM {src} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"
    )
}

/// Rollups of published files, per workspace and path.
#[derive(Debug, Clone, Default)]
pub struct Rollups {
    files: Arc<Mutex<HashMap<String, HashMap<PathBuf, RecordBatch>>>>,
}

async fn aggregate(table: Arc<dyn datafusion::catalog::TableProvider>) -> Result<RecordBatch> {
    let mut ctx = SessionContext::new();
    datafusion_functions_json::register_all(&mut ctx)?;
    ctx.register_table("src", table)?;
    let df = ctx.sql(&rollup_sql("src")).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await?;
    let mut batches = Vec::new();
    while let Some(b) = stream.next().await {
        batches.push(b?);
    }
    Ok(concat_batches(&schema, &batches)?)
}

impl Rollups {
    /// Forgets a deleted workspace's rollups.
    pub fn forget(&self, tenant: &str) {
        self.files.lock().expect("rollup cache lock").remove(tenant);
    }

    /// Rolls up the files of `snapshot` not seen yet and forgets files no
    /// longer in it; returns the rollups of exactly its files.
    pub async fn files(&self, tenant: &str, snapshot: &TenantSnapshot) -> Result<Vec<RecordBatch>> {
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
        let mut fresh = Vec::with_capacity(missing.len());
        for (path, meta) in missing {
            let one = TenantSnapshot {
                files: vec![(path.clone(), meta)],
                batches: Vec::new(),
                seq: snapshot.seq,
            };
            let table = Arc::new(EventsTableProvider::new(event_schema(), one));
            fresh.push((path, aggregate(table).await?));
        }
        let mut cache = self.files.lock().expect("rollup cache lock");
        let entry = cache.entry(tenant.to_owned()).or_default();
        entry.extend(fresh);
        let live: std::collections::HashSet<&PathBuf> =
            snapshot.files.iter().map(|(p, _)| p).collect();
        entry.retain(|p, _| live.contains(p));
        Ok(snapshot
            .files
            .iter()
            .filter_map(|(p, _)| entry.get(p).cloned())
            .collect())
    }

    /// The rollup table of `snapshot`: its files' cached rollups and its
    /// tail rolled up now.
    pub async fn table(&self, tenant: &str, snapshot: &TenantSnapshot) -> Result<Arc<MemTable>> {
        let mut parts = self.files(tenant, snapshot).await?;
        if !snapshot.batches.is_empty() {
            let tail = TenantSnapshot {
                files: Vec::new(),
                batches: snapshot.batches.clone(),
                seq: snapshot.seq,
            };
            parts.push(aggregate(Arc::new(EventsTableProvider::new(event_schema(), tail))).await?);
        }
        let schema = match parts.first() {
            Some(b) => b.schema(),
            None => {
                let empty = TenantSnapshot {
                    files: Vec::new(),
                    batches: Vec::new(),
                    seq: snapshot.seq,
                };
                aggregate(Arc::new(EventsTableProvider::new(event_schema(), empty)))
                    .await?
                    .schema()
            }
        };
        let parts: Vec<RecordBatch> = parts.into_iter().filter(|b| b.num_rows() > 0).collect();
        Ok(Arc::new(MemTable::try_new(schema, vec![parts])?))
    }

    /// Rolls up new files of `tenant` ahead of the next query (called after
    /// flushes and compactions).
    pub async fn warm(&self, tenant: &str, snapshot: &TenantSnapshot) -> Result<()> {
        self.files(tenant, snapshot).await.map(|_| ())
    }
}
