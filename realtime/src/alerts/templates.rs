//! Built-in rules a business switches on with a few parameters
//! (`POST /v1/alerts/templates/{name}`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::rule::{By, Compare, Condition, Direction, Op, Query, RuleSpec, Schedule};
use crate::notify::NotifyError;

/// A template's description.
#[derive(Debug, Clone, Serialize)]
pub struct Template {
    /// Name.
    pub name: &'static str,
    /// What it watches.
    pub description: &'static str,
    /// Parameters with their defaults.
    pub parameters: BTreeMap<&'static str, Value>,
}

/// Every template.
pub fn list() -> Vec<Template> {
    let p = |pairs: &[(&'static str, Value)]| pairs.iter().cloned().collect::<BTreeMap<_, _>>();
    vec![
        Template {
            name: "low_stock",
            description: "A product's latest Inventory Updated quantity is below a threshold (one alert per product).",
            parameters: p(&[("threshold", 5.into()), ("severity", "warning".into())]),
        },
        Template {
            name: "revenue_below_forecast",
            description: "Yesterday's (or the last hour's) revenue is below its forecast band.",
            parameters: p(&[
                ("interval", "day".into()),
                ("sensitivity", "medium".into()),
                ("severity", "warning".into()),
            ]),
        },
        Template {
            name: "cancellation_spike",
            description: "Booking cancellations in the last day are up by a percentage on the same day last week.",
            parameters: p(&[
                ("percent", 50.into()),
                ("window", "1d".into()),
                ("severity", "warning".into()),
            ]),
        },
        Template {
            name: "no_show_spike",
            description: "No-shows in the last day are up by a percentage on the same day last week.",
            parameters: p(&[
                ("percent", 50.into()),
                ("window", "1d".into()),
                ("severity", "warning".into()),
            ]),
        },
        Template {
            name: "high_value_order",
            description: "An order above an amount arrived (one alert per order, on ingest).",
            parameters: p(&[("amount", 500.into()), ("severity", "info".into())]),
        },
        Template {
            name: "new_lead_assigned",
            description: "A lead was assigned to a staff member (Lead Assigned, or Lead Created with a staff_id).",
            parameters: p(&[("severity", "info".into())]),
        },
        Template {
            name: "payment_failures_spike",
            description: "Payment Failed events in the last hour are above a count.",
            parameters: p(&[
                ("count", 5.into()),
                ("window", "1h".into()),
                ("severity", "critical".into()),
            ]),
        },
    ]
}

fn get(
    params: &serde_json::Map<String, Value>,
    template: &Template,
    name: &str,
) -> Result<Value, NotifyError> {
    Ok(params
        .get(name)
        .or_else(|| template.parameters.get(name))
        .cloned()
        .unwrap_or(Value::Null))
}

fn number(v: Value, name: &str) -> Result<f64, NotifyError> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| NotifyError::invalid(format!("parameter {name} must be a number")))
}

fn text(v: Value, name: &str) -> Result<String, NotifyError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| NotifyError::invalid(format!("parameter {name} must be a string")))
}

fn duration(v: Value, name: &str) -> Result<Duration, NotifyError> {
    humantime::parse_duration(&text(v, name)?)
        .map_err(|e| NotifyError::invalid(format!("parameter {name}: {e}")))
}

