//! The read-only sandbox and workspace isolation of `Engine::sql`, and the
//! `events` table's time pruning, on a real `Store` with two workspaces.

use std::sync::Arc;
use std::time::Duration;

use beacon_datasets::output::decode_lines;
use beacon_engine::{Engine, EngineConfig, Error};
use beacon_ingest::{Catalog, IngestConfig, Store, SystemClock};

struct Fixture {
    engine: Engine,
    a: String,
    b: String,
    _dir: tempfile::TempDir,
}

fn track(id: &str, user: &str, event: &str, ts: &str, revenue: f64) -> String {
    serde_json::json!({
        "type": "track", "messageId": id, "userId": user, "event": event,
        "timestamp": ts, "properties": {"revenue": revenue}
    })
    .to_string()
}

/// Workspace `a`: three days of orders, the first two flushed to Parquet
/// (one file per day), the third in memory. Workspace `b`: one secret order.
async fn fixture(config: EngineConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = Arc::new(Catalog::open(dir.path()).expect("catalog"));
    let (a, _) = catalog.create_tenant("a").expect("a");
    let (b, _) = catalog.create_tenant("b").expect("b");
    let store = Store::open(
        IngestConfig::test_config(),
        dir.path(),
        catalog,
        Arc::new(SystemClock),
    )
    .expect("store");
    let day = |d: u32, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                track(
                    &format!("a-{d}-{i}"),
                    &format!("u{i}"),
                    "Order Completed",
                    &format!("2025-03-{d:02}T{:02}:00:00Z", i % 24),
                    10.0,
                )
            })
            .collect()
    };
    for lines in [day(1, 10), day(2, 20)] {
        let (events, _) = decode_lines(&lines).expect("decode");
        store.ingest(&a.id, events).await.expect("ingest");
    }
    let (events, _) = decode_lines(&[track(
        "b-1",
        "secret",
        "Order Completed",
        "2025-03-02T12:00:00Z",
        999.0,
    )])
    .expect("decode");
    store.ingest(&b.id, events).await.expect("ingest");
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.flush())
        .await
        .expect("join")
        .expect("flush");
    let (events, _) = decode_lines(&day(3, 5)).expect("decode");
    store.ingest(&a.id, events).await.expect("ingest");
    Fixture {
        engine: Engine::new(store, config),
        a: a.id,
        b: b.id,
        _dir: dir,
    }
}

