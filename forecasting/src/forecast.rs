//! Forecasts with prediction intervals, chosen per series by a
//! rolling-origin backtest; anomaly bands and reorder points built on them.
//!
//! # How a forecast is made
//! 1. The series is checked (finite, not constant, long enough).
//! 2. **Backtest.** For each of `origins` cut points at the end of the
//!    series (`n - h`, `n - 2h`, ...), every candidate [`Method`] is fitted
//!    on the data before the cut and forecasts the next `h` points. Its
//!    error is the MASE (scale: the in-sample seasonal difference at the
//!    frequency's MASE period), averaged over the origins.
//! 3. **Combination.** The final forecast is the mean of the `combine` best
//!    methods by backtest MASE, refitted on the whole series (the forecast
//!    combination literature, and the M4 results, favour a small
//!    combination of good methods over the single best).
//! 4. **Intervals.** The backtest errors of the combination, divided by
//!    `step^growth`, give a root-mean-square error; the interval at level
//!    `L` and step `s` is `point ± z(L) · rmse · s^growth`. So intervals
//!    are empirical (they reflect how wrong this series' forecasts were),
//!    and widen with the horizon.
//! 5. The backtest MASE and sMAPE of the combination come with every
//!    forecast. They are measured on the same origins that chose the
//!    methods, so they are slightly optimistic; the M4 evaluation
//!    (`beacon-forecasting`'s tests, `benches/run.sh forecasting`) measures
//!    on held-out data.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, invalid};
use crate::metrics::{mase_scale, smape};
use crate::ts::{Frequency, Method};

/// How to forecast.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ForecastOptions {
    /// Candidate methods (all by default).
    pub methods: Vec<Method>,
    /// Backtest origins (rolling, each `horizon` long).
    pub origins: usize,
    /// How many of the best methods are averaged.
    pub combine: usize,
    /// Prediction interval levels, each in (0, 1).
    pub levels: Vec<f64>,
    /// How interval widths grow with the step: `step^growth`.
    pub growth: f64,
}

impl Default for ForecastOptions {
    fn default() -> Self {
        Self {
            methods: Method::DEFAULT.to_vec(),
            origins: 3,
            combine: 2,
            levels: vec![0.8, 0.95],
            growth: 0.75,
        }
    }
}

/// One prediction interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Nominal coverage, e.g. 0.95.
    pub level: f64,
    /// Lower bounds, one per step.
    pub lower: Vec<f64>,
    /// Upper bounds, one per step.
    pub upper: Vec<f64>,
}

/// Backtest error of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodScore {
    /// The method.
    pub method: Method,
    /// Mean MASE over the origins (infinite when the method failed).
    pub mase: f64,
}

/// A forecast with its intervals and backtest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Point forecasts, one per step.
    pub point: Vec<f64>,
    /// One interval per requested level.
    pub intervals: Vec<Interval>,
    /// The methods averaged into `point`, best first.
    pub methods: Vec<Method>,
    /// Backtest MASE of the combination.
    pub backtest_mase: f64,
    /// Backtest sMAPE of the combination.
    pub backtest_smape: f64,
    /// Backtest origins used.
    pub origins: usize,
    /// Every candidate's backtest MASE, best first.
    pub scores: Vec<MethodScore>,
}

/// z of the two-sided normal interval at `level`.
pub fn normal_quantile_two_sided(level: f64) -> f64 {
    inverse_normal_cdf(0.5 + level / 2.0)
}

/// Inverse standard normal CDF (Acklam's rational approximation, relative
/// error below 1.2e-9).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p_low = 0.02425;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < p_low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Checks a series: finite values, not constant.
pub fn check_series(y: &[f64]) -> Result<()> {
    if let Some(index) = y.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { index });
    }
    if let Some(first) = y.first() {
        if y.iter().all(|v| v == first) {
            return Err(Error::ConstantSeries { value: *first });
        }
    }
    Ok(())
}

