//! HTTP routes: the route table ([`router`]), CORS for browser ingest, and
//! the request middleware (metrics, the `request` span, panics as 500).
//! Handlers live in the submodules, one per area; what they take (caller,
//! body, path, query) are the extractors of [`crate::extract`].

pub mod admin;
pub mod alerts;
pub mod analytics;
pub mod auth;
pub mod health;
pub mod ingest;
pub mod models;
pub mod notify;
pub mod queries;
pub mod realtime;
pub mod reports;
pub mod sql;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use tower_sessions::SessionManagerLayer;
use tower_sessions_rusqlite_store::RusqliteStore;

use crate::access::Class;
use crate::access::gate::{self, Gate};
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

/// Every route and its access class, built together: a route cannot exist
/// without a class, and `beacon routes` lists exactly what is served.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    classes: HashMap<(Method, String), Class>,
    order: Vec<(Method, &'static str, Class)>,
}

impl Routes {
    /// Adds `method path` with its class.
    fn add<H, T>(mut self, method: Method, path: &'static str, class: Class, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        self.router = self.router.route(path, on(filter, handler));
        let previous = self.classes.insert((method.clone(), path.to_owned()), class);
        assert!(previous.is_none(), "{method} {path} is routed twice");
        self.order.push((method, path, class));
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, class: Class, h: H) -> Self {
        self.add(Method::GET, path, class, h)
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, class: Class, h: H) -> Self {
        self.add(Method::POST, path, class, h)
    }

    fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, class: Class, h: H) -> Self {
        self.add(Method::PUT, path, class, h)
    }

    fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, class: Class, h: H) -> Self {
        self.add(Method::PATCH, path, class, h)
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, class: Class, h: H) -> Self {
        self.add(Method::DELETE, path, class, h)
    }

    /// Every route: method, path pattern, class, in routing order.
    pub fn list(&self) -> &[(Method, &'static str, Class)] {
        &self.order
    }
}

