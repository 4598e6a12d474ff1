//! The analytics API: revenue, products, bookings, customers, RFM, funnels,
//! retention and heatmaps, as JSON documents computed with SQL over one
//! workspace session (the views of [`crate::views`] and the functions of
//! [`crate::udf`]), so every number here is also reachable from SQL.
//!
//! Every request shares the [`Common`] fields: a date range (`range`: `today`,
//! `7d`, `30d`, `90d`, `1y`, or `custom` with `from`/`to`), property
//! `filters`, an optional `breakdown` property, the series `interval` and
//! `compare` (the previous period of the same length). Dates are local days
//! of the workspace's calendar; `to` is included. Exact semantics per
//! endpoint are in `docs/analytics.md`.
//!
//! All sub-queries of one request run on one session, i.e. one snapshot of
//! the workspace: the numbers of one answer are consistent with each other.

mod bookings;
mod customers;
mod funnel;
mod heatmap;
mod retention;
mod revenue;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::udf::time::BusinessCalendar;
use crate::{Engine, Error, Result, RowScope};

/// The analytics endpoints, as `/v1/analytics/<name>`.
pub const ENDPOINTS: [&str; 8] = [
    "revenue",
    "products",
    "bookings",
    "customers",
    "rfm",
    "funnel",
    "retention",
    "heatmap",
];

/// Longest custom date range.
pub const MAX_RANGE_DAYS: i64 = 3660;
/// Most rows in a top-N list or breakdown.
pub const MAX_LIMIT: usize = 1000;
/// Most property filters of a request, and of each of its event matchers
/// (funnel steps, ...). Each filter is one more level of the condition the
/// planner walks recursively: thousands of them overflowed the stack of the
/// thread planning the query and took the server down.
pub const MAX_FILTERS: usize = 50;

fn check_filters(filters: &[Filter]) -> Result<()> {
    if filters.len() > MAX_FILTERS {
        return Err(Error::InvalidRequest(format!(
            "at most {MAX_FILTERS} filters, got {}",
            filters.len()
        )));
    }
    Ok(())
}

/// Answers one analytics request for `tenant`.
pub async fn run(engine: &Engine, tenant: &str, endpoint: &str, request: Value) -> Result<Value> {
    run_in(engine, tenant, &RowScope::All, endpoint, request).await
}

/// [`run`] over the rows of `scope` (one customer's numbers for a client
/// portal: see [`crate::scope`]).
pub async fn run_in(
    engine: &Engine,
    tenant: &str,
    scope: &RowScope,
    endpoint: &str,
    request: Value,
) -> Result<Value> {
    let request = match request {
        Value::Null => Value::Object(Map::new()),
        Value::Object(m) => Value::Object(m),
        other => {
            return Err(Error::InvalidRequest(format!(
                "the request must be a JSON object, got {}",
                kind(&other)
            )));
        }
    };
    // Only revenue, products and heatmap read rollups; the others skip
    // building them.
    let rollups = matches!(endpoint, "revenue" | "products" | "heatmap");
    let session = Session::open(engine, tenant, scope, rollups).await?;
    // Endpoints that take no breakdown refuse one themselves.
    if !matches!(endpoint, "customers" | "rfm" | "retention")
        && let Some(name) = request.get("breakdown").and_then(Value::as_str)
    {
        session.check_breakdown(name).await?;
    }
    match endpoint {
        "revenue" => revenue::revenue(&session, parse(request, revenue::FIELDS)?).await,
        "products" => revenue::products(&session, parse(request, revenue::PRODUCT_FIELDS)?).await,
        "bookings" => bookings::bookings(&session, parse(request, bookings::FIELDS)?).await,
        "customers" => customers::customers(&session, parse(request, customers::FIELDS)?).await,
        "rfm" => customers::rfm(&session, parse(request, customers::RFM_FIELDS)?).await,
        "funnel" => funnel::funnel(&session, parse(request, funnel::FIELDS)?).await,
        "retention" => retention::retention(&session, parse(request, retention::FIELDS)?).await,
        "heatmap" => heatmap::heatmap(&session, parse(request, heatmap::FIELDS)?).await,
        other => Err(Error::UnknownEndpoint(other.to_owned())),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserializes `request` after checking that it only has known fields
/// (serde's `deny_unknown_fields` does not combine with `flatten`).
fn parse<T: DeserializeOwned>(request: Value, own: &[&str]) -> Result<T> {
    if let Value::Object(map) = &request {
        let unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !COMMON_FIELDS.contains(k) && !own.contains(k))
            .collect();
        if !unknown.is_empty() {
            let mut known: Vec<&str> = COMMON_FIELDS.iter().chain(own).copied().collect();
            known.sort_unstable();
            return Err(Error::InvalidRequest(format!(
                "unknown field(s) {}; expected one of {}",
                unknown.join(", "),
                known.join(", ")
            )));
        }
    }
    serde_json::from_value(request).map_err(|e| Error::InvalidRequest(e.to_string()))
}

const COMMON_FIELDS: [&str; 8] = [
    "range",
    "from",
    "to",
    "filters",
    "breakdown",
    "interval",
    "compare",
    "limit",
];

/// Fields every analytics request takes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    /// `today`, `7d`, `30d`, `90d`, `1y` or `custom` (default `30d`, or
    /// `custom` when `from`/`to` are given).
    pub range: Option<String>,
    /// First local day (custom ranges).
    #[serde(default, deserialize_with = "date")]
    pub from: Option<NaiveDate>,
    /// Last local day, included (custom ranges).
    #[serde(default, deserialize_with = "date")]
    pub to: Option<NaiveDate>,
    /// Conditions on the events counted (all must hold).
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Property to split results by.
    pub breakdown: Option<String>,
    /// Series bucket: `hour`, `day`, `week`, `month`, `quarter`, `year`
    /// (default by range length: day up to 31 days, week up to 186, else
    /// month).
    pub interval: Option<String>,
    /// Also answer for the previous period of the same length.
    #[serde(default)]
    pub compare: bool,
    /// Rows in top-N lists and breakdowns (default 10).
    pub limit: Option<usize>,
}

