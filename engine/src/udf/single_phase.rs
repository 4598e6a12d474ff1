//! One-phase aggregation for the row-collecting aggregates (funnels,
//! retention).
//!
//! DataFusion aggregates in two phases: a partial aggregate per input
//! partition, a hash repartition of the partial states on the group key,
//! and a final aggregate that merges them. That pays off when the partial
//! states are smaller than the rows. For `window_funnel`, `funnel_steps`
//! and `retention` they are not: a group's state *is* its rows (as list
//! columns), so the partial phase hashes every row once, builds list
//! arrays, and the final phase hashes and unpacks them all again.
//!
//! This rule rewrites
//!
//! ```text
//! AggregateExec(FinalPartitioned) <- RepartitionExec(Hash(key)) <- AggregateExec(Partial, key = e) <- input
//! ```
//!
//! into
//!
//! ```text
//! AggregateExec(SinglePartitioned, key = k) <- RepartitionExec(Hash(k))
//!     <- ProjectionExec(k = e, the aggregates' arguments) <- input
//! ```
//!
//! when every aggregate of the node is one of those: rows are sent to
//! their group's partition once and aggregated once. Same output schema,
//! same answer; other aggregates (where partial states do shrink) keep
//! DataFusion's plan.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

/// Aggregates whose partial state is every input row they keep.
const ROW_COLLECTING: [&str; 3] = ["window_funnel", "funnel_steps", "retention"];

/// The rule; see the module documentation.
#[derive(Debug, Default)]
pub struct SinglePhaseRowAggregates;

impl PhysicalOptimizerRule for SinglePhaseRowAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|plan| {
            let Some(rewritten) = rewrite(&plan)? else {
                return Ok(Transformed::no(plan));
            };
            Ok(Transformed::yes(rewritten))
        })
        .data()
    }

    fn name(&self) -> &str {
        "SinglePhaseRowAggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn rewrite(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(last) = plan.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    if *last.mode() != AggregateMode::FinalPartitioned {
        return Ok(None);
    }
    let Some(repartition) = last.input().downcast_ref::<RepartitionExec>() else {
        return Ok(None);
    };
    let Partitioning::Hash(_, partitions) = repartition.partitioning() else {
        return Ok(None);
    };
    let Some(partial) = repartition.input().downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let group_by = partial.group_expr();
    if *partial.mode() != AggregateMode::Partial
        || group_by.has_grouping_set()
        || group_by.expr().is_empty()
        || partial.aggr_expr().is_empty()
        || !partial
            .aggr_expr()
            .iter()
            .all(|a| ROW_COLLECTING.contains(&a.fun().name()))
    {
        return Ok(None);
    }
    if let Some(single) = projected(partial, *partitions)? {
        let single = single.with_limit_options(last.limit_options());
        if single.schema() == last.schema() {
            return Ok(Some(Arc::new(single)));
        }
    }
    let rows = Arc::new(RepartitionExec::try_new(
        Arc::clone(partial.input()),
        Partitioning::Hash(group_by.input_exprs(), *partitions),
    )?);
    let single = AggregateExec::try_new(
        AggregateMode::SinglePartitioned,
        group_by.clone(),
        partial.aggr_expr().to_vec(),
        partial.filter_expr().to_vec(),
        rows,
        partial.input_schema(),
    )?
    .with_limit_options(last.limit_options());
    if single.schema() != last.schema() {
        return Ok(None);
    }
    Ok(Some(Arc::new(single)))
}

/// The one-phase aggregate over a projection of exactly what it uses: the
/// group keys and the aggregates' non-constant arguments (a funnel's
/// `event = '...'` conditions become booleans) are computed once, before
/// the repartition, which then moves a key, a timestamp and a few
/// booleans per row instead of every input column (strings included),
/// and the aggregate does not evaluate the key again. `None` when an
/// aggregate has a filter, an ordering or `DISTINCT` (not rewritten).
fn projected(partial: &AggregateExec, partitions: usize) -> Result<Option<AggregateExec>> {
    if partial.filter_expr().iter().any(Option::is_some)
        || partial
            .aggr_expr()
            .iter()
            .any(|a| a.is_distinct() || !a.order_bys().is_empty())
    {
        return Ok(None);
    }
    let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
    let mut keys: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
    for (expr, name) in partial.group_expr().expr() {
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(name, exprs.len()));
        keys.push((column, name.clone()));
        exprs.push((Arc::clone(expr), name.clone()));
    }
    let mut aggregates = Vec::with_capacity(partial.aggr_expr().len());
    for aggregate in partial.aggr_expr() {
        let mut args = Vec::new();
        for arg in aggregate.expressions() {
            // Constant arguments (a funnel's window and mode) stay
            // constants: the accumulator reads them at planning time.
            if arg.downcast_ref::<Literal>().is_some() {
                args.push(arg);
                continue;
            }
            let index = match exprs.iter().position(|(e, _)| e.eq(&arg)) {
                Some(i) => i,
                None => {
                    exprs.push((Arc::clone(&arg), format!("__arg{}", exprs.len())));
                    exprs.len() - 1
                }
            };
            args.push(Arc::new(Column::new(&exprs[index].1, index)) as Arc<dyn PhysicalExpr>);
        }
        let Some(rewritten) = aggregate.with_new_expressions(args, Vec::new()) else {
            return Ok(None);
        };
        aggregates.push(Arc::new(rewritten));
    }
    // Group names must not collide with the argument columns' names.
    let mut names: Vec<&String> = exprs.iter().map(|(_, n)| n).collect();
    names.sort();
    names.dedup();
    if names.len() != exprs.len() {
        return Ok(None);
    }
    let projection: Arc<dyn ExecutionPlan> =
        Arc::new(ProjectionExec::try_new(exprs, Arc::clone(partial.input()))?);
    let key_columns = keys.iter().map(|(e, _)| Arc::clone(e)).collect();
    let rows = Arc::new(RepartitionExec::try_new(
        Arc::clone(&projection),
        Partitioning::Hash(key_columns, partitions),
    )?);
    let filters = vec![None; aggregates.len()];
    Ok(Some(AggregateExec::try_new(
        AggregateMode::SinglePartitioned,
        PhysicalGroupBy::new_single(keys),
        aggregates,
        filters,
        rows,
        projection.schema(),
    )?))
}
