//! Cohort retention as an aggregate: `retention(...)`.
//!
//! ```sql
//! -- Monthly retention of customers by the month of their first order.
//! SELECT r.cohort, r.period, count(*) AS customers, sum(r.revenue) AS revenue
//! FROM (SELECT unnest(retention(timestamp, 'month', 'first',
//!                               event = 'Order Completed', event = 'Order Completed', revenue)) AS r
//!       FROM events WHERE user_id IS NOT NULL GROUP BY user_id)
//! GROUP BY 1, 2 ORDER BY 1, 2;
//! ```
//!
//! `retention(ts, unit, cohorts, start, return [, amount])`, per group (a
//! person), returns a list of `{cohort, period, revenue}`:
//!
//! - `unit`: `day`, `week` or `month` buckets in the workspace's calendar
//!   (time zone, week start), as `business_date` computes them.
//! - `cohorts = 'first'`: the group's cohort is the bucket of its first
//!   `start` row. `'recurring'`: every bucket with a `start` row starts a
//!   cohort of its own (the group counts once in each).
//! - For each cohort, one element per period `N >= 0` (buckets after the
//!   cohort's) in which a `return` row happened at or after the cohort's
//!   first `start` row; period 0 is always present (the cohort itself).
//!   `revenue` is the sum of `amount` over the `return` rows of that period
//!   (NULL without an amount argument).
//! - "Returned in exactly period N" is `period = N`; "returned in N or
//!   later" is `max(period) >= N` per group and cohort (see
//!   `docs/analytics.md`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray, StructArray, UInt8Array};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

use super::grouped::{GroupedRows, Groups, RowsAggregate};

use super::time::{BusinessCalendar, Unit};

const START: u8 = 1;
const RETURN: u8 = 2;

/// The `retention` aggregate bound to a workspace calendar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RetentionUdaf {
    calendar: BusinessCalendar,
    signature: Signature,
}

/// `retention(ts, unit, cohorts, start, return [, amount])`.
pub fn retention(calendar: BusinessCalendar) -> AggregateUDF {
    AggregateUDF::from(RetentionUdaf {
        calendar,
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

fn element_fields() -> Fields {
    Fields::from(vec![
        Field::new("cohort", DataType::Date32, false),
        Field::new("period", DataType::Int32, false),
        Field::new("revenue", DataType::Decimal128(38, 4), true),
    ])
}

fn output_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(element_fields()),
        true,
    )))
}

impl AggregateUDFImpl for RetentionUdaf {
    fn name(&self) -> &str {
        "retention"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !(5..=6).contains(&arg_types.len()) {
            return plan_err!(
                "retention takes (timestamp, unit, 'first'|'recurring', start condition, return condition [, amount])"
            );
        }
        if !matches!(arg_types[0], DataType::Timestamp(_, _)) {
            return plan_err!(
                "retention: argument 1 must be a timestamp, got {}",
                arg_types[0]
            );
        }
        for i in [3, 4] {
            if !matches!(arg_types[i], DataType::Boolean | DataType::Null) {
                return plan_err!(
                    "retention: argument {} must be a boolean condition, got {}",
                    i + 1,
                    arg_types[i]
                );
            }
        }
        if let Some(t) = arg_types.get(5)
            && !(t.is_numeric() || matches!(t, DataType::Null))
        {
            return plan_err!("retention: the amount (argument 6) must be numeric, got {t}");
        }
        Ok(output_type())
    }

    fn accumulator(&self, args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(self.spec(&args)?))
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
        let list = |name: &str, t: DataType| {
            Arc::new(Field::new(
                format!("{}[{name}]", args.name),
                DataType::List(Arc::new(Field::new_list_field(t, true))),
                true,
            ))
        };
        Ok(vec![
            list("ts", DataType::Int64),
            list("kind", DataType::UInt8),
            list("amount", DataType::Int64),
        ])
    }
}

