//! Running a report: each block's analytics request (or SQL query) over
//! the report's range and filters, its table, the written summary, and the
//! file (Excel: a sheet per block after a Summary sheet; CSV and Parquet:
//! one file per block).

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::{Block, Definition, MAX_FORECAST_DAYS};
use crate::error::ApiError;
use crate::export::{self, Table};
use crate::state::AppState;

/// Most rows one block's table keeps; more are cut and the cut is said in
/// the file.
pub const MAX_BLOCK_ROWS: usize = 100_000;

/// A report's output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One workbook.
    Xlsx,
    /// One CSV file per block (the run keeps them; a download names the
    /// block).
    Csv,
    /// One Parquet file per block, typed (money as decimals).
    Parquet,
    /// One document: branding, summary, charts and tables, typeset.
    Pdf,
}

impl Format {
    /// From a name (`xlsx`, `csv`).
    pub fn parse(name: &str) -> Result<Self, ApiError> {
        match name {
            "xlsx" => Ok(Self::Xlsx),
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            "pdf" => Ok(Self::Pdf),
            other => Err(ApiError::bad_request(
                "invalid_format",
                format!("a report is written as pdf, xlsx, csv or parquet, not {other:?}"),
            )),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Xlsx => "xlsx",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::Pdf => "pdf",
        }
    }

    /// One file per block (not one for the whole report).
    pub fn per_block(self) -> bool {
        matches!(self, Self::Csv | Self::Parquet)
    }
}

/// One block's output.
#[derive(Debug)]
pub struct RenderedBlock {
    /// Its heading.
    pub heading: String,
    /// Its table.
    pub table: Table,
    /// Rows were cut at [`MAX_BLOCK_ROWS`].
    pub truncated: bool,
    /// How its table is drawn (PDF: an SVG chart; Excel: a native chart).
    pub chart: Option<ChartSpec>,
}

/// A chart's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    /// Values over ordered labels (periods).
    Line,
    /// One value per label, largest first.
    Bar,
}

/// Which columns of a block's table a chart draws.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSpec {
    /// Line or bar.
    pub kind: ChartKind,
    /// The label (category) column.
    pub label: usize,
    /// The value columns (a bar chart draws the first).
    pub values: Vec<usize>,
    /// Low and high columns of a band drawn under the first series.
    pub band: Option<(usize, usize)>,
}

impl ChartSpec {
    /// A chart of `kind` over a table: labels from its first column that
    /// is not a number, values from its first money column (decimal text),
    /// else its first column of whole numbers. `None` when there is
    /// nothing to plot.
    pub fn guess(kind: ChartKind, t: &Table) -> Option<Self> {
        let is = |c: usize, f: &dyn Fn(&Value) -> bool| {
            t.rows.iter().any(|r| !r[c].is_null())
                && t.rows.iter().all(|r| r[c].is_null() || f(&r[c]))
        };
        let money = |v: &Value| v.as_str().is_some_and(super::pdf::is_decimal_text);
        let label = (0..t.columns.len())
            .find(|c| !is(*c, &|v: &Value| v.is_number() || money(v)))
            .unwrap_or(0);
        // The headline money column where there is one (net before gross,
        // before an average), else the first.
        let preferred = ["net", "revenue", "gross", "amount", "total"];
        let value = preferred
            .iter()
            .filter_map(|p| t.columns.iter().position(|c| c == p))
            .find(|c| *c != label && is(*c, &money))
            .or_else(|| {
                (0..t.columns.len())
                    .filter(|c| *c != label)
                    .find(|c| is(*c, &money))
            })
            .or_else(|| {
                (0..t.columns.len())
                    .filter(|c| *c != label && !super::pdf::is_rate(&t.columns[*c]))
                    .find(|c| is(*c, &|v: &Value| v.is_i64() || v.is_u64()))
            })?;
        Some(Self {
            kind,
            label,
            values: vec![value],
            band: None,
        })
    }
}

