"""Peer for the ingest benchmark: DuckDB loads the same NDJSON events into a
table in a database file and checkpoints it (durable), timed end to end.

Usage: duckdb_ingest.py EVENTS.ndjson  -> prints seconds on stdout.
"""
import os
import sys
import tempfile
import time

import duckdb

path = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    db = duckdb.connect(os.path.join(tmp, "peer.duckdb"))
    started = time.perf_counter()
    db.execute(
        "CREATE TABLE events AS SELECT * FROM read_json(?, format = 'newline_delimited', maximum_object_size = 1048576)",
        [path],
    )
    db.execute("CHECKPOINT")
    elapsed = time.perf_counter() - started
    rows = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    db.close()
print(f"{elapsed:.6f} {rows}")
