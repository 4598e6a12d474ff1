//! Funnels as aggregate functions: `window_funnel` and `funnel_steps`.
//!
//! ```sql
//! -- How far each person got through view -> cart -> purchase within 14 days.
//! SELECT level, count(*) FROM (
//!   SELECT user_id, window_funnel(1209600, 'sequential', timestamp,
//!            event = 'Product Viewed', event = 'Product Added', event = 'Order Completed') AS level
//!   FROM events GROUP BY user_id) GROUP BY level;
//!
//! -- Seconds from step 1 to each reached step; NULL when the person was excluded.
//! SELECT user_id, funnel_steps(1209600, 'sequential', timestamp, event = 'Order Refunded',
//!            event = 'Product Viewed', event = 'Order Completed') FROM events GROUP BY user_id;
//! ```
//!
//! Semantics (also in `docs/analytics.md`), for the rows of one group
//! (a person or a session) ordered by time (rows with the same time: the one
//! matching the lower step first, then the one matching fewer of the steps
//! above it, by the bit pattern of the steps matched):
//!
//! - **Anchor.** The first row matching step 1 (in `any` mode: the first row
//!   matching any step) starts the attempt; the window is
//!   `[anchor, anchor + window]`, both ends included. Later step-1 rows do
//!   not restart it. No anchor: level 0 (`funnel_steps`: an empty list).
//! - **sequential** (default): walking forward, a row matching the next step
//!   advances one level. Other rows in between are allowed. One row advances
//!   at most one level, so a step repeated in the funnel needs its own row.
//! - **strict**: as sequential, but a row matching a funnel step other than
//!   the next one (or a repeat of the current one) ends the attempt.
//! - **any**: steps count in any order; the level is the number of distinct
//!   steps seen in the window, each row crediting the lowest step it
//!   matches that was not seen yet.
//! - **Exclusion** (`funnel_steps` only): a row matching the exclusion
//!   condition between the anchor and the conversion (the last step's time
//!   if the funnel was completed, else the window's end) excludes the group:
//!   the result is NULL, so the group drops out of every step's count.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, Int32Builder, Int64Array, ListBuilder,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

use super::grouped::{GroupedRows, Groups, RowsAggregate};

/// Most steps in one funnel.
pub const MAX_STEPS: usize = 62;
/// Bit of a row's mask that marks the exclusion condition.
pub const EXCLUDE_BIT: u64 = 1 << 63;

/// How steps must follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunnelMode {
    /// In order, other events allowed in between.
    Sequential,
    /// In order, no other funnel step in between.
    Strict,
    /// In any order.
    Any,
}

impl FunnelMode {
    /// Parses `sequential`, `strict` or `any`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sequential" | "ordered" | "" => Some(FunnelMode::Sequential),
            "strict" => Some(FunnelMode::Strict),
            "any" | "unordered" => Some(FunnelMode::Any),
            _ => None,
        }
    }
}

/// One row that matched at least one step or the exclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunnelRow {
    /// Event time, microseconds.
    pub ts: i64,
    /// Bit `i` set: the row matches step `i + 1`; [`EXCLUDE_BIT`]: the exclusion.
    pub mask: u64,
}

fn lowest_step(mask: u64) -> u32 {
    (mask & !EXCLUDE_BIT).trailing_zeros()
}

/// Evaluates one group's funnel: `None` when excluded, otherwise the time
/// (microseconds after step 1) at which each reached step was reached; its
/// length is the level.
pub fn evaluate(
    rows: &mut [FunnelRow],
    steps: usize,
    window_us: i64,
    mode: FunnelMode,
) -> Option<Vec<i64>> {
    let mut times = Vec::new();
    evaluate_into(rows, steps, window_us, mode, &mut times).then_some(times)
}

