//! `bookings`: bookings made in the range (`Booking Created`, filters and
//! breakdown on that event) and what became of them. A booking's outcome is
//! its latest `Booking Completed`, `Booking Cancelled` or `Booking No Show`
//! event at any time after the range start (so a booking made in March and
//! cancelled in April counts as cancelled in March's numbers); without one
//! it is `open`. Rates divide by all bookings made in the range.
//!
//! Lead time is `properties.lead_time_days`, else `appointment_at` minus
//! the booking time (a malformed `appointment_at` counts as missing). Peak times are local weekday x hour of the appointment
//! (`appointment_at`, else the booking time). Revenue is the `revenue` of
//! completed bookings in the workspace currency (others add nothing, as in
//! `revenue`); ratings are `properties.rating` of the completion.
//! Booking conversion: people with a `Service Viewed` event in the range,
//! and how many of them made a booking within 7 days after (a funnel).
//!
//! `basis` says which bookings a range holds and what the series groups
//! by: `booked` (the default) is bookings *made* in the range, by the day
//! they were made; `appointment` is bookings whose *appointment* (its
//! `appointment_at`, else the booking time) falls in the range, by the day
//! of the appointment, whatever their outcome's time (a cancellation the
//! week before counts in the appointment's month): what a clinic or salon
//! asks ("how many no-shows did we have in March?"). Either way
//! `appointment_weekdays` holds counts and rates by the local weekday of the
//! appointment.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Common, Interval, Period, Session, fill_series, ratio};
use crate::Result;

pub(super) const FIELDS: &[&str] = &["basis"];

#[derive(Debug, Deserialize)]
pub(super) struct Request {
    #[serde(flatten)]
    common: Common,
    /// `booked` (default) or `appointment`.
    #[serde(default)]
    basis: Option<String>,
}

/// Which bookings a range holds and what the series groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    /// Made in the range, by when they were made.
    Booked,
    /// Their appointment in the range, by the appointment's time.
    Appointment,
}

