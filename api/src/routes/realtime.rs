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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use beacon_realtime::hub::{ChannelKind, signal};
use beacon_realtime::protocol::{ClientMessage, Cursor, Text, close, control, error_message};
use beacon_realtime::token::Claims;
use beacon_realtime::{Connection, Live, Principal, SubscribeOptions};
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::access::{self, Caller, Class};
use crate::error::ApiError;
use crate::extract::{AppJson, Query, SMALL_JSON_LIMIT};
use crate::state::AppState;

/// An accepted WebSocket: hyper's upgraded connection under tungstenite.
type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

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

/// The hub principal of a caller the gate authenticated (headers or
/// session), or of a key or token from the query string or the first
/// message: it must be allowed the real-time channels.
fn principal_of(
    state: &AppState,
    caller: Option<Caller>,
    key: Option<&str>,
    token: Option<&str>,
) -> Result<Principal, Refusal> {
    let unauthorized = |message: String| Refusal {
        code: close::UNAUTHORIZED,
        error: "unauthorized",
        message,
    };
    let caller = match caller {
        Some(caller) => caller,
        None => {
            let secret = token.filter(|t| !t.is_empty()).or(key).unwrap_or("");
            access::authenticate_secret(state, secret).map_err(|e| unauthorized(e.message()))?
        }
    };
    caller.require(Class::Realtime).map_err(|e| Refusal {
        code: close::FORBIDDEN,
        error: "forbidden",
        message: e.message(),
    })?;
    Ok(Principal {
        access: caller.hub_access(),
        tenant: caller.tenant,
    })
}

/// Subscribes `conn`, preparing the snapshot the channel needs first.
async fn subscribe(
    live: &Live,
    conn: &mut Connection,
    channel: &str,
    resume: Option<Cursor>,
    events: Option<Vec<String>>,
    sql: Option<String>,
    recent: Option<usize>,
) -> beacon_realtime::Result<()> {
    let kind = conn.authorize(channel)?;
    let tenant = conn.principal().tenant.clone();
    if sql.is_some() && !matches!(kind, ChannelKind::Query(_)) {
        return Err(beacon_realtime::Error::InvalidMessage(
            "sql only applies to query:<id> channels".into(),
        ));
    }
    let snapshot = match &kind {
        ChannelKind::Metrics => Some(live.ensure_metrics(&tenant).await?),
        ChannelKind::Query(id) => Some(live.ensure_query(&tenant, id, sql.as_deref()).await?),
        _ => None,
    };
    conn.subscribe(
        channel,
        SubscribeOptions {
            resume,
            events,
            snapshot,
            recent,
        },
    )
}

/// `GET /v1/ws`.
///
/// Answers the opening handshake here (RFC 6455 section 4.2) and runs the
/// socket on a task of its own, instead of axum's `WebSocketUpgrade`:
/// that one's task keeps its handshake state (the socket configuration,
/// the protocol header, the upgrade future) for the life of every
/// connection, about 0.5 KB each, and it refuses bad handshakes in plain
/// text. Only HTTP/1.1 upgrades are accepted (no WebSockets over HTTP/2).
pub async fn websocket(
    State(state): State<AppState>,
    Query(params): Query<StreamParams>,
    caller: Option<Caller>,
    mut request: Request,
) -> Response {
    // The route also takes HEAD, and hyper would upgrade any method.
    if request.method() != Method::GET {
        let allow = [(header::ALLOW, HeaderValue::from_static("GET"))];
        let error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "a WebSocket opens with GET",
        );
        return (allow, error).into_response();
    }
    let accept = match accept_key(request.headers()) {
        Ok(accept) => accept,
        Err(refusal) => return refusal,
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return not_upgradable("this connection cannot be upgraded to a WebSocket");
    };
    let key = params.key;
    let token = params.token;
    let limit = state.config.realtime.max_message_bytes;
    // tungstenite's default 128 KiB read buffer per socket dominated the
    // memory of an idle connection. Clients send small control messages
    // (subscribe, ping), so 256 bytes hold one; a larger frame is still
    // read (the buffer grows to the frame's length, up to
    // max_message_bytes).
    // Writes are fed and flushed per burst, so a 16 KiB write buffer
    // batches without holding memory.
    let config = WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    // Boxed: the task holds this until the socket is open.
    let setup = Box::new(Setup {
        state,
        caller,
        key,
        token,
        on_upgrade,
        config,
    });
    tokio::spawn(run_socket(setup));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The `Sec-WebSocket-Accept` answer to a WebSocket opening handshake, or
