//! Decoding and validation of Segment-compatible request bodies.
//!
//! A body is either rejected whole ([`BodyError`]: not JSON, wrong shape, too
//! many events) or split into events that are validated one by one: valid
//! events become [`Event`]s, invalid ones become [`Rejection`]s carrying their
//! index in the request and a reason, so one bad event never costs the others.
//!
//! # Field promotion
//!
//! For every event the keys below are read from `properties` (first match
//! wins) into typed columns. The first, snake_case key is the documented one:
//! if it has the wrong type the event is rejected; the later aliases are only
//! used when they have a usable type.
//!
//! | column | keys |
//! |---|---|
//! | `order_id` | `order_id`, `orderId` |
//! | `product_id` | `product_id`, `productId`, `sku` |
//! | `service_id` | `service_id`, `serviceId`, `service` |
//! | `booking_id` | `booking_id`, `bookingId` |
//! | `lead_id` | `lead_id`, `leadId` |
//! | `location_id` | `location_id`, `locationId`, `location` |
//! | `staff_id` | `staff_id`, `staffId`, `staff` |
//! | `channel` | `channel` |
//! | `payment_method` | `payment_method`, `paymentMethod` |
//! | `status` | `status`, `stage` (Lead events: `stage`, `status`) |
//! | `session_id` | `session_id`, `sessionId`, then the same keys in `context` |
//! | `currency` | `currency` (3 letters, upper-cased) |
//! | `price` | `price` |
//! | `quantity` | `quantity` (Inventory Updated: `quantity`, `stock`, `stock_level`) |
//! | `revenue` | by event, below |
//!
//! `revenue` is the money the event is about, always positive as sent:
//! Order Completed, Checkout Started and other `Order ...` events: `revenue`,
//! `total`, `value`; Order Refunded: `total`, `revenue`, `amount`, `value`
//! (the refunded amount); `Payment ...`: `amount`, `revenue`, `total`, `value`;
//! `Booking ...` and No Show: `amount`, `price`, `revenue`, `total`, `value`;
//! `Lead ...`: `value`, `amount`, `revenue`; any other event: `revenue`.
//!
//! Money is accepted as a JSON number or a decimal string and stored as
//! `Decimal128(18, 4)`; more than 4 decimals are rounded half away from zero.
//! A JSON number is read through its shortest round-trip decimal form, so
//! `19.99` is stored as exactly `19.9900`.
//!
//! # Times
//!
//! `timestamp` (else `originalTimestamp`, else the receive time) is the event
//! time. ISO-8601 with offset is the documented form; a time without offset
//! is read as UTC and a bare date as midnight UTC. When `sentAt` is also
//! given, the event time is corrected for client clock skew as Segment does:
//! `timestamp + (receivedAt - sentAt)`. Times before 1970 or more than
//! [`Limits::max_future`] after the receive time are rejected.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{Event, EventType, names};
use crate::schema::{MONEY_FACTOR, MONEY_MAX_SCALED, MONEY_SCALE};

/// Validation limits for request bodies and events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most events in one request.
    pub max_batch_events: usize,
    /// Largest event, counted as the JSON size of its stored fields.
    pub max_event_bytes: usize,
    /// Deepest nesting of objects and arrays in properties, context and traits.
    pub max_property_depth: usize,
    /// Longest string value or key, in bytes.
    pub max_string_bytes: usize,
    /// How far after the receive time an event time may be.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_events: 5_000,
            max_event_bytes: 64 * 1024,
            max_property_depth: 10,
            max_string_bytes: 8 * 1024,
            max_future: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why one event of a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the event in the request (0-based; line among non-blank lines for NDJSON).
    pub index: usize,
    /// Machine-readable reason code.
    pub code: &'static str,
    /// Human-readable reason.
    pub reason: String,
}