/// A report's output before it is written to a file.
#[derive(Debug)]
pub struct Rendered {
    /// The report's title.
    pub title: String,
    /// First and last local day of the range.
    pub from: NaiveDate,
    /// Last local day.
    pub to: NaiveDate,
    /// The workspace's time zone and currency.
    pub time_zone: String,
    /// The workspace currency.
    pub currency: String,
    /// Sentences computed from the numbers.
    pub summary: Vec<String>,
    /// The blocks, in order.
    pub blocks: Vec<RenderedBlock>,
}

impl Rendered {
    /// Rows over every block.
    pub fn rows(&self) -> usize {
        self.blocks.iter().map(|b| b.table.rows.len()).sum()
    }
}

/// A block that failed: the report fails with the block named.
fn failed(n: usize, heading: &str, e: ApiError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "report_block_failed",
        format!("block {n} ({heading}): {}", e.message()),
    )
}

/// The UTC instants of the range's start (its first local midnight) and
/// end (the local midnight after its last day), as SQL literals.
fn bounds(state: &AppState, tenant: &str, from: NaiveDate, to: NaiveDate) -> (String, String) {
    let tz = state.engine.calendar(tenant).tz;
    let midnight = |d: NaiveDate| {
        let local = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        let at = chrono::TimeZone::from_local_datetime(&tz, &local)
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|| local.and_utc());
        format!("TIMESTAMP '{}'", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    };
    (midnight(from), midnight(to.succ_opt().unwrap_or(to)))
}

/// Runs `def` for `tenant` as of `now_us`.
pub async fn render(
    state: &AppState,
    tenant: &str,
    def: &Definition,
    now_us: i64,
) -> Result<Rendered, ApiError> {
    let calendar = state.engine.calendar(tenant);
    let (from, to) = def
        .range
        .resolve(&calendar.business(), now_us)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_range",
                "the report's range is outside the calendar",
            )
        })?;
    let base = {
        let mut m = Map::new();
        m.insert("from".into(), json!(from.to_string()));
        m.insert("to".into(), json!(to.to_string()));
        if !def.filters.is_empty() {
            m.insert("filters".into(), Value::Array(def.filters.clone()));
        }
        m
    };
    let mut blocks = Vec::with_capacity(def.blocks.len());
    let mut summary = Vec::new();
    for (i, block) in def.blocks.iter().enumerate() {
        let heading = block.heading();
        let table = run_block(
            state,
            tenant,
            block,
            &base,
            (from, to),
            &calendar.currency,
            &mut summary,
        )
        .await
        .map_err(|e| failed(i + 1, &heading, e))?;
        let mut table = table;
        let truncated = table.rows.len() > MAX_BLOCK_ROWS;
        table.rows.truncate(MAX_BLOCK_ROWS);
        let chart = chart_of(block, &table);
        blocks.push(RenderedBlock {
            heading,
            table,
            truncated,
            chart,
        });
    }
    // Unusual days of the range (the anomaly band of daily revenue), and
    // the range's revenue against what was forecast for it.
    if let Ok(revenue) = daily_series(state, tenant, "revenue").await {
        if let Some(line) = unusual_days(&revenue, from, to, &calendar.currency).await {
            summary.push(line);
        }
        if let Some(line) = forecast_vs_actual(&revenue, from, to, &calendar.currency).await {
            summary.push(line);
        }
    }
    Ok(Rendered {
        title: def.title.clone(),
        from,
        to,
        time_zone: calendar.tz.name().to_owned(),
        currency: calendar.currency.clone(),
        summary,
        blocks,
    })
}

