//! The web app: how its files are served (compression, caching by build,
//! the Content-Security-Policy), the JavaScript client's unit tests (node's
//! test runner), and the app in a real browser (Debian's chromium driven by
//! playwright-core, pinned by api/tests/clients/web/package-lock.json and
//! installed here with `npm ci` when missing).

use std::path::Path;
use std::process::Command;

use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::json;

use crate::common::*;

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn the_app_is_served_compressed_cached_by_build_and_under_a_strict_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let index = client().get(server.url("/")).send().await.expect("GET /");
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()[CACHE_CONTROL], "no-cache");
    assert!(index.headers()[CONTENT_TYPE].to_str().expect("type").starts_with("text/html"));
    let csp = index.headers()[CONTENT_SECURITY_POLICY].to_str().expect("csp").to_owned();
    for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let body = index.text().await.expect("body");
    let prefix = body
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split("/app.js").next())
        .expect("the script's asset prefix")
        .to_owned();
    assert!(prefix.starts_with("/assets/") && prefix.len() > "/assets/".len() + 8, "{prefix}");

    // Assets: a year, immutable, compressed as the browser accepts.
    let raw = reqwest::Client::builder().no_gzip().no_brotli().build().expect("client");
    for (encoding, expected) in [("br", Some("br")), ("gzip", Some("gzip")), ("identity", None)] {
        let resp = raw
            .get(server.url(&format!("{prefix}/vendor/uplot.mjs")))
            .header(ACCEPT_ENCODING, encoding)
            .send()
            .await
            .expect("asset");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[CACHE_CONTROL], "public, max-age=31536000, immutable");
        assert_eq!(resp.headers().get(CONTENT_ENCODING).map(|v| v.to_str().expect("text")), expected);
        assert!(resp.headers()[CONTENT_TYPE].to_str().expect("type").starts_with("text/javascript"));
        let bytes = resp.bytes().await.expect("bytes").len();
        match expected {
            None => assert!(bytes > 100_000, "{bytes}"),
            Some(_) => assert!(bytes < 60_000, "{encoding}: {bytes} bytes"),
        }
    }
    // Every module of the first page, compressed, under the page-weight budget.
    let mut total = 0;
    for file in ["app.js", "lib/client.js", "lib/format.js", "lib/chart.js", "pages/login.js", "pages/overview.js", "vendor/preact-htm.mjs", "vendor/uplot.mjs"] {
        let resp = raw.get(server.url(&format!("{prefix}/{file}"))).header(ACCEPT_ENCODING, "br").send().await.expect("asset");
        assert_eq!(resp.status(), 200, "{file}");
        total += resp.bytes().await.expect("bytes").len();
    }
    assert!(total < 300 * 1024, "{total} bytes of compressed JavaScript");
    // Another build's asset, the page itself under /assets, a file that is not there.
    for path in ["/assets/0000000000000000/app.js".to_owned(), format!("{prefix}/index.html"), format!("{prefix}/nope.js")] {
        let resp = client().get(server.url(&path)).send().await.expect("asset");
        assert_eq!(resp.status(), 404, "{path}");
        let v: serde_json::Value = resp.json().await.expect("json error");
        assert_eq!(v["error"]["code"], "not_found");
    }
}

#[test]
fn the_javascript_client_resumes_without_gaps_or_duplicates() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/lib");
    let out = Command::new("node")
        .current_dir(&lib)
        .args(["--test", "client.test.mjs"])
        .output()
        .expect("node is installed (.ci/run installs Node.js)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_in_a_real_browser() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/web");
    npm_ci(&tests, "playwright-core");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["tenants", "create", "Coffee shop", "--currency", "EUR", "--timezone", "Europe/Lisbon", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("tenants create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shop: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let write_key = shop["write_key"].as_str().expect("write key").to_owned();
    let read_key = create_read_key(&data, "Coffee shop");
    let admin_key = shop["admin_key"].as_str().expect("admin key").to_owned();
    create_user(&data, "Coffee shop", "owner@coffee.test", "owner", PASSWORD);
    create_user(&data, "Coffee shop", "viewer@coffee.test", "viewer", PASSWORD);
    let server = Server::start(&data, &[("BEACON_ACCESS__LIMITS__LOGIN__BURST", "1000")]);
    // History for the chart and the tiles.
    let (s, v) = server
        .post(
            "/v1/batch",
            &write_key,
            json!({"batch": [
                {"type": "track", "event": "Order Completed", "userId": "cust-0", "messageId": "seed-1",
                 "properties": {"order_id": "o-seed-1", "revenue": "20.00", "currency": "EUR",
                                "products": [{"product_id": "p2", "name": "Grinder", "price": "20.00", "quantity": 1}]}}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Sixty days of orders before today, and a saved daily revenue forecast
    // (the Overview draws its band). The amounts follow the day of the week
    // (a weekly season the models fit whatever today is: a cycle of another
    // length made the lowest days unusual on some dates).
    let past: Vec<serde_json::Value> = (1..=60)
        .map(|d| {
            let at = chrono::Utc::now() - chrono::Duration::days(d);
            let weekday = chrono::Datelike::weekday(&at).num_days_from_monday();
            json!({"type": "track", "event": "Order Completed", "userId": format!("cust-h{}", d % 7),
                   "messageId": format!("hist-{d}"), "timestamp": at.to_rfc3339(),
                   "properties": {"order_id": format!("o-hist-{d}"), "revenue": format!("{}.50", 10 + weekday % 5), "currency": "EUR"}})
        })
        .collect();
    let (s, v) = server.post("/v1/batch", &write_key, json!({ "batch": past })).await;
    assert_eq!(s, 200, "{v}");
    // One unusual day five days ago: a wholesale order of 400 on a day of
    // about 12 (the Overview marks it as an anomaly).
    let spike = chrono::Utc::now() - chrono::Duration::days(5);
    let (s, v) = server
        .post(
            "/v1/batch",
            &write_key,
            json!({"batch": [{"type": "track", "event": "Order Completed", "userId": "cust-big", "messageId": "spike-1",
                              "timestamp": spike.to_rfc3339(),
                              "properties": {"order_id": "o-spike", "revenue": "400.00", "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = server
        .post("/v1/forecasts", &read_key, json!({"metric": "revenue", "interval": "day", "horizon": 7}))
        .await;
    assert_eq!(s, 200, "{v}");

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts");
    let out = Command::new("node")
        .current_dir(&tests)
        .args(["--test", "--test-concurrency=1", "app.test.mjs"])
        .env("BEACON_URL", &server.base)
        .env("BEACON_WRITE_KEY", &write_key)
        .env("BEACON_READ_KEY", &read_key)
        .env("BEACON_ADMIN_KEY", &admin_key)
        .env("BEACON_OWNER", format!("owner@coffee.test:{PASSWORD}"))
        .env("BEACON_VIEWER", format!("viewer@coffee.test:{PASSWORD}"))
        .env("BEACON_ARTIFACTS", &artifacts)
        .env("BEACON_SPIKE_DAY", spike.format("%Y-%m-%d").to_string())
        .output()
        .expect("node is installed");
    assert!(
        out.status.success(),
        "browser tests failed (screenshots in {}):\n{}{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in ["overview-desktop.png", "overview-phone.png"] {
        assert!(artifacts.join(shot).is_file(), "{shot}");
    }
}
