//! The state machine of one alert instance (a rule and a group key).
//!
//! ```text
//! Normal --bad--> Pending --bad for `for`--> Firing --good--> Recovering --good for keep_firing_for--> Resolved --good--> Normal
//!    ^              |good                      ^                 |bad                                        |bad
//!    +--------------+                          +-----------------+                                           v
//!                                                                                                         Pending
//! any --no value--> NoData (policy)      any --query failed--> Error (policy)      NoData/Error --good--> Resolved
//! ```
//!
//! With `for = 0` bad goes straight to Firing, with `keep_firing_for = 0`
//! good goes straight to Resolved. Firing, Resolved, NoData and Error are
//! the notified states; Recovering -> Firing is a continuation, not news.

use serde::{Deserialize, Serialize};

use super::rule::{ErrorPolicy, NoDataPolicy};

/// States.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Condition false.
    Normal,
    /// Condition true for less than `for`.
    Pending,
    /// Alerting.
    Firing,
    /// Condition false for less than `keep_firing_for` after firing.
    Recovering,
    /// Just stopped firing (next good evaluation: Normal).
    Resolved,
    /// The query had no value.
    NoData,
    /// The query failed.
    Error,
}

impl State {
    /// Name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Recovering => "recovering",
            Self::Resolved => "resolved",
            Self::NoData => "no_data",
            Self::Error => "error",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Normal,
            Self::Pending,
            Self::Firing,
            Self::Recovering,
            Self::Resolved,
            Self::NoData,
            Self::Error,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether the instance counts as alerting (in a notification's list).
    pub fn alerting(self) -> bool {
        matches!(
            self,
            Self::Firing | Self::Recovering | Self::NoData | Self::Error
        )
    }
}

/// What one evaluation saw for an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The condition was evaluated.
    Condition(bool),
    /// No value.
    NoData,
    /// The query failed.
    Error(String),
}

/// The persistent part of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Current state.
    pub state: State,
    /// When the current state was entered (µs).
    pub since_us: i64,
    /// Firing <-> resolved transitions (µs) within the flap window.
    #[serde(default)]
    pub flips: Vec<i64>,
    /// Whether notifications are held back for flapping.
    #[serde(default)]
    pub flapping: bool,
    /// The last state a notification told about.
    #[serde(default)]
    pub notified: Option<State>,
}

impl Instance {
    /// A fresh instance.
    pub fn new(now_us: i64) -> Self {
        Self {
            state: State::Normal,
            since_us: now_us,
            flips: Vec::new(),
            flapping: false,
            notified: None,
        }
    }
}

/// Timing of the machine.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `for`, µs.
    pub for_us: i64,
    /// `keep_firing_for`, µs.
    pub keep_us: i64,
    /// No-data policy.
    pub no_data: NoDataPolicy,
    /// Error policy.
    pub on_error: ErrorPolicy,
    /// Flap threshold.
    pub flap_threshold: usize,
    /// Flap window, µs.
    pub flap_window_us: i64,
}

/// Applies the policies: what an observation means for the machine
/// (`None`: keep the state).
fn effective(obs: &Observation, t: &Timing) -> Option<Observation> {
    match obs {
        Observation::Condition(_) => Some(obs.clone()),
        Observation::NoData => match t.no_data {
            NoDataPolicy::NoData => Some(Observation::NoData),
            NoDataPolicy::Ok => Some(Observation::Condition(false)),
            NoDataPolicy::Alerting => Some(Observation::Condition(true)),
            NoDataPolicy::KeepLast => None,
        },
        Observation::Error(e) => match t.on_error {
            ErrorPolicy::Error => Some(Observation::Error(e.clone())),
            ErrorPolicy::Alerting => Some(Observation::Condition(true)),
            ErrorPolicy::KeepLast => None,
        },
    }
}

/// Advances `inst` by one observation at `now_us`; returns the transition
/// `(from, to)` if the state changed.
pub fn step(
    inst: &mut Instance,
    obs: &Observation,
    now_us: i64,
    t: &Timing,
) -> Option<(State, State)> {
    use State::*;
    let from = inst.state;
    let obs = effective(obs, t)?;
    let elapsed = now_us - inst.since_us;
    let to = match (&obs, from) {
        (Observation::Condition(true), Normal | Resolved | NoData | Error) => {
            if t.for_us == 0 {
                Firing
            } else {
                Pending
            }
        }
        (Observation::Condition(true), Pending) if elapsed >= t.for_us => Firing,
        (Observation::Condition(true), Pending) => Pending,
        (Observation::Condition(true), Firing | Recovering) => Firing,
        (Observation::Condition(false), Normal | Pending) => Normal,
        (Observation::Condition(false), Resolved) => Normal,
        (Observation::Condition(false), NoData | Error) => Resolved,
        (Observation::Condition(false), Firing) => {
            if t.keep_us == 0 {
                Resolved
            } else {
                Recovering
            }
        }
        (Observation::Condition(false), Recovering) if elapsed >= t.keep_us => Resolved,
        (Observation::Condition(false), Recovering) => Recovering,
        (Observation::NoData, _) => NoData,
        (Observation::Error(_), _) => Error,
    };
    if to == from {
        return None;
    }
    // A Pending that was entered at this very evaluation with for = 0 is
    // not possible; a Pending whose `for` passed within one step fires at
    // the next evaluation (the interval is the resolution of `for`).
    inst.state = to;
    inst.since_us = now_us;
    if matches!(to, Firing | Resolved) && !(from == Recovering && to == Firing) {
        inst.flips.push(now_us);
    }
    inst.flips.retain(|at| now_us - at < t.flap_window_us);
    if inst.flips.len() >= t.flap_threshold {
        inst.flapping = true;
    }
    Some((from, to))
}

