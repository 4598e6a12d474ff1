//! Serving the models of `beacon-forecasting`: the series behind a
//! forecast or anomaly band are queried with the engine (in the workspace's
//! business time), the model runs on the rayon pool (never on the async
//! threads), and forecasts are published as the SQL table `forecasts`.
//!
//! Series: `metric` is one of [`METRICS`] or `sql` (a read-only query whose
//! first two columns are the period and the value). Periods are business
//! time (the workspace's time zone) truncated to the `interval` (`hour`,
//! `day`, `week`: weeks start on the workspace's week start day). Periods
//! without events are 0 (for `sql`, too: a missing period means none). The
//! current period is incomplete and left out, so the series ends at the
//! last complete period.

use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use beacon_engine::Engine;
use beacon_forecasting::forecast::{Forecast, ForecastOptions, Sensitivity};
use beacon_forecasting::segments::{Rfm, Segmentation};
use beacon_forecasting::ts::{Frequency, Method};
use chrono::{DateTime, Duration, NaiveDateTime};
use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::error::ApiError;

/// The built-in metrics and their SQL (`{bucket}` is the period expression).
pub const METRICS: [(&str, &str); 5] = [
    // Sales as the analytics API counts them: orders and completed bookings,
    // in the workspace currency (amounts in others are never added).
    (
        "revenue",
        "SELECT {bucket} AS period, CAST(sum(revenue) AS DOUBLE) AS value FROM events \
                 WHERE event IN ('Order Completed', 'Booking Completed') \
                 AND (currency IS NULL OR currency = business_currency()) AND {since} GROUP BY 1",
    ),
    (
        "orders",
        "SELECT {bucket} AS period, CAST(count(*) AS DOUBLE) AS value FROM orders \
                 WHERE (currency IS NULL OR currency = business_currency()) AND {since} GROUP BY 1",
    ),
    (
        "bookings",
        "SELECT {bucket} AS period, CAST(count(*) AS DOUBLE) AS value FROM bookings WHERE event = 'Booking Created' AND {since} GROUP BY 1",
    ),
    (
        "cancellations",
        "SELECT {bucket} AS period, CAST(count(*) AS DOUBLE) AS value FROM bookings WHERE event = 'Booking Cancelled' AND {since} GROUP BY 1",
    ),
    (
        "visitors",
        "SELECT {bucket} AS period, CAST(count(DISTINCT person) AS DOUBLE) AS value FROM page_views WHERE {since} GROUP BY 1",
    ),
];

/// What series to build.
#[derive(Debug, Clone, Deserialize)]
pub struct SeriesRequest {
    /// A name of [`METRICS`] or `sql`.
    pub metric: String,
    /// `hour`, `day` (default) or `week`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// The query of `metric = "sql"`.
    #[serde(default)]
    pub sql: Option<String>,
    /// Days of history to use (default: 56 for hourly, 730 for daily,
    /// 1825 for weekly series).
    #[serde(default)]
    pub history_days: Option<u32>,
}

fn default_interval() -> String {
    "day".into()
}

