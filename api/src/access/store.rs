//! Credentials, one-time links and login failures in the metadata
//! database (the `notify_users` credential columns, `access_links`,
//! `access_login_failures`; schema in `realtime/src/db.rs`, migration 2).
//!
//! Secrets are stored only as hashes: passwords as argon2id PHC strings
//! ([`super::password`]), link tokens and recovery codes as SHA-256 (they
//! are 190-bit random strings, so no stretching is needed). The TOTP seed
//! is stored as is: the server must read it to check codes.

use std::sync::Arc;

use beacon_realtime::db::{DbError, MetaDb};
use rusqlite::{OptionalExtension, params};

/// A user's sign-in credentials.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// argon2id PHC string, if a password is set.
    pub password_hash: Option<String>,
    /// Base32 TOTP seed (set up, maybe not yet enabled).
    pub totp_secret: Option<String>,
    /// Whether sign-in needs a TOTP code.
    pub totp_enabled: bool,
    /// SHA-256 (hex) of the unused recovery codes.
    pub recovery_codes: Vec<String>,
    /// Raised to end every session of the user.
    pub session_epoch: i64,
}

/// What a one-time link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Set a first password (and so join).
    Invite,
    /// Set a new password.
    Reset,
}

impl LinkKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Reset => "reset",
        }
    }
}

/// Why a link was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// No such link (or of another kind).
    Unknown,
    /// Past its expiry.
    Expired,
    /// Already used.
    Used,
}

/// The access tables.
#[derive(Debug, Clone)]
pub struct AccessStore {
    db: Arc<MetaDb>,
}

pub use beacon_ingest::catalog::{hash_key as sha256_hex, random_token as random_secret};

impl AccessStore {
    /// The access tables of `db`.
    pub fn new(db: Arc<MetaDb>) -> Self {
        Self { db }
    }

