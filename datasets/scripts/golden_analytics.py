"""Golden answers for Beacon's analytics on real data, computed independently
with DuckDB SQL straight over the raw CSV files (no Beacon code involved).

Uses the event definitions of golden.py (an Online Retail order is an
invoice classified as ``Order Completed`` there; a hotel booking is one CSV
row). Times are the datasets' local wall-clock times, which is what Beacon's
business-time functions give back for a workspace in that time zone
(Europe/London for Online Retail, Europe/Lisbon for the hotels).

    benches/.venv/bin/python datasets/scripts/golden_analytics.py [--data DIR] [--out FILE]

Writes datasets/golden/analytics.json (money as strings with 4 decimals;
AOV rounded half up to cents with Python's Decimal from the exact sums).
"""

import argparse
import json
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden  # noqa: E402  (same directory)

DEFAULT_OUT = golden.REPO_ROOT / "datasets" / "golden" / "analytics.json"


def retail(con) -> dict:
    con.execute(
        """
        CREATE OR REPLACE TABLE orders AS
        SELECT invoice, ts, customer, country, revenue, strftime(ts, '%Y-%m') AS month
        FROM retail_invoices WHERE outcome = 'Order Completed'
        """
    )
    by_month_country = [
        [m, c, n, golden.money(r)]
        for m, c, n, r in con.execute(
            "SELECT month, country, count(*), sum(revenue) FROM orders GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    ]
    aov = {}
    for m, n, r in con.execute("SELECT month, count(*), sum(revenue) FROM orders GROUP BY 1 ORDER BY 1").fetchall():
        aov[m] = str((Decimal(r) / n).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    n, r = con.execute("SELECT count(*), sum(revenue) FROM orders").fetchone()
    aov_all = str((Decimal(r) / n).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    top_products = [
        [p, q, golden.money(r)]
        for p, q, r in con.execute(
            """
            SELECT l.code, sum(l.qty), sum(l.amount) AS revenue
            FROM retail_lines l JOIN orders o ON o.invoice = l.invoice
            WHERE l.kind = 'product'
            GROUP BY 1 ORDER BY revenue DESC, 1 LIMIT 10
            """
        ).fetchall()
    ]
    con.execute(
        """
        CREATE OR REPLACE TABLE firsts AS
        SELECT customer, min(month) AS cohort FROM orders WHERE customer IS NOT NULL GROUP BY 1
        """
    )
    new_returning = [
        [m, new, ret]
        for m, new, ret in con.execute(
            """
            SELECT a.month,
                   count(*) FILTER (WHERE f.cohort = a.month),
                   count(*) FILTER (WHERE f.cohort < a.month)
            FROM (SELECT DISTINCT customer, month FROM orders WHERE customer IS NOT NULL) a
            JOIN firsts f USING (customer)
            GROUP BY 1 ORDER BY 1
            """
        ).fetchall()
    ]
    cohorts = [
        [c, p, n]
        for c, p, n in con.execute(
            """
            SELECT f.cohort,
                   datediff('month', strptime(f.cohort, '%Y-%m'), strptime(a.month, '%Y-%m')) AS period,
                   count(*) AS customers
            FROM (SELECT DISTINCT customer, month FROM orders WHERE customer IS NOT NULL) a
            JOIN firsts f USING (customer)
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ).fetchall()
    ]
    return {
        "_doc": (
            "Online Retail orders (Order Completed as golden.py defines them), by London month. "
            "revenue_by_month_country: [month, country, orders, revenue]. aov_by_month: revenue/orders "
            "rounded half up to cents. top_products: [product_id, quantity, revenue] of product lines "
            "of orders, top 10 by revenue (ties by id). new_vs_returning: [month, customers whose first "
            "order is in the month, customers with an earlier order]. cohort_retention: [first-order "
            "month, months since, distinct customers ordering]. Orders without a customer are left out "
            "of the customer tables."
        ),
        "revenue_by_month_country": by_month_country,
        "aov_by_month": aov,
        "aov": aov_all,
        "top_products": top_products,
        "new_vs_returning": new_returning,
        "cohort_retention": cohorts,
    }


def hotel(con) -> dict:
    con.execute(
        """
        CREATE OR REPLACE TABLE hb AS
        SELECT *, arrival - lead_time * INTERVAL 1 DAY AS created,
               status = 'Canceled' AS cancelled
        FROM hotel
        """
    )
    by_month = [
        [m, n, c]
        for m, n, c in con.execute(
            "SELECT strftime(created, '%Y-%m'), count(*), count(*) FILTER (WHERE cancelled) FROM hb GROUP BY 1 ORDER BY 1"
        ).fetchall()
    ]
    lead = {
        h: f"{Decimal(str(v)).quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"
        for h, v in con.execute("SELECT hotel, avg(lead_time) FROM hb GROUP BY 1 ORDER BY 1").fetchall()
    }
    heatmap = [
        [d, h, n]
        for d, h, n in con.execute(
            """
            SELECT isodow(t), hour(t), count(*) FROM (
                SELECT created + INTERVAL 10 HOUR AS t FROM hb
                UNION ALL
                SELECT status_date + INTERVAL 18 HOUR FROM hb WHERE status IN ('Check-Out', 'Canceled', 'No-Show'))
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ).fetchall()
    ]
    return {
        "_doc": (
            "Hotel bookings as golden.py defines them; Booking Created happens at 10:00 local on "
            "arrival - lead_time, the status event at 18:00 local on reservation_status_date. "
            "cancellations_by_created_month: [month bookings were made, bookings, later Canceled]. "
            "avg_lead_time_days by hotel (4 decimals). heatmap: [ISO weekday, local hour, booking events] "
            "over all booking events."
        ),
        "cancellations_by_created_month": by_month,
        "avg_lead_time_days": lead,
        "heatmap": heatmap,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=golden.DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    con = duckdb.connect()
    golden.build_retail(con, args.data / golden.FILES["online_retail"])
    golden.build_hotel(con, args.data / golden.FILES["hotel_bookings"])
    result = {
        "_doc": "Golden analytics answers computed with DuckDB by datasets/scripts/golden_analytics.py.",
        "online_retail": retail(con),
        "hotel_bookings": hotel(con),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
