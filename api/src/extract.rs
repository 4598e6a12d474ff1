//! Extractors: what a handler's signature says about its caller and body.
//!
//! - [`Auth<R>`]: the caller's key, from the `Authorization` header
//!   ([`crate::auth::Credentials`]), of a role in the class `R`
//!   ([`Writer`], [`Reader`], [`Admin`]): 401 without a valid key, 403 with
//!   a key of another role. It records the caller's `workspace` on the
//!   request span. `Option<Auth<R>>` is `None` without an `Authorization`
//!   header (ingest then looks for a Segment body's `writeKey`).
//! - [`UserAuth<R>`]: per-user routes (inbox, preferences): a user's
//!   session token, or a key of class `R` naming the user.
//! - [`AppJson<T, LIMIT>`]: a JSON body of at most `LIMIT` bytes (after
//!   gzip), read by [`read_body`], with Beacon's error shape;
//!   [`AppJsonOrEmpty`] takes an empty body as `{}`.
//! - [`Path`] and [`Query`]: axum's, with Beacon's error shape.
//!
//! Error precedence is argument order: axum runs the parts extractors in
//! order, then the one body extractor. Handlers list `Path`/`Query` first,
//! then the caller, then the body, so a bad path or query string is
//! reported before the key, and the key before the body is read (as the
//! handlers did before extractors).

use std::io::Read;
use std::marker::PhantomData;

use axum::body::Body;
use axum::extract::{
    FromRequest, FromRequestParts, OptionalFromRequestParts, RawPathParams, Request,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use beacon_ingest::Role;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// `axum::extract::Query` whose rejection is an [`ApiError`]: a query
/// string that does not parse (an unknown parameter, a bad value) gets 400
/// `invalid_query_string` in the structured error body, not axum's plain
/// text (the conversion is in `error.rs`).
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejection is an [`ApiError`]: a path
/// segment that does not decode (invalid percent-encoded UTF-8) gets 400
/// `invalid_path`.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A class of keys that may call a route.
pub trait Access: Send + Sync + 'static {
    /// The roles of the class.
    const ROLES: &'static [Role];
    /// What the class's routes do, for the 403 message
    /// ("{WHAT} needs a ... key; this is a ... key").
    const WHAT: &'static str;
    /// Always [`Principal`]: named here so that `Auth<R>` is a one-field
    /// tuple, `Auth(caller): Auth<Admin>`.
    type Caller;
}

/// Write or admin keys: sending events.
#[derive(Debug)]
pub enum Writer {}

/// Read or admin keys: queries, analytics, models, reading settings.
#[derive(Debug)]
pub enum Reader {}

/// Admin keys: settings, keys, users, webhooks, alert rules, training.
#[derive(Debug)]
pub enum Admin {}

impl Access for Writer {
    const ROLES: &'static [Role] = &[Role::Write, Role::Admin];
    const WHAT: &'static str = "sending events";
    type Caller = Principal;
}

impl Access for Reader {
    const ROLES: &'static [Role] = &[Role::Read, Role::Admin];
    const WHAT: &'static str = "reading workspace data";
    type Caller = Principal;
}

impl Access for Admin {
    const ROLES: &'static [Role] = &[Role::Admin];
    const WHAT: &'static str = "workspace administration";
    type Caller = Principal;
}

/// The caller, by the key in the `Authorization` header, with a role of
/// the class `R`.
#[derive(Debug)]
pub struct Auth<R: Access<Caller = Principal>>(pub R::Caller);

impl<R: Access<Caller = Principal>> Auth<R> {
    /// Checks `principal` against the class `R` and records its workspace
    /// on the current span.
    pub fn check(principal: Principal) -> Result<Self, ApiError> {
        principal.require(R::ROLES, R::WHAT)?;
        tracing::Span::current().record("workspace", principal.tenant.as_str());
        Ok(Self(principal))
    }
}

impl<R: Access<Caller = Principal>> FromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = auth::header_key(&parts.headers)?;
        Self::check(auth::authenticate(state, key.as_deref())?)
    }
}

impl<R: Access<Caller = Principal>> OptionalFromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        match auth::header_key(&parts.headers)? {
            None => Ok(None),
            Some(key) => Self::check(auth::authenticate(state, Some(&key))?).map(Some),
        }
    }
}

/// The caller of a per-user route.
#[derive(Debug)]
pub enum UserCaller {
    /// A user's session token: that user of its workspace.
    Token {
        /// Workspace id.
        tenant: String,
        /// The user.
        user: String,
    },
    /// A key: any user of its workspace, named by the request.
    Key(Principal),
}

impl UserCaller {
    /// Authenticates the `Authorization` header: a session token, or a
    /// key of the class `R`.
    pub fn from_headers<R: Access>(
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<Self, ApiError> {
        let key = auth::header_key(headers)?;
        if let Some(token) = key
            .as_deref()
            .filter(|k| k.starts_with(beacon_realtime::token::PREFIX))
        {
            let claims = state.tokens.verify(token, chrono::Utc::now().timestamp())?;
            tracing::Span::current().record("workspace", claims.tenant.as_str());
            return Ok(Self::Token {
                tenant: claims.tenant,
                user: claims.user,
            });
        }
        let principal = auth::authenticate(state, key.as_deref())?;
        principal.require(R::ROLES, R::WHAT)?;
        tracing::Span::current().record("workspace", principal.tenant.as_str());
        Ok(Self::Key(principal))
    }

    /// The workspace and user the request acts on: a token's own user
    /// (403 if the request names another), or the user the request names
    /// with a key (400 if none).
    pub fn user(self, named: Option<&str>) -> Result<(String, String), ApiError> {
        match self {
            Self::Token { tenant, user } => {
                if named.is_some_and(|u| u != user) {
                    return Err(ApiError::forbidden(
                        "a user token only opens its own user's inbox and preferences",
                    ));
                }
                Ok((tenant, user))
            }
            Self::Key(principal) => {
                let user = named.ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_request",
                        "give the user (?user=<id>) or use the user's session token",
                    )
                })?;
                Ok((principal.tenant, user.to_owned()))
            }
        }
    }
}

