//! Sending an event file to a running Beacon through `/v1/batch`.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::message::iso;
use crate::output::read_messages;
use crate::{Error, Result};

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the server accepts.
    Max,
    /// `N` times real time: gaps between event times are divided by `N`.
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let n = s.strip_suffix(['x', 'X']).unwrap_or(s);
        match n.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "speed must be `max` or a positive factor such as `60x`, got {s:?}"
            )),
        }
    }
}

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Server base URL, e.g. `http://127.0.0.1:7400`.
    pub url: String,
    /// A write key.
    pub key: String,
    /// Pace.
    pub speed: Speed,
    /// Shift all event times so the last event happens now.
    pub shift_to_now: bool,
    /// Events per request.
    pub batch_size: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events read from the file.
    pub read: usize,
    /// Lines that were not JSON objects (not sent).
    pub bad_lines: usize,
    /// Events stored by the server.
    pub accepted: usize,
    /// Events the server had already (same `messageId`).
    pub duplicates: usize,
    /// Events the server rejected, with the first few reasons.
    pub rejected: usize,
    /// Up to 10 rejection reasons.
    pub rejection_samples: Vec<String>,
    /// Requests retried after 503/429 or a connection error.
    pub retries: usize,
}

#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    accepted: usize,
    #[serde(default)]
    duplicates: usize,
    #[serde(default)]
    rejected: Vec<Value>,
}

fn event_time(message: &Value) -> Option<DateTime<Utc>> {
    message
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Replays `path` (NDJSON or Parquet) into the server.
pub async fn replay(path: &Path, options: &ReplayOptions) -> Result<ReplayReport> {
    let (mut messages, bad_lines) = read_messages(path)?;
    let mut report = ReplayReport {
        read: messages.len(),
        bad_lines,
        ..ReplayReport::default()
    };
    // In event-time order, so `--speed Nx` replays the original pacing.
    messages.sort_by_cached_key(|m| {
        event_time(m)
            .map(|t| t.timestamp_micros())
            .unwrap_or(i64::MIN)
    });
    if options.shift_to_now
        && let Some(last) = messages.iter().rev().find_map(event_time)
    {
        let offset = Utc::now() - last;
        for m in &mut messages {
            if let (Some(t), Some(obj)) = (event_time(m), m.as_object_mut()) {
                obj.insert("timestamp".into(), iso(t + offset).into());
            }
        }
    }
    let bar = if options.progress {
        ProgressBar::with_draw_target(Some(messages.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Replay(e.to_string()))?;
    let endpoint = format!("{}/v1/batch", options.url.trim_end_matches('/'));
    let started = Instant::now();
    let first_time = messages.first().and_then(event_time);
    for chunk in messages.chunks(options.batch_size.max(1)) {
        if let (Speed::Factor(f), Some(t0), Some(t)) = (
            options.speed,
            first_time,
            chunk.first().and_then(event_time),
        ) {
            let due =
                Duration::from_secs_f64(((t - t0).num_milliseconds().max(0) as f64 / 1000.0) / f);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let body = json!({ "batch": chunk });
        let answer = send(&client, &endpoint, &options.key, &body, &mut report).await?;
        report.accepted += answer.accepted;
        report.duplicates += answer.duplicates;
        report.rejected += answer.rejected.len();
        for r in answer.rejected {
            if report.rejection_samples.len() < 10 {
                report.rejection_samples.push(r.to_string());
            }
        }
        bar.inc(chunk.len() as u64);
        bar.set_message(format!(
            "accepted {} dup {} rejected {}",
            report.accepted, report.duplicates, report.rejected
        ));
    }
    bar.finish();
    Ok(report)
}

/// Sends one batch; retries (bounded) on 503/429 and connection errors.
async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    body: &Value,
    report: &mut ReplayReport,
) -> Result<BatchAnswer> {
    const ATTEMPTS: usize = 30;
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            report.retries += 1;
            let backoff = Duration::from_millis((50 * (1 << attempt.min(6))) as u64);
            tokio::time::sleep(backoff).await;
        }
        let response = match client
            .post(endpoint)
            .bearer_auth(key)
            .json(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => {
                return serde_json::from_str(&text)
                    .map_err(|e| Error::Replay(format!("bad answer {text}: {e}")));
            }
            // Every event of the batch was rejected: count them, go on.
            400 => {
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(rejected) = v.pointer("/error/rejected").and_then(Value::as_array) {
                    return Ok(BatchAnswer {
                        accepted: 0,
                        duplicates: 0,
                        rejected: rejected.clone(),
                    });
                }
                return Err(Error::Replay(format!("server answered 400: {text}")));
            }
            429 | 503 => last_error = format!("server answered {status}: {text}"),
            _ => return Err(Error::Replay(format!("server answered {status}: {text}"))),
        }
    }
    Err(Error::Replay(format!(
        "gave up after {ATTEMPTS} attempts: {last_error}"
    )))
}

#[cfg(test)]
mod tests {
    use super::Speed;

    #[test]
    fn speeds() {
        assert_eq!("max".parse(), Ok(Speed::Max));
        assert_eq!("60x".parse(), Ok(Speed::Factor(60.0)));
        assert_eq!("2.5".parse(), Ok(Speed::Factor(2.5)));
        assert!("0x".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
    }
}
