//! Clocks for the realtime side. Every "now" the hub, live metrics,
//! notifications and alerts compute comes from an injected
//! [`beacon_ingest::Clock`]; tests inject a manual one and advance it
//! instead of sleeping.
//!
//! [`MonotonicClock`] is the production clock of the [`crate::Hub`], which
//! only measures durations (heartbeats, idle and stalled connections): it
//! follows the wall clock's rate but never its steps. Live metrics,
//! notifications and alerts use the wall clock
//! ([`beacon_ingest::SystemClock`]): their "now" is a calendar time.

use std::time::Instant;

use beacon_ingest::{Clock, SystemClock};

/// The wall time when it was made plus the monotonic time since: a clock
/// that a wall-clock step (NTP, an operator) cannot move, so a timeout
/// measured with it neither fires early nor late because of one.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    start_us: i64,
    start: Instant,
}

impl MonotonicClock {
    /// A clock that starts at the wall clock's now.
    pub fn new() -> Self {
        Self {
            start_us: SystemClock.now_us(),
            start: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_us(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.start_us.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_wall_clock_and_never_goes_back() {
        let clock = MonotonicClock::new();
        let wall = SystemClock.now_us();
        let first = clock.now_us();
        assert!((first - wall).abs() < 5_000_000, "{first} vs {wall}");
        let second = clock.now_us();
        assert!(second >= first);
    }
}
