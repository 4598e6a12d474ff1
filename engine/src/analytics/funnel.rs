//! `funnel`: per-step counts and times of an ordered funnel, computed with
//! the `funnel_steps` aggregate (one pass, grouped by person or session; no
//! self-joins). Semantics of the window, modes and exclusion are those of
//! the function (`docs/analytics.md`); only events in the range count.
//!
//! Per step `i`: `entered` = units that reached step `i`; `converted` =
//! units that reached step `i + 1` (for the last step: those that
//! completed); `conversion_from_start = entered_i / entered_1`;
//! `conversion_from_previous = entered_i / entered_(i-1)`; `drop_off =
//! entered_(i-1) - entered_i`; median and p90 seconds from the previous
//! step and from the first step, over the units that reached step `i`.
//! Excluded units count nowhere (`excluded` says how many). `summary`:
//! `entered` (step 1), `converted` (the last step) and their ratio
//! `conversion_rate`; with `compare`, `change` is the relative change of
//! each of them.
//!
//! Breakdown attribution: `first` touch takes the property's value on the
//! unit's first step-1 event (the anchor); `last` touch its value on the
//! unit's last event matching any step in the range.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Common, EventMatcher, Period, Session, ratio};
use crate::udf::funnel::MAX_STEPS;
use crate::{Error, Result};

pub(super) const FIELDS: &[&str] = &[
    "steps",
    "window",
    "window_seconds",
    "mode",
    "exclude",
    "count_by",
    "attribution",
];

#[derive(Debug, Deserialize)]
pub(super) struct Request {
    #[serde(flatten)]
    common: Common,
    steps: Vec<EventMatcher>,
    /// `14d`, `12h`, `30m`, `90s`, `2w` (default `14d`).
    window: Option<String>,
    window_seconds: Option<u64>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    exclude: Vec<EventMatcher>,
    /// `person` (default) or `session`.
    count_by: Option<String>,
    /// `first` (default) or `last`.
    attribution: Option<String>,
}

/// Parses `14d`-style durations into seconds.
fn parse_window(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        Error::InvalidRequest(format!("invalid window {s:?}; use e.g. 14d, 12h, 30m"))
    })?;
    let factor = match unit.trim() {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(Error::InvalidRequest(format!(
                "invalid window unit {other:?}; use s, m, h, d or w"
            )));
        }
    };
    Ok(n * factor)
}

/// Most steps the API takes (the function takes up to 62).
pub const MAX_API_STEPS: usize = 30;

struct Plan {
    window: u64,
    mode: &'static str,
    unit: &'static str,
    attribution: &'static str,
    steps: Vec<String>,
    exclude: String,
}