/// A series: local period starts and values.
#[derive(Debug, Clone)]
pub struct Series {
    /// Period starts (business time, no zone).
    pub periods: Vec<NaiveDateTime>,
    /// Values.
    pub values: Vec<f64>,
    /// The frequency.
    pub frequency: Frequency,
    /// One period.
    pub step: Duration,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

impl SeriesRequest {
    fn frequency(&self) -> Result<(Frequency, Duration, &'static str), ApiError> {
        match self.interval.as_str() {
            "hour" => Ok((
                Frequency::Hourly,
                Duration::hours(1),
                "date_trunc('hour', business_time(timestamp))",
            )),
            "day" => Ok((
                Frequency::Daily,
                Duration::days(1),
                "CAST(business_date(timestamp, 'day') AS TIMESTAMP)",
            )),
            "week" => Ok((
                Frequency::Weekly,
                Duration::days(7),
                "CAST(business_date(timestamp, 'week') AS TIMESTAMP)",
            )),
            other => Err(bad(format!(
                "interval must be hour, day or week, not {other:?}"
            ))),
        }
    }
}

/// Queries the series of `request` for `tenant`.
pub async fn series(
    engine: &Engine,
    tenant: &str,
    request: &SeriesRequest,
) -> Result<Series, ApiError> {
    let (frequency, step, bucket) = request.frequency()?;
    let days = request.history_days.unwrap_or(match frequency {
        Frequency::Hourly => 56,
        Frequency::Daily => 730,
        Frequency::Weekly => 1825,
    });
    if days == 0 || days > 3660 {
        return Err(bad("history_days must be in 1..=3660"));
    }
    let since = format!("timestamp >= now() - INTERVAL '{days} days'");
    let query = match (request.metric.as_str(), &request.sql) {
        ("sql", Some(sql)) => sql.clone(),
        ("sql", None) => {
            return Err(bad(
                "metric \"sql\" needs a \"sql\" query returning (period, value)",
            ));
        }
        (name, None) => METRICS
            .iter()
            .find(|(m, _)| *m == name)
            .map(|(_, q)| q.replace("{bucket}", bucket).replace("{since}", &since))
            .ok_or_else(|| {
                bad(format!(
                    "unknown metric {name:?}; available: {}, sql",
                    METRICS.map(|m| m.0).join(", ")
                ))
            })?,
        (_, Some(_)) => return Err(bad("\"sql\" is only allowed with metric \"sql\"")),
    };
    let result = engine.sql(tenant, &query).await?;
    if result.truncated {
        return Err(bad(
            "the series query returned more rows than max_result_rows",
        ));
    }
    if result.schema.fields().len() < 2 {
        return Err(bad(
            "the series query must return two columns: period, value",
        ));
    }
    let mut points: Vec<(NaiveDateTime, f64)> = Vec::new();
    for batch in &result.batches {
        let periods = arrow::compute::cast(
            batch.column(0),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|e| bad(format!("the first column must be a time or date: {e}")))?;
        let values = arrow::compute::cast(batch.column(1), &DataType::Float64)
            .map_err(|e| bad(format!("the second column must be a number: {e}")))?;
        let periods = periods.as_primitive::<TimestampMicrosecondType>();
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        for i in 0..batch.num_rows() {
            if periods.is_null(i) {
                continue;
            }
            let Some(p) = DateTime::from_timestamp_micros(periods.value(i)).map(|t| t.naive_utc())
            else {
                continue;
            };
            points.push((
                p,
                if values.is_null(i) {
                    0.0
                } else {
                    values.value(i)
                },
            ));
        }
    }
    // The current (incomplete) period, in business time.
    let now = engine
        .sql(
            tenant,
            &format!("SELECT {} AS p", bucket.replace("timestamp", "now()")),
        )
        .await?;
    let current = now
        .batches
        .first()
        .and_then(|b| {
            arrow::compute::cast(
                b.column(0),
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )
            .ok()
        })
        .and_then(|a| {
            let a = a.as_primitive::<TimestampMicrosecondType>();
            (!a.is_empty() && !a.is_null(0)).then(|| a.value(0))
        })
        .and_then(DateTime::from_timestamp_micros)
        .map(|t| t.naive_utc());
    points.retain(|(p, _)| current.is_none_or(|c| *p < c));
    points.sort_by_key(|(p, _)| *p);
    let (Some(first), Some(end)) = (points.first().map(|p| p.0), current) else {
        return Ok(Series {
            periods: Vec::new(),
            values: Vec::new(),
            frequency,
            step,
        });
    };
    // Zero-fill every period from the first with data to the last complete one.
    let mut periods = Vec::new();
    let mut values = Vec::new();
    let mut it = points.into_iter().peekable();
    let mut t = first;
    while t < end {
        let mut v = 0.0;
        while let Some((p, x)) = it.peek() {
            if *p < t + step {
                if *p >= t {
                    v += x;
                }
                it.next();
            } else {
                break;
            }
        }
        periods.push(t);
        values.push(v);
        t += step;
        if periods.len() > 100_000 {
            return Err(bad(
                "the series has more than 100000 periods; use a longer interval or fewer history_days",
            ));
        }
    }
    Ok(Series {
        periods,
        values,
        frequency,
        step,
    })
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

/// Parses a sensitivity name.
pub fn sensitivity(name: Option<&str>) -> Result<Sensitivity, ApiError> {
    match name.unwrap_or("medium") {
        "low" => Ok(Sensitivity::Low),
        "medium" => Ok(Sensitivity::Medium),
        "high" => Ok(Sensitivity::High),
        other => Err(bad(format!(
            "sensitivity must be low, medium or high, not {other:?}"
        ))),
    }
}

/// RFM per customer with an order in the last `days` days, as of now
/// (monetary in the workspace currency: amounts in others are not added).
pub async fn rfm(
    engine: &Engine,
    tenant: &str,
    days: u32,
) -> Result<(Vec<String>, Vec<Rfm>), ApiError> {
    let query = format!(
        "SELECT person, CAST(date_part('epoch', now() - max(timestamp)) / 86400.0 AS DOUBLE) AS recency_days, \
         CAST(count(*) AS DOUBLE) AS frequency, CAST(coalesce(sum(revenue) FILTER (WHERE currency IS NULL OR currency = business_currency()), 0) AS DOUBLE) AS monetary \
         FROM orders WHERE person IS NOT NULL AND timestamp >= now() - INTERVAL '{days} days' GROUP BY person ORDER BY person"
    );
    let result = engine.sql(tenant, &query).await?;
    if result.truncated {
        return Err(bad(
            "more customers than max_result_rows; raise it or shorten the range",
        ));
    }
    let mut people = Vec::new();
    let mut rfm = Vec::new();
    for b in &result.batches {
        let person = arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| ApiError::internal(&e))?;
        let person = person.as_string::<i32>();
        let col = |i: usize| arrow::compute::cast(b.column(i), &DataType::Float64);
        let (r, f, m) = (col(1), col(2), col(3));
        let (Ok(r), Ok(f), Ok(m)) = (r, f, m) else {
            return Err(bad("RFM columns are not numeric"));
        };
        let (r, f, m) = (
            r.as_primitive::<arrow::datatypes::Float64Type>().clone(),
            f.as_primitive::<arrow::datatypes::Float64Type>().clone(),
            m.as_primitive::<arrow::datatypes::Float64Type>().clone(),
        );
        for i in 0..b.num_rows() {
            people.push(person.value(i).to_string());
            rfm.push(Rfm {
                recency_days: r.value(i),
                frequency: f.value(i),
                monetary: m.value(i),
            });
        }
    }
    Ok((people, rfm))
}

/// Segments for the RFM table.
pub async fn segments(rfm: Vec<Rfm>, k: usize) -> Result<Segmentation, ApiError> {
    off_thread(move || beacon_forecasting::segments::segment(&rfm, k, 42))
        .await
        .map_err(model_error)
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

/// Churn features per customer as of `at` (a UTC instant): orders,
/// revenue, recency, tenure, the last 90 days against the 90 before,
/// refunds, booking cancellations and no-shows. Customers with an order in
/// the year before `at`; revenue in the workspace currency (orders in
/// others count, their money does not).
fn churn_features_sql(at: &str) -> String {
    format!(
        "WITH o AS (SELECT person, timestamp, \
                          CAST(CASE WHEN currency IS NULL OR currency = business_currency() THEN revenue END AS DOUBLE) AS revenue \
                   FROM orders \
                   WHERE person IS NOT NULL AND timestamp < {at} AND timestamp >= {at} - INTERVAL '365 days'), \
              r AS (SELECT person, count(*) AS refunds FROM refunds WHERE timestamp < {at} GROUP BY person), \
              b AS (SELECT person, count(*) FILTER (WHERE event = 'Booking Cancelled') AS cancellations, \
                           count(*) FILTER (WHERE event = 'Booking No Show') AS no_shows \
                    FROM bookings WHERE timestamp < {at} GROUP BY person) \
         SELECT o.person, \
           CAST(date_part('epoch', {at} - max(o.timestamp)) / 86400.0 AS DOUBLE) AS recency_days, \
           CAST(date_part('epoch', {at} - min(o.timestamp)) / 86400.0 AS DOUBLE) AS tenure_days, \
           CAST(count(*) AS DOUBLE) AS orders, \
           CAST(coalesce(sum(o.revenue), 0) AS DOUBLE) AS revenue, \
           CAST(count(*) FILTER (WHERE o.timestamp >= {at} - INTERVAL '90 days') AS DOUBLE) AS orders_90d, \
           CAST(count(*) FILTER (WHERE o.timestamp < {at} - INTERVAL '90 days' AND o.timestamp >= {at} - INTERVAL '180 days') AS DOUBLE) AS orders_prev_90d, \
           CAST(coalesce(sum(o.revenue) FILTER (WHERE o.timestamp >= {at} - INTERVAL '90 days'), 0) AS DOUBLE) AS revenue_90d, \
           CAST(coalesce(max(r.refunds), 0) AS DOUBLE) AS refunds, \
           CAST(coalesce(max(b.cancellations), 0) AS DOUBLE) AS cancellations, \
           CAST(coalesce(max(b.no_shows), 0) AS DOUBLE) AS no_shows \
         FROM o LEFT JOIN r ON o.person = r.person LEFT JOIN b ON o.person = b.person \
         GROUP BY o.person ORDER BY o.person"
    )
}

/// The feature columns of [`churn_features_sql`], after `person`.
pub const CHURN_FEATURES: [&str; 10] = [
    "recency_days",
    "tenure_days",
    "orders",
    "revenue",
    "orders_90d",
    "orders_prev_90d",
    "revenue_90d",
    "refunds",
    "cancellations",
    "no_shows",
];

fn sql_time(t: DateTime<chrono::Utc>) -> String {
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// Customers and their feature table as of `at`.
pub async fn churn_features(
    engine: &Engine,
    tenant: &str,
    at: DateTime<chrono::Utc>,
) -> Result<(Vec<String>, beacon_forecasting::features::Table), ApiError> {
    use beacon_forecasting::features::{Column, Table};
    let result = engine
        .sql(tenant, &churn_features_sql(&sql_time(at)))
        .await?;
    if result.truncated {
        return Err(bad(
            "more customers than max_result_rows; raise it to train on this workspace",
        ));
    }
    let mut people = Vec::new();
    let mut cols: Vec<Vec<Option<f64>>> = vec![Vec::new(); CHURN_FEATURES.len()];
    for b in &result.batches {
        let person = arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| ApiError::internal(&e))?;
        people.extend(
            person
                .as_string::<i32>()
                .iter()
                .map(|p| p.unwrap_or_default().to_string()),
        );
        for (j, col) in cols.iter_mut().enumerate() {
            let a = arrow::compute::cast(b.column(j + 1), &DataType::Float64)
                .map_err(|e| ApiError::internal(&e))?;
            let a = a.as_primitive::<arrow::datatypes::Float64Type>();
            col.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))));
        }
    }
    let mut table = Table::default();
    for (name, col) in CHURN_FEATURES.iter().zip(cols) {
        table.push(*name, Column::Numeric(col));
    }
    Ok((people, table))
}

