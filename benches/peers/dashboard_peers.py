"""Peers for the dashboard benchmark: the same analytics queries Beacon's
dashboard answers, run on DuckDB, Polars and DataFusion (Python package) over
the same Parquet files in Beacon's event schema.

Run by `target/release/dashboard_bench`, which runs the same queries on
Beacon and compares every engine's results by a fingerprint (row count and
checksum) and their times. It can also be run by hand:

    benches/.venv/bin/python benches/peers/dashboard_peers.py \
        --data DIR --customer USER_ID --repeat 3 \
        [--engines duckdb,polars,datafusion] [--queries q1,q2]

`DIR/*.parquet` is read fresh by every query (DuckDB `read_parquet`, Polars
`scan_parquet`, DataFusion a listing table registered once per engine): no
engine imports the data into native tables first. Every engine runs with its
default thread count (all cores) and computes dates and hours in UTC.

For each engine, query and formulation ("variant"): one warm-up run, then
`--repeat` timed runs; a timed run covers executing the query and
materializing the whole result (DuckDB `to_arrow_table()`, Polars
`collect()`, DataFusion `collect()`), and the median is reported.

Output, one JSON object per line, flushed after each line:

    {"versions": {"duckdb": "...", "polars": "...", "datafusion": "..."}}
    {"engine": "duckdb", "query": "funnel3", "variant": "asof",
     "seconds": 0.123, "rows": 3, "checksum": 12345.67}
    {"engine": "datafusion", "query": "top_products_revenue", "variant": null,
     "error": "no JSON functions"}

`variant` names the formulation when a query has more than one (funnels:
"joins" = chain of aggregated joins, "asof" = as-of joins), else null.
`rows` is the number of result rows; `checksum` is the sum over all rows of
every integer, float and decimal column (not dates, timestamps or strings),
nulls as 0, summed exactly (floats via their shortest decimal text) and
rounded half away from zero to 2 decimals.

Queries (`--queries` takes these names):
  revenue_by_day          day, revenue, orders of 'Order Completed' per UTC day
  heatmap                 ISO weekday (1=Mon) x hour: orders, revenue
  funnel3                 per person (coalesce(user_id, anonymous_id)):
                          Product Viewed -> Product Added -> Order Completed
                          in 14 days; level, persons (exact level counts)
  funnel5                 per session: page -> Product Viewed -> Product Added
                          -> Checkout Started -> Order Completed in 1 day;
                          level, sessions
  retention_weekly        first-order weekly cohorts (Monday weeks):
                          cohort, period, customers
  rolling_revenue_7d      day, revenue_7d (7-row window over daily revenue)
  top_products_revenue    top 10 line-item products: product_id, revenue, units
  top_products_viewed     top 10 viewed products: product_id, views, viewers
  customer_timeline       one user's events: timestamp, event, revenue
  adhoc_event_counts      per event: events, people
  adhoc_monthly_channels  per UTC month, channel, payment_method: orders, revenue
  adhoc_sessions          one row: sessions, events, max_events

Funnel semantics (per person or session): t1 = first step-1 timestamp;
t_k = min step-k timestamp with t_{k-1} <= t_k <= t1 + window; the level is
the number of steps reached; rows whose key is null are left out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable

import pyarrow as pa

QUERIES = [
    "revenue_by_day",
    "heatmap",
    "funnel3",
    "funnel5",
    "retention_weekly",
    "rolling_revenue_7d",
    "top_products_revenue",
    "top_products_viewed",
    "customer_timeline",
    "adhoc_event_counts",
    "adhoc_monthly_channels",
    "adhoc_sessions",
]
ENGINES = ["duckdb", "polars", "datafusion"]

ORDER = "Order Completed"
PERSON_WINDOW_S = 14 * 86400  # funnel3
SESSION_WINDOW_S = 86400  # funnel5

# A funnel: its key ("person" = coalesce(user_id, anonymous_id), or
# "session" = session_id), the name of its count column, its steps as
# (column, value) equalities and its window in seconds.
FUNNEL3 = {
    "key": "person",
    "count_name": "persons",
    "steps": [("event", "Product Viewed"), ("event", "Product Added"), ("event", ORDER)],
    "window_s": PERSON_WINDOW_S,
}
FUNNEL5 = {
    "key": "session",
    "count_name": "sessions",
    "steps": [
        ("type", "page"),
        ("event", "Product Viewed"),
        ("event", "Product Added"),
        ("event", "Checkout Started"),
        ("event", ORDER),
    ],
    "window_s": SESSION_WINDOW_S,
}
FUNNELS = {"funnel3": FUNNEL3, "funnel5": FUNNEL5}


# --------------------------------------------------------------------------
# Fingerprint


def fingerprint(table: pa.Table) -> tuple[int, float]:
    """(rows, checksum): checksum sums every numeric column, nulls as 0."""
    total = Decimal(0)
    for column in table.columns:
        t = column.type
        if pa.types.is_integer(t) or pa.types.is_decimal(t):
            for v in column.to_pylist():
                if v is not None:
                    total += Decimal(v)
        elif pa.types.is_floating(t):
            for v in column.to_pylist():
                if v is not None and not math.isnan(v):
                    total += Decimal(repr(float(v)))
    checksum = float(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return table.num_rows, checksum


# --------------------------------------------------------------------------
# SQL shared by DuckDB and DataFusion (dialect differences as parameters)


def sql_step_predicate(step: tuple[str, str]) -> str:
    column, value = step
    return f"{column} = '{value}'"


def sql_key(key: str) -> str:
    return "coalesce(user_id, anonymous_id)" if key == "person" else "session_id"


def sql_funnel_events(src: str, funnel: dict) -> str:
    """CTE body: the funnel's rows, one boolean column per step."""
    steps = funnel["steps"]
    flags = ", ".join(f"{sql_step_predicate(s)} AS s{i + 1}" for i, s in enumerate(steps))
    any_step = " OR ".join(f"({sql_step_predicate(s)})" for s in steps)
    key = sql_key(funnel["key"])
    return (
        f'SELECT {key} AS k, "timestamp" AS ts, {flags} FROM {src} '
        f"WHERE {key} IS NOT NULL AND ({any_step})"
    )


