//! People and access on a real server: the role matrix over every route
//! (from `beacon routes --json`) with every role and key kind, sessions
//! (cookies, CSRF, sign-out, expiry), invitations and resets through a
//! real SMTP server (aiosmtpd), TOTP, rate limits and sign-in brute force,
//! the audit log, upgrading a data directory made before roles, and an
//! owner deleting the workspace.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::common::*;

/// Who calls: a key or user token (bearer), or a signed-in browser.
#[derive(Debug, Clone)]
enum Who {
    Bearer(String),
    Browser { cookie: String, csrf: String },
}

async fn send(server: &Server, who: &Who, method: Method, path: &str, body: Option<Value>) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client().request(method, server.url(path));
    match who {
        Who::Bearer(key) => req = req.bearer_auth(key),
        Who::Browser { cookie, csrf } => {
            req = req.header(COOKIE, cookie).header("x-csrf-token", csrf);
        }
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
}

const PASSWORD: &str = "correct horse battery staple";

/// Signs in: the cookie and CSRF token, or the failed answer.
async fn login(server: &Server, body: Value, forwarded_for: Option<&str>) -> Result<Who, (u16, Value, reqwest::header::HeaderMap)> {
    let mut req = client().post(server.url("/v1/auth/login")).json(&body);
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err((status, v, headers));
    }
    let set_cookie = headers.get(SET_COOKIE).expect("a session cookie").to_str().expect("text").to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    Ok(Who::Browser {
        cookie,
        csrf: v["csrf_token"].as_str().expect("csrf").to_owned(),
    })
}

async fn sign_in(server: &Server, email: &str, password: &str) -> Who {
    login(server, json!({"email": email, "password": password}), None)
        .await
        .unwrap_or_else(|e| panic!("sign-in of {email}: {e:?}"))
}

fn relaxed_limits() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BEACON_ACCESS__LIMITS__LOGIN__PER_MINUTE", "100000"),
        ("BEACON_ACCESS__LIMITS__LOGIN__BURST", "100000"),
        ("BEACON_ACCESS__LIMITS__ADMIN__BURST", "100000"),
        ("BEACON_ACCESS__LIMITS__QUERY__BURST", "100000"),
    ]
}

/// What a caller is, for the matrix: its kind and what the table in
/// `api/src/access/mod.rs` says it may call (re-stated here by hand, so
/// that the test does not trust the table it checks).
struct Principal {
    name: &'static str,
    who: Who,
    may: &'static [&'static str],
    own_user: Option<&'static str>,
}

#[tokio::test]
async fn role_matrix_over_every_route_and_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    for (email, role) in [("owner@shop.test", "owner"), ("admin@shop.test", "admin"), ("analyst@shop.test", "analyst"), ("viewer@shop.test", "viewer")] {
        create_user(&data, "Shop", email, role, PASSWORD);
    }
    let read = create_read_key(&data, "Shop");
    let server = Server::start(&data, &relaxed_limits());
    let admin = t.admin_key.clone();
    let key = |scopes: Value| {
        let server = &server;
        let admin = admin.clone();
        async move {
            let (s, v) = server.post("/v1/workspace/keys", &admin, json!({"scopes": scopes, "label": "matrix"})).await;
            assert_eq!(s, 201, "{v}");
            v["key"]["key"].as_str().expect("key").to_owned()
        }
    };
    let realtime_key = key(json!(["realtime"])).await;
    let analyst_key = key(json!(["role:analyst"])).await;
    let (s, token) = server.post("/v1/realtime/tokens", &admin, json!({"user": "viewer@shop.test"})).await;
    assert_eq!(s, 200, "{token}");
    let token = token["token"].as_str().expect("token").to_owned();

    use_classes_of_every_route(&server, vec![
        Principal { name: "owner", who: sign_in(&server, "owner@shop.test", PASSWORD).await, may: &["account", "ingest", "view", "query", "realtime", "inbox", "rules", "admin", "owner"], own_user: Some("owner@shop.test") },
        Principal { name: "admin", who: sign_in(&server, "admin@shop.test", PASSWORD).await, may: &["account", "ingest", "view", "query", "realtime", "inbox", "rules", "admin"], own_user: Some("admin@shop.test") },
        Principal { name: "analyst", who: sign_in(&server, "analyst@shop.test", PASSWORD).await, may: &["account", "ingest", "view", "query", "realtime", "inbox", "rules"], own_user: Some("analyst@shop.test") },
        Principal { name: "viewer", who: sign_in(&server, "viewer@shop.test", PASSWORD).await, may: &["account", "view", "realtime", "inbox"], own_user: Some("viewer@shop.test") },
        Principal { name: "write key", who: Who::Bearer(t.write_key.clone()), may: &["ingest"], own_user: None },
        Principal { name: "read key", who: Who::Bearer(read.clone()), may: &["view", "query", "realtime", "inbox"], own_user: None },
        Principal { name: "admin key", who: Who::Bearer(admin.clone()), may: &["ingest", "view", "query", "realtime", "inbox", "rules", "admin"], own_user: None },
        Principal { name: "realtime key", who: Who::Bearer(realtime_key), may: &["realtime", "inbox"], own_user: None },
        Principal { name: "role:analyst key", who: Who::Bearer(analyst_key), may: &["ingest", "view", "query", "realtime", "inbox", "rules"], own_user: None },
        Principal { name: "user token", who: Who::Bearer(token.clone()), may: &["realtime", "inbox"], own_user: Some("viewer@shop.test") },
    ])
    .await;

    // Hand-picked spots, independent of the class table.
    let viewer = sign_in(&server, "viewer@shop.test", PASSWORD).await;
    let (s, v, _) = send(&server, &viewer, Method::POST, "/v1/sql", Some(json!({"query": "SELECT 1"}))).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["needs"], "query");
    assert!(v["error"]["message"].as_str().expect("message").contains("you are signed in as viewer"), "{v}");
    let analyst = sign_in(&server, "analyst@shop.test", PASSWORD).await;
    let (s, v, _) = send(&server, &analyst, Method::POST, "/v1/sql", Some(json!({"query": "SELECT 1 AS one"}))).await;
    assert_eq!((s, &v["rows"]), (200, &json!([[1]])), "{v}");
    let (s, _, _) = send(&server, &analyst, Method::PATCH, "/v1/workspace", Some(json!({"name": "Nope"}))).await;
    assert_eq!(s, 403);
    // Only owners make owners.
    let admin_person = sign_in(&server, "admin@shop.test", PASSWORD).await;
    let (s, v, _) = send(&server, &admin_person, Method::PUT, "/v1/users/viewer@shop.test", Some(json!({"email": "viewer@shop.test", "role": "owner"}))).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = call(&server, Method::PUT, "/v1/users/viewer@shop.test", &admin, Some(json!({"email": "viewer@shop.test", "role": "owner"}))).await;
    assert_eq!(s, 403, "an admin key does not make owners once there is one: {v}");
    let owner = sign_in(&server, "owner@shop.test", PASSWORD).await;
    let (s, v, _) = send(&server, &owner, Method::PUT, "/v1/users/analyst@shop.test", Some(json!({"email": "analyst@shop.test", "role": "admin"}))).await;
    assert_eq!((s, &v["role"]), (200, &json!("admin")), "{v}");
    // The new role holds at the next request of the same session.
    let (s, _, _) = send(&server, &analyst, Method::PATCH, "/v1/workspace", Some(json!({"name": "Shop"}))).await;
    assert_eq!(s, 200, "promoted to admin");
    // The last owner stays.
    let (s, v, _) = send(&server, &owner, Method::DELETE, "/v1/users/owner@shop.test", None).await;
    assert_eq!((s, &v["error"]["code"]), (409, &json!("last_owner")), "{v}");

    // A viewer's WebSocket opens its own notifications, not another's,
    // and no live SQL.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&format!("?token={token}"))).await.expect("connect");
    for (channel, allowed) in [("notifications:viewer@shop.test", true), ("notifications:owner@shop.test", false), ("metrics", false)] {
        let reply = ws::subscribe(&mut ws, json!({"type": "subscribe", "channel": channel})).await;
        assert_eq!(reply["type"] == "subscribed", allowed, "{channel}: {reply}");
    }
    let Who::Browser { cookie, .. } = &viewer else { unreachable!() };
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(server.ws_url("")).expect("request");
    request.headers_mut().insert("cookie", cookie.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("a signed-in socket");
    for (channel, allowed) in [("metrics", true), ("notifications:viewer@shop.test", true), ("notifications:owner@shop.test", false), ("query:q1", false)] {
        let reply = ws::subscribe(&mut ws, json!({"type": "subscribe", "channel": channel})).await;
        assert_eq!(reply["type"] == "subscribed", allowed, "{channel}: {reply}");
    }
    // From another site's page, the browser's cookie does not open a socket.
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(server.ws_url("")).expect("request");
    request.headers_mut().insert("cookie", cookie.parse().expect("header"));
    request.headers_mut().insert("origin", "https://evil.example".parse().expect("header"));
    let refused = tokio_tungstenite::connect_async(request).await.expect_err("cross-site");
    assert!(refused.to_string().contains("403"), "{refused}");
}