/// The routes (what each class may do: [`crate::access::ACCESS`]).
pub fn routes() -> Routes {
    use Class::*;
    let mut r = Routes::default();
    for path in INGEST_PATHS {
        r = match path {
            "/v1/batch" | "/v1/import" => r.post(path, Ingest, ingest::batch),
            "/v1/track" => r.post(path, Ingest, ingest::track),
            "/v1/identify" => r.post(path, Ingest, ingest::identify),
            "/v1/page" => r.post(path, Ingest, ingest::page),
            "/v1/screen" => r.post(path, Ingest, ingest::screen),
            "/v1/group" => r.post(path, Ingest, ingest::group),
            "/v1/alias" => r.post(path, Ingest, ingest::alias),
            _ => r.post(path, Ingest, ingest::ndjson),
        };
    }
    r.post("/v1/auth/login", SignIn, auth::login)
        .post("/v1/auth/invitations/accept", SignIn, auth::accept_invitation)
        .post("/v1/auth/password-reset", SignIn, auth::request_reset)
        .post("/v1/auth/password-reset/confirm", SignIn, auth::confirm_reset)
        .get("/v1/auth/me", Account, auth::me)
        .get("/v1/auth/session", Public, auth::session_state)
        .post("/v1/auth/logout", Account, auth::logout)
        .post("/v1/auth/logout-everywhere", Account, auth::logout_everywhere)
        .put("/v1/auth/password", Account, auth::change_password)
        .post("/v1/auth/totp", Account, auth::totp_setup)
        .post("/v1/auth/totp/confirm", Account, auth::totp_confirm)
        .delete("/v1/auth/totp", Account, auth::totp_disable)
        .get("/v1/auth/keys", Account, auth::list_own_keys)
        .post("/v1/auth/keys", Account, auth::create_own_key)
        .delete("/v1/auth/keys/{prefix}", Account, auth::revoke_own_key)
        .get("/v1/auth/views", Account, views::list)
        .post("/v1/auth/views", Account, views::save)
        .delete("/v1/auth/views/{id}", Account, views::delete)
        .get("/v1/auth/layouts/{page}", Account, views::get_layout)
        .put("/v1/auth/layouts/{page}", Account, views::put_layout)
        .post("/v1/sql", Query, sql::sql)
        .get("/v1/queries", Admin, sql::list)
        .delete("/v1/queries/{id}", Admin, sql::cancel)
        .get("/v1/analytics/{endpoint}", View, analytics::get)
        .post("/v1/analytics/{endpoint}", Query, analytics::post)
        .get("/v1/workspace", View, admin::get_workspace)
        .patch("/v1/workspace", Admin, admin::patch_workspace)
        .delete("/v1/workspace", Owner, admin::delete_workspace)
        .get("/v1/workspace/keys", Admin, admin::list_keys)
        .post("/v1/workspace/keys", Admin, admin::create_key)
        .delete("/v1/workspace/keys/{prefix}", Admin, admin::revoke_key)
        .post("/v1/workspace/keys/{prefix}/rotate", Admin, admin::rotate_key)
        .post("/v1/workspace/flush", Admin, admin::flush)
        .get("/v1/audit", Admin, admin::audit)
        .get("/v1/forecasts", View, models::list_forecasts)
        .post("/v1/forecasts", Query, models::forecast)
        .post("/v1/anomalies", Query, models::anomalies)
        .get("/v1/anomalies", View, models::anomalies_get)
        .get("/v1/segments", View, models::segments)
        .post("/v1/reorder-point", Query, models::reorder_point)
        .post("/v1/models/refit", Admin, models::refit)
        .get("/v1/models/{kind}", View, models::model)
        .post("/v1/models/{kind}/train", Admin, models::train)
        .get("/v1/users", View, notify::list_users)
        .get("/v1/users/{id}", View, notify::get_user)
        .put("/v1/users/{id}", Admin, notify::put_user)
        .delete("/v1/users/{id}", Admin, notify::delete_user)
        .post("/v1/users/{id}/invite", Admin, auth::invite)
        .put("/v1/users/{id}/preferences", Inbox, notify::put_preferences)
        .get("/v1/notify/branding", View, notify::get_branding)
        .put("/v1/notify/branding", Admin, notify::put_branding)
        .get("/v1/notify/branding/logo", View, notify::get_logo)
        .put("/v1/notify/branding/logo", Admin, notify::put_logo)
        .delete("/v1/notify/branding/logo", Admin, notify::delete_logo)
        .get("/v1/webhooks", Admin, notify::list_endpoints)
        .post("/v1/webhooks", Admin, notify::create_endpoint)
        .delete("/v1/webhooks/{id}", Admin, notify::delete_endpoint)
        .post("/v1/webhooks/{id}/rotate", Admin, notify::rotate_endpoint)
        .post("/v1/notifications", Admin, notify::send)
        .get("/v1/notifications/{id}", Query, notify::get_notification)
        .get("/v1/deliveries", Query, notify::deliveries)
        .get("/v1/inbox", Inbox, notify::inbox)
        .get("/v1/inbox/unread-count", Inbox, notify::unread)
        .post("/v1/inbox/mark", Inbox, notify::mark)
        .get("/v1/alerts/rules", View, alerts::list_rules)
        .post("/v1/alerts/rules", Rules, alerts::create_rule)
        .get("/v1/alerts/rules/{id}", View, alerts::get_rule)
        .put("/v1/alerts/rules/{id}", Rules, alerts::put_rule)
        .delete("/v1/alerts/rules/{id}", Rules, alerts::delete_rule)
        .post("/v1/alerts/rules/{id}/evaluate", Rules, alerts::evaluate)
        .get("/v1/alerts/history", View, alerts::history)
        .post("/v1/alerts/simulate", Query, alerts::simulate)
        .get("/v1/alerts/templates", View, alerts::list_templates)
        .post("/v1/alerts/templates/{name}", Rules, alerts::use_template)
        .get("/v1/alerts/silences", View, alerts::list_silences)
        .post("/v1/alerts/silences", Rules, alerts::create_silence)
        .delete("/v1/alerts/silences/{id}", Rules, alerts::delete_silence)
        .get("/v1/saved-queries", Query, queries::list)
        .post("/v1/saved-queries", Query, queries::create)
        .get("/v1/saved-queries/{id}", Query, queries::get)
        .put("/v1/saved-queries/{id}", Query, queries::put)
        .delete("/v1/saved-queries/{id}", Query, queries::delete)
        .get("/v1/reports", View, reports::list)
        .post("/v1/reports", Rules, reports::create)
        .get("/v1/reports/templates", View, reports::list_templates)
        .post("/v1/reports/preview", Query, reports::preview)
        .get("/v1/reports/runs", View, reports::runs)
        .get("/v1/reports/runs/{id}", View, reports::get_run)
        .get("/v1/reports/runs/{id}/file", View, reports::run_file)
        .get("/v1/reports/{id}", View, reports::get)
        .put("/v1/reports/{id}", Rules, reports::put)
        .delete("/v1/reports/{id}", Rules, reports::delete)
        .post("/v1/reports/{id}/pause", Rules, reports::pause)
        .post("/v1/reports/{id}/resume", Rules, reports::resume)
        .post("/v1/reports/{id}/run", Rules, reports::run_now)
        .post("/v1/reports/{id}/test", Rules, reports::test_send)
        .get("/v1/reports/download/{token}", Public, reports::download)
        .get("/v1/ws", Realtime, realtime::websocket)
        .get("/v1/stream", Realtime, realtime::sse)
        .post("/v1/realtime/tokens", Admin, realtime::create_token)
        .get("/v1/embed/tokens", Admin, crate::access::embed::list)
        .post("/v1/embed/tokens", Admin, crate::access::embed::create)
        .delete("/v1/embed/tokens/{id}", Admin, crate::access::embed::revoke)
        .get("/", Public, crate::web::index)
        .get("/assets/{build}/{*path}", Public, crate::web::assets)
        .get("/embed/{*path}", Public, crate::web::embed)
        .get("/healthz", Public, health::healthz)
        .get("/readyz", Public, health::readyz)
        .get("/metrics", Public, health::metrics)
}

