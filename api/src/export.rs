//! Analytics answers as files: `?format=csv|xlsx|parquet` (or the `Accept` type) on
//! `/v1/analytics/{endpoint}`, the same numbers as the JSON answer.
//!
//! An answer is cut into tables by its shape, whatever the endpoint:
//! - an array of objects is a table (`series`, `breakdown.rows`, `steps`,
//!   `cohorts`, ...), its columns the keys in first-seen order; an array of
//!   objects inside its rows (a cohort's `periods`) is a table of its own
//!   (`cohorts.periods`) whose rows repeat the parent row's plain fields;
//! - an object of plain values (`summary`, `change`, `range`) is a table of
//!   `field, value` rows.
//!
//! CSV (RFC 4180, UTF-8, a header row) and Parquet hold one table:
//! `table=<name>`, by default `series` when the answer has one, else the
//! first table; Parquet types its columns (decimal text as decimals, days
//! as dates: [`parquet_type`]). XLSX
//! holds every table, a sheet each, and an About sheet with the endpoint
//! and the request. In a workbook, text that is a decimal (money, which
//! the API answers as decimal text) becomes a number shown to its places,
//! `YYYY-MM-DD` a date, an RFC 3339 time a UTC date and time.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// What an analytics request answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// The JSON answer.
    Json,
    /// One table as CSV.
    Csv,
    /// Every table, a sheet each.
    Xlsx,
    /// One table, typed (money as decimals, days as dates).
    Parquet,
    /// Every table (a chart for a series or a breakdown), typeset as a
    /// report with the workspace's branding.
    Pdf,
}

pub const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The Parquet media type.
pub const PARQUET_TYPE: &str = "application/vnd.apache.parquet";

