//! Alert endpoints: rules (CRUD, evaluate now, instances), history,
//! simulation, templates and silences. Semantics in `docs/alerts.md` and
//! [`beacon_realtime::alerts`].

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beacon_realtime::alerts::rule::RuleSpec;
use beacon_realtime::alerts::store::Silence;
use beacon_realtime::alerts::templates;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::access::audit::RequestMeta;
use crate::access::{Caller, Class};
use crate::extract::{AppJson, Path, Query};
use crate::state::AppState;

fn spec(v: Value) -> Result<RuleSpec, ApiError> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request("invalid_rule", format!("invalid rule: {e}")))
}

/// Admins change any rule; analysts only the rules they made (404 for a
/// rule that does not exist).
fn may_change(state: &AppState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if caller.may(Class::Admin) {
        return Ok(());
    }
    let rule = state.alerts.rule(&caller.tenant, id)?;
    if rule.created_by.is_some() && rule.created_by.as_deref() == caller.user() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "an analyst changes only the alert rules they made; rule {id:?} was made by {}",
            rule.created_by.as_deref().unwrap_or("a key")
        )))
    }
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
    p: Caller,
    meta: RequestMeta,
    AppJson(body): AppJson<Value>,
) -> Result<Response, ApiError> {
    let rule = state.alerts.create(&p.tenant, spec(body)?, p.user()).await?;
    state.audit.record(&p, &meta, "rule_create", Some(&rule.id), json!({"name": rule.spec.name}));
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// `GET /v1/alerts/rules`.
pub async fn list_rules(
    State(state): State<AppState>,
    p: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"rules": state.alerts.rules(&p.tenant)?})))
}

/// `GET /v1/alerts/rules/{id}`: the rule and its instances.
pub async fn get_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
) -> Result<Json<Value>, ApiError> {
    let rule = state.alerts.rule(&p.tenant, &id)?;
    let instances = state.alerts.instances(&p.tenant, Some(&id))?;
    Ok(Json(json!({"rule": rule, "instances": instances})))
}

/// `PUT /v1/alerts/rules/{id}` (admin).
pub async fn put_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
    meta: RequestMeta,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    may_change(&state, &p, &id)?;
    let rule = state.alerts.update(&p.tenant, &id, spec(body)?).await?;
    state.audit.record(&p, &meta, "rule_update", Some(&id), json!({"name": rule.spec.name}));
    Ok(Json(json!(rule)))
}

/// `DELETE /v1/alerts/rules/{id}` (admin).
pub async fn delete_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
    meta: RequestMeta,
) -> Result<StatusCode, ApiError> {
    may_change(&state, &p, &id)?;
    if state.alerts.delete(&p.tenant, &id)? {
        state.audit.record(&p, &meta, "rule_delete", Some(&id), json!({}));
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no alert rule {id:?}")))
    }
}

/// `POST /v1/alerts/rules/{id}/evaluate` (admin): evaluate now.
pub async fn evaluate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
) -> Result<Json<Value>, ApiError> {
    may_change(&state, &p, &id)?;
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
    Query(q): Query<HistoryQuery>,
    p: Caller,
) -> Result<Json<Value>, ApiError> {
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
    p: Caller,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let b: SimulateBody = serde_json::from_value(body)
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
pub async fn list_templates(_: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"templates": templates::list()})))
}

/// `POST /v1/alerts/templates/{name}` (admin): creates the template's
/// rule with the given parameters (and `users`, `channels`, `name`).
pub async fn use_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    p: Caller,
    meta: RequestMeta,
    AppJson(body): AppJson<Value>,
) -> Result<Response, ApiError> {
    let params = match body {
        Value::Object(m) => m,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "the parameters must be a JSON object",
            ));
        }
    };
    let spec = templates::instantiate(&name, &params)?;
    let rule = state.alerts.create(&p.tenant, spec, p.user()).await?;
    state.audit.record(&p, &meta, "rule_create", Some(&rule.id), json!({"template": name}));
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
    p: Caller,
    AppJson(body): AppJson<Value>,
) -> Result<Response, ApiError> {
    let b: SilenceBody = serde_json::from_value(body)
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
    p: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"silences": state.alerts.silences(&p.tenant)?})))
}

/// `DELETE /v1/alerts/silences/{id}` (admin).
pub async fn delete_silence(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
) -> Result<StatusCode, ApiError> {
    if state.alerts.unsilence(&p.tenant, &id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no silence {id:?}")))
    }
}