/// Forecasts `horizon` steps after `y` (see the module docs).
pub fn forecast(
    y: &[f64],
    freq: Frequency,
    horizon: usize,
    opts: &ForecastOptions,
) -> Result<Forecast> {
    if horizon == 0 {
        return Err(invalid("horizon", "must be at least 1"));
    }
    if opts.methods.is_empty() {
        return Err(invalid("methods", "name at least one method"));
    }
    if let Some(l) = opts.levels.iter().find(|l| !(**l > 0.0 && **l < 1.0)) {
        return Err(invalid("levels", format!("{l} is not in (0, 1)")));
    }
    check_series(y)?;
    let n = y.len();
    // The shortest training part a backtest origin may leave.
    let min_train = opts
        .methods
        .iter()
        .map(|m| m.min_points(freq))
        .min()
        .unwrap_or(3)
        .max(4);
    let needed = min_train + horizon;
    if n < needed {
        return Err(Error::TooLittleHistory {
            what: format!("a {horizon}-step forecast with a backtest"),
            needed,
            got: n,
        });
    }
    let origins = opts.origins.max(1).min((n - min_train) / horizon);
    let m = freq.mase_period();

    // Backtest: forecasts[method][origin].
    let mut per_method: Vec<(Method, Vec<Option<Vec<f64>>>)> =
        Vec::with_capacity(opts.methods.len());
    for method in &opts.methods {
        let fcs: Vec<Option<Vec<f64>>> = (1..=origins)
            .map(|o| {
                let cut = n - o * horizon;
                method
                    .forecast(&y[..cut], freq, horizon)
                    .ok()
                    .filter(|f| f.iter().all(|v| v.is_finite()))
            })
            .collect();
        per_method.push((*method, fcs));
    }
    let origin_error = |o: usize, f: &[f64]| {
        let cut = n - o * horizon;
        let actual = &y[cut..cut + horizon];
        let scale = mase_scale(&y[..cut], m);
        let mae = actual
            .iter()
            .zip(f)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / horizon as f64;
        if scale > 0.0 { mae / scale } else { mae }
    };
    let mut scores: Vec<MethodScore> = per_method
        .iter()
        .map(|(method, fcs)| {
            let mut total = 0.0;
            for (i, f) in fcs.iter().enumerate() {
                match f {
                    Some(f) => total += origin_error(i + 1, f),
                    None => {
                        return MethodScore {
                            method: *method,
                            mase: f64::INFINITY,
                        };
                    }
                }
            }
            MethodScore {
                method: *method,
                mase: total / origins as f64,
            }
        })
        .collect();
    scores.sort_by(|a, b| a.mase.total_cmp(&b.mase));
    let chosen: Vec<Method> = scores
        .iter()
        .filter(|s| s.mase.is_finite())
        .take(opts.combine.max(1))
        .map(|s| s.method)
        .collect();
    if chosen.is_empty() {
        return Err(Error::Model {
            model: "forecast",
            message: "no candidate method could forecast this series".into(),
        });
    }

    // Backtest errors of the combination.
    let mut bt_mase = 0.0;
    let mut bt_smape = 0.0;
    let mut sq = 0.0;
    let mut count = 0usize;
    let mut scaled_abs: Vec<f64> = Vec::new();
    for o in 1..=origins {
        let combo = mean_of(chosen.iter().map(|c| {
            per_method
                .iter()
                .find(|(m, _)| m == c)
                .and_then(|(_, f)| f[o - 1].as_deref())
                .expect("a chosen method has a finite score, so a forecast at every origin")
        }));
        let cut = n - o * horizon;
        let actual = &y[cut..cut + horizon];
        bt_mase += origin_error(o, &combo);
        bt_smape += smape(actual, &combo);
        for (s, (a, f)) in actual.iter().zip(&combo).enumerate() {
            let e = (a - f) / ((s + 1) as f64).powf(opts.growth);
            sq += e * e;
            scaled_abs.push(e.abs());
            count += 1;
        }
    }
    let rmse = (sq / count as f64).sqrt();
    scaled_abs.sort_by(f64::total_cmp);

    // Refit on the whole series.
    let finals: Vec<Vec<f64>> = chosen
        .iter()
        .map(|c| c.forecast(y, freq, horizon))
        .collect::<Result<_>>()?;
    let point = mean_of(finals.iter().map(|f| f.as_slice()));
    let intervals = opts
        .levels
        .iter()
        .map(|&level| {
            // The wider of the normal interval and the empirical quantile
            // of the scaled absolute errors: backtest errors are often
            // heavier-tailed than normal.
            let width = (normal_quantile_two_sided(level) * rmse).max(quantile(&scaled_abs, level));
            let half: Vec<f64> = (0..horizon)
                .map(|s| width * ((s + 1) as f64).powf(opts.growth))
                .collect();
            Interval {
                level,
                lower: point.iter().zip(&half).map(|(p, h)| p - h).collect(),
                upper: point.iter().zip(&half).map(|(p, h)| p + h).collect(),
            }
        })
        .collect();
    Ok(Forecast {
        point,
        intervals,
        methods: chosen,
        backtest_mase: bt_mase / origins as f64,
        backtest_smape: bt_smape / origins as f64,
        origins,
        scores,
    })
}

