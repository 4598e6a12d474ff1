//! `customers` and `rfm`. A customer is an identified person (`user_id`)
//! with a sale: a completed order or a completed booking, as in `revenue`
//! (`orders` below counts both); anonymous sales count in revenue but not
//! here. Money (revenue, lifetime value, RFM monetary) is in the workspace
//! currency: a sale in another currency counts as a purchase but adds no
//! money (a filter on `currency` picks the currencies instead).
//!
//! - New in a bucket: the customer's first sale ever (filters applied) is
//!   in that bucket; returning: ordered in the bucket and earlier. The
//!   summary does the same for the whole range.
//! - Top customers by revenue and by orders in the range.
//! - Historic lifetime value: per customer, sales revenue minus refunds
//!   from the first event up to the end of the range; average, median and
//!   90th percentile over customers with a sale in the workspace currency
//!   by then.
//! - Acquisition: the customers new in the range, per bucket of their
//!   first sale, by their *first touch*: the channel and campaign of the
//!   person's earliest event (any event of that `user_id`, up to the end of
//!   the range): `channel`, and the campaign's `source`, `medium` and
//!   `campaign` from `context.campaign` (Segment's `source`, `medium`,
//!   `name`), else the `utm_source`, `utm_medium`, `utm_campaign`
//!   properties. A first event without them is `(direct)`/`(none)`. Events
//!   before the person was identified (anonymous ids) are not linked.
//! - RFM (`rfm`): customers with sales in the range; recency in days from
//!   the last sale to the end of the range, frequency (sales), monetary
//!   (revenue). Each scores 1-5 by percent rank (ties share a score, a tie
//!   in recency being the same number of days; 5 is
//!   most recent / most frequent / highest spend) and the R and F scores
//!   name a segment (champions, loyal, new, promising, need_attention,
//!   cant_lose, at_risk, hibernating, lost).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Common, Interval, Period, Session, fill_series, rfc3339};
use crate::{Error, Result};

pub(super) const FIELDS: &[&str] = &[];
pub(super) const RFM_FIELDS: &[&str] = &["offset", "segment"];

#[derive(Debug, Deserialize)]
pub(super) struct Request {
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
pub(super) struct RfmRequest {
    #[serde(flatten)]
    common: Common,
    /// Rows to skip (pagination).
    #[serde(default)]
    offset: usize,
    /// Only this segment.
    segment: Option<String>,
}

/// Sales (completed orders and completed bookings, as in `revenue`) of
/// identified customers passing the filters; `revenue` is NULL for a sale
/// in another currency than the workspace's (it counts as a purchase, but
/// its money is not added to the workspace currency's), unless a filter
/// picks currencies.
fn orders_sql(s: &Session<'_>, common: &Common, filters: &str, time: &str) -> String {
    format!(
        "SELECT user_id, timestamp, CASE WHEN {money} THEN revenue END AS revenue FROM {} \
         WHERE event IN ({SALES}) AND user_id IS NOT NULL AND {time} AND {filters}",
        source(common),
        money = s.money_sql(common, "currency"),
    )
}

/// Where sales and refunds are read from: with filters on a dimension that
/// a refund takes from its order (or a completed booking from its
/// booking), the attributed events, so these numbers agree with `revenue`.
fn source(common: &Common) -> &'static str {
    if super::revenue::needs_attribution(common) {
        super::revenue::ATTRIBUTED
    } else {
        "events"
    }
}

/// The events that are sales.
const SALES: &str = "'Order Completed', 'Booking Completed'";

fn zeros() -> Map<String, Value> {
    let mut m = Map::new();
    for k in ["customers", "new", "returning"] {
        m.insert(k.into(), json!(0));
    }
    m
}

