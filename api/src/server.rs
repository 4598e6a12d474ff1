//! Wiring: state, router, background jobs, serve and graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use beacon_engine::Engine;
use beacon_ingest::{Catalog, Clock, Store, SystemClock};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::error::ApiError;
use crate::routes::{admin, alerts, analytics, health, ingest, models, notify, realtime, sql};

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<Config>,
    /// Event store.
    pub store: Store,
    /// Query engine.
    pub engine: Engine,
    /// Ingest admission permits.
    pub ingest_permits: Arc<Semaphore>,
    /// Prometheus renderer.
    pub prometheus: PrometheusHandle,
    /// The real-time hub.
    pub hub: beacon_realtime::Hub,
    /// What feeds the hub's channels.
    /// Shared by reference: every WebSocket session holds one.
    pub live: Arc<beacon_realtime::Live>,
    /// Signs and checks user session tokens.
    pub tokens: beacon_realtime::token::TokenSigner,
    /// Analyst queries in progress.
    pub queries: crate::queries::RunningQueries,
    /// The latest forecasts (the `forecasts` SQL table).
    pub forecasts: crate::models::ForecastStore,
    /// The churn and lead models (scores: `customer_scores`, `lead_scores`).
    pub models: crate::models::ModelStore,
    /// Where models and forecasts are saved.
    pub model_files: crate::models::ModelFiles,
    /// Users, inbox and the delivery outbox.
    pub notifier: beacon_realtime::notify::Notifier,
    /// Alert rules and their evaluation.
    pub alerts: beacon_realtime::alerts::Alerts,
}

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