/// Forecasts many series in parallel (rayon); one result per series.
pub fn forecast_many(
    series: &[Vec<f64>],
    freq: Frequency,
    horizon: usize,
    opts: &ForecastOptions,
) -> Vec<Result<Forecast>> {
    series
        .par_iter()
        .map(|y| forecast(y, freq, horizon, opts))
        .collect()
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn mean_of<'a>(fcs: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    let mut k = 0.0;
    for f in fcs {
        if out.is_empty() {
            out = vec![0.0; f.len()];
        }
        out.iter_mut().zip(f).for_each(|(o, v)| *o += v);
        k += 1.0;
    }
    out.iter_mut().for_each(|o| *o /= k);
    out
}

/// Expected value and band per point of a series, for anomaly detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    /// Expected value per point.
    pub expected: Vec<f64>,
    /// Lower edge of the band.
    pub lower: Vec<f64>,
    /// Upper edge of the band.
    pub upper: Vec<f64>,
    /// Whether the actual value is outside the band (always false for
    /// forecast points, which have no actual).
    pub anomalous: Vec<bool>,
}

/// How wide an anomaly band is: the band holds this share of normal points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// 99.9% band: only large deviations.
    Low,
    /// 99% band.
    Medium,
    /// 95% band: flags more.
    High,
}

impl Sensitivity {
    /// Parses `low`, `medium` or `high`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "low" => Some(Sensitivity::Low),
            "medium" => Some(Sensitivity::Medium),
            "high" => Some(Sensitivity::High),
            _ => None,
        }
    }

    /// The band's nominal coverage.
    pub fn level(self) -> f64 {
        match self {
            Sensitivity::Low => 0.999,
            Sensitivity::Medium => 0.99,
            Sensitivity::High => 0.95,
        }
    }
}

