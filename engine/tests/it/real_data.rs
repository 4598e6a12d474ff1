//! The engine's views and functions on real data: Online Retail converted,
//! ingested into a real `Store`, and queried through `Engine::sql`, checked
//! against the numbers DuckDB computed from the raw CSV
//! (`datasets/golden/converters.json`).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use beacon_datasets::convert::Dataset;
use beacon_datasets::output::decode_lines;
use beacon_engine::{Engine, EngineConfig, QueryResult};
use beacon_ingest::{Catalog, IngestConfig, Store, SystemClock};
use serde_json::{Value, json};

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/golden/converters.json");
    serde_json::from_slice(&std::fs::read(path).expect("golden")).expect("json")
}

/// Rows of a result as text cells.
fn rows(result: &QueryResult) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for batch in &result.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default().with_null("NULL"))
                    .expect("formatter")
            })
            .collect();
        for r in 0..batch.num_rows() {
            out.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

/// A workspace in `time_zone` holding `dataset`, converted and ingested
/// through a real `Store` (flushed as it goes, so answers come from Parquet
/// files and the in-memory tail together).
async fn load(dir: &std::path::Path, dataset: Dataset, time_zone: &str) -> (Engine, String) {
    load_at(dir, dataset, time_zone, Arc::new(SystemClock)).await
}

/// A clock stopped at one instant (series end at "now").
#[derive(Debug)]
struct Stopped(i64);

impl beacon_ingest::Clock for Stopped {
    fn now_us(&self) -> i64 {
        self.0
    }
}

async fn load_at(
    dir: &std::path::Path,
    dataset: Dataset,
    time_zone: &str,
    clock: Arc<dyn beacon_ingest::Clock>,
) -> (Engine, String) {
    let catalog = Arc::new(Catalog::open(dir).expect("catalog"));
    let (mut tenant, _) = catalog.create_tenant(dataset.name()).expect("tenant");
    tenant.timezone = time_zone.into();
    tenant.currency = dataset.currency().into();
    catalog.update_tenant(&tenant).expect("update");
    let store = Store::open(IngestConfig::test_config(), dir, catalog, clock)
    .expect("store");
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/data")
        .join(dataset.default_file());
    let conversion = dataset.convert(&file).expect("convert");
    for chunk in conversion.lines.chunks(2_000) {
        let (events, rejected) = decode_lines(chunk).expect("decode");
        assert_eq!(rejected, 0);
        store.ingest(&tenant.id, events).await.expect("ingest");
        if store.buffered_bytes() > 16 << 20 {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.flush())
                .await
                .expect("join")
                .expect("flush");
        }
    }
    // What the server's maintenance does next: every month of these
    // datasets is long past, so each becomes one file; the answers below
    // come from those month files and the in-memory tail.
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.compact())
        .await
        .expect("join")
        .expect("compact");
    let mut months = std::collections::HashMap::<String, usize>::new();
    for (_, f) in &store.snapshot(&tenant.id).files {
        *months.entry(f.date[..7].to_owned()).or_default() += 1;
    }
    assert!(
        months.values().all(|&n| n == 1),
        "one file per cold month: {months:?}"
    );
    // The answers are what is tested, not speed: a debug build on a busy
    // 2-core machine can take longer than the production 30 s limit.
    let config = EngineConfig {
        query_timeout: std::time::Duration::from_secs(600),
        ..EngineConfig::default()
    };
    (Engine::new(store, config), tenant.id)
}

/// Another engine over `engine`'s store, with its configuration changed
/// by `change` (to compare paths: rollups, funnel index, column cache).
fn variant(engine: &Engine, change: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut config = engine.config().clone();
    change(&mut config);
    Engine::new(engine.store().clone(), config)
}

