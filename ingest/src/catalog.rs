//! The embedded metadata database (SQLite in the data directory).
//!
//! It holds the workspaces (tenants) and their settings, API keys (SHA-256
//! hashes only), the manifest of published Parquet files and the WAL
//! checkpoint. The manifest and the checkpoint change in one transaction, so
//! "these files are published" and "the WAL up to this sequence number is in
//! them" can never disagree after a crash.
//!
//! Keys are 32 random base62 characters (190 bits), so a plain SHA-256 is
//! enough to make a stolen database useless (no password stretching needed).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The key presets of `beacon keys create --role` and of the keys made
/// with a workspace: `write` (ingest), `read` (query and realtime),
/// `admin`. Stored as [`Scope`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Send events only. Safe to embed in a web page.
    Write,
    /// Query and subscribe.
    Read,
    /// Everything for its workspace but managing owners.
    Admin,
}

impl Role {
    /// Name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    /// Parses `write`, `read` or `admin`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "write" => Some(Self::Write),
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The scopes of the preset.
    pub fn scopes(self) -> Vec<Scope> {
        match self {
            Self::Write => vec![Scope::Ingest],
            Self::Read => vec![Scope::Query, Scope::Realtime],
            Self::Admin => vec![Scope::Admin],
        }
    }
}

/// What a person may do in a workspace, least to most. What each role
/// may call is the access table of the API (`api/src/access/mod.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserRole {
    /// Dashboards and their own inbox.
    Viewer,
    /// Also SQL, analytics, exports, their own alert rules.
    Analyst,
    /// Also settings, users, keys, webhooks, every alert rule, reports.
    Admin,
    /// Everything, including managing owners.
    Owner,
}

impl UserRole {
    /// Every role, least to most.
    pub const ALL: [Self; 4] = [Self::Viewer, Self::Analyst, Self::Admin, Self::Owner];

    /// Name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Analyst => "analyst",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Parses a role name (case insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for UserRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for UserRole {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UserRole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown role {s:?}: use viewer, analyst, admin or owner"
            ))
        })
    }
}

/// What a key may do: `ingest` (send events), `query` (SQL, analytics,
/// exports), `realtime` (WebSocket/SSE channels, users' inboxes), `admin`
/// (everything but managing owners), or `role:<role>` (what a person of
/// that role may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Send events.
    Ingest,
    /// SQL, analytics, exports, dashboards.
    Query,
    /// Real-time channels and users' inboxes.
    Realtime,
    /// Workspace administration (and ingest).
    Admin,
    /// What a person of the role may do.
    Role(UserRole),
}

impl Scope {
    /// Parses `ingest`, `query`, `realtime`, `admin` or `role:<role>`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "ingest" => Some(Self::Ingest),
            "query" => Some(Self::Query),
            "realtime" => Some(Self::Realtime),
            "admin" => Some(Self::Admin),
            other => other
                .strip_prefix("role:")
                .and_then(UserRole::parse)
                .map(Self::Role),
        }
    }

    /// Name as stored and shown.
    pub fn name(self) -> String {
        match self {
            Self::Ingest => "ingest".into(),
            Self::Query => "query".into(),
            Self::Realtime => "realtime".into(),
            Self::Admin => "admin".into(),
            Self::Role(r) => format!("role:{}", r.as_str()),
        }
    }

    /// Parses a stored, comma-separated list (unknown names are dropped:
    /// they grant nothing).
    pub fn parse_list(s: &str) -> Vec<Self> {
        s.split(',').filter_map(Self::parse).collect()
    }

    /// The stored form of a list.
    pub fn join(scopes: &[Self]) -> String {
        scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown scope {s:?}: use ingest, query, realtime, admin or role:<viewer|analyst|admin|owner>"
            ))
        })
    }
}

fn key_prefix(scopes: &[Scope]) -> &'static str {
    if scopes == [Scope::Ingest] {
        "bk_w_"
    } else if scopes
        .iter()
        .any(|s| matches!(s, Scope::Admin | Scope::Role(UserRole::Admin | UserRole::Owner)))
    {
        "bk_a_"
    } else {
        "bk_r_"
    }
}

/// A workspace and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Stable id (`ws_...`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time, microseconds since the epoch.
    pub created_at_us: i64,
    /// IANA business time zone.
    pub timezone: String,
    /// ISO 4217 business currency.
    pub currency: String,
    /// First day of the week (`monday` or `sunday`, ...).
    pub week_start: String,
    /// Days of events to keep; `None` keeps everything.
    pub retention_days: Option<u32>,
}

