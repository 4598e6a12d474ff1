//! The real-time hub over HTTP: `GET /v1/ws` (WebSocket), `GET /v1/stream`
//! (Server-Sent Events, the same messages) and `POST /v1/realtime/tokens`
//! (user session tokens). The protocol is in `docs/realtime.md`; channels,
//! ordering, resume and backpressure live in `beacon_realtime`.
//!
//! Authentication: a read or admin key, or a user token, from the
//! `Authorization` header, the `key`/`token` query parameters (browsers
//! cannot set headers on WebSocket or EventSource requests) or, on a
//! WebSocket, a first `{"type": "auth"}` message. WebSocket failures are
//! reported with close codes (4001 unauthorized, 4003 forbidden, 1009
//! message too big, 1013 too many connections, 4008 idle, 4009 no pong).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use beacon_ingest::Role;
use beacon_realtime::hub::ChannelKind;
use beacon_realtime::protocol::{ClientMessage, Cursor, close, control, error_message};
use beacon_realtime::token::Claims;
use beacon_realtime::{Access, Connection, Principal, SubscribeOptions};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;
use crate::error::ApiError;
use crate::routes::{parse_json, read_body};
use crate::server::AppState;

/// Credentials and options from the query string.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// An API key.
    key: Option<String>,
    /// A user session token.
    token: Option<String>,
    /// SSE: channels, comma-separated.
    channels: Option<String>,
    /// SSE: `activity` event names, comma-separated.
    events: Option<String>,
    /// SSE: resume position (the `id` of the last event), when the client
    /// cannot send `Last-Event-ID`.
    last_event_id: Option<String>,
}

/// Why authentication failed: a close code and a message.
struct Refusal {
    code: u16,
    error: &'static str,
    message: String,
}

fn principal_of(
    state: &AppState,
    key: Option<&str>,
    token: Option<&str>,
) -> Result<Principal, Refusal> {
    let unauthorized = |message: String| Refusal {
        code: close::UNAUTHORIZED,
        error: "unauthorized",
        message,
    };
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let claims = state
            .tokens
            .verify(token, chrono::Utc::now().timestamp())
            .map_err(|e| unauthorized(e.to_string()))?;
        return Ok(Principal {
            tenant: claims.tenant,
            access: Access::User(claims.user),
        });
    }
    let principal = auth::authenticate(state, key).map_err(|e| unauthorized(e.message()))?;
    if principal.role == Role::Write {
        return Err(Refusal {
            code: close::FORBIDDEN,
            error: "forbidden",
            message: "write keys can only send events; use a read key or a user token".into(),
        });
    }
    Ok(Principal {
        tenant: principal.tenant,
        access: Access::Key(principal.role),
    })
}

/// Subscribes `conn`, preparing the snapshot the channel needs first.
async fn subscribe(
    state: &AppState,
    conn: &mut Connection,
    channel: &str,
    resume: Option<Cursor>,
    events: Option<Vec<String>>,
    sql: Option<String>,
) -> beacon_realtime::Result<()> {
    let kind = conn.authorize(channel)?;
    let tenant = conn.principal().tenant.clone();
    if sql.is_some() && !matches!(kind, ChannelKind::Query(_)) {
        return Err(beacon_realtime::Error::InvalidMessage(
            "sql only applies to query:<id> channels".into(),
        ));
    }
    let snapshot = match &kind {
        ChannelKind::Metrics => Some(state.live.ensure_metrics(&tenant).await?),
        ChannelKind::Query(id) => Some(state.live.ensure_query(&tenant, id, sql.as_deref()).await?),
        _ => None,
    };
    conn.subscribe(
        channel,
        SubscribeOptions {
            resume,
            events,
            snapshot,
        },
    )
}