impl Plan {
    fn new(r: &Request) -> Result<Self> {
        if r.steps.len() < 2 || r.steps.len() > MAX_API_STEPS.min(MAX_STEPS) {
            return Err(Error::InvalidRequest(format!(
                "a funnel has 2 to {MAX_API_STEPS} steps, got {}",
                r.steps.len()
            )));
        }
        let window = match (&r.window, r.window_seconds) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidRequest(
                    "give window or window_seconds, not both".into(),
                ));
            }
            (Some(w), None) => parse_window(w)?,
            (None, Some(s)) => s,
            (None, None) => 14 * 86_400,
        };
        if window == 0 || window > 366 * 86_400 {
            return Err(Error::InvalidRequest(
                "the conversion window is 1 second to 366 days".into(),
            ));
        }
        let mode = match r.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("sequential") => "sequential",
            Some("strict") => "strict",
            Some("any") => "any",
            Some(other) => {
                return Err(Error::InvalidRequest(format!(
                    "unknown mode {other:?}; use sequential, strict or any"
                )));
            }
        };
        let unit = match r.count_by.as_deref() {
            None | Some("person") => "coalesce(user_id, anonymous_id)",
            Some("session") => "session_id",
            Some(other) => {
                return Err(Error::InvalidRequest(format!(
                    "unknown count_by {other:?}; use person or session"
                )));
            }
        };
        if r.common.interval.is_some() {
            return Err(Error::InvalidRequest(
                "funnel has no series; interval does not apply".into(),
            ));
        }
        if r.attribution.is_some() && r.common.breakdown.is_none() {
            return Err(Error::InvalidRequest(
                "attribution applies to a breakdown; give breakdown too".into(),
            ));
        }
        let attribution = match r.attribution.as_deref() {
            None | Some("first") | Some("first_touch") => "first",
            Some("last") | Some("last_touch") => "last",
            Some(other) => {
                return Err(Error::InvalidRequest(format!(
                    "unknown attribution {other:?}; use first or last"
                )));
            }
        };
        let steps = r
            .steps
            .iter()
            .map(EventMatcher::to_sql)
            .collect::<Result<Vec<_>>>()?;
        let exclude = if r.exclude.is_empty() {
            "FALSE".to_owned()
        } else {
            let parts = r
                .exclude
                .iter()
                .map(EventMatcher::to_sql)
                .collect::<Result<Vec<_>>>()?;
            format!("({})", parts.join(" OR "))
        };
        Ok(Self {
            window,
            mode,
            unit,
            attribution,
            steps,
            exclude,
        })
    }

    /// Per-unit `funnel_steps` results (`s`), with the breakdown value.
    fn units_sql(&self, period: &Period, filters: &str, breakdown: Option<&str>) -> String {
        let any_step = self.steps.join(" OR ");
        let value = match breakdown {
            None => String::new(),
            Some(p) if self.attribution == "first" => format!(
                ", first_value({p} ORDER BY timestamp) FILTER (WHERE {}) AS value",
                self.steps[0]
            ),
            Some(p) => {
                format!(", last_value({p} ORDER BY timestamp) FILTER (WHERE {any_step}) AS value")
            }
        };
        format!(
            "SELECT {unit} AS unit, funnel_steps({window}, '{mode}', timestamp, {exclude}, {steps}) AS s{value} \
             FROM events WHERE {time} AND {filters} AND {unit} IS NOT NULL AND ({any_step} OR {exclude}) \
             GROUP BY 1",
            unit = self.unit,
            window = self.window,
            mode = self.mode,
            exclude = self.exclude,
            steps = self.steps.join(", "),
            time = period.time_sql(),
        )
    }

    /// Per-step aggregates over the units (grouped by `value` with a
    /// breakdown).
    fn steps_sql(&self, units: &str, by_value: bool) -> String {
        let n = self.steps.len();
        let values: Vec<String> = (1..=n).map(|i| format!("({i})")).collect();
        let (select, group) = if by_value {
            ("coalesce(value, '(none)') AS value, ", "GROUP BY 1, 2")
        } else {
            ("", "GROUP BY 1")
        };
        format!(
            "WITH u AS ({units}), k AS (SELECT * FROM (VALUES {values}) AS t(step)), \
                  x AS (SELECT u.*, k.step, \
                               CASE WHEN k.step > 1 THEN s[k.step] - s[k.step - 1] END AS from_previous, \
                               s[k.step] AS from_start \
                        FROM u CROSS JOIN k WHERE u.s IS NOT NULL AND cardinality(u.s) >= k.step) \
             SELECT {select}step, count(*) AS entered, \
                    median(from_previous) AS median_seconds_from_previous, \
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY from_previous) AS p90_seconds_from_previous, \
                    median(from_start) AS median_seconds_from_start, \
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY from_start) AS p90_seconds_from_start \
             FROM x {group}",
            values = values.join(", "),
        )
    }
}

