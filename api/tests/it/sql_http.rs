//! `POST /v1/sql` against the real server: every answer format carries the
//! same rows, parameters are bound (not spliced), EXPLAIN works, errors are
//! precise (syntax position, unknown column, sandbox, limits), running
//! queries are listed and cancelled by an admin or by the client leaving.

use crate::common;

use std::time::Duration;

use arrow::array::RecordBatch;
use common::{Server, call, client, create_read_key, create_tenant};
use reqwest::Method;
use serde_json::{Value, json};

fn events() -> Value {
    let mut batch = Vec::new();
    for i in 0..40 {
        let event = if i % 4 == 0 {
            "Order Completed"
        } else {
            "Product Viewed"
        };
        batch.push(json!({"type": "track", "messageId": format!("m{i}"), "userId": format!("u{}", i % 7),
                          "event": event, "timestamp": format!("2026-11-{:02}T10:00:00Z", 1 + i % 20),
                          "properties": {"revenue": i as f64 + 0.5, "channel": if i % 2 == 0 { "web" } else { "app" }}}));
    }
    json!({ "batch": batch })
}

const QUERY: &str = "SELECT user_id, count(*) AS n, sum(revenue) AS revenue, min(timestamp) AS first \
                     FROM events WHERE event = 'Order Completed' GROUP BY user_id ORDER BY user_id";

async fn post(server: &Server, key: &str, body: Value, accept: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(server.url("/v1/sql"))
        .bearer_auth(key)
        .json(&body);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    req.send().await.expect("send")
}

