//! The forecasting suite: Beacon's forecasting pipeline on the M4 Hourly
//! (414 series, h = 48) and Weekly (359 series, h = 13) sets with the
//! official sMAPE, MASE and OWA, each candidate method alone, the M4 Naive2
//! (whose OWA must come out at 1: a check of the measures), and, in the
//! same run on the same data, statsforecast's AutoETS, MSTL, SeasonalNaive
//! and Theta (`benches/peers/forecast_peers.py`).
//!
//! ```sh
//! benches/peers/setup.sh
//! cargo run --release -p beacon-forecasting --example m4_eval
//! ```
//!
//! Writes the "Forecasting (M4)" section of `benches/RESULTS.md`. It is an
//! example of the forecasting crate rather than a `benches` binary so that
//! it builds without the DataFusion stack (ARCHITECTURE.md, Decisions).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use std::io::Read;

use beacon_forecasting::evaluate::{
    Accuracy, HeldOut, M4Set, evaluate_method, evaluate_naive2, evaluate_pipeline, parse_m4,
};
use beacon_forecasting::forecast::ForecastOptions;
use beacon_forecasting::ts::Method;
use clap::Parser;

#[path = "support/results.rs"]
mod results;
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    /// Sets to run.
    #[arg(long, value_delimiter = ',', default_value = "hourly,weekly")]
    sets: Vec<String>,
    /// Only the first N series of each set (all when absent).
    #[arg(long)]
    limit: Option<usize>,
    /// Python with the peers (benches/peers/setup.sh).
    #[arg(long, default_value = "benches/.venv/bin/python")]
    python: PathBuf,
    /// Skip statsforecast.
    #[arg(long)]
    no_peers: bool,
    /// Results file (not written with --limit).
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: PathBuf,
    /// M4 data directory.
    #[arg(long, default_value = "datasets/data/m4")]
    data: PathBuf,
    /// Pipeline options as JSON (ForecastOptions), to compare settings.
    #[arg(long)]
    options: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let opts: ForecastOptions = match &args.options {
        Some(json) => serde_json::from_str(json).context("--options")?,
        None => ForecastOptions::default(),
    };
    let mut body = String::new();
    writeln!(
        body,
        "Command: `cargo run --release -p beacon-forecasting --example m4_eval` (after `benches/peers/setup.sh`), release build, {} threads.",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    )?;
    writeln!(body, "Options: `{}`.\n", serde_json::to_string(&opts)?)?;
    for set_name in &args.sets {
        let set = match set_name.as_str() {
            "hourly" => M4Set::Hourly,
            "weekly" => M4Set::Weekly,
            other => anyhow::bail!("unknown set {other}"),
        };
        let (freq, reference) = (set.frequency(), set.naive2());
        let mut series = load(&args.data, set)?;
        if let Some(n) = args.limit {
            series.truncate(n);
        }
        let held: Vec<HeldOut<'_>> = series
            .iter()
            .map(|(train, test)| (train.as_slice(), test.as_slice()))
            .collect();
        let h = set.horizon();
        let mut rows: Vec<Accuracy> = Vec::new();
        rows.push(evaluate_pipeline(&held, freq, h, &opts, reference));
        eprintln!("{set_name}: beacon {:?}", rows[0]);
        for m in Method::ALL {
            rows.push(evaluate_method(&held, freq, h, m, reference));
            eprintln!("{set_name}: {:?}", rows.last());
        }
        rows.push(evaluate_naive2(&held, freq, h, reference));
        let mut peers: Vec<(String, Value)> = Vec::new();
        if !args.no_peers {
            match run_peers(&args, set_name) {
                Ok(v) => {
                    if let Some(methods) = v.get("methods").and_then(Value::as_object) {
                        peers = methods
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                    }
                }
                Err(e) => eprintln!("statsforecast failed: {e:#}"),
            }
        }
        writeln!(
            body,
            "### M4 {} ({} series, h = {h})\n",
            set.name(),
            held.len()
        )?;
        writeln!(
            body,
            "| method | sMAPE | MASE | OWA | 80% cover | 95% cover | series/s | seconds |"
        )?;
        writeln!(body, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        let pct = |v: Option<f64>| {
            v.map(|v| format!("{:.1}%", 100.0 * v))
                .unwrap_or_else(|| "-".into())
        };
        for r in &rows {
            let name = if r.name == "beacon" {
                "**Beacon (backtest-chosen combination)**".to_string()
            } else {
                format!("Beacon `{}` alone", r.name)
            };
            let name = if r.name == "naive2" {
                "Naive2 (M4 reference method, this code)".to_string()
            } else {
                name
            };
            writeln!(
                body,
                "| {name} | {:.3} | {:.3} | {:.3} | {} | {} | {:.1} | {:.2} |",
                r.smape,
                r.mase,
                r.owa,
                pct(r.coverage80),
                pct(r.coverage95),
                r.series_per_s,
                r.seconds
            )?;
        }
        for (name, v) in &peers {
            let f = |k: &str| v.get(k).and_then(Value::as_f64);
            writeln!(
                body,
                "| statsforecast `{name}` | {:.3} | {:.3} | {:.3} | {} | {} | {:.1} | {:.2} |",
                f("smape").unwrap_or(f64::NAN),
                f("mase").unwrap_or(f64::NAN),
                f("owa").unwrap_or(f64::NAN),
                pct(f("coverage80")),
                pct(f("coverage95")),
                f("series_per_s").unwrap_or(f64::NAN),
                f("seconds").unwrap_or(f64::NAN)
            )?;
        }
        writeln!(body)?;
    }
    print!("{body}");
    if args.limit.is_none() && args.options.is_none() {
        results::write_section(&args.results, "Forecasting (M4)", &body)?;
    }
    Ok(())
}

/// Training and test values of every series of `set`.
fn load(dir: &Path, set: M4Set) -> anyhow::Result<Vec<(Vec<f64>, Vec<f64>)>> {
    let read = |part: &str| -> anyhow::Result<Vec<(String, Vec<f64>)>> {
        let path = dir.join(format!("{}-{part}.csv.gz", set.name()));
        let mut text = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(&path).with_context(|| path.display().to_string())?,
        )
        .read_to_string(&mut text)?;
        Ok(parse_m4(&text)?)
    };
    let (train, test) = (read("train")?, read("test")?);
    anyhow::ensure!(train.len() == test.len(), "train and test differ in series");
    train
        .into_iter()
        .zip(test)
        .map(|((id, tr), (tid, te))| {
            anyhow::ensure!(
                id == tid && te.len() == set.horizon(),
                "series {id}: test is {tid} with {} values",
                te.len()
            );
            Ok((tr, te))
        })
        .collect()
}

fn run_peers(args: &Args, set: &str) -> anyhow::Result<Value> {
    let script = Path::new("benches/peers/forecast_peers.py");
    let mut cmd = Command::new(&args.python);
    cmd.arg(script)
        .arg("--datasets")
        .arg(set)
        .arg("--data-dir")
        .arg(&args.data);
    if let Some(n) = args.limit {
        cmd.arg("--limit").arg(n.to_string());
    }
    let out = cmd.output().context("running forecast_peers.py")?;
    anyhow::ensure!(
        out.status.success(),
        "forecast_peers.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).context("forecast_peers.py output")?;
    // One object per dataset, or a list of them.
    Ok(match v {
        Value::Array(mut a) => a.pop().unwrap_or(Value::Null),
        Value::Object(ref o) if o.contains_key(set) => o[set].clone(),
        other => other,
    })
}
