//! sqllogictest harness for `engine/tests/slt/*.slt`: each file runs in a
//! fresh workspace through `Engine::sql` (the analysts' sandboxed path).
//!
//! Header comments configure the workspace before the first record:
//! `# timezone: America/New_York`, `# week_start: sunday`, `# currency: GBP`,
//! `# events: fixture.ndjson` (Segment messages ingested first, from
//! `engine/tests/slt/`).
//!
//! `BEACON_SLT_COMPLETE=1 cargo test -p beacon-engine --test it slt` rewrites the
//! expected results from the engine's answers (review the diff!), as
//! DataFusion's `--complete`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use beacon_datasets::output::decode_lines;
use beacon_engine::{Engine, EngineConfig};
use beacon_ingest::{Catalog, IngestConfig, Store, SystemClock};
use sqllogictest::{DBOutput, DefaultColumnType};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

struct BeaconDb {
    engine: Engine,
    tenant: String,
}

#[async_trait]
impl sqllogictest::AsyncDB for BeaconDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let result = self
            .engine
            .sql(&self.tenant, sql)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        let types = result
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                DataType::Float16
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _) => DefaultColumnType::FloatingPoint,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    DefaultColumnType::Text
                }
                _ => DefaultColumnType::Any,
            })
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &result.batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SltError(e.to_string()))?;
            for r in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| {
                            let v = f.value(r).to_string();
                            if v.is_empty() {
                                "(empty)".to_owned()
                            } else {
                                v
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "beacon"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn slt_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt")
}

/// `# key: value` lines at the top of a file.
fn header(path: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).expect("read slt");
    text.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .find_map(|l| {
            l.trim_start_matches('#')
                .trim()
                .strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_owned())
        })
}

async fn database(path: &Path, dir: &Path) -> BeaconDb {
    let catalog = Arc::new(Catalog::open(dir).expect("catalog"));
    let (mut tenant, _) = catalog.create_tenant("slt").expect("tenant");
    tenant.timezone = header(path, "timezone").unwrap_or_else(|| "UTC".into());
    tenant.week_start = header(path, "week_start").unwrap_or_else(|| "monday".into());
    tenant.currency = header(path, "currency").unwrap_or_else(|| "USD".into());
    catalog.update_tenant(&tenant).expect("update");
    let store = Store::open(
        IngestConfig::test_config(),
        dir,
        catalog,
        Arc::new(SystemClock),
    )
    .expect("store");
    if let Some(events) = header(path, "events") {
        let text = std::fs::read_to_string(slt_dir().join(events)).expect("events fixture");
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let (events, rejected) = decode_lines(&lines).expect("decode");
        assert_eq!(rejected, 0, "every fixture event is valid");
        store.ingest(&tenant.id, events).await.expect("ingest");
    }
    BeaconDb {
        engine: Engine::new(store, EngineConfig::default()),
        tenant: tenant.id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictests() {
    let complete = std::env::var_os("BEACON_SLT_COMPLETE").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(slt_dir())
        .expect("slt dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .slt files in {}",
        slt_dir().display()
    );
    let mut failures = Vec::new();
    for path in files {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(&path, dir.path()).await;
        let cell = std::sync::Mutex::new(Some(db));
        let mut runner = sqllogictest::Runner::new(|| {
            let db = cell.lock().expect("lock").take();
            async move { db.ok_or_else(|| SltError("one connection per file".into())) }
        });
        if complete {
            runner
                .update_test_file(
                    &path,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::strict_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else if let Err(e) = runner.run_file_async(&path).await {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