/// Turns per-step rows (one value of the breakdown) into the step list.
fn step_list(r: &Request, rows: &[Map<String, Value>]) -> Vec<Value> {
    let n = r.steps.len();
    let entered: Vec<f64> = (1..=n)
        .map(|i| {
            rows.iter()
                .find(|row| super::num(&row["step"]) as usize == i)
                .map_or(0.0, |row| super::num(&row["entered"]))
        })
        .collect();
    (1..=n)
        .map(|i| {
            let row = rows
                .iter()
                .find(|row| super::num(&row["step"]) as usize == i);
            let get = |k: &str| row.and_then(|r| r.get(k)).cloned().unwrap_or(Value::Null);
            let e = entered[i - 1];
            let prev = if i == 1 { e } else { entered[i - 2] };
            let converted = if i < n { entered[i] } else { e };
            json!({
                "step": i,
                "event": r.steps[i - 1].event,
                "entered": e as u64,
                "converted": converted as u64,
                "conversion_from_start": ratio(e, entered[0]),
                "conversion_from_previous": ratio(e, prev),
                "drop_off": (prev - e) as u64,
                "drop_off_rate": ratio(prev - e, prev),
                "median_seconds_from_previous": get("median_seconds_from_previous"),
                "p90_seconds_from_previous": get("p90_seconds_from_previous"),
                "median_seconds_from_start": get("median_seconds_from_start"),
                "p90_seconds_from_start": get("p90_seconds_from_start"),
            })
        })
        .collect()
}

async fn answer(s: &Session<'_>, r: &Request, plan: &Plan, period: &Period) -> Result<Value> {
    let filters = r.common.filter_sql()?;
    let units = plan.units_sql(period, &filters, None);
    let rows = s.rows(&plan.steps_sql(&units, false)).await?;
    let excluded = s
        .rows(&format!(
            "SELECT count(*) FILTER (WHERE s IS NULL) AS excluded FROM ({units})"
        ))
        .await?
        .pop()
        .and_then(|mut m| m.remove("excluded"))
        .unwrap_or(json!(0));
    let steps = step_list(r, &rows);
    let entered = steps.first().map_or(0.0, |s| super::num(&s["entered"]));
    let converted = steps.last().map_or(0.0, |s| super::num(&s["entered"]));
    let mut out = json!({
        "summary": {
            "entered": entered as u64,
            "converted": converted as u64,
            "conversion_rate": ratio(converted, entered),
        },
        "steps": steps,
        "excluded": excluded,
    });
    if let Some((name, p)) = r.common.breakdown()? {
        let limit = r.common.limit()?;
        let units = plan.units_sql(period, &filters, Some(&p.text_sql()));
        let rows = s.rows(&plan.steps_sql(&units, true)).await?;
        let mut by_value: Vec<(String, Vec<Map<String, Value>>)> = Vec::new();
        for row in rows {
            let v = row["value"].as_str().unwrap_or("(none)").to_owned();
            match by_value.iter_mut().find(|(k, _)| *k == v) {
                Some((_, list)) => list.push(row),
                None => by_value.push((v, vec![row])),
            }
        }
        let first = |rows: &[Map<String, Value>]| {
            rows.iter()
                .find(|r| super::num(&r["step"]) as usize == 1)
                .map_or(0.0, |r| super::num(&r["entered"]))
        };
        by_value.sort_by(|a, b| {
            first(&b.1)
                .partial_cmp(&first(&a.1))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.0.cmp(&b.0))
        });
        let groups: Vec<Value> = by_value
            .iter()
            .take(limit)
            .map(|(v, rows)| json!({"value": v, "steps": step_list(r, rows)}))
            .collect();
        out["breakdown"] = json!({
            "property": name,
            "attribution": plan.attribution,
            "values": groups,
        });
    }
    Ok(out)
}

pub(super) async fn funnel(s: &Session<'_>, r: Request) -> Result<Value> {
    let plan = Plan::new(&r)?;
    let (period, previous) = s.periods(&r.common)?;
    let mut out = answer(s, &r, &plan, &period).await?;
    out["range"] = s.range_json(&period, None);
    out["window_seconds"] = json!(plan.window);
    out["mode"] = json!(plan.mode);
    out["count_by"] = json!(if plan.unit == "session_id" {
        "session"
    } else {
        "person"
    });
    if let Some(prev) = previous {
        let before = answer(s, &r, &plan, &prev).await?;
        super::attach_previous(&mut out, before, s.range_json(&prev, None));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(parse_window("14d").expect("window"), 14 * 86_400);
        assert_eq!(parse_window("90").expect("window"), 90);
        assert_eq!(parse_window("2w").expect("window"), 14 * 86_400);
        assert_eq!(parse_window("30m").expect("window"), 1_800);
        assert!(parse_window("d").is_err());
        assert!(parse_window("3y").is_err());
    }
}
