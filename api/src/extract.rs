//! Extractors: what a handler's signature says about its caller and body.
//!
//! - [`crate::access::Caller`]: who is calling, authenticated and checked
//!   against the route's class by [`crate::access::gate::authorize`];
//!   `Option<Caller>` is `None` on ingest and real-time routes called
//!   without credentials in the headers (their handlers read a body's
//!   `writeKey` or a first message).
//! - [`crate::access::audit::RequestMeta`]: the client's address and user
//!   agent, for the audit log.
//! - [`AppJson<T, LIMIT>`]: a JSON body of at most `LIMIT` bytes (after
//!   gzip), read by [`read_body`], with Beacon's error shape;
//!   [`AppJsonOrEmpty`] takes an empty body as `{}`.
//! - [`Path`] and [`Query`]: axum's, with Beacon's error shape.
//!
//! The caller is checked before any extractor runs (the gate is a route
//! layer); then axum runs the parts extractors in argument order and the
//! one body extractor last, so a bad path or query string is reported
//! before the body is read.

use std::io::Read;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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
