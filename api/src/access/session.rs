//! Sign-in sessions: tower-sessions with its SQLite store
//! (`sessions.sqlite` in the data directory, apart from `beacon.sqlite` so
//! that a session's expiry being pushed on each request never waits on a
//! catalog write).
//!
//! The cookie (`beacon_session`) is HttpOnly, SameSite=Lax, Secure when
//! the listener serves TLS (or `access.secure_cookies`), and holds only the
//! session id (128 random bits). A session ends after `access.session_idle`
//! without requests (the last request's time is kept in the session,
//! written at most every quarter of the limit or minute, which also pushes
//! the store's own expiry: tower-sessions counts only changes), after
//! `access.session_absolute` since sign-in whatever the activity (checked
//! here), at sign-out, and everywhere at once when the user's session
//! epoch is raised (sign out everywhere, a new password, removal).
//!
//! Cookie-authenticated changes need the session's CSRF token in
//! `X-CSRF-Token` (synchronizer token, checked by [`super::gate`]); sign-in
//! takes only `application/json` bodies, which a cross-site form cannot
//! send.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tower_sessions::cookie::SameSite;
use tower_sessions::{ExpiredDeletion, Expiry, Session, SessionManagerLayer};
use tower_sessions_rusqlite_store::RusqliteStore;

use super::{Caller, Who};
use crate::config::AccessConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "beacon_session";
/// The session key of the signed-in state.
const KEY: &str = "signed_in";

/// What a session remembers of its sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    /// Workspace.
    pub tenant: String,
    /// User.
    pub user: String,
    /// The user's session epoch at sign-in.
    pub epoch: i64,
    /// Sign-in time, µs.
    pub at_us: i64,
    /// Last request, µs (written at most every quarter of the idle limit,
    /// which also pushes the stored session's expiry).
    pub seen_us: i64,
    /// The CSRF token.
    pub csrf: String,
}

/// The session layer over `dir/sessions.sqlite`, and the task that deletes
/// expired sessions every minute.
pub async fn layer(
    dir: &Path,
    config: &AccessConfig,
    tls: bool,
) -> anyhow::Result<(SessionManagerLayer<RusqliteStore>, tokio::task::JoinHandle<()>)> {
    let conn = tower_sessions_rusqlite_store::tokio_rusqlite::Connection::open(
        dir.join("sessions.sqlite"),
    )
    .await?;
    conn.call(|c| -> rusqlite::Result<()> {
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("opening sessions.sqlite: {e}"))?;
    let store = RusqliteStore::new(conn)
        .with_table_name("sessions")
        .map_err(anyhow::Error::msg)?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("creating the sessions table: {e}"))?;
    let sweeper = {
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = store
                .continuously_delete_expired(std::time::Duration::from_secs(60))
                .await
            {
                tracing::error!(error = %e, "Deleting expired sessions stopped.");
            }
        })
    };
    let idle = tower_sessions::cookie::time::Duration::seconds(
        config.session_idle.as_secs().min(i64::MAX as u64) as i64,
    );
    let layer = SessionManagerLayer::new(store)
        .with_name(COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(tls || config.secure_cookies)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(idle));
    Ok((layer, sweeper))
}

fn session_error(e: tower_sessions::session::Error) -> ApiError {
    ApiError::internal(&e)
}

/// The signed-in caller of a session, if it is still valid; an ended
/// session (absolute expiry, an older epoch, a removed user) is deleted.
pub async fn current(state: &AppState, session: &Session) -> Result<Option<Caller>, ApiError> {
    let Some(signed_in) = session.get::<SignedIn>(KEY).await.map_err(session_error)? else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp_micros();
    let absolute = state.config.access.session_absolute.as_micros() as i64;
    let idle = state.config.access.session_idle.as_micros() as i64;
    let user = state.notifier.db().user(&signed_in.tenant, &signed_in.user)?;
    let epoch = state
        .access
        .credentials(&signed_in.tenant, &signed_in.user)?
        .map(|c| c.session_epoch);
    let valid = now - signed_in.at_us < absolute
        && now - signed_in.seen_us < idle
        && epoch == Some(signed_in.epoch);
    if valid && now - signed_in.seen_us >= (idle / 4).min(60_000_000) {
        let mut seen = signed_in.clone();
        seen.seen_us = now;
        session.insert(KEY, seen).await.map_err(session_error)?;
    }
    match user {
        Some(user) if valid => Ok(Some(Caller {
            tenant: signed_in.tenant,
            who: Who::Session {
                user: user.id,
                role: user.role,
                csrf: signed_in.csrf,
            },
        })),
        _ => {
            session.flush().await.map_err(session_error)?;
            Ok(None)
        }
    }
}

/// Signs a user in on this session: a new session id (no fixation), the
/// signed-in state with a fresh CSRF token, which is returned.
pub async fn sign_in(
    session: &Session,
    tenant: &str,
    user: &str,
    epoch: i64,
) -> Result<String, ApiError> {
    session.cycle_id().await.map_err(session_error)?;
    let csrf = super::store::random_secret(32);
    let now = chrono::Utc::now().timestamp_micros();
    session
        .insert(
            KEY,
            SignedIn {
                tenant: tenant.to_owned(),
                user: user.to_owned(),
                epoch,
                at_us: now,
                seen_us: now,
                csrf: csrf.clone(),
            },
        )
        .await
        .map_err(session_error)?;
    Ok(csrf)
}

/// Ends this session (the cookie is cleared).
pub async fn sign_out(session: &Session) -> Result<(), ApiError> {
    session.flush().await.map_err(session_error)
}
