//! System tables: SQL tables over metadata that another crate owns (alert
//! history, notification deliveries, ...), read when a query runs instead
//! of being copied into the engine on every change.
//!
//! The owning crate implements [`SystemTable`] (a schema and "the rows of
//! this workspace, now") and registers it once with
//! [`Engine::register_system_table`](crate::Engine::register_system_table).
//! Every session of a workspace then has a [`SystemTableProvider`] bound to
//! that workspace under the table's name. Nothing is read while planning:
//! the scan's single partition calls [`SystemTable::scan`] on a blocking
//! thread when the plan executes, so a query sees the source as it is at
//! that moment, and a table nobody queries costs nothing. The engine does
//! not depend on the owner (compare influxdb3's `system_tables`).

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};

/// A source of rows for one system table, per workspace.
pub trait SystemTable: Send + Sync + fmt::Debug + 'static {
    /// The table's schema (the same for every workspace).
    fn schema(&self) -> SchemaRef;

    /// The rows `tenant` sees, read now. Called on a blocking thread, so
    /// blocking I/O (SQLite) is fine; a failure fails the query as an
    /// internal error (wrap it in [`DataFusionError::External`]).
    fn scan(&self, tenant: &str) -> Result<RecordBatch>;

    /// Whether only sessions made inside [`privileged`] with `true` have
    /// the table (the audit log: owners and admins only).
    fn privileged(&self) -> bool {
        false
    }
}

tokio::task_local! {
    static PRIVILEGED: bool;
}

/// Runs `fut` with the privileged system tables in the sessions it makes
/// when `allowed` (the caller has checked the right to read them).
/// Sessions made anywhere else do not have them: a query naming one fails
/// as for any unknown table.
pub async fn privileged<F: std::future::Future>(allowed: bool, fut: F) -> F::Output {
    PRIVILEGED.scope(allowed, fut).await
}

/// Whether the current task may see privileged tables.
pub(crate) fn privileged_now() -> bool {
    PRIVILEGED.try_with(|p| *p).unwrap_or(false)
}

/// A [`SystemTable`] bound to one workspace, as a session sees it.
#[derive(Debug)]
pub struct SystemTableProvider {
    table: Arc<dyn SystemTable>,
    tenant: Arc<str>,
    schema: SchemaRef,
}

impl SystemTableProvider {
    /// `table` as `tenant` sees it.
    pub fn new(table: Arc<dyn SystemTable>, tenant: &str) -> Self {
        let schema = table.schema();
        Self {
            table,
            tenant: tenant.into(),
            schema,
        }
    }
}

#[async_trait]
impl TableProvider for SystemTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// A base table, as the in-memory tables these replace were.
    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partition: Arc<dyn PartitionStream> = Arc::new(SystemTablePartition {
            table: Arc::clone(&self.table),
            tenant: Arc::clone(&self.tenant),
            schema: Arc::clone(&self.schema),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            vec![partition],
            projection,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

/// The single partition of a [`SystemTableProvider`] scan.
#[derive(Debug)]
struct SystemTablePartition {
    table: Arc<dyn SystemTable>,
    tenant: Arc<str>,
    schema: SchemaRef,
}

impl PartitionStream for SystemTablePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let table = Arc::clone(&self.table);
        let tenant = Arc::clone(&self.tenant);
        let read = async move {
            tokio::task::spawn_blocking(move || table.scan(&tenant))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
        };
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::once(read),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    use super::*;

    /// Rows `(tenant, n)` for n = 1..=3; counts reads.
    #[derive(Debug, Default)]
    struct Counting {
        reads: AtomicUsize,
    }

    impl SystemTable for Counting {
        fn schema(&self) -> SchemaRef {
            Arc::new(Schema::new(vec![
                Field::new("tenant", DataType::Utf8, false),
                Field::new("n", DataType::Int64, false),
            ]))
        }

        fn scan(&self, tenant: &str) -> Result<RecordBatch> {
            let reads = self.reads.fetch_add(1, Ordering::SeqCst) as i64 + 1;
            Ok(RecordBatch::try_new(
                self.schema(),
                vec![
                    Arc::new(StringArray::from(vec![tenant; 3])),
                    Arc::new(Int64Array::from(vec![reads, reads * 10, reads * 100])),
                ],
            )?)
        }
    }

    #[tokio::test]
    async fn every_query_reads_the_source_for_its_workspace_with_projection_and_limit() {
        let source = Arc::new(Counting::default());
        let ctx = SessionContext::new();
        ctx.register_table(
            "t",
            Arc::new(SystemTableProvider::new(
                Arc::clone(&source) as Arc<dyn SystemTable>,
                "ws_a",
            )),
        )
        .expect("register");
        assert_eq!(source.reads.load(Ordering::SeqCst), 0, "nothing read yet");
        let rows = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx
                    .sql(sql)
                    .await
                    .expect("plan")
                    .collect()
                    .await
                    .expect("run");
                arrow::util::pretty::pretty_format_batches(&batches)
                    .expect("format")
                    .to_string()
            }
        };
        let first = rows("SELECT n FROM t LIMIT 2").await;
        assert!(first.contains("| 1  |") && first.contains("| 10 |"), "{first}");
        assert!(!first.contains("100") && !first.contains("ws_a"), "{first}");
        let second = rows("SELECT tenant, n FROM t WHERE n > 100").await;
        assert!(second.contains("ws_a") && second.contains("200"), "{second}");
        assert_eq!(source.reads.load(Ordering::SeqCst), 2, "one read per query");
    }
}
