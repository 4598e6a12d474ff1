//! `/v1/reports`: report definitions, templates, previews, schedules, runs
//! and their files (see [`crate::reports`]).
//!
//! - `GET /v1/reports`, `GET /v1/reports/{id}` (view)
//! - `POST /v1/reports`, `PUT /v1/reports/{id}`, `DELETE /v1/reports/{id}`,
//!   `POST /v1/reports/{id}/pause|resume|run` (rules: analysts change the
//!   reports they made, admins every one); `POST /v1/reports/{id}/test`
//!   (rules: runs it and delivers it to the caller only)
//! - `GET /v1/reports/download/{token}` (public: a signed, expiring link
//!   to a run's file, as deliveries carry)
//! - `POST /v1/reports/preview` (query): a definition rendered now, as JSON
//!   (or `?format=xlsx|csv|parquet&block=N`), nothing saved
//! - `GET /v1/reports/templates` (view)
//! - `GET /v1/reports/runs[?report=&limit=]`, `GET /v1/reports/runs/{id}`,
//!   `GET /v1/reports/runs/{id}/file[?block=N]` (view)

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::access::{Caller, Class};
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::reports::render::{self, Format};
use crate::reports::store::{self, Report};
use crate::reports::{Definition, Recipient, schedule, templates};
use crate::state::AppState;

/// `POST`/`PUT` body: a definition (inline, or a template's with
/// `template`), and how it is run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// A built-in template's name: its definition, with the fields given
    /// here replacing its own.
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    range: Option<Value>,
    #[serde(default)]
    filters: Option<Vec<Value>>,
    #[serde(default)]
    blocks: Option<Vec<Value>>,
    /// Cron expression in the workspace's time zone; none: on demand only.
    #[serde(default)]
    schedule: Option<String>,
    /// `xlsx` (default), `pdf`, `csv` or `parquet`.
    #[serde(default)]
    format: Option<String>,
    /// Who each run goes to: user ids, `{"email": ...}` addresses,
    /// `{"webhook": <endpoint id>}`; each may carry `filters` of its own
    /// (a copy narrowed to them).
    #[serde(default)]
    recipients: Vec<Recipient>,
    #[serde(default)]
    paused: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_report", message)
}

/// The definition a body describes, checked (SQL blocks planned).
async fn definition(
    state: &AppState,
    tenant: &str,
    body: &ReportBody,
) -> Result<Definition, ApiError> {
    let mut fields = Map::new();
    if let Some(name) = &body.template {
        let (_, _, def) = templates()
            .into_iter()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown template {name:?}; templates: {}",
                    templates()
                        .iter()
                        .map(|t| t.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if let Value::Object(m) = serde_json::to_value(def).map_err(|e| ApiError::internal(&e))? {
            fields = m;
        }
    }
    if let Some(t) = &body.title {
        fields.insert("title".into(), json!(t));
    }
    if let Some(r) = &body.range {
        fields.insert("range".into(), r.clone());
    }
    if let Some(f) = &body.filters {
        fields.insert("filters".into(), Value::Array(f.clone()));
    }
    if let Some(b) = &body.blocks {
        fields.insert("blocks".into(), Value::Array(b.clone()));
    }
    // serde's message names the unknown field, block type or range and
    // lists the known ones.
    let def: Definition =
        serde_json::from_value(Value::Object(fields)).map_err(|e| invalid(e.to_string()))?;
    def.check().map_err(invalid)?;
    // SQL blocks: one read-only query that plans over the workspace.
    let ctx = state.engine.shape_session(tenant).await?;
    for (i, b) in def.blocks.iter().enumerate() {
        if let crate::reports::Block::SavedQuery { query, .. } = b {
            crate::routes::queries::get_saved(state, tenant, query)
                .map_err(|e| invalid(format!("block {} (saved_query): {}", i + 1, e.message())))?;
        }
        if let crate::reports::Block::Sql { sql, .. } = b {
            let query = sql
                .replace("{from}", "TIMESTAMP '2000-01-01T00:00:00Z'")
                .replace("{to}", "TIMESTAMP '2000-01-02T00:00:00Z'");
            state.engine.plan(&ctx, &query).await.map_err(|e| {
                invalid(format!(
                    "block {} (sql): {}",
                    i + 1,
                    ApiError::from(e).message()
                ))
            })?;
        }
    }
    Ok(def)
}

/// Analysts change only the reports they made; admins every one.
fn may_change(caller: &Caller, report: &Report) -> Result<(), ApiError> {
    if caller.may(Class::Admin) || Some(report.owner.as_str()) == caller.user() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "an analyst changes only the reports they made; report {:?} was made by {}",
        report.id, report.owner
    )))
}

