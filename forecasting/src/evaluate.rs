//! Accuracy of the forecasting pipeline on a set of held-out series, with
//! the M4 measures, so the evaluation (`benches/run.sh forecasting`) and
//! the tests share one definition.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::forecast::{ForecastOptions, forecast};
use crate::metrics::{mase, naive2, owa, smape};
use crate::ts::{Frequency, Method};

/// A training series and its held-out continuation.
pub type HeldOut<'a> = (&'a [f64], &'a [f64]);

/// The M4 published Naive2 averages a set's OWA is relative to.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Naive2Reference {
    /// Naive2's sMAPE on the set.
    pub smape: f64,
    /// Naive2's MASE on the set.
    pub mase: f64,
}

/// M4 Hourly: Naive2 sMAPE 18.383, MASE 2.395.
pub const M4_HOURLY_NAIVE2: Naive2Reference = Naive2Reference {
    smape: 18.383,
    mase: 2.395,
};
/// M4 Weekly: Naive2 sMAPE 9.161, MASE 2.777.
pub const M4_WEEKLY_NAIVE2: Naive2Reference = Naive2Reference {
    smape: 9.161,
    mase: 2.777,
};

/// Accuracy of one method (or the combination) on a set.
#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    /// What was evaluated (`beacon` for the pipeline, a method name, `naive2`).
    pub name: String,
    /// Mean sMAPE over the series.
    pub smape: f64,
    /// Mean MASE over the series.
    pub mase: f64,
    /// OWA relative to the reference Naive2.
    pub owa: f64,
    /// Wall seconds for the whole set (all cores).
    pub seconds: f64,
    /// Series per second.
    pub series_per_s: f64,
    /// Share of held-out points inside the 80% interval (pipeline only).
    pub coverage80: Option<f64>,
    /// Share inside the 95% interval (pipeline only).
    pub coverage95: Option<f64>,
    /// Series the method failed on (forecast by Naive2 instead, so every
    /// figure covers the whole set).
    pub failures: usize,
}

