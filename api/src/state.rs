//! The state every handler shares ([`AppState`]) and its construction.
//!
//! `main -> server -> routes -> state`: the server opens the storage
//! ([`open_storage`]), builds the state ([`AppState::build`]) and hands it
//! to [`crate::routes::router`]; routes and extractors import this module,
//! and this module imports neither of them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use beacon_engine::Engine;
use beacon_ingest::{Catalog, Store, SystemClock};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::config::Config;

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
    /// Credentials, one-time links, sign-in failures.
    pub access: crate::access::store::AccessStore,
    /// The audit log.
    pub audit: crate::access::audit::Audit,
    /// Rate limits.
    pub limits: Arc<crate::access::limits::Limits>,
}

/// The data directory, opened: the metadata database, the event store and
/// the query engine over it.
pub struct Storage {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Workspaces and keys (SQLite).
    pub catalog: Arc<Catalog>,
    /// Event store.
    pub store: Store,
    /// Query engine.
    pub engine: Engine,
}

/// Opens the data directory of `config`: catalog, event store, engine.
pub async fn open_storage(config: &Config) -> anyhow::Result<Storage> {
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
    Ok(Storage {
        data_dir,
        catalog,
        store,
        engine,
    })
}

impl AppState {
    /// Builds the state over opened `storage`: the token signer, the hub
    /// and what feeds it, notifications, alerts, and the saved models and
    /// forecasts. Also returns the hub's own tasks (live feeds, sweeper),
    /// for the server to stop at shutdown.
    pub fn build(
        config: Config,
        prometheus: PrometheusHandle,
        storage: &Storage,
    ) -> anyhow::Result<(Self, Vec<JoinHandle<()>>)> {
        let Storage {
            data_dir,
            store,
            engine,
            ..
        } = storage;
        let tokens =
            beacon_realtime::token::TokenSigner::load_or_create(&data_dir.join("realtime.secret"))
                .context("cannot read or create the token secret")?;
        // The hub measures timeouts on a clock without wall-clock steps (an
        // NTP step must not close healthy connections); live metrics,
        // notifications and alerts work in calendar time on the store's
        // clock.
        let clock = Arc::clone(store.clock());
        let hub = beacon_realtime::Hub::new(
            config.realtime.clone(),
            Arc::new(beacon_realtime::MonotonicClock::new()),
        );
        let (live, mut live_jobs) =
            beacon_realtime::Live::start(hub.clone(), engine.clone(), Arc::clone(&clock));
        // Heartbeats, idle and stalled connections, shutdown: one task for all
        // WebSocket connections (`Hub::sweep`).
        live_jobs.push(hub.start_sweeper());
        let notifier = beacon_realtime::notify::Notifier::open(
            data_dir,
            hub.clone(),
            engine.clone(),
            config.notify.clone(),
            clock,
        )
        .map_err(|e| anyhow::anyhow!("cannot open the notification tables: {e}"))?;
        // Anomaly conditions compute their bands with the engine and
        // forecasting themselves (`realtime/src/alerts/bands.rs`).
        let alert_engine =
            beacon_realtime::alerts::Alerts::new(notifier.clone(), config.alerts.clone());
        let metadata = std::sync::Arc::clone(notifier.db().metadata());
        let audit = crate::access::audit::Audit::new(Arc::clone(&metadata));
        engine
            .register_system_table(crate::access::audit::TABLE, Arc::new(audit.clone()))
            .map_err(|e| anyhow::anyhow!("cannot register the audit_log table: {e}"))?;
        let state = AppState {
            access: crate::access::store::AccessStore::new(metadata),
            audit,
            limits: Arc::new(crate::access::limits::Limits::new(&config.access.limits)),
            ingest_permits: Arc::new(Semaphore::new(config.http.max_concurrent_ingest)),
            config: Arc::new(config),
            store: store.clone(),
            engine: engine.clone(),
            prometheus,
            hub,
            live: Arc::new(live),
            tokens,
            queries: crate::queries::RunningQueries::default(),
            forecasts: crate::models::ForecastStore::default(),
            models: crate::models::ModelStore::default(),
            model_files: crate::models::ModelFiles::new(data_dir),
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
        Ok((state, live_jobs))
    }
}