def sql_level_case(n: int, alias: Callable[[int], str]) -> str:
    whens = " ".join(f"WHEN {alias(i)} IS NOT NULL THEN {i}" for i in range(n, 1, -1))
    return f"CASE {whens} ELSE 1 END"


def sql_funnel_joins(src: str, funnel: dict) -> str:
    """Chain of aggregated CTEs: f1 = first step-1 time per key; f_k = min
    step-k time in [t_{k-1}, t1 + window] per key reaching step k-1; levels
    by left joins."""
    n = len(funnel["steps"])
    w = funnel["window_s"]
    ctes = [f"ev AS ({sql_funnel_events(src, funnel)})"]
    ctes.append("f1 AS (SELECT k, min(ts) AS t1, min(ts) AS t FROM ev WHERE s1 GROUP BY k)")
    for i in range(2, n + 1):
        ctes.append(
            f"f{i} AS (SELECT p.k, p.t1, min(e.ts) AS t FROM f{i - 1} p JOIN ev e "
            f"ON e.k = p.k AND e.s{i} AND e.ts >= p.t "
            f"AND e.ts <= p.t1 + INTERVAL '{w} seconds' GROUP BY p.k, p.t1)"
        )
    joins = " ".join(f"LEFT JOIN f{i} ON f{i}.k = f1.k" for i in range(2, n + 1))
    level = sql_level_case(n, lambda i: f"f{i}.t")
    ctes.append(f"lv AS (SELECT {level} AS level FROM f1 {joins})")
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        f"SELECT level, count(*) AS {funnel['count_name']} FROM lv GROUP BY level ORDER BY level"
    )


def duckdb_funnel_asof(src: str, funnel: dict) -> str:
    """DuckDB ASOF LEFT JOIN chain: for each key, the first step-k row at or
    after t_{k-1}; kept when it is within t1 + window."""
    n = len(funnel["steps"])
    w = funnel["window_s"]
    ctes = [f"ev AS ({sql_funnel_events(src, funnel)})"]
    ctes.append("a1 AS (SELECT k, min(ts) AS t1 FROM ev WHERE s1 GROUP BY k)")
    for i in range(2, n + 1):
        ctes.append(f"e{i} AS (SELECT k, ts FROM ev WHERE s{i})")
        ctes.append(
            f"a{i} AS (SELECT p.*, CASE WHEN p.t{i - 1} IS NOT NULL "
            f"AND e.ts <= p.t1 + INTERVAL '{w} seconds' THEN e.ts END AS t{i} "
            f"FROM a{i - 1} p ASOF LEFT JOIN e{i} e ON p.k = e.k AND p.t{i - 1} <= e.ts)"
        )
    level = sql_level_case(n, lambda i: f"t{i}")
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        f"SELECT {level} AS level, count(*) AS {funnel['count_name']} FROM a{n} "
        "GROUP BY level ORDER BY level"
    )