/// the structured refusal: 426 when the request is not an upgrade to
/// `websocket`, 400 for a version other than 13 or a malformed key.
#[allow(clippy::result_large_err)]
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, Response> {
    let has_token = |name: HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(not_upgradable(
            "GET /v1/ws is a WebSocket endpoint: send `Connection: Upgrade` and `Upgrade: websocket` \
             (or use GET /v1/stream for Server-Sent Events)",
        ));
    }
    let version_13 = [(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    )];
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let error = ApiError::bad_request(
            "unsupported_websocket_version",
            "only WebSocket version 13 (RFC 6455) is supported",
        );
        return Err((version_13, error).into_response());
    }
    // The key is 16 random bytes in base64: 24 characters.
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|k| {
            k.len() == 24
                && base64::engine::general_purpose::STANDARD
                    .decode(k)
                    .is_ok_and(|b| b.len() == 16)
        });
    let Some(key) = key else {
        return Err(ApiError::bad_request(
            "invalid_websocket_key",
            "Sec-WebSocket-Key must be 16 bytes in base64",
        )
        .into_response());
    };
    Ok(HeaderValue::from_str(&derive_accept_key(key)).expect("base64 is a valid header value"))
}

/// 426 Upgrade Required, naming the protocol to upgrade to.
fn not_upgradable(message: &str) -> Response {
    let upgrade = [(header::UPGRADE, HeaderValue::from_static("websocket"))];
    let error = ApiError::new(StatusCode::UPGRADE_REQUIRED, "upgrade_required", message);
    (upgrade, error).into_response()
}

/// Sends a close frame; true if it was written.
async fn close_with(socket: &mut WebSocket, code: u16, reason: &str) -> bool {
    // Close reasons are limited to 123 bytes.
    let mut reason = reason.to_owned();
    while reason.len() > 120 {
        reason.pop();
    }
    socket
        .send(Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        })))
        .await
        .is_ok()
}

/// What a WebSocket needs until it is authenticated.
struct Setup {
    state: AppState,
    /// Authenticated by the gate (headers, session), if so.
    caller: Option<Caller>,
    key: Option<String>,
    token: Option<String>,
    /// The connection, once the 101 response has gone out.
    on_upgrade: OnUpgrade,
    config: WebSocketConfig,
}

/// The connection's task. Not an `async fn`: the future of an async fn
/// keeps its parameters for its whole life, and this one lives as long as
/// the connection, so every byte of it is per-connection memory. The
/// one-off opening phase (authentication, refusals, the welcome) is a
/// boxed future made here, so the task holds a pointer to it and then
/// only the [`Session`].
fn run_socket(setup: Box<Setup>) -> impl Future<Output = ()> + Send {
    // The session is boxed too: moved by value through async fns it would
    // be copied into each future's state (1.7 KB per connection for a
    // 528-byte session).
    let open = Box::pin(open_session(setup));
    async move {
        if let Some(session) = open.await {
            session.run().await;
        }
    }
}

/// Waits for the upgraded connection, authenticates, registers the
/// connection with the hub (or refuses it) and queues the welcome.
async fn open_session(setup: Box<Setup>) -> Option<Box<Session>> {
    let Setup {
        state,
        caller,
        key,
        token,
        on_upgrade,
        config,
    } = *setup;
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, "A WebSocket upgrade failed.");
            return None;
        }
    };
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), WsRole::Server, Some(config))
            .await;
    let principal = authenticate(&state, &mut socket, caller, key, token).await?;
    let Some(conn) = state.hub.connect(principal) else {
        close_with(
            &mut socket,
            close::TRY_AGAIN,
            "too many connections; retry later",
        )
        .await;
        return None;
    };
    let config = &state.config.realtime;
    conn.send_control(control(
        "welcome",
        json!({
            "tenant": conn.principal().tenant,
            "heartbeat_ms": config.heartbeat.as_millis() as u64,
            "max_message_bytes": config.max_message_bytes,
        }),
    ));
    conn.watch();
    Some(Box::new(Session {
        socket,
        conn,
        live: Arc::clone(&state.live),
        batch: Vec::new(),
        sent: 0,
        ping: false,
        unflushed: false,
        max_message_bytes: config.max_message_bytes,
        write_timeout: config.write_timeout,
    }))
}

