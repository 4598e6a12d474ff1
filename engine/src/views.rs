//! Convenience views over `events` for the business events, registered in
//! every workspace session. They are plain SQL over the same snapshot, so
//! they see exactly what `events` sees.
//!
//! - `orders`: `Order Completed` with the person, order id, revenue and
//!   the promoted dimensions.
//! - `order_items`: one row per line item of an order
//!   (`properties.products[]`): product id, name, category, price (exact
//!   decimal), quantity, line amount.
//! - `refunds`: `Order Refunded` (the refunded amount is `revenue`).
//! - `bookings`: every `Booking ...` event with its status.
//! - `leads`: every `Lead ...` event.
//! - `page_views`: `page` calls and `Page Viewed` tracks.
//! - `sessions`: one row per `session_id`: person, start, end, events,
//!   whether it ordered and its order revenue (in the workspace currency,
//!   `business_currency()`; amounts in different currencies are not added).
//!
//! `person` is `coalesce(user_id, anonymous_id)` everywhere.

/// The fields of one line item `item` (an element of
/// `properties.products[]`) as SQL: `product_id`, `name`, `category`,
/// `price` (exact decimal), `quantity` and the line `amount`. One
/// definition for `order_items` and the line-item rollup
/// ([`crate::rollup`]), so the two never disagree.
macro_rules! item_fields {
    () => {
        "json_get_str(item, 'product_id') AS product_id, \
         json_get_str(item, 'name') AS name, \
         json_get_str(item, 'category') AS category, \
         CAST(json_as_text(item, 'price') AS DECIMAL(18, 4)) AS price, \
         CAST(json_get_int(item, 'quantity') AS BIGINT) AS quantity, \
         CAST(CAST(json_as_text(item, 'price') AS DECIMAL(18, 4)) * CAST(json_get_int(item, 'quantity') AS DECIMAL(18, 0)) AS DECIMAL(18, 4)) AS amount"
    };
}
pub(crate) use item_fields;

/// `(name, SQL)` of every view, in dependency order.
pub const VIEWS: [(&str, &str); 7] = [
    (
        "orders",
        "SELECT message_id, timestamp, coalesce(user_id, anonymous_id) AS person, user_id, anonymous_id, \
         order_id, revenue, currency, channel, payment_method, location_id, staff_id, session_id, properties \
         FROM events WHERE event = 'Order Completed'",
    ),
    (
        "order_items",
        concat!(
            "SELECT message_id, timestamp, person, order_id, currency, channel, location_id, ",
            item_fields!(),
            " FROM (SELECT message_id, timestamp, coalesce(user_id, anonymous_id) AS person, order_id, currency, channel, location_id, \
                      unnest(json_get_array(properties, 'products')) AS item \
               FROM events WHERE event = 'Order Completed')"
        ),
    ),
    (
        "refunds",
        "SELECT message_id, timestamp, coalesce(user_id, anonymous_id) AS person, user_id, anonymous_id, \
         order_id, revenue, currency, json_get_str(properties, 'reason') AS reason, properties \
         FROM events WHERE event = 'Order Refunded'",
    ),
    (
        "bookings",
        "SELECT message_id, timestamp, event, coalesce(user_id, anonymous_id) AS person, user_id, anonymous_id, \
         booking_id, service_id, staff_id, location_id, channel, status, revenue AS amount, currency, \
         json_get_str(properties, 'reason') AS reason, properties \
         FROM events WHERE event LIKE 'Booking %'",
    ),
    (
        "leads",
        "SELECT message_id, timestamp, event, coalesce(user_id, anonymous_id) AS person, user_id, anonymous_id, \
         lead_id, status AS stage, channel, revenue AS value, staff_id, properties \
         FROM events WHERE event LIKE 'Lead %'",
    ),
    (
        "page_views",
        "SELECT message_id, timestamp, coalesce(user_id, anonymous_id) AS person, user_id, anonymous_id, \
         event AS name, session_id, json_get_str(properties, 'path') AS path, \
         json_get_str(properties, 'url') AS url, json_get_str(properties, 'referrer') AS referrer, properties \
         FROM events WHERE type = 'page' OR event = 'Page Viewed'",
    ),
    (
        "sessions",
        "SELECT session_id, first_value(coalesce(user_id, anonymous_id) ORDER BY timestamp) AS person, \
         min(timestamp) AS started_at, max(timestamp) AS ended_at, count(*) AS events, \
         bool_or(event = 'Order Completed') AS ordered, \
         sum(revenue) FILTER (WHERE event = 'Order Completed' \
                              AND (currency IS NULL OR currency = business_currency())) AS revenue \
         FROM events WHERE session_id IS NOT NULL GROUP BY session_id",
    ),
];