/// `YYYY-MM-DD` (chrono's serde feature is off in the workspace: turning
/// it on would rebuild Arrow and DataFusion for one field).
fn date<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<NaiveDate>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| {
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map_err(|_| serde::de::Error::custom(format!("invalid date {s:?}; use YYYY-MM-DD")))
    })
    .transpose()
}

impl Common {
    fn limit(&self) -> Result<usize> {
        match self.limit {
            None => Ok(10),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(Error::InvalidRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}, got {n}"
            ))),
        }
    }

    fn interval(&self, period: &Period) -> Result<Interval> {
        match &self.interval {
            Some(s) => Interval::parse(s),
            None if period.days() <= 31 => Ok(Interval::Day),
            None if period.days() <= 186 => Ok(Interval::Week),
            None => Ok(Interval::Month),
        }
    }

    /// True when a filter picks currencies: money is then summed over the
    /// currencies it picks rather than only the workspace's.
    fn picks_currency(&self) -> bool {
        self.filters.iter().any(|f| f.property == "currency")
    }

    /// SQL conditions of the filters, `TRUE` when there are none.
    fn filter_sql(&self) -> Result<String> {
        check_filters(&self.filters)?;
        let mut parts = vec!["TRUE".to_owned()];
        for f in &self.filters {
            parts.push(f.to_sql()?);
        }
        Ok(parts.join(" AND "))
    }

    /// The filters over `events_rollup`, when every filter and the
    /// breakdown use rollup dimensions only.
    fn rollup_filter_sql(&self) -> Result<Option<String>> {
        check_filters(&self.filters)?;
        let mut parts = vec!["TRUE".to_owned()];
        for f in &self.filters {
            match f.to_rollup_sql()? {
                Some(sql) => parts.push(sql),
                None => return Ok(None),
            }
        }
        if let Some(b) = &self.breakdown
            && Property::rollup(b).is_none()
        {
            return Ok(None);
        }
        Ok(Some(parts.join(" AND ")))
    }

    fn breakdown(&self) -> Result<Option<(String, Property)>> {
        self.breakdown
            .as_deref()
            .map(|b| Ok((b.to_owned(), Property::parse(b)?)))
            .transpose()
    }
}

/// One workspace session with its calendar.
pub(crate) struct Session<'a> {
    engine: &'a Engine,
    ctx: SessionContext,
    /// The session has `events_rollup` and `items_rollup`.
    rollup: bool,
    calendar: BusinessCalendar,
    time_zone: String,
    currency: String,
    today: NaiveDate,
}

