//! A [`GroupsAccumulator`] for aggregates that collect the rows of each
//! group and decide at the end (funnels, retention).
//!
//! DataFusion runs a plain [`Accumulator`](datafusion::logical_expr::Accumulator)
//! per group through an adapter that, for every input batch, sorts the rows
//! by group and slices every argument array per group: with many small
//! groups (sessions, people) that per-group slicing dominates. Here each
//! batch is read once, column-wise, and every row that matters is appended,
//! with its group, to one vector that is grouped when the result is emitted.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::common::Result;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

/// What a row-collecting aggregate must say.
pub(crate) trait RowsAggregate: Send + Sync + 'static {
    /// One kept input row.
    type Row: Copy + Send + Sync + 'static;

    /// Calls `each(i, row)` for every input row `i` that matters.
    fn rows(&self, values: &[ArrayRef], each: &mut dyn FnMut(usize, Self::Row)) -> Result<()>;

    /// The partial state of `groups` (list columns, one row per group).
    fn state(&self, groups: &Groups<Self::Row>) -> Result<Vec<ArrayRef>>;

    /// Calls `each(i, row)` for every row in state row `i`.
    fn merge(&self, states: &[ArrayRef], each: &mut dyn FnMut(usize, Self::Row)) -> Result<()>;

    /// The final value of every group, in group order.
    fn evaluate(&self, groups: &mut Groups<Self::Row>) -> Result<ArrayRef>;
}

/// The rows of consecutive groups, stored contiguously: group `i` is
/// `rows[offsets[i]..offsets[i + 1]]`, its rows in arrival order.
pub(crate) struct Groups<R> {
    rows: Vec<R>,
    offsets: Vec<usize>,
}

impl<R> Groups<R> {
    /// One group of `rows`.
    pub(crate) fn single(rows: Vec<R>) -> Self {
        let offsets = vec![0, rows.len()];
        Self { rows, offsets }
    }

    /// Number of groups.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Every row, group after group.
    pub(crate) fn all(&self) -> &[R] {
        &self.rows
    }

    /// The rows of every group, in group order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut [R]> {
        let mut rest = self.rows.as_mut_slice();
        self.offsets.windows(2).map(move |w| {
            let (group, tail) = std::mem::take(&mut rest).split_at_mut(w[1] - w[0]);
            rest = tail;
            group
        })
    }

    /// A list column with one list per group over `values` (one value per
    /// row of [`Groups::all`]).
    pub(crate) fn lists(&self, item: arrow::datatypes::DataType, values: ArrayRef) -> ArrayRef {
        let offsets = self.offsets.iter().map(|&o| o as i32).collect::<Vec<i32>>();
        Arc::new(arrow::array::ListArray::new(
            Arc::new(arrow::datatypes::Field::new_list_field(item, true)),
            arrow::buffer::OffsetBuffer::new(offsets.into()),
            values,
            None,
        ))
    }
}

/// The rows of every group, as `(group, row)` in arrival order; grouped
/// (by a stable counting sort) only when emitted. One flat vector instead
/// of one per group: funnels and retention see up to millions of groups of
/// a few rows each, where per-group vectors cost an allocation (and a
/// reallocation or two) per group.
pub(crate) struct GroupedRows<A: RowsAggregate> {
    agg: A,
    rows: Vec<(usize, A::Row)>,
    groups: usize,
}

impl<A: RowsAggregate> GroupedRows<A> {
    pub(crate) fn new(agg: A) -> Self {
        Self {
            agg,
            rows: Vec::new(),
            groups: 0,
        }
    }

    /// Removes the emitted groups' rows, grouped; the groups that stay are
    /// renumbered from 0 (DataFusion's `EmitTo::First` contract).
    fn take(&mut self, emit_to: EmitTo) -> Groups<A::Row> {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        };
        let offsets = group_offsets(n, self.rows.iter().map(|&(g, _)| g));
        let taken = offsets[n];
        let mut rows = match self.rows.first() {
            Some(&(_, r)) => vec![r; taken],
            None => Vec::new(),
        };
        let mut next = offsets[..n].to_vec();
        for &(g, r) in &self.rows {
            if g < n {
                rows[next[g]] = r;
                next[g] += 1;
            }
        }
        if taken == self.rows.len() {
            self.rows = Vec::new();
        } else {
            self.rows.retain(|(g, _)| *g >= n);
            for (g, _) in &mut self.rows {
                *g -= n;
            }
        }
        self.groups -= n;
        Groups { rows, offsets }
    }
}

/// Where each of groups `0..n` starts once rows are grouped: `n + 1`
/// prefix sums of the group sizes (rows of groups `>= n` are not counted).
fn group_offsets(n: usize, groups: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut offsets = vec![0usize; n + 1];
    for g in groups.filter(|&g| g < n) {
        offsets[g + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    offsets
}

impl<A: RowsAggregate> GroupsAccumulator for GroupedRows<A> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        let Self { agg, rows, .. } = self;
        agg.rows(values, &mut |i, row| {
            if opt_filter.is_some_and(|f| !(f.is_valid(i) && f.value(i))) {
                return;
            }
            rows.push((group_indices[i], row));
        })
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        let Self { agg, rows, .. } = self;
        agg.merge(values, &mut |i, row| rows.push((group_indices[i], row)))
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut groups = self.take(emit_to);
        self.agg.evaluate(&mut groups)
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
        let mut kept: Vec<(usize, A::Row)> = Vec::new();
        self.agg.rows(values, &mut |i, row| {
            if opt_filter.is_some_and(|f| !(f.is_valid(i) && f.value(i))) {
                return;
            }
            kept.push((i, row));
        })?;
        // Input rows come in order, so `kept` is already grouped.
        let offsets = group_offsets(n, kept.iter().map(|&(i, _)| i));
        let groups = Groups {
            rows: kept.into_iter().map(|(_, r)| r).collect(),
            offsets,
        };
        self.agg.state(&groups)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * std::mem::size_of::<(usize, A::Row)>()
    }
}
