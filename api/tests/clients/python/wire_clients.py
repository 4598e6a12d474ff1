"""Real analyst clients against a running Beacon: psycopg over the
PostgreSQL wire protocol and the ADBC Flight SQL driver, every answer
compared with POST /v1/sql (Arrow IPC) on the same data.

Run by api/tests/it/sql_wire.rs with one JSON argument:
{"http": "http://127.0.0.1:PORT", "pg_host": ..., "pg_port": ..., "flight": "grpc://...",
 "tenant": "demo", "read_key": ..., "write_key": ..., "admin_key": ...}

Exits non-zero with a message on the first mismatch; prints one line per
check passed.
"""

import datetime as dt
import json
import math
import sys
import threading
import time
import urllib.request
from decimal import Decimal

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_dbapi
import psycopg
import pyarrow as pa
import pyarrow.ipc

CFG = json.loads(sys.argv[1])

# The analytics SQL functions of docs/analytics.md, on the demo data.
QUERIES = {
    "revenue_by_month": """
        SELECT business_date(timestamp, 'month') AS month, sum(revenue) AS revenue, count(*) AS orders
        FROM events WHERE event = 'Order Completed' GROUP BY 1 ORDER BY 1""",
    "heatmap": """
        SELECT business_weekday(timestamp) AS weekday, business_hour(timestamp) AS hour, count(*) AS orders
        FROM events WHERE event = 'Order Completed' GROUP BY 1, 2 ORDER BY 1, 2""",
    "window_funnel": """
        SELECT level, count(*) AS people FROM (
          SELECT coalesce(user_id, anonymous_id) AS person,
                 window_funnel(14 * 86400, 'sequential', timestamp,
                               event = 'Product Viewed', event = 'Product Added', event = 'Order Completed') AS level
          FROM events GROUP BY 1) GROUP BY level ORDER BY level""",
    "funnel_steps": """
        WITH f AS (
          SELECT session_id,
                 funnel_steps(14 * 86400, 'sequential', timestamp, false,
                              event = 'Product Viewed', event = 'Product Added', event = 'Order Completed') AS s
          FROM events WHERE session_id IS NOT NULL GROUP BY session_id)
        SELECT step, count(*) FILTER (WHERE cardinality(s) >= step) AS entered,
               median(s[step]) AS median_seconds
        FROM f CROSS JOIN (VALUES (1), (2), (3)) AS steps(step)
        WHERE s IS NOT NULL GROUP BY step ORDER BY step""",
    "retention": """
        SELECT get_field(r, 'cohort') AS cohort, get_field(r, 'period') AS period,
               count(*) AS customers, sum(get_field(r, 'revenue')) AS revenue
        FROM (SELECT unnest(retention(timestamp, 'week', 'first',
                                      event = 'Order Completed', event = 'Order Completed', revenue)) AS r
              FROM events WHERE user_id IS NOT NULL GROUP BY user_id)
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "views": """
        SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM bookings) AS bookings,
               (SELECT count(*) FROM page_views) AS page_views""",
    "recent_orders": """
        SELECT order_id, user_id, timestamp, revenue, currency FROM orders
        ORDER BY timestamp DESC, order_id LIMIT 50""",
}

PARAM_QUERY_PG = "SELECT count(*) AS n, sum(revenue) AS revenue FROM events WHERE event = %s AND timestamp >= %s"
PARAM_QUERY = "SELECT count(*) AS n, sum(revenue) AS revenue FROM events WHERE event = $1 AND timestamp >= $2"
LONG_QUERY = ("SELECT count(*) FROM events a CROSS JOIN events b CROSS JOIN events c "
              "WHERE a.timestamp < b.timestamp AND b.timestamp < c.timestamp")


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def ok(msg):
    print(f"ok: {msg}", flush=True)


def http(path, body=None, key=None, method=None):
    req = urllib.request.Request(
        CFG["http"] + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method or ("POST" if body is not None else "GET"),
        headers={"authorization": f"Bearer {key or CFG['read_key']}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


def http_arrow(query, params=None):
    raw = http("/v1/sql", {"query": query, "params": params or [], "format": "arrow"})
    return pa.ipc.open_stream(raw).read_all()


def same(a, b, where):
    """Values equal; floats to 1e-9 relative (summation order may differ)."""
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9):
            fail(f"{where}: {a!r} != {b!r}")
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            fail(f"{where}: {len(a)} values != {len(b)} values: {a!r} vs {b!r}")
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
        return
    if isinstance(a, dict) and isinstance(b, dict):
        same(sorted(a.items()), sorted(b.items()), where)
        return
    if a != b:
        fail(f"{where}: {a!r} != {b!r}")


def rows_of(table):
    return [tuple(r.values()) for r in table.to_pylist()]


# ---------------------------------------------------------------------------
# psycopg (PostgreSQL wire protocol)

def pg_connect(password=None, user=None, **kw):
    return psycopg.connect(
        host=CFG["pg_host"], port=CFG["pg_port"], dbname="beacon",
        user=user or CFG["tenant"], password=password or CFG["read_key"], connect_timeout=10, **kw)


def check_psycopg():
    with pg_connect() as conn:
        cur = conn.cursor()
        # Listing tables, as clients and BI tools do.
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        tables = [r[0] for r in cur.fetchall()]
        for t in ("events", "orders", "bookings", "page_views"):
            if t not in tables:
                fail(f"information_schema lists {tables}, not {t}")
        cur.execute("""SELECT c.relname FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'public' ORDER BY 1""")
        rel = [r[0] for r in cur.fetchall()]
        if "events" not in rel:
            fail(f"pg_class lists {rel}")
        cur.execute("SELECT version(), current_schema()")
        version, schema = cur.fetchone()
        if not version.startswith("PostgreSQL ") or schema != "public":
            fail(f"version() {version!r}, current_schema() {schema!r}")
        ok("psycopg: information_schema, pg_catalog, version(), current_schema()")

        # Every analytics query equals HTTP SQL.
        for name, q in QUERIES.items():
            cur.execute(q)
            got = cur.fetchall()
            want = rows_of(http_arrow(q))
            if not want:
                fail(f"{name}: HTTP answered no rows (the demo data should have some)")
            same([tuple(r) for r in got], want, f"psycopg {name}")
            ok(f"psycopg: {name} ({len(got)} rows) equals HTTP SQL")

        # Types: OIDs a client sees.
        cur.execute("""SELECT true AS b, 42 AS i, CAST(1.5 AS DECIMAL(10,2)) AS d, 2.5 AS f, 'x' AS s,
                              (SELECT min(timestamp) FROM events) AS tz,
                              DATE '2026-11-01' AS day, make_array(1, 2, 3) AS l""")
        oids = {d.name: d.type_code for d in cur.description}
        want_oids = {"b": 16, "i": 20, "d": 1700, "f": 701, "s": 25, "tz": 1184, "day": 1082, "l": 1016}
        if oids != want_oids:
            fail(f"type OIDs {oids} != {want_oids}")
        row = list(cur.fetchone())
        # The event time column is TIMESTAMPTZ: an aware datetime, equal to HTTP's.
        first = rows_of(http_arrow("SELECT min(timestamp) FROM events"))[0][0]
        if row[5].tzinfo is None or row[5] != first:
            fail(f"timestamptz value {row[5]!r} != {first!r}")
        row[5] = first
        want_row = (True, 42, Decimal("1.50"), 2.5, "x", first, dt.date(2026, 11, 1), [1, 2, 3])
        same(row, list(want_row), "typed row")
        ok("psycopg: bool, int8, numeric, float8, text, timestamptz, date and int8[] with their OIDs")

        # Prepared statements with parameters (extended protocol, bound values).
        since = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
        want = rows_of(http_arrow(PARAM_QUERY, ["Order Completed", "2000-01-01T00:00:00Z"]))
        cur.execute(PARAM_QUERY_PG, ("Order Completed", since), prepare=True)
        same([tuple(cur.fetchone())], want, "prepared statement")
        cur.execute(PARAM_QUERY_PG, ("No Such Event", since), prepare=True)
        n, revenue = cur.fetchone()
        if n != 0 or revenue is not None:
            fail(f"second execution of the prepared statement: {n}, {revenue}")
        # A value that would break a spliced query is just a value.
        cur.execute("SELECT count(*) FROM events WHERE event = %s", ("x' OR '1'='1",))
        if cur.fetchone()[0] != 0:
            fail("a quote in a parameter changed the query")
        ok("psycopg: prepared statements with parameters, executed twice, values never spliced")

        # Sandbox violations: a clear error, and the connection lives on.
        for stmt in ("DROP TABLE events", "INSERT INTO events (event) VALUES ('x')",
                     "CREATE TABLE t AS SELECT 1"):
            try:
                cur.execute(stmt)
                fail(f"{stmt} was allowed")
            except psycopg.Error as e:
                if e.sqlstate != "25006":
                    fail(f"{stmt}: sqlstate {e.sqlstate} ({e})")
            conn.rollback()
        try:
            cur.execute("SELEC 1")
            fail("a syntax error was accepted")
        except psycopg.errors.SyntaxError:
            conn.rollback()
        cur.execute("SELECT count(*) FROM events")
        if cur.fetchone()[0] <= 0:
            fail("no events after the refused statements")
        ok("psycopg: DROP/INSERT/CREATE refused with SQLSTATE 25006, syntax error 42601, connection still usable")

    # Authentication.
    for label, kwargs in (("wrong password", {"password": "bk_wrong"}),
                          ("write key", {"password": CFG["write_key"]}),
                          ("other workspace name", {"user": "someone-else"})):
        try:
            pg_connect(**kwargs).close()
            fail(f"connected with {label}")
        except psycopg.OperationalError as e:
            if "password authentication failed" not in str(e) and "cannot query" not in str(e):
                fail(f"{label}: unclear error {e}")
    ok("psycopg: wrong password, write key and other workspace are refused")

    # Cancel a long query: psycopg sends a CancelRequest.
    with pg_connect(autocommit=True) as conn:
        errors = []

        def run():
            try:
                conn.execute(LONG_QUERY)
                errors.append("finished")
            except psycopg.errors.QueryCanceled as e:
                errors.append(("cancelled", str(e)))
            except Exception as e:  # noqa: BLE001
                errors.append(("other", repr(e)))

        t = threading.Thread(target=run)
        t.start()
        listed = False
        for _ in range(100):
            time.sleep(0.1)
            running = json.loads(http("/v1/queries", key=CFG["admin_key"]))["queries"]
            if any(q["interface"] == "postgres" and "CROSS JOIN" in q["sql"].upper() for q in running):
                listed = True
                break
        if not listed:
            fail("the long query never appeared in GET /v1/queries")
        conn.cancel()
        t.join(60)
        if t.is_alive() or not errors or errors[0][0] != "cancelled":
            fail(f"cancel: {errors}")
        if "user request" not in errors[0][1]:
            fail(f"cancel message: {errors[0][1]}")
        conn.execute("SELECT 1").fetchone()
        ok("psycopg: a long query is listed by the admin API and cancelled; the connection lives on")


# ---------------------------------------------------------------------------
# ADBC Flight SQL

def flight_connect(key=None):
    return flight_dbapi.connect(
        CFG["flight"],
        db_kwargs={adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {key or CFG['read_key']}"},
        autocommit=True,
    )


def check_adbc():
    with flight_connect() as conn:
        cur = conn.cursor()
        for name, q in QUERIES.items():
            cur.execute(q)
            got = cur.fetch_arrow_table()
            want = http_arrow(q)
            if got.schema.names != want.schema.names or got.schema.types != want.schema.types:
                fail(f"adbc {name}: schema {got.schema} != {want.schema}")
            same(rows_of(got), rows_of(want), f"adbc {name}")
            ok(f"adbc: {name} ({got.num_rows} rows, same Arrow schema) equals HTTP SQL")

        cur.execute(PARAM_QUERY, parameters=("Order Completed", dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)))
        got = rows_of(cur.fetch_arrow_table())
        same(got, rows_of(http_arrow(PARAM_QUERY, ["Order Completed", "2000-01-01T00:00:00Z"])), "adbc parameters")
        cur.execute(PARAM_QUERY, parameters=("No Such Event", dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)))
        if rows_of(cur.fetch_arrow_table())[0][0] != 0:
            fail("adbc: re-executed prepared statement kept the old parameters")
        ok("adbc: prepared statement with parameters, executed twice")

        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = [t["table_name"] for c in objects for s in (c["catalog_db_schemas"] or [])
                 for t in (s["db_schema_tables"] or [])]
        for t in ("events", "orders"):
            if t not in names:
                fail(f"adbc get_objects lists {names}")
        schema = conn.adbc_get_table_schema("events")
        if "timestamp" not in schema.names or "event" not in schema.names:
            fail(f"adbc table schema {schema}")
        types = conn.adbc_get_table_types()
        if "TABLE" not in types or "VIEW" not in types:
            fail(f"adbc table types {types}")
        ok("adbc: GetObjects (catalogs, schemas, tables), table schema and table types")

        try:
            cur.execute("DROP TABLE events")
            cur.fetch_arrow_table()
            fail("adbc: DROP TABLE allowed")
        except flight_dbapi.Error as e:
            if "not allowed" not in str(e).lower() and "not supported" not in str(e).lower():
                fail(f"adbc sandbox error unclear: {e}")
        cur.execute("SELECT count(*) AS n FROM events")
        if cur.fetch_arrow_table().column(0)[0].as_py() <= 0:
            fail("adbc: no events after refused statement")
        ok("adbc: sandbox violation refused, connection still usable")

    try:
        with flight_connect("bk_wrong") as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetch_arrow_table()
        fail("adbc: a wrong key was accepted")
    except flight_dbapi.Error as e:
        if "unauthenticated" not in str(e).lower() and "revoked" not in str(e).lower():
            fail(f"adbc wrong key: unclear error {e}")
    ok("adbc: a wrong key is refused (UNAUTHENTICATED)")


if __name__ == "__main__":
    which = sys.argv[2] if len(sys.argv) > 2 else "all"
    if which in ("all", "psycopg"):
        check_psycopg()
    if which in ("all", "adbc"):
        check_adbc()
    print("all checks passed", flush=True)