fn owner_of(caller: &Caller) -> String {
    match (caller.user(), &caller.who) {
        (Some(u), _) => u.to_owned(),
        (None, crate::access::Who::Key { prefix, .. }) => format!("key:{prefix}"),
        _ => "unknown".into(),
    }
}

/// The stored form of a body: next run computed from now.
async fn report_of(
    state: &AppState,
    caller: &Caller,
    id: String,
    owner: String,
    body: &ReportBody,
) -> Result<Report, ApiError> {
    let def = definition(state, &caller.tenant, body).await?;
    let format = body.format.clone().unwrap_or_else(|| "xlsx".into());
    Format::parse(&format)?;
    let now = state.engine.now().timestamp_micros();
    let schedule = body
        .schedule
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let next = match schedule {
        Some(c) => {
            let cron = schedule::parse(c)?;
            let tz = state.engine.calendar(&caller.tenant).tz;
            Some(schedule::next_after(&cron, tz, now).ok_or_else(|| {
                ApiError::bad_request("invalid_schedule", format!("schedule {c:?} never runs"))
            })?)
        }
        None => None,
    };
    let mut recipients: Vec<Recipient> = Vec::new();
    for r in &body.recipients {
        let key = r.key();
        if recipients.iter().any(|x| x.key() == key) {
            return Err(invalid(format!("recipient {key:?} is listed twice")));
        }
        if r.filters().iter().any(|f| !f.is_object()) || r.filters().len() > 20 {
            return Err(invalid(format!(
                "recipient {key:?}: filters are at most 20 objects like {{\"property\": \"location\", \"value\": \"north\"}}",
            )));
        }
        recipients.push(r.clone());
    }
    if recipients.len() > 100 {
        return Err(invalid("a report has at most 100 recipients"));
    }
    // Who cannot be reached is said now, not at the first run.
    let unknown = |m: String| Err(ApiError::bad_request("unknown_recipient", m));
    for r in &recipients {
        match r {
            Recipient::User(u) | Recipient::Filtered { user: u, .. } => {
                if state.notifier.db().user(&caller.tenant, u)?.is_none() {
                    return unknown(format!("recipient {u:?} is not a user of this workspace"));
                }
            }
            Recipient::Email { email, .. } => {
                if !beacon_realtime::notify::is_email_address(email) {
                    return unknown(format!("recipient {email:?} is not an email address"));
                }
            }
            Recipient::Webhook { webhook, .. } => {
                match state.notifier.db().endpoint(&caller.tenant, webhook)? {
                    Some(e) if e.enabled => {}
                    Some(_) => {
                        return unknown(format!("webhook endpoint {webhook:?} is disabled"));
                    }
                    None => {
                        return unknown(format!(
                            "recipient {webhook:?} is not a webhook endpoint of this workspace (POST /v1/notify/webhooks)"
                        ));
                    }
                }
            }
        }
    }
    Ok(Report {
        id,
        recipients,
        definition: def,
        schedule: schedule.map(str::to_owned),
        format,
        paused: body.paused,
        next_run_at: next
            .filter(|_| !body.paused)
            .map(beacon_realtime::notify::rfc3339),
        owner,
        created_at: beacon_realtime::notify::rfc3339(now),
        updated_at: beacon_realtime::notify::rfc3339(now),
        next_run_us: next,
    })
}

/// `GET /v1/reports`.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"reports": store::list(&state, &caller.tenant)?}),
    ))
}

