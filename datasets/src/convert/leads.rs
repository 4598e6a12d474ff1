//! X Education leads -> `identify` with the lead's traits, `Lead Created`,
//! one `page` call per website visit, `Lead Activity` (the last activity)
//! and `Lead Converted` for converted leads.

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value};

use super::Conversion;
use crate::Result;
use crate::message::Message;
use crate::table::Table;

/// The data has no dates: lead `i` (0-based, file order) is created at
/// 2023-01-01 00:00 UTC + 56 minutes x `i` (the 9,240 leads span a year), its
/// visits follow an hour apart, its last activity an hour after them, and a
/// conversion 7 days after creation.
pub fn created_at(index: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::minutes(56 * index as i64)
}

/// `Select` is the form's "nothing chosen"; empty cells are missing too.
fn chosen(cell: Option<&str>) -> Option<&str> {
    cell.map(str::trim)
        .filter(|c| !c.is_empty() && *c != "Select")
}

fn snake(column: &str) -> String {
    let mut out = String::new();
    for c in column.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// A trait value: Yes/No as booleans, numbers as numbers, text as text.
fn trait_value(cell: Option<&str>) -> Value {
    match chosen(cell) {
        None => Value::Null,
        Some("Yes") => Value::Bool(true),
        Some("No") => Value::Bool(false),
        Some(text) => match text.parse::<f64>() {
            Ok(n) if n.is_finite() => {
                serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
            }
            _ => Value::String(text.to_owned()),
        },
    }
}

pub(super) fn convert(path: &Path) -> Result<Conversion> {
    let table = Table::read(path)?;
    let prospect = table.col("Prospect ID")?;
    let number = table.col("Lead Number")?;
    let origin = table.col("Lead Origin")?;
    let source = table.col("Lead Source")?;
    let converted = table.col("Converted")?;
    let visits = table.col("TotalVisits")?;
    let seconds = table.col("Total Time Spent on Website")?;
    let activity = table.col("Last Activity")?;
    let skip = ["Prospect ID", "Lead Number", "Converted"];
    let trait_cols = [
        "Lead Origin",
        "Lead Source",
        "Do Not Email",
        "Do Not Call",
        "TotalVisits",
        "Total Time Spent on Website",
        "Page Views Per Visit",
        "Last Activity",
        "Country",
        "Specialization",
        "How did you hear about X Education",
        "What is your current occupation",
        "What matters most to you in choosing a course",
        "Search",
        "Magazine",
        "Newspaper Article",
        "X Education Forums",
        "Newspaper",
        "Digital Advertisement",
        "Through Recommendations",
        "Receive More Updates About Our Courses",
        "Tags",
        "Lead Quality",
        "Update me on Supply Chain Content",
        "Get updates on DM Content",
        "Lead Profile",
        "City",
        "Asymmetrique Activity Index",
        "Asymmetrique Profile Index",
        "Asymmetrique Activity Score",
        "Asymmetrique Profile Score",
        "I agree to pay the amount through cheque",
        "A free copy of Mastering The Interview",
        "Last Notable Activity",
    ];
    debug_assert!(trait_cols.iter().all(|c| !skip.contains(c)));
    let traits_data = trait_cols
        .iter()
        .map(|c| table.col(c))
        .collect::<Result<Vec<_>>>()?;

    let mut out = Conversion::default();
    out.report.rows = table.rows();
    for i in 0..table.rows() {
        let parsed = (|| {
            Some((
                prospect[i]?.trim(),
                number[i]?.trim(),
                converted[i]?.trim() == "1",
            ))
        })();
        let Some((id, lead_id, is_converted)) = parsed else {
            out.skip("unparsable_row", 1);
            continue;
        };
        let created = created_at(i);
        let mut traits = Map::new();
        for (col, data) in trait_cols.iter().zip(&traits_data) {
            if data[i].map(str::trim) == Some("Select") {
                out.note(&format!("select_placeholder:{col}"));
            }
            traits.insert(snake(col), trait_value(data[i]));
        }
        traits.insert("lead_id".into(), lead_id.into());
        traits.insert("created_at".into(), crate::message::iso(created).into());
        out.push(
            Message::identify(format!("lead-{lead_id}-identify"), id, created, traits),
            "identify",
        );
        let created_msg =
            Message::track(format!("lead-{lead_id}-created"), "Lead Created", created)
                .user(id)
                .prop("lead_id", lead_id)
                .prop("origin", chosen(origin[i]))
                .prop("source", chosen(source[i]))
                .prop("channel", chosen(source[i]))
                .prop("stage", "new");
        out.push(created_msg, "Lead Created");

        // TotalVisits is empty in 137 rows: no visits are emitted for those.
        let visit_count = match chosen(visits[i]).map(str::parse::<f64>) {
            Some(Ok(v)) if v.is_finite() && v >= 0.0 => v.round() as i64,
            _ => {
                out.note("total_visits_empty");
                0
            }
        };
        let total_seconds = chosen(seconds[i])
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        for v in 0..visit_count {
            let mut page = Message::track(
                format!("lead-{lead_id}-visit-{v}"),
                "Page Viewed",
                created + Duration::hours(v + 1),
            )
            .user(id)
            .prop("lead_id", lead_id)
            .prop("seconds_on_site", total_seconds / visit_count.max(1));
            page = page.page("Course");
            out.push(page, "page");
        }
        if let Some(activity) = chosen(activity[i]) {
            let msg = Message::track(
                format!("lead-{lead_id}-activity"),
                "Lead Activity",
                created + Duration::hours(visit_count + 1),
            )
            .user(id)
            .prop("lead_id", lead_id)
            .prop("activity", activity);
            out.push(msg, "Lead Activity");
        }
        if is_converted {
            let msg = Message::track(
                format!("lead-{lead_id}-converted"),
                "Lead Converted",
                created + Duration::days(7),
            )
            .user(id)
            .prop("lead_id", lead_id)
            .prop("stage", "converted");
            out.push(msg, "Lead Converted");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn snake_case_columns() {
        assert_eq!(
            super::snake("Total Time Spent on Website"),
            "total_time_spent_on_website"
        );
        assert_eq!(
            super::snake("How did you hear about X Education"),
            "how_did_you_hear_about_x_education"
        );
        assert_eq!(super::snake("TotalVisits"), "totalvisits");
    }
}
