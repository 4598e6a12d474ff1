//! Each converter on the real files, checked against the golden numbers
//! DuckDB computed independently (`datasets/scripts/golden.py` ->
//! `datasets/golden/converters.json`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Decimal128Type;
use beacon_datasets::convert::{Conversion, Dataset};
use beacon_datasets::message::Money;
use beacon_datasets::output::{read_messages, write_lines};
use beacon_ingest::schema::columns;
use chrono::DateTime;
use serde_json::Value;

fn data(dataset: Dataset) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(dataset.default_file())
}

fn golden(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/converters.json");
    let all: Value =
        serde_json::from_slice(&std::fs::read(path).expect("golden file")).expect("golden json");
    all[name].clone()
}

fn convert(dataset: Dataset) -> (Conversion, Vec<Value>) {
    let conversion = dataset.convert(&data(dataset)).expect("converts");
    let messages = conversion
        .lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    (conversion, messages)
}

fn counts(value: &Value) -> BTreeMap<String, usize> {
    serde_json::from_value(value.clone()).expect("a map of counts")
}

fn money(value: &Value) -> Money {
    match value {
        Value::Number(n) => Money::parse(&n.to_string()).expect("money number"),
        Value::String(s) => Money::parse(s).expect("money string"),
        other => panic!("not money: {other}"),
    }
}

fn sum(messages: &[Value], event: &str, key: &str) -> Money {
    messages
        .iter()
        .filter(|m| m["event"] == event)
        .map(|m| money(&m["properties"][key]))
        .sum()
}

fn golden_money(v: &Value) -> Money {
    Money::parse(v.as_str().expect("golden money is a string")).expect("golden money parses")
}

#[test]
fn online_retail_matches_duckdb() {
    let g = golden("online_retail");
    let (conversion, messages) = convert(Dataset::OnlineRetail);
    let report = &conversion.report;
    assert_eq!(report.rows as u64, g["rows"].as_u64().expect("rows"));
    assert_eq!(report.events, counts(&g["events"]));
    let skipped: BTreeMap<String, usize> = g["skipped"]
        .as_object()
        .expect("skipped")
        .iter()
        .map(|(k, v)| (k.clone(), v["lines"].as_u64().expect("lines") as usize))
        .collect();
    assert_eq!(report.skipped_rows, skipped);

    assert_eq!(
        sum(&messages, "Order Completed", "revenue"),
        golden_money(&g["revenue_sum"])
    );
    assert_eq!(
        sum(&messages, "Order Completed", "total"),
        golden_money(&g["total_sum"])
    );
    assert_eq!(
        sum(&messages, "Order Refunded", "total"),
        golden_money(&g["refund_total_sum"])
    );
    let shipping: Money = messages
        .iter()
        .filter(|m| m["event"] == "Order Completed")
        .filter_map(|m| m["properties"].get("shipping").map(money))
        .sum();
    assert_eq!(shipping, golden_money(&g["shipping_sum"]));

    let orders: Vec<&Value> = messages
        .iter()
        .filter(|m| m["event"] == "Order Completed")
        .collect();
    let anonymous = orders.iter().filter(|m| m.get("userId").is_none()).count();
    assert_eq!(
        anonymous as u64,
        g["orders_anonymous"].as_u64().expect("anonymous")
    );
    assert_eq!(report.notes.get("anonymous_orders"), Some(&anonymous));
    let customers: BTreeSet<&str> = orders.iter().filter_map(|m| m["userId"].as_str()).collect();
    assert_eq!(
        customers.len() as u64,
        g["distinct_customers"].as_u64().expect("customers")
    );
    assert!(
        customers.contains("17850"),
        "float customer ids are written as integers"
    );
    let items: usize = orders
        .iter()
        .map(|m| {
            m["properties"]["products"]
                .as_array()
                .expect("products")
                .len()
        })
        .sum();
    assert_eq!(
        items as u64,
        g["order_product_line_items"].as_u64().expect("items")
    );

    // Revenue by month of the London wall-clock time: checks the time-zone conversion.
    let tz = chrono_tz::Europe::London;
    let mut by_month: BTreeMap<String, (u64, Money)> = BTreeMap::new();
    for m in &orders {
        let t = DateTime::parse_from_rfc3339(m["timestamp"].as_str().expect("timestamp"))
            .expect("rfc3339");
        let month = t.with_timezone(&tz).format("%Y-%m").to_string();
        let entry = by_month.entry(month).or_default();
        entry.0 += 1;
        entry.1 += money(&m["properties"]["revenue"]);
    }
    let expected: BTreeMap<String, (u64, Money)> = g["by_month"]
        .as_object()
        .expect("by_month")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (
                    v["orders"].as_u64().expect("orders"),
                    golden_money(&v["revenue"]),
                ),
            )
        })
        .collect();
    assert_eq!(by_month, expected);

    // Every event fits the server's default event limit.
    assert!(conversion.lines.iter().all(|l| l.len() < 64 * 1024));
}

