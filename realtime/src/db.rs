//! The realtime tables in the metadata database: one connection, one place
//! that opens it and migrates its schema.
//!
//! The notification tables (`notify_*`, see [`crate::notify::store`]) and
//! the alert tables (`alert_*`, see [`crate::alerts::store`]) live in
//! `beacon.sqlite`, beside the catalog's tables (workspaces, keys), on a
//! connection of their own. [`MetaDb::open`] opens the file with the
//! catalog's pragmas (WAL, `synchronous = FULL`, a 10 s busy timeout) and
//! brings the realtime schema to the newest version of [`MIGRATIONS`].
//!
//! Migrations are numbered from 1 and applied in order, each in the same
//! `BEGIN IMMEDIATE` transaction as the row that records it in
//! `realtime_migrations`; a database is never left between two versions.
//! They are tracked in that table rather than in `PRAGMA user_version`
//! (which is how `rusqlite_migration` tracks them) because the catalog
//! already owns `user_version` of the same file. Migration 1 is the schema
//! the code created before migrations existed, written with `IF NOT
//! EXISTS`, so a database made by that code is adopted as version 1
//! unchanged. A new schema change is a new entry at the end of
//! [`MIGRATIONS`]; an entry is never edited once released.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, params};

/// Name of the metadata database file in the data directory.
pub const FILE_NAME: &str = "beacon.sqlite";

/// What failed in the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened or its pragmas set.
    #[error("opening the metadata database {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A schema migration failed; the database stays at the version
    /// before it.
    #[error("migrating the realtime tables to version {version}")]
    Migrate {
        /// The version that failed.
        version: i64,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("metadata database")]
    Query(#[from] rusqlite::Error),
}

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number (1, 2, ... in order, without gaps).
    pub version: i64,
    /// What it does, for the log.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// The realtime schema, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "notification and alert tables",
        sql: MIGRATION_1,
    },
    Migration {
        version: 2,
        name: "people and access: credentials, one-time links, login throttle, audit log, rule owners",
        sql: MIGRATION_2,
    },
    Migration {
        version: 3,
        name: "embed tokens",
        sql: MIGRATION_3,
    },
    Migration {
        version: 4,
        name: "saved views and page layouts of users",
        sql: MIGRATION_4,
    },
    Migration {
        version: 5,
        name: "reports and their runs",
        sql: MIGRATION_5,
    },
    Migration {
        version: 6,
        name: "report recipients and the notification of a run",
        sql: MIGRATION_6,
    },
    Migration {
        version: 7,
        name: "the audience of a report run",
        sql: MIGRATION_7,
    },
    Migration {
        version: 8,
        name: "the workspace logo and saved SQL queries",
        sql: MIGRATION_8,
    },
];

