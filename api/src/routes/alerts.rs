//! Alert endpoints: rules (CRUD, evaluate now, instances), history,
//! simulation, templates and silences. Semantics in `docs/alerts.md` and
//! [`beacon_realtime::alerts`].

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use beacon_ingest::Role;
use beacon_realtime::alerts::rule::RuleSpec;
use beacon_realtime::alerts::store::Silence;
use beacon_realtime::alerts::templates;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::routes::{Path, Query, parse_json, read_body};
use crate::server::AppState;

fn caller(
    state: &AppState,
    headers: &HeaderMap,
    roles: &[Role],
    what: &str,
) -> Result<Principal, ApiError> {
    let p = auth::from_headers(state, headers)?;
    p.require(roles, what)?;
    Ok(p)
}

const ADMIN: &[Role] = &[Role::Admin];
const READ: &[Role] = &[Role::Read, Role::Admin];

async fn json_body(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = read_body(headers, body, 256 * 1024).await?;
    parse_json(&bytes)
}

fn spec(v: Value) -> Result<RuleSpec, ApiError> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request("invalid_rule", format!("invalid rule: {e}")))
}

fn time_us(s: &str, name: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_request",
                format!("{name} {s:?} is not an RFC 3339 time: {e}"),
            )
        })
}

/// `POST /v1/alerts/rules` (admin): 201 with the rule.
pub async fn create_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = caller(&state, &headers, ADMIN, "creating alert rules")?;
    let rule = state
        .alerts
        .create(&p.tenant, spec(json_body(&headers, body).await?)?)
        .await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// `GET /v1/alerts/rules`.
pub async fn list_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let p = caller(&state, &headers, READ, "listing alert rules")?;
    Ok(Json(json!({"rules": state.alerts.rules(&p.tenant)?})))
}

/// `GET /v1/alerts/rules/{id}`: the rule and its instances.
pub async fn get_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let p = caller(&state, &headers, READ, "reading alert rules")?;
    let rule = state.alerts.rule(&p.tenant, &id)?;
    let instances = state.alerts.instances(&p.tenant, Some(&id))?;
    Ok(Json(json!({"rule": rule, "instances": instances})))
}

/// `PUT /v1/alerts/rules/{id}` (admin).
pub async fn put_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let p = caller(&state, &headers, ADMIN, "changing alert rules")?;
    let rule = state
        .alerts
        .update(&p.tenant, &id, spec(json_body(&headers, body).await?)?)
        .await?;
    Ok(Json(json!(rule)))
}

/// `DELETE /v1/alerts/rules/{id}` (admin).
pub async fn delete_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let p = caller(&state, &headers, ADMIN, "deleting alert rules")?;
    if state.alerts.delete(&p.tenant, &id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no alert rule {id:?}")))
    }
}

/// `POST /v1/alerts/rules/{id}/evaluate` (admin): evaluate now.
pub async fn evaluate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let p = caller(&state, &headers, ADMIN, "evaluating alert rules")?;
    let rule = state.alerts.rule(&p.tenant, &id)?;
    state.alerts.evaluate(&p.tenant, &rule).await?;
    Ok(Json(
        json!({"rule_id": id, "instances": state.alerts.instances(&p.tenant, Some(&id))?}),
    ))
}

/// `GET /v1/alerts/history` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    rule: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/alerts/history?rule=&limit=`: state changes, newest first.
pub async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let p = caller(&state, &headers, READ, "reading alert history")?;
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    Ok(Json(
        json!({"history": state.alerts.history(&p.tenant, q.rule.as_deref(), limit)?}),
    ))
}

/// `POST /v1/alerts/simulate` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateBody {
    rule: Value,
    from: String,
    to: String,
    #[serde(default, with = "humantime_serde")]
    step: Option<Duration>,
}

/// `POST /v1/alerts/simulate` (read or admin): when the rule would have
/// fired over `from..to`; nothing is saved or sent.
pub async fn simulate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let p = caller(&state, &headers, READ, "simulating alert rules")?;
    let b: SimulateBody = serde_json::from_value(json_body(&headers, body).await?)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let s = spec(b.rule)?;
    let result = state
        .alerts
        .simulate(
            &p.tenant,
            &s,
            time_us(&b.from, "from")?,
            time_us(&b.to, "to")?,
            b.step,
        )
        .await?;
    Ok(Json(json!(result)))
}

/// `GET /v1/alerts/templates`.
pub async fn list_templates(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    caller(&state, &headers, READ, "listing alert templates")?;
    Ok(Json(json!({"templates": templates::list()})))
}

/// `POST /v1/alerts/templates/{name}` (admin): creates the template's
/// rule with the given parameters (and `users`, `channels`, `name`).
pub async fn use_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = caller(&state, &headers, ADMIN, "creating alert rules")?;
    let params = match json_body(&headers, body).await? {
        Value::Object(m) => m,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "the parameters must be a JSON object",
            ));
        }
    };
    let spec = templates::instantiate(&name, &params)?;
    let rule = state.alerts.create(&p.tenant, spec).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// `POST /v1/alerts/silences` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    rule_id: Option<String>,
    #[serde(default)]
    matchers: std::collections::BTreeMap<String, String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(default, with = "humantime_serde")]
    duration: Option<Duration>,
    #[serde(default)]
    comment: String,
}

/// `POST /v1/alerts/silences` (admin).
pub async fn create_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = caller(&state, &headers, ADMIN, "silencing alerts")?;
    let b: SilenceBody = serde_json::from_value(json_body(&headers, body).await?)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let starts = match &b.starts_at {
        Some(s) => time_us(s, "starts_at")?,
        None => state.notifier.now_us(),
    };
    let ends = match (&b.ends_at, b.duration) {
        (Some(e), None) => time_us(e, "ends_at")?,
        (None, Some(d)) => starts + i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of ends_at or duration",
            ));
        }
    };
    let s = Silence {
        id: String::new(),
        rule_id: b.rule_id,
        matchers: b.matchers,
        starts_at_us: starts,
        ends_at_us: ends,
        comment: b.comment,
    };
    let s = state.alerts.silence(&p.tenant, s)?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

/// `GET /v1/alerts/silences`.
pub async fn list_silences(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let p = caller(&state, &headers, READ, "listing silences")?;
    Ok(Json(json!({"silences": state.alerts.silences(&p.tenant)?})))
}

/// `DELETE /v1/alerts/silences/{id}` (admin).
pub async fn delete_silence(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let p = caller(&state, &headers, ADMIN, "removing silences")?;
    if state.alerts.unsilence(&p.tenant, &id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no silence {id:?}")))
    }
}