/// [`evaluate`] into a reused buffer: `false` when excluded, otherwise
/// `times` holds the reached steps' times.
pub(crate) fn evaluate_into(
    rows: &mut [FunnelRow],
    steps: usize,
    window_us: i64,
    mode: FunnelMode,
    times: &mut Vec<i64>,
) -> bool {
    times.clear();
    // Rows mostly arrive in time order already (files are written in
    // arrival order and the grouping keeps it).
    // A total order: rows with the same time and lowest step (possible when
    // step conditions overlap) go by their mask, so the answer does not
    // depend on the order rows arrived in.
    let key = |r: &FunnelRow| (r.ts, lowest_step(r.mask), r.mask);
    if !rows.is_sorted_by_key(key) {
        rows.sort_unstable_by_key(key);
    }
    let step_bits = if steps >= 64 {
        !EXCLUDE_BIT
    } else {
        (1u64 << steps) - 1
    };
    let anchor = match mode {
        FunnelMode::Any => rows.iter().position(|r| r.mask & step_bits != 0),
        _ => rows.iter().position(|r| r.mask & 1 != 0),
    };
    let Some(anchor) = anchor else {
        return true;
    };
    let t0 = rows[anchor].ts;
    let end = t0.saturating_add(window_us.max(0));
    times.push(0);
    match mode {
        FunnelMode::Sequential | FunnelMode::Strict => {
            for r in &rows[anchor + 1..] {
                if r.ts > end || times.len() == steps {
                    break;
                }
                let next = times.len();
                if r.mask & (1 << next) != 0 {
                    times.push(r.ts - t0);
                } else if mode == FunnelMode::Strict
                    && r.mask & step_bits != 0
                    && r.mask & (1 << (next - 1)) == 0
                {
                    break;
                }
            }
        }
        FunnelMode::Any => {
            let mut seen = 1u64 << lowest_step(rows[anchor].mask);
            for r in &rows[anchor + 1..] {
                if r.ts > end || times.len() == steps {
                    break;
                }
                let new = r.mask & step_bits & !seen;
                if new != 0 {
                    seen |= new & new.wrapping_neg();
                    times.push(r.ts - t0);
                }
            }
        }
    }
    let exclusion_end = if times.len() == steps {
        t0 + times[times.len() - 1]
    } else {
        end
    };
    let excluded = rows[anchor..]
        .iter()
        .take_while(|r| r.ts <= exclusion_end)
        .any(|r| r.mask & EXCLUDE_BIT != 0);
    !excluded
}

/// Which face of the funnel aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Face {
    /// `window_funnel(window_s, mode, ts, step...)` -> Int32 level.
    Level,
    /// `funnel_steps(window_s, mode, ts, exclude, step...)` -> List<Float64> seconds.
    Steps,
}

/// The funnel aggregate UDF.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunnelUdaf {
    signature: Signature,
    face: Face,
}

/// `window_funnel(window_seconds, mode, timestamp, step1, step2, ...)`.
pub fn window_funnel() -> AggregateUDF {
    AggregateUDF::from(FunnelUdaf {
        signature: Signature::variadic_any(Volatility::Immutable),
        face: Face::Level,
    })
}

/// `funnel_steps(window_seconds, mode, timestamp, exclude, step1, step2, ...)`.
pub fn funnel_steps() -> AggregateUDF {
    AggregateUDF::from(FunnelUdaf {
        signature: Signature::variadic_any(Volatility::Immutable),
        face: Face::Steps,
    })
}

impl FunnelUdaf {
    /// True for `window_funnel` (a level), false for `funnel_steps` (a list
    /// of times, with an exclusion condition before the steps).
    pub(crate) fn is_level(&self) -> bool {
        self.face == Face::Level
    }

    /// Arguments before the step conditions.
    fn fixed_args(&self) -> usize {
        match self.face {
            Face::Level => 3,
            Face::Steps => 4,
        }
    }

