//! The dashboard suite: the queries behind Beacon's dashboards (revenue by
//! day, weekday x hour heatmap, 3- and 5-step funnels, weekly cohort
//! retention, rolling 7-day revenue, top-N products, one customer's
//! timeline) and a few ad-hoc analyst queries, on Beacon and, in the same
//! run over the same Parquet files, on DuckDB, Polars and DataFusion's
//! Python package (`benches/peers/dashboard_peers.py`).
//!
//! For each size the generator's events go through Beacon's ingest decoder
//! into a real `Store` (flushed to Parquet per day, then compacted and its
//! rollups and funnel index warmed as the server's maintenance does: every month of the
//! generated year is cold, so one file per month); the peers read exactly the store's published
//! Parquet files (a directory of links to them). Every answer is
//! fingerprinted (rows, and the sum of its numeric cells), and a peer's
//! time only counts when its fingerprint equals Beacon's.
//!
//! ```sh
//! benches/peers/setup.sh && cargo build --release -p beacon-api -p beacon-benches
//! target/release/dashboard_bench --events 1000000,10000000
//! ```
//!
//! Writes the "Dashboard queries" section of `benches/RESULTS.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type};
use arrow::datatypes::{UInt32Type, UInt64Type};
use beacon_datasets::generate::generate_count;
use beacon_datasets::message::Message;
use beacon_datasets::output::decode_lines;
use beacon_engine::{Engine, EngineConfig, rollup};
use beacon_ingest::wal::SyncMode;
use beacon_ingest::{Catalog, IngestConfig, Store, SystemClock};
use chrono::{TimeZone, Utc};
use clap::Parser;
use serde_json::Value;

/// The server's allocator (`api/src/main.rs`), so the engine is measured
/// as it runs in `beacon`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Event counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    events: Vec<usize>,
    /// Timed runs per query (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Python with the peers (benches/peers/setup.sh).
    #[arg(long, default_value = "benches/.venv/bin/python")]
    python: PathBuf,
    /// Only these queries (all when empty).
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// Results file.
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: PathBuf,
    /// Where to build the data (a temporary directory when absent).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Reopen the data a previous run left in `--work-dir` instead of
    /// generating it again (for profiling one query).
    #[arg(long, requires = "work_dir")]
    reuse: bool,
    /// Beacon only: no peers, and RESULTS.md is left alone.
    #[arg(long)]
    no_peers: bool,
    /// Print each query's `EXPLAIN ANALYZE` (after its timed runs).
    #[arg(long)]
    explain: bool,
    /// Time these statements on Beacon instead of the suite (repeatable;
    /// for trying a formulation on the same data; `{customer}` is
    /// replaced). Beacon only: needs `--no-peers`.
    #[arg(long, requires = "no_peers")]
    sql: Vec<String>,
    /// Beacon's scan and aggregation partitions (the engine's
    /// `target_partitions`; 0 = one per core, the server's default). For
    /// trying a setting: needs `--no-peers`.
    #[arg(long, default_value_t = 0, requires = "no_peers")]
    target_partitions: usize,
}

/// Which part of the suite a query belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dashboard,
    Funnel,
    AdHoc,
}

/// One query of the suite as Beacon runs it.
struct Query {
    name: &'static str,
    kind: Kind,
    /// Beacon's SQL (`{customer}` is replaced).
    sql: &'static str,
    /// The same answer from the rollup table, as the dashboard API does.
    rollup_sql: Option<&'static str>,
}

const FUNNEL3: &str = "SELECT level, count(*) AS persons FROM ( \
    SELECT window_funnel(1209600, 'sequential', timestamp, \
           event = 'Product Viewed', event = 'Product Added', event = 'Order Completed') AS level \
    FROM events WHERE event IN ('Product Viewed', 'Product Added', 'Order Completed') \
    GROUP BY coalesce(user_id, anonymous_id)) WHERE level > 0 GROUP BY level ORDER BY level";

