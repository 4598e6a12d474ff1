//! Metric series: the per-period values a forecast, an anomaly band (of
//! `/v1/anomalies` and of anomaly alert rules) or a reorder point is fitted
//! on, queried over one workspace.
//!
//! A series is a built-in metric of [`METRICS`] or `sql` (a read-only query
//! whose first two columns are the period and the value). Periods are
//! business time (the workspace's [`Calendar`]) truncated to the interval
//! (`hour`, `day`, `week`: weeks start on the workspace's week start).
//! Periods without events are 0 (for `sql`, too: a missing period means
//! none). The current period, as of the store's clock, is incomplete and
//! left out, so the series ends at the last complete period.
//!
//! [`Calendar`]: crate::calendar::Calendar

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Duration, NaiveDateTime, Timelike, Utc};
use serde::Deserialize;

use crate::udf::time::Unit;
use crate::{Engine, Error, Result};

/// The built-in metrics and their SQL (`{bucket}` is the period
/// expression, `{since}` the start of the history).
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

/// The built-in metrics [`events_rollup`] answers, with their SQL over it
/// (`{bucket}` over the rollup's `bucket`, `{since}` on it): equal to
/// [`METRICS`]' (the history starts on a 15-minute boundary, so every
/// rollup bucket is in it or not), without reading the events. A history
/// of 120 days at 10M events read 0.4 s of columns on the first query after
/// a start, and is read from memory here.
///
/// [`events_rollup`]: crate::rollup
const ROLLUP_METRICS: [(&str, &str); 4] = [
    (
        "revenue",
        "SELECT {bucket} AS period, CAST(sum(revenue) AS DOUBLE) AS value FROM events_rollup \
                 WHERE event IN ('Order Completed', 'Booking Completed') \
                 AND (currency IS NULL OR currency = business_currency()) AND {since} GROUP BY 1",
    ),
    (
        "orders",
        "SELECT {bucket} AS period, CAST(sum(events) AS DOUBLE) AS value FROM events_rollup \
                 WHERE event = 'Order Completed' \
                 AND (currency IS NULL OR currency = business_currency()) AND {since} GROUP BY 1",
    ),
    (
        "bookings",
        "SELECT {bucket} AS period, CAST(sum(events) AS DOUBLE) AS value FROM events_rollup \
                 WHERE event = 'Booking Created' AND {since} GROUP BY 1",
    ),
    (
        "cancellations",
        "SELECT {bucket} AS period, CAST(sum(events) AS DOUBLE) AS value FROM events_rollup \
                 WHERE event = 'Booking Cancelled' AND {since} GROUP BY 1",
    ),
];

/// The names of [`METRICS`].
pub fn metric_names() -> Vec<&'static str> {
    METRICS.iter().map(|(m, _)| *m).collect()
}

/// The period of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    /// Local hours.
    Hour,
    /// Local days.
    Day,
    /// Local weeks from the workspace's week start.
    Week,
}

impl Interval {
    /// Parses `hour`, `day` or `week`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            other => Err(invalid(format!(
                "interval must be hour, day or week, not {other:?}"
            ))),
        }
    }

    /// One period.
    pub fn step(self) -> Duration {
        match self {
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
            Self::Week => Duration::days(7),
        }
    }

    /// Days of history a series uses by default.
    pub fn default_history_days(self) -> u32 {
        match self {
            Self::Hour => 56,
            Self::Day => 730,
            Self::Week => 1825,
        }
    }

    /// The SQL expression of the period of `timestamp`.
    /// The period of `column` (a UTC timestamp), as SQL.
    fn bucket_sql(self, column: &str) -> String {
        match self {
            Self::Hour => format!("date_trunc('hour', business_time({column}))"),
            Self::Day => format!("CAST(business_date({column}, 'day') AS TIMESTAMP)"),
            Self::Week => format!("CAST(business_date({column}, 'week') AS TIMESTAMP)"),
        }
    }
}

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
    /// The interval.
    pub interval: Interval,
    /// One period.
    pub step: Duration,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::ModelInput(message.into())
}

/// Most periods in a series.
pub const MAX_PERIODS: usize = 100_000;

