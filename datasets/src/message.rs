//! Building Segment messages: exact money, UTC times, local business times.

use beacon_ingest::schema::MONEY_FACTOR;
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

/// An exact amount of money, scaled by [`MONEY_FACTOR`] (4 decimals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(pub i128);

impl Money {
    /// Parses a decimal text such as `"2.55"` or `"-11062.06"`.
    pub fn parse(text: &str) -> Option<Self> {
        beacon_ingest::decode::parse_decimal(text.trim())
            .ok()
            .map(Money)
    }

    /// `self * quantity`.
    pub fn times(self, quantity: i64) -> Self {
        Money(self.0 * i128::from(quantity))
    }

    /// The decimal text, without trailing zeros (`15.3`, `-2`, `0.001`).
    pub fn text(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let factor = MONEY_FACTOR.unsigned_abs();
        let (int, frac) = (abs / factor, abs % factor);
        if frac == 0 {
            return format!("{sign}{int}");
        }
        let frac = format!("{frac:04}");
        format!("{sign}{int}.{}", frac.trim_end_matches('0'))
    }

    /// As a JSON number.
    ///
    /// serde_json numbers are `f64` here (no `arbitrary_precision`), so the
    /// number is the `f64` nearest to the exact decimal. Any decimal of at
    /// most 15 significant digits survives that round trip: serde_json prints
    /// the shortest text that reads back as the same `f64`, which is the
    /// original decimal, and Beacon stores money from that text. Amounts here
    /// have 4 decimals, so this is exact below 10^11 (asserted).
    pub fn json(self) -> Value {
        debug_assert!(
            self.0.unsigned_abs() < 10u128.pow(15),
            "money too large for an exact f64 round trip"
        );
        let f: f64 = self.text().parse().unwrap_or(0.0);
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money(0), |a, b| a + b)
    }
}

/// RFC 3339 UTC text with milliseconds, as Segment libraries send it.
pub fn iso(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// RFC 3339 text of microseconds since the epoch.
pub fn iso_us(us: i64) -> String {
    iso(DateTime::from_timestamp_micros(us).unwrap_or_default())
}

/// The UTC instant of a wall-clock time in `tz`. In the autumn overlap the
/// earlier instant is taken; in the spring gap the time is moved forward by
/// the gap (02:30 that does not exist becomes 03:30 summer time).
pub fn local_to_utc(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            let later = local + chrono::Duration::hours(1);
            match tz.from_local_datetime(&later) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
                LocalResult::None => Utc.from_utc_datetime(&local),
            }
        }
    }
}

/// One Segment message under construction.
#[derive(Debug, Clone)]
pub struct Message(Map<String, Value>);

impl Message {
    /// A `track` call.
    pub fn track(message_id: impl Into<String>, event: &str, timestamp: DateTime<Utc>) -> Self {
        let mut m = Map::new();
        m.insert("type".into(), "track".into());
        m.insert("messageId".into(), Value::String(message_id.into()));
        m.insert("event".into(), event.into());
        m.insert("timestamp".into(), iso(timestamp).into());
        m.insert("properties".into(), Value::Object(Map::new()));
        Message(m)
    }

    /// An `identify` call with traits.
    pub fn identify(
        message_id: impl Into<String>,
        user_id: &str,
        timestamp: DateTime<Utc>,
        traits: Map<String, Value>,
    ) -> Self {
        let mut m = Map::new();
        m.insert("type".into(), "identify".into());
        m.insert("messageId".into(), Value::String(message_id.into()));
        m.insert("userId".into(), user_id.into());
        m.insert("timestamp".into(), iso(timestamp).into());
        m.insert("traits".into(), Value::Object(traits));
        Message(m)
    }

    /// Sets `userId`, or `anonymousId` when there is no user.
    pub fn person(mut self, user_id: Option<&str>, anonymous_id: &str) -> Self {
        match user_id {
            Some(id) => self.0.insert("userId".into(), id.into()),
            None => self.0.insert("anonymousId".into(), anonymous_id.into()),
        };
        self
    }

    /// Turns a track call into a `page` call named `name` (`event` is dropped).
    pub fn page(mut self, name: &str) -> Self {
        self.0.insert("type".into(), "page".into());
        self.0.remove("event");
        self.0.insert("name".into(), name.into());
        self
    }

    /// Sets `userId`.
    pub fn user(mut self, user_id: &str) -> Self {
        self.0.insert("userId".into(), user_id.into());
        self
    }

    /// Sets one property (skipped when `value` is null).
    pub fn prop(mut self, key: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        if !value.is_null()
            && let Some(Value::Object(props)) = self.0.get_mut("properties")
        {
            props.insert(key.into(), value);
        }
        self
    }

    /// Sets one money property.
    pub fn money(self, key: &str, amount: Money) -> Self {
        self.prop(key, amount.json())
    }

    /// The JSON line.
    pub fn line(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Consumes the message into its JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// A string value, or JSON null for `None`.
pub fn opt_str(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |v| Value::String(v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_text_and_json_are_exact() {
        for text in [
            "2.55",
            "-11062.06",
            "0.001",
            "15.3",
            "8911407.904",
            "0",
            "-0.5",
            "123456789.1234",
        ] {
            let m = Money::parse(text).expect("parses");
            assert_eq!(m.text(), text.trim_end_matches(".0"));
            let json = serde_json::to_string(&m.json()).expect("serializes");
            assert_eq!(Money::parse(&json), Some(m), "{text} -> {json}");
        }
        assert_eq!(
            Money::parse("2.55").map(|m| m.times(-3).text()),
            Some("-7.65".into())
        );
    }

    #[test]
    fn local_times_across_dst() {
        let tz: Tz = "Europe/London".parse().expect("tz");
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time");
        assert_eq!(
            iso(local_to_utc(t("2011-07-01 12:00:00"), tz)),
            "2011-07-01T11:00:00.000Z"
        );
        assert_eq!(
            iso(local_to_utc(t("2011-01-01 12:00:00"), tz)),
            "2011-01-01T12:00:00.000Z"
        );
        // Gap: 2011-03-27 01:30 does not exist in London.
        assert_eq!(
            iso(local_to_utc(t("2011-03-27 01:30:00"), tz)),
            "2011-03-27T01:30:00.000Z"
        );
        // Overlap: 01:30 on 2011-10-30 happens twice; the first (BST) is taken.
        assert_eq!(
            iso(local_to_utc(t("2011-10-30 01:30:00"), tz)),
            "2011-10-30T00:30:00.000Z"
        );
    }
}
