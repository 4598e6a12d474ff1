//! Decoding and validation of Segment-compatible request bodies.
//!
//! A body is either rejected whole ([`BodyError`]: not JSON, wrong shape, too
//! many events) or split into events that are validated one by one: valid
//! events become [`Event`]s, invalid ones become [`Rejection`]s carrying their
//! index in the request and a reason, so one bad event never costs the others.
//!
//! # Event names
//!
//! A `track` name listed in [`names::ALIASES`] is stored under its
//! canonical name: a bare `No Show` becomes `Booking No Show`, the outcome
//! the bookings analytics, live metrics and alerts count.
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
//! `Booking ...`: `amount`, `price`, `revenue`, `total`, `value`;
//! `Lead ...`: `value`, `amount`, `revenue`; any other event: `revenue`.
//!
//! Money is accepted as a JSON number or a decimal string and stored as
//! `Decimal128(18, 4)`; more than 4 decimals are rounded half away from zero.
//! A JSON number is read from its decimal text exactly (`19.99` is stored as
//! `19.9900`); a number with an exponent goes through `f64` and its shortest
//! round-trip decimal form.
//!
//! # Speed
//!
//! Only the top level of an event is deserialized (borrowing from the body);
//! `properties`, `context` and `traits` stay raw JSON text: they are checked
//! for depth and string length in one pass over their bytes, their top-level
//! keys are read for promotion, and they are stored exactly as sent, never
//! re-serialized. Only a batch-level `context` forces a merge (parse and
//! re-serialize of `context`).
//!
//! # Times
//!
//! `timestamp` (else `originalTimestamp`, else the receive time) is the event
//! time. ISO-8601 with offset is the documented form; a time without offset
//! is read as UTC and a bare date as midnight UTC. When `sentAt` is also
//! given, the event time is corrected for client clock skew as Segment does:
//! `timestamp + (receivedAt - sentAt)`. Times before 1970 or more than
//! [`Limits::max_future`] after the receive time are rejected.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::{Event, EventType, names};
use crate::schema::{MONEY_MAX_SCALED, MONEY_SCALE};

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
pub fn decode_batch(
    body: &[u8],
    limits: &Limits,
    received_at_us: i64,
) -> Result<Decoded, BodyError> {
    #[derive(Deserialize)]
    struct BatchBody<'a> {
        #[serde(borrow)]
        batch: Option<&'a RawValue>,
        #[serde(borrow)]
        context: Option<&'a RawValue>,
        #[serde(rename = "writeKey", borrow)]
        write_key: Option<&'a RawValue>,
    }
    let text = utf8(body)?;
    let root: BatchBody<'_> = serde_json::from_str(text).map_err(|e| {
        body_error(
            &e,
            "request body must be a JSON object with a \"batch\" array",
        )
    })?;
    let Some(batch) = root.batch else {
        return Err(BodyError::InvalidShape(
            "request body must have a \"batch\" array".into(),
        ));
    };
    let items: Vec<&RawValue> = serde_json::from_str(batch.get())
        .map_err(|_| BodyError::InvalidShape("\"batch\" must be an array".into()))?;
    check_count(items.len(), limits)?;
    let shared_context = match root.context {
        Some(raw) => match serde_json::from_str::<Map<String, Value>>(raw.get()) {
            Ok(map) => Some(map),
            Err(_) => {
                return Err(BodyError::InvalidShape(
                    "batch \"context\" must be an object".into(),
                ));
            }
        },
        None => None,
    };
    let mut out = Decoded {
        write_key: root.write_key.and_then(|k| scalar(k).text()),
        ..Decoded::default()
    };
    let ctx = EventContext {
        shared_context: shared_context.as_ref(),
        ..EventContext::new(limits, received_at_us)
    };
    for (index, item) in items.into_iter().enumerate() {
        out.push(index, decode_event(item.get(), &ctx));
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
    let text = utf8(body)?;
    let raw: &RawValue = serde_json::from_str(text)
        .map_err(|e| body_error(&e, "request body must be a JSON object"))?;
    if !raw.get().starts_with('{') {
        return Err(BodyError::InvalidShape(
            "request body must be a JSON object".into(),
        ));
    }
    let ctx = EventContext {
        forced: Some(kind),
        ..EventContext::new(limits, received_at_us)
    };
    let mut out = Decoded::default();
    let (result, write_key) = decode_event_with_key(raw.get(), &ctx);
    out.write_key = write_key;
    out.push(0, result);
    Ok(out)
}

