//! `/v1/analytics/...` over HTTP against the real server: hand-computed
//! funnel and revenue answers, GET and POST forms, the previous-period
//! comparison, keys, and bad or hostile requests (clear errors, data
//! intact). The answers on real data are checked against DuckDB in
//! `engine/tests/real_data.rs`.

use crate::common;

use chrono::{Duration, SecondsFormat, Utc};
use common::{Server, call, client, create_tenant, scalar};
use reqwest::Method;
use serde_json::{Value, json};

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn track(id: &str, user: &str, event: &str, at: chrono::DateTime<Utc>, props: Value) -> Value {
    json!({"type": "track", "messageId": id, "userId": user, "event": event,
           "timestamp": ts(at), "properties": props})
}

/// Four people through view -> add -> order two days ago (p4 opens a
/// support ticket, the exclusion), and orders in this and the previous
/// 7-day period.
fn events() -> Vec<Value> {
    let t0 = Utc::now() - Duration::days(2);
    let h = Duration::hours(1);
    let web = json!({"channel": "web"});
    let app = json!({"channel": "app"});
    vec![
        track("v1", "p1", "Product Viewed", t0, web.clone()),
        track("a1", "p1", "Product Added", t0 + h, app.clone()),
        track(
            "o1",
            "p1",
            "Order Completed",
            t0 + h * 2,
            json!({"revenue": 30, "channel": "app", "order_id": "ord-1"}),
        ),
        track("v2", "p2", "Product Viewed", t0, app.clone()),
        track("a2", "p2", "Product Added", t0 + h / 2, app.clone()),
        track("v3", "p3", "Product Viewed", t0, web.clone()),
        track("v3b", "p3", "Product Viewed", t0 + h, app.clone()),
        track("v4", "p4", "Product Viewed", t0, web.clone()),
        track("s4", "p4", "Support Ticket", t0 + h / 4, json!({})),
        track("a4", "p4", "Product Added", t0 + h / 2, web.clone()),
        track(
            "o4",
            "p4",
            "Order Completed",
            t0 + h,
            json!({"revenue": 20, "channel": "web"}),
        ),
        track(
            "o5",
            "p5",
            "Order Completed",
            Utc::now() - Duration::days(10),
            json!({"revenue": 100, "channel": "web"}),
        ),
        track(
            "r1",
            "p1",
            "Order Refunded",
            t0 + h * 3,
            json!({"revenue": 5, "order_id": "ord-1"}),
        ),
    ]
}

async fn post(server: &Server, key: &str, endpoint: &str, body: Value) -> (u16, Value) {
    call(
        server,
        Method::POST,
        &format!("/v1/analytics/{endpoint}"),
        key,
        Some(body),
    )
    .await
}

