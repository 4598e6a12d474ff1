//! `[realtime]` settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits and intervals of the hub (`[realtime]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Messages each channel keeps for clients that resume.
    pub history: usize,
    /// Messages queued per connection for the non-coalescing channels
    /// (`activity`, `alerts`, `notifications:*`); a client further behind
    /// is told it lagged and must resume.
    pub connection_queue: usize,
    /// Most open WebSocket and SSE connections.
    pub max_connections: usize,
    /// Most channels one connection subscribes to.
    pub max_subscriptions: usize,
    /// Largest client message (bytes).
    pub max_message_bytes: usize,
    /// How often the server pings; a connection silent for two intervals
    /// is closed as dead.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A connection without subscriptions for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest a single write to a client may block before the connection
    /// is closed (a stalled client).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Time a client has to authenticate after connecting.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// Live metrics are pushed at most this often per workspace.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// Live queries re-run at most this often after new data.
    #[serde(with = "humantime_serde")]
    pub query_debounce: Duration,
    /// Live queries running at once per workspace.
    pub query_concurrency: usize,
    /// Live queries per workspace.
    pub max_live_queries: usize,
    /// Longest a user session token may live.
    #[serde(with = "humantime_serde")]
    pub max_token_ttl: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            history: 1024,
            connection_queue: 8192,
            max_connections: 20_000,
            max_subscriptions: 64,
            max_message_bytes: 64 * 1024,
            heartbeat: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            metrics_interval: Duration::from_millis(250),
            query_debounce: Duration::from_millis(500),
            query_concurrency: 2,
            max_live_queries: 32,
            max_token_ttl: Duration::from_secs(7 * 86_400),
        }
    }
}

impl RealtimeConfig {
    /// Every problem with the settings, at once.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let positive = [
            ("realtime.history", self.history),
            ("realtime.connection_queue", self.connection_queue),
            ("realtime.max_connections", self.max_connections),
            ("realtime.max_subscriptions", self.max_subscriptions),
            ("realtime.query_concurrency", self.query_concurrency),
        ];
        for (name, v) in positive {
            if v == 0 {
                p.push(format!("{name} must be at least 1"));
            }
        }
        if self.max_message_bytes < 1024 {
            p.push("realtime.max_message_bytes must be at least 1024".into());
        }
        let durations = [
            ("realtime.heartbeat", self.heartbeat),
            ("realtime.write_timeout", self.write_timeout),
            ("realtime.auth_timeout", self.auth_timeout),
            ("realtime.metrics_interval", self.metrics_interval),
            ("realtime.query_debounce", self.query_debounce),
            ("realtime.idle_timeout", self.idle_timeout),
        ];
        for (name, d) in durations {
            if d.is_zero() {
                p.push(format!("{name} must be longer than zero"));
            }
        }
        p
    }
}
