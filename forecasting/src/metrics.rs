//! Forecast accuracy measures as the M4 competition defines them, and the
//! M4 Naive2 benchmark method they are relative to.
//!
//! - sMAPE = mean over the horizon of `200 |y - f| / (|y| + |f|)`.
//! - MASE = mean `|y - f|` divided by the in-sample mean absolute seasonal
//!   difference `|x_t - x_{t-m}|` (m = 24 for hourly, 1 for weekly data).
//! - OWA = mean of sMAPE and MASE, each relative to Naive2's, computed on
//!   the averages over all series of a set.

/// sMAPE of one forecast, in percent (0..200). Points where both the actual
/// and the forecast are zero count as zero error.
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    let n = actual.len().min(forecast.len());
    if n == 0 {
        return f64::NAN;
    }
    let sum: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(y, f)| {
            let d = y.abs() + f.abs();
            if d == 0.0 {
                0.0
            } else {
                200.0 * (y - f).abs() / d
            }
        })
        .sum();
    sum / n as f64
}

/// The MASE scale of a training series: mean absolute seasonal difference at
/// lag `m` (the naive lag-1 difference when `m` is 1 or the series is too
/// short for lag `m`).
pub fn mase_scale(insample: &[f64], m: usize) -> f64 {
    let m = if m >= 1 && insample.len() > m { m } else { 1 };
    if insample.len() <= m {
        return f64::NAN;
    }
    let sum: f64 = insample.windows(m + 1).map(|w| (w[m] - w[0]).abs()).sum();
    sum / (insample.len() - m) as f64
}

/// MASE of one forecast against the training series `insample`.
pub fn mase(insample: &[f64], actual: &[f64], forecast: &[f64], m: usize) -> f64 {
    let mae = mae(actual, forecast);
    mae / mase_scale(insample, m)
}

/// Mean absolute error.
pub fn mae(actual: &[f64], forecast: &[f64]) -> f64 {
    let n = actual.len().min(forecast.len());
    if n == 0 {
        return f64::NAN;
    }
    actual
        .iter()
        .zip(forecast)
        .map(|(y, f)| (y - f).abs())
        .sum::<f64>()
        / n as f64
}

/// Overall weighted average relative to Naive2.
pub fn owa(smape: f64, mase: f64, naive2_smape: f64, naive2_mase: f64) -> f64 {
    0.5 * (smape / naive2_smape + mase / naive2_mase)
}

/// Autocorrelation at lag `k` (the M4 definition: centred on the mean,
/// normalised by the total sum of squares).
pub fn acf(y: &[f64], k: usize) -> f64 {
    let n = y.len();
    if k >= n {
        return 0.0;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let den: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
    if den == 0.0 {
        return 0.0;
    }
    let num: f64 = (0..n - k).map(|i| (y[i] - mean) * (y[i + k] - mean)).sum();
    num / den
}

/// The M4 90% seasonality test at period `m`, exactly as the competition's
/// code computes it (including its first term being `acf(1)`, not squared).
pub fn seasonality_test(y: &[f64], m: usize) -> bool {
    if m < 2 || y.len() < 3 * m {
        return false;
    }
    let mut s = acf(y, 1);
    for i in 2..m {
        s += acf(y, i).powi(2);
    }
    let limit = 1.645 * ((1.0 + 2.0 * s) / y.len() as f64).sqrt();
    acf(y, m).abs() > limit
}

/// Multiplicative seasonal indices of classical decomposition (centred
/// moving average of order `m`, 2x`m` when `m` is even), one per position
/// `t mod m`, normalised to mean 1. As statsmodels' `seasonal_decompose`.
pub fn classical_seasonal_indices(y: &[f64], m: usize) -> Vec<f64> {
    let n = y.len();
    let mut trend = vec![f64::NAN; n];
    if m % 2 == 0 {
        let half = m / 2;
        for t in half..n.saturating_sub(half) {
            let mut s = 0.5 * y[t - half] + 0.5 * y[t + half];
            for v in &y[t + 1 - half..t + half] {
                s += v;
            }
            trend[t] = s / m as f64;
        }
    } else {
        let half = m / 2;
        for t in half..n.saturating_sub(half) {
            trend[t] = y[t - half..=t + half].iter().sum::<f64>() / m as f64;
        }
    }
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    for t in 0..n {
        if trend[t].is_finite() && trend[t] != 0.0 {
            sums[t % m] += y[t] / trend[t];
            counts[t % m] += 1;
        }
    }
    let mut idx: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| if *c > 0 { s / *c as f64 } else { 1.0 })
        .collect();
    let mean = idx.iter().sum::<f64>() / m as f64;
    if mean != 0.0 && mean.is_finite() {
        idx.iter_mut().for_each(|v| *v /= mean);
    }
    idx
}

/// The M4 Naive2 forecast: the last value of the seasonally adjusted series
/// (classical multiplicative decomposition, applied only when the 90%
/// seasonality test passes), re-seasonalised.
pub fn naive2(y: &[f64], m: usize, horizon: usize) -> Vec<f64> {
    let n = y.len();
    if n == 0 {
        return vec![f64::NAN; horizon];
    }
    if m > 1 && seasonality_test(y, m) {
        let idx = classical_seasonal_indices(y, m);
        let last = y[n - 1] / idx[(n - 1) % m];
        (0..horizon).map(|k| last * idx[(n + k) % m]).collect()
    } else {
        vec![y[n - 1]; horizon]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smape_and_mase_by_hand() {
        assert!(
            (smape(&[100.0, 200.0], &[110.0, 180.0])
                - 0.5 * (200.0 * 10.0 / 210.0 + 200.0 * 20.0 / 380.0))
                .abs()
                < 1e-12
        );
        assert_eq!(smape(&[0.0], &[0.0]), 0.0);
        // In-sample seasonal differences at lag 2: |3-1|, |4-2| -> 2.
        assert_eq!(mase_scale(&[1.0, 2.0, 3.0, 4.0], 2), 2.0);
        assert_eq!(mase(&[1.0, 2.0, 3.0, 4.0], &[5.0], &[6.0], 2), 0.5);
        assert_eq!(owa(10.0, 1.0, 20.0, 2.0), 0.5);
    }

    #[test]
    fn naive2_reseasonalises_a_seasonal_series() {
        // A clean multiplicative season of period 4 with a flat level.
        let season = [0.5, 1.0, 1.5, 1.0];
        let y: Vec<f64> = (0..40).map(|t| 100.0 * season[t % 4]).collect();
        assert!(seasonality_test(&y, 4));
        let f = naive2(&y, 4, 4);
        for (k, v) in f.iter().enumerate() {
            assert!((v - 100.0 * season[(40 + k) % 4]).abs() < 1e-9, "{f:?}");
        }
        // A non-seasonal series is forecast by its last value.
        let z: Vec<f64> = (0..40).map(|t| t as f64).collect();
        assert_eq!(naive2(&z, 1, 2), vec![39.0, 39.0]);
    }
}
