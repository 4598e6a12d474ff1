//! `revenue` and `products`.
//!
//! Revenue: `gross` is the sum of `revenue` of `Order Completed` and
//! `Booking Completed` events (a service is sold when the appointment is
//! completed; `Payment Received` is the cash of a sale already counted and
//! is not added), `refunds` the sum of `revenue` of `Order Refunded` events
//! (counted when the refund happens; a refund of a known `order_id` counts
//! under its order's channel, payment method, location, staff and
//! properties in filters and breakdowns; a completed booking takes its
//! booking's channel, location, staff and payment method, see
//! [`ATTRIBUTED`]), `net = gross - refunds`, `orders`
//! and `completed_bookings` the numbers of completed orders and bookings,
//! `aov = gross / (orders + completed_bookings)` rounded half away from zero to cents, `customers`
//! the distinct identified buyers. Money is exact (text with 4 decimals),
//! in the workspace currency: events in other currencies are not added to
//! it but totalled per currency under `other_currencies` (a filter on
//! `currency` picks the currencies itself; a breakdown by `currency` gives
//! one row per currency). A
//! breakdown by `product`/`product_id` or `category` splits order line
//! items (`properties.products[]`) instead: gross is the line amount and
//! refunds are not attributed.
//!
//! Products: top products by line revenue and by quantity (from the
//! line-item rollup when the filters allow, `source` says which), and the pairs
//! most often bought in the same order (orders of at most [`MAX_BASKET`]
//! distinct products; pairs seen in at least 2 orders) with support
//! (share of those orders), confidence both ways and lift.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Common, Interval, Period, Property, Session, change, fill_series};
use crate::Result;

pub(super) const FIELDS: &[&str] = &[];

/// Orders with more distinct products than this are left out of the
/// frequently-bought-together pairs: a basket of `n` products makes
/// `n (n - 1) / 2` pairs, and very large (wholesale) baskets would both
/// dominate the cost and drown the signal.
pub const MAX_BASKET: usize = 50;
pub(super) const PRODUCT_FIELDS: &[&str] = &["pairs"];

/// `products` request: the common fields and whether to compute the
/// frequently-bought-together pairs (default true). The pairs are most of
/// the answer's cost (a self-join of the range's line items: 2.5 of 2.9 s
/// over 30 days of 10M events); a dashboard showing the top lists skips
/// them with `pairs: false` and gets `"pairs": null`.
#[derive(Debug, Deserialize)]
pub(super) struct ProductRequest {
    #[serde(flatten)]
    common: Common,
    #[serde(default = "yes")]
    pairs: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub(super) struct Request {
    #[serde(flatten)]
    common: Common,
}

const ORDER: &str = "'Order Completed'";
const REFUND: &str = "'Order Refunded'";
/// Completed bookings are sales too (services), at their `revenue`.
const BOOKING: &str = "'Booking Completed'";

/// Where revenue metrics come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `events`.
    Raw,
    /// `events_rollup` (15-minute partial sums).
    Rollup,
    /// `events`, refunds carrying their order's dimensions ([`ATTRIBUTED`]).
    Attributed,
}

