//! `retention`: cohorts by the first (or every) `start_event`, returning
//! with `return_event`, computed with the `retention` aggregate.
//!
//! Events from the beginning up to the end of the range feed the function,
//! so a person's first-time cohort is their first start event ever; the
//! answer lists the cohorts that begin in the range. For cohort `c` and
//! period `N`: `exact` counts people whose return happened in bucket
//! `c + N`; `on_or_after` counts people with a return in `c + N` or later.
//! `percentage` divides by the cohort's size (period 0). `revenue` (with
//! `revenue: true`) sums the `revenue` of the return events in that period
//! (the cohort's revenue retention; `exact` only). Each cohort lists every
//! period from 0 to the last one it can have seen by the end of the range
//! (at most `periods`), zeros included.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Common, EventMatcher, Session, ratio};
use crate::{Error, Result};

pub(super) const FIELDS: &[&str] = &[
    "start_event",
    "return_event",
    "period",
    "cohorts",
    "periods",
    "counting",
    "revenue",
    "count_by",
];

#[derive(Debug, Deserialize)]
pub(super) struct Request {
    #[serde(flatten)]
    common: Common,
    /// Default: `Order Completed`.
    start_event: Option<EventMatcher>,
    /// Default: the start event.
    return_event: Option<EventMatcher>,
    /// `day`, `week` or `month` (default `month`).
    period: Option<String>,
    /// `first` (default) or `recurring`.
    cohorts: Option<String>,
    /// Periods shown after period 0 (default: up to the end of the range,
    /// at most 120).
    periods: Option<u32>,
    /// `exact` (default) or `on_or_after`.
    counting: Option<String>,
    #[serde(default)]
    revenue: bool,
    /// `person` (default) or `user` (identified people only).
    count_by: Option<String>,
}

