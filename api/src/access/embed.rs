//! Embed tokens: what a portal page or a TV screen holds instead of a key.
//!
//! A workspace admin mints one with `POST /v1/embed/tokens` (a portal's
//! backend does it per client and page view; an owner does it once for a
//! TV link). The token is `be_<payload>.<signature>`: base64url JSON
//! `{"t": workspace, "id": token id, "c": customer or null, "exp": unix
//! seconds}` signed with HMAC-SHA256 under the server's token secret (the
//! one of user session tokens, [`beacon_realtime::token`]). A request
//! with it passes when the signature holds, it has not expired, and its
//! row in `embed_tokens` exists and is not revoked; a tampered token (a
//! customer swapped in the payload) fails the signature.
//!
//! What it opens is the list [`ROUTES`], never a whole access class:
//! analytics, SQL (customers' tokens only: read-only, as always, and
//! without system tables), the workspace's settings (for its currency and
//! time zone), forecasts and named metrics' anomaly bands (workspace-wide
//! tokens only) and the real-time
//! channels, where the hub
//! allows `metrics`, `activity` and `alerts` to a workspace-wide token
//! and only `activity` to a customer's, filtered to that customer's
//! events. A customer's token sees that customer's rows only: the engine
//! puts a `user_id = <customer>` filter under every scan of its queries
//! ([`beacon_engine::scope`]). The wire protocols (PostgreSQL, Flight
//! SQL) refuse embed tokens; so does every other route.

use axum::extract::{Path, State};
use beacon_realtime::notify::rfc3339;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::audit::RequestMeta;
use super::{Caller, Who};
use crate::error::ApiError;
use crate::extract::{AppJson, SMALL_JSON_LIMIT};
use crate::state::AppState;

/// Prefix of every embed token.
pub const PREFIX: &str = "be_";

/// Default lifetime of a token.
const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Longest lifetime (a TV link is renewed once a year).
const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

/// Longest customer id (the `user_id` column has no limit of its own;
/// Segment ids are short).
const MAX_CUSTOMER: usize = 256;

/// Which embed tokens may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Workspace-wide tokens and customers' tokens.
    Both,
    /// Workspace-wide tokens (TV links) only: the answer is the whole
    /// workspace's.
    Workspace,
    /// Customers' tokens only: SQL, whose sessions are scoped to the
    /// customer's rows and have no system tables (a TV link has no need
    /// for SQL, and its URL is on a screen).
    Customer,
}

/// The routes an embed token may call.
pub const ROUTES: &[(&str, &str, Reach)] = &[
    ("GET", "/v1/analytics/{endpoint}", Reach::Both),
    ("POST", "/v1/analytics/{endpoint}", Reach::Both),
    ("POST", "/v1/sql", Reach::Customer),
    ("GET", "/v1/workspace", Reach::Both),
    ("GET", "/v1/ws", Reach::Both),
    ("GET", "/v1/stream", Reach::Both),
    ("GET", "/v1/forecasts", Reach::Workspace),
    ("GET", "/v1/anomalies", Reach::Workspace),
];

/// Whether an embed token (`scoped`: one customer's) may call `route`.
pub fn allows(method: &Method, route: &str, scoped: bool) -> Result<(), String> {
    let listed = ROUTES
        .iter()
        .find(|(m, r, _)| *m == method.as_str() && *r == route)
        .map(|(_, _, reach)| *reach);
    match (listed, scoped) {
        (Some(Reach::Both), _)
        | (Some(Reach::Workspace), false)
        | (Some(Reach::Customer), true) => Ok(()),
        (Some(Reach::Workspace), true) => Err(format!(
            "{method} {route} is the whole workspace's; a customer's embed token cannot open it"
        )),
        (Some(Reach::Customer), false) => Err(format!(
            "{method} {route} takes a customer's embed token, not a workspace-wide one"
        )),
        (None, _) => Err(format!(
            "an embed token opens read-only dashboards only, not {method} {route}"
        )),
    }
}

/// What a token says, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "t")]
    tenant: String,
    id: String,
    #[serde(rename = "c")]
    customer: Option<String>,
    exp: i64,
}

fn invalid(why: &str) -> ApiError {
    ApiError::unauthorized("invalid_token", format!("invalid embed token: {why}"))
}

/// The caller of an embed token (see the module docs), or 401.
pub fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let claims: Claims = state
        .tokens
        .verify_as(PREFIX, token.trim())
        .map_err(|_| invalid("malformed or not signed by this server"))?;
    let now_us = chrono::Utc::now().timestamp_micros();
    if claims.exp.saturating_mul(1_000_000) <= now_us {
        return Err(invalid("expired"));
    }
    let live: Option<Option<i64>> = state.notifier.db().with(|c| {
        c.query_row(
            "SELECT revoked_at_us FROM embed_tokens WHERE tenant_id = ?1 AND id = ?2",
            params![claims.tenant, claims.id],
            |r| r.get(0),
        )
        .optional()
    })?;
    match live {
        None => Err(invalid("unknown (its workspace may be deleted)")),
        Some(Some(_)) => Err(invalid("revoked")),
        Some(None) => Ok(Caller {
            tenant: claims.tenant,
            who: Who::Embed {
                id: claims.id,
                customer: claims.customer,
            },
        }),
    }
}

/// `POST /v1/embed/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// What it is for ("Acme portal", "Shop TV").
    name: Option<String>,
    /// The customer (`user_id`) whose rows alone it shows; none: the
    /// whole workspace (a TV link).
    customer: Option<String>,
    /// Lifetime, e.g. "1h" (the default), "30days", at most 366 days.
    expires_in: Option<String>,
}

