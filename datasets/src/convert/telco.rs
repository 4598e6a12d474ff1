//! IBM Telco churn -> `identify`, `Subscription Started`, monthly
//! `Payment Received`, `Subscription Cancelled` for churned customers.

use std::path::Path;

use chrono::{DateTime, Months, TimeZone, Utc};
use serde_json::{Map, Value};

use super::Conversion;
use crate::Result;
use crate::message::{Message, Money};
use crate::table::Table;

/// The data has no dates: the snapshot is taken to be 2024-01-01 00:00 UTC.
/// A customer with tenure `t` months signed up `t` months before it and paid
/// `MonthlyCharges` at the start of each month of tenure; a churned customer
/// cancelled the day before the snapshot.
pub fn snapshot() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn yes(cell: Option<&str>) -> Option<bool> {
    match cell.map(str::trim) {
        Some("Yes" | "1") => Some(true),
        Some("No" | "0") => Some(false),
        _ => None,
    }
}

pub(super) fn convert(path: &Path) -> Result<Conversion> {
    let table = Table::read(path)?;
    let id = table.col("customerID")?;
    let tenure = table.col("tenure")?;
    let monthly = table.col("MonthlyCharges")?;
    let total = table.col("TotalCharges")?;
    let churn = table.col("Churn")?;
    let contract = table.col("Contract")?;
    let payment_method = table.col("PaymentMethod")?;
    let text_traits = [
        ("gender", "gender"),
        ("MultipleLines", "multiple_lines"),
        ("InternetService", "internet_service"),
        ("OnlineSecurity", "online_security"),
        ("OnlineBackup", "online_backup"),
        ("DeviceProtection", "device_protection"),
        ("TechSupport", "tech_support"),
        ("StreamingTV", "streaming_tv"),
        ("StreamingMovies", "streaming_movies"),
        ("Contract", "contract"),
        ("PaymentMethod", "payment_method"),
    ];
    let flag_traits = [
        ("SeniorCitizen", "senior_citizen"),
        ("Partner", "partner"),
        ("Dependents", "dependents"),
        ("PhoneService", "phone_service"),
        ("PaperlessBilling", "paperless_billing"),
    ];
    let texts = text_traits
        .iter()
        .map(|(c, _)| table.col(c))
        .collect::<Result<Vec<_>>>()?;
    let flags = flag_traits
        .iter()
        .map(|(c, _)| table.col(c))
        .collect::<Result<Vec<_>>>()?;
    let snapshot = snapshot();

    let mut out = Conversion::default();
    out.report.rows = table.rows();
    for i in 0..table.rows() {
        let parsed = (|| {
            let id = id[i]?.trim();
            let tenure: u32 = tenure[i]?.trim().parse().ok()?;
            let monthly = Money::parse(monthly[i]?)?;
            let churned = yes(churn[i])?;
            Some((id, tenure, monthly, churned))
        })();
        let Some((id, tenure, monthly, churned)) = parsed else {
            out.skip("unparsable_row", 1);
            continue;
        };
        // TotalCharges is a single space for customers with tenure 0.
        let total = total[i].and_then(Money::parse);
        if total.is_none() {
            out.note("total_charges_blank");
        }
        let signup = snapshot - Months::new(tenure);
        let mut traits = Map::new();
        for ((_, key), col) in text_traits.iter().zip(&texts) {
            traits.insert((*key).into(), col[i].map_or(Value::Null, Value::from));
        }
        for ((_, key), col) in flag_traits.iter().zip(&flags) {
            traits.insert((*key).into(), yes(col[i]).map_or(Value::Null, Value::from));
        }
        traits.insert("tenure_months".into(), tenure.into());
        traits.insert("monthly_charges".into(), monthly.json());
        traits.insert(
            "total_charges".into(),
            total.map_or(Value::Null, Money::json),
        );
        traits.insert("created_at".into(), crate::message::iso(signup).into());
        out.push(
            Message::identify(format!("telco-{id}-identify"), id, signup, traits),
            "identify",
        );

        let plan = contract[i];
        let method = payment_method[i];
        let started = Message::track(
            format!("telco-{id}-started"),
            "Subscription Started",
            signup,
        )
        .user(id)
        .prop("plan", plan)
        .money("amount", monthly)
        .prop("currency", "USD")
        .prop("payment_method", method);
        out.push(started, "Subscription Started");
        for month in 0..tenure {
            let at = signup + Months::new(month);
            let payment = Message::track(
                format!("telco-{id}-payment-{month}"),
                "Payment Received",
                at,
            )
            .user(id)
            .prop("plan", plan)
            .money("amount", monthly)
            .prop("currency", "USD")
            .prop("payment_method", method)
            .prop("period", month + 1);
            out.push(payment, "Payment Received");
        }
        if churned {
            let cancelled = Message::track(
                format!("telco-{id}-cancelled"),
                "Subscription Cancelled",
                snapshot - chrono::Duration::days(1),
            )
            .user(id)
            .prop("plan", plan)
            .prop("tenure_months", tenure);
            out.push(cancelled, "Subscription Cancelled");
        }
    }
    Ok(out)
}