async fn answer(
    s: &Session<'_>,
    common: &Common,
    period: &Period,
    interval: Interval,
) -> Result<Value> {
    if common.breakdown.is_some() {
        return Err(Error::InvalidRequest(
            "customers has no breakdown; filter by the property instead".into(),
        ));
    }
    let filters = common.filter_sql()?;
    let limit = common.limit()?;
    let firsts = format!(
        "SELECT user_id, min(timestamp) AS first_at FROM ({}) GROUP BY 1",
        orders_sql(s, common, &filters, &period.until_sql())
    );
    let in_range = orders_sql(s, common, &filters, &period.time_sql());
    let start = rfc3339(period.start_us);
    let summary = s
        .rows(&format!(
            "WITH f AS ({firsts}), r AS (SELECT user_id, count(*) AS orders, sum(revenue) AS revenue FROM ({in_range}) GROUP BY 1) \
             SELECT count(*) AS customers, \
                    count(*) FILTER (WHERE f.first_at >= TIMESTAMP '{start}') AS new, \
                    count(*) FILTER (WHERE f.first_at < TIMESTAMP '{start}') AS returning, \
                    coalesce(sum(r.revenue) FILTER (WHERE f.first_at >= TIMESTAMP '{start}'), 0) AS new_revenue, \
                    coalesce(sum(r.revenue) FILTER (WHERE f.first_at < TIMESTAMP '{start}'), 0) AS returning_revenue, \
                    coalesce(sum(r.orders), 0) AS orders \
             FROM r JOIN f USING (user_id)"
        ))
        .await?
        .pop()
        .unwrap_or_else(zeros);
    let bucket = interval.bucket_sql("timestamp");
    let first_bucket = interval.bucket_sql("f.first_at");
    let series = s
        .rows(&format!(
            "WITH f AS ({firsts}), a AS (SELECT DISTINCT user_id, {bucket} AS bucket FROM ({in_range})) \
             SELECT a.bucket, count(*) AS customers, \
                    count(*) FILTER (WHERE {first_bucket} = a.bucket) AS new, \
                    count(*) FILTER (WHERE {first_bucket} < a.bucket) AS returning \
             FROM a JOIN f USING (user_id) GROUP BY 1"
        ))
        .await?;
    let series = fill_series(&s.buckets(period, interval), series, &zeros());
    let top = |order: &str| {
        format!(
            "WITH f AS ({firsts}) \
             SELECT user_id, count(*) AS orders, coalesce(sum(revenue), 0) AS revenue, \
                    min(f.first_at) AS first_order_at, max(timestamp) AS last_order_at \
             FROM ({in_range}) JOIN f USING (user_id) GROUP BY 1 ORDER BY {order}, user_id LIMIT {limit}"
        )
    };
    let top_by_revenue = s.rows(&top("revenue DESC")).await?;
    let top_by_orders = s.rows(&top("orders DESC, revenue DESC")).await?;
    let ltv = s
        .rows(&format!(
            "SELECT count(*) AS customers, CAST(round(avg(v), 2) AS DECIMAL(20, 2)) AS average, \
                    CAST(round(median(CAST(v AS DOUBLE)), 2) AS DECIMAL(20, 2)) AS median, \
                    CAST(round(percentile_cont(0.9) WITHIN GROUP (ORDER BY CAST(v AS DOUBLE)), 2) AS DECIMAL(20, 2)) AS p90 \
             FROM (SELECT user_id, \
                          sum(CASE WHEN event = 'Order Refunded' THEN -revenue ELSE revenue END) AS v, \
                          count(*) FILTER (WHERE event <> 'Order Refunded') AS orders \
                   FROM {source} WHERE event IN ({SALES}, 'Order Refunded') AND user_id IS NOT NULL \
                         AND revenue IS NOT NULL AND {own} AND {} AND {filters} GROUP BY 1) WHERE orders > 0",
            period.until_sql(),
            own = s.money_sql(common, "currency"),
            source = source(common),
        ))
        .await?
        .pop()
        .unwrap_or_default();
    let campaign = |key: &str, utm: &str| {
        format!(
            "first_value(coalesce(json_get_str(context, 'campaign', '{key}'), \
                                  json_as_text(properties, '{utm}')) ORDER BY timestamp)"
        )
    };
    let end = rfc3339(period.end_us);
    let acquisition = s
        .rows(&format!(
            "WITH f AS ({firsts}), \
             touch AS (SELECT user_id, first_value(channel ORDER BY timestamp) AS channel, \
                              {source} AS source, {medium} AS medium, {name} AS campaign \
                       FROM events WHERE user_id IS NOT NULL AND {until} GROUP BY 1) \
             SELECT {first_bucket} AS bucket, coalesce(t.channel, '(none)') AS channel, \
                    coalesce(t.source, '(direct)') AS source, coalesce(t.medium, '(none)') AS medium, \
                    coalesce(t.campaign, '(none)') AS campaign, count(*) AS new_customers \
             FROM f JOIN touch t USING (user_id) \
             WHERE f.first_at >= TIMESTAMP '{start}' AND f.first_at < TIMESTAMP '{end}' \
             GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, new_customers DESC, 2, 3, 4, 5 LIMIT {limit}",
            source = campaign("source", "utm_source"),
            medium = campaign("medium", "utm_medium"),
            name = campaign("name", "utm_campaign"),
            until = period.until_sql(),
        ))
        .await?;
    Ok(json!({
        "summary": summary,
        "series": series,
        "top_by_revenue": top_by_revenue,
        "top_by_orders": top_by_orders,
        "lifetime_value": ltv,
        "acquisition": acquisition,
    }))
}