impl<'a> Session<'a> {
    async fn open(
        engine: &'a Engine,
        tenant: &str,
        scope: &RowScope,
        rollups: bool,
    ) -> Result<Self> {
        let (ctx, rollup) = engine.session_with_rollups_in(tenant, scope, rollups).await?;
        let workspace = engine.calendar(tenant);
        let calendar = workspace.business();
        let today = engine.now().with_timezone(&calendar.tz).date_naive();
        Ok(Self {
            engine,
            ctx,
            rollup,
            calendar,
            time_zone: workspace.time_zone().to_owned(),
            currency: workspace.currency,
            today,
        })
    }

    /// The condition that `column` (a currency code) is the workspace
    /// currency or unknown: money is summed only where it holds (amounts
    /// in different currencies are never added).
    fn own_currency(&self, column: &str) -> String {
        format!("({column} IS NULL OR {column} = business_currency())")
    }

    /// The rows whose money a request adds up: those in the workspace
    /// currency ([`Self::own_currency`] of `column`), or every row when a
    /// filter of the request picks currencies itself.
    fn money_sql(&self, common: &Common, column: &str) -> String {
        if common.picks_currency() {
            "TRUE".to_owned()
        } else {
            self.own_currency(column)
        }
    }

    /// Refuses a breakdown by a JSON property (`properties.x`, `context.x`,
    /// `traits.x`) that no event of the workspace has: a misspelled name
    /// would otherwise answer one `(none)` row. The error lists the
    /// property names the events do have. An empty workspace accepts any
    /// name.
    async fn check_breakdown(&self, name: &str) -> Result<()> {
        if is_text_column(name) || NUMBER_COLUMNS.contains(&name) || item_column(name).is_some() {
            return Ok(());
        }
        let property = Property::parse(name)?;
        let found = self
            .rows(&format!(
                "SELECT 1 AS found FROM events WHERE {} IS NOT NULL LIMIT 1",
                property.text
            ))
            .await?;
        if !found.is_empty() {
            return Ok(());
        }
        let root = match name.split_once('.') {
            Some((root @ ("context" | "traits" | "properties"), _)) => root,
            _ => "properties",
        };
        let keys = self
            .rows(&format!(
                "SELECT DISTINCT name FROM ( \
                   SELECT unnest(json_object_keys({root})) AS name \
                   FROM (SELECT {root} FROM events WHERE {root} IS NOT NULL LIMIT {KNOWN_KEYS_SAMPLE})) \
                 ORDER BY name LIMIT {KNOWN_KEYS_SHOWN}"
            ))
            .await?;
        let keys: Vec<&str> = keys
            .iter()
            .filter_map(|row| row.get("name").and_then(Value::as_str))
            .collect();
        if keys.is_empty()
            && self
                .rows("SELECT 1 AS found FROM events LIMIT 1")
                .await?
                .is_empty()
        {
            return Ok(());
        }
        let prefix = if root == "properties" && !name.starts_with("properties.") {
            ""
        } else {
            root
        };
        let known: Vec<String> = keys
            .iter()
            .map(|k| {
                if prefix.is_empty() {
                    (*k).to_owned()
                } else {
                    format!("{prefix}.{k}")
                }
            })
            .collect();
        let columns: Vec<&str> = TEXT_COLUMNS
            .iter()
            .map(|(n, _)| *n)
            .chain(NUMBER_COLUMNS)
            .collect();
        Err(Error::InvalidRequest(format!(
            "breakdown property {name:?} is set on no event of this workspace (every row would be \"(none)\"); \
             {root} seen on events: {}; event columns: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
            columns.join(", ")
        )))
    }

    /// Runs trusted SQL built by this module, rows as JSON objects.
    async fn rows(&self, sql: &str) -> Result<Vec<Map<String, Value>>> {
        let result = self.engine.execute_generated(&self.ctx, sql).await?;
        crate::json::to_objects(&result.schema, &result.batches)
    }

    /// The current and (with `compare`) previous period of a request.
    fn periods(&self, common: &Common) -> Result<(Period, Option<Period>)> {
        let period = Period::resolve(common, self.calendar.tz, self.today)?;
        let previous = common.compare.then(|| period.previous(self.calendar.tz));
        Ok((period, previous))
    }

    /// The `range` object of an answer.
    fn range_json(&self, period: &Period, interval: Option<Interval>) -> Value {
        let mut v = json!({
            "from": period.from.to_string(),
            "to": period.to.to_string(),
            "days": period.days(),
            "time_zone": self.time_zone,
            "currency": self.currency,
            "start": rfc3339(period.start_us),
            "end": rfc3339(period.end_us),
        });
        if let Some(i) = interval {
            v["interval"] = json!(i.name());
        }
        v
    }