/// People with an order in `[from, to)`.
async fn ordering_people(
    engine: &Engine,
    tenant: &str,
    from: DateTime<chrono::Utc>,
    to: DateTime<chrono::Utc>,
) -> Result<std::collections::HashSet<String>, ApiError> {
    let q = format!(
        "SELECT DISTINCT CAST(person AS VARCHAR) FROM orders WHERE person IS NOT NULL AND timestamp >= {} AND timestamp < {}",
        sql_time(from),
        sql_time(to)
    );
    let result = engine.sql(tenant, &q).await?;
    if result.truncated {
        return Err(bad(
            "more customers than max_result_rows; raise it to train on this workspace",
        ));
    }
    let mut out = std::collections::HashSet::new();
    for b in &result.batches {
        let people = arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| ApiError::internal(&e))?;
        out.extend(
            people
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string),
        );
    }
    Ok(out)
}

/// A trained classifier (churn or lead model) and its metadata.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct TrainedModel {
    /// Version (1, 2, ... per workspace and kind while the server runs).
    pub version: u64,
    /// When it was trained.
    #[serde(with = "utc_time")]
    pub trained_at: DateTime<chrono::Utc>,
    /// Churn: days without an order that count as churned. Leads: days
    /// after creation whose engagement counts.
    pub window_days: u32,
    /// The classifier.
    pub classifier: beacon_forecasting::classify::Classifier,
    /// Cross-validated AUC of the chosen model.
    pub cv_auc: f64,
}