pub(super) async fn retention(s: &Session<'_>, r: Request) -> Result<Value> {
    if r.common.breakdown.is_some() || r.common.compare {
        return Err(Error::InvalidRequest(
            "retention takes no breakdown or compare; cohorts are compared with each other".into(),
        ));
    }
    if r.common.interval.is_some() {
        return Err(Error::InvalidRequest(
            "retention takes period (day, week or month), not interval".into(),
        ));
    }
    let (period, _) = s.periods(&r.common)?;
    let unit = match r.period.as_deref().unwrap_or("month") {
        u @ ("day" | "week" | "month") => u,
        other => {
            return Err(Error::InvalidRequest(format!(
                "unknown period {other:?}; use day, week or month"
            )));
        }
    };
    let cohorts = match r.cohorts.as_deref().unwrap_or("first") {
        c @ ("first" | "recurring") => c,
        other => {
            return Err(Error::InvalidRequest(format!(
                "unknown cohorts {other:?}; use first or recurring"
            )));
        }
    };
    let on_or_after = match r.counting.as_deref().unwrap_or("exact") {
        "exact" => false,
        "on_or_after" => true,
        other => {
            return Err(Error::InvalidRequest(format!(
                "unknown counting {other:?}; use exact or on_or_after"
            )));
        }
    };
    if on_or_after && r.revenue {
        return Err(Error::InvalidRequest(
            "revenue retention counts exact periods: use counting exact with revenue".into(),
        ));
    }
    let person = match r.count_by.as_deref().unwrap_or("person") {
        "person" => "coalesce(user_id, anonymous_id)",
        "user" => "user_id",
        other => {
            return Err(Error::InvalidRequest(format!(
                "unknown count_by {other:?}; use person or user"
            )));
        }
    };
    let default_start = EventMatcher {
        event: "Order Completed".into(),
        filters: Vec::new(),
    };
    let start = r.start_event.as_ref().unwrap_or(&default_start);
    let ret = r.return_event.as_ref().unwrap_or(start);
    let (start_sql, return_sql) = (start.to_sql()?, ret.to_sql()?);
    let max_periods = r.periods.unwrap_or(120).min(1000);
    let filters = r.common.filter_sql()?;
    // Revenue retention adds money in the workspace currency only (or in
    // the currencies a filter picks).
    let amount = if r.revenue {
        format!(
            ", CASE WHEN {} THEN revenue END",
            s.money_sql(&r.common, "currency")
        )
    } else {
        String::new()
    };
    let cells = format!(
        "WITH u AS (SELECT {person} AS unit, \
                           retention(timestamp, '{unit}', '{cohorts}', {start_sql}, {return_sql}{amount}) AS cells \
                    FROM events WHERE {until} AND {filters} AND {person} IS NOT NULL AND ({start_sql} OR {return_sql}) \
                    GROUP BY 1), \
              c AS (SELECT unit, unnest(cells) AS cell FROM u), \
              x AS (SELECT unit, get_field(cell, 'cohort') AS cohort, get_field(cell, 'period') AS period, \
                           get_field(cell, 'revenue') AS revenue FROM c) \
         SELECT * FROM x WHERE cohort >= DATE '{from}' AND cohort <= DATE '{to}'",
        until = period.until_sql(),
        from = period.from,
        to = period.to,
    );
    let sql = if on_or_after {
        format!(
            "WITH x AS ({cells}), m AS (SELECT unit, cohort, max(period) AS last FROM x GROUP BY 1, 2), \
                  p AS (SELECT value AS period FROM generate_series(0, {max_periods})) \
             SELECT CAST(m.cohort AS VARCHAR) AS cohort, p.period, count(*) AS people, CAST(NULL AS DECIMAL(28, 4)) AS revenue \
             FROM m JOIN p ON CAST(m.last AS BIGINT) >= p.period GROUP BY 1, 2 ORDER BY 1, 2"
        )
    } else {
        format!(
            "SELECT CAST(cohort AS VARCHAR) AS cohort, period, count(*) AS people, sum(revenue) AS revenue \
             FROM ({cells}) WHERE period <= {max_periods} GROUP BY 1, 2 ORDER BY 1, 2"
        )
    };
    let rows = s.rows(&sql).await?;
    let mut out: Vec<(String, f64, Vec<Value>)> = Vec::new();
    for row in rows {
        let cohort = row["cohort"].as_str().unwrap_or_default().to_owned();
        let people = super::num(&row["people"]);
        if out.last().is_none_or(|(c, _, _)| *c != cohort) {
            out.push((cohort.clone(), 0.0, Vec::new()));
        }
        let entry = out.last_mut().expect("just pushed");
        if super::num(&row["period"]) == 0.0 {
            entry.1 = people;
        }
        let mut cell = Map::new();
        cell.insert("period".into(), row["period"].clone());
        cell.insert("people".into(), row["people"].clone());
        cell.insert("percentage".into(), ratio(people, entry.1));
        if r.revenue && !on_or_after {
            cell.insert("revenue".into(), row["revenue"].clone());
        }
        entry.2.push(Value::Object(cell));
    }
    // Every period a cohort can have seen by the end of the range is
    // listed, zeros included, so the table has no holes to fill.
    let cohorts_json: Vec<Value> = out
        .into_iter()
        .map(|(c, size, found)| {
            let seen = chrono::NaiveDate::parse_from_str(&c, "%Y-%m-%d")
                .map(|start| periods_until(start, period.to, unit))
                .unwrap_or(0);
            let last = found
                .iter()
                .map(|cell| super::num(&cell["period"]) as u32)
                .max()
                .unwrap_or(0)
                .max(seen.min(max_periods));
            let periods: Vec<Value> = (0..=last)
                .map(|n| {
                    found
                        .iter()
                        .find(|cell| super::num(&cell["period"]) as u32 == n)
                        .cloned()
                        .unwrap_or_else(|| {
                            let mut cell =
                                json!({"period": n, "people": 0, "percentage": ratio(0.0, size)});
                            if r.revenue && !on_or_after {
                                cell["revenue"] = json!("0.0000");
                            }
                            cell
                        })
                })
                .collect();
            json!({"cohort": c, "size": size as u64, "periods": periods})
        })
        .collect();
    Ok(json!({
        "range": s.range_json(&period, None),
        "period": unit,
        "cohorts_by": cohorts,
        "counting": if on_or_after { "on_or_after" } else { "exact" },
        "cohorts": cohorts_json,
    }))
}

/// Whole periods (`day`, `week`, `month`) from the one starting on `start`
/// to the one holding `to`: the last period number a cohort can have.
fn periods_until(start: chrono::NaiveDate, to: chrono::NaiveDate, unit: &str) -> u32 {
    use chrono::Datelike;
    if to < start {
        return 0;
    }
    let days = (to - start).num_days();
    let n = match unit {
        "day" => days,
        "week" => days / 7,
        _ => {
            i64::from(to.year() - start.year()) * 12 + i64::from(to.month())
                - i64::from(start.month())
        }
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}
