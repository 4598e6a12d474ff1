//! Reports and their runs in the metadata database (`reports`,
//! `report_runs`: realtime migration 5), and the runs' files under
//! `<data dir>/reports/<workspace>/<report id>/<run id>[-<block>].<format>`.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use super::Definition;
use crate::error::ApiError;
use crate::state::AppState;

/// A saved report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Id.
    pub id: String,
    /// What it shows.
    pub definition: Definition,
    /// Cron expression in the workspace's time zone, if scheduled.
    pub schedule: Option<String>,
    /// `xlsx`, `csv` or `parquet`.
    pub format: String,
    /// A paused schedule does not run.
    pub paused: bool,
    /// When the schedule next runs (RFC 3339), if scheduled and not paused.
    pub next_run_at: Option<String>,
    /// Users the run's file goes to (inbox, email with the file attached,
    /// their webhooks with a signed link), by their preferences for
    /// `reports`.
    pub recipients: Vec<super::Recipient>,
    /// Who made it.
    pub owner: String,
    /// When it was made and last changed (RFC 3339).
    pub created_at: String,
    /// When it was last changed.
    pub updated_at: String,
    #[serde(skip)]
    pub(crate) next_run_us: Option<i64>,
}

/// One run of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Id.
    pub id: String,
    /// The report.
    pub report_id: String,
    /// `schedule`, `manual`.
    pub trigger: String,
    /// The occurrence a scheduled run is for (RFC 3339).
    pub scheduled_for: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it took.
    pub duration_ms: Option<i64>,
    /// `xlsx`, `csv` or `parquet`.
    pub format: String,
    /// Size of the file(s).
    pub bytes: Option<i64>,
    /// Rows over every block.
    pub rows: Option<i64>,
    /// `running`, `ok`, `failed`.
    pub outcome: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The range it covered.
    pub range_from: Option<String>,
    /// Last day of the range.
    pub range_to: Option<String>,
    /// The notification that delivered it (see its deliveries).
    pub notification_id: Option<String>,
    /// The filters of the recipients' copy this run is (none: the report
    /// as defined).
    pub audience: Option<Value>,
}

fn rfc3339(us: i64) -> String {
    beacon_realtime::notify::rfc3339(us)
}

fn report_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Report> {
    let text: String = r.get(1)?;
    let definition = serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let next: Option<i64> = r.get(5)?;
    let paused: bool = r.get(4)?;
    let recipients: String = r.get(9)?;
    Ok(Report {
        id: r.get(0)?,
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        definition,
        schedule: r.get(2)?,
        format: r.get(3)?,
        paused,
        next_run_at: next.filter(|_| !paused).map(rfc3339),
        owner: r.get(6)?,
        created_at: rfc3339(r.get(7)?),
        updated_at: rfc3339(r.get(8)?),
        next_run_us: next,
    })
}

const REPORT_COLUMNS: &str = "id, definition, schedule, format, paused, next_run_us, owner, created_at_us, updated_at_us, \
     recipients";

fn run_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        report_id: r.get(1)?,
        trigger: r.get(2)?,
        scheduled_for: r.get::<_, Option<i64>>(3)?.map(rfc3339),
        started_at: rfc3339(r.get(4)?),
        duration_ms: r.get(5)?,
        format: r.get(6)?,
        bytes: r.get(7)?,
        rows: r.get(8)?,
        outcome: r.get(9)?,
        error: r.get(10)?,
        range_from: r.get(11)?,
        range_to: r.get(12)?,
        notification_id: r.get(13)?,
        audience: r
            .get::<_, Option<String>>(14)?
            .and_then(|a| serde_json::from_str(&a).ok()),
    })
}

const RUN_COLUMNS: &str = "id, report_id, trigger, scheduled_for_us, started_at_us, duration_ms, format, bytes, rows, \
     outcome, error, range_from, range_to, notification_id, audience";

/// Every report of a workspace, by title.
pub fn list(state: &AppState, tenant: &str) -> Result<Vec<Report>, ApiError> {
    Ok(state.notifier.db().with(|c| {
        let mut stmt = c.prepare(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE tenant_id = ?1 ORDER BY name, id"
        ))?;
        let rows = stmt.query_map(params![tenant], report_of)?;
        rows.collect()
    })?)
}

/// One report, or 404.
pub fn get(state: &AppState, tenant: &str, id: &str) -> Result<Report, ApiError> {
    state
        .notifier
        .db()
        .with(|c| {
            c.query_row(
                &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE tenant_id = ?1 AND id = ?2"),
                params![tenant, id],
                report_of,
            )
            .optional()
        })?
        .ok_or_else(|| ApiError::not_found(format!("no report {id:?}")))
}

