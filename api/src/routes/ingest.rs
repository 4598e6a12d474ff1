//! Segment-compatible ingest: `/v1/batch`, `/v1/track`, `/v1/identify`,
//! `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`, and NDJSON on
//! `/v1/events`.
//!
//! Answer (200): `{"success": true, "accepted": n, "duplicates": d,
//! "rejected": [{"index", "code", "reason"}]}`. `accepted` counts events
//! stored by this request, `duplicates` those whose `messageId` was already
//! stored (safe retries). If every event is invalid the answer is 400
//! `invalid_events` with the same `rejected` list.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use beacon_ingest::EventType;
use beacon_ingest::decode::{self, Decoded};
use serde_json::json;

use crate::access::{self, Caller, Class};
use crate::error::ApiError;
use crate::extract::read_body;
use crate::state::AppState;

/// Counter: events rejected by validation.
pub const EVENTS_REJECTED: &str = "beacon_ingest_events_rejected_total";

#[derive(Clone, Copy)]
enum Format {
    Batch,
    Single(EventType),
    Ndjson,
}

/// The caller is `header` (authenticated before the body is read) or,
/// without an `Authorization` header, the Segment body's `writeKey`: the
/// body limit is a setting, so the body is read here rather than by an
/// extractor.
async fn handle(
    state: AppState,
    header: Option<Caller>,
    headers: HeaderMap,
    body: Body,
    format: Format,
) -> Result<Response, ApiError> {
    let Ok(_permit) = state.ingest_permits.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable(
            "overloaded",
            "too many ingest requests in progress; retry later",
            1,
        ));
    };
    let bytes = read_body(&headers, body, state.config.http.max_body_bytes).await?;
    let now = state.store.clock().now_us();
    let limits = &state.config.ingest.limits;
    let decoded = match format {
        Format::Batch => decode::decode_batch(&bytes, limits, now),
        Format::Single(kind) => decode::decode_single(&bytes, kind, limits, now),
        Format::Ndjson => decode::decode_ndjson(&bytes, limits, now),
    };
    let principal = match header {
        Some(caller) => caller,
        None => {
            // Only Segment bodies can carry the key; parse errors still need a key first.
            let body_key = decoded.as_ref().ok().and_then(|d| d.write_key.clone());
            let caller = access::authenticate_secret(&state, body_key.as_deref().unwrap_or(""))?;
            caller.require(Class::Ingest)?;
            tracing::Span::current().record("workspace", caller.tenant.as_str());
            caller
        }
    };
    store(&state, &principal, decoded?).await
}

async fn store(
    state: &AppState,
    principal: &Caller,
    decoded: Decoded,
) -> Result<Response, ApiError> {
    let Decoded {
        events,
        indices,
        rejected,
        ..
    } = decoded;
    metrics::counter!(EVENTS_REJECTED).increment(rejected.len() as u64);
    if events.is_empty() && !rejected.is_empty() {
        let message = format!("all {} events were rejected", rejected.len());
        return Err(ApiError::bad_request("invalid_events", message)
            .with_detail("rejected", json!(rejected)));
    }
    let receipt = state.store.ingest(&principal.tenant, events).await?;
    let duplicate_indices: Vec<usize> = receipt.duplicates.iter().map(|&i| indices[i]).collect();
    let body = json!({
        "success": true,
        "accepted": receipt.accepted,
        "duplicates": duplicate_indices.len(),
        "duplicate_indices": duplicate_indices,
        "rejected": rejected,
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// `POST /v1/batch`.
pub async fn batch(
    State(state): State<AppState>,
    header: Option<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    handle(state, header, headers, body, Format::Batch).await
}

/// `POST /v1/events` (NDJSON).
pub async fn ndjson(
    State(state): State<AppState>,
    header: Option<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    handle(state, header, headers, body, Format::Ndjson).await
}

macro_rules! single_route {
    ($name:ident, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        pub async fn $name(
            State(state): State<AppState>,
            header: Option<Caller>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response, ApiError> {
            handle(state, header, headers, body, Format::Single($kind)).await
        }
    };
}

single_route!(track, EventType::Track, "`POST /v1/track`.");
single_route!(identify, EventType::Identify, "`POST /v1/identify`.");
single_route!(page, EventType::Page, "`POST /v1/page`.");
single_route!(screen, EventType::Screen, "`POST /v1/screen`.");
single_route!(group, EventType::Group, "`POST /v1/group`.");
single_route!(alias, EventType::Alias, "`POST /v1/alias`.");