/// Trains the churn model: features as of `now - horizon_days`, label =
/// no order in the `horizon_days` since; then scores every customer on
/// features as of now. Returns the model and the `customer_scores` rows.
pub async fn train_churn(
    engine: &Engine,
    tenant: &str,
    horizon_days: u32,
    version: u64,
) -> Result<(TrainedModel, RecordBatch), ApiError> {
    if !(7..=365).contains(&horizon_days) {
        return Err(bad("horizon_days must be in 7..=365"));
    }
    let now = chrono::Utc::now();
    let cutoff = now - Duration::days(i64::from(horizon_days));
    let (people, table) = churn_features(engine, tenant, cutoff).await?;
    let returned = ordering_people(engine, tenant, cutoff, now).await?;
    let y: Vec<bool> = people.iter().map(|p| !returned.contains(p)).collect();
    let opts = beacon_forecasting::classify::ClassifierOptions::default();
    let classifier = off_thread(move || beacon_forecasting::classify::train(&table, &y, &opts))
        .await
        .map_err(model_error)?;
    let cv_auc = classifier
        .candidates
        .first()
        .map(|c| c.auc)
        .unwrap_or(f64::NAN);
    let (people, current) = churn_features(engine, tenant, now).await?;
    let model = TrainedModel {
        version,
        trained_at: now,
        window_days: horizon_days,
        classifier,
        cv_auc,
    };
    let scorer = model.classifier.clone();
    let (p, factors) = score(scorer, current).await?;
    let batch = scores_batch(
        ModelKind::Churn,
        vec![Arc::new(StringArray::from(people))],
        p,
        factors,
        &model,
    )?;
    Ok((model, batch))
}

/// The SQL table of churn scores.
pub const CUSTOMER_SCORES_TABLE: &str = "customer_scores";

/// The schema of `customer_scores`.
pub fn customer_scores_schema() -> Arc<Schema> {
    scores_schema(
        vec![Field::new("person", DataType::Utf8, false)],
        "churn_probability",
    )
}

