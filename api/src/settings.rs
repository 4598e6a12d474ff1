//! Validation of workspace settings, shared by `PATCH /v1/workspace` and
//! `beacon tenants create --timezone/--currency/--week-start`, so both
//! accept and refuse exactly the same values.
//!
//! A new workspace starts in `UTC`, `USD`, weeks starting on Monday (set in
//! `beacon_ingest::Catalog::create_tenant`); see `docs/workspace.md`.

use std::fmt;
use std::str::FromStr;

use beacon_ingest::Tenant;
use serde_json::{Value, json};

/// Week start names, as stored.
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A refused setting: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// The setting (`timezone`, `currency`, `week_start`).
    pub field: &'static str,
    /// What is wrong, for the user.
    pub reason: String,
}

impl InvalidSetting {
    /// The `{"field", "reason"}` item of a 400 `invalid_settings` answer.
    pub fn to_json(&self) -> Value {
        json!({"field": self.field, "reason": self.reason})
    }
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidSetting {}

/// Requested changes of the calendar settings; `None` keeps a setting.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// IANA time zone.
    pub timezone: Option<String>,
    /// ISO 4217 currency code.
    pub currency: Option<String>,
    /// First day of the week.
    pub week_start: Option<String>,
}

impl Changes {
    /// The changes, normalized, or every invalid one.
    pub fn validate(self) -> Result<Self, Vec<InvalidSetting>> {
        let mut problems = Vec::new();
        let mut check = |value: Option<String>, f: fn(&str) -> Result<String, InvalidSetting>| {
            value.and_then(|v| f(&v).map_err(|e| problems.push(e)).ok())
        };
        let valid = Self {
            timezone: check(self.timezone, timezone),
            currency: check(self.currency, currency),
            week_start: check(self.week_start, week_start),
        };
        if problems.is_empty() {
            Ok(valid)
        } else {
            Err(problems)
        }
    }

    /// Writes the changes into `tenant` (after [`Self::validate`]).
    pub fn apply_to(self, tenant: &mut Tenant) {
        if let Some(tz) = self.timezone {
            tenant.timezone = tz;
        }
        if let Some(code) = self.currency {
            tenant.currency = code;
        }
        if let Some(day) = self.week_start {
            tenant.week_start = day;
        }
    }
}

/// An IANA time zone name (`Europe/London`), kept as given.
pub fn timezone(tz: &str) -> Result<String, InvalidSetting> {
    if arrow::array::timezone::Tz::from_str(tz).is_err() {
        return Err(InvalidSetting {
            field: "timezone",
            reason: format!("{tz:?} is not an IANA time zone"),
        });
    }
    Ok(tz.to_owned())
}

/// An ISO 4217 currency code, upper-cased (`eur` is `EUR`). Three letters
/// are not enough: a typo (`EUT`) would move every sale to
/// `other_currencies`.
pub fn currency(code: &str) -> Result<String, InvalidSetting> {
    let code = code.to_ascii_uppercase();
    if iso_currency::Currency::from_code(&code).is_none() {
        return Err(InvalidSetting {
            field: "currency",
            reason: format!("{code:?} is not an ISO 4217 currency code"),
        });
    }
    Ok(code)
}

/// A weekday name, lower-cased (`Sunday` is `sunday`).
pub fn week_start(day: &str) -> Result<String, InvalidSetting> {
    let day = day.to_ascii_lowercase();
    if !WEEKDAYS.contains(&day.as_str()) {
        return Err(InvalidSetting {
            field: "week_start",
            reason: "must be a weekday name, e.g. monday".into(),
        });
    }
    Ok(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_normalized_or_refused() {
        assert_eq!(timezone("Europe/Paris").as_deref(), Ok("Europe/Paris"));
        assert_eq!(timezone("Mars/Base").map_err(|e| e.field), Err("timezone"));
        assert_eq!(currency("eur").as_deref(), Ok("EUR"));
        assert_eq!(currency("EUT").map_err(|e| e.field), Err("currency"));
        assert_eq!(week_start("Sunday").as_deref(), Ok("sunday"));
        assert_eq!(week_start("sun").map_err(|e| e.field), Err("week_start"));
        let all = Changes {
            timezone: Some("Mars/Base".into()),
            currency: Some("eur".into()),
            week_start: Some("someday".into()),
        };
        let fields: Vec<_> = all
            .validate()
            .expect_err("invalid")
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["timezone", "week_start"]);
    }
}
