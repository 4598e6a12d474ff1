//! Business-time functions: buckets, hours and weekdays in the workspace's
//! time zone, with its first day of the week.
//!
//! Events are stored in UTC; every day/week/month bucket and hour of day an
//! analytics answer shows is local to the business (`Europe/London` by
//! default, set per workspace). These functions are registered per session
//! with the workspace's settings, so the same SQL means the same thing
//! everywhere in Beacon (the analytics API uses them too).
//!
//! - `business_date(ts, unit)`: the first local day of the bucket holding
//!   `ts` (`Date32`); unit is `day`, `week` (starting on the workspace's
//!   week start), `month`, `quarter` or `year`.
//! - `business_hour(ts)`: local hour, 0-23.
//! - `business_weekday(ts)`: local weekday, 1 = Monday ... 7 = Sunday (ISO).
//! - `business_time(ts)`: the local wall-clock time (timestamp without zone).
//!
//! DST: a local day is the span between two local midnights (23 or 25
//! hours on change days); the repeated autumn hour counts in its hour of
//! day both times.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Int32Builder, TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::FieldRef;
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Weekday};
use chrono_tz::Tz;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// A workspace's calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BusinessCalendar {
    /// Time zone.
    pub tz: Tz,
    /// First day of the week.
    pub week_start: Weekday,
}

impl Default for BusinessCalendar {
    /// UTC, weeks from Monday.
    fn default() -> Self {
        Self {
            tz: chrono_tz::UTC,
            week_start: Weekday::Mon,
        }
    }
}

impl BusinessCalendar {
    /// A calendar in `tz` with weeks from `week_start` (a workspace's comes
    /// from [`crate::Engine::calendar`], which validates its settings).
    pub fn new(tz: Tz, week_start: Weekday) -> Self {
        Self { tz, week_start }
    }

    fn local(&self, us: i64) -> Option<chrono::DateTime<Tz>> {
        DateTime::from_timestamp_micros(us).map(|t| t.with_timezone(&self.tz))
    }

    /// The first local day of `unit`'s bucket holding `us`.
    pub fn bucket(&self, us: i64, unit: Unit) -> Option<NaiveDate> {
        let day = self.local(us)?.date_naive();
        Some(match unit {
            Unit::Day => day,
            Unit::Week => {
                let back = (7 + day.weekday().num_days_from_monday()
                    - self.week_start.num_days_from_monday())
                    % 7;
                day - chrono::Duration::days(i64::from(back))
            }
            Unit::Month => day.with_day(1)?,
            Unit::Quarter => NaiveDate::from_ymd_opt(day.year(), (day.month0() / 3) * 3 + 1, 1)?,
            Unit::Year => NaiveDate::from_ymd_opt(day.year(), 1, 1)?,
        })
    }
}

/// A bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Local day.
    Day,
    /// Local week from the workspace's week start.
    Week,
    /// Calendar month.
    Month,
    /// Calendar quarter.
    Quarter,
    /// Calendar year.
    Year,
}

impl Unit {
    /// Parses `day`, `week`, `month`, `quarter`, `year`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().trim_end_matches('s') {
            "day" => Unit::Day,
            "week" => Unit::Week,
            "month" => Unit::Month,
            "quarter" => Unit::Quarter,
            "year" => Unit::Year,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Date,
    Hour,
    Weekday,
    Time,
}

/// One business-time function bound to a calendar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BusinessTimeUdf {
    calendar: BusinessCalendar,
    kind: Kind,
    signature: Signature,
}

/// The four functions for `calendar`.
pub fn functions(calendar: BusinessCalendar) -> Vec<ScalarUDF> {
    [Kind::Date, Kind::Hour, Kind::Weekday, Kind::Time]
        .into_iter()
        .map(|kind| {
            ScalarUDF::from(BusinessTimeUdf {
                calendar,
                kind,
                signature: Signature::variadic_any(Volatility::Immutable),
            })
        })
        .collect()
}

const UNIT_MESSAGE: &str =
    "business_date: the unit must be a constant 'day', 'week', 'month', 'quarter' or 'year'";

/// `NaiveDate::num_days_from_ce` of 1970-01-01 (Date32 counts from there).
pub(crate) const EPOCH_DAYS_CE: i32 = 719_163;

fn micros(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = value.to_array(rows)?;
    Ok(match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) | DataType::Int64 => array,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null => {
            cast(&array, &DataType::Timestamp(TimeUnit::Microsecond, None))?
        }
        other => return plan_err!("business time functions take a timestamp, got {other}"),
    })
}

