//! `POST /v1/sql`: one read-only query over the caller's workspace (read or
//! admin key), with positional parameters, answered as JSON (default),
//! NDJSON, CSV, Arrow IPC stream or Parquet, chosen by `format` or the
//! `Accept` header. Results are streamed batch by batch, up to
//! `engine.max_result_rows`; a client that disconnects cancels its query.
//! `GET /v1/queries` lists the workspace's running queries and
//! `DELETE /v1/queries/{id}` cancels one (admin key).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::access::Caller;
use crate::access::audit::{QueryRecord, RequestMeta};
use crate::extract::{AppJson, Path};
use crate::queries::QueryGuard;
use crate::state::AppState;

/// Body limit of `POST /v1/sql` (1 MiB).
const SQL_LIMIT: usize = 1024 * 1024;

/// Response header with the query's id.
pub const QUERY_ID_HEADER: &str = "beacon-query-id";
/// Response header with the row limit in force.
pub const ROW_LIMIT_HEADER: &str = "beacon-row-limit";

/// `POST /v1/sql` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    query: String,
    #[serde(default)]
    params: Vec<Value>,
    #[serde(default)]
    format: Option<String>,
}

/// Result encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
    Csv,
    Arrow,
    Parquet,
    Xlsx,
    /// Laid out as a report (not streamed: the first
    /// [`crate::reports::pdf::MAX_PDF_ROWS`] rows, the cut said).
    Pdf,
}

impl Format {
    const ALL: [(&'static str, &'static str, Format); 7] = [
        ("json", "application/json", Format::Json),
        ("ndjson", "application/x-ndjson", Format::Ndjson),
        ("csv", "text/csv", Format::Csv),
        (
            "arrow",
            "application/vnd.apache.arrow.stream",
            Format::Arrow,
        ),
        ("parquet", "application/vnd.apache.parquet", Format::Parquet),
        (
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Xlsx,
        ),
        ("pdf", "application/pdf", Format::Pdf),
    ];

    fn content_type(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, _, f)| *f == self)
            .map_or("application/octet-stream", |(_, ct, _)| ct)
    }

    /// From `format`, else the first supported `Accept` type, else JSON.
    fn choose(format: Option<&str>, accept: Option<&HeaderValue>) -> Result<Self, ApiError> {
        if let Some(name) = format {
            return Self::ALL
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(name.trim()))
                .map(|(_, _, f)| *f)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_format",
                        format!("format {name:?} is not one of json, ndjson, csv, arrow, parquet, xlsx, pdf"),
                    )
                });
        }
        let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or("");
        for part in accept.split(',') {
            let media = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if let Some((_, _, f)) = Self::ALL.iter().find(|(_, ct, _)| *ct == media) {
                return Ok(*f);
            }
            if media == "application/vnd.apache.arrow.file" {
                return Ok(Format::Arrow);
            }
        }
        Ok(Format::Json)
    }
}

/// JSON parameters to SQL values (scalars only).
fn scalar_params(params: &[Value]) -> Result<Vec<ScalarValue>, ApiError> {
    params
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Null => Ok(ScalarValue::Null),
            Value::Bool(b) => Ok(ScalarValue::Boolean(Some(*b))),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(ScalarValue::Int64(Some(i))),
                None => Ok(ScalarValue::Float64(n.as_f64())),
            },
            Value::String(s) => Ok(ScalarValue::Utf8(Some(s.clone()))),
            _ => Err(ApiError::bad_request(
                "invalid_params",
                format!(
                    "parameter ${} must be null, a boolean, a number or a string",
                    i + 1
                ),
            )),
        })
        .collect()
}

/// Adds `position` (`{"line", "column"}`) to a syntax error that has one.
fn with_position(e: beacon_engine::Error) -> ApiError {
    let position = match &e {
        beacon_engine::Error::Syntax(msg) => {
            let num = |key: &str| {
                msg.find(key).and_then(|i| {
                    msg[i + key.len()..]
                        .trim_start()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|d| d.parse::<u64>().ok())
                })
            };
            num("Line:").zip(num("Column:"))
        }
        _ => None,
    };
    let err: ApiError = e.into();
    match position {
        Some((line, column)) => {
            err.with_detail("position", json!({"line": line, "column": column}))
        }
        None => err,
    }
}