#[test]
fn online_retail_parquet_goes_through_the_ingest_decoder() {
    let g = golden("online_retail");
    let conversion = Dataset::OnlineRetail
        .convert(&data(Dataset::OnlineRetail))
        .expect("converts");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("retail.parquet");
    let written = write_lines(&conversion.lines, &path).expect("writes parquet");
    assert!(
        written.rejected.is_empty(),
        "{:?}",
        written.rejected.first()
    );
    assert_eq!(written.events, conversion.lines.len());

    // The promoted revenue column of Order Completed sums to DuckDB's figure.
    let file = std::fs::File::open(&path).expect("open");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut revenue = 0i128;
    let mut refunds = 0i128;
    for batch in reader {
        let batch = batch.expect("batch");
        let event = batch
            .column_by_name(columns::EVENT)
            .expect("event")
            .as_string::<i32>()
            .clone();
        let rev = batch
            .column_by_name(columns::REVENUE)
            .expect("revenue")
            .as_primitive::<Decimal128Type>()
            .clone();
        for i in 0..batch.num_rows() {
            match event.value(i) {
                "Order Completed" => revenue += rev.value(i),
                "Order Refunded" if rev.is_valid(i) => refunds += rev.value(i),
                _ => {}
            }
        }
    }
    assert_eq!(Money(revenue), golden_money(&g["revenue_sum"]));
    assert_eq!(Money(refunds), golden_money(&g["refund_total_sum"]));

    // And reads back as the same messages.
    let (back, bad) = read_messages(&path).expect("reads back");
    assert_eq!((back.len(), bad), (conversion.lines.len(), 0));
}

#[test]
fn hotel_bookings_match_duckdb() {
    let g = golden("hotel_bookings");
    let (conversion, messages) = convert(Dataset::HotelBookings);
    let report = &conversion.report;
    assert_eq!(report.rows as u64, g["rows"].as_u64().expect("rows"));
    assert_eq!(report.events, counts(&g["events"]));
    assert!(report.skipped_rows.is_empty(), "{:?}", report.skipped_rows);
    assert_eq!(
        sum(&messages, "Booking Created", "amount"),
        golden_money(&g["created_amount_sum"])
    );
    assert_eq!(
        sum(&messages, "Booking Completed", "amount"),
        golden_money(&g["completed_amount_sum"])
    );
    assert_eq!(
        report.notes.get("country_null").copied(),
        g["country_null_count"].as_u64().map(|n| n as usize)
    );
    assert_eq!(
        report.notes.get("children_na").copied(),
        g["children_na_count"].as_u64().map(|n| n as usize)
    );
    let by_hotel: BTreeMap<String, usize> = messages
        .iter()
        .filter(|m| m["event"] == "Booking Created")
        .fold(BTreeMap::new(), |mut acc, m| {
            *acc.entry(
                m["properties"]["location"]
                    .as_str()
                    .expect("hotel")
                    .to_owned(),
            )
            .or_default() += 1;
            acc
        });
    assert_eq!(by_hotel, counts(&g["by_hotel"]));
    // `NULL` never leaks into a property.
    assert!(conversion.lines.iter().all(|l| !l.contains("\"NULL\"")));
    // Cancellations by month of the status date.
    let tz = chrono_tz::Europe::Lisbon;
    let mut by_month: BTreeMap<String, usize> = BTreeMap::new();
    for m in messages
        .iter()
        .filter(|m| m["event"] == "Booking Cancelled")
    {
        let t = DateTime::parse_from_rfc3339(m["timestamp"].as_str().expect("timestamp"))
            .expect("rfc3339");
        *by_month
            .entry(t.with_timezone(&tz).format("%Y-%m").to_string())
            .or_default() += 1;
    }
    assert_eq!(by_month, counts(&g["cancellations_by_status_month"]));
}

