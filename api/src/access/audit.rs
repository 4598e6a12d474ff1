//! The audit log: an append-only record of sign-ins (success and failure,
//! with IP address and user agent), changes to roles, users, keys,
//! settings, branding, webhooks and alert rules, SQL queries (text, rows,
//! bytes; HTTP, PostgreSQL wire and Flight SQL alike) and data removal.
//!
//! Rows live in `audit_log` in the metadata database, whose triggers
//! refuse UPDATE and DELETE (`realtime/src/db.rs`, migration 2); nothing in
//! the API writes anything but new rows. Retention ([`Audit::purge`],
//! `access.audit_retention`, run hourly) is the one deletion, through the
//! trigger's window. Owners and admins read it with `GET /v1/audit` and as
//! the SQL table `audit_log`: it is a privileged system table, in the
//! sessions of queries planned inside `beacon_engine::system_tables::privileged`
//! for an admin (HTTP SQL, PostgreSQL wire, Flight SQL); other callers'
//! sessions do not have it (live SQL never does).
//!
//! Recording never fails the request it records: a failed insert is
//! logged as an error (the action has happened by then).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use beacon_realtime::db::{AUDIT_RETENTION_WINDOW, DbError, MetaDb};
use rusqlite::params;
use serde::Serialize;
use serde_json::Value;

use super::Caller;

/// Name of the SQL table.
pub const TABLE: &str = "audit_log";

/// Where a request came from (set by [`super::gate::authorize`]).
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// Client address.
    pub ip: Option<String>,
    /// `User-Agent`, at most 512 characters.
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<RequestMeta>().cloned().unwrap_or_default())
    }
}

/// One audit row as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Order of appending.
    pub seq: i64,
    /// When, µs.
    pub at_us: i64,
    /// `user:<id>`, `key:<prefix>`, `token:<user>`, `email:<address>`
    /// (failed sign-in), `cli`.
    pub actor: String,
    /// What (`login`, `role_change`, `key_create`, `sql_query`, ...).
    pub action: String,
    /// What it was done to.
    pub target: Option<String>,
    /// `success`, `failure`.
    pub outcome: String,
    /// Client address.
    pub ip: Option<String>,
    /// Client software.
    pub user_agent: Option<String>,
    /// More (JSON): the SQL text and its rows and bytes, a role before and
    /// after, ...
    pub detail: Value,
}

/// The audit log.
#[derive(Debug, Clone)]
pub struct Audit {
    db: Arc<MetaDb>,
}

impl Audit {
    /// The log in `db`.
    pub fn new(db: Arc<MetaDb>) -> Self {
        Self { db }
    }

    /// Appends a row for `caller`'s action.
    pub fn record(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        action: &str,
        target: Option<&str>,
        detail: Value,
    ) {
        self.append(&caller.tenant, &caller.actor(), meta, action, target, "success", detail);
    }