/// Builds the router: the routes behind the access gate, sessions, CORS for
/// browser ingest, metrics and panics.
pub fn router(state: AppState, sessions: SessionManagerLayer<RusqliteStore>) -> Router {
    let Routes {
        router, classes, ..
    } = routes();
    let gate = Gate {
        state: state.clone(),
        classes: Arc::new(classes),
    };
    let api = router
        .route_layer(middleware::from_fn_with_state(gate, gate::authorize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Write keys are meant to be embedded in web pages: browsers may call the
    // ingest routes from any origin. So may portal pages with an embed or
    // user token call what the embeddable components use (the components
    // themselves at /embed/, analytics, settings, forecasts, the inbox).
    // Never with cookies: no Allow-Credentials, so a signed-in session
    // cannot be used from another origin. SQL and admin routes get no CORS
    // grant.
    let browser_ingest = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(|_, parts| {
            let path = parts.uri.path();
            INGEST_PATHS.contains(&path) || cross_origin_path(path)
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
        ])
        .max_age(Duration::from_secs(86_400));
    api.layer(sessions)
        .layer(middleware::from_fn(track_requests))
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

/// Paths portal pages may call from another origin (besides ingest).
fn cross_origin_path(path: &str) -> bool {
    path.starts_with("/embed/")
        || path.starts_with("/v1/analytics/")
        || path.starts_with("/v1/inbox")
        || matches!(path, "/v1/workspace" | "/v1/forecasts" | "/v1/anomalies")
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