const FUNNEL5: &str = "SELECT level, count(*) AS sessions FROM ( \
    SELECT window_funnel(86400, 'sequential', timestamp, type = 'page', \
           event = 'Product Viewed', event = 'Product Added', event = 'Checkout Started', event = 'Order Completed') AS level \
    FROM events WHERE session_id IS NOT NULL AND (type = 'page' OR event IN \
           ('Product Viewed', 'Product Added', 'Checkout Started', 'Order Completed')) \
    GROUP BY session_id) WHERE level > 0 GROUP BY level ORDER BY level";

const QUERIES: &[Query] = &[
    Query {
        name: "revenue_by_day",
        kind: Kind::Dashboard,
        sql: "SELECT business_date(timestamp, 'day') AS day, sum(revenue) AS revenue, count(*) AS orders \
              FROM events WHERE event = 'Order Completed' GROUP BY 1 ORDER BY 1",
        rollup_sql: Some(
            "SELECT business_date(bucket, 'day') AS day, sum(revenue) AS revenue, sum(events) AS orders \
             FROM events_rollup WHERE event = 'Order Completed' GROUP BY 1 ORDER BY 1",
        ),
    },
    Query {
        name: "heatmap",
        kind: Kind::Dashboard,
        sql: "SELECT business_weekday(timestamp) AS weekday, business_hour(timestamp) AS hour, \
              count(*) AS orders, sum(revenue) AS revenue \
              FROM events WHERE event = 'Order Completed' GROUP BY 1, 2 ORDER BY 1, 2",
        rollup_sql: Some(
            "SELECT business_weekday(bucket) AS weekday, business_hour(bucket) AS hour, \
             sum(events) AS orders, sum(revenue) AS revenue \
             FROM events_rollup WHERE event = 'Order Completed' GROUP BY 1, 2 ORDER BY 1, 2",
        ),
    },
    Query {
        name: "funnel3",
        kind: Kind::Funnel,
        sql: FUNNEL3,
        rollup_sql: None,
    },
    Query {
        name: "funnel5",
        kind: Kind::Funnel,
        sql: FUNNEL5,
        rollup_sql: None,
    },
    Query {
        name: "retention_weekly",
        kind: Kind::Dashboard,
        sql: "SELECT get_field(r, 'cohort') AS cohort, get_field(r, 'period') AS period, count(*) AS customers \
              FROM (SELECT unnest(retention(timestamp, 'week', 'first', \
                                            event = 'Order Completed', event = 'Order Completed')) AS r \
                    FROM events WHERE user_id IS NOT NULL AND event = 'Order Completed' GROUP BY user_id) \
              GROUP BY 1, 2 ORDER BY 1, 2",
        rollup_sql: None,
    },
    Query {
        name: "rolling_revenue_7d",
        kind: Kind::Dashboard,
        sql: "SELECT day, sum(revenue) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS revenue_7d \
              FROM (SELECT business_date(timestamp, 'day') AS day, sum(revenue) AS revenue \
                    FROM events WHERE event = 'Order Completed' GROUP BY 1) ORDER BY day",
        rollup_sql: Some(
            "SELECT day, sum(revenue) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS revenue_7d \
             FROM (SELECT business_date(bucket, 'day') AS day, sum(revenue) AS revenue \
                   FROM events_rollup WHERE event = 'Order Completed' GROUP BY 1) ORDER BY day",
        ),
    },
    Query {
        name: "top_products_revenue",
        kind: Kind::Dashboard,
        sql: "SELECT product_id, sum(amount) AS revenue, sum(quantity) AS units FROM order_items \
              GROUP BY 1 ORDER BY revenue DESC, product_id LIMIT 10",
        rollup_sql: None,
    },
    Query {
        name: "top_products_viewed",
        kind: Kind::Dashboard,
        sql: "SELECT product_id, count(*) AS views, count(DISTINCT coalesce(user_id, anonymous_id)) AS viewers \
              FROM events WHERE event = 'Product Viewed' GROUP BY 1 ORDER BY views DESC, product_id LIMIT 10",
        rollup_sql: None,
    },
    Query {
        name: "customer_timeline",
        kind: Kind::Dashboard,
        sql: "SELECT timestamp, event, revenue FROM events WHERE user_id = '{customer}' \
              ORDER BY timestamp, message_id",
        rollup_sql: None,
    },
    Query {
        name: "adhoc_event_counts",
        kind: Kind::AdHoc,
        sql: "SELECT event, count(*) AS events, count(DISTINCT coalesce(user_id, anonymous_id)) AS people \
              FROM events GROUP BY event",
        rollup_sql: None,
    },
    Query {
        name: "adhoc_monthly_channels",
        kind: Kind::AdHoc,
        sql: "SELECT date_trunc('month', timestamp) AS month, channel, payment_method, \
              count(*) AS orders, sum(revenue) AS revenue \
              FROM events WHERE event = 'Order Completed' GROUP BY 1, 2, 3",
        rollup_sql: None,
    },
    Query {
        name: "adhoc_sessions",
        kind: Kind::AdHoc,
        sql: "SELECT count(*) AS sessions, sum(n) AS events, max(n) AS max_events \
              FROM (SELECT session_id, count(*) AS n FROM events WHERE session_id IS NOT NULL GROUP BY session_id)",
        rollup_sql: None,
    },
];

