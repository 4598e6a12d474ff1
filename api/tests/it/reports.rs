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

/// The native charts of a workbook: per chart part, its kind (`line`,
/// `bar`) and the cell ranges it draws (read from the file's XML, as
/// openpyxl does not load charts).
fn xlsx_charts(bytes: &[u8]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.xlsx");
    std::fs::write(&file, bytes).expect("write");
    let script = r#"
import json, re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
out = []
for n in sorted(x for x in z.namelist() if re.match(r"xl/charts/chart\d+\.xml$", x)):
    xml = z.read(n).decode()
    kind = "line" if "<c:lineChart>" in xml else "bar" if "<c:barChart>" in xml else "other"
    out.append({"kind": kind, "refs": re.findall(r"<c:f>([^<]*)</c:f>", xml)})
print(json.dumps(out))
"#;
    let out = std::process::Command::new(common::python())
        .args(["-c", script])
        .arg(&file)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Runs a poppler tool on a PDF: its stdout.
fn poppler(tool: &str, args: &[&str], pdf: &std::path::Path) -> String {
    let out = std::process::Command::new(tool)
        .args(args)
        .arg(pdf)
        .args(if tool == "pdftotext" {
            &["-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| panic!("{tool} (Debian poppler-utils, installed by .ci/run): {e}"));
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Decimal text to the cent with thousands separators, as a report shows
/// money.
fn shown_money(sign: &str, decimal: &str) -> String {
    // Half away from zero, as text (the server's rule).
    let (int, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    assert!(!int.starts_with('-'), "positive amounts here");
    let mut cents: u128 = format!("{int}{:0<2}", &frac[..frac.len().min(2)])
        .parse()
        .expect("digits");
    if frac.as_bytes().get(2).is_some_and(|d| *d >= b'5') {
        cents += 1;
    }
    let cents = format!("{}.{:02}", cents / 100, cents % 100);
    let (whole, frac) = cents.split_once('.').expect("cents");
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped}.{frac}")
}

/// A 1x1 PNG (the logo).
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_and_excel_reports_are_branded_charted_and_equal_the_api() {
    use base64::Engine as _;
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

    // Branding: a name, a colour and a logo (checked by its bytes and
    // drawn once before it is kept).
    let (s, v) = call(
        &server,
        Method::PUT,
        "/v1/notify/branding",
        key,
        Some(
            json!({"name": "Corner Shop", "color": "#0a7d4f", "footer": "Corner Shop, 1 High St"}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &server,
        Method::PATCH,
        "/v1/workspace",
        key,
        Some(json!({"currency": "USD"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let put_logo = |body: Vec<u8>| {
        let server = &server;
        async move {
            let resp = client()
                .put(server.url("/v1/notify/branding/logo"))
                .bearer_auth(key)
                .body(body)
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, v) = put_logo(b"GIF89a not a logo".to_vec()).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (400, &json!("invalid_logo")),
        "{v}"
    );
    let (s, v) = put_logo(b"<svg xmlns='http://www.w3.org/2000/svg'><rect width='".to_vec()).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (400, &json!("invalid_logo")),
        "a broken SVG: {v}"
    );
    let mut big = base64::engine::general_purpose::STANDARD
        .decode(PNG)
        .expect("png");
    big.resize(600 * 1024, 0);
    let (s, v) = put_logo(big).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (413, &json!("logo_too_large")),
        "{v}"
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG)
        .expect("png");
    let (s, v) = put_logo(png.clone()).await;
    assert_eq!(s, 204, "{v}");
    let (s, ct, logo) = bytes(&server, key, "/v1/notify/branding/logo").await;
    assert_eq!((s, ct.as_str(), logo), (200, "image/png", png));

    // A saved query used as a block: 2,000 rows, so its table spans pages.
    let (s, q) = call(&server, Method::POST, "/v1/saved-queries", key, Some(json!({
        "name": "Two thousand rows",
        "sql": "SELECT value AS row_number, concat('line ', CAST(value AS VARCHAR)) AS row_label FROM generate_series(1, 2000) ORDER BY value"
    }))).await;
    assert_eq!(s, 201, "{q}");
    let query_id = q["id"].as_str().expect("id").to_owned();
    let (s, v) = call(
        &server,
        Method::POST,
        "/v1/saved-queries",
        key,
        Some(json!({"name": "Writes", "sql": "DELETE FROM events"})),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (400, &json!("invalid_query")),
        "{v}"
    );
    let (s, list) = call(&server, Method::GET, "/v1/saved-queries", key, None).await;
    assert_eq!(
        (s, list["queries"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{list}"
    );

    let blocks = json!([
        {"type": "kpi"},
        {"type": "timeseries", "endpoint": "revenue", "interval": "day", "title": "Revenue per day"},
        {"type": "breakdown", "endpoint": "revenue", "by": "channel", "title": "Revenue by channel"},
        {"type": "saved_query", "query": query_id, "title": "All the lines"}
    ]);
    let (s, r) = call(&server, Method::POST, "/v1/reports", key, Some(json!({
        "title": "Weekly sales summary", "range": "last_7_days", "format": "pdf", "blocks": blocks
    }))).await;
    assert_eq!(s, 201, "{r}");
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
    assert_eq!(run["run"]["format"], "pdf");
    let run_id = run["run"]["id"].as_str().expect("id");
    let (s, ct, pdf) = bytes(&server, key, &format!("/v1/reports/runs/{run_id}/file")).await;
    assert_eq!((s, ct.as_str()), (200, "application/pdf"));
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, &pdf).expect("write");

    // The numbers in the text are the analytics API's for the same range,
    // to the cent, in the workspace's currency.
    let (from, to) = (
        run["run"]["range_from"].as_str().expect("from"),
        run["run"]["range_to"].as_str().expect("to"),
    );
    let (s, api) = call(
        &server,
        Method::POST,
        "/v1/analytics/revenue",
        key,
        Some(json!({"from": from, "to": to, "compare": true})),
    )
    .await;
    assert_eq!(s, 200, "{api}");
    let sign = "$".to_owned();
    assert_ne!(
        api["summary"]["gross"], "0.0000",
        "orders in the range: {api}"
    );
    let page1 = poppler("pdftotext", &["-layout", "-f", "1", "-l", "1"], &file);
    let all = poppler("pdftotext", &["-layout"], &file);
    assert!(page1.contains("Corner Shop"), "{page1}");
    assert!(page1.contains("Weekly sales summary"), "{page1}");
    assert!(page1.contains(&format!("{from} to {to}")), "{page1}");
    for field in ["gross", "net", "refunds"] {
        let want = shown_money(&sign, api["summary"][field].as_str().expect("money"));
        assert!(all.contains(&want), "{field} {want} in the PDF:\n{page1}");
    }
    let orders = api["summary"]["orders"]
        .as_i64()
        .expect("orders")
        .to_string();
    assert!(
        page1
            .lines()
            .any(|l| l.trim_start().starts_with("orders") && l.contains(&orders)),
        "orders {orders}:\n{page1}"
    );
    // Each channel's revenue as the breakdown API says.
    let (_, by) = call(
        &server,
        Method::POST,
        "/v1/analytics/revenue",
        key,
        Some(json!({"from": from, "to": to, "breakdown": "channel"})),
    )
    .await;
    for row in by["breakdown"]["rows"].as_array().expect("rows") {
        let money = row
            .as_object()
            .expect("row")
            .values()
            .find_map(|v| v.as_str().filter(|s| s.contains('.')))
            .expect("money");
        assert!(all.contains(&shown_money(&sign, money)), "{row} in the PDF");
    }
    // The summary's sentences are on page 1.
    let (_, preview) = call(
        &server,
        Method::POST,
        "/v1/reports/preview",
        key,
        Some(json!({"title": "x", "range": "last_7_days", "blocks": [{"type": "kpi"}]})),
    )
    .await;
    let first = preview["summary"][0]
        .as_str()
        .unwrap_or_else(|| panic!("a summary line: {preview}"));
    assert!(
        page1
            .replace('\n', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&first[..30]),
        "{first}\n{page1}"
    );
    // The logo is drawn on page 1.
    let images = poppler("pdfimages", &["-list", "-f", "1", "-l", "1"], &file);
    assert!(images.lines().count() >= 3, "an image on page 1:\n{images}");
    // 2,000 rows span pages, each page of them under the repeated header.
    let info = poppler("pdfinfo", &[], &file);
    let pages: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .expect("pages")
        .trim()
        .parse()
        .expect("n");
    assert!(pages >= 10, "{pages} pages");
    let mut pages_with_rows = 0;
    for p in 1..=pages {
        let text = poppler(
            "pdftotext",
            &["-layout", "-f", &p.to_string(), "-l", &p.to_string()],
            &file,
        );
        assert!(
            text.contains(&format!("Page {p} of {pages}")),
            "page numbers on page {p}:\n{text}"
        );
        if text.contains("line ") {
            pages_with_rows += 1;
            assert!(
                text.contains("row number") && text.contains("row label"),
                "the header on page {p}:\n{text}"
            );
        }
    }
    assert!(pages_with_rows >= 10, "{pages_with_rows}");
    assert!(
        all.contains("line 2000") && all.contains("line 1\n") || all.contains("line 1 "),
        "every row"
    );
    // And it renders.
    let png_out = dir.path().join("page");
    let status = std::process::Command::new("pdftoppm")
        .args(["-r", "40", "-png", "-f", "1", "-l", "1"])
        .arg(&file)
        .arg(&png_out)
        .status()
        .expect("pdftoppm");
    assert!(status.success());

    // Every analytics answer and SQL result as a PDF too: the same
    // numbers, the row limit said when a result is cut.
    let post_pdf = |path: &'static str, body: Value| {
        let server = &server;
        async move {
            let resp = client()
                .post(server.url(path))
                .bearer_auth(key)
                .json(&body)
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
    };
    let (s, ct, answer_pdf) = post_pdf(
        "/v1/analytics/revenue",
        json!({"from": from, "to": to, "breakdown": "channel", "format": "pdf"}),
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, "application/pdf"));
    let answer_file = dir.path().join("answer.pdf");
    std::fs::write(&answer_file, &answer_pdf).expect("write");
    let text = poppler("pdftotext", &["-layout"], &answer_file);
    assert!(
        text.contains("Revenue") && text.contains(&format!("{from} to {to}")),
        "{text}"
    );
    for row in by["breakdown"]["rows"].as_array().expect("rows") {
        let money = row
            .as_object()
            .expect("row")
            .values()
            .find_map(|v| v.as_str().filter(|s| s.contains('.')))
            .expect("money");
        assert!(
            text.contains(&shown_money(&sign, money)),
            "{row} in the answer's PDF:\n{text}"
        );
    }
    let (s, ct, sql_pdf) = post_pdf(
        "/v1/sql",
        json!({"query": "SELECT value AS n FROM generate_series(1, 6000)", "format": "pdf"}),
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, "application/pdf"));
    let sql_file = dir.path().join("sql.pdf");
    std::fs::write(&sql_file, &sql_pdf).expect("write");
    let text = poppler("pdftotext", &["-layout", "-f", "1", "-l", "1"], &sql_file);
    assert!(
        text.contains("Row limit reached") && text.contains("generate_series"),
        "{text}"
    );

    // The same blocks as a workbook: money typed with the currency's
    // format, native charts over the sheets' own cells.
    let (s, ct, xlsx) = {
        let resp = client()
            .post(server.url("/v1/reports/preview?format=xlsx"))
            .bearer_auth(key)
            .json(
                &json!({"title": "Weekly sales summary", "range": "last_7_days", "blocks": blocks}),
            )
            .send()
            .await
            .expect("send");
        let s = resp.status().as_u16();
        let ct = resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        (s, ct, resp.bytes().await.expect("bytes").to_vec())
    };
    assert_eq!(s, 200);
    assert!(ct.contains("spreadsheetml"), "{ct}");
    let book = common::read_xlsx(&xlsx);
    let kpi = book["cells"]["1 Key numbers"].as_array().expect("rows");
    let gross = kpi.iter().find(|r| r[0][0] == "gross").expect("gross");
    assert_eq!(gross[1][1], "n", "money is a number: {gross:?}");
    assert!(
        gross[1][2].as_str().expect("format").contains(sign.trim()),
        "currency format: {gross:?}"
    );
    let want: f64 = api["summary"]["gross"]
        .as_str()
        .expect("gross")
        .parse()
        .expect("decimal");
    assert!((gross[1][0].as_f64().expect("n") - want).abs() < 1e-9);
    let charts = xlsx_charts(&xlsx);
    assert_eq!(
        charts.len(),
        2,
        "a chart for the series and the breakdown: {charts:?}"
    );
    assert_eq!(charts[0]["kind"], "line", "{charts:?}");
    assert!(
        charts[0]["refs"]
            .to_string()
            .contains("'2 Revenue per day'!$A$2"),
        "{charts:?}"
    );
    assert_eq!(charts[1]["kind"], "bar", "{charts:?}");
    assert!(
        charts[1]["refs"]
            .to_string()
            .contains("'3 Revenue by channel'"),
        "{charts:?}"
    );

    // A forecast block: the range's days, then the days ahead with a band.
    let (s, f) = call(&server, Method::POST, "/v1/reports/preview", key, Some(json!({
        "title": "Forecast", "range": "last_7_days", "blocks": [{"type": "forecast", "metric": "revenue", "horizon": 7}]
    }))).await;
    assert_eq!(s, 200, "{f}");
    let rows = f["blocks"][0]["rows"].as_array().expect("rows");
    assert_eq!(
        rows.iter().filter(|r| r["forecast"].is_number()).count(),
        7,
        "{f}"
    );
    assert!(
        rows.iter()
            .all(|r| r["low"].is_null() || r["low"].as_f64() <= r["high"].as_f64()),
        "{f}"
    );

    // Bad input: an unknown saved query, a horizon out of range, a chart
    // kind that does not exist.
    for (block, code) in [
        (
            json!({"type": "saved_query", "query": "qry_nope"}),
            "invalid_report",
        ),
        (json!({"type": "forecast", "horizon": 0}), "invalid_report"),
        (
            json!({"type": "sql", "sql": "SELECT 1", "chart": "pie"}),
            "invalid_report",
        ),
    ] {
        let (s, v) = call(
            &server,
            Method::POST,
            "/v1/reports",
            key,
            Some(json!({"title": "x", "blocks": [block]})),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{block}: {v}"
        );
    }
    // A deleted saved query fails the report's next run, with its reason.
    let (s, r) = call(&server, Method::POST, "/v1/reports", key, Some(json!({"title": "Lines", "format": "csv", "blocks": [{"type": "saved_query", "query": query_id}]}))).await;
    assert_eq!(s, 201, "{r}");
    let lines = r["report"]["id"].as_str().expect("id").to_owned();
    let (s, _) = call(
        &server,
        Method::DELETE,
        &format!("/v1/saved-queries/{query_id}"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, run) = call(
        &server,
        Method::POST,
        &format!("/v1/reports/{lines}/run"),
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
            .contains("no saved query"),
        "{run}"
    );
    // The run log is a SQL table too.
    let (s, log) = call(
        &server,
        Method::POST,
        "/v1/sql",
        key,
        Some(json!({"query": "SELECT outcome, format, count(*) AS n, min(range_from) <= min(range_to) AS ordered FROM report_runs GROUP BY 1, 2 ORDER BY 1, 2"})),
    )
    .await;
    assert_eq!(s, 200, "{log}");
    assert_eq!(
        log["rows"],
        json!([["failed", "csv", 1, null], ["ok", "pdf", 1, true]]),
        "{log}"
    );
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_addresses_and_webhooks_and_a_failing_one_dead_letters() {
    let smtp = common::PyReceiver::start(&["smtp"]);
    let hook = common::PyReceiver::start(&["webhook"]);
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
            ("BEACON_NOTIFY__RETRY_BASE", "100ms"),
            ("BEACON_NOTIFY__RETRY_MAX", "200ms"),
            ("BEACON_NOTIFY__MAX_ATTEMPTS", "3"),
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
    // A webhook endpoint that answers, one that never does (nothing
    // listens on its port), and one that takes every category.
    let (s, good) = call(
        &server,
        Method::POST,
        "/v1/webhooks",
        key,
        Some(json!({"url": format!("{}/reports", hook.base()), "categories": ["reports"]})),
    )
    .await;
    assert_eq!(s, 201, "{good}");
    hook.configure(json!({"secret": good["secrets"][0]["secret"]}))
        .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let (s, bad) = call(
        &server,
        Method::POST,
        "/v1/webhooks",
        key,
        Some(
            json!({"url": format!("http://127.0.0.1:{dead_port}/hook"), "categories": ["reports"]}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{bad}");
    let (s, other) = call(
        &server,
        Method::POST,
        "/v1/webhooks",
        key,
        Some(json!({"url": format!("{}/everything", hook.base())})),
    )
    .await;
    assert_eq!(s, 201, "{other}");
    let (good, bad) = (
        good["id"].as_str().expect("id"),
        bad["id"].as_str().expect("id"),
    );

    // Unreachable recipients are refused when the report is saved.
    for (recipient, why) in [
        (json!({"email": "not an address"}), "not an email address"),
        (json!({"webhook": "wh_nope"}), "not a webhook endpoint"),
        (
            json!({"email": "a@b.test", "filters": "web"}),
            "did not match",
        ),
    ] {
        let (s, v) = call(
            &server,
            Method::POST,
            "/v1/reports",
            key,
            Some(json!({"template": "weekly_sales", "recipients": [recipient]})),
        )
        .await;
        assert_eq!(s, 400, "{recipient}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .expect("message")
                .contains(why),
            "{recipient}: {v}"
        );
    }
    let (s, v) = call(&server, Method::POST, "/v1/reports", key, Some(json!({"template": "weekly_sales", "recipients": [{"email": "Acc@Books.test"}, {"email": "acc@books.test"}]}))).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_report")),
        "the same address twice: {v}"
    );

    let (s, r) = call(
        &server,
        Method::POST,
        "/v1/reports",
        key,
        Some(json!({
            "title": "Books", "range": "last_7_days", "format": "pdf", "blocks": [{"type": "kpi"}],
            "recipients": [{"email": "accountant@books.test"}, {"webhook": good}, {"webhook": bad}]
        })),
    )
    .await;
    assert_eq!(s, 201, "{r}");
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
    let run_id = run["run"]["id"].as_str().expect("run").to_owned();
    let (_, _, file) = bytes(&server, key, &format!("/v1/reports/runs/{run_id}/file")).await;

    // The accountant (no user) gets the email with the PDF attached.
    let mail = smtp
        .next_json(std::time::Duration::from_secs(20))
        .expect("the email");
    assert_eq!(mail["rcpt_tos"], json!(["accountant@books.test"]));
    use base64::Engine as _;
    let attached = base64::engine::general_purpose::STANDARD
        .decode(
            mail["attachments"][0]["base64"]
                .as_str()
                .expect("attachment"),
        )
        .expect("base64");
    assert_eq!(attached, file);
    assert!(attached.starts_with(b"%PDF-"));
    assert_eq!(mail["attachments"][0]["filename"], "Books.pdf", "{mail}");
    assert_eq!(
        mail["attachments"][0]["content_type"], "application/pdf",
        "{mail}"
    );
    // The named endpoint gets a signed payload with an expiring link to
    // the file; the endpoint the report does not name gets nothing.
    let mut seen = Value::Null;
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, got) = call(&server, Method::GET, "/v1/deliveries?limit=100", key, None).await;
        let of_run: Vec<&Value> = got["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .filter(|d| d["message_id"] == run["run"]["notification_id"])
            .collect();
        let status = |target: &str| {
            of_run
                .iter()
                .find(|d| d["target"] == target)
                .map(|d| d["status"].clone())
        };
        last = got.clone();
        if status(good) == Some(json!("delivered"))
            && status(bad) == Some(json!("failed"))
            && status("mailto:accountant@books.test") == Some(json!("delivered"))
        {
            seen = json!(of_run);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !seen.is_null(),
        "the good endpoint and the address delivered, the dead one failed after its retries: {last} {run}"
    );
    let dead = seen
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["target"] == bad)
        .expect("dead");
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert_eq!(
        seen.as_array().expect("list").len(),
        3,
        "no delivery to the endpoint it does not name: {seen}"
    );
    let resp = client()
        .get(format!("{}/", hook.base()))
        .send()
        .await
        .expect("get");
    let log: Value = resp.json().await.expect("json");
    let attempts = log["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{log}");
    assert!(attempts[0]["verified"].as_bool().unwrap_or(false), "{log}");
    let payload = &attempts[0]["payload"];
    let link = payload.to_string();
    let at = link
        .find("/v1/reports/download/")
        .expect("a download link in the payload");
    let token: String = link[at..].chars().take_while(|c| *c != '"').collect();
    let resp = client()
        .get(server.url(&token))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("bytes").to_vec(), file);
    assert!(server.stop().success());
}

/// Money in currencies without cents and with three decimals: the yen to
/// the unit and the dinar to the fils, in the PDF and the workbook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yen_and_dinar_are_shown_to_their_minor_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut workspaces = Vec::new();
    for (name, currency) in [("Tokyo", "JPY"), ("Kuwait", "KWD")] {
        workspaces.push((create_tenant(&data, name), currency));
    }
    let server = Server::start(&data, &[]);
    for ((tenant, currency), (amounts, want_pdf, want_format)) in workspaces.iter().zip([
        (["1500", "2500", "1000.4"], "¥5,000", "#,##0;"),
        (["1.2345", "2.0005", "0.1"], "KWD 3.335", "#,##0.000;"),
    ]) {
        let key = &tenant.admin_key;
        let (s, v) = call(
            &server,
            Method::PATCH,
            "/v1/workspace",
            key,
            Some(json!({"currency": currency})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let batch: Vec<Value> = amounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({"type": "track", "event": "Order Completed", "userId": format!("c{i}"), "messageId": format!("{currency}-{i}"),
                       "timestamp": (Utc::now() - Duration::days(1)).to_rfc3339_opts(SecondsFormat::Millis, true),
                       "properties": {"order_id": format!("{currency}-{i}"), "revenue": a, "currency": currency}})
            })
            .collect();
        let (s, v) = call(
            &server,
            Method::POST,
            "/v1/batch",
            &tenant.write_key,
            Some(json!({"batch": batch})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let resp = client()
            .post(server.url("/v1/analytics/revenue"))
            .bearer_auth(key)
            .json(&json!({"range": "7d", "format": "pdf"}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let file = dir.path().join(format!("{currency}.pdf"));
        std::fs::write(&file, resp.bytes().await.expect("bytes")).expect("write");
        let text = poppler("pdftotext", &["-layout"], &file);
        assert!(text.contains(want_pdf), "{want_pdf} in:\n{text}");
        let resp = client()
            .post(server.url("/v1/reports/preview?format=xlsx"))
            .bearer_auth(key)
            .json(&json!({"title": "Sales", "range": "last_7_days", "blocks": [{"type": "kpi"}]}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let book = common::read_xlsx(&resp.bytes().await.expect("bytes"));
        let gross = book["cells"]["1 Key numbers"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r[0][0] == "gross")
            .cloned()
            .expect("gross");
        assert!(
            gross[1][2].as_str().expect("format").contains(want_format),
            "{currency}: {gross:?}"
        );
    }
    assert!(server.stop().success());
}