/// The workspace's logo (PNG, JPEG or SVG bytes, checked and bounded by
/// the API), drawn on reports' first page; and the workspace's saved SQL
/// queries (a name and one read-only query, usable as report blocks).
const MIGRATION_8: &str = "
CREATE TABLE notify_logos (
    tenant_id TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    updated_at_us INTEGER NOT NULL
);
CREATE TABLE saved_queries (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    sql TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
";

/// The filters of the recipients' copy a report run is (JSON; none: the
/// report as defined).
const MIGRATION_7: &str = "
ALTER TABLE report_runs ADD COLUMN audience TEXT;
";

/// A report's recipients (user ids, JSON) and the notification that
/// delivered a run (its deliveries are the outbox's).
const MIGRATION_6: &str = "
ALTER TABLE reports ADD COLUMN recipients TEXT NOT NULL DEFAULT '[]';
ALTER TABLE report_runs ADD COLUMN notification_id TEXT;
";

/// Reports (a definition: title, relative range, filters, blocks; a cron
/// schedule in the workspace's time zone and the next run it is due) and
/// the log of their runs (`report_runs`: when, how long, size, outcome,
/// the file kept for download). A report's runs go with it.
const MIGRATION_5: &str = "
CREATE TABLE reports (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    schedule TEXT,
    format TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    next_run_us INTEGER,
    owner TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX reports_due ON reports(next_run_us) WHERE next_run_us IS NOT NULL AND paused = 0;
CREATE TABLE report_runs (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    report_id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled_for_us INTEGER,
    started_at_us INTEGER NOT NULL,
    duration_ms INTEGER,
    format TEXT NOT NULL,
    bytes INTEGER,
    rows INTEGER,
    outcome TEXT NOT NULL,
    error TEXT,
    range_from TEXT,
    range_to TEXT,
    file TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX report_runs_by_report ON report_runs(tenant_id, report_id, started_at_us);
CREATE TRIGGER report_runs_follow_report AFTER DELETE ON reports BEGIN
    DELETE FROM report_runs WHERE tenant_id = OLD.tenant_id AND report_id = OLD.id;
END;
";

/// A signed-in user's saved views (a page's range, comparison, filters and
/// breakdown under a name) and page layouts (the order of a page's
/// widgets). A user's rows go with the user (the trigger) and with the
/// workspace ([`WORKSPACE_TABLES`]).
const MIGRATION_4: &str = "
CREATE TABLE user_views (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    page TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, id)
);
CREATE UNIQUE INDEX user_views_name ON user_views(tenant_id, user_id, page, name);
CREATE TABLE user_layouts (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    page TEXT NOT NULL,
    layout TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, page)
);
CREATE TRIGGER user_ui_follows_user AFTER DELETE ON notify_users BEGIN
    DELETE FROM user_views WHERE tenant_id = OLD.tenant_id AND user_id = OLD.id;
    DELETE FROM user_layouts WHERE tenant_id = OLD.tenant_id AND user_id = OLD.id;
END;
";

/// Embed tokens (portal components and TV links): the signed token names
/// its row, which must exist and not be revoked for the token to work.
const MIGRATION_3: &str = "
CREATE TABLE embed_tokens (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    customer TEXT,
    created_by TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    revoked_at_us INTEGER,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX embed_tokens_expiry ON embed_tokens(expires_at_us);
";

/// Recipients become workspace users: a role from a fixed set (the free
/// text of before maps `owner` and `admin` to themselves, `analyst` to
/// itself, anything else to `viewer`), credentials (an argon2id hash, a
/// TOTP seed and hashed recovery codes), a session epoch (raised to log
/// the user out everywhere) and a login time. One-time links (invitations,
/// password resets) and login failures get tables; the audit log is
/// append-only (triggers refuse UPDATE and DELETE; retention deletes
/// through [`AUDIT_RETENTION_WINDOW`]). Alert rules record who made them.
const MIGRATION_2: &str = "
UPDATE notify_users SET role = CASE lower(trim(role))
    WHEN 'owner' THEN 'owner' WHEN 'admin' THEN 'admin' WHEN 'analyst' THEN 'analyst'
    ELSE 'viewer' END;
ALTER TABLE notify_users ADD COLUMN password_hash TEXT;
ALTER TABLE notify_users ADD COLUMN totp_secret TEXT;
ALTER TABLE notify_users ADD COLUMN totp_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notify_users ADD COLUMN recovery_codes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE notify_users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notify_users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notify_users ADD COLUMN last_login_at_us INTEGER;
CREATE INDEX notify_users_email ON notify_users(lower(email));
ALTER TABLE alert_rules ADD COLUMN created_by TEXT;
CREATE TABLE access_links (
    token_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    used_at_us INTEGER
);
CREATE TABLE access_login_failures (
    scope TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure_us INTEGER NOT NULL,
    blocked_until_us INTEGER NOT NULL
);
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant ON audit_log(tenant_id, at_us);
CREATE TABLE audit_retention_window (open INTEGER);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN (SELECT count(*) FROM audit_retention_window) = 0
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// How retention deletes old audit rows past the append-only trigger: in
/// one transaction it inserts a row into `audit_retention_window`, deletes,
/// and removes the row again. Nothing else writes that table.
pub const AUDIT_RETENTION_WINDOW: &str = "audit_retention_window";

/// The notification and alert tables as the code before migrations made
/// them (idempotent, so such a database is adopted as it is).
const MIGRATION_1: &str = "
CREATE TABLE IF NOT EXISTS notify_users (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    email TEXT,
    name TEXT,
    role TEXT NOT NULL DEFAULT 'member',
    preferences TEXT NOT NULL DEFAULT '{}',
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE IF NOT EXISTS notify_branding (
    tenant_id TEXT PRIMARY KEY,
    branding TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_endpoints (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    flavour TEXT NOT NULL,
    categories TEXT NOT NULL DEFAULT '[]',
    secrets TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE IF NOT EXISTS notify_messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    idempotency_key TEXT,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    data TEXT NOT NULL,
    recipients TEXT NOT NULL,
    created_at_us INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS notify_messages_idem ON notify_messages(tenant_id, idempotency_key);
CREATE TABLE IF NOT EXISTS notify_inbox (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES notify_messages(id),
    created_at_us INTEGER NOT NULL,
    read_at_us INTEGER,
    archived_at_us INTEGER,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX IF NOT EXISTS notify_inbox_user ON notify_inbox(tenant_id, user_id, created_at_us);
CREATE TABLE IF NOT EXISTS notify_deliveries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES notify_messages(id),
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    delivered_at_us INTEGER
);
CREATE INDEX IF NOT EXISTS notify_deliveries_due ON notify_deliveries(status, next_attempt_us);
CREATE INDEX IF NOT EXISTS notify_deliveries_message ON notify_deliveries(message_id);
CREATE INDEX IF NOT EXISTS notify_deliveries_tenant ON notify_deliveries(tenant_id, created_at_us);
CREATE TABLE IF NOT EXISTS alert_rules (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE IF NOT EXISTS alert_instances (
    tenant_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    labels TEXT NOT NULL,
    value REAL,
    instance TEXT NOT NULL,
    last_eval_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, rule_id, group_key)
);
CREATE TABLE IF NOT EXISTS alert_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    labels TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    value REAL,
    reason TEXT,
    silenced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alert_history_rule ON alert_history(tenant_id, rule_id, at_us);
CREATE TABLE IF NOT EXISTS alert_silences (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    silence TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE IF NOT EXISTS alert_groups (
    tenant_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    pending_since_us INTEGER,
    last_sent_us INTEGER,
    sent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, rule_id)
);
";

/// Every table with a workspace's rows (`tenant_id`), but the audit log;
/// rows that reference others first (foreign keys are enforced).
const WORKSPACE_TABLES: &[&str] = &[
    "notify_inbox",
    "notify_deliveries",
    "notify_messages",
    "notify_users",
    "notify_branding",
    "notify_endpoints",
    "alert_rules",
    "alert_instances",
    "alert_history",
    "alert_silences",
    "alert_groups",
    "access_links",
    "embed_tokens",
    "user_views",
    "user_layouts",
    "report_runs",
    "reports",
    "notify_logos",
    "saved_queries",
];

/// The table that records applied migrations.
const TRACKING: &str = "CREATE TABLE IF NOT EXISTS realtime_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at_us INTEGER NOT NULL
)";

/// The realtime connection to the metadata database.
#[derive(Debug)]
pub struct MetaDb {
    conn: Mutex<Connection>,
}

impl MetaDb {
    /// Opens `dir/beacon.sqlite` (created if missing) and applies the
    /// pending [`MIGRATIONS`].
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        let path = dir.join(FILE_NAME);
        let open = |path: &Path| -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            Ok(conn)
        };
        let mut conn = open(&path).map_err(|source| DbError::Open {
            path: path.clone(),
            source,
        })?;
        migrate(&mut conn, MIGRATIONS)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` on the connection (one caller at a time).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        Ok(f(&mut self.conn.lock())?)
    }

    /// Deletes every row a deleted workspace has here (users and their
    /// credentials, links, endpoints, branding, notifications, inbox,
    /// deliveries, alert rules, instances, history, silences and groups)
    /// in one transaction; returns the number of rows. The audit log keeps
    /// its rows, the deletion's among them, until its retention. Safe to
    /// repeat: the server runs it again at startup for every deleted
    /// workspace, finishing a deletion a crash interrupted.
    pub fn delete_tenant(&self, tenant: &str) -> Result<usize, DbError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut rows = 0;
            for table in WORKSPACE_TABLES {
                rows += tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = ?1"), [tenant])?;
            }
            tx.commit()?;
            Ok(rows)
        })
    }

    /// The newest applied migration (0: none).
    pub fn version(&self) -> Result<i64, DbError> {
        self.with(|c| current_version(c))
    }
}

fn current_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM realtime_migrations",
        [],
        |r| r.get(0),
    )
}

/// Applies the migrations newer than the database's version, each in its
/// own immediate transaction with its tracking row.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), DbError> {
    let tracking = |version| move |source| DbError::Migrate { version, source };
    conn.execute_batch(TRACKING).map_err(tracking(0))?;
    for m in migrations {
        let apply = |conn: &mut Connection| -> rusqlite::Result<bool> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Read inside the write transaction: two processes opening the
            // same file at once apply each migration once.
            if current_version(&tx)? >= m.version {
                return Ok(false);
            }
            tx.execute_batch(m.sql)?;
            tx.execute(
                "INSERT INTO realtime_migrations (version, name, applied_at_us) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, chrono::Utc::now().timestamp_micros()],
            )?;
            tx.commit()?;
            Ok(true)
        };
        if apply(conn).map_err(tracking(m.version))? {
            tracing::info!(
                version = m.version,
                name = m.name,
                "Migrated the realtime tables."
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deleting a workspace reaches every table with its rows: a table
    /// added later with a `tenant_id` fails this until it is listed.
    #[test]
    fn workspace_tables_are_every_table_with_a_tenant() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MetaDb::open(dir.path()).expect("open");
        let mut tables: Vec<String> = db
            .with(|c| {
                c.prepare(
                    "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c
                     WHERE m.type = 'table' AND c.name = 'tenant_id' AND m.name <> 'audit_log'",
                )?
                .query_map([], |r| r.get(0))?
                .collect()
            })
            .expect("tables");
        tables.sort();
        let mut listed: Vec<String> = WORKSPACE_TABLES.iter().map(|t| (*t).to_owned()).collect();
        listed.sort();
        assert_eq!(tables, listed);
        db.with(|c| {
            c.execute_batch(
                "INSERT INTO alert_silences (tenant_id, id, silence) VALUES ('ws_a', 's', '{}'), ('ws_b', 's', '{}');
                 INSERT INTO notify_messages (id, tenant_id, category, severity, title, body, data, recipients, created_at_us)
                     VALUES ('m', 'ws_a', 'c', 'info', 't', '', '{}', '[]', 0);
                 INSERT INTO notify_inbox (tenant_id, user_id, message_id, created_at_us) VALUES ('ws_a', 'u', 'm', 0);
                 INSERT INTO notify_deliveries (id, tenant_id, message_id, channel, target, status, next_attempt_us, created_at_us, updated_at_us)
                     VALUES ('d', 'ws_a', 'm', 'inbox', 'u', 'delivered', 0, 0, 0);",
            )
        })
        .expect("insert");
        assert_eq!(db.delete_tenant("ws_a").expect("delete"), 4);
        assert_eq!(db.delete_tenant("ws_a").expect("again"), 0);
        let left: i64 = db
            .with(|c| c.query_row("SELECT count(*) FROM alert_silences", [], |r| r.get(0)))
            .expect("count");
        assert_eq!(left, 1);
    }

    /// `sqlite_master` rows of the realtime tables and indexes.
    fn schema(conn: &Connection) -> Vec<(String, String, Option<String>)> {
        let mut s = conn
            .prepare(
                "SELECT type, name, sql FROM sqlite_master
                 WHERE name LIKE 'notify%' OR name LIKE 'alert%' ORDER BY type, name",
            )
            .expect("prepare");
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn a_new_database_gets_every_migration_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MetaDb::open(dir.path()).expect("open");
        assert_eq!(db.version().expect("version"), MIGRATIONS.len() as i64);
        let tables = db.with(|c| Ok(schema(c))).expect("schema");
        assert!(tables.iter().any(|(_, n, _)| n == "notify_deliveries"));
        assert!(tables.iter().any(|(_, n, _)| n == "alert_history"));
        drop(db);
        // Reopening applies nothing again.
        let db = MetaDb::open(dir.path()).expect("reopen");
        let applied: i64 = db
            .with(|c| c.query_row("SELECT count(*) FROM realtime_migrations", [], |r| r.get(0)))
            .expect("count");
        assert_eq!(applied, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_database_made_before_migrations_is_adopted_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        // What the code before migrations did: the catalog's own
        // user_version, then the realtime schema with IF NOT EXISTS, and
        // some rows.
        let before = {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(&format!(
                "PRAGMA user_version = 1; BEGIN IMMEDIATE; {MIGRATION_1} COMMIT;"
            ))
            .expect("old schema");
            conn.execute(
                "INSERT INTO alert_rules VALUES ('ws', 'rule_1', '{}', 1, 2)",
                [],
            )
            .expect("row");
            schema(&conn)
        };
        let mut conn = Connection::open(&path).expect("open");
        migrate(&mut conn, &MIGRATIONS[..1]).expect("migration 1");
        assert_eq!(current_version(&conn).expect("version"), 1);
        let db = MetaDb {
            conn: Mutex::new(conn),
        };
        let (after, rules, user_version) = db
            .with(|c| {
                Ok((
                    schema(c),
                    c.query_row("SELECT count(*) FROM alert_rules", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                    c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?,
                ))
            })
            .expect("read");
        assert_eq!(after, before, "migration 1 is exactly the old schema");
        assert_eq!(rules, 1, "rows are kept");
        assert_eq!(user_version, 1, "the catalog's user_version is untouched");
        drop(db);
        // And the newest migrations apply on top, keeping the rows.
        let db = MetaDb::open(dir.path()).expect("open");
        assert_eq!(db.version().expect("version"), MIGRATIONS.len() as i64);
    }

    #[test]
    fn recipients_become_users_with_a_known_role() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = Connection::open(dir.path().join(FILE_NAME)).expect("open");
        migrate(&mut conn, &MIGRATIONS[..1]).expect("migration 1");
        for (id, role) in [("ann", "owner"), ("bob", "Manager"), ("cy", "member"), ("di", "ADMIN")] {
            conn.execute(
                "INSERT INTO notify_users (tenant_id, id, email, role, created_at_us) VALUES ('ws', ?1, ?1 || '@x.example', ?2, 1)",
                params![id, role],
            )
            .expect("user");
        }
        migrate(&mut conn, MIGRATIONS).expect("all");
        let roles: Vec<(String, String)> = conn
            .prepare("SELECT id, role FROM notify_users ORDER BY id")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let want = [("ann", "owner"), ("bob", "viewer"), ("cy", "viewer"), ("di", "admin")];
        assert_eq!(
            roles,
            want.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
        );
    }

    #[test]
    fn the_audit_log_refuses_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MetaDb::open(dir.path()).expect("open");
        db.with(|c| {
            c.execute(
                "INSERT INTO audit_log (tenant_id, at_us, actor, action, outcome) VALUES ('ws', 1, 'user:ann', 'login', 'success')",
                [],
            )
        })
        .expect("append");
        for sql in [
            "UPDATE audit_log SET action = 'nothing'",
            "DELETE FROM audit_log",
        ] {
            let e = db.with(|c| c.execute(sql, [])).expect_err(sql);
            let source = std::error::Error::source(&e).expect("source").to_string();
            assert!(source.contains("append-only"), "{source}");
        }
    }

    #[test]
    fn a_failed_statement_keeps_sqlites_reason_in_the_error_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MetaDb::open(dir.path()).expect("open");
        let e = db
            .with(|c| c.execute("DELETE FROM nope", []))
            .expect_err("no such table");
        assert_eq!(e.to_string(), "metadata database");
        let source = std::error::Error::source(&e).expect("source").to_string();
        assert!(source.contains("no such table: nope"), "{source}");
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = Connection::open(dir.path().join(FILE_NAME)).expect("open");
        let broken = [
            MIGRATIONS[0],
            Migration {
                version: 2,
                name: "broken",
                sql: "CREATE TABLE alert_extra (a INTEGER); SELECT nope FROM nowhere;",
            },
        ];
        let e = migrate(&mut conn, &broken).expect_err("fails");
        assert!(matches!(e, DbError::Migrate { version: 2, .. }), "{e:?}");
        assert_eq!(current_version(&conn).expect("version"), 1);
        let extra: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'alert_extra'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(extra, 0, "the failed migration's statements were rolled back");
    }
}