/// The caller of a per-user route: a user's session token, or a key of the
/// class `R`. On a route with a `{id}` user segment a token opens only its
/// own user (403 before the body is read); [`UserAuth::user`] names the
/// user otherwise.
#[derive(Debug)]
pub struct UserAuth<R> {
    caller: UserCaller,
    class: PhantomData<R>,
}

impl<R> UserAuth<R> {
    /// See [`UserCaller::user`].
    pub fn user(self, named: Option<&str>) -> Result<(String, String), ApiError> {
        self.caller.user(named)
    }
}

impl<R: Access> FromRequestParts<AppState> for UserAuth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = UserCaller::from_headers::<R>(state, &parts.headers)?;
        if let UserCaller::Token { user, .. } = &caller
            && let Ok(params) = RawPathParams::from_request_parts(parts, state).await
            && let Some((_, id)) = params.iter().find(|(name, _)| *name == "id")
            && id != user
        {
            return Err(ApiError::forbidden(
                "a user token only opens its own user's inbox and preferences",
            ));
        }
        Ok(Self {
            caller,
            class: PhantomData,
        })
    }
}

/// Body limit of most JSON requests (256 KiB).
pub const JSON_LIMIT: usize = 256 * 1024;
/// Body limit of small JSON requests: settings, keys, tokens (64 KiB).
pub const SMALL_JSON_LIMIT: usize = 64 * 1024;

/// A JSON body of at most `LIMIT` bytes (after gzip), read by
/// [`read_body`]: 400 `invalid_json` when it does not parse into `T`.
/// There is no `Content-Type` check (Segment's libraries and curl send
/// various ones).
#[derive(Debug)]
pub struct AppJson<T, const LIMIT: usize = JSON_LIMIT>(pub T);

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S> for AppJson<T, LIMIT> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = read_body(&parts.headers, body, LIMIT).await?;
        parse_json(&bytes).map(Self)
    }
}

/// [`AppJson`] that takes an empty (or blank) body as `{}`.
#[derive(Debug)]
pub struct AppJsonOrEmpty<T, const LIMIT: usize = JSON_LIMIT>(pub T);

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S>
    for AppJsonOrEmpty<T, LIMIT>
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = read_body(&parts.headers, body, LIMIT).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            parse_json(b"{}").map(Self)
        } else {
            parse_json(&bytes).map(Self)
        }
    }
}

/// Longest a client may take to send a request body.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a request body of at most `limit` bytes (after gzip decompression):
/// 413 `payload_too_large` (with the `limit`) when it is longer, declared or
/// read; 408 `body_timeout` after [`BODY_READ_TIMEOUT`]; 415
/// `unsupported_encoding` for a `Content-Encoding` other than gzip or none;
/// 400 `invalid_gzip`. [`AppJson`] reads with it; ingest, whose limit is a
/// setting, calls it itself.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
        .with_detail("limit", serde_json::json!(limit))
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect());
    let raw = match read.await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {BODY_READ_TIMEOUT:?}"),
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(ApiError::bad_request(
                "body_read_failed",
                format!("could not read the request body: {e}"),
            ));
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(raw),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity((raw.len() * 4).min(limit + 1));
            let decoder = flate2::read::MultiGzDecoder::new(&raw[..]);
            match decoder.take(limit as u64 + 1).read_to_end(&mut out) {
                Ok(n) if n > limit => Err(too_large()),
                Ok(_) => Ok(Bytes::from(out)),
                Err(e) => Err(ApiError::bad_request(
                    "invalid_gzip",
                    format!("request body is not valid gzip: {e}"),
                )),
            }
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("Content-Encoding {other:?} is not supported; use gzip or none"),
        )),
    }
}

/// Parses a JSON body into `T`: 400 `invalid_json`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use beacon_ingest::Role;

    use super::{Access, Admin, Reader, Writer};
    use crate::auth::Principal;

    fn key(role: Role) -> Principal {
        Principal {
            tenant: "shop".into(),
            role,
        }
    }

    #[test]
    fn admin_keys_are_in_every_class() {
        for roles in [Writer::ROLES, Reader::ROLES, Admin::ROLES] {
            assert!(roles.contains(&Role::Admin), "{roles:?}");
        }
        assert!(!Reader::ROLES.contains(&Role::Write));
        assert!(!Writer::ROLES.contains(&Role::Read));
    }

    #[test]
    fn a_key_of_another_class_is_refused_naming_both_roles() {
        let error = key(Role::Write)
            .require(Reader::ROLES, Reader::WHAT)
            .expect_err("a write key cannot read");
        assert_eq!(
            error.message(),
            "reading workspace data needs a read or admin key; this is a write key"
        );
        assert!(
            key(Role::Admin)
                .require(Writer::ROLES, Writer::WHAT)
                .is_ok()
        );
    }
}
