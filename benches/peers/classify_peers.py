"""Peer benchmark for churn / conversion scoring: scikit-learn
LogisticRegression, ROC AUC under 5-fold stratified cross-validation on
fixed folds, for the IBM Telco churn and the X Education lead-scoring data.

    benches/.venv/bin/python benches/peers/classify_peers.py --out benches/results/classify_peers.json

Flags: --data-dir DIR (default datasets/data), --out FILE (default stdout).

Folds (deterministic, so a Rust program can reproduce them exactly): rows
are taken in file order; for each class value separately, the k-th row of
that class (k = 0, 1, 2, ... counting only rows of that class) goes to fold
k % 5. Fold f is scored by a model fitted on the other four folds; all
preprocessing (imputation medians, scaling, one-hot categories) is fitted
on those training folds only. The script prints the per-fold sizes and
positives to stderr and keeps them in the JSON.

Telco (`telco_churn/Telco-Customer-Churn.csv.gz`): target Churn (Yes = 1),
customerID dropped. TotalCharges is blank in 11 rows (new customers), so it
is parsed as a number with blanks missing. Numeric: SeniorCitizen, tenure,
MonthlyCharges, TotalCharges -> SimpleImputer(median) + StandardScaler;
every other column -> OneHotEncoder(handle_unknown="ignore").

Leads (`lead_scoring/Leads.csv.gz`): target Converted, "Prospect ID" and
"Lead Number" dropped. Empty cells and the form placeholder "Select" are
missing (values are otherwise kept verbatim, e.g. "google" and "Google" in
Lead Source stay two categories). Numeric: TotalVisits, Total Time Spent on
Website, Page Views Per Visit, Asymmetrique Activity Score, Asymmetrique
Profile Score -> SimpleImputer(median, add_indicator=True) + StandardScaler;
every other column is categorical, missing as its own category "missing",
-> OneHotEncoder(handle_unknown="ignore"). All columns are kept, as in the
usual case-study setup, including Tags, Lead Quality and Last Notable
Activity. Tags and Lead Quality are filled in by the sales team while it
works the lead, so they partly leak the outcome; both sides of the
comparison keep them, so the AUCs are comparable but optimistic.

Model: LogisticRegression(max_iter=1000), default C=1.0 (lbfgs, L2).
`seconds` is the wall time of the five fits and predictions, preprocessing
included (reading the CSV is reported separately as `read_seconds`).
`pooled_auc` is the AUC of all out-of-fold predictions together.

Extra reference, not the baseline: HistGradientBoostingClassifier
(random_state=0, defaults otherwise) on the same folds, with the numeric
columns as is (NaN handled natively) and the categorical columns
ordinal-encoded as native categorical features. Reported under
"extra_hist_gradient_boosting".
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

ROOT = Path(__file__).resolve().parents[2]
FOLDS = 5

TELCO_NUMERIC = ["SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges"]
LEADS_NUMERIC = [
    "TotalVisits",
    "Total Time Spent on Website",
    "Page Views Per Visit",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
]


def fold_of(y: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """The fold of each row: the k-th row of its class (file order) -> k % folds."""
    fold = np.empty(len(y), dtype=int)
    seen: dict[int, int] = {}
    for i, label in enumerate(y):
        k = seen.get(label, 0)
        fold[i] = k % folds
        seen[label] = k + 1
    return fold


def read_raw(path: Path) -> pd.DataFrame:
    """Every cell as text, exactly as in the file (no NA guessing)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def load_telco(data_dir: Path) -> tuple[pd.DataFrame, np.ndarray, list[str], list[str]]:
    df = read_raw(data_dir / "telco_churn" / "Telco-Customer-Churn.csv.gz")
    y = (df.pop("Churn") == "Yes").to_numpy(dtype=int)
    df = df.drop(columns="customerID")
    for col in TELCO_NUMERIC:
        df[col] = pd.to_numeric(df[col].str.strip().replace("", np.nan))
    categorical = [c for c in df.columns if c not in TELCO_NUMERIC]
    return df, y, TELCO_NUMERIC, categorical


