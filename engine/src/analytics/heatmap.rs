//! `heatmap`: local weekday (1 = Monday ... 7 = Sunday) x hour (0-23) of
//! one event (default `Order Completed`; `{"event": "*"}` for all events),
//! with a metric: `count`
//! (events), `people` (distinct persons) or `sum` of a numeric `property`
//! (e.g. `revenue`; money, `revenue` and `price`, only in the workspace
//! currency unless a filter picks currencies). Every one of the 168 cells
//! is present (zeros filled).
//! `by_weekday`, `by_hour` and `total` are the cells' sums, except for
//! `people`, where they count each person once (a person seen on Monday
//! and Tuesday is one person of the total). `compare` adds `previous` and
//! `change.total`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Common, EventMatcher, Period, Property, Session};
use crate::{Error, Result};

pub(super) const FIELDS: &[&str] = &["event", "metric", "property"];

#[derive(Debug, Deserialize)]
pub(super) struct Request {
    #[serde(flatten)]
    common: Common,
    event: Option<EventMatcher>,
    /// `count` (default), `people` or `sum`.
    metric: Option<String>,
    /// The numeric property summed by `sum`.
    property: Option<String>,
}

/// The condition on rows whose `property` is summed: money (`revenue`,
/// `price`) only in the workspace currency, unless the request picks
/// currencies with a filter of its own or breaks down by currency (one
/// grid per currency; the overall grid then adds them).
fn money_sql(s: &Session<'_>, r: &Request) -> String {
    let money = matches!(r.property.as_deref(), Some("revenue" | "price"));
    let picks_currency = r.common.breakdown.as_deref() == Some("currency")
        || r.common
            .filters
            .iter()
            .chain(r.event.iter().flat_map(|e| e.filters.iter()))
            .any(|f| f.property == "currency");
    if money && !picks_currency {
        s.own_currency("currency")
    } else {
        "TRUE".to_owned()
    }
}

fn metric_sql(s: &Session<'_>, r: &Request) -> Result<String> {
    Ok(
        match (r.metric.as_deref().unwrap_or("count"), &r.property) {
            ("count", None) => "CAST(count(*) AS DOUBLE)".to_owned(),
            ("people", None) => {
                "CAST(count(DISTINCT coalesce(user_id, anonymous_id)) AS DOUBLE)".to_owned()
            }
            ("sum", Some(name)) => {
                let p = Property::parse(name)?;
                if super::is_text_column(name) {
                    return Err(Error::InvalidRequest(format!(
                        "metric sum needs a numeric property (revenue, price, quantity or a numeric \
                         properties field); {name:?} is text"
                    )));
                }
                format!(
                    "coalesce(sum({}) FILTER (WHERE {}), 0)",
                    p.number,
                    money_sql(s, r)
                )
            }
            ("sum", None) => {
                return Err(Error::InvalidRequest(
                    "metric sum needs a property (e.g. revenue)".into(),
                ));
            }
            (m @ ("count" | "people"), Some(_)) => {
                return Err(Error::InvalidRequest(format!(
                    "metric {m} takes no property"
                )));
            }
            (other, _) => {
                return Err(Error::InvalidRequest(format!(
                    "unknown metric {other:?}; use count, people or sum"
                )));
            }
        },
    )
}

