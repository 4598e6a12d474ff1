#!/usr/bin/env python3
"""Calibration numbers for the synthetic demo generator -> datasets/calibration.json.

Every number the generator uses to look like a real shop, hotel or
storefront is derived here from the real public datasets (provenance in
`../shared/datasets/MANIFEST.md`), so the demo's shape can be traced back to
data rather than guesses. Each section of the output carries a ``_doc``
string that says how its numbers were computed.

Definitions are shared with golden.py (imported from this folder): an
Online Retail "order" is an invoice whose outcome there is
``Order Completed``, a refund is ``Order Refunded``, hours, weekdays and months
are of the order timestamp (min InvoiceDate, Europe/London wall clock), and
clickstream exact duplicate rows are dropped.

Conventions:

* Quantiles are DuckDB ``quantile_cont`` (linear interpolation between
  order statistics).
* Log-normal fits are maximum likelihood: mu = mean(ln x),
  sigma = population standard deviation of ln x (``stddev_pop``).
* Weights sum to 1 and indices average 1, up to the rounding of each float
  to 6 decimals.

Usage (from the repository root)::

    benches/.venv/bin/python datasets/scripts/calibrate.py [--data DIR] [--out FILE]

``--data`` defaults to ``datasets/data`` and ``--out`` to
``datasets/calibration.json``, both relative to the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

sys.dont_write_bytecode = True  # keep datasets/scripts free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden  # noqa: E402  (same folder; shares the converter definitions)

DEFAULT_OUT = golden.REPO_ROOT / "datasets" / "calibration.json"
DIGITS = 6
# A weekday with less than this share of orders is treated as "closed" and
# raised in weekday_weights_smoothed.
QUIET_WEEKDAY_SHARE = 0.05
LEAD_TIME_BUCKETS = [(0, 7), (8, 30), (31, 90), (91, None)]


def r6(x) -> float:
    """Round to 6 decimals as a plain float (None stays None)."""
    return None if x is None else round(float(x), DIGITS)


def normalize(values) -> list[float]:
    total = float(sum(values))
    return [r6(v / total) for v in values]


def relative_to_mean(values) -> list[float]:
    mean = float(sum(values)) / len(values)
    return [r6(v / mean) for v in values]


def smooth_weekdays(counts: list[int]) -> tuple[list[float], list[int]]:
    """Raise "quiet" weekdays (share < QUIET_WEEKDAY_SHARE) to the smallest
    share among the other weekdays, then renormalize. Returns the weights and
    the 0-based (Monday = 0) indices of the raised days."""
    total = float(sum(counts))
    shares = [c / total for c in counts]
    quiet = [i for i, s in enumerate(shares) if s < QUIET_WEEKDAY_SHARE]
    busy = [s for s in shares if s >= QUIET_WEEKDAY_SHARE]
    floor = min(busy)
    raised = [floor if i in quiet else s for i, s in enumerate(shares)]
    return normalize(raised), quiet


# --------------------------------------------------------------------------


def calibrate_shop(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    golden.build_retail(con, path)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW orders AS "
        "SELECT * FROM retail_invoices WHERE outcome = 'Order Completed'"
    )
    (n_orders,) = golden.one(con, "SELECT count(*) FROM orders")

    by_hour = dict(con.execute("SELECT hour(ts), count(*) FROM orders GROUP BY 1").fetchall())
    hour_counts = [by_hour.get(h, 0) for h in range(24)]
    by_dow = dict(con.execute("SELECT isodow(ts), count(*) FROM orders GROUP BY 1").fetchall())
    dow_counts = [by_dow.get(d, 0) for d in range(1, 8)]
    smoothed, raised_days = smooth_weekdays(dow_counts)
    day_names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

    p50, p90, p99, n_positive = golden.one(
        con,
        "SELECT quantile_cont(revenue::DOUBLE, 0.5), quantile_cont(revenue::DOUBLE, 0.9), "
        "quantile_cont(revenue::DOUBLE, 0.99), count(*) FROM orders WHERE revenue > 0",
    )
    mu, sigma, n_fit = golden.one(
        con,
        "SELECT avg(ln(revenue::DOUBLE)), stddev_pop(ln(revenue::DOUBLE)), count(*) "
        "FROM orders WHERE revenue > 0 AND revenue::DOUBLE < ?",
        [p99],
    )
    (n_zero,) = golden.one(con, "SELECT count(*) FROM orders WHERE revenue <= 0")

    items_mean, items_p50, items_p90 = golden.one(
        con,
        "SELECT avg(product_lines), quantile_cont(product_lines, 0.5), "
        "quantile_cont(product_lines, 0.9) FROM orders",
    )
    price_mu, price_sigma, n_prices = golden.one(
        con,
        """
        SELECT avg(ln(l.unit_price::DOUBLE)), stddev_pop(ln(l.unit_price::DOUBLE)), count(*)
        FROM retail_lines l JOIN orders o USING (invoice)
        WHERE l.kind = 'product' AND l.unit_price > 0
        """,
    )

    with_customer, customers = golden.one(
        con, "SELECT count(customer), count(DISTINCT customer) FROM orders"
    )
    opc_mean, opc_p50, opc_p90 = golden.one(
        con,
        "SELECT avg(n), quantile_cont(n, 0.5), quantile_cont(n, 0.9) FROM "
        "(SELECT customer, count(*) AS n FROM orders WHERE customer IS NOT NULL GROUP BY 1)",
    )
    (n_refunds,) = golden.one(
        con, "SELECT count(*) FROM retail_invoices WHERE outcome = 'Order Refunded'"
    )

    by_month = dict(
        con.execute(
            "SELECT month(ts), count(*) FROM orders "
            "WHERE (ts >= TIMESTAMP '2011-01-01' AND ts < TIMESTAMP '2011-12-01') "
            "   OR (ts >= TIMESTAMP '2010-12-01' AND ts < TIMESTAMP '2011-01-01') "
            "GROUP BY 1"
        ).fetchall()
    )
    month_counts = [by_month[m] for m in range(1, 13)]

    return {
        "_doc": (
            "Online Retail (UCI). An order is an invoice that golden.py maps to Order "
            f"Completed ({n_orders} orders; they include {n_zero} orders with revenue 0, "
            "mostly anonymous zero-price stock notes that the mapping does not skip). "
            "hour_weights: share of orders by local hour 0..23 of the order timestamp. "
            "weekday_weights: share by local weekday, Monday first (the shop has no "
            "Saturday orders at all). weekday_weights_smoothed: every weekday below "
            f"{QUIET_WEEKDAY_SHARE:.0%} of orders is raised to the smallest share among the other "
            "weekdays, then all are renormalized. refund_rate: Order Refunded events / "
            "Order Completed events. repeat_customer_share: among orders with a customer, "
            "the share that is not that customer's first order = (orders with customer - "
            "distinct customers) / orders with customer. monthly_index: orders per calendar "
            "month Jan..Dec divided by the mean of the 12, using 2011-01..2011-11 and "
            "2010-12 for December (the only full months; 2011-12 stops on the 9th)."
        ),
        "hour_weights": normalize(hour_counts),
        "weekday_weights": normalize(dow_counts),
        "weekday_weights_smoothed": smoothed,
        "weekday_weights_smoothed_raised": [day_names[i] for i in raised_days],
        "order_value_lognormal": {
            "_doc": (
                "Order revenue (sum of product line amounts). p50/p90/p99 over the "
                f"{n_positive} orders with revenue > 0; mu/sigma are the maximum-likelihood "
                "log-normal fit (mean and population stddev of ln revenue) over the "
                f"{n_fit} of those below p99."
            ),
            "mu": r6(mu),
            "sigma": r6(sigma),
            "p50": r6(p50),
            "p90": r6(p90),
            "p99": r6(p99),
        },
        "items_per_order": {
            "_doc": "Number of product lines per order (duplicate lines counted), over all orders.",
            "mean": r6(items_mean),
            "p50": r6(items_p50),
            "p90": r6(items_p90),
        },
        "unit_price_lognormal": {
            "_doc": (
                "Maximum-likelihood log-normal fit of UnitPrice over the "
                f"{n_prices} product lines of orders with UnitPrice > 0 (one sample per line, "
                "not weighted by quantity)."
            ),
            "mu": r6(price_mu),
            "sigma": r6(price_sigma),
        },
        "repeat_customer_share": r6((with_customer - customers) / with_customer),
        "orders_per_customer": {
            "_doc": f"Orders per customer over the {customers} customers with at least one order.",
            "mean": r6(opc_mean),
            "p50": r6(opc_p50),
            "p90": r6(opc_p90),
        },
        "refund_rate": r6(n_refunds / n_orders),
        "monthly_index": relative_to_mean(month_counts),
    }


def calibrate_bookings(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    golden.build_hotel(con, path)
    rows, cancelled, no_show, canceled_flag, zero_lead = golden.one(
        con,
        "SELECT count(*), count(*) FILTER (WHERE status = 'Canceled'), "
        "count(*) FILTER (WHERE status = 'No-Show'), count(*) FILTER (WHERE is_canceled = 1), "
        "count(*) FILTER (WHERE lead_time = 0) FROM hotel",
    )
    quantiles = golden.one(
        con,
        "SELECT " + ", ".join(f"quantile_cont(lead_time, {q})" for q in (0.1, 0.25, 0.5, 0.75, 0.9))
        + " FROM hotel",
    )
    by_dow = dict(con.execute("SELECT isodow(arrival), count(*) FROM hotel GROUP BY 1").fetchall())
    month_avg = dict(
        con.execute(
            "SELECT m, avg(n) FROM (SELECT year(arrival) AS y, month(arrival) AS m, count(*) AS n "
            "FROM hotel GROUP BY 1, 2) GROUP BY m"
        ).fetchall()
    )
    years = dict(
        con.execute(
            "SELECT month(arrival), string_agg(DISTINCT year(arrival)::VARCHAR, ',' "
            "ORDER BY year(arrival)::VARCHAR) FROM hotel GROUP BY 1"
        ).fetchall()
    )
    buckets = []
    for lo, hi in LEAD_TIME_BUCKETS:
        cond = f"lead_time >= {lo}" + (f" AND lead_time <= {hi}" if hi is not None else "")
        n, c = golden.one(
            con,
            f"SELECT count(*), count(*) FILTER (WHERE status = 'Canceled') FROM hotel WHERE {cond}",
        )
        buckets.append(
            {"lead_time_min": lo, "lead_time_max": hi, "bookings": n, "cancellation_rate": r6(c / n)}
        )
    return {
        "_doc": (
            f"Hotel booking demand ({rows} bookings, one per row, duplicates kept). "
            "cancellation_rate: reservation_status = Canceled (Booking Cancelled) / all "
            "bookings; no_show_rate: No-Show / all bookings; the two add up to "
            "is_canceled_rate (is_canceled = 1). lead_time_days: quantiles of lead_time over "
            "all bookings and the share with lead_time = 0. weekday_weights: share of bookings "
            "by arrival weekday (from arrival year/month/day, all bookings including cancelled), "
            "Monday first. monthly_index: arrivals per calendar month Jan..Dec, each month "
            "averaged over the years in which it is present (see monthly_index_years; the data "
            "runs 2015-07..2017-08), divided by the mean of the 12 averages. "
            "cancellation_by_lead_time: Canceled share per lead-time bucket (days, inclusive; "
            "lead_time_max null = no upper bound), same definition as cancellation_rate."
        ),
        "cancellation_rate": r6(cancelled / rows),
        "no_show_rate": r6(no_show / rows),
        "is_canceled_rate": r6(canceled_flag / rows),
        "lead_time_days": {
            "_doc": "quantile_cont of lead_time (days) over all bookings; share_zero = lead_time = 0.",
            **{k: r6(v) for k, v in zip(("p10", "p25", "p50", "p75", "p90"), quantiles)},
            "share_zero": r6(zero_lead / rows),
        },
        "weekday_weights": normalize([by_dow.get(d, 0) for d in range(1, 8)]),
        "monthly_index": relative_to_mean([month_avg[m] for m in range(1, 13)]),
        "monthly_index_years": [years[m] for m in range(1, 13)],
        "cancellation_by_lead_time": buckets,
    }


def calibrate_funnel(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    golden.build_clickstream(con, path)
    (
        sessions,
        carted,
        purchased,
        cart_and_purchase,
        purchase_no_cart,
        views,
        purchase_events,
        purchase_events_no_cart,
    ) = golden.one(
        con,
        """
        WITH s AS (
            SELECT session,
                   count(*) FILTER (WHERE event_type = 'view') AS views,
                   count(*) FILTER (WHERE event_type = 'cart') AS carts,
                   count(*) FILTER (WHERE event_type = 'purchase') AS purchases
            FROM click GROUP BY 1
        )
        SELECT count(*),
               count(*) FILTER (WHERE carts > 0),
               count(*) FILTER (WHERE purchases > 0),
               count(*) FILTER (WHERE carts > 0 AND purchases > 0),
               count(*) FILTER (WHERE purchases > 0 AND carts = 0),
               sum(views),
               sum(purchases),
               sum(purchases) FILTER (WHERE carts = 0)
        FROM s
        """,
    )
    return {
        "_doc": (
            f"REES46 clickstream head slice (about 3 hours; {sessions} sessions, exact duplicate "
            "rows dropped), per user_session, events in any order within the session. "
            "cart_session_share / purchase_session_share: sessions with at least one cart / "
            "purchase event over all sessions. cart_to_purchase: sessions with cart and purchase "
            "over sessions with cart (the same in time order here). mean_views_per_session: view "
            "events / sessions. purchase_without_cart_share: purchase sessions with no cart "
            "event / purchase sessions (the source often logs a purchase with no cart step); "
            "purchase_events_without_cart_share is the same counted per purchase event. Sessions "
            "still open at the end of the slice are cut off, so cart/purchase shares are "
            "slight underestimates."
        ),
        "cart_session_share": r6(carted / sessions),
        "purchase_session_share": r6(purchased / sessions),
        "cart_to_purchase": r6(cart_and_purchase / carted),
        "mean_views_per_session": r6(views / sessions),
        "purchase_without_cart_share": r6(purchase_no_cart / purchased),
        "purchase_events_without_cart_share": r6(purchase_events_no_cart / purchase_events),
    }


# --------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=golden.DEFAULT_DATA,
        help="dataset directory (default: datasets/data under the repo root)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help="output JSON (default: datasets/calibration.json)",
    )
    args = parser.parse_args(argv)

    con = duckdb.connect()
    sources = {
        "shop": ("online_retail", calibrate_shop),
        "bookings": ("hotel_bookings", calibrate_bookings),
        "funnel": ("clickstream", calibrate_funnel),
    }
    result = {
        "_doc": (
            "Numbers the synthetic demo generator uses, each derived from a real public "
            "dataset by datasets/scripts/calibrate.py (definitions shared with golden.py). "
            "Floats are rounded to 6 decimals. Regenerate: benches/.venv/bin/python "
            "datasets/scripts/calibrate.py --data <dir>."
        ),
        "inputs": {},
    }
    for section, (dataset, build) in sources.items():
        path = args.data / golden.FILES[dataset]
        result[section] = build(con, path)
        result["inputs"][dataset] = {
            "file": golden.FILES[dataset],
            "sha256_gz": golden.sha256(path),
        }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