/// Decodes newline-delimited JSON: one event per non-blank line, `type` defaults to `track`.
///
/// A line that is not valid JSON (or not UTF-8) rejects that line only.
pub fn decode_ndjson(
    body: &[u8],
    limits: &Limits,
    received_at_us: i64,
) -> Result<Decoded, BodyError> {
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
        .collect();
    check_count(lines.len(), limits)?;
    let ctx = EventContext {
        default: Some(EventType::Track),
        ..EventContext::new(limits, received_at_us)
    };
    let mut out = Decoded::default();
    for (index, line) in lines.into_iter().enumerate() {
        let result = match std::str::from_utf8(line) {
            Ok(text) => decode_event(text, &ctx),
            Err(e) => Err(invalid(
                "invalid_json",
                format!("line is not valid UTF-8: {e}"),
            )),
        };
        out.push(index, result);
    }
    Ok(out)
}

fn utf8(body: &[u8]) -> Result<&str, BodyError> {
    std::str::from_utf8(body)
        .map_err(|e| BodyError::InvalidJson(format!("request body is not valid UTF-8: {e}")))
}

fn body_error(e: &serde_json::Error, shape: &str) -> BodyError {
    match e.classify() {
        serde_json::error::Category::Data => BodyError::InvalidShape(shape.to_owned()),
        _ => BodyError::InvalidJson(e.to_string()),
    }
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

impl<'a> EventContext<'a> {
    fn new(limits: &'a Limits, received_at_us: i64) -> Self {
        Self {
            limits,
            received_at_us,
            forced: None,
            default: None,
            shared_context: None,
        }
    }
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

/// The top-level fields of a Segment call, borrowed from the request body:
/// nested objects stay raw JSON text (validated, never re-serialized).
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(rename = "userId", borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(rename = "anonymousId", borrow)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(rename = "messageId", borrow)]
    message_id: Option<&'a RawValue>,
    #[serde(rename = "groupId", borrow)]
    group_id: Option<&'a RawValue>,
    #[serde(rename = "previousId", borrow)]
    previous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(rename = "originalTimestamp", borrow)]
    original_timestamp: Option<&'a RawValue>,
    #[serde(rename = "sentAt", borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    traits: Option<&'a RawValue>,
    #[serde(rename = "writeKey", borrow)]
    write_key: Option<&'a RawValue>,
}

/// A JSON scalar read from raw text.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    /// A number, as written.
    Num(&'a str),
    /// Anything else, by type name.
    Other(&'static str),
}

impl Scalar<'_> {
    fn text(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s.into_owned()),
            _ => None,
        }
    }
}

fn scalar(raw: &RawValue) -> Scalar<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => {
            let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
            if inner.contains('\\') {
                match serde_json::from_str::<String>(text) {
                    Ok(s) => Scalar::Str(Cow::Owned(s)),
                    Err(_) => Scalar::Other("a string"),
                }
            } else {
                Scalar::Str(Cow::Borrowed(inner))
            }
        }
        Some(b'{') => Scalar::Other("an object"),
        Some(b'[') => Scalar::Other("an array"),
        Some(b't' | b'f') => Scalar::Other("a boolean"),
        Some(b'n') => Scalar::Other("null"),
        _ => Scalar::Num(text),
    }
}

fn decode_event(text: &str, ctx: &EventContext<'_>) -> Result<Event, Invalid> {
    decode_event_with_key(text, ctx).0
}