/// Inserts or replaces a report.
pub fn put(state: &AppState, tenant: &str, report: &Report, now_us: i64) -> Result<(), ApiError> {
    let text = serde_json::to_string(&report.definition).map_err(|e| ApiError::internal(&e))?;
    state.notifier.db().with(|c| {
        c.execute(
            "INSERT INTO reports (tenant_id, id, name, definition, schedule, format, paused, next_run_us, owner, created_at_us, updated_at_us, recipients) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = ?3, definition = ?4, schedule = ?5, format = ?6, \
                 paused = ?7, next_run_us = ?8, updated_at_us = ?10, recipients = ?11",
            params![
                tenant,
                report.id,
                report.definition.title,
                text,
                report.schedule,
                report.format,
                report.paused,
                report.next_run_us,
                report.owner,
                now_us,
                serde_json::to_string(&report.recipients).unwrap_or_else(|_| "[]".into())
            ],
        )
    })?;
    Ok(())
}

/// Deletes a report (its runs go with it); false when there was none.
pub fn delete(state: &AppState, tenant: &str, id: &str) -> Result<bool, ApiError> {
    let n = state.notifier.db().with(|c| {
        c.execute(
            "DELETE FROM reports WHERE tenant_id = ?1 AND id = ?2",
            params![tenant, id],
        )
    })?;
    let _ = std::fs::remove_dir_all(files_dir(state, tenant).join(id));
    Ok(n > 0)
}

/// Scheduled reports due at `now_us`, every workspace: (workspace, report).
pub fn due(state: &AppState, now_us: i64) -> Result<Vec<(String, Report)>, ApiError> {
    Ok(state.notifier.db().with(|c| {
        // The workspace after the report's columns, so `report_of` reads them.
        let mut stmt = c.prepare(&format!(
            "SELECT {REPORT_COLUMNS}, tenant_id FROM reports \
             WHERE next_run_us IS NOT NULL AND paused = 0 AND next_run_us <= ?1 ORDER BY next_run_us"
        ))?;
        let rows = stmt.query_map(params![now_us], |r| Ok((r.get(10)?, report_of(r)?)))?;
        rows.collect()
    })?)
}

/// Moves a report's next run (after a scheduled run), unless it changed
/// meanwhile (its `next_run_us` is no longer `was`): true when moved.
pub fn advance(
    state: &AppState,
    tenant: &str,
    id: &str,
    was: i64,
    next: Option<i64>,
) -> Result<bool, ApiError> {
    let n = state.notifier.db().with(|c| {
        c.execute(
            "UPDATE reports SET next_run_us = ?4 WHERE tenant_id = ?1 AND id = ?2 AND next_run_us = ?3",
            params![tenant, id, was, next],
        )
    })?;
    Ok(n > 0)
}

/// Records a run that started.
pub fn start_run(
    state: &AppState,
    tenant: &str,
    run: &Run,
    started_us: i64,
    scheduled_us: Option<i64>,
) -> Result<(), ApiError> {
    state.notifier.db().with(|c| {
        c.execute(
            "INSERT INTO report_runs (tenant_id, id, report_id, trigger, scheduled_for_us, started_at_us, format, outcome, audience) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8)",
            params![
                tenant,
                run.id,
                run.report_id,
                run.trigger,
                scheduled_us,
                started_us,
                run.format,
                run.audience.as_ref().map(Value::to_string)
            ],
        )
    })?;
    Ok(())
}

/// What a finished run records.
#[derive(Debug)]
pub struct Finished {
    /// Milliseconds.
    pub duration_ms: i64,
    /// `Ok((bytes, rows, files))` or the failure.
    pub outcome: Result<(i64, i64, Vec<String>), String>,
    /// The range (first and last day).
    pub range: Option<(String, String)>,
}

/// Records how a run ended.
pub fn finish_run(
    state: &AppState,
    tenant: &str,
    run_id: &str,
    f: &Finished,
) -> Result<(), ApiError> {
    let (outcome, error, bytes, rows, files) = match &f.outcome {
        Ok((bytes, rows, files)) => (
            "ok",
            None,
            Some(*bytes),
            Some(*rows),
            Some(Value::from(files.clone()).to_string()),
        ),
        Err(e) => ("failed", Some(e.clone()), None, None, None),
    };
    let (from, to) = f.range.clone().unzip();
    state.notifier.db().with(|c| {
        c.execute(
            "UPDATE report_runs SET duration_ms = ?3, outcome = ?4, error = ?5, bytes = ?6, rows = ?7, file = ?8, \
                 range_from = ?9, range_to = ?10 WHERE tenant_id = ?1 AND id = ?2",
            params![tenant, run_id, f.duration_ms, outcome, error, bytes, rows, files, from, to],
        )
    })?;
    Ok(())
}

/// A workspace's runs, newest first (of one report with `report`).
pub fn runs(
    state: &AppState,
    tenant: &str,
    report: Option<&str>,
    limit: usize,
) -> Result<Vec<Run>, ApiError> {
    Ok(runs_in(state.notifier.db(), tenant, report, limit)?)
}

