//! UCI Online Retail -> `Order Completed` / `Order Refunded`.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::Conversion;
use crate::Result;
use crate::message::{Message, Money, local_to_utc};
use crate::table::Table;

/// Events larger than this lose their line-item names (Beacon's default
/// event limit is 64 KiB; a handful of wholesale invoices have 700+ lines).
const EVENT_BUDGET: usize = 60 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Product,
    Shipping,
    Discount,
    Adjustment,
}

/// Product codes are five digits with up to two letters (`85123A`), plus
/// the `DCGS...` and `gift_...` items; `POST`, `DOT` and `C2` are postage and
/// carriage, `D` is a discount, everything else (`M`, `S`, `BANK CHARGES`,
/// `AMAZONFEE`, `CRUK`, `B`, `PADS`, ...) is an adjustment.
fn line_kind(code: &str) -> LineKind {
    let bytes = code.as_bytes();
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let letters = &bytes[digits..];
    if (digits == 5 && letters.len() <= 2 && letters.iter().all(u8::is_ascii_alphabetic))
        || code.starts_with("DCGS")
        || code.starts_with("gift_")
    {
        return LineKind::Product;
    }
    match code {
        "POST" | "DOT" | "C2" => LineKind::Shipping,
        "D" => LineKind::Discount,
        _ => LineKind::Adjustment,
    }
}

struct Line<'a> {
    code: &'a str,
    name: Option<&'a str>,
    quantity: i64,
    price: Money,
    time: NaiveDateTime,
    customer: Option<&'a str>,
    country: Option<&'a str>,
}

pub(super) fn convert(path: &Path) -> Result<Conversion> {
    let table = Table::read(path)?;
    let invoice = table.col("InvoiceNo")?;
    let code = table.col("StockCode")?;
    let name = table.col("Description")?;
    let quantity = table.col("Quantity")?;
    let date = table.col("InvoiceDate")?;
    let price = table.col("UnitPrice")?;
    let customer = table.col("CustomerID")?;
    let country = table.col("Country")?;
    let tz: Tz = chrono_tz::Europe::London;

    let mut out = Conversion::default();
    out.report.rows = table.rows();
    // Lines grouped by invoice, invoices in order of first appearance.
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<Line<'_>>> = HashMap::new();
    for i in 0..table.rows() {
        let parsed = (|| {
            let inv = invoice[i]?;
            let line = Line {
                code: code[i]?,
                name: name[i],
                quantity: quantity[i]?.trim().parse().ok()?,
                price: Money::parse(price[i]?)?,
                time: NaiveDateTime::parse_from_str(date[i]?.trim(), "%Y-%m-%d %H:%M:%S").ok()?,
                customer: customer[i].map(str::trim).filter(|c| !c.is_empty()),
                country: country[i],
            };
            Some((inv, line))
        })();
        let Some((inv, line)) = parsed else {
            out.skip("unparsable_row", 1);
            continue;
        };
        groups
            .entry(inv)
            .or_insert_with(|| {
                order.push(inv);
                Vec::new()
            })
            .push(line);
    }

    for inv in order {
        let lines = &groups[inv];
        let products: Vec<&Line<'_>> = lines
            .iter()
            .filter(|l| line_kind(l.code) == LineKind::Product)
            .collect();
        let time = lines
            .iter()
            .map(|l| l.time)
            .min()
            .map(|t| local_to_utc(t, tz));
        let Some(time) = time else { continue };
        let customer = lines.iter().find_map(|l| l.customer).map(customer_id);
        let country = lines.iter().find_map(|l| l.country);
        let sum = |kind: LineKind| -> Money {
            lines
                .iter()
                .filter(|l| line_kind(l.code) == kind)
                .map(|l| l.price.times(l.quantity))
                .sum()
        };
        let anonymous = format!("online-retail-guest-{inv}");
        let message_id = format!("online-retail-{inv}");
        if inv.starts_with('A') {
            out.skip("bad_debt_adjustment", lines.len());
        } else if inv.starts_with('C') {
            if products.is_empty() {
                out.skip("credit_without_products", lines.len());
                continue;
            }
            let refund = -sum(LineKind::Product);
            let build = |names: bool| {
                Message::track(message_id.clone(), "Order Refunded", time)
                    .person(customer.as_deref(), &anonymous)
                    .prop("order_id", inv)
                    .money("total", refund)
                    .prop("currency", "GBP")
                    .prop("country", country)
                    .prop("reason", "cancelled invoice")
                    .prop("products", line_items(&products, -1, names))
            };
            push_within_budget(&mut out, build, "Order Refunded");
        } else if lines.iter().all(|l| l.quantity < 0) {
            out.skip("stock_adjustment", lines.len());
        } else if lines.iter().all(|l| l.price == Money(0)) {
            // Anonymous zero-price invoices ("found", "check", "adjustment"):
            // stock coming back, not sales.
            out.skip("zero_value_invoice", lines.len());
        } else if products.is_empty() {
            out.skip("no_product_lines", lines.len());
        } else {
            let revenue = sum(LineKind::Product);
            let shipping = sum(LineKind::Shipping);
            let discount = -sum(LineKind::Discount);
            let adjustments = sum(LineKind::Adjustment);
            let total: Money = lines.iter().map(|l| l.price.times(l.quantity)).sum();
            let build = |names: bool| {
                let mut m = Message::track(message_id.clone(), "Order Completed", time)
                    .person(customer.as_deref(), &anonymous)
                    .prop("order_id", inv)
                    .money("revenue", revenue);
                if shipping != Money(0) {
                    m = m.money("shipping", shipping);
                }
                if discount != Money(0) {
                    m = m.money("discount", discount);
                }
                if adjustments != Money(0) {
                    m = m.money("adjustments", adjustments);
                }
                m.money("total", total)
                    .prop("currency", "GBP")
                    .prop("country", country)
                    .prop("products", line_items(&products, 1, names))
            };
            push_within_budget(&mut out, build, "Order Completed");
            if customer.is_none() {
                out.note("anonymous_orders");
            }
        }
    }
    Ok(out)
}

fn push_within_budget(out: &mut Conversion, build: impl Fn(bool) -> Message, name: &str) {
    let full = build(true);
    if full.line().len() <= EVENT_BUDGET {
        out.push(full, name);
    } else {
        out.push(build(false), name);
        out.note("line_item_names_dropped");
    }
}

/// `17850.0` (the Spark export writes ids as floats) -> `17850`.
fn customer_id(raw: &str) -> String {
    raw.strip_suffix(".0").unwrap_or(raw).to_owned()
}

fn line_items(lines: &[&Line<'_>], sign: i64, names: bool) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|l| {
                let mut item = Map::new();
                item.insert("product_id".into(), l.code.into());
                if let (true, Some(name)) = (names, l.name) {
                    item.insert("name".into(), name.trim().into());
                }
                item.insert("price".into(), l.price.json());
                item.insert("quantity".into(), (l.quantity * sign).into());
                Value::Object(item)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_codes() {
        for code in [
            "85123A",
            "22423",
            "84029G",
            "DCGS0003",
            "gift_0001_20",
            "15056BL",
        ] {
            assert!(line_kind(code) == LineKind::Product, "{code}");
        }
        assert!(line_kind("POST") == LineKind::Shipping);
        assert!(line_kind("D") == LineKind::Discount);
        for code in [
            "M",
            "m",
            "BANK CHARGES",
            "AMAZONFEE",
            "B",
            "S",
            "CRUK",
            "PADS",
            "123456",
        ] {
            assert!(line_kind(code) == LineKind::Adjustment, "{code}");
        }
    }
}