/// `GET /v1/reports/templates`.
pub async fn list_templates(_caller: Caller) -> Json<Value> {
    let t: Vec<Value> = templates()
        .into_iter()
        .map(|(name, description, definition)| json!({"name": name, "description": description, "definition": definition}))
        .collect();
    Json(json!({"templates": t}))
}

/// `POST /v1/reports`: 201 with the report.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<ReportBody>,
) -> Result<Response, ApiError> {
    let id = beacon_realtime::notify::new_id("report");
    let report = report_of(&state, &caller, id, owner_of(&caller), &body).await?;
    store::put(
        &state,
        &caller.tenant,
        &report,
        state.engine.now().timestamp_micros(),
    )?;
    let report = store::get(&state, &caller.tenant, &report.id)?;
    Ok((StatusCode::CREATED, Json(json!({"report": report}))).into_response())
}

/// `GET /v1/reports/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"report": store::get(&state, &caller.tenant, &id)?}),
    ))
}

/// `PUT /v1/reports/{id}`: replaces the definition and schedule.
pub async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    AppJson(body): AppJson<ReportBody>,
) -> Result<Json<Value>, ApiError> {
    let old = store::get(&state, &caller.tenant, &id)?;
    may_change(&caller, &old)?;
    let report = report_of(&state, &caller, id, old.owner.clone(), &body).await?;
    store::put(
        &state,
        &caller.tenant,
        &report,
        state.engine.now().timestamp_micros(),
    )?;
    Ok(Json(
        json!({"report": store::get(&state, &caller.tenant, &report.id)?}),
    ))
}

/// `DELETE /v1/reports/{id}`: 204.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    let old = store::get(&state, &caller.tenant, &id)?;
    may_change(&caller, &old)?;
    store::delete(&state, &caller.tenant, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    id: &str,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    let mut report = store::get(state, &caller.tenant, id)?;
    may_change(caller, &report)?;
    report.paused = paused;
    // Resuming schedules from now: occurrences while paused are skipped.
    if !paused && let Some(c) = report.schedule.as_deref() {
        let tz = state.engine.calendar(&caller.tenant).tz;
        report.next_run_us = schedule::next_after(
            &schedule::parse(c)?,
            tz,
            state.engine.now().timestamp_micros(),
        );
    }
    store::put(
        state,
        &caller.tenant,
        &report,
        state.engine.now().timestamp_micros(),
    )?;
    Ok(Json(
        json!({"report": store::get(state, &caller.tenant, id)?}),
    ))
}

/// `POST /v1/reports/{id}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    set_paused(&state, &caller, &id, true).await
}

/// `POST /v1/reports/{id}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    set_paused(&state, &caller, &id, false).await
}

/// `POST /v1/reports/{id}/run`: runs it now; 201 with the run and the
/// runs of recipients' filtered copies (`filtered_runs`) (a failed
/// run is logged and answered with its reason, status 201 too: the run
/// exists).
pub async fn run_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let report = store::get(&state, &caller.tenant, &id)?;
    may_change(&caller, &report)?;
    let mut runs = schedule::execute(
        &state,
        &caller.tenant,
        &report,
        "manual",
        None,
        &report.recipients,
    )
    .await?;
    let run = runs.remove(0);
    Ok((
        StatusCode::CREATED,
        Json(json!({"run": run, "filtered_runs": runs})),
    )
        .into_response())
}

/// `POST /v1/reports/{id}/test`: runs it now and delivers it to the
/// signed-in caller only (201 with the run).
pub async fn test_send(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let report = store::get(&state, &caller.tenant, &id)?;
    let Some(me) = caller.user().map(str::to_owned) else {
        return Err(ApiError::forbidden(
            "a test send goes to a signed-in person, not a key",
        ));
    };
    let mut runs = schedule::execute(
        &state,
        &caller.tenant,
        &report,
        "test",
        None,
        &[Recipient::User(me)],
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"run": runs.remove(0)}))).into_response())
}

