//! Who is calling: API keys from `Authorization` (HTTP Basic with the key as
//! user name, as Segment libraries send it, or `Bearer`), or from a Segment
//! body's `writeKey`.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use beacon_ingest::Role;

use crate::error::ApiError;
use crate::server::AppState;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Workspace id.
    pub tenant: String,
    /// Role of the key.
    pub role: Role,
}

/// The key in the `Authorization` header, if any.
pub fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::unauthorized(
            "invalid_authorization",
            "Authorization header must be \"Basic <base64(key:)>\" or \"Bearer <key>\"",
        )
    };
    let value = value.to_str().map_err(|_| bad())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let key = if user.is_empty() { password } else { user };
        return Ok(Some(key.to_owned()));
    }
    Err(bad())
}

/// Authenticates `key` (from the header, else `body_key`).
pub fn authenticate(state: &AppState, key: Option<&str>) -> Result<Principal, ApiError> {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(ApiError::unauthorized(
            "missing_credentials",
            "an API key is required (HTTP Basic with the key as user name, or Bearer)",
        ));
    };
    match state.store.catalog().lookup_key(key)? {
        Some(info) => Ok(Principal {
            tenant: info.tenant_id,
            role: info.role,
        }),
        None => Err(ApiError::unauthorized(
            "invalid_key",
            "unknown or revoked API key",
        )),
    }
}

/// Authenticates from the headers alone.
pub fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let key = header_key(headers)?;
    authenticate(state, key.as_deref())
}

impl Principal {
    /// Fails with 403 unless the key has one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "{what} needs a {} key; this is a {} key",
            allowed.join(" or "),
            self.role.as_str()
        )))
    }
}
