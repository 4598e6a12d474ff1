//! Anomaly bands of alert rules: the engine's metric series
//! ([`beacon_engine::series`], business time, complete periods) banded by
//! [`beacon_forecasting::forecast::anomaly_bands`], the same series and
//! function as `POST /v1/anomalies`, with period starts converted to UTC in
//! the workspace's calendar. The model runs on the rayon pool, never on
//! the async threads.

use beacon_engine::Engine;
use beacon_engine::series::{self, Interval, SeriesRequest};
use beacon_forecasting::forecast::{ForecastOptions, Sensitivity};
use beacon_forecasting::ts::Frequency;
use chrono::TimeZone as _;

/// An anomaly band series for a metric, from the forecasting models.
#[derive(Debug, Clone, Default)]
pub struct BandSeries {
    /// Period starts (UTC µs) of complete periods.
    pub starts_us: Vec<i64>,
    /// Length of a period, µs.
    pub step_us: i64,
    /// Actual values.
    pub values: Vec<f64>,
    /// Band lower edges (NaN where no band).
    pub lower: Vec<f64>,
    /// Band upper edges.
    pub upper: Vec<f64>,
    /// Expected values.
    pub expected: Vec<f64>,
}

/// The metrics anomaly conditions work on (the engine's built-in series).
pub fn metrics() -> Vec<&'static str> {
    series::metric_names()
}

/// The band series of `metric` by `interval` at `sensitivity` (`low`,
/// `medium`, `high`) for `tenant`, as of the store's clock.
pub async fn bands(
    engine: &Engine,
    tenant: &str,
    metric: &str,
    interval: &str,
    sensitivity: &str,
) -> Result<BandSeries, String> {
    let request = SeriesRequest {
        metric: metric.to_owned(),
        interval: interval.to_owned(),
        sql: None,
        history_days: None,
    };
    let s = series::series(engine, tenant, &request)
        .await
        .map_err(|e| e.to_string())?;
    let sens = Sensitivity::from_name(sensitivity)
        .ok_or_else(|| format!("sensitivity must be low, medium or high, not {sensitivity:?}"))?;
    let values = s.values.clone();
    let freq = match s.interval {
        Interval::Hour => Frequency::Hourly,
        Interval::Day => Frequency::Daily,
        Interval::Week => Frequency::Weekly,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(beacon_forecasting::forecast::anomaly_bands(
            &values,
            freq,
            sens,
            &ForecastOptions::default(),
        ));
    });
    let bands = rx
        .await
        .map_err(|_| "the anomaly band job ended without an answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let tz = engine.calendar(tenant).tz;
    let starts_us = s
        .periods
        .iter()
        .map(|p| {
            tz.from_local_datetime(p)
                .earliest()
                .map_or(p.and_utc().timestamp_micros(), |t| t.timestamp_micros())
        })
        .collect();
    Ok(BandSeries {
        starts_us,
        step_us: s.step.num_microseconds().unwrap_or(86_400_000_000),
        values: s.values,
        lower: bands.lower,
        upper: bands.upper,
        expected: bands.expected,
    })
}
