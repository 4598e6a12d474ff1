//! The typed configuration tree: `default.toml`, then an optional file, then
//! `BEACON_*` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use beacon_engine::EngineConfig;
use beacon_ingest::IngestConfig;
use beacon_realtime::RealtimeConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The checked-in defaults.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// Everything Beacon can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Logging.
    pub log: LogConfig,
    /// HTTP server.
    pub http: HttpConfig,
    /// Ingest and storage.
    pub ingest: IngestConfig,
    /// Queries.
    pub engine: EngineConfig,
    /// The WebSocket/SSE hub.
    pub realtime: RealtimeConfig,
    /// PostgreSQL wire protocol and Arrow Flight SQL listeners.
    pub sql: SqlConfig,
    /// Model refits.
    pub models: ModelsConfig,
    /// Notification delivery (retries, SMTP).
    pub notify: beacon_realtime::notify::NotifyConfig,
    /// Alert rule evaluation.
    pub alerts: beacon_realtime::alerts::AlertsConfig,
    /// The demo workspace of `beacon serve --demo`.
    pub demo: DemoConfig,
    /// Sign-in, sessions, audit log, rate limits.
    pub access: AccessConfig,
    /// TLS on every listener.
    pub tls: crate::tls::TlsConfig,
}

/// People and access (`[access]`; `api/src/access`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// A session ends after this long without a request.
    #[serde(with = "humantime_serde")]
    pub session_idle: std::time::Duration,
    /// A session ends this long after sign-in, however active.
    #[serde(with = "humantime_serde")]
    pub session_absolute: std::time::Duration,
    /// Session cookies are `Secure` even without TLS on this listener
    /// (behind a TLS-terminating proxy).
    pub secure_cookies: bool,
    /// Take the client address from `X-Forwarded-For` (behind a proxy).
    pub trust_forwarded_for: bool,
    /// How long an invitation link works.
    #[serde(with = "humantime_serde")]
    pub invitation_ttl: std::time::Duration,
    /// How long a password reset link works.
    #[serde(with = "humantime_serde")]
    pub reset_ttl: std::time::Duration,
    /// The address people open Beacon at, for links in emails ("": the
    /// listen address).
    pub public_url: String,
    /// How long audit rows are kept.
    #[serde(with = "humantime_serde")]
    pub audit_retention: std::time::Duration,
    /// Failed sign-ins (per account and address) before sign-in slows
    /// down.
    pub login_free_failures: u32,
    /// Longest wait after failed sign-ins.
    #[serde(with = "humantime_serde")]
    pub login_max_backoff: std::time::Duration,
    /// Requests per minute per caller.
    pub limits: crate::access::limits::LimitsConfig,
}

/// `beacon serve --demo`: a workspace filled by the built-in generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Days of history generated when the demo workspace is empty.
    pub history_days: u32,
    /// Traffic multiplier (1.0: about 60 orders and 18 bookings a day).
    pub scale: f64,
    /// Seed of the generator.
    pub seed: u64,
    /// How often live events are generated (0s: no live events).
    #[serde(with = "humantime_serde")]
    pub live_interval: std::time::Duration,
    /// Every hour gets at least this share of an average hour's traffic in
    /// live mode, so the dashboard moves at night too.
    pub live_floor: f64,
}

/// Model refits (`[models]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Cron expression (UTC) at which every trained model is retrained and
    /// every kept forecast remade on fresh data; "" disables refits.
    pub refit_schedule: String,
}

/// The analyst SQL interfaces besides HTTP (`[sql]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// PostgreSQL wire protocol address ("" disables it).
    pub pg_listen: String,
    /// Arrow Flight SQL (gRPC) address ("" disables it).
    pub flight_listen: String,
    /// PostgreSQL connections open at once; more are refused.
    pub pg_max_connections: usize,
    /// Flight SQL connections open at once; more wait.
    pub flight_max_connections: usize,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// EnvFilter directives.
    pub filter: String,
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body (after decompression).
    pub max_body_bytes: usize,
    /// Ingest requests in progress at once.
    pub max_concurrent_ingest: usize,
    /// HTTP connections (WebSockets included) open at once; more wait.
    pub max_connections: usize,
}

