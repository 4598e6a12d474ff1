//! Embed tokens against the real server: a customer's token sees that
//! customer's rows only (analytics, SQL, the live activity channel), a
//! workspace-wide token (a TV link) gets the dashboards but no SQL, both
//! reach only the listed routes, and tampered, forged, expired and revoked
//! tokens are refused. The browser side (components on a portal page of
//! another origin, TV mode) is in web.rs.

use crate::common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{SecondsFormat, Utc};
use common::ws::{self, next, subscribe, until};
use common::{Server, call, create_tenant};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};

fn order(id: &str, user: &str, revenue: &str) -> Value {
    json!({"type": "track", "messageId": id, "userId": user, "event": "Order Completed",
           "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
           "properties": {"order_id": id, "revenue": revenue.parse::<f64>().expect("num"), "currency": "USD"}})
}

async fn mint(server: &Server, admin: &str, body: Value) -> (String, String) {
    let (status, answer) = call(server, Method::POST, "/v1/embed/tokens", admin, Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    (
        answer["token"].as_str().expect("token").to_owned(),
        answer["id"].as_str().expect("id").to_owned(),
    )
}

/// A token with `claims` signed with the server's secret (as only the
/// server can: the test reads the secret file of its data directory).
fn sign(data: &std::path::Path, claims: &Value) -> String {
    sign_with(&std::fs::read(data.join("realtime.secret")).expect("secret"), claims)
}

/// A token with `claims` signed with `secret`.
fn sign_with(secret: &[u8], claims: &Value) -> String {
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("key");
    mac.update(payload.as_bytes());
    format!(
        "be_{payload}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn claims_of(token: &str) -> Value {
    let payload = token
        .strip_prefix("be_")
        .and_then(|t| t.split('.').next())
        .expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_token_sees_only_that_customers_rows_and_tampering_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Portal");
    let server = Server::start(&data, &common::fast_env());
    let batch = vec![
        order("o1", "cus_42", "100.25"),
        order("o2", "cus_42", "50.50"),
        order("o3", "cus_7", "999.99"),
        order("o4", "cus_7", "1.00"),
    ];
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &t.write_key,
        Some(json!({"batch": batch})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (token, id) = mint(
        &server,
        &t.admin_key,
        json!({"name": "Acme portal", "customer": "cus_42"}),
    )
    .await;
    assert!(token.starts_with("be_"), "{token}");

    // Analytics: the customer's revenue, not the workspace's.
    let (status, revenue) = call(
        &server,
        Method::GET,
        "/v1/analytics/revenue?range=today",
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{revenue}");
    assert_eq!(revenue["summary"]["gross"], "150.7500", "{revenue}");
    assert_eq!(revenue["summary"]["orders"], 2, "{revenue}");
    let (_, whole) = call(
        &server,
        Method::GET,
        "/v1/analytics/revenue?range=today",
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!(whole["summary"]["gross"], "1151.7400", "{whole}");

    // SQL: every way of reaching another customer's rows finds none.
    for (query, want) in [
        ("SELECT count(*) FROM events", json!(2)),
        (
            "SELECT count(*) FROM events WHERE user_id = 'cus_7'",
            json!(0),
        ),
        ("SELECT count(*) FROM orders", json!(2)),
        ("SELECT count(DISTINCT user_id) FROM events", json!(1)),
        (
            "SELECT count(*) FROM (SELECT * FROM events UNION ALL SELECT * FROM events WHERE user_id <> 'cus_42')",
            json!(2),
        ),
        (
            "SELECT count(*) FROM events e1 JOIN events e2 ON e1.user_id <> e2.user_id",
            json!(0),
        ),
    ] {
        let (status, answer) = call(
            &server,
            Method::POST,
            "/v1/sql",
            &token,
            Some(json!({"query": query})),
        )
        .await;
        assert_eq!(status, 200, "{query}: {answer}");
        assert_eq!(answer["rows"][0][0], want, "{query}: {answer}");
    }
    // Nothing computed over the whole workspace is there.
    let (status, answer) = call(
        &server,
        Method::POST,
        "/v1/sql",
        &token,
        Some(json!({"query": "SELECT * FROM alert_history"})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");

    // The workspace's settings, not its size.
    let (status, ws) = call(&server, Method::GET, "/v1/workspace", &token, None).await;
    assert_eq!(status, 200, "{ws}");
    assert_eq!(ws["workspace"]["currency"], "USD");
    assert!(ws.get("stats").is_none(), "{ws}");

    // Routes outside the list: 403, whatever their class.
    for (method, path) in [
        (Method::GET, "/v1/users"),
        (Method::GET, "/v1/forecasts"),
        (Method::GET, "/v1/segments"),
        (Method::GET, "/v1/alerts/rules"),
        (Method::GET, "/v1/audit"),
        (Method::GET, "/v1/embed/tokens"),
        (Method::POST, "/v1/embed/tokens"),
        (Method::GET, "/v1/inbox"),
        (Method::GET, "/v1/queries"),
    ] {
        let (status, answer) = call(&server, method.clone(), path, &token, Some(json!({}))).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    }
    let (status, _) = call(
        &server,
        Method::PATCH,
        "/v1/workspace",
        &token,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &token,
        Some(json!({"batch": [order("o9", "cus_42", "1")]})),
    )
    .await;
    assert!(
        status == 401 || status == 403,
        "an embed token sends no events: {status}"
    );

    // Tampering: the other customer swapped into the payload under the
    // old signature, a token of another server, junk.
    let mut claims = claims_of(&token);
    claims["c"] = json!("cus_7");
    let sig = token.rsplit_once('.').expect("sig").1;
    let swapped = format!("be_{}.{sig}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let other_server = sign_with(&[9u8; 32], &claims);
    for bad in [
        swapped.as_str(),
        other_server.as_str(),
        "be_",
        "be_x.y",
        "be_...",
        "be_a.b.c",
    ] {
        let (status, answer) = call(&server, Method::GET, "/v1/analytics/revenue", bad, None).await;
        assert_eq!(status, 401, "{bad}: {answer}");
    }
    // Signed by this server, but expired; and an id it never minted.
    let mut expired = claims_of(&token);
    expired["exp"] = json!(Utc::now().timestamp() - 1);
    let (status, answer) = call(
        &server,
        Method::GET,
        "/v1/analytics/revenue",
        &sign(&data, &expired),
        None,
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{answer}"
    );
    let mut unknown = claims_of(&token);
    unknown["id"] = json!("emb_never");
    let (status, _) = call(
        &server,
        Method::GET,
        "/v1/analytics/revenue",
        &sign(&data, &unknown),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // The live activity channel: only this customer's events arrive.
    let mut socket = ws::open(&server.ws_url(&format!("?token={token}"))).await;
    assert_eq!(next(&mut socket).await["type"], "welcome");
    let refused = subscribe(
        &mut socket,
        json!({"type": "subscribe", "channel": "metrics"}),
    )
    .await;
    assert_eq!(refused["type"], "error", "{refused}");
    let ok = subscribe(
        &mut socket,
        json!({"type": "subscribe", "channel": "activity"}),
    )
    .await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    let batch = vec![
        order("o5", "cus_7", "5"),
        order("o6", "cus_42", "6"),
        order("o7", "cus_7", "7"),
        order("o8", "cus_42", "8"),
    ];
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &t.write_key,
        Some(json!({"batch": batch})),
    )
    .await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = until(&mut socket, 20, |m| m["type"] == "event").await;
        assert_eq!(m["payload"]["user_id"], "cus_42", "{m}");
        seen.push(m["payload"]["message_id"].as_str().expect("id").to_owned());
    }
    assert_eq!(seen, ["o6", "o8"]);

    // Listed for admins (never the token), revoked at once.
    let (status, list) = call(&server, Method::GET, "/v1/embed/tokens", &t.admin_key, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tokens"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["tokens"][0]["customer"], "cus_42", "{list}");
    assert!(!list.to_string().contains(&token));
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/v1/embed/tokens/{id}"),
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, answer) = call(&server, Method::GET, "/v1/analytics/revenue", &token, None).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/v1/embed/tokens/emb_nope",
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_token_opens_the_dashboards_but_no_sql_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let server = Server::start(&data, &common::fast_env());
    let (status, _) = call(
        &server,
        Method::POST,
        "/v1/batch",
        &t.write_key,
        Some(json!({"batch": [order("o1", "a", "10"), order("o2", "b", "20")]})),
    )
    .await;
    assert_eq!(status, 200);
    let (tv, _) = mint(
        &server,
        &t.admin_key,
        json!({"name": "Shop TV", "expires_in": "365days"}),
    )
    .await;
    let (status, revenue) = call(
        &server,
        Method::GET,
        "/v1/analytics/revenue?range=today",
        &tv,
        None,
    )
    .await;
    assert_eq!(status, 200, "{revenue}");
    assert_eq!(revenue["summary"]["gross"], "30.0000");
    let (status, _) = call(&server, Method::GET, "/v1/forecasts", &tv, None).await;
    assert_eq!(status, 200);
    let (status, answer) = call(
        &server,
        Method::POST,
        "/v1/sql",
        &tv,
        Some(json!({"query": "SELECT 1"})),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    // The live tiles and the alert stream; no inbox.
    let mut socket = ws::open(&server.ws_url(&format!("?token={tv}"))).await;
    assert_eq!(next(&mut socket).await["type"], "welcome");
    for channel in ["metrics", "activity", "alerts"] {
        let ok = subscribe(
            &mut socket,
            json!({"type": "subscribe", "channel": channel}),
        )
        .await;
        assert_eq!(ok["type"], "subscribed", "{channel}: {ok}");
    }
    for channel in ["notifications:ann", "query:x"] {
        let refused = subscribe(
            &mut socket,
            json!({"type": "subscribe", "channel": channel, "sql": "SELECT 1"}),
        )
        .await;
        assert_eq!(refused["type"], "error", "{channel}: {refused}");
    }

    // Minting: admins only, checked fields.
    let (read, _) = mint(&server, &t.admin_key, json!({"customer": "a"})).await;
    for (who, body, status) in [
        (t.write_key.as_str(), json!({}), 403),
        (read.as_str(), json!({}), 403),
        (t.admin_key.as_str(), json!({"customer": ""}), 400),
        (
            t.admin_key.as_str(),
            json!({"customer": "x".repeat(300)}),
            400,
        ),
        (t.admin_key.as_str(), json!({"customer": "a\u{0}b"}), 400),
        (t.admin_key.as_str(), json!({"expires_in": "10s"}), 400),
        (t.admin_key.as_str(), json!({"expires_in": "400days"}), 400),
        (t.admin_key.as_str(), json!({"expires_in": "soon"}), 400),
        (t.admin_key.as_str(), json!({"name": ""}), 400),
        (t.admin_key.as_str(), json!({"scope": "admin"}), 400),
    ] {
        let (got, answer) = call(
            &server,
            Method::POST,
            "/v1/embed/tokens",
            who,
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    // Another workspace's admin cannot revoke it, nor see it.
    let other = create_tenant(&data, "Other");
    let (_, list) = call(
        &server,
        Method::GET,
        "/v1/embed/tokens",
        &other.admin_key,
        None,
    )
    .await;
    assert_eq!(list["tokens"], json!([]), "{list}");
}