/// Evaluates the pipeline with `opts` on `set`.
pub fn evaluate_pipeline(
    set: &[HeldOut<'_>],
    freq: Frequency,
    horizon: usize,
    opts: &ForecastOptions,
    reference: Naive2Reference,
) -> Accuracy {
    let m = freq.mase_period();
    let start = Instant::now();
    let results: Vec<_> = set
        .par_iter()
        .map(|(train, _)| forecast(train, freq, horizon, opts))
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    let (mut s, mut ms, mut c80, mut c95, mut points, mut failures) =
        (0.0, 0.0, 0usize, 0usize, 0usize, 0usize);
    for ((train, test), r) in set.iter().zip(&results) {
        match r {
            Ok(f) => {
                s += smape(test, &f.point);
                ms += mase(train, test, &f.point, m);
                for (k, a) in test.iter().enumerate() {
                    points += 1;
                    c80 +=
                        usize::from(*a >= f.intervals[0].lower[k] && *a <= f.intervals[0].upper[k]);
                    if let Some(i95) = f.intervals.get(1) {
                        c95 += usize::from(*a >= i95.lower[k] && *a <= i95.upper[k]);
                    }
                }
            }
            Err(_) => {
                failures += 1;
                let f = naive2(train, m, horizon);
                s += smape(test, &f);
                ms += mase(train, test, &f, m);
            }
        }
    }
    summarise(
        "beacon".into(),
        s,
        ms,
        set.len(),
        seconds,
        reference,
        failures,
    )
    .with_coverage(
        c80 as f64 / points.max(1) as f64,
        c95 as f64 / points.max(1) as f64,
    )
}

/// Evaluates one candidate method alone (no backtest, no intervals).
pub fn evaluate_method(
    set: &[HeldOut<'_>],
    freq: Frequency,
    horizon: usize,
    method: Method,
    reference: Naive2Reference,
) -> Accuracy {
    evaluate_fn(method.name(), set, freq, horizon, reference, |y| {
        method.forecast(y, freq, horizon).ok()
    })
}

/// Evaluates the M4 Naive2 method itself (its OWA should be about 1).
pub fn evaluate_naive2(
    set: &[HeldOut<'_>],
    freq: Frequency,
    horizon: usize,
    reference: Naive2Reference,
) -> Accuracy {
    let m = if freq == Frequency::Weekly {
        1
    } else {
        freq.mase_period()
    };
    evaluate_fn("naive2", set, freq, horizon, reference, |y| {
        Some(naive2(y, m, horizon))
    })
}

fn evaluate_fn(
    name: &str,
    set: &[HeldOut<'_>],
    freq: Frequency,
    horizon: usize,
    reference: Naive2Reference,
    f: impl Fn(&[f64]) -> Option<Vec<f64>> + Sync,
) -> Accuracy {
    let m = freq.mase_period();
    let start = Instant::now();
    let results: Vec<Option<Vec<f64>>> = set.par_iter().map(|(train, _)| f(train)).collect();
    let seconds = start.elapsed().as_secs_f64();
    let (mut s, mut ms, mut failures) = (0.0, 0.0, 0usize);
    for ((train, test), r) in set.iter().zip(results) {
        let fc = match r.filter(|f| f.iter().all(|v| v.is_finite())) {
            Some(f) => f,
            None => {
                failures += 1;
                naive2(train, m, horizon)
            }
        };
        s += smape(test, &fc);
        ms += mase(train, test, &fc, m);
    }
    summarise(name.into(), s, ms, set.len(), seconds, reference, failures)
}

fn summarise(
    name: String,
    s: f64,
    ms: f64,
    n: usize,
    seconds: f64,
    reference: Naive2Reference,
    failures: usize,
) -> Accuracy {
    let smape = s / n as f64;
    let mase = ms / n as f64;
    Accuracy {
        name,
        smape,
        mase,
        owa: owa(smape, mase, reference.smape, reference.mase),
        seconds,
        series_per_s: n as f64 / seconds.max(1e-9),
        coverage80: None,
        coverage95: None,
        failures,
    }
}

impl Accuracy {
    fn with_coverage(mut self, c80: f64, c95: f64) -> Self {
        self.coverage80 = Some(c80);
        self.coverage95 = Some(c95);
        self
    }
}

/// The two M4 sets Beacon evaluates on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum M4Set {
    /// 414 hourly series, horizon 48.
    Hourly,
    /// 359 weekly series, horizon 13.
    Weekly,
}

impl M4Set {
    /// The file name prefix (`Hourly-train.csv`).
    pub fn name(self) -> &'static str {
        match self {
            M4Set::Hourly => "Hourly",
            M4Set::Weekly => "Weekly",
        }
    }

    /// The competition's horizon.
    pub fn horizon(self) -> usize {
        match self {
            M4Set::Hourly => 48,
            M4Set::Weekly => 13,
        }
    }

    /// The frequency the pipeline is told.
    pub fn frequency(self) -> Frequency {
        match self {
            M4Set::Hourly => Frequency::Hourly,
            M4Set::Weekly => Frequency::Weekly,
        }
    }

    /// The published Naive2 averages.
    pub fn naive2(self) -> Naive2Reference {
        match self {
            M4Set::Hourly => M4_HOURLY_NAIVE2,
            M4Set::Weekly => M4_WEEKLY_NAIVE2,
        }
    }
}

/// Parses an M4 file's text: wide, one series per row,
/// `"id","v1","v2",...` with shorter series right-padded by empty cells and
/// every value double-quoted. Returns `(id, values)` per series.
pub fn parse_m4(text: &str) -> crate::Result<Vec<(String, Vec<f64>)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut cells = line.split(',').map(|c| c.trim().trim_matches('"'));
        let id = cells.next().unwrap_or_default().to_string();
        let values = cells
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<f64>()
                    .map_err(|e| crate::Error::InvalidParameter {
                        name: "m4",
                        message: format!("line {}: {c:?}: {e}", i + 1),
                    })
            })
            .collect::<crate::Result<Vec<f64>>>()?;
        out.push((id, values));
    }
    Ok(out)
}