impl ScalarUDFImpl for BusinessTimeUdf {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Date => "business_date",
            Kind::Hour => "business_hour",
            Kind::Weekday => "business_weekday",
            Kind::Time => "business_time",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let expected = if self.kind == Kind::Date { 2 } else { 1 };
        if arg_types.len() != expected {
            return plan_err!(
                "{} takes {}",
                self.name(),
                if expected == 2 {
                    "a timestamp and a unit ('day', 'week', 'month', 'quarter', 'year')"
                } else {
                    "one timestamp"
                }
            );
        }
        if !matches!(
            arg_types[0],
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null
        ) {
            return plan_err!(
                "{}: argument 1 must be a timestamp, got {}",
                self.name(),
                arg_types[0]
            );
        }
        Ok(match self.kind {
            Kind::Date => DataType::Date32,
            Kind::Hour | Kind::Weekday => DataType::Int32,
            Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, None),
        })
    }

    /// Checks `business_date`'s unit when the query is planned, so a bad
    /// unit is the caller's error (400), not a failure while running.
    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        if self.kind == Kind::Date && args.scalar_arguments.len() == 2 {
            let valid = match args.scalar_arguments[1] {
                Some(
                    ScalarValue::Utf8(Some(u))
                    | ScalarValue::Utf8View(Some(u))
                    | ScalarValue::LargeUtf8(Some(u)),
                ) => Unit::parse(u).is_some(),
                _ => false,
            };
            if !valid {
                return plan_err!("{UNIT_MESSAGE}");
            }
        }
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Ok(Arc::new(arrow::datatypes::Field::new(
            self.name(),
            self.return_type(&types)?,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let ts = micros(&args.args[0], rows)?;
        let values: Vec<Option<i64>> = match ts.data_type() {
            DataType::Int64 => ts.as_primitive::<Int64Type>().iter().collect(),
            _ => ts
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect(),
        };
        let cal = &self.calendar;
        let out: ArrayRef = match self.kind {
            Kind::Date => {
                let unit = match &args.args[1] {
                    ColumnarValue::Scalar(
                        ScalarValue::Utf8(Some(u))
                        | ScalarValue::Utf8View(Some(u))
                        | ScalarValue::LargeUtf8(Some(u)),
                    ) => Unit::parse(u),
                    _ => None,
                };
                let Some(unit) = unit else {
                    return plan_err!("{UNIT_MESSAGE}");
                };
                let mut b = Date32Builder::with_capacity(rows);
                for v in values {
                    b.append_option(
                        v.and_then(|us| cal.bucket(us, unit))
                            .map(|d| d.num_days_from_ce() - EPOCH_DAYS_CE),
                    );
                }
                Arc::new(b.finish())
            }
            Kind::Hour | Kind::Weekday => {
                let mut b = Int32Builder::with_capacity(rows);
                for v in values {
                    b.append_option(v.and_then(|us| cal.local(us)).map(|t| match self.kind {
                        Kind::Hour => t.hour() as i32,
                        _ => t.weekday().number_from_monday() as i32,
                    }));
                }
                Arc::new(b.finish())
            }
            Kind::Time => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows);
                for v in values {
                    b.append_option(
                        v.and_then(|us| cal.local(us))
                            .map(|t| t.naive_local().and_utc().timestamp_micros()),
                    );
                }
                Arc::new(b.finish())
            }
        };
        if matches!(args.args[0], ColumnarValue::Scalar(_)) {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_micros()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn buckets_are_local() {
        let london = BusinessCalendar::new(chrono_tz::Europe::London, Weekday::Mon);
        // 23:30 UTC on 30 June is 00:30 on 1 July in London (BST).
        let t = us("2026-06-30T23:30:00Z");
        assert_eq!(london.bucket(t, Unit::Day), Some(date("2026-07-01")));
        assert_eq!(london.bucket(t, Unit::Month), Some(date("2026-07-01")));
        assert_eq!(london.bucket(t, Unit::Quarter), Some(date("2026-07-01")));
        // In winter London is UTC.
        assert_eq!(
            london.bucket(us("2026-01-31T23:30:00Z"), Unit::Month),
            Some(date("2026-01-01"))
        );
        let ny = BusinessCalendar::new(chrono_tz::America::New_York, Weekday::Sun);
        // 2026-11-22 is a Sunday; 03:00 UTC on it is Saturday evening in New York.
        assert_eq!(
            ny.bucket(us("2026-11-22T03:00:00Z"), Unit::Week),
            Some(date("2026-11-15"))
        );
        assert_eq!(
            ny.bucket(us("2026-11-22T12:00:00Z"), Unit::Week),
            Some(date("2026-11-22"))
        );
        assert_eq!(
            london.bucket(us("2026-11-22T12:00:00Z"), Unit::Week),
            Some(date("2026-11-16"))
        );
        assert_eq!(
            london.bucket(us("2026-12-31T23:59:59Z"), Unit::Year),
            Some(date("2026-01-01"))
        );
    }

    #[test]
    fn dst_days() {
        let london = BusinessCalendar::new(chrono_tz::Europe::London, Weekday::Mon);
        // 2026-03-29: clocks go forward at 01:00 UTC. 00:30 UTC is 00:30 GMT, 01:30 UTC is 02:30 BST.
        assert_eq!(
            london.local(us("2026-03-29T00:30:00Z")).map(|t| t.hour()),
            Some(0)
        );
        assert_eq!(
            london.local(us("2026-03-29T01:30:00Z")).map(|t| t.hour()),
            Some(2)
        );
        // 2026-10-25: 00:30 and 01:30 UTC are both 01:30 local.
        assert_eq!(
            london.local(us("2026-10-25T00:30:00Z")).map(|t| t.hour()),
            Some(1)
        );
        assert_eq!(
            london.local(us("2026-10-25T01:30:00Z")).map(|t| t.hour()),
            Some(1)
        );
        assert_eq!(
            london.bucket(us("2026-10-25T23:30:00Z"), Unit::Day),
            Some(date("2026-10-25"))
        );
    }

    #[test]
    fn units_and_fallbacks() {
        assert_eq!(Unit::parse("Weeks"), Some(Unit::Week));
        assert_eq!(Unit::parse("fortnight"), None);
        // Invalid settings are refused by `Calendar::parse` (see `calendar`).
        let c = BusinessCalendar::default();
        assert_eq!((c.tz, c.week_start), (chrono_tz::UTC, Weekday::Mon));
    }
}