/// A body that cannot be split into events at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not valid JSON (or not UTF-8).
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON of the wrong shape.
    #[error("{0}")]
    InvalidShape(String),
    /// More events than [`Limits::max_batch_events`].
    #[error("batch has {count} events; the limit is {limit}")]
    TooManyEvents {
        /// Events in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// The result of decoding one request body.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Valid events, in request order.
    pub events: Vec<Event>,
    /// For each valid event, its index in the request.
    pub indices: Vec<usize>,
    /// Invalid events.
    pub rejected: Vec<Rejection>,
    /// `writeKey` found in the body (Segment allows it there for `/v1/batch`).
    pub write_key: Option<String>,
}

impl Decoded {
    /// Number of events in the request.
    pub fn total(&self) -> usize {
        self.events.len() + self.rejected.len()
    }

    fn push(&mut self, index: usize, result: Result<Event, Invalid>) {
        match result {
            Ok(event) => {
                self.events.push(event);
                self.indices.push(index);
            }
            Err(Invalid { code, reason }) => self.rejected.push(Rejection {
                index,
                code,
                reason,
            }),
        }
    }
}

#[derive(Debug)]
struct Invalid {
    code: &'static str,
    reason: String,
}

fn invalid(code: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        code,
        reason: reason.into(),
    }
}

/// Decodes a Segment `/v1/batch` body: `{"batch": [...], "context": {...}, "writeKey": "..."}`.
pub fn decode_batch(body: &[u8], limits: &Limits, received_at_us: i64) -> Result<Decoded, BodyError> {
    let value: Value = parse_json(body)?;
    let Value::Object(mut root) = value else {
        return Err(BodyError::InvalidShape(
            "request body must be a JSON object with a \"batch\" array".into(),
        ));
    };
    let batch = match root.remove("batch") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(BodyError::InvalidShape("\"batch\" must be an array".into())),
        None => {
            return Err(BodyError::InvalidShape(
                "request body must have a \"batch\" array".into(),
            ));
        }
    };
    check_count(batch.len(), limits)?;
    let shared_context = match root.remove("context") {
        Some(Value::Object(map)) => Some(map),
        Some(Value::Null) | None => None,
        Some(_) => return Err(BodyError::InvalidShape("batch \"context\" must be an object".into())),
    };
    let mut out = Decoded {
        write_key: root.get("writeKey").and_then(Value::as_str).map(str::to_owned),
        ..Decoded::default()
    };
    let ctx = EventContext {
        limits,
        received_at_us,
        forced: None,
        default: None,
        shared_context: shared_context.as_ref(),
    };
    for (index, item) in batch.into_iter().enumerate() {
        out.push(index, decode_event(item, &ctx));
    }
    Ok(out)
}

/// Decodes the body of a single-call route (`/v1/track`, `/v1/identify`, ...); the route fixes the type.
pub fn decode_single(
    body: &[u8],
    kind: EventType,
    limits: &Limits,
    received_at_us: i64,
) -> Result<Decoded, BodyError> {
    let value: Value = parse_json(body)?;
    if !value.is_object() {
        return Err(BodyError::InvalidShape("request body must be a JSON object".into()));
    }
    let mut out = Decoded {
        write_key: value.get("writeKey").and_then(Value::as_str).map(str::to_owned),
        ..Decoded::default()
    };
    let ctx = EventContext {
        limits,
        received_at_us,
        forced: Some(kind),
        default: None,
        shared_context: None,
    };
    out.push(0, decode_event(value, &ctx));
    Ok(out)
}

/// Decodes newline-delimited JSON: one event per non-blank line, `type` defaults to `track`.
///
/// A line that is not valid JSON rejects that line only.
pub fn decode_ndjson(body: &[u8], limits: &Limits, received_at_us: i64) -> Result<Decoded, BodyError> {
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .map(trim_ascii)
        .filter(|line| !line.is_empty())
        .collect();
    check_count(lines.len(), limits)?;
    let ctx = EventContext {
        limits,
        received_at_us,
        forced: None,
        default: Some(EventType::Track),
        shared_context: None,
    };
    let mut out = Decoded::default();
    for (index, line) in lines.into_iter().enumerate() {
        let result = match serde_json::from_slice::<Value>(line) {
            Ok(value) => decode_event(value, &ctx),
            Err(e) => Err(invalid("invalid_json", format!("line is not valid JSON: {e}"))),
        };
        out.push(index, result);
    }
    Ok(out)
}