/// `GET /v1/ws`.
pub async fn websocket(
    State(state): State<AppState>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header_key = auth::header_key(&headers).ok().flatten();
    let key = params.key.or(header_key);
    let token = params.token;
    let limit = state.config.realtime.max_message_bytes;
    // tungstenite's default 128 KiB read buffer per socket dominated the
    // memory of an idle connection. Clients send small control messages
    // (subscribe, ping), so 256 bytes hold one; a larger frame is still
    // read (the buffer grows to the frame's length, up to
    // max_message_bytes).
    // Writes are fed and flushed per burst, so a 16 KiB write buffer
    // batches without holding memory.
    upgrade
        .read_buffer_size(256)
        .write_buffer_size(16 * 1024)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| run_socket(state, socket, key, token))
}

async fn close_with(socket: &mut WebSocket, code: u16, reason: &str) {
    // Close reasons are limited to 123 bytes.
    let mut reason = reason.to_owned();
    while reason.len() > 120 {
        reason.pop();
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn run_socket(
    state: AppState,
    mut socket: WebSocket,
    key: Option<String>,
    token: Option<String>,
) {
    // The shared config (an Arc), not a copy: this future lives as long as
    // the connection, so every byte of its state is per-connection memory.
    // For the same reason the one-off phases (authentication, refusals,
    // the closing handshake) run as boxed futures of their own.
    let config = std::sync::Arc::clone(&state.config);
    let Some(principal) = Box::pin(authenticate(&state, &mut socket, key, token)).await else {
        return;
    };
    let Some(mut conn) = state.hub.connect(principal) else {
        Box::pin(close_with(&mut socket, close::TRY_AGAIN, "too many connections; retry later")).await;
        return;
    };
    let welcome = control(
        "welcome",
        json!({
            "tenant": conn.principal().tenant,
            "heartbeat_ms": config.realtime.heartbeat.as_millis() as u64,
            "max_message_bytes": config.realtime.max_message_bytes,
        }),
    );
    conn.send_control(welcome);
    let (mut sink, mut stream) = socket.split();
    let outbox = std::sync::Arc::clone(conn.outbox());
    let mut heartbeat = tokio::time::interval(config.realtime.heartbeat);
    heartbeat.tick().await;
    let mut last_heard = Instant::now();
    let closing = conn.closing();
    tokio::pin!(closing);
    let mut idle_since = Some(Instant::now());
    let mut batch: Vec<std::sync::Arc<str>> = Vec::new();
    let outcome: Option<(u16, String)> = loop {
        tokio::select! {
            () = &mut closing => break Some((close::GOING_AWAY, "server shutting down".into())),
            () = outbox.ready() => {
                // Queue everything drained, then one flush: one write
                // syscall per wake-up instead of one per message.
                // `batch` is empty here: the write below drains it, also
                // when it is dropped on a timeout.
                outbox.drain_into(&mut batch);
                let write = async {
                    for text in batch.drain(..) {
                        sink.feed(Message::Text((&*text).into())).await?;
                    }
                    sink.flush().await
                };
                let written = tokio::time::timeout(config.realtime.write_timeout, write).await;
                if batch.capacity() > 256 {
                    batch = Vec::new();
                }
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => {
                        tracing::warn!(tenant = %conn.principal().tenant, "Closed a stalled real-time client.");
                        break None;
                    }
                }
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    None | Some(Ok(Message::Close(_))) => break None,
                    Some(Err(e)) => {
                        let too_big = e.to_string().to_ascii_lowercase().contains("too long")
                            || e.to_string().to_ascii_lowercase().contains("too big")
                            || e.to_string().to_ascii_lowercase().contains("space limit");
                        if too_big {
                            break Some((close::TOO_BIG, format!("messages are limited to {} bytes", config.realtime.max_message_bytes)));
                        }
                        break None;
                    }
                    Some(Ok(Message::Text(text))) => {
                        // Boxed: subscribing may plan a live query, a large
                        // future that would otherwise be part of every
                        // connection's task for its whole life.
                        Box::pin(handle_message(&state, &mut conn, &text)).await;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        conn.send_control(error_message("invalid_message", "binary frames are not supported; send JSON text", None));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.realtime.heartbeat * 2 {
                    break Some((close::DEAD, "no answer to pings".into()));
                }
                if conn.subscriptions() == 0 {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= config.realtime.idle_timeout {
                        break Some((close::IDLE, "no subscriptions".into()));
                    }
                } else {
                    idle_since = None;
                }
                let ping = tokio::time::timeout(config.realtime.write_timeout, sink.send(Message::Ping(Vec::new().into())));
                if !matches!(ping.await, Ok(Ok(()))) { break None; }
            }
        }
    };
    if let Some((code, reason)) = outcome {
        let write_timeout = config.realtime.write_timeout;
        Box::pin(async move {
            let frame = Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            if matches!(
                tokio::time::timeout(write_timeout, sink.send(frame)).await,
                Ok(Ok(()))
            ) {
                // The closing handshake: let the client answer (it may
                // still be flushing pongs) before the socket goes away.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(m)) = stream.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        })
        .await;
    }
    drop(conn);
}

/// The connection's principal, from the request's credentials or else its
/// first message; `None` after refusing (error message and close code).
async fn authenticate(
    state: &AppState,
    socket: &mut WebSocket,
    key: Option<String>,
    token: Option<String>,
) -> Option<Principal> {
    let auth_timeout = state.config.realtime.auth_timeout;
    let principal = if key.is_some() || token.is_some() {
        principal_of(state, key.as_deref(), token.as_deref())
    } else {
        match tokio::time::timeout(auth_timeout, socket.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => match ClientMessage::parse(&text) {
                Ok(ClientMessage::Auth { key, token }) => {
                    principal_of(state, key.as_deref(), token.as_deref())
                }
                Ok(_) => Err(Refusal {
                    code: close::UNAUTHORIZED,
                    error: "unauthorized",
                    message: "authenticate first: {\"type\": \"auth\", \"key\": ...}".into(),
                }),
                Err(e) => Err(Refusal {
                    code: close::UNAUTHORIZED,
                    error: "unauthorized",
                    message: format!("authenticate first: {e}"),
                }),
            },
            Ok(_) => return None,
            Err(_) => Err(Refusal {
                code: close::UNAUTHORIZED,
                error: "unauthorized",
                message: format!("no credentials within {auth_timeout:?}"),
            }),
        }
    };
    match principal {
        Ok(p) => Some(p),
        Err(refusal) => {
            let text = error_message(refusal.error, &refusal.message, None);
            let _ = socket.send(Message::Text((&*text).into())).await;
            close_with(socket, refusal.code, &refusal.message).await;
            None
        }
    }
}

async fn handle_message(state: &AppState, conn: &mut Connection, text: &str) {
    let message = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => {
            conn.send_error(&e, None);
            return;
        }
    };
    match message {
        ClientMessage::Auth { .. } => conn.send_control(error_message(
            "already_authenticated",
            "this connection is already authenticated",
            None,
        )),
        ClientMessage::Ping { id } => conn.send_control(control("pong", json!({"id": id}))),
        ClientMessage::Unsubscribe { channel } => {
            let was = conn.unsubscribe(&channel);
            conn.send_control(control(
                "unsubscribed",
                json!({"channel": channel, "was_subscribed": was}),
            ));
        }
        ClientMessage::Subscribe {
            channel,
            resume,
            events,
            sql,
        } => {
            if let Err(e) = subscribe(state, conn, &channel, resume, events, sql).await {
                if matches!(e, beacon_realtime::Error::Engine(ref inner) if !inner.is_user_error()) {
                    tracing::error!(error = %e, "Subscribing failed.");
                }
                conn.send_error(&e, Some(&channel));
            }
        }
    }
}

/// SSE resume position: every channel's last `(epoch, seq)`, encoded as the
/// event `id` (base64url JSON) so `Last-Event-ID` carries all of them.
type Cursors = BTreeMap<String, (String, u64)>;

fn encode_cursors(c: &Cursors) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursors(s: &str) -> Result<Cursors, ApiError> {
    URL_SAFE_NO_PAD
        .decode(s.trim())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID is not an id this server sent",
            )
        })
}

/// `GET /v1/stream?channels=metrics,activity`: the hub's messages as
/// Server-Sent Events. A `lagged` message ends the stream; the browser's
/// EventSource reconnects with `Last-Event-ID` and resumes.
pub async fn sse(
    State(state): State<AppState>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let header_key = auth::header_key(&headers)?;
    let key = params.key.clone().or(header_key);
    let principal = principal_of(&state, key.as_deref(), params.token.as_deref()).map_err(|r| {
        if r.code == close::FORBIDDEN {
            ApiError::forbidden(r.message)
        } else {
            ApiError::unauthorized("invalid_key", r.message)
        }
    })?;
    let names: Vec<String> = params
        .channels
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "missing_channels",
            "give channels=metrics,activity,...",
        ));
    }
    let events: Option<Vec<String>> = params
        .events
        .as_deref()
        .map(|e| e.split(',').map(|s| s.trim().to_owned()).collect());
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(params.last_event_id.clone());
    let cursors = match last_id.as_deref() {
        Some(id) if !id.is_empty() => decode_cursors(id)?,
        _ => Cursors::new(),
    };
    let Some(mut conn) = state.hub.connect(principal) else {
        return Err(ApiError::unavailable(
            "too_many_connections",
            "too many real-time connections; retry later",
            5,
        ));
    };
    for name in &names {
        let resume = cursors.get(name).map(|(epoch, seq)| Cursor {
            epoch: epoch.clone(),
            seq: *seq,
        });
        let filter = (name == "activity").then(|| events.clone()).flatten();
        subscribe(&state, &mut conn, name, resume, filter, None).await?;
    }
    let outbox = std::sync::Arc::clone(conn.outbox());
    let stream = futures::stream::unfold(
        (conn, outbox, Vec::<std::sync::Arc<str>>::new(), false, cursors),
        |(conn, outbox, mut pending, mut done, mut cursors)| async move {
            loop {
                if let Some(text) = pending.pop() {
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if let (Some(ch), Some(epoch), Some(seq)) = (
                        value["channel"].as_str(),
                        value["epoch"].as_str(),
                        value["seq"].as_u64(),
                    ) {
                        cursors.insert(ch.to_owned(), (epoch.to_owned(), seq));
                    }
                    if value["type"] == "lagged" {
                        done = true;
                    }
                    let event = Event::default()
                        .data(&*text)
                        .id(encode_cursors(&cursors));
                    return Some((
                        Ok::<_, Infallible>(event),
                        (conn, outbox, pending, done, cursors),
                    ));
                }
                if done {
                    return None;
                }
                tokio::select! {
                    () = outbox.ready() => {}
                    () = conn.closing() => return None,
                }
                pending = outbox.drain();
                pending.reverse();
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(state.config.realtime.heartbeat))
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    user: String,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
}

/// `POST /v1/realtime/tokens` (admin key): a session token for one of the
/// workspace's users, for their browser to open `notifications:<user>`.
pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let principal = auth::from_headers(&state, &headers)?;
    principal.require(&[Role::Admin], "issuing user tokens")?;
    let bytes = read_body(&headers, body, 64 * 1024).await?;
    let request: TokenRequest = parse_json(&bytes)?;
    let channel = format!("notifications:{}", request.user);
    if !matches!(
        ChannelKind::parse(&channel),
        Ok(ChannelKind::Notifications(_))
    ) {
        return Err(ApiError::bad_request(
            "invalid_user",
            "user must be 1-186 characters of letters, digits, _ - . @",
        ));
    }
    let max = state.config.realtime.max_token_ttl;
    let ttl = request.ttl.unwrap_or(Duration::from_secs(3600));
    if ttl.is_zero() || ttl > max {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!("ttl must be between 1s and {}s", max.as_secs()),
        ));
    }
    let exp = chrono::Utc::now().timestamp() + ttl.as_secs().max(1) as i64;
    let token = state.tokens.sign(&Claims {
        tenant: principal.tenant,
        user: request.user.clone(),
        exp,
    });
    let expires_at = chrono::DateTime::from_timestamp(exp, 0)
        .unwrap_or_default()
        .to_rfc3339();
    Ok(axum::Json(json!({
        "token": token,
        "user": request.user,
        "channel": channel,
        "expires_at": expires_at,
    }))
    .into_response())
}
