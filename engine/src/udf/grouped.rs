//! A [`GroupsAccumulator`] for aggregates that collect the rows of each
//! group and decide at the end (funnels, retention).
//!
//! DataFusion runs a plain [`Accumulator`](datafusion::logical_expr::Accumulator)
//! per group through an adapter that, for every input batch, sorts the rows
//! by group and slices every argument array per group: with many small
//! groups (sessions, people) that per-group slicing dominates. Here each
//! batch is read once, column-wise, and every row that matters is pushed
//! onto its group's vector.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

/// What a row-collecting aggregate must say.
pub(crate) trait RowsAggregate: Send + Sync + 'static {
    /// One kept input row.
    type Row: Copy + Send + Sync + 'static;

    /// Calls `each(i, row)` for every input row `i` that matters.
    fn rows(&self, values: &[ArrayRef], each: &mut dyn FnMut(usize, Self::Row)) -> Result<()>;

    /// The partial state of `groups` (list columns, one row per group).
    fn state(&self, groups: &[Vec<Self::Row>]) -> Result<Vec<ArrayRef>>;

    /// Calls `each(i, row)` for every row in state row `i`.
    fn merge(&self, states: &[ArrayRef], each: &mut dyn FnMut(usize, Self::Row)) -> Result<()>;

    /// The final value of one group.
    fn evaluate(&self, rows: &mut Vec<Self::Row>) -> Result<ScalarValue>;
}

/// The rows of every group.
pub(crate) struct GroupedRows<A: RowsAggregate> {
    agg: A,
    groups: Vec<Vec<A::Row>>,
    rows: usize,
}

impl<A: RowsAggregate> GroupedRows<A> {
    pub(crate) fn new(agg: A) -> Self {
        Self {
            agg,
            groups: Vec::new(),
            rows: 0,
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<Vec<A::Row>> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.rows -= taken.iter().map(Vec::len).sum::<usize>();
        taken
    }
}

impl<A: RowsAggregate> GroupsAccumulator for GroupedRows<A> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let Self { agg, groups, rows } = self;
        agg.rows(values, &mut |i, row| {
            if opt_filter.is_some_and(|f| !(f.is_valid(i) && f.value(i))) {
                return;
            }
            groups[group_indices[i]].push(row);
            *rows += 1;
        })
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let Self { agg, groups, rows } = self;
        agg.merge(values, &mut |i, row| {
            groups[group_indices[i]].push(row);
            *rows += 1;
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = self.take(emit_to);
        let values = groups
            .into_iter()
            .map(|mut rows| self.agg.evaluate(&mut rows))
            .collect::<Result<Vec<_>>>()?;
        ScalarValue::iter_to_array(values)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = self.take(emit_to);
        self.agg.state(&groups)
    }

    /// Every input row as a state of its own (DataFusion skips partial
    /// aggregation this way when groups hardly repeat, e.g. sessions).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let n = values.first().map_or(0, |v| v.len());
        let mut groups: Vec<Vec<A::Row>> = vec![Vec::new(); n];
        self.agg.rows(values, &mut |i, row| {
            if opt_filter.is_some_and(|f| !(f.is_valid(i) && f.value(i))) {
                return;
            }
            groups[i].push(row);
        })?;
        self.agg.state(&groups)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<Vec<A::Row>>()
            + self.rows * std::mem::size_of::<A::Row>()
    }
}

/// A list column with one list per group, of `values` split by group sizes.
pub(crate) fn lists<R>(
    groups: &[Vec<R>],
    item: arrow::datatypes::DataType,
    values: ArrayRef,
) -> ArrayRef {
    Arc::new(arrow::array::ListArray::new(
        Arc::new(arrow::datatypes::Field::new_list_field(item, true)),
        arrow::buffer::OffsetBuffer::from_lengths(groups.iter().map(Vec::len)),
        values,
        None,
    ))
}