/// Command-line overrides.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl Config {
    /// Loads and validates the configuration, reporting every problem at once.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        // What the user set (file, environment, flags), over the defaults.
        let mut user = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            user = user.merge(Toml::file(file));
        }
        user = user
            .merge(Env::prefixed("BEACON_").split("__").ignore(&["config"]))
            .merge(Serialized::defaults(overrides));
        let figment = Figment::from(Toml::string(DEFAULT_TOML)).merge(user.clone());
        let mut config: Config = match figment.extract() {
            Ok(config) => config,
            Err(errors) => {
                let all: Vec<String> = errors.into_iter().map(|e| format!("  - {e}")).collect();
                bail!("invalid configuration:\n{}", all.join("\n"));
            }
        };
        config.follow_listen_port(|key| user.contains(key));
        let problems = config.validate();
        if !problems.is_empty() {
            bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
        }
        Ok(config)
    }

    /// With `listen` on port 0, the PostgreSQL and Flight SQL listeners
    /// the user did not set (`explicit(key)` is false) bind the same host
    /// on port 0 too: `--listen 127.0.0.1:0` moves every listener, so two
    /// servers can run side by side. Each bound address is printed.
    fn follow_listen_port(&mut self, explicit: impl Fn(&str) -> bool) {
        if self.listen.port() != 0 {
            return;
        }
        let free = SocketAddr::new(self.listen.ip(), 0).to_string();
        for (key, addr) in [
            ("sql.pg_listen", &mut self.sql.pg_listen),
            ("sql.flight_listen", &mut self.sql.flight_listen),
        ] {
            if !explicit(key) && !addr.is_empty() {
                addr.clone_from(&free);
            }
        }
    }

    /// Every problem with the settings.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.ingest.validate();
        problems.extend(self.realtime.problems());
        if !["text", "json"].contains(&self.log.format.as_str()) {
            problems.push(format!(
                "log.format must be \"text\" or \"json\", not {:?}",
                self.log.format
            ));
        }
        if self.http.max_body_bytes < 1024 {
            problems.push("http.max_body_bytes must be at least 1024".into());
        }
        if self.http.max_connections < self.realtime.max_connections {
            problems.push(format!(
                "http.max_connections ({}) must be at least realtime.max_connections ({})",
                self.http.max_connections, self.realtime.max_connections
            ));
        }
        if self.http.max_concurrent_ingest == 0 {
            problems.push("http.max_concurrent_ingest must be at least 1".into());
        }
        if self.http.max_body_bytes > beacon_ingest::wal::MAX_RECORD_BYTES / 4 {
            problems.push(format!(
                "http.max_body_bytes must be at most {} bytes",
                beacon_ingest::wal::MAX_RECORD_BYTES / 4
            ));
        }
        if !(self.demo.scale > 0.0 && self.demo.scale <= 100.0) {
            problems.push("demo.scale must be in (0, 100]".into());
        }
        if self.demo.history_days > 3660 {
            problems.push("demo.history_days must be at most 3660".into());
        }
        if let Err(e) = self.notify.validate() {
            problems.push(e);
        }
        problems.extend(self.tls.problems());
        if self.access.session_idle.is_zero() || self.access.session_absolute < self.access.session_idle {
            problems.push("access.session_idle must be > 0 and at most access.session_absolute".into());
        }
        if self.access.invitation_ttl.is_zero() || self.access.reset_ttl.is_zero() {
            problems.push("access.invitation_ttl and access.reset_ttl must be > 0".into());
        }
        if self.alerts.tick.is_zero() || self.alerts.max_rules == 0 || self.alerts.max_groups == 0 {
            problems.push("alerts.tick, alerts.max_rules and alerts.max_groups must be > 0".into());
        }
        if !self.models.refit_schedule.is_empty()
            && let Err(e) =
                <croner::Cron as std::str::FromStr>::from_str(&self.models.refit_schedule)
        {
            problems.push(format!(
                "models.refit_schedule {:?} is not a cron expression: {e}",
                self.models.refit_schedule
            ));
        }
        for (name, addr) in [
            ("sql.pg_listen", &self.sql.pg_listen),
            ("sql.flight_listen", &self.sql.flight_listen),
        ] {
            if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
                problems.push(format!(
                    "{name} must be \"\" or an address like 127.0.0.1:7432, not {addr:?}"
                ));
            }
        }
        if self.sql.pg_max_connections == 0 {
            problems.push("sql.pg_max_connections must be at least 1".into());
        }
        if self.engine.max_result_rows == 0 {
            problems.push("engine.max_result_rows must be at least 1".into());
        }
        problems
    }

    /// Settings that work but are probably unintended (logged at startup).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.ingest.warnings();
        if self.ingest.delete_grace < self.engine.query_timeout {
            warnings.push(
                "ingest.delete_grace is shorter than engine.query_timeout: a long query may miss a compacted file".into(),
            );
        }
        if self.realtime.connection_queue < self.ingest.limits.max_batch_events {
            warnings.push(format!(
                "realtime.connection_queue ({}) is below ingest.limits.max_batch_events ({}): one large batch can make every activity subscriber lag",
                self.realtime.connection_queue, self.ingest.limits.max_batch_events
            ));
        }
        warnings
    }

    /// The data directory, created if missing, as an absolute path: the
    /// engine reads Parquet files through an object store rooted at `/`, so
    /// a relative directory (the default `./beacon-data`) would be read
    /// from the wrong place.
    pub fn ensure_data_dir(&self) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create data directory {}", self.data_dir.display()))?;
        std::fs::canonicalize(&self.data_dir)
            .with_context(|| format!("cannot resolve data directory {}", self.data_dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_match_the_rust_defaults() {
        let config = Config::load(None, &Overrides::default()).expect("defaults load");
        assert_eq!(config.ingest, IngestConfig::default());
        assert_eq!(config.engine, EngineConfig::default());
        assert_eq!(config.listen.port(), 7400);
    }

    #[test]
    fn listen_on_port_zero_moves_the_sql_listeners_left_at_their_defaults() {
        let defaults = Config::load(None, &Overrides::default()).expect("load");
        assert_eq!(defaults.sql.pg_listen, "127.0.0.1:7432");
        assert_eq!(defaults.sql.flight_listen, "127.0.0.1:7433");
        let free = Overrides {
            listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let config = Config::load(None, &free).expect("load");
        assert_eq!(config.sql.pg_listen, "127.0.0.1:0");
        assert_eq!(config.sql.flight_listen, "127.0.0.1:0");
        // A listener set explicitly (here: turned off, or a fixed port) stays.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[sql]\npg_listen = \"\"\nflight_listen = \"127.0.0.1:9433\"\n",
        )
        .expect("write");
        let config = Config::load(Some(&file), &free).expect("load");
        assert_eq!(config.sql.pg_listen, "");
        assert_eq!(config.sql.flight_listen, "127.0.0.1:9433");
        // A fixed HTTP port leaves the defaults alone.
        let fixed = Overrides {
            listen: Some("127.0.0.1:8400".into()),
            ..Overrides::default()
        };
        let config = Config::load(None, &fixed).expect("load");
        assert_eq!(config.sql.pg_listen, "127.0.0.1:7432");
    }

    #[test]
    fn overrides_win_and_bad_values_are_all_reported() {
        let o = Overrides {
            data_dir: Some("/tmp/x".into()),
            listen: Some("127.0.0.1:0".into()),
        };
        let config = Config::load(None, &o).expect("load");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.listen.port(), 0);

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[log]\nformat = \"xml\"\n[http]\nmax_concurrent_ingest = 0\n[models]\nrefit_schedule = \"every tuesday\"\n",
        )
        .expect("write");
        let err = Config::load(Some(&file), &Overrides::default()).expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("log.format")
                && text.contains("max_concurrent_ingest")
                && text.contains("models.refit_schedule"),
            "{text}"
        );
    }
}