fn batches_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .expect("fmt")
            })
            .collect();
        for r in 0..b.num_rows() {
            out.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_answers_the_same_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[]);
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &t.write_key,
        Some(events()),
    )
    .await;
    assert_eq!(status, 200);

    let resp = post(&server, &read, json!({"query": QUERY}), None).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("beacon-query-id").is_some());
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.expect("json");
    let rows = doc["rows"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 7, "{doc}");
    assert_eq!(doc["truncated"], false);
    assert_eq!(doc["columns"][0]["name"], "user_id");
    // u0 ordered at i = 0 and 28: revenue 0.5 + 28.5.
    assert_eq!(rows[0], json!(["u0", 2, "29.0000", "2026-11-01T10:00:00Z"]));

    // NDJSON: one object per row, same values.
    let resp = post(
        &server,
        &read,
        json!({"query": QUERY, "format": "ndjson"}),
        None,
    )
    .await;
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.expect("text");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(
        lines[0],
        json!({"user_id": "u0", "n": 2, "revenue": "29.0000", "first": "2026-11-01T10:00:00Z"})
    );

    // CSV by Accept header.
    let resp = post(&server, &read, json!({"query": QUERY}), Some("text/csv")).await;
    assert_eq!(resp.headers()["content-type"], "text/csv");
    let text = resp.text().await.expect("text");
    let csv: Vec<&str> = text.lines().collect();
    assert_eq!(csv[0], "user_id,n,revenue,first");
    assert_eq!(csv.len(), 8);
    assert!(
        csv[1].starts_with("u0,2,29.0000,2026-11-01T10:00:00"),
        "{}",
        csv[1]
    );

    // Arrow IPC stream and Parquet decode to the same rows.
    let resp = post(
        &server,
        &read,
        json!({"query": QUERY}),
        Some("application/vnd.apache.arrow.stream"),
    )
    .await;
    let bytes = resp.bytes().await.expect("bytes");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .expect("ipc");
    let ipc: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let resp = post(
        &server,
        &read,
        json!({"query": QUERY, "format": "parquet"}),
        None,
    )
    .await;
    let bytes = resp.bytes().await.expect("bytes");
    let pq: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("parquet")
            .build()
            .expect("reader")
            .map(|b| b.expect("batch"))
            .collect();
    let a = batches_rows(&ipc);
    assert_eq!(a.len(), 7);
    assert_eq!(a, batches_rows(&pq));
    assert_eq!(a[0][0], "u0");
    assert_eq!(a[0][2], "29.0000");

    // An empty result is still well-formed in every format.
    let empty = "SELECT user_id FROM events WHERE event = 'nothing'";
    let doc: Value = post(&server, &read, json!({"query": empty}), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(doc["rows"], json!([]));
    let text = post(
        &server,
        &read,
        json!({"query": empty, "format": "csv"}),
        None,
    )
    .await
    .text()
    .await
    .expect("csv");
    assert_eq!(text.trim(), "user_id");
    let bytes = post(
        &server,
        &read,
        json!({"query": empty, "format": "arrow"}),
        None,
    )
    .await
    .bytes()
    .await
    .expect("b");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .expect("ipc");
    assert_eq!(reader.schema().field(0).name(), "user_id");

    // Excel: typed cells read back by an independent reader (openpyxl).
    let resp = post(
        &server,
        &read,
        json!({"query": QUERY, "format": "xlsx"}),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let book = crate::common::read_xlsx(&resp.bytes().await.expect("bytes"));
    assert_eq!(book["sheets"], json!(["Result", "About"]), "{book}");
    let result = &book["cells"]["Result"];
    assert_eq!(result[0], json!([["user_id", "s"], ["n", "s"], ["revenue", "s"], ["first (UTC)", "s"]]));
    assert_eq!(result.as_array().map(Vec::len), Some(8), "{book}");
    // Text, an integer, money as a number shown to its 4 places, a date.
    assert_eq!(
        result[1],
        json!([["u0", "s"], [2, "n", "General"], [29, "n", "#,##0.0000"], ["2026-11-01T10:00:00", "d", "yyyy-mm-dd hh:mm:ss"]]),
        "{book}"
    );
    let about = &book["cells"]["About"];
    assert!(about.to_string().contains("SELECT user_id"), "{about}");
    assert!(!about.to_string().contains("row limit"), "{about}");

    let resp = post(
        &server,
        &read,
        json!({"query": QUERY, "format": "docx"}),
        None,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "invalid_format");
}



#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_explain_errors_and_row_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[("BEACON_ENGINE__MAX_RESULT_ROWS", "5")]);
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &t.write_key,
        Some(events()),
    )
    .await;
    assert_eq!(status, 200);

    let q = "SELECT count(*) FROM events WHERE event = $1 AND revenue > $2";
    let doc: Value = post(
        &server,
        &read,
        json!({"query": q, "params": ["Order Completed", 20]}),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(
        doc["rows"],
        json!([[5]]),
        "orders with revenue > 20: i = 24, 28, 32, 36 and 20.5"
    );
    // A parameter is a value, never SQL.
    let doc: Value = post(
        &server,
        &read,
        json!({"query": q, "params": ["x' OR '1'='1", 0]}),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(doc["rows"], json!([[0]]));
    for (params, code) in [
        (json!([{"a": 1}, 1]), "invalid_params"),
        (json!(["Order Completed"]), "invalid_query"),
    ] {
        let resp = post(&server, &read, json!({"query": q, "params": params}), None).await;
        assert_eq!(resp.status(), 400, "{params}");
        let err: Value = resp.json().await.expect("json");
        assert_eq!(err["error"]["code"], code, "{err}");
    }

    for explain in [
        "EXPLAIN SELECT count(*) FROM events",
        "EXPLAIN ANALYZE SELECT count(*) FROM events",
    ] {
        let doc: Value = post(&server, &read, json!({"query": explain}), None)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(doc["columns"][0]["name"], "plan_type", "{doc}");
        assert!(doc["rows"].to_string().contains("Exec"), "{explain}: {doc}");
    }

    let resp = post(
        &server,
        &read,
        json!({"query": "SELECT count(*)\nFROM events WHERE (1 FROM"}),
        None,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "sql_syntax");
    assert_eq!(err["error"]["position"]["line"], 2, "{err}");
    assert_eq!(err["error"]["position"]["column"], 22, "{err}");
    assert!(
        err["error"]["position"]["column"].as_u64().is_some(),
        "{err}"
    );
    let resp = post(
        &server,
        &read,
        json!({"query": "SELECT nope FROM events"}),
        None,
    )
    .await;
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "invalid_query");
    let resp = post(&server, &read, json!({"query": "DROP TABLE events"}), None).await;
    assert_eq!(resp.status(), 403);

    // At most max_result_rows rows, flagged in JSON, stated in a header.
    let resp = post(
        &server,
        &read,
        json!({"query": "SELECT message_id FROM events"}),
        None,
    )
    .await;
    assert_eq!(resp.headers()["beacon-row-limit"], "5");
    let doc: Value = resp.json().await.expect("json");
    assert_eq!(doc["rows"].as_array().map(Vec::len), Some(5));
    assert_eq!(doc["truncated"], true);
    let text = post(
        &server,
        &read,
        json!({"query": "SELECT message_id FROM events", "format": "csv"}),
        None,
    )
    .await
    .text()
    .await
    .expect("csv");
    assert_eq!(text.lines().count(), 6, "header and 5 rows");
    // The workbook says the limit was reached.
    let bytes = post(
        &server,
        &read,
        json!({"query": "SELECT message_id FROM events", "format": "xlsx"}),
        None,
    )
    .await
    .bytes()
    .await
    .expect("xlsx");
    let book = crate::common::read_xlsx(&bytes);
    assert_eq!(book["cells"]["Result"].as_array().map(Vec::len), Some(6), "{book}");
    assert!(book["cells"]["About"].to_string().contains("row limit"), "{book}");
    // The server is fine and the data intact.
    let doc: Value = post(
        &server,
        &read,
        json!({"query": "SELECT count(*) FROM events"}),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(doc["rows"], json!([[40]]));
}

/// A query that runs for a long time on a few hundred rows.
const SLOW: &str = "SELECT count(*) FROM events a, events b, events c, events d, events e, events f \
                    WHERE a.message_id < b.message_id";

async fn running(server: &Server, admin: &str) -> Vec<Value> {
    let (status, body) = call(server, Method::GET, "/v1/queries", admin, None).await;
    assert_eq!(status, 200, "{body}");
    body["queries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_queries_are_listed_and_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[("BEACON_ENGINE__QUERY_TIMEOUT", "10min")]);
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &t.write_key,
        Some(events()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, Method::GET, "/v1/queries", &read, None).await;
    assert_eq!(status, 403, "listing needs an admin key");

    // An admin cancels a running query: its request answers 422 cancelled.
    let url = server.url("/v1/sql");
    let key = read.clone();
    let slow = tokio::spawn(async move {
        let resp = client()
            .post(url)
            .bearer_auth(key)
            .json(&json!({"query": SLOW}))
            .send()
            .await
            .expect("send");
        let status = resp.status();
        (status, resp.json::<Value>().await.expect("json"))
    });
    let mut listed = Vec::new();
    for _ in 0..200 {
        listed = running(&server, &t.admin_key).await;
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed.len(), 1, "the slow query is listed");
    assert_eq!(listed[0]["sql"], SLOW);
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/queries/q_nope",
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &server,
        Method::DELETE,
        &format!("/v1/queries/{id}"),
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), slow)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "cancelled");

    // A client that goes away cancels its query too.
    let gone = client()
        .post(server.url("/v1/sql"))
        .bearer_auth(&read)
        .timeout(Duration::from_millis(500))
        .json(&json!({"query": SLOW}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    let mut left = usize::MAX;
    for _ in 0..200 {
        left = running(&server, &t.admin_key).await.len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the abandoned query stopped");
    let doc = common::sql(&server, &read, "SELECT count(*) FROM events").await;
    assert_eq!(doc["rows"], json!([[40]]));
}
