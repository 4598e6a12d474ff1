//! `percentile_cont`: DataFusion's own, with one fix.
//!
//! When a grouped aggregation has so many groups that partial aggregation
//! does not pay, DataFusion stops aggregating in the partial phase and
//! turns every input row into a state of its own
//! ([`GroupsAccumulator::convert_to_state`]). DataFusion 55's
//! `percentile_cont` groups accumulator asserts that it gets exactly one
//! argument there, but `percentile_cont(0.9) WITHIN GROUP (ORDER BY x)`
//! passes the percentile too: the query panicked (a 500 for valid SQL, and
//! for the analytics funnel broken down by a high-cardinality property).
//! This wrapper hands the accumulator only the value column, the one it
//! reads in `update_batch` as well; everything else is DataFusion's.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result;
use datafusion::functions_aggregate::percentile_cont::percentile_cont_udaf;
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    Signature,
};

/// The fixed `percentile_cont` (registered under DataFusion's name).
pub fn percentile_cont() -> AggregateUDF {
    AggregateUDF::new_from_impl(PercentileCont)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PercentileCont;

fn inner() -> Arc<AggregateUDF> {
    percentile_cont_udaf()
}

impl AggregateUDFImpl for PercentileCont {
    fn name(&self) -> &str {
        "percentile_cont"
    }

    fn aliases(&self) -> &[String] {
        // `quantile_cont`; the static lives as long as the program.
        static ALIASES: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| inner().aliases().to_vec());
        &ALIASES
    }

    fn signature(&self) -> &Signature {
        static SIGNATURE: std::sync::LazyLock<Signature> =
            std::sync::LazyLock::new(|| inner().signature().clone());
        &SIGNATURE
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        inner().return_type(arg_types)
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> Result<Vec<FieldRef>> {
        inner().state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        inner().accumulator(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs<'_>) -> bool {
        inner().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs<'_>,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(ValueOnly(
            inner().create_groups_accumulator(args)?,
        )))
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        inner().simplify()
    }

    fn supports_within_group_clause(&self) -> bool {
        inner().supports_within_group_clause()
    }

    fn documentation(&self) -> Option<&Documentation> {
        None
    }
}

/// Passes only the value column to `convert_to_state`.
struct ValueOnly(Box<dyn GroupsAccumulator>);

impl GroupsAccumulator for ValueOnly {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.0
            .update_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.0.evaluate(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.0.state(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.0.merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        self.0
            .convert_to_state(&values[..values.len().min(1)], opt_filter)
    }

    fn size(&self) -> usize {
        self.0.size()
    }
}
