//! Reports: a title, a date range relative to the run, filters and a list
//! of blocks, rendered from the analytics API's and SQL's answers into
//! Excel (one sheet per block) or CSV (one file per block), on demand or
//! on a cron schedule in the workspace's time zone, every run logged.
//!
//! - [`Definition`] and [`Block`]: what a report is, checked when it is
//!   saved (unknown blocks, fields and ranges, SQL that is not one
//!   read-only query, a bad cron expression are 400s there).
//! - [`RelativeRange`]: `yesterday`, `last_week`, `month_to_date`, ...
//!   resolved at run time in the workspace's calendar (time zone and week
//!   start); the analytics API then compares with the period before.
//! - [`templates`]: the built-in reports.
//! - [`render`]: runs the blocks and writes the file, with a written
//!   summary computed from the numbers (the biggest changes against the
//!   previous period, unusual days of the period), never generated prose.
//! - [`schedule`]: the next run of a cron expression in a time zone
//!   (correct across daylight-saving changes) and the loop that runs due
//!   reports and logs them (`report_runs`).
//!
//! Every number in a report is an answer of the same engine the dashboards
//! and the API use: a report block is an analytics request (or a SQL
//! query) with the report's range and filters, so a report and the API
//! never disagree.

pub mod pdf;
pub mod render;
pub mod schedule;
pub mod store;
pub mod typeset;

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use beacon_engine::udf::time::{BusinessCalendar, Unit};

/// Most blocks in one report.
pub const MAX_BLOCKS: usize = 30;
/// Longest title, in characters.
pub const MAX_TITLE: usize = 120;

/// A report's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Shown at the top of the file.
    pub title: String,
    /// The period each run covers (default `last_week`).
    #[serde(default = "last_week")]
    pub range: RelativeRange,
    /// Analytics filters (`{"property", "op", "value"}`) for every block
    /// that takes them.
    #[serde(default)]
    pub filters: Vec<Value>,
    /// What the report shows, in order.
    pub blocks: Vec<Block>,
}

fn last_week() -> RelativeRange {
    RelativeRange::LastWeek
}

/// Who a report's runs go to: a user (by id; their preferences pick the
/// channels), an email address (someone who is not a user, an
/// accountant, say: the email channel only), or one of the workspace's
/// webhook endpoints (by id: signed, retried and dead-lettered like every
/// webhook). Each may carry filters of its own
/// (`{"user": "bob", "filters": [...]}`: one location's manager gets only
/// their location), added to the report's filters for that copy, which is
/// rendered, logged and delivered apart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Recipient {
    /// A user: everything the report shows.
    User(String),
    /// A user, the report narrowed by `filters`.
    Filtered {
        /// The user.
        user: String,
        /// Analytics filters added to the report's.
        #[serde(default)]
        filters: Vec<Value>,
    },
    /// An email address that is not a user's.
    Email {
        /// The address.
        email: String,
        /// Analytics filters added to the report's.
        #[serde(default)]
        filters: Vec<Value>,
    },
    /// A webhook endpoint of the workspace (`/v1/notify/webhooks`).
    Webhook {
        /// The endpoint's id.
        webhook: String,
        /// Analytics filters added to the report's.
        #[serde(default)]
        filters: Vec<Value>,
    },
}

impl Recipient {
    /// Who it is, as said in messages and checked for repeats
    /// (`user:ann`, `email:x@y.z`, `webhook:wh_1`).
    pub fn key(&self) -> String {
        match self {
            Self::User(u) | Self::Filtered { user: u, .. } => format!("user:{u}"),
            Self::Email { email, .. } => format!("email:{}", email.to_ascii_lowercase()),
            Self::Webhook { webhook, .. } => format!("webhook:{webhook}"),
        }
    }

    /// The filters of this recipient's copy (none: the report as defined).
    pub fn filters(&self) -> &[Value] {
        match self {
            Self::User(_) => &[],
            Self::Filtered { filters, .. }
            | Self::Email { filters, .. }
            | Self::Webhook { filters, .. } => filters,
        }
    }
}

