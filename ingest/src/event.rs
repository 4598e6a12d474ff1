//! The normalized event: what a validated Segment call becomes before it is
//! turned into an Arrow row.

use std::fmt;
use std::str::FromStr;

/// Segment call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `track`: a named action with properties.
    Track,
    /// `identify`: who the user is (traits).
    Identify,
    /// `page`: a web page view.
    Page,
    /// `screen`: a mobile screen view.
    Screen,
    /// `group`: user belongs to a group (account, company).
    Group,
    /// `alias`: merge two identities.
    Alias,
}

impl EventType {
    /// All types, in spec order.
    pub const ALL: [EventType; 6] = [
        Self::Track,
        Self::Identify,
        Self::Page,
        Self::Screen,
        Self::Group,
        Self::Alias,
    ];

    /// The lowercase name used on the wire and in the `type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Identify => "identify",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or(())
    }
}

/// One validated, normalized event. Money is scaled by
/// [`crate::schema::MONEY_FACTOR`]; times are microseconds since the epoch, UTC.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// `messageId` (generated when the client sent none).
    pub message_id: String,
    /// Call type.
    pub kind: Option<EventType>,
    /// Event name (track) or page/screen name.
    pub event: Option<String>,
    /// `userId`.
    pub user_id: Option<String>,
    /// `anonymousId`.
    pub anonymous_id: Option<String>,
    /// `groupId` (group calls).
    pub group_id: Option<String>,
    /// `previousId` (alias calls).
    pub previous_id: Option<String>,
    /// Event time.
    pub timestamp_us: i64,
    /// Server receive time.
    pub received_at_us: i64,
    /// Client send time.
    pub sent_at_us: Option<i64>,
    /// Monetary value, scaled.
    pub revenue: Option<i128>,
    /// Unit price, scaled.
    pub price: Option<i128>,
    /// Currency code (upper case).
    pub currency: Option<String>,
    /// Quantity or stock level.
    pub quantity: Option<i64>,
    /// Order id.
    pub order_id: Option<String>,
    /// Product id.
    pub product_id: Option<String>,
    /// Service id.
    pub service_id: Option<String>,
    /// Booking id.
    pub booking_id: Option<String>,
    /// Lead id.
    pub lead_id: Option<String>,
    /// Location id.
    pub location_id: Option<String>,
    /// Staff id.
    pub staff_id: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Payment method.
    pub payment_method: Option<String>,
    /// Status or stage.
    pub status: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// `properties` as JSON text.
    pub properties: Option<String>,
    /// `context` as JSON text.
    pub context: Option<String>,
    /// `traits` as JSON text.
    pub traits: Option<String>,
}

impl Event {
    /// The call type (`track` when unset).
    pub fn kind(&self) -> EventType {
        self.kind.unwrap_or(EventType::Track)
    }
}

/// Well-known business event names whose fields are promoted with
/// event-specific aliases (see [`crate::decode`]).
pub mod names {
    /// Segment e-commerce: an order was placed and paid.
    pub const ORDER_COMPLETED: &str = "Order Completed";
    /// Segment e-commerce: an order was (partly) refunded.
    pub const ORDER_REFUNDED: &str = "Order Refunded";
    /// Segment e-commerce: a product page was seen.
    pub const PRODUCT_VIEWED: &str = "Product Viewed";
    /// Segment e-commerce: a product went into the cart.
    pub const PRODUCT_ADDED: &str = "Product Added";
    /// Segment e-commerce: checkout began.
    pub const CHECKOUT_STARTED: &str = "Checkout Started";
    /// A payment arrived.
    pub const PAYMENT_RECEIVED: &str = "Payment Received";
    /// A booking was made.
    pub const BOOKING_CREATED: &str = "Booking Created";
    /// A booking was confirmed.
    pub const BOOKING_CONFIRMED: &str = "Booking Confirmed";
    /// A booking was cancelled.
    pub const BOOKING_CANCELLED: &str = "Booking Cancelled";
    /// A booking took place.
    pub const BOOKING_COMPLETED: &str = "Booking Completed";
    /// The customer did not show up.
    pub const BOOKING_NO_SHOW: &str = "Booking No Show";
    /// A lead entered the CRM.
    pub const LEAD_CREATED: &str = "Lead Created";
    /// A lead moved to another stage.
    pub const LEAD_STAGE_CHANGED: &str = "Lead Stage Changed";
    /// A lead became a customer.
    pub const LEAD_CONVERTED: &str = "Lead Converted";
    /// A stock level changed.
    pub const INVENTORY_UPDATED: &str = "Inventory Updated";

    /// `track` names stored as another, canonical name (sent, stored): a
    /// bare `No Show` is a booking outcome that the analytics, live
    /// metrics and alerts only count as `Booking No Show`.
    pub const ALIASES: [(&str, &str); 1] = [("No Show", BOOKING_NO_SHOW)];

    /// The name a `track` event is stored under: its canonical name for
    /// an alias of [`ALIASES`], else `name` itself.
    pub fn canonical(name: String) -> String {
        match ALIASES.iter().find(|(alias, _)| *alias == name) {
            Some((_, canonical)) => (*canonical).to_owned(),
            None => name,
        }
    }
}