/// The rule of template `name` with `params` (others: defaults). `users`
/// and `channels` route its notifications.
pub fn instantiate(
    name: &str,
    params: &serde_json::Map<String, Value>,
) -> Result<RuleSpec, NotifyError> {
    let all = list();
    let t = all.iter().find(|t| t.name == name).ok_or_else(|| {
        NotifyError::NotFound(format!(
            "no template {name:?}; see GET /v1/alerts/templates"
        ))
    })?;
    for k in params.keys() {
        if !t.parameters.contains_key(k.as_str())
            && !["users", "channels", "name"].contains(&k.as_str())
        {
            return Err(NotifyError::invalid(format!(
                "unknown parameter {k:?} for {name}; it takes {}, users, channels, name",
                t.parameters.keys().copied().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let severity = text(get(params, t, "severity")?, "severity")?;
    let base = |query: Query, condition: Condition, schedule: Schedule| RuleSpec {
        name: String::new(),
        description: t.description.to_owned(),
        query,
        condition,
        schedule,
        for_: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        severity: severity.clone(),
        labels: [("template".to_owned(), name.to_owned())].into(),
        no_data: super::rule::NoDataPolicy::Ok,
        on_error: Default::default(),
        notify: Default::default(),
        flap: Default::default(),
        enabled: true,
    };
    let metric = |m: &str, window: Duration| Query {
        metric: Some(m.into()),
        sql: None,
        window,
        event: None,
        group_by: None,
    };
    let sql = |s: String, window: Duration| Query {
        metric: None,
        sql: Some(s),
        window,
        event: None,
        group_by: None,
    };
    let every = |s: u64| Schedule {
        every: Some(Duration::from_secs(s)),
        cron: None,
        on_ingest: false,
    };
    let on_ingest = Schedule {
        every: None,
        cron: None,
        on_ingest: true,
    };
    let mut spec = match name {
        "low_stock" => {
            let threshold = number(get(params, t, "threshold")?, "threshold")?;
            let mut s = base(
                sql(
                    "SELECT product_id, CAST(last_value(quantity ORDER BY timestamp) AS DOUBLE) AS value FROM events \
                     WHERE event = 'Inventory Updated' AND product_id IS NOT NULL AND quantity IS NOT NULL GROUP BY product_id"
                        .into(),
                    Duration::from_secs(86_400),
                ),
                Condition::Threshold { op: Op::Below, value: threshold, recover: None },
                on_ingest,
            );
            s.name = format!("Low stock (below {threshold})");
            s
        }
        "revenue_below_forecast" => {
            let interval = text(get(params, t, "interval")?, "interval")?;
            let sensitivity = text(get(params, t, "sensitivity")?, "sensitivity")?;
            let mut s = base(
                metric("revenue", Duration::from_secs(86_400)),
                Condition::Anomaly {
                    sensitivity,
                    direction: Direction::Below,
                    interval: interval.clone(),
                },
                every(if interval == "hour" { 300 } else { 3600 }),
            );
            s.name = "Revenue below forecast".into();
            s.no_data = super::rule::NoDataPolicy::KeepLast;
            s
        }
        "cancellation_spike" | "no_show_spike" => {
            let percent = number(get(params, t, "percent")?, "percent")?;
            let window = duration(get(params, t, "window")?, "window")?;
            let m = if name == "cancellation_spike" {
                "cancellations"
            } else {
                "no_shows"
            };
            let mut s = base(
                metric(m, window),
                Condition::Change {
                    op: Op::Above,
                    value: percent,
                    compare: Compare::LastWeek,
                    by: By::Percent,
                },
                every(900),
            );
            s.name = if name == "cancellation_spike" {
                "Cancellation spike".into()
            } else {
                "No-show spike".into()
            };
            s
        }
        "high_value_order" => {
            let amount = number(get(params, t, "amount")?, "amount")?;
            let mut s = base(
                sql(
                    format!(
                        "SELECT order_id, CAST(revenue AS DOUBLE) AS value FROM orders \
                         WHERE timestamp >= $1 AND timestamp < $2 AND revenue > {amount} ORDER BY timestamp LIMIT 1000"
                    ),
                    Duration::from_secs(3600),
                ),
                Condition::Threshold {
                    op: Op::Above,
                    value: amount,
                    recover: None,
                },
                on_ingest,
            );
            s.name = format!("High-value order (above {amount})");
            s
        }
        "new_lead_assigned" => {
            let mut s = base(
                sql(
                    "SELECT lead_id, staff_id, CAST(count(*) AS DOUBLE) AS value FROM leads \
                     WHERE timestamp >= $1 AND timestamp < $2 AND staff_id IS NOT NULL \
                       AND event IN ('Lead Assigned', 'Lead Created') GROUP BY lead_id, staff_id LIMIT 1000"
                        .into(),
                    Duration::from_secs(3600),
                ),
                Condition::Threshold { op: Op::Above, value: 0.0, recover: None },
                on_ingest,
            );
            s.name = "New lead assigned".into();
            s
        }
        "payment_failures_spike" => {
            let count = number(get(params, t, "count")?, "count")?;
            let window = duration(get(params, t, "window")?, "window")?;
            let mut s = base(
                metric("payment_failures", window),
                Condition::Threshold {
                    op: Op::Above,
                    value: count,
                    recover: None,
                },
                every(60),
            );
            s.name = format!(
                "Payment failures spike (more than {count} in {})",
                humantime::format_duration(window)
            );
            s
        }
        _ => unreachable!("listed above"),
    };
    if let Some(n) = params.get("name") {
        spec.name = text(n.clone(), "name")?;
    }
    if let Some(u) = params.get("users") {
        spec.notify.users = serde_json::from_value(u.clone())
            .map_err(|_| NotifyError::invalid("users must be a list of user ids"))?;
    }
    if let Some(c) = params.get("channels") {
        spec.notify.channels = Some(
            serde_json::from_value(c.clone())
                .map_err(|_| NotifyError::invalid("channels must be a list"))?,
        );
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_instantiates_with_defaults_and_validates() {
        for t in list() {
            let spec = instantiate(t.name, &serde_json::Map::new()).expect(t.name);
            spec.validate_static()
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        }
        let mut p = serde_json::Map::new();
        p.insert("threshold".into(), "x".into());
        assert!(instantiate("low_stock", &p).is_err());
        assert!(instantiate("nope", &serde_json::Map::new()).is_err());
    }
}