/// Sales and refunds with the dimensions they are reported under:
/// - a refund of a known order takes that order's channel, payment method,
///   location and staff (where the refund has none) and its properties:
///   refunds rarely repeat the order's dimensions, and without them every
///   refund fell under `(none)` in a breakdown and out of a filter, so net
///   revenue by channel was wrong;
/// - a completed booking takes the channel, location and staff of its
///   `Booking Created` (where it has none) and the payment method of its
///   `Payment Received` (the completion rarely says how it was paid).
pub(super) const ATTRIBUTED: &str = "(SELECT e.* EXCLUDE (channel, payment_method, location_id, staff_id, properties), \
        CASE WHEN o.order_id IS NOT NULL THEN coalesce(e.channel, o.channel) \
             WHEN b.booking_id IS NOT NULL THEN coalesce(e.channel, b.channel) ELSE e.channel END AS channel, \
        CASE WHEN o.order_id IS NOT NULL THEN coalesce(e.payment_method, o.payment_method) \
             WHEN b.booking_id IS NOT NULL THEN coalesce(e.payment_method, b.paid_with, b.payment_method) \
             ELSE e.payment_method END AS payment_method, \
        CASE WHEN o.order_id IS NOT NULL THEN coalesce(e.location_id, o.location_id) \
             WHEN b.booking_id IS NOT NULL THEN coalesce(e.location_id, b.location_id) ELSE e.location_id END AS location_id, \
        CASE WHEN o.order_id IS NOT NULL THEN coalesce(e.staff_id, o.staff_id) \
             WHEN b.booking_id IS NOT NULL THEN coalesce(e.staff_id, b.staff_id) ELSE e.staff_id END AS staff_id, \
        CASE WHEN o.order_id IS NULL THEN e.properties ELSE o.properties END AS properties \
    FROM events e LEFT JOIN \
        (SELECT order_id, first_value(channel ORDER BY timestamp) AS channel, \
                first_value(payment_method ORDER BY timestamp) AS payment_method, \
                first_value(location_id ORDER BY timestamp) AS location_id, \
                first_value(staff_id ORDER BY timestamp) AS staff_id, \
                first_value(properties ORDER BY timestamp) AS properties \
         FROM events WHERE event = 'Order Completed' AND order_id IS NOT NULL GROUP BY order_id) o \
    ON e.event = 'Order Refunded' AND e.order_id = o.order_id \
    LEFT JOIN \
        (SELECT booking_id, \
                first_value(channel ORDER BY timestamp) FILTER (WHERE event = 'Booking Created') AS channel, \
                first_value(payment_method ORDER BY timestamp) FILTER (WHERE event = 'Booking Created') AS payment_method, \
                first_value(location_id ORDER BY timestamp) FILTER (WHERE event = 'Booking Created') AS location_id, \
                first_value(staff_id ORDER BY timestamp) FILTER (WHERE event = 'Booking Created') AS staff_id, \
                first_value(payment_method ORDER BY timestamp) \
                    FILTER (WHERE event = 'Payment Received' AND payment_method IS NOT NULL) AS paid_with \
         FROM events WHERE event IN ('Booking Created', 'Payment Received') AND booking_id IS NOT NULL \
         GROUP BY booking_id) b \
    ON e.event = 'Booking Completed' AND e.booking_id = b.booking_id \
    WHERE e.event IN ('Order Completed', 'Order Refunded', 'Booking Completed')) AS attributed";

/// Properties whose value a refund or a completed booking has itself:
/// filters and breakdowns on them need no attribution (and can use the
/// rollups).
const OWN_PROPERTIES: [&str; 3] = ["event", "type", "currency"];

/// True when a filter or the breakdown reads a dimension that a refund
/// takes from its order, or a completed booking from its booking.
pub(super) fn needs_attribution(common: &Common) -> bool {
    let own = |p: &str| OWN_PROPERTIES.contains(&p);
    common.filters.iter().any(|f| !own(&f.property))
        || common
            .breakdown
            .as_deref()
            .is_some_and(|b| !own(b) && super::item_column(b).is_none())
}

