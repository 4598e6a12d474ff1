//! Hostile and malformed input: each gets the right 4xx with a structured
//! error, the server keeps serving, and earlier data is intact.

use crate::common;

use std::io::Write;

use common::{Server, client, create_tenant, scalar};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(
    server: &Server,
    route: &str,
    key: Option<&str>,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = client().post(server.url(route)).body(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let text = resp.text().await.expect("text");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let other = create_tenant(&data, "Other");
    let server = Server::start(&data, &[("BEACON_HTTP__MAX_BODY_BYTES", "65536")]);
    let key = Some(tenant.write_key.as_str());

    // Data that must survive everything below.
    let good = json!({"batch": (0..20).map(|i| json!({"type": "track", "event": "Order Completed", "userId": format!("u{i}"), "messageId": format!("good{i}"), "properties": {"revenue": 10}})).collect::<Vec<_>>()}).to_string();
    let (status, body) = post(&server, "/v1/batch", key, good.clone(), &[]).await;
    assert_eq!(status, 200, "{body}");

    // (route, key, body, headers, expected status, expected error code)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "/v1/batch",
            key,
            b"{not json".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/v1/batch",
            key,
            b"".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/v1/batch",
            key,
            b"[]".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/batch",
            key,
            b"{\"batch\": {}}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/batch",
            key,
            b"{\"batch\": [{\"type\": \"track\", \"event\": \"\xff\xfe\", \"userId\": \"u\"}]}"
                .to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/v1/track",
            key,
            b"{\"userId\": \"u\"}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "/v1/track",
            key,
            b"{\"event\": \"X\"}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "/v1/track",
            key,
            b"{\"event\": \"X\", \"userId\": \"u\", \"timestamp\": \"31/12/2024\"}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "/v1/track",
            key,
            b"{\"event\": \"X\", \"userId\": \"u\", \"properties\": {\"revenue\": [1]}}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "/v1/track",
            key,
            b"{\"event\": 5, \"userId\": \"u\"}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        (
            "/v1/events",
            key,
            b"{\"event\": \"X\"}\nnope\n".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_events",
        ),
        // Oversized: by Content-Length, and by gzip expansion (a zip bomb).
        (
            "/v1/batch",
            key,
            vec![b' '; 70_000],
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/v1/batch",
            key,
            gzip(&vec![b' '; 10_000_000]),
            vec![("Content-Encoding", "gzip")],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/v1/batch",
            key,
            b"not gzip at all".to_vec(),
            vec![("Content-Encoding", "gzip")],
            StatusCode::BAD_REQUEST,
            "invalid_gzip",
        ),
        (
            "/v1/batch",
            key,
            b"{}".to_vec(),
            vec![("Content-Encoding", "br")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
        ),
        (
            "/v1/batch",
            key,
            too_many_events(5001),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
        ),
        // Keys.
        (
            "/v1/batch",
            None,
            good.clone().into_bytes(),
            vec![],
            StatusCode::UNAUTHORIZED,
            "missing_credentials",
        ),
        (
            "/v1/batch",
            Some("bk_w_wrong"),
            good.clone().into_bytes(),
            vec![],
            StatusCode::UNAUTHORIZED,
            "invalid_key",
        ),
        (
            "/v1/batch",
            None,
            good.clone().into_bytes(),
            vec![("Authorization", "Digest abc")],
            StatusCode::UNAUTHORIZED,
            "invalid_authorization",
        ),
        (
            "/v1/batch",
            None,
            good.clone().into_bytes(),
            vec![("Authorization", "Basic %%%")],
            StatusCode::UNAUTHORIZED,
            "invalid_authorization",
        ),
        // A write key on query and admin routes.
        (
            "/v1/sql",
            key,
            b"{\"query\": \"SELECT 1\"}".to_vec(),
            vec![],
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/v1/workspace/flush",
            key,
            vec![],
            vec![],
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/v1/workspace/keys",
            key,
            b"{\"role\": \"admin\"}".to_vec(),
            vec![],
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        // Bad SQL and the read-only sandbox.
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            b"{\"query\": \"SELEC 1\"}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "sql_syntax",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            b"{\"query\": \"SELECT nope FROM events\"}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            b"{\"query\": \"DROP TABLE events\"}".to_vec(),
            vec![],
            StatusCode::FORBIDDEN,
            "read_only",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            b"{\"query\": \"CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'\"}"
                .to_vec(),
            vec![],
            StatusCode::FORBIDDEN,
            "read_only",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            b"{\"query\": \"SET datafusion.execution.batch_size = 1\"}".to_vec(),
            vec![],
            StatusCode::FORBIDDEN,
            "read_only",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            b"{\"query\": 5}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            b"{\"query\": \"SELECT business_date(timestamp, 'decade') FROM events\"}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            b"{\"query\": \"SELECT business_date(timestamp, event) FROM events\"}".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        // 5000 chained conditions overflowed the planning thread's stack
        // and aborted the server; a long `1 + 1 + ...` took memory
        // quadratic in its length.
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            sql_body(&format!(
                "SELECT count(*) FROM events WHERE {}",
                (0..5000).map(|i| format!("event <> 'x{i}'")).collect::<Vec<_>>().join(" AND ")
            )),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            sql_body(&format!("SELECT {}", vec!["1"; 30000].join(" + "))),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/sql",
            Some(&tenant.admin_key),
            sql_body(&format!(
                "SELECT count(*) FROM events WHERE {}",
                (0..300).map(|i| format!("event <> 'x{i}'")).collect::<Vec<_>>().join(" OR ")
            )),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        // 2000 filters (111 KB) overflowed the planning thread's stack and
        // took the server down; 51 is over the limit.
        (
            "/v1/analytics/revenue",
            Some(&tenant.admin_key),
            many_filters(2000),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/analytics/funnel",
            Some(&tenant.admin_key),
            json!({"steps": [{"event": "A", "filters": serde_json::from_slice::<Value>(&many_filters(51)).expect("json")["filters"]}, {"event": "B"}]}).to_string().into_bytes(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/nope",
            key,
            vec![],
            vec![],
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (route, key, body, headers, want_status, want_code) in cases {
        let (status, resp) = post(&server, route, key, body, &headers).await;
        assert_eq!(status, want_status, "{route}: {resp}");
        assert_eq!(code(&resp), want_code, "{route}: {resp}");
        assert!(
            !resp["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{resp}"
        );
    }

    // Rejections name the event index and the reason; valid events in the same batch are kept.
    let mixed = json!({"batch": [
        {"type": "track", "event": "Order Completed", "userId": "m", "messageId": "mixed0"},
        {"type": "track", "userId": "m"},
        {"type": "track", "event": "X", "userId": "m", "timestamp": "not a time"},
        {"type": "track", "event": "X", "userId": "m", "properties": {"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}}}},
        {"type": "track", "event": "X", "userId": "m", "properties": {"s": "x".repeat(9000)}},
        {"type": "track", "event": "Order Completed", "userId": "m", "messageId": "mixed5"}
    ]});
    let (status, body) = post(&server, "/v1/batch", key, mixed.to_string(), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 2);
    let rejected: Vec<(u64, String)> = body["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "missing_event".into()),
            (2, "invalid_timestamp".into()),
            (3, "too_deep".into()),
            (4, "string_too_long".into())
        ]
    );

    // The other tenant's key cannot see this tenant's rows.
    assert_eq!(
        scalar(&server, &other.admin_key, "SELECT COUNT(*) FROM events").await,
        0
    );
    // Query strings and paths that do not parse get the structured body
    // too.
    for path in [
        "/v1/deliveries?limit=many",
        "/v1/inbox?unread=perhaps",
        "/v1/alerts/history?surprise=1",
        // Not UTF-8 once percent-decoded.
        "/v1/alerts/rules/%FF%FE",
    ] {
        let resp = client()
            .get(server.url(path))
            .bearer_auth(&tenant.admin_key)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.expect("json error");
        let expected = if path.contains('?') {
            "invalid_query_string"
        } else {
            "invalid_path"
        };
        assert_eq!(code(&body), expected, "{path}: {body}");
    }
    // Still serving, and the earlier data is intact.
    let resp = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        scalar(
            &server,
            &tenant.admin_key,
            "SELECT COUNT(*) FROM events WHERE message_id LIKE 'good%'"
        )
        .await,
        20
    );
    assert_eq!(
        scalar(&server, &tenant.admin_key, "SELECT COUNT(*) FROM events").await,
        22
    );
    assert!(server.stop().success());
}

/// A `/v1/sql` body.
fn sql_body(query: &str) -> Vec<u8> {
    json!({"query": query}).to_string().into_bytes()
}

/// A revenue request with `n` filters.
fn many_filters(n: usize) -> Vec<u8> {
    let filters: Vec<Value> = (0..n)
        .map(|i| json!({"property": "channel", "op": "neq", "value": format!("x{i}")}))
        .collect();
    json!({"range": "30d", "filters": filters})
        .to_string()
        .into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

fn too_many_events(n: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..n).map(|_| json!({})).collect();
    json!({"batch": events}).to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_shapes_are_explained_by_what_to_send_not_by_rust_type_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let server = Server::start(&data, &[]);
    let admin = Some(tenant.admin_key.as_str());
    // (route, body, what the message must show)
    let cases = [
        (
            "/v1/analytics/funnel",
            json!({"steps": ["Signup", "Order Completed"]}),
            r#"an event object like {"event": "Order Completed""#,
        ),
        (
            "/v1/analytics/revenue",
            json!({"filters": ["channel"]}),
            r#"a filter object like {"property": "channel""#,
        ),
        (
            "/v1/alerts/rules",
            json!({"name": "r", "query": "revenue", "condition": {"type": "no_data"}}),
            r#"a query object like {"metric": "revenue""#,
        ),
        (
            "/v1/alerts/rules",
            json!({"name": "r", "query": {"metric": "revenue"}, "condition": "above 100"}),
            r#"a condition object like {"type": "threshold""#,
        ),
    ];
    for (route, body, want) in cases {
        let (status, answer) = post(&server, route, admin, body.to_string(), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{route} {body}: {message}");
        assert!(
            !message.contains("struct") && !message.contains("enum"),
            "{route} {body}: {message}"
        );
    }
}
