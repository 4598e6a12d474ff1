//! Forecasts of a metric series ([`run_forecast`]) and the latest ones
//! kept per workspace, metric and interval ([`ForecastStore`]), published
//! as the SQL table `forecasts`.

use std::sync::Arc;

use arrow::array::{
    Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use beacon_engine::Engine;
use beacon_forecasting::forecast::{Forecast, ForecastOptions};
use beacon_forecasting::ts::Frequency;
use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;

use super::files::{ModelFiles, naive_times, utc_time};
use super::{Series, SeriesRequest, bad, frequency, model_error, off_thread, series};
use crate::error::ApiError;

/// The schema of the `forecasts` SQL table.
pub fn forecasts_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        // Not "interval": a keyword in SQL.
        Field::new("granularity", DataType::Utf8, false),
        Field::new(
            "generated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "period",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("step", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
        Field::new("lower_80", DataType::Float64, true),
        Field::new("upper_80", DataType::Float64, true),
        Field::new("lower_95", DataType::Float64, true),
        Field::new("upper_95", DataType::Float64, true),
        Field::new("methods", DataType::Utf8, false),
        Field::new("backtest_mase", DataType::Float64, true),
    ]))
}

/// One stored forecast: the latest per (metric, interval) of a workspace.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct StoredForecast {
    /// Metric name (`sql` forecasts are not stored).
    pub metric: String,
    /// Interval.
    pub interval: String,
    /// When it was made.
    #[serde(with = "utc_time")]
    pub generated_at: DateTime<chrono::Utc>,
    /// Period starts of the forecast steps.
    #[serde(with = "naive_times")]
    pub periods: Vec<NaiveDateTime>,
    /// Days of history it used (as requested).
    #[serde(default)]
    pub history_days: Option<u32>,
    /// The forecast.
    pub forecast: Forecast,
}

/// Builds the `forecasts` table rows.
pub fn forecasts_batch(stored: &[StoredForecast]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut metric = Vec::new();
    let mut interval = Vec::new();
    let mut generated = Vec::new();
    let mut period = Vec::new();
    let mut step = Vec::new();
    let mut value = Vec::new();
    let mut bounds: [Vec<Option<f64>>; 4] = Default::default();
    let mut methods = Vec::new();
    let mut mase = Vec::new();
    for s in stored {
        let names: Vec<&str> = s.forecast.methods.iter().map(|m| m.name()).collect();
        for (k, p) in s.periods.iter().enumerate() {
            metric.push(s.metric.clone());
            interval.push(s.interval.clone());
            generated.push(s.generated_at.timestamp_micros());
            period.push(p.and_utc().timestamp_micros());
            step.push(k as u32 + 1);
            value.push(s.forecast.point[k]);
            for (j, level) in [0.8, 0.95].iter().enumerate() {
                let i = s
                    .forecast
                    .intervals
                    .iter()
                    .find(|i| (i.level - level).abs() < 1e-9);
                bounds[2 * j].push(i.map(|i| i.lower[k]));
                bounds[2 * j + 1].push(i.map(|i| i.upper[k]));
            }
            methods.push(names.join(","));
            mase.push(Some(s.forecast.backtest_mase).filter(|v| v.is_finite()));
        }
    }
    let [l80, u80, l95, u95] = bounds;
    RecordBatch::try_new(
        forecasts_schema(),
        vec![
            Arc::new(StringArray::from(metric)),
            Arc::new(StringArray::from(interval)),
            Arc::new(TimestampMicrosecondArray::from(generated).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(period)),
            Arc::new(UInt32Array::from(step)),
            Arc::new(Float64Array::from(value)),
            Arc::new(Float64Array::from(l80)),
            Arc::new(Float64Array::from(u80)),
            Arc::new(Float64Array::from(l95)),
            Arc::new(Float64Array::from(u95)),
            Arc::new(StringArray::from(methods)),
            Arc::new(Float64Array::from(mase)),
        ],
    )
}