    /// The constant arguments of one call.
    fn spec(&self, args: &AccumulatorArgs<'_>) -> Result<FunnelSpec> {
        let literal = |i: usize| -> Result<ScalarValue> {
            match args.exprs.get(i).and_then(|e| e.downcast_ref::<Literal>()) {
                Some(l) => Ok(l.value().clone()),
                None => plan_err!("{}: argument {} must be a constant", self.name(), i + 1),
            }
        };
        let window_s = match literal(0)?.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(w)) if w >= 0 => w,
            other => {
                return plan_err!(
                    "{}: the window must be a non-negative number of seconds, got {other}",
                    self.name()
                );
            }
        };
        let mode = match literal(1)? {
            ScalarValue::Utf8(Some(m))
            | ScalarValue::LargeUtf8(Some(m))
            | ScalarValue::Utf8View(Some(m)) => m,
            other => return plan_err!("{}: the mode must be a string, got {other}", self.name()),
        };
        let Some(mode) = FunnelMode::parse(&mode) else {
            return plan_err!(
                "{}: unknown mode {mode:?}; use 'sequential', 'strict' or 'any'",
                self.name()
            );
        };
        Ok(FunnelSpec {
            face: self.face,
            steps: args.exprs.len() - self.fixed_args(),
            window_us: window_s.saturating_mul(1_000_000),
            mode,
        })
    }

    fn check_types(&self, types: &[DataType]) -> Result<()> {
        let fixed = self.fixed_args();
        let name = self.name();
        if types.len() < fixed + 1 {
            return plan_err!(
                "{name} needs a window in seconds, a mode, a timestamp{} and at least one step",
                if self.face == Face::Steps {
                    ", an exclusion condition"
                } else {
                    ""
                }
            );
        }
        if types.len() - fixed > MAX_STEPS {
            return plan_err!("{name} supports at most {MAX_STEPS} steps");
        }
        if !types[0].is_integer() {
            return plan_err!(
                "{name}: the window (argument 1) must be an integer number of seconds, got {}",
                types[0]
            );
        }
        if !matches!(
            types[1],
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return plan_err!(
                "{name}: the mode (argument 2) must be 'sequential', 'strict' or 'any'"
            );
        }
        if !matches!(types[2], DataType::Timestamp(_, _) | DataType::Int64) {
            return plan_err!("{name}: argument 3 must be a timestamp, got {}", types[2]);
        }
        for (i, t) in types.iter().enumerate().skip(3) {
            if !matches!(t, DataType::Boolean | DataType::Null) {
                return plan_err!(
                    "{name}: argument {} must be a boolean condition, got {t}",
                    i + 1
                );
            }
        }
        Ok(())
    }
}

impl AggregateUDFImpl for FunnelUdaf {
    fn name(&self) -> &str {
        match self.face {
            Face::Level => "window_funnel",
            Face::Steps => "funnel_steps",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.check_types(arg_types)?;
        Ok(match self.face {
            Face::Level => DataType::Int32,
            Face::Steps => DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
        })
    }

    fn accumulator(&self, args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FunnelAccumulator {
            spec: self.spec(&args)?,
            rows: Vec::new(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs<'_>) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs<'_>,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(GroupedRows::new(self.spec(&args)?)))
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[ts]", args.name),
                DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[mask]", args.name),
                DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, true))),
                true,
            )),
        ])
    }
}

/// The constant arguments of one funnel call.
#[derive(Debug, Clone, Copy)]
struct FunnelSpec {
    face: Face,
    steps: usize,
    window_us: i64,
    mode: FunnelMode,
}

