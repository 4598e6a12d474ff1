//! A clock that moves only when the test moves it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use beacon_ingest::Clock;

/// The injected clock of tests: reads what was last set.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `us` microseconds since the Unix epoch.
    pub fn new(us: i64) -> Self {
        Self(AtomicI64::new(us))
    }

    /// A clock at an RFC 3339 instant (`2026-11-02T12:30:00Z`).
    pub fn at(rfc3339: &str) -> Self {
        Self::new(micros(rfc3339))
    }

    /// Moves the clock to `us`.
    pub fn set(&self, us: i64) {
        self.0.store(us, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let us = i64::try_from(by.as_micros()).expect("a test advances by less than 292k years");
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Microseconds since the epoch of an RFC 3339 instant.
pub fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"))
        .timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_advance() {
        let clock = ManualClock::at("2026-11-02T12:30:00Z");
        assert_eq!(clock.now_us(), 1_793_622_600_000_000);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now_us(), 1_793_622_690_000_000);
        clock.set(5);
        assert_eq!(clock.now_us(), 5);
    }
}
