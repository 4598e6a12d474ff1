"""Peers for the converter benchmark: read the Online Retail CSV (gzip),
group its lines into one row per invoice with a list of line items and the
invoice's revenue, and write Parquet -- the same work `beacon datasets
convert online-retail --output x.parquet` does. Prints one JSON line per
peer: {"peer", "seconds", "invoices"}.

    benches/.venv/bin/python benches/peers/convert_peers.py CSV_GZ OUT_DIR
"""

import json
import sys
import time
from pathlib import Path

import duckdb
import polars as pl


def run_duckdb(csv: str, out: Path) -> dict:
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
            SELECT InvoiceNo,
                   min(strptime(InvoiceDate, '%Y-%m-%d %H:%M:%S')) AS ts,
                   any_value(CustomerID) AS customer,
                   any_value(Country) AS country,
                   sum(CAST(Quantity AS BIGINT) * CAST(UnitPrice AS DECIMAL(18,4))) AS revenue,
                   list({{'product_id': StockCode, 'name': Description,
                          'price': CAST(UnitPrice AS DECIMAL(18,4)),
                          'quantity': CAST(Quantity AS BIGINT)}}) AS products
            FROM read_csv('{csv}', all_varchar = true)
            GROUP BY InvoiceNo
        ) TO '{out / "duckdb.parquet"}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    seconds = time.perf_counter() - started
    (n,) = con.execute(f"SELECT count(*) FROM '{out / 'duckdb.parquet'}'").fetchone()
    return {"peer": f"DuckDB {duckdb.__version__}", "seconds": seconds, "invoices": n}


def run_polars(csv: str, out: Path) -> dict:
    started = time.perf_counter()
    df = pl.read_csv(csv, infer_schema=False)
    lines = df.with_columns(
        pl.col("Quantity").cast(pl.Int64),
        pl.col("UnitPrice").cast(pl.Decimal(18, 4)),
        pl.col("InvoiceDate").str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S"),
    )
    invoices = lines.group_by("InvoiceNo").agg(
        pl.col("InvoiceDate").min().alias("ts"),
        pl.col("CustomerID").first().alias("customer"),
        pl.col("Country").first().alias("country"),
        (pl.col("Quantity") * pl.col("UnitPrice")).sum().alias("revenue"),
        pl.struct(
            pl.col("StockCode").alias("product_id"),
            pl.col("Description").alias("name"),
            pl.col("UnitPrice").alias("price"),
            pl.col("Quantity").alias("quantity"),
        ).alias("products"),
    )
    invoices.write_parquet(out / "polars.parquet", compression="zstd")
    seconds = time.perf_counter() - started
    return {"peer": f"Polars {pl.__version__}", "seconds": seconds, "invoices": invoices.height}


def main() -> None:
    csv, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for run in (run_duckdb, run_polars):
        print(json.dumps(run(csv, out)), flush=True)


if __name__ == "__main__":
    main()