async fn cells(s: &Session<'_>, r: &Request, period: &Period) -> Result<Value> {
    let event = match &r.event {
        Some(e) if e.event == "*" => {
            let mut parts = vec!["TRUE".to_owned()];
            for f in &e.filters {
                parts.push(f.to_sql()?);
            }
            format!("({})", parts.join(" AND "))
        }
        Some(e) => e.to_sql()?,
        None => "event = 'Order Completed'".to_owned(),
    };
    let metric = metric_sql(s, r)?;
    let distinct = r.metric.as_deref() == Some("people");
    let filters = r.common.filter_sql()?;
    let breakdown = r.common.breakdown()?;
    let rollup = rollup_plan(s, r)?;
    let (value_select, value_group) = match (&breakdown, &rollup) {
        (Some((name, _)), Some(_)) => (
            format!(
                "{} AS value, ",
                Property::rollup(name)
                    .expect("rollup_plan checked the breakdown")
                    .group_sql()
            ),
            ", 3",
        ),
        (Some((_, p)), None) => (format!("{} AS value, ", p.group_sql()), ", 3"),
        (None, _) => (String::new(), ""),
    };
    let sql = match &rollup {
        Some((event, filters, metric)) => format!(
            "SELECT business_weekday(bucket) AS weekday, business_hour(bucket) AS hour, {value_select}{metric} AS value_metric \
             FROM events_rollup WHERE {} AND {filters} AND {event} GROUP BY 1, 2{value_group}",
            period.rollup_time_sql()
        ),
        None if distinct => {
            // Distinct people do not add up: the weekday and hour totals
            // and the grand total are counted as such (grouping sets).
            let v = match &breakdown {
                Some((_, p)) => format!(", {}", p.group_sql()),
                None => String::new(),
            };
            let (wd, h) = ("business_weekday(timestamp)", "business_hour(timestamp)");
            let only_v = v.trim_start_matches(", ");
            format!(
                "SELECT {wd} AS weekday, {h} AS hour, {value_select}{metric} AS value_metric \
                 FROM events WHERE {} AND {filters} AND {event} \
                 GROUP BY GROUPING SETS (({wd}, {h}{v}), ({wd}{v}), ({h}{v}), ({only_v}))",
                period.time_sql()
            )
        }
        None => format!(
            "SELECT business_weekday(timestamp) AS weekday, business_hour(timestamp) AS hour, {value_select}{metric} AS value_metric \
             FROM events WHERE {} AND {filters} AND {event} GROUP BY 1, 2{value_group}",
            period.time_sql()
        ),
    };
    let rows = s.rows(&sql).await?;
    // With grouping sets, rows with no weekday or no hour are totals.
    let cell = |row: &Map<String, Value>| {
        (
            row["weekday"].as_f64().map(|d| d as usize),
            row["hour"].as_f64().map(|h| h as usize),
        )
    };
    let grid = |rows: &[&Map<String, Value>]| -> Value {
        let mut m = [[0.0f64; 24]; 7];
        let mut day_totals = [0.0f64; 7];
        let mut hour_totals = [0.0f64; 24];
        let mut total = 0.0f64;
        for row in rows {
            let x = super::num(&row["value_metric"]);
            match cell(row) {
                (Some(d), Some(h)) if (1..=7).contains(&d) && h < 24 => m[d - 1][h] += x,
                (Some(d), None) if (1..=7).contains(&d) => day_totals[d - 1] += x,
                (None, Some(h)) if h < 24 => hour_totals[h] += x,
                (None, None) => total += x,
                _ => {}
            }
        }
        // Money sums have 4 decimals: round away the float noise of adding
        // rows in whatever order they arrive.
        let r4 = |v: f64| (v * 1e4).round() / 1e4;
        for hours in m.iter_mut() {
            for v in hours.iter_mut() {
                *v = r4(*v);
            }
        }
        let mut cells = Vec::with_capacity(168);
        let mut peak = (0usize, 0usize, f64::MIN);
        for (d, hours) in m.iter().enumerate() {
            for (h, v) in hours.iter().enumerate() {
                cells.push(json!({"weekday": d + 1, "hour": h, "value": v}));
                if *v > peak.2 {
                    peak = (d + 1, h, *v);
                }
            }
        }
        let (by_weekday, by_hour, total): (Vec<f64>, Vec<f64>, f64) = if distinct {
            (day_totals.to_vec(), hour_totals.to_vec(), total)
        } else {
            let by_weekday: Vec<f64> = m.iter().map(|h| r4(h.iter().sum())).collect();
            let by_hour: Vec<f64> = (0..24).map(|h| r4(m.iter().map(|d| d[h]).sum())).collect();
            let total = r4(by_weekday.iter().sum::<f64>());
            (by_weekday, by_hour, total)
        };
        json!({
            "cells": cells,
            "by_weekday": by_weekday,
            "by_hour": by_hour,
            "total": total,
            "peak": {"weekday": peak.0, "hour": peak.1, "value": peak.2},
        })
    };
    let all: Vec<&Map<String, Value>> = rows.iter().collect();
    let mut out = grid(&all);
    if let Some((name, _)) = breakdown {
        let limit = r.common.limit()?;
        let mut values: Vec<(String, f64)> = Vec::new();
        for row in &rows {
            // A value's size: its total (people), or the sum of its cells.
            if distinct && cell(row) != (None, None) {
                continue;
            }
            let v = row["value"].as_str().unwrap_or("(none)").to_owned();
            let x = super::num(&row["value_metric"]);
            match values.iter_mut().find(|(k, _)| *k == v) {
                Some((_, t)) => *t += x,
                None => values.push((v, x)),
            }
        }
        values.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.0.cmp(&b.0))
        });
        let groups: Vec<Value> = values
            .iter()
            .take(limit)
            .map(|(v, _)| {
                let rows: Vec<&Map<String, Value>> = rows
                    .iter()
                    .filter(|r| r["value"].as_str() == Some(v))
                    .collect();
                let mut g = grid(&rows);
                g["value"] = json!(v);
                g
            })
            .collect();
        out["breakdown"] = json!({"property": name, "values": groups});
    }
    Ok(out)
}

