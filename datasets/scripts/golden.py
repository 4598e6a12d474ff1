#!/usr/bin/env python3
"""Golden numbers for the dataset converters -> datasets/golden/converters.json.

This is an INDEPENDENT computation of what the Rust converters in
`datasets/` must produce from the raw public datasets (provenance in
`../shared/datasets/MANIFEST.md`). It shares no code with them: it is plain
DuckDB SQL over the raw `.csv.gz` files, so a converter bug cannot hide
in both places at once. Tests on the Rust side compare their counts and sums
to this file.

Rules that apply everywhere:

* Every CSV is read with ``all_varchar=true``; every number is cast
  explicitly. DuckDB reads an empty unquoted field as NULL; here NULL and
  "" both mean "empty".
* Money is ``DECIMAL(18,4)`` (sums ``DECIMAL(38,4)``), never float, and is
  written as a string with exactly 4 decimals, e.g. ``"8911407.9040"``.
  (No input has more than 3 decimals, so the cast is exact.)
* Output is deterministic: ``json.dump(..., indent=2, sort_keys=True)``;
  lists are in a documented order.

The mapping implemented here (and by the Rust converters):

online_retail
    Lines are grouped by InvoiceNo. A *product line* has a StockCode matching
    ``^[0-9]{5}[A-Za-z]{0,2}$`` or starting with ``DCGS`` or ``gift_``
    (case-sensitive). Other codes: POST, DOT, C2 = shipping; D = discount;
    everything else (M, m, S, BANK CHARGES, AMAZONFEE, CRUK, B, PADS) =
    adjustments. line amount = Quantity * UnitPrice. Invoices are classified
    in this order (the first rule that matches wins):
      1. starts with ``A``                     -> skipped ``bad_debt_adjustment``
      2. starts with ``C``, has a product line -> ``Order Refunded``,
         total = -(sum of product line amounts)
      3. starts with ``C``, no product line    -> skipped ``credit_without_products``
      4. every line has Quantity < 0           -> skipped ``stock_adjustment``
      4b. every line has UnitPrice = 0         -> skipped ``zero_value_invoice``
         (anonymous "found"/"check"/"adjustment" invoices: stock, not sales)
      5. no product line                       -> skipped ``no_product_lines``
      6. otherwise                             -> ``Order Completed``
    Order Completed: revenue = sum of product amounts, shipping = sum of
    shipping amounts, discount = -(sum of D amounts), adjustments = sum of the
    other non-product amounts, total = sum of all amounts; customer = first
    non-empty CustomerID in file order ("17850.0" -> "17850"), else anonymous;
    timestamp = min(InvoiceDate), a Europe/London wall-clock time (months
    and hours here are of that local time). Exact duplicate rows are kept.

hotel_bookings
    One booking per data row (duplicates kept). nights = weekend + week
    nights; amount = adr * nights. ``Booking Created`` for every row, then
    Check-Out -> ``Booking Completed``, Canceled -> ``Booking Cancelled``,
    No-Show -> ``Booking No Show``.

clickstream
    Exact duplicate rows (all 9 fields) are dropped after the first
    (skipped ``duplicate_row``). view -> ``Product Viewed``, cart ->
    ``Product Added``, purchase -> ``Order Completed`` (revenue = price).

telco_churn
    Per customer: ``identify``, ``Subscription Started``, ``Payment Received``
    x tenure (amount = MonthlyCharges), ``Subscription Cancelled`` if
    Churn = Yes.

lead_scoring
    Per lead: ``identify``, ``Lead Created``, a ``page`` call x
    round(TotalVisits) (empty -> 0), ``Lead Activity`` when Last Activity is
    set, ``Lead Converted`` if Converted = 1.

Usage (from the repository root)::

    benches/.venv/bin/python datasets/scripts/golden.py [--data DIR] [--out FILE]

``--data`` defaults to ``datasets/data`` and ``--out`` to
``datasets/golden/converters.json``, both relative to the repository root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT / "datasets" / "data"
DEFAULT_OUT = REPO_ROOT / "datasets" / "golden" / "converters.json"

# Paths relative to the data directory (same layout as the shared folder).
FILES = {
    "online_retail": "online_retail/online-retail-dataset.csv.gz",
    "hotel_bookings": "hotel_bookings/hotel_bookings.csv.gz",
    "clickstream": "clickstream/rees46-2019-Oct-head17k.csv.gz",
    "telco_churn": "telco_churn/Telco-Customer-Churn.csv.gz",
    "lead_scoring": "lead_scoring/Leads.csv.gz",
}

MONEY = "DECIMAL(18,4)"

# --------------------------------------------------------------------------
# helpers


def load_csv(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """Load a CSV(.gz) into ``table``, every column VARCHAR, rows in file order.

    With DuckDB's default ``preserve_insertion_order`` the table's ``rowid``
    is the 0-based data row number in file order; the scripts rely on that
    for "first ... in file order" rules.
    """
    if not path.is_file():
        sys.exit(f"missing input: {path}")
    con.execute(
        f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_csv(?, header = true, "
        "all_varchar = true, delim = ',', quote = '\"', escape = '\"')",
        [str(path)],
    )


def money(value) -> str:
    """Decimal (or None for an empty sum) -> string with exactly 4 decimals."""
    if value is None:
        value = Decimal(0)
    return str(Decimal(value).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def one(con: duckdb.DuckDBPyConnection, sql: str, params=None):
    """First row of a query."""
    return con.execute(sql, params or []).fetchone()


def pairs(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    """Two-column query -> dict."""
    return {k: v for k, v in con.execute(sql).fetchall()}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# online_retail

RETAIL_PRODUCT = (
    "(regexp_full_match(StockCode, '[0-9]{5}[A-Za-z]{0,2}')"
    " OR starts_with(StockCode, 'DCGS') OR starts_with(StockCode, 'gift_'))"
)


def build_retail(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create tables ``retail_lines`` (one row per CSV row) and
    ``retail_invoices`` (one row per InvoiceNo, with its outcome).

    Also used by calibrate.py, so both files share one definition of an order.
    """
    load_csv(con, "retail_raw", path)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE retail_lines AS
        SELECT
            rowid AS line_no,
            InvoiceNo AS invoice,
            StockCode AS code,
            CASE
                WHEN {RETAIL_PRODUCT} THEN 'product'
                WHEN StockCode IN ('POST', 'DOT', 'C2') THEN 'shipping'
                WHEN StockCode = 'D' THEN 'discount'
                ELSE 'adjustment'
            END AS kind,
            CAST(Quantity AS BIGINT) AS qty,
            CAST(UnitPrice AS {MONEY}) AS unit_price,
            CAST(CAST(Quantity AS BIGINT) * CAST(UnitPrice AS {MONEY}) AS {MONEY}) AS amount,
            strptime(InvoiceDate, '%Y-%m-%d %H:%M:%S') AS ts,
            CASE WHEN coalesce(trim(CustomerID), '') = '' THEN NULL
                 ELSE CAST(CAST(CAST(CustomerID AS DECIMAL(18,1)) AS BIGINT) AS VARCHAR)
            END AS customer,
            Country AS country
        FROM retail_raw
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TABLE retail_invoices AS
        WITH g AS (
            SELECT
                invoice,
                count(*) AS lines,
                count(*) FILTER (WHERE kind = 'product') AS product_lines,
                count(*) FILTER (WHERE kind = 'product' AND qty > 0) AS positive_product_lines,
                bool_and(qty < 0) AS all_negative,
                bool_and(unit_price = 0) AS all_zero_price,
                coalesce(sum(amount) FILTER (WHERE kind = 'product'), 0) AS revenue,
                coalesce(sum(amount) FILTER (WHERE kind = 'shipping'), 0) AS shipping,
                -coalesce(sum(amount) FILTER (WHERE kind = 'discount'), 0) AS discount,
                coalesce(sum(amount) FILTER (WHERE kind = 'adjustment'), 0) AS adjustments,
                sum(amount) AS total,
                min(ts) AS ts,
                arg_min(customer, line_no) FILTER (WHERE customer IS NOT NULL) AS customer,
                arg_min(country, line_no) AS country
            FROM retail_lines
            GROUP BY invoice
        )
        SELECT
            *,
            CASE
                WHEN starts_with(invoice, 'A') THEN 'skip:bad_debt_adjustment'
                WHEN starts_with(invoice, 'C') AND product_lines > 0 THEN 'Order Refunded'
                WHEN starts_with(invoice, 'C') THEN 'skip:credit_without_products'
                WHEN all_negative THEN 'skip:stock_adjustment'
                WHEN all_zero_price THEN 'skip:zero_value_invoice'
                WHEN product_lines = 0 THEN 'skip:no_product_lines'
                ELSE 'Order Completed'
            END AS outcome
        FROM g
        """
    )


def golden_retail(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    build_retail(con, path)
    rows, invoices = one(con, "SELECT count(*), count(DISTINCT invoice) FROM retail_lines")
    events = pairs(
        con,
        "SELECT outcome, count(*) FROM retail_invoices "
        "WHERE NOT starts_with(outcome, 'skip:') GROUP BY 1",
    )
    skipped = {
        reason: {"invoices": n_inv, "lines": n_lines}
        for reason, n_inv, n_lines in con.execute(
            "SELECT substr(outcome, 6), count(*), sum(lines) FROM retail_invoices "
            "WHERE starts_with(outcome, 'skip:') GROUP BY 1"
        ).fetchall()
    }
    (
        revenue,
        total,
        shipping,
        discount,
        adjustments,
        with_customer,
        anonymous,
        customers,
        product_items,
    ) = one(
        con,
        """
        SELECT sum(revenue), sum(total), sum(shipping), sum(discount), sum(adjustments),
               count(customer), count(*) - count(customer), count(DISTINCT customer),
               sum(product_lines)
        FROM retail_invoices WHERE outcome = 'Order Completed'
        """,
    )
    refund_total, refund_items, refund_positive_items = one(
        con,
        "SELECT sum(-revenue), sum(product_lines), sum(positive_product_lines) "
        "FROM retail_invoices WHERE outcome = 'Order Refunded'",
    )
    by_month = {
        month: {"orders": n, "revenue": money(rev)}
        for month, n, rev in con.execute(
            "SELECT strftime(ts, '%Y-%m'), count(*), sum(revenue) FROM retail_invoices "
            "WHERE outcome = 'Order Completed' GROUP BY 1"
        ).fetchall()
    }
    top_countries = [
        {"country": c, "orders": n, "revenue": money(rev)}
        for c, n, rev in con.execute(
            "SELECT country, count(*), sum(revenue) AS rev FROM retail_invoices "
            "WHERE outcome = 'Order Completed' GROUP BY 1 ORDER BY rev DESC, country LIMIT 10"
        ).fetchall()
    ]
    return {
        "_doc": (
            "Invoices grouped by InvoiceNo; see the module docstring of "
            "datasets/scripts/golden.py for the rules. Money sums are over "
            "Order Completed unless named refund_*. by_month uses the month of the "
            "order timestamp (min InvoiceDate, Europe/London wall clock). "
            "top_countries_by_revenue: the 10 countries with the largest Order "
            "Completed revenue, largest first (ties by name). refund_product_line_items "
            "counts all product lines of refunded invoices; refund_positive_quantity_lines "
            "counts those with Quantity > 0 (none: every credit-note line is negative)."
        ),
        "rows": rows,
        "invoices": invoices,
        "events": events,
        "skipped": skipped,
        "revenue_sum": money(revenue),
        "total_sum": money(total),
        "shipping_sum": money(shipping),
        "discount_sum": money(discount),
        "adjustments_sum": money(adjustments),
        "refund_total_sum": money(refund_total),
        "refund_product_line_items": refund_items,
        "refund_positive_quantity_lines": refund_positive_items,
        "orders_with_customer": with_customer,
        "orders_anonymous": anonymous,
        "distinct_customers": customers,
        "order_product_line_items": product_items,
        "by_month": by_month,
        "top_countries_by_revenue": top_countries,
    }


# --------------------------------------------------------------------------
# hotel_bookings


def build_hotel(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create table ``hotel`` (one row per booking) with typed columns."""
    load_csv(con, "hotel_raw", path)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE hotel AS
        SELECT
            rowid + 1 AS row_no,
            hotel,
            CAST(is_canceled AS INTEGER) AS is_canceled,
            CAST(lead_time AS INTEGER) AS lead_time,
            make_date(
                CAST(arrival_date_year AS INTEGER),
                CAST(strftime(strptime(arrival_date_month, '%B'), '%m') AS INTEGER),
                CAST(arrival_date_day_of_month AS INTEGER)
            ) AS arrival,
            CAST(stays_in_weekend_nights AS INTEGER) + CAST(stays_in_week_nights AS INTEGER) AS nights,
            CAST(CAST(adr AS {MONEY}) * (CAST(stays_in_weekend_nights AS INTEGER)
                 + CAST(stays_in_week_nights AS INTEGER)) AS {MONEY}) AS amount,
            children,
            country,
            reservation_status AS status,
            CAST(reservation_status_date AS DATE) AS status_date
        FROM hotel_raw
        """
    )


HOTEL_EVENT = {
    "Check-Out": "Booking Completed",
    "Canceled": "Booking Cancelled",
    "No-Show": "Booking No Show",
}


def golden_hotel(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    build_hotel(con, path)
    rows, created_amount, lead_sum = one(
        con, "SELECT count(*), sum(amount), sum(lead_time) FROM hotel"
    )
    by_status = pairs(con, "SELECT status, count(*) FROM hotel GROUP BY 1")
    unknown = set(by_status) - set(HOTEL_EVENT)
    if unknown:
        sys.exit(f"hotel_bookings: unmapped reservation_status {sorted(unknown)}")
    events = {"Booking Created": rows}
    for status, n in by_status.items():
        events[HOTEL_EVENT[status]] = n
    (completed_amount,) = one(
        con, "SELECT sum(amount) FROM hotel WHERE status = 'Check-Out'"
    )
    cancellations = pairs(
        con,
        "SELECT strftime(status_date, '%Y-%m'), count(*) FROM hotel "
        "WHERE status = 'Canceled' GROUP BY 1",
    )
    avg_lead = (Decimal(lead_sum) / Decimal(rows)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )
    return {
        "_doc": (
            "One booking per data row (1-based row numbers, duplicates kept). "
            "amount = adr * (weekend + week nights) as DECIMAL(18,4). "
            "cancellations_by_status_month counts Booking Cancelled events "
            "(reservation_status = Canceled; No-Show not included) by the month of "
            "reservation_status_date. is_canceled = 1 equals Canceled + No-Show. "
            "avg_lead_time is exact sum/count rounded half-up to 4 decimals."
        ),
        "rows": rows,
        "events": events,
        "is_canceled_count": one(con, "SELECT count(*) FROM hotel WHERE is_canceled = 1")[0],
        "created_amount_sum": money(created_amount),
        "completed_amount_sum": money(completed_amount),
        "cancellations_by_status_month": cancellations,
        "by_hotel": pairs(con, "SELECT hotel, count(*) FROM hotel GROUP BY 1"),
        "country_null_count": one(con, "SELECT count(*) FROM hotel WHERE country = 'NULL'")[0],
        "children_na_count": one(con, "SELECT count(*) FROM hotel WHERE children = 'NA'")[0],
        "zero_night_bookings": one(con, "SELECT count(*) FROM hotel WHERE nights = 0")[0],
        "avg_lead_time": str(avg_lead),
    }


# --------------------------------------------------------------------------
# clickstream

CLICK_COLUMNS = (
    "event_time, event_type, product_id, category_id, category_code, brand, "
    "price, user_id, user_session"
)
CLICK_EVENT = {
    "view": "Product Viewed",
    "cart": "Product Added",
    "purchase": "Order Completed",
}


def build_clickstream(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create ``click_raw`` (all rows) and ``click`` (exact duplicates dropped
    after their first occurrence, typed columns)."""
    load_csv(con, "click_raw", path)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE click AS
        WITH numbered AS (
            SELECT rowid AS row_no, *,
                   row_number() OVER (PARTITION BY {CLICK_COLUMNS} ORDER BY rowid) AS copy
            FROM click_raw
        )
        SELECT
            row_no,
            strptime(event_time, '%Y-%m-%d %H:%M:%S UTC') AS ts,
            event_type,
            CAST(price AS {MONEY}) AS price,
            user_id,
            user_session AS session
        FROM numbered WHERE copy = 1
        """
    )


def golden_clickstream(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    build_clickstream(con, path)
    (rows,) = one(con, "SELECT count(*) FROM click_raw")
    (kept,) = one(con, "SELECT count(*) FROM click")
    by_type = pairs(con, "SELECT event_type, count(*) FROM click GROUP BY 1")
    unknown = set(by_type) - set(CLICK_EVENT)
    if unknown:
        sys.exit(f"clickstream: unmapped event_type {sorted(unknown)}")
    events = {CLICK_EVENT[t]: n for t, n in by_type.items()}
    revenue, users, sessions = one(
        con,
        "SELECT sum(price) FILTER (WHERE event_type = 'purchase'), "
        "count(DISTINCT user_id), count(DISTINCT session) FROM click",
    )
    ordered = one(
        con,
        """
        WITH s AS (
            SELECT session,
                   min(ts) FILTER (WHERE event_type = 'view') AS first_view
            FROM click GROUP BY 1
        ), c AS (
            SELECT s.session, s.first_view,
                   (SELECT min(k.ts) FROM click k WHERE k.session = s.session
                      AND k.event_type = 'cart' AND k.ts >= s.first_view) AS first_cart
            FROM s WHERE s.first_view IS NOT NULL
        )
        SELECT count(*),
               count(first_cart),
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM click p WHERE p.session = c.session
                     AND p.event_type = 'purchase' AND p.ts >= c.first_cart))
        FROM c
        """,
    )
    any_order = one(
        con,
        """
        WITH s AS (
            SELECT session,
                   bool_or(event_type = 'view') AS v,
                   bool_or(event_type = 'cart') AS c,
                   bool_or(event_type = 'purchase') AS p
            FROM click GROUP BY 1
        )
        SELECT count(*) FILTER (WHERE v), count(*) FILTER (WHERE v AND c),
               count(*) FILTER (WHERE v AND c AND p)
        FROM s
        """,
    )
    funnel_keys = ("view", "cart", "purchase")
    return {
        "_doc": (
            "Duplicates = all 9 fields equal; the first copy is kept. funnel_time_order: "
            "sessions with a view; of those, sessions with a cart at or after (>=, "
            "second resolution) their first view; of those, sessions with a purchase "
            "at or after that first such cart. funnel_any_order: view; view and cart; "
            "view, cart and purchase, in any order."
        ),
        "rows": rows,
        "events": events,
        "skipped": {"duplicate_row": rows - kept},
        "purchase_revenue_sum": money(revenue),
        "distinct_users": users,
        "distinct_sessions": sessions,
        "funnel_time_order": dict(zip(funnel_keys, ordered)),
        "funnel_any_order": dict(zip(funnel_keys, any_order)),
    }


# --------------------------------------------------------------------------
# telco_churn


def golden_telco(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    load_csv(con, "telco_raw", path)
    rows, payments, payment_sum, churned, blank = one(
        con,
        f"""
        SELECT count(*),
               sum(CAST(tenure AS INTEGER)),
               sum(CAST(CAST(tenure AS INTEGER) * CAST(MonthlyCharges AS {MONEY}) AS {MONEY})),
               count(*) FILTER (WHERE Churn = 'Yes'),
               count(*) FILTER (WHERE coalesce(trim(TotalCharges), '') = '')
        FROM telco_raw
        """,
    )
    return {
        "_doc": (
            "Per customer: identify, Subscription Started, Payment Received x tenure "
            "(amount = MonthlyCharges), Subscription Cancelled if Churn = Yes. "
            "payments_sum = sum(tenure * MonthlyCharges). TotalCharges blank = empty "
            "after trimming (it is a single space in the file)."
        ),
        "rows": rows,
        "events": {
            "identify": rows,
            "Subscription Started": rows,
            "Payment Received": payments,
            "Subscription Cancelled": churned,
        },
        "payments_sum": money(payment_sum),
        "churned": churned,
        "total_charges_blank": blank,
    }


# --------------------------------------------------------------------------
# lead_scoring


def golden_leads(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    load_csv(con, "leads_raw", path)
    rows, visits, converted, visits_empty, activities = one(
        con,
        """
        SELECT count(*),
               sum(CASE WHEN coalesce(trim("TotalVisits"), '') = '' THEN 0
                        ELSE CAST(round(CAST("TotalVisits" AS DECIMAL(18,4))) AS BIGINT) END),
               count(*) FILTER (WHERE "Converted" = '1'),
               count(*) FILTER (WHERE coalesce(trim("TotalVisits"), '') = ''),
               count(*) FILTER (WHERE coalesce(trim("Last Activity"), '') NOT IN ('', 'Select'))
        FROM leads_raw
        """,
    )
    columns = [r[0] for r in con.execute("DESCRIBE leads_raw").fetchall()]
    select_counts = {}
    for col in columns:
        quoted = '"' + col.replace('"', '""') + '"'
        (n,) = one(con, f"SELECT count(*) FROM leads_raw WHERE {quoted} = 'Select'")
        if n:
            select_counts[col] = n
    return {
        "_doc": (
            "Per lead: identify, Lead Created, a page call x round(TotalVisits) "
            "(half away from zero; empty -> 0; every value is an integer in this file), "
            "Lead Activity when Last Activity is set, Lead Converted if Converted = 1. select_placeholder_counts: rows equal to "
            "'Select' for every column that has any."
        ),
        "rows": rows,
        "events": {
            "identify": rows,
            "Lead Created": rows,
            "page": visits,
            "Lead Activity": activities,
            "Lead Converted": converted,
        },
        "converted": converted,
        "total_visits_empty": visits_empty,
        "select_placeholder_counts": select_counts,
    }


# --------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA,
        help="dataset directory (default: datasets/data under the repo root)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help="output JSON (default: datasets/golden/converters.json)",
    )
    args = parser.parse_args(argv)

    con = duckdb.connect()
    builders = {
        "online_retail": golden_retail,
        "hotel_bookings": golden_hotel,
        "clickstream": golden_clickstream,
        "telco_churn": golden_telco,
        "lead_scoring": golden_leads,
    }
    result = {
        "_doc": (
            "Golden numbers the Rust converters must reproduce, computed "
            "independently with DuckDB SQL by datasets/scripts/golden.py. Money is "
            "a string with 4 decimals. Regenerate: benches/.venv/bin/python "
            "datasets/scripts/golden.py --data <dir>."
        ),
        "inputs": {},
    }
    for name, build in builders.items():
        path = args.data / FILES[name]
        result[name] = build(con, path)
        result["inputs"][name] = {"file": FILES[name], "sha256_gz": sha256(path)}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
