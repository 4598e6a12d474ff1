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
