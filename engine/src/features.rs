//! Feature tables of the trained models and segments, queried over one
//! workspace: RFM per customer (segments), churn features per customer as
//! of an instant, the customers who ordered in a window (the churn label),
//! and lead features with their outcome.
//!
//! The answers are plain typed columns; `api` turns them into the
//! forecasting crate's tables. Money is in the workspace currency: amounts
//! in others are never added. "Now" is the store's clock ([`Engine::now`]).

use std::collections::HashSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use chrono::{DateTime, Utc};

use crate::series::sql_time;
use crate::{Engine, Error, QueryResult, Result};

/// Feature columns, in order: text (categorical) ones, then numeric ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// Categorical columns.
    pub text: Vec<(&'static str, Vec<Option<String>>)>,
    /// Numeric columns.
    pub numeric: Vec<(&'static str, Vec<Option<f64>>)>,
}

/// Recency, frequency and monetary value of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRfm {
    /// The customer.
    pub person: String,
    /// Days since the last order.
    pub recency_days: f64,
    /// Orders.
    pub frequency: f64,
    /// Revenue in the workspace currency.
    pub monetary: f64,
}

fn refuse_truncated(result: &QueryResult, what: &str) -> Result<()> {
    if result.truncated {
        return Err(Error::ModelInput(format!(
            "more {what} than max_result_rows; raise it to train on this workspace"
        )));
    }
    Ok(())
}

fn strings(batch: &RecordBatch, i: usize) -> Result<Vec<Option<String>>> {
    let a = arrow::compute::cast(batch.column(i), &DataType::Utf8)?;
    Ok(a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect())
}

fn numbers(batch: &RecordBatch, i: usize) -> Result<Vec<Option<f64>>> {
    let a = arrow::compute::cast(batch.column(i), &DataType::Float64)?;
    let a = a.as_primitive::<Float64Type>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect())
}

/// RFM per customer with an order in the last `days` days, as of now.
pub async fn rfm(engine: &Engine, tenant: &str, days: u32) -> Result<Vec<CustomerRfm>> {
    let now = sql_time(engine.now());
    let query = format!(
        "SELECT person, CAST(date_part('epoch', {now} - max(timestamp)) / 86400.0 AS DOUBLE) AS recency_days, \
         CAST(count(*) AS DOUBLE) AS frequency, CAST(coalesce(sum(revenue) FILTER (WHERE currency IS NULL OR currency = business_currency()), 0) AS DOUBLE) AS monetary \
         FROM orders WHERE person IS NOT NULL AND timestamp >= {now} - INTERVAL '{days} days' GROUP BY person ORDER BY person"
    );
    let result = engine.sql(tenant, &query).await?;
    if result.truncated {
        return Err(Error::ModelInput(
            "more customers than max_result_rows; raise it or shorten the range".into(),
        ));
    }
    let mut out = Vec::new();
    for b in &result.batches {
        let person = strings(b, 0)?;
        let col = |i: usize| arrow::compute::cast(b.column(i), &DataType::Float64);
        let (Ok(r), Ok(f), Ok(m)) = (col(1), col(2), col(3)) else {
            return Err(Error::ModelInput("RFM columns are not numeric".into()));
        };
        let (r, f, m) = (
            r.as_primitive::<Float64Type>().clone(),
            f.as_primitive::<Float64Type>().clone(),
            m.as_primitive::<Float64Type>().clone(),
        );
        for (i, person) in person.into_iter().enumerate() {
            out.push(CustomerRfm {
                person: person.unwrap_or_default(),
                recency_days: r.value(i),
                frequency: f.value(i),
                monetary: m.value(i),
            });
        }
    }
    Ok(out)
}

/// The churn feature columns, in the order of [`churn_features`].
pub const CHURN_FEATURES: [&str; 10] = [
    "recency_days",
    "tenure_days",
    "orders",
    "revenue",
    "orders_90d",
    "orders_prev_90d",
    "revenue_90d",
    "refunds",
    "cancellations",
    "no_shows",
];

