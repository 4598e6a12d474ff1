//! A signed-in person's saved views and page layouts (the web app's "Save
//! view" and "Arrange"): `GET`/`POST /v1/auth/views`,
//! `DELETE /v1/auth/views/{id}`, `GET`/`PUT /v1/auth/layouts/{page}`.
//!
//! A view is what a page asks the analytics API (range, comparison,
//! filters, breakdown, funnel steps, ...) under a name; the server keeps it
//! as an opaque JSON object (the page reads it back), bounded in size and
//! number. A layout is the order of a page's widgets. Both belong to the
//! signed-in user only (keys have no views), are deleted with the user and
//! with the workspace (`user_views`, `user_layouts`, realtime migration 4),
//! and are not audited: they change what one person sees, not what anyone
//! may do.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beacon_realtime::notify::rfc3339;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::access::{Caller, Who};
use crate::error::ApiError;
use crate::extract::{AppJson, SMALL_JSON_LIMIT};
use crate::state::AppState;

/// The pages that have views or layouts (the web app's routes).
pub const PAGES: &[&str] = &[
    "overview",
    "sales",
    "bookings",
    "customers",
    "funnels",
    "retention",
    "peak-times",
];

/// Most saved views per user.
const MAX_VIEWS: i64 = 200;
/// Longest view state, as JSON text.
const MAX_STATE: usize = 16 * 1024;
/// Longest view name, in characters.
const MAX_NAME: usize = 80;
/// Most widgets in a layout, and the longest widget id.
const MAX_WIDGETS: usize = 30;
const MAX_WIDGET_ID: usize = 40;

/// The signed-in user, or 403: views are a person's, not a key's.
fn me(caller: &Caller) -> Result<(String, String), ApiError> {
    match &caller.who {
        Who::Session { user, .. } => Ok((caller.tenant.clone(), user.clone())),
        _ => Err(ApiError::forbidden(
            "saved views and layouts belong to a signed-in person, not a key",
        )),
    }
}

fn page_of(page: &str) -> Result<&'static str, ApiError> {
    PAGES.iter().copied().find(|p| *p == page).ok_or_else(|| {
        ApiError::bad_request(
            "unknown_page",
            format!("unknown page {page:?}; pages: {}", PAGES.join(", ")),
        )
    })
}

/// A saved view as answered.
#[derive(Debug, Serialize)]
struct View {
    id: String,
    page: String,
    name: String,
    state: Value,
    updated_at: String,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    page: Option<String>,
}

/// `GET /v1/auth/views[?page=sales]`: the user's views, by page and name.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (tenant, user) = me(&caller)?;
    let page = q.page.as_deref().map(page_of).transpose()?;
    let views: Vec<View> = state.notifier.db().with(|c| {
        let mut stmt = c.prepare(
            "SELECT id, page, name, state, updated_at_us FROM user_views \
             WHERE tenant_id = ?1 AND user_id = ?2 AND (?3 IS NULL OR page = ?3) ORDER BY page, name",
        )?;
        let rows = stmt.query_map(params![tenant, user, page], |r| {
            let text: String = r.get(3)?;
            Ok(View {
                id: r.get(0)?,
                page: r.get(1)?,
                name: r.get(2)?,
                state: serde_json::from_str(&text).unwrap_or(Value::Null),
                updated_at: rfc3339(r.get(4)?),
            })
        })?;
        rows.collect()
    })?;
    Ok(Json(json!({"views": views})))
}

/// `POST /v1/auth/views` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveView {
    page: String,
    name: String,
    state: Map<String, Value>,
}

