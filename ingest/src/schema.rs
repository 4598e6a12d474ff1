//! The Arrow schema of stored events and the names of its columns.
//!
//! Every event, whatever its type, is one row of this schema. Well-known
//! business fields are promoted to typed columns (see [`crate::decode`] for the
//! mapping); the full original `properties`, `context` and `traits` objects are
//! kept as JSON text so nothing the client sent is lost.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column names, defined once.
pub mod columns {
    /// Unique id of the event (Segment `messageId`), used for deduplication.
    pub const MESSAGE_ID: &str = "message_id";
    /// Segment call type: track, identify, page, screen, group, alias.
    pub const TYPE: &str = "type";
    /// Event name for track calls, page/screen name for page and screen calls.
    pub const EVENT: &str = "event";
    /// Known user id.
    pub const USER_ID: &str = "user_id";
    /// Anonymous (device or cookie) id.
    pub const ANONYMOUS_ID: &str = "anonymous_id";
    /// Group id of group calls.
    pub const GROUP_ID: &str = "group_id";
    /// Previous id of alias calls.
    pub const PREVIOUS_ID: &str = "previous_id";
    /// Event time (UTC), corrected for client clock skew when `sentAt` is given.
    pub const TIMESTAMP: &str = "timestamp";
    /// Time the server accepted the event (UTC).
    pub const RECEIVED_AT: &str = "received_at";
    /// Client send time, when given.
    pub const SENT_AT: &str = "sent_at";
    /// Monetary value of the event (order revenue, refund, payment, booking value).
    pub const REVENUE: &str = "revenue";
    /// Unit price (product events).
    pub const PRICE: &str = "price";
    /// ISO 4217 currency code of `revenue` and `price`.
    pub const CURRENCY: &str = "currency";
    /// Quantity (product events) or stock level (Inventory Updated).
    pub const QUANTITY: &str = "quantity";
    /// Order id.
    pub const ORDER_ID: &str = "order_id";
    /// Product id (or SKU).
    pub const PRODUCT_ID: &str = "product_id";
    /// Service id (booking businesses).
    pub const SERVICE_ID: &str = "service_id";
    /// Booking id.
    pub const BOOKING_ID: &str = "booking_id";
    /// Lead id.
    pub const LEAD_ID: &str = "lead_id";
    /// Location (shop, hotel, branch).
    pub const LOCATION_ID: &str = "location_id";
    /// Staff member.
    pub const STAFF_ID: &str = "staff_id";
    /// Sales or acquisition channel.
    pub const CHANNEL: &str = "channel";
    /// Payment method.
    pub const PAYMENT_METHOD: &str = "payment_method";
    /// Status (order/booking status, lead stage, cancellation status).
    pub const STATUS: &str = "status";
    /// Session id.
    pub const SESSION_ID: &str = "session_id";
    /// Full `properties` object as JSON text.
    pub const PROPERTIES: &str = "properties";
    /// Full `context` object as JSON text.
    pub const CONTEXT: &str = "context";
    /// Full `traits` object as JSON text.
    pub const TRAITS: &str = "traits";
}

/// Precision of the decimal money columns.
pub const MONEY_PRECISION: u8 = 18;
/// Scale (digits after the point) of the decimal money columns.
pub const MONEY_SCALE: i8 = 4;
/// `10^MONEY_SCALE`.
pub const MONEY_FACTOR: i128 = 10_000;
/// Largest absolute scaled money value that fits `MONEY_PRECISION`.
pub const MONEY_MAX_SCALED: i128 = 999_999_999_999_999_999;
/// Time zone of the timestamp columns.
pub const TIME_ZONE: &str = "UTC";

/// The type of the timestamp columns.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(TIME_ZONE.into()))
}

/// The type of the money columns.
pub fn money_type() -> DataType {
    DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE)
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use columns::*;
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s(MESSAGE_ID, false),
        s(TYPE, false),
        s(EVENT, true),
        s(USER_ID, true),
        s(ANONYMOUS_ID, true),
        s(GROUP_ID, true),
        s(PREVIOUS_ID, true),
        Field::new(TIMESTAMP, timestamp_type(), false),
        Field::new(RECEIVED_AT, timestamp_type(), false),
        Field::new(SENT_AT, timestamp_type(), true),
        Field::new(REVENUE, money_type(), true),
        Field::new(PRICE, money_type(), true),
        s(CURRENCY, true),
        Field::new(QUANTITY, DataType::Int64, true),
        s(ORDER_ID, true),
        s(PRODUCT_ID, true),
        s(SERVICE_ID, true),
        s(BOOKING_ID, true),
        s(LEAD_ID, true),
        s(LOCATION_ID, true),
        s(STAFF_ID, true),
        s(CHANNEL, true),
        s(PAYMENT_METHOD, true),
        s(STATUS, true),
        s(SESSION_ID, true),
        s(PROPERTIES, true),
        s(CONTEXT, true),
        s(TRAITS, true),
    ]))
});

/// The schema of the `events` table (shared, cheap to clone).
pub fn event_schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}