/// The recipients of one copy of a report (one set of filters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audience {
    /// Filters added to the report's (none: the report's own copy).
    pub filters: Vec<Value>,
    /// User ids.
    pub users: Vec<String>,
    /// Email addresses.
    pub emails: Vec<String>,
    /// Webhook endpoint ids.
    pub webhooks: Vec<String>,
}

impl Audience {
    /// Nobody to deliver to.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.emails.is_empty() && self.webhooks.is_empty()
    }
}

/// Recipients grouped by their filters, the unfiltered group first
/// (present even when empty: the report's own run).
pub fn audiences(recipients: &[Recipient]) -> Vec<Audience> {
    let mut out = vec![Audience::default()];
    for r in recipients {
        let at = match out.iter().position(|a| a.filters.as_slice() == r.filters()) {
            Some(at) => at,
            None => {
                out.push(Audience {
                    filters: r.filters().to_vec(),
                    ..Audience::default()
                });
                out.len() - 1
            }
        };
        let a = &mut out[at];
        match r {
            Recipient::User(u) | Recipient::Filtered { user: u, .. } => a.users.push(u.clone()),
            Recipient::Email { email, .. } => a.emails.push(email.clone()),
            Recipient::Webhook { webhook, .. } => a.webhooks.push(webhook.clone()),
        }
    }
    out
}

/// A period relative to the moment a report runs, in the workspace's
/// calendar. "Last" periods are complete; "to date" ones end today.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RelativeRange {
    /// Today so far.
    Today,
    /// The day before today.
    Yesterday,
    /// The seven days before today.
    #[serde(rename = "last_7_days")]
    Last7Days,
    /// The thirty days before today.
    #[serde(rename = "last_30_days")]
    Last30Days,
    /// From the start of this week (the workspace's week start) to today.
    WeekToDate,
    /// The whole previous week.
    LastWeek,
    /// From the first of this month to today.
    MonthToDate,
    /// The whole previous month.
    LastMonth,
    /// From the first of this quarter to today.
    QuarterToDate,
    /// The whole previous quarter.
    LastQuarter,
    /// From the first of January to today.
    YearToDate,
}

impl RelativeRange {
    /// The first and last local days of the range for a run at `now_us`.
    pub fn resolve(
        self,
        calendar: &BusinessCalendar,
        now_us: i64,
    ) -> Option<(NaiveDate, NaiveDate)> {
        let today = calendar.bucket(now_us, Unit::Day)?;
        let week = calendar.bucket(now_us, Unit::Week)?;
        let month = today.with_day(1)?;
        let quarter = NaiveDate::from_ymd_opt(today.year(), (today.month0() / 3) * 3 + 1, 1)?;
        let day = chrono::Days::new(1);
        Some(match self {
            Self::Today => (today, today),
            Self::Yesterday => (today.pred_opt()?, today.pred_opt()?),
            Self::Last7Days => (
                today.checked_sub_days(chrono::Days::new(7))?,
                today.pred_opt()?,
            ),
            Self::Last30Days => (
                today.checked_sub_days(chrono::Days::new(30))?,
                today.pred_opt()?,
            ),
            Self::WeekToDate => (week, today),
            Self::LastWeek => (
                week.checked_sub_days(chrono::Days::new(7))?,
                week.checked_sub_days(day)?,
            ),
            Self::MonthToDate => (month, today),
            Self::LastMonth => (
                month.checked_sub_months(Months::new(1))?,
                month.checked_sub_days(day)?,
            ),
            Self::QuarterToDate => (quarter, today),
            Self::LastQuarter => (
                quarter.checked_sub_months(Months::new(3))?,
                quarter.checked_sub_days(day)?,
            ),
            Self::YearToDate => (NaiveDate::from_ymd_opt(today.year(), 1, 1)?, today),
        })
    }
}

