"""Peer benchmark for forecasting: statsforecast on M4 Hourly and Weekly,
scored with the official M4 metrics (sMAPE, MASE, OWA against Naive2).

    benches/.venv/bin/python benches/peers/forecast_peers.py --out benches/results/forecast_peers.json

Flags: --datasets hourly,weekly (default both), --limit N (first N series,
for quick runs), --data-dir DIR (default datasets/data/m4),
--forecasts-out DIR (per-method point forecasts as CSV id,step,value, named
<dataset>_<method>.csv, for a Rust program to compare or ensemble),
--no-intervals (skip the 80%/95% coverage pass).

Data. `<Dataset>-{train,test}.csv.gz` from the M4 repository, wide format:
column V1 is the series id, V2.. the values (quoted), shorter series
right-padded with empty cells, which are dropped. Horizons: Hourly h=48,
Weekly h=13. Every series is given to statsforecast with an integer time
index (freq=1, ds=1..n).

Metrics, as in the M4 evaluation code (`Benchmarks and Evaluation.R`):
  sMAPE = mean_t 200|y-f| / (|y|+|f|)
  MASE  = mean_t |y-f| / mean_t |x_t - x_{t-m}|  (in-sample, m = M4 frequency)
with m = 24 for Hourly and m = 1 for Weekly (M4 gives weekly data frequency
1). Dataset sMAPE/MASE are plain averages over series, and
OWA = 0.5 (sMAPE/sMAPE_Naive2 + MASE/MASE_Naive2) with the published M4
Naive2 values (Hourly 18.383 / 2.395, Weekly 9.161 / 2.777). The script
also computes Naive2 itself and prints it next to those references as a
check on the data and the metric code.

Naive2 (M4): seasonality test at lag m, 90% one-sided (|acf_m| > 1.645
sqrt((1 + 2 sum_{k<m} acf_k^2) / n), only when n >= 3m, as in the R code);
when seasonal, classical multiplicative decomposition (centred moving
average of order m, 2x m for even m; seasonal indices averaged per position
and normalised to mean 1), naive forecast of the seasonally adjusted series,
re-seasonalised with the last cycle of indices. With m = 1 (Weekly) Naive2
is the naive forecast (last value).

statsforecast models (2.1.1) and the parameters chosen:
  Hourly  AutoETS(season_length=24)
          MSTL(season_length=[24, 168])  (trend: its default AutoETS, ZZN)
          SeasonalNaive(season_length=24)
          Theta(season_length=24)  (statsforecast runs the same 90% acf test
                                    and multiplicative decomposition itself)
  Weekly  AutoETS(season_length=1)  statsforecast's ETS ignores seasonality
                                    for periods above 24, so 52 would be a
                                    non-seasonal fit anyway; 1 says so.
          MSTL(season_length=52) for series with at least 2*52+1 = 105
              points. Shorter series (65 of 359, all 80 points) have no two
              full years; for them "MSTL" is its trend forecaster on the raw
              series, AutoETS(season_length=1), as R's forecast::mstl does
              when it drops a period longer than n/2.
          SeasonalNaive(season_length=52)  (every weekly series has >= 80
                                            points, so one full year exists)
          Theta(season_length=52)  statsforecast only tests for (and removes)
                                   seasonality when n >= 2*52; shorter
                                   series get the non-seasonal Theta.
Forecasts are used as returned (no clipping at zero).

Timing. Each method runs in its own StatsForecast(..., freq=1, n_jobs=-1)
call on all series of the dataset; `seconds` is the wall time of
`forecast()` (fit + point forecast, including the worker pool's start),
and `series_per_s` = series / seconds. For the weekly MSTL the two groups'
times are added. Prediction intervals are not part of the timed run: a
second, untimed run with level=[80, 95] gives `coverage80`/`coverage95`,
the share of test points inside the interval over all series and steps.
Naive2 is timed too (plain numpy, one process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import statsforecast
from statsforecast import StatsForecast
from statsforecast.models import MSTL, AutoETS, SeasonalNaive, Theta

ROOT = Path(__file__).resolve().parents[2]
N_JOBS = -1
LEVELS = [80, 95]


@dataclass(frozen=True)
class Spec:
    name: str  # key in the output ("hourly")
    file: str  # file prefix ("Hourly")
    h: int
    m: int  # M4 frequency: seasonality for MASE and Naive2
    naive2_smape: float  # published M4 Naive2 values, for OWA
    naive2_mase: float


SPECS = {
    "hourly": Spec("hourly", "Hourly", 48, 24, 18.383, 2.395),
    "weekly": Spec("weekly", "Weekly", 13, 1, 9.161, 2.777),
}

WEEKLY_YEAR = 52


def methods(spec: Spec, n: int) -> dict[str, object]:
    """The statsforecast model for each method, for a series of length n."""
    if spec.name == "hourly":
        return {
            "AutoETS": AutoETS(season_length=24),
            "MSTL": MSTL(season_length=[24, 168]),
            "SeasonalNaive": SeasonalNaive(season_length=24),
            "Theta": Theta(season_length=24),
        }
    long_enough = n >= 2 * WEEKLY_YEAR + 1
    return {
        "AutoETS": AutoETS(season_length=1),
        "MSTL": MSTL(season_length=WEEKLY_YEAR)
        if long_enough
        else AutoETS(season_length=1, alias="MSTL"),
        "SeasonalNaive": SeasonalNaive(season_length=WEEKLY_YEAR),
        "Theta": Theta(season_length=WEEKLY_YEAR),
    }


# ---- data ------------------------------------------------------------------


def read_wide(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """Series ids and values of an M4 wide CSV, trailing empty cells dropped."""
    df = pd.read_csv(path, dtype={"V1": str})
    ids = df["V1"].tolist()
    values = df.drop(columns="V1").to_numpy(dtype=float)
    series = []
    for row in values:
        present = np.flatnonzero(~np.isnan(row))
        series.append(row[: present[-1] + 1] if len(present) else row[:0])
    return ids, series


def long_frame(ids: list[str], series: list[np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": np.repeat(ids, [len(s) for s in series]),
            "ds": np.concatenate([np.arange(1, len(s) + 1) for s in series]),
            "y": np.concatenate(series),
        }
    )


# ---- M4 metrics and Naive2 -------------------------------------------------


def acf(x: np.ndarray, k: int) -> float:
    """Sample autocorrelation at lag k (as R's acf)."""
    d = x - x.mean()
    return float(np.dot(d[k:], d[: len(d) - k]) / np.dot(d, d))


def seasonality_test(x: np.ndarray, m: int) -> bool:
    """M4's 90% autocorrelation test for seasonality at lag m."""
    if len(x) < 3 * m:
        return False
    r = np.array([acf(x, k) for k in range(1, m + 1)])
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(r[:-1] ** 2)) / len(x))
    return bool(abs(r[-1]) > limit)


