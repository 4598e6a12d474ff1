//! Running analyst queries: an id per query (in logs, the `Beacon-Query-Id`
//! response header and the admin list), and cancellation (by an admin, or
//! by the client going away, which drops the response stream).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// What the admin list shows of one query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryInfo {
    /// Query id.
    pub id: String,
    /// Workspace.
    #[serde(skip)]
    pub tenant: String,
    /// The SQL (first 1000 characters).
    pub sql: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// Interface (`http`).
    pub interface: &'static str,
    #[serde(skip)]
    cancel: CancellationToken,
}

/// The registry of running queries.
#[derive(Debug, Clone, Default)]
pub struct RunningQueries {
    inner: Arc<Mutex<HashMap<String, QueryInfo>>>,
    next: Arc<AtomicU64>,
}

/// Keeps a query registered while alive; dropping it deregisters.
#[derive(Debug)]
pub struct QueryGuard {
    registry: RunningQueries,
    /// The query id.
    pub id: String,
    /// Cancelled by an admin.
    pub cancel: CancellationToken,
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        self.registry.inner.lock().remove(&self.id);
    }
}

impl RunningQueries {
    /// Registers a query.
    pub fn start(&self, tenant: &str, sql: &str, interface: &'static str) -> QueryGuard {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "q_{:x}{:04x}",
            chrono::Utc::now().timestamp_millis(),
            n % 0x10000
        );
        let cancel = CancellationToken::new();
        self.inner.lock().insert(
            id.clone(),
            QueryInfo {
                id: id.clone(),
                tenant: tenant.to_owned(),
                sql: sql.chars().take(1000).collect(),
                started_at: chrono::Utc::now().to_rfc3339(),
                interface,
                cancel: cancel.clone(),
            },
        );
        QueryGuard {
            registry: self.clone(),
            id,
            cancel,
        }
    }

    /// The workspace's running queries, oldest first.
    pub fn list(&self, tenant: &str) -> Vec<QueryInfo> {
        let mut v: Vec<QueryInfo> = self
            .inner
            .lock()
            .values()
            .filter(|q| q.tenant == tenant)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        v
    }

    /// Cancels every query of a workspace; returns how many.
    pub fn cancel_all(&self, tenant: &str) -> usize {
        let queries = self.inner.lock();
        let mine = queries.values().filter(|q| q.tenant == tenant);
        mine.map(|q| q.cancel.cancel()).count()
    }

    /// Cancels one of the workspace's queries; false if there is none.
    pub fn cancel(&self, tenant: &str, id: &str) -> bool {
        match self.inner.lock().get(id) {
            Some(q) if q.tenant == tenant => {
                q.cancel.cancel();
                true
            }
            _ => false,
        }
    }
}
