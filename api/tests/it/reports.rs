//! Reports: definitions and templates, previews equal to the analytics
//! API, runs logged with their Excel and CSV files (read back with
//! openpyxl), schedules that run, and bad input.

use crate::common;
use chrono::{Duration, SecondsFormat, Utc};
use common::{Server, call, client, create_tenant};
use reqwest::Method;
use serde_json::{Value, json};

/// Twenty days of orders (two channels, two payment methods, line items)
/// and a few refunds, ending yesterday.
fn events() -> Vec<Value> {
    let mut out = Vec::new();
    for d in 1..=20i64 {
        let at = Utc::now() - Duration::days(d);
        for k in 0..(1 + d % 3) {
            let id = format!("o-{d}-{k}");
            let channel = if (d + k) % 2 == 0 { "web" } else { "app" };
            let price = format!("{}.{:02}", 10 + d, (k * 25) % 100);
            out.push(json!({
                "type": "track", "event": "Order Completed", "userId": format!("c{}", (d + k) % 6),
                "messageId": id, "timestamp": (at + Duration::minutes(k * 7)).to_rfc3339_opts(SecondsFormat::Millis, true),
                "properties": {"order_id": id, "revenue": price, "currency": "USD", "channel": channel,
                               "payment_method": if k % 2 == 0 { "card" } else { "cash" },
                               "products": [{"product_id": format!("p{}", d % 4), "name": format!("Product {}", d % 4),
                                             "price": price, "quantity": 1}]}
            }));
        }
        if d % 5 == 0 {
            out.push(json!({
                "type": "track", "event": "Order Refunded", "userId": "c1", "messageId": format!("r-{d}"),
                "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "properties": {"order_id": format!("o-{d}-0"), "revenue": "5.00", "currency": "USD"}
            }));
        }
    }
    out
}