/// The chart a block is drawn as, if any: series as lines, breakdowns,
/// products and funnels as bars, forecasts as lines with their band, a
/// SQL block as it asks.
fn chart_of(block: &Block, t: &Table) -> Option<ChartSpec> {
    let col = |name: &str| t.columns.iter().position(|c| c == name);
    match block {
        Block::Timeseries { .. } => ChartSpec::guess(ChartKind::Line, t),
        Block::Breakdown { .. } | Block::Products { .. } | Block::Funnel { .. } => {
            ChartSpec::guess(ChartKind::Bar, t)
        }
        Block::Forecast { .. } => Some(ChartSpec {
            kind: ChartKind::Line,
            label: col("period")?,
            values: vec![col("actual")?, col("forecast")?],
            band: Some((col("low")?, col("high")?)),
        }),
        Block::Sql { chart, .. } | Block::SavedQuery { chart, .. } => match chart.as_deref() {
            Some("line") => ChartSpec::guess(ChartKind::Line, t),
            Some("bar") => ChartSpec::guess(ChartKind::Bar, t),
            _ => None,
        },
        _ => None,
    }
}

fn request(base: &Map<String, Value>, extra: Value) -> Value {
    let mut m = base.clone();
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    Value::Object(m)
}

/// The table named `name` of an answer (the first one when absent).
fn table_of(answer: &Value, names: &[&str]) -> Table {
    let mut tables = export::tables(answer);
    let at = names
        .iter()
        .find_map(|n| tables.iter().position(|t| t.name == *n))
        .unwrap_or(0);
    if tables.is_empty() {
        return Table {
            name: String::new(),
            columns: Vec::new(),
            rows: Vec::new(),
        };
    }
    tables.swap_remove(at)
}

async fn run_block(
    state: &AppState,
    tenant: &str,
    block: &Block,
    base: &Map<String, Value>,
    (from, to): (NaiveDate, NaiveDate),
    currency: &str,
    summary: &mut Vec<String>,
) -> Result<Table, ApiError> {
    let analytics = |endpoint: &'static str, req: Value| async move {
        beacon_engine::analytics::run(&state.engine, tenant, endpoint, req)
            .await
            .map_err(ApiError::from)
    };
    Ok(match block {
        Block::Kpi { bookings, .. } => {
            let answer = analytics("revenue", request(base, json!({"compare": true}))).await?;
            let mut rows = kpi_rows(&answer);
            summary.extend(changes(&answer, currency));
            if *bookings {
                let b = analytics("bookings", request(base, json!({"compare": true}))).await?;
                rows.extend(kpi_rows(&b));
                summary.extend(changes(&b, currency));
            }
            Table {
                name: "kpi".into(),
                columns: ["metric", "value", "previous", "change"]
                    .map(String::from)
                    .to_vec(),
                rows,
            }
        }
        Block::Timeseries {
            endpoint, interval, ..
        } => {
            let extra = match interval {
                Some(i) => json!({"interval": i}),
                None => json!({}),
            };
            let answer = analytics(static_endpoint(endpoint), request(base, extra)).await?;
            table_of(&answer, &["series"])
        }
        Block::Breakdown {
            endpoint,
            by,
            limit,
            ..
        } => {
            let answer = analytics(
                static_endpoint(endpoint),
                request(base, json!({"breakdown": by, "limit": limit.unwrap_or(50)})),
            )
            .await?;
            table_of(&answer, &["breakdown.rows"])
        }
        Block::Products { limit, .. } => {
            let answer = analytics(
                "products",
                request(base, json!({"limit": limit.unwrap_or(20), "pairs": false})),
            )
            .await?;
            table_of(&answer, &["top_by_revenue"])
        }
        Block::Funnel { steps, options, .. } => {
            let mut extra = options.clone();
            extra.insert("steps".into(), Value::Array(steps.clone()));
            let answer = analytics("funnel", request(base, Value::Object(extra))).await?;
            table_of(&answer, &["steps"])
        }
        Block::Cohorts { period, .. } => {
            let extra = match period {
                Some(p) => json!({"period": p}),
                None => json!({}),
            };
            let answer = analytics("retention", request(base, extra)).await?;
            table_of(&answer, &["cohorts.periods", "cohorts"])
        }
        Block::Heatmap { options, .. } => {
            let answer =
                analytics("heatmap", request(base, Value::Object(options.clone()))).await?;
            table_of(&answer, &["cells"])
        }
        Block::Customers { .. } => {
            let answer = analytics("rfm", request(base, json!({}))).await?;
            table_of(&answer, &["segments", "customers"])
        }
        Block::Sql { sql, .. } => sql_table(state, tenant, sql, (from, to)).await?,
        Block::SavedQuery { query, .. } => {
            let saved = crate::routes::queries::get_saved(state, tenant, query)?;
            sql_table(state, tenant, &saved.sql, (from, to)).await?
        }
        Block::Forecast {
            metric, horizon, ..
        } => forecast_table(state, tenant, metric, horizon.unwrap_or(14), (from, to)).await?,
    })
}

