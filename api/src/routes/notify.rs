//! Notification endpoints: users and preferences, branding, webhook
//! endpoints, `POST /v1/notifications`, delivery status and the in-app
//! inbox. Semantics in `docs/alerts.md` and [`beacon_realtime::notify`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beacon_ingest::UserRole;
use beacon_realtime::notify::prefs::Preferences;
use beacon_realtime::notify::store::InboxFilter;
use beacon_realtime::notify::webhook::Flavour;
use beacon_realtime::notify::{Branding, InboxAction, SendRequest, Status, User, rfc3339};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::audit::RequestMeta;
use crate::access::{Caller, Class, Who};
use crate::error::ApiError;
use crate::extract::{AppJson, Path, Query};
use crate::state::AppState;

/// `PUT /v1/users/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    email: Option<String>,
    name: Option<String>,
    #[serde(default)]
    role: Option<UserRole>,
    #[serde(default)]
    preferences: Option<Preferences>,
}

/// `PUT /v1/users/{id}` (admin): creates or replaces a user. Only owners
/// make owners or change an owner (an admin makes a workspace's first
/// owner); the last owner stays an owner. A
/// changed role takes effect on the user's next request.
pub async fn put_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
    meta: RequestMeta,
    AppJson(b): AppJson<UserBody>,
) -> Result<Json<User>, ApiError> {
    let existing = state.notifier.db().user(&p.tenant, &id)?;
    let role = b
        .role
        .or(existing.as_ref().map(|u| u.role))
        .unwrap_or(UserRole::Viewer);
    let was = existing.as_ref().map(|u| u.role);
    // Owners manage owners; a workspace without one (made before roles,
    // or by `beacon tenants create`) gets its first from an admin.
    if role == UserRole::Owner || was == Some(UserRole::Owner) {
        let owners = owners(&state, &p.tenant)?;
        if !owners.is_empty() {
            p.require(Class::Owner)?;
        }
        if was == Some(UserRole::Owner) && role != UserRole::Owner {
            keep_an_owner(&owners, &id)?;
        }
    }
    let user = User {
        id: id.clone(),
        email: b.email,
        name: b.name,
        role,
        preferences: b
            .preferences
            .or(existing.as_ref().map(|u| u.preferences.clone()))
            .unwrap_or_default(),
        created_at_us: 0,
        has_password: false,
        totp_enabled: false,
        last_login_at_us: None,
    };
    let saved = state.notifier.put_user(&p.tenant, user)?;
    let action = match was {
        None => "user_create",
        Some(old) if old != role => "role_change",
        Some(_) => "user_update",
    };
    state.audit.record(
        &p,
        &meta,
        action,
        Some(&id),
        json!({"role": role, "previous_role": was, "email": saved.email}),
    );
    // The stored row has the credential flags.
    let saved = state.notifier.db().user(&p.tenant, &id)?.unwrap_or(saved);
    Ok(Json(saved))
}

/// The ids of a workspace's owners.
fn owners(state: &AppState, tenant: &str) -> Result<Vec<String>, ApiError> {
    Ok(state
        .notifier
        .db()
        .users(tenant)?
        .into_iter()
        .filter(|u| u.role == UserRole::Owner)
        .map(|u| u.id)
        .collect())
}

/// 409 when `user` is the last of `owners`.
fn keep_an_owner(owners: &[String], user: &str) -> Result<(), ApiError> {
    if owners.iter().all(|o| o == user) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_owner",
            "a workspace keeps at least one owner: make someone else owner first",
        ));
    }
    Ok(())
}

/// `GET /v1/users`.
pub async fn list_users(State(state): State<AppState>, p: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"users": state.notifier.db().users(&p.tenant)?}),
    ))
}