/// A scores table: its key columns, then the probability, the top
/// factors, the model, its version and when it scored.
fn scores_schema(keys: Vec<Field>, probability: &str) -> Arc<Schema> {
    let mut fields = keys;
    fields.extend([
        Field::new(probability, DataType::Float64, false),
        Field::new("top_factors", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("model_version", DataType::UInt32, false),
        Field::new(
            "scored_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]);
    Arc::new(Schema::new(fields))
}

/// The rows of `kind`'s scores table: `keys` (its key columns), then the
/// scores and explanations of `model`, stamped with its version and time.
fn scores_batch(
    kind: ModelKind,
    mut keys: Vec<arrow::array::ArrayRef>,
    p: Vec<f64>,
    factors: Vec<String>,
    model: &TrainedModel,
) -> Result<RecordBatch, ApiError> {
    let n = p.len();
    keys.extend([
        Arc::new(Float64Array::from(p)) as arrow::array::ArrayRef,
        Arc::new(StringArray::from(factors)),
        Arc::new(StringArray::from(vec![model.classifier.model.clone(); n])),
        Arc::new(UInt32Array::from(vec![model.version as u32; n])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![model.trained_at.timestamp_micros(); n])
                .with_timezone("UTC"),
        ),
    ]);
    RecordBatch::try_new(kind.schema(), keys).map_err(|e| ApiError::internal(&e))
}

/// Calibrated probabilities and "column +effect; ..." explanations.
async fn score(
    model: beacon_forecasting::classify::Classifier,
    table: beacon_forecasting::features::Table,
) -> Result<(Vec<f64>, Vec<String>), ApiError> {
    let (p, why) = off_thread(move || -> beacon_forecasting::Result<_> {
        Ok((model.predict(&table)?, model.explain(&table, 3)?))
    })
    .await
    .map_err(model_error)?;
    let factors = why
        .iter()
        .map(|c| {
            c.iter()
                .map(|c| format!("{} {:+.3}", c.column, c.effect))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect();
    Ok((p, factors))
}

/// The two kinds of trained models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Churn risk per customer (`customer_scores`).
    Churn,
    /// Conversion probability per open lead (`lead_scores`).
    Leads,
}

impl ModelKind {
    /// `churn` or `leads`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Churn => "churn",
            ModelKind::Leads => "leads",
        }
    }

    /// The SQL table of its scores.
    pub fn table(self) -> &'static str {
        match self {
            ModelKind::Churn => CUSTOMER_SCORES_TABLE,
            ModelKind::Leads => LEAD_SCORES_TABLE,
        }
    }

    fn schema(self) -> Arc<Schema> {
        match self {
            ModelKind::Churn => customer_scores_schema(),
            ModelKind::Leads => lead_scores_schema(),
        }
    }
}

/// The latest model per workspace and kind (in memory; their scores are
/// the `customer_scores` and `lead_scores` tables).
#[derive(Debug, Clone, Default)]
pub struct ModelStore {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<(String, ModelKind), TrainedModel>>>,
}

impl ModelStore {
    /// Publishes the empty score tables every workspace sees first.
    pub fn publish_defaults(engine: &Engine) -> Result<(), ApiError> {
        for kind in [ModelKind::Churn, ModelKind::Leads] {
            engine.publish_table(
                beacon_engine::ALL_TENANTS,
                kind.table(),
                kind.schema(),
                Vec::new(),
            )?;
        }
        Ok(())
    }

    /// The next version number.
    pub fn next_version(&self, tenant: &str, kind: ModelKind) -> u64 {
        self.get(tenant, kind).map_or(1, |m| m.version + 1)
    }

    /// Keeps the model, publishes its scores and, with `files`, saves both.
    pub fn keep(
        &self,
        engine: &Engine,
        tenant: &str,
        kind: ModelKind,
        model: TrainedModel,
        scores: RecordBatch,
        files: Option<&ModelFiles>,
    ) -> Result<(), ApiError> {
        if let Some(files) = files {
            files
                .save_model(tenant, kind, &model, &scores)
                .map_err(|e| ApiError::internal(&e))?;
        }
        engine.publish_table(tenant, kind.table(), kind.schema(), vec![scores])?;
        self.inner
            .lock()
            .expect("the model store lock is never held across a panic")
            .insert((tenant.to_owned(), kind), model);
        Ok(())
    }

    /// Every (workspace, kind, window) with a model.
    pub fn all(&self) -> Vec<(String, ModelKind, u32)> {
        let all = self
            .inner
            .lock()
            .expect("the model store lock is never held across a panic");
        all.iter()
            .map(|((t, k), m)| (t.clone(), *k, m.window_days))
            .collect()
    }

    /// The workspace's model of `kind`.
    pub fn get(&self, tenant: &str, kind: ModelKind) -> Option<TrainedModel> {
        self.inner
            .lock()
            .expect("the model store lock is never held across a panic")
            .get(&(tenant.to_owned(), kind))
            .cloned()
    }
}

/// Lead features: the `Lead Created` origin and source, the last activity,
/// activities, and page views and time on site within `window` days of
/// creation; the label is a `Lead Converted` event.
fn lead_features_sql(window: u32) -> String {
    format!(
        "WITH c AS (SELECT CAST(lead_id AS VARCHAR) AS lead_id, max(person) AS person, min(timestamp) AS created_at, \
                           max(json_get_str(properties, 'origin')) AS origin, max(json_get_str(properties, 'source')) AS source \
                    FROM leads WHERE event = 'Lead Created' AND lead_id IS NOT NULL GROUP BY 1), \
              conv AS (SELECT DISTINCT CAST(lead_id AS VARCHAR) AS lead_id FROM leads WHERE event = 'Lead Converted' AND lead_id IS NOT NULL), \
              a AS (SELECT CAST(lead_id AS VARCHAR) AS lead_id, count(*) AS activities, max(json_get_str(properties, 'activity')) AS last_activity \
                    FROM leads WHERE event = 'Lead Activity' AND lead_id IS NOT NULL GROUP BY 1), \
              v AS (SELECT c.lead_id, count(*) AS page_views, sum(CAST(json_as_text(p.properties, 'seconds_on_site') AS DOUBLE)) AS seconds \
                    FROM c JOIN page_views p ON p.person = c.person \
                    WHERE p.timestamp >= c.created_at AND p.timestamp < c.created_at + INTERVAL '{window} days' GROUP BY 1) \
         SELECT c.lead_id, c.person, c.origin, c.source, a.last_activity, \
                CAST(coalesce(a.activities, 0) AS DOUBLE) AS activities, CAST(coalesce(v.page_views, 0) AS DOUBLE) AS page_views, \
                CAST(coalesce(v.seconds, 0) AS DOUBLE) AS seconds_on_site, conv.lead_id IS NOT NULL AS converted, \
                c.created_at < now() - INTERVAL '{window} days' AS mature \
         FROM c LEFT JOIN a ON a.lead_id = c.lead_id LEFT JOIN v ON v.lead_id = c.lead_id LEFT JOIN conv ON conv.lead_id = c.lead_id \
         ORDER BY c.lead_id"
    )
}

/// Trains the lead model on leads older than `window_days` (their outcome
/// is known) and scores every open (not converted) lead.
pub async fn train_leads(
    engine: &Engine,
    tenant: &str,
    window_days: u32,
    version: u64,
) -> Result<(TrainedModel, RecordBatch), ApiError> {
    use beacon_forecasting::features::{Column, Table};
    if !(1..=365).contains(&window_days) {
        return Err(bad("window_days must be in 1..=365"));
    }
    let result = engine.sql(tenant, &lead_features_sql(window_days)).await?;
    if result.truncated {
        return Err(bad(
            "more leads than max_result_rows; raise it to train on this workspace",
        ));
    }
    let (mut ids, mut people) = (Vec::new(), Vec::new());
    let mut text: [Vec<Option<String>>; 3] = Default::default();
    let mut num: [Vec<Option<f64>>; 3] = Default::default();
    let (mut converted, mut mature) = (Vec::new(), Vec::new());
    for b in &result.batches {
        let s = |i: usize| {
            arrow::compute::cast(b.column(i), &DataType::Utf8).map_err(|e| ApiError::internal(&e))
        };
        let (id, person) = (s(0)?, s(1)?);
        ids.extend(
            id.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_string()),
        );
        people.extend(
            person
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string)),
        );
        for (k, col) in text.iter_mut().enumerate() {
            let a = s(2 + k)?;
            col.extend(a.as_string::<i32>().iter().map(|v| v.map(str::to_string)));
        }
        for (k, col) in num.iter_mut().enumerate() {
            let a = arrow::compute::cast(b.column(5 + k), &DataType::Float64)
                .map_err(|e| ApiError::internal(&e))?;
            let a = a.as_primitive::<arrow::datatypes::Float64Type>();
            col.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))));
        }
        let (c, m) = (b.column(8).as_boolean(), b.column(9).as_boolean());
        converted.extend((0..c.len()).map(|i| c.value(i)));
        mature.extend((0..m.len()).map(|i| m.value(i)));
    }
    let mut table = Table::default();
    for (name, col) in ["origin", "source", "last_activity"].iter().zip(text) {
        table.push(*name, Column::Text(col));
    }
    for (name, col) in ["activities", "page_views", "seconds_on_site"]
        .iter()
        .zip(num)
    {
        table.push(*name, Column::Numeric(col));
    }
    let train_rows: Vec<usize> = (0..ids.len()).filter(|i| mature[*i]).collect();
    let open_rows: Vec<usize> = (0..ids.len()).filter(|i| !converted[*i]).collect();
    let train_table = table.select(&train_rows);
    let y: Vec<bool> = train_rows.iter().map(|i| converted[*i]).collect();
    let opts = beacon_forecasting::classify::ClassifierOptions::default();
    let classifier =
        off_thread(move || beacon_forecasting::classify::train(&train_table, &y, &opts))
            .await
            .map_err(model_error)?;
    let cv_auc = classifier
        .candidates
        .first()
        .map(|c| c.auc)
        .unwrap_or(f64::NAN);
    let now = chrono::Utc::now();
    let model = TrainedModel {
        version,
        trained_at: now,
        window_days,
        classifier,
        cv_auc,
    };
    let (p, factors) = score(model.classifier.clone(), table.select(&open_rows)).await?;
    let keys: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(StringArray::from(
            open_rows
                .iter()
                .map(|i| ids[*i].clone())
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            open_rows
                .iter()
                .map(|i| people[*i].clone())
                .collect::<Vec<_>>(),
        )),
    ];
    let batch = scores_batch(ModelKind::Leads, keys, p, factors, &model)?;
    Ok((model, batch))
}