fn runs_in(
    db: &beacon_realtime::notify::store::NotifyDb,
    tenant: &str,
    report: Option<&str>,
    limit: usize,
) -> Result<Vec<Run>, beacon_realtime::notify::NotifyError> {
    db.with(|c| {
        let mut stmt = c.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant_id = ?1 AND (?2 IS NULL OR report_id = ?2) \
             ORDER BY started_at_us DESC, id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![tenant, report, limit as i64], run_of)?;
        rows.collect()
    })
}

/// The SQL table of the run log.
pub const RUNS_TABLE: &str = "report_runs";

/// Rows of `report_runs` a workspace sees in SQL (the newest).
const SQL_ROWS: usize = 50_000;

/// [`RUNS_TABLE`]: a workspace's newest [`SQL_ROWS`] report runs, read from
/// the metadata database when a query scans it (`SELECT outcome, count(*)
/// FROM report_runs GROUP BY 1`).
#[derive(Debug)]
pub struct RunsTable {
    /// The metadata database.
    pub db: beacon_realtime::notify::store::NotifyDb,
}

fn runs_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("report_id", DataType::Utf8, false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("scheduled_for", ts(), true),
        Field::new("started_at", ts(), false),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new("format", DataType::Utf8, false),
        Field::new("bytes", DataType::Int64, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("range_from", DataType::Date32, true),
        Field::new("range_to", DataType::Date32, true),
        Field::new("notification_id", DataType::Utf8, true),
        Field::new("audience", DataType::Utf8, true),
    ]))
}

impl beacon_engine::system_tables::SystemTable for RunsTable {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        runs_schema()
    }

    fn scan(&self, tenant: &str) -> datafusion::error::Result<arrow::array::RecordBatch> {
        use arrow::array::{
            ArrayRef, Date32Array, Int64Array, StringArray, TimestampMicrosecondArray,
        };
        let rows = runs_in(&self.db, tenant, None, SQL_ROWS)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let micros = |t: &Option<String>| {
            t.as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.timestamp_micros())
        };
        let days = |d: &Option<String>| {
            d.as_deref()
                .and_then(|s| s.parse::<chrono::NaiveDate>().ok())
                .map(|d| (d - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days() as i32)
        };
        let text = |f: fn(&Run) -> Option<String>| -> ArrayRef {
            std::sync::Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let columns: Vec<ArrayRef> = vec![
            text(|r| Some(r.id.clone())),
            text(|r| Some(r.report_id.clone())),
            text(|r| Some(r.trigger.clone())),
            std::sync::Arc::new(
                rows.iter()
                    .map(|r| micros(&r.scheduled_for))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ),
            std::sync::Arc::new(
                rows.iter()
                    .map(|r| micros(&Some(r.started_at.clone())))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ),
            std::sync::Arc::new(rows.iter().map(|r| r.duration_ms).collect::<Int64Array>()),
            text(|r| Some(r.format.clone())),
            std::sync::Arc::new(rows.iter().map(|r| r.bytes).collect::<Int64Array>()),
            std::sync::Arc::new(rows.iter().map(|r| r.rows).collect::<Int64Array>()),
            text(|r| Some(r.outcome.clone())),
            text(|r| r.error.clone()),
            std::sync::Arc::new(
                rows.iter()
                    .map(|r| days(&r.range_from))
                    .collect::<Date32Array>(),
            ),
            std::sync::Arc::new(
                rows.iter()
                    .map(|r| days(&r.range_to))
                    .collect::<Date32Array>(),
            ),
            text(|r| r.notification_id.clone()),
            text(|r| r.audience.as_ref().map(|a| a.to_string())),
        ];
        Ok(arrow::array::RecordBatch::try_new(runs_schema(), columns)?)
    }
}

/// One run and the names of its files, or 404.
pub fn run(state: &AppState, tenant: &str, id: &str) -> Result<(Run, Vec<String>), ApiError> {
    state
        .notifier
        .db()
        .with(|c| {
            c.query_row(
                &format!(
                    "SELECT {RUN_COLUMNS}, file FROM report_runs WHERE tenant_id = ?1 AND id = ?2"
                ),
                params![tenant, id],
                |r| {
                    let files: Option<String> = r.get(15)?;
                    Ok((
                        run_of(r)?,
                        files
                            .and_then(|f| serde_json::from_str(&f).ok())
                            .unwrap_or_default(),
                    ))
                },
            )
            .optional()
        })?
        .ok_or_else(|| ApiError::not_found(format!("no report run {id:?}")))
}

/// Where a workspace's run files are.
pub fn files_dir(state: &AppState, tenant: &str) -> PathBuf {
    state.store.data_dir().join("reports").join(tenant)
}

/// Records the notification that delivered a run.
pub fn set_notification(
    state: &AppState,
    tenant: &str,
    run_id: &str,
    notification: &str,
) -> Result<(), ApiError> {
    state.notifier.db().with(|c| {
        c.execute(
            "UPDATE report_runs SET notification_id = ?3 WHERE tenant_id = ?1 AND id = ?2",
            params![tenant, run_id, notification],
        )
    })?;
    Ok(())
}
