use serde_json::json;

use super::*;

const NOW: i64 = 1_750_000_000_000_000;

fn batch(items: serde_json::Value) -> Decoded {
    let body = json!({ "batch": items }).to_string();
    decode_batch(body.as_bytes(), &Limits::default(), NOW).expect("decodes")
}

#[test]
fn order_completed_promotes_fields_exactly() {
    let d = batch(json!([{
        "type": "track", "event": "Order Completed", "userId": 42, "messageId": "m1",
        "timestamp": "2025-06-01T10:00:00.123Z",
        "properties": {"order_id": "o-1", "revenue": 19.99, "total": 25, "currency": "eur",
                       "payment_method": "card", "channel": "web", "location": "Berlin",
                       "products": [{"product_id": "p1", "price": 9.995}], "coupon": "X"},
        "context": {"session_id": "s-9", "ip": "1.2.3.4"}
    }]));
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    let e = &d.events[0];
    assert_eq!(e.user_id.as_deref(), Some("42"));
    assert_eq!(e.revenue, Some(199_900));
    assert_eq!(e.currency.as_deref(), Some("EUR"));
    assert_eq!(e.order_id.as_deref(), Some("o-1"));
    assert_eq!(e.payment_method.as_deref(), Some("card"));
    assert_eq!(e.location_id.as_deref(), Some("Berlin"));
    assert_eq!(e.session_id.as_deref(), Some("s-9"));
    assert_eq!(e.timestamp_us, 1_748_772_000_123_000);
    let props: serde_json::Value =
        serde_json::from_str(e.properties.as_deref().expect("props")).expect("json");
    assert_eq!(props["coupon"], "X");
    assert_eq!(props["products"][0]["price"], 9.995);
}

#[test]
fn event_specific_amount_aliases() {
    let d = batch(json!([
        {"type": "track", "event": "Order Refunded", "userId": "u", "properties": {"total": "12.5"}},
        {"type": "track", "event": "Booking Created", "userId": "u", "properties": {"price": 80, "service": "massage", "staff": "ann", "booking_id": 7}},
        {"type": "track", "event": "Inventory Updated", "userId": "u", "properties": {"sku": "A1", "stock": 3}},
        {"type": "track", "event": "Lead Stage Changed", "userId": "u", "properties": {"lead_id": "L", "stage": "qualified", "status": "open"}},
        {"type": "track", "event": "Custom Thing", "userId": "u", "properties": {"total": 99, "revenue": "1.00005"}}
    ]));
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    assert_eq!(d.events[0].revenue, Some(125_000));
    assert_eq!(d.events[1].revenue, Some(800_000));
    assert_eq!(d.events[1].service_id.as_deref(), Some("massage"));
    assert_eq!(d.events[1].staff_id.as_deref(), Some("ann"));
    assert_eq!(d.events[1].booking_id.as_deref(), Some("7"));
    assert_eq!(d.events[2].quantity, Some(3));
    assert_eq!(d.events[2].product_id.as_deref(), Some("A1"));
    assert_eq!(d.events[3].status.as_deref(), Some("qualified"));
    // Other events only promote `revenue`, rounded half away from zero.
    assert_eq!(d.events[4].revenue, Some(10_001));
}

#[test]
fn a_bare_no_show_is_stored_as_booking_no_show() {
    let d = batch(json!([
        {"type": "track", "event": "No Show", "userId": "u", "properties": {"booking_id": "b1", "amount": 40}},
        {"type": "page", "name": "No Show", "userId": "u"}
    ]));
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    assert_eq!(d.events[0].event.as_deref(), Some(names::BOOKING_NO_SHOW));
    assert_eq!(d.events[0].booking_id.as_deref(), Some("b1"));
    assert_eq!(d.events[0].revenue, Some(400_000));
    // Only track names are aliased; a page keeps its name.
    assert_eq!(d.events[1].event.as_deref(), Some("No Show"));
}

