//! Running a report: each block's analytics request (or SQL query) over
//! the report's range and filters, its table, the written summary, and the
//! file (Excel: a sheet per block after a Summary sheet; CSV and Parquet:
//! one file per block).

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::{Block, Definition};
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
}

impl Format {
    /// From a name (`xlsx`, `csv`).
    pub fn parse(name: &str) -> Result<Self, ApiError> {
        match name {
            "xlsx" => Ok(Self::Xlsx),
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            other => Err(ApiError::bad_request(
                "invalid_format",
                format!("a report is written as xlsx, csv or parquet, not {other:?}"),
            )),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Xlsx => "xlsx",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }

    /// One file per block (not one for the whole report).
    pub fn per_block(self) -> bool {
        self != Self::Xlsx
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
        blocks.push(RenderedBlock {
            heading,
            table,
            truncated,
        });
    }
    // Unusual days of the range (the anomaly band of daily revenue).
    if let Some(line) = unusual_days(state, tenant, from, to, &calendar.currency).await {
        summary.push(line);
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
        Block::Sql { sql, .. } => {
            let (start, end) = bounds(state, tenant, from, to);
            let query = sql.replace("{from}", &start).replace("{to}", &end);
            let result = state.engine.sql(tenant, &query).await?;
            let rows = beacon_engine::json::to_objects(&result.schema, &result.batches)
                .map_err(ApiError::from)?;
            let columns: Vec<String> = result
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            Table {
                name: "sql".into(),
                rows: rows
                    .iter()
                    .map(|r| {
                        columns
                            .iter()
                            .map(|c| r.get(c).cloned().unwrap_or(Value::Null))
                            .collect()
                    })
                    .collect(),
                columns,
            }
        }
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
        Value::String(s) if is_money(key) => format!("{currency} {}", to_cents(s)),
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        other => other.to_string(),
    }
}

fn is_money(key: &str) -> bool {
    matches!(key, "gross" | "refunds" | "net" | "aov" | "revenue")
}

/// Decimal text rounded half away from zero to two places, as text.
pub fn to_cents(s: &str) -> String {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut cents: u128 = match format!("{int}{:0<2}", &frac[..frac.len().min(2)]).parse() {
        Ok(c) => c,
        Err(_) => return s.to_owned(),
    };
    if frac.as_bytes().get(2).is_some_and(|d| *d >= b'5') {
        cents += 1;
    }
    format!(
        "{}{}.{:02}",
        if neg && cents > 0 { "-" } else { "" },
        cents / 100,
        cents % 100
    )
}

fn capital(s: &str) -> String {
    super::capitalized(s)
}

/// A sentence on the days of the range whose revenue was outside the
/// anomaly band (the models' seasonal band at medium sensitivity), if any.
async fn unusual_days(
    state: &AppState,
    tenant: &str,
    from: NaiveDate,
    to: NaiveDate,
    currency: &str,
) -> Option<String> {
    let request = beacon_engine::series::SeriesRequest {
        metric: "revenue".into(),
        interval: "day".into(),
        sql: None,
        history_days: Some(180),
    };
    let series = beacon_engine::series::series(&state.engine, tenant, &request)
        .await
        .ok()?;
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
                "{} ({currency} {:.2}, {side} the expected)",
                p.date(),
                series.values[t]
            )
        })
        .collect();
    (!days.is_empty()).then(|| format!("Unusual revenue on {}.", days.join("; ")))
}

/// The file of a rendered report: the workbook, or the CSV or Parquet
/// file of block `n` (0-based).
pub fn write(rendered: &Rendered, format: Format, block: usize) -> Result<Vec<u8>, ApiError> {
    match format {
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
            let mut sheets: Vec<(String, &Table)> = vec![("Summary".into(), &summary)];
            for (i, b) in rendered.blocks.iter().enumerate() {
                sheets.push((format!("{} {}", i + 1, b.heading), &b.table));
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
            export::workbook(&sheets, &about)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_rounded_as_text() {
        assert_eq!(to_cents("1234.5650"), "1234.57");
        assert_eq!(to_cents("1234.5649"), "1234.56");
        assert_eq!(to_cents("-0.0040"), "0.00");
        assert_eq!(to_cents("-2.0050"), "-2.01");
        assert_eq!(to_cents("7"), "7.00");
        assert_eq!(to_cents("99999999999999.9950"), "100000000000000.00");
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
                "Aov up 60.0% (GBP 40.00, previous period GBP 25.00).",
                "Orders down 25.0% (30, previous period 40).",
                "Gross up 20.0% (GBP 1200.00, previous period GBP 1000.00).",
            ]
        );
    }
}