def sql_queries(src: str, customer: str, dialect: str) -> dict[str, dict[str | None, str]]:
    """{query: {variant: sql}} for DuckDB ("duckdb") or DataFusion ("datafusion")."""
    person = "coalesce(user_id, anonymous_id)"
    ts = '"timestamp"'
    customer_lit = customer.replace("'", "''")
    if dialect == "duckdb":
        day = f"CAST({ts} AS DATE)"
        weekday = f"isodow({ts})"
        hour = f"hour({ts})"
        month = f"CAST(date_trunc('month', {ts}) AS DATE)"
        week = lambda col: f"CAST(date_trunc('week', {col}) AS DATE)"  # noqa: E731
        weeks_between = lambda a, b: f"(date_diff('day', {a}, {b}) // 7)"  # noqa: E731
    else:
        day = f"CAST({ts} AS DATE)"
        weekday = f"CAST((date_part('dow', {ts}) + 6) % 7 + 1 AS BIGINT)"
        hour = f"CAST(date_part('hour', {ts}) AS BIGINT)"
        month = f"CAST(date_trunc('month', {ts}) AS DATE)"
        week = lambda col: f"CAST(date_trunc('week', {col}) AS DATE)"  # noqa: E731
        # Date32 -> days since the epoch; both are Mondays, so exact weeks.
        weeks_between = lambda a, b: (  # noqa: E731
            f"((CAST(CAST({b} AS INT) AS BIGINT) - CAST(CAST({a} AS INT) AS BIGINT)) / 7)"
        )

    daily = (
        f"SELECT {day} AS day, sum(revenue) AS revenue, count(*) AS orders "
        f"FROM {src} WHERE event = '{ORDER}' GROUP BY 1"
    )
    q: dict[str, dict[str | None, str]] = {}
    q["revenue_by_day"] = {None: daily + " ORDER BY day"}
    q["heatmap"] = {
        None: f"SELECT {weekday} AS weekday, {hour} AS hour, count(*) AS orders, "
        f"sum(revenue) AS revenue FROM {src} WHERE event = '{ORDER}' "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    }
    for name, funnel in FUNNELS.items():
        if dialect == "duckdb":
            q[name] = {
                "joins": sql_funnel_joins(src, funnel),
                "asof": duckdb_funnel_asof(src, funnel),
            }
        else:
            q[name] = {"joins": sql_funnel_joins(src, funnel)}
    q["retention_weekly"] = {
        None: f"""
WITH o AS (SELECT user_id, {ts} AS ts FROM {src}
           WHERE event = '{ORDER}' AND user_id IS NOT NULL),
f AS (SELECT user_id, min(ts) AS first_ts FROM o GROUP BY user_id),
c AS (SELECT o.user_id, {week('f.first_ts')} AS cohort, {week('o.ts')} AS wk
      FROM o JOIN f ON o.user_id = f.user_id WHERE o.ts >= f.first_ts)
SELECT cohort, {weeks_between('cohort', 'wk')} AS period,
       count(DISTINCT user_id) AS customers
FROM c GROUP BY 1, 2 ORDER BY 1, 2"""
    }
    q["rolling_revenue_7d"] = {
        None: f"""
WITH d AS ({daily})
SELECT day, sum(revenue) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW)
       AS revenue_7d
FROM d ORDER BY day"""
    }
    if dialect == "duckdb":
        q["top_products_revenue"] = {
            None: f"""
WITH items AS (
  SELECT unnest(CAST(json_extract(properties, '$.products') AS JSON[])) AS p
  FROM {src} WHERE event = '{ORDER}'),
lines AS (
  SELECT p ->> 'product_id' AS product_id,
         CAST(p ->> 'price' AS DECIMAL(18,4)) AS price,
         CAST(p ->> 'quantity' AS BIGINT) AS quantity
  FROM items)
SELECT product_id, sum(price * quantity) AS revenue, CAST(sum(quantity) AS BIGINT) AS units
FROM lines GROUP BY product_id
ORDER BY revenue DESC, product_id ASC LIMIT 10"""
        }
    q["top_products_viewed"] = {
        None: f"SELECT product_id, count(*) AS views, count(DISTINCT {person}) AS viewers "
        f"FROM {src} WHERE event = 'Product Viewed' GROUP BY product_id "
        "ORDER BY views DESC, product_id ASC LIMIT 10"
    }
    q["customer_timeline"] = {
        None: f"SELECT {ts}, event, revenue FROM {src} WHERE user_id = '{customer_lit}' "
        f"ORDER BY {ts}, message_id"
    }
    q["adhoc_event_counts"] = {
        None: f"SELECT event, count(*) AS events, count(DISTINCT {person}) AS people "
        f"FROM {src} GROUP BY event ORDER BY event"
    }
    q["adhoc_monthly_channels"] = {
        None: f"SELECT {month} AS month, channel, payment_method, count(*) AS orders, "
        f"sum(revenue) AS revenue FROM {src} WHERE event = '{ORDER}' "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    }
    q["adhoc_sessions"] = {
        None: f"""
WITH s AS (SELECT session_id, count(*) AS n FROM {src}
           WHERE session_id IS NOT NULL GROUP BY session_id)
SELECT count(*) AS sessions, CAST(sum(n) AS BIGINT) AS events,
       CAST(max(n) AS BIGINT) AS max_events FROM s"""
    }
    return q