impl FunnelSpec {
    /// Calls `each(i, row)` for every input row matching a step or the
    /// exclusion.
    fn collect(&self, values: &[ArrayRef], each: &mut dyn FnMut(usize, FunnelRow)) -> Result<()> {
        let fixed = match self.face {
            Face::Level => 3,
            Face::Steps => 4,
        };
        let ts = super::timestamps_us(&values[2])?;
        let conditions: Vec<(u64, Option<&BooleanArray>)> = values[3..]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let bit = if self.face == Face::Steps && i == 0 {
                    EXCLUDE_BIT
                } else {
                    1u64 << (i + 3 - fixed)
                };
                (bit, v.as_boolean_opt())
            })
            .collect();
        // Column by column: the mask of every row, then one pass.
        let mut masks = vec![0u64; ts.len()];
        for (bit, array) in &conditions {
            let Some(a) = array else { continue };
            let values = a.values();
            match a.nulls() {
                None => {
                    for i in values.set_indices() {
                        masks[i] |= bit;
                    }
                }
                Some(nulls) => {
                    for i in values.set_indices() {
                        if nulls.is_valid(i) {
                            masks[i] |= bit;
                        }
                    }
                }
            }
        }
        for (row, &mask) in masks.iter().enumerate() {
            if mask != 0 && ts.is_valid(row) {
                each(
                    row,
                    FunnelRow {
                        ts: ts.value(row),
                        mask,
                    },
                );
            }
        }
        Ok(())
    }

    /// The result for one group's rows.
    fn finish(&self, rows: &mut [FunnelRow]) -> ScalarValue {
        let outcome = evaluate(rows, self.steps, self.window_us, self.mode);
        match self.face {
            Face::Level => ScalarValue::Int32(outcome.map(|t| t.len() as i32)),
            Face::Steps => {
                let mut builder = ListBuilder::new(Float64Builder::new());
                match outcome {
                    Some(times) => {
                        for t in times {
                            builder.values().append_value(t as f64 / 1e6);
                        }
                        builder.append(true);
                    }
                    None => builder.append(false),
                }
                ScalarValue::List(Arc::new(builder.finish()))
            }
        }
    }
}

impl RowsAggregate for FunnelSpec {
    type Row = FunnelRow;

    fn rows(&self, values: &[ArrayRef], each: &mut dyn FnMut(usize, FunnelRow)) -> Result<()> {
        self.collect(values, each)
    }

    fn state(&self, groups: &Groups<FunnelRow>) -> Result<Vec<ArrayRef>> {
        let ts = Int64Array::from_iter_values(groups.all().iter().map(|r| r.ts));
        let mask = UInt64Array::from_iter_values(groups.all().iter().map(|r| r.mask));
        Ok(vec![
            groups.lists(DataType::Int64, Arc::new(ts)),
            groups.lists(DataType::UInt64, Arc::new(mask)),
        ])
    }

    fn merge(&self, states: &[ArrayRef], each: &mut dyn FnMut(usize, FunnelRow)) -> Result<()> {
        merge_states(states, each)
    }

    fn evaluate(&self, groups: &mut Groups<FunnelRow>) -> Result<ArrayRef> {
        let mut times = Vec::new();
        let (steps, window, mode) = (self.steps, self.window_us, self.mode);
        Ok(match self.face {
            Face::Level => {
                let mut levels = Int32Builder::with_capacity(groups.len());
                for rows in groups.iter_mut() {
                    if evaluate_into(rows, steps, window, mode, &mut times) {
                        levels.append_value(times.len() as i32);
                    } else {
                        levels.append_null();
                    }
                }
                Arc::new(levels.finish())
            }
            Face::Steps => {
                let mut lists = ListBuilder::new(Float64Builder::new());
                for rows in groups.iter_mut() {
                    if evaluate_into(rows, steps, window, mode, &mut times) {
                        for &t in &times {
                            lists.values().append_value(t as f64 / 1e6);
                        }
                        lists.append(true);
                    } else {
                        lists.append(false);
                    }
                }
                Arc::new(lists.finish())
            }
        })
    }
}

/// Calls `each(i, row)` for the rows in state row `i`.
fn merge_states(states: &[ArrayRef], each: &mut dyn FnMut(usize, FunnelRow)) -> Result<()> {
    let ts = states[0].as_list::<i32>();
    let mask = states[1].as_list::<i32>();
    let ts_values = ts.values().as_primitive::<Int64Type>();
    let mask_values = mask.values().as_primitive::<UInt64Type>();
    let (ts_offsets, mask_offsets) = (ts.value_offsets(), mask.value_offsets());
    for i in 0..ts.len() {
        if ts.is_null(i) || mask.is_null(i) {
            continue;
        }
        let (t0, t1) = (ts_offsets[i] as usize, ts_offsets[i + 1] as usize);
        let m0 = mask_offsets[i] as usize;
        for j in 0..t1 - t0 {
            each(
                i,
                FunnelRow {
                    ts: ts_values.value(t0 + j),
                    mask: mask_values.value(m0 + j),
                },
            );
        }
    }
    Ok(())
}

