//! Report schedules and runs.
//!
//! A schedule is a cron expression (croner: five or six fields, `MON`,
//! `L`, ...) read in the workspace's time zone: "0 9 * * MON" runs at
//! 09:00 local time every Monday, on both sides of a daylight-saving
//! change. The next occurrence is stored with the report
//! (`reports.next_run_us`); the loop ([`run_schedule`]) wakes every
//! `reports.tick`, takes the reports due, moves each one's next run past
//! now *before* running it (compare-and-set on the stored instant, so two
//! loops never run one occurrence twice and a crash mid-run does not
//! repeat it), then runs it and logs the run. Occurrences missed while the
//! server was down are not replayed one by one: the report runs once,
//! late, and then on schedule. A failing report is logged as failed, its
//! owner is notified, and the other reports run as usual.

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::render::{self, Format};
use super::store::{self, Finished, Report, Run};
use super::{Audience, Definition, Recipient, audiences};
use crate::error::ApiError;
use crate::state::AppState;

/// Parses a cron expression, or says why not.
pub fn parse(cron: &str) -> Result<croner::Cron, ApiError> {
    croner::Cron::from_str(cron).map_err(|e| {
        ApiError::bad_request(
            "invalid_schedule",
            format!("schedule {cron:?} is not a cron expression: {e}"),
        )
    })
}

/// The first occurrence of `cron` in `tz` strictly after `after_us`.
pub fn next_after(cron: &croner::Cron, tz: Tz, after_us: i64) -> Option<i64> {
    let t = tz.from_utc_datetime(&DateTime::<Utc>::from_timestamp_micros(after_us)?.naive_utc());
    cron.find_next_occurrence(&t, false)
        .ok()
        .map(|n| n.timestamp_micros())
}

/// The loop that runs due reports until `stop`.
pub async fn run_schedule(state: AppState, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = state.engine.now().timestamp_micros();
        let due = match store::due(&state, now) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e.message(), "Listing due reports failed.");
                continue;
            }
        };
        for (tenant, report) in due {
            let Some(was) = report.next_run_us else {
                continue;
            };
            let tz = state.engine.calendar(&tenant).tz;
            let next = report
                .schedule
                .as_deref()
                .and_then(|c| parse(c).ok())
                .and_then(|c| next_after(&c, tz, was.max(now)));
            match store::advance(&state, &tenant, &report.id, was, next) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e.message(), "Moving a report's next run failed.");
                    continue;
                }
            }
            // A failure is logged in the run and told to the owner.
            let _ = execute(
                &state,
                &tenant,
                &report,
                "schedule",
                Some(was),
                &report.recipients,
            )
            .await;
        }
    }
}

/// Runs `report` now for `to` (the report's recipients, or one person for
/// a test send): the report as defined, delivered to the recipients
/// without filters of their own, then one copy per distinct set of
/// recipient filters, delivered to those recipients. Each copy is
/// rendered as of the clock, kept, logged and delivered on its own.
/// Answers the runs, the report's own first (their outcomes say whether
/// they failed).
pub async fn execute(
    state: &AppState,
    tenant: &str,
    report: &Report,
    trigger: &str,
    scheduled_us: Option<i64>,
    to: &[Recipient],
) -> Result<Vec<Run>, ApiError> {
    let mut runs = Vec::new();
    for audience in audiences(to) {
        let (definition, filters) = if audience.filters.is_empty() {
            (report.definition.clone(), None)
        } else {
            let mut d = report.definition.clone();
            d.filters.extend(audience.filters.iter().cloned());
            (d, Some(serde_json::Value::Array(audience.filters.clone())))
        };
        runs.push(
            execute_one(
                state,
                tenant,
                report,
                &definition,
                filters,
                trigger,
                scheduled_us,
                &audience,
            )
            .await?,
        );
    }
    Ok(runs)
}