impl Export {
    /// From `format` (taken out of the request), else the `Accept` header.
    pub fn choose(format: Option<&str>, headers: &HeaderMap) -> Result<Self, ApiError> {
        if let Some(f) = format {
            return match f.trim().to_ascii_lowercase().as_str() {
                "json" => Ok(Self::Json),
                "csv" => Ok(Self::Csv),
                "xlsx" => Ok(Self::Xlsx),
                "parquet" => Ok(Self::Parquet),
                "pdf" => Ok(Self::Pdf),
                other => Err(ApiError::bad_request(
                    "invalid_format",
                    format!("format {other:?} is not one of json, csv, xlsx, parquet, pdf"),
                )),
            };
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for part in accept.split(',') {
            match part.split(';').next().unwrap_or("").trim() {
                "text/csv" => return Ok(Self::Csv),
                XLSX_TYPE => return Ok(Self::Xlsx),
                PARQUET_TYPE => return Ok(Self::Parquet),
                "application/pdf" => return Ok(Self::Pdf),
                _ => {}
            }
        }
        Ok(Self::Json)
    }
}

/// One table of an answer.
#[derive(Debug)]
pub struct Table {
    /// Its path in the answer (`series`, `breakdown.rows`, `summary`).
    pub name: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of cells (JSON values; objects and arrays as their JSON text).
    pub rows: Vec<Vec<Value>>,
}

/// The tables of an answer, in document order.
pub fn tables(answer: &Value) -> Vec<Table> {
    let mut out = Vec::new();
    if let Value::Object(map) = answer {
        for (k, v) in map {
            walk(k, v, &mut out);
        }
    }
    out
}

fn plain(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn objects(v: &Value) -> Option<Vec<&Map<String, Value>>> {
    match v {
        Value::Array(items) if !items.is_empty() => items.iter().map(Value::as_object).collect(),
        _ => None,
    }
}

fn walk(path: &str, v: &Value, out: &mut Vec<Table>) {
    match v {
        Value::Object(map) if !map.is_empty() && map.values().all(plain) => out.push(Table {
            name: path.to_owned(),
            columns: vec!["field".into(), "value".into()],
            rows: map
                .iter()
                .map(|(k, v)| vec![Value::String(k.clone()), v.clone()])
                .collect(),
        }),
        Value::Object(map) => {
            for (k, child) in map {
                walk(&format!("{path}.{k}"), child, out);
            }
        }
        Value::Array(_) => {
            if let Some(rows) = objects(v) {
                walk_rows(path, &rows, out);
            }
        }
        _ => {}
    }
}

/// Columns that say what a row is about, first in a table, in this order;
/// the others follow in the answer's (key) order, a parent's fields before
/// its nested rows' own.
const KEY_COLUMNS: &[&str] = &[
    "bucket",
    "cohort",
    "period",
    "day",
    "weekday",
    "hour",
    "step",
    "event",
    "value",
    "name",
    "product_id",
    "user_id",
    "id",
];

/// A parent row's plain fields, which its nested rows repeat.
type Parent = Vec<(String, Value)>;

fn walk_rows(path: &str, rows: &[&Map<String, Value>], out: &mut Vec<Table>) {
    let rows: Vec<(Parent, &Map<String, Value>)> = rows.iter().map(|r| (Vec::new(), *r)).collect();
    rows_table(path, &rows, out);
}

/// A table of `rows` (each after its parent's plain fields; a field of the
/// row wins over a parent's of the same name), then a table for each array
/// of objects inside them.
fn rows_table(path: &str, rows: &[(Parent, &Map<String, Value>)], out: &mut Vec<Table>) {
    let mut columns: Vec<String> = Vec::new();
    let mut nested: Vec<String> = Vec::new();
    for (parent, row) in rows {
        for (k, _) in parent {
            if !columns.contains(k) && !row.contains_key(k) {
                columns.push(k.clone());
            }
        }
        for (k, v) in row.iter() {
            if objects(v).is_some() {
                if !nested.contains(k) {
                    nested.push(k.clone());
                }
            } else if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    // What a row is about first (the answer's maps are ordered by key).
    columns.sort_by_key(|c| {
        KEY_COLUMNS
            .iter()
            .position(|k| k == c)
            .unwrap_or(KEY_COLUMNS.len())
    });
    let cells = rows
        .iter()
        .map(|(parent, row)| {
            columns
                .iter()
                .map(|c| match row.get(c) {
                    Some(v) => cell(v),
                    None => parent
                        .iter()
                        .find(|(k, _)| k == c)
                        .map_or(Value::Null, |(_, v)| v.clone()),
                })
                .collect()
        })
        .collect();
    out.push(Table {
        name: path.to_owned(),
        columns,
        rows: cells,
    });
    for k in nested {
        let mut children: Vec<(Parent, &Map<String, Value>)> = Vec::new();
        for (parent, row) in rows {
            let Some(items) = row.get(&k).and_then(objects) else {
                continue;
            };
            let mut own: Parent = parent
                .iter()
                .filter(|(p, _)| !row.contains_key(p))
                .cloned()
                .collect();
            own.extend(
                row.iter()
                    .filter(|(_, v)| plain(v))
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            children.extend(items.into_iter().map(|i| (own.clone(), i)));
        }
        rows_table(&format!("{path}.{k}"), &children, out);
    }
}

/// A cell: plain values as they are, anything else as its JSON text.
fn cell(v: &Value) -> Value {
    if plain(v) {
        v.clone()
    } else {
        Value::String(v.to_string())
    }
}

/// The answer as `export` (JSON as it is).
pub fn respond(
    export: Export,
    endpoint: &str,
    request: &Value,
    table: Option<&str>,
    answer: Value,
) -> Result<Response, ApiError> {
    if export == Export::Json {
        // The JSON answer as it is: no tables to cut (every dashboard call).
        return Ok(axum::Json(answer).into_response());
    }
    let tables = tables(&answer);
    let names = || {
        tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(t) = table
        && !tables.iter().any(|x| x.name == t)
    {
        return Err(ApiError::bad_request(
            "unknown_table",
            format!(
                "the {endpoint} answer has no table {t:?}; tables: {}",
                names()
            ),
        ));
    }
    let (body, content_type, ext) = match export {
        Export::Json => return Ok(axum::Json(answer).into_response()),
        Export::Pdf => {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "a PDF is written by export::pdf",
            ));
        }
        Export::Csv | Export::Parquet => {
            let chosen = match table {
                Some(t) => tables.iter().find(|x| x.name == t),
                None => tables
                    .iter()
                    .find(|x| x.name == "series")
                    .or_else(|| tables.first()),
            };
            let Some(chosen) = chosen else {
                return Err(ApiError::bad_request(
                    "empty_answer",
                    format!("the {endpoint} answer has no table to write as one file"),
                ));
            };
            if export == Export::Parquet {
                (parquet_of(chosen)?, PARQUET_TYPE, "parquet")
            } else {
                (csv(chosen)?, "text/csv; charset=utf-8", "csv")
            }
        }
        Export::Xlsx => (xlsx(endpoint, request, &tables)?, XLSX_TYPE, "xlsx"),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"beacon-{endpoint}.{ext}\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn csv(t: &Table) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ApiError::internal(&e);
    w.write_record(&t.columns).map_err(fail)?;
    for row in &t.rows {
        w.write_record(row.iter().map(text)).map_err(fail)?;
    }
    w.into_inner().map_err(|e| ApiError::internal(e.error()))
}

/// A column's Arrow type for the workbook: numbers, booleans, or text (the
/// workbook then types decimal, date and time text itself).
fn column_type(t: &Table, c: usize) -> DataType {
    let mut seen = t.rows.iter().map(|r| &r[c]).filter(|v| !v.is_null());
    let Some(first) = seen.next() else {
        return DataType::Utf8;
    };
    let all = |f: fn(&Value) -> bool| {
        f(first) && t.rows.iter().map(|r| &r[c]).all(|v| v.is_null() || f(v))
    };
    if all(Value::is_number) {
        DataType::Float64
    } else if all(Value::is_boolean) {
        DataType::Boolean
    } else {
        DataType::Utf8
    }
}

fn batch(t: &Table) -> Result<RecordBatch, ApiError> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (c, name) in t.columns.iter().enumerate() {
        let dt = column_type(t, c);
        let values = t.rows.iter().map(|r| &r[c]);
        let array: ArrayRef = match dt {
            DataType::Float64 => Arc::new(values.map(Value::as_f64).collect::<Float64Array>()),
            DataType::Boolean => Arc::new(values.map(Value::as_bool).collect::<BooleanArray>()),
            _ => Arc::new(
                values
                    .map(|v| (!v.is_null()).then(|| text(v)))
                    .collect::<StringArray>(),
            ),
        };
        fields.push(Field::new(name, dt, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| ApiError::internal(&e))
}

/// A workbook of `sheets` (name, table, native chart), one sheet each,
/// money in `currency`, with `about` (key, value) on its About sheet:
/// reports' Excel files.
pub fn workbook(
    sheets: &[(String, &Table, Option<crate::xlsx::XlsxChart>)],
    about: &[(&str, String)],
    currency: &str,
) -> Result<Vec<u8>, ApiError> {
    let fail = |e: rust_xlsxwriter::XlsxError| ApiError::internal(&e);
    let mut book = crate::xlsx::XlsxBook::new()
        .typing_text()
        .money_in(currency);
    for (name, t, chart) in sheets {
        let b = batch(t)?;
        let mut sheet = book.sheet(name, b.schema()).map_err(fail)?;
        book.write(&mut sheet, &b).map_err(fail)?;
        if let Some(chart) = chart {
            book.chart(&sheet, chart).map_err(fail)?;
        }
        book.close(sheet).map_err(fail)?;
    }
    for (k, v) in about {
        book.about(k, v.clone());
    }
    book.finish().map_err(fail)
}

/// Query results as a table of JSON cells (the first `limit` rows).
pub fn table_of_batches(
    name: &str,
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
    limit: usize,
) -> Result<Table, ApiError> {
    let objects = beacon_engine::json::to_objects(schema, batches).map_err(ApiError::from)?;
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let rows = objects
        .iter()
        .take(limit)
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(c).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    Ok(Table {
        name: name.to_owned(),
        columns,
        rows,
    })
}

/// An analytics answer as a PDF: each of its tables (or the one named
/// `table`) as a block, a series drawn as a line and a breakdown as bars,
/// under the endpoint's name and the answer's range, with the workspace's
/// branding (as a report is).
pub async fn pdf(
    state: &crate::state::AppState,
    tenant: &str,
    endpoint: &str,
    table: Option<&str>,
    answer: &Value,
) -> Result<Response, ApiError> {
    use crate::reports::render::{ChartKind, ChartSpec, RenderedBlock};
    let blocks: Vec<RenderedBlock> = tables(answer)
        .into_iter()
        .filter(|t| table.is_none_or(|name| t.name == name))
        .map(|t| {
            let chart = match t.name.as_str() {
                "series" => ChartSpec::guess(ChartKind::Line, &t),
                "breakdown.rows" | "steps" | "top_by_revenue" => {
                    ChartSpec::guess(ChartKind::Bar, &t)
                }
                _ => None,
            };
            RenderedBlock {
                heading: crate::reports::capitalized(&t.name.replace(['.', '_'], " ")),
                table: t,
                truncated: false,
                chart,
            }
        })
        .collect();
    if blocks.is_empty() {
        return Err(ApiError::bad_request(
            "unknown_table",
            format!("the {endpoint} answer has no table {table:?}"),
        ));
    }
    let calendar = state.engine.calendar(tenant);
    let range = |k: &str| {
        answer
            .pointer(&format!("/range/{k}"))
            .and_then(Value::as_str)
    };
    let subtitle = match (range("from"), range("to")) {
        (Some(f), Some(t)) => format!("{f} to {t} ({})", calendar.tz.name()),
        _ => format!("Analytics: {endpoint}"),
    };
    let doc = crate::reports::pdf::Document {
        title: crate::reports::capitalized(endpoint),
        subtitle,
        currency: calendar.currency.clone(),
        summary: Vec::new(),
    };
    let body = crate::reports::pdf::document(state, tenant, &doc, &blocks).await?;
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"beacon-{endpoint}.pdf\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// One table as CSV (RFC 4180, UTF-8, a header row).
pub fn csv_of(t: &Table) -> Result<Vec<u8>, ApiError> {
    csv(t)
}

/// A column's type in a Parquet file: whole numbers as `Int64`, other
/// numbers as `Float64` (ratios: the API answers them as JSON numbers),
/// booleans, decimal text (money) as `Decimal128(38, s)` at its largest
/// scale, `YYYY-MM-DD` as `Date32`, RFC 3339 times as UTC timestamps,
/// anything else as text. Money never passes through floating point.
fn parquet_type(t: &Table, c: usize) -> DataType {
    let values: Vec<&Value> = t
        .rows
        .iter()
        .map(|r| &r[c])
        .filter(|v| !v.is_null())
        .collect();
    let texts: Option<Vec<&str>> = values.iter().map(|v| v.as_str()).collect();
    if values.is_empty() {
        DataType::Utf8
    } else if values.iter().all(|v| v.is_i64()) {
        DataType::Int64
    } else if values.iter().all(|v| v.is_number()) {
        DataType::Float64
    } else if values.iter().all(|v| v.is_boolean()) {
        DataType::Boolean
    } else if let Some(texts) = texts {
        if let Some(scales) = texts
            .iter()
            .map(|s| decimal_scale(s))
            .collect::<Option<Vec<u8>>>()
        {
            DataType::Decimal128(38, scales.into_iter().max().unwrap_or(0) as i8)
        } else if texts
            .iter()
            .all(|s| s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
        {
            DataType::Date32
        } else if texts
            .iter()
            .all(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
        {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()))
        } else {
            DataType::Utf8
        }
    } else {
        DataType::Utf8
    }
}

/// The scale of decimal text (`-12.3400` is 4), if it is decimal text
/// that fits a `Decimal128(38, _)`.
fn decimal_scale(s: &str) -> Option<u8> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.')?;
    let ok = !int.is_empty()
        && !frac.is_empty()
        && int.len() + frac.len() <= 38
        && frac.len() <= 18
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    ok.then_some(frac.len() as u8)
}

/// Decimal text as an `i128` at `scale` (its scale is at most `scale`).
fn decimal_value(s: &str, scale: u8) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let padded = format!("{int}{frac:0<width$}", width = scale as usize);
    let v: i128 = padded.parse().ok()?;
    Some(if neg { -v } else { v })
}

fn typed_batch(t: &Table) -> Result<RecordBatch, ApiError> {
    use arrow::array::{Date32Array, Decimal128Array, Int64Array, TimestampMicrosecondArray};
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date");
    for (c, name) in t.columns.iter().enumerate() {
        let dt = parquet_type(t, c);
        let values = t.rows.iter().map(|r| &r[c]);
        let array: ArrayRef = match &dt {
            DataType::Int64 => Arc::new(values.map(Value::as_i64).collect::<Int64Array>()),
            DataType::Float64 => Arc::new(values.map(Value::as_f64).collect::<Float64Array>()),
            DataType::Boolean => Arc::new(values.map(Value::as_bool).collect::<BooleanArray>()),
            DataType::Decimal128(p, s) => Arc::new(
                values
                    .map(|v| v.as_str().and_then(|x| decimal_value(x, *s as u8)))
                    .collect::<Decimal128Array>()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| ApiError::internal(&e))?,
            ),
            DataType::Date32 => Arc::new(
                values
                    .map(|v| {
                        let d = chrono::NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d").ok()?;
                        i32::try_from((d - epoch).num_days()).ok()
                    })
                    .collect::<Date32Array>(),
            ),
            DataType::Timestamp(_, _) => Arc::new(
                values
                    .map(|v| {
                        Some(
                            chrono::DateTime::parse_from_rfc3339(v.as_str()?)
                                .ok()?
                                .timestamp_micros(),
                        )
                    })
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ),
            _ => Arc::new(
                values
                    .map(|v| (!v.is_null()).then(|| text(v)))
                    .collect::<StringArray>(),
            ),
        };
        fields.push(Field::new(name, dt, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| ApiError::internal(&e))
}

/// One table as a Parquet file, typed ([`parquet_type`]).
pub fn parquet_of(t: &Table) -> Result<Vec<u8>, ApiError> {
    let batch = typed_batch(t)?;
    let fail = |e: parquet::errors::ParquetError| ApiError::internal(&e);
    let mut w =
        parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).map_err(fail)?;
    w.write(&batch).map_err(fail)?;
    w.into_inner().map_err(fail)
}

fn xlsx(endpoint: &str, request: &Value, tables: &[Table]) -> Result<Vec<u8>, ApiError> {
    let fail = |e: rust_xlsxwriter::XlsxError| ApiError::internal(&e);
    let mut book = crate::xlsx::XlsxBook::new().typing_text();
    for t in tables {
        let b = batch(t)?;
        let mut sheet = book.sheet(&t.name, b.schema()).map_err(fail)?;
        book.write(&mut sheet, &b).map_err(fail)?;
        book.close(sheet).map_err(fail)?;
    }
    book.about("endpoint", format!("/v1/analytics/{endpoint}"));
    book.about("request", request.to_string());
    book.about("generated at", chrono::Utc::now().to_rfc3339());
    book.finish().map_err(fail)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_answer_is_cut_into_tables_by_its_shape() {
        let answer = json!({
            "range": {"from": "2026-11-01", "to": "2026-11-30"},
            "summary": {"gross": "10.00", "orders": 2},
            "series": [{"bucket": "2026-11-01", "gross": "4.00"}, {"bucket": "2026-11-02", "gross": "6.00", "orders": 1}],
            "breakdown": {"property": "channel", "rows": [{"value": "web", "gross": "10.00"}]},
            "cohorts": [{"cohort": "2026-11-02", "size": 3, "periods": [{"period": 0, "people": 3}, {"period": 1, "people": 1}]}],
            "notes": []
        });
        let t = tables(&answer);
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        // serde_json's maps are ordered by key: so is "document order".
        assert_eq!(
            names,
            [
                "breakdown.rows",
                "cohorts",
                "cohorts.periods",
                "range",
                "series",
                "summary"
            ]
        );
        assert_eq!(t[4].columns, ["bucket", "gross", "orders"]);
        assert_eq!(
            t[4].rows[0],
            vec![json!("2026-11-01"), json!("4.00"), Value::Null]
        );
        assert_eq!(t[1].columns, ["cohort", "size"]);
        assert_eq!(t[2].columns, ["cohort", "period", "size", "people"]);
        assert_eq!(
            t[2].rows[1],
            vec![json!("2026-11-02"), json!(1), json!(3), json!(1)]
        );
        assert_eq!(t[3].rows[0], vec![json!("from"), json!("2026-11-01")]);
        let text = String::from_utf8(csv(&t[4]).expect("csv")).expect("utf-8");
        assert_eq!(
            text,
            "bucket,gross,orders\n2026-11-01,4.00,\n2026-11-02,6.00,1\n"
        );
    }
}