fn trim_ascii(line: &[u8]) -> &[u8] {
    line.trim_ascii()
}

fn parse_json(body: &[u8]) -> Result<Value, BodyError> {
    serde_json::from_slice(body).map_err(|e| BodyError::InvalidJson(e.to_string()))
}

fn check_count(count: usize, limits: &Limits) -> Result<(), BodyError> {
    if count > limits.max_batch_events {
        return Err(BodyError::TooManyEvents {
            count,
            limit: limits.max_batch_events,
        });
    }
    Ok(())
}

struct EventContext<'a> {
    limits: &'a Limits,
    received_at_us: i64,
    /// Type fixed by the route.
    forced: Option<EventType>,
    /// Type used when the event has none.
    default: Option<EventType>,
    /// Batch-level context merged into each event's context.
    shared_context: Option<&'a Map<String, Value>>,
}

fn decode_event(value: Value, ctx: &EventContext<'_>) -> Result<Event, Invalid> {
    let Value::Object(mut obj) = value else {
        return Err(invalid("invalid_event", "event must be a JSON object"));
    };
    let limits = ctx.limits;
    let kind = match ctx.forced {
        Some(kind) => kind,
        None => match obj.get("type") {
            Some(Value::String(s)) => s.parse().map_err(|()| {
                invalid(
                    "invalid_type",
                    format!("type {s:?} is not one of track, identify, page, screen, group, alias"),
                )
            })?,
            Some(Value::Null) | None => ctx
                .default
                .ok_or_else(|| invalid("missing_type", "type is required"))?,
            Some(_) => return Err(invalid("invalid_type", "type must be a string")),
        },
    };

    let mut event = Event {
        kind: Some(kind),
        received_at_us: ctx.received_at_us,
        ..Event::default()
    };
    event.user_id = id_field(&obj, "userId", limits)?;
    event.anonymous_id = id_field(&obj, "anonymousId", limits)?;
    if event.user_id.is_none() && event.anonymous_id.is_none() {
        return Err(invalid("missing_identity", "userId or anonymousId is required"));
    }
    event.message_id = match id_field(&obj, "messageId", limits)? {
        Some(id) => id,
        None => uuid::Uuid::new_v4().to_string(),
    };

    match kind {
        EventType::Track => {
            let name = text_field(&obj, "event", limits)?
                .ok_or_else(|| invalid("missing_event", "track calls need a non-empty \"event\" name"))?;
            event.event = Some(name);
        }
        EventType::Page | EventType::Screen => event.event = text_field(&obj, "name", limits)?,
        EventType::Group => {
            event.group_id = id_field(&obj, "groupId", limits)?;
            if event.group_id.is_none() {
                return Err(invalid("missing_group_id", "group calls need a \"groupId\""));
            }
        }
        EventType::Alias => {
            event.previous_id = id_field(&obj, "previousId", limits)?;
            if event.previous_id.is_none() || event.user_id.is_none() {
                return Err(invalid(
                    "missing_previous_id",
                    "alias calls need \"userId\" and \"previousId\"",
                ));
            }
        }
        EventType::Identify => {}
    }

    // Times.
    let timestamp = match obj.get("timestamp").filter(|v| !v.is_null()) {
        Some(v) => Some(parse_time(v, "timestamp")?),
        None => match obj.get("originalTimestamp").filter(|v| !v.is_null()) {
            Some(v) => Some(parse_time(v, "originalTimestamp")?),
            None => None,
        },
    };
    event.sent_at_us = match obj.get("sentAt").filter(|v| !v.is_null()) {
        Some(v) => Some(parse_time(v, "sentAt")?),
        None => None,
    };
    event.timestamp_us = match (timestamp, event.sent_at_us) {
        (Some(ts), Some(sent)) => ts
            .checked_add(ctx.received_at_us.saturating_sub(sent))
            .ok_or_else(|| invalid("timestamp_out_of_range", "timestamp is out of range"))?,
        (Some(ts), None) => ts,
        (None, _) => ctx.received_at_us,
    };
    let max_future_us = i64::try_from(limits.max_future.as_micros()).unwrap_or(i64::MAX);
    if event.timestamp_us < 0 {
        return Err(invalid("timestamp_out_of_range", "timestamp is before 1970-01-01"));
    }
    if event.timestamp_us > ctx.received_at_us.saturating_add(max_future_us) {
        return Err(invalid(
            "timestamp_out_of_range",
            format!(
                "timestamp is more than {} in the future",
                humantime_serde::re::humantime::format_duration(limits.max_future)
            ),
        ));
    }

    // Objects.
    let properties = object_field(&mut obj, "properties")?;
    let mut context = object_field(&mut obj, "context")?;
    let traits = object_field(&mut obj, "traits")?;
    if let Some(shared) = ctx.shared_context {
        let context = context.get_or_insert_with(Map::new);
        for (key, value) in shared {
            if !context.contains_key(key) {
                context.insert(key.clone(), value.clone());
            }
        }
    }
    for (name, map) in [("properties", &properties), ("context", &context), ("traits", &traits)] {
        if let Some(map) = map {
            check_object(map, name, 1, limits)?;
        }
    }

    if let Some(props) = properties.as_ref() {
        promote(&mut event, props, context.as_ref(), limits)?;
    } else if let Some(ctx_map) = context.as_ref() {
        event.session_id = first_id(ctx_map, &["session_id", "sessionId"], "context", limits)?;
    }

    let mut size = event.message_id.len()
        + event.event.as_ref().map_or(0, String::len)
        + event.user_id.as_ref().map_or(0, String::len)
        + event.anonymous_id.as_ref().map_or(0, String::len);
    event.properties = properties.map(|m| Value::Object(m).to_string());
    event.context = context.map(|m| Value::Object(m).to_string());
    event.traits = traits.map(|m| Value::Object(m).to_string());
    for text in [&event.properties, &event.context, &event.traits].into_iter().flatten() {
        size += text.len();
    }
    if size > limits.max_event_bytes {
        return Err(invalid(
            "event_too_large",
            format!("event is {size} bytes; the limit is {}", limits.max_event_bytes),
        ));
    }
    Ok(event)
}

