//! A user's notification preferences and the delivery windows they imply.
//!
//! Preferences are a JSON object stored with the user:
//!
//! ```json
//! {
//!   "channels": {"email": true, "inbox": true, "websocket": true},
//!   "categories": {"marketing": {"email": false}, "alert": {"inbox": true}},
//!   "quiet_hours": {"start": "22:00", "end": "07:00"},
//!   "business_hours": {"start": "09:00", "end": "18:00", "days": ["mon","tue","wed","thu","fri"]},
//!   "digest": "none",
//!   "digest_hour": 8,
//!   "timezone": "Europe/Berlin"
//! }
//! ```
//!
//! Everything is optional; a missing switch is on. `categories` override
//! `channels`. Quiet hours and business hours only ever *defer* a
//! non-critical email to the next allowed minute (the inbox and the live
//! push are silent and go at once); critical notifications ignore both.
//! `digest: "daily"` collects non-critical emails into one email at
//! `digest_hour` (local time). Times are in `timezone`, else the
//! workspace's business time zone.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{Channel, NotifyError};

/// A daily time range `start..end` (local); `end < start` wraps midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursRange {
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`.
    pub end: String,
    /// Weekdays the range applies to (`mon`..`sun`); all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
}

/// How often non-critical emails are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Digest {
    /// Each email at once.
    #[default]
    None,
    /// One email a day at `digest_hour`.
    Daily,
}

/// A user's preferences (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Channel switches (`inbox`, `websocket`, `email`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, bool>,
    /// Per-category channel switches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, BTreeMap<String, bool>>,
    /// No non-critical email in this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<HoursRange>,
    /// Non-critical email only in this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<HoursRange>,
    /// Digest frequency.
    #[serde(default)]
    pub digest: Digest,
    /// Local hour of the daily digest (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_hour: Option<u32>,
    /// IANA time zone of the hours (default: the workspace's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

fn parse_day(s: &str) -> Option<Weekday> {
    match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Some(Weekday::Mon),
        "tue" | "tuesday" => Some(Weekday::Tue),
        "wed" | "wednesday" => Some(Weekday::Wed),
        "thu" | "thursday" => Some(Weekday::Thu),
        "fri" | "friday" => Some(Weekday::Fri),
        "sat" | "saturday" => Some(Weekday::Sat),
        "sun" | "sunday" => Some(Weekday::Sun),
        _ => None,
    }
}

impl HoursRange {
    fn validate(&self, what: &str) -> Result<(), NotifyError> {
        for t in [&self.start, &self.end] {
            if parse_hhmm(t).is_none() {
                return Err(NotifyError::invalid(format!(
                    "{what}: {t:?} is not a HH:MM time"
                )));
            }
        }
        if self.start == self.end {
            return Err(NotifyError::invalid(format!(
                "{what}: start and end are equal (an empty range)"
            )));
        }
        for d in &self.days {
            if parse_day(d).is_none() {
                return Err(NotifyError::invalid(format!(
                    "{what}: {d:?} is not a weekday (mon..sun)"
                )));
            }
        }
        Ok(())
    }

    /// Whether local time `t` is inside the range.
    fn contains(&self, t: &chrono::NaiveDateTime) -> bool {
        let (Some(start), Some(end)) = (parse_hhmm(&self.start), parse_hhmm(&self.end)) else {
            return false;
        };
        let time = t.time();
        // A range that wraps midnight belongs to the day it starts on.
        let (inside, day) = if start < end {
            (time >= start && time < end, t.date())
        } else if time >= start {
            (true, t.date())
        } else {
            (time < end, t.date() - Duration::days(1))
        };
        inside
            && (self.days.is_empty()
                || self
                    .days
                    .iter()
                    .any(|d| parse_day(d) == Some(day.weekday())))
    }
}

impl Preferences {
    /// Checks the times, zone and digest hour.
    pub fn validate(&self) -> Result<(), NotifyError> {
        for ch in self
            .channels
            .keys()
            .chain(self.categories.values().flat_map(|m| m.keys()))
        {
            if Channel::parse(ch).is_none() {
                return Err(NotifyError::invalid(format!(
                    "unknown channel {ch:?} in preferences; use inbox, websocket, webhook or email"
                )));
            }
        }
        if let Some(q) = &self.quiet_hours {
            q.validate("quiet_hours")?;
        }
        if let Some(b) = &self.business_hours {
            b.validate("business_hours")?;
        }
        if self.digest_hour.is_some_and(|h| h > 23) {
            return Err(NotifyError::invalid("digest_hour must be 0..=23"));
        }
        if let Some(tz) = &self.timezone
            && tz.parse::<Tz>().is_err()
        {
            return Err(NotifyError::invalid(format!("unknown time zone {tz:?}")));
        }
        Ok(())
    }

    /// Whether `channel` is on for `category`.
    pub fn allows(&self, category: &str, channel: Channel) -> bool {
        let name = channel.as_str();
        if let Some(on) = self.categories.get(category).and_then(|m| m.get(name)) {
            return *on;
        }
        self.channels.get(name).copied().unwrap_or(true)
    }

    /// The user's zone (validated when set), else the workspace's.
    fn zone(&self, workspace: Tz) -> Tz {
        self.timezone
            .as_deref()
            .and_then(|z| z.parse().ok())
            .unwrap_or(workspace)
    }

    fn blocked(&self, local: &chrono::NaiveDateTime) -> bool {
        self.quiet_hours.as_ref().is_some_and(|q| q.contains(local))
            || self
                .business_hours
                .as_ref()
                .is_some_and(|b| !b.contains(local))
    }

    /// The first moment at or after `now` when a non-critical email may go
    /// (`now` itself when no hours apply), searched minute by minute over
    /// at most 8 days.
    pub fn next_allowed(&self, now: DateTime<Utc>, default_zone: Tz) -> DateTime<Utc> {
        if self.quiet_hours.is_none() && self.business_hours.is_none() {
            return now;
        }
        let tz = self.zone(default_zone);
        let mut t = now;
        if !self.blocked(&t.with_timezone(&tz).naive_local()) {
            return now;
        }
        // Step to whole minutes: ranges are given in minutes.
        t = t
            - Duration::seconds(i64::from(t.second()))
            - Duration::nanoseconds(i64::from(t.nanosecond()))
            + Duration::minutes(1);
        for _ in 0..(8 * 24 * 60) {
            if !self.blocked(&t.with_timezone(&tz).naive_local()) {
                return t;
            }
            t += Duration::minutes(1);
        }
        now
    }

    /// The next daily digest time strictly after `now`.
    pub fn next_digest(&self, now: DateTime<Utc>, default_zone: Tz) -> DateTime<Utc> {
        let tz = self.zone(default_zone);
        let hour = self.digest_hour.unwrap_or(8);
        let local = now.with_timezone(&tz);
        for days in 0..3 {
            let date = local.date_naive() + Duration::days(days);
            let Some(at) = date.and_hms_opt(hour, 0, 0) else {
                continue;
            };
            // A DST gap skips the hour: take the earliest valid instant.
            if let Some(t) = tz.from_local_datetime(&at).earliest() {
                let t = t.with_timezone(&Utc);
                if t > now {
                    return t;
                }
            }
        }
        now + Duration::days(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn quiet_hours_wrap_midnight_and_defer_to_their_end() {
        let p = Preferences {
            quiet_hours: Some(HoursRange {
                start: "22:00".into(),
                end: "07:00".into(),
                days: vec![],
            }),
            ..Default::default()
        };
        assert_eq!(
            p.next_allowed(at("2026-12-01T21:59:00Z"), Tz::UTC),
            at("2026-12-01T21:59:00Z")
        );
        assert_eq!(
            p.next_allowed(at("2026-12-01T23:30:10Z"), Tz::UTC),
            at("2026-12-02T07:00:00Z")
        );
        assert_eq!(
            p.next_allowed(at("2026-12-02T03:00:00Z"), Tz::UTC),
            at("2026-12-02T07:00:00Z")
        );
        // In the user's zone: 22:00 in Berlin (UTC+1 in December) is 21:00 UTC.
        let berlin = Preferences {
            timezone: Some("Europe/Berlin".into()),
            ..p
        };
        assert_eq!(
            berlin.next_allowed(at("2026-12-01T21:30:00Z"), Tz::UTC),
            at("2026-12-02T06:00:00Z")
        );
    }

    #[test]
    fn business_hours_defer_to_the_next_working_morning() {
        let p = Preferences {
            business_hours: Some(HoursRange {
                start: "09:00".into(),
                end: "17:00".into(),
                days: ["mon", "tue", "wed", "thu", "fri"]
                    .map(String::from)
                    .to_vec(),
            }),
            ..Default::default()
        };
        // Friday 2026-12-04 18:00 -> Monday 2026-12-07 09:00.
        assert_eq!(
            p.next_allowed(at("2026-12-04T18:00:00Z"), Tz::UTC),
            at("2026-12-07T09:00:00Z")
        );
        assert_eq!(
            p.next_allowed(at("2026-12-04T10:00:00Z"), Tz::UTC),
            at("2026-12-04T10:00:00Z")
        );
    }

    #[test]
    fn switches_and_validation() {
        let p: Preferences = serde_json::from_value(serde_json::json!({
            "channels": {"email": false},
            "categories": {"alert": {"email": true}}
        }))
        .expect("prefs");
        assert!(p.allows("alert", Channel::Email));
        assert!(!p.allows("billing", Channel::Email));
        assert!(p.allows("billing", Channel::Inbox));
        let bad: Preferences = serde_json::from_value(
            serde_json::json!({"quiet_hours": {"start": "25:00", "end": "07:00"}}),
        )
        .expect("prefs");
        assert!(bad.validate().is_err());
        assert!(serde_json::from_value::<Preferences>(serde_json::json!({"quiet": 1})).is_err());
    }

    #[test]
    fn digest_is_next_local_hour() {
        let p = Preferences {
            digest: Digest::Daily,
            digest_hour: Some(8),
            ..Default::default()
        };
        assert_eq!(
            p.next_digest(at("2026-12-01T07:00:00Z"), Tz::UTC),
            at("2026-12-01T08:00:00Z")
        );
        assert_eq!(
            p.next_digest(at("2026-12-01T08:00:00Z"), Tz::UTC),
            at("2026-12-02T08:00:00Z")
        );
    }
}