    /// A user's credentials; `None` if there is no such user.
    pub fn credentials(&self, tenant: &str, user: &str) -> Result<Option<Credentials>, DbError> {
        self.db.with(|c| {
            c.query_row(
                "SELECT password_hash, totp_secret, totp_enabled, recovery_codes, session_epoch FROM notify_users WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, user],
                |r| {
                    let codes: String = r.get(3)?;
                    Ok(Credentials {
                        password_hash: r.get(0)?,
                        totp_secret: r.get(1)?,
                        totp_enabled: r.get::<_, i64>(2)? != 0,
                        recovery_codes: serde_json::from_str(&codes).unwrap_or_default(),
                        session_epoch: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    /// The users (workspace, id) with this email address, any workspace.
    pub fn users_by_email(&self, email: &str) -> Result<Vec<(String, String)>, DbError> {
        self.db.with(|c| {
            let mut s = c.prepare(
                "SELECT tenant_id, id FROM notify_users WHERE lower(email) = lower(?1) ORDER BY created_at_us",
            )?;
            s.query_map([email.trim()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    /// Sets a password hash and raises the session epoch (every session
    /// of the user ends); false if there is no such user.
    pub fn set_password(&self, tenant: &str, user: &str, hash: &str) -> Result<bool, DbError> {
        Ok(self.db.with(|c| {
            c.execute(
                "UPDATE notify_users SET password_hash = ?3, session_epoch = session_epoch + 1 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, user, hash],
            )
        })? > 0)
    }

    /// Ends every session of a user.
    pub fn end_sessions(&self, tenant: &str, user: &str) -> Result<(), DbError> {
        self.db.with(|c| {
            c.execute(
                "UPDATE notify_users SET session_epoch = session_epoch + 1 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, user],
            )
        })?;
        Ok(())
    }

    /// Notes a successful sign-in.
    pub fn record_login(&self, tenant: &str, user: &str, at_us: i64) -> Result<(), DbError> {
        self.db.with(|c| {
            c.execute(
                "UPDATE notify_users SET last_login_at_us = ?3 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, user, at_us],
            )
        })?;
        Ok(())
    }

    /// Accepts a TOTP step once: true when it is later than the last one
    /// accepted (a code is never accepted twice).
    pub fn accept_totp_step(&self, tenant: &str, user: &str, step: u64) -> Result<bool, DbError> {
        Ok(self.db.with(|c| {
            c.execute(
                "UPDATE notify_users SET totp_last_step = ?3 WHERE tenant_id = ?1 AND id = ?2 AND totp_last_step < ?3",
                params![tenant, user, step as i64],
            )
        })? == 1)
    }

    /// Stores a TOTP seed being set up (not enabled until confirmed).
    pub fn set_totp_secret(&self, tenant: &str, user: &str, secret: Option<&str>) -> Result<(), DbError> {
        self.db.with(|c| {
            c.execute(
                "UPDATE notify_users SET totp_secret = ?3, totp_enabled = 0, recovery_codes = '[]' WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, user, secret],
            )
        })?;
        Ok(())
    }

    /// Turns the second factor on with these recovery code hashes.
    pub fn enable_totp(&self, tenant: &str, user: &str, code_hashes: &[String]) -> Result<(), DbError> {
        let codes = serde_json::to_string(code_hashes).unwrap_or_else(|_| "[]".into());
        self.db.with(|c| {
            c.execute(
                "UPDATE notify_users SET totp_enabled = 1, recovery_codes = ?3 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, user, codes],
            )
        })?;
        Ok(())
    }

    /// Uses up a recovery code; false if it is not one of the user's.
    pub fn use_recovery_code(&self, tenant: &str, user: &str, code: &str) -> Result<bool, DbError> {
        let hash = sha256_hex(code.trim());
        self.db.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let codes: Option<String> = tx
                .query_row(
                    "SELECT recovery_codes FROM notify_users WHERE tenant_id = ?1 AND id = ?2",
                    params![tenant, user],
                    |r| r.get(0),
                )
                .optional()?;
            let mut codes: Vec<String> = codes
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default();
            let Some(i) = codes.iter().position(|c| *c == hash) else {
                return Ok(false);
            };
            codes.remove(i);
            tx.execute(
                "UPDATE notify_users SET recovery_codes = ?3 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, user, serde_json::to_string(&codes).unwrap_or_else(|_| "[]".into())],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Makes a one-time link token for a user, valid until `expires_at_us`;
    /// earlier unused links of the same kind for the user stop working.
    pub fn create_link(
        &self,
        tenant: &str,
        user: &str,
        kind: LinkKind,
        now_us: i64,
        expires_at_us: i64,
    ) -> Result<String, DbError> {
        let token = random_secret(32);
        let hash = sha256_hex(&token);
        self.db.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE access_links SET used_at_us = ?4 WHERE tenant_id = ?1 AND user_id = ?2 AND kind = ?3 AND used_at_us IS NULL",
                params![tenant, user, kind.as_str(), now_us],
            )?;
            tx.execute(
                "INSERT INTO access_links (token_hash, tenant_id, user_id, kind, created_at_us, expires_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![hash, tenant, user, kind.as_str(), now_us, expires_at_us],
            )?;
            tx.commit()
        })?;
        Ok(token)
    }

    /// Uses a link: the (workspace, user) it was for, once (`peek`: only
    /// checks it).
    pub fn use_link(
        &self,
        token: &str,
        kind: LinkKind,
        now_us: i64,
        peek: bool,
    ) -> Result<Result<(String, String), LinkError>, DbError> {
        let hash = sha256_hex(token.trim());
        self.db.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row: Option<(String, String, String, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT tenant_id, user_id, kind, expires_at_us, used_at_us FROM access_links WHERE token_hash = ?1",
                    [&hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((tenant, user, stored_kind, expires, used)) = row else {
                return Ok(Err(LinkError::Unknown));
            };
            if stored_kind != kind.as_str() {
                return Ok(Err(LinkError::Unknown));
            }
            if used.is_some() {
                return Ok(Err(LinkError::Used));
            }
            if expires <= now_us {
                return Ok(Err(LinkError::Expired));
            }
            if peek {
                return Ok(Ok((tenant, user)));
            }
            tx.execute(
                "UPDATE access_links SET used_at_us = ?2 WHERE token_hash = ?1",
                params![hash, now_us],
            )?;
            tx.commit()?;
            Ok(Ok((tenant, user)))
        })
    }

    /// Until when sign-in is blocked for a throttle scope (µs; 0: not).
    pub fn blocked_until(&self, scope: &str) -> Result<i64, DbError> {
        self.db.with(|c| {
            c.query_row(
                "SELECT blocked_until_us FROM access_login_failures WHERE scope = ?1",
                [scope],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
        })
    }

    /// Counts a failed sign-in for a throttle scope and blocks it for
    /// `backoff(failures)`; failures older than `forget_us` are forgotten
    /// first. Returns the failures counted.
    pub fn record_failure(
        &self,
        scope: &str,
        now_us: i64,
        forget_us: i64,
        backoff: impl Fn(i64) -> i64,
    ) -> Result<i64, DbError> {
        self.db.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let previous: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT failures, last_failure_us FROM access_login_failures WHERE scope = ?1",
                    [scope],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let failures = match previous {
                Some((n, last)) if now_us - last < forget_us => n + 1,
                _ => 1,
            };
            let blocked_until = now_us + backoff(failures);
            tx.execute(
                "INSERT INTO access_login_failures (scope, failures, last_failure_us, blocked_until_us) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (scope) DO UPDATE SET failures = excluded.failures, last_failure_us = excluded.last_failure_us, blocked_until_us = excluded.blocked_until_us",
                params![scope, failures, now_us, blocked_until],
            )?;
            tx.commit()?;
            Ok(failures)
        })
    }

    /// Forgets the failures of a throttle scope (after a success).
    pub fn clear_failures(&self, scope: &str) -> Result<(), DbError> {
        self.db.with(|c| {
            c.execute("DELETE FROM access_login_failures WHERE scope = ?1", [scope])
        })?;
        Ok(())
    }
}