/// `POST /v1/auth/views`: saves a view; a view of the same page and name
/// is replaced (200), a new one is created (201).
pub async fn save(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<SaveView, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let (tenant, user) = me(&caller)?;
    let page = page_of(&body.page)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("a view's name is 1 to {MAX_NAME} characters, without control characters"),
        ));
    }
    let text = Value::Object(body.state).to_string();
    if text.len() > MAX_STATE {
        return Err(ApiError::bad_request(
            "state_too_large",
            format!("a view's state is at most {MAX_STATE} bytes of JSON"),
        ));
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    let new_id = beacon_realtime::notify::new_id("view");
    let outcome = state.notifier.db().with(|c| {
        let tx = c.transaction()?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM user_views WHERE tenant_id = ?1 AND user_id = ?2 AND page = ?3 AND name = ?4",
                params![tenant, user, page, name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            tx.execute(
                "UPDATE user_views SET state = ?4, updated_at_us = ?5 WHERE tenant_id = ?1 AND user_id = ?2 AND id = ?3",
                params![tenant, user, id, text, now_us],
            )?;
            tx.commit()?;
            return Ok(Some((id, false)));
        }
        let count: i64 = tx.query_row(
            "SELECT count(*) FROM user_views WHERE tenant_id = ?1 AND user_id = ?2",
            params![tenant, user],
            |r| r.get(0),
        )?;
        if count >= MAX_VIEWS {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO user_views (tenant_id, user_id, id, page, name, state, updated_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![tenant, user, new_id, page, name, text, now_us],
        )?;
        tx.commit()?;
        Ok(Some((new_id.clone(), true)))
    })?;
    let Some((id, created)) = outcome else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_views",
            format!("at most {MAX_VIEWS} saved views per person; delete one first"),
        ));
    };
    let view = View {
        id,
        page: page.to_owned(),
        name,
        state: serde_json::from_str(&text).unwrap_or(Value::Null),
        updated_at: rfc3339(now_us),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"view": view}))).into_response())
}

/// `DELETE /v1/auth/views/{id}`: 204, or 404 for no view of the user's.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (tenant, user) = me(&caller)?;
    let deleted = state.notifier.db().with(|c| {
        c.execute(
            "DELETE FROM user_views WHERE tenant_id = ?1 AND user_id = ?2 AND id = ?3",
            params![tenant, user, id],
        )
    })?;
    if deleted == 0 {
        return Err(ApiError::not_found(format!(
            "you have no saved view {id:?}"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/auth/layouts/{page}`: the user's widget order for the page
/// (`null`: the page's default).
pub async fn get_layout(
    State(state): State<AppState>,
    Path(page): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (tenant, user) = me(&caller)?;
    let page = page_of(&page)?;
    let text: Option<String> = state.notifier.db().with(|c| {
        c.query_row(
            "SELECT layout FROM user_layouts WHERE tenant_id = ?1 AND user_id = ?2 AND page = ?3",
            params![tenant, user, page],
            |r| r.get(0),
        )
        .optional()
    })?;
    let layout = text
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .unwrap_or(Value::Null);
    Ok(Json(json!({"page": page, "layout": layout})))
}

/// `PUT /v1/auth/layouts/{page}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutLayout {
    /// Widget ids in the order to show them; `null` resets to the default.
    layout: Option<Vec<String>>,
}

/// `PUT /v1/auth/layouts/{page}`: sets (or, with `null`, resets) the
/// user's widget order. Ids are the page's; the page ignores ids it does
/// not know and shows widgets missing from the list after the others.
pub async fn put_layout(
    State(state): State<AppState>,
    Path(page): Path<String>,
    caller: Caller,
    AppJson(body): AppJson<PutLayout, SMALL_JSON_LIMIT>,
) -> Result<Json<Value>, ApiError> {
    let (tenant, user) = me(&caller)?;
    let page = page_of(&page)?;
    let now_us = chrono::Utc::now().timestamp_micros();
    let Some(layout) = body.layout else {
        state.notifier.db().with(|c| {
            c.execute(
                "DELETE FROM user_layouts WHERE tenant_id = ?1 AND user_id = ?2 AND page = ?3",
                params![tenant, user, page],
            )
        })?;
        return Ok(Json(json!({"page": page, "layout": null})));
    };
    let valid_id = |w: &String| {
        !w.is_empty()
            && w.len() <= MAX_WIDGET_ID
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    let mut seen = std::collections::HashSet::new();
    if layout.is_empty()
        || layout.len() > MAX_WIDGETS
        || !layout.iter().all(valid_id)
        || !layout.iter().all(|w| seen.insert(w.as_str()))
    {
        return Err(ApiError::bad_request(
            "invalid_layout",
            format!(
                "a layout is 1 to {MAX_WIDGETS} distinct widget ids of lowercase letters, digits, '-' and '_' (at most {MAX_WIDGET_ID} each), or null"
            ),
        ));
    }
    let text = serde_json::to_string(&layout).unwrap_or_else(|_| "[]".to_owned());
    state.notifier.db().with(|c| {
        c.execute(
            "INSERT INTO user_layouts (tenant_id, user_id, page, layout, updated_at_us) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (tenant_id, user_id, page) DO UPDATE SET layout = excluded.layout, updated_at_us = excluded.updated_at_us",
            params![tenant, user, page, text, now_us],
        )
    })?;
    Ok(Json(json!({"page": page, "layout": layout})))
}