/// Rows and the rounded sum of every numeric cell of an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fingerprint {
    rows: usize,
    checksum: f64,
}

impl Fingerprint {
    fn of(batches: &[RecordBatch]) -> Self {
        let mut rows = 0;
        let mut sum = 0.0f64;
        for batch in batches {
            rows += batch.num_rows();
            for col in batch.columns() {
                sum += numeric_sum(col.as_ref());
            }
        }
        Self {
            rows,
            checksum: round2(sum),
        }
    }

    /// Equal up to float summation order (the checksum is a float sum of
    /// up to millions of cells in any order).
    fn matches(&self, rows: usize, checksum: f64) -> bool {
        let tolerance = 0.015f64.max(self.checksum.abs() * 1e-12);
        self.rows == rows && (self.checksum - checksum).abs() <= tolerance
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn numeric_sum(col: &dyn Array) -> f64 {
    fn sum<I: Iterator<Item = Option<f64>>>(it: I) -> f64 {
        it.flatten().sum()
    }
    match col.data_type() {
        DataType::Int64 => sum(col
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(|v| v as f64))),
        DataType::Int32 => sum(col
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(f64::from))),
        DataType::UInt64 => sum(col
            .as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.map(|v| v as f64))),
        DataType::UInt32 => sum(col
            .as_primitive::<UInt32Type>()
            .iter()
            .map(|v| v.map(f64::from))),
        DataType::Float64 => sum(col.as_primitive::<Float64Type>().iter()),
        DataType::Float32 => sum(col
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))),
        DataType::Decimal128(_, scale) => {
            let factor = 10f64.powi(i32::from(*scale));
            sum(col
                .as_primitive::<Decimal128Type>()
                .iter()
                .map(|v| v.map(|v| v as f64 / factor)))
        }
        _ => 0.0,
    }
}

/// Median of `xs` (non-empty).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn geomean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

/// The loaded workspace of one size.
struct Loaded {
    engine: Engine,
    /// The same store without the funnel index: funnels scan the events.
    scan: Engine,
    tenant: String,
    load_secs: f64,
    compact_secs: f64,
    rollup_secs: f64,
    files: Vec<PathBuf>,
    bytes: u64,
}

