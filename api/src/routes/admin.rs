//! Workspace administration: settings, deletion, keys, flush, the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beacon_ingest::{NewKey, Role, Scope, Tenant, UserRole};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::access::audit::RequestMeta;
use crate::access::{Caller, Class};
use crate::extract::{AppJson, AppJsonOrEmpty, Path, Query, SMALL_JSON_LIMIT};
use crate::settings;
use crate::state::AppState;

/// `GET /v1/workspace`: settings and data sizes.
pub async fn get_workspace(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Response, ApiError> {
    let tenant = state.store.catalog().tenant(&principal.tenant)?;
    // An embed token (a portal, a TV screen) gets the settings it formats
    // with, not the workspace's size.
    if matches!(principal.who, crate::access::Who::Embed { .. }) {
        return Ok(axum::Json(json!({"workspace": tenant})).into_response());
    }
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
    principal: Caller,
    meta: RequestMeta,
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
    let before = state.store.catalog().tenant(&principal.tenant)?;
    state.store.catalog().update_tenant(&tenant)?;
    state.audit.record(
        &principal,
        &meta,
        "settings_change",
        None,
        json!({"before": before, "after": tenant}),
    );
    Ok(axum::Json(json!({"workspace": tenant})).into_response())
}

/// `DELETE /v1/workspace` body: the workspace's id, typed again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteWorkspace {
    confirm: String,
}

/// `DELETE /v1/workspace` (owners, signed in): deletes the workspace and
/// everything Beacon holds for it ([`AppState::delete_workspace`]). Only
/// the audit log keeps its rows, this deletion's among them, until its
/// retention. The id is never given again.
pub async fn delete_workspace(
    State(state): State<AppState>,
    principal: Caller,
    meta: RequestMeta,
    AppJson(body): AppJson<DeleteWorkspace, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let tenant = state.store.catalog().tenant(&principal.tenant)?;
    if body.confirm != tenant.id {
        return Err(ApiError::bad_request(
            "confirmation_mismatch",
            "to delete the workspace, send its id in `confirm`",
        )
        .with_detail("workspace", json!(tenant.id)));
    }
    let actor = principal.actor();
    match state.delete_workspace(&tenant.id, &actor).await {
        Ok(stats) => {
            let deleted = json!({
                "workspace": tenant.id,
                "name": tenant.name,
                "events": stats.file_rows + stats.memory_rows as u64,
                "files": stats.files,
                "bytes": stats.file_bytes,
            });
            state.audit.record(
                &principal,
                &meta,
                "workspace_delete",
                Some(&tenant.id),
                deleted.clone(),
            );
            Ok(axum::Json(json!({"deleted": deleted})).into_response())
        }
        Err(e) => {
            state.audit.append(
                &tenant.id,
                &actor,
                &meta,
                "workspace_delete",
                Some(&tenant.id),
                "failure",
                json!({"error": e.message()}),
            );
            Err(e)
        }
    }
}

/// `GET /v1/workspace/keys`.
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Response, ApiError> {
    let keys = state.store.catalog().keys(&principal.tenant)?;
    Ok(axum::Json(json!({"keys": keys})).into_response())
}

/// `POST /v1/workspace/keys` and `POST /v1/auth/keys` body: a preset
/// `role` (`write`, `read`, `admin`) or `scopes`, and optionally a label,
/// an expiry (`expires_in`, e.g. "90days", or `expires_at`, RFC 3339) and
/// the user it belongs to (admins only; own keys belong to their maker).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    role: Option<String>,
    scopes: Option<Vec<Scope>>,
    label: Option<String>,
    expires_in: Option<String>,
    expires_at: Option<String>,
    user: Option<String>,
}

impl KeyRequest {
    /// The key to make, checked: 400 for a bad field.
    pub fn to_new_key(&self, now_us: i64) -> Result<NewKey, ApiError> {
        let scopes = match (&self.role, &self.scopes) {
            (Some(role), None) => Role::parse(role)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_role", "role must be write, read or admin")
                })?
                .scopes(),
            (None, Some(scopes)) if !scopes.is_empty() && scopes.len() <= 8 => {
                let mut unique = scopes.clone();
                unique.dedup();
                unique
            }
            (None, Some(_)) => {
                return Err(ApiError::bad_request("invalid_scopes", "give 1 to 8 scopes"));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "give either role (write, read, admin) or scopes (ingest, query, realtime, admin, role:<role>)",
                ));
            }
        };
        if let Some(label) = &self.label
            && (label.trim().is_empty() || label.chars().count() > 200)
        {
            return Err(ApiError::bad_request("invalid_label", "a label has 1 to 200 characters"));
        }
        let expires_at_us = match (&self.expires_in, &self.expires_at) {
            (None, None) => None,
            (Some(d), None) => {
                let d = humantime::parse_duration(d).map_err(|e| {
                    ApiError::bad_request("invalid_expiry", format!("expires_in {d:?}: {e}"))
                })?;
                if d.is_zero() || d > std::time::Duration::from_secs(10 * 366 * 86_400) {
                    return Err(ApiError::bad_request("invalid_expiry", "expires_in must be more than 0 and at most 10 years"));
                }
                Some(now_us + d.as_micros() as i64)
            }
            (None, Some(t)) => {
                let at = chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|e| ApiError::bad_request("invalid_expiry", format!("expires_at {t:?}: {e}")))?
                    .timestamp_micros();
                if at <= now_us {
                    return Err(ApiError::bad_request("invalid_expiry", "expires_at is in the past"));
                }
                Some(at)
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("invalid_expiry", "give expires_in or expires_at, not both"));
            }
        };
        Ok(NewKey {
            scopes,
            label: self.label.as_ref().map(|l| l.trim().to_owned()),
            user_id: self.user.clone(),
            expires_at_us,
        })
    }
}

