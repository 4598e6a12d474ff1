//! Workspace administration with an admin key: settings, keys, flush.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beacon_ingest::{Role, Tenant};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::{Admin, AppJson, Auth, Path, SMALL_JSON_LIMIT};
use crate::settings;
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
    // The same checks as `beacon tenants create`.
    let changes = settings::Changes {
        timezone: patch.timezone,
        currency: patch.currency,
        week_start: patch.week_start,
    };
    match changes.validate() {
        Ok(changes) => changes.apply_to(&mut tenant),
        Err(invalid) => problems.extend(invalid.iter().map(settings::InvalidSetting::to_json)),
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