/// The SQL table of lead scores.
pub const LEAD_SCORES_TABLE: &str = "lead_scores";

/// The schema of `lead_scores`.
pub fn lead_scores_schema() -> Arc<Schema> {
    scores_schema(
        vec![
            Field::new("lead_id", DataType::Utf8, false),
            Field::new("person", DataType::Utf8, true),
        ],
        "conversion_probability",
    )
}

mod naive_times {
    //! `NaiveDateTime`s as `YYYY-MM-DDTHH:MM:SS` text.
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

    pub fn serialize<S: Serializer>(v: &[NaiveDateTime], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|t| t.format(FORMAT).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDateTime>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| NaiveDateTime::parse_from_str(t, FORMAT).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Where a workspace's models and forecasts are kept on disk:
/// `{data_dir}/models/{tenant}/` with `forecasts.json`, `{kind}.json` (the
/// model) and `{kind}.arrow` (its scores, Arrow IPC). Each file is written
/// to a temporary name, synced and renamed, so a crash leaves the old or
/// the new version, never a torn one.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    root: PathBuf,
}

impl ModelFiles {
    /// Under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("models"),
        }
    }

    fn dir(&self, tenant: &str) -> PathBuf {
        self.root.join(tenant)
    }

    fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Saves a workspace's forecasts.
    pub fn save_forecasts(&self, tenant: &str, list: &[StoredForecast]) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(list).map_err(std::io::Error::other)?;
        Self::write_atomic(&self.dir(tenant).join("forecasts.json"), &bytes)
    }

    /// Saves a model and its scores.
    pub fn save_model(
        &self,
        tenant: &str,
        kind: ModelKind,
        model: &TrainedModel,
        scores: &RecordBatch,
    ) -> std::io::Result<()> {
        let mut ipc = Vec::new();
        {
            let mut w = arrow::ipc::writer::FileWriter::try_new(&mut ipc, &scores.schema())
                .map_err(std::io::Error::other)?;
            w.write(scores).map_err(std::io::Error::other)?;
            w.finish().map_err(std::io::Error::other)?;
        }
        // Scores first: a model file always has its scores next to it.
        Self::write_atomic(
            &self.dir(tenant).join(format!("{}.arrow", kind.name())),
            &ipc,
        )?;
        let bytes = serde_json::to_vec(model).map_err(std::io::Error::other)?;
        Self::write_atomic(
            &self.dir(tenant).join(format!("{}.json", kind.name())),
            &bytes,
        )
    }

    /// Loads everything saved, republishing it to the engine. A file that
    /// cannot be read is logged and skipped (the model is retrained at the
    /// next refit or on demand), never fatal.
    pub fn load(&self, engine: &Engine, forecasts: &ForecastStore, models: &ModelStore) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let tenant = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            if let Ok(bytes) = std::fs::read(dir.join("forecasts.json")) {
                match serde_json::from_slice::<Vec<StoredForecast>>(&bytes) {
                    Ok(list) => {
                        for f in list {
                            if let Err(e) = forecasts.keep(engine, &tenant, f, None) {
                                tracing::warn!(%tenant, error = %e.message(), "Could not republish a saved forecast.");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%tenant, error = %e, "Skipped an unreadable forecasts.json.")
                    }
                }
            }
            for kind in [ModelKind::Churn, ModelKind::Leads] {
                let Ok(bytes) = std::fs::read(dir.join(format!("{}.json", kind.name()))) else {
                    continue;
                };
                let loaded = serde_json::from_slice::<TrainedModel>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        let file = std::fs::File::open(dir.join(format!("{}.arrow", kind.name())))
                            .map_err(|e| e.to_string())?;
                        let reader = arrow::ipc::reader::FileReader::try_new(file, None)
                            .map_err(|e| e.to_string())?;
                        let batches = reader
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| e.to_string())?;
                        let batch = arrow::compute::concat_batches(&kind.schema(), &batches)
                            .map_err(|e| e.to_string())?;
                        Ok((m, batch))
                    });
                match loaded {
                    Ok((m, batch)) => {
                        if let Err(e) = models.keep(engine, &tenant, kind, m, batch, None) {
                            tracing::warn!(%tenant, error = %e.message(), "Could not republish a saved model.");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%tenant, model = kind.name(), error = %e, "Skipped an unreadable saved model.")
                    }
                }
            }
        }
    }
}

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
    let horizon = horizon.unwrap_or(match series.frequency {
        Frequency::Hourly => 48,
        Frequency::Daily => 14,
        Frequency::Weekly => 13,
    });
    if horizon == 0 || horizon > 1000 {
        return Err(bad("horizon must be in 1..=1000"));
    }
    let values = series.values.clone();
    let freq = series.frequency;
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
                    generated_at: chrono::Utc::now(),
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

