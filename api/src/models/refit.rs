//! Refits: every kept model retrained and every kept forecast remade on
//! fresh data, on the `[models] refit_schedule` cron ([`run_schedule`]) or
//! on demand (`POST /v1/models/refit`). The schedule's "now" is the
//! store's clock.

use beacon_engine::Engine;
use beacon_forecasting::forecast::ForecastOptions;
use tokio_util::sync::CancellationToken;

use super::SeriesRequest;
use super::files::ModelFiles;
use super::forecasts::{ForecastStore, StoredForecast, run_forecast};
use super::scores::{ModelKind, ModelStore, train_churn, train_leads};

/// Retrains every model and remakes every kept forecast (of `only` that
/// workspace, or all): the refit schedule and `POST /v1/models/refit`.
/// Failures are logged per model and counted; the old model stays.
/// Returns (refitted, failed).
pub async fn refit_all(
    engine: &Engine,
    forecasts: &ForecastStore,
    models: &ModelStore,
    files: &ModelFiles,
    only: Option<&str>,
) -> (usize, usize) {
    let (mut done, mut failed) = (0, 0);
    let mine = |t: &str| only.is_none_or(|o| o == t);
    for (tenant, f) in forecasts.all().into_iter().filter(|(t, _)| mine(t)) {
        let request = SeriesRequest {
            metric: f.metric.clone(),
            interval: f.interval.clone(),
            sql: None,
            history_days: f.history_days,
        };
        match run_forecast(
            engine,
            &tenant,
            &request,
            Some(f.periods.len()),
            ForecastOptions::default(),
        )
        .await
        {
            Ok((_, fc, periods)) => {
                let stored = StoredForecast {
                    generated_at: engine.now(),
                    periods,
                    forecast: fc,
                    ..f
                };
                match forecasts.keep(engine, &tenant, stored, Some(files)) {
                    Ok(()) => done += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(%tenant, error = %e.message(), "Keeping a refitted forecast failed.");
                    }
                }
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(%tenant, metric = %f.metric, error = %e.message(), "Refitting a forecast failed; the old one stays.");
            }
        }
    }
    for (tenant, kind, window) in models.all().into_iter().filter(|(t, _, _)| mine(t)) {
        let version = models.next_version(&tenant, kind);
        let trained = match kind {
            ModelKind::Churn => train_churn(engine, &tenant, window, version).await,
            ModelKind::Leads => train_leads(engine, &tenant, window, version).await,
        };
        match trained
            .and_then(|(m, scores)| models.keep(engine, &tenant, kind, m, scores, Some(files)))
        {
            Ok(()) => {
                done += 1;
                tracing::info!(%tenant, model = kind.name(), version, "Refitted a model.");
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(%tenant, model = kind.name(), error = %e.message(), "Refitting a model failed; the old one stays.");
            }
        }
    }
    (done, failed)
}

/// Refits everything at each occurrence of `cron` (a validated schedule)
/// until `stop`.
pub async fn run_schedule(
    cron: croner::Cron,
    engine: Engine,
    forecasts: ForecastStore,
    models: ModelStore,
    files: ModelFiles,
    stop: CancellationToken,
) {
    loop {
        let now = engine.now();
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
        let (done, failed) = refit_all(&engine, &forecasts, &models, &files, None).await;
        tracing::info!(done, failed, "Refit finished.");
    }
}