    /// Every bucket key of `interval` in `period`, in order.
    fn buckets(&self, period: &Period, interval: Interval) -> Vec<String> {
        let mut out = Vec::new();
        if interval == Interval::Hour {
            let mut d = period.from;
            while d <= period.to {
                for h in 0..24 {
                    // The hour skipped when the clocks go forward does
                    // not exist: no bucket for it.
                    let exists = d.and_hms_opt(h, 0, 0).is_some_and(|t| {
                        !matches!(self.calendar.tz.from_local_datetime(&t), LocalResult::None)
                    });
                    if exists {
                        out.push(format!("{d}T{h:02}:00"));
                    }
                }
                d += Duration::days(1);
            }
            return out;
        }
        let mut d = interval.start_of(period.from, self.calendar.week_start);
        while d <= period.to {
            out.push(d.to_string());
            d = interval.next(d);
        }
        out
    }
}

/// A resolved date range: local days `from..=to` and their UTC bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Period {
    from: NaiveDate,
    to: NaiveDate,
    start_us: i64,
    end_us: i64,
}

impl Period {
    fn new(from: NaiveDate, to: NaiveDate, tz: Tz) -> Self {
        Self {
            from,
            to,
            start_us: local_midnight_us(tz, from),
            end_us: local_midnight_us(tz, to + Duration::days(1)),
        }
    }

    fn resolve(common: &Common, tz: Tz, today: NaiveDate) -> Result<Self> {
        let preset = match common.range.as_deref() {
            Some(r) => r.to_ascii_lowercase(),
            None if common.from.is_some() || common.to.is_some() => "custom".to_owned(),
            None => "30d".to_owned(),
        };
        let days = match preset.as_str() {
            "today" => 1,
            "7d" => 7,
            "30d" => 30,
            "90d" => 90,
            "1y" | "365d" => 365,
            "custom" => {
                let (Some(from), Some(to)) = (common.from, common.to) else {
                    return Err(Error::InvalidRequest(
                        "a custom range needs both from and to (YYYY-MM-DD)".into(),
                    ));
                };
                // Times are microseconds and the engine casts them through
                // nanoseconds (years 1677 to 2262): keep well inside, with
                // room for the previous period of `compare`.
                let (first, last) = (
                    NaiveDate::from_ymd_opt(1900, 1, 1).expect("date"),
                    NaiveDate::from_ymd_opt(2200, 12, 31).expect("date"),
                );
                if from < first || to > last {
                    return Err(Error::InvalidRequest(format!(
                        "from and to must be between {first} and {last}"
                    )));
                }
                if to < from {
                    return Err(Error::InvalidRequest(format!(
                        "the range ends ({to}) before it starts ({from})"
                    )));
                }
                if (to - from).num_days() + 1 > MAX_RANGE_DAYS {
                    return Err(Error::InvalidRequest(format!(
                        "a range may span at most {MAX_RANGE_DAYS} days"
                    )));
                }
                return Ok(Self::new(from, to, tz));
            }
            other => {
                return Err(Error::InvalidRequest(format!(
                    "unknown range {other:?}; use today, 7d, 30d, 90d, 1y or custom"
                )));
            }
        };
        if common.from.is_some() || common.to.is_some() {
            return Err(Error::InvalidRequest(format!(
                "from/to only go with range \"custom\", not {preset:?}"
            )));
        }
        Ok(Self::new(today - Duration::days(days - 1), today, tz))
    }

    fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// The same number of days right before.
    fn previous(&self, tz: Tz) -> Self {
        let to = self.from - Duration::days(1);
        Self::new(to - Duration::days(self.days() - 1), to, tz)
    }

    /// `timestamp` within the period, as SQL.
    fn time_sql(&self) -> String {
        self.time_sql_of("timestamp")
    }

    /// `bucket` of `events_rollup` within the period (exact: periods start
    /// at local midnights, which are on 15-minute boundaries).
    fn rollup_time_sql(&self) -> String {
        self.time_sql_of("bucket")
    }

    fn time_sql_of(&self, column: &str) -> String {
        format!(
            "{column} >= TIMESTAMP '{}' AND {column} < TIMESTAMP '{}'",
            rfc3339(self.start_us),
            rfc3339(self.end_us)
        )
    }

    /// `timestamp` before the end of the period, as SQL.
    fn until_sql(&self) -> String {
        format!("timestamp < TIMESTAMP '{}'", rfc3339(self.end_us))
    }
}

