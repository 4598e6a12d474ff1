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
//! AggregateExec(SinglePartitioned, key = e) <- RepartitionExec(Hash(e)) <- input
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
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
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