fn decode_event_with_key(
    text: &str,
    ctx: &EventContext<'_>,
) -> (Result<Event, Invalid>, Option<String>) {
    let raw: RawEvent<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) if e.classify() != serde_json::error::Category::Data => {
            return (
                Err(invalid(
                    "invalid_json",
                    format!("event is not valid JSON: {e}"),
                )),
                None,
            );
        }
        Err(e) => {
            let reason = if text.trim_start().starts_with('{') {
                format!("event is not a valid Segment call: {e}")
            } else {
                "event must be a JSON object".to_owned()
            };
            return (Err(invalid("invalid_event", reason)), None);
        }
    };
    let write_key = raw.write_key.and_then(|k| scalar(k).text());
    (build_event(&raw, ctx), write_key)
}

fn build_event(raw: &RawEvent<'_>, ctx: &EventContext<'_>) -> Result<Event, Invalid> {
    let limits = ctx.limits;
    let kind = match ctx.forced {
        Some(kind) => kind,
        None => match raw.kind.map(scalar) {
            Some(Scalar::Str(s)) => s.parse().map_err(|()| {
                invalid(
                    "invalid_type",
                    format!("type {s:?} is not one of track, identify, page, screen, group, alias"),
                )
            })?,
            None => ctx
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
    event.user_id = id_field(raw.user_id, "userId", limits)?;
    event.anonymous_id = id_field(raw.anonymous_id, "anonymousId", limits)?;
    if event.user_id.is_none() && event.anonymous_id.is_none() {
        return Err(invalid(
            "missing_identity",
            "userId or anonymousId is required",
        ));
    }
    event.message_id = match id_field(raw.message_id, "messageId", limits)? {
        Some(id) => id,
        None => uuid::Uuid::new_v4().to_string(),
    };

    match kind {
        EventType::Track => {
            let name = text_field(raw.event, "event", limits)?.ok_or_else(|| {
                invalid(
                    "missing_event",
                    "track calls need a non-empty \"event\" name",
                )
            })?;
            event.event = Some(names::canonical(name));
        }
        EventType::Page | EventType::Screen => event.event = text_field(raw.name, "name", limits)?,
        EventType::Group => {
            event.group_id = id_field(raw.group_id, "groupId", limits)?;
            if event.group_id.is_none() {
                return Err(invalid(
                    "missing_group_id",
                    "group calls need a \"groupId\"",
                ));
            }
        }
        EventType::Alias => {
            event.previous_id = id_field(raw.previous_id, "previousId", limits)?;
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
    let timestamp = match raw.timestamp {
        Some(v) => Some(parse_time(v, "timestamp")?),
        None => match raw.original_timestamp {
            Some(v) => Some(parse_time(v, "originalTimestamp")?),
            None => None,
        },
    };
    event.sent_at_us = match raw.sent_at {
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
        return Err(invalid(
            "timestamp_out_of_range",
            "timestamp is before 1970-01-01",
        ));
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

    // Objects: checked on their raw text, stored as sent.
    let properties = object_field(raw.properties, "properties", limits)?;
    let traits = object_field(raw.traits, "traits", limits)?;
    let mut context = object_field(raw.context, "context", limits)?.map(Cow::Borrowed);
    if let Some(shared) = ctx.shared_context {
        let mut merged: Map<String, Value> = match &context {
            Some(text) => serde_json::from_str(text).unwrap_or_default(),
            None => Map::new(),
        };
        for (key, value) in shared {
            if !merged.contains_key(key) {
                merged.insert(key.clone(), value.clone());
            }
        }
        let text = Value::Object(merged).to_string();
        scan_json(&text, "context", limits)?;
        context = Some(Cow::Owned(text));
    }

    if let Some(props) = properties {
        let map: FieldMap<'_> = serde_json::from_str(props)
            .map_err(|e| invalid("invalid_field", format!("properties: {e}")))?;
        promote(&mut event, &map.0, context.as_deref(), limits)?;
    } else if let Some(ctx_text) = context.as_deref() {
        event.session_id = context_session(ctx_text, limits)?;
    }

    let size = event.message_id.len()
        + event.event.as_ref().map_or(0, String::len)
        + event.user_id.as_ref().map_or(0, String::len)
        + event.anonymous_id.as_ref().map_or(0, String::len)
        + properties.map_or(0, str::len)
        + traits.map_or(0, str::len)
        + context.as_ref().map_or(0, |c| c.len());
    if size > limits.max_event_bytes {
        return Err(invalid(
            "event_too_large",
            format!(
                "event is {size} bytes; the limit is {}",
                limits.max_event_bytes
            ),
        ));
    }
    event.properties = properties.map(str::to_owned);
    event.context = context.map(Cow::into_owned);
    event.traits = traits.map(str::to_owned);
    Ok(event)
}

/// The top-level keys of an object in order, values left raw. A short
/// vector beats hashing for the few lookups promotion makes.
struct FieldMap<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for FieldMap<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(transparent)]
        struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

        struct Fields<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Fields<'a> {
            type Value = FieldMap<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(key), value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    fields.push((key, value));
                }
                Ok(FieldMap(fields))
            }
        }

        deserializer.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// The value of `key` (the last one wins if a key repeats, as in serde_json).
fn field<'a>(fields: &Fields<'a>, key: &str) -> Option<&'a RawValue> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn context_session(context: &str, limits: &Limits) -> Result<Option<String>, Invalid> {
    let map: FieldMap<'_> = serde_json::from_str(context)
        .map_err(|e| invalid("invalid_field", format!("context: {e}")))?;
    first_id(&map.0, &["session_id", "sessionId"], "context", limits)
}