/// The UTC instant of local midnight starting `day` (the first valid local
/// time when midnight falls in a DST gap).
fn local_midnight_us(tz: Tz, day: NaiveDate) -> i64 {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    for step in 0..=16 {
        let t = midnight + Duration::minutes(15 * step);
        match tz.from_local_datetime(&t) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return t.with_timezone(&Utc).timestamp_micros();
            }
            LocalResult::None => continue,
        }
    }
    midnight.and_utc().timestamp_micros()
}

fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interval {
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Interval {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "hour" => Self::Hour,
            "day" => Self::Day,
            "week" => Self::Week,
            "month" => Self::Month,
            "quarter" => Self::Quarter,
            "year" => Self::Year,
            other => {
                return Err(Error::InvalidRequest(format!(
                    "unknown interval {other:?}; use hour, day, week, month, quarter or year"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Year => "year",
        }
    }

    /// SQL for the bucket key of `column` (text: `YYYY-MM-DD`, or
    /// `YYYY-MM-DDTHH:00` for hours), in business time.
    fn bucket_sql(self, column: &str) -> String {
        match self {
            Self::Hour => {
                format!("to_char(date_trunc('hour', business_time({column})), '%Y-%m-%dT%H:00')")
            }
            other => format!(
                "CAST(business_date({column}, '{}') AS VARCHAR)",
                other.name()
            ),
        }
    }

    fn start_of(self, d: NaiveDate, week_start: chrono::Weekday) -> NaiveDate {
        match self {
            Self::Hour | Self::Day => d,
            Self::Week => {
                let back = (7 + d.weekday().num_days_from_monday()
                    - week_start.num_days_from_monday())
                    % 7;
                d - Duration::days(i64::from(back))
            }
            Self::Month => d.with_day(1).unwrap_or(d),
            Self::Quarter => {
                NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1).unwrap_or(d)
            }
            Self::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap_or(d),
        }
    }

    fn next(self, d: NaiveDate) -> NaiveDate {
        match self {
            Self::Hour | Self::Day => d + Duration::days(1),
            Self::Week => d + Duration::days(7),
            Self::Month => d + Months::new(1),
            Self::Quarter => d + Months::new(3),
            Self::Year => d + Months::new(12),
        }
    }
}

/// The `order_items` column of a property that line items carry.
fn item_column(property: &str) -> Option<&'static str> {
    match property {
        "product" | "product_id" => Some("product_id"),
        "category" | "product_category" => Some("category"),
        _ => None,
    }
}

/// A condition on a property.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    // Said instead of serde's "struct Filter" when the shape is wrong.
    expecting = r#"a filter object like {"property": "channel", "op": "eq", "value": "web"}"#
)]
pub struct Filter {
    /// Property name (see [`Property::parse`]).
    pub property: String,
    /// Operator (default `eq`).
    #[serde(default)]
    pub op: FilterOp,
    /// Operand: a string, number or boolean, or a list of them for
    /// `in`/`not_in` (and `eq`/`neq`).
    #[serde(default)]
    pub value: Value,
}

/// Filter operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    /// Equal (any of a list).
    #[default]
    Eq,
    /// Not equal (none of a list); unset counts as not equal.
    Neq,
    /// One of a list.
    In,
    /// None of a list (unset included).
    NotIn,
    /// Text contains, case-insensitive.
    Contains,
    /// Text does not contain, case-insensitive (unset included).
    NotContains,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Has a value.
    IsSet,
    /// Has no value.
    IsNotSet,
}

impl Filter {
    fn to_sql(&self) -> Result<String> {
        let own = self.sql_with(Property::parse(&self.property)?)?;
        let Some(column) = item_column(&self.property) else {
            return Ok(own);
        };
        // An order's products are its line items (`properties.products[]`),
        // not a column of the event: `product = X` holds for an event whose
        // product is X and for an order with a line of X; `product != X`
        // for an event whose product is not X and that is no order with a
        // line of X.
        let (positive, negated) = match self.op {
            FilterOp::Neq => (FilterOp::Eq, true),
            FilterOp::NotIn => (FilterOp::In, true),
            FilterOp::NotContains => (FilterOp::Contains, true),
            FilterOp::IsNotSet => (FilterOp::IsSet, true),
            op => (op, false),
        };
        let line = Filter {
            op: positive,
            ..self.clone()
        }
        .sql_with(Property {
            text: column.to_owned(),
            number: format!("TRY_CAST({column} AS DOUBLE)"),
        })?;
        let has_line = format!(
            "(event = 'Order Completed' AND message_id IN (SELECT message_id FROM order_items WHERE {line}))"
        );
        Ok(if negated {
            format!("({own} AND NOT {has_line})")
        } else {
            format!("({own} OR {has_line})")
        })
    }