/// Every route of `beacon routes --json` with every principal: a route of a
/// class the principal may call is never refused for access (401/403), and
/// any other is refused with 403.
async fn use_classes_of_every_route(server: &Server, principals: Vec<Principal>) {
    let out = Command::new(BIN).args(["routes", "--json"]).output().expect("beacon routes");
    assert!(out.status.success());
    let table: Value = serde_json::from_slice(&out.stdout).expect("json");
    let routes = table["routes"].as_array().expect("routes");
    assert!(routes.len() > 70, "{} routes", routes.len());
    let mut seen = BTreeMap::new();
    for p in &principals {
        for r in routes {
            let class = r["class"].as_str().expect("class");
            let method = Method::from_bytes(r["method"].as_str().expect("method").as_bytes()).expect("method");
            let template = r["path"].as_str().expect("path");
            // Signing out would end the session the matrix goes on with.
            if template.starts_with("/v1/auth/logout") && matches!(p.who, Who::Browser { .. }) {
                continue;
            }
            let own = p.own_user.unwrap_or("someone@shop.test");
            let path = template
                .replace("{id}", if template.ends_with("/preferences") { own } else { "x" })
                .replace("{endpoint}", "revenue")
                .replace("{kind}", "churn")
                .replace("{prefix}", "bk_nope")
                .replace("{name}", "nope")
                .replace("{page}", "overview")
                .replace("{build}", "x")
                .replace("{*path}", "app.js");
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let (status, v, _) = send(server, &p.who, method.clone(), &path, body).await;
            let open = class == "public" || class == "sign_in";
            let mut allowed = open || p.may.contains(&class);
            // Handlers narrow some classes: keys set preferences only with
            // the admin scope.
            if template == "/v1/users/{id}/preferences" && p.own_user.is_none() && !p.may.contains(&"admin") {
                allowed = false;
            }
            if allowed {
                assert!(status != 401 && status != 403, "{}: {method} {path} ({class}) refused: {status} {v}", p.name);
            } else {
                assert_eq!(status, 403, "{}: {method} {path} ({class}) not refused: {v}", p.name);
            }
            *seen.entry(class.to_owned()).or_insert(0) += 1;
        }
    }
    for class in ["public", "sign_in", "account", "ingest", "view", "query", "realtime", "inbox", "rules", "admin", "owner"] {
        assert!(seen.contains_key(class), "no route of class {class}");
    }
}

