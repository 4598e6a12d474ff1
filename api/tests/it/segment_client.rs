//! Compatibility with a real Segment library: `@segment/analytics-node`
//! (pinned by api/tests/clients/segment-node/package-lock.json and installed
//! by this test with `npm ci` when missing) sends to
//! the real server; every event arrives with its fields.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Server, create_tenant, scalar, sql};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_analytics_node_events_arrive_intact() {
    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/segment-node");
    common::npm_ci(&client_dir, "@segment/analytics-node");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Node shop");
    let server = Server::start(&data, &[]);

    let out = Command::new("node")
        .current_dir(&client_dir)
        .args(["send.mjs", &server.base, &tenant.write_key, "40"])
        .output()
        .expect("node is installed");
    assert!(
        out.status.success(),
        "node client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        scalar(&server, &tenant.admin_key, "SELECT COUNT(*) FROM events").await,
        42
    );
    let orders = sql(
        &server,
        &tenant.admin_key,
        "SELECT message_id, order_id, CAST(revenue AS VARCHAR) AS revenue, currency, CAST(timestamp AS VARCHAR) AS ts, context \
         FROM events WHERE event = 'Order Completed' ORDER BY ts",
    )
    .await;
    let rows = orders["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 40);
    assert_eq!(rows[0][0], "node-order-0");
    assert_eq!(rows[0][1], "n-0");
    assert_eq!(rows[0][2], "10.2500");
    assert_eq!(rows[0][3], "USD");
    // The library sends sentAt; skew correction keeps the time within the client/server clock difference.
    let ts = rows[39][4].as_str().expect("ts");
    assert!(ts.starts_with("2025-06-01T12:00:3"), "{ts}");
    let ctx: Value = serde_json::from_str(rows[0][5].as_str().expect("context")).expect("json");
    assert_eq!(ctx["library"]["name"], "@segment/analytics-node");
    let who = sql(
        &server,
        &tenant.admin_key,
        "SELECT type, user_id, anonymous_id, event, traits FROM events WHERE type <> 'track' ORDER BY type",
    )
    .await;
    let rows = who["rows"].as_array().expect("rows");
    assert_eq!(rows[0][0], "identify");
    assert_eq!(rows[0][1], "node-user");
    let traits: Value = serde_json::from_str(rows[0][4].as_str().expect("traits")).expect("json");
    assert_eq!(traits, json!({"email": "node@example.com", "plan": "pro"}));
    assert_eq!(rows[1][0], "page");
    assert_eq!(rows[1][2], "node-anon");
    assert_eq!(rows[1][3], "Checkout");
    assert!(server.stop().success());
}