#[test]
fn each_bad_event_is_rejected_with_its_index_and_the_rest_kept() {
    let d = batch(json!([
        {"type": "track", "event": "Ok", "anonymousId": "a"},
        {"type": "track", "anonymousId": "a"},
        {"type": "track", "event": "X"},
        {"type": "bogus", "event": "X", "userId": "u"},
        {"type": "track", "event": "X", "userId": "u", "timestamp": "yesterday"},
        {"type": "track", "event": "X", "userId": "u", "timestamp": 1700000000},
        {"type": "track", "event": "X", "userId": "u", "properties": "nope"},
        {"type": "track", "event": "X", "userId": "u", "properties": {"revenue": "ten"}},
        {"type": "track", "event": "X", "userId": "u", "properties": {"currency": "euro"}},
        {"type": "track", "event": "X", "userId": {"id": 1}},
        {"type": "track", "event": "X", "userId": "u", "timestamp": "2999-01-01T00:00:00Z"},
        "not an object",
        {"type": "identify", "userId": "u", "traits": {"email": "a@b.c"}}
    ]));
    let codes: Vec<(usize, &str)> = d.rejected.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(
        codes,
        vec![
            (1, "missing_event"),
            (2, "missing_identity"),
            (3, "invalid_type"),
            (4, "invalid_timestamp"),
            (5, "invalid_timestamp"),
            (6, "invalid_field"),
            (7, "invalid_amount"),
            (8, "invalid_currency"),
            (9, "invalid_field"),
            (10, "timestamp_out_of_range"),
            (11, "invalid_event"),
        ]
    );
    assert_eq!(d.indices, vec![0, 12]);
    assert!(d.rejected.iter().all(|r| !r.reason.is_empty()));
}

#[test]
fn limits_on_depth_strings_size_and_count() {
    let limits = Limits {
        max_batch_events: 3,
        max_property_depth: 3,
        max_string_bytes: 10,
        max_event_bytes: 150,
        ..Limits::default()
    };
    let body = json!({"batch": [
        {"type": "track", "event": "X", "userId": "u", "properties": {"a": {"b": {"c": {"d": 1}}}}},
        {"type": "track", "event": "X", "userId": "u", "properties": {"a": "0123456789A"}},
        {"type": "track", "event": "X", "userId": "u", "properties": {"a": [1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9]}}
    ]});
    let d = decode_batch(body.to_string().as_bytes(), &limits, NOW).expect("decodes");
    let codes: Vec<&str> = d.rejected.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec!["too_deep", "string_too_long", "event_too_large"]
    );

    let four = json!({"batch": [{}, {}, {}, {}]}).to_string();
    assert_eq!(
        decode_batch(four.as_bytes(), &limits, NOW).expect_err("too many"),
        BodyError::TooManyEvents { count: 4, limit: 3 }
    );
}

#[test]
fn whole_body_errors() {
    let l = Limits::default();
    assert!(matches!(
        decode_batch(b"{nope", &l, NOW),
        Err(BodyError::InvalidJson(_))
    ));
    assert!(matches!(
        decode_batch(b"[1,2]", &l, NOW),
        Err(BodyError::InvalidShape(_))
    ));
    assert!(matches!(
        decode_batch(b"{\"batch\": 3}", &l, NOW),
        Err(BodyError::InvalidShape(_))
    ));
    // Invalid UTF-8 inside a string.
    assert!(matches!(
        decode_batch(b"{\"batch\": [{\"event\": \"\xff\xfe\"}]}", &l, NOW),
        Err(BodyError::InvalidJson(_))
    ));
}

#[test]
fn ndjson_rejects_bad_lines_only_and_defaults_to_track() {
    let body = b"{\"event\": \"A\", \"userId\": \"u\"}\n\n{broken\n{\"type\": \"page\", \"name\": \"Home\", \"anonymousId\": \"a\"}\n";
    let d = decode_ndjson(body, &Limits::default(), NOW).expect("decodes");
    assert_eq!(d.indices, vec![0, 2]);
    assert_eq!(d.rejected.len(), 1);
    assert_eq!(d.rejected[0].index, 1);
    assert_eq!(d.rejected[0].code, "invalid_json");
    assert_eq!(d.events[1].event.as_deref(), Some("Home"));
}

#[test]
fn clock_skew_is_corrected_with_sent_at() {
    // Client clock is 1 hour behind: it says sentAt 09:00 when the server receives at 10:00.
    let received = parse_timestamp("2025-06-01T10:00:00Z").expect("ts");
    let body = json!({"batch": [{"type": "track", "event": "X", "userId": "u",
        "timestamp": "2025-06-01T08:59:00Z", "sentAt": "2025-06-01T09:00:00Z"}]});
    let d =
        decode_batch(body.to_string().as_bytes(), &Limits::default(), received).expect("decodes");
    assert_eq!(
        d.events[0].timestamp_us,
        parse_timestamp("2025-06-01T09:59:00Z").expect("ts")
    );
    assert_eq!(d.events[0].received_at_us, received);
}

