//! Alerts and notifications end to end, with real parts on loopback: the
//! real server, an aiosmtpd SMTP server, an HTTP receiver that checks
//! webhook signatures with the reference `standardwebhooks` library, and
//! tokio-tungstenite clients on the `alerts` and `notifications:<user>`
//! channels.
//!
//! Every wait is a bounded poll with a timeout; no test asserts speed.
//! Retry timing is asserted exactly with an injected clock in
//! `realtime/tests/delivery.rs`.

use crate::common;

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::{PyReceiver, Server, call, create_read_key, create_tenant, fast_env, scalar, sql};
use common::ws::{self, Ws};
use common::WAIT;
use reqwest::Method;
use serde_json::{Value, json};

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn at(offset: chrono::Duration) -> String {
    (Utc::now() + offset).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn env(smtp: &PyReceiver) -> Vec<(&'static str, String)> {
    let mut e: Vec<(&'static str, String)> = fast_env()
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    e.extend([
        ("BEACON_NOTIFY__SMTP__HOST", "127.0.0.1".to_owned()),
        ("BEACON_NOTIFY__SMTP__PORT", smtp.port.to_string()),
        (
            "BEACON_NOTIFY__SMTP__FROM",
            "Beacon Alerts <alerts@beacon.test>".to_owned(),
        ),
        ("BEACON_NOTIFY__RETRY_BASE", "300ms".to_owned()),
        ("BEACON_NOTIFY__POLL_INTERVAL", "50ms".to_owned()),
        ("BEACON_ALERTS__TICK", "100ms".to_owned()),
    ]);
    e
}

fn start(data: &std::path::Path, env: &[(&'static str, String)]) -> Server {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(data, &pairs)
}

/// A connection subscribed to `channel`.
async fn subscribed(server: &Server, query: &str, channel: &str) -> Ws {
    let mut conn = ws::open(&server.ws_url(query)).await;
    let sub = ws::subscribe(&mut conn, json!({"type": "subscribe", "channel": channel})).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    conn
}

async fn ingest(server: &Server, key: &str, batch: Vec<Value>) {
    let (status, body) = call(
        server,
        Method::POST,
        "/v1/batch",
        key,
        Some(json!({ "batch": batch })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

fn failure(id: &str, ts: &str) -> Value {
    json!({"type": "track", "messageId": id, "userId": "c1", "event": "Payment Failed", "timestamp": ts, "properties": {"amount": 10}})
}

/// Polls `f` every 100 ms until it returns Some (at most `WAIT`).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Quiet hours that contain now (UTC): from an hour ago to two hours on.
fn quiet_now() -> Value {
    let h = |d: i64| {
        (Utc::now() + chrono::Duration::hours(d))
            .format("%H:00")
            .to_string()
    };
    json!({"start": h(-1), "end": h(2)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_once_grouped_on_every_channel_and_resolves() {
    let smtp = PyReceiver::start(&["smtp"]);
    let hook = PyReceiver::start(&["webhook"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "rosa");
    let read = create_read_key(&data, "rosa");
    let server = start(&data, &env(&smtp));
    let admin = t.admin_key.as_str();

    // Users, branding, a webhook endpoint that fails its first attempt.
    let (s, ann) = call(
        &server,
        Method::PUT,
        "/v1/users/ann",
        admin,
        Some(json!({"email": "ann@shop.test", "name": "Ann", "role": "owner"})),
    )
    .await;
    assert_eq!(s, 200, "{ann}");
    let (s, bob) = call(&server, Method::PUT, "/v1/users/bob", admin, Some(json!({"email": "bob@shop.test", "role": "viewer", "preferences": {"quiet_hours": quiet_now()}}))).await;
    assert_eq!(s, 200, "{bob}");
    let (s, _) = call(&server, Method::PUT, "/v1/notify/branding", admin, Some(json!({"name": "Rosa's <Shop>", "color": "#aa0000", "footer": "Rosa's Shop, 1 Main St"}))).await;
    assert_eq!(s, 200);
    let (s, ep) = call(
        &server,
        Method::POST,
        "/v1/webhooks",
        admin,
        Some(json!({"url": format!("{}/hook", hook.base())})),
    )
    .await;
    assert_eq!(s, 201, "{ep}");
    hook.configure(json!({"secret": ep["secrets"][0]["secret"], "fail_first": 1}),
    )
    .await;

    // Live channels: the alert state feed and Ann's inbox.
    let mut alerts = subscribed(&server, &format!("?key={read}"), "alerts").await;
    let (s, token) = call(
        &server,
        Method::POST,
        "/v1/realtime/tokens",
        admin,
        Some(json!({"user": "ann"})),
    )
    .await;
    assert_eq!(s, 200, "{token}");
    let mut inbox_ws = subscribed(
        &server,
        &format!("?token={}", token["token"].as_str().expect("token")),
        "notifications:ann",
    )
    .await;

    // More than 2 payment failures in 10 s, held for 2 s.
    let rule = json!({
        "name": "Payment failures",
        "query": {"metric": "payment_failures", "window": "10s"},
        "condition": {"type": "threshold", "op": "above", "value": 2},
        "schedule": {"every": "1s"},
        "for": "2s",
        "severity": "warning",
        "labels": {"team": "payments"},
        "notify": {"users": ["ann", "bob"], "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
    });
    let (s, created) = call(&server, Method::POST, "/v1/alerts/rules", admin, Some(rule)).await;
    assert_eq!(s, 201, "{created}");
    let rule_id = created["id"].as_str().expect("id").to_owned();

    ingest(
        &server,
        &t.write_key,
        (0..3)
            .map(|i| failure(&format!("pf-{i}"), &now()))
            .collect(),
    )
    .await;

    // The alerts channel shows Normal -> Pending -> Firing, in order.
    let pending = ws::until(&mut alerts, 500, |m| {
        m["type"] == "alert" && m["payload"]["to"] == "pending"
    })
    .await;
    assert_eq!(pending["payload"]["from"], "normal");
    assert_eq!(pending["payload"]["value"], 3.0);
    let firing = ws::until(&mut alerts, 500, |m| {
        m["type"] == "alert" && m["payload"]["to"] != "pending"
    })
    .await;
    assert_eq!(firing["payload"]["to"], "firing", "{firing}");
    assert!(firing["seq"].as_u64() > pending["seq"].as_u64());

    // One grouped notification: live to Ann, in her inbox, by email and webhook.
    let pushed = ws::until(&mut inbox_ws, 500, |m| m["type"] == "notification").await;
    assert_eq!(pushed["payload"]["title"], "[FIRING:1] Payment failures");
    assert_eq!(pushed["payload"]["data"]["kind"], "firing");
    assert_eq!(pushed["payload"]["data"]["rule_id"], json!(rule_id));
    let (s, inbox) = call(&server, Method::GET, "/v1/inbox?user=ann", &read, None).await;
    assert_eq!(s, 200, "{inbox}");
    assert_eq!(inbox["unread"], 1);
    assert_eq!(
        inbox["notifications"][0]["title"],
        "[FIRING:1] Payment failures"
    );
    let notification_id = inbox["notifications"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let mail = smtp.next_json(WAIT).expect("an email");
    assert_eq!(
        mail["rcpt_tos"],
        json!(["ann@shop.test"]),
        "Bob is in quiet hours: {mail}"
    );
    assert_eq!(mail["mail_from"], "alerts@beacon.test");
    assert_eq!(
        mail["headers"]["subject"],
        "[Warning] [FIRING:1] Payment failures"
    );
    assert!(
        mail["headers"]["from"]
            .as_str()
            .expect("from")
            .contains("alerts@beacon.test")
    );
    assert!(
        mail["headers"]["message-id"]
            .as_str()
            .expect("message id")
            .contains("@beacon")
    );
    assert_eq!(mail["multipart"], "multipart/alternative");
    let text = mail["text"].as_str().expect("text part");
    assert!(
        text.contains("payment_failures") || text.contains("Payment failures"),
        "{text}"
    );
    assert!(text.contains("3.00 (firing)"), "{text}");
    assert!(
        text.contains("Rosa's <Shop>"),
        "plain text is not escaped: {text}"
    );
    let html = mail["html"].as_str().expect("html part");
    assert!(
        html.contains("#aa0000") && html.contains("Rosa&#x27;s &lt;Shop&gt;"),
        "branded and escaped: {html}"
    );

    let log = eventually("the webhook to be accepted", || async {
        let log = hook.log().await;
        (log["accepted"].as_object().is_some_and(|a| a.len() == 1)).then_some(log)
    })
    .await;
    let attempts = log["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "one failure, one success: {log}");
    assert_eq!(attempts[0]["id"], attempts[1]["id"]);
    assert!(
        attempts.iter().all(|a| a["verified"] == json!(true)),
        "{log}"
    );
    assert_eq!(attempts[1]["payload"]["type"], "com.beacon.alert.firing");
    assert_eq!(
        attempts[1]["payload"]["data"]["notification_id"],
        json!(notification_id)
    );

    // Delivery status: Bob's email waits for the end of his quiet hours.
    let (s, n) = call(
        &server,
        Method::GET,
        &format!("/v1/notifications/{notification_id}"),
        &read,
        None,
    )
    .await;
    assert_eq!(s, 200, "{n}");
    let deliveries = n["deliveries"].as_array().expect("deliveries");
    let find = |ch: &str, target: &str| {
        deliveries
            .iter()
            .find(|d| d["channel"] == ch && d["target"] == target)
            .cloned()
            .expect("delivery")
    };
    assert_eq!(find("email", "bob")["status"], "deferred");
    assert_eq!(find("email", "bob")["reason"], "quiet hours");
    assert_eq!(find("inbox", "ann")["status"], "delivered");
    assert!(
        deliveries
            .iter()
            .any(|d| d["channel"] == "webhook" && d["target"] == ep["id"])
    );

    // The data ages out of the window: resolved, once, everywhere.
    let resolved = ws::until(&mut alerts, 500, |m| {
        m["type"] == "alert" && m["payload"]["to"] == "resolved"
    })
    .await;
    assert_eq!(resolved["payload"]["from"], "firing");
    let pushed = ws::until(&mut inbox_ws, 500, |m| m["type"] == "notification").await;
    assert_eq!(pushed["payload"]["title"], "[RESOLVED] Payment failures");
    let mail = smtp.next_json(WAIT).expect("the resolved email");
    assert_eq!(mail["headers"]["subject"], "[RESOLVED] Payment failures");
    eventually("the resolved webhook", || async {
        let log = hook.log().await;
        log["attempts"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["payload"]["type"] == "com.beacon.alert.resolved")
                .cloned()
        })
    })
    .await;
    assert!(
        smtp.next_json(Duration::from_millis(1500)).is_none(),
        "no other email (Bob deferred, no repeats)"
    );

    // History through the API and SQL.
    let (s, h) = call(
        &server,
        Method::GET,
        &format!("/v1/alerts/history?rule={rule_id}"),
        &read,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let states: Vec<&str> = h["history"]
        .as_array()
        .expect("history")
        .iter()
        .rev()
        .map(|r| r["to"].as_str().expect("to"))
        .collect();
    assert_eq!(&states[..3], &["pending", "firing", "resolved"], "{h}");
    let q = format!(
        "SELECT to_state FROM alert_history WHERE rule_id = '{rule_id}' ORDER BY at LIMIT 3"
    );
    let rows = sql(&server, &read, &q).await;
    assert_eq!(rows["rows"], json!([["pending"], ["firing"], ["resolved"]]));
    assert!(scalar(&server, &read, "SELECT count(*) FROM notification_deliveries WHERE channel = 'email' AND status = 'delivered'").await >= 2);

    // Ann reads everything; the unread count drops to zero and is pushed.
    let (s, m) = call(
        &server,
        Method::POST,
        "/v1/inbox/mark",
        &read,
        Some(json!({"user": "ann", "action": "read"})),
    )
    .await;
    assert_eq!(
        (s, m["changed"].as_u64(), m["unread"].as_u64()),
        (200, Some(2), Some(0)),
        "{m}"
    );
    let pushed = ws::until(&mut inbox_ws, 500, |m| {
        m["type"] == "inbox" && m["payload"]["action"] == "read"
    })
    .await;
    assert_eq!(pushed["payload"]["unread"], 0);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_preferences_templates_simulation_and_bad_input() {
    let smtp = PyReceiver::start(&["smtp"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "bea");
    let read = create_read_key(&data, "bea");
    let server = start(&data, &env(&smtp));
    let admin = t.admin_key.as_str();
    for (id, prefs) in [
        ("cat", json!({})),
        ("dan", json!({"categories": {"alert": {"email": false}}})),
        ("eve", json!({"quiet_hours": quiet_now()})),
    ] {
        let (s, u) = call(
            &server,
            Method::PUT,
            &format!("/v1/users/{id}"),
            admin,
            Some(json!({"email": format!("{id}@bea.test"), "preferences": prefs})),
        )
        .await;
        assert_eq!(s, 200, "{u}");
    }

    // Invalid rules are refused at creation, with the reason.
    let base = json!({"name": "r", "query": {"metric": "orders", "window": "1h"}, "condition": {"type": "threshold", "op": "below", "value": 1}});
    let with = |patch: Value| {
        let mut r = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            r[k] = v.clone();
        }
        r
    };
    let cases = [
        (
            with(json!({"query": {"sql": "SELEC nothing"}})),
            "query.sql",
        ),
        (
            with(json!({"condition": {"type": "threshold", "op": "above", "value": 100, "recover": 110}})),
            "condition.recover",
        ),
        (
            with(json!({"query": {"sql": "DROP TABLE events"}})),
            "query.sql",
        ),
        (
            with(json!({"query": {"sql": "SELECT count(*) FROM no_such_table"}})),
            "query.sql",
        ),
        (
            with(json!({"schedule": {"cron": "every tuesday"}})),
            "schedule.cron",
        ),
        (
            with(json!({"query": {"metric": "happiness"}})),
            "unknown metric",
        ),
        (
            with(json!({"schedule": {"every": "1m"}, "for": "10s"})),
            "shorter than the evaluation interval",
        ),
        (with(json!({"schedule": {"every": "0s"}})), "schedule.every"),
        (with(json!({"for": "400d"})), "at most 30 days"),
        (with(json!({"for": "soon"})), "invalid rule"),
        (
            with(json!({"schedule": {"every": "1m", "cron": "* * * * *"}})),
            "exactly one",
        ),
        (
            with(json!({"notify": {"users": ["nobody"]}})),
            "unknown user",
        ),
        (
            with(json!({"condition": {"type": "threshold", "op": "sideways", "value": 1}})),
            "invalid rule",
        ),
        (
            with(
                json!({"condition": {"type": "anomaly"}, "query": {"metric": "payment_failures"}}),
            ),
            "anomaly",
        ),
        (with(json!({"severity": "apocalyptic"})), "severity"),
        (with(json!({"surprise": true})), "unknown field"),
    ];
    for (rule, needle) in cases {
        let (s, e) = call(
            &server,
            Method::POST,
            "/v1/alerts/rules",
            admin,
            Some(rule.clone()),
        )
        .await;
        assert_eq!(s, 400, "{rule} -> {e}");
        let msg = e["error"]["message"].as_str().expect("message");
        assert!(msg.contains(needle), "{rule}: {msg:?} lacks {needle:?}");
    }
    let (s, _) = call(
        &server,
        Method::POST,
        "/v1/alerts/rules",
        &read,
        Some(base.clone()),
    )
    .await;
    assert_eq!(s, 403, "a read key cannot create rules");
    assert!(scalar(&server, &read, "SELECT count(*) FROM alert_instances").await == 0);

    // A silence mutes notifications but the state is still recorded.
    let rule = with(json!({
        "name": "High refunds",
        "query": {"metric": "refunds", "window": "1h"},
        "condition": {"type": "threshold", "op": "above", "value": 100},
        "schedule": {"every": "1s"},
        "severity": "critical",
        "notify": {"users": ["cat"], "group_wait": "0s", "group_interval": "1s"}
    }));
    let (s, r) = call(&server, Method::POST, "/v1/alerts/rules", admin, Some(rule)).await;
    assert_eq!(s, 201, "{r}");
    let rule_id = r["id"].as_str().expect("id").to_owned();
    let (s, sil) = call(
        &server,
        Method::POST,
        "/v1/alerts/silences",
        admin,
        Some(json!({"rule_id": rule_id, "duration": "1h", "comment": "known issue"})),
    )
    .await;
    assert_eq!(s, 201, "{sil}");
    let refund = json!({"type": "track", "messageId": "rf-1", "userId": "c9", "event": "Order Refunded", "timestamp": now(), "properties": {"order_id": "o1", "total": 250}});
    ingest(&server, &t.write_key, vec![refund]).await;
    let (s, ev) = call(
        &server,
        Method::POST,
        &format!("/v1/alerts/rules/{rule_id}/evaluate"),
        admin,
        None,
    )
    .await;
    assert_eq!(s, 200, "{ev}");
    assert_eq!(ev["instances"][0]["state"], "firing", "{ev}");
    let (_, h) = call(
        &server,
        Method::GET,
        &format!("/v1/alerts/history?rule={rule_id}"),
        &read,
        None,
    )
    .await;
    assert_eq!(h["history"][0]["silenced"], true, "{h}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, inbox) = call(&server, Method::GET, "/v1/inbox?user=cat", &read, None).await;
    assert_eq!(inbox["unread"], 0, "silenced: {inbox}");
    assert!(smtp.next_json(Duration::from_millis(500)).is_none());
    // Lifting the silence lets the next change through (here: resolve + refire is not needed;
    // the still-firing instance is sent at the next group flush, when that
    // flush comes after the silence is lifted: below, it is skipped if it
    // arrives).
    let (s, _) = call(
        &server,
        Method::DELETE,
        &format!("/v1/alerts/silences/{}", sil["id"].as_str().expect("id")),
        admin,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &server,
        Method::DELETE,
        &format!("/v1/alerts/rules/{rule_id}"),
        admin,
        None,
    )
    .await;
    assert_eq!(s, 204);

    // Preferences and quiet hours on direct notifications; critical bypasses quiet hours.
    let send = json!({"recipients": ["cat", "dan", "eve"], "category": "alert", "severity": "warning", "title": "Stock count due", "body": "Count the shelves", "idempotency_key": "stock-2026-12"});
    let (s, first) = call(
        &server,
        Method::POST,
        "/v1/notifications",
        admin,
        Some(send.clone()),
    )
    .await;
    assert_eq!(s, 202, "{first}");
    let (s, again) = call(
        &server,
        Method::POST,
        "/v1/notifications",
        admin,
        Some(send),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (again["id"].clone(), again["duplicate"].clone()),
        (first["id"].clone(), json!(true))
    );
    let status_of = |v: &Value, ch: &str, user: &str| {
        v["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .find(|d| d["channel"] == ch && d["target"] == user)
            .map(|d| (d["status"].clone(), d["reason"].clone()))
            .expect("delivery")
    };
    assert_eq!(
        status_of(&first, "email", "dan"),
        (json!("suppressed"), json!("preference"))
    );
    assert_eq!(status_of(&first, "email", "eve").0, json!("deferred"));
    assert_eq!(status_of(&first, "inbox", "dan").0, json!("delivered"));
    // The silenced alert may be flushed once its silence was lifted, at any
    // point below: the next email that is not it.
    let next_mail = |wait: Duration| {
        std::iter::from_fn(|| smtp.next_json(wait))
            .find(|m| m["headers"]["subject"] != "[CRITICAL] [FIRING:1] High refunds")
    };
    let mail = next_mail(WAIT).expect("Cat's email");
    assert_eq!(mail["rcpt_tos"], json!(["cat@bea.test"]));
    assert_eq!(mail["headers"]["subject"], "[Warning] Stock count due");
    let (s, crit) = call(&server, Method::POST, "/v1/notifications", admin, Some(json!({"recipients": ["eve"], "category": "security", "severity": "critical", "title": "Card testing attack", "channels": ["email"]}))).await;
    assert_eq!(s, 202, "{crit}");
    let mail = next_mail(WAIT).expect("Eve's critical email despite quiet hours");
    assert_eq!(mail["rcpt_tos"], json!(["eve@bea.test"]));
    assert_eq!(mail["headers"]["subject"], "[CRITICAL] Card testing attack");
    assert!(
        next_mail(Duration::from_millis(1000)).is_none(),
        "Eve's warning stays deferred"
    );

    // Simulation over past data: three failures two hours ago would have fired then.
    // (The silenced rule's deletion may race one last evaluation, so the
    // history is counted here, not assumed.)
    let history_before = scalar(&server, &read, "SELECT count(*) FROM alert_history").await;
    let past: Vec<Value> = (0..3)
        .map(|i| {
            failure(
                &format!("old-{i}"),
                &at(chrono::Duration::minutes(-120 + i)),
            )
        })
        .collect();
    ingest(&server, &t.write_key, past).await;
    let sim_rule = json!({
        "name": "Payment failures", "query": {"metric": "payment_failures", "window": "30m"},
        "condition": {"type": "threshold", "op": "above", "value": 2}, "schedule": {"every": "10m"}, "for": "10m"
    });
    let (s, sim) = call(
        &server,
        Method::POST,
        "/v1/alerts/simulate",
        &read,
        Some(json!({"rule": sim_rule, "from": at(chrono::Duration::hours(-3)), "to": now()})),
    )
    .await;
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["firing"], 1, "{sim}");
    let first_firing =
        chrono::DateTime::parse_from_rfc3339(sim["first_firing_at"].as_str().expect("when"))
            .expect("time");
    let ago = Utc::now().signed_duration_since(first_firing);
    assert!(
        ago > chrono::Duration::minutes(80) && ago < chrono::Duration::minutes(125),
        "fired {ago} ago"
    );
    let kinds: Vec<&str> = sim["transitions"]
        .as_array()
        .expect("t")
        .iter()
        .map(|t| t["to"].as_str().expect("to"))
        .collect();
    assert_eq!(kinds, ["pending", "firing", "resolved", "normal"], "{sim}");
    // One point per evaluation (one instance), the firing ones where the
    // value was above the threshold.
    let points = sim["points"].as_array().expect("points");
    assert_eq!(points.len() as u64, sim["evaluations"].as_u64().expect("n"), "{sim}");
    for p in points.iter().filter(|p| p["state"] == "firing") {
        assert!(p["value"].as_f64().expect("value") > 2.0, "{p}");
    }
    assert!(points.iter().any(|p| p["state"] == "firing"), "{sim}");
    let (s, e) = call(
        &server,
        Method::POST,
        "/v1/alerts/simulate",
        &read,
        Some(json!({"rule": sim_rule, "from": now(), "to": at(chrono::Duration::hours(-1))})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(
        scalar(&server, &read, "SELECT count(*) FROM alert_history").await,
        history_before,
        "simulation stores nothing"
    );

    // Templates: low stock per product.
    let (s, list) = call(&server, Method::GET, "/v1/alerts/templates", &read, None).await;
    assert_eq!(s, 200);
    assert_eq!(list["templates"].as_array().map(Vec::len), Some(7));
    let (s, low) = call(
        &server,
        Method::POST,
        "/v1/alerts/templates/low_stock",
        admin,
        Some(json!({"threshold": 5, "users": ["cat"]})),
    )
    .await;
    assert_eq!(s, 201, "{low}");
    let stock = |id: &str, p: &str, q: i64| json!({"type": "track", "messageId": id, "userId": "system", "event": "Inventory Updated", "timestamp": now(), "properties": {"product_id": p, "quantity": q}});
    ingest(
        &server,
        &t.write_key,
        vec![
            stock("s1", "mug", 40),
            stock("s2", "tea", 3),
            stock("s3", "pot", 9),
        ],
    )
    .await;
    let (s, ev) = call(
        &server,
        Method::POST,
        &format!(
            "/v1/alerts/rules/{}/evaluate",
            low["id"].as_str().expect("id")
        ),
        admin,
        None,
    )
    .await;
    assert_eq!(s, 200, "{ev}");
    let firing: Vec<&Value> = ev["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| i["state"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "{ev}");
    assert_eq!(firing[0]["labels"]["product_id"], "tea");
    let (s, e) = call(
        &server,
        Method::POST,
        "/v1/alerts/templates/low_stock",
        admin,
        Some(json!({"threshold": "five"})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, _) = call(
        &server,
        Method::POST,
        "/v1/alerts/templates/teleport",
        admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 404);

    // Hostile and malformed requests: structured errors, nothing lost.
    // (method, path, key, body, status, error code where it is asserted)
    type Refusal<'a> = (Method, &'a str, &'a str, Value, u16, Option<&'a str>);
    let refusals: Vec<Refusal<'_>> = vec![
        (
            Method::POST,
            "/v1/notifications",
            admin,
            json!({"recipients": ["ghost"], "category": "x", "title": "t"}),
            400,
            Some("invalid_request"),
        ),
        (
            Method::POST,
            "/v1/notifications",
            admin,
            json!({"recipients": ["cat"], "category": "x", "title": "t", "channels": ["pigeon"]}),
            400,
            None,
        ),
        (
            Method::POST,
            "/v1/notifications",
            admin,
            json!({"recipients": ["cat"], "category": "x", "title": ""}),
            400,
            None,
        ),
        (
            Method::POST,
            "/v1/webhooks",
            admin,
            json!({"url": "ftp://example.com"}),
            400,
            None,
        ),
        (Method::PUT, "/v1/users/bad%20id", admin, json!({}), 400, None),
        (
            Method::PUT,
            "/v1/users/cat",
            admin,
            json!({"email": "not an address"}),
            400,
            None,
        ),
        (
            Method::PUT,
            "/v1/users/cat/preferences",
            admin,
            json!({"quiet_hours": {"start": "25:00", "end": "07:00"}}),
            400,
            None,
        ),
        (
            Method::POST,
            "/v1/inbox/mark",
            &read,
            json!({"user": "cat", "action": "explode"}),
            400,
            None,
        ),
    ];
    for (method, path, key, body, status, code) in refusals {
        let (s, e) = call(&server, method.clone(), path, key, Some(body.clone())).await;
        assert_eq!(s, status, "{method} {path} {body} -> {e}");
        if let Some(code) = code {
            assert_eq!(e["error"]["code"].as_str(), Some(code), "{method} {path} -> {e}");
        }
    }
    let big = "x".repeat(300 * 1024);
    let (s, e) = call(
        &server,
        Method::POST,
        "/v1/alerts/rules",
        admin,
        Some(json!({"name": big})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let resp = common::client()
        .post(server.url("/v1/alerts/rules"))
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let (s, _) = call(&server, Method::GET, "/v1/inbox", &read, None).await;
    assert_eq!(s, 400, "a key needs ?user=");
    let (s, _) = call(&server, Method::GET, "/v1/inbox", "bt_forged.token", None).await;
    assert_eq!(s, 401);
    // The server still serves and the data is intact.
    let (_, inbox) = call(&server, Method::GET, "/v1/inbox?user=dan", &read, None).await;
    assert_eq!(inbox["notifications"][0]["title"], "Stock count due");
    assert_eq!(
        scalar(
            &server,
            &read,
            "SELECT count(*) FROM events WHERE event = 'Payment Failed'"
        )
        .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_delivery_loses_nothing_and_receivers_dedupe_by_webhook_id() {
    let smtp = PyReceiver::start(&["smtp"]);
    let hook = PyReceiver::start(&["webhook"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "crash");
    let read = create_read_key(&data, "crash");
    let env = env(&smtp);
    let server = start(&data, &env);
    let (s, ep) = call(
        &server,
        Method::POST,
        "/v1/webhooks",
        &t.admin_key,
        Some(json!({"url": format!("{}/hook", hook.base())})),
    )
    .await;
    assert_eq!(s, 201);
    // The receiver holds the first request for 4 s: the sender dies meanwhile.
    hook.configure(json!({"secret": ep["secrets"][0]["secret"], "hold_first": 4}),
    )
    .await;
    let (s, sent) = call(
        &server,
        Method::POST,
        "/v1/notifications",
        &t.admin_key,
        Some(json!({"category": "order", "title": "Big order", "channels": ["webhook"]})),
    )
    .await;
    assert_eq!(s, 202, "{sent}");
    let id = sent["deliveries"][0]["id"]
        .as_str()
        .expect("delivery id")
        .to_owned();
    eventually("the request to arrive", || async {
        (hook.log().await["held"]
            .as_array()
            .is_some_and(|h| !h.is_empty()))
        .then_some(())
    })
    .await;
    server.crash();
    let server = start(&data, &env);
    let log = eventually("the delivery after the restart", || async {
        let log = hook.log().await;
        log["accepted"].get(&id).is_some().then_some(log)
    })
    .await;
    let ids: std::collections::HashSet<&str> = log["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every attempt carries the same webhook-id: {log}"
    );
    assert!(
        log["attempts"]
            .as_array()
            .expect("a")
            .iter()
            .all(|a| a["verified"] == json!(true))
    );
    let d = eventually("status delivered", || async {
        let (_, n) = call(
            &server,
            Method::GET,
            &format!("/v1/notifications/{}", sent["id"].as_str().expect("id")),
            &read,
            None,
        )
        .await;
        (n["deliveries"][0]["status"] == "delivered").then_some(n)
    })
    .await;
    assert_eq!(d["deliveries"][0]["id"], json!(id));
}

/// Money thresholds compare exactly: a thousand orders of 0.10 are
/// 100.00 (summed in floating point they would be 99.9999999999986), so
/// "revenue below 100" does not fire on them and "revenue below 100.01"
/// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_thresholds_compare_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Cafe");
    let read = create_read_key(&data, "Cafe");
    let server = Server::start(&data, &[]);
    let orders: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"type": "track", "messageId": format!("dime-{i}"), "userId": format!("c{}", i % 50),
                   "event": "Order Completed", "timestamp": at(chrono::Duration::minutes(-120) + chrono::Duration::milliseconds(i)),
                   "properties": {"order_id": format!("dime-{i}"), "revenue": "0.10"}})
        })
        .collect();
    ingest(&server, &t.write_key, orders).await;
    let simulate = |threshold: Value| {
        let server = &server;
        let read = &read;
        async move {
            let rule = json!({
                "name": "Revenue below", "query": {"metric": "revenue", "window": "1h"},
                "condition": {"type": "threshold", "op": "below", "value": threshold}, "schedule": {"every": "5m"}
            });
            // Every evaluation's window holds all thousand orders.
            let (s, sim) = call(
                server,
                Method::POST,
                "/v1/alerts/simulate",
                read,
                Some(json!({"rule": rule, "from": at(chrono::Duration::minutes(-110)), "to": at(chrono::Duration::minutes(-70))})),
            )
            .await;
            assert_eq!(s, 200, "{sim}");
            sim
        }
    };
    let sim = simulate(json!(100)).await;
    let points = sim["points"].as_array().expect("points");
    assert!(!points.is_empty(), "{sim}");
    for p in points {
        assert_eq!(p["value"], json!(100.0), "the sum is exact: {sim}");
    }
    assert_eq!(sim["firing"], 0, "100.00 is not below 100: {sim}");
    let sim = simulate(json!(100.01)).await;
    assert!(sim["firing"].as_u64().expect("firing") >= 1, "100.00 is below 100.01: {sim}");
    assert!(server.stop().success());
}