/// One block of a report. Each is one analytics request (or SQL query)
/// over the report's range and filters; the block's table is what its
/// sheet (or CSV file) holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Block {
    /// Revenue's headline numbers with their change against the previous
    /// period (and, with `bookings`, the booking numbers).
    Kpi {
        #[serde(default)]
        title: Option<String>,
        /// Add the bookings answer's numbers (created, completed,
        /// cancelled, no-shows and their rates).
        #[serde(default)]
        bookings: bool,
    },
    /// A metric per day, week or month of the range.
    Timeseries {
        #[serde(default)]
        title: Option<String>,
        /// `revenue`, `bookings` or `customers`.
        #[serde(default = "revenue")]
        endpoint: String,
        /// `hour`, `day`, `week` or `month` (default: the API's for the range).
        #[serde(default)]
        interval: Option<String>,
    },
    /// A metric split by a property (`channel`, `location`, `staff`,
    /// `payment_method`, `product`, `category`, `reason`, ...).
    Breakdown {
        #[serde(default)]
        title: Option<String>,
        /// `revenue` or `bookings`.
        #[serde(default = "revenue")]
        endpoint: String,
        by: String,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Top products by revenue.
    Products {
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// A funnel: `steps` as the funnel API takes them.
    Funnel {
        #[serde(default)]
        title: Option<String>,
        steps: Vec<Value>,
        /// Other funnel request fields (`window`, `count_by`, ...).
        #[serde(default)]
        options: Map<String, Value>,
    },
    /// Cohort retention table (`period`: `day`, `week`, `month`).
    Cohorts {
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        period: Option<String>,
    },
    /// Events (or a sum) by weekday and hour.
    Heatmap {
        #[serde(default)]
        title: Option<String>,
        /// Other heatmap request fields (`metric`, `event`, `property`).
        #[serde(default)]
        options: Map<String, Value>,
    },
    /// Customers by RFM segment with their churn risk.
    Customers {
        #[serde(default)]
        title: Option<String>,
    },
    /// Any read-only SQL query, as a table. `{from}` and `{to}` in it are
    /// replaced by the range's first day and the day after its last
    /// (`DATE` literals in the workspace's calendar).
    Sql {
        #[serde(default)]
        title: Option<String>,
        sql: String,
        /// Drawn as `line` or `bar` too (labels from the first text
        /// column, values from the first money or count column).
        #[serde(default)]
        chart: Option<String>,
    },
    /// A saved SQL query of the workspace (`/v1/saved-queries`), by id: run as
    /// it reads at the report's run, `{from}` and `{to}` as in `sql`.
    SavedQuery {
        #[serde(default)]
        title: Option<String>,
        query: String,
        #[serde(default)]
        chart: Option<String>,
    },
    /// A metric's recent days and its forecast for the days after the run,
    /// with the 80% band (the models' forecast, as `/v1/models/forecast`).
    Forecast {
        #[serde(default)]
        title: Option<String>,
        /// A model series metric: `revenue`, `orders`, `bookings`, ...
        #[serde(default = "revenue")]
        metric: String,
        /// Days forecast (1 to 92, default 14).
        #[serde(default)]
        horizon: Option<u32>,
    },
}

/// Charts a SQL block may ask for.
const SQL_CHARTS: &[&str] = &["line", "bar", "none"];

/// Most days a forecast block forecasts.
pub const MAX_FORECAST_DAYS: u32 = 92;

fn revenue() -> String {
    "revenue".into()
}

/// Analytics endpoints a block may name, per block type.
const TIMESERIES_ENDPOINTS: &[&str] = &["revenue", "bookings", "customers"];
const BREAKDOWN_ENDPOINTS: &[&str] = &["revenue", "bookings"];

impl Block {
    /// The block's heading: its title, or one said from what it shows.
    pub fn heading(&self) -> String {
        let (title, default) = match self {
            Self::Kpi { title, .. } => (title, "Key numbers".to_owned()),
            Self::Timeseries {
                title, endpoint, ..
            } => (title, format!("{} over time", capitalized(endpoint))),
            Self::Breakdown {
                title,
                endpoint,
                by,
                ..
            } => (
                title,
                format!("{} by {}", capitalized(endpoint), by.replace('_', " ")),
            ),
            Self::Products { title, .. } => (title, "Top products".to_owned()),
            Self::Funnel { title, .. } => (title, "Funnel".to_owned()),
            Self::Cohorts { title, .. } => (title, "Retention by cohort".to_owned()),
            Self::Heatmap { title, .. } => (title, "Peak times".to_owned()),
            Self::Customers { title } => (title, "Customers".to_owned()),
            Self::Sql { title, .. } => (title, "Query".to_owned()),
            Self::SavedQuery { title, query, .. } => (title, format!("Query {query}")),
            Self::Forecast { title, metric, .. } => {
                (title, format!("{} forecast", capitalized(metric)))
            }
        };
        title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(default)
    }

    /// Checks what can be checked before a run; the message names the
    /// block (1-based).
    fn check(&self, n: usize) -> Result<(), String> {
        let bad = |m: String| Err(format!("block {n}: {m}"));
        match self {
            Self::Timeseries { endpoint, .. }
                if !TIMESERIES_ENDPOINTS.contains(&endpoint.as_str()) =>
            {
                bad(format!(
                    "a timeseries block shows {}, not {endpoint:?}",
                    TIMESERIES_ENDPOINTS.join(", ")
                ))
            }
            Self::Breakdown { endpoint, .. }
                if !BREAKDOWN_ENDPOINTS.contains(&endpoint.as_str()) =>
            {
                bad(format!(
                    "a breakdown block splits {}, not {endpoint:?}",
                    BREAKDOWN_ENDPOINTS.join(", ")
                ))
            }
            Self::Breakdown { by, .. } if by.trim().is_empty() => {
                bad("a breakdown needs \"by\"".into())
            }
            Self::Funnel { steps, .. } if steps.len() < 2 => {
                bad("a funnel needs at least 2 steps".into())
            }
            Self::Sql { sql, .. } if sql.trim().is_empty() => {
                bad("a sql block needs \"sql\"".into())
            }
            Self::Sql { chart: Some(c), .. } | Self::SavedQuery { chart: Some(c), .. }
                if !SQL_CHARTS.contains(&c.as_str()) =>
            {
                bad(format!(
                    "chart is one of {}, not {c:?}",
                    SQL_CHARTS.join(", ")
                ))
            }
            Self::SavedQuery { query, .. } if query.trim().is_empty() => {
                bad("a saved_query block needs \"query\" (a saved query's id)".into())
            }
            Self::Forecast {
                horizon: Some(h), ..
            } if *h == 0 || *h > MAX_FORECAST_DAYS => bad(format!(
                "a forecast's horizon is 1 to {MAX_FORECAST_DAYS} days"
            )),
            Self::Forecast { metric, .. }
                if !beacon_engine::series::METRICS
                    .iter()
                    .any(|(m, _)| m == metric) =>
            {
                bad(format!(
                    "a forecast block forecasts {}, not {metric:?}",
                    beacon_engine::series::METRICS
                        .iter()
                        .map(|(m, _)| *m)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            _ => Ok(()),
        }
    }
}

pub fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl Definition {
    /// Checks the definition's shape (blocks, title, filters); SQL blocks
    /// are planned by the caller.
    pub fn check(&self) -> Result<(), String> {
        let title = self.title.trim();
        if title.is_empty()
            || title.chars().count() > MAX_TITLE
            || title.chars().any(char::is_control)
        {
            return Err(format!(
                "a report's title is 1 to {MAX_TITLE} characters, without control characters"
            ));
        }
        if self.blocks.is_empty() || self.blocks.len() > MAX_BLOCKS {
            return Err(format!("a report has 1 to {MAX_BLOCKS} blocks"));
        }
        if self.filters.iter().any(|f| !f.is_object()) {
            return Err("filters are objects like {\"property\": \"channel\", \"op\": \"eq\", \"value\": \"web\"}".into());
        }
        for (i, b) in self.blocks.iter().enumerate() {
            b.check(i + 1)?;
        }
        Ok(())
    }
}

/// The built-in templates: (name, description, definition).
pub fn templates() -> Vec<(&'static str, &'static str, Definition)> {
    let t =
        |v: Value| serde_json::from_value::<Definition>(v).expect("built-in templates are valid");
    vec![
        (
            "weekly_sales",
            "Last week's revenue, orders and average order value against the week before, revenue per day, by channel and by payment method, and the top products.",
            t(json!({
                "title": "Weekly sales summary",
                "range": "last_week",
                "blocks": [
                    {"type": "kpi"},
                    {"type": "timeseries", "endpoint": "revenue", "interval": "day", "title": "Revenue per day"},
                    {"type": "breakdown", "endpoint": "revenue", "by": "channel", "title": "Revenue by channel"},
                    {"type": "breakdown", "endpoint": "revenue", "by": "payment_method", "title": "Revenue by payment method"},
                    {"type": "products", "limit": 20, "title": "Top products"}
                ]
            })),
        ),
        (
            "monthly_bookings",
            "Last month's bookings, completions, cancellations and no-shows against the month before, per day, cancellation reasons, services and staff.",
            t(json!({
                "title": "Monthly bookings",
                "range": "last_month",
                "blocks": [
                    {"type": "kpi", "bookings": true},
                    {"type": "timeseries", "endpoint": "bookings", "interval": "day", "title": "Bookings per day"},
                    {"type": "breakdown", "endpoint": "bookings", "by": "reason", "title": "Cancellation reasons"},
                    {"type": "breakdown", "endpoint": "bookings", "by": "service_id", "title": "Bookings by service"},
                    {"type": "breakdown", "endpoint": "bookings", "by": "staff", "title": "Bookings by staff"}
                ]
            })),
        ),
        (
            "funnel_health",
            "Last week's checkout funnel (product viewed, added to cart, checkout started, order completed) and orders per day.",
            t(json!({
                "title": "Funnel health",
                "range": "last_week",
                "blocks": [
                    {"type": "funnel", "title": "Checkout funnel", "steps": [
                        {"event": "Product Viewed"}, {"event": "Product Added"},
                        {"event": "Checkout Started"}, {"event": "Order Completed"}]},
                    {"type": "timeseries", "endpoint": "revenue", "interval": "day", "title": "Orders and revenue per day"}
                ]
            })),
        ),
        (
            "customers_at_risk",
            "Customers by RFM segment with their churn risk, and last month's new and returning customers.",
            t(json!({
                "title": "Customers at risk of churn",
                "range": "last_month",
                "blocks": [
                    {"type": "customers", "title": "Customers and churn risk"},
                    {"type": "timeseries", "endpoint": "customers", "interval": "week", "title": "New and returning customers"}
                ]
            })),
        ),
        (
            "low_stock",
            "Products whose latest reported stock is at or below 5 units, with the units sold in the last 30 days.",
            t(json!({
                "title": "Low stock and reorder list",
                "range": "last_30_days",
                "blocks": [
                    {"type": "sql", "title": "Low stock", "sql":
                        "WITH stock AS (SELECT json_get_str(properties, 'product_id') AS product_id, \
                                last_value(CAST(json_as_text(properties, 'quantity') AS BIGINT) ORDER BY timestamp) AS in_stock \
                         FROM events WHERE event = 'Inventory Updated' GROUP BY 1), \
                         sold AS (SELECT product_id, max(name) AS name, sum(quantity) AS sold_in_range \
                                  FROM order_items WHERE timestamp >= {from} AND timestamp < {to} GROUP BY 1) \
                         SELECT s.product_id, o.name, s.in_stock, coalesce(o.sold_in_range, 0) AS sold_in_range \
                         FROM stock s LEFT JOIN sold o ON o.product_id = s.product_id \
                         WHERE s.in_stock <= 5 ORDER BY s.in_stock, sold_in_range DESC"}
                ]
            })),
        ),
        (
            "alert_digest",
            "The alerts of last week, per rule and group: how often they fired and resolved, when they first fired and last changed.",
            t(json!({
                "title": "Alert digest",
                "range": "last_week",
                "blocks": [
                    {"type": "sql", "title": "Alerts of the period", "sql":
                        "SELECT rule_id, group_key, count(*) FILTER (WHERE to_state = 'firing') AS fired, \
                                count(*) FILTER (WHERE to_state = 'resolved') AS resolved, \
                                min(at) FILTER (WHERE to_state = 'firing') AS first_fired_at, max(at) AS last_change_at \
                         FROM alert_history WHERE at >= {from} AND at < {to} \
                         GROUP BY 1, 2 ORDER BY first_fired_at NULLS LAST, rule_id, group_key"}
                ]
            })),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_micros()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn relative_ranges_follow_the_workspace_calendar() {
        let london = BusinessCalendar {
            tz: "Europe/London".parse().expect("tz"),
            week_start: chrono::Weekday::Mon,
        };
        // Monday 2 March 2026, 00:30 in London (00:30 UTC).
        let now = at("2026-03-02T00:30:00Z");
        let r = |range: RelativeRange| range.resolve(&london, now).expect("range");
        assert_eq!(r(RelativeRange::Today), (d("2026-03-02"), d("2026-03-02")));
        assert_eq!(
            r(RelativeRange::Yesterday),
            (d("2026-03-01"), d("2026-03-01"))
        );
        assert_eq!(
            r(RelativeRange::LastWeek),
            (d("2026-02-23"), d("2026-03-01"))
        );
        assert_eq!(
            r(RelativeRange::WeekToDate),
            (d("2026-03-02"), d("2026-03-02"))
        );
        assert_eq!(
            r(RelativeRange::LastMonth),
            (d("2026-02-01"), d("2026-02-28"))
        );
        assert_eq!(
            r(RelativeRange::LastQuarter),
            (d("2025-10-01"), d("2025-12-31"))
        );
        assert_eq!(
            r(RelativeRange::Last7Days),
            (d("2026-02-23"), d("2026-03-01"))
        );
        // The same instant is still Sunday 1 March in New York, whose
        // business weeks start on Sunday.
        let new_york = BusinessCalendar {
            tz: "America/New_York".parse().expect("tz"),
            week_start: chrono::Weekday::Sun,
        };
        assert_eq!(
            RelativeRange::LastWeek.resolve(&new_york, now),
            Some((d("2026-02-22"), d("2026-02-28")))
        );
        assert_eq!(
            RelativeRange::MonthToDate.resolve(&new_york, now),
            Some((d("2026-03-01"), d("2026-03-01")))
        );
    }

    #[test]
    fn definitions_are_checked_and_templates_are_valid() {
        for (name, _, def) in templates() {
            def.check().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let parse = |v: Value| serde_json::from_value::<Definition>(v).map_err(|e| e.to_string());
        let unknown = parse(json!({"title": "x", "blocks": [{"type": "pie_chart"}]}))
            .expect_err("unknown block");
        assert!(unknown.contains("pie_chart"), "{unknown}");
        let field = parse(json!({"title": "x", "blocks": [{"type": "kpi", "colour": "red"}]}))
            .expect_err("unknown field");
        assert!(field.contains("colour"), "{field}");
        let range =
            parse(json!({"title": "x", "range": "last_fortnight", "blocks": [{"type": "kpi"}]}))
                .expect_err("range");
        assert!(range.contains("last_fortnight"), "{range}");
        let def = parse(json!({"title": "x", "blocks": [{"type": "breakdown", "endpoint": "sessions", "by": "channel"}]})).expect("shape");
        assert!(def.check().expect_err("endpoint").contains("block 1"));
        let def = parse(json!({"title": " ", "blocks": [{"type": "kpi"}]})).expect("shape");
        assert!(def.check().is_err());
        let def = parse(json!({"title": "x", "blocks": []})).expect("shape");
        assert!(def.check().is_err());
        let def =
            parse(json!({"title": "x", "blocks": [{"type": "forecast", "metric": "profit"}]}))
                .expect("shape");
        assert!(def.check().expect_err("metric").contains("profit"));
        let def = parse(json!({"title": "x", "blocks": [{"type": "forecast", "horizon": 93}]}))
            .expect("shape");
        assert!(def.check().expect_err("horizon").contains("92"));
        let def = parse(
            json!({"title": "x", "blocks": [{"type": "sql", "sql": "SELECT 1", "chart": "pie"}]}),
        )
        .expect("shape");
        assert!(def.check().expect_err("chart").contains("pie"));
    }
}
