//! `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// Liveness: the process serves HTTP.
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Readiness: the WAL accepts writes and the metadata database answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let wal_ok = !state.store.is_poisoned();
    let catalog_ok = state.store.catalog().checkpoint().is_ok();
    let status = if wal_ok && catalog_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "unavailable" },
        "wal": if wal_ok { "ok" } else { "failed" },
        "catalog": if catalog_ok { "ok" } else { "failed" },
    });
    (status, axum::Json(body)).into_response()
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!(beacon_ingest::store::metric_names::BUFFER_BYTES)
        .set(state.store.buffered_bytes() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}
