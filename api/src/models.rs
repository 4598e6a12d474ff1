//! Serving the models of `beacon-forecasting`: the series and feature
//! tables are queried by the engine ([`beacon_engine::series`],
//! [`beacon_engine::features`]; `api` holds no model SQL), the models run
//! on the rayon pool (never on the async threads), and their outputs are
//! published as SQL tables.
//!
//! One module per job:
//! - [`forecasts`]: forecasts of a metric series, the latest per metric
//!   and interval kept and published as the table `forecasts`;
//! - [`scores`]: the churn and lead classifiers, trained and scored, their
//!   scores published as `customer_scores` and `lead_scores`;
//! - [`segments`]: RFM k-means segments of customers;
//! - [`reorder`]: reorder points of products;
//! - [`files`]: saving models and forecasts on disk and loading them at
//!   startup;
//! - [`refit`]: the refit schedule (and `POST /v1/models/refit`).
//!
//! Anomaly bands for alert rules are not here: `beacon-realtime` builds
//! them from the same engine series and forecasting function as
//! `POST /v1/anomalies`. Every "now" (training windows, forecast
//! timestamps, the refit schedule) is the store's clock
//! ([`beacon_engine::Engine::now`]).

pub mod files;
pub mod forecasts;
pub mod refit;
pub mod reorder;
pub mod scores;
pub mod segments;

use beacon_engine::Engine;
use beacon_engine::series::Interval;
use beacon_forecasting::forecast::{ForecastOptions, Sensitivity};
use beacon_forecasting::ts::{Frequency, Method};

use crate::error::ApiError;

pub use beacon_engine::series::{Series, SeriesRequest};
pub use files::ModelFiles;
pub use forecasts::{ForecastStore, StoredForecast, run_forecast};
pub use refit::refit_all;
pub use reorder::reorder_point;
pub use scores::{ModelKind, ModelStore, train_churn, train_leads};
pub use segments::{rfm, segments};

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

/// Queries the series of `request` for `tenant` ([`beacon_engine::series`]).
pub async fn series(
    engine: &Engine,
    tenant: &str,
    request: &SeriesRequest,
) -> Result<Series, ApiError> {
    Ok(beacon_engine::series::series(engine, tenant, request).await?)
}

/// The models' frequency of a series interval.
pub fn frequency(interval: Interval) -> Frequency {
    match interval {
        Interval::Hour => Frequency::Hourly,
        Interval::Day => Frequency::Daily,
        Interval::Week => Frequency::Weekly,
    }
}

/// Runs `f` on the rayon pool and awaits its result.
pub async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await
        .expect("the rayon job sends its result before it ends")
}

/// Maps a model error to an API error: all are problems with the data or
/// the request (422 for data that cannot be modelled, 400 for parameters).
pub fn model_error(e: beacon_forecasting::Error) -> ApiError {
    use beacon_forecasting::Error as E;
    match e {
        E::InvalidParameter { .. } => ApiError::bad_request("invalid_request", e.to_string()),
        E::Model { .. } => ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "model_failed",
            e.to_string(),
        ),
        _ => ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_data",
            e.to_string(),
        ),
    }
}

/// Forecast options from a request.
pub fn options(
    methods: Option<Vec<String>>,
    levels: Option<Vec<f64>>,
) -> Result<ForecastOptions, ApiError> {
    let mut opts = ForecastOptions::default();
    if let Some(m) = methods {
        opts.methods = m
            .iter()
            .map(|name| {
                Method::from_name(name).ok_or_else(|| {
                    bad(format!(
                        "unknown method {name:?}; available: {}",
                        Method::ALL.map(|m| m.name()).join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(l) = levels {
        opts.levels = l;
    }
    Ok(opts)
}

/// Parses a sensitivity name (default `medium`).
pub fn sensitivity(name: Option<&str>) -> Result<Sensitivity, ApiError> {
    let name = name.unwrap_or("medium");
    Sensitivity::from_name(name).ok_or_else(|| {
        bad(format!(
            "sensitivity must be low, medium or high, not {name:?}"
        ))
    })
}