def load_leads(data_dir: Path) -> tuple[pd.DataFrame, np.ndarray, list[str], list[str]]:
    df = read_raw(data_dir / "lead_scoring" / "Leads.csv.gz")
    y = df.pop("Converted").astype(int).to_numpy()
    df = df.drop(columns=["Prospect ID", "Lead Number"])
    df = df.replace({"": np.nan, "Select": np.nan})
    for col in LEADS_NUMERIC:
        df[col] = pd.to_numeric(df[col])
    categorical = [c for c in df.columns if c not in LEADS_NUMERIC]
    df[categorical] = df[categorical].fillna("missing")
    return df, y, LEADS_NUMERIC, categorical


def logistic(numeric: list[str], categorical: list[str], indicator: bool):
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median", add_indicator=indicator), StandardScaler()),
                numeric,
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    return make_pipeline(pre, LogisticRegression(max_iter=1000))


def hist_gradient_boosting(numeric: list[str], categorical: list[str]):
    pre = ColumnTransformer(
        [
            ("num", "passthrough", numeric),
            (
                "cat",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
                categorical,
            ),
        ]
    )
    is_cat = [False] * len(numeric) + [True] * len(categorical)
    return make_pipeline(
        pre, HistGradientBoostingClassifier(categorical_features=is_cat, random_state=0)
    )


def cross_validate(make_model, x: pd.DataFrame, y: np.ndarray, fold: np.ndarray) -> dict:
    aucs = []
    oof = np.empty(len(y))
    started = time.perf_counter()
    for f in range(FOLDS):
        test = fold == f
        model = make_model().fit(x[~test], y[~test])
        oof[test] = model.predict_proba(x[test])[:, 1]
        aucs.append(roc_auc_score(y[test], oof[test]))
    seconds = time.perf_counter() - started
    return {
        "folds": [round(a, 6) for a in aucs],
        "mean_auc": round(float(np.mean(aucs)), 6),
        "pooled_auc": round(float(roc_auc_score(y, oof)), 6),
        "seconds": round(seconds, 3),
    }


def evaluate(name: str, loader, indicator: bool, data_dir: Path) -> dict:
    started = time.perf_counter()
    x, y, numeric, categorical = loader(data_dir)
    read_seconds = time.perf_counter() - started
    fold = fold_of(y)
    sizes = [int((fold == f).sum()) for f in range(FOLDS)]
    positives = [int(y[fold == f].sum()) for f in range(FOLDS)]
    log(f"{name}: {len(y)} rows, {int(y.sum())} positives; fold sizes {sizes}, positives {positives}")

    result = {
        "rows": len(y),
        "positives": int(y.sum()),
        "fold_sizes": sizes,
        "fold_positives": positives,
        "numeric": numeric,
        "categorical": categorical,
        "read_seconds": round(read_seconds, 3),
    }
    result.update(cross_validate(lambda: logistic(numeric, categorical, indicator), x, y, fold))
    log(f"  LogisticRegression AUC {result['mean_auc']:.4f} {result['folds']} ({result['seconds']}s)")
    extra = cross_validate(lambda: hist_gradient_boosting(numeric, categorical), x, y, fold)
    result["extra_hist_gradient_boosting"] = extra
    log(f"  extra: HistGradientBoosting AUC {extra['mean_auc']:.4f} {extra['folds']} ({extra['seconds']}s)")
    return result


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT / "datasets" / "data")
    p.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    args = p.parse_args()

    report = {
        "meta": {
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "folds": FOLDS,
            "fold_rule": "k-th row of each class in file order -> fold k % 5",
        },
        "telco": evaluate("telco", load_telco, False, args.data_dir),
        "leads": evaluate("leads", load_leads, True, args.data_dir),
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        log(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