async fn retail_engine(dir: &std::path::Path) -> (Engine, String) {
    load(dir, Dataset::OnlineRetail, "Europe/London").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_retail_revenue_by_business_month_matches_duckdb() {
    let g = golden()["online_retail"].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, tenant) = retail_engine(dir.path()).await;

    let result = engine
        .sql(
            &tenant,
            "SELECT CAST(business_date(timestamp, 'month') AS VARCHAR), count(*), CAST(sum(revenue) AS VARCHAR) \
             FROM orders GROUP BY 1 ORDER BY 1",
        )
        .await
        .expect("query");
    let got = rows(&result);
    let expected: Vec<Vec<String>> = g["by_month"]
        .as_object()
        .expect("by_month")
        .iter()
        .map(|(month, v)| {
            vec![
                format!("{month}-01"),
                v["orders"].to_string(),
                v["revenue"].as_str().expect("revenue").to_owned(),
            ]
        })
        .collect();
    assert_eq!(got, expected);

    // Line items: count and amounts equal the orders' revenue.
    let items = engine
        .sql(
            &tenant,
            "SELECT count(*), CAST(sum(amount) AS VARCHAR) FROM order_items",
        )
        .await
        .expect("items");
    assert_eq!(
        rows(&items),
        vec![vec![
            g["order_product_line_items"].to_string(),
            g["revenue_sum"].as_str().expect("sum").to_owned()
        ]]
    );

    let refunds = engine
        .sql(&tenant, "SELECT CAST(sum(revenue) AS VARCHAR) FROM refunds")
        .await
        .expect("refunds");
    assert_eq!(
        rows(&refunds),
        vec![vec![
            g["refund_total_sum"].as_str().expect("sum").to_owned()
        ]]
    );

    // Hours are local: every Online Retail invoice is between 06:00 and 20:59 London time.
    let hours = engine
        .sql(
            &tenant,
            "SELECT min(business_hour(timestamp)), max(business_hour(timestamp)) FROM orders",
        )
        .await
        .expect("hours");
    assert_eq!(rows(&hours), vec![vec!["6".to_owned(), "20".to_owned()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_session_funnel_matches_duckdb() {
    let g = golden()["clickstream"].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, tenant) = load(dir.path(), Dataset::Clickstream, "UTC").await;
    let query = |mode: &str| {
        format!(
            "SELECT level, count(*) FROM ( \
               SELECT session_id, window_funnel(86400, '{mode}', timestamp, \
                 event = 'Product Viewed', event = 'Product Added', event = 'Order Completed') AS level \
               FROM events GROUP BY session_id) GROUP BY level ORDER BY level"
        )
    };
    let result = engine
        .sql(&tenant, &query("sequential"))
        .await
        .expect("funnel");
    let by_level: Vec<(u64, u64)> = rows(&result)
        .iter()
        .map(|r| (r[0].parse().expect("level"), r[1].parse().expect("count")))
        .collect();
    // Sessions reaching at least each step, as DuckDB counted them in time order.
    let at_least = |k: u64| {
        by_level
            .iter()
            .filter(|(l, _)| *l >= k)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let expected = &g["funnel_time_order"];
    assert_eq!(at_least(1), expected["view"].as_u64().expect("view"));
    assert_eq!(at_least(2), expected["cart"].as_u64().expect("cart"));
    assert_eq!(
        at_least(3),
        expected["purchase"].as_u64().expect("purchase")
    );

    // The same funnel through the analytics API, counted by session.
    let span = query_rows(
        &engine,
        &tenant,
        "SELECT CAST(CAST(min(timestamp) AS DATE) AS VARCHAR), CAST(CAST(max(timestamp) AS DATE) AS VARCHAR) FROM events",
    )
    .await;
    let funnel = analytics(
        &engine,
        &tenant,
        "funnel",
        json!({"from": span[0][0], "to": span[0][1], "window": "1d", "count_by": "session",
               "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}]}),
    )
    .await;
    let entered: Vec<u64> = funnel["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["entered"].as_u64().expect("entered"))
        .collect();
    assert_eq!(entered, [at_least(1), at_least(2), at_least(3)]);

    let views = engine
        .sql(&tenant, "SELECT count(*) FROM sessions")
        .await
        .expect("sessions");
    assert_eq!(rows(&views), vec![vec![g["distinct_sessions"].to_string()]]);
}

/// The funnel index ([`beacon_engine::funnel_index`]) answers exactly what
/// the raw aggregate over the events answers, per person or session, in
/// every mode, with filters and time ranges, and leaves the shapes it
/// cannot answer to the raw plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_funnel_index_matches_the_raw_aggregate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, tenant) = load(dir.path(), Dataset::Clickstream, "UTC").await;
    // Files, and a tail of the same people: a third of the events again,
    // under new message ids.
    let store = engine.store().clone();
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .expect("join")
        .expect("flush");
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/data")
        .join(Dataset::Clickstream.default_file());
    let lines = Dataset::Clickstream.convert(&file).expect("convert").lines;
    // Some of them without a session: rows whose key is NULL form one
    // group unless the query filters them out.
    let again: Vec<String> = lines[..lines.len() / 3]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let l = l.replacen("\"messageId\":\"", "\"messageId\":\"again-", 1);
            if i % 50 == 0 {
                l.replacen("\"session_id\":", "\"session_ref\":", 1)
            } else {
                l
            }
        })
        .collect();
    let (events, rejected) = decode_lines(&again).expect("decode");
    assert_eq!(rejected, 0);
    engine
        .store()
        .ingest(&tenant, events)
        .await
        .expect("ingest");
    let snapshot = engine.store().snapshot(&tenant);
    assert!(
        !snapshot.files.is_empty() && !snapshot.batches.is_empty(),
        "the answers must cover files and the in-memory tail"
    );
    // Half the queries find the files indexed, half index them themselves.
    engine.warm_rollups().await.expect("warm");
    let raw = variant(&engine, |c| c.funnel_index_bytes = 0);
    // An index over its memory budget keeps nothing and answers the same.
    let unkept = variant(&engine, |c| c.funnel_index_bytes = 1);
    let nulls = query_rows(
        &raw,
        &tenant,
        "SELECT count(*) FROM events WHERE session_id IS NULL",
    )
    .await;
    assert_ne!(nulls[0][0], "0", "the tail has events without a session");
    let span = query_rows(
        &engine,
        &tenant,
        "SELECT CAST(to_timestamp_micros((9 * CAST(min(timestamp) AS BIGINT) + CAST(max(timestamp) AS BIGINT)) / 10) AS VARCHAR), \
                CAST(to_timestamp_micros((CAST(min(timestamp) AS BIGINT) + 9 * CAST(max(timestamp) AS BIGINT)) / 10) AS VARCHAR) \
         FROM events",
    )
    .await;
    let (from, to) = (&span[0][0], &span[0][1]);
    let days = query_rows(
        &engine,
        &tenant,
        "SELECT CAST(CAST(min(timestamp) AS DATE) AS VARCHAR), CAST(CAST(max(timestamp) AS DATE) AS VARCHAR) FROM events",
    )
    .await;
    const STEPS: &str =
        "event = 'Product Viewed', event = 'Product Added', event = 'Order Completed'";
    let person = "coalesce(user_id, anonymous_id)";
    let indexed = [
        format!(
            "SELECT {person} AS k, window_funnel(1209600, 'sequential', timestamp, {STEPS}) AS v \
             FROM events WHERE event IN ('Product Viewed', 'Product Added', 'Order Completed') \
             GROUP BY {person}"
        ),
        format!(
            "SELECT session_id AS k, window_funnel(3600, 'sequential', timestamp, {STEPS}) AS v \
             FROM events WHERE type = 'track' AND session_id IS NOT NULL AND timestamp >= TIMESTAMP '{from}' \
               AND timestamp < TIMESTAMP '{to}' GROUP BY session_id"
        ),
        "SELECT session_id AS k, window_funnel(86400, 'any', timestamp, \
                event = 'Order Completed', event LIKE 'Product%') AS v FROM events GROUP BY 1"
            .to_owned(),
        format!(
            "SELECT {person} AS k, cardinality(funnel_steps(604800, 'sequential', timestamp, \
                    event = 'Product Removed', {STEPS})) AS v \
             FROM events e WHERE timestamp BETWEEN TIMESTAMP '{from}' AND TIMESTAMP '{to}' \
               AND (event IN ('Product Viewed', 'Product Added', 'Order Completed', 'Product Removed')) \
             GROUP BY {person}"
        ),
        format!(
            "SELECT {person} AS k, array_to_string(funnel_steps(1209600, 'strict', timestamp, FALSE, \
                    {STEPS}, event = 'Product Viewed'), ',') AS v FROM events GROUP BY {person}"
        ),
    ];
    let not_indexed = [
        // A step on a column the index does not keep.
        format!(
            "SELECT {person} AS k, window_funnel(1209600, 'sequential', timestamp, {STEPS}, price > 100) AS v \
             FROM events GROUP BY {person}"
        ),
        // Two aggregates.
        format!(
            "SELECT {person} AS k, window_funnel(1209600, 'sequential', timestamp, {STEPS}) * 10 + count(*) AS v \
             FROM events GROUP BY {person}"
        ),
        // A key the index does not have.
        format!(
            "SELECT product_id AS k, window_funnel(1209600, 'sequential', timestamp, {STEPS}) AS v \
             FROM events GROUP BY product_id"
        ),
    ];
    let explain = |sql: &str| {
        let engine = engine.clone();
        let (tenant, sql) = (tenant.clone(), format!("EXPLAIN {sql}"));
        async move {
            query_rows(&engine, &tenant, &sql)
                .await
                .iter()
                .any(|r| r.iter().any(|c| c.contains("FunnelIndexExec")))
        }
    };
    for (sql, uses_index) in indexed
        .iter()
        .map(|q| (q, true))
        .chain(not_indexed.iter().map(|q| (q, false)))
    {
        assert_eq!(explain(sql).await, uses_index, "{sql}");
        let sorted = format!("SELECT k, v FROM ({sql}) ORDER BY k NULLS FIRST, v");
        let (got, want) = (
            query_rows(&engine, &tenant, &sorted).await,
            query_rows(&raw, &tenant, &sorted).await,
        );
        assert!(want.len() >= 50, "{sql}: {} groups", want.len());
        assert!(
            want.iter().any(|r| r[1] != want[0][1]),
            "{sql}: every group has the same answer: {:?}",
            want.iter().take(5).collect::<Vec<_>>()
        );
        assert_eq!(got, want, "{sql}");
        if uses_index {
            assert_eq!(query_rows(&unkept, &tenant, &sorted).await, want, "{sql}");
        }
    }
    assert_eq!(unkept.funnel_index().bytes(), 0);
    assert!(unkept.funnel_index().answered() > 0);
    assert!(engine.funnel_index().bytes() > 0);

    // The analytics API's funnels (funnel_steps by person and by session).
    for count_by in ["person", "session"] {
        let request = json!({"from": days[0][0], "to": days[0][1], "window": "1d",
            "count_by": count_by, "mode": "sequential",
            "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}],
            "exclude": [{"event": "Product Removed"}]});
        let before = engine.funnel_index().answered();
        let indexed = analytics(&engine, &tenant, "funnel", request.clone()).await;
        assert!(
            engine.funnel_index().answered() > before,
            "{count_by}: not indexed"
        );
        assert_eq!(
            indexed,
            analytics(&raw, &tenant, "funnel", request).await,
            "{count_by}"
        );
    }
}

fn golden_analytics() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/golden/analytics.json");
    serde_json::from_slice(&std::fs::read(path).expect("golden analytics")).expect("json")
}

/// A golden table (array of arrays) as text cells.
fn table(v: &Value) -> Vec<Vec<String>> {
    v.as_array()
        .expect("table")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                .collect()
        })
        .collect()
}

async fn query_rows(engine: &Engine, tenant: &str, sql: &str) -> Vec<Vec<String>> {
    query(engine, tenant, sql).await
}

async fn query(engine: &Engine, tenant: &str, sql: &str) -> Vec<Vec<String>> {
    rows(
        &engine
            .sql(tenant, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

/// One analytics API answer.
async fn analytics(engine: &Engine, tenant: &str, endpoint: &str, request: Value) -> Value {
    beacon_engine::analytics::run(engine, tenant, endpoint, request.clone())
        .await
        .unwrap_or_else(|e| panic!("{endpoint} {request}: {e}"))
}

/// A JSON cell as text (numbers as JSON text, strings as they are).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

const MONTH: &str = "substr(CAST(business_date(timestamp, 'month') AS VARCHAR), 1, 7)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_retail_dashboard_answers_match_duckdb() {
    let g = golden_analytics()["online_retail"].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, tenant) = retail_engine(dir.path()).await;

    let by_country = query(
        &engine,
        &tenant,
        &format!(
            "SELECT {MONTH} AS m, json_get_str(properties, 'country') AS c, count(*), CAST(sum(revenue) AS VARCHAR) \
             FROM orders GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    )
    .await;
    assert_eq!(by_country, table(&g["revenue_by_month_country"]));

    let aov = query(
        &engine,
        &tenant,
        &format!("SELECT {MONTH} AS m, CAST(round(sum(revenue) / count(*), 2) AS VARCHAR) FROM orders GROUP BY 1 ORDER BY 1"),
    )
    .await;
    let expected: Vec<Vec<String>> = g["aov_by_month"]
        .as_object()
        .expect("aov")
        .iter()
        .map(|(m, v)| vec![m.clone(), v.as_str().expect("aov").to_owned()])
        .collect();
    // Decimal text may carry more zeros; compare as numbers to the cent.
    let cents = |s: &str| (s.parse::<f64>().expect("number") * 100.0).round() as i64;
    assert_eq!(
        aov.iter()
            .map(|r| (r[0].clone(), cents(&r[1])))
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|r| (r[0].clone(), cents(&r[1])))
            .collect::<Vec<_>>()
    );

    let top = query(
        &engine,
        &tenant,
        // (Ordering by `r` while also selecting `CAST(r AS VARCHAR)` unaliased would
        // sort the text: DataFusion names that cast `r`.)
        "SELECT product_id, q, CAST(r AS VARCHAR) AS revenue FROM ( \
           SELECT product_id, sum(quantity) AS q, sum(amount) AS r FROM order_items GROUP BY 1) \
         ORDER BY r DESC, product_id LIMIT 10",
    )
    .await;
    assert_eq!(top, table(&g["top_products"]));

    let firsts = format!(
        "WITH active AS (SELECT DISTINCT user_id, {MONTH} AS m FROM orders WHERE user_id IS NOT NULL), \
              firsts AS (SELECT user_id, min(m) AS cohort FROM active GROUP BY 1)"
    );
    let new_returning = query(
        &engine,
        &tenant,
        &format!(
            "{firsts} SELECT a.m, count(*) FILTER (WHERE f.cohort = a.m), count(*) FILTER (WHERE f.cohort < a.m) \
             FROM active a JOIN firsts f USING (user_id) GROUP BY 1 ORDER BY 1"
        ),
    )
    .await;
    assert_eq!(new_returning, table(&g["new_vs_returning"]));

    let cohorts = query(
        &engine,
        &tenant,
        &format!(
            "{firsts} SELECT f.cohort, \
               (CAST(substr(a.m, 1, 4) AS INT) - CAST(substr(f.cohort, 1, 4) AS INT)) * 12 \
                 + CAST(substr(a.m, 6, 2) AS INT) - CAST(substr(f.cohort, 6, 2) AS INT) AS period, count(*) \
             FROM active a JOIN firsts f USING (user_id) GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    )
    .await;
    assert_eq!(cohorts, table(&g["cohort_retention"]));

    // The same table from the retention aggregate, with revenue retention.
    let retention = query(
        &engine,
        &tenant,
        "SELECT substr(CAST(get_field(r, 'cohort') AS VARCHAR), 1, 7), get_field(r, 'period'), count(*) FROM ( \
           SELECT unnest(retention(timestamp, 'month', 'first', event = 'Order Completed', event = 'Order Completed', revenue)) AS r \
           FROM events WHERE user_id IS NOT NULL GROUP BY user_id) GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    assert_eq!(retention, table(&g["cohort_retention"]));
    let revenue = query(
        &engine,
        &tenant,
        "SELECT CAST(sum(get_field(r, 'revenue')) AS VARCHAR) FROM ( \
           SELECT unnest(retention(timestamp, 'month', 'first', event = 'Order Completed', event = 'Order Completed', revenue)) AS r \
           FROM events WHERE user_id IS NOT NULL GROUP BY user_id)",
    )
    .await;
    let with_customer = query(
        &engine,
        &tenant,
        "SELECT CAST(sum(revenue) AS VARCHAR) FROM orders WHERE user_id IS NOT NULL",
    )
    .await;
    assert_eq!(
        revenue, with_customer,
        "every order's revenue lands in exactly one cohort cell"
    );

    // The same answers through the analytics API.
    let range = json!({"from": "2010-12-01", "to": "2011-12-31", "interval": "month"});
    let revenue = analytics(&engine, &tenant, "revenue", {
        let mut r = range.clone();
        r["breakdown"] = json!("country");
        r["limit"] = json!(1000);
        r
    })
    .await;
    let mut by_month: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
    let mut by_country: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
    for row in g["revenue_by_month_country"].as_array().expect("rows") {
        let n = row[2].as_u64().expect("orders");
        let r: f64 = text(&row[3]).parse().expect("revenue");
        let m = by_month.entry(text(&row[0])).or_default();
        m.0 += n;
        m.1 += r;
        let c = by_country.entry(text(&row[1])).or_default();
        c.0 += n;
        c.1 += r;
    }
    let cents = |v: &Value| (text(v).parse::<f64>().expect("money") * 100.0).round() as i64;
    let series: Vec<(String, u64, i64)> = revenue["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|r| r["orders"].as_u64() > Some(0))
        .map(|r| {
            (
                text(&r["bucket"])[..7].to_owned(),
                r["orders"].as_u64().expect("n"),
                cents(&r["gross"]),
            )
        })
        .collect();
    let want: Vec<(String, u64, i64)> = by_month
        .iter()
        .map(|(m, (n, r))| (m.clone(), *n, (r * 100.0).round() as i64))
        .collect();
    assert_eq!(series, want);
    let aov: Vec<(String, i64)> = revenue["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|r| !r["aov"].is_null())
        .map(|r| (text(&r["bucket"])[..7].to_owned(), cents(&r["aov"])))
        .collect();
    let want: Vec<(String, i64)> = g["aov_by_month"]
        .as_object()
        .expect("aov")
        .iter()
        .map(|(m, v)| (m.clone(), cents(v)))
        .collect();
    assert_eq!(aov, want);
    assert_eq!(cents(&revenue["summary"]["aov"]), cents(&g["aov"]));
    let mut countries: Vec<(String, u64, i64)> = revenue["breakdown"]["rows"]
        .as_array()
        .expect("breakdown")
        .iter()
        .map(|r| {
            (
                text(&r["value"]),
                r["orders"].as_u64().expect("n"),
                cents(&r["gross"]),
            )
        })
        .collect();
    countries.sort();
    let want: Vec<(String, u64, i64)> = by_country
        .iter()
        .map(|(c, (n, r))| (c.clone(), *n, (r * 100.0).round() as i64))
        .collect();
    assert_eq!(countries, want);

    let products = analytics(
        &engine,
        &tenant,
        "products",
        json!({"from": "2010-12-01", "to": "2011-12-31"}),
    )
    .await;
    let top: Vec<Vec<String>> = products["top_by_revenue"]
        .as_array()
        .expect("top")
        .iter()
        .map(|r| {
            vec![
                text(&r["product_id"]),
                text(&r["quantity"]),
                text(&r["revenue"]),
            ]
        })
        .collect();
    assert_eq!(top, table(&g["top_products"]));
    assert!(!products["pairs"].as_array().expect("pairs").is_empty());

    let customers = analytics(&engine, &tenant, "customers", range.clone()).await;
    let new_returning: Vec<Vec<String>> = customers["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|r| r["customers"].as_u64() > Some(0))
        .map(|r| {
            vec![
                text(&r["bucket"])[..7].to_owned(),
                text(&r["new"]),
                text(&r["returning"]),
            ]
        })
        .collect();
    assert_eq!(new_returning, table(&g["new_vs_returning"]));

    let retention = analytics(
        &engine,
        &tenant,
        "retention",
        json!({"from": "2010-12-01", "to": "2011-12-31", "period": "month", "count_by": "user"}),
    )
    .await;
    let cells: Vec<Vec<String>> = retention["cohorts"]
        .as_array()
        .expect("cohorts")
        .iter()
        .flat_map(|c| {
            let cohort = text(&c["cohort"])[..7].to_owned();
            c["periods"]
                .as_array()
                .expect("periods")
                .iter()
                .map(move |p| vec![cohort.clone(), text(&p["period"]), text(&p["people"])])
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(cells, table(&g["cohort_retention"]));

    // Rollups answer exactly what the raw events answer, also after late events.
    let raw = variant(&engine, |c| c.rollups = false);
    // (endpoint, request, whether the rollups answer it). A revenue filter
    // or breakdown on an order dimension reads the raw events (refunds take
    // their order's dimensions); event, type and currency are the refund's own.
    let requests = [
        (
            "revenue",
            json!({"from": "2010-12-01", "to": "2011-12-31", "interval": "day", "breakdown": "currency", "limit": 1000}),
            true,
        ),
        (
            "revenue",
            json!({"from": "2011-01-01", "to": "2011-06-30", "interval": "week", "compare": true,
                           "filters": [{"property": "currency", "op": "in", "value": ["GBP", "EUR"]}]}),
            true,
        ),
        (
            "revenue",
            json!({"from": "2010-12-01", "to": "2011-12-31", "interval": "day", "breakdown": "country", "limit": 1000}),
            false,
        ),
        (
            "revenue",
            json!({"from": "2011-03-01", "to": "2011-04-30", "interval": "hour",
                           "filters": [{"property": "country", "op": "neq", "value": "United Kingdom"}]}),
            false,
        ),
        (
            "heatmap",
            json!({"from": "2010-12-01", "to": "2011-12-31"}),
            true,
        ),
        (
            "heatmap",
            json!({"from": "2010-12-01", "to": "2011-12-31", "metric": "sum", "property": "revenue", "breakdown": "country", "limit": 1000}),
            true,
        ),
        (
            "products",
            json!({"from": "2010-12-01", "to": "2011-12-31", "limit": 20, "pairs": false}),
            true,
        ),
        (
            "products",
            json!({"from": "2011-02-01", "to": "2011-05-31", "limit": 15, "compare": true,
                   "filters": [{"property": "country", "op": "in", "value": ["France", "Germany", "EIRE"]}]}),
            true,
        ),
        (
            "products",
            json!({"from": "2011-01-01", "to": "2011-12-31", "limit": 10, "pairs": false,
                   "filters": [{"property": "user_id", "op": "is_set"}]}),
            false,
        ),
    ];
    let same = |label: &str, mut a: Value, mut b: Value, rollup: bool| {
        assert_eq!(
            a["source"],
            json!(if rollup { "rollup" } else { "events" }),
            "{label}: the expected path was not taken"
        );
        assert_eq!(b["source"], json!("events"), "{label}");
        a.as_object_mut().expect("object").remove("source");
        b.as_object_mut().expect("object").remove("source");
        if a != b {
            let keys: Vec<String> = a
                .as_object()
                .expect("object")
                .iter()
                .filter(|(k, v)| b.get(k.as_str()) != Some(v))
                .map(|(k, v)| format!("{k}: {v} vs {}", b[k.as_str()]))
                .collect();
            panic!("{label}: rollup and raw answers differ in {keys:?}");
        }
    };
    for (endpoint, request, rollup) in &requests {
        let a = analytics(&engine, &tenant, endpoint, request.clone()).await;
        let b = analytics(&raw, &tenant, endpoint, request.clone()).await;
        if *endpoint == "products" {
            assert!(
                b["top_by_revenue"].as_array().is_some_and(|t| t.len() >= 10),
                "products {request}: {b}"
            );
        }
        same(&format!("{endpoint} {request}"), a, b, *rollup);
    }
    // A restarted engine reads the rollups kept on disk, and rolls up again
    // a file whose kept rollup is damaged: the answers stay the same.
    let kept: Vec<std::path::PathBuf> = std::fs::read_dir(
        dir.path()
            .join("rollups")
            .join(format!("v{}", beacon_engine::rollup::VERSION))
            .join(&tenant),
    )
    .expect("rollups kept on disk")
    .map(|e| e.expect("entry").path())
    .collect();
    let files = engine.store().snapshot(&tenant).files.len();
    assert_eq!(kept.len(), 2 * files, "two rollups per file: {kept:?}");
    std::fs::write(&kept[0], b"not arrow").expect("damage");
    let restarted = variant(&engine, |_| {});
    for (endpoint, request, rollup) in &requests {
        let a = analytics(&restarted, &tenant, endpoint, request.clone()).await;
        let b = analytics(&raw, &tenant, endpoint, request.clone()).await;
        same(&format!("restarted: {endpoint} {request}"), a, b, *rollup);
    }
    // Late orders for days already rolled up: some flushed to new files, some in memory.
    let late: Vec<String> = (0..40)
        .map(|i| {
            json!({"type": "track", "event": "Order Completed", "messageId": format!("late-{i}"),
                   "userId": format!("late-user-{}", i % 7),
                   "timestamp": format!("2011-0{}-1{}T1{}:15:00Z", 1 + i % 6, i % 10, i % 10),
                   "properties": {"revenue": format!("{}.{:02}", 10 + i, i), "country": if i % 2 == 0 { "France" } else { "Atlantis" }}})
            .to_string()
        })
        .collect();
    let (events, rejected) = decode_lines(&late[..20]).expect("decode");
    assert_eq!(rejected, 0);
    engine
        .store()
        .ingest(&tenant, events)
        .await
        .expect("ingest");
    let s = engine.store().clone();
    tokio::task::spawn_blocking(move || s.flush())
        .await
        .expect("join")
        .expect("flush");
    for (endpoint, request, rollup) in &requests {
        let a = analytics(&engine, &tenant, endpoint, request.clone()).await;
        let b = analytics(&raw, &tenant, endpoint, request.clone()).await;
        same(
            &format!("late, flushed: {endpoint} {request}"),
            a,
            b,
            *rollup,
        );
    }
    // Enough late day files in January 2011 to merge it again: the month
    // file that was rolled up is replaced by a new one.
    let s = engine.store().clone();
    let merged = tokio::task::spawn_blocking(move || s.compact())
        .await
        .expect("join")
        .expect("compact");
    assert!(merged > 0, "late day files rejoined their month");
    let (events, _) = decode_lines(&late[20..]).expect("decode");
    engine
        .store()
        .ingest(&tenant, events)
        .await
        .expect("ingest");
    for (endpoint, request, rollup) in &requests {
        let a = analytics(&engine, &tenant, endpoint, request.clone()).await;
        let b = analytics(&raw, &tenant, endpoint, request.clone()).await;
        same(&format!("late: {endpoint} {request}"), a, b, *rollup);
    }
    let after = analytics(&engine, &tenant, "heatmap", requests[5].1.clone()).await;
    assert_eq!(after["source"], json!("rollup"));
    assert!(
        after["breakdown"]["values"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r["value"] == "Atlantis"),
        "late events are in the rollup answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotel_booking_answers_match_duckdb() {
    let g = golden_analytics()["hotel_bookings"].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, tenant) = load(dir.path(), Dataset::HotelBookings, "Europe/Lisbon").await;

    let cancellations = query(
        &engine,
        &tenant,
        &format!(
            "SELECT {MONTH} AS m, count(*), count(x.booking_id) FROM bookings c \
             LEFT JOIN (SELECT booking_id FROM bookings WHERE event = 'Booking Cancelled') x USING (booking_id) \
             WHERE c.event = 'Booking Created' GROUP BY 1 ORDER BY 1"
        ),
    )
    .await;
    assert_eq!(cancellations, table(&g["cancellations_by_created_month"]));

    let lead = query(
        &engine,
        &tenant,
        "SELECT location_id, avg(CAST(json_get_int(properties, 'lead_time_days') AS DOUBLE)) FROM bookings \
         WHERE event = 'Booking Created' GROUP BY 1 ORDER BY 1",
    )
    .await;
    let lead: Vec<(String, String)> = lead
        .iter()
        .map(|r| {
            (
                r[0].clone(),
                format!("{:.4}", r[1].parse::<f64>().expect("avg")),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = g["avg_lead_time_days"]
        .as_object()
        .expect("lead")
        .iter()
        .map(|(h, v)| (h.clone(), v.as_str().expect("avg").to_owned()))
        .collect();
    assert_eq!(lead, expected);

    let heatmap = query(
        &engine,
        &tenant,
        "SELECT business_weekday(timestamp), business_hour(timestamp), count(*) FROM bookings GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    assert_eq!(heatmap, table(&g["heatmap"]));

    // The same answers through the analytics API.
    let bookings = analytics(
        &engine,
        &tenant,
        "bookings",
        json!({"from": "2013-01-01", "to": "2017-12-31", "interval": "month", "breakdown": "location", "limit": 100}),
    )
    .await;
    let by_month: Vec<Vec<String>> = bookings["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|r| r["bookings"].as_u64() > Some(0))
        .map(|r| {
            vec![
                text(&r["bucket"])[..7].to_owned(),
                text(&r["bookings"]),
                text(&r["cancelled"]),
            ]
        })
        .collect();
    assert_eq!(by_month, table(&g["cancellations_by_created_month"]));
    let lead: Vec<(String, String)> = bookings["breakdown"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                text(&r["value"]),
                format!("{:.4}", r["avg_lead_time_days"].as_f64().expect("lead")),
            )
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(lead, expected);
    let heat = analytics(
        &engine,
        &tenant,
        "heatmap",
        json!({"from": "2013-01-01", "to": "2017-12-31", "event": {"event": "*"}}),
    )
    .await;
    let cells: Vec<Vec<String>> = heat["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .filter(|c| c["value"].as_f64() > Some(0.0))
        .map(|c| {
            vec![
                text(&c["weekday"]),
                text(&c["hour"]),
                format!("{}", c["value"].as_f64().expect("v") as u64),
            ]
        })
        .collect();
    assert_eq!(cells, table(&g["heatmap"]));
}

/// The column cache answers every scan as reading the Parquet files does:
/// on its first run (loading), from memory, within a time range that cuts
/// a file, under LIMIT, and after compaction replaced files it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_retail_column_cache_answers_equal_reading_parquet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, tenant) = retail_engine(dir.path()).await;
    let parquet = variant(&engine, |c| c.column_cache_bytes = 0);
    let unkept = variant(&engine, |c| c.column_cache_bytes = 1);
    let days = query_rows(
        &parquet,
        &tenant,
        "SELECT CAST(min(timestamp) + INTERVAL '45 days' AS VARCHAR), CAST(max(timestamp) - INTERVAL '100 days' AS VARCHAR) FROM events",
    )
    .await;
    let (from, to) = (&days[0][0], &days[0][1]);
    let cached = [
        "SELECT event, count(*), count(DISTINCT coalesce(user_id, anonymous_id)) FROM events GROUP BY event ORDER BY event".to_owned(),
        "SELECT date_trunc('month', timestamp) AS m, currency, count(*), sum(revenue), min(revenue), max(quantity) \
         FROM events WHERE event = 'Order Completed' GROUP BY 1, 2 ORDER BY 1, 2".to_owned(),
        format!(
            "SELECT user_id, count(*), sum(revenue) FROM events WHERE timestamp >= TIMESTAMP '{from}' \
             AND timestamp < TIMESTAMP '{to}' AND user_id IS NOT NULL GROUP BY user_id ORDER BY 3 DESC, 1 LIMIT 20"
        ),
        "SELECT count(*), count(user_id), count(order_id), count(product_id) FROM events WHERE product_id IS NULL".to_owned(),
        "SELECT message_id, timestamp, event, order_id FROM events ORDER BY timestamp, message_id LIMIT 7".to_owned(),
        "SELECT timestamp, event, revenue FROM events WHERE user_id = (SELECT min(user_id) FROM events) ORDER BY timestamp, event, revenue".to_owned(),
    ];
    // JSON columns and `SELECT *` read Parquet.
    let not_cached = [
        "SELECT count(*) FROM events WHERE properties LIKE '%a%'",
        "SELECT * FROM events ORDER BY message_id LIMIT 3",
    ];
    let explain = |engine: &Engine, sql: &str| {
        let (engine, tenant, sql) = (engine.clone(), tenant.clone(), format!("EXPLAIN {sql}"));
        async move {
            query_rows(&engine, &tenant, &sql)
                .await
                .iter()
                .any(|r| r.iter().any(|c| c.contains("CachedScanExec")))
        }
    };
    let mut answers = Vec::new();
    for (i, sql) in cached.iter().enumerate() {
        assert!(explain(&engine, sql).await, "{sql}");
        assert!(!explain(&parquet, sql).await, "{sql}");
        assert!(!explain(&unkept, sql).await, "{sql}");
        let want = query_rows(&parquet, &tenant, sql).await;
        assert!(!want.is_empty(), "{sql}");
        let loads = engine.column_cache().loads();
        assert_eq!(
            query_rows(&engine, &tenant, sql).await,
            want,
            "{sql} (loading)"
        );
        let loaded = engine.column_cache().loads();
        assert_eq!(
            query_rows(&engine, &tenant, sql).await,
            want,
            "{sql} (cached)"
        );
        assert_eq!(engine.column_cache().loads(), loaded, "{sql}: loaded again");
        if i == 0 {
            assert!(loaded > loads, "{sql}: nothing loaded");
        }
        assert_eq!(query_rows(&unkept, &tenant, sql).await, want, "{sql}");
        answers.push(want);
    }
    assert!(engine.column_cache().bytes() > 0);
    assert_eq!(unkept.column_cache().bytes(), 0);
    // A LIMIT without ORDER BY reaches the scan: any rows, that many.
    let limited =
        "SELECT count(*), count(event) FROM (SELECT event, timestamp FROM events LIMIT 5)";
    assert!(explain(&engine, limited).await, "{limited}");
    assert_eq!(query_rows(&engine, &tenant, limited).await, [["5", "5"]]);
    // A sort of nearly every row under a small memory limit answers the
    // same on both paths (the unit tests check that cached batches point
    // into chunks, not file-wide arrays, which DataFusion would charge in
    // full for every batch).
    let small = |cache: usize| {
        variant(&engine, |c| {
            c.column_cache_bytes = cache;
            c.query_memory_bytes = 48 << 20;
        })
    };
    let (small_cached, small_parquet) = (small(1 << 30), small(0));
    let sort = "SELECT message_id, event, timestamp FROM events ORDER BY timestamp DESC, message_id LIMIT 20000";
    let want = query_rows(&small_parquet, &tenant, sort).await;
    assert_eq!(want.len(), 20000);
    for run in ["loading", "cached"] {
        assert_eq!(
            query_rows(&small_cached, &tenant, sort).await,
            want,
            "{run}"
        );
    }
    assert!(explain(&small_cached, sort).await);
    assert!(small_cached.column_cache().bytes() > 0);
    for sql in not_cached {
        assert!(!explain(&engine, sql).await, "{sql}");
        assert_eq!(
            query_rows(&engine, &tenant, sql).await,
            query_rows(&parquet, &tenant, sql).await,
            "{sql}"
        );
    }

    // Late events of every month, then compaction: each month file is
    // rewritten; the cache forgets the old ones and loads the new.
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/data")
        .join(Dataset::OnlineRetail.default_file());
    let lines = Dataset::OnlineRetail.convert(&file).expect("convert").lines;
    let late: Vec<String> = lines
        .iter()
        .step_by(40)
        .map(|l| l.replacen("\"messageId\":\"", "\"messageId\":\"late-", 1))
        .collect();
    let (events, rejected) = decode_lines(&late).expect("decode");
    assert_eq!(rejected, 0);
    engine
        .store()
        .ingest(&tenant, events)
        .await
        .expect("ingest");
    let store = engine.store().clone();
    tokio::task::spawn_blocking(move || {
        store.flush()?;
        store.compact()
    })
    .await
    .expect("join")
    .expect("flush and compact");
    let before: Vec<PathBuf> = engine.column_cache().files();
    engine.warm_rollups().await.expect("warm");
    let live: Vec<PathBuf> = engine
        .store()
        .snapshot(&tenant)
        .files
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        before.iter().any(|p| !live.contains(p)),
        "compaction replaced cached files"
    );
    assert!(
        engine
            .column_cache()
            .files()
            .iter()
            .all(|p| live.contains(p)),
        "the cache holds files that left the catalog"
    );
    for (sql, old) in cached.iter().zip(&answers) {
        let want = query_rows(&parquet, &tenant, sql).await;
        assert_eq!(
            query_rows(&engine, &tenant, sql).await,
            want,
            "{sql} after compaction"
        );
        if sql.contains("GROUP BY event") {
            assert_ne!(&want, old, "the late events count");
        }
    }
}

/// The model series the rollup answers (revenue, orders, bookings,
/// cancellations) equal those of the raw events, by hour, day and week.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_retail_series_from_rollups_equal_the_raw_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two months after the last invoice (9 December 2011), mid-quarter-hour.
    let now = chrono::DateTime::parse_from_rfc3339("2012-02-09T10:07:31Z")
        .expect("time")
        .timestamp_micros();
    let (engine, tenant) =
        load_at(dir.path(), Dataset::OnlineRetail, "Europe/London", Arc::new(Stopped(now))).await;
    let raw = variant(&engine, |c| c.rollups = false);
    for (metric, interval, days) in [
        ("revenue", "day", 400),
        ("revenue", "hour", 75),
        ("orders", "week", 400),
        ("orders", "day", 120),
        ("bookings", "day", 60),
        ("cancellations", "week", 60),
    ] {
        let request = beacon_engine::series::SeriesRequest {
            metric: metric.into(),
            interval: interval.into(),
            sql: None,
            history_days: Some(days),
        };
        let a = beacon_engine::series::series(&engine, &tenant, &request)
            .await
            .expect("rollup series");
        let b = beacon_engine::series::series(&raw, &tenant, &request)
            .await
            .expect("raw series");
        assert_eq!(a.periods, b.periods, "{metric} by {interval}");
        assert_eq!(a.values, b.values, "{metric} by {interval}");
        if metric == "revenue" || metric == "orders" {
            assert!(
                a.values.iter().filter(|v| **v > 0.0).count() > 5,
                "{metric} by {interval} has sales: {:?}",
                a.values
            );
        }
    }
}