/// The run log of one report, newest first.
async fn run_log(server: &Server, key: &str, report: &str) -> Value {
    let (s, log) = call(
        server,
        Method::GET,
        &format!("/v1/reports/runs?report={report}"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 200, "{log}");
    log
}

async fn bytes(server: &Server, key: &str, path: &str) -> (u16, String, Vec<u8>) {
    let resp = client()
        .get(server.url(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.expect("bytes").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_previewed_run_logged_and_scheduled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let server = Server::start(&data, &[]);
    let key = &tenant.admin_key;
    let (s, v) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": events()})),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // Templates are listed and valid.
    let (s, t) = call(&server, Method::GET, "/v1/reports/templates", key, None).await;
    assert_eq!(s, 200, "{t}");
    let names: Vec<&str> = t["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for want in [
        "weekly_sales",
        "monthly_bookings",
        "funnel_health",
        "customers_at_risk",
        "low_stock",
        "alert_digest",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }

    // A preview's numbers are the analytics API's for the same range.
    let (s, p) = call(
        &server,
        Method::POST,
        "/v1/reports/preview",
        key,
        Some(json!({"template": "weekly_sales", "range": "last_7_days"})),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let (from, to) = (
        p["range"]["from"].as_str().expect("from"),
        p["range"]["to"].as_str().expect("to"),
    );
    let (s, api) = call(
        &server,
        Method::GET,
        &format!("/v1/analytics/revenue?from={from}&to={to}&compare=true&interval=day"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 200, "{api}");
    let kpi = &p["blocks"][0];
    assert_eq!(kpi["heading"], "Key numbers");
    let row = |metric: &str| {
        kpi["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["metric"] == metric)
            .unwrap_or_else(|| panic!("no {metric} in {kpi}"))
            .clone()
    };
    for metric in ["gross", "net", "refunds", "orders", "aov"] {
        assert_eq!(row(metric)["value"], api["summary"][metric], "{metric}");
        assert_eq!(
            row(metric)["previous"],
            api["previous"]["summary"][metric],
            "{metric}"
        );
        assert_eq!(row(metric)["change"], api["change"][metric], "{metric}");
    }
    assert!(
        api["summary"]["orders"].as_i64().expect("orders") > 5,
        "{api}"
    );
    let per_day = &p["blocks"][1];
    assert_eq!(per_day["heading"], "Revenue per day");
    let days: Vec<(&Value, &Value)> = per_day["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (&r["bucket"], &r["gross"]))
        .collect();
    let want: Vec<(&Value, &Value)> = api["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|r| (&r["bucket"], &r["gross"]))
        .collect();
    assert_eq!(days, want);
    // The summary says the biggest change, from the same numbers.
    let summary = p["summary"].as_array().expect("summary");
    assert!(!summary.is_empty(), "{p}");

    // Saved with a schedule in the workspace's zone; run now: an Excel file
    // whose sheets hold the same numbers, and a logged run.
    let (s, r) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(
            json!({"template": "weekly_sales", "range": "last_7_days", "schedule": "0 9 * * MON"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let report = r["report"]["id"].as_str().expect("id").to_owned();
    assert!(r["report"]["next_run_at"].is_string(), "{r}");
    let (s, run) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{report}/run"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 201, "{run}");
    assert_eq!(run["run"]["outcome"], "ok", "{run}");
    assert_eq!(run["run"]["range_from"], from);
    let run_id = run["run"]["id"].as_str().expect("run id");
    let (s, ct, file) = bytes(&server, key, &format!("/v1/reports/runs/{run_id}/file")).await;
    assert_eq!(s, 200);
    assert!(ct.contains("spreadsheetml"), "{ct}");
    assert_eq!(run["run"]["bytes"], json!(file.len()));
    let book = common::read_xlsx(&file);
    let sheets: Vec<&str> = book["sheets"]
        .as_array()
        .expect("sheets")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        sheets[..6],
        [
            "Summary",
            "1 Key numbers",
            "2 Revenue per day",
            "3 Revenue by channel",
            "4 Revenue by payment method",
            "5 Top products"
        ]
    );
    // Revenue per day: days as dates, money as numbers equal to the API's text.
    let cells = book["cells"]["2 Revenue per day"]
        .as_array()
        .expect("cells");
    let header: Vec<&str> = cells[0]
        .as_array()
        .expect("header")
        .iter()
        .map(|c| c[0].as_str().unwrap_or_default())
        .collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    assert_eq!(cells.len() - 1, want.len());
    for (row, (bucket, gross)) in cells[1..].iter().zip(&want) {
        assert_eq!(row[at("bucket")][1], "d", "{row}");
        assert!(
            row[at("bucket")][0]
                .as_str()
                .expect("date")
                .starts_with(bucket.as_str().expect("bucket"))
        );
        let money = row[at("gross")][0].as_f64().expect("number");
        let text: f64 = gross.as_str().expect("gross").parse().expect("decimal");
        assert!((money - text).abs() < 1e-9, "{money} vs {gross}");
    }
    let log = run_log(&server, key, &report).await;
    assert_eq!(log["runs"].as_array().expect("runs").len(), 1);
    assert_eq!(log["runs"][0]["trigger"], "manual");

    // CSV: one file per block, each RFC 4180 with a header row.
    let (s, r) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(json!({"title": "Channels", "range": "last_30_days", "format": "csv",
                    "blocks": [{"type": "breakdown", "by": "channel"},
                               {"type": "sql", "sql": "SELECT channel, count(*) AS orders FROM orders WHERE timestamp >= {from} AND timestamp < {to} GROUP BY 1 ORDER BY 1"}]})),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let csv_report = r["report"]["id"].as_str().expect("id").to_owned();
    let (_, run) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{csv_report}/run"),
        key,
        None,
    )
    .await;
    assert_eq!(run["run"]["outcome"], "ok", "{run}");
    let run_id = run["run"]["id"].as_str().expect("id");
    let (s, ct, body) = bytes(
        &server,
        key,
        &format!("/v1/reports/runs/{run_id}/file?block=1"),
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, "text/csv; charset=utf-8"));
    let text = String::from_utf8(body).expect("utf-8");
    let (_, sql) = call(
        &server,
        Method::POST,
        "/v1/sql",
        key,
        Some(json!({"query": "SELECT channel, count(*) AS orders FROM orders WHERE timestamp >= now() - INTERVAL '40 days' GROUP BY 1 ORDER BY 1"})),
    )
    .await;
    assert_eq!(text.lines().next(), Some("channel,orders"), "{text}");
    assert_eq!(
        text.lines().count(),
        sql["rows"].as_array().map_or(0, Vec::len) + 1,
        "{text} vs {sql}"
    );
    let (s, _, _) = bytes(
        &server,
        key,
        &format!("/v1/reports/runs/{run_id}/file?block=5"),
    )
    .await;
    assert_eq!(s, 404);

    // Parquet: one typed file per block, money as decimals.
    let (s, r) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(
            json!({"title": "Days", "range": "last_7_days", "format": "parquet",
                    "blocks": [{"type": "timeseries", "interval": "day"}]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let pq = r["report"]["id"].as_str().expect("id").to_owned();
    let (_, run) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{pq}/run"),
        key,
        None,
    )
    .await;
    assert_eq!(run["run"]["outcome"], "ok", "{run}");
    let run_id = run["run"]["id"].as_str().expect("id");
    let (s, ct, body) = bytes(
        &server,
        key,
        &format!("/v1/reports/runs/{run_id}/file?block=0"),
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, "application/vnd.apache.parquet"));
    let batches: Vec<arrow::array::RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
            body,
        ))
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("batches");
    let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    let gross = b.column_by_name("gross").expect("gross");
    assert!(matches!(
        gross.data_type(),
        arrow::datatypes::DataType::Decimal128(38, 4)
    ));
    let got: Vec<String> = (0..b.num_rows())
        .map(|i| arrow::util::display::array_value_to_string(gross, i).expect("gross"))
        .collect();
    let want: Vec<&str> = api["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|r| r["gross"].as_str().expect("gross"))
        .collect();
    assert_eq!(got, want);

    // A report whose SQL fails at run time: a failed run with its reason;
    // the others keep running.
    let (s, r) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(json!({"title": "Breaks", "blocks": [{"type": "sql", "sql": "SELECT CAST(channel AS INT) AS n FROM orders"}]})),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let broken = r["report"]["id"].as_str().expect("id").to_owned();
    let (s, run) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{broken}/run"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 201, "{run}");
    assert_eq!(run["run"]["outcome"], "failed", "{run}");
    assert!(
        run["run"]["error"]
            .as_str()
            .expect("error")
            .contains("block 1"),
        "{run}"
    );
    let (_, again) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{report}/run"),
        key,
        None,
    )
    .await;
    assert_eq!(again["run"]["outcome"], "ok", "{again}");

    // A schedule runs by itself (croner's optional seconds: every two
    // seconds), and pausing stops it.
    let (s, r) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(json!({"title": "Often", "range": "yesterday", "schedule": "*/2 * * * * *", "blocks": [{"type": "kpi"}]})),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let often = r["report"]["id"].as_str().expect("id").to_owned();
    let mut scheduled = Value::Null;
    for _ in 0..100 {
        let log = run_log(&server, key, &often).await;
        if let Some(r) = log["runs"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["outcome"] == "ok"))
        {
            scheduled = r.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        scheduled["trigger"], "schedule",
        "no scheduled run: {scheduled}"
    );
    assert!(scheduled["scheduled_for"].is_string());
    let (s, paused) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{often}/pause"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 200, "{paused}");
    assert_eq!(paused["report"]["paused"], true);
    assert!(paused["report"]["next_run_at"].is_null(), "{paused}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = run_log(&server, key, &often).await;
    let before = log["runs"].as_array().expect("runs").len();
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let log = run_log(&server, key, &often).await;
    assert_eq!(
        log["runs"].as_array().expect("runs").len(),
        before,
        "a paused report ran"
    );

    // Deleted with its runs.
    let (s, _) = call(
        &server,
        Method::DELETE,
        &format!("/v1/reports/{often}"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let log = run_log(&server, key, &often).await;
    assert_eq!(log["runs"], json!([]));
    let (s, _) = call(
        &server,
        Method::GET,
        &format!("/v1/reports/{often}"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_report_definitions_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let read_key = common::create_read_key(&data, "Shop");
    let server = Server::start(&data, &[]);
    let key = &tenant.admin_key;
    for (body, code, says) in [
        (
            json!({"title": "x", "blocks": [{"type": "pie"}]}),
            "invalid_report",
            "pie",
        ),
        (
            json!({"title": "x", "blocks": [{"type": "kpi", "colour": 1}]}),
            "invalid_report",
            "colour",
        ),
        (
            json!({"title": "x", "range": "last_fortnight", "blocks": [{"type": "kpi"}]}),
            "invalid_report",
            "last_fortnight",
        ),
        (
            json!({"title": "x", "blocks": []}),
            "invalid_report",
            "blocks",
        ),
        (
            json!({"title": "", "blocks": [{"type": "kpi"}]}),
            "invalid_report",
            "title",
        ),
        (
            json!({"template": "quarterly_magic"}),
            "invalid_report",
            "weekly_sales",
        ),
        (
            json!({"title": "x", "blocks": [{"type": "kpi"}], "schedule": "every monday"}),
            "invalid_schedule",
            "cron",
        ),
        (
            json!({"title": "x", "blocks": [{"type": "kpi"}], "format": "docx"}),
            "invalid_format",
            "docx",
        ),
        (
            json!({"title": "x", "blocks": [{"type": "sql", "sql": "SELECT * FROM no_such_table"}]}),
            "invalid_report",
            "block 1",
        ),
        (
            json!({"title": "x", "blocks": [{"type": "sql", "sql": "DROP TABLE events"}]}),
            "invalid_report",
            "block 1",
        ),
        (
            json!({"title": "x", "blocks": [{"type": "breakdown", "endpoint": "sessions", "by": "channel"}]}),
            "invalid_report",
            "block 1",
        ),
        (
            json!({"title": "x", "blocks": [{"type": "funnel", "steps": [{"event": "A"}]}]}),
            "invalid_report",
            "2 steps",
        ),
    ] {
        let (s, v) = call(
            &server,
            Method::POST,
            "/v1/reports",
            key,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{body}: {v}"
        );
    }
    // Hostile JSON: not an object, too deep, wrong types.
    for raw in [
        "[]",
        "{\"title\": 5, \"blocks\": [{\"type\": \"kpi\"}]}",
        "{",
        "null",
    ] {
        let resp = client()
            .post(server.url("/v1/reports"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{raw}");
    }
    // Unknown ids are 404; the server still serves.
    for path in [
        "/v1/reports/nope",
        "/v1/reports/runs/nope",
        "/v1/reports/runs/nope/file",
    ] {
        let (s, v) = call(&server, Method::GET, path, key, None).await;
        assert_eq!(s, 404, "{path}: {v}");
    }
    let (s, v) = call(&server, Method::POST, "/v1/reports/nope/run", key, None).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = call(&server, Method::GET, "/v1/reports", key, None).await;
    assert_eq!((s, &v["reports"]), (200, &json!([])), "{v}");
    // A viewer key cannot make reports.
    let (s, v) = call(
        &server,
        Method::POST,
        "/v1/reports",
        &read_key,
        Some(json!({"template": "weekly_sales"})),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(server.stop().success());
}

/// A run reaches its recipients through the outbox: an email from a real
/// SMTP server (aiosmtpd) with the workbook attached, a notification whose
/// signed link downloads the same file without signing in; a tampered
/// link is refused; one email per run; a key cannot test-send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_delivered_with_the_file_attached_and_linked() {
    let smtp = common::PyReceiver::start(&["smtp"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let port = smtp.port.to_string();
    let server = Server::start(
        &data,
        &[
            ("BEACON_NOTIFY__SMTP__HOST", "127.0.0.1"),
            ("BEACON_NOTIFY__SMTP__PORT", port.as_str()),
            ("BEACON_NOTIFY__SMTP__FROM", "Beacon <reports@shop.test>"),
            ("BEACON_NOTIFY__POLL_INTERVAL", "50ms"),
        ],
    );
    let key = &tenant.admin_key;
    let (s, v) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": events()})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &server,
        Method::PUT,
        "/v1/users/ann",
        key,
        Some(json!({"email": "ann@shop.test", "name": "Ann", "role": "owner"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // An unknown recipient is refused when the report is saved.
    let (s, v) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(json!({"template": "weekly_sales", "recipients": ["nobody"]})),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (400, &json!("unknown_recipient")),
        "{v}"
    );

    let (s, r) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(json!({"template": "weekly_sales", "range": "last_7_days", "recipients": ["ann"]})),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["report"]["recipients"], json!(["ann"]));
    let report = r["report"]["id"].as_str().expect("id").to_owned();
    let (s, run) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{report}/run"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 201, "{run}");
    assert_eq!(run["run"]["outcome"], "ok", "{run}");
    assert!(run["run"]["notification_id"].is_string(), "{run}");
    let run_id = run["run"]["id"].as_str().expect("id");
    let (_, _, file) = bytes(&server, key, &format!("/v1/reports/runs/{run_id}/file")).await;

    // The email: to Ann, the summary in its text, the workbook attached.
    let mail = smtp
        .next_json(std::time::Duration::from_secs(20))
        .expect("the report's email");
    assert_eq!(mail["rcpt_tos"], json!(["ann@shop.test"]));
    assert!(
        mail["headers"]["subject"]
            .as_str()
            .expect("subject")
            .starts_with("Weekly sales summary"),
        "{mail}"
    );
    let attachments = mail["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{mail}");
    assert_eq!(attachments[0]["filename"], "Weekly sales summary.xlsx");
    assert!(
        attachments[0]["content_type"]
            .as_str()
            .expect("type")
            .contains("spreadsheetml")
    );
    use base64::Engine as _;
    let attached = base64::engine::general_purpose::STANDARD
        .decode(attachments[0]["base64"].as_str().expect("base64"))
        .expect("base64");
    assert_eq!(attached, file, "the attachment is the run's file");
    let book = common::read_xlsx(&attached);
    assert_eq!(book["sheets"][1], "1 Key numbers");

    // The notification's data links the file; the link needs no sign-in.
    let (s, sent) = call(
        &server,
        Method::GET,
        &format!(
            "/v1/notifications/{}",
            run["run"]["notification_id"].as_str().expect("id")
        ),
        key,
        None,
    )
    .await;
    let url = if s == 200 {
        sent["notification"]["data"]["files"][0]["url"]
            .as_str()
            .map(str::to_owned)
    } else {
        None
    };
    let url = url.unwrap_or_else(|| {
        let text = mail["text"].as_str().expect("text");
        let at = text
            .find("/v1/reports/download/")
            .expect("a link in the email");
        let token = text[at..].split_whitespace().next().expect("link");
        server.url(token)
    });
    let path = &url[url.find("/v1/reports/download/").expect("download path")..];
    let resp = client().get(server.url(path)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("bytes").to_vec(), file);
    let mut tampered = path.to_owned();
    let last = tampered.pop().expect("a character");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let resp = client()
        .get(server.url(&tampered))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    let resp = client()
        .get(server.url("/v1/reports/download/bdl_nonsense"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);

    // The same run is never sent twice; a key cannot test-send (no person).
    assert!(
        smtp.next_json(std::time::Duration::from_millis(500))
            .is_none(),
        "one email per run"
    );
    let (s, v) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{report}/test"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    // Per-recipient filters: Bob's copy holds only the web channel's
    // numbers, Ann's everything; each is its own logged run.
    let (s, v) = call(
        &server,
        Method::PUT,
        "/v1/users/bob",
        key,
        Some(json!({"email": "bob@shop.test", "name": "Bob", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let web = json!([{"property": "channel", "op": "eq", "value": "web"}]);
    let (s, r) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(
            json!({"title": "Channel sales", "range": "last_7_days", "blocks": [{"type": "kpi"}],
                    "recipients": ["ann", {"user": "bob", "filters": web}]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let split = r["report"]["id"].as_str().expect("id").to_owned();
    let (s, run) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{split}/run"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 201, "{run}");
    assert_eq!(
        run["filtered_runs"].as_array().map(Vec::len),
        Some(1),
        "{run}"
    );
    assert_eq!(run["filtered_runs"][0]["audience"], web);
    assert_eq!(run["filtered_runs"][0]["outcome"], "ok", "{run}");
    let (from, to) = (
        run["run"]["range_from"].as_str().expect("from"),
        run["run"]["range_to"].as_str().expect("to"),
    );
    let gross_of = |mail: &Value| -> f64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(mail["attachments"][0]["base64"].as_str().expect("base64"))
            .expect("base64");
        let book = common::read_xlsx(&bytes);
        let rows = book["cells"]["1 Key numbers"]
            .as_array()
            .expect("rows")
            .clone();
        rows.iter()
            .find(|r| r[0][0] == "gross")
            .and_then(|r| r[1][0].as_f64())
            .expect("gross")
    };
    let mut by_person = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let mail = smtp
            .next_json(std::time::Duration::from_secs(20))
            .expect("a copy");
        by_person.insert(
            mail["rcpt_tos"][0].as_str().expect("to").to_owned(),
            gross_of(&mail),
        );
    }
    for (person, filters) in [("ann@shop.test", json!([])), ("bob@shop.test", web.clone())] {
        let (_, api) = call(
            &server,
            Method::POST,
            "/v1/analytics/revenue",
            key,
            Some(json!({"from": from, "to": to, "filters": filters})),
        )
        .await;
        let want: f64 = api["summary"]["gross"]
            .as_str()
            .expect("gross")
            .parse()
            .expect("decimal");
        assert!(
            (by_person[person] - want).abs() < 1e-9,
            "{person}: {} vs {want}",
            by_person[person]
        );
    }
    assert!(
        by_person["bob@shop.test"] < by_person["ann@shop.test"],
        "{by_person:?}"
    );
    assert!(server.stop().success());
}