/// The latest forecast per workspace, metric and interval, published to
/// the engine as the `forecasts` table. Kept in memory: a restart starts
/// with an empty table until forecasts are made again.
#[derive(Debug, Clone, Default)]
pub struct ForecastStore {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<StoredForecast>>>>,
}

impl ForecastStore {
    /// Publishes the empty `forecasts` table every workspace sees first.
    pub fn publish_default(engine: &Engine) -> Result<(), ApiError> {
        engine.publish_table(
            beacon_engine::ALL_TENANTS,
            FORECASTS_TABLE,
            forecasts_schema(),
            Vec::new(),
        )?;
        Ok(())
    }

    /// Keeps `stored` (replacing the same metric and interval),
    /// republishes the workspace's table and, with `files`, saves the list.
    pub fn keep(
        &self,
        engine: &Engine,
        tenant: &str,
        stored: StoredForecast,
        files: Option<&ModelFiles>,
    ) -> Result<(), ApiError> {
        let mut all = self
            .inner
            .lock()
            .expect("the forecast store lock is never held across a panic");
        let list = all.entry(tenant.to_owned()).or_default();
        list.retain(|s| !(s.metric == stored.metric && s.interval == stored.interval));
        list.push(stored);
        list.sort_by(|a, b| (&a.metric, &a.interval).cmp(&(&b.metric, &b.interval)));
        let batch = forecasts_batch(list).map_err(|e| ApiError::internal(&e))?;
        engine.publish_table(tenant, FORECASTS_TABLE, forecasts_schema(), vec![batch])?;
        if let Some(files) = files {
            files
                .save_forecasts(tenant, list)
                .map_err(|e| ApiError::internal(&e))?;
        }
        Ok(())
    }

    /// Forgets a deleted workspace's forecasts.
    pub fn forget(&self, tenant: &str) {
        self.inner
            .lock()
            .expect("the forecast store lock is never held across a panic")
            .remove(tenant);
    }

    /// Every workspace's kept forecasts.
    pub fn all(&self) -> Vec<(String, StoredForecast)> {
        let all = self
            .inner
            .lock()
            .expect("the forecast store lock is never held across a panic");
        all.iter()
            .flat_map(|(t, l)| l.iter().map(|f| (t.clone(), f.clone())))
            .collect()
    }

    /// The workspace's kept forecasts.
    pub fn list(&self, tenant: &str) -> Vec<StoredForecast> {
        self.inner
            .lock()
            .expect("the forecast store lock is never held across a panic")
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }
}

/// The SQL table of kept forecasts.
pub const FORECASTS_TABLE: &str = "forecasts";

/// Builds the series and forecasts it `horizon` steps (default: 48 hours,
/// 14 days or 13 weeks); returns the series, the forecast and the periods
/// of its steps.
pub async fn run_forecast(
    engine: &Engine,
    tenant: &str,
    request: &SeriesRequest,
    horizon: Option<usize>,
    opts: ForecastOptions,
) -> Result<(Series, Forecast, Vec<NaiveDateTime>), ApiError> {
    let series = series(engine, tenant, request).await?;
    let freq = frequency(series.interval);
    let horizon = horizon.unwrap_or(match freq {
        Frequency::Hourly => 48,
        Frequency::Daily => 14,
        Frequency::Weekly => 13,
    });
    if horizon == 0 || horizon > 1000 {
        return Err(bad("horizon must be in 1..=1000"));
    }
    let values = series.values.clone();
    let fc =
        off_thread(move || beacon_forecasting::forecast::forecast(&values, freq, horizon, &opts))
            .await
            .map_err(model_error)?;
    let last = *series
        .periods
        .last()
        .expect("a forecast needs history, so the series has periods");
    let periods = (1..=horizon as i32)
        .map(|k| last + series.step * k)
        .collect();
    Ok((series, fc, periods))
}