/// One copy of a report: rendered, kept, logged, delivered to `to`.
#[allow(clippy::too_many_arguments)]
async fn execute_one(
    state: &AppState,
    tenant: &str,
    report: &Report,
    definition: &Definition,
    audience: Option<serde_json::Value>,
    trigger: &str,
    scheduled_us: Option<i64>,
    to: &Audience,
) -> Result<Run, ApiError> {
    let format = Format::parse(&report.format)?;
    let started_us = state.engine.now().timestamp_micros();
    let started = Instant::now();
    let id = beacon_realtime::notify::new_id("run");
    let mut run = Run {
        id: id.clone(),
        report_id: report.id.clone(),
        trigger: trigger.to_owned(),
        scheduled_for: scheduled_us.map(beacon_realtime::notify::rfc3339),
        started_at: beacon_realtime::notify::rfc3339(started_us),
        duration_ms: None,
        format: format.name().to_owned(),
        bytes: None,
        rows: None,
        outcome: "running".into(),
        error: None,
        range_from: None,
        range_to: None,
        notification_id: None,
        audience,
    };
    store::start_run(state, tenant, &run, started_us, scheduled_us)?;
    let rendered = render::render(state, tenant, definition, started_us).await;
    let range = rendered
        .as_ref()
        .ok()
        .map(|r| (r.from.to_string(), r.to.to_string()));
    let summary = rendered
        .as_ref()
        .map(|r| r.summary.clone())
        .unwrap_or_default();
    let outcome = match rendered {
        Ok(r) => keep(state, tenant, report, &id, &r, format)
            .await
            .map(|(bytes, files)| (bytes, r.rows() as i64, files)),
        Err(e) => Err(e),
    }
    .map_err(|e| e.message());
    let finished = Finished {
        duration_ms: started.elapsed().as_millis() as i64,
        outcome,
        range,
    };
    store::finish_run(state, tenant, &id, &finished)?;
    run.duration_ms = Some(finished.duration_ms);
    run.range_from = finished.range.as_ref().map(|r| r.0.clone());
    run.range_to = finished.range.as_ref().map(|r| r.1.clone());
    match &finished.outcome {
        Ok((bytes, rows, files)) => {
            run.outcome = "ok".into();
            run.bytes = Some(*bytes);
            run.rows = Some(*rows);
            if !to.is_empty() {
                match deliver(state, tenant, report, &run, &summary, files, to) {
                    Ok(n) => {
                        store::set_notification(state, tenant, &run.id, &n)?;
                        run.notification_id = Some(n);
                    }
                    // The run is kept; the delivery's failure is the owner's
                    // to know (an unknown recipient, ...).
                    Err(e) => {
                        tracing::warn!(%tenant, report = %report.id, error = %e.message(), "Delivering a report failed.");
                        tell_owner(
                            state,
                            tenant,
                            report,
                            &run,
                            &format!("delivering the report: {}", e.message()),
                        );
                    }
                }
            }
        }
        Err(e) => {
            run.outcome = "failed".into();
            run.error = Some(e.clone());
            tracing::warn!(%tenant, report = %report.id, error = %e, "A report run failed.");
            tell_owner(state, tenant, report, &run, e);
        }
    }
    Ok(run)
}

/// How long a report's download link works.
pub const LINK_TTL_SECS: i64 = 7 * 24 * 3600;

/// What a signed download link names: a run's file, until `exp`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Download {
    /// Workspace.
    pub t: String,
    /// Run.
    pub r: String,
    /// File name (one of the run's).
    pub f: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Prefix of download tokens.
pub const DOWNLOAD_PREFIX: &str = "bdl_";

/// A signed link to one of a run's files, working for [`LINK_TTL_SECS`]
/// without signing in.
pub fn download_link(state: &AppState, tenant: &str, run: &str, file: &str) -> String {
    let claims = Download {
        t: tenant.to_owned(),
        r: run.to_owned(),
        f: file.to_owned(),
        exp: state.engine.now().timestamp() + LINK_TTL_SECS,
    };
    format!(
        "{}/v1/reports/download/{}",
        crate::routes::auth::public_url(state),
        state.tokens.sign_as(DOWNLOAD_PREFIX, &claims)
    )
}

/// Sends a run to `to` through the notification outbox (category
/// `reports`, so each person's preferences pick the channels): the
/// summary as the body, signed links to the files in its data, and the
/// file itself attached to emails (one file: a workbook, or the first
/// block's CSV or Parquet file). Answers the notification's id; the same
/// run is never sent twice (its id is the idempotency key).
fn deliver(
    state: &AppState,
    tenant: &str,
    report: &Report,
    run: &Run,
    summary: &[String],
    files: &[String],
    to: &Audience,
) -> Result<String, ApiError> {
    let links: Vec<serde_json::Value> = files
        .iter()
        .map(|f| json!({"file": f, "url": download_link(state, tenant, &run.id, f)}))
        .collect();
    let format = Format::parse(&run.format)?;
    let mut body = summary.join("\n");
    for l in &links {
        body.push_str(&format!("\n{}", l["url"].as_str().unwrap_or_default()));
    }
    let range = format!(
        "{} to {}",
        run.range_from.as_deref().unwrap_or(""),
        run.range_to.as_deref().unwrap_or("")
    );
    let request = beacon_realtime::notify::SendRequest {
        recipients: to.users.clone(),
        emails: to.emails.clone(),
        // Only the endpoints the report names: a report is not broadcast
        // to every webhook of the workspace.
        webhooks: Some(to.webhooks.clone()),
        category: "reports".into(),
        severity: None,
        title: format!("{}, {range}", report.definition.title)
            .chars()
            .take(200)
            .collect(),
        body: body.chars().take(10_000).collect(),
        data: Some(json!({
            "report_id": report.id,
            "run_id": run.id,
            "range": {"from": run.range_from, "to": run.range_to},
            "files": links,
            "attachment": files.first().map(|f| json!({
                "file": format!("{}/{f}", report.id),
                "filename": format!("{}.{}", report.definition.title.replace(['/', '\\', '"'], "-"), format.name()),
                "content_type": content_type(format),
            })),
        })),
        channels: None,
        idempotency_key: Some(format!("report-run:{}", run.id)),
    };
    state
        .notifier
        .send(tenant, request)
        .map(|r| r.id)
        .map_err(|e| ApiError::bad_request("delivery_failed", e.to_string()))
}

