//! Unit tests of request parsing and date ranges.
use chrono::NaiveDate;

use super::*;

fn d(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

#[test]
fn presets_end_today_and_custom_includes_to() {
    let tz: Tz = "Europe/London".parse().expect("tz");
    let today = d("2025-03-31");
    let c = Common {
        range: Some("7d".into()),
        ..Common::default()
    };
    let p = Period::resolve(&c, tz, today).expect("7d");
    assert_eq!((p.from, p.to, p.days()), (d("2025-03-25"), today, 7));
    // 30 March 2025 is 23 hours long in London; 31 March starts at 23:00 UTC the day before.
    assert_eq!(rfc3339(p.end_us), "2025-03-31T23:00:00.000000Z");
    assert_eq!(rfc3339(p.start_us), "2025-03-25T00:00:00.000000Z");
    let prev = p.previous(tz);
    assert_eq!((prev.from, prev.to), (d("2025-03-18"), d("2025-03-24")));
    let c = Common {
        from: Some(d("2025-01-01")),
        to: Some(d("2025-01-31")),
        ..Common::default()
    };
    let p = Period::resolve(&c, tz, today).expect("custom");
    assert_eq!(p.days(), 31);
    for bad in [
        Common {
            range: Some("custom".into()),
            from: Some(d("2025-01-01")),
            ..Common::default()
        },
        Common {
            from: Some(d("2025-02-01")),
            to: Some(d("2025-01-01")),
            ..Common::default()
        },
        Common {
            range: Some("7d".into()),
            from: Some(d("2025-01-01")),
            ..Common::default()
        },
        Common {
            range: Some("2d".into()),
            ..Common::default()
        },
        Common {
            from: Some(d("2000-01-01")),
            to: Some(d("2025-01-01")),
            ..Common::default()
        },
    ] {
        assert!(
            matches!(
                Period::resolve(&bad, tz, today),
                Err(Error::InvalidRequest(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn midnight_in_a_dst_gap_is_the_first_valid_time() {
    // Chile springs forward at midnight (00:00 -> 01:00) on 2024-09-08.
    let tz: Tz = "America/Santiago".parse().expect("tz");
    let us = local_midnight_us(tz, d("2024-09-08"));
    assert_eq!(rfc3339(us), "2024-09-08T04:00:00.000000Z");
}

#[test]
fn buckets_follow_the_calendar() {
    let mk = |i: Interval, from: &str, to: &str, week_start| {
        let mut out = Vec::new();
        let mut x = i.start_of(d(from), week_start);
        while x <= d(to) {
            out.push(x.to_string());
            x = i.next(x);
        }
        out
    };
    assert_eq!(
        mk(
            Interval::Week,
            "2025-03-05",
            "2025-03-20",
            chrono::Weekday::Mon
        ),
        ["2025-03-03", "2025-03-10", "2025-03-17"]
    );
    assert_eq!(
        mk(
            Interval::Week,
            "2025-03-05",
            "2025-03-10",
            chrono::Weekday::Sun
        ),
        ["2025-03-02", "2025-03-09"]
    );
    assert_eq!(
        mk(
            Interval::Month,
            "2025-01-31",
            "2025-03-01",
            chrono::Weekday::Mon
        ),
        ["2025-01-01", "2025-02-01", "2025-03-01"]
    );
    assert_eq!(
        mk(
            Interval::Quarter,
            "2025-05-31",
            "2025-07-01",
            chrono::Weekday::Mon
        ),
        ["2025-04-01", "2025-07-01"]
    );
}

#[test]
fn properties_and_filters_are_safe_sql() {
    assert_eq!(Property::parse("location").expect("p").text, "location_id");
    assert_eq!(
        Property::parse("utm.source").expect("p").text,
        "json_as_text(properties, 'utm', 'source')"
    );
    assert_eq!(
        Property::parse("context.ip").expect("p").text,
        "json_as_text(context, 'ip')"
    );
    for bad in ["", "a'b", "a b", ".a", "a..b", "a)", &"x".repeat(101)] {
        assert!(Property::parse(bad).is_err(), "{bad:?}");
    }
    let f: Filter =
        serde_json::from_value(json!({"property": "country", "value": "O'Brien"})).expect("f");
    assert_eq!(
        f.to_sql().expect("sql"),
        "(json_as_text(properties, 'country') IN ('O''Brien'))"
    );
    let f: Filter =
        serde_json::from_value(json!({"property": "revenue", "op": "gte", "value": 10}))
            .expect("f");
    assert_eq!(
        f.to_sql().expect("sql"),
        "CAST(revenue AS DOUBLE) >= CAST(10.0 AS DOUBLE)"
    );
    let f: Filter = serde_json::from_value(
        json!({"property": "channel", "op": "not_in", "value": ["web", "app"]}),
    )
    .expect("f");
    assert_eq!(
        f.to_sql().expect("sql"),
        "(channel IS NULL OR NOT (channel IN ('web', 'app')))"
    );
    // Mixed kinds: one IN list per kind.
    let f: Filter =
        serde_json::from_value(json!({"property": "plan", "value": ["pro", 3, true]})).expect("f");
    assert_eq!(
        f.to_sql().expect("sql"),
        "(json_as_text(properties, 'plan') IN ('pro') OR json_get_float(properties, 'plan') IN (CAST(3.0 AS DOUBLE)) OR lower(json_as_text(properties, 'plan')) IN ('true'))"
    );
    // Products are an order's line items too.
    let f: Filter =
        serde_json::from_value(json!({"property": "product", "value": "sku-1"})).expect("f");
    assert_eq!(
        f.to_sql().expect("sql"),
        "((product_id IN ('sku-1')) OR (event = 'Order Completed' AND message_id IN \
         (SELECT message_id FROM order_items WHERE (product_id IN ('sku-1')))))"
    );
    let f: Filter =
        serde_json::from_value(json!({"property": "product", "op": "neq", "value": "sku-1"}))
            .expect("f");
    assert_eq!(
        f.to_sql().expect("sql"),
        "((product_id IS NULL OR NOT (product_id IN ('sku-1'))) AND NOT (event = 'Order Completed' AND \
         message_id IN (SELECT message_id FROM order_items WHERE (product_id IN ('sku-1')))))"
    );
    for bad in [
        json!({"property": "x", "op": "gt", "value": [1]}),
        json!({"property": "x", "op": "in", "value": []}),
        json!({"property": "x", "value": {"a": 1}}),
        json!({"property": "x", "value": "a\u{0}b"}),
    ] {
        let f: Filter = serde_json::from_value(bad.clone()).expect("shape");
        assert!(f.to_sql().is_err(), "{bad}");
    }
    assert!(serde_json::from_value::<Filter>(json!({"property": "x", "op": "regex"})).is_err());
}

#[test]
fn unknown_fields_are_named() {
    let err = parse::<revenue::Request>(json!({"range": "7d", "colour": "red"}), revenue::FIELDS)
        .expect_err("unknown");
    assert!(err.to_string().contains("colour"), "{err}");
    assert!(
        parse::<revenue::Request>(json!({"range": "7d", "compare": true}), revenue::FIELDS).is_ok()
    );
}