impl Basis {
    fn parse(name: Option<&str>) -> Result<Self> {
        match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("booked") => Ok(Self::Booked),
            Some("appointment") => Ok(Self::Appointment),
            Some(other) => Err(crate::Error::InvalidRequest(format!(
                "basis is booked (when bookings were made) or appointment (when they are for), not {other:?}"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Appointment => "appointment",
        }
    }
}

/// `properties.appointment_at` as a UTC timestamp: an RFC 3339 / ISO-8601
/// text (without offset: UTC; a bare date: midnight UTC); NULL when it is
/// missing, not a string or not such a time. `to_timestamp` would fail the
/// whole request on one malformed value.
const APPOINTMENT_AT: &str = "TRY_CAST(json_get_str(properties, 'appointment_at') AS TIMESTAMP)";

const OUTCOMES: &str = "'Booking Completed', 'Booking Cancelled', 'Booking No Show'";

/// One row per booking of the period (made in it, or its appointment in
/// it: `basis`): its attributes, outcome and `at` (the time its series
/// bucket is of).
fn bookings_sql(
    s: &Session<'_>,
    common: &Common,
    period: &Period,
    filters: &str,
    extra: &str,
    basis: Basis,
) -> String {
    let appointment = format!("coalesce({APPOINTMENT_AT}, timestamp)");
    let (time, at, outcome_since) = match basis {
        Basis::Booked => (
            period.time_sql(),
            "timestamp".to_owned(),
            format!(
                "timestamp >= TIMESTAMP '{}'",
                super::rfc3339(period.start_us)
            ),
        ),
        // An outcome may come before the range (cancelled the week before
        // the appointment): every outcome of the bookings counts.
        Basis::Appointment => (
            period.time_sql_of(&appointment),
            appointment.clone(),
            "TRUE".to_owned(),
        ),
    };
    format!(
        "WITH created AS ( \
           SELECT booking_id, timestamp, coalesce(user_id, anonymous_id) AS person, service_id, staff_id, \
                  coalesce(json_get_float(properties, 'lead_time_days'), \
                           (to_unixtime({APPOINTMENT_AT}) - to_unixtime(timestamp)) / 86400.0) AS lead_days, \
                  {appointment} AS appointment, {at} AS at{extra} \
           FROM events WHERE event = 'Booking Created' AND booking_id IS NOT NULL AND {time} AND {filters}), \
         outcome AS ( \
           SELECT booking_id, last_value(event ORDER BY timestamp) AS outcome, \
                  last_value(json_get_str(properties, 'reason') ORDER BY timestamp) AS reason, \
                  last_value(revenue ORDER BY timestamp) AS revenue, \
                  last_value(currency ORDER BY timestamp) AS currency, \
                  last_value(json_get_float(properties, 'rating') ORDER BY timestamp) AS rating \
           FROM events WHERE event IN ({OUTCOMES}) AND booking_id IS NOT NULL AND {outcome_since} \
           GROUP BY booking_id) \
         SELECT c.*, coalesce(o.outcome, 'open') AS outcome, o.reason, \
                CASE WHEN o.outcome = 'Booking Completed' AND {own} THEN o.revenue END AS revenue, \
                CASE WHEN o.outcome = 'Booking Completed' THEN o.rating END AS rating \
         FROM created c LEFT JOIN outcome o USING (booking_id)",
        own = s.money_sql(common, "o.currency"),
    )
}

const COUNTS: &str = "count(*) AS bookings, \
     count(*) FILTER (WHERE outcome = 'Booking Completed') AS completed, \
     count(*) FILTER (WHERE outcome = 'Booking Cancelled') AS cancelled, \
     count(*) FILTER (WHERE outcome = 'Booking No Show') AS no_shows, \
     count(*) FILTER (WHERE outcome = 'open') AS open, \
     coalesce(sum(revenue), CAST(0 AS DECIMAL(28, 4))) AS revenue";

fn with_rates(mut row: Map<String, Value>) -> Map<String, Value> {
    let n = super::num(&row["bookings"]);
    for (count, rate) in [
        ("completed", "completion_rate"),
        ("cancelled", "cancellation_rate"),
        ("no_shows", "no_show_rate"),
    ] {
        let v = ratio(super::num(&row[count]), n);
        row.insert(rate.into(), v);
    }
    row
}

fn zeros() -> Map<String, Value> {
    let mut m = Map::new();
    for k in ["bookings", "completed", "cancelled", "no_shows", "open"] {
        m.insert(k.into(), json!(0));
    }
    m.insert("revenue".into(), json!("0.0000"));
    m
}

async fn answer(
    s: &Session<'_>,
    common: &Common,
    period: &Period,
    interval: Interval,
    basis: Basis,
) -> Result<Value> {
    let filters = common.filter_sql()?;
    let limit = common.limit()?;
    let breakdown = common.breakdown()?;
    let extra = match &breakdown {
        Some((_, p)) => format!(", {} AS breakdown", p.group_sql()),
        None => String::new(),
    };
    let base = bookings_sql(s, common, period, &filters, &extra, basis);
    let summary = s
        .rows(&format!(
            "SELECT {COUNTS}, avg(lead_days) AS avg_lead_time_days, median(lead_days) AS median_lead_time_days, \
                    avg(rating) AS avg_rating FROM ({base})"
        ))
        .await?
        .pop()
        .unwrap_or_else(zeros);
    let summary = with_rates(summary);
    let bucket = interval.bucket_sql("at");
    let series = s
        .rows(&format!(
            "SELECT {bucket} AS bucket, {COUNTS} FROM ({base}) GROUP BY 1"
        ))
        .await?;
    let series: Vec<Value> = fill_series(&s.buckets(period, interval), series, &zeros())
        .into_iter()
        .map(|v| match v {
            Value::Object(m) => Value::Object(with_rates(m)),
            v => v,
        })
        .collect();
    let reasons = s
        .rows(&format!(
            "SELECT coalesce(reason, '(none)') AS reason, count(*) AS bookings, \
                    round(CAST(count(*) AS DOUBLE) / sum(count(*)) OVER (), 6) AS share \
             FROM ({base}) WHERE outcome = 'Booking Cancelled' GROUP BY 1 ORDER BY bookings DESC, reason LIMIT {limit}"
        ))
        .await?;
    let services = s
        .rows(&format!(
            "SELECT coalesce(service_id, '(none)') AS service_id, {COUNTS} FROM ({base}) \
             GROUP BY 1 ORDER BY bookings DESC, service_id LIMIT {limit}"
        ))
        .await?;
    let staff = s
        .rows(&format!(
            "SELECT coalesce(staff_id, '(none)') AS staff_id, {COUNTS}, avg(rating) AS avg_rating, \
                    count(rating) AS ratings FROM ({base}) \
             GROUP BY 1 ORDER BY revenue DESC, bookings DESC, staff_id LIMIT {limit}"
        ))
        .await?;
    let peak = s
        .rows(&format!(
            "SELECT business_weekday(appointment) AS weekday, business_hour(appointment) AS hour, count(*) AS bookings \
             FROM ({base}) GROUP BY 1, 2 ORDER BY 1, 2"
        ))
        .await?;
    let weekdays: Vec<Value> = s
        .rows(&format!(
            "SELECT business_weekday(appointment) AS weekday, {COUNTS} FROM ({base}) GROUP BY 1 ORDER BY 1"
        ))
        .await?
        .into_iter()
        .map(|r| Value::Object(with_rates(r)))
        .collect();
    let conversion = s
        .rows(&format!(
            "SELECT count(*) AS viewers, count(*) FILTER (WHERE level >= 2) AS booked \
             FROM (SELECT coalesce(user_id, anonymous_id) AS person, \
                          window_funnel(604800, 'sequential', timestamp, event = 'Service Viewed', event = 'Booking Created') AS level \
                   FROM events WHERE event IN ('Service Viewed', 'Booking Created') AND {} AND {filters} \
                   GROUP BY 1) WHERE level >= 1",
            period.time_sql()
        ))
        .await?
        .pop()
        .unwrap_or_default();
    let viewers = super::num(conversion.get("viewers").unwrap_or(&json!(0)));
    let booked = super::num(conversion.get("booked").unwrap_or(&json!(0)));
    let mut out = json!({
        "summary": summary,
        "series": series,
        "cancellation_reasons": reasons,
        "services": services,
        "staff": staff,
        "peak_times": peak,
        "appointment_weekdays": weekdays,
        "conversion": {"viewers": viewers as u64, "booked": booked as u64, "rate": ratio(booked, viewers)},
    });
    if let Some((name, _)) = breakdown {
        let rows = s
            .rows(&format!(
                "SELECT breakdown AS value, {COUNTS}, avg(lead_days) AS avg_lead_time_days FROM ({base}) \
                 GROUP BY 1 ORDER BY bookings DESC, value LIMIT {limit}"
            ))
            .await?;
        let rows: Vec<Value> = rows
            .into_iter()
            .map(|r| Value::Object(with_rates(r)))
            .collect();
        out["breakdown"] = json!({"property": name, "rows": rows});
    }
    Ok(out)
}

pub(super) async fn bookings(s: &Session<'_>, r: Request) -> Result<Value> {
    let basis = Basis::parse(r.basis.as_deref())?;
    let (period, previous) = s.periods(&r.common)?;
    let interval = r.common.interval(&period)?;
    let mut out = answer(s, &r.common, &period, interval, basis).await?;
    out["range"] = s.range_json(&period, Some(interval));
    out["basis"] = json!(basis.name());
    if let Some(prev) = previous {
        let before = answer(s, &r.common, &prev, interval, basis).await?;
        super::attach_previous(&mut out, before, s.range_json(&prev, Some(interval)));
    }
    Ok(out)
}