/// A key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// First characters of the key, enough to recognise it.
    pub prefix: String,
    /// Workspace.
    pub tenant_id: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// What it is for, as its creator wrote.
    pub label: Option<String>,
    /// The user it belongs to (revoked with the user; never more than the
    /// user's role allows), or none for a workspace key.
    pub user_id: Option<String>,
    /// Creation time, microseconds since the epoch.
    pub created_at_us: i64,
    /// When it stops working, if it expires.
    pub expires_at_us: Option<i64>,
    /// When it was last used (to the minute).
    pub last_used_at_us: Option<i64>,
    /// Revocation time, if revoked.
    pub revoked_at_us: Option<i64>,
}

/// What a new key is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewKey {
    /// Its scopes (at least one).
    pub scopes: Vec<Scope>,
    /// A label.
    pub label: Option<String>,
    /// The user it belongs to.
    pub user_id: Option<String>,
    /// When it expires.
    pub expires_at_us: Option<i64>,
}

impl From<Role> for NewKey {
    fn from(role: Role) -> Self {
        Self {
            scopes: role.scopes(),
            ..Self::default()
        }
    }
}

/// A freshly created key: the only time the secret is visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedKey {
    /// The secret.
    pub key: String,
    /// Its listing prefix.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it expires.
    pub expires_at_us: Option<i64>,
}

/// One published Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMeta {
    /// Path relative to the data directory.
    pub path: String,
    /// Workspace.
    pub tenant_id: String,
    /// UTC day of the events (`YYYY-MM-DD`), or UTC month (`YYYY-MM`) of a
    /// file made by cold compaction.
    pub date: String,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Smallest event timestamp (µs).
    pub min_ts_us: i64,
    /// Largest event timestamp (µs).
    pub max_ts_us: i64,
    /// Largest receive time (µs), for rebuilding the dedupe window.
    pub max_received_us: i64,
}

const SCHEMA_VERSION: i32 = 3;

const MIGRATION_1: &str = "
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    currency TEXT NOT NULL DEFAULT 'USD',
    week_start TEXT NOT NULL DEFAULT 'monday',
    retention_days INTEGER
);
CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    role TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    revoked_at_us INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
CREATE TABLE files (
    path TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    date TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    min_ts_us INTEGER NOT NULL,
    max_ts_us INTEGER NOT NULL,
    max_received_us INTEGER NOT NULL
);
CREATE INDEX files_tenant_date ON files(tenant_id, date);
CREATE TABLE wal_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO wal_checkpoint (id, seq) VALUES (1, 0);
";

/// Keys get scopes, a label, an owner, an expiry and a last-used time;
/// the keys made before keep what their role allowed (`write`: ingest;
/// `read`: query and realtime; `admin`: admin).
const MIGRATION_2: &str = "
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN label TEXT;
ALTER TABLE api_keys ADD COLUMN user_id TEXT;
ALTER TABLE api_keys ADD COLUMN expires_at_us INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_at_us INTEGER;
UPDATE api_keys SET scopes = CASE role WHEN 'write' THEN 'ingest' WHEN 'read' THEN 'query,realtime' ELSE 'admin' END;
CREATE INDEX api_keys_user ON api_keys(tenant_id, user_id);
";

/// Deleted workspaces: the id is never given again (ids are random), and
/// the write-ahead log's records of a deleted workspace are skipped on
/// replay (they stay in segments until the next flush checkpoints past
/// them).
const MIGRATION_3: &str = "
CREATE TABLE deleted_tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    deleted_at_us INTEGER NOT NULL,
    deleted_by TEXT
);
";

/// The migrations after the first, by the `user_version` they bring.
const MIGRATIONS: &[(i32, &str)] = &[(2, MIGRATION_2), (3, MIGRATION_3)];

/// Handle to the metadata database. Cheap operations only; callers on async
/// threads accept a short blocking section (indexed single-row statements).
#[derive(Debug)]
pub struct Catalog {
    conn: Mutex<Db>,
    path: PathBuf,
}

