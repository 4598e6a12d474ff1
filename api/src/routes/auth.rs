//! Signing in and one's own account: `/v1/auth/*`, and invitations
//! (`POST /v1/users/{id}/invite`).
//!
//! - Sign-in (`POST /v1/auth/login`, JSON only): email and password (and
//!   `workspace` when the address is a user of several; `totp` when the
//!   user has a second factor). Failures answer one message whatever was
//!   wrong, and take as long for an unknown address as for a wrong
//!   password. Failures slow sign-in down per account and address
//!   (doubling waits after `access.login_free_failures`, at most
//!   `access.login_max_backoff`) and, more gently, per account from any
//!   address (after 20 failures an hour, at most a minute): an attacker
//!   elsewhere never locks the owner out for long.
//! - Invitation and reset links are one-time tokens (stored hashed) sent
//!   by email through `notify.smtp`; they expire (`access.invitation_ttl`,
//!   `access.reset_ttl`) and work once. A reset request answers 202
//!   whether or not the address exists.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use beacon_ingest::UserRole;
use beacon_realtime::notify::email::Rendered;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_sessions::Session;

use crate::access::audit::RequestMeta;
use crate::access::store::{LinkError, LinkKind, random_secret, sha256_hex};
use crate::access::{Caller, Who, password, session, totp};
use crate::error::ApiError;
use crate::extract::{AppJson, AppJsonOrEmpty, Path, SMALL_JSON_LIMIT};
use crate::routes::admin::{KeyRequest, check_grantable, issue_key};
use crate::state::AppState;

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// 415 unless the body is declared JSON: a cross-site HTML form cannot
/// send `application/json`, so sign-in cannot be forged from another site.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json_required",
            "send Content-Type: application/json",
        ))
    }
}

fn bad_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "wrong email or password")
}

/// `POST /v1/auth/login` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
    /// Workspace id or name, when the address is a user of several.
    workspace: Option<String>,
    /// A TOTP code or a recovery code.
    totp: Option<String>,
}

/// Sign-in throttle scopes of an attempt: the account from this address,
/// and the account from anywhere.
fn throttle_scopes(email: &str, ip: &str) -> [(String, u32, std::time::Duration); 2] {
    [
        (format!("acct:{email}|ip:{ip}"), 0, std::time::Duration::ZERO),
        (format!("acct:{email}"), 20, std::time::Duration::from_secs(60)),
    ]
}

/// Doubling wait after `free` failures, at most `max`, in µs.
fn backoff(failures: i64, free: u32, max: std::time::Duration) -> i64 {
    let over = failures - i64::from(free);
    if over <= 0 {
        return 0;
    }
    let secs = 1u64 << (over - 1).clamp(0, 30);
    (secs.saturating_mul(1_000_000) as i64).min(max.as_micros() as i64)
}

