//! Workspace administration with an admin key: settings, keys, flush.

use std::str::FromStr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beacon_ingest::{Role, Tenant};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::{Admin, AppJson, Auth, Path, SMALL_JSON_LIMIT};
use crate::state::AppState;

/// `GET /v1/workspace`: settings and data sizes.
pub async fn get_workspace(
    State(state): State<AppState>,
    Auth(principal): Auth<Admin>,
) -> Result<Response, ApiError> {
    let tenant = state.store.catalog().tenant(&principal.tenant)?;
    let stats = state.store.tenant_stats(&principal.tenant);
    Ok(axum::Json(json!({"workspace": tenant, "stats": stats})).into_response())
}

/// `PATCH /v1/workspace` body: the settings to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePatch {
    name: Option<String>,
    timezone: Option<String>,
    currency: Option<String>,
    week_start: Option<String>,
    /// `null` keeps events forever.
    #[serde(default, with = "double_option")]
    retention_days: Option<Option<u32>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
        Option::<u32>::deserialize(d).map(Some)
    }
}

/// Longest retention that can be set (100 years).
const MAX_RETENTION_DAYS: u32 = 36_500;

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `PATCH /v1/workspace`: change settings. Every invalid field is reported.
pub async fn patch_workspace(
    State(state): State<AppState>,
    Auth(principal): Auth<Admin>,
    AppJson(patch): AppJson<WorkspacePatch, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let mut tenant: Tenant = state.store.catalog().tenant(&principal.tenant)?;
    let mut problems = Vec::new();
    if let Some(name) = patch.name {
        if name.trim().is_empty() || name.len() > 200 {
            problems.push(json!({"field": "name", "reason": "must be 1 to 200 characters"}));
        }
        tenant.name = name.trim().to_owned();
    }
    if let Some(tz) = patch.timezone {
        if arrow::array::timezone::Tz::from_str(&tz).is_err() {
            problems.push(
                json!({"field": "timezone", "reason": format!("{tz:?} is not an IANA time zone")}),
            );
        }
        tenant.timezone = tz;
    }
    if let Some(currency) = patch.currency {
        // A typo ("EUT") would move every sale to `other_currencies`.
        if iso_currency::Currency::from_code(&currency.to_ascii_uppercase()).is_none() {
            problems.push(json!({"field": "currency", "reason": format!("{currency:?} is not an ISO 4217 currency code")}));
        }
        tenant.currency = currency.to_ascii_uppercase();
    }
    if let Some(day) = patch.week_start {
        let day = day.to_ascii_lowercase();
        if !WEEKDAYS.contains(&day.as_str()) {
            problems.push(
                json!({"field": "week_start", "reason": "must be a weekday name, e.g. monday"}),
            );
        }
        tenant.week_start = day;
    }
    if let Some(retention) = patch.retention_days {
        if retention.is_some_and(|days| !(1..=MAX_RETENTION_DAYS).contains(&days)) {
            problems.push(json!({"field": "retention_days", "reason": format!("must be 1 to {MAX_RETENTION_DAYS} days, or null to keep everything")}));
        }
        tenant.retention_days = retention;
    }
    if !problems.is_empty() {
        return Err(
            ApiError::bad_request("invalid_settings", "some settings are invalid")
                .with_detail("fields", json!(problems)),
        );
    }
    state.store.catalog().update_tenant(&tenant)?;
    Ok(axum::Json(json!({"workspace": tenant})).into_response())
}

/// `GET /v1/workspace/keys`.
pub async fn list_keys(
    State(state): State<AppState>,
    Auth(principal): Auth<Admin>,
) -> Result<Response, ApiError> {
    let keys = state.store.catalog().keys(&principal.tenant)?;
    Ok(axum::Json(json!({"keys": keys})).into_response())
}

/// `POST /v1/workspace/keys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    role: String,
}

/// `POST /v1/workspace/keys` with `{"role": "write" | "read" | "admin"}`.
pub async fn create_key(
    State(state): State<AppState>,
    Auth(principal): Auth<Admin>,
    AppJson(request): AppJson<NewKey, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::bad_request("invalid_role", "role must be write, read or admin")
    })?;
    let key = state.store.catalog().create_key(&principal.tenant, role)?;
    Ok((StatusCode::CREATED, axum::Json(json!({"key": key}))).into_response())
}

/// `DELETE /v1/workspace/keys/{prefix}`.
pub async fn revoke_key(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
    Auth(principal): Auth<Admin>,
) -> Result<Response, ApiError> {
    state
        .store
        .catalog()
        .revoke_key(&principal.tenant, &prefix)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/workspace/flush`: write buffered events to Parquet now.
pub async fn flush(State(state): State<AppState>, _: Auth<Admin>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || store.flush())
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(axum::Json(json!({"flush": report})).into_response())
}