    /// Appends a row.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &self,
        tenant: &str,
        actor: &str,
        meta: &RequestMeta,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        detail: Value,
    ) {
        let at = chrono::Utc::now().timestamp_micros();
        let result = self.db.with(|c| {
            c.prepare_cached(
                "INSERT INTO audit_log (tenant_id, at_us, actor, action, target, outcome, ip, user_agent, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                tenant,
                at,
                actor,
                action,
                target,
                outcome,
                meta.ip,
                meta.user_agent,
                detail.to_string()
            ])
        });
        if let Err(e) = result {
            tracing::error!(error = %e, tenant, action, "Could not append to the audit log.");
        }
    }

    /// A workspace's rows, newest first: at most `limit`, older than
    /// `before_seq`, at or after `since_us`, of `action`.
    pub fn list(
        &self,
        tenant: &str,
        since_us: Option<i64>,
        before_seq: Option<i64>,
        action: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, DbError> {
        self.db.with(|c| {
            let mut s = c.prepare_cached(
                "SELECT seq, at_us, actor, action, target, outcome, ip, user_agent, detail FROM audit_log
                 WHERE tenant_id = ?1 AND (?2 IS NULL OR at_us >= ?2) AND (?3 IS NULL OR seq < ?3) AND (?4 IS NULL OR action = ?4)
                 ORDER BY seq DESC LIMIT ?5",
            )?;
            s.query_map(
                params![tenant, since_us, before_seq, action, limit as i64],
                |r| {
                    let detail: String = r.get(8)?;
                    Ok(Entry {
                        seq: r.get(0)?,
                        at_us: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        outcome: r.get(5)?,
                        ip: r.get(6)?,
                        user_agent: r.get(7)?,
                        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                    })
                },
            )?
            .collect()
        })
    }

    /// Deletes the rows older than `before_us` (retention); how many.
    pub fn purge(&self, before_us: i64) -> Result<usize, DbError> {
        self.db.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(&format!("INSERT INTO {AUDIT_RETENTION_WINDOW} (open) VALUES (1)"), [])?;
            let n = tx.execute("DELETE FROM audit_log WHERE at_us < ?1", [before_us])?;
            tx.execute(&format!("DELETE FROM {AUDIT_RETENTION_WINDOW}"), [])?;
            tx.commit()?;
            Ok(n)
        })
    }
}

/// Rows of `audit_log` a workspace sees in SQL (the newest).
const SQL_ROWS: usize = 100_000;

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("at", ts, false),
        Field::new("actor", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, true),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("ip", DataType::Utf8, true),
        Field::new("user_agent", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
    ]))
}

impl beacon_engine::system_tables::SystemTable for Audit {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn privileged(&self) -> bool {
        true
    }

    fn scan(&self, tenant: &str) -> datafusion::error::Result<RecordBatch> {
        let rows = self
            .list(tenant, None, None, None, SQL_ROWS)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let mut seq = Int64Builder::new();
        let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut text: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
        for e in &rows {
            seq.append_value(e.seq);
            at.append_value(e.at_us);
            text[0].append_value(&e.actor);
            text[1].append_value(&e.action);
            text[2].append_option(e.target.as_deref());
            text[3].append_value(&e.outcome);
            text[4].append_option(e.ip.as_deref());
            text[5].append_option(e.user_agent.as_deref());
            text[6].append_value(e.detail.to_string());
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(seq.finish()), Arc::new(at.finish())];
        cols.extend(text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        Ok(RecordBatch::try_new(schema(), cols)?)
    }
}

/// The audit row of one SQL query, written when it is dropped: when its
/// answer has ended or the client went away (`complete` tells which), with
/// the rows (and bytes, where the interface knows them) sent.
#[derive(Debug)]
pub struct QueryRecord {
    audit: Audit,
    caller: Caller,
    meta: RequestMeta,
    query: String,
    interface: &'static str,
    /// Rows sent.
    pub rows: usize,
    /// Bytes sent (HTTP).
    pub bytes: Option<u64>,
    /// Whether the answer reached its end.
    pub complete: bool,
}

/// Longest query text kept in the audit log.
const AUDITED_QUERY_CHARS: usize = 16_384;

impl QueryRecord {
    /// Starts the record of `query` run by `caller` over `interface`
    /// (`http`, `postgres`, `flight`).
    pub fn new(audit: &Audit, caller: &Caller, meta: RequestMeta, query: &str, interface: &'static str) -> Self {
        Self {
            audit: audit.clone(),
            caller: caller.clone(),
            meta,
            query: query.chars().take(AUDITED_QUERY_CHARS).collect(),
            interface,
            rows: 0,
            bytes: None,
            complete: false,
        }
    }
}

impl Drop for QueryRecord {
    fn drop(&mut self) {
        self.audit.record(
            &self.caller,
            &self.meta,
            "sql_query",
            None,
            serde_json::json!({
                "query": self.query,
                "rows": self.rows,
                "bytes": self.bytes,
                "interface": self.interface,
                "complete": self.complete,
            }),
        );
    }
}