/// A SQL query's result as a table, `{from}` and `{to}` the range's
/// bounds.
async fn sql_table(
    state: &AppState,
    tenant: &str,
    sql: &str,
    (from, to): (NaiveDate, NaiveDate),
) -> Result<Table, ApiError> {
    let (start, end) = bounds(state, tenant, from, to);
    let query = crate::routes::queries::with_range(sql, &start, &end);
    let result = state.engine.sql(tenant, &query).await?;
    export::table_of_batches("sql", &result.schema, &result.batches, usize::MAX)
}

/// The daily model series of `metric` for `tenant` (180 days up to the
/// run).
async fn daily_series(
    state: &AppState,
    tenant: &str,
    metric: &str,
) -> Result<beacon_engine::series::Series, ApiError> {
    let request = beacon_engine::series::SeriesRequest {
        metric: metric.to_owned(),
        interval: "day".into(),
        sql: None,
        history_days: Some(180),
    };
    Ok(beacon_engine::series::series(&state.engine, tenant, &request).await?)
}

/// The models' combined forecast of daily `values`, `horizon` days ahead,
/// with its 80% interval, on the rayon pool.
async fn daily_forecast(
    values: Vec<f64>,
    horizon: usize,
) -> beacon_forecasting::Result<beacon_forecasting::forecast::Forecast> {
    let mut opts = beacon_forecasting::forecast::ForecastOptions::default();
    opts.levels = vec![0.8];
    crate::models::off_thread(move || {
        beacon_forecasting::forecast::forecast(
            &values,
            beacon_forecasting::ts::Frequency::Daily,
            horizon,
            &opts,
        )
    })
    .await
}

/// A forecast block: the range's days with their values, then `horizon`
/// days after the last day of the series forecast with an 80% band
/// (columns period, actual, forecast, low, high; numbers rounded to the
/// cent: model estimates, not booked amounts).
async fn forecast_table(
    state: &AppState,
    tenant: &str,
    metric: &str,
    horizon: u32,
    (from, to): (NaiveDate, NaiveDate),
) -> Result<Table, ApiError> {
    let series = daily_series(state, tenant, metric).await?;
    let fc = daily_forecast(series.values.clone(), horizon as usize)
        .await
        .map_err(crate::models::model_error)?;
    let round = |v: f64| json!((v * 100.0).round() / 100.0);
    let mut rows: Vec<Vec<Value>> = series
        .periods
        .iter()
        .zip(&series.values)
        .filter(|(p, _)| p.date() >= from && p.date() <= to)
        .map(|(p, v)| {
            vec![
                json!(p.date().to_string()),
                round(*v),
                Value::Null,
                Value::Null,
                Value::Null,
            ]
        })
        .collect();
    let last = series.periods.last().map(|p| p.date()).unwrap_or(to);
    let band = fc.intervals.first();
    for (i, point) in fc.point.iter().enumerate() {
        let day = last + chrono::Days::new(i as u64 + 1);
        rows.push(vec![
            json!(day.to_string()),
            Value::Null,
            round(*point),
            band.map_or(Value::Null, |b| round(b.lower[i])),
            band.map_or(Value::Null, |b| round(b.upper[i])),
        ]);
    }
    Ok(Table {
        name: "forecast".into(),
        columns: ["period", "actual", "forecast", "low", "high"]
            .map(String::from)
            .to_vec(),
        rows,
    })
}

