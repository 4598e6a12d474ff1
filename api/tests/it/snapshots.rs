//! Golden answers (insta snapshots in `tests/it/snapshots/`) for the
//! messages and JSON shapes clients are written against: the hub's
//! `welcome`, `subscribed`, activity `event` and `error` messages, and the
//! API's error body, workspace settings and a new key. Volatile values
//! (ids, keys, epochs, times) are replaced by `[name]` before comparing.
//! Review a change with `cargo insta review`.

use crate::common;

use common::ws::{self, next, send, subscribe};
use common::{Server, create_read_key, create_tenant};
use serde_json::{Value, json};

/// Replaces the value at each JSON pointer with `"[name]"` (the pointer's
/// last segment), then pretty-prints.
fn redacted(mut v: Value, pointers: &[&str]) -> String {
    for p in pointers {
        let name = p.rsplit('/').next().unwrap_or(p);
        if let Some(slot) = v.pointer_mut(p) {
            *slot = json!(format!("[{name}]"));
        }
    }
    serde_json::to_string_pretty(&v).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_messages_and_api_shapes_match_their_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[]);

    // The hub.
    let mut conn = ws::open(&server.ws_url(&format!("?key={read}"))).await;
    let welcome = next(&mut conn).await;
    insta::assert_snapshot!("ws_welcome", redacted(welcome, &["/tenant"]));
    let subscribed = subscribe(
        &mut conn,
        json!({"type": "subscribe", "channel": "activity", "events": ["Order Completed"]}),
    )
    .await;
    insta::assert_snapshot!("ws_subscribed", redacted(subscribed, &["/epoch"]));
    let (status, body) = server
        .post(
            "/v1/batch",
            &t.write_key,
            json!({"batch": [{"type": "track", "messageId": "m1", "userId": "cust-1",
                "event": "Order Completed", "timestamp": "2026-11-02T12:30:00Z",
                "properties": {"order_id": "o1", "revenue": 59.9, "currency": "EUR"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let event = next(&mut conn).await;
    insta::assert_snapshot!(
        "ws_activity_event",
        redacted(event, &["/epoch", "/payload/received_at"])
    );
    send(&mut conn, json!({"type": "subscribe", "channel": "nope"})).await;
    let error = next(&mut conn).await;
    insta::assert_snapshot!("ws_error", redacted(error, &[]));

    // The API.
    let (status, body) = server.get("/v1/workspace", "bk_r_not_a_key").await;
    assert_eq!(status, 401);
    insta::assert_snapshot!("api_error_401", redacted(body, &[]));
    let (status, body) = server.get("/v1/workspace", &t.admin_key).await;
    assert_eq!(status, 200, "{body}");
    insta::assert_snapshot!(
        "api_workspace",
        redacted(
            body,
            &[
                "/workspace/id",
                "/workspace/created_at_us",
                "/stats/file_bytes",
                "/stats/file_rows",
                "/stats/files",
                "/stats/memory_rows",
            ]
        )
    );
    let (status, body) = server
        .post("/v1/workspace/keys", &t.admin_key, json!({"role": "read"}))
        .await;
    assert_eq!(status, 201, "{body}");
    insta::assert_snapshot!(
        "api_new_key",
        redacted(
            body,
            &["/key/key", "/key/prefix"]
        )
    );
}