type Fields<'a> = [(Cow<'a, str>, &'a RawValue)];

fn promote(
    event: &mut Event,
    props: &Fields<'_>,
    context: Option<&str>,
    limits: &Limits,
) -> Result<(), Invalid> {
    let name = event.event.as_deref().unwrap_or("");
    let is_lead = name.starts_with("Lead ");
    event.order_id = first_id(props, &["order_id", "orderId"], "properties", limits)?;
    event.product_id = first_id(
        props,
        &["product_id", "productId", "sku"],
        "properties",
        limits,
    )?;
    event.service_id = first_id(
        props,
        &["service_id", "serviceId", "service"],
        "properties",
        limits,
    )?;
    event.booking_id = first_id(props, &["booking_id", "bookingId"], "properties", limits)?;
    event.lead_id = first_id(props, &["lead_id", "leadId"], "properties", limits)?;
    event.location_id = first_id(
        props,
        &["location_id", "locationId", "location"],
        "properties",
        limits,
    )?;
    event.staff_id = first_id(
        props,
        &["staff_id", "staffId", "staff"],
        "properties",
        limits,
    )?;
    event.channel = first_id(props, &["channel"], "properties", limits)?;
    event.payment_method = first_id(
        props,
        &["payment_method", "paymentMethod"],
        "properties",
        limits,
    )?;
    event.status = if is_lead {
        first_id(props, &["stage", "status"], "properties", limits)?
    } else {
        first_id(props, &["status", "stage"], "properties", limits)?
    };
    event.session_id = match first_id(props, &["session_id", "sessionId"], "properties", limits)? {
        Some(id) => Some(id),
        None => match context {
            Some(ctx) => context_session(ctx, limits)?,
            None => None,
        },
    };
    event.currency = match field(props, "currency").map(scalar) {
        None | Some(Scalar::Other("null")) => None,
        Some(Scalar::Str(code))
            if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) =>
        {
            Some(code.to_ascii_uppercase())
        }
        Some(_) => {
            let sent = field(props, "currency").map_or("", RawValue::get);
            return Err(invalid(
                "invalid_currency",
                format!("properties.currency must be a 3-letter ISO 4217 code, got {sent}"),
            ));
        }
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
    } else if name.starts_with("Booking ") {
        &["amount", "price", "revenue", "total", "value"]
    } else if is_lead {
        &["value", "amount", "revenue"]
    } else {
        &["revenue"]
    };
    event.revenue = first_money(props, revenue_keys)?;
    Ok(())
}