/// The churn features query as of `at` (a SQL timestamp).
fn churn_features_sql(at: &str) -> String {
    format!(
        "WITH o AS (SELECT person, timestamp, \
                          CAST(CASE WHEN currency IS NULL OR currency = business_currency() THEN revenue END AS DOUBLE) AS revenue \
                   FROM orders \
                   WHERE person IS NOT NULL AND timestamp < {at} AND timestamp >= {at} - INTERVAL '365 days'), \
              r AS (SELECT person, count(*) AS refunds FROM refunds WHERE timestamp < {at} GROUP BY person), \
              b AS (SELECT person, count(*) FILTER (WHERE event = 'Booking Cancelled') AS cancellations, \
                           count(*) FILTER (WHERE event = 'Booking No Show') AS no_shows \
                    FROM bookings WHERE timestamp < {at} GROUP BY person) \
         SELECT o.person, \
           CAST(date_part('epoch', {at} - max(o.timestamp)) / 86400.0 AS DOUBLE) AS recency_days, \
           CAST(date_part('epoch', {at} - min(o.timestamp)) / 86400.0 AS DOUBLE) AS tenure_days, \
           CAST(count(*) AS DOUBLE) AS orders, \
           CAST(coalesce(sum(o.revenue), 0) AS DOUBLE) AS revenue, \
           CAST(count(*) FILTER (WHERE o.timestamp >= {at} - INTERVAL '90 days') AS DOUBLE) AS orders_90d, \
           CAST(count(*) FILTER (WHERE o.timestamp < {at} - INTERVAL '90 days' AND o.timestamp >= {at} - INTERVAL '180 days') AS DOUBLE) AS orders_prev_90d, \
           CAST(coalesce(sum(o.revenue) FILTER (WHERE o.timestamp >= {at} - INTERVAL '90 days'), 0) AS DOUBLE) AS revenue_90d, \
           CAST(coalesce(max(r.refunds), 0) AS DOUBLE) AS refunds, \
           CAST(coalesce(max(b.cancellations), 0) AS DOUBLE) AS cancellations, \
           CAST(coalesce(max(b.no_shows), 0) AS DOUBLE) AS no_shows \
         FROM o LEFT JOIN r ON o.person = r.person LEFT JOIN b ON o.person = b.person \
         GROUP BY o.person ORDER BY o.person"
    )
}

/// Churn features per customer as of `at`: orders, revenue, recency,
/// tenure, the last 90 days against the 90 before, refunds, booking
/// cancellations and no-shows ([`CHURN_FEATURES`], all numeric). Customers
/// with an order in the year before `at`; orders in other currencies
/// count, their money does not. Returns the customers and their rows.
pub async fn churn_features(
    engine: &Engine,
    tenant: &str,
    at: DateTime<Utc>,
) -> Result<(Vec<String>, Features)> {
    let result = engine
        .sql(tenant, &churn_features_sql(&sql_time(at)))
        .await?;
    refuse_truncated(&result, "customers")?;
    let mut people = Vec::new();
    let mut cols: Vec<Vec<Option<f64>>> = vec![Vec::new(); CHURN_FEATURES.len()];
    for b in &result.batches {
        people.extend(strings(b, 0)?.into_iter().map(Option::unwrap_or_default));
        for (j, col) in cols.iter_mut().enumerate() {
            col.extend(numbers(b, j + 1)?);
        }
    }
    let numeric = CHURN_FEATURES.into_iter().zip(cols).collect();
    Ok((
        people,
        Features {
            text: Vec::new(),
            numeric,
        },
    ))
}