/// In-sample anomaly bands for `y`: each point's expected value is the
/// one-season-ahead forecast made from the data before it (a rolling
/// backtest, `window` points at a time, with the same methods and
/// combination as [`forecast`]); the band is the forecast interval at the
/// sensitivity's level. Points before the first full window have no band
/// (`NaN`) and are never anomalous. Anomalous points are replaced by their
/// expected values in the history of later windows (windows are therefore
/// fitted in order, not in parallel).
pub fn anomaly_bands(
    y: &[f64],
    freq: Frequency,
    sensitivity: Sensitivity,
    opts: &ForecastOptions,
) -> Result<Bands> {
    check_series(y)?;
    let window = freq.main_period().min(24).max(1);
    let n = y.len();
    let mut expected = vec![f64::NAN; n];
    let mut lower = vec![f64::NAN; n];
    let mut upper = vec![f64::NAN; n];
    let opts = ForecastOptions {
        levels: vec![sensitivity.level()],
        ..opts.clone()
    };
    // The first window that has enough history for a forecast with backtest.
    let first = {
        let mut cut = window;
        while cut < n && forecast(&y[..cut], freq, window, &opts).is_err() {
            cut += window;
        }
        cut
    };
    if first >= n {
        return Err(Error::TooLittleHistory {
            what: "anomaly bands".into(),
            needed: first + 1,
            got: n,
        });
    }
    // Window by window, in order: the history a window is forecast from
    // has the points already found anomalous replaced by their expected
    // values, so one spike does not raise the expectation (and widen the
    // band) of the days after it, flagging them as unusually low.
    let mut clean = y.to_vec();
    let mut anomalous = vec![false; n];
    for cut in (first..n).step_by(window) {
        let f = forecast(&clean[..cut], freq, window.min(n - cut), &opts)?;
        for (k, p) in f.point.iter().enumerate() {
            let t = cut + k;
            expected[t] = *p;
            lower[t] = f.intervals[0].lower[k];
            upper[t] = f.intervals[0].upper[k];
            anomalous[t] = y[t] < lower[t] || y[t] > upper[t];
            if anomalous[t] {
                clean[t] = *p;
            }
        }
    }
    Ok(Bands {
        expected,
        lower,
        upper,
        anomalous,
    })
}

/// Reorder point for one product: forecast demand over the lead time plus
/// safety stock for the service level, from a demand series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReorderPoint {
    /// Forecast demand over the lead time.
    pub lead_time_demand: f64,
    /// Safety stock: `z(service level) · σ` of lead-time demand.
    pub safety_stock: f64,
    /// `lead_time_demand + safety_stock`: reorder when stock falls to this.
    pub reorder_point: f64,
    /// The forecast behind it.
    pub forecast: Forecast,
}

