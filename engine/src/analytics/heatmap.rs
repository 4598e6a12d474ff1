//! `heatmap`: local weekday (1 = Monday ... 7 = Sunday) x hour (0-23) of
//! one event (default `Order Completed`; `{"event": "*"}` for all events),
//! with a metric: `count`
//! (events), `people` (distinct persons) or `sum` of a numeric `property`
//! (e.g. `revenue`). Every one of the 168 cells is present (zeros filled).

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

fn metric_sql(r: &Request) -> Result<String> {
    Ok(
        match (r.metric.as_deref().unwrap_or("count"), &r.property) {
            ("count", None) => "CAST(count(*) AS DOUBLE)".to_owned(),
            ("people", None) => {
                "CAST(count(DISTINCT coalesce(user_id, anonymous_id)) AS DOUBLE)".to_owned()
            }
            ("sum", Some(p)) => {
                let p = Property::parse(p)?;
                format!("coalesce(sum({}), 0)", p.number)
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
    let metric = metric_sql(r)?;
    let filters = r.common.filter_sql()?;
    let breakdown = r.common.breakdown()?;
    let (value_select, value_group) = match &breakdown {
        Some((_, p)) => (format!("{} AS value, ", p.group_sql()), ", 3"),
        None => (String::new(), ""),
    };
    let rows = s
        .rows(&format!(
            "SELECT business_weekday(timestamp) AS weekday, business_hour(timestamp) AS hour, {value_select}{metric} AS value_metric \
             FROM events WHERE {} AND {filters} AND {event} GROUP BY 1, 2{value_group}",
            period.time_sql()
        ))
        .await?;
    let grid = |rows: &[&Map<String, Value>]| -> Value {
        let mut m = [[0.0f64; 24]; 7];
        for row in rows {
            let d = super::num(&row["weekday"]) as usize;
            let h = super::num(&row["hour"]) as usize;
            if (1..=7).contains(&d) && h < 24 {
                m[d - 1][h] += super::num(&row["value_metric"]);
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
        let by_weekday: Vec<f64> = m.iter().map(|h| h.iter().sum()).collect();
        let by_hour: Vec<f64> = (0..24).map(|h| m.iter().map(|d| d[h]).sum()).collect();
        json!({
            "cells": cells,
            "by_weekday": by_weekday,
            "by_hour": by_hour,
            "total": by_weekday.iter().sum::<f64>(),
            "peak": {"weekday": peak.0, "hour": peak.1, "value": peak.2},
        })
    };
    let all: Vec<&Map<String, Value>> = rows.iter().collect();
    let mut out = grid(&all);
    if let Some((name, _)) = breakdown {
        let limit = r.common.limit()?;
        let mut values: Vec<(String, f64)> = Vec::new();
        for row in &rows {
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

pub(super) async fn heatmap(s: &Session<'_>, r: Request) -> Result<Value> {
    let (period, previous) = s.periods(&r.common)?;
    let mut out = cells(s, &r, &period).await?;
    out["range"] = s.range_json(&period, None);
    out["metric"] = json!(r.metric.as_deref().unwrap_or("count"));
    if let Some(prev) = previous {
        let mut before = cells(s, &r, &prev).await?;
        before["range"] = s.range_json(&prev, None);
        out["previous"] = before;
    }
    Ok(out)
}