# --------------------------------------------------------------------------
# Engines: each returns {query: {variant: runner}}, runner() -> pa.Table


def duckdb_runners(data: str, customer: str) -> tuple[str, dict]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = os.path.join(data, "*.parquet").replace("'", "''")
    src = f"read_parquet('{glob}')"

    def runner(sql: str) -> Callable[[], pa.Table]:
        return lambda: con.sql(sql).to_arrow_table()

    queries = {
        name: {variant: runner(sql) for variant, sql in variants.items()}
        for name, variants in sql_queries(src, customer, "duckdb").items()
    }
    return duckdb.__version__, queries


def datafusion_runners(data: str, customer: str) -> tuple[str, dict]:
    import datafusion
    from datafusion import SessionContext

    ctx = SessionContext()
    # A lazy listing table over DIR/*.parquet: every query reads the files.
    ctx.register_parquet("events", os.path.abspath(data) + "/")

    def runner(sql: str) -> Callable[[], pa.Table]:
        def run() -> pa.Table:
            df = ctx.sql(sql)
            batches = df.collect()
            return pa.Table.from_batches(batches, schema=df.schema())

        return run

    queries = {
        name: {variant: runner(sql) for variant, sql in variants.items()}
        for name, variants in sql_queries("events", customer, "datafusion").items()
    }
    queries["top_products_revenue"] = {None: "no JSON functions"}
    return datafusion.__version__, queries