/// Generates `events` events into a store in `dir`, as the server would
/// store them, and publishes everything as Parquet.
async fn load(
    dir: &Path,
    events: usize,
    reuse: bool,
    target_partitions: usize,
) -> anyhow::Result<Loaded> {
    let catalog = Arc::new(Catalog::open(dir)?);
    let existing = catalog.tenants()?.into_iter().find(|t| t.name == "bench");
    let reused = reuse && existing.is_some();
    let tenant = match existing {
        Some(t) if reuse => t,
        _ => catalog.create_tenant("bench")?.0,
    };
    let config = IngestConfig {
        sync: SyncMode::None,
        ..IngestConfig::default()
    };
    let store = Store::open(config, dir, catalog, Arc::new(SystemClock))?;
    let started = Instant::now();
    if !reused {
        generate_into(&store, &tenant.id, events).await?;
    }
    let load_secs = started.elapsed().as_secs_f64();
    // What the server's maintenance (every minute) does next: merge the
    // day files a flush left, and every cold month into one file.
    let started = Instant::now();
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.compact()).await??;
    let compact_secs = started.elapsed().as_secs_f64();
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            query_memory_bytes: 8 << 30,
            query_timeout: std::time::Duration::from_secs(3600),
            max_result_rows: 10_000_000,
            target_partitions,
            ..EngineConfig::default()
        },
    );
    let started = Instant::now();
    engine.warm_rollups().await?;
    let rollup_secs = started.elapsed().as_secs_f64();
    let snapshot = store.snapshot(&tenant.id);
    if !snapshot.batches.is_empty() {
        bail!("events left in memory after the final flush");
    }
    let bytes = snapshot.files.iter().map(|(_, m)| m.bytes).sum();
    let files = snapshot.files.into_iter().map(|(p, _)| p).collect();
    let scan = Engine::new(
        store.clone(),
        EngineConfig {
            funnel_index_bytes: 0,
            column_cache_bytes: 0,
            ..engine.config().clone()
        },
    );
    Ok(Loaded {
        engine,
        scan,
        tenant: tenant.id,
        load_secs,
        compact_secs,
        rollup_secs,
        files,
        bytes,
    })
}

/// Generates `events` events and stores them through the ingest path,
/// flushed to Parquet.
async fn generate_into(store: &Store, tenant: &str, events: usize) -> anyhow::Result<()> {
    let end = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .context("end date")?;
    // The generator is synchronous; it hands day chunks to this task.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Message>>(4);
    let producer = tokio::task::spawn_blocking(move || {
        generate_count(42, events, end, |chunk| {
            tx.blocking_send(chunk)
                .map_err(|_| beacon_datasets::Error::Data("consumer stopped".into()))
        })
    });
    let mut stored = 0usize;
    while let Some(messages) = rx.recv().await {
        let lines: Vec<String> = messages.iter().map(Message::line).collect();
        for chunk in lines.chunks(4_096) {
            let (decoded, rejected) = decode_lines(chunk)?;
            if rejected > 0 {
                bail!("{rejected} generated events were rejected");
            }
            loop {
                match store.ingest(tenant, decoded.clone()).await {
                    Ok(receipt) => {
                        stored += receipt.accepted;
                        break;
                    }
                    Err(beacon_ingest::Error::Backpressure { .. }) => flush(store).await?,
                    Err(e) => return Err(e.into()),
                }
            }
            if store.flush_due() {
                flush(store).await?;
            }
        }
    }
    producer.await??;
    flush(store).await?;
    if stored != events {
        bail!("stored {stored} of {events} events");
    }
    Ok(())
}

async fn flush(store: &Store) -> anyhow::Result<()> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.flush()).await??;
    Ok(())
}

/// `EXPLAIN ANALYZE` of `sql` on Beacon, as a table.
async fn explain(loaded: &Loaded, sql: &str) -> anyhow::Result<String> {
    let plan = loaded
        .engine
        .sql(&loaded.tenant, &format!("EXPLAIN ANALYZE {sql}"))
        .await?;
    Ok(arrow::util::pretty::pretty_format_batches(&plan.batches)?.to_string())
}

/// One measured answer.
#[derive(Debug, Clone)]
struct Measured {
    seconds: f64,
    fingerprint: Fingerprint,
}

async fn run_beacon(
    loaded: &Loaded,
    sql: &str,
    rollups: bool,
    repeat: usize,
) -> anyhow::Result<Measured> {
    run_on(&loaded.engine, loaded, sql, rollups, repeat).await
}