/// A token as listed (never the token itself, which is shown once).
#[derive(Debug, Serialize)]
struct Listed {
    id: String,
    name: String,
    customer: Option<String>,
    created_by: String,
    created_at: String,
    expires_at: String,
    revoked_at: Option<String>,
}

/// `POST /v1/embed/tokens`: 201 with the token (shown this once).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    AppJson(request): AppJson<TokenRequest, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let name = request.name.as_deref().map(str::trim).unwrap_or("embed");
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "a name has 1 to 200 characters",
        ));
    }
    if let Some(c) = &request.customer
        && (c.is_empty() || c.len() > MAX_CUSTOMER || c.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "invalid_customer",
            format!(
                "customer is a user_id of 1 to {MAX_CUSTOMER} bytes without control characters"
            ),
        ));
    }
    let ttl = match &request.expires_in {
        None => DEFAULT_TTL,
        Some(d) => humantime::parse_duration(d).map_err(|e| {
            ApiError::bad_request("invalid_expiry", format!("expires_in {d:?}: {e}"))
        })?,
    };
    if ttl < std::time::Duration::from_secs(60) || ttl > MAX_TTL {
        return Err(ApiError::bad_request(
            "invalid_expiry",
            "expires_in must be between 1 minute and 366 days",
        ));
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    let expires_at_us = now_us + ttl.as_micros() as i64;
    let id = beacon_realtime::notify::new_id("emb");
    let created_by = caller.actor();
    state.notifier.db().with(|c| {
        let tx = c.transaction()?;
        // Expired a week ago: nothing can use them or needs to list them.
        tx.execute(
            "DELETE FROM embed_tokens WHERE expires_at_us < ?1",
            [now_us - 7 * 86_400 * 1_000_000],
        )?;
        tx.execute(
            "INSERT INTO embed_tokens (tenant_id, id, name, customer, created_by, created_at_us, expires_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![caller.tenant, id, name, request.customer, created_by, now_us, expires_at_us],
        )?;
        tx.commit()
    })?;
    let token = state.tokens.sign_as(
        PREFIX,
        &Claims {
            tenant: caller.tenant.clone(),
            id: id.clone(),
            customer: request.customer.clone(),
            exp: expires_at_us.div_euclid(1_000_000),
        },
    );
    state.audit.record(
        &caller,
        &meta,
        "embed_token_create",
        Some(&id),
        json!({"name": name, "customer": request.customer, "expires_at_us": expires_at_us}),
    );
    let body = json!({
        "id": id,
        "token": token,
        "name": name,
        "customer": request.customer,
        "expires_at": rfc3339(expires_at_us),
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `GET /v1/embed/tokens`: the workspace's tokens that have not expired.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let now_us = chrono::Utc::now().timestamp_micros();
    let tokens: Vec<Listed> = state.notifier.db().with(|c| {
        let mut stmt = c.prepare(
            "SELECT id, name, customer, created_by, created_at_us, expires_at_us, revoked_at_us FROM embed_tokens WHERE tenant_id = ?1 AND expires_at_us > ?2 ORDER BY created_at_us DESC LIMIT 1000",
        )?;
        let rows = stmt.query_map(params![caller.tenant, now_us], |r| {
            Ok(Listed {
                id: r.get(0)?,
                name: r.get(1)?,
                customer: r.get(2)?,
                created_by: r.get(3)?,
                created_at: rfc3339(r.get(4)?),
                expires_at: rfc3339(r.get(5)?),
                revoked_at: r.get::<_, Option<i64>>(6)?.map(rfc3339),
            })
        })?;
        rows.collect()
    })?;
    Ok(axum::Json(json!({"tokens": tokens})).into_response())
}

/// `DELETE /v1/embed/tokens/{id}`: 204; the token stops working at once
/// (open WebSockets keep their subscriptions until they reconnect).
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let now_us = chrono::Utc::now().timestamp_micros();
    let changed = state.notifier.db().with(|c| {
        c.execute(
            "UPDATE embed_tokens SET revoked_at_us = coalesce(revoked_at_us, ?3) WHERE tenant_id = ?1 AND id = ?2",
            params![caller.tenant, id, now_us],
        )
    })?;
    if changed == 0 {
        return Err(ApiError::not_found(format!("no embed token {id:?}")));
    }
    state
        .audit
        .record(&caller, &meta, "embed_token_revoke", Some(&id), json!({}));
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_tokens_reach_listed_routes_only() {
        let get = Method::GET;
        assert!(allows(&get, "/v1/analytics/{endpoint}", true).is_ok());
        assert!(allows(&Method::POST, "/v1/sql", true).is_ok());
        assert!(
            allows(&Method::POST, "/v1/sql", false).is_err(),
            "TV links run no SQL"
        );
        assert!(allows(&get, "/v1/forecasts", false).is_ok());
        assert!(
            allows(&get, "/v1/forecasts", true).is_err(),
            "workspace-wide"
        );
        for (m, r) in [
            (Method::GET, "/v1/users"),
            (Method::GET, "/v1/audit"),
            (Method::POST, "/v1/embed/tokens"),
            (Method::PATCH, "/v1/workspace"),
            (Method::GET, "/v1/segments"),
            (Method::GET, "/v1/inbox"),
            (Method::POST, "/v1/track"),
        ] {
            assert!(allows(&m, r, false).is_err(), "{m} {r}");
        }
    }
}