async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!(HTTP_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// Opens the store and serves until SIGTERM or Ctrl-C, then flushes.
pub async fn serve(config: Config, prometheus: PrometheusHandle, demo: bool) -> anyhow::Result<()> {
    let data_dir = config.ensure_data_dir()?.to_owned();
    let catalog = Arc::new(Catalog::open(&data_dir).context("cannot open the metadata database")?);
    let store_config = config.ingest.clone();
    let store = {
        let catalog = Arc::clone(&catalog);
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || {
            Store::open(store_config, &dir, catalog, Arc::new(SystemClock))
        })
        .await?
        .context("cannot open the event store")?
    };
    let engine = Engine::new(store.clone(), config.engine.clone());
    let demo_setup = if demo {
        let keys = crate::demo::ensure_workspace(&catalog, &data_dir)?;
        let (generator, now) = crate::demo::backfill(&store, &keys, &config.demo).await?;
        Some((keys, generator, now))
    } else {
        None
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let tokens =
        beacon_realtime::token::TokenSigner::load_or_create(&data_dir.join("realtime.secret"))
            .context("cannot read or create the token secret")?;
    // The hub measures timeouts (a clock without wall-clock steps); live
    // metrics, notifications and alerts work in calendar time.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hub = beacon_realtime::Hub::new(
        config.realtime.clone(),
        Arc::new(beacon_realtime::MonotonicClock::new()),
    );
    let (live, mut live_jobs) =
        beacon_realtime::Live::start(hub.clone(), engine.clone(), Arc::clone(&clock));
    // Heartbeats, idle and stalled connections, shutdown: one task for all
    // WebSocket connections (`Hub::sweep`).
    live_jobs.push(hub.start_sweeper());
    let zones: Arc<dyn Fn(&str) -> String + Send + Sync> = {
        let catalog = Arc::clone(&catalog);
        Arc::new(move |tenant: &str| {
            catalog
                .tenant(tenant)
                .map(|t| t.timezone)
                .unwrap_or_else(|_| "UTC".into())
        })
    };
    let notifier = beacon_realtime::notify::Notifier::open(
        &data_dir,
        hub.clone(),
        engine.clone(),
        config.notify.clone(),
        clock,
        zones,
    )
    .context("cannot open the notification tables")?;
    let bands: Arc<dyn beacon_realtime::alerts::BandSource> = Arc::new(crate::models::ModelBands {
        engine: engine.clone(),
        catalog: Arc::clone(&catalog),
    });
    let alert_engine =
        beacon_realtime::alerts::Alerts::new(notifier.clone(), Some(bands), config.alerts.clone());
    let state = AppState {
        ingest_permits: Arc::new(Semaphore::new(config.http.max_concurrent_ingest)),
        config: Arc::new(config),
        store: store.clone(),
        engine,
        prometheus,
        hub,
        live: Arc::new(live),
        tokens,
        queries: crate::queries::RunningQueries::default(),
        forecasts: crate::models::ForecastStore::default(),
        models: crate::models::ModelStore::default(),
        model_files: crate::models::ModelFiles::new(&data_dir),
        notifier,
        alerts: alert_engine,
    };
    crate::models::ForecastStore::publish_default(&state.engine)
        .map_err(|e| anyhow::anyhow!(e.message()))?;
    crate::models::ModelStore::publish_defaults(&state.engine)
        .map_err(|e| anyhow::anyhow!(e.message()))?;
    state
        .model_files
        .load(&state.engine, &state.forecasts, &state.models);
    let stop = CancellationToken::new();
    let mut jobs = spawn_jobs(&state, &stop);
    // Analyst interfaces besides HTTP: bound before anything is printed,
    // so a taken port fails startup instead of being discovered later.
    let pg = bind_optional(&state.config.sql.pg_listen)
        .await
        .context("PostgreSQL listener (sql.pg_listen)")?;
    let flight = bind_optional(&state.config.sql.flight_listen)
        .await
        .context("Flight SQL listener (sql.flight_listen)")?;
    tracing::info!(%addr, data_dir = %data_dir.display(), "Beacon is serving.");
    #[allow(clippy::print_stdout)]
    {
        println!("Beacon listening on http://{addr}");
        println!("Data directory: {}", data_dir.display());
    }
    if let Some((listener, pg_addr)) = pg {
        let ctx = crate::pg::PgContext {
            engine: state.engine.clone(),
            catalog: Arc::clone(&catalog),
            queries: state.queries.clone(),
        };
        jobs.push(tokio::spawn(crate::pg::serve(
            listener,
            ctx,
            state.config.sql.pg_max_connections,
            stop.clone(),
        )));
        tracing::info!(addr = %pg_addr, "PostgreSQL wire protocol listening.");
        #[allow(clippy::print_stdout)]
        {
            println!("PostgreSQL listening on {pg_addr} (user: workspace, password: read key)");
        }
    }
    if let Some((listener, flight_addr)) = flight {
        let ctx = crate::flight::FlightContext {
            engine: state.engine.clone(),
            catalog: Arc::clone(&catalog),
            queries: state.queries.clone(),
        };
        let stop = stop.clone();
        jobs.push(tokio::spawn(async move {
            if let Err(e) = crate::flight::serve(listener, ctx, stop).await {
                tracing::error!(error = %e, "Flight SQL server failed.");
            }
        }));
        tracing::info!(addr = %flight_addr, "Arrow Flight SQL listening.");
        #[allow(clippy::print_stdout)]
        {
            println!(
                "Flight SQL listening on grpc://{flight_addr} (authorization: Bearer <read key>)"
            );
        }
    }
    if let Some((keys, generator, now)) = demo_setup {
        #[allow(clippy::print_stdout)]
        {
            println!(
                "Demo workspace: {} ({})",
                crate::demo::DEMO_TENANT,
                keys.tenant
            );
            println!("  write key: {}", keys.write_key);
            println!("  read key:  {}", keys.read_key);
            println!("  admin key: {}", keys.admin_key);
            println!(
                "  try: curl -s -u {}: http://{addr}/v1/sql -H 'content-type: application/json' -d '{{\"query\":\"SELECT event, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC\"}}'",
                keys.read_key
            );
        }
        let every = state.config.demo.live_interval;
        jobs.extend(crate::demo::spawn_live(
            state.store.clone(),
            keys.tenant,
            generator,
            now,
            every,
            stop.clone(),
        ));
    }
    let hub = state.hub.clone();
    // TCP_NODELAY: WebSocket and SSE pushes are small writes that must
    // leave at once (the hub already batches per wake-up); with Nagle a
    // push can wait for the client's delayed ACK (up to 40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Could not set TCP_NODELAY.");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            hub.shutdown();
        })
        .await
        .context("server failed")?;
    tracing::info!("Shutting down: flushing buffered events.");
    stop.cancel();
    for job in live_jobs {
        job.abort();
    }
    for job in jobs {
        let _ = job.await;
    }
    let report = tokio::task::spawn_blocking(move || store.shutdown()).await??;
    tracing::info!(
        rows = report.rows,
        files = report.files,
        "Flushed and stopped."
    );
    Ok(())
}