/// The per-group accumulator (used without grouping, e.g. one funnel over
/// the whole table).
#[derive(Debug)]
struct FunnelAccumulator {
    spec: FunnelSpec,
    rows: Vec<FunnelRow>,
}

impl Accumulator for FunnelAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = &mut self.rows;
        self.spec.collect(values, &mut |_, r| rows.push(r))
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.spec.finish(&mut self.rows))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * std::mem::size_of::<FunnelRow>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.spec
            .state(&Groups::single(self.rows.clone()))?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = &mut self.rows;
        merge_states(states, &mut |_, r| rows.push(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn rows(spec: &[(i64, u64)]) -> Vec<FunnelRow> {
        spec.iter()
            .map(|&(ts, mask)| FunnelRow { ts: ts * S, mask })
            .collect()
    }

    fn level(spec: &[(i64, u64)], steps: usize, window_s: i64, mode: FunnelMode) -> Option<usize> {
        evaluate(&mut rows(spec), steps, window_s * S, mode).map(|t| t.len())
    }

    const A: u64 = 1;
    const B: u64 = 2;
    const C: u64 = 4;
    const X: u64 = EXCLUDE_BIT;

    /// Rows tied on time and lowest step (overlapping step conditions)
    /// give the same answer whatever order they arrive in.
    #[test]
    fn ties_do_not_depend_on_arrival_order() {
        for mode in [FunnelMode::Sequential, FunnelMode::Strict, FunnelMode::Any] {
            for spec in [[(0, A), (0, A | B), (5, C)], [(0, A | C), (0, A), (5, B)]] {
                let mut reversed = spec;
                reversed.reverse();
                assert_eq!(
                    level(&spec, 3, 60, mode),
                    level(&reversed, 3, 60, mode),
                    "{mode:?} {spec:?}"
                );
            }
        }
        // The row matching fewer steps comes first: A, then A|B advances.
        assert_eq!(
            level(&[(0, A | B), (0, A)], 2, 60, FunnelMode::Sequential),
            Some(2)
        );
    }

    /// `EmitTo::First(n)` (DataFusion emits early under memory pressure or
    /// with ordered groups) hands out the first `n` groups and renumbers
    /// the rest from 0; rows added afterwards join the renumbered groups.
    #[test]
    fn grouped_rows_emit_first_groups_then_the_rest() -> Result<()> {
        use arrow::array::Int32Array;
        use datafusion::logical_expr::EmitTo;
        let spec = FunnelSpec {
            face: Face::Level,
            steps: 2,
            window_us: 100,
            mode: FunnelMode::Sequential,
        };
        let batch = |ts: Vec<i64>, a: Vec<bool>, b: Vec<bool>| -> Vec<ArrayRef> {
            let unused: ArrayRef = Arc::new(Int64Array::from(vec![0; ts.len()]));
            vec![
                Arc::clone(&unused),
                unused,
                Arc::new(Int64Array::from(ts)),
                Arc::new(BooleanArray::from(a)),
                Arc::new(BooleanArray::from(b)),
            ]
        };
        let mut acc = GroupedRows::new(spec);
        // Group 0: step 1 only; group 1: steps 1 then 2 (arriving out of
        // order); group 2: step 1.
        acc.update_batch(
            &batch(
                vec![3, 2, 1, 4],
                vec![false, true, true, true],
                vec![true, false, false, false],
            ),
            &[1, 0, 1, 2],
            None,
            3,
        )?;
        let first = acc.evaluate(EmitTo::First(2))?;
        assert_eq!(
            first.as_primitive::<arrow::datatypes::Int32Type>(),
            &Int32Array::from(vec![1, 2])
        );
        // Old group 2 is now group 0; a new group 1 appears.
        acc.update_batch(
            &batch(vec![5, 6], vec![false, true], vec![true, false]),
            &[0, 1],
            None,
            2,
        )?;
        let rest = acc.evaluate(EmitTo::All)?;
        assert_eq!(
            rest.as_primitive::<arrow::datatypes::Int32Type>(),
            &Int32Array::from(vec![2, 1])
        );
        let empty = acc.evaluate(EmitTo::All)?;
        assert_eq!(empty.len(), 0);
        Ok(())
    }

    #[test]
    fn sequential_basics() {
        use FunnelMode::Sequential as Q;
        assert_eq!(level(&[], 3, 100, Q), Some(0));
        assert_eq!(
            level(&[(5, B), (6, C)], 3, 100, Q),
            Some(0),
            "no step 1, no entry"
        );
        assert_eq!(level(&[(0, A), (10, B), (20, C)], 3, 100, Q), Some(3));
        assert_eq!(
            level(&[(0, A), (20, C), (10, B)], 3, 100, Q),
            Some(3),
            "input order does not matter"
        );
        assert_eq!(
            level(&[(0, A), (10, C), (20, B)], 3, 100, Q),
            Some(2),
            "C before B does not count"
        );
        assert_eq!(
            level(&[(0, A), (10, B), (200, C)], 3, 100, Q),
            Some(2),
            "C outside the window"
        );
        assert_eq!(
            level(&[(0, A), (10, B), (100, C)], 3, 100, Q),
            Some(3),
            "window end is inclusive"
        );
    }

    #[test]
    fn anchored_at_the_first_step_one() {
        use FunnelMode::Sequential as Q;
        // A later step-1 does not restart the window.
        assert_eq!(level(&[(0, A), (150, A), (160, B)], 2, 100, Q), Some(1));
        let t =
            evaluate(&mut rows(&[(0, A), (50, A), (60, B)]), 2, 100 * S, Q).expect("not excluded");
        assert_eq!(
            t,
            vec![0, 60 * S],
            "times are measured from the first step-1 row"
        );
    }

    #[test]
    fn ties_and_repeated_steps() {
        use FunnelMode::Sequential as Q;
        // Same timestamp: step 1 is taken first, then step 2 converts at 0 s.
        assert_eq!(level(&[(5, B), (5, A)], 2, 10, Q), Some(2));
        // One row matching steps 1 and 2 (A|B) advances one level only.
        assert_eq!(level(&[(0, A | B)], 2, 10, Q), Some(1));
        assert_eq!(level(&[(0, A | B), (1, A | B)], 2, 10, Q), Some(2));
        // Funnel A -> B -> A (step 3 repeats step 1's condition): bit 2 set on A rows.
        assert_eq!(level(&[(0, A | C), (1, B), (2, A | C)], 3, 10, Q), Some(3));
        assert_eq!(level(&[(0, A | C), (1, B)], 3, 10, Q), Some(2));
    }

    #[test]
    fn strict_mode() {
        use FunnelMode::Strict as T;
        assert_eq!(level(&[(0, A), (1, B), (2, C)], 3, 10, T), Some(3));
        assert_eq!(
            level(&[(0, A), (1, C), (2, B), (3, C)], 3, 10, T),
            Some(1),
            "C out of order ends it"
        );
        assert_eq!(
            level(&[(0, A), (1, A), (2, B)], 2, 10, T),
            Some(2),
            "repeating the current step is allowed"
        );
        assert_eq!(
            level(&[(0, A), (1, B), (2, A), (3, C)], 3, 10, T),
            Some(2),
            "going back ends it"
        );
        // Rows matching no step (mask 0) never reach the evaluator, so other events are fine.
    }

    #[test]
    fn any_order() {
        use FunnelMode::Any as Y;
        assert_eq!(level(&[(0, C), (1, A), (2, B)], 3, 10, Y), Some(3));
        assert_eq!(level(&[(0, C), (1, C), (2, B)], 3, 10, Y), Some(2));
        assert_eq!(
            level(&[(0, B), (20, A)], 2, 10, Y),
            Some(1),
            "anchored at the first step of any kind"
        );
    }

    #[test]
    fn exclusion_drops_the_group() {
        use FunnelMode::Sequential as Q;
        assert_eq!(level(&[(0, A), (5, X), (10, B)], 2, 100, Q), None);
        assert_eq!(
            level(&[(0, A), (10, B), (50, X)], 2, 100, Q),
            Some(2),
            "after conversion it does not matter"
        );
        assert_eq!(
            level(&[(0, A), (50, X)], 2, 100, Q),
            None,
            "not converted: the whole window counts"
        );
        assert_eq!(
            level(&[(0, A), (150, X)], 2, 100, Q),
            Some(1),
            "outside the window"
        );
        assert_eq!(
            level(&[(0, X), (1, A), (2, B)], 2, 100, Q),
            Some(2),
            "before the anchor"
        );
    }

    /// The grouped accumulator (update, partial state with `EmitTo::First`,
    /// rows converted straight to state, merge) answers what `evaluate`
    /// answers per group.
    #[test]
    fn grouped_accumulator_equals_per_group_evaluation() {
        use arrow::array::{BooleanArray, TimestampMicrosecondArray};
        use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

        let spec = FunnelSpec {
            face: Face::Level,
            steps: 3,
            window_us: 100 * S,
            mode: FunnelMode::Sequential,
        };
        // (group, second, step matched: 0 none, 1..3)
        let input: Vec<(usize, i64, u8)> = vec![
            (0, 0, 1),
            (1, 5, 2),
            (0, 10, 2),
            (2, 0, 1),
            (1, 6, 1),
            (0, 20, 3),
            (2, 300, 2),
            (1, 7, 2),
            (3, 1, 0),
            (1, 50, 3),
            (2, 1, 0),
        ];
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from_iter_values(
            input.iter().map(|r| r.1 * S),
        ));
        let step = |k: u8| -> ArrayRef {
            Arc::new(BooleanArray::from_iter(
                input.iter().map(|r| Some(r.2 == k)),
            ))
        };
        let window: ArrayRef = Arc::new(Int64Array::from(vec![0; input.len()]));
        let values = vec![Arc::clone(&window), window, ts, step(1), step(2), step(3)];
        let groups: Vec<usize> = input.iter().map(|r| r.0).collect();

        let mut partial = GroupedRows::new(spec);
        partial
            .update_batch(&values, &groups, None, 4)
            .expect("update");
        let first_two = partial.state(EmitTo::First(2)).expect("state");
        let rest = partial.state(EmitTo::All).expect("state");
        let converted = partial.convert_to_state(&values, None).expect("convert");

        let mut a = GroupedRows::new(spec);
        a.merge_batch(&first_two, &[0, 1], 4).expect("merge");
        a.merge_batch(&rest, &[2, 3], 4).expect("merge");
        let mut b = GroupedRows::new(spec);
        b.merge_batch(&converted, &groups, 4).expect("merge");
        let want: Vec<Option<i32>> = (0..4)
            .map(|g| {
                let mut rows: Vec<FunnelRow> = input
                    .iter()
                    .filter(|r| r.0 == g && r.2 > 0)
                    .map(|r| FunnelRow {
                        ts: r.1 * S,
                        mask: 1 << (r.2 - 1),
                    })
                    .collect();
                evaluate(&mut rows, 3, 100 * S, FunnelMode::Sequential).map(|t| t.len() as i32)
            })
            .collect();
        assert_eq!(want, vec![Some(3), Some(3), Some(1), Some(0)]);
        for acc in [&mut a, &mut b] {
            let got = acc.evaluate(EmitTo::All).expect("evaluate");
            let got: Vec<Option<i32>> = got
                .as_primitive::<arrow::datatypes::Int32Type>()
                .iter()
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn twenty_steps() {
        let spec: Vec<(i64, u64)> = (0..20).map(|i| (i as i64, 1u64 << i)).collect();
        assert_eq!(level(&spec, 20, 100, FunnelMode::Sequential), Some(20));
        assert_eq!(level(&spec, 20, 100, FunnelMode::Strict), Some(20));
        assert_eq!(level(&spec, 20, 10, FunnelMode::Any), Some(11));
    }
}