/// A format's media type.
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Xlsx => crate::export::XLSX_TYPE,
        Format::Csv => "text/csv; charset=utf-8",
        Format::Parquet => crate::export::PARQUET_TYPE,
        Format::Pdf => "application/pdf",
    }
}

/// Writes the run's file(s): (bytes, file names).
async fn keep(
    state: &AppState,
    tenant: &str,
    report: &Report,
    run_id: &str,
    rendered: &render::Rendered,
    format: Format,
) -> Result<(i64, Vec<String>), ApiError> {
    let dir = store::files_dir(state, tenant).join(&report.id);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(&e))?;
    let files: Vec<(String, Vec<u8>)> = if format.per_block() {
        (0..rendered.blocks.len())
            .map(|b| {
                let name = format!("{run_id}-{b}.{}", format.name());
                Ok((name, render::write(rendered, format, b)?))
            })
            .collect::<Result<_, ApiError>>()?
    } else {
        vec![(
            format!("{run_id}.{}", format.name()),
            render::write_file(state, tenant, rendered, format, 0).await?,
        )]
    };
    let mut bytes = 0;
    let mut names = Vec::with_capacity(files.len());
    for (name, body) in files {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, &body).map_err(|e| ApiError::internal(&e))?;
        std::fs::rename(&tmp, dir.join(&name)).map_err(|e| ApiError::internal(&e))?;
        bytes += body.len() as i64;
        names.push(name);
    }
    Ok((bytes, names))
}

/// A failed run is told to the report's owner (a signed-in person's
/// report; a key's has no one to tell) in their inbox and channels.
fn tell_owner(state: &AppState, tenant: &str, report: &Report, run: &Run, error: &str) {
    if report.owner.starts_with("key:") {
        return;
    }
    let request = beacon_realtime::notify::SendRequest {
        recipients: vec![report.owner.clone()],
        category: "reports".into(),
        severity: Some("warning".into()),
        title: format!("Report \"{}\" failed", report.definition.title)
            .chars()
            .take(200)
            .collect(),
        body: error.chars().take(2_000).collect(),
        data: Some(json!({"report_id": report.id, "run_id": run.id})),
        channels: None,
        idempotency_key: Some(format!("report-failed:{}", run.id)),
        emails: Vec::new(),
        webhooks: Some(Vec::new()),
    };
    if let Err(e) = state.notifier.send(tenant, request) {
        tracing::warn!(%tenant, error = %e, "Telling a report's owner of a failed run failed.");
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Timelike, Weekday};

    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_micros()
    }

    /// A clock stepped minute by minute across the spring and autumn
    /// changes, running the report whenever it is due the way the loop
    /// does: each Monday exactly one run, at 09:00 local time.
    fn simulate(zone: &str, from: &str, weeks: i64) -> Vec<DateTime<Tz>> {
        let tz: Tz = zone.parse().expect("zone");
        let cron = parse("0 9 * * MON").expect("cron");
        let start = at(from);
        let mut next = next_after(&cron, tz, start);
        let mut runs = Vec::new();
        let minute = 60_000_000;
        let mut now = start;
        while now < start + weeks * 7 * 24 * 60 * minute {
            now += minute;
            if let Some(due) = next
                && due <= now
            {
                runs.push(
                    tz.from_utc_datetime(
                        &DateTime::<Utc>::from_timestamp_micros(due)
                            .expect("time")
                            .naive_utc(),
                    ),
                );
                next = next_after(&cron, tz, due.max(now));
            }
        }
        runs
    }

    #[test]
    fn nine_on_mondays_stays_nine_across_daylight_saving_changes() {
        // London: 29 March and 25 October 2026; New York: 8 March and
        // 1 November 2026.
        for (zone, from, weeks) in [
            ("Europe/London", "2026-03-10T00:00:00Z", 5),
            ("Europe/London", "2026-10-10T00:00:00Z", 5),
            ("America/New_York", "2026-02-20T00:00:00Z", 5),
            ("America/New_York", "2026-10-20T00:00:00Z", 5),
        ] {
            let runs = simulate(zone, from, weeks);
            assert_eq!(runs.len(), 5, "{zone} from {from}: {runs:?}");
            for r in &runs {
                assert_eq!(
                    (r.weekday(), r.hour(), r.minute()),
                    (Weekday::Mon, 9, 0),
                    "{zone}: {r}"
                );
            }
            let offsets: std::collections::BTreeSet<String> =
                runs.iter().map(|r| r.format("%z").to_string()).collect();
            assert_eq!(
                offsets.len(),
                2,
                "{zone} from {from}: the runs straddle a change: {runs:?}"
            );
            let mut days: Vec<_> = runs.iter().map(|r| r.date_naive()).collect();
            days.dedup();
            assert_eq!(days.len(), runs.len(), "one run per Monday");
        }
    }

    #[test]
    fn bad_cron_is_a_clear_error() {
        for bad in ["", "every monday", "61 9 * * MON", "0 9 * * FUNDAY"] {
            let e = parse(bad).expect_err(bad);
            assert!(e.message().contains("cron"), "{bad}: {}", e.message());
        }
    }
}