#[test]
fn clickstream_matches_duckdb() {
    let g = golden("clickstream");
    let (conversion, messages) = convert(Dataset::Clickstream);
    let report = &conversion.report;
    assert_eq!(report.rows as u64, g["rows"].as_u64().expect("rows"));
    assert_eq!(report.events, counts(&g["events"]));
    assert_eq!(report.skipped_rows, counts(&g["skipped"]));
    assert_eq!(
        sum(&messages, "Order Completed", "revenue"),
        golden_money(&g["purchase_revenue_sum"])
    );
    let users: BTreeSet<&str> = messages
        .iter()
        .filter_map(|m| m["userId"].as_str())
        .collect();
    let sessions: BTreeSet<&str> = messages
        .iter()
        .filter_map(|m| m["properties"]["session_id"].as_str())
        .collect();
    assert_eq!(
        users.len() as u64,
        g["distinct_users"].as_u64().expect("users")
    );
    assert_eq!(
        sessions.len() as u64,
        g["distinct_sessions"].as_u64().expect("sessions")
    );
    // 19-digit category ids survive as text.
    assert!(
        messages
            .iter()
            .any(|m| m["properties"]["category_id"] == "2053013553559896355")
    );
}

#[test]
fn telco_churn_matches_duckdb() {
    let g = golden("telco_churn");
    let (conversion, messages) = convert(Dataset::TelcoChurn);
    let report = &conversion.report;
    assert_eq!(report.rows as u64, g["rows"].as_u64().expect("rows"));
    assert_eq!(report.events, counts(&g["events"]));
    assert_eq!(
        sum(&messages, "Payment Received", "amount"),
        golden_money(&g["payments_sum"])
    );
    assert_eq!(
        report.notes.get("total_charges_blank").copied(),
        g["total_charges_blank"].as_u64().map(|n| n as usize)
    );
    let identify = messages
        .iter()
        .find(|m| m["type"] == "identify")
        .expect("identify");
    assert!(identify["traits"]["senior_citizen"].is_boolean());
    assert!(identify["traits"]["tenure_months"].is_u64());
}

#[test]
fn lead_scoring_matches_duckdb() {
    let g = golden("lead_scoring");
    let (conversion, messages) = convert(Dataset::LeadScoring);
    let report = &conversion.report;
    assert_eq!(report.rows as u64, g["rows"].as_u64().expect("rows"));
    assert_eq!(report.events, counts(&g["events"]));
    assert_eq!(
        report.notes.get("total_visits_empty").copied(),
        g["total_visits_empty"].as_u64().map(|n| n as usize)
    );
    for (column, n) in counts(&g["select_placeholder_counts"]) {
        assert_eq!(
            report.notes.get(&format!("select_placeholder:{column}")),
            Some(&n),
            "{column}"
        );
    }
    // `Select` never leaks into traits.
    assert!(
        messages
            .iter()
            .filter(|m| m["type"] == "identify")
            .all(|m| {
                m["traits"]
                    .as_object()
                    .expect("traits")
                    .values()
                    .all(|v| v != "Select")
            })
    );
}
