//! Alert rule definitions and their validation.
//!
//! A rule is JSON (see `docs/alerts.md`): what to watch (`query`), when it
//! is bad (`condition`), how often to look (`schedule`), how long it must
//! stay bad (`for`) or good again (`keep_firing_for`), and whom to tell
//! (`notify`). Everything that can be checked without data is checked when
//! the rule is saved: durations, cron, metric names, the SQL (planned in
//! the sandbox), users.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::notify::NotifyError;

/// Metrics a rule can watch without SQL: `(name, events filter, value)`.
/// Each is computed over `[now - window, now)`. `{own}` stands for "in the
/// workspace currency (or none)": money, and the orders it comes from, are
/// counted as the analytics API and live metrics count them, never adding
/// amounts in different currencies (a rule grouped by `currency` watches
/// each currency apart instead).
pub const METRICS: [(&str, &str, &str); 12] = [
    // Sales as the analytics API counts them: orders and completed bookings.
    (
        "revenue",
        "event IN ('Order Completed', 'Booking Completed') AND {own}",
        "coalesce(sum(revenue), 0)",
    ),
    ("orders", "event = 'Order Completed' AND {own}", "count(*)"),
    (
        "aov",
        "event IN ('Order Completed', 'Booking Completed') AND {own}",
        "avg(revenue)",
    ),
    (
        "refunds",
        "event = 'Order Refunded' AND {own}",
        "coalesce(sum(revenue), 0)",
    ),
    ("bookings", "event = 'Booking Created'", "count(*)"),
    ("cancellations", "event = 'Booking Cancelled'", "count(*)"),
    ("no_shows", "event = 'Booking No Show'", "count(*)"),
    (
        "cancellation_rate",
        "event IN ('Booking Created', 'Booking Cancelled')",
        "100.0 * count(*) FILTER (WHERE event = 'Booking Cancelled') / nullif(count(*) FILTER (WHERE event = 'Booking Created'), 0)",
    ),
    ("payment_failures", "event = 'Payment Failed'", "count(*)"),
    ("leads", "event = 'Lead Created'", "count(*)"),
    (
        "visitors",
        "(type = 'page' OR event = 'Page Viewed')",
        "count(DISTINCT coalesce(user_id, anonymous_id))",
    ),
    ("events", "event = {event}", "count(*)"),
];

/// Event columns a metric rule may be grouped by (else `properties.<key>`).
pub const GROUP_COLUMNS: [&str; 9] = [
    "product_id",
    "location_id",
    "channel",
    "staff_id",
    "service_id",
    "payment_method",
    "currency",
    "status",
    "event",
];

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = r#"a query object like {"metric": "revenue", "window": "1h"} or {"sql": "SELECT ..."}"#
)]
pub struct Query {
    /// A name of [`METRICS`] (or use `sql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// A read-only query: the column `value` (else the last column) is the
    /// value, every other column a label; one alert instance per row.
    /// `$1` and `$2` are bound to the window's start and end (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The window ending at evaluation time (default 1h).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// The event of metric `events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Group a metric by an event column or `properties.<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

fn default_window() -> Duration {
    Duration::from_secs(3600)
}

/// Comparison of a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// value > threshold.
    Above,
    /// value < threshold.
    Below,
}

impl Op {
    /// Applies the comparison.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value > threshold,
            Self::Below => value < threshold,
        }
    }
}

/// The period a change is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// The window just before.
    PreviousPeriod,
    /// The same window a week earlier.
    LastWeek,
}

/// How a change is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// current - previous.
    Absolute,
    /// (current - previous) / |previous| × 100; undefined when previous is 0.
    Percent,
}

/// Which side of an anomaly band counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Above the band.
    Above,
    /// Below the band.
    Below,
    /// Either.
    #[default]
    Both,
}