mod utc_time {
    //! `DateTime<Utc>` as RFC 3339 text (chrono's own serde support is a
    //! feature that would rebuild the whole Arrow stack).
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// The reorder point of one product from its daily units sold (zero-filled
/// business days), and its latest `Inventory Updated` quantity if any.
pub async fn reorder_point(
    engine: &Engine,
    tenant: &str,
    product: &str,
    lead_time: usize,
    service_level: f64,
    history_days: Option<u32>,
) -> Result<(beacon_forecasting::forecast::ReorderPoint, Option<f64>), ApiError> {
    // The product id goes into SQL as a quoted literal ('' escapes a quote).
    let literal = format!("'{}'", product.replace('\'', "''"));
    let request = SeriesRequest {
        metric: "sql".into(),
        interval: "day".into(),
        sql: Some(format!(
            "SELECT CAST(business_date(timestamp, 'day') AS TIMESTAMP), CAST(sum(quantity) AS DOUBLE) FROM order_items \
             WHERE product_id = {literal} AND timestamp >= now() - INTERVAL '{} days' GROUP BY 1",
            history_days.unwrap_or(365).clamp(1, 3660)
        )),
        history_days,
    };
    let series = series(engine, tenant, &request).await?;
    if series.values.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_data",
            format!("no sales of product {product:?} in the history"),
        ));
    }
    let values = series.values;
    let rp = off_thread(move || {
        beacon_forecasting::forecast::reorder_point(
            &values,
            Frequency::Daily,
            lead_time,
            service_level,
            &ForecastOptions::default(),
        )
    })
    .await
    .map_err(model_error)?;
    let stock_sql = format!(
        "SELECT CAST(json_as_text(properties, 'quantity') AS DOUBLE) FROM events \
         WHERE event = 'Inventory Updated' AND json_get_str(properties, 'product_id') = {literal} ORDER BY timestamp DESC LIMIT 1"
    );
    let stock = engine.sql(tenant, &stock_sql).await?;
    let stock = stock
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| arrow::compute::cast(b.column(0), &DataType::Float64).ok())
        .and_then(|a| {
            let a = a.as_primitive::<arrow::datatypes::Float64Type>();
            (!a.is_null(0)).then(|| a.value(0))
        });
    Ok((rp, stock))
}