/// The analytics endpoint names a block may use, as `'static` (checked at
/// save time; an unknown one fails the run in the engine).
fn static_endpoint(name: &str) -> &'static str {
    match name {
        "bookings" => "bookings",
        "customers" => "customers",
        _ => "revenue",
    }
}

/// Metric rows of an answer's `summary` with `previous.summary` and
/// `change`.
fn kpi_rows(answer: &Value) -> Vec<Vec<Value>> {
    let Some(summary) = answer.get("summary").and_then(Value::as_object) else {
        return Vec::new();
    };
    let previous = answer.pointer("/previous/summary");
    let change = answer.get("change");
    summary
        .iter()
        .filter(|(_, v)| !v.is_object() && !v.is_array())
        .map(|(k, v)| {
            vec![
                json!(k),
                v.clone(),
                previous
                    .and_then(|p| p.get(k))
                    .cloned()
                    .unwrap_or(Value::Null),
                change
                    .and_then(|c| c.get(k))
                    .cloned()
                    .unwrap_or(Value::Null),
            ]
        })
        .collect()
}

/// The three biggest relative changes of an answer, as sentences.
fn changes(answer: &Value, currency: &str) -> Vec<String> {
    let (Some(summary), Some(change)) = (
        answer.get("summary").and_then(Value::as_object),
        answer.get("change").and_then(Value::as_object),
    ) else {
        return Vec::new();
    };
    let previous = answer.pointer("/previous/summary");
    let mut moved: Vec<(&String, f64)> = change
        .iter()
        .filter_map(|(k, v)| Some((k, number(v)?)))
        .filter(|(_, c)| c.is_finite() && *c != 0.0)
        .collect();
    moved.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(b.0)));
    moved
        .into_iter()
        .take(3)
        .map(|(k, c)| {
            let now = summary
                .get(k)
                .map(|v| shown(k, v, currency))
                .unwrap_or_default();
            let before = previous
                .and_then(|p| p.get(k))
                .map(|v| shown(k, v, currency))
                .unwrap_or_default();
            format!(
                "{} {} {:.1}% ({now}, previous period {before}).",
                capital(&k.replace('_', " ")),
                if c > 0.0 { "up" } else { "down" },
                c.abs() * 100.0
            )
        })
        .collect()
}

/// A JSON number or decimal text as a number (for comparing changes only:
/// amounts are shown from their text).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A value as shown in a sentence: money (decimal text) to cents with the
/// currency, counts as they are. Text is rounded as text, never through
/// floating point.
fn shown(key: &str, v: &Value, currency: &str) -> String {
    match v {
        Value::String(s) if is_money(key) => super::pdf::money(s, currency),
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        other => other.to_string(),
    }
}

fn is_money(key: &str) -> bool {
    matches!(key, "gross" | "refunds" | "net" | "aov" | "revenue")
}

/// The minor unit digits of a currency (ISO 4217 exponent): 0 for the yen,
/// the won and others without a minor unit in use, 3 for the Gulf and
/// North African dinars and rials, 2 for every other.
pub fn minor_units(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Decimal text rounded half away from zero to `places` (0 to 6), as text
/// (never through floating point); text that is not a decimal as it is.
pub fn to_places(s: &str, places: u32) -> String {
    let places = places.min(6) as usize;
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return s.to_owned();
    }
    let kept = &frac[..frac.len().min(places)];
    let mut units: u128 = match format!("{int}{kept:0<places$}").parse() {
        Ok(c) => c,
        Err(_) => return s.to_owned(),
    };
    if frac.as_bytes().get(places).is_some_and(|d| *d >= b'5') {
        units += 1;
    }
    let scale = 10u128.pow(places as u32);
    let sign = if neg && units > 0 { "-" } else { "" };
    if places == 0 {
        format!("{sign}{units}")
    } else {
        format!("{sign}{}.{:0places$}", units / scale, units % scale)
    }
}