/// When the watched value is bad.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    deny_unknown_fields,
    expecting = r#"a condition object like {"type": "threshold", "op": "above", "value": 100} (type: threshold, change, anomaly or no_data)"#
)]
pub enum Condition {
    /// `value op threshold`.
    Threshold {
        /// Comparison.
        op: Op,
        /// Threshold.
        value: f64,
        /// Hysteresis: once alerting, the condition holds until the value
        /// crosses this instead (`above 100, recover 90`: fires above 100,
        /// resolves only at 90 or below), so a value hovering at the
        /// threshold does not flap. On the good side of `value`, or equal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recover: Option<f64>,
    },
    /// `change(value, compared) op threshold`.
    Change {
        /// Comparison.
        op: Op,
        /// Threshold (percent points or absolute).
        value: f64,
        /// Against what.
        compare: Compare,
        /// Percent or absolute.
        by: By,
    },
    /// The last complete period is outside its anomaly band (metric rules).
    Anomaly {
        /// `low`, `medium` (default) or `high`.
        #[serde(default = "default_sensitivity")]
        sensitivity: String,
        /// Which side counts.
        #[serde(default)]
        direction: Direction,
        /// `hour` or `day` (default).
        #[serde(default = "default_interval")]
        interval: String,
    },
    /// The query has no value (no rows, NULL, or no matching events).
    NoData,
}

fn default_sensitivity() -> String {
    "medium".into()
}

fn default_interval() -> String {
    "day".into()
}

/// When a rule is evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = r#"a schedule object like {"every": "1m"}, {"cron": "0 9 * * *"} or {"on_ingest": true}"#
)]
pub struct Schedule {
    /// A fixed interval.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    /// A cron expression in the workspace's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// After every accepted batch of the workspace (debounced to the
    /// alert tick).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_ingest: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            every: Some(Duration::from_secs(60)),
            cron: None,
            on_ingest: false,
        }
    }
}

/// State an instance takes when its query has no value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    /// The NoData state (notified).
    #[default]
    NoData,
    /// As if the condition were false.
    Ok,
    /// As if the condition were true.
    Alerting,
    /// Keep the current state.
    KeepLast,
}

/// State an instance takes when its query fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// The Error state (notified).
    #[default]
    Error,
    /// As if the condition were true.
    Alerting,
    /// Keep the current state.
    KeepLast,
}

/// Whom to tell and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = r#"a notify object like {"users": ["ann"], "channels": ["inbox"]}"#
)]
pub struct NotifySpec {
    /// User ids.
    pub users: Vec<String>,
    /// Channels (default: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// Wait this long after the first change before the first notification
    /// of a group (more instances may join).
    #[serde(with = "humantime_serde")]
    pub group_wait: Duration,
    /// Later changes of a group are sent at most this often.
    #[serde(with = "humantime_serde")]
    pub group_interval: Duration,
    /// A group still firing is re-sent after this long.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
}

impl Default for NotifySpec {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            channels: None,
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

/// Flap damping: an instance that changed between firing and resolved at
/// least `threshold` times within `window` is flapping; its notifications
/// wait until it has been stable for `window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = r#"a flap object like {"threshold": 4, "window": "1h"}"#
)]
pub struct Flap {
    /// Transitions.
    pub threshold: usize,
    /// Window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for Flap {
    fn default() -> Self {
        Self {
            threshold: 4,
            window: Duration::from_secs(3600),
        }
    }
}

