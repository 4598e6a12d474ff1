//! REES46 clickstream -> `Product Viewed`, `Product Added`, `Order Completed`.

use std::collections::HashSet;
use std::path::Path;

use chrono::{NaiveDateTime, TimeZone, Utc};
use serde_json::json;

use super::Conversion;
use crate::Result;
use crate::message::{Message, Money};
use crate::table::Table;

pub(super) fn convert(path: &Path) -> Result<Conversion> {
    let table = Table::read(path)?;
    let names = [
        "event_time",
        "event_type",
        "product_id",
        "category_id",
        "category_code",
        "brand",
        "price",
        "user_id",
        "user_session",
    ];
    let cols = names
        .iter()
        .map(|n| table.col(n))
        .collect::<Result<Vec<_>>>()?;
    let [
        time,
        kind,
        product,
        category_id,
        category,
        brand,
        price,
        user,
        session,
    ] = &cols[..]
    else {
        unreachable!("nine columns requested")
    };
    let mut out = Conversion::default();
    out.report.rows = table.rows();
    let mut seen = HashSet::new();
    for i in 0..table.rows() {
        // Exact duplicate rows are the same event logged twice.
        let row: Vec<Option<&str>> = cols.iter().map(|c| c[i]).collect();
        if !seen.insert(row) {
            out.skip("duplicate_row", 1);
            continue;
        }
        let n = i + 1;
        let parsed = (|| {
            let text = time[i]?.trim();
            let text = text.strip_suffix(" UTC").unwrap_or(text);
            let at = Utc
                .from_utc_datetime(&NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?);
            Some((
                at,
                Money::parse(price[i]?)?,
                user[i]?,
                session[i]?,
                product[i]?,
            ))
        })();
        let Some((at, price, user, session, product)) = parsed else {
            out.skip("unparsable_row", 1);
            continue;
        };
        let event = match kind[i].map(str::trim) {
            Some("view") => "Product Viewed",
            Some("cart") => "Product Added",
            Some("purchase") => "Order Completed",
            _ => {
                out.skip("unknown_event_type", 1);
                continue;
            }
        };
        let mut message = Message::track(format!("rees46-{n}"), event, at)
            .user(user)
            .prop("session_id", session)
            .prop("product_id", product)
            .prop("category_id", category_id[i])
            .prop("category", category[i])
            .prop("brand", brand[i])
            .money("price", price)
            .prop("currency", "USD");
        if event == "Order Completed" {
            message = message
                .prop("order_id", format!("rees46-{n}"))
                .money("revenue", price)
                .prop(
                    "products",
                    json!([{
                        "product_id": product,
                        "category": category[i],
                        "brand": brand[i],
                        "price": price.json(),
                        "quantity": 1,
                    }]),
                );
        } else if event == "Product Added" {
            message = message.prop("quantity", 1);
        }
        out.push(message, event);
    }
    Ok(out)
}
