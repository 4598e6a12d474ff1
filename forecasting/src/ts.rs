//! The candidate forecasting methods, each a pure function from a training
//! series to `horizon` point forecasts.
//!
//! | method | what it is | from |
//! |---|---|---|
//! | `seasonal_naive` | the value one season ago (the longest season that fits) | here |
//! | `theta` | the Theta method (Hyndman & Billah 2003) on the seasonally adjusted series | here |
//! | `mstl_ets` | MSTL decomposition (one season per period), AutoETS on the trend + remainder | augurs |
//! | `mstl_theta` | the same MSTL decomposition (stlrs, through augurs), Theta on trend + remainder | here |
//! | `ets` | non-seasonal AutoETS | augurs |
//! | `lag_regression` | ridge regression on recent and seasonal lags, applied recursively | here |
//!
//! `theta` and `lag_regression` are written here because augurs has neither;
//! both are a few lines of well-known algebra.

use augurs::Fit;
use augurs::Predict;
use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{classical_seasonal_indices, seasonality_test};

/// How often a series has a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    /// One value per hour: daily (24) and weekly (168) seasons.
    Hourly,
    /// One value per day: a weekly (7) and, with 2+ years, a yearly (365) season.
    Daily,
    /// One value per week: a yearly (52) season with 2+ years.
    Weekly,
}

impl Frequency {
    /// The seasonal periods usable on a series of length `n` (each needs two
    /// full cycles).
    pub fn seasonal_periods(self, n: usize) -> Vec<usize> {
        let all: &[usize] = match self {
            Frequency::Hourly => &[24, 168],
            Frequency::Daily => &[7, 365],
            Frequency::Weekly => &[52],
        };
        all.iter().copied().filter(|p| n >= 2 * p + 1).collect()
    }

    /// The period of the MASE scale (M4: 24 for hourly, 1 for weekly; 7 for
    /// daily as is usual for business data).
    pub fn mase_period(self) -> usize {
        match self {
            Frequency::Hourly => 24,
            Frequency::Daily => 7,
            Frequency::Weekly => 1,
        }
    }

    /// The main period for seasonal adjustment (Theta, Naive2).
    pub fn main_period(self) -> usize {
        match self {
            Frequency::Hourly => 24,
            Frequency::Daily => 7,
            Frequency::Weekly => 52,
        }
    }

    fn lags(self, n: usize) -> Vec<usize> {
        let (short, seasonal): (usize, &[usize]) = match self {
            Frequency::Hourly => (24, &[48, 72, 96, 120, 144, 168, 336]),
            Frequency::Daily => (7, &[14, 21, 28, 364]),
            Frequency::Weekly => (4, &[52]),
        };
        // Every lag must leave at least two thirds of the series as rows.
        let max_lag = n / 3;
        (1..=short)
            .chain(seasonal.iter().copied())
            .filter(|l| *l <= max_lag)
            .collect()
    }
}

/// A candidate method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The value one (longest fitting) season ago.
    SeasonalNaive,
    /// Theta on the seasonally adjusted series.
    Theta,
    /// MSTL with AutoETS on the deseasonalised series.
    MstlEts,
    /// MSTL with Theta on the deseasonalised series.
    MstlTheta,
    /// Non-seasonal AutoETS.
    Ets,
    /// Ridge regression on lags.
    LagRegression,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 6] = [
        Method::SeasonalNaive,
        Method::Theta,
        Method::MstlEts,
        Method::MstlTheta,
        Method::Ets,
        Method::LagRegression,
    ];

    /// The candidates tried by default: the fast ones. The two AutoETS
    /// methods cost 10-50x more to fit and were not better in the M4
    /// evaluation (benches/RESULTS.md); they can be named explicitly.
    pub const DEFAULT: [Method; 4] = [
        Method::SeasonalNaive,
        Method::Theta,
        Method::MstlTheta,
        Method::LagRegression,
    ];

    /// The name used in the API and SQL.
    pub fn name(self) -> &'static str {
        match self {
            Method::SeasonalNaive => "seasonal_naive",
            Method::Theta => "theta",
            Method::MstlEts => "mstl_ets",
            Method::MstlTheta => "mstl_theta",
            Method::Ets => "ets",
            Method::LagRegression => "lag_regression",
        }
    }

    /// Parses [`Method::name`].
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Fewest points the method needs.
    pub fn min_points(self, freq: Frequency) -> usize {
        match self {
            Method::SeasonalNaive | Method::Ets | Method::Theta => 3,
            Method::MstlEts | Method::MstlTheta => 2 * freq.main_period().min(24) + 1,
            Method::LagRegression => 3 * freq.lags(usize::MAX).first().copied().unwrap_or(1) + 10,
        }
    }

    /// Point forecasts for `horizon` steps after `y`.
    pub fn forecast(self, y: &[f64], freq: Frequency, horizon: usize) -> Result<Vec<f64>> {
        if y.len() < self.min_points(freq) {
            return Err(Error::TooLittleHistory {
                what: self.name().to_string(),
                needed: self.min_points(freq),
                got: y.len(),
            });
        }
        match self {
            Method::SeasonalNaive => Ok(seasonal_naive(y, freq, horizon)),
            Method::Theta => Ok(theta(y, freq.main_period(), horizon)),
            Method::MstlEts => mstl_ets(y, freq, horizon),
            Method::MstlTheta => mstl_theta(y, freq, horizon),
            Method::Ets => ets(y, horizon),
            Method::LagRegression => Ok(lag_regression(y, freq, horizon)),
        }
    }
}