    /// The filter over `events_rollup`; `None` when its property is not a
    /// rollup dimension.
    fn to_rollup_sql(&self) -> Result<Option<String>> {
        Property::parse(&self.property)?;
        match Property::rollup(&self.property) {
            Some(p) => self.sql_with(p).map(Some),
            None => Ok(None),
        }
    }

    fn sql_with(&self, p: Property) -> Result<String> {
        let list = || -> Result<Vec<Value>> {
            match &self.value {
                Value::Array(items) if !items.is_empty() && items.len() <= 1000 => {
                    Ok(items.clone())
                }
                Value::Array(_) => Err(Error::InvalidRequest(format!(
                    "filter on {:?}: the list must have 1 to 1000 values",
                    self.property
                ))),
                v => Ok(vec![v.clone()]),
            }
        };
        // One IN list per kind of value: a list of 1000 values is one
        // expression, not a chain of 1000 ORs for the planner to recurse into.
        let equal_any = |values: &[Value]| -> Result<String> {
            let (mut texts, mut numbers, mut bools) = (Vec::new(), Vec::new(), Vec::new());
            for v in values {
                match v {
                    Value::String(s) => texts.push(sql_string(s)?),
                    Value::Number(n) => numbers.push(number_literal(n)?),
                    Value::Bool(b) => bools.push(format!("'{b}'")),
                    other => {
                        return Err(Error::InvalidRequest(format!(
                            "filter on {:?}: values must be strings, numbers or booleans, got {}",
                            self.property,
                            kind(other)
                        )));
                    }
                }
            }
            let mut parts = Vec::new();
            if !texts.is_empty() {
                parts.push(format!("{} IN ({})", p.text, texts.join(", ")));
            }
            if !numbers.is_empty() {
                parts.push(format!("{} IN ({})", p.number, numbers.join(", ")));
            }
            if !bools.is_empty() {
                parts.push(format!("lower({}) IN ({})", p.text, bools.join(", ")));
            }
            Ok(format!("({})", parts.join(" OR ")))
        };
        Ok(match self.op {
            FilterOp::Eq | FilterOp::In => equal_any(&list()?)?,
            FilterOp::Neq | FilterOp::NotIn => {
                format!("({} IS NULL OR NOT {})", p.text, equal_any(&list()?)?)
            }
            FilterOp::Contains => {
                format!(
                    "strpos(lower({}), lower({})) > 0",
                    p.text,
                    text_literal(&self.value, &self.property)?
                )
            }
            FilterOp::NotContains => format!(
                "({t} IS NULL OR strpos(lower({t}), lower({v})) = 0)",
                t = p.text,
                v = text_literal(&self.value, &self.property)?
            ),
            FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => {
                let op = match self.op {
                    FilterOp::Gt => ">",
                    FilterOp::Gte => ">=",
                    FilterOp::Lt => "<",
                    _ => "<=",
                };
                match &self.value {
                    Value::Number(n) => format!("{} {op} {}", p.number, number_literal(n)?),
                    // A numeric column compares as a number: "50" is 50,
                    // and text that is no number is the caller's mistake.
                    Value::String(s) if NUMBER_COLUMNS.contains(&self.property.as_str()) => {
                        let n = s
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite())
                            .and_then(serde_json::Number::from_f64)
                            .ok_or_else(|| {
                                Error::InvalidRequest(format!(
                                    "filter on {:?}: {op} needs a number, got {s:?}",
                                    self.property
                                ))
                            })?;
                        format!("{} {op} {}", p.number, number_literal(&n)?)
                    }
                    Value::String(s) => format!("{} {op} {}", p.text, sql_string(s)?),
                    other => {
                        return Err(Error::InvalidRequest(format!(
                            "filter on {:?}: {op} needs a number or a string, got {}",
                            self.property,
                            kind(other)
                        )));
                    }
                }
            }
            FilterOp::IsSet => format!("{} IS NOT NULL", p.text),
            FilterOp::IsNotSet => format!("{} IS NULL", p.text),
        })
    }
}

/// A property as SQL: its text form and its numeric form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Property {
    /// SQL giving the value as text (NULL when unset).
    text: String,
    /// SQL giving the value as a number (NULL when unset or not a number).
    number: String,
}