def seasonal_indices(x: np.ndarray, m: int) -> np.ndarray:
    """Classical multiplicative decomposition (R's decompose): the m seasonal
    indices, index i for positions t with t % m == i, mean 1."""
    if m % 2 == 0:
        weights = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        weights = np.ones(m) / m
    half = len(weights) // 2
    trend = np.full(len(x), np.nan)
    trend[half : len(x) - half] = np.convolve(x, weights, mode="valid")
    ratio = x / trend
    figure = np.array([np.nanmean(ratio[i::m]) for i in range(m)])
    return figure / figure.mean()


def naive2(x: np.ndarray, h: int, m: int) -> np.ndarray:
    if m > 1 and seasonality_test(x, m):
        si = seasonal_indices(x, m)
        n = len(x)
        future = si[(n + np.arange(h)) % m]
        return x[-1] / si[(n - 1) % m] * future
    return np.repeat(x[-1], h)


def smape(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(200 * np.abs(y - f) / (np.abs(y) + np.abs(f))))


def mase(x: np.ndarray, y: np.ndarray, f: np.ndarray, m: int) -> float:
    scale = np.mean(np.abs(x[m:] - x[:-m]))
    return float(np.mean(np.abs(y - f)) / scale)


def score(
    spec: Spec, train: list[np.ndarray], test: list[np.ndarray], fc: np.ndarray
) -> dict[str, float]:
    """Dataset sMAPE, MASE and OWA of forecasts fc (series x h)."""
    s = np.mean([smape(y, f) for y, f in zip(test, fc)])
    q = np.mean([mase(x, y, f, spec.m) for x, y, f in zip(train, test, fc)])
    owa = 0.5 * (s / spec.naive2_smape + q / spec.naive2_mase)
    return {"smape": round(float(s), 4), "mase": round(float(q), 4), "owa": round(float(owa), 4)}


# ---- statsforecast ---------------------------------------------------------


def run_statsforecast(
    spec: Spec, ids: list[str], train: list[np.ndarray], method: str, level: list[int] | None
) -> tuple[pd.DataFrame, float]:
    """Forecasts of one method for all series (rows in `ids` order, columns
    1..h), and the wall seconds spent in forecast()."""
    # Series that need the same model form one StatsForecast call.
    groups: dict[str, list[int]] = {}
    for i, x in enumerate(train):
        model = methods(spec, len(x))[method]
        groups.setdefault(type(model).__name__, []).append(i)
    seconds = 0.0
    parts = []
    for members in groups.values():
        model = methods(spec, len(train[members[0]]))[method]
        df = long_frame([ids[i] for i in members], [train[i] for i in members])
        sf = StatsForecast(models=[model], freq=1, n_jobs=N_JOBS)
        started = time.perf_counter()
        out = sf.forecast(df=df, h=spec.h, level=level)
        seconds += time.perf_counter() - started
        parts.append(out)
    out = pd.concat(parts, ignore_index=True)
    out["step"] = out.groupby("unique_id").cumcount() + 1
    return out, seconds


