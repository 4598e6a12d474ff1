//! Row scopes: which of a workspace's events a session sees.
//!
//! An embed token for one customer (a client portal showing each client
//! only their own numbers) opens sessions whose `events` table is
//! [`CustomerEvents`]: every scan of the workspace's table, whatever the
//! query, runs through a filter `user_id = <customer>` applied in the
//! physical plan under everything the query does. The business views
//! (`orders`, `bookings`, ...) are defined over `events`, so they are
//! scoped with it. Such a session has none of what is computed over the
//! whole workspace: no rollups, no funnel index, no published tables
//! (model scores), no system tables (see [`crate::Engine`]'s
//! `session_of`).
//!
//! A customer is the `user_id` of identified events; anonymous events
//! (`anonymous_id` only) belong to no customer.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use beacon_ingest::schema::columns;
use datafusion::catalog::Session;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown, col, lit};
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExecBuilder;

/// Which rows of a workspace a session sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RowScope {
    /// Every row.
    #[default]
    All,
    /// The events whose `user_id` is this customer's.
    Customer(String),
}

impl RowScope {
    /// The customer, when scoped to one.
    pub fn customer(&self) -> Option<&str> {
        match self {
            RowScope::All => None,
            RowScope::Customer(c) => Some(c),
        }
    }
}

/// The `events` of one customer (see the module docs).
#[derive(Debug)]
pub struct CustomerEvents {
    inner: Arc<dyn TableProvider>,
    customer: String,
}

impl CustomerEvents {
    /// `inner`'s rows whose `user_id` is `customer`.
    pub fn new(inner: Arc<dyn TableProvider>, customer: impl Into<String>) -> Self {
        Self {
            inner,
            customer: customer.into(),
        }
    }
}

#[async_trait]
impl TableProvider for CustomerEvents {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    // No statistics: the inner table's row count is the workspace's.

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        // Never passed down: a limit under the filter would cut rows
        // before they are chosen.
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let user = schema.index_of(columns::USER_ID)?;
        // The scan reads user_id too; the filter projects it away again.
        let (inner_projection, user_at, wanted) = match projection {
            None => (None, user, None),
            Some(p) => match p.iter().position(|&c| c == user) {
                Some(i) => (Some(p.clone()), i, None),
                None => {
                    let mut q = p.clone();
                    q.push(user);
                    (Some(q), p.len(), Some((0..p.len()).collect::<Vec<_>>()))
                }
            },
        };
        // The same condition as a hint to the scan (row-group statistics);
        // the FilterExec below is what enforces it.
        let mut hints = filters.to_vec();
        hints.push(col(columns::USER_ID).eq(lit(self.customer.as_str())));
        let plan = self
            .inner
            .scan(state, inner_projection.as_ref(), &hints, None)
            .await?;
        let predicate = Arc::new(BinaryExpr::new(
            Arc::new(Column::new(columns::USER_ID, user_at)),
            Operator::Eq,
            Arc::new(Literal::new(ScalarValue::Utf8(Some(self.customer.clone())))),
        ));
        let filter = FilterExecBuilder::new(predicate, plan)
            .apply_projection(wanted)?
            .build()?;
        Ok(Arc::new(filter))
    }
}
