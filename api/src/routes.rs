//! HTTP routes: the route table ([`router`]), CORS for browser ingest, and
//! the request middleware (metrics, the `request` span, panics as 500).
//! Handlers live in the submodules, one per area; what they take (caller,
//! body, path, query) are the extractors of [`crate::extract`].

pub mod admin;
pub mod alerts;
pub mod analytics;
pub mod health;
pub mod ingest;
pub mod models;
pub mod notify;
pub mod realtime;
pub mod sql;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::state::AppState;

/// Counter: HTTP requests by route, method and status.
pub const HTTP_REQUESTS: &str = "beacon_http_requests_total";
/// Histogram: HTTP request latency by route.
pub const HTTP_SECONDS: &str = "beacon_http_request_duration_seconds";

/// Routes a browser may call (with a write key).
const INGEST_PATHS: [&str; 9] = [
    "/v1/batch",
    "/v1/import",
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/events",
];

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/batch", post(ingest::batch))
        .route("/v1/import", post(ingest::batch))
        .route("/v1/track", post(ingest::track))
        .route("/v1/identify", post(ingest::identify))
        .route("/v1/page", post(ingest::page))
        .route("/v1/screen", post(ingest::screen))
        .route("/v1/group", post(ingest::group))
        .route("/v1/alias", post(ingest::alias))
        .route("/v1/events", post(ingest::ndjson))
        .route("/v1/sql", post(sql::sql))
        .route("/v1/queries", get(sql::list))
        .route("/v1/queries/{id}", axum::routing::delete(sql::cancel))
        .route(
            "/v1/analytics/{endpoint}",
            get(analytics::get).post(analytics::post),
        )
        .route(
            "/v1/workspace",
            get(admin::get_workspace).patch(admin::patch_workspace),
        )
        .route(
            "/v1/workspace/keys",
            get(admin::list_keys).post(admin::create_key),
        )
        .route(
            "/v1/workspace/keys/{prefix}",
            axum::routing::delete(admin::revoke_key),
        )
        .route("/v1/workspace/flush", post(admin::flush))
        .route(
            "/v1/forecasts",
            get(models::list_forecasts).post(models::forecast),
        )
        .route("/v1/anomalies", post(models::anomalies))
        .route("/v1/segments", get(models::segments))
        .route("/v1/reorder-point", post(models::reorder_point))
        .route("/v1/models/refit", post(models::refit))
        .route("/v1/models/{kind}", get(models::model))
        .route("/v1/models/{kind}/train", post(models::train))
        .route("/v1/users", get(notify::list_users))
        .route(
            "/v1/users/{id}",
            get(notify::get_user)
                .put(notify::put_user)
                .delete(notify::delete_user),
        )
        .route(
            "/v1/users/{id}/preferences",
            axum::routing::put(notify::put_preferences),
        )
        .route(
            "/v1/notify/branding",
            get(notify::get_branding).put(notify::put_branding),
        )
        .route(
            "/v1/webhooks",
            get(notify::list_endpoints).post(notify::create_endpoint),
        )
        .route(
            "/v1/webhooks/{id}",
            axum::routing::delete(notify::delete_endpoint),
        )
        .route("/v1/webhooks/{id}/rotate", post(notify::rotate_endpoint))
        .route("/v1/notifications", post(notify::send))
        .route("/v1/notifications/{id}", get(notify::get_notification))
        .route("/v1/deliveries", get(notify::deliveries))
        .route("/v1/inbox", get(notify::inbox))
        .route("/v1/inbox/unread-count", get(notify::unread))
        .route("/v1/inbox/mark", post(notify::mark))
        .route(
            "/v1/alerts/rules",
            get(alerts::list_rules).post(alerts::create_rule),
        )
        .route(
            "/v1/alerts/rules/{id}",
            get(alerts::get_rule)
                .put(alerts::put_rule)
                .delete(alerts::delete_rule),
        )
        .route("/v1/alerts/rules/{id}/evaluate", post(alerts::evaluate))
        .route("/v1/alerts/history", get(alerts::history))
        .route("/v1/alerts/simulate", post(alerts::simulate))
        .route("/v1/alerts/templates", get(alerts::list_templates))
        .route("/v1/alerts/templates/{name}", post(alerts::use_template))
        .route(
            "/v1/alerts/silences",
            get(alerts::list_silences).post(alerts::create_silence),
        )
        .route(
            "/v1/alerts/silences/{id}",
            axum::routing::delete(alerts::delete_silence),
        )
        .route("/v1/ws", get(realtime::websocket))
        .route("/v1/stream", get(realtime::sse))
        .route("/v1/realtime/tokens", post(realtime::create_token))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Write keys are meant to be embedded in web pages: browsers may call the
    // ingest routes from any origin. Query and admin routes get no CORS grant.
    let browser_ingest = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(|_, parts| {
            INGEST_PATHS.contains(&parts.uri.path())
        }))
        .allow_methods([Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ])
        .max_age(Duration::from_secs(86_400));
    api.layer(middleware::from_fn(track_requests))
        .layer(browser_ingest)
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("Handler panicked.");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal server error",
                )
                .into_response()
            },
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Counts and times each request by matched route, and runs it in a
/// `request` span with the method, the route and the caller's `workspace`
/// (recorded by the [`crate::extract::Auth`] extractors).
async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        workspace = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!(HTTP_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    response
}