/// Rounds of [`Session::poll_turn`] before it yields to other tasks.
const ROUNDS_PER_POLL: usize = 16;

/// An open, authenticated WebSocket: the socket, the hub connection and
/// what is being written. Driven by [`Session::poll_turn`] instead of a
/// `select!` over timers: pings, dead and idle clients, stalled writes
/// and shutdown come from the hub's sweeper as signals on the outbox
/// (`beacon_realtime::hub::signal`), so a connection owns no timer.
struct Session {
    socket: WebSocket,
    conn: Connection,
    live: Arc<Live>,
    /// Messages drained from the outbox; `batch[..sent]` are handed to
    /// the socket.
    batch: Vec<Text>,
    sent: usize,
    /// A ping is due.
    ping: bool,
    /// Frames handed to the socket and not yet flushed.
    unflushed: bool,
    max_message_bytes: usize,
    write_timeout: Duration,
}

/// What a session's poll comes back with.
enum Turn {
    /// A text message from the client.
    Text(Utf8Bytes),
    /// The connection ends, with a close frame to send (or none: the
    /// client is gone or stalled).
    End(Option<(u16, String)>),
}

impl Session {
    async fn run(mut self: Box<Self>) {
        let outcome = loop {
            match std::future::poll_fn(|cx| self.poll_turn(cx)).await {
                // Boxed: subscribing may plan a live query, a large future
                // that would otherwise be part of every connection's task
                // for its whole life.
                Turn::Text(text) => {
                    Box::pin(handle_message(&self.live, &mut self.conn, &text)).await;
                }
                Turn::End(outcome) => break outcome,
            }
        };
        if let Some((code, reason)) = outcome {
            Box::pin(close_handshake(
                &mut self.socket,
                code,
                reason,
                self.write_timeout,
            ))
            .await;
        }
    }

    /// Writes what is queued, reads what the client sent and acts on the
    /// sweeper's signals until there is a client message to handle, the
    /// connection ends, or nothing can move (then every source of work
    /// has this task's waker: the socket's reader and writer, the outbox).
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<Turn> {
        for _ in 0..ROUNDS_PER_POLL {
            let signals = self.conn.outbox().take_signals();
            if signals & signal::SHUTDOWN != 0 {
                return Poll::Ready(Turn::End(Some((
                    close::GOING_AWAY,
                    "server shutting down".into(),
                ))));
            }
            if signals & signal::DELETED != 0 {
                return Poll::Ready(Turn::End(Some((
                    close::WORKSPACE_DELETED,
                    "workspace deleted".into(),
                ))));
            }
            if signals & signal::STALLED != 0 {
                tracing::warn!(tenant = %self.conn.principal().tenant, "Closed a stalled real-time client.");
                return Poll::Ready(Turn::End(None));
            }
            if signals & signal::DEAD != 0 {
                return Poll::Ready(Turn::End(Some((close::DEAD, "no answer to pings".into()))));
            }
            if signals & signal::IDLE != 0 {
                return Poll::Ready(Turn::End(Some((close::IDLE, "no subscriptions".into()))));
            }
            if signals & signal::PING != 0 {
                self.ping = true;
            }
            if self.sent == self.batch.len() && !self.unflushed {
                // Nothing in flight: take everything queued, to be written
                // with one flush (one write syscall per wake-up, not one
                // per message).
                self.batch.clear();
                self.sent = 0;
                if self.batch.capacity() > 256 {
                    self.batch = Vec::new();
                }
                self.conn.outbox().drain_into(&mut self.batch);
            }
            let (mut progress, blocked) = match self.poll_write(cx) {
                Poll::Ready(Ok(wrote)) => (wrote, false),
                Poll::Ready(Err(())) => return Poll::Ready(Turn::End(None)),
                Poll::Pending => (false, true),
            };
            match Pin::new(&mut self.socket).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    self.conn.heard();
                    progress = true;
                    match message {
                        Message::Text(text) => return Poll::Ready(Turn::Text(text)),
                        Message::Close(_) => return Poll::Ready(Turn::End(None)),
                        Message::Binary(_) => self.conn.send_control(error_message(
                            "invalid_message",
                            "binary frames are not supported; send JSON text",
                            None,
                        )),
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // A frame or message over max_message_bytes.
                    let too_big = matches!(e, WsError::Capacity(_));
                    return Poll::Ready(Turn::End(too_big.then(|| {
                        (
                            close::TOO_BIG,
                            format!("messages are limited to {} bytes", self.max_message_bytes),
                        )
                    })));
                }
                Poll::Ready(None) => return Poll::Ready(Turn::End(None)),
                Poll::Pending => {}
            }
            if !progress {
                let outbox = self.conn.outbox();
                let woken = outbox.poll_ready(cx).is_ready();
                // While a write waits on the socket, queued messages wait
                // too; only a signal is news.
                if !woken || (blocked && !outbox.has_signals()) {
                    return Poll::Pending;
                }
            }
        }
        // Still busy: let other connections run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Hands the due ping and the drained messages to the socket and
    /// flushes them. `Ready(Ok(true))` if something was written,
    /// `Pending` while the socket cannot take more.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ()>> {
        let mut wrote = false;
        while self.ping || self.sent < self.batch.len() {
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Pending => {
                    self.conn.writing(true);
                    return Poll::Pending;
                }
            }
            let message = if std::mem::take(&mut self.ping) {
                Message::Ping(Bytes::new())
            } else {
                self.sent += 1;
                // A reference to the shared bytes (a UTF-8 scan, no copy).
                match Utf8Bytes::try_from(self.batch[self.sent - 1].bytes().clone()) {
                    Ok(text) => Message::Text(text),
                    Err(_) => continue,
                }
            };
            if Pin::new(&mut self.socket).start_send(message).is_err() {
                return Poll::Ready(Err(()));
            }
            self.unflushed = true;
            wrote = true;
        }
        if self.unflushed {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    self.conn.writing(false);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Pending => {
                    self.conn.writing(true);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(wrote))
    }
}

