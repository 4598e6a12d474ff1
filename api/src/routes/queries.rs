//! The workspace's saved SQL queries: `GET`/`POST /v1/saved-queries`,
//! `GET`/`PUT`/`DELETE /v1/saved-queries/{id}`.
//!
//! A saved query is a name and one read-only SQL query, shared by the
//! workspace's analysts (the SQL page saves and opens them) and usable as a
//! report block (`{"type": "saved_query", "query": "<id>"}`), run as it
//! reads when the report runs. `{from}` and `{to}` in it stand for the
//! report's range (on the SQL page, for the last 30 days). The query is
//! planned when it is saved, so a saved query always parses and only
//! reads. Anyone who may run SQL saves queries; its maker or an admin
//! changes or deletes it. Rows live in `saved_queries` (realtime migration
//! 8) and go with the workspace.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::{Caller, Class};
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::state::AppState;

/// Longest name, in characters.
const MAX_NAME: usize = 120;
/// Longest query, in bytes.
const MAX_SQL: usize = 100_000;
/// Longest description, in characters.
const MAX_DESCRIPTION: usize = 2_000;
/// Most saved queries in a workspace.
const MAX_QUERIES: i64 = 1_000;

/// A saved query as answered.
#[derive(Debug, Clone, Serialize)]
pub struct SavedQuery {
    pub id: String,
    pub name: String,
    pub sql: String,
    pub description: String,
    pub owner: String,
    pub created_at: String,
    pub updated_at: String,
}

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    name: String,
    sql: String,
    #[serde(default)]
    description: String,
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", m)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SavedQuery> {
    Ok(SavedQuery {
        id: r.get(0)?,
        name: r.get(1)?,
        sql: r.get(2)?,
        description: r.get(3)?,
        owner: r.get(4)?,
        created_at: beacon_realtime::notify::rfc3339(r.get(5)?),
        updated_at: beacon_realtime::notify::rfc3339(r.get(6)?),
    })
}

const COLUMNS: &str = "id, name, sql, description, owner, created_at_us, updated_at_us";

/// One saved query, or 404.
pub fn get_saved(state: &AppState, tenant: &str, id: &str) -> Result<SavedQuery, ApiError> {
    state
        .notifier
        .db()
        .with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM saved_queries WHERE tenant_id = ?1 AND id = ?2"),
                params![tenant, id],
                row,
            )
            .optional()
        })?
        .ok_or_else(|| ApiError::not_found(format!("no saved query {id:?}")))
}

/// `{from}` and `{to}` of a query as SQL timestamps.
pub fn with_range(sql: &str, from: &str, to: &str) -> String {
    sql.replace("{from}", from).replace("{to}", to)
}

/// Checks a body: lengths, and the query plans as one read-only query.
async fn check(state: &AppState, tenant: &str, body: &QueryBody) -> Result<(), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "a name is 1 to {MAX_NAME} characters, without control characters"
        )));
    }
    if body.sql.trim().is_empty() || body.sql.len() > MAX_SQL {
        return Err(invalid(format!("sql is 1 to {MAX_SQL} bytes")));
    }
    if body.description.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(format!(
            "a description is at most {MAX_DESCRIPTION} characters"
        )));
    }
    let ctx = state.engine.shape_session(tenant).await?;
    let query = with_range(
        &body.sql,
        "TIMESTAMP '2000-01-01T00:00:00Z'",
        "TIMESTAMP '2000-01-02T00:00:00Z'",
    );
    state
        .engine
        .plan(&ctx, &query)
        .await
        .map_err(|e| invalid(ApiError::from(e).message()))?;
    Ok(())
}

fn owner_of(caller: &Caller) -> String {
    match (caller.user(), &caller.who) {
        (Some(u), _) => u.to_owned(),
        (None, crate::access::Who::Key { prefix, .. }) => format!("key:{prefix}"),
        _ => "unknown".into(),
    }
}

/// `GET /v1/saved-queries`: every saved query, by name.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let queries = state.notifier.db().with(|c| {
        let mut s = c.prepare(&format!(
            "SELECT {COLUMNS} FROM saved_queries WHERE tenant_id = ?1 ORDER BY name, id"
        ))?;
        s.query_map(params![caller.tenant], row)?
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok(Json(json!({"queries": queries})).into_response())
}

/// `POST /v1/saved-queries`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<QueryBody>,
) -> Result<Response, ApiError> {
    check(&state, &caller.tenant, &body).await?;
    let count: i64 = state.notifier.db().with(|c| {
        c.query_row(
            "SELECT count(*) FROM saved_queries WHERE tenant_id = ?1",
            params![caller.tenant],
            |r| r.get(0),
        )
    })?;
    if count >= MAX_QUERIES {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_queries",
            format!("a workspace keeps at most {MAX_QUERIES} saved queries"),
        ));
    }
    let id = beacon_realtime::notify::new_id("qry");
    let now = state.engine.now().timestamp_micros();
    let owner = owner_of(&caller);
    state.notifier.db().with(|c| {
        c.execute(
            "INSERT INTO saved_queries (tenant_id, id, name, sql, description, owner, created_at_us, updated_at_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![caller.tenant, id, body.name.trim(), body.sql, body.description, owner, now],
        )
    })?;
    let saved = get_saved(&state, &caller.tenant, &id)?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

/// `GET /v1/saved-queries/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(get_saved(&state, &caller.tenant, &id)?).into_response())
}

fn may_change(caller: &Caller, q: &SavedQuery) -> Result<(), ApiError> {
    if caller.may(Class::Admin) || q.owner == owner_of(caller) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "saved query {:?} was saved by {}: only they or an admin change it",
        q.id, q.owner
    )))
}

/// `PUT /v1/saved-queries/{id}`: a new name, query and description (reports
/// that use it run the new query from their next run).
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(body): AppJson<QueryBody>,
) -> Result<Response, ApiError> {
    let q = get_saved(&state, &caller.tenant, &id)?;
    may_change(&caller, &q)?;
    check(&state, &caller.tenant, &body).await?;
    let now = state.engine.now().timestamp_micros();
    state.notifier.db().with(|c| {
        c.execute(
            "UPDATE saved_queries SET name = ?3, sql = ?4, description = ?5, updated_at_us = ?6 \
             WHERE tenant_id = ?1 AND id = ?2",
            params![
                caller.tenant,
                id,
                body.name.trim(),
                body.sql,
                body.description,
                now
            ],
        )
    })?;
    Ok(Json(get_saved(&state, &caller.tenant, &id)?).into_response())
}

/// `DELETE /v1/saved-queries/{id}` (a report block naming it fails its runs
/// with "no saved query", told to the report's owner).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let q = get_saved(&state, &caller.tenant, &id)?;
    may_change(&caller, &q)?;
    state.notifier.db().with(|c| {
        c.execute(
            "DELETE FROM saved_queries WHERE tenant_id = ?1 AND id = ?2",
            params![caller.tenant, id],
        )
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