/// The value one season ago, for the longest season with a full cycle in
/// `y` (the last value when there is none).
pub fn seasonal_naive(y: &[f64], freq: Frequency, horizon: usize) -> Vec<f64> {
    let n = y.len();
    let p = freq
        .seasonal_periods(n)
        .last()
        .copied()
        .filter(|p| *p <= n)
        .unwrap_or(1);
    (0..horizon).map(|k| y[n - p + (k % p)]).collect()
}

/// Simple exponential smoothing with the smoothing parameter chosen by
/// least squares of the one-step errors (golden-section search on (0, 1)).
/// Returns (final level, alpha).
fn ses(x: &[f64]) -> (f64, f64) {
    let sse = |alpha: f64| {
        let mut level = x[0];
        let mut s = 0.0;
        for v in &x[1..] {
            let e = v - level;
            s += e * e;
            level += alpha * e;
        }
        (s, level)
    };
    let (mut a, mut b) = (0.001_f64, 0.999_f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    for _ in 0..40 {
        if sse(c).0 < sse(d).0 {
            b = d;
        } else {
            a = c;
        }
        c = b - g * (b - a);
        d = a + g * (b - a);
    }
    let alpha = 0.5 * (a + b);
    (sse(alpha).1, alpha)
}

/// The standard Theta method: SES plus half the linear-trend slope, on the
/// series seasonally adjusted by classical multiplicative decomposition when
/// the M4 seasonality test finds a season of period `m` (and the series is
/// positive).
pub fn theta(y: &[f64], m: usize, horizon: usize) -> Vec<f64> {
    let n = y.len();
    let seasonal = m > 1 && y.iter().all(|v| *v > 0.0) && seasonality_test(y, m);
    let idx = if seasonal {
        classical_seasonal_indices(y, m)
    } else {
        vec![1.0]
    };
    let pos = |t: usize| if seasonal { idx[t % m] } else { 1.0 };
    let x: Vec<f64> = (0..n).map(|t| y[t] / pos(t)).collect();
    // OLS slope of x on t.
    let tm = (n as f64 - 1.0) / 2.0;
    let xm = x.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in x.iter().enumerate() {
        let dt = t as f64 - tm;
        sxy += dt * (v - xm);
        sxx += dt * dt;
    }
    let b0 = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let (level, alpha) = ses(&x);
    let tail = (1.0 - alpha).powi(n as i32);
    (0..horizon)
        .map(|k| {
            let h = (k + 1) as f64;
            let f = level + 0.5 * b0 * (h - 1.0 + 1.0 / alpha - tail / alpha);
            f * pos(n + k)
        })
        .collect()
}

fn model_error(model: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Model {
        model,
        message: e.to_string(),
    }
}

/// MSTL decomposition with every seasonal period that has two full cycles
/// in `y`, and non-seasonal AutoETS on trend + remainder (augurs).
pub fn mstl_ets(y: &[f64], freq: Frequency, horizon: usize) -> Result<Vec<f64>> {
    let periods = freq.seasonal_periods(y.len());
    if periods.is_empty() {
        return ets(y, horizon);
    }
    let model = MSTLModel::new(periods, AutoETS::non_seasonal().into_trend_model());
    let fitted = model.fit(y).map_err(|e| model_error("mstl_ets", e))?;
    let f = fitted
        .predict(horizon, None)
        .map_err(|e| model_error("mstl_ets", e))?;
    Ok(f.point)
}

/// MSTL decomposition (stlrs, as [`mstl_ets`] uses it) with the
/// non-seasonal Theta method on trend + remainder; each seasonal component
/// continues its last cycle.
pub fn mstl_theta(y: &[f64], freq: Frequency, horizon: usize) -> Result<Vec<f64>> {
    let periods = freq.seasonal_periods(y.len());
    if periods.is_empty() {
        return Ok(theta(y, 1, horizon));
    }
    let fit = augurs::mstl::stlrs::MstlParams::new()
        .fit(y, &periods)
        .map_err(|e| model_error("mstl_theta", e))?;
    let n = y.len();
    let adjusted: Vec<f64> = fit
        .trend()
        .iter()
        .zip(fit.remainder())
        .map(|(t, r)| t + r)
        .collect();
    let mut f = theta(&adjusted, 1, horizon);
    for (p, component) in periods.iter().zip(fit.seasonal()) {
        for (k, v) in f.iter_mut().enumerate() {
            *v += component[n - p + (k % p)];
        }
    }
    Ok(f)
}

/// Non-seasonal AutoETS (augurs).
pub fn ets(y: &[f64], horizon: usize) -> Result<Vec<f64>> {
    let fitted = AutoETS::non_seasonal()
        .fit(y)
        .map_err(|e| model_error("ets", e))?;
    let f = fitted
        .predict(horizon, None)
        .map_err(|e| model_error("ets", e))?;
    Ok(f.point)
}

/// Ridge regression of `y_t / s` on an intercept and the lags of
/// [`Frequency`] (recent values and whole seasons back), `s` being the mean
/// absolute value of the series; forecasts are produced recursively.
///
/// A recursive linear model can diverge (a fitted lag polynomial with a
/// root inside the unit circle, typically after one outlier in a short
/// series): a forecast that leaves the history's range widened by that
/// range on both sides is not trusted, and the seasonal naive forecast is
/// answered instead. (60 days near 12 a day with one day of 412 gave 9,000
/// five days ahead before this guard.)
pub fn lag_regression(y: &[f64], freq: Frequency, horizon: usize) -> Vec<f64> {
    let f = lag_regression_unguarded(y, freq, horizon);
    let (lo, hi) = y
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let range = hi - lo;
    if f.iter().all(|v| v.is_finite() && *v >= lo - range && *v <= hi + range) {
        f
    } else {
        seasonal_naive(y, freq, horizon)
    }
}

fn lag_regression_unguarded(y: &[f64], freq: Frequency, horizon: usize) -> Vec<f64> {
    let n = y.len();
    let lags = freq.lags(n);
    let Some(&max_lag) = lags.iter().max() else {
        return vec![y[n - 1]; horizon];
    };
    let scale = {
        let s = y.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
        if s > 0.0 { s } else { 1.0 }
    };
    let x: Vec<f64> = y.iter().map(|v| v / scale).collect();
    let p = lags.len() + 1;
    // Normal equations, accumulated row by row.
    let mut xtx = vec![0.0; p * p];
    let mut xty = vec![0.0; p];
    let mut row = vec![0.0; p];
    for t in max_lag..n {
        row[0] = 1.0;
        for (j, l) in lags.iter().enumerate() {
            row[j + 1] = x[t - l];
        }
        for i in 0..p {
            xty[i] += row[i] * x[t];
            for j in 0..=i {
                xtx[i * p + j] += row[i] * row[j];
            }
        }
    }
    let rows = (n - max_lag) as f64;
    let lambda = 1e-3 * rows;
    for i in 0..p {
        for j in 0..i {
            xtx[j * p + i] = xtx[i * p + j];
        }
        if i > 0 {
            xtx[i * p + i] += lambda;
        }
    }
    let Some(beta) = solve_spd(&mut xtx, &mut xty, p) else {
        return seasonal_naive(y, freq, horizon);
    };
    let mut hist = x;
    for _ in 0..horizon {
        let t = hist.len();
        let mut f = beta[0];
        for (j, l) in lags.iter().enumerate() {
            f += beta[j + 1] * hist[t - l];
        }
        hist.push(f);
    }
    hist[n..].iter().map(|v| v * scale).collect()
}

/// Solves `A x = b` for a symmetric positive definite `A` (row-major `p x p`)
/// by Cholesky; `None` when `A` is not positive definite.
fn solve_spd(a: &mut [f64], b: &mut [f64], p: usize) -> Option<Vec<f64>> {
    for j in 0..p {
        let mut d = a[j * p + j];
        for k in 0..j {
            d -= a[j * p + k] * a[j * p + k];
        }
        if d <= 1e-12 {
            return None;
        }
        let d = d.sqrt();
        a[j * p + j] = d;
        for i in j + 1..p {
            let mut s = a[i * p + j];
            for k in 0..j {
                s -= a[i * p + k] * a[j * p + k];
            }
            a[i * p + j] = s / d;
        }
    }
    // Forward then back substitution with L and L^T.
    for i in 0..p {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * p + k] * b[k];
        }
        b[i] = s / a[i * p + i];
    }
    for i in (0..p).rev() {
        let mut s = b[i];
        for k in i + 1..p {
            s -= a[k * p + i] * b[k];
        }
        b[i] = s / a[i * p + i];
    }
    Some(b.to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Sixty days near 12 a day repeating every 5 days, one day of 412
    /// five days ago, and a partial day (the browser test's shop).
    pub(crate) fn one_outlier() -> Vec<f64> {
        let mut y: Vec<f64> = (1..=60)
            .rev()
            .map(|d| 10.5 + (d % 5) as f64 + if d == 5 { 400.0 } else { 0.0 })
            .collect();
        y.push(20.0);
        y
    }

    /// The recursive lag regression alone runs away on [`one_outlier`],
    /// the guarded one does not.
    #[test]
    fn the_lag_regression_guard_catches_a_diverging_forecast() {
        let y = one_outlier();
        let wild = lag_regression_unguarded(&y, Frequency::Daily, 14);
        assert!(wild.iter().any(|v| v.abs() > 1000.0), "{wild:?}");
        let f = lag_regression(&y, Frequency::Daily, 14);
        assert_eq!(f, seasonal_naive(&y, Frequency::Daily, 14));
    }

    fn hourly(days: usize) -> Vec<f64> {
        (0..days * 24)
            .map(|t| {
                let hour = (t % 24) as f64;
                let weekday = ((t / 24) % 7) as f64;
                100.0
                    + 0.05 * t as f64
                    + 30.0 * (hour / 24.0 * std::f64::consts::TAU).sin()
                    + 10.0 * weekday
            })
            .collect()
    }

    #[test]
    fn every_method_follows_a_clean_seasonal_series() {
        let y = hourly(35);
        let (train, test) = y.split_at(y.len() - 48);
        for m in Method::ALL {
            let f = m.forecast(train, Frequency::Hourly, 48).unwrap();
            assert_eq!(f.len(), 48);
            let smape = crate::metrics::smape(test, &f);
            // Non-seasonal ETS cannot follow the season; the rest must.
            let bound = match m {
                Method::Ets => 40.0,
                // Theta adjusts for the daily season only, not the weekday effect.
                Method::Theta => 10.0,
                _ => 5.0,
            };
            assert!(smape < bound, "{}: sMAPE {smape}", m.name());
        }
    }

    #[test]
    fn theta_on_a_line_extrapolates_half_the_slope_plus_ses() {
        let y: Vec<f64> = (0..50).map(|t| 2.0 * t as f64).collect();
        let f = theta(&y, 1, 3);
        // SES with alpha -> 1 ends at the last value; Theta adds b0/2 per step
        // (b0 = 2) plus the SES lag correction.
        assert!(f[0] > 98.0 && f[0] < 102.0, "{f:?}");
        assert!(f[2] > f[1] && f[1] > f[0]);
    }

    #[test]
    fn too_short_for_a_method_is_a_clear_error() {
        let err = Method::MstlEts
            .forecast(&[1.0, 2.0], Frequency::Hourly, 3)
            .unwrap_err();
        assert!(matches!(err, Error::TooLittleHistory { .. }), "{err}");
    }
}
