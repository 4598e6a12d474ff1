//! The churn suite: Beacon's classifier (logistic regression or random
//! forest, chosen by inner cross-validation, Platt-calibrated) on Telco
//! churn and the lead-scoring set, 5-fold stratified cross-validation on
//! fixed folds (within each class, the k-th row goes to fold k mod 5), and
//! in the same run scikit-learn's logistic regression on the same folds
//! (`benches/peers/classify_peers.py`).
//!
//! ```sh
//! benches/peers/setup.sh
//! cargo run --release -p beacon-forecasting --example classify_eval
//! ```
//!
//! Writes the "Churn and lead scoring" section of `benches/RESULTS.md`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use beacon_forecasting::classify::{ClassifierOptions, cross_validate};
use beacon_forecasting::features::{Column, Table};
use clap::Parser;

#[path = "support/results.rs"]
mod results;
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    /// Data directory (`telco_churn/`, `lead_scoring/`).
    #[arg(long, default_value = "datasets/data")]
    data: PathBuf,
    /// Python with the peers.
    #[arg(long, default_value = "benches/.venv/bin/python")]
    python: PathBuf,
    /// Skip scikit-learn.
    #[arg(long)]
    no_peers: bool,
    /// Results file.
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: PathBuf,
    /// Datasets to run.
    #[arg(long, value_delimiter = ',', default_value = "telco,leads")]
    only: Vec<String>,
    /// Classifier options as JSON, to compare settings (results not written).
    #[arg(long)]
    options: Option<String>,
}

/// Reads a gzip CSV as a header and text rows.
pub fn read_csv_gz(path: &Path) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(path).with_context(|| path.display().to_string())?,
    )
    .read_to_string(&mut text)?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers()?.iter().map(str::to_string).collect();
    let rows = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
        .collect::<Result<_, _>>()?;
    Ok((header, rows))
}

/// The Telco table (target `Churn` = Yes) and the leads table (target
/// `Converted` = 1), with the same reading rules as the scikit-learn script.
pub fn load(data: &Path, which: &str) -> anyhow::Result<(Table, Vec<bool>)> {
    let (path, numeric, drop, missing, target, positive): (
        &str,
        &[&str],
        &[&str],
        &[&str],
        &str,
        &str,
    ) = match which {
        "telco" => (
            "telco_churn/Telco-Customer-Churn.csv.gz",
            &["SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges"],
            &["customerID"],
            &[""],
            "Churn",
            "Yes",
        ),
        "leads" => (
            "lead_scoring/Leads.csv.gz",
            &[
                "TotalVisits",
                "Total Time Spent on Website",
                "Page Views Per Visit",
                "Asymmetrique Activity Score",
                "Asymmetrique Profile Score",
            ],
            &["Prospect ID", "Lead Number"],
            &["", "Select"],
            "Converted",
            "1",
        ),
        other => anyhow::bail!("unknown dataset {other}"),
    };
    let (header, rows) = read_csv_gz(&data.join(path))?;
    let mut table = Table::from_records(&header, &rows, numeric, drop, missing);
    let Some(Column::Text(t)) = table.take(target) else {
        anyhow::bail!("{which}: no target column {target}");
    };
    let y = t.iter().map(|v| v.as_deref() == Some(positive)).collect();
    Ok((table, y))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let opts: ClassifierOptions = match &args.options {
        Some(json) => serde_json::from_str(json).context("--options")?,
        None => ClassifierOptions::default(),
    };
    let peers: Option<Value> = if args.no_peers {
        None
    } else {
        let out = Command::new(&args.python)
            .arg("benches/peers/classify_peers.py")
            .output()
            .context("classify_peers.py")?;
        anyhow::ensure!(
            out.status.success(),
            "classify_peers.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(serde_json::from_slice(&out.stdout)?)
    };
    let mut body = String::new();
    writeln!(
        body,
        "Command: `cargo run --release -p beacon-forecasting --example classify_eval` (after `benches/peers/setup.sh`), release build, 2 threads."
    )?;
    writeln!(
        body,
        "5-fold stratified CV on fixed folds (within each class, row k goes to fold k mod 5), the same folds for both."
    )?;
    writeln!(
        body,
        "Beacon's model choice (logistic regression at several L2 strengths, random forest) happens by an inner CV inside each training part; the AUC is on the held-out fold."
    )?;
    writeln!(body, "Options: `{}`.\n", serde_json::to_string(&opts)?)?;
    writeln!(
        body,
        "| data | rows | Beacon AUC (mean of folds) | chosen per fold | scikit-learn LogisticRegression AUC | Beacon - sklearn | Beacon seconds | sklearn seconds |"
    )?;
    writeln!(body, "|---|---:|---:|---|---:|---:|---:|---:|")?;
    for which in args.only.iter().map(String::as_str) {
        let (table, y) = load(&args.data, which)?;
        let start = Instant::now();
        let cv = cross_validate(&table, &y, 5, &opts)?;
        let secs = start.elapsed().as_secs_f64();
        eprintln!("{which}: {cv:?}");
        let peer = peers.as_ref().and_then(|p| p.get(which));
        let sk_auc = peer
            .and_then(|p| p.get("mean_auc"))
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN);
        let sk_secs = peer
            .and_then(|p| p.get("seconds"))
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN);
        let mut chosen = cv.chosen.clone();
        chosen.dedup();
        writeln!(
            body,
            "| {which} | {} | {:.4} | {} | {:.4} | {:+.4} | {secs:.1} | {sk_secs:.1} |",
            y.len(),
            cv.mean_auc,
            chosen.join(", "),
            sk_auc,
            cv.mean_auc - sk_auc
        )?;
        let cal: Vec<String> = cv
            .calibration
            .iter()
            .map(|(p, r)| format!("{:.2}->{:.2}", p, r))
            .collect();
        writeln!(
            body,
            "|  | | calibration (mean predicted -> observed, by decile): {} | | | | | |",
            cal.join(" ")
        )?;
    }
    print!("{body}");
    if args.options.is_none() && args.only.len() == 2 {
        results::write_section(&args.results, "Churn and lead scoring", &body)?;
    }
    Ok(())
}