#[test]
fn message_id_is_generated_when_missing_and_batch_context_merged() {
    let body = json!({"batch": [{"type": "track", "event": "X", "userId": "u", "context": {"ip": "1"}}],
                      "context": {"ip": "2", "library": {"name": "analytics-node"}}, "writeKey": "k"});
    let d = decode_batch(body.to_string().as_bytes(), &Limits::default(), NOW).expect("decodes");
    assert_eq!(d.write_key.as_deref(), Some("k"));
    assert_eq!(d.events[0].message_id.len(), 36);
    let ctx: serde_json::Value =
        serde_json::from_str(d.events[0].context.as_deref().expect("ctx")).expect("json");
    assert_eq!(ctx["ip"], "1");
    assert_eq!(ctx["library"]["name"], "analytics-node");
}

#[test]
fn decimal_parsing() {
    assert_eq!(parse_decimal("0.1"), Ok(1_000));
    assert_eq!(parse_decimal("-2.00005"), Ok(-20_001));
    assert_eq!(parse_decimal(".5"), Ok(5_000));
    assert!(parse_decimal("1e5").is_err());
    assert!(parse_decimal("").is_err());
    assert_eq!(
        parse_decimal("99999999999999999999"),
        Err("is out of range".into())
    );
    assert_eq!(
        parse_decimal("0000000000000000000000000000000001.5"),
        Ok(15_000)
    );
    assert_eq!(parse_money("0.1"), Ok(1_000));
    assert_eq!(parse_money("1234567.89"), Ok(12_345_678_900));
    assert_eq!(parse_money("1.5e2"), Ok(1_500_000));
    assert_eq!(parse_money("\"7.25\""), Ok(72_500));
    assert!(parse_money("true").is_err());
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any amount with up to 4 decimals survives number -> f64 -> Decimal exactly.
        #[test]
        fn money_round_trips(units in -1_000_000_000i64..1_000_000_000, frac in 0i64..10_000) {
            let text = format!("{units}.{frac:04}");
            let expected = parse_decimal(&text).expect("decimal");
            prop_assert_eq!(parse_money(&text), Ok(expected));
            // Through f64 (as a client library would write it) gives the same value.
            let as_f64: f64 = text.parse().expect("float");
            prop_assert_eq!(parse_money(&format!("{as_f64:e}")), Ok(expected));
        }
    }
}

mod hostile {
    use proptest::prelude::*;

    use super::*;

    fn json_like() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,8})?([eE][+-]?[0-9]{1,3})?",
            "\"([a-zA-Z0-9 :.\\-]|\\\\[nt\"\\\\/]|\\\\u00[0-9a-f]{2}){0,20}\"",
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("type".to_owned()),
                            Just("event".to_owned()),
                            Just("userId".to_owned()),
                            Just("anonymousId".to_owned()),
                            Just("messageId".to_owned()),
                            Just("timestamp".to_owned()),
                            Just("sentAt".to_owned()),
                            Just("properties".to_owned()),
                            Just("context".to_owned()),
                            Just("revenue".to_owned()),
                            Just("currency".to_owned()),
                            Just("quantity".to_owned()),
                            "[a-z]{1,6}"
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| format!(
                    "{{{}}}",
                    kv.iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
            let limits = Limits::default();
            let _ = decode_batch(&body, &limits, NOW);
            let _ = decode_single(&body, EventType::Track, &limits, NOW);
            let _ = decode_ndjson(&body, &limits, NOW);
        }

        /// JSON-shaped hostile batches: every event is either accepted or
        /// rejected with its own index, in order, and nothing panics.
        #[test]
        fn every_event_is_accounted_for(items in prop::collection::vec(json_like(), 0..12)) {
            let body = format!("{{\"batch\":[{}]}}", items.join(","));
            let limits = Limits { max_property_depth: 3, max_string_bytes: 12, ..Limits::default() };
            let d = decode_batch(body.as_bytes(), &limits, NOW).expect("a batch array always decodes");
            prop_assert_eq!(d.total(), items.len());
            let mut seen: Vec<usize> = d.indices.iter().copied().chain(d.rejected.iter().map(|r| r.index)).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..items.len()).collect::<Vec<_>>());
            let ndjson = items.join("\n");
            let n = decode_ndjson(ndjson.as_bytes(), &limits, NOW).expect("lines always decode");
            prop_assert_eq!(n.total(), items.iter().filter(|i| !i.trim().is_empty()).count());
        }
    }
}