/// Last 7 days' revenue broken down by `breakdown`, and its row for
/// `value` (empty when there is none).
async fn revenue_row(server: &Server, key: &str, breakdown: &str, value: &str) -> (Value, Value) {
    let (_, r) = post(
        server,
        key,
        "revenue",
        json!({"range": "7d", "breakdown": breakdown}),
    )
    .await;
    let row = r["breakdown"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["value"] == value)
        .cloned()
        .unwrap_or_default();
    (r, row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funnel_revenue_and_errors_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let server = Server::start(&data, &[]);
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": events()})),
    )
    .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(13)), "{body}");
    let key = &tenant.admin_key;

    // Funnel: p4 is excluded; p1 and p2 reach step 2 (after 1 h and 30 min).
    let funnel = json!({
        "range": "7d",
        "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}],
        "exclude": [{"event": "Support Ticket"}],
        "breakdown": "channel",
    });
    let (status, f) = post(&server, key, "funnel", funnel.clone()).await;
    assert_eq!(status, 200, "{f}");
    let steps = f["steps"].as_array().expect("steps");
    let col = |k: &str| steps.iter().map(|s| s[k].clone()).collect::<Vec<_>>();
    assert_eq!(col("entered"), [json!(3), json!(2), json!(1)]);
    assert_eq!(col("converted"), [json!(2), json!(1), json!(1)]);
    assert_eq!(col("drop_off"), [json!(0), json!(1), json!(1)]);
    assert_eq!(col("conversion_from_previous")[2], json!(0.5));
    assert_eq!(steps[1]["median_seconds_from_previous"], json!(2700.0));
    assert_eq!(steps[2]["median_seconds_from_start"], json!(7200.0));
    assert_eq!(f["excluded"], json!(1));
    // First touch: p1 and p3 viewed on web, p2 on app.
    let values = f["breakdown"]["values"].as_array().expect("values");
    let entered = |v: &str| {
        values.iter().find(|x| x["value"] == v).map(|x| {
            x["steps"]
                .as_array()
                .expect("s")
                .iter()
                .map(|s| s["entered"].as_u64().expect("n"))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(entered("web"), Some(vec![2, 1, 1]));
    assert_eq!(entered("app"), Some(vec![1, 1, 0]));
    // Last touch: p3's last step event was on the app.
    let mut last = funnel.clone();
    last["attribution"] = json!("last");
    let (_, f) = post(&server, key, "funnel", last).await;
    let values = f["breakdown"]["values"].as_array().expect("values");
    let app = values.iter().find(|x| x["value"] == "app").expect("app");
    assert_eq!(app["steps"][0]["entered"], json!(3), "{f}");
    // A 20-step funnel (repeated steps need rows of their own).
    let mut long = json!({"range": "7d", "steps": []});
    for _ in 0..10 {
        long["steps"]
            .as_array_mut()
            .expect("a")
            .push(json!({"event": "Product Viewed"}));
        long["steps"]
            .as_array_mut()
            .expect("a")
            .push(json!({"event": "Product Added"}));
    }
    let (status, f) = post(&server, key, "funnel", long).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["steps"].as_array().expect("steps").len(), 20);
    assert_eq!(f["steps"][1]["entered"], json!(3));
    assert_eq!(f["steps"][2]["entered"], json!(0));

    // Revenue, GET form, with the previous 7 days.
    let resp = client()
        .get(server.url("/v1/analytics/revenue?range=7d&compare=true&interval=day"))
        .bearer_auth(key)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let r: Value = resp.json().await.expect("json");
    assert_eq!(r["summary"]["orders"], json!(2), "{r}");
    assert_eq!(r["summary"]["gross"], json!("50.0000"));
    assert_eq!(r["summary"]["refunds"], json!("5.0000"));
    assert_eq!(r["summary"]["net"], json!("45.0000"));
    assert_eq!(r["summary"]["aov"], json!("25.00"));
    assert_eq!(r["series"].as_array().expect("series").len(), 7);
    assert_eq!(r["previous"]["summary"]["gross"], json!("100.0000"));
    assert_eq!(r["change"]["gross"], json!(-0.5));
    // Filters, POST form.
    let (_, r) = post(
        &server,
        key,
        "revenue",
        json!({"range": "30d", "filters": [{"property": "channel", "value": "web"}]}),
    )
    .await;
    assert_eq!(r["summary"]["gross"], json!("120.0000"), "{r}");
    assert_eq!(r["summary"]["refunds"], json!("0.0000"), "{r}");
    // The refund (no channel of its own) counts under its order's channel.
    let (_, r) = post(
        &server,
        key,
        "revenue",
        json!({"range": "30d", "filters": [{"property": "channel", "value": "app"}]}),
    )
    .await;
    assert_eq!(
        (
            &r["summary"]["gross"],
            &r["summary"]["refunds"],
            &r["summary"]["net"]
        ),
        (&json!("30.0000"), &json!("5.0000"), &json!("25.0000")),
        "{r}"
    );
    let (_, r) = post(
        &server,
        key,
        "revenue",
        json!({"range": "30d", "breakdown": "channel"}),
    )
    .await;
    let rows: Vec<(String, String, String)> = r["breakdown"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            let t = |k: &str| row[k].as_str().expect("text").to_owned();
            (t("value"), t("refunds"), t("net"))
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("web".to_owned(), "0.0000".to_owned(), "120.0000".to_owned()),
            ("app".to_owned(), "5.0000".to_owned(), "25.0000".to_owned()),
        ],
        "{r}"
    );
    for endpoint in [
        "products",
        "bookings",
        "customers",
        "rfm",
        "retention",
        "heatmap",
    ] {
        let (status, body) = post(&server, key, endpoint, json!({"range": "30d"})).await;
        assert_eq!(status, 200, "{endpoint}: {body}");
    }
    let (_, h) = post(
        &server,
        key,
        "heatmap",
        json!({"range": "30d", "metric": "sum", "property": "revenue"}),
    )
    .await;
    assert_eq!(h["total"], json!(150.0), "{h}");
    assert_eq!(h["cells"].as_array().expect("cells").len(), 168);

    // Keys: a write key cannot query; no key is 401.
    let (status, body) = post(&server, &tenant.write_key, "revenue", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let resp = client()
        .get(server.url("/v1/analytics/revenue"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);

    // Bad and hostile requests: clear errors, the server keeps serving.
    let bad: Vec<(&str, Value, u16, &str)> = vec![
        ("nope", json!({}), 404, "not_found"),
        ("revenue", json!({"range": "2d"}), 400, "invalid_request"),
        (
            "revenue",
            json!({"from": "2025-02-30", "to": "2025-03-01"}),
            400,
            "invalid_request",
        ),
        (
            "revenue",
            json!({"from": "2025-03-01", "to": "2025-02-01"}),
            400,
            "invalid_request",
        ),
        ("revenue", json!({"colour": "red"}), 400, "invalid_request"),
        ("revenue", json!([1, 2]), 400, "invalid_request"),
        ("revenue", json!({"limit": 0}), 400, "invalid_request"),
        (
            "revenue",
            json!({"breakdown": "a'b"}),
            400,
            "invalid_request",
        ),
        (
            "revenue",
            json!({"filters": [{"property": "x) OR (1=1", "value": 1}]}),
            400,
            "invalid_request",
        ),
        (
            "revenue",
            json!({"filters": [{"property": "channel", "op": "matches", "value": 1}]}),
            400,
            "invalid_request",
        ),
        (
            "funnel",
            json!({"steps": [{"event": "A"}]}),
            400,
            "invalid_request",
        ),
        (
            "funnel",
            json!({"steps": (0..31).map(|_| json!({"event": "A"})).collect::<Vec<_>>()}),
            400,
            "invalid_request",
        ),
        (
            "funnel",
            json!({"steps": [{"event": "A"}, {"event": "B"}], "window": "3y"}),
            400,
            "invalid_request",
        ),
        (
            "funnel",
            json!({"steps": [{"event": "A"}, {"event": "B"}], "mode": "random"}),
            400,
            "invalid_request",
        ),
        (
            "retention",
            json!({"period": "fortnight"}),
            400,
            "invalid_request",
        ),
        ("heatmap", json!({"metric": "sum"}), 400, "invalid_request"),
    ];
    for (endpoint, body, want_status, want_code) in bad {
        let (status, answer) = post(&server, key, endpoint, body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{endpoint} {body}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Quotes in values are data, not SQL.
    let (status, r) = post(
        &server,
        key,
        "revenue",
        json!({"filters": [{"property": "channel", "value": "web'; DROP TABLE events; --"}]}),
    )
    .await;
    assert_eq!((status, &r["summary"]["orders"]), (200, &json!(0)), "{r}");
    let resp = client()
        .post(server.url("/v1/analytics/revenue"))
        .bearer_auth(key)
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        scalar(&server, key, "SELECT count(*) FROM events").await,
        13
    );

    // A completed booking is a sale (its payment is the same money, not
    // more); it counts under its staff and service.
    let now = Utc::now() - Duration::hours(1);
    let booking = |id: &str, event: &str, props: Value| {
        let mut e = track(id, "p6", event, now, props);
        e["properties"]["booking_id"] = json!("bk-1");
        e
    };
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": [
            booking("b1", "Booking Completed", json!({"revenue": 40, "staff_id": "ann", "service_id": "cut"})),
            booking("b2", "Payment Received", json!({"amount": 40, "payment_method": "card"})),
        ]})),
    )
    .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(2)), "{body}");
    let (_, r) = post(&server, key, "revenue", json!({"range": "7d"})).await;
    assert_eq!(
        (
            &r["summary"]["gross"],
            &r["summary"]["orders"],
            &r["summary"]["completed_bookings"],
            &r["summary"]["aov"]
        ),
        (&json!("90.0000"), &json!(2), &json!(1), &json!("30.00")),
        "{r}"
    );
    let (r, ann) = revenue_row(&server, key, "staff", "ann").await;
    assert_eq!(
        (&ann["gross"], &ann["completed_bookings"]),
        (&json!("40.0000"), &json!(1)),
        "{r}"
    );
    // Paid by card (its Payment Received says so, the completion does not).
    let (r, card) = revenue_row(&server, key, "payment_method", "card").await;
    assert_eq!(card["completed_bookings"], json!(1), "{r}");

    // What customers, RFM, bookings and the heatmap say before money in
    // another currency arrives (the booking's customer is a customer).
    let money = |v: &Value| -> f64 {
        v.as_str()
            .map(|s| s.parse().expect("decimal"))
            .or_else(|| v.as_f64())
            .unwrap_or_else(|| panic!("not money: {v}"))
    };
    let (_, customers_before) = post(&server, key, "customers", json!({"range": "7d"})).await;
    assert!(
        customers_before["top_by_revenue"]
            .as_array()
            .expect("top")
            .iter()
            .any(|c| c["user_id"] == "p6" && money(&c["revenue"]) == 40.0),
        "{customers_before}"
    );
    let (_, bookings_before) = post(&server, key, "bookings", json!({"range": "7d"})).await;
    let heat = json!({"range": "7d", "metric": "sum", "property": "revenue"});
    let (_, heat_before) = post(&server, key, "heatmap", heat.clone()).await;

    // Money in another currency is listed apart, never added.
    let mut yen = track(
        "y1",
        "p7",
        "Order Completed",
        now,
        json!({"revenue": 1000, "currency": "JPY"}),
    );
    yen["properties"]["order_id"] = json!("ord-y");
    let mut yen_booking = vec![
        booking("b3", "Booking Created", json!({})),
        booking(
            "b4",
            "Booking Completed",
            json!({"revenue": 5000, "currency": "JPY"}),
        ),
    ];
    for e in &mut yen_booking {
        e["properties"]["booking_id"] = json!("bk-2");
    }
    let mut batch = vec![yen];
    batch.extend(yen_booking);
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({ "batch": batch })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, r) = post(&server, key, "revenue", json!({"range": "7d"})).await;
    assert_eq!(r["summary"]["gross"], json!("90.0000"), "{r}");
    assert_eq!(r["other_currencies"][0]["currency"], json!("JPY"), "{r}");
    assert_eq!(r["other_currencies"][0]["gross"], json!("6000.0000"), "{r}");
    assert_eq!(r["other_currencies"][0]["orders"], json!(1), "{r}");
    assert_eq!(
        r["other_currencies"][0]["completed_bookings"],
        json!(1),
        "{r}"
    );
    // Customers: the yen buyer is one more customer, with no money added.
    let (_, c) = post(&server, key, "customers", json!({"range": "7d"})).await;
    let sum =
        |c: &Value| money(&c["summary"]["new_revenue"]) + money(&c["summary"]["returning_revenue"]);
    assert_eq!(sum(&c), sum(&customers_before), "{c}");
    assert_eq!(
        c["summary"]["customers"].as_u64(),
        customers_before["summary"]["customers"]
            .as_u64()
            .map(|n| n + 1),
        "{c}"
    );
    let (_, rfm) = post(&server, key, "rfm", json!({"range": "7d"})).await;
    let p7 = rfm["rows"]
        .as_array()
        .expect("rfm rows")
        .iter()
        .find(|row| row["user_id"] == "p7")
        .cloned()
        .unwrap_or_else(|| panic!("p7 in {rfm}"));
    assert_eq!(
        (money(&p7["monetary"]), &p7["frequency"]),
        (0.0, &json!(1)),
        "{rfm}"
    );
    // A currency filter picks the currency: the yen order and the yen booking.
    let (_, c) = post(
        &server,
        key,
        "customers",
        json!({"range": "7d", "filters": [{"property": "currency", "value": "JPY"}]}),
    )
    .await;
    assert_eq!(sum(&c), 6000.0, "{c}");
    // Bookings: one more completed, no more revenue.
    let (_, b) = post(&server, key, "bookings", json!({"range": "7d"})).await;
    assert_eq!(
        money(&b["summary"]["revenue"]),
        money(&bookings_before["summary"]["revenue"]),
        "{b}"
    );
    assert_eq!(
        b["summary"]["completed"].as_u64(),
        bookings_before["summary"]["completed"]
            .as_u64()
            .map(|n| n + 1),
        "{b}"
    );
    // Heatmap of revenue: unchanged; of JPY revenue: the yen order.
    let (_, h) = post(&server, key, "heatmap", heat).await;
    assert_eq!(h["total"], heat_before["total"], "{h}");
    let (_, h) = post(
        &server,
        key,
        "heatmap",
        json!({"range": "7d", "metric": "sum", "property": "revenue",
               "filters": [{"property": "currency", "value": "JPY"}]}),
    )
    .await;
    assert_eq!(h["total"], json!(1000.0), "{h}");
    let (_, r) = post(
        &server,
        key,
        "revenue",
        json!({"range": "7d", "filters": [{"property": "currency", "value": "JPY"}]}),
    )
    .await;
    assert_eq!(r["summary"]["gross"], json!("6000.0000"), "{r}");
    assert_eq!(r["other_currencies"], json!([]), "{r}");
    // Events without a currency are in the workspace currency, for a
    // filter on it too.
    let (_, all) = post(&server, key, "revenue", json!({"range": "7d"})).await;
    let own = all["range"]["currency"].clone();
    let (_, r) = post(
        &server,
        key,
        "revenue",
        json!({"range": "7d", "filters": [{"property": "currency", "value": own}]}),
    )
    .await;
    assert_eq!(r["summary"], all["summary"], "{r}");
    // Customers read sales as revenue does: the booking paid by card is
    // its customer's under payment_method card.
    let (_, c) = post(
        &server,
        key,
        "customers",
        json!({"range": "7d", "filters": [{"property": "payment_method", "value": "card"}]}),
    )
    .await;
    assert!(
        c["top_by_revenue"]
            .as_array()
            .expect("top")
            .iter()
            .any(|row| row["user_id"] == "p6" && money(&row["revenue"]) == 40.0),
        "{c}"
    );
    // Numeric comparisons on money are numeric, even with a string value.
    let over = |value: Value| json!({"range": "7d", "filters": [{"property": "revenue", "op": "gt", "value": value}]});
    let (_, by_number) = post(&server, key, "revenue", over(json!(9))).await;
    let (_, by_text) = post(&server, key, "revenue", over(json!("9"))).await;
    assert_eq!(by_number["summary"], by_text["summary"], "{by_text}");
    let (status, e) = post(&server, key, "revenue", over(json!("abc"))).await;
    assert_eq!(
        (status, &e["error"]["code"]),
        (400, &json!("invalid_request")),
        "{e}"
    );
    // Dates the engine cannot hold are refused, not a 500.
    for (from, to) in [("9999-12-30", "9999-12-31"), ("0001-01-01", "0001-01-02")] {
        let (status, e) = post(
            &server,
            key,
            "customers",
            json!({"range": "custom", "from": from, "to": to}),
        )
        .await;
        assert_eq!(
            (status, &e["error"]["code"]),
            (400, &json!("invalid_request")),
            "{e}"
        );
    }

    // RFM: two customers whose last sale is the same number of days before
    // the end of the range (hours apart) share their recency score.
    let (_, rfm) = post(&server, key, "rfm", json!({"range": "7d"})).await;
    let end = chrono::DateTime::parse_from_rfc3339(rfm["range"]["end"].as_str().expect("end"))
        .expect("end time")
        .with_timezone(&Utc);
    let midday = end - Duration::hours(3 * 24 + 12);
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": [
            track("tie1", "q1", "Order Completed", midday, json!({"revenue": 5})),
            track("tie2", "q2", "Order Completed", midday - Duration::hours(1), json!({"revenue": 5})),
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, rfm) = post(&server, key, "rfm", json!({"range": "7d"})).await;
    let score = |user: &str| {
        rfm["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|row| row["user_id"] == user)
            .map(|row| (row["recency_days"].clone(), row["r_score"].clone()))
            .unwrap_or_else(|| panic!("{user} in {rfm}"))
    };
    assert_eq!(score("q1").0, json!(3), "{rfm}");
    assert_eq!(score("q1"), score("q2"), "{rfm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_no_show_event_counts_as_a_booking_no_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Salon");
    let server = Server::start(&data, &[]);
    let t = Utc::now() - Duration::days(1);
    let booking = |id: &str, event: &str, booking: &str, at| {
        track(id, "p1", event, at, json!({"booking_id": booking}))
    };
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": [
            booking("c1", "Booking Created", "b1", t),
            booking("c2", "Booking Created", "b2", t),
            booking("n1", "No Show", "b1", t + Duration::hours(2)),
        ]})),
    )
    .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(3)), "{body}");
    let key = &tenant.admin_key;
    let (status, b) = post(&server, key, "bookings", json!({"range": "7d"})).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(
        (&b["summary"]["no_shows"], &b["summary"]["no_show_rate"]),
        (&json!(1), &json!(0.5)),
        "{b}"
    );
    // Stored under the canonical name, so SQL and the bookings view see it.
    assert_eq!(
        scalar(
            &server,
            key,
            "SELECT count(*) FROM bookings WHERE event = 'Booking No Show'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breakdown_by_a_property_no_event_has_is_refused_with_the_known_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let server = Server::start(&data, &[]);
    let key = &tenant.admin_key;
    // An empty workspace takes any breakdown (its events may come later).
    let (status, r) = post(&server, key, "revenue", json!({"breakdown": "country"})).await;
    assert_eq!(status, 200, "{r}");
    let at = Utc::now() - Duration::hours(3);
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": [
            track("o1", "p1", "Order Completed", at, json!({"revenue": 10, "country": "FR", "plan": "pro"})),
            track("o2", "p2", "Order Completed", at, json!({"revenue": 5, "channel": "web"})),
        ]})),
    )
    .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(2)), "{body}");
    for endpoint in ["revenue", "bookings", "heatmap"] {
        let (status, r) = post(&server, key, endpoint, json!({"breakdown": "contry"})).await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{endpoint}: {r}"
        );
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("\"contry\"")
                && message.contains("country, plan, revenue")
                && message.contains("channel"),
            "{endpoint}: {message}"
        );
    }
    // Properties some event has, and event columns, answer as before.
    for breakdown in ["country", "properties.plan", "channel", "staff"] {
        let (status, r) = post(&server, key, "revenue", json!({"breakdown": breakdown})).await;
        assert_eq!(status, 200, "{breakdown}: {r}");
    }
    let (_, r) = post(&server, key, "revenue", json!({"breakdown": "country"})).await;
    let values: Vec<&str> = r["breakdown"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["value"].as_str())
        .collect();
    assert_eq!(values, ["FR", "(none)"], "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_read_appointment_at_and_ignore_one_that_is_not_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Salon");
    let server = Server::start(&data, &[]);
    // Booked yesterday at 08:00 UTC for two days later at 14:30 UTC (sent
    // with a +02:00 offset), and one booking whose appointment_at is text.
    let booked = (Utc::now() - Duration::days(1))
        .date_naive()
        .and_hms_opt(8, 0, 0)
        .expect("time")
        .and_utc();
    let appointment = booked + Duration::days(2) + Duration::minutes(390);
    let local = appointment
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"))
        .to_rfc3339();
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": [
            track("c1", "p1", "Booking Created", booked, json!({"booking_id": "b1", "appointment_at": local})),
            track("c2", "p2", "Booking Created", booked, json!({"booking_id": "b2", "appointment_at": "next tuesday"})),
        ]})),
    )
    .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(2)), "{body}");
    let (status, b) = post(
        &server,
        &tenant.admin_key,
        "bookings",
        json!({"range": "7d"}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    // Lead time only from the booking with a time: 2 days 6.5 hours.
    assert_eq!(b["summary"]["bookings"], json!(2), "{b}");
    let lead = b["summary"]["avg_lead_time_days"]
        .as_f64()
        .expect("lead time");
    assert!((lead - (2.0 + 6.5 / 24.0)).abs() < 1e-9, "{b}");
    // Peak times: the appointment's hour, and the booking time for the other.
    let peaks: Vec<(u64, u64)> = b["peak_times"]
        .as_array()
        .expect("peaks")
        .iter()
        .map(|p| {
            (
                p["hour"].as_u64().expect("hour"),
                p["bookings"].as_u64().expect("n"),
            )
        })
        .collect();
    let mut got = peaks;
    got.sort_unstable();
    assert_eq!(got, [(8, 1), (14, 1)], "{b}");
}

/// Every answer as a file: CSV of one table (the series by default, any
/// other by `table`), an Excel workbook of every table with typed cells,
/// read back by openpyxl; the same numbers as the JSON answer; bad formats
/// and tables refused with what exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_download_as_csv_and_excel_with_the_json_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let server = Server::start(&data, &[]);
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": events()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let key = &tenant.admin_key;
    let get = |path: String| {
        let server = &server;
        async move {
            let resp = client()
                .get(server.url(&path))
                .bearer_auth(key)
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, headers, resp.bytes().await.expect("bytes").to_vec())
        }
    };
    let (_, json) = call(
        &server,
        Method::GET,
        "/v1/analytics/revenue?range=7d&interval=day&breakdown=channel",
        key,
        None,
    )
    .await;
    let series = json["series"].as_array().expect("series");
    assert!(!series.is_empty(), "{json}");

    // CSV: the series, a header row, the API's decimal text.
    let (s, h, bytes) =
        get("/v1/analytics/revenue?range=7d&interval=day&breakdown=channel&format=csv".into())
            .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"beacon-revenue.csv\""
    );
    let text = String::from_utf8(bytes).expect("utf-8");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), series.len(), "{text}");
    let at = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"))
    };
    for (row, want) in rows.iter().zip(series) {
        assert_eq!(row[at("bucket")], want["bucket"].as_str().expect("bucket"));
        assert_eq!(
            row[at("gross")],
            want["gross"].as_str().expect("gross"),
            "{text}"
        );
    }
    // Another table by name, by the Accept header too.
    let resp = client()
        .get(server.url("/v1/analytics/revenue?range=7d&breakdown=channel&table=breakdown.rows"))
        .bearer_auth(key)
        .header("accept", "text/csv")
        .send()
        .await
        .expect("send");
    let text = resp.text().await.expect("text");
    let rows = json["breakdown"]["rows"].as_array().expect("rows");
    assert_eq!(text.lines().count(), rows.len() + 1, "{text}");
    assert!(text.lines().any(|l| l.starts_with("app,")), "{text}");
    // POST takes format in its body.
    let resp = client()
        .post(server.url("/v1/analytics/revenue"))
        .bearer_auth(key)
        .json(&json!({"range": "7d", "interval": "day", "format": "csv"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("text").starts_with("bucket,"));

    // Parquet: one table, typed: days as dates, money as decimals equal to
    // the API's text, counts as integers.
    let (s, h, bytes) =
        get("/v1/analytics/revenue?range=7d&interval=day&breakdown=channel&format=parquet".into())
            .await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/vnd.apache.parquet");
    let batches: Vec<arrow::array::RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
            bytes,
        ))
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("batches");
    let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    assert_eq!(b.num_rows(), series.len());
    use arrow::datatypes::DataType;
    let schema = b.schema();
    assert_eq!(
        schema
            .field_with_name("bucket")
            .expect("bucket")
            .data_type(),
        &DataType::Date32
    );
    assert!(matches!(
        schema.field_with_name("gross").expect("gross").data_type(),
        DataType::Decimal128(38, 4)
    ));
    assert_eq!(
        schema
            .field_with_name("orders")
            .expect("orders")
            .data_type(),
        &DataType::Int64
    );
    let gross = b.column_by_name("gross").expect("gross");
    let buckets = b.column_by_name("bucket").expect("bucket");
    for (i, want) in series.iter().enumerate() {
        assert_eq!(
            arrow::util::display::array_value_to_string(gross, i).expect("gross"),
            want["gross"].as_str().expect("gross")
        );
        assert_eq!(
            arrow::util::display::array_value_to_string(buckets, i).expect("bucket"),
            want["bucket"].as_str().expect("bucket")
        );
    }
    let (s, _, body) = get("/v1/analytics/revenue?range=7d&format=docx".into()).await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("parquet"));

    // Excel: every table a sheet, money a number to its places, days as dates.
    let (s, h, bytes) =
        get("/v1/analytics/revenue?range=7d&interval=day&breakdown=channel&format=xlsx".into())
            .await;
    assert_eq!(s, 200);
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"beacon-revenue.xlsx\""
    );
    let book = common::read_xlsx(&bytes);
    let sheets: Vec<&str> = book["sheets"]
        .as_array()
        .expect("sheets")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in ["summary", "series", "breakdown.rows", "About"] {
        assert!(sheets.contains(&name), "{name} in {sheets:?}");
    }
    let sheet = &book["cells"]["series"];
    let head: Vec<&str> = sheet[0]
        .as_array()
        .expect("header")
        .iter()
        .map(|c| c[0].as_str().expect("title"))
        .collect();
    let col = |name: &str| head.iter().position(|c| *c == name).expect("column");
    for (i, want) in series.iter().enumerate() {
        let row = &sheet[i + 1];
        assert_eq!(row[col("bucket")][1], "d", "a date: {row}");
        assert!(
            row[col("bucket")][0]
                .as_str()
                .expect("date")
                .starts_with(want["bucket"].as_str().expect("bucket"))
        );
        let gross = want["gross"].as_str().expect("gross");
        let cell = &row[col("gross")];
        assert_eq!(cell[1], "n", "a number: {cell}");
        assert_eq!(
            cell[0].as_f64(),
            gross.parse::<f64>().ok(),
            "{cell} vs {gross}"
        );
        let places = gross.split('.').nth(1).map_or(0, str::len);
        assert_eq!(cell[2], format!("#,##0.{}", "0".repeat(places)), "{cell}");
    }
    assert!(
        book["cells"]["About"]
            .to_string()
            .contains("/v1/analytics/revenue")
    );

    // Retention's cohorts: their periods a table of their own, with the cohort.
    let (s, _, bytes) = get("/v1/analytics/retention?range=30d&format=xlsx".into()).await;
    assert_eq!(s, 200);
    let book = common::read_xlsx(&bytes);
    assert!(
        book["sheets"].to_string().contains("cohorts.periods"),
        "{}",
        book["sheets"]
    );

    // Refusals: an unknown format, a table the answer does not have.
    let (s, _, bytes) = get("/v1/analytics/revenue?range=7d&format=docx".into()).await;
    let err: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("invalid_format")),
        "{err}"
    );
    let (s, _, bytes) = get("/v1/analytics/revenue?range=7d&format=csv&table=nope".into()).await;
    let err: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("unknown_table")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("series"),
        "{err}"
    );
    let (s, _, _) = get("/v1/analytics/revenue?range=7d&format=csv&format=xlsx".into()).await;
    assert_eq!(s, 400);

    // Products without the pairs (what dashboards ask): the same top lists.
    let (_, all) = call(
        &server,
        Method::GET,
        "/v1/analytics/products?range=7d",
        key,
        None,
    )
    .await;
    let (s, top) = call(
        &server,
        Method::GET,
        "/v1/analytics/products?range=7d&pairs=false",
        key,
        None,
    )
    .await;
    assert_eq!(s, 200, "{top}");
    assert_eq!(top["pairs"], Value::Null);
    assert!(all["pairs"].is_array(), "{all}");
    assert_eq!(
        (&top["top_by_revenue"], &top["top_by_quantity"]),
        (&all["top_by_revenue"], &all["top_by_quantity"])
    );
    let (s, err) = call(
        &server,
        Method::GET,
        "/v1/analytics/products?range=7d&pairs=maybe",
        key,
        None,
    )
    .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{err}"
    );
    assert!(server.stop().success());
}