fn promote(
    event: &mut Event,
    props: &Map<String, Value>,
    context: Option<&Map<String, Value>>,
    limits: &Limits,
) -> Result<(), Invalid> {
    let name = event.event.as_deref().unwrap_or("");
    let is_lead = name.starts_with("Lead ");
    event.order_id = first_id(props, &["order_id", "orderId"], "properties", limits)?;
    event.product_id = first_id(props, &["product_id", "productId", "sku"], "properties", limits)?;
    event.service_id = first_id(props, &["service_id", "serviceId", "service"], "properties", limits)?;
    event.booking_id = first_id(props, &["booking_id", "bookingId"], "properties", limits)?;
    event.lead_id = first_id(props, &["lead_id", "leadId"], "properties", limits)?;
    event.location_id = first_id(props, &["location_id", "locationId", "location"], "properties", limits)?;
    event.staff_id = first_id(props, &["staff_id", "staffId", "staff"], "properties", limits)?;
    event.channel = first_id(props, &["channel"], "properties", limits)?;
    event.payment_method = first_id(props, &["payment_method", "paymentMethod"], "properties", limits)?;
    event.status = if is_lead {
        first_id(props, &["stage", "status"], "properties", limits)?
    } else {
        first_id(props, &["status", "stage"], "properties", limits)?
    };
    event.session_id = match first_id(props, &["session_id", "sessionId"], "properties", limits)? {
        Some(id) => Some(id),
        None => match context {
            Some(ctx) => first_id(ctx, &["session_id", "sessionId"], "context", limits)?,
            None => None,
        },
    };
    event.currency = match props.get("currency").filter(|v| !v.is_null()) {
        Some(Value::String(code)) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(code.to_ascii_uppercase())
        }
        Some(other) => {
            return Err(invalid(
                "invalid_currency",
                format!("properties.currency must be a 3-letter ISO 4217 code, got {other}"),
            ));
        }
        None => None,
    };
    event.price = first_money(props, &["price"])?;
    let quantity_keys: &[&str] = if name == names::INVENTORY_UPDATED {
        &["quantity", "stock", "stock_level"]
    } else {
        &["quantity"]
    };
    event.quantity = first_integer(props, quantity_keys)?;
    let revenue_keys: &[&str] = if name == names::ORDER_REFUNDED {
        &["total", "revenue", "amount", "value"]
    } else if name.starts_with("Order ") || name == names::CHECKOUT_STARTED {
        &["revenue", "total", "value"]
    } else if name.starts_with("Payment ") {
        &["amount", "revenue", "total", "value"]
    } else if name.starts_with("Booking ") || name == "No Show" {
        &["amount", "price", "revenue", "total", "value"]
    } else if is_lead {
        &["value", "amount", "revenue"]
    } else {
        &["revenue"]
    };
    event.revenue = first_money(props, revenue_keys)?;
    Ok(())
}

