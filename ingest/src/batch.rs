//! Turning validated [`Event`]s into Arrow record batches of [`event_schema`].

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringBuilder, TimestampMicrosecondArray,
};

use crate::Result;
use crate::event::Event;
use crate::schema::{MONEY_PRECISION, MONEY_SCALE, TIME_ZONE, event_schema};

/// Builds one record batch (in the order given) from events.
pub fn events_to_batch(events: &[Event]) -> Result<RecordBatch> {
    // Sized exactly: collecting into a `StringArray` reserves at least 1 KiB
    // of values per column, so a one-event batch (a `/v1/track` call) kept
    // ~27 KiB in the in-memory tail until the next flush, and the
    // buffered-bytes accounting flushed on capacity instead of data.
    fn text<'a>(events: &'a [Event], f: impl Fn(&'a Event) -> Option<&'a str>) -> ArrayRef {
        let bytes = events.iter().filter_map(&f).map(str::len).sum();
        let mut builder = StringBuilder::with_capacity(events.len(), bytes);
        for e in events {
            builder.append_option(f(e));
        }
        Arc::new(builder.finish())
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

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    /// A one-event batch holds about what the event says, not a reserve per
    /// column: the in-memory tail keeps every batch until the next flush
    /// and counts its bytes against `ingest.flush_bytes`.
    #[test]
    fn small_batches_are_sized_to_their_data() {
        let event = Event {
            message_id: "m1".into(),
            event: Some("Order Completed".into()),
            user_id: Some("u1".into()),
            properties: Some(r#"{"total":12.5}"#.into()),
            timestamp_us: 1_700_000_000_000_000,
            received_at_us: 1_700_000_000_000_001,
            ..Event::default()
        };
        let batch = events_to_batch(std::slice::from_ref(&event)).expect("batch");
        assert_eq!(batch.num_rows(), 1);
        let events = batch.column(2).as_string::<i32>();
        assert_eq!(events.value(0), "Order Completed");
        assert!(batch.column(3).is_valid(0) && batch.column(4).is_null(0));
        // 28 columns of one row: offsets, validity bitmaps and a few bytes
        // each (about 5 KiB). Collecting strings reserved 1 KiB of values
        // per string column (22 of them: ~27 KiB in all).
        let bytes = batch.get_array_memory_size();
        assert!(bytes < 8 * 1024, "a one-event batch holds {bytes} bytes");
    }
}