def matrix(out: pd.DataFrame, ids: list[str], column: str) -> np.ndarray:
    """One forecast column as a (series x h) matrix in `ids` order."""
    wide = out.pivot(index="unique_id", columns="step", values=column)
    return wide.loc[ids].to_numpy(dtype=float)


def coverage(out: pd.DataFrame, ids: list[str], test: np.ndarray, method: str, lv: int) -> float:
    lo = matrix(out, ids, f"{method}-lo-{lv}")
    hi = matrix(out, ids, f"{method}-hi-{lv}")
    return round(float(np.mean((test >= lo) & (test <= hi))), 4)


def write_forecasts(dir_: Path, name: str, ids: list[str], fc: np.ndarray) -> None:
    h = fc.shape[1]
    pd.DataFrame(
        {
            "id": np.repeat(ids, h),
            "step": np.tile(np.arange(1, h + 1), len(ids)),
            "value": fc.ravel(),
        }
    ).to_csv(dir_ / f"{name}.csv", index=False, float_format="%.10g")


# ---- driver ----------------------------------------------------------------


def evaluate(spec: Spec, args: argparse.Namespace) -> dict:
    ids, train = read_wide(args.data_dir / f"{spec.file}-train.csv.gz")
    test_ids, test = read_wide(args.data_dir / f"{spec.file}-test.csv.gz")
    assert ids == test_ids, "train and test series differ"
    if args.limit:
        ids, train, test = ids[: args.limit], train[: args.limit], test[: args.limit]
    assert all(len(y) == spec.h for y in test), "test rows must have h values"
    y_test = np.vstack(test)
    log(f"{spec.name}: {len(ids)} series, h={spec.h}, m={spec.m}")

    started = time.perf_counter()
    fc_naive2 = np.vstack([naive2(x, spec.h, spec.m) for x in train])
    naive2_seconds = time.perf_counter() - started
    own = score(spec, train, test, fc_naive2)
    result = {
        "dataset": spec.name,
        "h": spec.h,
        "m": spec.m,
        "series": len(ids),
        "n_jobs": N_JOBS,
        "naive2": {
            "smape": own["smape"],
            "mase": own["mase"],
            "reference_smape": spec.naive2_smape,
            "reference_mase": spec.naive2_mase,
            "seconds": round(naive2_seconds, 3),
        },
        "methods": {},
    }
    log(
        f"  Naive2 sMAPE {own['smape']:.3f} (M4 {spec.naive2_smape}), "
        f"MASE {own['mase']:.3f} (M4 {spec.naive2_mase})"
    )
    if args.forecasts_out:
        write_forecasts(args.forecasts_out, f"{spec.name}_Naive2", ids, fc_naive2)

    for method in methods(spec, 0):
        out, seconds = run_statsforecast(spec, ids, train, method, level=None)
        fc = matrix(out, ids, method)
        entry = score(spec, train, test, fc)
        entry["seconds"] = round(seconds, 3)
        entry["series_per_s"] = round(len(ids) / seconds, 2)
        if np.isnan(fc).any():
            entry["nan_forecasts"] = int(np.isnan(fc).sum())
        if not args.no_intervals:
            out_pi, pi_seconds = run_statsforecast(spec, ids, train, method, level=LEVELS)
            for lv in LEVELS:
                entry[f"coverage{lv}"] = coverage(out_pi, ids, y_test, method, lv)
            entry["seconds_with_intervals"] = round(pi_seconds, 3)
        result["methods"][method] = entry
        log(
            f"  {method:<13} sMAPE {entry['smape']:.3f} MASE {entry['mase']:.3f} "
            f"OWA {entry['owa']:.3f}  {seconds:.1f}s ({entry['series_per_s']} series/s)"
        )
        if args.forecasts_out:
            write_forecasts(args.forecasts_out, f"{spec.name}_{method}", ids, fc)
    return result


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="hourly,weekly")
    p.add_argument("--limit", type=int, default=0, help="first N series only")
    p.add_argument("--data-dir", type=Path, default=ROOT / "datasets" / "data" / "m4")
    p.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    p.add_argument("--forecasts-out", type=Path, help="directory for per-method forecast CSVs")
    p.add_argument("--no-intervals", action="store_true", help="skip the coverage pass")
    args = p.parse_args()
    if args.forecasts_out:
        args.forecasts_out.mkdir(parents=True, exist_ok=True)

    report = {
        "meta": {
            "statsforecast": statsforecast.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "n_jobs": N_JOBS,
            "limit": args.limit or None,
        }
    }
    for name in args.datasets.split(","):
        report[name] = evaluate(SPECS[name.strip()], args)

    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        log(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
