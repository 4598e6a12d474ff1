//! The middleware every routed request passes ([`authorize`]): it finds
//! the route's [`Class`], authenticates the caller, checks the class,
//! checks CSRF for cookie-authenticated changes, takes the request from
//! the rate limit, and hands the [`Caller`] and the [`RequestMeta`] to the
//! handler.
//!
//! Credentials, in order: the `Authorization` header (a key or a user
//! session token; [`crate::auth::Credentials`]), then the session cookie.
//! Without either, open classes pass, ingest and real-time routes pass
//! (their credentials may be a Segment body's `writeKey`, a WebSocket's
//! first message or `?key=`; the handler authenticates them with
//! [`super::authenticate_secret`] and the same check), and everything else
//! is 401.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::audit::RequestMeta;
use super::limits::{Bucket, Headers};
use super::{Caller, Class, Who};
use crate::auth::Credentials;
use crate::error::ApiError;
use crate::state::AppState;

/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the middleware needs: the state and every route's class.
#[derive(Clone)]
pub struct Gate {
    /// The state.
    pub state: AppState,
    /// (method, route pattern) -> class.
    pub classes: Arc<HashMap<(Method, String), Class>>,
}

/// 401 without credentials.
pub fn missing_credentials() -> ApiError {
    ApiError::unauthorized(
        "missing_credentials",
        "sign in, or send an API key (Authorization: Bearer <key>, or HTTP Basic with the key as user name)",
    )
}

/// Where the request came from: the peer address (or the first
/// `X-Forwarded-For` address when `access.trust_forwarded_for`) and the
/// user agent.
pub fn request_meta(request: &Request, trust_forwarded_for: bool) -> RequestMeta {
    let forwarded = trust_forwarded_for
        .then(|| {
            request
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
        })
        .flatten();
    let peer = request
        .extensions()
        .get::<ConnectInfo<crate::listener::Peer>>()
        .map(|c| c.0.0.ip().to_string());
    RequestMeta {
        ip: forwarded.or(peer),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect()),
    }
}

/// The caller of a request: by its `Authorization` header, else by its
/// session cookie; `None` without either.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    session: Option<Session>,
) -> Result<Option<Caller>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let credentials = Credentials::parse(value.as_bytes()).map_err(|_| {
            ApiError::unauthorized(
                "invalid_authorization",
                "Authorization header must be \"Basic <base64(key:)>\" or \"Bearer <key>\"",
            )
        })?;
        return super::authenticate_secret(state, &credentials.key).map(Some);
    }
    match session {
        Some(session) => super::session::current(state, &session).await,
        None => Ok(None),
    }
}

/// Constant-time equality of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether a cookie-authenticated request may go on: changes must echo the
/// session's CSRF token; WebSocket and SSE handshakes (GET, so no token)
/// must come from this origin.
fn check_cross_site(headers: &HeaderMap, method: &Method, class: Class, csrf: &str) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if class == Class::Realtime
            && let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            if origin_host != host {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cross_origin",
                    "a signed-in WebSocket or stream must come from this server's own pages",
                ));
            }
        }
        return Ok(());
    }
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if same_secret(sent, csrf) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "a signed-in change needs the session's CSRF token in X-CSRF-Token (GET /v1/auth/me gives it)",
        ))
    }
}

fn identity(caller: &Caller) -> String {
    match &caller.who {
        Who::Key { prefix, .. } => format!("key:{prefix}"),
        Who::Session { user, .. } | Who::Token { user } => {
            format!("user:{}/{user}", caller.tenant)
        }
        Who::Embed { id, .. } => format!("embed:{id}"),
    }
}

fn add_headers(headers: &mut HeaderMap, h: Headers) {
    headers.insert("ratelimit-limit", HeaderValue::from(h.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(h.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(h.reset_secs));
}

/// The middleware (see the module docs).
pub async fn authorize(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let method = if request.method() == Method::HEAD {
        Method::GET
    } else {
        request.method().clone()
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(class) = gate.classes.get(&(method.clone(), route.clone())).copied() else {
        tracing::error!(%method, "A route has no access class; refusing it.");
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
        .into_response();
    };
    let meta = request_meta(&request, gate.state.config.access.trust_forwarded_for);
    let caller = if class.is_open() {
        None
    } else {
        // Owned copies: a `&Request` is not `Send` across the await.
        let headers = request.headers().clone();
        let session = request.extensions().get::<Session>().cloned();
        match caller(&gate.state, &headers, session).await {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        }
    };
    match &caller {
        Some(c) => {
            let allowed = match &c.who {
                Who::Embed { customer, .. } => {
                    super::embed::allows(&method, &route, customer.is_some())
                        .map_err(ApiError::forbidden)
                }
                _ => c.require(class),
            };
            if let Err(e) = allowed {
                return e.into_response();
            }
            if let Who::Session { csrf, .. } = &c.who
                && let Err(e) = check_cross_site(request.headers(), &method, class, csrf)
            {
                return e.into_response();
            }
            tracing::Span::current().record("workspace", c.tenant.as_str());
        }
        None if class.is_open() || matches!(class, Class::Ingest | Class::Realtime) => {}
        None => return missing_credentials().into_response(),
    }
    let limited = match Bucket::of(class) {
        None => None,
        Some(bucket) => {
            let who = caller.as_ref().map_or_else(
                || format!("ip:{}", meta.ip.as_deref().unwrap_or("unknown")),
                identity,
            );
            match gate.state.limits.check(bucket, &who) {
                Ok(h) => h,
                Err(refused) => {
                    let mut response = ApiError::too_many(
                        format!(
                            "too many requests; try again in {} s",
                            refused.retry_after_secs
                        ),
                        refused.retry_after_secs,
                    )
                    .into_response();
                    add_headers(response.headers_mut(), refused.headers);
                    return response;
                }
            }
        }
    };
    request.extensions_mut().insert(meta);
    if let Some(c) = caller {
        request.extensions_mut().insert(c);
    }
    let mut response = next.run(request).await;
    if let Some(h) = limited {
        add_headers(response.headers_mut(), h);
    }
    response
}