async fn run_on(
    engine: &Engine,
    loaded: &Loaded,
    sql: &str,
    rollups: bool,
    repeat: usize,
) -> anyhow::Result<Measured> {
    let mut times = Vec::new();
    let mut fingerprint = None;
    for i in 0..=repeat {
        let started = Instant::now();
        let result = if rollups {
            let (ctx, has) = engine.session_with_rollups(&loaded.tenant, true).await?;
            if !has {
                bail!("no {} table", rollup::ROLLUP_TABLE);
            }
            engine.execute(&ctx, sql).await?
        } else {
            engine.sql(&loaded.tenant, sql).await?
        };
        let secs = started.elapsed().as_secs_f64();
        if result.truncated {
            bail!("result truncated");
        }
        fingerprint = Some(Fingerprint::of(&result.batches));
        if i > 0 {
            times.push(secs);
        }
    }
    Ok(Measured {
        seconds: median(times),
        fingerprint: fingerprint.context("no run")?,
    })
}

/// A peer's answer: engine, variant, seconds, rows, checksum (or error).
#[derive(Debug, Clone)]
struct PeerResult {
    engine: String,
    variant: Option<String>,
    outcome: Result<(f64, usize, f64), String>,
}

/// Runs each peer on each query in its own process, so a peer that dies
/// (the kernel's OOM killer ended a 22 GB Python at 50M events) costs
/// that peer that query, recorded as an error, not the whole run.
#[allow(clippy::print_stdout)]
fn run_peers(
    args: &Args,
    data: &Path,
    customer: &str,
    names: &[&str],
) -> anyhow::Result<(String, BTreeMap<String, Vec<PeerResult>>)> {
    if !args.python.exists() {
        bail!(
            "{} is missing: run benches/peers/setup.sh first",
            args.python.display()
        );
    }
    let mut versions = Vec::new();
    let mut results: BTreeMap<String, Vec<PeerResult>> = BTreeMap::new();
    for (engine, _) in PEERS {
        let mut version = None;
        for name in names {
            let out = Command::new(&args.python)
                .arg("benches/peers/dashboard_peers.py")
                .arg("--data")
                .arg(data)
                .args(["--customer", customer])
                .args(["--repeat", &args.repeat.to_string()])
                .args(["--engines", engine])
                .args(["--queries", name])
                .output()
                .context("running the peers")?;
            let mut answered = false;
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let v: Value =
                    serde_json::from_str(line).with_context(|| format!("peer line {line}"))?;
                if let Some(vs) = v.get("versions").and_then(Value::as_object) {
                    version = vs.get(engine).and_then(Value::as_str).map(str::to_owned);
                    continue;
                }
                answered = true;
                let outcome = match v.get("error").and_then(Value::as_str) {
                    Some(e) => Err(e.to_owned()),
                    None => Ok((
                        v["seconds"].as_f64().unwrap_or(f64::NAN),
                        v["rows"].as_u64().unwrap_or(0) as usize,
                        v["checksum"].as_f64().unwrap_or(f64::NAN),
                    )),
                };
                results
                    .entry(v["query"].as_str().unwrap_or("?").to_owned())
                    .or_default()
                    .push(PeerResult {
                        engine: v["engine"].as_str().unwrap_or("?").to_owned(),
                        variant: v["variant"].as_str().map(str::to_owned),
                        outcome,
                    });
            }
            if !out.status.success() {
                use std::os::unix::process::ExitStatusExt;
                let why = match out.status.signal() {
                    Some(9) => "killed (SIGKILL: out of memory)".to_owned(),
                    Some(sig) => format!("killed by signal {sig}"),
                    None => {
                        let err = String::from_utf8_lossy(&out.stderr);
                        let last = err.lines().rev().find(|l| !l.trim().is_empty());
                        format!("failed: {}", last.unwrap_or("no message").trim())
                    }
                };
                println!("   peer {engine} {name}: {why}");
                if !answered || out.status.signal().is_some() {
                    results
                        .entry((*name).to_owned())
                        .or_default()
                        .push(PeerResult {
                            engine: engine.to_owned(),
                            variant: None,
                            outcome: Err(why),
                        });
                }
            }
        }
        versions.push(format!("{engine} {}", version.as_deref().unwrap_or("?")));
    }
    Ok((versions.join(", "), results))
}