/// Whether a transition is news for the notification group.
pub fn notable(from: State, to: State) -> bool {
    match to {
        State::Firing => from != State::Recovering,
        State::Resolved | State::NoData | State::Error => true,
        _ => false,
    }
}

/// Ends flapping once the instance has not flipped for the flap window;
/// returns true if it just ended.
pub fn settle(inst: &mut Instance, now_us: i64, t: &Timing) -> bool {
    inst.flips.retain(|at| now_us - at < t.flap_window_us);
    if inst.flapping && inst.flips.is_empty() {
        inst.flapping = false;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(for_s: i64, keep_s: i64) -> Timing {
        Timing {
            for_us: for_s * 1_000_000,
            keep_us: keep_s * 1_000_000,
            no_data: NoDataPolicy::NoData,
            on_error: ErrorPolicy::Error,
            flap_threshold: 4,
            flap_window_us: 3_600_000_000,
        }
    }

    fn run(t: &Timing, obs: &[(i64, Observation)]) -> Vec<(i64, State, State)> {
        let mut inst = Instance::new(0);
        obs.iter()
            .filter_map(|(s, o)| step(&mut inst, o, s * 1_000_000, t).map(|(a, b)| (*s, a, b)))
            .collect()
    }

    use Observation::Condition as C;
    use State::*;

    #[test]
    fn pending_must_hold_for_before_firing() {
        let t = timing(60, 0);
        let got = run(
            &t,
            &[
                (0, C(true)),
                (30, C(true)),
                (60, C(true)),
                (90, C(false)),
                (120, C(false)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (0, Normal, Pending),
                (60, Pending, Firing),
                (90, Firing, Resolved),
                (120, Resolved, Normal)
            ]
        );
        // A blip shorter than `for` never fires.
        let got = run(&t, &[(0, C(true)), (30, C(false)), (60, C(true))]);
        assert_eq!(
            got,
            vec![
                (0, Normal, Pending),
                (30, Pending, Normal),
                (60, Normal, Pending)
            ]
        );
    }

    #[test]
    fn keep_firing_for_bridges_short_recoveries() {
        let t = timing(0, 60);
        let got = run(
            &t,
            &[
                (0, C(true)),
                (10, C(false)),
                (20, C(true)),
                (30, C(false)),
                (89, C(false)),
                (90, C(false)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (0, Normal, Firing),
                (10, Firing, Recovering),
                (20, Recovering, Firing),
                (30, Firing, Recovering),
                (90, Recovering, Resolved)
            ]
        );
        assert!(!notable(Recovering, Firing));
        assert!(notable(Normal, Firing) && notable(Recovering, Resolved));
    }

    #[test]
    fn no_data_and_error_follow_their_policies() {
        let t = timing(0, 0);
        let got = run(
            &t,
            &[
                (0, Observation::NoData),
                (10, C(false)),
                (20, Observation::Error("boom".into())),
                (30, C(false)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (0, Normal, NoData),
                (10, NoData, Resolved),
                (20, Resolved, Error),
                (30, Error, Resolved)
            ]
        );
        let keep = Timing {
            no_data: NoDataPolicy::KeepLast,
            on_error: ErrorPolicy::Alerting,
            ..t
        };
        let got = run(
            &keep,
            &[
                (0, C(true)),
                (10, Observation::NoData),
                (20, C(false)),
                (30, Observation::Error("x".into())),
            ],
        );
        assert_eq!(
            got,
            vec![
                (0, Normal, Firing),
                (20, Firing, Resolved),
                (30, Resolved, Firing)
            ]
        );
        let ok = Timing {
            no_data: NoDataPolicy::Ok,
            ..t
        };
        let got = run(&ok, &[(0, C(true)), (10, Observation::NoData)]);
        assert_eq!(got, vec![(0, Normal, Firing), (10, Firing, Resolved)]);
    }

    #[test]
    fn flapping_is_detected_and_settles() {
        let t = timing(0, 0);
        let mut inst = Instance::new(0);
        for (i, bad) in [true, false, true, false].into_iter().enumerate() {
            step(&mut inst, &C(bad), i as i64 * 60_000_000, &t);
        }
        assert!(inst.flapping);
        assert!(!settle(&mut inst, 3_000_000_000, &t));
        assert!(settle(&mut inst, 4 * 3_600_000_000, &t));
        assert!(!inst.flapping);
    }
}