#[tokio::test]
async fn sessions_csrf_sign_out_and_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    create_tenant(&data, "Shop");
    create_user(&data, "Shop", "ann@shop.test", "admin", PASSWORD);
    let mut env = relaxed_limits();
    env.extend([("BEACON_ACCESS__SESSION_IDLE", "2s"), ("BEACON_ACCESS__SESSION_ABSOLUTE", "5s")]);
    let server = Server::start(&data, &env);
    // Wrong password and unknown address: the same answer.
    for body in [json!({"email": "ann@shop.test", "password": "wrong password here"}), json!({"email": "nobody@shop.test", "password": PASSWORD})] {
        let (s, v, _) = login(&server, body, None).await.expect_err("refused");
        assert_eq!((s, &v["error"]["code"]), (401, &json!("invalid_credentials")), "{v}");
    }
    // A form post (not JSON) cannot sign in.
    let s = client().post(server.url("/v1/auth/login")).header("content-type", "application/x-www-form-urlencoded").body(r#"{"email":"ann@shop.test","password":"correct horse battery staple"}"#).send().await.expect("send").status();
    assert_eq!(s, 415);

    let ann = sign_in(&server, "ann@shop.test", PASSWORD).await;
    let (s, me, _) = send(&server, &ann, Method::GET, "/v1/auth/me", None).await;
    assert_eq!((s, &me["role"]), (200, &json!("admin")), "{me}");
    assert!(me["user"].get("password_hash").is_none() && !me.to_string().contains("argon2"), "{me}");
    // CSRF: a change without the token is refused; with it, it passes.
    let Who::Browser { cookie, csrf } = &ann else { unreachable!() };
    let no_csrf = Who::Browser { cookie: cookie.clone(), csrf: String::new() };
    let (s, v, _) = send(&server, &no_csrf, Method::PATCH, "/v1/workspace", Some(json!({"name": "Shop 2"}))).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("csrf_failed")), "{v}");
    let wrong = Who::Browser { cookie: cookie.clone(), csrf: format!("{}x", &csrf[1..]) };
    assert_eq!(send(&server, &wrong, Method::PATCH, "/v1/workspace", Some(json!({"name": "Shop 2"}))).await.0, 403);
    assert_eq!(send(&server, &no_csrf, Method::GET, "/v1/workspace", None).await.0, 200, "reads need no token");
    assert_eq!(send(&server, &ann, Method::PATCH, "/v1/workspace", Some(json!({"name": "Shop 2"}))).await.0, 200);
    // A forged cookie is nobody.
    let forged = Who::Browser { cookie: "beacon_session=AAAAAAAAAAAAAAAAAAAAAA".into(), csrf: csrf.clone() };
    assert_eq!(send(&server, &forged, Method::GET, "/v1/auth/me", None).await.0, 401);

    // Sign out ends this session only; sign out everywhere ends all.
    let other = sign_in(&server, "ann@shop.test", PASSWORD).await;
    assert_eq!(send(&server, &ann, Method::POST, "/v1/auth/logout", None).await.0, 204);
    assert_eq!(send(&server, &ann, Method::GET, "/v1/auth/me", None).await.0, 401);
    assert_eq!(send(&server, &other, Method::GET, "/v1/auth/me", None).await.0, 200);
    let third = sign_in(&server, "ann@shop.test", PASSWORD).await;
    assert_eq!(send(&server, &third, Method::POST, "/v1/auth/logout-everywhere", None).await.0, 204);
    assert_eq!(send(&server, &other, Method::GET, "/v1/auth/me", None).await.0, 401, "ended everywhere");

    // Idle expiry: 2 s without a request.
    let idle = sign_in(&server, "ann@shop.test", PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(send(&server, &idle, Method::GET, "/v1/auth/me", None).await.0, 401, "idle");
    // Absolute expiry: active every 800 ms, still ended after 5 s.
    let busy = sign_in(&server, "ann@shop.test", PASSWORD).await;
    let started = std::time::Instant::now();
    let mut ended = None;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        if send(&server, &busy, Method::GET, "/v1/auth/me", None).await.0 == 401 {
            ended = Some(started.elapsed());
            break;
        }
    }
    let ended = ended.expect("the session ended");
    assert!(ended >= Duration::from_secs(4), "ended after {ended:?}, before the absolute limit");
}

/// The link in an email's text.
fn link_token(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("text part");
    let at = text.find("token=").expect("a link") + "token=".len();
    text[at..].split_whitespace().next().expect("token").to_owned()
}