/// `POST /v1/auth/login`: 200 with the user, their workspace and role, and
/// the CSRF token; the session cookie is set.
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    session: Session,
    headers: HeaderMap,
    AppJson(body): AppJson<LoginBody, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let email = body.email.trim().to_lowercase();
    if email.is_empty() || email.len() > 254 || body.password.len() > 1024 {
        return Err(bad_credentials());
    }
    let ip = meta.ip.clone().unwrap_or_else(|| "unknown".into());
    let config = &state.config.access;
    let mut scopes = throttle_scopes(&email, &ip);
    scopes[0].1 = config.login_free_failures;
    scopes[0].2 = config.login_max_backoff;
    let now = now_us();
    let mut blocked = 0;
    for (scope, _, _) in &scopes {
        blocked = blocked.max(state.access.blocked_until(scope)?);
    }
    if blocked > now {
        let secs = ((blocked - now) as u64).div_ceil(1_000_000);
        return Err(ApiError::too_many(
            format!("too many failed sign-ins for this account; try again in {secs} s"),
            secs,
        ));
    }
    let mut candidates = state.access.users_by_email(&email)?;
    if let Some(workspace) = &body.workspace {
        let wanted = state.store.catalog().find_tenant(workspace).ok().map(|t| t.id);
        candidates.retain(|(tenant, _)| Some(tenant) == wanted.as_ref());
    }
    let mut matched = Vec::new();
    if candidates.is_empty() {
        // As long as a real check, so the answer does not tell whether
        // the address has an account.
        password::verify(body.password.clone(), None).await;
    }
    for (tenant, user) in &candidates {
        let stored = state
            .access
            .credentials(tenant, user)?
            .and_then(|c| c.password_hash);
        if password::verify(body.password.clone(), stored).await {
            matched.push((tenant.clone(), user.clone()));
        }
    }
    let fail = |state: &AppState, reason: &str| -> Result<(), ApiError> {
        for (scope, free, max) in &scopes {
            let (free, max) = (*free, *max);
            state
                .access
                .record_failure(scope, now, 3_600_000_000, |n| backoff(n, free, max))?;
        }
        for (tenant, user) in &candidates {
            state.audit.append(
                tenant,
                &format!("email:{email}"),
                &meta,
                "login",
                Some(user),
                "failure",
                json!({"reason": reason}),
            );
        }
        Ok(())
    };
    let (tenant, user) = match matched.as_slice() {
        [] => {
            fail(&state, "wrong password or unknown email")?;
            return Err(bad_credentials());
        }
        [one] => one.clone(),
        several => {
            let workspaces: Vec<Value> = several
                .iter()
                .filter_map(|(t, _)| state.store.catalog().tenant(t).ok())
                .map(|t| json!({"id": t.id, "name": t.name}))
                .collect();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "choose_workspace",
                "this address signs in to several workspaces: give workspace",
            )
            .with_detail("workspaces", json!(workspaces)));
        }
    };
    let credentials = state
        .access
        .credentials(&tenant, &user)?
        .ok_or_else(bad_credentials)?;
    if credentials.totp_enabled {
        let Some(code) = body.totp.as_deref().map(str::trim).filter(|c| !c.is_empty()) else {
            return Err(ApiError::unauthorized(
                "totp_required",
                "this account has a second factor: give totp (the app's code or a recovery code)",
            ));
        };
        let secret = credentials.totp_secret.clone().unwrap_or_default();
        let step = totp::check(&secret, code, (now / 1_000_000) as u64);
        let ok = match step {
            Some(step) => state.access.accept_totp_step(&tenant, &user, step)?,
            None => state.access.use_recovery_code(&tenant, &user, code)?,
        };
        if !ok {
            fail(&state, "wrong second factor")?;
            return Err(ApiError::unauthorized(
                "invalid_totp",
                "the second-factor code is wrong or was already used",
            ));
        }
    }
    for (scope, _, _) in &scopes {
        state.access.clear_failures(scope)?;
    }
    state.access.record_login(&tenant, &user, now)?;
    let csrf = session::sign_in(&session, &tenant, &user, credentials.session_epoch).await?;
    let u = state
        .notifier
        .db()
        .user(&tenant, &user)?
        .ok_or_else(bad_credentials)?;
    state
        .audit
        .append(&tenant, &format!("user:{user}"), &meta, "login", Some(&user), "success", json!({}));
    let workspace = state.store.catalog().tenant(&tenant)?;
    Ok(Json(json!({
        "user": u,
        "workspace": {"id": workspace.id, "name": workspace.name},
        "role": u.role,
        "csrf_token": csrf,
    }))
    .into_response())
}

fn session_user(caller: &Caller) -> Result<(String, String, String), ApiError> {
    match &caller.who {
        Who::Session { user, csrf, .. } => Ok((caller.tenant.clone(), user.clone(), csrf.clone())),
        _ => Err(ApiError::forbidden("this needs a signed-in session, not a key")),
    }
}

/// 403 `wrong` unless `password` is the signed-in user's own.
async fn check_own_password(
    state: &AppState,
    tenant: &str,
    user: &str,
    password: String,
    wrong: &str,
) -> Result<(), ApiError> {
    let stored = state.access.credentials(tenant, user)?.and_then(|c| c.password_hash);
    if password::verify(password, stored).await {
        Ok(())
    } else {
        Err(ApiError::forbidden(wrong.to_owned()))
    }
}

/// `GET /v1/auth/me`: who is signed in, and the CSRF token.
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let (tenant, user, csrf) = session_user(&caller)?;
    let u = state
        .notifier
        .db()
        .user(&tenant, &user)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let workspace = state.store.catalog().tenant(&tenant)?;
    let recovery_codes_left = state
        .access
        .credentials(&tenant, &user)?
        .map_or(0, |c| c.recovery_codes.len());
    Ok(Json(json!({
        "user": u,
        "workspace": {"id": workspace.id, "name": workspace.name, "timezone": workspace.timezone, "currency": workspace.currency},
        "role": u.role,
        "recovery_codes_left": recovery_codes_left,
        "csrf_token": csrf,
    })))
}

