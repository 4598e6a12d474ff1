#!/usr/bin/env bash
# The side-by-side benchmark harness: installs the peers (pinned, local),
# builds Beacon in release mode, and runs every suite that exists, each in
# one run with its peers. Each suite rewrites its own section of
# benches/RESULTS.md with the command, machine, date, figures and ratios.
#
#   benches/run.sh                 # every suite
#   benches/run.sh ingest datagen  # some suites
#
# Suites: ingest (HTTP ingest vs DuckDB bulk load), micro (criterion: decode,
# WAL append, Parquet flush, funnel aggregate), datagen (generator and
# converters vs DuckDB and Polars), dashboard (the dashboard and ad-hoc
# queries vs DuckDB, Polars and DataFusion's Python package), websocket
# (hub fan-out vs a Node ws server; ingest-to-push latency), transfer (a 1M-row
# result over HTTP formats, the PostgreSQL wire protocol and Flight SQL).
# forecasting (M4 Hourly/Weekly vs statsforecast), churn (Telco churn and
# lead scoring vs scikit-learn, same folds), overview (the web app's
# Overview drawn in chromium, 10M events) and report (the weekly sales and
# monthly bookings reports rendered as Excel vs their API calls, 1M and
# 10M events).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  suites=(ingest micro datagen dashboard websocket transfer forecasting churn overview report)
fi

benches/peers/setup.sh
cargo build --release -p beacon-api -p beacon-benches

for suite in "${suites[@]}"; do
  echo "== suite: $suite"
  case "$suite" in
    ingest)
      target/release/ingest_bench --beacon target/release/beacon --events "${INGEST_EVENTS:-500000}" --batch 500 --clients 8
      ;;
    micro)
      cargo bench -p beacon-benches --bench decode --bench storage --bench funnel -- --warm-up-time 1 --measurement-time 3
      ;;
    datagen)
      target/release/datagen_bench --beacon target/release/beacon --events "${DATAGEN_EVENTS:-1000000}"
      ;;
    dashboard)
      target/release/dashboard_bench --events "${DASHBOARD_EVENTS:-1000000,10000000}"
      ;;
    websocket)
      target/release/ws_bench --beacon target/release/beacon --connections "${WS_CONNECTIONS:-1000,5000,10000}"
      ;;
    transfer)
      bash api/tests/clients/python/setup.sh
      api/tests/clients/python/.venv/bin/python benches/peers/transfer_bench.py --beacon target/release/beacon --rows "${TRANSFER_ROWS:-1000000}"
      ;;
    forecasting)
      # An example of the forecasting crate: builds without the DataFusion stack.
      cargo run --release -p beacon-forecasting --example m4_eval
      ;;
    churn)
      cargo run --release -p beacon-forecasting --example classify_eval
      ;;
    overview)
      # The web app's Overview in chromium (playwright-core of the browser tests).
      npm ci --no-audit --no-fund --prefix api/tests/clients/web
      node benches/peers/overview_bench.mjs --beacon target/release/beacon --events "${OVERVIEW_EVENTS:-10000000}"
      ;;
    report)
      node benches/peers/report_bench.mjs --beacon target/release/beacon --events "${REPORT_EVENTS:-1000000,10000000}" --reuse
      ;;
    *)
      echo "unknown suite $suite" >&2
      exit 2
      ;;
  esac
done
