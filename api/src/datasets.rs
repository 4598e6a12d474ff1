//! `beacon datasets ...`: convert the public datasets, generate synthetic
//! events, replay an event file into a running server.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use beacon_datasets::convert::Dataset;
use beacon_datasets::generate::{generate_count, utc_midnight};
use beacon_datasets::message::Message;
use beacon_datasets::output::{EventWriter, write_lines};
use beacon_datasets::replay::{ReplayOptions, Speed, replay};
use chrono::NaiveDate;
use clap::Subcommand;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Convert a public dataset (online-retail, hotel-bookings, clickstream,
    /// telco-churn, lead-scoring) into Beacon events.
    Convert {
        /// Dataset name.
        name: Dataset,
        /// The CSV(.gz) file [default: datasets/data/<its file>].
        #[arg(long)]
        input: Option<PathBuf>,
        /// Output file: `.parquet` for Beacon's event schema, anything else NDJSON.
        #[arg(long)]
        output: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate synthetic events (an online shop and an appointment
    /// business), deterministic for a seed.
    Generate {
        /// Total events over all tenants.
        #[arg(long)]
        events: usize,
        /// Number of tenants (independent businesses, seeds seed..seed+T).
        #[arg(long, default_value_t = 1)]
        tenants: usize,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The generated year ends at this date (UTC midnight).
        #[arg(long, default_value = "2026-01-01")]
        end: NaiveDate,
        /// Output: a file for one tenant, a directory (one `tenant-N` file
        /// each) for several.
        #[arg(long)]
        output: PathBuf,
        /// `parquet` or `ndjson` (for directories; files go by extension).
        #[arg(long, default_value = "parquet")]
        format: String,
    },
    /// Send an event file (NDJSON or Parquet) to a running server.
    Replay {
        /// The file.
        file: PathBuf,
        /// Server URL.
        #[arg(long, default_value = "http://127.0.0.1:7400")]
        url: String,
        /// A write key.
        #[arg(long, env = "BEACON_WRITE_KEY")]
        key: String,
        /// `max`, or a factor of real time such as `3600x`.
        #[arg(long, default_value = "max")]
        speed: Speed,
        /// Shift event times so the last event happens now.
        #[arg(long)]
        shift_to_now: bool,
        /// Events per request.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Print the report as JSON (and no progress bar).
        #[arg(long)]
        json: bool,
    },
}

#[allow(clippy::print_stdout)]
pub fn run(command: DatasetsCommand) -> anyhow::Result<()> {
    match command {
        DatasetsCommand::Convert {
            name,
            input,
            output,
            json,
        } => {
            let input =
                input.unwrap_or_else(|| Path::new("datasets/data").join(name.default_file()));
            let conversion = name
                .convert(&input)
                .with_context(|| format!("converting {}", input.display()))?;
            let written = write_lines(&conversion.lines, &output)?;
            let report = &conversion.report;
            if json {
                println!(
                    "{}",
                    json!({
                        "dataset": name.name(),
                        "rows": report.rows,
                        "events": report.events,
                        "skipped_rows": report.skipped_rows,
                        "notes": report.notes,
                        "written": written.events,
                        "rejected": written.rejected.len(),
                        "time_zone": name.time_zone(),
                        "currency": name.currency(),
                    })
                );
            } else {
                println!(
                    "{}: {} rows -> {} events in {}",
                    name,
                    report.rows,
                    written.events,
                    output.display()
                );
                for (event, n) in &report.events {
                    println!("  {event}: {n}");
                }
                for (reason, n) in &report.skipped_rows {
                    println!("  skipped ({reason}): {n} rows");
                }
                for (note, n) in &report.notes {
                    println!("  note ({note}): {n}");
                }
                println!(
                    "  business time zone {}, currency {}",
                    name.time_zone(),
                    name.currency()
                );
            }
            if !written.rejected.is_empty() {
                println!(
                    "  {} events were rejected by the decoder, e.g. {:?}",
                    written.rejected.len(),
                    written.rejected.first()
                );
            }
            Ok(())
        }
        DatasetsCommand::Generate {
            events,
            tenants,
            seed,
            end,
            output,
            format,
        } => {
            if tenants == 0 {
                bail!("--tenants must be at least 1");
            }
            let end = utc_midnight(end);
            let paths: Vec<PathBuf> = if tenants == 1 {
                vec![output.clone()]
            } else {
                let ext = match format.as_str() {
                    "parquet" => "parquet",
                    "ndjson" => "ndjson",
                    other => bail!("--format must be parquet or ndjson, not {other:?}"),
                };
                std::fs::create_dir_all(&output)?;
                (0..tenants)
                    .map(|t| output.join(format!("tenant-{t}.{ext}")))
                    .collect()
            };
            let per_tenant = events / tenants;
            let results: Vec<anyhow::Result<usize>> = std::thread::scope(|scope| {
                let handles: Vec<_> = paths
                    .iter()
                    .enumerate()
                    .map(|(t, path)| {
                        let count = per_tenant + usize::from(t < events % tenants);
                        scope.spawn(move || -> anyhow::Result<usize> {
                            let mut writer = EventWriter::create(path)?;
                            let mut rejected = 0;
                            let n = generate_count(
                                seed + t as u64,
                                count,
                                end,
                                |chunk: Vec<Message>| {
                                    let lines: Vec<String> =
                                        chunk.iter().map(Message::line).collect();
                                    rejected += writer.write(&lines)?;
                                    Ok(())
                                },
                            )?;
                            writer.finish()?;
                            if rejected > 0 {
                                bail!("{rejected} generated events were rejected by the decoder");
                            }
                            Ok(n)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| bail!("generator thread panicked"))
                    })
                    .collect()
            });
            let mut total = 0;
            for (path, result) in paths.iter().zip(results) {
                let n = result?;
                total += n;
                println!("{}: {n} events", path.display());
            }
            println!("{total} events, seed {seed}, year ending {end}");
            Ok(())
        }
        DatasetsCommand::Replay {
            file,
            url,
            key,
            speed,
            shift_to_now,
            batch_size,
            json,
        } => {
            let options = ReplayOptions {
                url,
                key,
                speed,
                shift_to_now,
                batch_size,
                progress: !json,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let started = std::time::Instant::now();
            let report = runtime.block_on(replay(&file, &options))?;
            let secs = started.elapsed().as_secs_f64();
            if json {
                println!(
                    "{}",
                    json!({
                        "read": report.read,
                        "bad_lines": report.bad_lines,
                        "accepted": report.accepted,
                        "duplicates": report.duplicates,
                        "rejected": report.rejected,
                        "rejection_samples": report.rejection_samples,
                        "retries": report.retries,
                        "seconds": secs,
                    })
                );
            } else {
                println!(
                    "read {} events ({} bad lines): {} accepted, {} duplicates, {} rejected, {} retries in {:.1}s ({:.0} events/s)",
                    report.read,
                    report.bad_lines,
                    report.accepted,
                    report.duplicates,
                    report.rejected,
                    report.retries,
                    secs,
                    report.read as f64 / secs.max(1e-9)
                );
                for sample in &report.rejection_samples {
                    println!("  rejected: {sample}");
                }
            }
            Ok(())
        }
    }
}