impl RetentionUdaf {
    /// The constant arguments of one call, as an empty accumulator.
    fn spec(&self, args: &AccumulatorArgs<'_>) -> Result<RetentionAccumulator> {
        let text = |i: usize| -> Result<String> {
            match args
                .exprs
                .get(i)
                .and_then(|e| e.downcast_ref::<Literal>())
                .map(|l| l.value().clone())
            {
                Some(
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::Utf8View(Some(s))
                    | ScalarValue::LargeUtf8(Some(s)),
                ) => Ok(s),
                _ => plan_err!("retention: argument {} must be a constant string", i + 1),
            }
        };
        let unit = text(1)?;
        let unit = match Unit::parse(&unit) {
            Some(u @ (Unit::Day | Unit::Week | Unit::Month)) => u,
            _ => {
                return plan_err!("retention: unit must be 'day', 'week' or 'month', got {unit:?}");
            }
        };
        let recurring = match text(2)?.to_ascii_lowercase().as_str() {
            "first" | "first_time" => false,
            "recurring" | "every" => true,
            other => {
                return plan_err!(
                    "retention: cohorts must be 'first' or 'recurring', got {other:?}"
                );
            }
        };
        Ok(RetentionAccumulator {
            calendar: self.calendar,
            unit,
            recurring,
            has_amount: args.exprs.len() == 6,
            rows: Vec::new(),
        })
    }
}

/// One row that started or returned: time (µs), kind bits, amount (scaled 10^4).
#[derive(Debug, Clone, Copy)]
struct Row {
    ts: i64,
    kind: u8,
    amount: i64,
}

#[derive(Debug, Clone)]
struct RetentionAccumulator {
    calendar: BusinessCalendar,
    unit: Unit,
    recurring: bool,
    has_amount: bool,
    rows: Vec<Row>,
}

impl RetentionAccumulator {
    /// Bucket index of a time: days since the epoch for days, week starts
    /// / 7 for weeks, months since year 0 for months.
    fn bucket(&self, us: i64) -> Option<(i64, i32)> {
        let date = self.calendar.bucket(us, self.unit)?;
        let days = date.num_days_from_ce() - super::time::EPOCH_DAYS_CE;
        use chrono::Datelike;
        let index = match self.unit {
            Unit::Day => i64::from(days),
            Unit::Week => i64::from(days).div_euclid(7),
            _ => i64::from(date.year()) * 12 + i64::from(date.month0()),
        };
        Some((index, days))
    }

    /// Calls `each(i, row)` for every input row that starts or returns.
    fn collect(&self, values: &[ArrayRef], each: &mut dyn FnMut(usize, Row)) -> Result<()> {
        let ts = super::timestamps_us(&values[0])?;
        let start = values[3].as_boolean_opt();
        let ret = values[4].as_boolean_opt();
        // Amounts as 10^-4 units (money columns are Decimal(18,4)).
        let amount = match values.get(5) {
            Some(a) => Some(cast(a, &DataType::Decimal128(38, 4))?),
            None => None,
        };
        let amount = amount
            .as_ref()
            .map(|a| a.as_primitive::<arrow::datatypes::Decimal128Type>());
        for i in 0..ts.len() {
            if ts.is_null(i) {
                continue;
            }
            let on = |a: Option<&arrow::array::BooleanArray>| {
                a.is_some_and(|a| a.is_valid(i) && a.value(i))
            };
            let kind = if on(start) { START } else { 0 } | if on(ret) { RETURN } else { 0 };
            if kind != 0 {
                let amount = amount
                    .filter(|a| a.is_valid(i))
                    .map_or(0, |a| a.value(i) as i64);
                each(
                    i,
                    Row {
                        ts: ts.value(i),
                        kind,
                        amount,
                    },
                );
            }
        }
        Ok(())
    }

    /// (cohort date, period) -> revenue.
    fn evaluate_rows(&mut self) -> BTreeMap<(i32, i32), Option<i128>> {
        self.rows.sort_unstable_by_key(|r| r.ts);
        let mut out: BTreeMap<(i32, i32), Option<i128>> = BTreeMap::new();
        let starts: Vec<(i64, i64, i32)> = {
            let mut seen = std::collections::BTreeSet::new();
            self.rows
                .iter()
                .filter(|r| r.kind & START != 0)
                .filter_map(|r| self.bucket(r.ts).map(|(idx, days)| (r.ts, idx, days)))
                .filter(|(_, idx, _)| seen.insert(*idx))
                .take(if self.recurring { usize::MAX } else { 1 })
                .collect()
        };
        for (start_ts, start_idx, cohort_days) in starts {
            out.entry((cohort_days, 0)).or_insert(None);
            for r in self
                .rows
                .iter()
                .filter(|r| r.kind & RETURN != 0 && r.ts >= start_ts)
            {
                let Some((idx, _)) = self.bucket(r.ts) else {
                    continue;
                };
                let period = (idx - start_idx) as i32;
                let entry = out.entry((cohort_days, period)).or_insert(None);
                if self.has_amount {
                    *entry = Some(entry.unwrap_or(0) + i128::from(r.amount));
                }
            }
        }
        out
    }
}

