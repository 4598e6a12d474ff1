//! Events in through every ingest route, out through SQL, field by field;
//! dedupe; restart.

use crate::common;

use std::io::Write;

use base64::Engine as _;
use common::{Server, call, client, create_tenant, fast_env, scalar, sql};
use reqwest::Method;
use serde_json::{Value, json};

fn order(id: &str, user: &str) -> Value {
    json!({
        "type": "track",
        "event": "Order Completed",
        "messageId": id,
        "userId": user,
        "anonymousId": "anon-1",
        "timestamp": "2025-03-04T05:06:07.890Z",
        "properties": {
            "order_id": "o-100", "revenue": 123.45, "currency": "gbp", "quantity": 3,
            "product_id": "sku-9", "location_id": "london", "staff_id": "amy",
            "channel": "web", "payment_method": "card", "status": "paid", "session_id": "s-1",
            "coupon": "SPRING", "products": [{"sku": "sku-9", "price": 41.15, "quantity": 3}]
        },
        "context": {"ip": "203.0.113.9", "library": {"name": "analytics.js", "version": "5"}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_field_by_field_through_memory_and_parquet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Shop");
    let server = Server::start(&data, &[]);
    let http = client();

    // Segment batch with HTTP Basic (key as user name), as analytics libraries send it.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:", tenant.write_key));
    let resp = http
        .post(server.url("/v1/batch"))
        .header("Authorization", format!("Basic {basic}"))
        .json(&json!({"batch": [order("m-1", "u-1"),
            {"type": "identify", "userId": "u-1", "messageId": "m-2", "traits": {"email": "a@example.com", "plan": "gold"}},
            {"type": "page", "anonymousId": "anon-1", "messageId": "m-3", "name": "Home", "properties": {"url": "https://shop.example/"}}
        ]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["accepted"], 3, "{body}");
    assert_eq!(body["rejected"], json!([]));

    let query = "SELECT message_id, type, event, user_id, anonymous_id, \
        CAST(timestamp AS VARCHAR) AS ts, CAST(revenue AS VARCHAR) AS revenue, currency, quantity, order_id, product_id, \
        location_id, staff_id, channel, payment_method, status, session_id, properties, context, traits, \
        received_at >= timestamp '2026-01-01T00:00:00Z' AS received_recently \
        FROM events ORDER BY message_id";
    let check = |v: &Value| {
        let rows = v["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 3, "{v}");
        let r = &rows[0];
        assert_eq!(r[0], "m-1");
        assert_eq!(r[1], "track");
        assert_eq!(r[2], "Order Completed");
        assert_eq!(r[3], "u-1");
        assert_eq!(r[4], "anon-1");
        assert!(
            r[5].as_str()
                .expect("ts")
                .starts_with("2025-03-04T05:06:07.890"),
            "{}",
            r[5]
        );
        assert_eq!(r[6], "123.4500");
        assert_eq!(r[7], "GBP");
        assert_eq!(r[8], 3);
        assert_eq!(r[9], "o-100");
        assert_eq!(r[10], "sku-9");
        assert_eq!(r[11], "london");
        assert_eq!(r[12], "amy");
        assert_eq!(r[13], "web");
        assert_eq!(r[14], "card");
        assert_eq!(r[15], "paid");
        assert_eq!(r[16], "s-1");
        let props: Value = serde_json::from_str(r[17].as_str().expect("props")).expect("json");
        assert_eq!(props["coupon"], "SPRING");
        assert_eq!(props["products"][0]["price"], 41.15);
        let ctx: Value = serde_json::from_str(r[18].as_str().expect("ctx")).expect("json");
        assert_eq!(ctx["library"]["name"], "analytics.js");
        assert_eq!(r[20], true);
        let identify = &rows[1];
        assert_eq!(identify[1], "identify");
        let traits: Value =
            serde_json::from_str(identify[19].as_str().expect("traits")).expect("json");
        assert_eq!(traits["plan"], "gold");
        let page = &rows[2];
        assert_eq!(page[1], "page");
        assert_eq!(page[2], "Home");
    };
    // Queryable at once, from memory.
    let from_memory = sql(&server, &tenant.admin_key, query).await;
    check(&from_memory);

    // Flush, then the same answer from Parquet.
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/workspace/flush",
        &tenant.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, ws) = call(
        &server,
        Method::GET,
        "/v1/workspace",
        &tenant.admin_key,
        None,
    )
    .await;
    assert_eq!(ws["stats"]["memory_rows"], 0, "{ws}");
    assert_eq!(ws["stats"]["file_rows"], 3, "{ws}");
    let from_parquet = sql(&server, &tenant.admin_key, query).await;
    assert_eq!(from_parquet["rows"], from_memory["rows"]);
    check(&from_parquet);
    // The partition is the event's UTC day.
    let day_dir = data
        .join("tables/events")
        .join(format!("tenant={}", tenant.id))
        .join("date=2025-03-04");
    assert!(day_dir.is_dir(), "missing {}", day_dir.display());

    // Restart: still there, exactly once.
    assert!(server.stop().success());
    let server = Server::start(&data, &[]);
    let again = sql(&server, &tenant.admin_key, query).await;
    assert_eq!(again["rows"], from_memory["rows"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_bearer_gzip_ndjson_and_retries_are_deduplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Bookings");
    let server = Server::start(&data, &fast_env());
    let http = client();

    for (route, body) in [
        (
            "/v1/track",
            json!({"event": "Booking Created", "userId": "c1", "messageId": "t1", "properties": {"booking_id": "b1", "amount": "80.00", "service": "haircut"}}),
        ),
        (
            "/v1/identify",
            json!({"userId": "c1", "messageId": "t2", "traits": {"name": "Ann"}}),
        ),
        (
            "/v1/page",
            json!({"anonymousId": "x", "messageId": "t3", "name": "Pricing"}),
        ),
        (
            "/v1/screen",
            json!({"anonymousId": "x", "messageId": "t4", "name": "Cart"}),
        ),
        (
            "/v1/group",
            json!({"userId": "c1", "messageId": "t5", "groupId": "acme"}),
        ),
        (
            "/v1/alias",
            json!({"userId": "c1", "messageId": "t6", "previousId": "x"}),
        ),
    ] {
        let resp = http
            .post(server.url(route))
            .bearer_auth(&tenant.write_key)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(
            resp.status(),
            200,
            "{route}: {}",
            resp.text().await.unwrap_or_default()
        );
    }

    // NDJSON, gzip-compressed, key in the body is not needed with a header.
    let ndjson: String = (0..50)
        .map(|i| format!("{}\n", json!({"event": "Product Viewed", "anonymousId": format!("a{i}"), "messageId": format!("n{i}"), "properties": {"product_id": format!("p{}", i % 5), "price": 9.99}})))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(ndjson.as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    for attempt in 0..2 {
        let resp = http
            .post(server.url("/v1/events"))
            .bearer_auth(&tenant.write_key)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "application/x-ndjson")
            .body(gz.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        if attempt == 0 {
            assert_eq!(
                (body["accepted"].as_u64(), body["duplicates"].as_u64()),
                (Some(50), Some(0)),
                "{body}"
            );
        } else {
            // The retry is acknowledged but stores nothing.
            assert_eq!(
                (body["accepted"].as_u64(), body["duplicates"].as_u64()),
                (Some(0), Some(50)),
                "{body}"
            );
        }
    }

    // Segment's writeKey in the body instead of a header.
    let resp = http
        .post(server.url("/v1/batch"))
        .json(&json!({"writeKey": tenant.write_key, "batch": [{"type": "track", "event": "Lead Created", "userId": "l1", "messageId": "w1"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);

    // Let a few flushes and a compaction happen, then count: every event exactly once.
    let total = scalar(&server, &tenant.admin_key, "SELECT COUNT(*) FROM events").await;
    assert_eq!(total, 57);
    let distinct = scalar(
        &server,
        &tenant.admin_key,
        "SELECT COUNT(DISTINCT message_id) FROM events",
    )
    .await;
    assert_eq!(distinct, 57);
    let booking = sql(
        &server,
        &tenant.admin_key,
        "SELECT booking_id, service_id, CAST(revenue AS VARCHAR) FROM events WHERE event = 'Booking Created'",
    )
    .await;
    assert_eq!(booking["rows"], json!([["b1", "haircut", "80.0000"]]));
    let types = sql(
        &server,
        &tenant.admin_key,
        "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type",
    )
    .await;
    assert_eq!(
        types["rows"],
        json!([
            ["alias", 1],
            ["group", 1],
            ["identify", 1],
            ["page", 1],
            ["screen", 1],
            ["track", 52]
        ])
    );
    // SIGTERM flushes: after a restart everything is in Parquet, nothing left to replay.
    assert!(server.stop().success());
    let server = Server::start(&data, &[]);
    let (_, ws) = call(
        &server,
        Method::GET,
        "/v1/workspace",
        &tenant.admin_key,
        None,
    )
    .await;
    assert_eq!(
        (
            ws["stats"]["memory_rows"].as_u64(),
            ws["stats"]["file_rows"].as_u64()
        ),
        (Some(0), Some(57)),
        "{ws}"
    );
    assert!(server.stop().success());
}
