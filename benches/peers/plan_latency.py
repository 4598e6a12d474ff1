"""What a build profile costs a query: the latency of small dashboard and SQL
requests against two `beacon` binaries, one after the other, on the same
generated data (`serve --demo`, 60 days of history), over loopback.

Small requests are where planning (parse, analyze, optimize, physical
plan) is a large share of the time, so this shows what building
DataFusion's planning crates at opt-level 1 (Cargo.toml,
[profile.release.package]) costs a dashboard.

    python3 benches/peers/plan_latency.py OLD_BEACON NEW_BEACON [--requests 300]

Prints a Markdown table of median and p90 milliseconds per request kind.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request

QUERIES = {
    "SQL: count": {"query": "SELECT count(*) FROM events"},
    "SQL: revenue by day, 7 days": {
        "query": "SELECT business_date(timestamp, 'day') AS d, sum(revenue) FROM orders "
        "WHERE timestamp > now() - INTERVAL '7 days' GROUP BY 1 ORDER BY 1"
    },
    "SQL: join of two views, filters": {
        "query": "SELECT o.channel, count(*) FROM orders o JOIN order_items i ON o.message_id = i.message_id "
        "WHERE o.revenue > 10 AND i.quantity > 0 GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
    },
}
GETS = {
    "analytics: revenue today": "/v1/analytics/revenue?range=today",
    "analytics: revenue 30d by day, compare": "/v1/analytics/revenue?range=30d&compare=true",
}


def start(binary, data_dir):
    env = dict(os.environ, BEACON_DEMO__HISTORY_DAYS="60", BEACON_DEMO__LIVE_INTERVAL="0s")
    proc = subprocess.Popen(
        [binary, "serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    url, key = None, None
    for line in proc.stdout:
        if line.startswith("Beacon listening on "):
            url = line.split()[-1]
        if "read key:" in line:
            key = line.split()[-1]
        if "sign in:" in line:
            break
    return proc, url, key


def request(url, key, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(req) as resp:
        resp.read()
    return (time.perf_counter() - started) * 1000


def measure(binary, n):
    with tempfile.TemporaryDirectory() as d:
        proc, url, key = start(binary, os.path.join(d, "data"))
        try:
            out = {}
            for name, body in QUERIES.items():
                for _ in range(20):
                    request(url, key, "/v1/sql", body)
                out[name] = [request(url, key, "/v1/sql", body) for _ in range(n)]
            for name, path in GETS.items():
                for _ in range(20):
                    request(url, key, path)
                out[name] = [request(url, key, path) for _ in range(n)]
            return out
        finally:
            proc.terminate()
            proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--requests", type=int, default=300)
    a = p.parse_args()
    old = measure(a.old, a.requests)
    new = measure(a.new, a.requests)
    print("| request | old median ms | new median ms | old p90 | new p90 | new / old (median) |")
    print("|---|---|---|---|---|---|")
    for name in old:
        om, nm = statistics.median(old[name]), statistics.median(new[name])
        op, np_ = statistics.quantiles(old[name], n=10)[-1], statistics.quantiles(new[name], n=10)[-1]
        print(f"| {name} | {om:.2f} | {nm:.2f} | {op:.2f} | {np_:.2f} | {nm / om:.2f} |")


if __name__ == "__main__":
    main()