#[tokio::test]
async fn invitations_and_resets_by_email_work_once() {
    let smtp = PyReceiver::start(&["smtp"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let port = smtp.port.to_string();
    let mut env: Vec<(&str, &str)> = relaxed_limits();
    env.extend([
        ("BEACON_NOTIFY__SMTP__HOST", "127.0.0.1"),
        ("BEACON_NOTIFY__SMTP__PORT", port.as_str()),
        ("BEACON_NOTIFY__SMTP__FROM", "Beacon <beacon@shop.test>"),
        ("BEACON_ACCESS__PUBLIC_URL", "https://beacon.shop.test"),
    ]);
    let server = Server::start(&data, &env);
    let admin = &t.admin_key;
    let (s, v) = call(&server, Method::PUT, "/v1/users/cat", admin, Some(json!({"email": "cat@shop.test", "name": "Cat", "role": "analyst"}))).await;
    assert_eq!((s, &v["has_password"]), (200, &json!(false)), "{v}");
    let (s, v) = server.post("/v1/users/cat/invite", admin, json!({})).await;
    assert_eq!(s, 202, "{v}");
    let mail = smtp.next_json(WAIT).expect("the invitation");
    assert_eq!(mail["rcpt_tos"], json!(["cat@shop.test"]));
    assert!(mail["text"].as_str().expect("text").contains("https://beacon.shop.test/accept-invitation?token="), "{mail}");
    let token = link_token(&mail);
    // A weak password does not use the link up.
    let (s, v, _) = send(&server, &Who::Bearer(String::new()), Method::POST, "/v1/auth/invitations/accept", Some(json!({"token": token, "password": "cat12345"}))).await;
    assert_eq!((s, &v["error"]["code"]), (400, &json!("weak_password")), "{v}");
    let (s, v, _) = send(&server, &Who::Bearer(String::new()), Method::POST, "/v1/auth/invitations/accept", Some(json!({"token": token, "password": "cat@shop.test is me!!"}))).await;
    assert_eq!((s, &v["error"]["code"]), (400, &json!("weak_password")), "contains the address: {v}");
    let (s, v, _) = send(&server, &Who::Bearer(String::new()), Method::POST, "/v1/auth/invitations/accept", Some(json!({"token": token, "password": PASSWORD}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = send(&server, &Who::Bearer(String::new()), Method::POST, "/v1/auth/invitations/accept", Some(json!({"token": token, "password": PASSWORD}))).await;
    assert_eq!((s, &v["error"]["code"]), (410, &json!("link_used")), "{v}");
    let cat = sign_in(&server, "cat@shop.test", PASSWORD).await;

    // Reset: any address gets 202; only a user's gets a link.
    let anon = Who::Bearer(String::new());
    let (s, _, _) = send(&server, &anon, Method::POST, "/v1/auth/password-reset", Some(json!({"email": "nobody@shop.test"}))).await;
    assert_eq!(s, 202);
    assert!(smtp.next_json(Duration::from_millis(500)).is_none(), "no email for an unknown address");
    let (s, _, _) = send(&server, &anon, Method::POST, "/v1/auth/password-reset", Some(json!({"email": "CAT@shop.test"}))).await;
    assert_eq!(s, 202);
    let token = link_token(&smtp.next_json(WAIT).expect("the reset link"));
    let new_password = "a different long passphrase";
    let (s, v, _) = send(&server, &anon, Method::POST, "/v1/auth/password-reset/confirm", Some(json!({"token": token, "password": new_password}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(send(&server, &cat, Method::GET, "/v1/auth/me", None).await.0, 401, "a reset ends every session");
    assert!(login(&server, json!({"email": "cat@shop.test", "password": PASSWORD}), None).await.is_err());
    sign_in(&server, "cat@shop.test", new_password).await;
    let (s, v, _) = send(&server, &anon, Method::POST, "/v1/auth/password-reset/confirm", Some(json!({"token": token, "password": "yet another passphrase"}))).await;
    assert_eq!((s, &v["error"]["code"]), (410, &json!("link_used")), "{v}");
    let (s, v, _) = send(&server, &anon, Method::POST, "/v1/auth/password-reset/confirm", Some(json!({"token": "not-a-token", "password": "yet another passphrase"}))).await;
    assert_eq!((s, &v["error"]["code"]), (400, &json!("invalid_link")), "{v}");

    // The audit log has it all; nothing in it names a secret.
    let (s, audit) = server.get("/v1/audit?limit=100", admin).await;
    assert_eq!(s, 200, "{audit}");
    let actions: Vec<&str> = audit["entries"].as_array().expect("entries").iter().map(|e| e["action"].as_str().expect("action")).collect();
    for action in ["user_create", "invitation_sent", "invitation_accepted", "login", "password_reset_requested", "password_reset"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let text = audit.to_string();
    assert!(!text.contains(&token) && !text.contains(PASSWORD) && !text.contains(new_password), "no secret in the audit log");
}

/// RFC 6238 code of a base32 seed at a time (the test's own reading of the
/// standard, through the same crate the server uses for nothing else).
fn totp_code(secret: &str, at_secs: u64) -> String {
    use totp_rs::{Algorithm, Builder, Secret};
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(Secret::try_from_base32(secret).expect("base32"))
        .build()
        .expect("totp")
        .generate(at_secs)
        .to_string()
}

#[tokio::test]
async fn a_second_factor_with_recovery_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    create_tenant(&data, "Shop");
    create_user(&data, "Shop", "dan@shop.test", "viewer", PASSWORD);
    let server = Server::start(&data, &relaxed_limits());
    let dan = sign_in(&server, "dan@shop.test", PASSWORD).await;
    let (s, setup, _) = send(&server, &dan, Method::POST, "/v1/auth/totp", Some(json!({}))).await;
    assert_eq!(s, 200, "{setup}");
    let secret = setup["secret"].as_str().expect("secret").to_owned();
    assert!(setup["otpauth_url"].as_str().expect("url").starts_with("otpauth://totp/Beacon:dan%40shop.test?"), "{setup}");
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let (s, v, _) = send(&server, &dan, Method::POST, "/v1/auth/totp/confirm", Some(json!({"code": "000000"}))).await;
    assert_eq!(s, 400, "a wrong code does not turn it on: {v}");
    let code = totp_code(&secret, now());
    let (s, confirmed, _) = send(&server, &dan, Method::POST, "/v1/auth/totp/confirm", Some(json!({"code": code}))).await;
    assert_eq!(s, 200, "{confirmed}");
    let recovery: Vec<String> = confirmed["recovery_codes"].as_array().expect("codes").iter().map(|c| c.as_str().expect("code").to_owned()).collect();
    assert_eq!(recovery.len(), 10);

    let attempt = |totp: Option<String>| {
        let server = &server;
        async move {
            let mut body = json!({"email": "dan@shop.test", "password": PASSWORD});
            if let Some(t) = totp {
                body["totp"] = json!(t);
            }
            login(server, body, None).await.map(|_| ()).map_err(|(s, v, _)| (s, v["error"]["code"].as_str().unwrap_or("").to_owned()))
        }
    };
    assert_eq!(attempt(None).await, Err((401, "totp_required".into())));
    assert_eq!(attempt(Some("123456".into())).await, Err((401, "invalid_totp".into())));
    assert_eq!(attempt(Some(code.clone())).await, Err((401, "invalid_totp".into())), "a used code is not accepted again");
    assert_eq!(attempt(Some(recovery[0].clone())).await, Ok(()));
    assert_eq!(attempt(Some(recovery[0].clone())).await, Err((401, "invalid_totp".into())), "a recovery code works once");
    // The next step's code (within the one step of skew) works once.
    let next = totp_code(&secret, now() + 30);
    assert_eq!(attempt(Some(next.clone())).await, Ok(()));
    assert_eq!(attempt(Some(next)).await, Err((401, "invalid_totp".into())));
    let (s, users) = {
        let owner_key = create_read_key(&data, "Shop");
        server.get("/v1/users", &owner_key).await
    };
    assert_eq!(s, 200);
    assert!(!users.to_string().contains(&secret), "the seed is never shown again");
    assert_eq!(users["users"][0]["totp_enabled"], true);
}

#[tokio::test]
async fn rate_limits_and_sign_in_brute_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    create_user(&data, "Shop", "eve@shop.test", "viewer", PASSWORD);
    create_user(&data, "Shop", "fay@shop.test", "viewer", PASSWORD);
    let server = Server::start(&data, &[
        ("BEACON_ACCESS__LIMITS__QUERY__PER_MINUTE", "60"),
        ("BEACON_ACCESS__LIMITS__QUERY__BURST", "3"),
        ("BEACON_ACCESS__LIMITS__LOGIN__PER_MINUTE", "100000"),
        ("BEACON_ACCESS__LIMITS__LOGIN__BURST", "100000"),
        ("BEACON_ACCESS__TRUST_FORWARDED_FOR", "true"),
        ("BEACON_ACCESS__LOGIN_FREE_FAILURES", "2"),
        ("BEACON_ACCESS__LOGIN_MAX_BACKOFF", "2s"),
    ]);
    let key = Who::Bearer(t.admin_key.clone());
    for remaining in [2, 1, 0] {
        let (s, _, h) = send(&server, &key, Method::GET, "/v1/workspace", None).await;
        assert_eq!(s, 200);
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], remaining.to_string().as_str());
    }
    let (s, v, h) = send(&server, &key, Method::GET, "/v1/workspace", None).await;
    assert_eq!((s, &v["error"]["code"]), (429, &json!("rate_limited")), "{v}");
    let wait: u64 = h["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(h["ratelimit-remaining"], "0");
    // Another key is not limited by this one.
    let other = Who::Bearer(create_read_key(&data, "Shop"));
    assert_eq!(send(&server, &other, Method::GET, "/v1/workspace", None).await.0, 200);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(send(&server, &key, Method::GET, "/v1/workspace", None).await.0, 200, "recovered");

    // Brute force on eve from one address: slowed after 2 failures.
    let from = |ip: &'static str, password: &'static str, email: &'static str| {
        let server = &server;
        async move { login(server, json!({"email": email, "password": password}), Some(ip)).await.map(|_| ()).map_err(|(s, v, _)| (s, v["error"]["code"].as_str().unwrap_or("").to_owned())) }
    };
    for _ in 0..3 {
        assert_eq!(from("10.0.0.66", "guess guess guess", "eve@shop.test").await, Err((401, "invalid_credentials".into())));
    }
    assert_eq!(from("10.0.0.66", PASSWORD, "eve@shop.test").await, Err((429, "rate_limited".into())), "even the right password waits");
    // Another account from the same address, and eve from her own
    // address, are not slowed.
    assert_eq!(from("10.0.0.66", PASSWORD, "fay@shop.test").await, Ok(()));
    assert_eq!(from("10.0.0.7", PASSWORD, "eve@shop.test").await, Ok(()));
    // The wait is bounded (login_max_backoff): the attacker's address gets
    // through again after it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(from("10.0.0.66", PASSWORD, "eve@shop.test").await, Ok(()));
    // The failures are in the audit log, with the address.
    let (_, audit) = server.get("/v1/audit?action=login", &t.admin_key).await;
    let failures: Vec<&Value> = audit["entries"].as_array().expect("entries").iter().filter(|e| e["outcome"] == "failure").collect();
    assert_eq!(failures.len(), 3, "{audit}");
    assert_eq!(failures[0]["ip"], "10.0.0.66");
    assert_eq!(failures[0]["actor"], "email:eve@shop.test");
}

#[tokio::test]
async fn the_audit_log_records_changes_and_cannot_be_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    create_user(&data, "Shop", "gus@shop.test", "analyst", PASSWORD);
    let read = create_read_key(&data, "Shop");
    let (server, lines) = Server::start_with(&data, &relaxed_limits(), &[], Some("PostgreSQL listening on"));
    let admin = &t.admin_key;
    let gus = sign_in(&server, "gus@shop.test", PASSWORD).await;
    // Audited actions.
    assert_eq!(call(&server, Method::PATCH, "/v1/workspace", admin, Some(json!({"timezone": "Europe/Paris"}))).await.0, 200);
    let (_, key) = server.post("/v1/workspace/keys", admin, json!({"scopes": ["query"], "label": "notebook", "expires_in": "30days"})).await;
    let prefix = key["key"]["prefix"].as_str().expect("prefix").to_owned();
    let (s, rotated) = server.post(&format!("/v1/workspace/keys/{prefix}/rotate"), admin, json!({"overlap": "1h"})).await;
    assert_eq!(s, 201, "{rotated}");
    assert_eq!(call(&server, Method::DELETE, &format!("/v1/workspace/keys/{prefix}"), admin, None).await.0, 204);
    assert_eq!(call(&server, Method::PUT, "/v1/users/gus@shop.test", admin, Some(json!({"email": "gus@shop.test", "role": "viewer"}))).await.0, 200);
    assert_eq!(call(&server, Method::PUT, "/v1/users/gus@shop.test", admin, Some(json!({"email": "gus@shop.test", "role": "analyst"}))).await.0, 200);
    let (s, _, _) = send(&server, &gus, Method::POST, "/v1/sql", Some(json!({"query": "SELECT 41 + 1 AS answer"}))).await;
    assert_eq!(s, 200);
    let (s, rule) = server.post("/v1/webhooks", admin, json!({"url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(s, 201, "{rule}");

    let (s, audit) = server.get("/v1/audit?limit=500", admin).await;
    assert_eq!(s, 200);
    let entries = audit["entries"].as_array().expect("entries");
    let find = |action: &str| entries.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("no {action} in {audit}"));
    assert_eq!(find("settings_change")["detail"]["after"]["timezone"], "Europe/Paris");
    assert_eq!(find("key_create")["detail"]["label"], "notebook");
    assert_eq!(find("key_rotate")["target"], prefix.as_str());
    find("key_revoke");
    assert_eq!(find("role_change")["detail"]["role"], "analyst");
    let query = find("sql_query");
    assert_eq!(query["actor"], "user:gus@shop.test");
    assert_eq!(query["detail"]["query"], "SELECT 41 + 1 AS answer");
    assert_eq!(query["detail"]["rows"], 1);
    assert!(query["detail"]["bytes"].as_u64().expect("bytes") > 0);
    find("webhook_create");
    assert!(!audit.to_string().contains(rotated["key"]["key"].as_str().expect("secret")), "no key secret");

    // Admins read it in SQL; analysts do not see the table.
    let rows = sql(&server, admin, "SELECT count(*) AS n FROM audit_log WHERE action = 'sql_query'").await;
    assert!(rows["rows"][0][0].as_i64().expect("n") >= 1, "{rows}");
    let (s, v, _) = send(&server, &gus, Method::POST, "/v1/sql", Some(json!({"query": "SELECT * FROM audit_log"}))).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().expect("message").contains("audit_log"), "{v}");
    assert_eq!(send(&server, &gus, Method::GET, "/v1/audit", None).await.0, 403);
    // The same over the PostgreSQL wire: admins have the table, others not.
    let pg_port = after(&lines, "PostgreSQL listening on").split(' ').next().expect("addr").rsplit(':').next().expect("port").to_owned();
    let psql = |key: &str| {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &pg_port, "-U", "Shop", "-d", "beacon", "-At", "-c", "SELECT count(*) > 0 FROM audit_log"])
            .env("PGPASSWORD", key)
            .output()
            .expect("psql");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, out, err) = psql(admin);
    assert!(ok, "{err}");
    assert_eq!(out, "t");
    let (ok, _, err) = psql(&read);
    assert!(!ok && err.contains("audit_log"), "{err}");
    // Nothing changes it: SQL is read-only, and no route writes it.
    for statement in ["DELETE FROM audit_log", "UPDATE audit_log SET action = 'x'", "DROP TABLE audit_log", "INSERT INTO audit_log VALUES (1)"] {
        let (s, v) = server.post("/v1/sql", admin, json!({"query": statement})).await;
        assert!(s == 400 || s == 403, "{statement}: {s} {v}");
    }
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        assert_eq!(call(&server, method.clone(), "/v1/audit", admin, Some(json!({}))).await.0, 405, "{method}");
    }
    let (_, after) = server.get("/v1/audit?limit=500", admin).await;
    assert!(after["entries"].as_array().expect("entries").len() >= entries.len());
}

/// A data directory made by the release before roles (keys with roles,
/// recipients with free-text roles) starts, keeps its keys working with
/// what they could do, and its recipients as users with a known role.
#[tokio::test]
async fn a_data_directory_from_before_roles_keeps_its_keys_and_recipients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/before-access");
    std::fs::copy(fixture.join("beacon.sqlite"), data.join("beacon.sqlite")).expect("copy the old database");
    let keys: Value = serde_json::from_str(&std::fs::read_to_string(fixture.join("keys.json")).expect("keys")).expect("json");
    let server = Server::start(&data, &relaxed_limits());
    let key = |name: &str| keys[name].as_str().expect("key").to_owned();
    let (s, v) = server.post("/v1/track", &key("write"), json!({"event": "Order Completed", "userId": "u1", "properties": {"revenue": 12.5}})).await;
    assert_eq!(s, 200, "the old write key still sends: {v}");
    assert_eq!(server.post("/v1/sql", &key("write"), json!({"query": "SELECT 1"})).await.0, 403, "and still cannot query");
    assert_eq!(server.post("/v1/sql", &key("read"), json!({"query": "SELECT 1"})).await.0, 200, "the old read key queries");
    let (s, users) = server.get("/v1/users", &key("admin")).await;
    assert_eq!(s, 200, "the old admin key administers: {users}");
    let roles: BTreeMap<String, String> = users["users"].as_array().expect("users").iter().map(|u| (u["id"].as_str().expect("id").to_owned(), u["role"].as_str().expect("role").to_owned())).collect();
    assert_eq!(roles.get("ann").map(String::as_str), Some("owner"));
    assert_eq!(roles.get("bob").map(String::as_str), Some("viewer"), "a free-text role becomes viewer");
    assert_eq!(users["users"][0]["has_password"], false);
}

/// Events for `user`, each with its own message id.
fn orders(prefix: &str, n: usize) -> Value {
    let batch: Vec<Value> = (0..n)
        .map(|i| json!({"type": "track", "event": "Order Completed", "userId": format!("{prefix}-{i}"), "messageId": format!("{prefix}-{i}"), "timestamp": "2026-11-02T10:00:00Z", "properties": {"revenue": "10.50", "currency": "USD"}}))
        .collect();
    json!({"batch": batch})
}

/// Files, directories and WAL bytes that mention `needle`.
fn traces_on_disk(data: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![data.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            let name = path.to_string_lossy().into_owned();
            if name.contains(needle) {
                found.push(name.clone());
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.contains("/wal/") && std::fs::read(&path).expect("read").windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{name} (bytes)"));
            }
        }
    }
    found
}