fn list_of(values: ArrayRef, len: usize, item: DataType) -> ScalarValue {
    ScalarValue::List(Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(item, true)),
        OffsetBuffer::from_lengths([len]),
        values,
        None,
    )))
}

impl Accumulator for RetentionAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let mut rows = std::mem::take(&mut self.rows);
        let r = self.collect(values, &mut |_, row| rows.push(row));
        self.rows = rows;
        r
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let cells = self.evaluate_rows();
        let cohorts = arrow::array::Date32Array::from_iter_values(cells.keys().map(|(c, _)| *c));
        let periods = arrow::array::Int32Array::from_iter_values(cells.keys().map(|(_, p)| *p));
        let revenue = arrow::array::Decimal128Array::from_iter(cells.values().copied())
            .with_precision_and_scale(38, 4)?;
        let structs = StructArray::try_new(
            element_fields(),
            vec![Arc::new(cohorts), Arc::new(periods), Arc::new(revenue)],
            None,
        )?;
        Ok(list_of(
            Arc::new(structs),
            cells.len(),
            DataType::Struct(element_fields()),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * std::mem::size_of::<Row>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let n = self.rows.len();
        let ts = Int64Array::from_iter_values(self.rows.iter().map(|r| r.ts));
        let kind = UInt8Array::from_iter_values(self.rows.iter().map(|r| r.kind));
        let amount = Int64Array::from_iter_values(self.rows.iter().map(|r| r.amount));
        Ok(vec![
            list_of(Arc::new(ts), n, DataType::Int64),
            list_of(Arc::new(kind), n, DataType::UInt8),
            list_of(Arc::new(amount), n, DataType::Int64),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = &mut self.rows;
        merge_rows(states, &mut |_, row| rows.push(row))
    }
}

/// Calls `each(i, row)` for the rows in state row `i`.
fn merge_rows(states: &[ArrayRef], each: &mut dyn FnMut(usize, Row)) -> Result<()> {
    let (ts, kind, amount) = (
        states[0].as_list::<i32>(),
        states[1].as_list::<i32>(),
        states[2].as_list::<i32>(),
    );
    for i in 0..ts.len() {
        if ts.is_null(i) {
            continue;
        }
        let (t, k, a) = (ts.value(i), kind.value(i), amount.value(i));
        let (t, k, a) = (
            t.as_primitive::<Int64Type>(),
            k.as_primitive::<arrow::datatypes::UInt8Type>(),
            a.as_primitive::<Int64Type>(),
        );
        for j in 0..t.len() {
            each(
                i,
                Row {
                    ts: t.value(j),
                    kind: k.value(j),
                    amount: a.value(j),
                },
            );
        }
    }
    Ok(())
}

impl RowsAggregate for RetentionAccumulator {
    type Row = Row;

    fn rows(&self, values: &[ArrayRef], each: &mut dyn FnMut(usize, Row)) -> Result<()> {
        self.collect(values, each)
    }

    fn state(&self, groups: &Groups<Row>) -> Result<Vec<ArrayRef>> {
        let all = || groups.all().iter();
        Ok(vec![
            groups.lists(
                DataType::Int64,
                Arc::new(Int64Array::from_iter_values(all().map(|r| r.ts))),
            ),
            groups.lists(
                DataType::UInt8,
                Arc::new(UInt8Array::from_iter_values(all().map(|r| r.kind))),
            ),
            groups.lists(
                DataType::Int64,
                Arc::new(Int64Array::from_iter_values(all().map(|r| r.amount))),
            ),
        ])
    }

    fn merge(&self, states: &[ArrayRef], each: &mut dyn FnMut(usize, Row)) -> Result<()> {
        merge_rows(states, each)
    }

    fn evaluate(&self, groups: &mut Groups<Row>) -> Result<ArrayRef> {
        let mut one = self.clone();
        let values = groups
            .iter_mut()
            .map(|rows| {
                one.rows.clear();
                one.rows.extend_from_slice(rows);
                Accumulator::evaluate(&mut one)
            })
            .collect::<Result<Vec<_>>>()?;
        ScalarValue::iter_to_array(values)
    }
}