/// The customers with an order in `[from, to)`.
pub async fn ordering_people(
    engine: &Engine,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashSet<String>> {
    let q = format!(
        "SELECT DISTINCT CAST(person AS VARCHAR) FROM orders WHERE person IS NOT NULL AND timestamp >= {} AND timestamp < {}",
        sql_time(from),
        sql_time(to)
    );
    let result = engine.sql(tenant, &q).await?;
    refuse_truncated(&result, "customers")?;
    let mut out = HashSet::new();
    for b in &result.batches {
        out.extend(strings(b, 0)?.into_iter().flatten());
    }
    Ok(out)
}

/// The lead features query for a window of `window` days, as of `now`.
fn lead_features_sql(window: u32, now: &str) -> String {
    format!(
        "WITH c AS (SELECT CAST(lead_id AS VARCHAR) AS lead_id, max(person) AS person, min(timestamp) AS created_at, \
                           max(json_get_str(properties, 'origin')) AS origin, max(json_get_str(properties, 'source')) AS source \
                    FROM leads WHERE event = 'Lead Created' AND lead_id IS NOT NULL GROUP BY 1), \
              conv AS (SELECT DISTINCT CAST(lead_id AS VARCHAR) AS lead_id FROM leads WHERE event = 'Lead Converted' AND lead_id IS NOT NULL), \
              a AS (SELECT CAST(lead_id AS VARCHAR) AS lead_id, count(*) AS activities, max(json_get_str(properties, 'activity')) AS last_activity \
                    FROM leads WHERE event = 'Lead Activity' AND lead_id IS NOT NULL GROUP BY 1), \
              v AS (SELECT c.lead_id, count(*) AS page_views, sum(CAST(json_as_text(p.properties, 'seconds_on_site') AS DOUBLE)) AS seconds \
                    FROM c JOIN page_views p ON p.person = c.person \
                    WHERE p.timestamp >= c.created_at AND p.timestamp < c.created_at + INTERVAL '{window} days' GROUP BY 1) \
         SELECT c.lead_id, c.person, c.origin, c.source, a.last_activity, \
                CAST(coalesce(a.activities, 0) AS DOUBLE) AS activities, CAST(coalesce(v.page_views, 0) AS DOUBLE) AS page_views, \
                CAST(coalesce(v.seconds, 0) AS DOUBLE) AS seconds_on_site, conv.lead_id IS NOT NULL AS converted, \
                c.created_at < {now} - INTERVAL '{window} days' AS mature \
         FROM c LEFT JOIN a ON a.lead_id = c.lead_id LEFT JOIN v ON v.lead_id = c.lead_id LEFT JOIN conv ON conv.lead_id = c.lead_id \
         ORDER BY c.lead_id"
    )
}

/// Every lead with its features and outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leads {
    /// Lead ids.
    pub ids: Vec<String>,
    /// The person of each lead, if known.
    pub people: Vec<Option<String>>,
    /// `origin`, `source`, `last_activity` (text), then `activities`,
    /// `page_views`, `seconds_on_site` within the window (numeric).
    pub features: Features,
    /// The lead has a `Lead Converted` event.
    pub converted: Vec<bool>,
    /// The lead was created more than the window ago (its outcome is known).
    pub mature: Vec<bool>,
}

/// Lead features: the `Lead Created` origin and source, the last activity,
/// activities, and page views and time on site within `window_days` of
/// creation; the outcome is a `Lead Converted` event.
pub async fn lead_features(engine: &Engine, tenant: &str, window_days: u32) -> Result<Leads> {
    let sql = lead_features_sql(window_days, &sql_time(engine.now()));
    let result = engine.sql(tenant, &sql).await?;
    refuse_truncated(&result, "leads")?;
    let mut leads = Leads::default();
    let mut text: [Vec<Option<String>>; 3] = Default::default();
    let mut num: [Vec<Option<f64>>; 3] = Default::default();
    for b in &result.batches {
        leads
            .ids
            .extend(strings(b, 0)?.into_iter().map(Option::unwrap_or_default));
        leads.people.extend(strings(b, 1)?);
        for (k, col) in text.iter_mut().enumerate() {
            col.extend(strings(b, 2 + k)?);
        }
        for (k, col) in num.iter_mut().enumerate() {
            col.extend(numbers(b, 5 + k)?);
        }
        let (c, m) = (b.column(8).as_boolean(), b.column(9).as_boolean());
        leads.converted.extend((0..c.len()).map(|i| c.value(i)));
        leads.mature.extend((0..m.len()).map(|i| m.value(i)));
    }
    leads.features = Features {
        text: ["origin", "source", "last_activity"]
            .into_iter()
            .zip(text)
            .collect(),
        numeric: ["activities", "page_views", "seconds_on_site"]
            .into_iter()
            .zip(num)
            .collect(),
    };
    Ok(leads)
}