/// Reorder point from a demand series (units per period), a lead time in
/// periods and a service level in (0, 1) (e.g. 0.95 = stock out in at most
/// 5% of lead times). σ of lead-time demand is the root of the summed
/// per-step variances implied by the forecast's intervals.
pub fn reorder_point(
    demand: &[f64],
    freq: Frequency,
    lead_time: usize,
    service_level: f64,
    opts: &ForecastOptions,
) -> Result<ReorderPoint> {
    if !(service_level > 0.5 && service_level < 1.0) {
        return Err(invalid(
            "service_level",
            format!("{service_level} is not in (0.5, 1)"),
        ));
    }
    let opts = ForecastOptions {
        levels: vec![0.95],
        ..opts.clone()
    };
    let f = forecast(demand, freq, lead_time, &opts)?;
    let z95 = normal_quantile_two_sided(0.95);
    let var: f64 = f.intervals[0]
        .upper
        .iter()
        .zip(&f.point)
        .map(|(u, p)| ((u - p) / z95).powi(2))
        .sum();
    let lead_time_demand = f.point.iter().map(|v| v.max(0.0)).sum::<f64>();
    let safety_stock = inverse_normal_cdf(service_level) * var.sqrt();
    Ok(ReorderPoint {
        lead_time_demand,
        safety_stock,
        reorder_point: lead_time_demand + safety_stock,
        forecast: f,
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn noisy_daily(days: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..days)
            .map(|t| {
                let weekday = [0.8, 1.0, 1.0, 1.1, 1.3, 1.6, 0.6][t % 7];
                200.0 * weekday + 0.3 * t as f64 + rng.random_range(-15.0..15.0)
            })
            .collect()
    }

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile_two_sided(0.95) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile_two_sided(0.8) - 1.281552).abs() < 1e-5);
        assert!((inverse_normal_cdf(0.5)).abs() < 1e-12);
    }

    #[test]
    fn intervals_cover_held_out_data() {
        // 40 seeded series, 14-day horizon: the 95% interval must hold most
        // of the held-out points, the 80% one fewer, both a sane share.
        let (mut in80, mut in95, mut total) = (0, 0, 0);
        for seed in 0..40 {
            let y = noisy_daily(200, seed);
            let (train, test) = y.split_at(186);
            let f = forecast(train, Frequency::Daily, 14, &ForecastOptions::default()).unwrap();
            assert_eq!(f.point.len(), 14);
            assert!(f.backtest_mase.is_finite());
            for (k, a) in test.iter().enumerate() {
                total += 1;
                in80 += usize::from(*a >= f.intervals[0].lower[k] && *a <= f.intervals[0].upper[k]);
                in95 += usize::from(*a >= f.intervals[1].lower[k] && *a <= f.intervals[1].upper[k]);
            }
        }
        let c80 = in80 as f64 / total as f64;
        let c95 = in95 as f64 / total as f64;
        assert!(c95 >= c80);
        assert!((0.65..=0.97).contains(&c80), "80% coverage {c80}");
        assert!((0.85..=1.0).contains(&c95), "95% coverage {c95}");
    }

    #[test]
    fn bad_series_and_parameters_are_clear_errors() {
        let opts = ForecastOptions::default();
        assert!(matches!(
            forecast(&[5.0; 50], Frequency::Daily, 7, &opts),
            Err(Error::ConstantSeries { .. })
        ));
        assert!(matches!(
            forecast(&[1.0, f64::NAN, 2.0], Frequency::Daily, 1, &opts),
            Err(Error::NotFinite { index: 1 })
        ));
        assert!(matches!(
            forecast(&[1.0, 2.0, 3.0], Frequency::Daily, 7, &opts),
            Err(Error::TooLittleHistory { .. })
        ));
        assert!(matches!(
            forecast(&noisy_daily(60, 1), Frequency::Daily, 0, &opts),
            Err(Error::InvalidParameter { .. })
        ));
        let bad_level = ForecastOptions {
            levels: vec![1.5],
            ..ForecastOptions::default()
        };
        assert!(matches!(
            forecast(&noisy_daily(60, 1), Frequency::Daily, 7, &bad_level),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn anomaly_bands_flag_an_injected_spike_and_few_normal_points() {
        let mut y = noisy_daily(150, 7);
        y[120] += 400.0;
        let b = anomaly_bands(
            &y,
            Frequency::Daily,
            Sensitivity::Medium,
            &ForecastOptions::default(),
        )
        .unwrap();
        assert!(
            b.anomalous[120],
            "spike not flagged: {} not in [{}, {}]",
            y[120], b.lower[120], b.upper[120]
        );
        let flagged = b.anomalous.iter().filter(|a| **a).count();
        assert!(flagged <= 6, "{flagged} points flagged");
    }

    #[test]
    fn reorder_point_is_demand_plus_safety_stock() {
        let y = noisy_daily(120, 3);
        let r = reorder_point(&y, Frequency::Daily, 7, 0.95, &ForecastOptions::default()).unwrap();
        assert!(
            r.lead_time_demand > 7.0 * 150.0 && r.lead_time_demand < 7.0 * 350.0,
            "{r:?}"
        );
        assert!(r.safety_stock > 0.0);
        assert!((r.reorder_point - r.lead_time_demand - r.safety_stock).abs() < 1e-9);
    }

    /// One outlier in a short regular series: no method's forecast may run
    /// away (the lag regression, refitted on the outlier, forecast 9,000
    /// five days ahead before its divergence guard).
    #[test]
    fn one_outlier_does_not_make_the_forecast_run_away() {
        let y = crate::ts::tests::one_outlier();
        for method in Method::ALL {
            let Ok(f) = method.forecast(&y, Frequency::Daily, 14) else {
                continue;
            };
            assert!(
                f.iter().all(|v| v.is_finite() && v.abs() < 1000.0),
                "{}: {f:?}",
                method.name()
            );
        }
        let f = forecast(&y, Frequency::Daily, 14, &ForecastOptions::default()).expect("forecast");
        assert!(f.point.iter().all(|v| v.abs() < 1000.0), "{:?} by {:?}", f.point, f.methods);
        for i in &f.intervals {
            assert!(i.upper.iter().all(|v| *v < 5000.0), "{i:?}");
        }
    }
}
