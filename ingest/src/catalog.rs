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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Send events only. Safe to embed in a web page.
    Write,
    /// Query only.
    Read,
    /// Everything for its workspace: settings, keys, queries.
    Admin,
}

impl Role {
    /// Name as stored and shown.
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

    fn key_prefix(self) -> &'static str {
        match self {
            Self::Write => "bk_w_",
            Self::Read => "bk_r_",
            Self::Admin => "bk_a_",
        }
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
    /// Role.
    pub role: Role,
    /// Creation time, microseconds since the epoch.
    pub created_at_us: i64,
    /// Revocation time, if revoked.
    pub revoked_at_us: Option<i64>,
}

/// A freshly created key: the only time the secret is visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedKey {
    /// The secret.
    pub key: String,
    /// Its listing prefix.
    pub prefix: String,
    /// Role.
    pub role: Role,
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

const SCHEMA_VERSION: i32 = 1;

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
/// today (nothing changes a key's role or workspace, nothing deletes a
/// workspace); a method that ever does must empty the cache too.
#[derive(Debug, Default)]
struct KeyCache {
    data_version: i64,
    entries: HashMap<[u8; 32], KeyInfo>,
}

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

fn random_token(len: usize) -> String {
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
                "BEGIN IMMEDIATE; {MIGRATION_1} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
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
            keys.push(insert_key(&tx, &tenant.id, role)?);
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

    /// Issues a new key.
    pub fn create_key(&self, tenant_id: &str, role: Role) -> Result<IssuedKey> {
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
        let key = insert_key(&tx, tenant_id, role)?;
        tx.commit()?;
        Ok(key)
    }

    /// Keys of a workspace (including revoked ones).
    pub fn keys(&self, tenant_id: &str) -> Result<Vec<KeyInfo>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT prefix, tenant_id, role, created_at_us, revoked_at_us FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at_us",
        )?;
        let rows = stmt.query_map([tenant_id], key_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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

    /// Looks a secret key up; `None` if unknown or revoked.
    pub fn lookup_key(&self, key: &str) -> Result<Option<KeyInfo>> {
        if key.len() > 128 {
            return Ok(None);
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut db = self.conn.lock();
        let Db { conn, keys: cache } = &mut *db;
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if cache.data_version != version {
            cache.entries.clear();
            cache.data_version = version;
        }
        if let Some(info) = cache.entries.get(&digest) {
            return Ok(Some(info.clone()));
        }
        let found = conn
            .prepare_cached(
                "SELECT prefix, tenant_id, role, created_at_us, revoked_at_us FROM api_keys WHERE key_hash = ?1 AND revoked_at_us IS NULL",
            )?
            .query_row([hex(&digest)], key_from_row)
            .optional()?;
        if let Some(info) = &found
            && cache.entries.len() < MAX_CACHED_KEYS
        {
            cache.entries.insert(digest, info.clone());
        }
        Ok(found)
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
}

fn insert_key(tx: &rusqlite::Transaction<'_>, tenant_id: &str, role: Role) -> Result<IssuedKey> {
    let key = format!("{}{}", role.key_prefix(), random_token(32));
    let prefix = key[..12].to_owned();
    tx.execute(
        "INSERT INTO api_keys (key_hash, prefix, tenant_id, role, created_at_us) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash_key(&key), prefix, tenant_id, role.as_str(), now_us()],
    )?;
    Ok(IssuedKey { key, prefix, role })
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
    let role: String = r.get(2)?;
    Ok(KeyInfo {
        prefix: r.get(0)?,
        tenant_id: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Read),
        created_at_us: r.get(3)?,
        revoked_at_us: r.get(4)?,
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
        assert_eq!(info.role, Role::Write);
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
}