/// 403 unless `caller` may itself do what every scope grants (nobody
/// hands out more than they have).
pub fn check_grantable(caller: &Caller, scopes: &[Scope]) -> Result<(), ApiError> {
    for scope in scopes {
        let needed = match scope {
            Scope::Ingest => Class::Ingest,
            Scope::Query => Class::Query,
            Scope::Realtime => Class::Realtime,
            Scope::Admin => Class::Admin,
            Scope::Role(UserRole::Owner) => Class::Owner,
            Scope::Role(UserRole::Admin) => Class::Admin,
            Scope::Role(UserRole::Analyst) => Class::Query,
            Scope::Role(UserRole::Viewer) => Class::View,
        };
        if !caller.may(needed) {
            return Err(ApiError::forbidden(format!(
                "you cannot make a key with scope {}: {}",
                scope.name(),
                caller.describe()
            )));
        }
    }
    Ok(())
}

/// Makes a key after the checks; audited.
pub fn issue_key(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    new: &NewKey,
) -> Result<Response, ApiError> {
    if let Some(user) = &new.user_id
        && state.notifier.db().user(&caller.tenant, user)?.is_none()
    {
        return Err(ApiError::bad_request("invalid_user", format!("no user {user:?}")));
    }
    let key = state.store.catalog().create_scoped_key(&caller.tenant, new)?;
    state.audit.record(
        caller,
        meta,
        "key_create",
        Some(&key.prefix),
        json!({"scopes": key.scopes, "label": new.label, "user": new.user_id, "expires_at_us": key.expires_at_us}),
    );
    Ok((StatusCode::CREATED, axum::Json(json!({"key": key}))).into_response())
}

/// `POST /v1/workspace/keys`: 201 with the secret (shown this once).
pub async fn create_key(
    State(state): State<AppState>,
    principal: Caller,
    meta: RequestMeta,
    AppJson(request): AppJson<KeyRequest, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let new = request.to_new_key(chrono::Utc::now().timestamp_micros())?;
    check_grantable(&principal, &new.scopes)?;
    issue_key(&state, &principal, &meta, &new)
}

/// `DELETE /v1/workspace/keys/{prefix}`.
pub async fn revoke_key(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
    principal: Caller,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    state
        .store
        .catalog()
        .revoke_key(&principal.tenant, &prefix)?;
    state.audit.record(&principal, &meta, "key_revoke", Some(&prefix), json!({}));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/workspace/keys/{prefix}/rotate` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old key keeps working (default 24h, at most 30 days).
    overlap: Option<String>,
}

/// `POST /v1/workspace/keys/{prefix}/rotate`: a new key like the old one
/// (201 with its secret); the old one works for the overlap more.
pub async fn rotate_key(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
    principal: Caller,
    meta: RequestMeta,
    AppJsonOrEmpty(request): AppJsonOrEmpty<RotateRequest, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let overlap = match &request.overlap {
        None => std::time::Duration::from_secs(86_400),
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            ApiError::bad_request("invalid_overlap", format!("overlap {text:?}: {e}"))
        })?,
    };
    if overlap > std::time::Duration::from_secs(30 * 86_400) {
        return Err(ApiError::bad_request("invalid_overlap", "overlap is at most 30 days"));
    }
    let old = state.store.catalog().key(&principal.tenant, &prefix)?;
    check_grantable(&principal, &old.scopes)?;
    let key = state
        .store
        .catalog()
        .rotate_key(&principal.tenant, &prefix, overlap.as_micros() as i64)?;
    state.audit.record(
        &principal,
        &meta,
        "key_rotate",
        Some(&prefix),
        json!({"new_prefix": key.prefix, "overlap_s": overlap.as_secs()}),
    );
    Ok((StatusCode::CREATED, axum::Json(json!({"key": key, "old_key_expires_in_s": overlap.as_secs()}))).into_response())
}

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// RFC 3339: rows at or after.
    since: Option<String>,
    /// Rows before this `seq` (paging: the last row's `seq`).
    before: Option<i64>,
    action: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/audit`: the workspace's audit log, newest first.
pub async fn audit(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
    principal: Caller,
) -> Result<Response, ApiError> {
    let since = q
        .since
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_micros())
                .map_err(|e| ApiError::bad_request("invalid_request", format!("since {t:?}: {e}")))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = state
        .audit
        .list(&principal.tenant, since, q.before, q.action.as_deref(), limit)?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| r.seq)).flatten();
    Ok(axum::Json(json!({"entries": rows, "next_before": next})).into_response())
}

/// `POST /v1/workspace/flush`: write buffered events to Parquet now.
pub async fn flush(State(state): State<AppState>, _: Caller) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || store.flush())
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(axum::Json(json!({"flush": report})).into_response())
}