fn capital(s: &str) -> String {
    super::capitalized(s)
}

/// A sentence on the days of the range whose revenue was outside the
/// anomaly band (the models' seasonal band at medium sensitivity), if any.
async fn unusual_days(
    series: &beacon_engine::series::Series,
    from: NaiveDate,
    to: NaiveDate,
    currency: &str,
) -> Option<String> {
    if series.values.len() < 28 {
        return None;
    }
    let values = series.values.clone();
    let freq = crate::models::frequency(series.interval);
    let sensitivity = crate::models::sensitivity(None).ok()?;
    let opts = crate::models::options(None, None).ok()?;
    let bands = crate::models::off_thread(move || {
        beacon_forecasting::forecast::anomaly_bands(&values, freq, sensitivity, &opts)
    })
    .await
    .ok()?;
    let days: Vec<String> = series
        .periods
        .iter()
        .enumerate()
        .filter(|(t, p)| {
            let d = p.date();
            d >= from && d <= to && bands.anomalous[*t]
        })
        .map(|(t, p)| {
            let side = if series.values[t] > bands.expected[t] {
                "above"
            } else {
                "below"
            };
            format!(
                "{} ({side} the expected, about {})",
                p.date(),
                super::pdf::estimate(bands.expected[t], currency)
            )
        })
        .collect();
    (!days.is_empty()).then(|| format!("Unusual revenue on {}.", days.join("; ")))
}

/// A sentence comparing the range's revenue with the forecast made from
/// the days before it (the models' combined forecast with its 80%
/// interval), when there are at least 28 days before it and the range is
/// at most 92 days. Says whether the actual was inside the interval.
async fn forecast_vs_actual(
    series: &beacon_engine::series::Series,
    from: NaiveDate,
    to: NaiveDate,
    currency: &str,
) -> Option<String> {
    let start = series.periods.iter().position(|p| p.date() >= from)?;
    let days: Vec<usize> = (start..series.periods.len())
        .take_while(|t| series.periods[*t].date() <= to)
        .collect();
    if start < 28 || days.is_empty() || days.len() > MAX_FORECAST_DAYS as usize {
        return None;
    }
    let fc = daily_forecast(series.values[..start].to_vec(), days.len())
        .await
        .ok()?;
    let expected: f64 = fc.point.iter().sum();
    let actual: f64 = days.iter().map(|t| series.values[*t]).sum();
    // The interval of a sum of days, from the per-day intervals' widths
    // taken as independent (a summary line, not a model output of its own).
    let band = fc.intervals.first()?;
    let half: f64 = band
        .lower
        .iter()
        .zip(&band.upper)
        .map(|(l, u)| ((u - l) / 2.0).powi(2))
        .sum::<f64>()
        .sqrt();
    if expected.abs() < 0.005 {
        return None;
    }
    let change = (actual - expected) / expected.abs() * 100.0;
    let inside = (actual - expected).abs() <= half;
    Some(format!(
        "Revenue was {:.1}% {} the forecast made from the days before the period (about {}, 80% interval {} to {}){}.",
        change.abs(),
        if change >= 0.0 { "above" } else { "below" },
        super::pdf::estimate(expected, currency),
        super::pdf::estimate((expected - half).max(0.0), currency),
        super::pdf::estimate(expected + half, currency),
        if inside {
            ", within the interval"
        } else {
            ", outside the interval"
        }
    ))
}

/// The file of a rendered report, PDF included (typeset off the async
/// runtime).
pub async fn write_file(
    state: &AppState,
    tenant: &str,
    rendered: &Rendered,
    format: Format,
    block: usize,
) -> Result<Vec<u8>, ApiError> {
    match format {
        Format::Pdf => super::pdf::write(state, tenant, rendered).await,
        _ => write(rendered, format, block),
    }
}