/// Bookings by when they were made and by when they are for: a booking
/// made in September for an appointment in October counts in October by
/// appointment, with its outcome whenever it came (a cancellation in
/// September included); rates by the appointment's weekday.
#[tokio::test]
async fn bookings_are_counted_by_booking_time_or_by_appointment_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Salon");
    let server = Server::start(&data, &[]);
    let key = &tenant.admin_key;
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    };
    let event = |id: &str, booking: &str, name: &str, when: &str, props: Value| {
        let mut e = track(id, "client", name, at(when), props);
        e["properties"]["booking_id"] = json!(booking);
        e
    };
    let batch = vec![
        // Made in September for Monday 5 October, a no-show.
        event(
            "c1",
            "b1",
            "Booking Created",
            "2026-09-20T09:00:00Z",
            json!({"appointment_at": "2026-10-05T10:00:00Z"}),
        ),
        event(
            "o1",
            "b1",
            "Booking No Show",
            "2026-10-05T11:00:00Z",
            json!({}),
        ),
        // Made in September for Tuesday 6 October, cancelled in September.
        event(
            "c2",
            "b2",
            "Booking Created",
            "2026-09-25T09:00:00Z",
            json!({"appointment_at": "2026-10-06T10:00:00Z"}),
        ),
        event(
            "o2",
            "b2",
            "Booking Cancelled",
            "2026-09-30T08:00:00Z",
            json!({"reason": "sick"}),
        ),
        // Made in October for Monday 12 October, completed.
        event(
            "c3",
            "b3",
            "Booking Created",
            "2026-10-02T09:00:00Z",
            json!({"appointment_at": "2026-10-12T10:00:00Z"}),
        ),
        event(
            "o3",
            "b3",
            "Booking Completed",
            "2026-10-12T11:00:00Z",
            json!({"revenue": "50.00"}),
        ),
        // Made in October for November, completed.
        event(
            "c4",
            "b4",
            "Booking Created",
            "2026-10-20T09:00:00Z",
            json!({"appointment_at": "2026-11-03T10:00:00Z"}),
        ),
        event(
            "o4",
            "b4",
            "Booking Completed",
            "2026-11-03T11:00:00Z",
            json!({"revenue": "30.00"}),
        ),
    ];
    let (s, v) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &tenant.write_key,
        Some(json!({"batch": batch})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let october = json!({"from": "2026-10-01", "to": "2026-10-31", "interval": "month"});

    // Made in October: b3 and b4, both completed.
    let (s, booked) = post(&server, key, "bookings", october.clone()).await;
    assert_eq!(s, 200, "{booked}");
    assert_eq!(booked["basis"], "booked");
    let sum = &booked["summary"];
    assert_eq!(
        (
            &sum["bookings"],
            &sum["completed"],
            &sum["no_shows"],
            &sum["cancelled"]
        ),
        (&json!(2), &json!(2), &json!(0), &json!(0)),
        "{booked}"
    );
    assert_eq!(sum["revenue"], "80.0000", "{booked}");

    // For October: b1 (no-show), b2 (cancelled in September), b3.
    let mut by_appointment = october.clone();
    by_appointment["basis"] = json!("appointment");
    let (s, appt) = post(&server, key, "bookings", by_appointment).await;
    assert_eq!(s, 200, "{appt}");
    assert_eq!(appt["basis"], "appointment");
    let sum = &appt["summary"];
    assert_eq!(
        (
            &sum["bookings"],
            &sum["completed"],
            &sum["no_shows"],
            &sum["cancelled"]
        ),
        (&json!(3), &json!(1), &json!(1), &json!(1)),
        "{appt}"
    );
    assert_eq!(sum["revenue"], "50.0000", "{appt}");
    assert!(
        (sum["no_show_rate"].as_f64().expect("rate") - 1.0 / 3.0).abs() < 1e-6,
        "rates are rounded to 6 places: {appt}"
    );
    let series = appt["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{appt}");
    assert_eq!(series[0]["bookings"], 3, "{appt}");
    assert_eq!(appt["cancellation_reasons"][0]["reason"], "sick", "{appt}");
    // By the appointment's weekday: Monday b1 and b3, Tuesday b2.
    let weekdays = appt["appointment_weekdays"].as_array().expect("weekdays");
    assert_eq!(weekdays.len(), 2, "{appt}");
    assert_eq!(
        (
            &weekdays[0]["weekday"],
            &weekdays[0]["bookings"],
            &weekdays[0]["no_shows"]
        ),
        (&json!(1), &json!(2), &json!(1)),
        "{appt}"
    );
    assert!(
        (weekdays[0]["no_show_rate"].as_f64().expect("rate") - 0.5).abs() < 1e-9,
        "{appt}"
    );
    assert_eq!(
        (&weekdays[1]["weekday"], &weekdays[1]["cancelled"]),
        (&json!(2), &json!(1)),
        "{appt}"
    );
    // The same as a GET, and a basis that does not exist.
    let (s, got) = call(
        &server,
        Method::GET,
        "/v1/analytics/bookings?from=2026-10-01&to=2026-10-31&basis=appointment",
        key,
        None,
    )
    .await;
    assert_eq!((s, &got["summary"]["bookings"]), (200, &json!(3)), "{got}");
    let (s, bad) = post(
        &server,
        key,
        "bookings",
        json!({"range": "30d", "basis": "arrival"}),
    )
    .await;
    assert_eq!(
        (s, bad["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{bad}"
    );
    assert!(
        bad["error"]["message"]
            .as_str()
            .expect("message")
            .contains("appointment"),
        "{bad}"
    );
    assert!(server.stop().success());
}

/// New customers by first touch: the channel and campaign of each new
/// customer's earliest event (Segment's `context.campaign`, else the
/// `utm_*` properties; nothing: direct). A returning customer is not new.
#[tokio::test]
async fn new_customers_are_attributed_to_their_first_touch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let server = Server::start(&data, &[]);
    let key = &tenant.admin_key;
    let day = |d: i64| Utc::now() - Duration::days(d);
    let order = |id: &str, user: &str, d: i64, props: Value| {
        let mut p = json!({"order_id": id, "revenue": "10.00"});
        p.as_object_mut().expect("object").extend(props.as_object().expect("object").clone());
        track(id, user, "Order Completed", day(d), p)
    };
    let mut viewed = track("v1", "u1", "Page Viewed", day(5), json!({}));
    viewed["context"] = json!({"campaign": {"source": "google", "medium": "cpc", "name": "spring"}});
    let batch = vec![
        viewed,
        order("o1", "u1", 3, json!({})),
        order("o2", "u2", 2, json!({"channel": "web", "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "may"})),
        order("o3", "u3", 1, json!({})),
        order("o4", "u4", 20, json!({"utm_source": "google"})),
        order("o5", "u4", 1, json!({})),
    ];
    let (s, v) = call(&server, Method::POST, "/v1/batch", &tenant.write_key, Some(json!({"batch": batch}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, c) = post(&server, key, "customers", json!({"range": "7d"})).await;
    assert_eq!(s, 200, "{c}");
    let rows = c["acquisition"].as_array().expect("acquisition");
    let got: Vec<(String, String, String, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["channel"].as_str().expect("channel").to_owned(),
                r["source"].as_str().expect("source").to_owned(),
                r["medium"].as_str().expect("medium").to_owned(),
                r["campaign"].as_str().expect("campaign").to_owned(),
                r["new_customers"].as_u64().expect("n"),
            )
        })
        .collect();
    let row = |c: &str, s: &str, m: &str, n: &str| (c.to_owned(), s.to_owned(), m.to_owned(), n.to_owned(), 1);
    assert_eq!(got.len(), 3, "{c}");
    for want in [
        row("(none)", "google", "cpc", "spring"),
        row("web", "newsletter", "email", "may"),
        row("(none)", "(direct)", "(none)", "(none)"),
    ] {
        assert!(got.contains(&want), "{want:?} in {got:?}");
    }
    // Each row is in the bucket of the customer's first sale.
    let u1 = rows.iter().find(|r| r["source"] == "google").expect("u1");
    assert_eq!(u1["bucket"], json!(day(3).format("%Y-%m-%d").to_string()), "{c}");
    assert_eq!(c["summary"]["new"], 3, "{c}");
    assert!(server.stop().success());
}