/// Reads the first present key of `keys` as an id; a wrong type on the first
/// (documented) key rejects the event, on an alias it is skipped.
fn first_id(
    map: &Map<String, Value>,
    keys: &[&str],
    parent: &str,
    limits: &Limits,
) -> Result<Option<String>, Invalid> {
    for (i, key) in keys.iter().enumerate() {
        match map.get(*key) {
            None | Some(Value::Null) => continue,
            Some(value) => match id_text(value) {
                Some(text) if text.is_empty() => continue,
                Some(text) => {
                    check_len(&text, key, limits)?;
                    return Ok(Some(text));
                }
                None if i == 0 => {
                    return Err(invalid(
                        "invalid_field",
                        format!("{parent}.{key} must be a string or number"),
                    ));
                }
                None => continue,
            },
        }
    }
    Ok(None)
}

fn first_money(map: &Map<String, Value>, keys: &[&str]) -> Result<Option<i128>, Invalid> {
    for (i, key) in keys.iter().enumerate() {
        match map.get(*key) {
            None | Some(Value::Null) => continue,
            Some(value) => match parse_money(value) {
                Ok(v) => return Ok(Some(v)),
                Err(reason) if i == 0 => {
                    return Err(invalid("invalid_amount", format!("properties.{key} {reason}")));
                }
                Err(_) => continue,
            },
        }
    }
    Ok(None)
}

fn first_integer(map: &Map<String, Value>, keys: &[&str]) -> Result<Option<i64>, Invalid> {
    for (i, key) in keys.iter().enumerate() {
        match map.get(*key) {
            None | Some(Value::Null) => continue,
            Some(value) => match parse_integer(value) {
                Some(v) => return Ok(Some(v)),
                None if i == 0 => {
                    return Err(invalid(
                        "invalid_field",
                        format!("properties.{key} must be an integer, got {value}"),
                    ));
                }
                None => continue,
            },
        }
    }
    Ok(None)
}

fn parse_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses a money value into a number scaled by [`MONEY_FACTOR`].
pub fn parse_money(value: &Value) -> Result<i128, String> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return scale_checked(i128::from(i) * MONEY_FACTOR);
            }
            if let Some(u) = n.as_u64() {
                return scale_checked(i128::from(u) * MONEY_FACTOR);
            }
            match n.as_f64() {
                Some(f) if f.is_finite() => parse_decimal(&f.to_string()),
                _ => Err("is not a finite number".into()),
            }
        }
        Value::String(s) => parse_decimal(s.trim()),
        other => Err(format!("must be a number or decimal string, got {other}")),
    }
}

fn scale_checked(v: i128) -> Result<i128, String> {
    if v.abs() > MONEY_MAX_SCALED {
        Err("is out of range".into())
    } else {
        Ok(v)
    }
}

