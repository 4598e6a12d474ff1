//! Operations: health, readiness, metrics, backpressure, admin API and CLI.

use crate::common;

use std::process::Command;

use common::{BIN, Server, call, client, create_read_key, create_tenant, scalar};
use reqwest::Method;
use serde_json::{Value, json};

fn events(prefix: &str, n: usize) -> String {
    let batch: Vec<Value> = (0..n)
        .map(|i| json!({"type": "track", "event": "Product Viewed", "anonymousId": "a", "messageId": format!("{prefix}-{i}"),
                        "properties": {"product_id": "p", "note": "x".repeat(200)}}))
        .collect();
    json!({ "batch": batch }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_backpressure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Busy");
    let server = Server::start(
        &data,
        &[
            ("BEACON_INGEST__MAX_BUFFER_BYTES", "400000"),
            ("BEACON_INGEST__FLUSH_BYTES", "400000"),
            ("BEACON_INGEST__FLUSH_INTERVAL", "1h"),
        ],
    );
    let http = client();
    for path in ["/healthz", "/readyz"] {
        let resp = http.get(server.url(path)).send().await.expect("send");
        assert_eq!(resp.status(), 200, "{path}");
    }

    // A browser page may send events with the embeddable write key (CORS
    // preflight answered), but may not query or administer.
    let preflight = |path: &str| {
        http.request(reqwest::Method::OPTIONS, server.url(path))
            .header("Origin", "https://shop.example")
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let resp = preflight("/v1/batch").await.expect("preflight");
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://shop.example")
    );
    let resp = preflight("/v1/sql").await.expect("preflight");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let resp = preflight("/v1/workspace/keys").await.expect("preflight");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // What portal components call (with an embed token, never cookies).
    let resp = preflight("/v1/analytics/revenue").await.expect("preflight");
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://shop.example")
    );
    assert!(resp.headers().get("access-control-allow-credentials").is_none());

    // Fill the buffer until the server pushes back.
    let mut accepted = 0u64;
    let mut pushed_back = false;
    for round in 0..200 {
        let resp = http
            .post(server.url("/v1/batch"))
            .bearer_auth(&tenant.write_key)
            .body(events(&format!("r{round}"), 20))
            .send()
            .await
            .expect("send");
        if resp.status() == 503 {
            assert_eq!(
                resp.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
                Some("1")
            );
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["error"]["code"], "overloaded", "{body}");
            pushed_back = true;
            break;
        }
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        accepted += body["accepted"].as_u64().expect("accepted");
    }
    assert!(pushed_back, "no backpressure after {accepted} events");
    // Nothing acknowledged was dropped; after a flush there is room again.
    assert_eq!(
        scalar(&server, &tenant.admin_key, "SELECT COUNT(*) FROM events").await as u64,
        accepted
    );
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/workspace/flush",
        &tenant.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let resp = http
        .post(server.url("/v1/batch"))
        .bearer_auth(&tenant.write_key)
        .body(events("after", 20))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        scalar(&server, &tenant.admin_key, "SELECT COUNT(*) FROM events").await as u64,
        accepted + 20
    );

    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "beacon_ingest_events_accepted_total",
        "beacon_ingest_backpressure_total",
        "beacon_ingest_events_rejected_total",
        "beacon_ingest_events_duplicate_total",
        "beacon_wal_sync_seconds_bucket",
        "beacon_flush_seconds_bucket",
        "beacon_buffer_bytes",
        "beacon_parquet_files",
        "beacon_http_request_duration_seconds_bucket{route=\"/v1/batch\"",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_and_cli_manage_keys_and_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Salon");
    let server = Server::start(&data, &[]);
    let http = client();

    // A read key from the CLI, while the server runs: it can query, not ingest.
    let read_key = create_read_key(&data, "Salon");
    assert_eq!(
        scalar(&server, &read_key, "SELECT COUNT(*) FROM events").await,
        0
    );
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/track",
        &read_key,
        Some(json!({"event": "X", "userId": "u"})),
    )
    .await;
    assert_eq!(status, 403);

    // Settings: valid ones stick, every invalid field is reported.
    let resp = http
        .patch(server.url("/v1/workspace"))
        .bearer_auth(&tenant.admin_key)
        .json(&json!({"timezone": "Europe/London", "currency": "gbp", "retention_days": 400, "week_start": "sunday"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["workspace"]["timezone"], "Europe/London");
    assert_eq!(body["workspace"]["currency"], "GBP");
    let resp = http
        .patch(server.url("/v1/workspace"))
        .bearer_auth(&tenant.admin_key)
        .json(&json!({"timezone": "Mars/Base", "currency": "pounds", "retention_days": 0}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["error"]["fields"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
    // Three letters that are no currency: a typo would move every sale to
    // other_currencies.
    let resp = http
        .patch(server.url("/v1/workspace"))
        .bearer_auth(&tenant.admin_key)
        .json(&json!({"currency": "XYZ"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["fields"][0]["field"], "currency", "{body}");

    // Keys over the API: create, list, revoke; a revoked key stops working.
    let resp = http
        .post(server.url("/v1/workspace/keys"))
        .bearer_auth(&tenant.admin_key)
        .json(&json!({"role": "write"}))
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    let new_key = body["key"]["key"].as_str().expect("key").to_owned();
    let prefix = body["key"]["prefix"].as_str().expect("prefix").to_owned();
    let (_, list) = call(
        &server,
        Method::GET,
        "/v1/workspace/keys",
        &tenant.admin_key,
        None,
    )
    .await;
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(4), "{list}");
    assert!(
        !list.to_string().contains(&new_key),
        "secrets must not be listed"
    );
    let path = format!("/v1/workspace/keys/{prefix}");
    let (status, _) = call(&server, Method::DELETE, &path, &tenant.admin_key, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/track",
        &new_key,
        Some(json!({"event": "X", "userId": "u"})),
    )
    .await;
    assert_eq!(status, 401);

    // The CLI lists what the API did.
    let out = Command::new(BIN)
        .args(["tenants", "list", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("cli");
    let tenants: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(tenants[0]["timezone"], "Europe/London");
    assert!(server.stop().success());
}

/// A child process killed when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `beacon serve --listen 127.0.0.1:0` without any SQL listener setting:
/// prints the HTTP, PostgreSQL and Flight SQL addresses (every line up to
/// the Flight SQL one) and keeps the child running.
fn serve_on_free_ports(data: &std::path::Path) -> (ChildGuard, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("BEACON_SQL__PG_LISTEN")
        .env_remove("BEACON_SQL__FLIGHT_LISTEN")
        .env_remove("BEACON_LISTEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn beacon");
    let stdout = child.stdout.take().expect("stdout");
    let guard = ChildGuard(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("stdout line");
        let done = line.starts_with("Flight SQL listening on ");
        printed.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (guard, printed)
}

/// The address printed after `prefix` (up to the first space).
fn printed_addr(lines: &[String], prefix: &str) -> String {
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"));
    line.split_whitespace().next().expect("address").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_port_zero_moves_every_listener_so_two_servers_run_side_by_side() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let (_a, first) = serve_on_free_ports(&dir.path().join("a"));
    let (_b, second) = serve_on_free_ports(&dir.path().join("b"));
    let mut seen = std::collections::HashSet::new();
    for lines in [&first, &second] {
        let http = printed_addr(lines, "Beacon listening on ");
        let pg = printed_addr(lines, "PostgreSQL listening on ");
        let flight = printed_addr(lines, "Flight SQL listening on grpc://");
        for addr in [&http, &pg, &flight] {
            assert!(
                addr.contains("127.0.0.1:") && !addr.ends_with(":0"),
                "{lines:?}"
            );
            assert!(seen.insert(addr.clone()), "{addr} printed twice");
        }
        let resp = client()
            .get(format!("{http}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(resp.status(), 200, "{http}");
        // The PostgreSQL listener answers an SSLRequest with one byte.
        let mut pg = std::net::TcpStream::connect(&pg).expect("connect pg");
        pg.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        pg.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .expect("ssl request");
        let mut answer = [0u8; 1];
        pg.read_exact(&mut answer).expect("pg answers");
        assert!(matches!(&answer, b"N" | b"S"), "{answer:?}");
        std::net::TcpStream::connect(&flight).expect("connect flight");
    }
}

#[test]
fn tenants_create_takes_timezone_currency_and_week_start_checked_as_patch_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("run beacon")
    };
    let out = run(&[
        "tenants",
        "create",
        "Paris Salon",
        "--timezone",
        "Europe/Paris",
        "--currency",
        "eur",
        "--week-start",
        "Sunday",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(created["timezone"], "Europe/Paris");
    assert_eq!(created["currency"], "EUR");
    assert_eq!(created["week_start"], "sunday");
    assert!(created["write_key"].as_str().is_some(), "{created}");

    // Without flags: UTC, USD, Monday.
    let out = run(&["tenants", "create", "Default Shop", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (
            &created["timezone"],
            &created["currency"],
            &created["week_start"]
        ),
        (&json!("UTC"), &json!("USD"), &json!("monday"))
    );

    // Every invalid setting is reported and nothing is created.
    let out = run(&[
        "tenants",
        "create",
        "Typo",
        "--timezone",
        "Mars/Base",
        "--currency",
        "EUT",
        "--week-start",
        "someday",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for text in [
        "\"Mars/Base\" is not an IANA time zone",
        "\"EUT\" is not an ISO 4217 currency code",
        "week_start: must be a weekday name",
    ] {
        assert!(stderr.contains(text), "{text} missing in {stderr}");
    }

    let out = run(&["tenants", "list", "--json"]);
    let all: Value = serde_json::from_slice(&out.stdout).expect("json");
    let all = all.as_array().expect("list");
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["timezone"], "Europe/Paris");
    assert_eq!(all[0]["currency"], "EUR");
    assert_eq!(all[0]["week_start"], "sunday");
}

/// A relative data directory (the default `./beacon-data` is one): the
/// events written to Parquet are read back (the engine's object store is
/// rooted at `/`, so the server must make the directory absolute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_data_directory_reads_its_parquet_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = create_tenant(&dir.path().join("rel-data"), "Relative");
    let server = Server::start_relative(dir.path(), "rel-data", &[("BEACON_INGEST__FLUSH_INTERVAL", "1h")]);
    let (s, v) = server
        .post("/v1/batch", &tenant.write_key, serde_json::from_str(&events("rel", 25)).expect("json"))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = server.post("/v1/workspace/flush", &tenant.admin_key, json!({})).await;
    assert_eq!((s, &v["flush"]["rows"]), (200, &json!(25)), "{v}");
    assert_eq!(scalar(&server, &tenant.admin_key, "SELECT count(*) FROM events").await, 25);
}
