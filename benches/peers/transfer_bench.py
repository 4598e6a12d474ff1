"""Result transfer throughput: one 1M-row result fetched over every analyst
interface of a running release Beacon, by a real client, decoded into
client-side values (Python rows or an Arrow table).

    benches/run.sh transfer
    # = api/tests/clients/python/.venv/bin/python benches/peers/transfer_bench.py \
    #     --beacon target/release/beacon --rows 1000000

The query makes its rows (generate_series), so the figure is transfer and
encoding, not scanning: id BIGINT, amount DOUBLE, customer TEXT, ts
TIMESTAMPTZ. Each interface runs --runs times; the best and the median are
reported. Rewrites the "Result transfer" section of benches/RESULTS.md.
"""

import argparse
import datetime as dt
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_dbapi
import psycopg
import pyarrow as pa
import pyarrow.csv
import pyarrow.ipc
import pyarrow.parquet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def query(rows):
    return (
        "SELECT value AS id, value * 1.5 AS amount, concat('customer-', value % 5000) AS customer, "
        f"to_timestamp(1700000000 + value) AS ts FROM generate_series(1, {rows})"
    )


def start(beacon, data):
    out = subprocess.run([beacon, "tenants", "create", "bench", "--json", "--data-dir", data],
                         check=True, capture_output=True, text=True).stdout
    tenant = json.loads(out)
    out = subprocess.run([beacon, "keys", "create", "--tenant", "bench", "--role", "read", "--json",
                          "--data-dir", data], check=True, capture_output=True, text=True).stdout
    read_key = json.loads(out)["key"]
    env = dict(os.environ, BEACON_SQL__PG_LISTEN="127.0.0.1:0", BEACON_SQL__FLIGHT_LISTEN="127.0.0.1:0",
               BEACON_ENGINE__MAX_RESULT_ROWS="5000000", BEACON_ENGINE__QUERY_TIMEOUT="10m",
               BEACON_LOG__FILTER="warn")
    proc = subprocess.Popen([beacon, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                            stdout=subprocess.PIPE, text=True, env=env)
    addrs = {}
    for line in proc.stdout:
        if m := re.match(r"Beacon listening on (\S+)", line):
            addrs["http"] = m.group(1)
        elif m := re.match(r"PostgreSQL listening on 127\.0\.0\.1:(\d+)", line):
            addrs["pg"] = int(m.group(1))
        elif m := re.match(r"Flight SQL listening on (\S+)", line):
            addrs["flight"] = m.group(1)
            break
    return proc, addrs, tenant, read_key


def http_fetch(base, key, sql, fmt):
    req = urllib.request.Request(base + "/v1/sql", data=json.dumps({"query": sql, "format": fmt}).encode(),
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        body = r.read()
    if fmt == "json":
        return len(json.loads(body)["rows"])
    if fmt == "ndjson":
        return sum(1 for line in body.splitlines() if line and json.loads(line))
    if fmt == "csv":
        return pa.csv.read_csv(io.BytesIO(body)).num_rows
    if fmt == "arrow":
        return pa.ipc.open_stream(body).read_all().num_rows
    if fmt == "parquet":
        return pa.parquet.read_table(io.BytesIO(body)).num_rows
    raise ValueError(fmt)


def pg_fetch(port, key, sql, binary):
    with psycopg.connect(host="127.0.0.1", port=port, user="bench", password=key, dbname="beacon",
                         autocommit=True) as conn:
        with conn.cursor(binary=binary) as cur:
            cur.execute(sql)
            return len(cur.fetchall())


def flight_fetch(uri, key, sql):
    with flight_dbapi.connect(uri, db_kwargs={
            adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {key}"},
            autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table().num_rows


def write_section(path, title, body):
    try:
        old = open(path).read()
    except FileNotFoundError:
        old = "# Benchmark results\n"
    header = f"## {title}\n"
    new = f"{header}\n{body}\n"
    start = old.find(header)
    if start < 0:
        updated = old.rstrip() + "\n\n" + new
    else:
        rest = old[start + len(header):]
        i = rest.find("\n## ")
        end = len(old) if i < 0 else start + len(header) + i + 1
        updated = old[:start] + new + old[end:]
    open(path, "w").write(updated)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beacon", default=os.path.join(ROOT, "target/release/beacon"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--results", default=os.path.join(ROOT, "benches/RESULTS.md"))
    args = ap.parse_args()
    sql = query(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        proc, addrs, _tenant, key = start(args.beacon, os.path.join(tmp, "data"))
        try:
            cases = [
                ("HTTP JSON (`format=json`), Python json", lambda: http_fetch(addrs["http"], key, sql, "json")),
                ("HTTP NDJSON, Python json per line", lambda: http_fetch(addrs["http"], key, sql, "ndjson")),
                ("HTTP CSV, pyarrow.csv", lambda: http_fetch(addrs["http"], key, sql, "csv")),
                ("HTTP Arrow IPC stream, pyarrow", lambda: http_fetch(addrs["http"], key, sql, "arrow")),
                ("HTTP Parquet, pyarrow", lambda: http_fetch(addrs["http"], key, sql, "parquet")),
                ("PostgreSQL wire, psycopg text rows", lambda: pg_fetch(addrs["pg"], key, sql, False)),
                ("PostgreSQL wire, psycopg binary rows", lambda: pg_fetch(addrs["pg"], key, sql, True)),
                ("Flight SQL, ADBC -> Arrow table", lambda: flight_fetch(addrs["flight"], key, sql)),
            ]
            results = []
            for label, fetch in cases:
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    n = fetch()
                    times.append(time.perf_counter() - t0)
                    if n != args.rows:
                        sys.exit(f"{label}: {n} rows, expected {args.rows}")
                best, med = min(times), statistics.median(times)
                results.append((label, best, med))
                print(f"{label:<45} best {best:7.2f} s  {args.rows / best / 1e6:6.2f} M rows/s  "
                      f"median {med:7.2f} s", flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
    flight_best = dict((r[0], r[1]) for r in results)["Flight SQL, ADBC -> Arrow table"]
    lines = [
        f"Command: `benches/run.sh transfer` (= `api/tests/clients/python/.venv/bin/python benches/peers/transfer_bench.py --rows {args.rows}`)",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; {dt.date.today().isoformat()}; release build; "
        f"clients psycopg {psycopg.__version__}, adbc-driver-flightsql {adbc_driver_flightsql.__version__}, pyarrow {pa.__version__}.",
        "",
        f"One result of {args.rows:,} rows (id BIGINT, amount DOUBLE, customer TEXT, ts TIMESTAMPTZ) made by the query itself "
        "(generate_series), fetched by a real client on loopback and decoded into client values; best and median of "
        f"{args.runs} runs.",
        "",
        "| Interface, client | best (s) | rows/s (best) | median (s) | time / Flight SQL's |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, best, med in results:
        lines.append(f"| {label} | {best:.2f} | {args.rows / best:,.0f} | {med:.2f} | {best / flight_best:.2f} |")
    write_section(args.results, "Result transfer", "\n".join(lines))


if __name__ == "__main__":
    main()