def polars_runners(data: str, customer: str) -> tuple[str, dict]:
    import polars as pl

    glob = os.path.join(data, "*.parquet")

    def scan() -> pl.LazyFrame:
        return pl.scan_parquet(glob)

    ts = pl.col("timestamp")
    orders = lambda: scan().filter(pl.col("event") == ORDER)  # noqa: E731
    person = pl.coalesce("user_id", "anonymous_id")

    def daily() -> pl.LazyFrame:
        return (
            orders()
            .group_by(ts.dt.date().alias("day"))
            .agg(pl.col("revenue").sum(), pl.len().cast(pl.Int64).alias("orders"))
            .sort("day")
        )

    def revenue_by_day() -> pl.LazyFrame:
        return daily()

    def heatmap() -> pl.LazyFrame:
        return (
            orders()
            .group_by(ts.dt.weekday().alias("weekday"), ts.dt.hour().alias("hour"))
            .agg(pl.len().cast(pl.Int64).alias("orders"), pl.col("revenue").sum())
            .sort("weekday", "hour")
        )

    def funnel(f: dict) -> Callable[[], pl.LazyFrame]:
        def build() -> pl.LazyFrame:
            steps = [pl.col(column) == value for column, value in f["steps"]]
            key = person if f["key"] == "person" else pl.col("session_id")
            window = pl.duration(seconds=f["window_s"])
            any_step = steps[0]
            for s in steps[1:]:
                any_step = any_step | s
            ev = (
                scan()
                .filter(key.is_not_null() & any_step)
                .select(
                    key.alias("k"),
                    ts.alias("ts"),
                    *[s.alias(f"s{i + 1}") for i, s in enumerate(steps)],
                )
                .cache()
            )
            stage = (
                ev.filter(pl.col("s1"))
                .group_by("k")
                .agg(pl.col("ts").min().alias("t1"))
                .with_columns(pl.col("t1").alias("t"))
            )
            reached = [stage]
            for i in range(2, len(steps) + 1):
                nxt = ev.filter(pl.col(f"s{i}")).select("k", pl.col("ts").alias("tn")).sort("tn")
                stage = (
                    stage.sort("t")
                    .join_asof(
                        nxt,
                        left_on="t",
                        right_on="tn",
                        by="k",
                        strategy="forward",
                        check_sortedness=False,  # both sides are sorted globally
                    )
                    .filter(pl.col("tn") <= pl.col("t1") + window)
                    .select("k", "t1", pl.col("tn").alias("t"))
                )
                reached.append(stage)
            counts = pl.concat(
                [
                    r.select(
                        pl.lit(level, pl.Int64).alias("level"),
                        pl.len().cast(pl.Int64).alias("reached"),
                    )
                    for level, r in enumerate(reached, 1)
                ]
            )
            exact = pl.col("reached") - pl.col("reached").shift(-1).fill_null(0)
            return (
                counts.sort("level")
                .with_columns(exact.alias(f["count_name"]))
                .filter(pl.col(f["count_name"]) > 0)
                .select("level", f["count_name"])
            )

        return build

    def retention_weekly() -> pl.LazyFrame:
        o = orders().filter(pl.col("user_id").is_not_null()).select("user_id", ts.alias("ts"))
        first = o.group_by("user_id").agg(pl.col("ts").min().alias("first_ts"))
        return (
            o.join(first, on="user_id")
            .filter(pl.col("ts") >= pl.col("first_ts"))
            .select(
                "user_id",
                pl.col("first_ts").dt.truncate("1w").dt.date().alias("cohort"),
                pl.col("ts").dt.truncate("1w").dt.date().alias("wk"),
            )
            .group_by(
                "cohort",
                ((pl.col("wk") - pl.col("cohort")).dt.total_days() // 7)
                .cast(pl.Int64)
                .alias("period"),
            )
            .agg(pl.col("user_id").n_unique().cast(pl.Int64).alias("customers"))
            .sort("cohort", "period")
        )

    def rolling_revenue_7d() -> pl.LazyFrame:
        cum = pl.col("revenue").fill_null(0).cum_sum()
        return daily().select(
            "day", (cum - cum.shift(7).fill_null(0)).alias("revenue_7d")
        )

    def top_products_revenue() -> pl.LazyFrame:
        dtype = pl.Struct(
            {
                "products": pl.List(
                    pl.Struct(
                        {"product_id": pl.String, "price": pl.Float64, "quantity": pl.Int64}
                    )
                )
            }
        )
        lines = (
            orders()
            .select(pl.col("properties").str.json_decode(dtype).struct.field("products"))
            .explode("products")
            .filter(pl.col("products").is_not_null())  # an empty list explodes to null
            .unnest("products")
        )
        # Prices are JSON numbers with at most 4 decimals: exact in integer
        # ten-thousandths, so revenue sums exactly and is sorted exactly.
        units4 = (pl.col("price") * 10_000).round().cast(pl.Int64) * pl.col("quantity")
        return (
            lines.group_by("product_id")
            .agg(units4.sum().alias("revenue4"), pl.col("quantity").sum().alias("units"))
            .sort(["revenue4", "product_id"], descending=[True, False])
            .head(10)
            .select(
                "product_id",
                (pl.col("revenue4") / 10_000).alias("revenue"),
                pl.col("units").cast(pl.Int64),
            )
        )

    def top_products_viewed() -> pl.LazyFrame:
        return (
            scan()
            .filter(pl.col("event") == "Product Viewed")
            .group_by("product_id")
            .agg(
                pl.len().cast(pl.Int64).alias("views"),
                person.drop_nulls().n_unique().cast(pl.Int64).alias("viewers"),
            )
            .sort(["views", "product_id"], descending=[True, False], nulls_last=True)
            .head(10)
        )

    def customer_timeline() -> pl.LazyFrame:
        return (
            scan()
            .filter(pl.col("user_id") == customer)
            .sort("timestamp", "message_id")
            .select("timestamp", "event", "revenue")
        )

    def adhoc_event_counts() -> pl.LazyFrame:
        return (
            scan()
            .group_by("event")
            .agg(
                pl.len().cast(pl.Int64).alias("events"),
                person.drop_nulls().n_unique().cast(pl.Int64).alias("people"),
            )
            .sort("event")
        )

    def adhoc_monthly_channels() -> pl.LazyFrame:
        return (
            orders()
            .group_by(
                ts.dt.truncate("1mo").dt.date().alias("month"), "channel", "payment_method"
            )
            .agg(pl.len().cast(pl.Int64).alias("orders"), pl.col("revenue").sum())
            .sort("month", "channel", "payment_method")
        )

    def adhoc_sessions() -> pl.LazyFrame:
        return (
            scan()
            .filter(pl.col("session_id").is_not_null())
            .group_by("session_id")
            .agg(pl.len().cast(pl.Int64).alias("n"))
            .select(
                pl.len().cast(pl.Int64).alias("sessions"),
                pl.col("n").sum().alias("events"),
                pl.col("n").max().alias("max_events"),
            )
        )

    builders: dict[str, dict[str | None, Callable[[], pl.LazyFrame]]] = {
        "revenue_by_day": {None: revenue_by_day},
        "heatmap": {None: heatmap},
        "funnel3": {"asof": funnel(FUNNEL3)},
        "funnel5": {"asof": funnel(FUNNEL5)},
        "retention_weekly": {None: retention_weekly},
        "rolling_revenue_7d": {None: rolling_revenue_7d},
        "top_products_revenue": {None: top_products_revenue},
        "top_products_viewed": {None: top_products_viewed},
        "customer_timeline": {None: customer_timeline},
        "adhoc_event_counts": {None: adhoc_event_counts},
        "adhoc_monthly_channels": {None: adhoc_monthly_channels},
        "adhoc_sessions": {None: adhoc_sessions},
    }

    def runner(build: Callable[[], pl.LazyFrame]) -> Callable[[], pa.Table]:
        # Building the plan (and so the scan) is part of each timed run.
        return lambda: build().collect()

    queries = {
        name: {variant: runner(b) for variant, b in variants.items()}
        for name, variants in builders.items()
    }
    return pl.__version__, queries


LOADERS = {
    "duckdb": duckdb_runners,
    "polars": polars_runners,
    "datafusion": datafusion_runners,
}


# --------------------------------------------------------------------------
# Driver


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def to_arrow(result) -> pa.Table:
    if isinstance(result, pa.Table):
        return result
    return result.to_arrow()  # a Polars DataFrame


def measure(run: Callable[[], object], repeat: int) -> tuple[float, pa.Table]:
    result = run()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), to_arrow(result)


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:500]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="directory holding *.parquet")
    ap.add_argument("--customer", required=True, help="user_id for customer_timeline")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--queries", default=",".join(QUERIES))
    args = ap.parse_args()

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    for e in engines:
        if e not in LOADERS:
            ap.error(f"unknown engine {e!r} (known: {', '.join(ENGINES)})")
    for q in queries:
        if q not in QUERIES:
            ap.error(f"unknown query {q!r} (known: {', '.join(QUERIES)})")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    versions = {}
    for e in engines:
        try:
            versions[e] = __import__(e).__version__
        except Exception as exc:  # reported per query below
            versions[e] = None
            print(f"dashboard_peers: cannot import {e}: {exc}", file=sys.stderr)
    emit({"versions": versions})

    for e in engines:
        try:
            _, runners = LOADERS[e](args.data, args.customer)
        except Exception as exc:
            for q in queries:
                emit({"engine": e, "query": q, "variant": None, "error": error_text(exc)})
            continue
        for q in queries:
            for variant, run in runners.get(q, {None: "not implemented"}).items():
                line = {"engine": e, "query": q, "variant": variant}
                if isinstance(run, str):  # a known gap, e.g. no JSON functions
                    emit({**line, "error": run})
                    continue
                try:
                    seconds, table = measure(run, args.repeat)
                    rows, checksum = fingerprint(table)
                    emit({**line, "seconds": round(seconds, 6), "rows": rows, "checksum": checksum})
                except Exception as exc:
                    emit({**line, "error": error_text(exc)})


if __name__ == "__main__":
    main()
