//! The real-time hub against the real server on 127.0.0.1:0, with
//! tokio-tungstenite clients and a streaming HTTP client for SSE: live
//! metrics equal to SQL, ordering, resume, history lost, a stalled client
//! beside a healthy one, auth and cross-tenant refusals with close codes,
//! malformed and oversized messages, bad handshakes, SSE resume, live SQL
//! queries.
//!
//! Every wait is a bounded loop over received messages with a timeout;
//! no test asserts wall-clock speed.

use crate::common;

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::ws::{self, Ws, close_code, next, send, subscribe, until};
use common::{Server, WAIT, call, client, create_read_key, create_tenant, scalar, sql};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn connect(server: &Server, key: &str) -> Ws {
    let mut ws = ws::open(&server.ws_url(&format!("?key={key}"))).await;
    let welcome = next(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn ingest(server: &Server, write_key: &str, batch: Vec<Value>) {
    let (status, body) = call(
        server,
        Method::POST,
        "/v1/batch",
        write_key,
        Some(json!({ "batch": batch })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

fn order(id: &str, user: &str, revenue: &str) -> Value {
    json!({"type": "track", "messageId": id, "userId": user, "event": "Order Completed",
           "timestamp": now(), "properties": {"order_id": id, "revenue": revenue.parse::<f64>().expect("num")}})
}

fn track(id: &str, user: &str, event: &str) -> Value {
    json!({"type": "track", "messageId": id, "anonymousId": user, "event": event, "timestamp": now()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_metrics_start_with_a_snapshot_and_equal_sql_after_ingest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[("BEACON_REALTIME__METRICS_INTERVAL", "50ms")]);
    // Business time in New York, weeks from Sunday.
    let (status, body) = call(
        &server,
        Method::PATCH,
        "/v1/workspace",
        &t.admin_key,
        Some(json!({"timezone": "America/New_York", "week_start": "sunday"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    ingest(&server, &t.write_key, vec![order("o0", "c0", "10.05")]).await;
    // Yesterday: one order a minute before this time of day (in the span
    // the tiles compare with), one a minute after (not).
    let day_ago = |minutes: i64| {
        (Utc::now() - chrono::Duration::days(1) + chrono::Duration::minutes(minutes))
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let mut y1 = order("y1", "c9", "7.00");
    y1["timestamp"] = json!(day_ago(-1));
    let mut y2 = order("y2", "c9", "9.00");
    y2["timestamp"] = json!(day_ago(1));
    ingest(&server, &t.write_key, vec![y1, y2]).await;
    // Away from local midnight (and a DST change), yesterday's span is
    // exactly "until this time of day".
    let local = Utc::now().with_timezone(&chrono_tz::America::New_York);
    let minutes = chrono::Timelike::hour(&local) * 60 + chrono::Timelike::minute(&local);
    let span_is_clear = (3..24 * 60 - 3).contains(&minutes);

    let mut ws = connect(&server, &read).await;
    let sub = subscribe(&mut ws, json!({"type": "subscribe", "channel": "metrics"})).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    let snap = until(&mut ws, 10, |m| m["channel"] == "metrics").await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    assert_eq!(snap["payload"]["today"]["orders"], 1);
    assert_eq!(snap["payload"]["today"]["revenue"], "10.0500");
    assert_eq!(snap["payload"]["timezone"], "America/New_York");
    if span_is_clear {
        let today = &snap["payload"]["today"];
        assert_eq!(today["previous"]["orders"], 1, "{today}");
        assert_eq!(today["previous"]["revenue"], "7.0000", "{today}");
        assert_eq!(today["change"]["orders"], 0.0, "{today}");
        assert_eq!(today["change"]["revenue"], 0.435714, "{today}");
    }

    ingest(
        &server,
        &t.write_key,
        vec![
            order("o1", "c1", "19.99"),
            order("o2", "c1", "5.01"),
            track("b1", "c2", "Booking Created"),
            track("x1", "c3", "Booking Cancelled"),
            track("n1", "c3", "Booking No Show"),
            track("v1", "c4", "Product Viewed"),
        ],
    )
    .await;
    let update = until(&mut ws, 100, |m| {
        m["channel"] == "metrics" && m["payload"]["today"]["orders"] == 3
    })
    .await;
    let today = &update["payload"]["today"];
    assert_eq!(update["type"], "update");
    if span_is_clear {
        assert_eq!(today["change"]["orders"], 2.0, "{today}");
    }
    assert!(update["seq"].as_u64().expect("seq") > snap["seq"].as_u64().expect("seq"));

    // The same numbers from SQL in the workspace's business day.
    let q = "SELECT CAST(sum(revenue) FILTER (WHERE event = 'Order Completed') AS DECIMAL(38, 4)), \
                    count(*) FILTER (WHERE event = 'Order Completed'), \
                    count(*) FILTER (WHERE event = 'Booking Created'), \
                    count(*) FILTER (WHERE event = 'Booking Cancelled'), \
                    count(*) FILTER (WHERE event = 'Booking No Show'), \
                    count(DISTINCT coalesce(user_id, anonymous_id)), \
                    count(DISTINCT coalesce(user_id, anonymous_id)) FILTER (WHERE event = 'Order Completed') \
             FROM events WHERE business_date(timestamp, 'day') = business_date(now(), 'day')";
    let row = sql(&server, &read, q).await["rows"][0].clone();
    assert_eq!(today["revenue"], row[0], "{today} vs {row}");
    assert_eq!(today["orders"], row[1]);
    assert_eq!(today["bookings"], row[2]);
    assert_eq!(today["cancellations"], row[3]);
    assert_eq!(today["no_shows"], row[4]);
    assert_eq!(today["visitors"], row[5]);
    assert_eq!(today["buyers"], row[6]);
    assert_eq!(today["aov"], "11.68", "35.05 / 3, rounded");
    assert_eq!(update["payload"]["visitors_5m"], 5);
    // And from the analytics API (today's gross revenue and orders).
    let (status, rev) = call(
        &server,
        Method::GET,
        "/v1/analytics/revenue?range=today",
        &read,
        None,
    )
    .await;
    assert_eq!(status, 200, "{rev}");
    assert_eq!(rev["summary"]["gross"], today["revenue"], "{rev}");
    assert_eq!(rev["summary"]["orders"], today["orders"], "{rev}");
    for period in ["week", "month"] {
        let p = &update["payload"][period];
        let unit = if period == "week" { "week" } else { "month" };
        let q = format!(
            "SELECT count(*) FILTER (WHERE event = 'Order Completed') FROM events \
             WHERE business_date(timestamp, '{unit}') = business_date(now(), '{unit}')"
        );
        assert_eq!(
            p["orders"].as_i64(),
            Some(scalar(&server, &read, &q).await),
            "{period}"
        );
    }

    // A completed booking is a sale; an order in another currency is not
    // added (the analytics API lists it apart): live and analytics agree.
    let mut yen = order("o9", "c9", "1000");
    yen["properties"]["currency"] = json!("JPY");
    let mut done = track("bc1", "c5", "Booking Completed");
    done["properties"] = json!({"booking_id": "bk1", "revenue": 10});
    ingest(&server, &t.write_key, vec![yen, done]).await;
    let update = until(&mut ws, 100, |m| {
        m["channel"] == "metrics" && m["payload"]["today"]["completed_bookings"] == 1
    })
    .await;
    let today = &update["payload"]["today"];
    assert_eq!(today["revenue"], "45.0500", "{today}");
    assert_eq!(today["orders"], 3, "{today}");
    assert_eq!(today["aov"], "11.26", "45.05 / 4, rounded");
    let (_, rev) = call(
        &server,
        Method::GET,
        "/v1/analytics/revenue?range=today",
        &read,
        None,
    )
    .await;
    assert_eq!(rev["summary"]["gross"], today["revenue"], "{rev}");
    assert_eq!(rev["summary"]["orders"], today["orders"], "{rev}");
    assert_eq!(
        rev["summary"]["completed_bookings"], today["completed_bookings"],
        "{rev}"
    );
    assert_eq!(rev["other_currencies"][0]["gross"], "1000.0000", "{rev}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_is_ordered_resumes_exactly_and_reports_lost_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[("BEACON_REALTIME__HISTORY", "50")]);
    let mut ws = connect(&server, &read).await;
    let sub = subscribe(&mut ws, json!({"type": "subscribe", "channel": "activity"})).await;
    let epoch = sub["epoch"].as_str().expect("epoch").to_owned();
    for round in 0..12 {
        let batch = (0..10)
            .map(|i| track(&format!("e{round}-{i}"), "p", "Product Viewed"))
            .collect();
        ingest(&server, &t.write_key, batch).await;
    }
    let mut seqs = Vec::new();
    while seqs.len() < 120 {
        let m = next(&mut ws).await;
        if m["channel"] == "activity" && m["type"] == "event" {
            assert_eq!(m["epoch"], epoch.as_str());
            assert_eq!(m["payload"]["event"], "Product Viewed");
            seqs.push(m["seq"].as_u64().expect("seq"));
        }
    }
    assert_eq!(
        seqs,
        (1..=120).collect::<Vec<_>>(),
        "every message, in order"
    );
    drop(ws);

    // 20 more while nobody listens; resuming at 100 gets exactly 101..=140.
    for round in 12..14 {
        let batch = (0..10)
            .map(|i| track(&format!("e{round}-{i}"), "p", "Product Viewed"))
            .collect();
        ingest(&server, &t.write_key, batch).await;
    }
    let mut ws = connect(&server, &read).await;
    let sub = subscribe(
        &mut ws,
        json!({"type": "subscribe", "channel": "activity", "resume": {"epoch": epoch, "seq": 100}}),
    )
    .await;
    assert_eq!(sub["seq"], 140);
    let mut got = Vec::new();
    while got.len() < 40 {
        let m = next(&mut ws).await;
        if m["type"] == "event" {
            got.push(m["seq"].as_u64().expect("seq"));
        }
    }
    assert_eq!(got, (101..=140).collect::<Vec<_>>());
    // Nothing else is pending after the replay: the pong comes next.
    send(&mut ws, json!({"type": "ping", "id": 7})).await;
    let pong = next(&mut ws).await;
    assert_eq!(
        pong,
        json!({"type": "pong", "id": 7}),
        "no duplicates after the replay"
    );

    // Seq 30 is older than the 50-message history: history lost + snapshot.
    let mut ws = connect(&server, &read).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "channel": "activity", "resume": {"epoch": epoch, "seq": 30}}),
    )
    .await;
    let _subscribed = until(&mut ws, 5, |m| m["type"] == "subscribed").await;
    let lost = next(&mut ws).await;
    assert_eq!(lost["type"], "history_lost", "{lost}");
    let snap = next(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["seq"], 140);
    assert_eq!(
        snap["payload"]["recent"].as_array().expect("recent").len(),
        50
    );
    // A stale epoch (e.g. after a restart) is lost history too.
    send(
        &mut ws,
        json!({"type": "subscribe", "channel": "activity", "resume": {"epoch": "old", "seq": 139}}),
    )
    .await;
    let lost = until(&mut ws, 5, |m| m["type"] == "history_lost").await;
    assert_eq!(lost["reason"], "the channel restarted (new epoch)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_lags_alone_and_the_healthy_one_gets_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(
        &data,
        &[
            ("BEACON_REALTIME__CONNECTION_QUEUE", "256"),
            ("BEACON_REALTIME__HISTORY", "100000"),
            ("BEACON_REALTIME__METRICS_INTERVAL", "20ms"),
        ],
    );
    // The stalled client: a tiny receive buffer, subscribed, never reading.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let addr: std::net::SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let stream = socket.connect(addr).await.expect("tcp");
    let (mut stalled, _) =
        tokio_tungstenite::client_async(server.ws_url(&format!("?key={read}")), stream)
            .await
            .expect("handshake");
    send(
        &mut stalled,
        json!({"type": "subscribe", "channel": "activity"}),
    )
    .await;
    send(
        &mut stalled,
        json!({"type": "subscribe", "channel": "metrics"}),
    )
    .await;

    let mut healthy = connect(&server, &read).await;
    subscribe(
        &mut healthy,
        json!({"type": "subscribe", "channel": "activity"}),
    )
    .await;
    // How many events the healthy client has read: the producer waits for
    // it after each batch, so "healthy" means "reads what it is sent", not
    // "is scheduled often enough to stay within the queue while a fast
    // producer runs" (which made the test flaky on a busy machine).
    let (read_tx, mut read_rx) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            let m = next(&mut healthy).await;
            if m["type"] == "lagged" {
                panic!("the healthy client lagged: {m}");
            }
            if m["type"] == "event" {
                seqs.push(m["seq"].as_u64().expect("seq"));
                let _ = read_tx.send(seqs.len());
            }
            if m["type"] == "event" && m["payload"]["message_id"] == "last" {
                return seqs;
            }
        }
    });

    // Ingest until the server reports a lagged subscription (bounded).
    let padding = "x".repeat(2000);
    let mut lagged = false;
    let mut sent = 0;
    for round in 0..400 {
        let batch: Vec<Value> = (0..50)
            .map(|i| {
                let mut e = track(&format!("r{round}-{i}"), "p", "Product Viewed");
                e["properties"] = json!({"note": padding});
                e
            })
            .collect();
        sent += batch.len();
        ingest(&server, &t.write_key, batch).await;
        tokio::time::timeout(WAIT, read_rx.wait_for(|n| *n >= sent))
            .await
            .expect("the healthy client reads each batch in time")
            .expect("reader running");
        let metrics = client()
            .get(server.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics
            .lines()
            .any(|l| l.starts_with("beacon_realtime_lagged_total") && !l.ends_with(" 0"))
        {
            lagged = true;
            break;
        }
    }
    assert!(
        lagged,
        "the stalled client never lagged after {sent} events"
    );
    ingest(
        &server,
        &t.write_key,
        vec![track("last", "p", "Order Completed")],
    )
    .await;
    sent += 1;
    let seqs = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("healthy client finished in time")
        .expect("reader");
    assert_eq!(
        seqs,
        (1..=sent as u64).collect::<Vec<_>>(),
        "healthy client: all, in order"
    );

    // Now the stalled client reads: its activity ended with `lagged` (it
    // never got more than the queue beyond what the sockets held), metrics
    // are still live.
    let mut lag = None;
    let mut events = 0u64;
    for _ in 0..20_000 {
        let m = next(&mut stalled).await;
        if m["type"] == "event" {
            events += 1;
        }
        if m["type"] == "lagged" {
            lag = Some(m);
            break;
        }
    }
    let lag = lag.expect("a lagged message");
    assert_eq!(lag["channel"], "activity");
    let last = lag["seq"].as_u64().expect("seq");
    assert_eq!(
        events, last,
        "every message up to the lag point, none after"
    );
    assert!(last < sent as u64);
    // Resume from there and get the rest from history.
    send(
        &mut stalled,
        json!({"type": "subscribe", "channel": "activity", "resume": {"epoch": lag["epoch"], "seq": last}}),
    )
    .await;
    let first = until(&mut stalled, 10_000, |m| {
        m["channel"] == "activity" && m["type"] == "event"
    })
    .await;
    assert_eq!(first["seq"].as_u64(), Some(last + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_clear_close_codes_and_tenants_stay_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let a = create_tenant(&data, "A");
    let b = create_tenant(&data, "B");
    let read_a = create_read_key(&data, "A");
    let server = Server::start(&data, &[("BEACON_REALTIME__AUTH_TIMEOUT", "300ms")]);

    for (query, code) in [
        ("?key=bk_r_nope".to_owned(), 4001),
        (format!("?key={}", a.write_key), 4003),
        ("?token=bt_forged.sig".to_owned(), 4001),
        (String::new(), 4001), // no credentials and no auth message in time
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&query))
            .await
            .expect("connect");
        let first = next(&mut ws).await;
        assert_eq!(first["type"], "error", "{query}: {first}");
        assert_eq!(close_code(&mut ws).await, code, "{query}");
    }
    // Authenticating with a first message works.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(""))
        .await
        .expect("connect");
    send(&mut ws, json!({"type": "auth", "key": read_a})).await;
    assert_eq!(next(&mut ws).await["type"], "welcome");

    // A read key cannot open a user's inbox; the connection stays usable.
    let refused = subscribe(
        &mut ws,
        json!({"type": "subscribe", "channel": "notifications:ann"}),
    )
    .await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "forbidden");
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await["type"], "pong");

    // Tenant A's activity never shows tenant B's events.
    subscribe(&mut ws, json!({"type": "subscribe", "channel": "activity"})).await;
    ingest(
        &server,
        &b.write_key,
        vec![track("b-only", "x", "Order Completed")],
    )
    .await;
    ingest(
        &server,
        &a.write_key,
        vec![track("a-only", "y", "Order Completed")],
    )
    .await;
    let m = until(&mut ws, 10, |m| m["type"] == "event").await;
    assert_eq!(m["payload"]["message_id"], "a-only");

    // User tokens: minted by an admin key, good for that user's inbox only.
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/realtime/tokens",
        &read_a,
        Some(json!({"user": "ann"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, err) = call(
        &server,
        Method::POST,
        "/v1/realtime/tokens",
        &a.admin_key,
        Some(json!({"user": "ann", "ttl": "100days"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "invalid_ttl");
    let (status, err) = call(
        &server,
        Method::POST,
        "/v1/realtime/tokens",
        &a.admin_key,
        Some(json!({"user": "a b"})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, tok) = call(
        &server,
        Method::POST,
        "/v1/realtime/tokens",
        &a.admin_key,
        Some(json!({"user": "ann", "ttl": "10m"})),
    )
    .await;
    assert_eq!(status, 200, "{tok}");
    let token = tok["token"].as_str().expect("token");
    let (mut ann, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("?token={token}")))
            .await
            .expect("connect");
    assert_eq!(next(&mut ann).await["type"], "welcome");
    let ok = subscribe(
        &mut ann,
        json!({"type": "subscribe", "channel": "notifications:ann"}),
    )
    .await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    for other in ["notifications:bob", "metrics", "activity"] {
        let no = subscribe(&mut ann, json!({"type": "subscribe", "channel": other})).await;
        assert_eq!(no["code"], "forbidden", "{other}: {no}");
    }
    let unknown = subscribe(&mut ann, json!({"type": "subscribe", "channel": "billing"})).await;
    assert_eq!(unknown["code"], "unknown_channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_errors_and_oversized_ones_close_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[("BEACON_REALTIME__MAX_MESSAGE_BYTES", "2048")]);
    ingest(
        &server,
        &t.write_key,
        vec![track("keep", "p", "Order Completed")],
    )
    .await;
    let mut ws = connect(&server, &read).await;
    for bad in [
        "not json".to_owned(),
        "[1,2]".to_owned(),
        json!({"type": "launch"}).to_string(),
        json!({"type": "subscribe"}).to_string(),
        json!({"type": "subscribe", "channel": "metrics", "surprise": 1}).to_string(),
        json!({"type": "subscribe", "channel": "metrics", "sql": "SELECT 1"}).to_string(),
        json!({"type": "subscribe", "channel": "metrics", "events": ["x"]}).to_string(),
        json!({"type": "subscribe", "channel": "x".repeat(500)}).to_string(),
        "\u{0}\u{1}".to_owned(),
    ] {
        ws.send(Message::text(bad.clone())).await.expect("send");
        let m = until(&mut ws, 10, |m| m["type"] == "error").await;
        assert!(
            m["code"].is_string() && m["message"].is_string(),
            "{bad}: {m}"
        );
    }
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    let m = until(&mut ws, 10, |m| m["type"] == "error").await;
    assert_eq!(m["code"], "invalid_message");
    send(&mut ws, json!({"type": "ping", "id": "still here"})).await;
    assert_eq!(next(&mut ws).await["id"], "still here");

    // Larger than max_message_bytes: that connection is closed with 1009.
    let mut big = connect(&server, &read).await;
    let _ = big.send(Message::text("x".repeat(10_000))).await;
    assert_eq!(close_code(&mut big).await, 1009);
    // Everyone else is fine and the data is intact.
    send(&mut ws, json!({"type": "ping", "id": 2})).await;
    assert_eq!(next(&mut ws).await["id"], 2);
    assert_eq!(
        scalar(&server, &read, "SELECT count(*) FROM events").await,
        1
    );
    let status = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_get_structured_http_errors_and_good_ones_still_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[]);
    let url = server.url(&format!("/v1/ws?key={read}"));
    let upgrade = [("connection", "Upgrade"), ("upgrade", "websocket")];
    let good_key = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    let cases: Vec<(Vec<(&str, &str)>, u16, &str)> = vec![
        // A plain GET (a browser tab, curl).
        (vec![], 426, "upgrade_required"),
        // Upgrade to something else.
        (
            vec![("connection", "Upgrade"), ("upgrade", "h2c")],
            426,
            "upgrade_required",
        ),
        // An old protocol version.
        (
            [&upgrade[..], &[("sec-websocket-version", "8"), good_key]].concat(),
            400,
            "unsupported_websocket_version",
        ),
        // No key, and a key that is not 16 bytes of base64.
        (
            [&upgrade[..], &[("sec-websocket-version", "13")]].concat(),
            400,
            "invalid_websocket_key",
        ),
        (
            [
                &upgrade[..],
                &[
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "short"),
                ],
            ]
            .concat(),
            400,
            "invalid_websocket_key",
        ),
        // 24 characters of base64, but 17 bytes.
        (
            [
                &upgrade[..],
                &[
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAAA="),
                ],
            ]
            .concat(),
            400,
            "invalid_websocket_key",
        ),
        // No version at all.
        (
            [&upgrade[..], &[good_key]].concat(),
            400,
            "unsupported_websocket_version",
        ),
    ];
    for (headers, status, code) in cases {
        let mut request = client().get(&url);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let resp = request.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), status, "{headers:?}");
        if status == 426 {
            assert_eq!(resp.headers()["upgrade"], "websocket");
        }
        if code == "unsupported_websocket_version" {
            assert_eq!(resp.headers()["sec-websocket-version"], "13");
        }
        let body: Value = resp.json().await.expect("json error");
        assert_eq!(body["error"]["code"], code, "{headers:?}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let handshake = [&upgrade[..], &[("sec-websocket-version", "13"), good_key]].concat();
    // A WebSocket opens with GET only (hyper would upgrade a HEAD).
    let mut head = client().head(&url);
    for (name, value) in &handshake {
        head = head.header(*name, *value);
    }
    let resp = head.send().await.expect("head");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    // Firefox sends `Connection: keep-alive, Upgrade`: a token list.
    let mut firefox = client()
        .get(&url)
        .header("connection", "keep-alive, Upgrade");
    for (name, value) in &handshake[1..] {
        firefox = firefox.header(*name, *value);
    }
    let resp = firefox.send().await.expect("firefox-style handshake");
    assert_eq!(resp.status().as_u16(), 101);
    assert_eq!(
        resp.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    drop(resp);
    // A query string that does not parse is a structured 400 too, on the
    // WebSocket and the SSE endpoint.
    for path in [
        "/v1/ws?surprise=1",
        "/v1/stream?channels=activity&surprise=1",
    ] {
        let resp = client()
            .get(server.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 400, "{path}");
        let body: Value = resp.json().await.expect("json error");
        assert_eq!(
            body["error"]["code"], "invalid_query_string",
            "{path}: {body}"
        );
    }
    // The server keeps serving: a real client completes the handshake (the
    // accept key is checked by tungstenite) and gets its welcome.
    let mut ws = connect(&server, &read).await;
    send(&mut ws, json!({"type": "ping", "id": 1})).await;
    assert_eq!(next(&mut ws).await["id"], 1);
}

/// Reads SSE events (`id`, parsed `data`) until `n` data events arrived.
async fn sse_events(resp: &mut reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(WAIT, resp.chunk())
            .await
            .expect("sse data in time")
            .expect("chunk")
            .expect("stream open");
        buf.push_str(std::str::from_utf8(&chunk).expect("utf8"));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut id = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                out.push((id, serde_json::from_str(&data).expect("json")));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_carries_the_same_messages_and_resumes_with_last_event_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[]);
    let http = client();
    let bad = http
        .get(server.url("/v1/stream?channels=activity&key=bk_r_nope"))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 401);
    let body: Value = bad.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_key");
    let write = http
        .get(server.url(&format!("/v1/stream?channels=activity&key={}", t.write_key)))
        .send()
        .await
        .expect("send");
    assert_eq!(write.status(), 403);
    let none = http
        .get(server.url(&format!("/v1/stream?key={read}")))
        .send()
        .await
        .expect("send");
    assert_eq!(none.status(), 400);
    let forbidden = http
        .get(server.url(&format!("/v1/stream?channels=notifications:ann&key={read}")))
        .send()
        .await
        .expect("send");
    assert_eq!(forbidden.status(), 403);

    let mut resp = http
        .get(server.url(&format!(
            "/v1/stream?channels=activity&events=Order%20Completed&key={read}"
        )))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    ingest(
        &server,
        &t.write_key,
        vec![
            track("s1", "p", "Order Completed"),
            track("s2", "p", "Product Viewed"),
            track("s3", "p", "Order Completed"),
            track("s4", "p", "Order Completed"),
        ],
    )
    .await;
    let got = sse_events(&mut resp, 4).await;
    assert_eq!(got[0].1["type"], "subscribed");
    let ids: Vec<&str> = got[1..]
        .iter()
        .map(|(_, v)| v["payload"]["message_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["s1", "s3", "s4"], "filtered by event name, in order");
    assert_eq!(got[1].1["seq"], 1);
    assert_eq!(got[2].1["seq"], 3);
    drop(resp);

    // Reconnect with the id of the second event: the third comes again.
    let resume_id = got[2].0.clone();
    let mut resp = http
        .get(server.url(&format!(
            "/v1/stream?channels=activity&events=Order%20Completed&key={read}"
        )))
        .header("Last-Event-ID", resume_id)
        .send()
        .await
        .expect("send");
    let again = sse_events(&mut resp, 2).await;
    assert_eq!(again[1].1["payload"]["message_id"], "s4");
    assert_eq!(again[1].1["seq"], 4);
    let bad_id = http
        .get(server.url(&format!("/v1/stream?channels=activity&key={read}")))
        .header("Last-Event-ID", "garbage!")
        .send()
        .await
        .expect("send");
    assert_eq!(bad_id.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_queries_push_new_results_only_when_they_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[("BEACON_REALTIME__QUERY_DEBOUNCE", "50ms")]);
    let mut ws = connect(&server, &read).await;
    let q = "SELECT count(*) AS orders FROM events WHERE event = 'Order Completed'";
    let sub = subscribe(
        &mut ws,
        json!({"type": "subscribe", "channel": "query:orders", "sql": q}),
    )
    .await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    let snap = until(&mut ws, 5, |m| m["channel"] == "query:orders").await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["payload"]["rows"], json!([[0]]));

    // Events that do not change the answer push nothing; an order does.
    ingest(
        &server,
        &t.write_key,
        vec![track("v1", "p", "Product Viewed")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // several debounce periods
    ingest(
        &server,
        &t.write_key,
        vec![track("o1", "p", "Order Completed")],
    )
    .await;
    let m = until(&mut ws, 10, |m| m["channel"] == "query:orders").await;
    assert_eq!(m["type"], "result");
    assert_eq!(
        m["payload"]["rows"],
        json!([[1]]),
        "the first pushed result is the changed one"
    );

    // A second client joins the same id without SQL, or with the same SQL;
    // different SQL under that id is refused.
    let mut other = connect(&server, &read).await;
    let joined = subscribe(
        &mut other,
        json!({"type": "subscribe", "channel": "query:orders"}),
    )
    .await;
    assert_eq!(joined["type"], "subscribed");
    let snap = until(&mut other, 5, |m| m["channel"] == "query:orders").await;
    assert_eq!(snap["payload"]["rows"], json!([[1]]));
    let clash = subscribe(
        &mut other,
        json!({"type": "subscribe", "channel": "query:orders", "sql": "SELECT 2"}),
    )
    .await;
    assert_eq!(clash["code"], "invalid_query");

    for (id, bad) in [
        ("syntax", "SELEC nothing"),
        ("ddl", "CREATE TABLE x (a INT)"),
        ("missing", "SELECT nope FROM events"),
    ] {
        let e = subscribe(
            &mut other,
            json!({"type": "subscribe", "channel": format!("query:{id}"), "sql": bad}),
        )
        .await;
        assert_eq!(e["type"], "error", "{bad}");
        assert_eq!(e["code"], "invalid_query", "{bad}: {e}");
    }
    let e = subscribe(
        &mut other,
        json!({"type": "subscribe", "channel": "query:new"}),
    )
    .await;
    assert_eq!(e["code"], "invalid_query", "a new id needs sql");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_closed_as_dead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &[("BEACON_REALTIME__HEARTBEAT", "200ms")]);
    let mut ws = connect(&server, &read).await;
    subscribe(&mut ws, json!({"type": "subscribe", "channel": "alerts"})).await;
    // A client that reads keeps answering pings and stays connected.
    send(&mut ws, json!({"type": "ping", "id": 1})).await;
    assert_eq!(until(&mut ws, 10, |m| m["type"] == "pong").await["id"], 1);
    // Not reading at all means no pongs: after two heartbeats the server
    // closes with 4009 (seen once the client reads again).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(close_code(&mut ws).await, 4009);
    let (status, _) = call(&server, Method::GET, "/healthz", &read, None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_subscriptions_is_closed_as_idle_and_shutdown_says_going_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let server = Server::start(
        &data,
        &[
            ("BEACON_REALTIME__HEARTBEAT", "100ms"),
            ("BEACON_REALTIME__IDLE_TIMEOUT", "300ms"),
        ],
    );
    let mut idle = connect(&server, &read).await;
    let mut busy = connect(&server, &read).await;
    subscribe(&mut busy, json!({"type": "subscribe", "channel": "alerts"})).await;
    // The subscribed client keeps reading (so it answers pings) on a task
    // of its own and reports what it sees.
    let (mut busy_tx, mut busy_rx) = busy.split();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        for _ in 0..10_000 {
            let frame = tokio::time::timeout(WAIT, busy_rx.next())
                .await
                .expect("a frame in time");
            let seen = match frame {
                Some(Ok(Message::Ping(_))) => "ping".to_owned(),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json");
                    format!("{}:{}", v["type"].as_str().unwrap_or(""), v["id"])
                }
                Some(Ok(Message::Close(Some(f)))) => format!("close:{}", u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => format!("ended:{other:?}"),
            };
            let end = seen.starts_with("close") || seen.starts_with("ended");
            let _ = seen_tx.send(seen);
            if end {
                return;
            }
        }
    });
    let mut expect = async |want: &str| {
        loop {
            let got = tokio::time::timeout(WAIT, seen.recv())
                .await
                .expect("in time")
                .expect("reader");
            if got == want {
                return;
            }
            assert!(
                !got.starts_with("close") && !got.starts_with("ended"),
                "wanted {want}, got {got}"
            );
        }
    };
    // The idle client reads (so it answers pings) but never subscribes:
    // closed with 4008 once idle_timeout has passed.
    assert_eq!(close_code(&mut idle).await, 4008);
    // The subscribed one is pinged, answers, and is still served.
    expect("ping").await;
    busy_tx
        .send(Message::text(json!({"type": "ping", "id": 7}).to_string()))
        .await
        .expect("send");
    expect("pong:7").await;
    // Shutdown: the server says so (1001) and exits cleanly.
    let stopping = tokio::task::spawn_blocking(move || server.stop());
    expect("close:1001").await;
    reader.await.expect("reader");
    let status = stopping.await.expect("join");
    assert!(status.success(), "{status}");
}
