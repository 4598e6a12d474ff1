//! `beacon datasets ...` and `beacon serve --demo` against the real binary:
//! convert a real file, replay it into a running server and read the same
//! count and revenue back; the generator is deterministic for a seed; the
//! demo workspace is filled and keeps moving.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{BIN, Server, create_tenant, scalar, sql};
use serde_json::Value;

fn dataset(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/data")
        .join(file)
}

fn golden() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/golden/converters.json");
    serde_json::from_slice(&std::fs::read(path).expect("golden")).expect("json")
}

fn beacon(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run beacon");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_out(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = beacon(args);
    assert!(ok, "beacon {args:?} failed: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_clickstream_reads_back_the_same_count_and_revenue() {
    let g = golden();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let tenant = create_tenant(&data, "replay");
    // Flush often so the answers come from Parquet files and the tail; the
    // default delete grace keeps compaction from racing the queries.
    let server = Server::start(
        &data,
        &[
            ("BEACON_INGEST__FLUSH_INTERVAL", "50ms"),
            ("BEACON_INGEST__FLUSH_BYTES", "300000"),
        ],
    );

    let ndjson = dir.path().join("clicks.ndjson");
    let input = dataset("clickstream/rees46-2019-Oct-head17k.csv.gz");
    let report = json_out(&[
        "datasets",
        "convert",
        "clickstream",
        "--input",
        path(&input),
        "--output",
        path(&ndjson),
        "--json",
    ]);
    let expected: u64 = g["clickstream"]["events"]
        .as_object()
        .expect("events")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(report["written"], expected);

    // A corrupt line is counted, not fatal.
    let mut text = std::fs::read_to_string(&ndjson).expect("read");
    text.push_str("this is not json\n");
    std::fs::write(&ndjson, text).expect("write");

    let replay = |file: PathBuf| {
        json_out(&[
            "datasets",
            "replay",
            path(&file),
            "--url",
            &server.base,
            "--key",
            &tenant.write_key,
            "--speed",
            "max",
            "--json",
        ])
    };
    let first = replay(ndjson.clone());
    assert_eq!(first["accepted"], expected, "{first}");
    assert_eq!(first["bad_lines"], 1);
    assert_eq!(first["rejected"], 0);

    let count = scalar(&server, &tenant.admin_key, "SELECT count(*) FROM events").await;
    assert_eq!(count as u64, expected);
    let revenue = sql(
        &server,
        &tenant.admin_key,
        "SELECT CAST(sum(revenue) AS VARCHAR) FROM events WHERE event = 'Order Completed'",
    )
    .await;
    assert_eq!(
        revenue["rows"][0][0], g["clickstream"]["purchase_revenue_sum"],
        "{revenue}"
    );

    // Replaying again stores nothing new: message ids come from the data.
    let second = replay(ndjson);
    assert_eq!(second["accepted"], 0);
    assert_eq!(second["duplicates"], expected);

    // The same data as Parquet (Beacon's schema) replays to a second workspace identically.
    let parquet = dir.path().join("clicks.parquet");
    json_out(&[
        "datasets",
        "convert",
        "clickstream",
        "--input",
        path(&input),
        "--output",
        path(&parquet),
        "--json",
    ]);
    let other = create_tenant(&data, "replay-parquet");
    let third = json_out(&[
        "datasets",
        "replay",
        path(&parquet),
        "--url",
        &server.base,
        "--key",
        &other.write_key,
        "--json",
        "--shift-to-now",
    ]);
    assert_eq!(third["accepted"], expected, "{third}");
    let revenue2 = sql(
        &server,
        &other.admin_key,
        "SELECT CAST(sum(revenue) AS VARCHAR), count(DISTINCT session_id) FROM events WHERE event = 'Order Completed'",
    )
    .await;
    assert_eq!(
        revenue2["rows"][0][0],
        g["clickstream"]["purchase_revenue_sum"]
    );
    // Shifted to now: the last event is within the last minute or so.
    let age = scalar(
        &server,
        &other.admin_key,
        "SELECT to_unixtime(now()) - to_unixtime(max(timestamp)) FROM events",
    )
    .await;
    assert!((0..600).contains(&age), "last event is {age}s old");

    // A wrong key is a clear failure, not a hang.
    let (ok, _, stderr) = beacon(&[
        "datasets",
        "replay",
        path(&parquet),
        "--url",
        &server.base,
        "--key",
        "bk_w_wrong",
        "--json",
    ]);
    assert!(!ok);
    assert!(stderr.contains("401"), "{stderr}");
    server.stop();
}

#[test]
fn generate_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        let (ok, _, stderr) = beacon(&[
            "datasets",
            "generate",
            "--events",
            "20000",
            "--seed",
            seed,
            "--output",
            path(&out),
        ]);
        assert!(ok, "{stderr}");
        std::fs::read(out).expect("read")
    };
    let a = run("a.ndjson", "5");
    let b = run("b.ndjson", "5");
    let c = run("c.ndjson", "6");
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c, "another seed, other data");
    let lines: Vec<Value> = String::from_utf8(a)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 20_000);
    for event in [
        "Order Completed",
        "Product Viewed",
        "Booking Created",
        "Inventory Updated",
    ] {
        assert!(lines.iter().any(|l| l["event"] == event), "no {event}");
    }

    // Several tenants, Parquet.
    let out = dir.path().join("multi");
    let (ok, stdout, stderr) = beacon(&[
        "datasets",
        "generate",
        "--events",
        "9001",
        "--tenants",
        "3",
        "--seed",
        "1",
        "--output",
        path(&out),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("9001 events"), "{stdout}");
    for t in 0..3 {
        assert!(out.join(format!("tenant-{t}.parquet")).exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_workspace_has_history_and_live_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let env = [
        ("BEACON_DEMO__HISTORY_DAYS", "10"),
        ("BEACON_DEMO__LIVE_INTERVAL", "100ms"),
        ("BEACON_DEMO__LIVE_FLOOR", "2000"),
    ];
    let (server, printed) = Server::start_with(&data, &env, &["--demo"], Some("try:"));
    let key = |label: &str| {
        printed
            .iter()
            .find_map(|l| l.trim().strip_prefix(label).map(|k| k.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {label} in {printed:?}"))
    };
    let read_key = key("read key:");
    let write_key = key("write key:");
    assert!(
        read_key.starts_with("bk_r_") && write_key.starts_with("bk_w_"),
        "{printed:?}"
    );

    let by_event = sql(
        &server,
        &read_key,
        "SELECT event, count(*) FROM events GROUP BY 1 ORDER BY 1",
    )
    .await;
    let names: Vec<&str> = by_event["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r[0].as_str())
        .collect();
    for event in [
        "Order Completed",
        "Product Viewed",
        "Booking Created",
        "Booking Completed",
        "Inventory Updated",
    ] {
        assert!(names.contains(&event), "no {event} in {by_event}");
    }
    let oldest_days = scalar(
        &server,
        &read_key,
        "SELECT (to_unixtime(now()) - to_unixtime(min(timestamp))) / 86400 FROM events",
    )
    .await;
    assert!(
        (8..=10).contains(&oldest_days),
        "history starts {oldest_days} days ago"
    );

    // Live events keep arriving (bounded wait).
    let before = scalar(&server, &read_key, "SELECT count(*) FROM events").await;
    let mut after = before;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scalar(&server, &read_key, "SELECT count(*) FROM events").await;
        if after > before {
            break;
        }
    }
    assert!(after > before, "no live events ({before} -> {after})");
    server.stop();

    // A restart reuses the workspace and prints the same keys; no second history.
    let (server, printed2) = Server::start_with(&data, &env, &["--demo"], Some("try:"));
    assert!(
        printed2.iter().any(|l| l.contains(&read_key)),
        "{printed2:?}"
    );
    let oldest_again = scalar(
        &server,
        &read_key,
        "SELECT (to_unixtime(now()) - to_unixtime(min(timestamp))) / 86400 FROM events",
    )
    .await;
    assert_eq!(oldest_again, oldest_days);
    server.stop();
}