/// Sends the close frame and lets the client answer (it may still be
/// flushing pongs) before the socket goes away.
async fn close_handshake(
    socket: &mut WebSocket,
    code: u16,
    reason: String,
    write_timeout: Duration,
) {
    if matches!(
        tokio::time::timeout(write_timeout, close_with(socket, code, &reason)).await,
        Ok(true)
    ) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = socket.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The connection's principal, from the request's credentials or else its
/// first message; `None` after refusing (error message and close code).
async fn authenticate(
    state: &AppState,
    socket: &mut WebSocket,
    caller: Option<Caller>,
    key: Option<String>,
    token: Option<String>,
) -> Option<Principal> {
    let auth_timeout = state.config.realtime.auth_timeout;
    let principal = if caller.is_some() || key.is_some() || token.is_some() {
        principal_of(state, caller, key.as_deref(), token.as_deref())
    } else {
        match tokio::time::timeout(auth_timeout, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => match ClientMessage::parse(&text) {
                Ok(ClientMessage::Auth { key, token }) => {
                    principal_of(state, None, key.as_deref(), token.as_deref())
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
            let _ = socket.send(Message::Text(text.as_str().into())).await;
            close_with(socket, refusal.code, &refusal.message).await;
            None
        }
    }
}

async fn handle_message(live: &Live, conn: &mut Connection, text: &str) {
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
            recent,
        } => {
            if let Err(e) = subscribe(live, conn, &channel, resume, events, sql, recent).await {
                if matches!(e, beacon_realtime::Error::Engine(ref inner) if !inner.is_user_error())
                {
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
    caller: Option<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = principal_of(&state, caller, params.key.as_deref(), params.token.as_deref()).map_err(|r| {
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
        subscribe(&state.live, &mut conn, name, resume, filter, None, None).await?;
    }
    let outbox = std::sync::Arc::clone(conn.outbox());
    let stream = futures::stream::unfold(
        (conn, outbox, Vec::<Text>::new(), false, cursors),
        |(conn, outbox, mut pending, mut done, mut cursors)| async move {
            loop {
                if let Some(text) = pending.pop() {
                    let value: Value = serde_json::from_slice(text.bytes()).unwrap_or(Value::Null);
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
                        .data(text.as_str())
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

/// `POST /v1/realtime/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    user: String,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
}

/// `POST /v1/realtime/tokens` (admin key): a session token for one of the
/// workspace's users, for their browser to open `notifications:<user>`.
pub async fn create_token(
    State(state): State<AppState>,
    principal: Caller,
    AppJson(request): AppJson<TokenRequest, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
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
