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
    let data_dir = config.ensure_data_dir()?;
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
        engine
            .register_system_table(
                crate::reports::store::RUNS_TABLE,
                Arc::new(crate::reports::store::RunsTable {
                    db: notifier.db().clone(),
                }),
            )
            .map_err(|e| anyhow::anyhow!("cannot register the report_runs table: {e}"))?;
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
        state.finish_deletions()?;
        state
            .model_files
            .load(&state.engine, &state.forecasts, &state.models);
        Ok((state, live_jobs))
    }

    /// Deletes a workspace and everything Beacon holds for it
    /// (`DELETE /v1/workspace`). In this order, so that a crash at any
    /// point leaves it deleted and [`AppState::finish_deletions`] completes
    /// it at the next start:
    ///
    /// 1. the catalog transaction (`Store::delete_tenant`): tombstone,
    ///    keys, settings and file manifest; the tail and dedupe ids; the WAL
    ///    checkpointed past its records; its files deleted after
    ///    `delete_grace`;
    /// 2. the engine's rollups, funnel index, cached columns and published
    ///    tables; its running queries cancelled;
    /// 3. the hub's channels (its WebSockets closed with 4004) and live
    ///    metrics;
    /// 4. its rows in the metadata database (users, credentials, links,
    ///    notifications, inbox, deliveries, webhooks, alert rules and
    ///    their state), the audit log excepted;
    /// 5. its models and forecasts, in memory and in `models/<id>/`.
    pub async fn delete_workspace(
        &self,
        tenant: &str,
        deleted_by: &str,
    ) -> Result<beacon_ingest::store::TenantStats, crate::error::ApiError> {
        let engine = self.engine.clone();
        let (id, by) = (tenant.to_owned(), deleted_by.to_owned());
        let stats = tokio::task::spawn_blocking(move || engine.delete_tenant(&id, Some(&by)))
            .await
            .map_err(|e| crate::error::ApiError::internal(&e))??;
        self.queries.cancel_all(tenant);
        self.hub.delete_tenant(tenant);
        self.live.delete_tenant(tenant).await;
        self.forecasts.forget(tenant);
        self.models.forget(tenant);
        let (state, id) = (self.clone(), tenant.to_owned());
        tokio::task::spawn_blocking(move || state.delete_workspace_metadata(&id))
            .await
            .map_err(|e| crate::error::ApiError::internal(&e))?
            .map_err(|e| crate::error::ApiError::internal(&*e))?;
        Ok(stats)
    }

    /// Steps 4 and 5 of [`AppState::delete_workspace`].
    fn delete_workspace_metadata(&self, tenant: &str) -> anyhow::Result<()> {
        let rows = self
            .notifier
            .db()
            .metadata()
            .delete_tenant(tenant)
            .with_context(|| format!("deleting the metadata of workspace {tenant}"))?;
        self.model_files
            .delete(tenant)
            .with_context(|| format!("deleting the models of workspace {tenant}"))?;
        if rows > 0 {
            tracing::info!(tenant, rows, "Deleted a workspace's metadata and models.");
        }
        Ok(())
    }

    /// Completes deletions a crash interrupted: the metadata rows and saved
    /// models of every deleted workspace (a no-op for those already gone).
    /// The events need nothing: the catalog no longer lists their files
    /// (the store deletes them as orphans) and WAL replay skips them.
    fn finish_deletions(&self) -> anyhow::Result<()> {
        for tenant in self.store.catalog().deleted_tenants()? {
            self.delete_workspace_metadata(&tenant)?;
        }
        Ok(())
    }
}