/// Runs the query.
#[tracing::instrument(skip_all, fields(query_id))]
pub async fn sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Caller,
    meta: RequestMeta,
    AppJson(request): AppJson<SqlRequest, SQL_LIMIT>,
) -> Result<Response, ApiError> {
    if request.query.trim().is_empty() {
        return Err(ApiError::bad_request(
            "empty_query",
            "query must not be empty",
        ));
    }
    let format = Format::choose(request.format.as_deref(), headers.get(header::ACCEPT))?;
    let params = scalar_params(&request.params)?;
    let guard = state
        .queries
        .start(&principal.tenant, &request.query, "http");
    tracing::Span::current().record("query_id", guard.id.as_str());
    tracing::debug!(sql = %request.query, "Query started.");
    let cancelled = guard.cancel.clone();
    let rows = principal.rows();
    let started = tokio::select! {
        r = beacon_engine::system_tables::privileged(
            principal.is_admin(),
            state
                .engine
                .stream_in(&principal.tenant, &rows, &request.query, params),
        ) => r.map_err(with_position)?,
        () = cancelled.cancelled() => return Err(cancelled_error()),
    };
    let (schema, mut stream) = started;
    // The first batch before the answer, so early failures get a status.
    let first = tokio::select! {
        r = stream.next() => r.transpose().map_err(ApiError::from)?,
        () = cancelled.cancelled() => return Err(cancelled_error()),
    };
    let max_rows = state.engine.config().max_result_rows;
    let id = guard.id.clone();
    let mut audit = QueryRecord::new(&state.audit, &principal, meta, &request.query, "http");
    audit.bytes = Some(0);
    if format == Format::Pdf {
        // A document, not a stream: the first rows (a PDF of more is not
        // read), laid out as a report.
        let limit = crate::reports::pdf::MAX_PDF_ROWS.min(max_rows);
        let mut batches = Vec::new();
        let mut seen = 0;
        let mut next = first;
        while let Some(b) = next {
            seen += b.num_rows();
            batches.push(b);
            if seen > limit {
                break;
            }
            next = tokio::select! {
                r = stream.next() => r.transpose().map_err(ApiError::from)?,
                () = cancelled.cancelled() => return Err(cancelled_error()),
            };
        }
        let cut = seen > limit;
        let body = sql_pdf(&state, &principal.tenant, &request.query, &schema, &batches, limit, cut).await?;
        audit.rows = seen.min(limit);
        audit.bytes = Some(body.len() as u64);
        audit.complete = !cut;
        drop(guard);
        let mut response = body.into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert(QUERY_ID_HEADER, v);
        }
        h.insert(ROW_LIMIT_HEADER, HeaderValue::from(limit as u64));
        return Ok(response);
    }
    let body = encode(
        format,
        schema,
        first,
        stream,
        max_rows,
        guard,
        audit,
        &request.query,
    );
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(QUERY_ID_HEADER, v);
    }
    h.insert(ROW_LIMIT_HEADER, HeaderValue::from(max_rows as u64));
    Ok(response)
}

/// A SQL result as a PDF: the query under the title, the rows as one
/// table (cut at `limit`, said under it), the workspace's branding.
async fn sql_pdf(
    state: &AppState,
    tenant: &str,
    query: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    limit: usize,
    cut: bool,
) -> Result<Vec<u8>, ApiError> {
    let table = crate::export::table_of_batches("result", schema, batches, limit)?;
    let n = table.rows.len();
    let block = crate::reports::render::RenderedBlock {
        heading: "Result".into(),
        table,
        truncated: false,
        chart: None,
    };
    let shown: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
    let shown: String = shown.chars().take(600).collect();
    let mut summary = vec![format!("Query: {shown}")];
    if cut {
        summary.push(format!(
            "Row limit reached: the result has more than {limit} rows; the first {limit} are here (use format=csv, parquet or arrow for all of them)."
        ));
    }
    let doc = crate::reports::pdf::Document {
        title: "Query result".into(),
        subtitle: format!("{n} rows"),
        currency: state.engine.calendar(tenant).currency.clone(),
        summary,
    };
    crate::reports::pdf::document(state, tenant, &doc, std::slice::from_ref(&block)).await
}

fn cancelled_error() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "cancelled",
        "the query was cancelled by an administrator",
    )
}

/// Per-format framing of a stream of batches.
struct Encoder {
    format: Format,
    schema: SchemaRef,
    rows: usize,
    started: bool,
    ipc: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
    parquet: Option<parquet::arrow::ArrowWriter<Vec<u8>>>,
    /// The workbook and its one sheet, written whole at the end.
    xlsx: Option<(crate::xlsx::XlsxBook, crate::xlsx::XlsxSheet)>,
    /// The query, for the workbook's About sheet.
    query: String,
}

