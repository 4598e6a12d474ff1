//! Hotel booking demand -> `Booking Created` then `Booking Completed`,
//! `Booking Cancelled` or `Booking No Show`.

use std::path::Path;

use chrono::{Duration, NaiveDate, NaiveTime};
use chrono_tz::Tz;

use super::Conversion;
use crate::Result;
use crate::message::{Message, Money, local_to_utc};
use crate::table::Table;

/// The data has dates but no times: bookings are placed at 10:00 and status
/// changes (check-out, cancellation, no-show) happen at 18:00, hotel time.
const CREATED_AT: (u32, u32) = (10, 0);
const STATUS_AT: (u32, u32) = (18, 0);

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `NULL` and `NA` are the dataset's missing-value markers.
fn present(cell: Option<&str>) -> Option<&str> {
    cell.map(str::trim)
        .filter(|c| !c.is_empty() && *c != "NULL" && *c != "NA")
}

pub(super) fn convert(path: &Path) -> Result<Conversion> {
    let table = Table::read(path)?;
    let col = |name: &str| table.col(name);
    let hotel = col("hotel")?;
    let lead_time = col("lead_time")?;
    let year = col("arrival_date_year")?;
    let month = col("arrival_date_month")?;
    let day = col("arrival_date_day_of_month")?;
    let weekend = col("stays_in_weekend_nights")?;
    let week = col("stays_in_week_nights")?;
    let adults = col("adults")?;
    let children = col("children")?;
    let babies = col("babies")?;
    let meal = col("meal")?;
    let country = col("country")?;
    let segment = col("market_segment")?;
    let channel = col("distribution_channel")?;
    let repeated = col("is_repeated_guest")?;
    let room = col("reserved_room_type")?;
    let deposit = col("deposit_type")?;
    let customer_type = col("customer_type")?;
    let adr = col("adr")?;
    let status = col("reservation_status")?;
    let status_date = col("reservation_status_date")?;
    let tz: Tz = chrono_tz::Europe::Lisbon;
    let at = |date: NaiveDate, (h, m): (u32, u32)| {
        local_to_utc(
            date.and_time(NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default()),
            tz,
        )
    };
    let int = |cell: Option<&str>| present(cell).and_then(|c| c.parse::<i64>().ok());

    let mut out = Conversion::default();
    out.report.rows = table.rows();
    for i in 0..table.rows() {
        let n = i + 1;
        let parsed = (|| {
            let month = MONTHS
                .iter()
                .position(|m| Some(*m) == month[i].map(str::trim))? as u32
                + 1;
            let arrival =
                NaiveDate::from_ymd_opt(int(year[i])? as i32, month, int(day[i])? as u32)?;
            let lead = int(lead_time[i])?;
            let nights = int(weekend[i])? + int(week[i])?;
            let adr = Money::parse(present(adr[i])?)?;
            let status_date =
                NaiveDate::parse_from_str(present(status_date[i])?, "%Y-%m-%d").ok()?;
            Some((arrival, lead, nights, adr, status_date))
        })();
        let Some((arrival, lead, nights, adr, status_date)) = parsed else {
            out.skip("unparsable_row", 1);
            continue;
        };
        if present(country[i]).is_none() {
            out.note("country_null");
        }
        if present(children[i]).is_none() {
            out.note("children_na");
        }
        let amount = adr.times(nights);
        let booking_id = format!("hotel-{n}");
        let guest = format!("hotel-guest-{n}");
        let meal = present(meal[i]).map(|m| if m == "Undefined" { "SC" } else { m });
        let created = at(arrival - Duration::days(lead), CREATED_AT);
        let base = |message_id: String, event: &str, time, status: &str| {
            Message::track(message_id, event, time)
                .person(None, &guest)
                .prop("booking_id", booking_id.as_str())
                .money("amount", amount)
                .prop("currency", "EUR")
                .prop("location", present(hotel[i]))
                .prop("service_id", present(room[i]))
                .prop("channel", present(channel[i]))
                .prop("status", status)
                .prop("arrival_date", arrival.to_string())
                .prop("lead_time_days", lead)
                .prop("nights", nights)
        };
        let created_msg = base(
            format!("hotel-{n}-created"),
            "Booking Created",
            created,
            "created",
        )
        .money("adr", adr)
        .prop("segment", present(segment[i]))
        .prop("country", present(country[i]))
        .prop("adults", int(adults[i]))
        .prop("children", int(children[i]))
        .prop("babies", int(babies[i]))
        .prop("meal", meal)
        .prop("deposit_type", present(deposit[i]))
        .prop("customer_type", present(customer_type[i]))
        .prop("repeated_guest", int(repeated[i]).map(|r| r == 1));
        out.push(created_msg, "Booking Created");
        let (event, status) = match present(status[i]) {
            Some("Check-Out") => ("Booking Completed", "completed"),
            Some("Canceled") => ("Booking Cancelled", "cancelled"),
            Some("No-Show") => ("Booking No Show", "no_show"),
            _ => {
                out.note("unknown_reservation_status");
                continue;
            }
        };
        let message = base(
            format!("hotel-{n}-{status}"),
            event,
            at(status_date, STATUS_AT),
            status,
        );
        out.push(message, event);
    }
    Ok(out)
}