/// The currency of an event: its own, else the workspace's.
const CURRENCY_SQL: &str = "coalesce(currency, business_currency())";

/// Event columns a property name can refer to directly, with aliases.
const TEXT_COLUMNS: [(&str, &str); 23] = [
    ("event", "event"),
    ("type", "type"),
    ("user_id", "user_id"),
    ("anonymous_id", "anonymous_id"),
    ("group_id", "group_id"),
    ("message_id", "message_id"),
    // An event without a currency is in the workspace currency: filters
    // and breakdowns see it so.
    ("currency", CURRENCY_SQL),
    ("order_id", "order_id"),
    ("product_id", "product_id"),
    ("product", "product_id"),
    ("service_id", "service_id"),
    ("service", "service_id"),
    ("booking_id", "booking_id"),
    ("lead_id", "lead_id"),
    ("location_id", "location_id"),
    ("location", "location_id"),
    ("staff_id", "staff_id"),
    ("staff", "staff_id"),
    ("channel", "channel"),
    ("payment_method", "payment_method"),
    ("status", "status"),
    ("session_id", "session_id"),
    ("person", "coalesce(user_id, anonymous_id)"),
];
const NUMBER_COLUMNS: [&str; 3] = ["revenue", "price", "quantity"];

/// Events whose JSON keys are listed when a breakdown names a property no
/// event has, and how many names the error shows at most.
const KNOWN_KEYS_SAMPLE: usize = 10_000;
const KNOWN_KEYS_SHOWN: usize = 100;

/// True when `name` is one of the text columns (not a number to sum).
fn is_text_column(name: &str) -> bool {
    TEXT_COLUMNS.iter().any(|(n, _)| *n == name)
}

impl Property {
    /// Resolves a property name:
    /// - an event column or its alias (`event`, `channel`, `location` =
    ///   `location_id`, `staff`, `service`, `product`, `payment_method`,
    ///   `status`, `revenue`, `price`, `quantity`, ...; `person` is
    ///   `coalesce(user_id, anonymous_id)`);
    /// - `context.a.b` / `traits.a` / `properties.a`: a path in that JSON;
    /// - anything else: a path in `properties` (`country`, `utm.source`).
    ///
    /// Names are 1-100 characters of letters, digits, `_`, `-`, `$`, `.`.
    pub(crate) fn parse(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 100
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$' | '.'))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..");
        if !valid {
            return Err(Error::InvalidRequest(format!(
                "invalid property name {name:?}: use 1-100 letters, digits, _ - $ and . (for nesting)"
            )));
        }
        if let Some((_, sql)) = TEXT_COLUMNS.iter().find(|(n, _)| *n == name) {
            return Ok(Self {
                text: sql.to_string(),
                number: format!("TRY_CAST({sql} AS DOUBLE)"),
            });
        }
        if NUMBER_COLUMNS.contains(&name) {
            return Ok(Self {
                text: format!("CAST({name} AS VARCHAR)"),
                number: format!("CAST({name} AS DOUBLE)"),
            });
        }
        let (column, path) = match name.split_once('.') {
            Some((root @ ("context" | "traits" | "properties"), rest)) => (root, rest),
            _ => ("properties", name),
        };
        let keys: Vec<String> = path.split('.').map(|k| format!("'{k}'")).collect();
        let keys = keys.join(", ");
        Ok(Self {
            text: format!("json_as_text({column}, {keys})"),
            number: format!("json_get_float({column}, {keys})"),
        })
    }

    /// The rollup column of a property, if it is a rollup dimension.
    fn rollup(name: &str) -> Option<Self> {
        crate::rollup::DIMENSIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, column)| {
                let column = if *column == "currency" {
                    CURRENCY_SQL
                } else {
                    column
                };
                Self {
                    text: column.to_owned(),
                    number: format!("TRY_CAST({column} AS DOUBLE)"),
                }
            })
    }

    /// SQL giving the value as text.
    fn text_sql(&self) -> String {
        self.text.clone()
    }

    /// The breakdown expression: text, `(none)` when unset.
    fn group_sql(&self) -> String {
        format!("coalesce({}, '(none)')", self.text)
    }
}