/// `GET /v1/users/{id}`.
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
) -> Result<Json<User>, ApiError> {
    state
        .notifier
        .db()
        .user(&p.tenant, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user {id:?}")))
}

/// `DELETE /v1/users/{id}`: the user's keys are revoked and sessions end
/// (their inbox stays for the record). Only owners remove owners; the
/// last owner cannot be removed.
pub async fn delete_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
    meta: RequestMeta,
) -> Result<StatusCode, ApiError> {
    let Some(user) = state.notifier.db().user(&p.tenant, &id)? else {
        return Err(ApiError::not_found(format!("no user {id:?}")));
    };
    if user.role == UserRole::Owner {
        p.require(Class::Owner)?;
        keep_an_owner(&owners(&state, &p.tenant)?, &id)?;
    }
    let keys = state.store.catalog().revoke_user_keys(&p.tenant, &id)?;
    state.access.end_sessions(&p.tenant, &id)?;
    state.notifier.db().delete_user(&p.tenant, &id)?;
    state.audit.record(
        &p,
        &meta,
        "user_delete",
        Some(&id),
        json!({"role": user.role, "keys_revoked": keys}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/users/{id}/preferences`: the user themself (signed in, or by
/// their session token), or an admin.
pub async fn put_preferences(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    AppJson(prefs): AppJson<Preferences>,
) -> Result<Json<User>, ApiError> {
    if matches!(caller.who, Who::Key { .. }) {
        caller.require(Class::Admin)?;
    }
    let (tenant, user) = caller.user_for(Some(&id))?;
    let mut u = state
        .notifier
        .db()
        .user(&tenant, &user)?
        .ok_or_else(|| ApiError::not_found(format!("no user {user:?}")))?;
    u.preferences = prefs;
    Ok(Json(state.notifier.put_user(&tenant, u)?))
}

/// `GET /v1/notify/branding`.
pub async fn get_branding(
    State(state): State<AppState>,
    p: Caller,
) -> Result<Json<Branding>, ApiError> {
    Ok(Json(state.notifier.db().branding(&p.tenant)?))
}

/// `PUT /v1/notify/branding` (admin).
pub async fn put_branding(
    State(state): State<AppState>,
    p: Caller,
    meta: RequestMeta,
    AppJson(branding): AppJson<Branding>,
) -> Result<Json<Branding>, ApiError> {
    branding.validate()?;
    state.notifier.db().set_branding(&p.tenant, &branding)?;
    state
        .audit
        .record(&p, &meta, "branding_change", None, json!(branding));
    Ok(Json(branding))
}

/// Largest logo, in bytes.
pub const MAX_LOGO: usize = 512 * 1024;

/// `GET /v1/notify/branding/logo`: the workspace's logo as uploaded (404
/// when there is none). Served as an image that cannot run anything (an
/// SVG is sandboxed).
pub async fn get_logo(State(state): State<AppState>, p: Caller) -> Result<Response, ApiError> {
    let Some((content_type, data)) = state.notifier.db().logo(&p.tenant)? else {
        return Err(ApiError::not_found("the workspace has no logo"));
    };
    let mut response = data.into_response();
    let h = response.headers_mut();
    if let Ok(v) = axum::http::HeaderValue::from_str(&content_type) {
        h.insert(axum::http::header::CONTENT_TYPE, v);
    }
    h.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        ),
    );
    h.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `PUT /v1/notify/branding/logo` (admin): the body is the image (PNG,
/// JPEG or SVG, at most [`MAX_LOGO`] bytes), told by its bytes, not its
/// `Content-Type`. It must draw: it is laid out once before it is kept, so
/// a logo that cannot be drawn is a 400 now rather than a failed report
/// later.
pub async fn put_logo(
    State(state): State<AppState>,
    p: Caller,
    meta: RequestMeta,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_LOGO {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "logo_too_large",
            format!(
                "a logo is at most {MAX_LOGO} bytes; this one is {}",
                body.len()
            ),
        ));
    }
    let Some((ext, content_type)) = crate::reports::typeset::image_kind(&body) else {
        return Err(ApiError::bad_request(
            "invalid_logo",
            "a logo is a PNG, JPEG or SVG image",
        ));
    };
    let bytes = body.to_vec();
    let check = bytes.clone();
    crate::models::off_thread(move || crate::reports::typeset::check_image(ext, check))
        .await
        .map_err(|e| {
            ApiError::bad_request("invalid_logo", format!("the logo cannot be drawn: {e}"))
        })?;
    let now = state.engine.now().timestamp_micros();
    state
        .notifier
        .db()
        .set_logo(&p.tenant, Some((content_type, &bytes)), now)?;
    state.audit.record(
        &p,
        &meta,
        "branding_change",
        None,
        json!({"logo": {"content_type": content_type, "bytes": bytes.len()}}),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/notify/branding/logo` (admin).
pub async fn delete_logo(
    State(state): State<AppState>,
    p: Caller,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let now = state.engine.now().timestamp_micros();
    if !state.notifier.db().set_logo(&p.tenant, None, now)? {
        return Err(ApiError::not_found("the workspace has no logo"));
    }
    state
        .audit
        .record(&p, &meta, "branding_change", None, json!({"logo": null}));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/webhooks` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    url: String,
    #[serde(default)]
    flavour: Option<Flavour>,
    #[serde(default)]
    categories: Vec<String>,
}

fn endpoint_json(e: &beacon_realtime::notify::Endpoint, with_secrets: bool) -> Value {
    let secrets: Vec<Value> = e
        .secrets
        .iter()
        .map(|s| {
            json!({
                "secret": if with_secrets { json!(s.secret) } else { json!(format!("{}…", &s.secret[..s.secret.len().min(10)])) },
                "created_at": rfc3339(s.created_at_us),
                "expires_at": s.expires_at_us.map(rfc3339),
            })
        })
        .collect();
    json!({
        "id": e.id, "url": e.url, "flavour": e.flavour, "categories": e.categories,
        "enabled": e.enabled, "created_at": rfc3339(e.created_at_us), "secrets": secrets,
    })
}

/// `POST /v1/webhooks` (admin): the answer holds the signing secret.
pub async fn create_endpoint(
    State(state): State<AppState>,
    p: Caller,
    meta: RequestMeta,
    AppJson(b): AppJson<EndpointBody>,
) -> Result<Response, ApiError> {
    let e = state.notifier.create_endpoint(
        &p.tenant,
        &b.url,
        b.flavour.unwrap_or(Flavour::Standard),
        b.categories,
    )?;
    state.audit.record(
        &p,
        &meta,
        "webhook_create",
        Some(&e.id),
        json!({"url": e.url}),
    );
    Ok((StatusCode::CREATED, Json(endpoint_json(&e, true))).into_response())
}

/// `GET /v1/webhooks`.
pub async fn list_endpoints(
    State(state): State<AppState>,
    p: Caller,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = state
        .notifier
        .db()
        .endpoints(&p.tenant)?
        .iter()
        .map(|e| endpoint_json(e, false))
        .collect();
    Ok(Json(json!({"webhooks": list})))
}

/// `DELETE /v1/webhooks/{id}`.
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
    meta: RequestMeta,
) -> Result<StatusCode, ApiError> {
    if state
        .notifier
        .db()
        .delete_endpoint(&p.tenant, &id, state.notifier.now_us())?
    {
        state
            .audit
            .record(&p, &meta, "webhook_delete", Some(&id), json!({}));
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no webhook endpoint {id:?}")))
    }
}

/// `POST /v1/webhooks/{id}/rotate`: a new secret; the old one signs too
/// until `notify.secret_grace` has passed.
pub async fn rotate_endpoint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
    meta: RequestMeta,
) -> Result<Json<Value>, ApiError> {
    let e = state.notifier.rotate_secret(&p.tenant, &id)?;
    state
        .audit
        .record(&p, &meta, "webhook_rotate", Some(&id), json!({}));
    Ok(Json(endpoint_json(&e, true)))
}

/// `POST /v1/notifications` (admin): 202 with the deliveries.
pub async fn send(
    State(state): State<AppState>,
    p: Caller,
    AppJson(request): AppJson<SendRequest>,
) -> Result<Response, ApiError> {
    let receipt = state.notifier.send(&p.tenant, request)?;
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(json!(receipt))).into_response())
}

/// `GET /v1/notifications/{id}`: the notification and its deliveries.
pub async fn get_notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
    p: Caller,
) -> Result<Json<Value>, ApiError> {
    let m = state
        .notifier
        .db()
        .message(&p.tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no notification {id:?}")))?;
    let deliveries = state
        .notifier
        .db()
        .deliveries(&p.tenant, Some(&id), None, 10_000)?;
    Ok(Json(json!({"notification": m, "deliveries": deliveries})))
}

/// `GET /v1/deliveries` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/deliveries?status=&limit=`: newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
    p: Caller,
) -> Result<Json<Value>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::bad_request("invalid_request", format!("unknown status {s:?}"))
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(
        json!({"deliveries": state.notifier.db().deliveries(&p.tenant, None, status, limit)?}),
    ))
}

/// `GET /v1/inbox` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    user: Option<String>,
    #[serde(default)]
    unread: bool,
    #[serde(default)]
    archived: bool,
    limit: Option<usize>,
    /// Only older than this notification (paging).
    before: Option<i64>,
}