/// The file of a rendered report: the workbook, or the CSV or Parquet
/// file of block `n` (0-based).
pub fn write(rendered: &Rendered, format: Format, block: usize) -> Result<Vec<u8>, ApiError> {
    match format {
        Format::Pdf => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a PDF is written by write_file",
        )),
        Format::Csv | Format::Parquet => {
            let b = rendered.blocks.get(block).ok_or_else(|| {
                ApiError::bad_request(
                    "unknown_block",
                    format!(
                        "the report has {} blocks (0 to {})",
                        rendered.blocks.len(),
                        rendered.blocks.len().saturating_sub(1)
                    ),
                )
            })?;
            if format == Format::Csv {
                export::csv_of(&b.table)
            } else {
                export::parquet_of(&b.table)
            }
        }
        Format::Xlsx => {
            let summary = Table {
                name: "summary".into(),
                columns: vec!["summary".into()],
                rows: std::iter::once(json!(format!(
                    "{}: {} to {} ({})",
                    rendered.title, rendered.from, rendered.to, rendered.time_zone
                )))
                .chain(rendered.summary.iter().map(|s| json!(s)))
                .map(|v| vec![v])
                .collect(),
            };
            let mut sheets: Vec<(String, &Table, Option<crate::xlsx::XlsxChart>)> =
                vec![("Summary".into(), &summary, None)];
            for (i, b) in rendered.blocks.iter().enumerate() {
                let chart = b.chart.as_ref().map(|c| crate::xlsx::XlsxChart {
                    line: c.kind == ChartKind::Line,
                    label: c.label,
                    values: c.values.clone(),
                    max_rows: if c.kind == ChartKind::Line { 1_000 } else { 15 },
                    title: b.heading.clone(),
                });
                sheets.push((format!("{} {}", i + 1, b.heading), &b.table, chart));
            }
            let mut about = vec![
                ("report", rendered.title.clone()),
                ("range", format!("{} to {}", rendered.from, rendered.to)),
                ("time zone", rendered.time_zone.clone()),
                ("currency", rendered.currency.clone()),
            ];
            for (i, b) in rendered.blocks.iter().enumerate() {
                if b.truncated {
                    about.push((
                        "row limit",
                        format!(
                            "block {} ({}) cut at {MAX_BLOCK_ROWS} rows",
                            i + 1,
                            b.heading
                        ),
                    ));
                }
            }
            export::workbook(&sheets, &about, &rendered.currency)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_cents(s: &str) -> String {
        to_places(s, 2)
    }

    #[test]
    fn money_is_rounded_as_text() {
        assert_eq!(to_cents("1234.5650"), "1234.57");
        assert_eq!(to_cents("1234.5649"), "1234.56");
        assert_eq!(to_cents("-0.0040"), "0.00");
        assert_eq!(to_cents("-2.0050"), "-2.01");
        assert_eq!(to_cents("7"), "7.00");
        assert_eq!(to_cents("99999999999999.9950"), "100000000000000.00");
        // Currencies with 0 and 3 minor digits.
        assert_eq!(to_places("1234.5000", minor_units("JPY")), "1235");
        assert_eq!(to_places("-0.4999", minor_units("JPY")), "0");
        assert_eq!(to_places("12.3455", minor_units("KWD")), "12.346");
        assert_eq!(to_places("12.3454", minor_units("KWD")), "12.345");
        assert_eq!(to_places("not money", 2), "not money");
    }

    #[test]
    fn the_biggest_changes_are_said_first() {
        let answer = json!({
            "summary": {"gross": "1200.0000", "orders": 30, "aov": "40.00"},
            "previous": {"summary": {"gross": "1000.0000", "orders": 40, "aov": "25.00"}},
            "change": {"gross": 0.2, "orders": -0.25, "aov": 0.6}
        });
        assert_eq!(
            changes(&answer, "GBP"),
            [
                "Aov up 60.0% (£40.00, previous period £25.00).",
                "Orders down 25.0% (30, previous period 40).",
                "Gross up 20.0% (£1,200.00, previous period £1,000.00).",
            ]
        );
    }
}
