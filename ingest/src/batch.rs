//! Turning validated [`Event`]s into Arrow record batches of [`event_schema`].

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};

use crate::Result;
use crate::event::Event;
use crate::schema::{MONEY_PRECISION, MONEY_SCALE, TIME_ZONE, event_schema};

/// Builds one record batch (in the order given) from events.
pub fn events_to_batch(events: &[Event]) -> Result<RecordBatch> {
    fn text<'a>(events: &'a [Event], f: impl Fn(&'a Event) -> Option<&'a str>) -> ArrayRef {
        Arc::new(events.iter().map(f).collect::<StringArray>())
    }
    fn money(events: &[Event], f: impl Fn(&Event) -> Option<i128>) -> Result<ArrayRef> {
        Ok(Arc::new(
            events
                .iter()
                .map(f)
                .collect::<Decimal128Array>()
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?,
        ))
    }
    fn time(events: &[Event], f: impl Fn(&Event) -> Option<i64>) -> ArrayRef {
        Arc::new(
            events
                .iter()
                .map(f)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone(TIME_ZONE),
        )
    }
    let columns: Vec<ArrayRef> = vec![
        text(events, |e| Some(e.message_id.as_str())),
        text(events, |e| Some(e.kind().as_str())),
        text(events, |e| e.event.as_deref()),
        text(events, |e| e.user_id.as_deref()),
        text(events, |e| e.anonymous_id.as_deref()),
        text(events, |e| e.group_id.as_deref()),
        text(events, |e| e.previous_id.as_deref()),
        time(events, |e| Some(e.timestamp_us)),
        time(events, |e| Some(e.received_at_us)),
        time(events, |e| e.sent_at_us),
        money(events, |e| e.revenue)?,
        money(events, |e| e.price)?,
        text(events, |e| e.currency.as_deref()),
        Arc::new(events.iter().map(|e| e.quantity).collect::<Int64Array>()),
        text(events, |e| e.order_id.as_deref()),
        text(events, |e| e.product_id.as_deref()),
        text(events, |e| e.service_id.as_deref()),
        text(events, |e| e.booking_id.as_deref()),
        text(events, |e| e.lead_id.as_deref()),
        text(events, |e| e.location_id.as_deref()),
        text(events, |e| e.staff_id.as_deref()),
        text(events, |e| e.channel.as_deref()),
        text(events, |e| e.payment_method.as_deref()),
        text(events, |e| e.status.as_deref()),
        text(events, |e| e.session_id.as_deref()),
        text(events, |e| e.properties.as_deref()),
        text(events, |e| e.context.as_deref()),
        text(events, |e| e.traits.as_deref()),
    ];
    Ok(RecordBatch::try_new(event_schema(), columns)?)
}