/// `(event condition, filters, metric)` over `events_rollup`, when the
/// request only needs rollup columns.
fn rollup_plan(s: &Session<'_>, r: &Request) -> Result<Option<(String, String, String)>> {
    if !s.rollup {
        return Ok(None);
    }
    let Some(filters) = r.common.rollup_filter_sql()? else {
        return Ok(None);
    };
    let metric = match (
        r.metric.as_deref().unwrap_or("count"),
        r.property.as_deref(),
    ) {
        ("count", None) => "CAST(sum(events) AS DOUBLE)".to_owned(),
        ("sum", Some("revenue")) => format!(
            "CAST(coalesce(sum(revenue) FILTER (WHERE {}), 0) AS DOUBLE)",
            money_sql(s, r)
        ),
        _ => return Ok(None),
    };
    let mut parts = Vec::new();
    match &r.event {
        None => parts.push("event = 'Order Completed'".to_owned()),
        Some(e) => {
            if e.event != "*" {
                parts.push(
                    EventMatcher {
                        event: e.event.clone(),
                        filters: Vec::new(),
                    }
                    .to_sql()?,
                );
            }
            for f in &e.filters {
                match f.to_rollup_sql()? {
                    Some(sql) => parts.push(sql),
                    None => return Ok(None),
                }
            }
        }
    }
    parts.push("TRUE".to_owned());
    Ok(Some((
        format!("({})", parts.join(" AND ")),
        filters,
        metric,
    )))
}

pub(super) async fn heatmap(s: &Session<'_>, r: Request) -> Result<Value> {
    let (period, previous) = s.periods(&r.common)?;
    let mut out = cells(s, &r, &period).await?;
    out["source"] = json!(if rollup_plan(s, &r)?.is_some() {
        "rollup"
    } else {
        "events"
    });
    out["range"] = s.range_json(&period, None);
    out["metric"] = json!(r.metric.as_deref().unwrap_or("count"));
    if let Some(prev) = previous {
        let before = cells(s, &r, &prev).await?;
        let (now, then) = (super::num(&out["total"]), super::num(&before["total"]));
        super::attach_previous(&mut out, before, s.range_json(&prev, None));
        out["change"] = json!({"total": super::ratio(now - then, then)});
    }
    Ok(out)
}
