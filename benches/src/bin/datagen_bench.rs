//! The data suite: `beacon datasets convert` (Online Retail CSV -> Parquet
//! in Beacon's schema) side by side with DuckDB and Polars doing the same
//! grouping into invoices, and the generator's throughput
//! (`beacon datasets generate`). Writes the "Data generation and
//! conversion" section of `benches/RESULTS.md`.
//!
//! ```sh
//! benches/peers/setup.sh && cargo build --release -p beacon-api -p beacon-benches
//! target/release/datagen_bench --beacon target/release/beacon --events 1000000
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// The release `beacon` binary.
    #[arg(long, default_value = "target/release/beacon")]
    beacon: PathBuf,
    /// Events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Python with the peers (benches/peers/setup.sh).
    #[arg(long, default_value = "benches/.venv/bin/python")]
    python: PathBuf,
    /// The Online Retail file.
    #[arg(
        long,
        default_value = "datasets/data/online_retail/online-retail-dataset.csv.gz"
    )]
    retail: PathBuf,
    /// Results file.
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: PathBuf,
}

fn timed(cmd: &mut Command) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let out = |name: &str| dir.path().join(name);
    let path = |p: &Path| p.to_string_lossy().into_owned();

    // Converter vs peers (best of 3 each).
    let mut beacon_best = f64::MAX;
    let mut invoices_line = String::new();
    for _ in 0..3 {
        let (secs, stdout) = timed(Command::new(&args.beacon).args([
            "datasets",
            "convert",
            "online-retail",
            "--input",
            &path(&args.retail),
            "--output",
            &path(&out("retail.parquet")),
            "--json",
        ]))?;
        beacon_best = beacon_best.min(secs);
        invoices_line = stdout;
    }
    let report: serde_json::Value = serde_json::from_str(invoices_line.trim())?;
    let mut peers: Vec<(String, f64)> = Vec::new();
    for _ in 0..3 {
        let (_, stdout) = timed(
            Command::new(&args.python)
                .arg("benches/peers/convert_peers.py")
                .arg(&args.retail)
                .arg(out("peers")),
        )?;
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let name = v["peer"].as_str().unwrap_or("?").to_owned();
            let secs = v["seconds"].as_f64().unwrap_or(f64::MAX);
            match peers.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = entry.1.min(secs),
                None => peers.push((name, secs)),
            }
        }
    }

    // Generator: one tenant (one core), two tenants (both cores).
    let mut gen_rows = Vec::new();
    for tenants in [1usize, 2] {
        let target = if tenants == 1 {
            out("gen.parquet")
        } else {
            out("gen")
        };
        let (secs, _) = timed(Command::new(&args.beacon).args([
            "datasets",
            "generate",
            "--events",
            &args.events.to_string(),
            "--tenants",
            &tenants.to_string(),
            "--seed",
            "42",
            "--output",
            &path(&target),
        ]))?;
        gen_rows.push((tenants, secs));
    }

    let date = chrono::Utc::now().format("%Y-%m-%d");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut s = String::new();
    s.push_str(&format!(
        "Command: `benches/peers/setup.sh && cargo build --release -p beacon-api -p beacon-benches && target/release/datagen_bench --beacon target/release/beacon --events {}`\n\n",
        args.events
    ));
    s.push_str(&format!(
        "Machine: {cores} cores, {}; date {date}. Best of 3 runs for the converters.\n\n",
        std::env::consts::ARCH
    ));
    s.push_str("Online Retail (541,909 CSV lines, gzip) to invoices in Parquet:\n\n");
    s.push_str("| tool | seconds | ratio to Beacon |\n|---|---:|---:|\n");
    s.push_str(&format!(
        "| Beacon `datasets convert online-retail` (polars CSV read, {} events through the ingest decoder, Parquet in Beacon's schema) | {beacon_best:.2} | 1.00 |\n",
        report["written"]
    ));
    for (name, secs) in &peers {
        s.push_str(&format!("| Peer: {name}, CSV -> group by invoice with line-item list -> Parquet | {secs:.2} | {:.2} |\n", secs / beacon_best));
    }
    s.push_str("\nBeacon does more per invoice than the peers (classification of stock codes, refunds, time-zone conversion, JSON messages, validation), so this is a sanity check that conversion is not a bottleneck, not a like-for-like race.\n\n");
    s.push_str(
        "Generator (`beacon datasets generate`, Parquet output through the ingest decoder):\n\n",
    );
    s.push_str("| tenants (threads) | events | seconds | events/s |\n|---:|---:|---:|---:|\n");
    for (tenants, secs) in &gen_rows {
        s.push_str(&format!(
            "| {tenants} | {} | {secs:.1} | {:.0} |\n",
            args.events,
            args.events as f64 / secs
        ));
    }
    println!("{s}");
    beacon_benches::write_section(&args.results, "Data generation and conversion", &s)?;
    Ok(())
}