/// A SQL string literal; quotes are doubled (DataFusion does not treat `\`
/// specially in standard literals).
pub(crate) fn sql_string(s: &str) -> Result<String> {
    if s.len() > 1000 || s.chars().any(|c| c == '\0') {
        return Err(Error::InvalidRequest(
            "filter values must be at most 1000 characters without NUL".into(),
        ));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

fn text_literal(v: &Value, name: &str) -> Result<String> {
    match v {
        Value::String(s) => sql_string(s),
        Value::Number(n) => sql_string(&n.to_string()),
        other => Err(Error::InvalidRequest(format!(
            "filter on {name:?}: contains needs a string, got {}",
            kind(other)
        ))),
    }
}

fn number_literal(n: &serde_json::Number) -> Result<String> {
    match n.as_f64() {
        Some(f) if f.is_finite() => {
            let mut s = String::new();
            write!(s, "CAST({f:?} AS DOUBLE)").expect("write to string");
            Ok(s)
        }
        _ => Err(Error::InvalidRequest(format!("{n} is not a finite number"))),
    }
}

/// An event condition: a name and optional property filters (funnel steps,
/// retention and heatmap events).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    // Said instead of serde's "struct EventMatcher" when the shape is wrong
    // (a bare name such as "Signup" in `steps`).
    expecting = r#"an event object like {"event": "Order Completed", "filters": [...]} (filters optional)"#
)]
pub struct EventMatcher {
    /// Event name (`track` name; `page` calls are named `Page Viewed`).
    pub event: String,
    /// Conditions on the event's properties.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

impl EventMatcher {
    fn to_sql(&self) -> Result<String> {
        if self.event.is_empty() || self.event.len() > 200 {
            return Err(Error::InvalidRequest(
                "event names are 1 to 200 characters".into(),
            ));
        }
        check_filters(&self.filters)?;
        let mut parts = vec![if self.event == "Page Viewed" {
            "(event = 'Page Viewed' OR type = 'page')".to_owned()
        } else {
            format!("event = {}", sql_string(&self.event)?)
        }];
        for f in &self.filters {
            parts.push(f.to_sql()?);
        }
        Ok(format!("({})", parts.join(" AND ")))
    }
}

/// A JSON value as a number (decimals come back as strings).
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// `a / b`, or null when `b` is zero.
fn ratio(a: f64, b: f64) -> Value {
    if b == 0.0 {
        Value::Null
    } else {
        json!(round6(a / b))
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Relative change of each numeric field of `current` vs `previous`
/// (`(current - previous) / previous`; null when previous is zero, or when
/// either side is null, such as the `aov` of a period without sales).
/// The relative change of each numeric field from `previous` to `current`
/// (rounded to 6 decimals; null where `previous` is 0 or a side has no
/// value), as the answers' `change` and the live tiles have it.
pub fn change(current: &Map<String, Value>, previous: &Map<String, Value>) -> Value {
    let numeric = |v: &Value| v.is_number() || v.as_str().is_some_and(|s| s.parse::<f64>().is_ok());
    let mut out = Map::new();
    for (k, v) in current {
        let Some(p) = previous.get(k) else {
            continue;
        };
        if numeric(v) && numeric(p) {
            out.insert(k.clone(), ratio(num(v) - num(p), num(p)));
        } else if (v.is_null() || numeric(v)) && (p.is_null() || numeric(p)) {
            out.insert(k.clone(), Value::Null);
        }
    }
    Value::Object(out)
}

/// Puts the previous period's answer `before` (with its `range`) under
/// `previous`, and the relative change of the summaries (when there are
/// summaries) under `change`.
fn attach_previous(out: &mut Value, mut before: Value, range: Value) {
    before["range"] = range;
    if let (Value::Object(a), Value::Object(b)) = (&out["summary"], &before["summary"]) {
        out["change"] = change(a, b);
    }
    out["previous"] = before;
}

/// Fills a series: one row per bucket, `zeros` where no row came back.
fn fill_series(
    buckets: &[String],
    rows: Vec<Map<String, Value>>,
    zeros: &Map<String, Value>,
) -> Vec<Value> {
    let mut by_bucket: BTreeMap<String, Map<String, Value>> = rows
        .into_iter()
        .filter_map(|mut r| {
            let b = r.remove("bucket")?.as_str()?.to_owned();
            Some((b, r))
        })
        .collect();
    buckets
        .iter()
        .map(|b| {
            let mut row = Map::new();
            row.insert("bucket".into(), json!(b));
            let values = by_bucket.remove(b).unwrap_or_else(|| zeros.clone());
            row.extend(values);
            Value::Object(row)
        })
        .collect()
}

#[cfg(test)]
mod tests;