/// A peer's best time for a query among its formulations whose answer
/// equals Beacon's, with the winning formulation; or why there is none.
fn best_peer(
    results: &[PeerResult],
    engine: &str,
    expected: Fingerprint,
) -> Result<(f64, Option<String>), String> {
    let mut best: Option<(f64, Option<String>)> = None;
    let mut problems = Vec::new();
    for r in results.iter().filter(|r| r.engine == engine) {
        match &r.outcome {
            Ok((secs, rows, checksum)) if expected.matches(*rows, *checksum) => {
                if best.as_ref().is_none_or(|(b, _)| secs < b) {
                    best = Some((*secs, r.variant.clone()));
                }
            }
            Ok((_, rows, checksum)) => problems.push(format!(
                "answer differs ({rows} rows, checksum {checksum} vs {} rows, {})",
                expected.rows, expected.checksum
            )),
            Err(e) => problems.push(e.clone()),
        }
    }
    best.ok_or_else(|| {
        if problems.is_empty() {
            "not run".to_owned()
        } else {
            problems.join("; ")
        }
    })
}

fn human(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

const PEERS: [(&str, &str); 3] = [
    ("duckdb", "DuckDB"),
    ("polars", "Polars"),
    ("datafusion", "DataFusion (Python)"),
];

#[allow(clippy::print_stdout)]
#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let queries: Vec<&Query> = QUERIES
        .iter()
        .filter(|q| args.queries.is_empty() || args.queries.iter().any(|n| n == q.name))
        .collect();
    let names: Vec<&str> = queries.iter().map(|q| q.name).collect();
    let temp = tempfile::tempdir()?;
    let root = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    let mut report = String::new();
    let mut peer_versions = String::new();
    let mut summaries = Vec::new();

    for &events in &args.events {
        let dir = root.join(format!("events-{events}"));
        if dir.exists() && !args.reuse {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        println!("== {} events: generating and ingesting", human(events));
        let loaded = load(
            &dir.join("data"),
            events,
            args.reuse,
            args.target_partitions,
        )
        .await?;
        println!(
            "   {} files, {:.1} MB, load {:.1} s, compaction {:.1} s, rollups and funnel index {:.1} s",
            loaded.files.len(),
            loaded.bytes as f64 / 1e6,
            loaded.load_secs,
            loaded.compact_secs,
            loaded.rollup_secs
        );
        // The peers read exactly the published files.
        let links = dir.join("parquet");
        if links.exists() {
            std::fs::remove_dir_all(&links)?;
        }
        std::fs::create_dir_all(&links)?;
        for (i, file) in loaded.files.iter().enumerate() {
            std::os::unix::fs::symlink(file, links.join(format!("part-{i:05}.parquet")))?;
        }
        let customer = {
            let r = loaded
                .engine
                .sql(
                    &loaded.tenant,
                    "SELECT user_id FROM events WHERE user_id IS NOT NULL \
                     GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1",
                )
                .await?;
            let batch = r.batches.first().context("no customer")?;
            let user = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            user.as_string::<i32>().value(0).to_owned()
        };

        if !args.sql.is_empty() {
            for (i, sql) in args.sql.iter().enumerate() {
                let sql = &sql.replace("{customer}", &customer);
                let m = run_beacon(&loaded, sql, false, args.repeat).await?;
                println!("   sql{i} {:.4} s  {:?}", m.seconds, m.fingerprint);
                if args.explain {
                    println!("{}", explain(&loaded, sql).await?);
                }
            }
            continue;
        }

        let mut beacon = BTreeMap::new();
        let mut parquet_only = BTreeMap::new();
        for q in &queries {
            let sql = q.sql.replace("{customer}", &customer);
            let raw = run_beacon(&loaded, &sql, false, args.repeat).await?;
            if args.explain {
                println!("{}\n{}", q.name, explain(&loaded, &sql).await?);
            }
            let rolled = match q.rollup_sql {
                Some(r) => Some(run_beacon(&loaded, r, true, args.repeat).await?),
                None => None,
            };
            // Also reading Parquet on every query: no funnel index, no
            // column cache.
            let scanned = run_on(&loaded.scan, &loaded, &sql, false, args.repeat).await?;
            if scanned.fingerprint != raw.fingerprint {
                bail!(
                    "{}: answer reading Parquet only {:?} differs from {:?}",
                    q.name,
                    scanned.fingerprint,
                    raw.fingerprint
                );
            }
            println!(
                "   beacon {:<24} {:>9.4} s reading Parquet only",
                q.name, scanned.seconds
            );
            parquet_only.insert(q.name, scanned.seconds);
            if let Some(r) = &rolled
                && r.fingerprint != raw.fingerprint
            {
                bail!(
                    "{}: rollup answer {:?} differs from raw {:?}",
                    q.name,
                    r.fingerprint,
                    raw.fingerprint
                );
            }
            println!(
                "   beacon {:<24} {:>9.4} s{}  {:?}",
                q.name,
                raw.seconds,
                rolled
                    .as_ref()
                    .map_or(String::new(), |r| format!(" (rollup {:.4} s)", r.seconds)),
                raw.fingerprint
            );
            beacon.insert(q.name, (raw, rolled));
        }
        if args.no_peers {
            continue;
        }
        println!("   peers ...");
        let (versions, peers) = run_peers(&args, &links, &customer, &names)?;
        peer_versions = versions;

        let mut table = String::new();
        table.push_str(&format!(
            "### {} events ({} Parquet files, {:.0} MB; customer `{customer}`)\n\n",
            human(events),
            loaded.files.len(),
            loaded.bytes as f64 / 1e6
        ));
        table.push_str("Median seconds of ");
        table.push_str(&args.repeat.to_string());
        table.push_str(" runs after a warm-up; ratio = Beacon / peer (below 1.00: Beacon faster). Beacon's dashboard time uses the rollups where the analytics API does; Beacon SQL's warm-up run fills the column cache (decoded columns of the files, `engine.column_cache_bytes`); Beacon, Parquet only: the same SQL with the column cache and the funnel index off (every query decodes the Parquet files).\n\n");
        table.push_str("| query | Beacon SQL | Beacon dashboard | Beacon, Parquet only | DuckDB | Polars | DataFusion (Python) | ratio vs DuckDB | vs Polars | vs DataFusion |\n");
        table.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let mut notes = Vec::new();
        let mut dash_ratios = Vec::new();
        let mut dash_raw_ratios = Vec::new();
        let mut funnel_ratios = Vec::new();
        let mut adhoc_ratios = Vec::new();
        let mut adhoc_parquet_ratios = Vec::new();
        for q in &queries {
            let (raw, rolled) = &beacon[q.name];
            let dashboard_secs = rolled.as_ref().map_or(raw.seconds, |r| r.seconds);
            let empty = Vec::new();
            let results = peers.get(q.name).unwrap_or(&empty);
            let mut cells = Vec::new();
            let mut ratios = Vec::new();
            for (engine, label) in PEERS {
                match best_peer(results, engine, raw.fingerprint) {
                    Ok((secs, variant)) => {
                        let variant = variant.map_or(String::new(), |v| format!(" ({v})"));
                        cells.push(format!("{secs:.4}{variant}"));
                        ratios.push(Some(dashboard_secs / secs));
                        if engine == "duckdb" {
                            let r = dashboard_secs / secs;
                            match q.kind {
                                Kind::Dashboard => {
                                    dash_ratios.push(r);
                                    dash_raw_ratios.push(raw.seconds / secs);
                                }
                                Kind::Funnel => {
                                    dash_ratios.push(r);
                                    dash_raw_ratios.push(raw.seconds / secs);
                                    funnel_ratios.push((q.name, r, secs));
                                }
                                Kind::AdHoc => {
                                    adhoc_ratios.push(r);
                                    adhoc_parquet_ratios.push(parquet_only[q.name] / secs);
                                }
                            }
                        }
                    }
                    Err(why) => {
                        cells.push("n/a".to_owned());
                        ratios.push(None);
                        notes.push(format!("{label}, `{}`: {why}", q.name));
                    }
                }
            }
            let ratio = |r: Option<f64>| r.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
            table.push_str(&format!(
                "| `{}` | {:.4} | {} | {:.4} | {} | {} | {} | **{}** | {} | {} |\n",
                q.name,
                raw.seconds,
                rolled
                    .as_ref()
                    .map_or("=".to_owned(), |r| format!("{:.4} (rollup)", r.seconds)),
                parquet_only[q.name],
                cells[0],
                cells[1],
                cells[2],
                ratio(ratios[0]),
                ratio(ratios[1]),
                ratio(ratios[2]),
            ));
        }
        table.push('\n');
        let dash = geomean(&dash_ratios);
        let dash_raw = geomean(&dash_raw_ratios);
        let adhoc = geomean(&adhoc_ratios);
        let adhoc_parquet = geomean(&adhoc_parquet_ratios);
        table.push_str(&format!(
            "- Dashboard suite vs DuckDB, geometric mean of ratios: **{dash:.2}** (target < 1.0); raw SQL without rollups: {dash_raw:.2}.\n"
        ));
        for (name, r, duckdb) in &funnel_ratios {
            let scan = parquet_only.get(name).map_or(String::new(), |s| {
                format!(
                    "; reading Parquet only (no funnel index, no column cache) Beacon takes {s:.4} s, {:.2}x DuckDB's time",
                    s / duckdb
                )
            });
            table.push_str(&format!(
                "- `{name}`: DuckDB's best formulation takes {:.1}x Beacon's time (target >= 3x){scan}.\n",
                1.0 / r
            ));
        }
        table.push_str(&format!(
            "- Ad-hoc SQL vs DuckDB, geometric mean: **{adhoc:.2}** (target <= 1.15); reading Parquet only: {adhoc_parquet:.2}.\n"
        ));
        table.push_str(&format!(
            "- Beacon load (generate + decode + ingest + Parquet flush, fsync off): {:.1} s; compaction (cold months into one file each): {:.1} s; rollups and funnel index of all files: {:.1} s; column cache after the suite: {:.0} MB.\n",
            loaded.load_secs,
            loaded.compact_secs,
            loaded.rollup_secs,
            loaded.engine.column_cache().bytes() as f64 / 1e6
        ));
        for note in &notes {
            table.push_str(&format!("- Not compared: {note}.\n"));
        }
        table.push('\n');
        println!("{table}");
        summaries.push(table);
        report.clear();
    }

    if args.no_peers {
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sizes: Vec<String> = args.events.iter().map(|n| n.to_string()).collect();
    report.push_str(&format!(
        "Command: `benches/peers/setup.sh && cargo build --release -p beacon-api -p beacon-benches && target/release/dashboard_bench --events {} --repeat {}`\n\n",
        sizes.join(","),
        args.repeat
    ));
    report.push_str(&format!(
        "Machine: {cores} cores, {}; date {}. Peers: {peer_versions}. Data: the built-in generator (seed 42, one year of a shop and booking business ending 2026-01-01, UTC workspace), stored by Beacon's ingest path; every peer reads the same published Parquet files. A peer's time is listed only when its answer's fingerprint (row count and sum of numeric cells) equals Beacon's; a peer with several formulations (DuckDB's funnel as chained joins and as ASOF joins) is listed with its fastest correct one. The queries are in `benches/src/bin/dashboard_bench.rs` (Beacon) and `benches/peers/dashboard_peers.py` (peers).\n\n",
        std::env::consts::ARCH,
        Utc::now().format("%Y-%m-%d"),
    ));
    for s in &summaries {
        report.push_str(s);
    }
    beacon_benches::write_section(&args.results, "Dashboard queries", report.trim_end())?;
    Ok(())
}