/// `GET /v1/auth/session`: whether this browser is signed in, and as whom:
/// `{"signed_in": false}`, or `/v1/auth/me`'s answer with `"signed_in":
/// true`. Always 200 (public): the web app asks it on every load, and a
/// signed-out visitor is not an error.
pub async fn session_state(
    State(state): State<AppState>,
    browser: Session,
) -> Result<Json<Value>, ApiError> {
    match session::current(&state, &browser).await? {
        None => Ok(Json(json!({"signed_in": false}))),
        Some(caller) => {
            let Json(mut answer) = me(State(state), caller).await?;
            answer["signed_in"] = json!(true);
            Ok(Json(answer))
        }
    }
}

/// `POST /v1/auth/logout`: ends this session.
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    session: Session,
) -> Result<StatusCode, ApiError> {
    session::sign_out(&session).await?;
    state.audit.record(&caller, &meta, "logout", caller.user(), json!({}));
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/auth/logout-everywhere`: ends every session of the user.
pub async fn logout_everywhere(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    session: Session,
) -> Result<StatusCode, ApiError> {
    let (tenant, user, _) = session_user(&caller)?;
    state.access.end_sessions(&tenant, &user)?;
    session::sign_out(&session).await?;
    state.audit.record(&caller, &meta, "logout_everywhere", Some(&user), json!({}));
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/auth/password` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current: String,
    new: String,
}

/// `PUT /v1/auth/password`: other sessions end; this one goes on (with a
/// new CSRF token, returned).
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    session: Session,
    AppJson(body): AppJson<PasswordChange, SMALL_JSON_LIMIT>,
) -> Result<Json<Value>, ApiError> {
    let (tenant, user, _) = session_user(&caller)?;
    check_own_password(&state, &tenant, &user, body.current, "the current password is wrong").await?;
    let u = state.notifier.db().user(&tenant, &user)?.ok_or_else(|| ApiError::not_found("no such user"))?;
    password::check_policy(&body.new, u.email.as_deref(), u.name.as_deref())?;
    let hash = password::hash(body.new).await?;
    state.access.set_password(&tenant, &user, &hash)?;
    let epoch = state.access.credentials(&tenant, &user)?.map_or(0, |c| c.session_epoch);
    let csrf = session::sign_in(&session, &tenant, &user, epoch).await?;
    state.audit.record(&caller, &meta, "password_change", Some(&user), json!({}));
    Ok(Json(json!({"csrf_token": csrf})))
}

/// `POST /v1/auth/totp`: a new seed for the user's authenticator app (not
/// in force until confirmed). The seed is shown this once.
pub async fn totp_setup(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let (tenant, user, _) = session_user(&caller)?;
    let creds = state.access.credentials(&tenant, &user)?.unwrap_or_default();
    if creds.totp_enabled {
        return Err(ApiError::new(StatusCode::CONFLICT, "totp_enabled", "the second factor is already on; turn it off first"));
    }
    let secret = totp::new_secret();
    state.access.set_totp_secret(&tenant, &user, Some(&secret))?;
    let account = state.notifier.db().user(&tenant, &user)?.and_then(|u| u.email).unwrap_or(user);
    Ok(Json(json!({"secret": secret, "otpauth_url": totp::url(&secret, &account)})))
}

/// `POST /v1/auth/totp/confirm` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirm {
    code: String,
}

/// `POST /v1/auth/totp/confirm`: turns the second factor on with a code
/// from the app; answers ten recovery codes (shown this once).
pub async fn totp_confirm(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    AppJson(body): AppJson<TotpConfirm, SMALL_JSON_LIMIT>,
) -> Result<Json<Value>, ApiError> {
    let (tenant, user, _) = session_user(&caller)?;
    let creds = state.access.credentials(&tenant, &user)?.unwrap_or_default();
    let Some(secret) = creds.totp_secret.filter(|_| !creds.totp_enabled) else {
        return Err(ApiError::new(StatusCode::CONFLICT, "no_totp_setup", "start with POST /v1/auth/totp"));
    };
    let now = (now_us() / 1_000_000) as u64;
    let Some(step) = totp::check(&secret, &body.code, now) else {
        return Err(ApiError::bad_request("invalid_totp", "the code does not match; check the app's clock"));
    };
    let codes = totp::recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|c| sha256_hex(c)).collect();
    state.access.enable_totp(&tenant, &user, &hashes)?;
    state.access.accept_totp_step(&tenant, &user, step)?;
    state.audit.record(&caller, &meta, "totp_enabled", Some(&user), json!({}));
    Ok(Json(json!({"enabled": true, "recovery_codes": codes})))
}

/// `DELETE /v1/auth/totp` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpDisable {
    password: String,
}