/// Rows of the metadata database that belong to `tenant`, by table (the
/// audit log aside).
fn metadata_rows(data: &Path, tenant: &str) -> BTreeMap<String, i64> {
    let db = rusqlite::Connection::open(data.join("beacon.sqlite")).expect("open");
    let tables: Vec<String> = db
        .prepare("SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c WHERE m.type = 'table' AND c.name = 'tenant_id' AND m.name <> 'audit_log'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(tables.len() >= 13, "{tables:?}");
    let mut rows = BTreeMap::new();
    for table in tables {
        let n: i64 = db.query_row(&format!("SELECT count(*) FROM {table} WHERE tenant_id = ?1"), [tenant], |r| r.get(0)).expect("count");
        if n > 0 {
            rows.insert(table, n);
        }
    }
    for (table, column) in [("tenants", "id"), ("deleted_tenants", "id")] {
        let n: i64 = db.query_row(&format!("SELECT count(*) FROM {table} WHERE {column} = ?1"), [tenant], |r| r.get(0)).expect("count");
        rows.insert(table.to_owned(), n);
    }
    rows
}

#[tokio::test]
async fn an_owner_deletes_the_workspace_and_nothing_of_it_remains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let shop = create_tenant(&data, "Shop");
    let other = create_tenant(&data, "Other");
    create_user(&data, "Shop", "owner@shop.test", "owner", PASSWORD);
    create_user(&data, "Shop", "admin@shop.test", "admin", PASSWORD);
    let mut env = relaxed_limits();
    env.push(("BEACON_INGEST__DELETE_GRACE", "0s"));
    // Flushes only when asked: the tail and the WAL keep what is not.
    env.push(("BEACON_INGEST__FLUSH_INTERVAL", "1h"));
    let server = Server::start(&data, &env);
    let admin = shop.admin_key.as_str();

    // Events in files, in the tail and the WAL; the other workspace's too.
    assert_eq!(server.post("/v1/batch", &shop.write_key, orders("shop-a", 50)).await.0, 200);
    assert_eq!(server.post("/v1/batch", &other.write_key, orders("other-a", 30)).await.0, 200);
    assert_eq!(server.post("/v1/workspace/flush", admin, json!({})).await.0, 200);
    assert_eq!(server.post("/v1/batch", &shop.write_key, orders("shop-b", 20)).await.0, 200);
    assert_eq!(server.post("/v1/batch", &other.write_key, orders("other-b", 10)).await.0, 200);
    // Metadata: a webhook, an alert rule, a notification in an inbox.
    assert_eq!(server.post("/v1/webhooks", admin, json!({"url": "http://127.0.0.1:9/hook"})).await.0, 201);
    let rule = json!({"name": "Orders", "query": {"metric": "orders", "window": "1h"}, "condition": {"type": "threshold", "op": "above", "value": 1000}, "schedule": {"every": "1h"}, "severity": "info"});
    assert_eq!(server.post("/v1/alerts/rules", admin, rule).await.0, 201);
    let (s, v) = server.post("/v1/notifications", admin, json!({"recipients": ["admin@shop.test"], "category": "ops", "title": "Hello", "channels": ["inbox"]})).await;
    assert!(s == 200 || s == 201 || s == 202, "{s} {v}");
    assert_eq!(scalar(&server, admin, "SELECT count(*) FROM events").await, 70);
    let before = metadata_rows(&data, &shop.id);
    for table in ["notify_users", "notify_endpoints", "alert_rules", "notify_inbox"] {
        assert!(before.contains_key(table), "{table} in {before:?}");
    }
    // A live subscriber of the workspace.
    let (s, token) = server.post("/v1/realtime/tokens", admin, json!({"user": "admin@shop.test"})).await;
    assert_eq!(s, 200, "{token}");
    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url(&format!("?token={}", token["token"].as_str().expect("token")))).await.expect("connect");
    let reply = ws::subscribe(&mut socket, json!({"type": "subscribe", "channel": "notifications:admin@shop.test"})).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");

    // Only a signed-in owner, and only with the id typed again.
    let owner = sign_in(&server, "owner@shop.test", PASSWORD).await;
    let admin_user = sign_in(&server, "admin@shop.test", PASSWORD).await;
    let confirm = json!({"confirm": shop.id});
    assert_eq!(send(&server, &Who::Bearer(shop.admin_key.clone()), Method::DELETE, "/v1/workspace", Some(confirm.clone())).await.0, 403);
    assert_eq!(send(&server, &admin_user, Method::DELETE, "/v1/workspace", Some(confirm.clone())).await.0, 403);
    let (s, v, _) = send(&server, &owner, Method::DELETE, "/v1/workspace", Some(json!({"confirm": "Shop"}))).await;
    assert_eq!((s, &v["error"]["code"]), (400, &json!("confirmation_mismatch")), "{v}");
    let (s, v, _) = send(&server, &owner, Method::DELETE, "/v1/workspace", None).await;
    assert!(matches!(s, 400 | 415), "no body: {s} {v}");
    assert_eq!(scalar(&server, admin, "SELECT count(*) FROM events").await, 70, "nothing deleted yet");

    let (s, v, _) = send(&server, &owner, Method::DELETE, "/v1/workspace", Some(confirm.clone())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deleted"]["workspace"], shop.id.as_str());
    assert_eq!(v["deleted"]["events"], 70, "{v}");
    assert_eq!(ws::close_code(&mut socket).await, 4004);

    // Gone for every caller; the other workspace untouched.
    for key in [&shop.admin_key, &shop.write_key] {
        let (s, v) = server.get("/v1/workspace", key).await;
        assert_eq!(s, 401, "{v}");
    }
    assert_eq!(send(&server, &owner, Method::GET, "/v1/auth/me", None).await.0, 401, "the session ended with its user");
    let (s, v) = server.post("/v1/batch", &shop.write_key, orders("shop-c", 1)).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(scalar(&server, &other.admin_key, "SELECT count(*) FROM events").await, 40);
    assert_eq!(server.post("/v1/batch", &other.write_key, orders("other-c", 5)).await.0, 200);

    // Nothing of it on disk (files, directories, WAL records, models) or in
    // the metadata but the tombstone; the deletion is in the audit log.
    assert_eq!(traces_on_disk(&data, &shop.id), Vec::<String>::new());
    let after = metadata_rows(&data, &shop.id);
    assert_eq!(after, BTreeMap::from([("deleted_tenants".to_owned(), 1), ("tenants".to_owned(), 0)]));
    let db = rusqlite::Connection::open(data.join("beacon.sqlite")).expect("open");
    let (actor, detail): (String, String) = db
        .query_row("SELECT actor, detail FROM audit_log WHERE tenant_id = ?1 AND action = 'workspace_delete'", [&shop.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("the deletion is audited");
    assert_eq!(actor, "user:owner@shop.test");
    assert!(detail.contains("\"events\":70"), "{detail}");
    drop(db);

    // A restart brings nothing back, and finishes a deletion a crash cut
    // short (metadata rows and saved models left behind).
    server.stop();
    let db = rusqlite::Connection::open(data.join("beacon.sqlite")).expect("open");
    db.execute("INSERT INTO alert_rules (tenant_id, id, spec, created_at_us, updated_at_us) VALUES (?1, 'left', '{}', 0, 0)", [&shop.id]).expect("insert");
    drop(db);
    std::fs::create_dir_all(data.join("models").join(&shop.id)).expect("models dir");
    std::fs::write(data.join("models").join(&shop.id).join("forecasts.json"), "[]").expect("write");
    let server = Server::start(&data, &env);
    assert_eq!(traces_on_disk(&data, &shop.id), Vec::<String>::new());
    assert_eq!(metadata_rows(&data, &shop.id), after);
    assert_eq!(server.get("/v1/workspace", &shop.admin_key).await.0, 401);
    assert_eq!(scalar(&server, &other.admin_key, "SELECT count(*) FROM events").await, 45);
    let out = Command::new(BIN).args(["tenants", "list", "--json", "--data-dir"]).arg(&data).output().expect("tenants list");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&shop.id), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Saved views and layouts: a signed-in person's own, bounded, refused to
/// keys, invisible to other people, and deleted with the person.
#[tokio::test]
async fn saved_views_and_layouts_belong_to_the_signed_in_person() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    create_user(&data, "Shop", "ann@shop.test", "owner", PASSWORD);
    create_user(&data, "Shop", "bob@shop.test", "viewer", PASSWORD);
    let server = Server::start(&data, &relaxed_limits());
    let ann = sign_in(&server, "ann@shop.test", PASSWORD).await;
    let bob = sign_in(&server, "bob@shop.test", PASSWORD).await;

    let view = json!({"page": "sales", "name": "Web orders", "state": {"range": {"range": "30d", "compare": true,
        "filters": [{"property": "channel", "op": "eq", "value": "web"}]}, "extra": {"breakdown": "payment_method"}}});
    let (s, first, _) = send(&server, &ann, Method::POST, "/v1/auth/views", Some(view.clone())).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["view"]["state"], view["state"]);
    // The same name on the same page replaces it.
    let mut changed = view.clone();
    changed["state"]["range"]["range"] = json!("90d");
    let (s, second, _) = send(&server, &ann, Method::POST, "/v1/auth/views", Some(changed)).await;
    assert_eq!((s, &second["view"]["id"]), (200, &first["view"]["id"]), "{second}");
    let (s, other, _) = send(&server, &ann, Method::POST, "/v1/auth/views", Some(json!({"page": "bookings", "name": "Web orders", "state": {}}))).await;
    assert_eq!(s, 201, "{other}");
    let (s, list, _) = send(&server, &ann, Method::GET, "/v1/auth/views?page=sales", None).await;
    assert_eq!(s, 200);
    let views = list["views"].as_array().expect("views");
    assert_eq!(views.len(), 1, "{list}");
    assert_eq!(views[0]["state"]["range"]["range"], "90d");
    let (_, all, _) = send(&server, &ann, Method::GET, "/v1/auth/views", None).await;
    assert_eq!(all["views"].as_array().map(Vec::len), Some(2), "{all}");

    // Another person sees none of them and cannot delete them.
    let (s, theirs, _) = send(&server, &bob, Method::GET, "/v1/auth/views", None).await;
    assert_eq!((s, &theirs["views"]), (200, &json!([])), "{theirs}");
    let id = first["view"]["id"].as_str().expect("id");
    let (s, v, _) = send(&server, &bob, Method::DELETE, &format!("/v1/auth/views/{id}"), None).await;
    assert_eq!(s, 404, "{v}");
    // Keys have no views.
    let (s, v) = call(&server, Method::GET, "/v1/auth/views", &t.admin_key, None).await;
    assert_eq!(s, 403, "{v}");

    // Bad input: each refused with its code, nothing stored.
    let big = "x".repeat(17 * 1024);
    for (body, code) in [
        (json!({"page": "nowhere", "name": "a", "state": {}}), "unknown_page"),
        (json!({"page": "sales", "name": "  ", "state": {}}), "invalid_name"),
        (json!({"page": "sales", "name": "a\u{7}b", "state": {}}), "invalid_name"),
        (json!({"page": "sales", "name": "n".repeat(81), "state": {}}), "invalid_name"),
        (json!({"page": "sales", "name": "big", "state": {"blob": big}}), "state_too_large"),
    ] {
        let (s, v, _) = send(&server, &ann, Method::POST, "/v1/auth/views", Some(body)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    for body in [json!({"page": "sales", "name": "a", "state": [1]}), json!({"page": "sales", "name": "a", "state": {}, "owner": "bob"}), json!("a view")] {
        let (s, v, _) = send(&server, &ann, Method::POST, "/v1/auth/views", Some(body)).await;
        assert!((400..500).contains(&s) && v["error"]["code"].is_string(), "{s} {v}");
    }
    let (_, all, _) = send(&server, &ann, Method::GET, "/v1/auth/views", None).await;
    assert_eq!(all["views"].as_array().map(Vec::len), Some(2), "{all}");
    let (s, v, _) = send(&server, &ann, Method::GET, "/v1/auth/views?page=nowhere", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unknown_page")), "{v}");

    // Layouts: set, read back, refused when malformed, reset with null.
    let (s, v, _) = send(&server, &ann, Method::GET, "/v1/auth/layouts/overview", None).await;
    assert_eq!((s, &v["layout"]), (200, &Value::Null), "{v}");
    let order = json!(["activity", "tiles", "revenue", "products"]);
    let (s, v, _) = send(&server, &ann, Method::PUT, "/v1/auth/layouts/overview", Some(json!({"layout": order}))).await;
    assert_eq!(s, 200, "{v}");
    let (_, v, _) = send(&server, &ann, Method::GET, "/v1/auth/layouts/overview", None).await;
    assert_eq!(v["layout"], order);
    let (_, v, _) = send(&server, &bob, Method::GET, "/v1/auth/layouts/overview", None).await;
    assert_eq!(v["layout"], Value::Null, "another person's layout is their own");
    for layout in [json!([]), json!(["tiles", "tiles"]), json!(["Tiles"]), json!(["<script>"]), json!(vec!["w"; 31])] {
        let (s, v, _) = send(&server, &ann, Method::PUT, "/v1/auth/layouts/overview", Some(json!({"layout": layout}))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_layout")), "{layout}: {v}");
    }
    let (_, v, _) = send(&server, &ann, Method::GET, "/v1/auth/layouts/overview", None).await;
    assert_eq!(v["layout"], order, "a refused layout changes nothing");
    let (s, _, _) = send(&server, &ann, Method::PUT, "/v1/auth/layouts/overview", Some(json!({"layout": null}))).await;
    assert_eq!(s, 200);
    let (_, v, _) = send(&server, &ann, Method::GET, "/v1/auth/layouts/overview", None).await;
    assert_eq!(v["layout"], Value::Null);

    // Deleted with the person: bob saves a view, is removed and comes back
    // (a new user of the same address) with none.
    let (s, _, _) = send(&server, &bob, Method::POST, "/v1/auth/views", Some(json!({"page": "customers", "name": "Mine", "state": {}}))).await;
    assert_eq!(s, 201);
    let (s, v, _) = send(&server, &ann, Method::DELETE, "/v1/users/bob@shop.test", None).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    create_user(&data, "Shop", "bob@shop.test", "viewer", PASSWORD);
    let bob = sign_in(&server, "bob@shop.test", PASSWORD).await;
    let (_, theirs, _) = send(&server, &bob, Method::GET, "/v1/auth/views", None).await;
    assert_eq!(theirs["views"], json!([]), "{theirs}");
    let (s, _, _) = send(&server, &ann, Method::DELETE, &format!("/v1/auth/views/{id}"), None).await;
    assert_eq!(s, 204);
    assert!(server.stop().success());
}