/// Parses a plain decimal (`-12.345`) into a value scaled by [`MONEY_FACTOR`],
/// rounding half away from zero beyond [`MONEY_SCALE`] digits.
pub fn parse_decimal(text: &str) -> Result<i128, String> {
    let bad = || format!("is not a decimal number: {text:?}");
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || int_part.len() > 30
    {
        return Err(bad());
    }
    let mut value: i128 = 0;
    for b in int_part.bytes() {
        value = value * 10 + i128::from(b - b'0');
    }
    let scale = MONEY_SCALE as usize;
    let frac = frac_part.as_bytes();
    for i in 0..scale {
        value = value * 10 + frac.get(i).map_or(0, |b| i128::from(b - b'0'));
    }
    if frac.get(scale).is_some_and(|b| *b >= b'5') {
        value += 1;
    }
    let value = if negative { -value } else { value };
    scale_checked(value)
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn id_field(obj: &Map<String, Value>, key: &str, limits: &Limits) -> Result<Option<String>, Invalid> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(value @ (Value::String(_) | Value::Number(_))) => {
            let text = id_text(value).unwrap_or_default();
            check_len(&text, key, limits)?;
            Ok(Some(text))
        }
        Some(other) => Err(invalid(
            "invalid_field",
            format!("{key} must be a string or number, got {}", type_name(other)),
        )),
    }
}

fn text_field(obj: &Map<String, Value>, key: &str, limits: &Limits) -> Result<Option<String>, Invalid> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            check_len(s, key, limits)?;
            Ok(Some(s.clone()))
        }
        Some(other) => Err(invalid(
            "invalid_field",
            format!("{key} must be a string, got {}", type_name(other)),
        )),
    }
}

fn object_field(obj: &mut Map<String, Value>, key: &str) -> Result<Option<Map<String, Value>>, Invalid> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(invalid(
            "invalid_field",
            format!("{key} must be an object, got {}", type_name(&other)),
        )),
    }
}

fn check_len(text: &str, field: &str, limits: &Limits) -> Result<(), Invalid> {
    if text.len() > limits.max_string_bytes {
        return Err(invalid(
            "string_too_long",
            format!(
                "{field} is {} bytes; the limit is {}",
                text.len(),
                limits.max_string_bytes
            ),
        ));
    }
    Ok(())
}

fn check_object(map: &Map<String, Value>, path: &str, depth: usize, limits: &Limits) -> Result<(), Invalid> {
    if depth > limits.max_property_depth {
        return Err(invalid(
            "too_deep",
            format!("{path} nests deeper than {} levels", limits.max_property_depth),
        ));
    }
    for (key, value) in map {
        check_len(key, path, limits)?;
        check_value(value, path, depth, limits)?;
    }
    Ok(())
}

fn check_value(value: &Value, path: &str, depth: usize, limits: &Limits) -> Result<(), Invalid> {
    match value {
        Value::String(s) => check_len(s, path, limits),
        Value::Object(map) => check_object(map, path, depth + 1, limits),
        Value::Array(items) => {
            if depth + 1 > limits.max_property_depth {
                return Err(invalid(
                    "too_deep",
                    format!("{path} nests deeper than {} levels", limits.max_property_depth),
                ));
            }
            items
                .iter()
                .try_for_each(|item| check_value(item, path, depth + 1, limits))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses an ISO-8601 time into microseconds since the epoch (UTC).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.timestamp_micros());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

fn parse_time(value: &Value, field: &str) -> Result<i64, Invalid> {
    let Value::String(text) = value else {
        return Err(invalid(
            "invalid_timestamp",
            format!("{field} must be an ISO-8601 string, got {}", type_name(value)),
        ));
    };
    parse_timestamp(text).ok_or_else(|| {
        invalid(
            "invalid_timestamp",
            format!("{field} {text:?} is not an ISO-8601 date-time"),
        )
    })
}

#[cfg(test)]
mod tests;