impl Encoder {
    fn header(&mut self) -> Result<Vec<u8>, String> {
        Ok(match self.format {
            Format::Json => {
                let columns: Vec<Value> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect();
                format!("{{\"columns\":{},\"rows\":[", Value::Array(columns)).into_bytes()
            }
            Format::Arrow => {
                let w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &self.schema)
                    .map_err(|e| e.to_string())?;
                self.ipc = Some(w);
                self.take_ipc()
            }
            Format::Parquet => {
                let w = parquet::arrow::ArrowWriter::try_new(
                    Vec::new(),
                    Arc::clone(&self.schema),
                    None,
                )
                .map_err(|e| e.to_string())?;
                self.parquet = Some(w);
                Vec::new()
            }
            Format::Xlsx => {
                let mut book = crate::xlsx::XlsxBook::new();
                let sheet = book
                    .sheet("Result", Arc::clone(&self.schema))
                    .map_err(|e| e.to_string())?;
                self.xlsx = Some((book, sheet));
                Vec::new()
            }
            // A PDF is laid out whole by the handler, never encoded here.
            Format::Ndjson | Format::Csv | Format::Pdf => Vec::new(),
        })
    }

    fn take_ipc(&mut self) -> Vec<u8> {
        self.ipc
            .as_mut()
            .map(|w| std::mem::take(w.get_mut()))
            .unwrap_or_default()
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        match self.format {
            Format::Json => {
                let doc = beacon_engine::json::to_json(&self.schema, std::slice::from_ref(batch))
                    .map_err(|e| e.to_string())?;
                if let Some(rows) = doc["rows"].as_array() {
                    for row in rows {
                        if self.started {
                            out.push(b',');
                        }
                        self.started = true;
                        out.extend_from_slice(row.to_string().as_bytes());
                    }
                }
            }
            Format::Ndjson => {
                let objects =
                    beacon_engine::json::to_objects(&self.schema, std::slice::from_ref(batch))
                        .map_err(|e| e.to_string())?;
                for o in objects {
                    out.extend_from_slice(Value::Object(o).to_string().as_bytes());
                    out.push(b'\n');
                }
            }
            Format::Csv => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(!self.started)
                    .build(&mut out);
                w.write(batch).map_err(|e| e.to_string())?;
                drop(w);
                self.started = true;
            }
            Format::Arrow => {
                if let Some(w) = self.ipc.as_mut() {
                    w.write(batch).map_err(|e| e.to_string())?;
                }
                out = self.take_ipc();
            }
            Format::Parquet => {
                if let Some(w) = self.parquet.as_mut() {
                    w.write(batch).map_err(|e| e.to_string())?;
                    if w.in_progress_size() > 16 << 20 {
                        w.flush().map_err(|e| e.to_string())?;
                    }
                    out = std::mem::take(w.inner_mut());
                }
            }
            Format::Xlsx => {
                if let Some((book, sheet)) = self.xlsx.as_mut() {
                    book.write(sheet, batch).map_err(|e| e.to_string())?;
                }
            }
            Format::Pdf => {}
        }
        self.rows += batch.num_rows();
        Ok(out)
    }

    /// The end of the answer; `error` is a failure after the answer began.
    fn finish(&mut self, truncated: bool, error: Option<&str>) -> Result<Vec<u8>, String> {
        let err_json = |m: &str| json!({"code": "query_failed", "message": m});
        Ok(match self.format {
            Format::Pdf => Vec::new(),
            Format::Json => {
                let mut tail = format!("],\"truncated\":{truncated}");
                if let Some(m) = error {
                    tail.push_str(&format!(",\"error\":{}", err_json(m)));
                }
                tail.push('}');
                tail.into_bytes()
            }
            Format::Ndjson => match error {
                Some(m) => format!("{}\n", json!({"error": err_json(m)})).into_bytes(),
                None => Vec::new(),
            },
            Format::Csv => {
                if let Some(m) = error {
                    return Err(m.to_owned());
                }
                if !self.started {
                    // An empty result still has its header line.
                    let mut out = Vec::new();
                    let empty = RecordBatch::new_empty(Arc::clone(&self.schema));
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut out);
                    w.write(&empty).map_err(|e| e.to_string())?;
                    drop(w);
                    out
                } else {
                    Vec::new()
                }
            }
            Format::Arrow => {
                if let Some(m) = error {
                    return Err(m.to_owned());
                }
                if let Some(w) = self.ipc.as_mut() {
                    w.finish().map_err(|e| e.to_string())?;
                }
                self.take_ipc()
            }
            Format::Parquet => {
                if let Some(m) = error {
                    return Err(m.to_owned());
                }
                match self.parquet.take() {
                    Some(w) => w.into_inner().map_err(|e| e.to_string())?,
                    None => Vec::new(),
                }
            }
            Format::Xlsx => {
                if let Some(m) = error {
                    return Err(m.to_owned());
                }
                let Some((mut book, sheet)) = self.xlsx.take() else {
                    return Ok(Vec::new());
                };
                let dropped = book.close(sheet).map_err(|e| e.to_string())?;
                book.about("query", self.query.clone());
                book.about("generated at", chrono::Utc::now().to_rfc3339());
                book.about("rows", (self.rows as u64 - dropped).to_string());
                if truncated {
                    book.about(
                        "row limit",
                        format!(
                            "reached: the result has more rows than the server's limit of {} (sql.max_result_rows); only the first {} are here",
                            self.rows, self.rows
                        ),
                    );
                }
                if dropped > 0 {
                    book.about(
                        "sheet limit",
                        format!("{dropped} rows did not fit an Excel sheet (1,048,576 rows) and are not here"),
                    );
                }
                book.finish().map_err(|e| e.to_string())?
            }
        })
    }
}