pub(super) async fn customers(s: &Session<'_>, r: Request) -> Result<Value> {
    let (period, previous) = s.periods(&r.common)?;
    let interval = r.common.interval(&period)?;
    let mut out = answer(s, &r.common, &period, interval).await?;
    out["range"] = s.range_json(&period, Some(interval));
    if let Some(prev) = previous {
        let before = answer(s, &r.common, &prev, interval).await?;
        super::attach_previous(&mut out, before, s.range_json(&prev, Some(interval)));
    }
    Ok(out)
}

/// The segments of [`SEGMENT`].
const SEGMENTS: [&str; 9] = [
    "champions",
    "loyal",
    "new",
    "promising",
    "cant_lose",
    "at_risk",
    "need_attention",
    "hibernating",
    "lost",
];

/// Segment of R and F scores.
const SEGMENT: &str = "CASE \
    WHEN r >= 4 AND f >= 4 THEN 'champions' \
    WHEN r >= 3 AND f >= 3 THEN 'loyal' \
    WHEN r >= 4 AND f <= 1 THEN 'new' \
    WHEN r >= 3 AND f <= 2 THEN 'promising' \
    WHEN r <= 2 AND f >= 4 THEN 'cant_lose' \
    WHEN r <= 2 AND f >= 3 THEN 'at_risk' \
    WHEN r = 2 THEN 'need_attention' \
    WHEN f >= 2 THEN 'hibernating' \
    ELSE 'lost' END";

pub(super) async fn rfm(s: &Session<'_>, r: RfmRequest) -> Result<Value> {
    if r.common.breakdown.is_some() || r.common.compare {
        return Err(Error::InvalidRequest(
            "rfm takes no breakdown or compare".into(),
        ));
    }
    let (period, _) = s.periods(&r.common)?;
    let filters = r.common.filter_sql()?;
    let limit = match r.common.limit {
        None => 100,
        Some(_) => r.common.limit()?,
    };
    let end = rfc3339(period.end_us);
    let scored = format!(
        "WITH c AS (SELECT user_id, count(*) AS frequency, coalesce(sum(revenue), 0) AS monetary, max(timestamp) AS last_order_at \
                    FROM ({}) GROUP BY 1), \
              s AS (SELECT *, CAST(floor((to_unixtime(TIMESTAMP '{end}') - to_unixtime(last_order_at)) / 86400.0) AS BIGINT) AS recency_days, \
                           least(5, 1 + CAST(floor(percent_rank() OVER ( \
                               ORDER BY floor((to_unixtime(TIMESTAMP '{end}') - to_unixtime(last_order_at)) / 86400.0) DESC) * 5) AS INT)) AS r, \
                           least(5, 1 + CAST(floor(percent_rank() OVER (ORDER BY frequency) * 5) AS INT)) AS f, \
                           least(5, 1 + CAST(floor(percent_rank() OVER (ORDER BY monetary) * 5) AS INT)) AS m \
                    FROM c) \
         SELECT user_id, recency_days, frequency, monetary, last_order_at, r AS r_score, f AS f_score, m AS m_score, \
                {SEGMENT} AS segment FROM s",
        orders_sql(s, &r.common, &filters, &period.time_sql())
    );
    if let Some(seg) = &r.segment
        && !SEGMENTS.contains(&seg.as_str())
    {
        return Err(Error::InvalidRequest(format!(
            "unknown segment {seg:?}; use one of {}",
            SEGMENTS.join(", ")
        )));
    }
    let segment_filter = match &r.segment {
        Some(seg) => format!("WHERE segment = {}", super::sql_string(seg)?),
        None => String::new(),
    };
    let rows = s
        .rows(&format!(
            "SELECT * FROM ({scored}) {segment_filter} ORDER BY monetary DESC, user_id LIMIT {limit} OFFSET {}",
            r.offset
        ))
        .await?;
    let segments = s
        .rows(&format!(
            "SELECT segment, count(*) AS customers, sum(monetary) AS revenue, \
                    round(avg(CAST(recency_days AS DOUBLE)), 2) AS avg_recency_days, \
                    round(avg(CAST(frequency AS DOUBLE)), 2) AS avg_frequency \
             FROM ({scored}) GROUP BY 1 ORDER BY customers DESC, segment"
        ))
        .await?;
    let total: u64 = segments
        .iter()
        .map(|r| super::num(&r["customers"]) as u64)
        .sum();
    Ok(json!({
        "range": s.range_json(&period, None),
        "customers": total,
        "segments": segments,
        "rows": rows,
        "offset": r.offset,
        "limit": limit,
    }))
}
