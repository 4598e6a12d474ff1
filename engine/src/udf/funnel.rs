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
//! matching the lower step first):
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
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, Int64Array, ListArray, ListBuilder,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

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
    rows.sort_unstable_by_key(|r| (r.ts, lowest_step(r.mask)));
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
        return Some(Vec::new());
    };
    let t0 = rows[anchor].ts;
    let end = t0.saturating_add(window_us.max(0));
    let mut times = vec![0i64];
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
    (!excluded).then_some(times)
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
    /// Arguments before the step conditions.
    fn fixed_args(&self) -> usize {
        match self.face {
            Face::Level => 3,
            Face::Steps => 4,
        }
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
        Ok(Box::new(FunnelAccumulator {
            face: self.face,
            steps: args.exprs.len() - self.fixed_args(),
            window_us: window_s.saturating_mul(1_000_000),
            mode,
            rows: Vec::new(),
        }))
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

#[derive(Debug)]
struct FunnelAccumulator {
    face: Face,
    steps: usize,
    window_us: i64,
    mode: FunnelMode,
    rows: Vec<FunnelRow>,
}

impl Accumulator for FunnelAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
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
        for row in 0..ts.len() {
            if ts.is_null(row) {
                continue;
            }
            let mut mask = 0;
            for (bit, array) in &conditions {
                if let Some(a) = array
                    && a.is_valid(row)
                    && a.value(row)
                {
                    mask |= bit;
                }
            }
            if mask != 0 {
                self.rows.push(FunnelRow {
                    ts: ts.value(row),
                    mask,
                });
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let outcome = evaluate(&mut self.rows, self.steps, self.window_us, self.mode);
        Ok(match self.face {
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
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * std::mem::size_of::<FunnelRow>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let ts = Int64Array::from_iter_values(self.rows.iter().map(|r| r.ts));
        let mask = UInt64Array::from_iter_values(self.rows.iter().map(|r| r.mask));
        Ok(vec![
            ScalarValue::List(Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(DataType::Int64, true)),
                arrow::buffer::OffsetBuffer::from_lengths([ts.len()]),
                Arc::new(ts),
                None,
            ))),
            ScalarValue::List(Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(DataType::UInt64, true)),
                arrow::buffer::OffsetBuffer::from_lengths([mask.len()]),
                Arc::new(mask),
                None,
            ))),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let ts = states[0].as_list::<i32>();
        let mask = states[1].as_list::<i32>();
        for i in 0..ts.len() {
            if ts.is_null(i) || mask.is_null(i) {
                continue;
            }
            let t = ts.value(i);
            let m = mask.value(i);
            let t = t.as_primitive::<Int64Type>();
            let m = m.as_primitive::<UInt64Type>();
            self.rows.extend(
                t.values()
                    .iter()
                    .zip(m.values())
                    .map(|(&ts, &mask)| FunnelRow { ts, mask }),
            );
        }
        Ok(())
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

    #[test]
    fn twenty_steps() {
        let spec: Vec<(i64, u64)> = (0..20).map(|i| (i as i64, 1u64 << i)).collect();
        assert_eq!(level(&spec, 20, 100, FunnelMode::Sequential), Some(20));
        assert_eq!(level(&spec, 20, 100, FunnelMode::Strict), Some(20));
        assert_eq!(level(&spec, 20, 10, FunnelMode::Any), Some(11));
    }
}