/// A timestamp literal for SQL (`TIMESTAMP '...Z'`).
pub(crate) fn sql_time(t: DateTime<Utc>) -> String {
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// Queries the series of `request` for `tenant`, as of the store's clock.
pub async fn series(engine: &Engine, tenant: &str, request: &SeriesRequest) -> Result<Series> {
    let interval = Interval::parse(&request.interval)?;
    let step = interval.step();
    let days = request
        .history_days
        .unwrap_or(interval.default_history_days());
    if days == 0 || days > 3660 {
        return Err(invalid("history_days must be in 1..=3660"));
    }
    let now = engine.now();
    // From a 15-minute boundary: the rollup's buckets are all in or out.
    let quarter = 900_000_000;
    let from = DateTime::from_timestamp_micros(now.timestamp_micros().div_euclid(quarter) * quarter)
        .unwrap_or(now)
        - Duration::days(i64::from(days));
    let since = format!("timestamp >= {}", sql_time(from));
    let rollup_query = match (request.metric.as_str(), &request.sql) {
        (name, None) if engine.config().rollups => ROLLUP_METRICS
            .iter()
            .find(|(m, _)| *m == name)
            .map(|(_, q)| {
                q.replace("{bucket}", &interval.bucket_sql("bucket"))
                    .replace("{since}", &format!("bucket >= {}", sql_time(from)))
            }),
        _ => None,
    };
    let query = match (request.metric.as_str(), &request.sql) {
        ("sql", Some(sql)) => sql.clone(),
        ("sql", None) => {
            return Err(invalid(
                "metric \"sql\" needs a \"sql\" query returning (period, value)",
            ));
        }
        (name, None) => METRICS
            .iter()
            .find(|(m, _)| *m == name)
            .map(|(_, q)| {
                q.replace("{bucket}", &interval.bucket_sql("timestamp"))
                    .replace("{since}", &since)
            })
            .ok_or_else(|| {
                invalid(format!(
                    "unknown metric {name:?}; available: {}, sql",
                    METRICS.map(|m| m.0).join(", ")
                ))
            })?,
        (_, Some(_)) => return Err(invalid("\"sql\" is only allowed with metric \"sql\"")),
    };
    let result = match rollup_query {
        Some(q) => {
            let (ctx, _) = engine.session_with_rollups(tenant, true).await?;
            engine.execute_generated(&ctx, &q).await?
        }
        None => engine.sql(tenant, &query).await?,
    };
    if result.truncated {
        return Err(invalid(
            "the series query returned more rows than max_result_rows",
        ));
    }
    if result.schema.fields().len() < 2 {
        return Err(invalid(
            "the series query must return two columns: period, value",
        ));
    }
    let mut points: Vec<(NaiveDateTime, f64)> = Vec::new();
    for batch in &result.batches {
        let periods = arrow::compute::cast(
            batch.column(0),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|e| invalid(format!("the first column must be a time or date: {e}")))?;
        let values = arrow::compute::cast(batch.column(1), &DataType::Float64)
            .map_err(|e| invalid(format!("the second column must be a number: {e}")))?;
        let periods = periods.as_primitive::<TimestampMicrosecondType>();
        let values = values.as_primitive::<Float64Type>();
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
    let end = current_period(engine, tenant, interval, now);
    points.retain(|(p, _)| end.is_none_or(|c| *p < c));
    points.sort_by_key(|(p, _)| *p);
    let (Some(first), Some(end)) = (points.first().map(|p| p.0), end) else {
        return Ok(Series {
            periods: Vec::new(),
            values: Vec::new(),
            interval,
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
        if periods.len() > MAX_PERIODS {
            return Err(invalid(
                "the series has more than 100000 periods; use a longer interval or fewer history_days",
            ));
        }
    }
    Ok(Series {
        periods,
        values,
        interval,
        step,
    })
}

/// The start of the period holding `now` in the workspace's business time
/// (what the period expression of [`Interval`] gives for `now`).
fn current_period(
    engine: &Engine,
    tenant: &str,
    interval: Interval,
    now: DateTime<Utc>,
) -> Option<NaiveDateTime> {
    let calendar = engine.calendar(tenant).business();
    match interval {
        Interval::Hour => now
            .with_timezone(&calendar.tz)
            .naive_local()
            .with_minute(0)?
            .with_second(0)?
            .with_nanosecond(0),
        Interval::Day => calendar
            .bucket(now.timestamp_micros(), Unit::Day)?
            .and_hms_opt(0, 0, 0),
        Interval::Week => calendar
            .bucket(now.timestamp_micros(), Unit::Week)?
            .and_hms_opt(0, 0, 0),
    }
}

/// The units of `product` sold per business day (`order_items.quantity`)
/// over the last `history_days` (default 365): the series of a reorder
/// point.
pub async fn product_sales(
    engine: &Engine,
    tenant: &str,
    product: &str,
    history_days: Option<u32>,
) -> Result<Series> {
    let request = SeriesRequest {
        metric: "sql".into(),
        interval: "day".into(),
        sql: Some(format!(
            "SELECT CAST(business_date(timestamp, 'day') AS TIMESTAMP), CAST(sum(quantity) AS DOUBLE) FROM order_items \
             WHERE product_id = {} AND timestamp >= {} - INTERVAL '{} days' GROUP BY 1",
            literal(product),
            sql_time(engine.now()),
            history_days.unwrap_or(365).clamp(1, 3660)
        )),
        history_days,
    };
    series(engine, tenant, &request).await
}

/// The quantity of the latest `Inventory Updated` event of `product`, if any.
pub async fn latest_stock(engine: &Engine, tenant: &str, product: &str) -> Result<Option<f64>> {
    let sql = format!(
        "SELECT CAST(json_as_text(properties, 'quantity') AS DOUBLE) FROM events \
         WHERE event = 'Inventory Updated' AND json_get_str(properties, 'product_id') = {} ORDER BY timestamp DESC LIMIT 1",
        literal(product)
    );
    let stock = engine.sql(tenant, &sql).await?;
    Ok(stock
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| arrow::compute::cast(b.column(0), &DataType::Float64).ok())
        .and_then(|a| {
            let a = a.as_primitive::<Float64Type>();
            (!a.is_null(0)).then(|| a.value(0))
        }))
}

/// `value` as a quoted SQL string literal (`''` escapes a quote).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