/// Binds an optional listener (`""`: disabled); the bound address too.
async fn bind_optional(addr: &str) -> anyhow::Result<Option<(TcpListener, std::net::SocketAddr)>> {
    if addr.trim().is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    Ok(Some((listener, local)))
}

fn spawn_jobs(state: &AppState, stop: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    let flusher = {
        let store = state.store.clone();
        let engine = state.engine.clone();
        let stop = stop.clone();
        let every = (state.config.ingest.flush_interval / 2)
            .clamp(Duration::from_millis(5), Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if store.flush_due() {
                    let s = store.clone();
                    match tokio::task::spawn_blocking(move || s.flush()).await {
                        Ok(Ok(report)) => {
                            if report.files > 0
                                && let Err(e) = engine.warm_rollups().await
                            {
                                tracing::warn!(error = %e, "Rolling up new files failed.");
                            }
                        }
                        Ok(Err(e)) => tracing::error!(error = %e, "Scheduled flush failed."),
                        Err(e) => tracing::error!(error = %e, "Flush task failed."),
                    }
                }
            }
        })
    };
    let maintenance = {
        let store = state.store.clone();
        let engine = state.engine.clone();
        let stop = stop.clone();
        let every = state
            .config
            .ingest
            .maintenance_interval
            .max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.maintain()).await {
                    // Compaction and retention replace files: roll up and
                    // index the new ones, and let the column cache forget
                    // the old.
                    Ok(Ok(())) => {
                        if let Err(e) = engine.warm_rollups().await {
                            tracing::warn!(error = %e, "Rolling up compacted files failed.");
                        }
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "Maintenance failed."),
                    Err(e) => tracing::error!(error = %e, "Maintenance task failed."),
                }
            }
        })
    };
    let mut jobs = vec![flusher, maintenance];
    // Notification delivery and alert evaluation.
    jobs.push(tokio::spawn(state.notifier.clone().run(stop.clone())));
    jobs.push(tokio::spawn(state.alerts.clone().run(stop.clone())));
    // Model refits on the cron schedule (validated at startup).
    if let Ok(cron) =
        <croner::Cron as std::str::FromStr>::from_str(&state.config.models.refit_schedule)
    {
        let state = state.clone();
        let stop = stop.clone();
        jobs.push(tokio::spawn(async move {
            loop {
                let now = chrono::Utc::now();
                let Ok(next) = cron.find_next_occurrence(&now, false) else {
                    tracing::warn!("The refit schedule has no next occurrence; refits stop.");
                    break;
                };
                let wait = (next - now).to_std().unwrap_or_default();
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
                tracing::info!("Refitting models and forecasts.");
                let (done, failed) = crate::models::refit_all(
                    &state.engine,
                    &state.forecasts,
                    &state.models,
                    &state.model_files,
                    None,
                )
                .await;
                tracing::info!(done, failed, "Refit finished.");
            }
        }));
    }
    jobs
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