/// `GET /v1/reports/download/{token}` (no sign-in: the token is the
/// permission): a run's file by a signed link, until it expires (404 for
/// a tampered link, 410 for an expired one).
pub async fn download(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let claims: schedule::Download = state
        .tokens
        .verify_as(schedule::DOWNLOAD_PREFIX, &token)
        .map_err(|_| ApiError::not_found("no such download link"))?;
    if claims.exp < state.engine.now().timestamp() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "link_expired",
            "this download link has expired; ask for the report again",
        ));
    }
    let (run, files) = store::run(&state, &claims.t, &claims.r)?;
    if !files.contains(&claims.f) {
        return Err(ApiError::not_found("the file of this link is gone"));
    }
    let format = Format::parse(&run.format)?;
    let path = store::files_dir(&state, &claims.t)
        .join(&run.report_id)
        .join(&claims.f);
    let body = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found("the file of this link is gone"))?;
    Ok(file_response(
        body,
        format,
        &format!("beacon-report-{}", run.report_id),
    ))
}

/// `POST /v1/reports/preview` query.
#[derive(Debug, Deserialize)]
pub struct PreviewQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    block: Option<usize>,
}

/// `POST /v1/reports/preview`: renders a definition (or a template) now.
pub async fn preview(
    State(state): State<AppState>,
    Query(q): Query<PreviewQuery>,
    caller: Caller,
    AppJson(body): AppJson<ReportBody>,
) -> Result<Response, ApiError> {
    let def = definition(&state, &caller.tenant, &body).await?;
    let now = state.engine.now().timestamp_micros();
    let rendered = render::render(&state, &caller.tenant, &def, now).await?;
    match q.format.as_deref() {
        None | Some("json") => {
            let blocks: Vec<Value> = rendered
                .blocks
                .iter()
                .map(|b| {
                    let rows: Vec<Value> = b
                        .table
                        .rows
                        .iter()
                        .map(|r| Value::Object(b.table.columns.iter().cloned().zip(r.iter().cloned()).collect()))
                        .collect();
                    json!({"heading": b.heading, "columns": b.table.columns, "rows": rows, "truncated": b.truncated})
                })
                .collect();
            Ok(Json(json!({
                "title": rendered.title,
                "range": {"from": rendered.from.to_string(), "to": rendered.to.to_string(), "time_zone": rendered.time_zone},
                "currency": rendered.currency,
                "summary": rendered.summary,
                "blocks": blocks,
            }))
            .into_response())
        }
        Some(f) => {
            let format = Format::parse(f)?;
            let body = render::write_file(
                &state,
                &caller.tenant,
                &rendered,
                format,
                q.block.unwrap_or(0),
            )
            .await?;
            Ok(file_response(body, format, "beacon-report-preview"))
        }
    }
}

fn file_response(body: Vec<u8>, format: Format, name: &str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(schedule::content_type(format)),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{name}.{}\"",
        format.name()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `GET /v1/reports/runs` query.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    #[serde(default)]
    report: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/reports/runs`: the run log, newest first.
pub async fn runs(
    State(state): State<AppState>,
    Query(q): Query<RunsQuery>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    Ok(Json(
        json!({"runs": store::runs(&state, &caller.tenant, q.report.as_deref(), limit)?}),
    ))
}

/// `GET /v1/reports/runs/{id}`.
pub async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (run, files) = store::run(&state, &caller.tenant, &id)?;
    Ok(Json(json!({"run": run, "files": files})))
}

/// `GET /v1/reports/runs/{id}/file[?block=N]`: the run's file (a CSV run
/// has one per block).
pub async fn run_file(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (run, files) = store::run(&state, &caller.tenant, &id)?;
    let format = Format::parse(&run.format)?;
    let block = q.block.unwrap_or(0);
    let name = if format.per_block() {
        files.get(block)
    } else {
        files.first()
    }
    .ok_or_else(|| {
        ApiError::not_found(if run.outcome == "ok" {
            format!(
                "run {id:?} has {} files (block 0 to {})",
                files.len(),
                files.len().saturating_sub(1)
            )
        } else {
            format!("run {id:?} has no file: it {}", run.outcome)
        })
    })?;
    let path = store::files_dir(&state, &caller.tenant)
        .join(&run.report_id)
        .join(name);
    let body = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found(format!("the file of run {id:?} is gone")))?;
    Ok(file_response(
        body,
        format,
        &format!("beacon-report-{}", run.report_id),
    ))
}
