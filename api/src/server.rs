//! Serving: opens the state ([`crate::state`]), binds the listeners (HTTP,
//! PostgreSQL wire, Flight SQL), runs the background jobs (flush,
//! maintenance, notification delivery, alert evaluation, model refits) and
//! shuts down gracefully. The route table is [`crate::routes::router`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::routes::router;
use crate::state::{AppState, Storage, open_storage};

/// Opens the store and serves until SIGTERM or Ctrl-C, then flushes.
pub async fn serve(config: Config, prometheus: PrometheusHandle, demo: bool) -> anyhow::Result<()> {
    let storage = open_storage(&config).await?;
    let demo_setup = if demo {
        let keys = crate::demo::ensure_workspace(&storage.catalog, &storage.data_dir)?;
        let (generator, now) = crate::demo::backfill(&storage.store, &keys, &config.demo).await?;
        Some((keys, generator, now))
    } else {
        None
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (state, mut live_jobs) = AppState::build(config, prometheus, &storage)?;
    let Storage {
        data_dir,
        catalog,
        store,
        ..
    } = storage;
    let stop = CancellationToken::new();
    let mut jobs = spawn_jobs(&state, &stop);
    let tls = crate::tls::Tls::load(&state.config.tls)?;
    if let Some(tls) = &tls {
        jobs.push(Arc::clone(tls).spawn_reloader(stop.clone()));
    }
    // Analyst interfaces besides HTTP: bound before anything is printed,
    // so a taken port fails startup instead of being discovered later.
    let pg = bind_optional(&state.config.sql.pg_listen)
        .await
        .context("PostgreSQL listener (sql.pg_listen)")?;
    let flight = bind_optional(&state.config.sql.flight_listen)
        .await
        .context("Flight SQL listener (sql.flight_listen)")?;
    let shutdown = shutdown_signal()?;
    tracing::info!(%addr, data_dir = %data_dir.display(), "Beacon is serving.");
    #[allow(clippy::print_stdout)]
    {
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("Beacon listening on {scheme}://{addr}");
        println!("Web app: {scheme}://{addr}/");
        println!("Data directory: {}", data_dir.display());
    }
    if let Some((listener, pg_addr)) = pg {
        let ctx = crate::pg::PgContext {
            engine: state.engine.clone(),
            catalog: Arc::clone(&catalog),
            queries: state.queries.clone(),
            state: state.clone(),
        };
        jobs.push(tokio::spawn(crate::pg::serve(
            listener,
            ctx,
            state.config.sql.pg_max_connections,
            tls.clone(),
            stop.clone(),
        )));
        tracing::info!(addr = %pg_addr, "PostgreSQL wire protocol listening.");
        #[allow(clippy::print_stdout)]
        {
            let ssl = if tls.is_some() { ", sslmode=require" } else { "" };
            println!("PostgreSQL listening on {pg_addr} (user: workspace, password: read key{ssl})");
        }
    }
    if let Some((listener, flight_addr)) = flight {
        let ctx = crate::flight::FlightContext {
            engine: state.engine.clone(),
            queries: state.queries.clone(),
            state: state.clone(),
        };
        let stop = stop.clone();
        let flight_tls = tls.clone();
        let max = state.config.sql.flight_max_connections;
        jobs.push(tokio::spawn(async move {
            if let Err(e) = crate::flight::serve(listener, ctx, max, flight_tls, stop).await {
                tracing::error!(error = %e, "Flight SQL server failed.");
            }
        }));
        tracing::info!(addr = %flight_addr, "Arrow Flight SQL listening.");
        #[allow(clippy::print_stdout)]
        {
            println!(
                "Flight SQL listening on {}://{flight_addr} (authorization: Bearer <read key>)",
                if tls.is_some() { "grpc+tls" } else { "grpc" }
            );
        }
    }
    if let Some((mut keys, generator, now)) = demo_setup {
        crate::demo::ensure_owner(&state, &data_dir, &mut keys).await?;
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
            if let (Some(email), Some(password)) = (&keys.owner_email, &keys.owner_password) {
                println!("  sign in:   {email} / {password}  (the web app at /, or POST /v1/auth/login)");
            }
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
    let listener = crate::listener::Bounded::new(
        listener,
        state.config.http.max_connections,
        tls.clone(),
    );
    let (sessions, session_sweeper) =
        crate::access::session::layer(&data_dir, &state.config.access, tls.is_some()).await?;
    // Loops until aborted (it has no stop signal of its own).
    live_jobs.push(session_sweeper);
    let app = router(state, sessions)
        .into_make_service_with_connect_info::<crate::listener::Peer>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
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
    // The rollups of the files already published (read from their copies
    // on disk, or rolled up again), so the first dashboard after a start
    // does not wait for them.
    let load = {
        let engine = state.engine.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                r = engine.load_rollups() => if let Err(e) = r {
                    tracing::warn!(error = %e, "Loading the rollups at start failed.");
                }
            }
        })
    };
    let mut jobs = vec![flusher, maintenance, load];
    // Rate-limit memory and audit retention.
    jobs.push({
        let limits = Arc::clone(&state.limits);
        let audit = state.audit.clone();
        let retention = state.config.access.audit_retention;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            let mut minutes = 0u64;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                limits.sweep();
                if minutes % 60 == 0 {
                    let before = chrono::Utc::now().timestamp_micros()
                        - retention.as_micros().min(i64::MAX as u128) as i64;
                    let audit = audit.clone();
                    match tokio::task::spawn_blocking(move || audit.purge(before)).await {
                        Ok(Ok(n)) if n > 0 => tracing::info!(rows = n, "Audit rows past retention deleted."),
                        Ok(Err(e)) => tracing::error!(error = %e, "Audit retention failed."),
                        _ => {}
                    }
                }
                minutes += 1;
            }
        })
    });
    // Notification delivery and alert evaluation.
    jobs.push(tokio::spawn(state.notifier.clone().run(stop.clone())));
    jobs.push(tokio::spawn(state.alerts.clone().run(stop.clone())));
    jobs.push(tokio::spawn(crate::reports::schedule::run_schedule(
        state.clone(),
        Duration::from_secs(1),
        stop.clone(),
    )));
    // Model refits on the cron schedule (validated at startup).
    if let Ok(cron) =
        <croner::Cron as std::str::FromStr>::from_str(&state.config.models.refit_schedule)
    {
        jobs.push(tokio::spawn(crate::models::refit::run_schedule(
            cron,
            state.engine.clone(),
            state.forecasts.clone(),
            state.models.clone(),
            state.model_files.clone(),
            stop.clone(),
        )));
    }
    jobs
}

/// Installs the SIGTERM and SIGINT handlers now and returns the future that
/// waits for either. Installed before the server says it is listening, so a
/// supervisor that stops it right after it is ready gets a graceful stop (a
/// handler installed later, when the future is first polled, would leave a
/// window where SIGTERM kills the process unflushed).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}