/// A rule as given by the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = r#"a rule object with name, query and condition"#
)]
pub struct RuleSpec {
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What to watch.
    pub query: Query,
    /// When it is bad.
    pub condition: Condition,
    /// When to evaluate.
    #[serde(default)]
    pub schedule: Schedule,
    /// How long the condition must hold before firing.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub for_: Duration,
    /// How long a firing instance stays firing after the condition clears.
    #[serde(default, with = "humantime_serde")]
    pub keep_firing_for: Duration,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Labels of every instance (silences match them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// No-data policy.
    #[serde(default)]
    pub no_data: NoDataPolicy,
    /// Error policy.
    #[serde(default)]
    pub on_error: ErrorPolicy,
    /// Notification routing and noise control.
    #[serde(default)]
    pub notify: NotifySpec,
    /// Flap damping.
    #[serde(default)]
    pub flap: Flap,
    /// Whether it is evaluated.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_severity() -> String {
    "warning".into()
}

fn yes() -> bool {
    true
}

const DAY: Duration = Duration::from_secs(86_400);

fn bad(message: impl Into<String>) -> NotifyError {
    NotifyError::invalid(message)
}

impl RuleSpec {
    /// Checks everything that does not need the engine or the users.
    pub fn validate_static(&self) -> Result<(), NotifyError> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(bad("name must be 1-200 bytes"));
        }
        if !crate::notify::SEVERITIES.contains(&self.severity.as_str()) {
            return Err(bad(format!(
                "severity must be one of {}",
                crate::notify::SEVERITIES.join(", ")
            )));
        }
        let q = &self.query;
        match (&q.metric, &q.sql) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(bad("query needs exactly one of \"metric\" or \"sql\""));
            }
            (Some(m), None) => {
                let Some((_, filter, _)) = METRICS.iter().find(|(n, _, _)| n == m) else {
                    return Err(bad(format!(
                        "unknown metric {m:?}; available: {}",
                        METRICS.map(|m| m.0).join(", ")
                    )));
                };
                if filter.contains("{event}") != q.event.is_some() {
                    return Err(bad(if q.event.is_some() {
                        "query.event is only for metric \"events\"".to_owned()
                    } else {
                        "metric \"events\" needs query.event (an event name)".to_owned()
                    }));
                }
                if let Some(g) = &q.group_by {
                    let ok = GROUP_COLUMNS.contains(&g.as_str())
                        || g.strip_prefix("properties.").is_some_and(|k| {
                            !k.is_empty()
                                && k.len() <= 100
                                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        });
                    if !ok {
                        return Err(bad(format!(
                            "group_by {g:?}: use one of {} or properties.<key>",
                            GROUP_COLUMNS.join(", ")
                        )));
                    }
                }
            }
            (None, Some(sql)) => {
                if sql.trim().is_empty() || sql.len() > 20_000 {
                    return Err(bad("query.sql must be 1-20000 bytes"));
                }
                if q.event.is_some() || q.group_by.is_some() {
                    return Err(bad(
                        "query.event and query.group_by are for metric rules; group in the SQL instead",
                    ));
                }
            }
        }
        if q.window.is_zero() || q.window > 400 * DAY {
            return Err(bad("query.window must be more than 0 and at most 400 days"));
        }
        match &self.condition {
            Condition::Threshold { value, .. } | Condition::Change { value, .. }
                if !value.is_finite() =>
            {
                return Err(bad("condition.value must be a finite number"));
            }
            Condition::Threshold {
                op,
                value,
                recover: Some(r),
            } if !r.is_finite()
                || (*op == Op::Above && r > value)
                || (*op == Op::Below && r < value) =>
            {
                return Err(bad(
                    "condition.recover is a finite number on the good side of condition.value \
                     (at most it for \"above\", at least it for \"below\")",
                ));
            }
            Condition::Anomaly {
                sensitivity,
                interval,
                ..
            } => {
                if q.metric.is_none() {
                    return Err(bad(
                        "anomaly conditions need a metric query (revenue, orders, bookings, cancellations or visitors)",
                    ));
                }
                if !["low", "medium", "high"].contains(&sensitivity.as_str()) {
                    return Err(bad("condition.sensitivity must be low, medium or high"));
                }
                if !["hour", "day"].contains(&interval.as_str()) {
                    return Err(bad("condition.interval must be hour or day"));
                }
                if q.group_by.is_some() {
                    return Err(bad("anomaly conditions cannot be grouped"));
                }
            }
            _ => {}
        }
        let s = &self.schedule;
        let kinds = usize::from(s.every.is_some())
            + usize::from(s.cron.is_some())
            + usize::from(s.on_ingest);
        if kinds != 1 {
            return Err(bad(
                "schedule needs exactly one of \"every\", \"cron\" or \"on_ingest\": true",
            ));
        }
        if let Some(every) = s.every
            && (every < Duration::from_secs(1) || every > 31 * DAY)
        {
            return Err(bad("schedule.every must be between 1s and 31 days"));
        }
        if let Some(cron) = &s.cron {
            cron.parse::<croner::Cron>()
                .map_err(|e| bad(format!("schedule.cron {cron:?}: {e}")))?;
        }
        if self.for_ > 30 * DAY || self.keep_firing_for > 30 * DAY {
            return Err(bad("for and keep_firing_for must be at most 30 days"));
        }
        if let Some(every) = s.every
            && !self.for_.is_zero()
            && self.for_ < every
        {
            return Err(bad(format!(
                "for ({}) is shorter than the evaluation interval ({}): it could never be observed; use for >= every or for = 0",
                humantime::format_duration(self.for_),
                humantime::format_duration(every)
            )));
        }
        let n = &self.notify;
        if n.group_wait > DAY || n.group_interval > DAY || n.repeat_interval > 30 * DAY {
            return Err(bad(
                "group_wait and group_interval must be at most 1 day, repeat_interval at most 30 days",
            ));
        }
        if n.group_interval.is_zero() || n.repeat_interval < n.group_interval {
            return Err(bad(
                "group_interval must be > 0 and repeat_interval >= group_interval",
            ));
        }
        if self.flap.threshold < 2 || self.flap.window.is_zero() || self.flap.window > 7 * DAY {
            return Err(bad(
                "flap.threshold must be >= 2 and flap.window between 0 and 7 days",
            ));
        }
        if self.labels.len() > 32
            || self
                .labels
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 100 || v.len() > 500)
        {
            return Err(bad(
                "at most 32 labels; keys 1-100 bytes, values at most 500",
            ));
        }
        if let Some(ch) = &n.channels {
            for c in ch {
                if crate::notify::Channel::parse(c).is_none() {
                    return Err(bad(format!(
                        "unknown channel {c:?}; use inbox, websocket, webhook or email"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The SQL evaluated (metric rules are compiled to SQL over `events`)
    /// with `$1`/`$2` as the window.
    pub fn sql(&self) -> String {
        let q = &self.query;
        if let Some(sql) = &q.sql {
            return sql.clone();
        }
        let metric = q.metric.as_deref().unwrap_or("orders");
        let (_, filter, value) = METRICS
            .iter()
            .find(|(n, _, _)| *n == metric)
            .copied()
            .unwrap_or(METRICS[1]);
        let event = q
            .event
            .as_deref()
            .map(|e| format!("'{}'", e.replace('\'', "''")))
            .unwrap_or_default();
        let own = if q.group_by.as_deref() == Some("currency") {
            "TRUE"
        } else {
            "(currency IS NULL OR currency = business_currency())"
        };
        // `{own}` first: an event name is data and may hold anything.
        let filter = filter.replace("{own}", own).replace("{event}", &event);
        let window = "timestamp >= $1 AND timestamp < $2";
        match &q.group_by {
            None => format!(
                "SELECT CAST({value} AS DOUBLE) AS value, count(*) AS n FROM events WHERE {window} AND {filter}"
            ),
            Some(g) => {
                let (expr, name) = match g.strip_prefix("properties.") {
                    Some(key) => (format!("json_get_str(properties, '{key}')"), key.to_owned()),
                    None => (g.clone(), g.clone()),
                };
                format!(
                    "SELECT {expr} AS \"{name}\", CAST({value} AS DOUBLE) AS value, count(*) AS n FROM events \
                     WHERE {window} AND {filter} GROUP BY 1"
                )
            }
        }
    }
}