type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The response body: header, batches up to `max_rows`, end. Holding the
/// guard keeps the query listed; an admin cancel ends the stream.
#[allow(clippy::too_many_arguments)]
fn encode(
    format: Format,
    schema: SchemaRef,
    first: Option<RecordBatch>,
    rest: BoxStream<'static, beacon_engine::Result<RecordBatch>>,
    max_rows: usize,
    guard: QueryGuard,
    audit: QueryRecord,
    query: &str,
) -> BodyStream {
    struct State {
        enc: Encoder,
        pending: Option<RecordBatch>,
        rest: BoxStream<'static, beacon_engine::Result<RecordBatch>>,
        guard: QueryGuard,
        phase: u8,
        max_rows: usize,
        audit: QueryRecord,
    }
    let state = State {
        enc: Encoder {
            format,
            schema,
            rows: 0,
            started: false,
            ipc: None,
            parquet: None,
            xlsx: None,
            query: query.to_owned(),
        },
        pending: first,
        rest,
        guard,
        phase: 0,
        max_rows,
        audit,
    };
    let io = |m: String| std::io::Error::other(m);
    Box::pin(futures::stream::unfold(state, move |mut s| async move {
        loop {
            match s.phase {
                0 => {
                    s.phase = 1;
                    match s.enc.header() {
                        Ok(b) if b.is_empty() => continue,
                        Ok(b) => return Some((Ok(Bytes::from(b)), s)),
                        Err(e) => {
                            s.phase = 3;
                            return Some((Err(io(e)), s));
                        }
                    }
                }
                1 => {
                    let batch = match s.pending.take() {
                        Some(b) => Some(Ok(b)),
                        None => {
                            let cancel = s.guard.cancel.clone();
                            tokio::select! {
                                b = s.rest.next() => b,
                                () = cancel.cancelled() => Some(Err(beacon_engine::Error::Plan("the query was cancelled by an administrator".into()))),
                            }
                        }
                    };
                    let (bytes, done) = match batch {
                        None => (s.enc.finish(false, None), true),
                        Some(Err(e)) => {
                            tracing::warn!(query_id = %s.guard.id, error = %e, "Query failed while streaming.");
                            (s.enc.finish(false, Some(&e.to_string())), true)
                        }
                        Some(Ok(batch)) => {
                            let room = s.max_rows - s.enc.rows;
                            if batch.num_rows() >= room {
                                let cut = batch.slice(0, room);
                                let truncated =
                                    batch.num_rows() > room || s.rest.next().await.is_some();
                                let mut out = match s.enc.batch(&cut) {
                                    Ok(b) => b,
                                    Err(e) => {
                                        s.phase = 3;
                                        return Some((Err(io(e)), s));
                                    }
                                };
                                match s.enc.finish(truncated, None) {
                                    Ok(t) => out.extend(t),
                                    Err(e) => {
                                        s.phase = 3;
                                        return Some((Err(io(e)), s));
                                    }
                                }
                                (Ok(out), true)
                            } else {
                                (s.enc.batch(&batch), false)
                            }
                        }
                    };
                    if done {
                        s.phase = 2;
                    }
                    match bytes {
                        Ok(b) if b.is_empty() => continue,
                        Ok(b) => {
                            s.audit.rows = s.enc.rows;
                            s.audit.bytes = Some(s.audit.bytes.unwrap_or(0) + b.len() as u64);
                            return Some((Ok(Bytes::from(b)), s));
                        }
                        Err(e) => {
                            s.phase = 3;
                            return Some((Err(io(e)), s));
                        }
                    }
                }
                2 => {
                    tracing::debug!(query_id = %s.guard.id, rows = s.enc.rows, "Query finished.");
                    s.audit.rows = s.enc.rows;
                    s.audit.complete = true;
                    drop(s);
                    return None;
                }
                _ => return None,
            }
        }
    }))
}

/// `GET /v1/queries` (admin key): the workspace's running queries.
pub async fn list(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Response, ApiError> {
    Ok(axum::Json(json!({"queries": state.queries.list(&principal.tenant)})).into_response())
}

/// `DELETE /v1/queries/{id}` (admin key): cancels a running query.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    principal: Caller,
) -> Result<Response, ApiError> {
    if state.queries.cancel(&principal.tenant, &id) {
        Ok(axum::Json(json!({"cancelled": id})).into_response())
    } else {
        Err(ApiError::not_found(format!("no running query {id}")))
    }
}