/// Anomaly bands for alert rules: the series of `/v1/anomalies` (business
/// time, complete periods) banded by the forecasting crate, with period
/// starts converted to UTC in the workspace's zone.
pub struct ModelBands {
    /// The engine.
    pub engine: Engine,
    /// For the workspace's time zone.
    pub catalog: Arc<beacon_ingest::Catalog>,
}

impl beacon_realtime::alerts::BandSource for ModelBands {
    fn bands<'a>(
        &'a self,
        tenant: &'a str,
        metric: &'a str,
        interval: &'a str,
        sensitivity: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<beacon_realtime::alerts::BandSeries, String>> {
        Box::pin(async move {
            let request = SeriesRequest {
                metric: metric.to_owned(),
                interval: interval.to_owned(),
                sql: None,
                history_days: None,
            };
            let s = series(&self.engine, tenant, &request)
                .await
                .map_err(|e| e.message())?;
            let sens = self::sensitivity(Some(sensitivity)).map_err(|e| e.message())?;
            let values = s.values.clone();
            let freq = s.frequency;
            let bands = off_thread(move || {
                beacon_forecasting::forecast::anomaly_bands(
                    &values,
                    freq,
                    sens,
                    &ForecastOptions::default(),
                )
            })
            .await
            .map_err(|e| e.to_string())?;
            let tz: chrono_tz::Tz = self
                .catalog
                .tenant(tenant)
                .map(|t| t.timezone)
                .unwrap_or_default()
                .parse()
                .unwrap_or(chrono_tz::UTC);
            use chrono::TimeZone as _;
            let starts_us = s
                .periods
                .iter()
                .map(|p| {
                    tz.from_local_datetime(p)
                        .earliest()
                        .map_or(p.and_utc().timestamp_micros(), |t| t.timestamp_micros())
                })
                .collect();
            Ok(beacon_realtime::alerts::BandSeries {
                starts_us,
                step_us: s.step.num_microseconds().unwrap_or(86_400_000_000),
                values: s.values,
                lower: bands.lower,
                upper: bands.upper,
                expected: bands.expected,
            })
        })
    }

    fn metrics(&self) -> Vec<&'static str> {
        METRICS.iter().map(|(m, _)| *m).collect()
    }
}