/// Aggregates of the revenue metrics, grouped by `groups` (SQL
/// expressions with aliases). Distinct customers are not summable, so
/// they are computed separately (summary only).
fn metrics_sql(groups: &[(&str, &str)], where_sql: &str, source: Source) -> String {
    let select: Vec<String> = groups.iter().map(|(e, a)| format!("{e} AS {a}")).collect();
    let aliases: Vec<&str> = groups.iter().map(|(_, a)| *a).collect();
    let group_by = if groups.is_empty() {
        String::new()
    } else {
        format!(
            "GROUP BY {}",
            (1..=groups.len())
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let lead = |v: &[&str]| {
        if v.is_empty() {
            String::new()
        } else {
            format!("{}, ", v.join(", "))
        }
    };
    let (table, count) = match source {
        Source::Raw => ("events", "count(*)"),
        Source::Rollup => ("events_rollup", "sum(events)"),
        Source::Attributed => (ATTRIBUTED, "count(*)"),
    };
    format!(
        "SELECT {outer}gross, refunds, gross - refunds AS net, orders, completed_bookings, \
                CAST(round(gross / NULLIF(orders + completed_bookings, 0), 2) AS DECIMAL(20, 2)) AS aov \
         FROM (SELECT {inner}\
                 CAST(coalesce(sum(revenue) FILTER (WHERE event IN ({ORDER}, {BOOKING})), 0) AS DECIMAL(38, 4)) AS gross, \
                 CAST(coalesce(sum(revenue) FILTER (WHERE event = {REFUND}), 0) AS DECIMAL(38, 4)) AS refunds, \
                 coalesce({count} FILTER (WHERE event = {ORDER}), 0) AS orders, \
                 coalesce({count} FILTER (WHERE event = {BOOKING}), 0) AS completed_bookings \
               FROM {table} WHERE event IN ({ORDER}, {REFUND}, {BOOKING}) AND {where_sql} {group_by})",
        outer = lead(&aliases),
        inner = lead(&select.iter().map(String::as_str).collect::<Vec<_>>()),
    )
}

fn zeros() -> Map<String, Value> {
    let mut m = Map::new();
    for k in ["gross", "refunds", "net"] {
        m.insert(k.into(), json!("0.0000"));
    }
    m.insert("orders".into(), json!(0));
    m.insert("completed_bookings".into(), json!(0));
    m.insert("aov".into(), Value::Null);
    m
}

struct Answer {
    summary: Map<String, Value>,
    series: Vec<Value>,
    breakdown: Option<Value>,
    source: Source,
    /// Totals per currency other than the workspace's.
    other_currencies: Vec<Map<String, Value>>,
}

async fn answer(
    s: &Session<'_>,
    common: &Common,
    period: &Period,
    interval: Interval,
) -> Result<Answer> {
    let filters = common.filter_sql()?;
    let raw_where = format!("{} AND {filters}", period.time_sql());
    let attributed = needs_attribution(common);
    let rollup = match common.rollup_filter_sql()? {
        Some(f) if s.rollup && !attributed => Some(format!("{} AND {f}", period.rollup_time_sql())),
        _ => None,
    };
    let (source, any_currency) = match &rollup {
        Some(w) => (Source::Rollup, w.clone()),
        None if attributed => (Source::Attributed, raw_where.clone()),
        None => (Source::Raw, raw_where.clone()),
    };
    // Amounts in different currencies are never added: the numbers are in
    // the workspace currency (events without one are taken to be in it),
    // unless the request filters on currency itself; the other currencies'
    // totals are listed apart (`other_currencies`).
    let by_currency = common.picks_currency();
    let own_currency = s.money_sql(common, "currency");
    let where_owned = format!("{any_currency} AND {own_currency}");
    let where_sql = where_owned.as_str();
    let other_currencies = if by_currency {
        Vec::new()
    } else {
        s.rows(&format!(
            "{} ORDER BY currency",
            metrics_sql(
                &[("currency", "currency")],
                &format!("{any_currency} AND NOT {own_currency}"),
                source
            )
        ))
        .await?
    };
    let mut summary = s
        .rows(&metrics_sql(&[], where_sql, source))
        .await?
        .pop()
        .unwrap_or_else(zeros);
    // The buyers of the sales counted above (attributed as they are).
    let buyers_from = if attributed { ATTRIBUTED } else { "events" };
    let customers = s
        .rows(&format!(
            "SELECT count(DISTINCT user_id) AS customers FROM {buyers_from} \
             WHERE event IN ({ORDER}, {BOOKING}) AND {raw_where} AND {own_currency}"
        ))
        .await?
        .pop()
        .and_then(|mut r| r.remove("customers"))
        .unwrap_or(json!(0));
    summary.insert("customers".into(), customers);
    let bucket = match source {
        Source::Raw | Source::Attributed => interval.bucket_sql("timestamp"),
        Source::Rollup => interval.bucket_sql("bucket"),
    };
    let rows = s
        .rows(&metrics_sql(&[(&bucket, "bucket")], where_sql, source))
        .await?;
    let series = fill_series(&s.buckets(period, interval), rows, &zeros());
    let limit = common.limit()?;
    let breakdown = match &common.breakdown {
        None => None,
        Some(name) => {
            let rows = if let Some(column) = super::item_column(name) {
                let filters = format!("{filters} AND {own_currency}");
                item_breakdown(s, column, period, &filters, limit).await?
            } else if name == "currency" {
                // Each row is one currency: nothing is mixed.
                let sql = format!(
                    "{} ORDER BY gross DESC, value LIMIT {limit}",
                    metrics_sql(
                        &[("coalesce(currency, business_currency())", "value")],
                        &any_currency,
                        source
                    )
                );
                s.rows(&sql).await?
            } else {
                let (_, p) = common.breakdown()?.expect("breakdown is set");
                let value = p.group_sql();
                let value = match source {
                    Source::Raw | Source::Attributed => value,
                    Source::Rollup => Property::rollup(name)
                        .expect("rollup_filter_sql checked the breakdown")
                        .group_sql(),
                };
                let sql = format!(
                    "{} ORDER BY gross DESC, value LIMIT {limit}",
                    metrics_sql(&[(&value, "value")], where_sql, source)
                );
                s.rows(&sql).await?
            };
            Some(json!({"property": name, "rows": rows}))
        }
    };
    Ok(Answer {
        summary,
        series,
        breakdown,
        source,
        other_currencies,
    })
}

/// Line items of completed orders in the period (orders passing the
/// filters), as SQL.
fn items_sql(period: &Period, filters: &str) -> String {
    let semi = if filters == "TRUE" {
        String::new()
    } else {
        format!(
            " AND message_id IN (SELECT message_id FROM events WHERE event = {ORDER} AND {} AND {filters})",
            period.time_sql()
        )
    };
    format!(
        "SELECT * FROM order_items WHERE {}{semi}",
        period.time_sql()
    )
}

async fn item_breakdown(
    s: &Session<'_>,
    column: &str,
    period: &Period,
    filters: &str,
    limit: usize,
) -> Result<Vec<Map<String, Value>>> {
    let name = if column == "product_id" {
        "max(name) AS name, "
    } else {
        ""
    };
    let sql = format!(
        "SELECT coalesce({column}, '(none)') AS value, {name}sum(quantity) AS quantity, \
                sum(amount) AS gross, count(DISTINCT message_id) AS orders \
         FROM ({}) GROUP BY 1 ORDER BY gross DESC, value LIMIT {limit}",
        items_sql(period, filters)
    );
    s.rows(&sql).await
}

pub(super) async fn revenue(s: &Session<'_>, r: Request) -> Result<Value> {
    let (period, previous) = s.periods(&r.common)?;
    let interval = r.common.interval(&period)?;
    let now = answer(s, &r.common, &period, interval).await?;
    let mut out = json!({
        "range": s.range_json(&period, Some(interval)),
        "summary": now.summary,
        "series": now.series,
        "other_currencies": now.other_currencies,
        "source": if now.source == Source::Rollup { "rollup" } else { "events" },
    });
    if let Some(b) = now.breakdown {
        out["breakdown"] = b;
    }
    if let Some(prev) = previous {
        let before = answer(s, &r.common, &prev, interval).await?;
        out["change"] = change(&now.summary, &before.summary);
        out["previous"] = json!({
            "range": s.range_json(&prev, Some(interval)),
            "summary": before.summary,
            "series": before.series,
        });
        if let Some(b) = before.breakdown {
            out["previous"]["breakdown"] = b;
        }
    }
    Ok(out)
}

async fn products_answer(
    s: &Session<'_>,
    common: &Common,
    period: &Period,
    with_pairs: bool,
) -> Result<Value> {
    let filters = common.filter_sql()?;
    let limit = common.limit()?;
    // Line amounts in the workspace currency (or those a filter picks).
    let own_currency = s.money_sql(common, "currency");
    let items = format!("{} AND {own_currency}", items_sql(period, &filters));
    // The line-item rollup answers the top lists when every filter is on a
    // rollup dimension (the order's own columns, as the raw filter reads
    // them); otherwise the line items are read from JSON, the costly part.
    let rollup = match common.rollup_filter_sql()? {
        Some(f) if s.rollup => Some(format!("{} AND {f}", period.rollup_time_sql())),
        _ => None,
    };
    let totals = match &rollup {
        Some(w) => format!(
            "SELECT product_id, max(name) AS name, max(category) AS category, sum(quantity) AS quantity, \
                    sum(amount) AS revenue, sum(orders) AS orders \
             FROM {} WHERE {w} AND {own_currency} GROUP BY 1",
            crate::rollup::ITEMS_TABLE
        ),
        None => format!(
            "SELECT product_id, max(name) AS name, max(category) AS category, sum(quantity) AS quantity, \
                    sum(amount) AS revenue, count(DISTINCT message_id) AS orders \
             FROM ({items}) WHERE product_id IS NOT NULL GROUP BY 1"
        ),
    };
    // Both top lists from one pass: each product's rank by revenue and by
    // quantity.
    let ranked = s
        .rows(&format!(
            "SELECT * FROM ( \
               SELECT product_id, name, category, quantity, revenue, orders, \
                      row_number() OVER (ORDER BY revenue DESC, product_id) AS by_revenue, \
                      row_number() OVER (ORDER BY quantity DESC, product_id) AS by_quantity \
               FROM ({totals})) \
             WHERE by_revenue <= {limit} OR by_quantity <= {limit}"
        ))
        .await?;
    let source = if rollup.is_some() { "rollup" } else { "events" };
    let top = |rank: &str| {
        let mut rows: Vec<(i64, Map<String, Value>)> = ranked
            .iter()
            .filter_map(|r| {
                let n = r.get(rank).and_then(Value::as_i64)?;
                (n <= limit as i64).then(|| {
                    let mut row = r.clone();
                    row.remove("by_revenue");
                    row.remove("by_quantity");
                    (n, row)
                })
            })
            .collect();
        rows.sort_by_key(|(n, _)| *n);
        rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
    };
    let by_revenue = top("by_revenue");
    let by_quantity = top("by_quantity");
    if !with_pairs {
        return Ok(json!({
            "top_by_revenue": by_revenue,
            "top_by_quantity": by_quantity,
            "pairs": null,
            "source": source,
        }));
    }
    let pairs = s
        .rows(&format!(
            "WITH all_items AS (SELECT DISTINCT message_id, product_id FROM ({items}) WHERE product_id IS NOT NULL), \
                  small AS (SELECT message_id FROM all_items GROUP BY 1 HAVING count(*) <= {MAX_BASKET}), \
                  items AS (SELECT * FROM all_items WHERE message_id IN (SELECT message_id FROM small)), \
                  n AS (SELECT count(DISTINCT message_id) AS orders FROM items), \
                  c AS (SELECT product_id, count(*) AS orders FROM items GROUP BY 1), \
                  p AS (SELECT a.product_id AS a, b.product_id AS b, count(*) AS together \
                        FROM items a JOIN items b ON a.message_id = b.message_id AND a.product_id < b.product_id \
                        GROUP BY 1, 2) \
             SELECT p.a AS product_a, p.b AS product_b, p.together AS orders, \
                    round(CAST(p.together AS DOUBLE) / n.orders, 6) AS support, \
                    round(CAST(p.together AS DOUBLE) / ca.orders, 6) AS confidence_a_to_b, \
                    round(CAST(p.together AS DOUBLE) / cb.orders, 6) AS confidence_b_to_a, \
                    round(CAST(p.together AS DOUBLE) * n.orders / (CAST(ca.orders AS DOUBLE) * cb.orders), 6) AS lift \
             FROM p JOIN c ca ON ca.product_id = p.a JOIN c cb ON cb.product_id = p.b CROSS JOIN n \
             WHERE p.together >= 2 \
             ORDER BY p.together DESC, lift DESC, p.a, p.b LIMIT {limit}"
        ))
        .await?;
    Ok(json!({
        "top_by_revenue": by_revenue,
        "top_by_quantity": by_quantity,
        "pairs": pairs,
        "source": source,
    }))
}

pub(super) async fn products(s: &Session<'_>, r: ProductRequest) -> Result<Value> {
    if r.common.breakdown.is_some() || r.common.interval.is_some() {
        return Err(crate::Error::InvalidRequest(
            "products takes no breakdown or interval (use revenue with breakdown product)".into(),
        ));
    }
    let (period, previous) = s.periods(&r.common)?;
    let mut out = products_answer(s, &r.common, &period, r.pairs).await?;
    out["range"] = s.range_json(&period, None);
    if let Some(prev) = previous {
        let mut before = products_answer(s, &r.common, &prev, r.pairs).await?;
        before.as_object_mut().map(|b| b.remove("source"));
        super::attach_previous(&mut out, before, s.range_json(&prev, None));
    }
    Ok(out)
}