async fn scalar(engine: &Engine, tenant: &str, sql: &str) -> String {
    let result = engine.sql(tenant, sql).await.expect(sql);
    let batch = &result.batches[0];
    arrow::util::display::array_value_to_string(batch.column(0), 0).expect("format")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_never_see_each_other() {
    let f = fixture(EngineConfig::default()).await;
    assert_eq!(
        scalar(&f.engine, &f.a, "SELECT count(*) FROM events").await,
        "35"
    );
    assert_eq!(
        scalar(&f.engine, &f.b, "SELECT count(*) FROM events").await,
        "1"
    );
    assert_eq!(
        scalar(
            &f.engine,
            &f.a,
            "SELECT count(*) FROM events WHERE user_id = 'secret'"
        )
        .await,
        "0"
    );
    // The catalog lists only this session's tables: events and the views.
    let tables = f
        .engine
        .sql(
            &f.a,
            "SELECT table_catalog || '.' || table_schema || '.' || table_name AS t \
             FROM information_schema.tables WHERE table_schema <> 'information_schema' ORDER BY t",
        )
        .await
        .expect("tables");
    let names: Vec<String> = tables
        .batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows())
                .map(|i| arrow::util::display::array_value_to_string(b.column(0), i).expect("fmt"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        names,
        [
            "datafusion.public.bookings",
            "datafusion.public.events",
            "datafusion.public.leads",
            "datafusion.public.order_items",
            "datafusion.public.orders",
            "datafusion.public.page_views",
            "datafusion.public.refunds",
            "datafusion.public.sessions",
        ]
    );
    // No other catalog or schema is reachable by name.
    for sql in [
        "SELECT * FROM other.public.events",
        &format!("SELECT * FROM \"{}\".events", f.b),
        &format!("SELECT * FROM \"{}\"", f.b),
    ] {
        let err = f.engine.sql(&f.a, sql).await.expect_err(sql);
        assert!(matches!(err, Error::Plan(_)), "{sql}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_refuses_writes_files_and_settings() {
    let f = fixture(EngineConfig::default()).await;
    let refused = [
        "DROP TABLE events",
        "CREATE TABLE x AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "INSERT INTO events SELECT * FROM events",
        "DELETE FROM events",
        "COPY (SELECT 1) TO '/tmp/beacon-copy-test.csv'",
        "COPY events TO '/tmp/beacon-copy-test.parquet'",
        "SET datafusion.execution.batch_size = 1",
        "SET TIME ZONE = 'UTC'",
        "CREATE FUNCTION f() RETURNS INT RETURN 1",
    ];
    for sql in refused {
        let err = f.engine.sql(&f.a, sql).await.expect_err(sql);
        assert!(
            matches!(
                err,
                Error::NotAllowed(_) | Error::Syntax(_) | Error::Plan(_)
            ),
            "{sql}: {err:?}"
        );
    }
    assert!(!std::path::Path::new("/tmp/beacon-copy-test.csv").exists());
    // Files are not tables and there are no file-reading table functions.
    let files = [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file:///etc/passwd'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM parquet_metadata('/etc/passwd')",
    ];
    for sql in files {
        let err = f.engine.sql(&f.a, sql).await.expect_err(sql);
        assert!(matches!(err, Error::Plan(_)), "{sql}: {err:?}");
    }
    // After all that the data is intact.
    assert_eq!(
        scalar(&f.engine, &f.a, "SELECT count(*) FROM events").await,
        "35"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_give_clear_errors() {
    let f = fixture(EngineConfig {
        query_memory_bytes: 256 * 1024,
        max_result_rows: 7,
        ..EngineConfig::default()
    })
    .await;
    let rows = f
        .engine
        .sql(&f.a, "SELECT * FROM events")
        .await
        .expect("rows");
    assert!(rows.truncated);
    assert_eq!(rows.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
    let err = f
        .engine
        .sql(
            &f.a,
            "SELECT v, count(*) FROM (SELECT repeat(message_id, 10000) || CAST(n AS VARCHAR) AS v \
             FROM events CROSS JOIN generate_series(1, 200) AS g(n)) GROUP BY v ORDER BY v",
        )
        .await
        .expect_err("memory");
    assert!(matches!(err, Error::MemoryLimit(_)), "{err:?}");

    let f = fixture(EngineConfig {
        query_timeout: Duration::from_millis(50),
        ..EngineConfig::default()
    })
    .await;
    let err = f
        .engine
        .sql(
            &f.a,
            "SELECT count(*) FROM generate_series(1, 10000000000) a",
        )
        .await
        .expect_err("timeout");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(
        scalar(&f.engine, &f.a, "SELECT count(*) FROM events").await,
        "35"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_prune_files_and_memory() {
    let f = fixture(EngineConfig::default()).await;
    let plan = |sql: &str| {
        let engine = f.engine.clone();
        let tenant = f.a.clone();
        let sql = format!("EXPLAIN {sql}");
        async move {
            let r = engine.sql(&tenant, &sql).await.expect("explain");
            let b = &r.batches[0];
            (0..b.num_rows())
                .map(|i| arrow::util::display::array_value_to_string(b.column(1), i).expect("fmt"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let all = plan("SELECT count(*) FROM events WHERE event = 'x'").await;
    assert!(
        all.contains("2025-03-01") && all.contains("2025-03-02"),
        "{all}"
    );
    assert!(all.contains("partition_sizes"), "{all}");
    let one_day = plan(
        "SELECT count(*) FROM events WHERE timestamp >= TIMESTAMP '2025-03-02 00:00:00Z' \
         AND timestamp < TIMESTAMP '2025-03-03 00:00:00Z'",
    )
    .await;
    assert!(one_day.contains("2025-03-02"), "{one_day}");
    assert!(!one_day.contains("2025-03-01"), "{one_day}");
    assert!(!one_day.contains("partition_sizes"), "{one_day}");
    // Pruned or not, the answers are right.
    for (sql, want) in [
        (
            "SELECT count(*) FROM events WHERE timestamp >= TIMESTAMP '2025-03-02 00:00:00Z' \
             AND timestamp < TIMESTAMP '2025-03-03 00:00:00Z'",
            "20",
        ),
        (
            "SELECT count(*) FROM events WHERE timestamp BETWEEN TIMESTAMP '2025-03-01 05:00:00Z' \
             AND TIMESTAMP '2025-03-03 02:00:00Z'",
            "28",
        ),
        ("SELECT count(*) FROM events WHERE timestamp > now()", "0"),
        ("SELECT sum(revenue) FROM orders", "350.0000"),
    ] {
        assert_eq!(scalar(&f.engine, &f.a, sql).await, want, "{sql}");
    }
}