/// The value of the first present, non-null key of `keys`.
fn first_present<'m, 'a>(
    map: &'m Fields<'a>,
    keys: &'m [&'static str],
) -> impl Iterator<Item = (usize, &'static str, &'a RawValue)> + 'm {
    keys.iter().enumerate().filter_map(move |(i, key)| {
        field(map, key)
            .filter(|v| v.get() != "null")
            .map(|v| (i, *key, v))
    })
}

/// Reads the first present key of `keys` as an id; a wrong type on the first
/// (documented) key rejects the event, on an alias it is skipped.
fn first_id(
    map: &Fields<'_>,
    keys: &[&'static str],
    parent: &str,
    limits: &Limits,
) -> Result<Option<String>, Invalid> {
    for (i, key, value) in first_present(map, keys) {
        let text = match scalar(value) {
            Scalar::Str(s) => s.into_owned(),
            Scalar::Num(n) => n.to_owned(),
            Scalar::Other(_) if i > 0 => continue,
            Scalar::Other(kind) => {
                return Err(invalid(
                    "invalid_field",
                    format!("{parent}.{key} must be a string or number, got {kind}"),
                ));
            }
        };
        if text.is_empty() {
            continue;
        }
        check_len(&text, key, limits)?;
        return Ok(Some(text));
    }
    Ok(None)
}

fn first_money(map: &Fields<'_>, keys: &[&'static str]) -> Result<Option<i128>, Invalid> {
    for (i, key, value) in first_present(map, keys) {
        match money(value) {
            Ok(v) => return Ok(Some(v)),
            Err(reason) if i == 0 => {
                return Err(invalid(
                    "invalid_amount",
                    format!("properties.{key} {reason}"),
                ));
            }
            Err(_) => continue,
        }
    }
    Ok(None)
}

fn first_integer(map: &Fields<'_>, keys: &[&'static str]) -> Result<Option<i64>, Invalid> {
    for (i, key, value) in first_present(map, keys) {
        match parse_integer(value) {
            Some(v) => return Ok(Some(v)),
            None if i == 0 => {
                return Err(invalid(
                    "invalid_field",
                    format!("properties.{key} must be an integer, got {}", value.get()),
                ));
            }
            None => continue,
        }
    }
    Ok(None)
}