/// The connection and what is cached of it, under one lock: the key cache
/// is only consistent with the connection it was read through.
#[derive(Debug)]
struct Db {
    conn: Connection,
    /// Keys found by [`Catalog::lookup_key`], so that authenticating a
    /// request is a hash, a `PRAGMA data_version` and a map lookup instead
    /// of hashing to hex and an indexed query (which was 5% of the
    /// server's CPU on a stream of small ingest requests).
    keys: KeyCache,
}

impl std::ops::Deref for Db {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Positive key lookups by SHA-256 of the secret (the secret itself is not
/// kept). Exact, not a TTL: every lookup reads SQLite's `data_version`,
/// which changes when another connection (a `beacon` command on the same
/// data directory, or the notification inbox's own connection) commits,
/// and [`Catalog::revoke_key`] empties the cache, so a revoked key is
/// refused at once. A cached [`KeyInfo`] can only go stale by revocation
/// or by deleting its workspace (nothing changes a key's
/// role or workspace); both empty the cache, as any new method that
/// changes a key must.
#[derive(Debug, Default)]
struct KeyCache {
    data_version: i64,
    entries: HashMap<[u8; 32], KeyInfo>,
}

/// How often a key's `last_used_at_us` is written: once a minute at most,
/// so that authenticating a stream of requests stays a map lookup.
const LAST_USED_RESOLUTION_US: i64 = 60_000_000;

/// The columns [`key_from_row`] reads.
const KEY_COLUMNS: &str = "prefix, tenant_id, scopes, label, user_id, created_at_us, expires_at_us, last_used_at_us, revoked_at_us";

/// Most keys [`KeyCache`] holds; past it lookups go to SQLite.
const MAX_CACHED_KEYS: usize = 10_000;

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// SHA-256 of a key, hex.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()).into())
}

fn hex(digest: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A random secret of `len` base62 characters (5.95 bits each): keys here,
/// and the API's link tokens, recovery codes and CSRF tokens.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Catalog {
    /// Opens (creating and migrating if needed) `dir/beacon.sqlite`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("beacon.sqlite");
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 1 {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {MIGRATION_1} PRAGMA user_version = 1; COMMIT;"
            ))?;
        }
        for &(target, migration) in MIGRATIONS {
            if version >= target {
                continue;
            }
            // Re-read inside the write transaction: two processes opening
            // the same file at once apply it once.
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let now: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            let applied = if now < target {
                conn.execute_batch(&format!("{migration} PRAGMA user_version = {target};"))
            } else {
                Ok(())
            };
            match applied {
                Ok(()) => conn.execute_batch("COMMIT")?,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
            }
        }
        debug_assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
        Ok(Self {
            conn: Mutex::new(Db {
                conn,
                keys: KeyCache::default(),
            }),
            path,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a workspace with one write key and one admin key.
    pub fn create_tenant(&self, name: &str) -> Result<(Tenant, Vec<IssuedKey>)> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::InvalidSetting {
                name: "name".into(),
                reason: "must be 1 to 200 characters".into(),
            });
        }
        let tenant = Tenant {
            id: format!("ws_{}", random_token(16).to_ascii_lowercase()),
            name: name.to_owned(),
            created_at_us: now_us(),
            timezone: "UTC".into(),
            currency: "USD".into(),
            week_start: "monday".into(),
            retention_days: None,
        };
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO tenants (id, name, created_at_us) VALUES (?1, ?2, ?3)",
            params![tenant.id, tenant.name, tenant.created_at_us],
        )?;
        let mut keys = Vec::new();
        for role in [Role::Write, Role::Admin] {
            keys.push(insert_key(&tx, &tenant.id, &role.into())?);
        }
        tx.commit()?;
        Ok((tenant, keys))
    }

    /// All workspaces.
    pub fn tenants(&self) -> Result<Vec<Tenant>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, name, created_at_us, timezone, currency, week_start, retention_days FROM tenants ORDER BY created_at_us",
        )?;
        let rows = stmt.query_map([], tenant_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One workspace.
    pub fn tenant(&self, id: &str) -> Result<Tenant> {
        let conn = self.conn.lock();
        conn.query_row(
            "SELECT id, name, created_at_us, timezone, currency, week_start, retention_days FROM tenants WHERE id = ?1",
            [id],
            tenant_from_row,
        )
        .optional()?
        .ok_or_else(|| Error::UnknownTenant(id.to_owned()))
    }

    /// Finds a workspace by id or by exact name.
    pub fn find_tenant(&self, id_or_name: &str) -> Result<Tenant> {
        match self.tenant(id_or_name) {
            Err(Error::UnknownTenant(_)) => {
                let conn = self.conn.lock();
                conn.query_row(
                    "SELECT id, name, created_at_us, timezone, currency, week_start, retention_days FROM tenants WHERE name = ?1 ORDER BY created_at_us LIMIT 1",
                    [id_or_name],
                    tenant_from_row,
                )
                .optional()?
                .ok_or_else(|| Error::UnknownTenant(id_or_name.to_owned()))
            }
            other => other,
        }
    }

    /// Stores new settings for a workspace (validated by the caller).
    pub fn update_tenant(&self, tenant: &Tenant) -> Result<()> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "UPDATE tenants SET name = ?2, timezone = ?3, currency = ?4, week_start = ?5, retention_days = ?6 WHERE id = ?1",
            params![
                tenant.id,
                tenant.name,
                tenant.timezone,
                tenant.currency,
                tenant.week_start,
                tenant.retention_days
            ],
        )?;
        if n == 0 {
            return Err(Error::UnknownTenant(tenant.id.clone()));
        }
        Ok(())
    }

    /// Issues a new key of a preset.
    pub fn create_key(&self, tenant_id: &str, role: Role) -> Result<IssuedKey> {
        self.create_scoped_key(tenant_id, &role.into())
    }

    /// Issues a new key.
    pub fn create_scoped_key(&self, tenant_id: &str, new: &NewKey) -> Result<IssuedKey> {
        if new.scopes.is_empty() {
            return Err(Error::InvalidSetting {
                name: "scopes".into(),
                reason: "a key needs at least one scope".into(),
            });
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM tenants WHERE id = ?1", [tenant_id], |_| {
                Ok(())
            })
            .optional()?
            .is_some();
        if !exists {
            return Err(Error::UnknownTenant(tenant_id.to_owned()));
        }
        let key = insert_key(&tx, tenant_id, new)?;
        tx.commit()?;
        Ok(key)
    }

    /// Keys of a workspace (including revoked ones).
    pub fn keys(&self, tenant_id: &str) -> Result<Vec<KeyInfo>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at_us"
        ))?;
        let rows = stmt.query_map([tenant_id], key_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One key of a workspace by its prefix.
    pub fn key(&self, tenant_id: &str, prefix: &str) -> Result<KeyInfo> {
        let conn = self.conn.lock();
        conn.query_row(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?1 AND prefix = ?2"),
            params![tenant_id, prefix],
            key_from_row,
        )
        .optional()?
        .ok_or_else(|| Error::UnknownKey(prefix.to_owned()))
    }

    /// Revokes the key with `prefix` in a workspace.
    pub fn revoke_key(&self, tenant_id: &str, prefix: &str) -> Result<()> {
        let mut conn = self.conn.lock();
        // This connection's own commits leave `data_version` as it is.
        conn.keys.entries.clear();
        let n = conn.execute(
            "UPDATE api_keys SET revoked_at_us = ?3 WHERE tenant_id = ?1 AND prefix = ?2 AND revoked_at_us IS NULL",
            params![tenant_id, prefix, now_us()],
        )?;
        if n == 0 {
            return Err(Error::UnknownKey(prefix.to_owned()));
        }
        Ok(())
    }

    /// Revokes every key of a user; returns how many.
    pub fn revoke_user_keys(&self, tenant_id: &str, user_id: &str) -> Result<usize> {
        let mut conn = self.conn.lock();
        conn.keys.entries.clear();
        Ok(conn.execute(
            "UPDATE api_keys SET revoked_at_us = ?3 WHERE tenant_id = ?1 AND user_id = ?2 AND revoked_at_us IS NULL",
            params![tenant_id, user_id, now_us()],
        )?)
    }

    /// Rotates a key: issues a new key like it (scopes, label, user,
    /// expiry) and lets the old one work for `overlap_us` more (or until
    /// its own expiry, if sooner), so that clients can switch over.
    pub fn rotate_key(&self, tenant_id: &str, prefix: &str, overlap_us: i64) -> Result<IssuedKey> {
        let mut conn = self.conn.lock();
        conn.keys.entries.clear();
        let tx = conn.transaction()?;
        let now = now_us();
        let old = tx
            .query_row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?1 AND prefix = ?2 AND revoked_at_us IS NULL AND (expires_at_us IS NULL OR expires_at_us > ?3)"
                ),
                params![tenant_id, prefix, now],
                key_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::UnknownKey(prefix.to_owned()))?;
        let key = insert_key(
            &tx,
            tenant_id,
            &NewKey {
                scopes: old.scopes.clone(),
                label: old.label.clone(),
                user_id: old.user_id.clone(),
                expires_at_us: old.expires_at_us,
            },
        )?;
        let until = now.saturating_add(overlap_us.max(0));
        tx.execute(
            "UPDATE api_keys SET expires_at_us = min(coalesce(expires_at_us, ?3), ?3) WHERE tenant_id = ?1 AND prefix = ?2",
            params![tenant_id, prefix, until],
        )?;
        tx.commit()?;
        Ok(key)
    }

    /// Looks a secret key up; `None` if unknown, revoked or expired. Notes
    /// the key's use, at most once a minute.
    pub fn lookup_key(&self, key: &str) -> Result<Option<KeyInfo>> {
        if key.len() > 128 {
            return Ok(None);
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let now = now_us();
        let mut db = self.conn.lock();
        let Db { conn, keys: cache } = &mut *db;
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if cache.data_version != version {
            cache.entries.clear();
            cache.data_version = version;
        }
        let found = match cache.entries.get(&digest) {
            Some(info) => Some(info.clone()),
            None => {
                let found = conn
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1 AND revoked_at_us IS NULL"
                    ))?
                    .query_row([hex(&digest)], key_from_row)
                    .optional()?;
                if let Some(info) = &found
                    && cache.entries.len() < MAX_CACHED_KEYS
                {
                    cache.entries.insert(digest, info.clone());
                }
                found
            }
        };
        let Some(mut info) = found else {
            return Ok(None);
        };
        if info.expires_at_us.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        if info.last_used_at_us.is_none_or(|at| now - at >= LAST_USED_RESOLUTION_US) {
            conn.prepare_cached("UPDATE api_keys SET last_used_at_us = ?2 WHERE key_hash = ?1")?
                .execute(params![hex(&digest), now])?;
            info.last_used_at_us = Some(now);
            if let Some(cached) = cache.entries.get_mut(&digest) {
                cached.last_used_at_us = Some(now);
            }
        }
        Ok(Some(info))
    }

    /// The WAL sequence number up to which events are in published files.
    pub fn checkpoint(&self) -> Result<u64> {
        let conn = self.conn.lock();
        let seq: i64 = conn.query_row("SELECT seq FROM wal_checkpoint WHERE id = 1", [], |r| {
            r.get(0)
        })?;
        Ok(seq as u64)
    }

    /// All published files.
    pub fn files(&self) -> Result<Vec<FileMeta>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT path, tenant_id, date, rows, bytes, min_ts_us, max_ts_us, max_received_us FROM files ORDER BY tenant_id, date, path",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FileMeta {
                path: r.get(0)?,
                tenant_id: r.get(1)?,
                date: r.get(2)?,
                rows: r.get::<_, i64>(3)? as u64,
                bytes: r.get::<_, i64>(4)? as u64,
                min_ts_us: r.get(5)?,
                max_ts_us: r.get(6)?,
                max_received_us: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Atomically publishes `added`, unpublishes `removed` and, when given,
    /// moves the WAL checkpoint to `checkpoint`.
    pub fn commit_files(
        &self,
        added: &[FileMeta],
        removed: &[String],
        checkpoint: Option<u64>,
    ) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO files (path, tenant_id, date, rows, bytes, min_ts_us, max_ts_us, max_received_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for f in added {
                insert.execute(params![
                    f.path,
                    f.tenant_id,
                    f.date,
                    f.rows as i64,
                    f.bytes as i64,
                    f.min_ts_us,
                    f.max_ts_us,
                    f.max_received_us
                ])?;
            }
            let mut delete = tx.prepare("DELETE FROM files WHERE path = ?1")?;
            for path in removed {
                delete.execute([path])?;
            }
            if let Some(seq) = checkpoint {
                tx.execute(
                    "UPDATE wal_checkpoint SET seq = MAX(seq, ?1) WHERE id = 1",
                    [seq as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes a workspace from the catalog in one transaction: its keys,
    /// its settings and its file manifest go, and a tombstone stays
    /// ([`Catalog::deleted_tenants`]). Returns the paths of the files it
    /// held (no longer published: the caller deletes them). The workspace
    /// is gone for every lookup once this returns.
    pub fn delete_tenant(&self, id: &str, deleted_by: Option<&str>) -> Result<Vec<String>> {
        let mut conn = self.conn.lock();
        conn.keys.entries.clear();
        let tx = conn.transaction()?;
        let name: String = tx
            .query_row("SELECT name FROM tenants WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| Error::UnknownTenant(id.to_owned()))?;
        let paths: Vec<String> = {
            let mut stmt = tx.prepare("SELECT path FROM files WHERE tenant_id = ?1")?;
            stmt.query_map([id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        tx.execute("DELETE FROM files WHERE tenant_id = ?1", [id])?;
        tx.execute("DELETE FROM api_keys WHERE tenant_id = ?1", [id])?;
        tx.execute("DELETE FROM tenants WHERE id = ?1", [id])?;
        tx.execute(
            "INSERT INTO deleted_tenants (id, name, deleted_at_us, deleted_by) VALUES (?1, ?2, ?3, ?4)",
            params![id, name, now_us(), deleted_by],
        )?;
        tx.commit()?;
        Ok(paths)
    }

    /// The ids of deleted workspaces.
    pub fn deleted_tenants(&self) -> Result<HashSet<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT id FROM deleted_tenants")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }
}

fn insert_key(tx: &rusqlite::Transaction<'_>, tenant_id: &str, new: &NewKey) -> Result<IssuedKey> {
    let key = format!("{}{}", key_prefix(&new.scopes), random_token(32));
    let prefix = key[..12].to_owned();
    // `role` is the pre-scopes column (NOT NULL); new keys say `scoped`.
    tx.execute(
        "INSERT INTO api_keys (key_hash, prefix, tenant_id, role, created_at_us, scopes, label, user_id, expires_at_us) VALUES (?1, ?2, ?3, 'scoped', ?4, ?5, ?6, ?7, ?8)",
        params![
            hash_key(&key),
            prefix,
            tenant_id,
            now_us(),
            Scope::join(&new.scopes),
            new.label,
            new.user_id,
            new.expires_at_us
        ],
    )?;
    Ok(IssuedKey {
        key,
        prefix,
        scopes: new.scopes.clone(),
        expires_at_us: new.expires_at_us,
    })
}

fn tenant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at_us: r.get(2)?,
        timezone: r.get(3)?,
        currency: r.get(4)?,
        week_start: r.get(5)?,
        retention_days: r.get(6)?,
    })
}

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    let scopes: String = r.get(2)?;
    Ok(KeyInfo {
        prefix: r.get(0)?,
        tenant_id: r.get(1)?,
        scopes: Scope::parse_list(&scopes),
        label: r.get(3)?,
        user_id: r.get(4)?,
        created_at_us: r.get(5)?,
        expires_at_us: r.get(6)?,
        last_used_at_us: r.get(7)?,
        revoked_at_us: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_and_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path()).expect("open");
        let (tenant, keys) = catalog.create_tenant("Shop").expect("create");
        assert_eq!(keys.len(), 2);
        let write = &keys[0];
        assert!(write.key.starts_with("bk_w_"));
        let info = catalog
            .lookup_key(&write.key)
            .expect("lookup")
            .expect("found");
        assert_eq!(info.tenant_id, tenant.id);
        assert_eq!(info.scopes, vec![Scope::Ingest]);
        assert!(info.last_used_at_us.is_some(), "a lookup notes the use");
        assert!(catalog.lookup_key("bk_w_nope").expect("lookup").is_none());
        // The secret itself is not stored.
        let mut raw = Vec::new();
        for entry in std::fs::read_dir(dir.path()).expect("ls") {
            raw.extend(std::fs::read(entry.expect("entry").path()).expect("read db"));
        }
        let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(write.key.as_bytes()));
        assert!(contains(hash_key(&write.key).as_bytes()));
        catalog
            .revoke_key(&tenant.id, &write.prefix)
            .expect("revoke");
        assert!(catalog.lookup_key(&write.key).expect("lookup").is_none());
        // Reopen: migrations are idempotent.
        drop(catalog);
        let catalog = Catalog::open(dir.path()).expect("reopen");
        assert_eq!(catalog.find_tenant("Shop").expect("by name").id, tenant.id);
    }

    /// A found key is cached, and a revocation is seen at once whether it
    /// was made through the same catalog or by another process (another
    /// connection to the same database, as a `beacon keys revoke` command).
    #[test]
    fn cached_keys_see_revocations_from_any_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Catalog::open(dir.path()).expect("open");
        let (tenant, keys) = server.create_tenant("Shop").expect("create");
        let (write, admin) = (&keys[0], &keys[1]);
        for _ in 0..2 {
            assert!(server.lookup_key(&write.key).expect("lookup").is_some());
            assert!(server.lookup_key(&admin.key).expect("lookup").is_some());
        }
        assert_eq!(
            server.conn.lock().keys.entries.len(),
            2,
            "both found keys are cached"
        );
        let command = Catalog::open(dir.path()).expect("second connection");
        command
            .revoke_key(&tenant.id, &write.prefix)
            .expect("revoke elsewhere");
        assert!(server.lookup_key(&write.key).expect("lookup").is_none());
        assert!(server.lookup_key(&admin.key).expect("lookup").is_some());
        server
            .revoke_key(&tenant.id, &admin.prefix)
            .expect("revoke here");
        assert!(server.lookup_key(&admin.key).expect("lookup").is_none());
        // A key created elsewhere after a miss is found.
        let late = command.create_key(&tenant.id, Role::Read).expect("new key");
        assert!(server.lookup_key(&late.key).expect("lookup").is_some());
    }

    /// A database made before scopes keeps its keys, each with what its
    /// role allowed.
    #[test]
    fn keys_made_before_scopes_keep_their_powers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("beacon.sqlite");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(&format!(
                "BEGIN; {MIGRATION_1} PRAGMA user_version = 1; COMMIT;"
            ))
            .expect("version 1 schema");
            conn.execute("INSERT INTO tenants (id, name, created_at_us) VALUES ('ws_1', 'Shop', 1)", [])
                .expect("tenant");
            for (key, role) in [("bk_w_old", "write"), ("bk_r_old", "read"), ("bk_a_old", "admin")] {
                conn.execute(
                    "INSERT INTO api_keys (key_hash, prefix, tenant_id, role, created_at_us) VALUES (?1, ?2, 'ws_1', ?3, 1)",
                    params![hash_key(key), key, role],
                )
                .expect("key");
            }
        }
        let catalog = Catalog::open(dir.path()).expect("upgrade");
        let scopes = |key: &str| catalog.lookup_key(key).expect("lookup").expect("found").scopes;
        assert_eq!(scopes("bk_w_old"), vec![Scope::Ingest]);
        assert_eq!(scopes("bk_r_old"), vec![Scope::Query, Scope::Realtime]);
        assert_eq!(scopes("bk_a_old"), vec![Scope::Admin]);
        drop(catalog);
        assert!(Catalog::open(dir.path()).is_ok(), "reopening migrates nothing again");
    }

    #[test]
    fn expired_keys_fail_and_rotation_overlaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(dir.path()).expect("open");
        let (tenant, _) = catalog.create_tenant("Shop").expect("create");
        let expired = catalog
            .create_scoped_key(
                &tenant.id,
                &NewKey {
                    scopes: vec![Scope::Query],
                    expires_at_us: Some(now_us() - 1),
                    ..NewKey::default()
                },
            )
            .expect("key");
        assert!(catalog.lookup_key(&expired.key).expect("lookup").is_none());
        let old = catalog
            .create_scoped_key(
                &tenant.id,
                &NewKey {
                    scopes: vec![Scope::Role(UserRole::Analyst)],
                    label: Some("notebook".into()),
                    ..NewKey::default()
                },
            )
            .expect("key");
        assert!(old.key.starts_with("bk_r_"));
        let new = catalog.rotate_key(&tenant.id, &old.prefix, 3_600_000_000).expect("rotate");
        let info = catalog.lookup_key(&new.key).expect("lookup").expect("new works");
        assert_eq!(info.label.as_deref(), Some("notebook"));
        let old_info = catalog.lookup_key(&old.key).expect("lookup").expect("old works for the overlap");
        assert!(old_info.expires_at_us.expect("now expires") <= now_us() + 3_600_000_000);
        catalog.rotate_key(&tenant.id, &old.prefix, 0).expect("rotate with no overlap");
        assert!(catalog.lookup_key(&old.key).expect("lookup").is_none(), "expired at once");
        assert!(catalog.create_scoped_key(&tenant.id, &NewKey::default()).is_err(), "no scopes");
    }
}
