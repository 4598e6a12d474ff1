//! A workspace's calendar: its business time zone, first day of the week
//! and currency, parsed and validated once from the stored settings.
//!
//! Every component that turns instants into business days, hours or weeks
//! (the SQL functions of [`crate::udf::time`], the analytics API, model
//! series, alert schedules, live metrics, notification quiet hours) takes
//! the zone from here, never from the settings text. [`Engine::calendar`]
//! parses a workspace's settings the first time they are seen and keeps
//! the result until they change. Settings are validated when they are
//! written (`PATCH /v1/workspace`); a stored value that still does not
//! parse (edited database, older time-zone data) is an error, logged once
//! per workspace and settings, and the workspace runs on [`Calendar::default`]
//! (UTC, Monday, USD) meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use beacon_ingest::Tenant;
use chrono::Weekday;
use chrono_tz::Tz;

use crate::udf::time::BusinessCalendar;
use crate::{Engine, Error, Result};

/// A workspace's validated calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Business time zone.
    pub tz: Tz,
    /// First day of the week.
    pub week_start: Weekday,
    /// ISO 4217 business currency (upper case).
    pub currency: String,
}

impl Default for Calendar {
    /// UTC, weeks from Monday, USD: a new workspace's settings.
    fn default() -> Self {
        Self {
            tz: chrono_tz::UTC,
            week_start: Weekday::Mon,
            currency: "USD".to_owned(),
        }
    }
}

impl Calendar {
    /// Parses the settings: an IANA zone (`Europe/London`), a weekday name
    /// (`monday`, `sun`, any case) and a three-letter currency code.
    pub fn parse(timezone: &str, week_start: &str, currency: &str) -> Result<Self> {
        let tz = timezone.parse::<Tz>().map_err(|_| Error::InvalidCalendar {
            setting: "timezone",
            value: timezone.to_owned(),
        })?;
        let week_start = parse_weekday(week_start).ok_or_else(|| Error::InvalidCalendar {
            setting: "week_start",
            value: week_start.to_owned(),
        })?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Error::InvalidCalendar {
                setting: "currency",
                value: currency.to_owned(),
            });
        }
        Ok(Self {
            tz,
            week_start,
            currency: currency.to_ascii_uppercase(),
        })
    }

    /// A workspace's calendar from its stored settings.
    pub fn of(tenant: &Tenant) -> Result<Self> {
        Self::parse(&tenant.timezone, &tenant.week_start, &tenant.currency)
    }

    /// The zone's IANA name (`Europe/London`).
    pub fn time_zone(&self) -> &'static str {
        self.tz.name()
    }

    /// The part the SQL functions take (zone and week start).
    pub fn business(&self) -> BusinessCalendar {
        BusinessCalendar {
            tz: self.tz,
            week_start: self.week_start,
        }
    }
}

fn parse_weekday(name: &str) -> Option<Weekday> {
    Some(match name.to_ascii_lowercase().as_str() {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// The stored settings a cached calendar was parsed from.
type Settings = (String, String, String);

/// Calendars by workspace, each with the settings it was parsed from.
#[derive(Debug, Default, Clone)]
pub(crate) struct Calendars {
    inner: Arc<Mutex<HashMap<String, (Settings, Calendar)>>>,
}

impl Calendars {
    /// The calendar of `tenant`'s settings, parsed once per distinct
    /// settings; invalid ones are logged (once) and fall back to the default.
    fn get(&self, tenant: &Tenant) -> Calendar {
        let settings = (
            tenant.timezone.clone(),
            tenant.week_start.clone(),
            tenant.currency.clone(),
        );
        let mut all = self
            .inner
            .lock()
            .expect("the calendar cache lock is never held across a panic");
        if let Some((seen, calendar)) = all.get(&tenant.id)
            && *seen == settings
        {
            return calendar.clone();
        }
        let calendar = Calendar::of(tenant).unwrap_or_else(|error| {
            tracing::error!(
                tenant = %tenant.id,
                error = %error,
                "Invalid workspace calendar setting; the workspace uses UTC, Monday and USD until it is fixed."
            );
            Calendar::default()
        });
        all.insert(tenant.id.clone(), (settings, calendar.clone()));
        calendar
    }
}

impl Engine {
    /// Now, from the store's clock (the one clock of ingest, the engine,
    /// models and alerts).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let us = self.store().clock().now_us();
        chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
    }

    /// `tenant`'s calendar ([`Calendar::default`] for an unknown workspace).
    pub fn calendar(&self, tenant: &str) -> Calendar {
        match self.store().catalog().tenant(tenant) {
            Ok(t) => self.calendars.get(&t),
            Err(_) => Calendar::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated() {
        let c = Calendar::parse("Europe/London", "Sunday", "eur").expect("valid");
        assert_eq!(
            (c.tz, c.week_start, c.currency.as_str()),
            (chrono_tz::Europe::London, Weekday::Sun, "EUR")
        );
        assert_eq!(c.time_zone(), "Europe/London");
        assert_eq!(
            Calendar::parse("UTC", "tuesday", "USD")
                .ok()
                .map(|c| c.week_start),
            Some(Weekday::Tue)
        );
        for (tz, week, currency, setting) in [
            ("Not/AZone", "monday", "USD", "timezone"),
            ("UTC", "whenever", "USD", "week_start"),
            ("UTC", "monday", "dollars", "currency"),
        ] {
            match Calendar::parse(tz, week, currency) {
                Err(Error::InvalidCalendar { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{tz} {week} {currency}: {other:?}"),
            }
        }
        let d = Calendar::default();
        assert_eq!((d.tz, d.week_start), (chrono_tz::UTC, Weekday::Mon));
    }
}