fn parse_integer(value: &RawValue) -> Option<i64> {
    match scalar(value) {
        Scalar::Num(n) => n.parse::<i64>().ok().or_else(|| {
            n.parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Scalar::Str(s) => s.trim().parse().ok(),
        Scalar::Other(_) => None,
    }
}

/// Parses a money value (raw JSON: a number or a decimal string) into a
/// number scaled by [`crate::schema::MONEY_FACTOR`]. Plain decimal numbers are read from
/// their text exactly; numbers with an exponent go through `f64` and its
/// shortest round-trip decimal form.
pub fn parse_money(json: &str) -> Result<i128, String> {
    let raw: &RawValue =
        serde_json::from_str(json).map_err(|_| format!("is not valid JSON: {json}"))?;
    money(raw)
}

fn money(raw: &RawValue) -> Result<i128, String> {
    match scalar(raw) {
        Scalar::Num(n) if n.contains(['e', 'E']) => match n.parse::<f64>() {
            Ok(f) if f.is_finite() => parse_decimal(&f.to_string()),
            _ => Err("is not a finite number".into()),
        },
        Scalar::Num(n) => parse_decimal(n),
        Scalar::Str(s) => parse_decimal(s.trim()),
        Scalar::Other(kind) => Err(format!("must be a number or decimal string, got {kind}")),
    }
}

fn id_field(
    value: Option<&RawValue>,
    key: &str,
    limits: &Limits,
) -> Result<Option<String>, Invalid> {
    let Some(value) = value else { return Ok(None) };
    let text = match scalar(value) {
        Scalar::Str(s) => s.into_owned(),
        Scalar::Num(n) => n.to_owned(),
        Scalar::Other(kind) => {
            return Err(invalid(
                "invalid_field",
                format!("{key} must be a string or number, got {kind}"),
            ));
        }
    };
    if text.is_empty() {
        return Ok(None);
    }
    check_len(&text, key, limits)?;
    Ok(Some(text))
}

fn text_field(
    value: Option<&RawValue>,
    key: &str,
    limits: &Limits,
) -> Result<Option<String>, Invalid> {
    let Some(value) = value else { return Ok(None) };
    match scalar(value) {
        Scalar::Str(s) if s.trim().is_empty() => Ok(None),
        Scalar::Str(s) => {
            check_len(&s, key, limits)?;
            Ok(Some(s.into_owned()))
        }
        Scalar::Num(_) => Err(invalid(
            "invalid_field",
            format!("{key} must be a string, got a number"),
        )),
        Scalar::Other(kind) => Err(invalid(
            "invalid_field",
            format!("{key} must be a string, got {kind}"),
        )),
    }
}

/// An object field's raw text, after the depth and string-length checks.
fn object_field<'a>(
    value: Option<&'a RawValue>,
    key: &str,
    limits: &Limits,
) -> Result<Option<&'a str>, Invalid> {
    let Some(value) = value else { return Ok(None) };
    let text = value.get();
    if !text.starts_with('{') {
        let kind = match scalar(value) {
            Scalar::Str(_) => "a string",
            Scalar::Num(_) => "a number",
            Scalar::Other(kind) => kind,
        };
        return Err(invalid(
            "invalid_field",
            format!("{key} must be an object, got {kind}"),
        ));
    }
    scan_json(text, key, limits)?;
    Ok(Some(text))
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

/// Checks nesting depth (objects and arrays; the top object is level 1) and
/// the length of every string and key (in bytes as sent, escapes included)
/// in one pass over valid JSON text, without building a tree.
fn scan_json(text: &str, field: &str, limits: &Limits) -> Result<(), Invalid> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                let start = i + 1;
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                let len = i.saturating_sub(start);
                if len > limits.max_string_bytes {
                    return Err(invalid(
                        "string_too_long",
                        format!(
                            "a string in {field} is {len} bytes; the limit is {}",
                            limits.max_string_bytes
                        ),
                    ));
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > limits.max_property_depth {
                    return Err(invalid(
                        "too_deep",
                        format!(
                            "{field} nests deeper than {} levels",
                            limits.max_property_depth
                        ),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn scale_checked(v: i128) -> Result<i128, String> {
    if v.abs() > MONEY_MAX_SCALED {
        Err("is out of range".into())
    } else {
        Ok(v)
    }
}

/// Parses a plain decimal (`-12.345`) into a value scaled by [`crate::schema::MONEY_FACTOR`],
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
    {
        return Err(bad());
    }
    let int_part = int_part.trim_start_matches('0');
    if int_part.len() > 18 {
        return Err("is out of range".into());
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

/// Parses an ISO-8601 time into microseconds since the epoch (UTC).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
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

fn parse_time(value: &RawValue, field: &str) -> Result<i64, Invalid> {
    let text = match scalar(value) {
        Scalar::Str(s) => s,
        Scalar::Num(_) => {
            return Err(invalid(
                "invalid_timestamp",
                format!("{field} must be an ISO-8601 string, got a number"),
            ));
        }
        Scalar::Other(kind) => {
            return Err(invalid(
                "invalid_timestamp",
                format!("{field} must be an ISO-8601 string, got {kind}"),
            ));
        }
    };
    parse_timestamp(&text).ok_or_else(|| {
        invalid(
            "invalid_timestamp",
            format!("{field} {text:?} is not an ISO-8601 date-time"),
        )
    })
}

#[cfg(test)]
mod tests;