/// `GET /v1/inbox` (user token, or read/admin key with `?user=`).
pub async fn inbox(
    State(state): State<AppState>,
    Query(q): Query<InboxQuery>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (tenant, user) = caller.user_for(q.user.as_deref())?;
    let filter = InboxFilter {
        unread: q.unread,
        archived: q.archived,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        before_us: q.before,
    };
    let items = state.notifier.db().inbox(&tenant, &user, filter)?;
    let unread = state.notifier.db().unread(&tenant, &user)?;
    let next = (items.len() == filter.limit)
        .then(|| items.last().map(|i| i.created_at_us))
        .flatten();
    Ok(Json(
        json!({"user": user, "unread": unread, "notifications": items, "next_before": next}),
    ))
}

/// `GET /v1/inbox/unread-count`.
pub async fn unread(
    State(state): State<AppState>,
    Query(q): Query<InboxQuery>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (tenant, user) = caller.user_for(q.user.as_deref())?;
    Ok(Json(
        json!({"user": user, "unread": state.notifier.db().unread(&tenant, &user)?}),
    ))
}

/// `POST /v1/inbox/mark` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkBody {
    user: Option<String>,
    /// Notification ids; empty or missing: all of the user's.
    #[serde(default)]
    ids: Vec<String>,
    action: InboxAction,
}

/// `POST /v1/inbox/mark`: read, unread, archive or unarchive.
pub async fn mark(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(m): AppJson<MarkBody>,
) -> Result<Json<Value>, ApiError> {
    let (tenant, user) = caller.user_for(m.user.as_deref())?;
    if m.ids.len() > 1000 {
        return Err(ApiError::bad_request("invalid_request", "at most 1000 ids"));
    }
    let (changed, unread) = state.notifier.mark(&tenant, &user, &m.ids, m.action)?;
    Ok(Json(json!({"changed": changed, "unread": unread})))
}