/// `DELETE /v1/auth/totp`: turns the second factor off (needs the password).
pub async fn totp_disable(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    AppJson(body): AppJson<TotpDisable, SMALL_JSON_LIMIT>,
) -> Result<StatusCode, ApiError> {
    let (tenant, user, _) = session_user(&caller)?;
    check_own_password(&state, &tenant, &user, body.password, "the password is wrong").await?;
    state.access.set_totp_secret(&tenant, &user, None)?;
    state.audit.record(&caller, &meta, "totp_disabled", Some(&user), json!({}));
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/auth/keys`: the signed-in user's own keys.
pub async fn list_own_keys(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let (tenant, user, _) = session_user(&caller)?;
    let keys: Vec<_> = state
        .store
        .catalog()
        .keys(&tenant)?
        .into_iter()
        .filter(|k| k.user_id.as_deref() == Some(user.as_str()))
        .collect();
    Ok(Json(json!({"keys": keys})))
}

/// `POST /v1/auth/keys`: a key of one's own (psql, notebooks), never with
/// more than one's role allows; revoked when the user is removed.
pub async fn create_own_key(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    AppJson(request): AppJson<KeyRequest, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let (_, user, _) = session_user(&caller)?;
    let mut new = request.to_new_key(now_us())?;
    if new.user_id.as_deref().is_some_and(|u| u != user) {
        return Err(ApiError::forbidden("your own keys belong to you; admins make keys for others"));
    }
    new.user_id = Some(user);
    check_grantable(&caller, &new.scopes)?;
    issue_key(&state, &caller, &meta, &new)
}

/// `DELETE /v1/auth/keys/{prefix}`: revokes one of one's own keys.
pub async fn revoke_own_key(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
    caller: Caller,
    meta: RequestMeta,
) -> Result<StatusCode, ApiError> {
    let (tenant, user, _) = session_user(&caller)?;
    let key = state.store.catalog().key(&tenant, &prefix)?;
    if key.user_id.as_deref() != Some(user.as_str()) {
        return Err(ApiError::not_found(format!("no key {prefix:?} of yours")));
    }
    state.store.catalog().revoke_key(&tenant, &prefix)?;
    state.audit.record(&caller, &meta, "key_revoke", Some(&prefix), json!({}));
    Ok(StatusCode::NO_CONTENT)
}

/// The base of links in emails.
pub(crate) fn public_url(state: &AppState) -> String {
    let configured = state.config.access.public_url.trim_end_matches('/');
    if configured.is_empty() {
        format!("http://{}", state.config.listen)
    } else {
        configured.to_owned()
    }
}

/// Emails a one-time link (blocking SMTP on the blocking pool): 503 when
/// email is not configured or the relay refuses.
async fn email_link(
    state: &AppState,
    tenant: &str,
    to: &str,
    subject: &str,
    intro: &str,
    link: &str,
    valid_for: std::time::Duration,
) -> Result<(), ApiError> {
    let smtp = state.config.notify.smtp.clone();
    if smtp.host.is_empty() {
        return Err(ApiError::unavailable(
            "email_not_configured",
            "email is not configured (notify.smtp.host), so no link can be sent",
            60,
        ));
    }
    let brand = state.notifier.db().branding(tenant)?;
    let hours = valid_for.as_secs().div_ceil(3600);
    let text = format!("{intro}\n\n{link}\n\nThe link works once, for {hours} hour(s).\n");
    let html = format!(
        "<p>{}</p><p><a href=\"{link}\">{link}</a></p><p>The link works once, for {hours} hour(s).</p>",
        html_escape(intro)
    );
    let email = Rendered {
        subject: subject.to_owned(),
        text,
        html,
        attachments: Vec::new(),
    };
    let to = to.to_owned();
    let id = random_secret(16);
    tokio::task::spawn_blocking(move || {
        beacon_realtime::notify::email::send(&smtp, &brand, &to, &id, &email)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| {
        tracing::warn!(error = %e, "Sending a sign-in link failed.");
        ApiError::unavailable("email_failed", "the email could not be sent; try again later", 30)
    })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `POST /v1/users/{id}/invite` (admin): emails the user a link to set a
/// password (202). Earlier invitations of the user stop working.
pub async fn invite(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let u = state
        .notifier
        .db()
        .user(&caller.tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no user {id:?}")))?;
    if u.role == UserRole::Owner {
        caller.require(crate::access::Class::Owner)?;
    }
    let email = u.email.clone().ok_or_else(|| {
        ApiError::bad_request("no_email", format!("user {id:?} has no email address"))
    })?;
    let ttl = state.config.access.invitation_ttl;
    let now = now_us();
    let token = state.access.create_link(
        &caller.tenant,
        &id,
        LinkKind::Invite,
        now,
        now + ttl.as_micros() as i64,
    )?;
    let workspace = state.store.catalog().tenant(&caller.tenant)?;
    let link = format!("{}/accept-invitation?token={token}", public_url(&state));
    email_link(
        &state,
        &caller.tenant,
        &email,
        &format!("You are invited to {} on Beacon", workspace.name),
        &format!("You have been invited to {} on Beacon as {}. Open this link to choose your password:", workspace.name, u.role),
        &link,
        ttl,
    )
    .await?;
    state.audit.record(&caller, &meta, "invitation_sent", Some(&id), json!({"email": email}));
    Ok((StatusCode::ACCEPTED, Json(json!({"invited": id, "email": email, "expires_in_s": ttl.as_secs()}))).into_response())
}

/// A one-time link's token and the password to set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    token: String,
    password: String,
}

fn link_error(e: LinkError) -> ApiError {
    match e {
        LinkError::Unknown => ApiError::bad_request("invalid_link", "this link is not valid"),
        LinkError::Expired => ApiError::new(StatusCode::GONE, "link_expired", "this link has expired; ask for a new one"),
        LinkError::Used => ApiError::new(StatusCode::GONE, "link_used", "this link was already used; ask for a new one"),
    }
}

/// Sets a password from a link (the policy is checked before the link is
/// used up, so a weak password does not waste it).
async fn set_password_by_link(
    state: &AppState,
    meta: &RequestMeta,
    body: LinkBody,
    kind: LinkKind,
    action: &str,
) -> Result<Json<Value>, ApiError> {
    if body.token.len() > 128 {
        return Err(link_error(LinkError::Unknown));
    }
    let (tenant, user) = state
        .access
        .use_link(&body.token, kind, now_us(), true)?
        .map_err(link_error)?;
    let u = state
        .notifier
        .db()
        .user(&tenant, &user)?
        .ok_or_else(|| link_error(LinkError::Unknown))?;
    password::check_policy(&body.password, u.email.as_deref(), u.name.as_deref())?;
    // Used up now (a second request racing this one gets `link_used`).
    state
        .access
        .use_link(&body.token, kind, now_us(), false)?
        .map_err(link_error)?;
    let hash = password::hash(body.password).await?;
    state.access.set_password(&tenant, &user, &hash)?;
    state
        .audit
        .append(&tenant, &format!("user:{user}"), meta, action, Some(&user), "success", json!({}));
    Ok(Json(json!({"user": user, "workspace": tenant, "password_set": true})))
}

/// `POST /v1/auth/invitations/accept`: sets the first password.
pub async fn accept_invitation(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(body): AppJson<LinkBody, SMALL_JSON_LIMIT>,
) -> Result<Json<Value>, ApiError> {
    set_password_by_link(&state, &meta, body, LinkKind::Invite, "invitation_accepted").await
}

/// `POST /v1/auth/password-reset` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
}

/// `POST /v1/auth/password-reset`: 202 whatever the address; a user with
/// it gets a link by email.
pub async fn request_reset(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJsonOrEmpty(body): AppJsonOrEmpty<ResetRequest, SMALL_JSON_LIMIT>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_lowercase();
    let ttl = state.config.access.reset_ttl;
    for (tenant, user) in state.access.users_by_email(&email)? {
        let now = now_us();
        let token = state
            .access
            .create_link(&tenant, &user, LinkKind::Reset, now, now + ttl.as_micros() as i64)?;
        let link = format!("{}/reset-password?token={token}", public_url(&state));
        let sent = email_link(
            &state,
            &tenant,
            &email,
            "Reset your Beacon password",
            "Someone (hopefully you) asked to reset your Beacon password. Open this link to choose a new one; if it was not you, ignore this email.",
            &link,
            ttl,
        )
        .await;
        let outcome = if sent.is_ok() { "success" } else { "failure" };
        state.audit.append(&tenant, &format!("email:{email}"), &meta, "password_reset_requested", Some(&user), outcome, json!({}));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response())
}

/// `POST /v1/auth/password-reset/confirm`: sets a new password; every
/// session of the user ends.
pub async fn confirm_reset(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(body): AppJson<LinkBody, SMALL_JSON_LIMIT>,
) -> Result<Json<Value>, ApiError> {
    set_password_by_link(&state, &meta, body, LinkKind::Reset, "password_reset").await
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_after_the_free_failures_and_stops_at_the_cap() {
        let max = Duration::from_secs(900);
        assert_eq!(backoff(5, 5, max), 0);
        assert_eq!(backoff(6, 5, max), 1_000_000);
        assert_eq!(backoff(8, 5, max), 4_000_000);
        assert_eq!(backoff(60, 5, max), 900_000_000);
    }
}
