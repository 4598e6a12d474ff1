//! Notifications: users and their preferences, the in-app inbox, and
//! durable delivery to the live push (`notifications:<user>`), webhooks
//! and email.
//!
//! [`Notifier::send`] validates a notification, decides per recipient and
//! channel what happens (deliver, suppress by preference, defer for quiet
//! or business hours, collect for the digest) and writes the message, the
//! inbox rows and every delivery in one SQLite transaction (the outbox)
//! before it answers. [`Notifier::run`] then performs due deliveries:
//!
//! - `websocket`: published on the user's hub channel (always succeeds);
//! - `webhook`: POST, 2xx = delivered; anything else is retried;
//! - `email`: one SMTP conversation; digest rows of one user go as one
//!   email.
//!
//! Retries back off exponentially (`retry_base` × 2^(attempt-1), capped at
//! `retry_max`, ±20% jitter); after `max_attempts` the delivery is
//! `failed` (the dead letter) with the last reason. The clock is injected
//! ([`beacon_ingest::Clock`]), so tests drive retry timing exactly.
//!
//! The tables are in the metadata database ([`crate::db`], typed access in
//! [`store`]). The SQL table [`DELIVERIES_TABLE`] is a system table of the
//! engine ([`beacon_engine::system_tables`]) that reads them when queried.
//! This module knows nothing of alerts; [`crate::alerts`] sends through
//! [`Notifier`].

pub mod email;
pub mod prefs;
pub mod store;
pub mod webhook;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use beacon_engine::Engine;
use beacon_ingest::Clock;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Hub;
use crate::db::{DbError, MetaDb};
use prefs::{Digest, Preferences};
use store::{Inserted, NewDelivery, NotifyDb};
use webhook::{Flavour, Secret};

/// Errors of the notification and alert APIs.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Bad input (400).
    #[error("{0}")]
    Invalid(String),
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// A query failed to plan or run.
    #[error(transparent)]
    Engine(#[from] beacon_engine::Error),
    /// The metadata database failed (500).
    #[error(transparent)]
    Database(#[from] DbError),
    /// A value could not be encoded as JSON for storage (500).
    #[error("encoding {what} as JSON")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The webhook HTTP client could not be built (500, at startup).
    #[error("building the webhook HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

impl NotifyError {
    /// A 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

/// Delivery channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The persisted in-app inbox.
    Inbox,
    /// The live push on `notifications:<user>`.
    Websocket,
    /// The workspace's webhook endpoints.
    Webhook,
    /// The user's email address.
    Email,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 4] = [
        Channel::Inbox,
        Channel::Websocket,
        Channel::Webhook,
        Channel::Email,
    ];

    /// Name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Websocket => "websocket",
            Self::Webhook => "webhook",
            Self::Email => "email",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for its (next) attempt.
    Queued,
    /// Held back by quiet or business hours until `next_attempt_us`.
    Deferred,
    /// Waiting for the user's daily digest.
    Digest,
    /// An attempt is in progress.
    Sending,
    /// Done.
    Delivered,
    /// Gave up (dead letter); `reason` says why.
    Failed,
    /// Not sent on purpose (preference, silence, no address, ...).
    Suppressed,
}

impl Status {
    /// Name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Deferred => "deferred",
            Self::Digest => "digest",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Suppressed => "suppressed",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Deferred,
            Self::Digest,
            Self::Sending,
            Self::Delivered,
            Self::Failed,
            Self::Suppressed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Severities; `critical` bypasses quiet hours, business hours and digests.
pub const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `ntf_...`.
    pub id: String,
    /// Workspace.
    pub tenant: String,
    /// Category (preference key), e.g. `alert`, `billing`.
    pub category: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Structured data.
    pub data: Value,
    /// User ids.
    pub recipients: Vec<String>,
    /// Creation, µs.
    pub created_at_us: i64,
}

/// A workspace's email branding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// Name in the header and footer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Header colour (`#rrggbb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Logo (https URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// Footer line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// Sender display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_from_name: Option<String>,
}

impl Branding {
    /// Checks lengths and the colour.
    pub fn validate(&self) -> Result<(), NotifyError> {
        for (name, v) in [
            ("name", &self.name),
            ("logo_url", &self.logo_url),
            ("footer", &self.footer),
            ("email_from_name", &self.email_from_name),
        ] {
            if v.as_ref().is_some_and(|v| v.len() > 500) {
                return Err(NotifyError::invalid(format!(
                    "branding.{name} is longer than 500 bytes"
                )));
            }
        }
        if let Some(c) = &self.color
            && !(c.len() == 7
                && c.starts_with('#')
                && c[1..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(NotifyError::invalid(format!(
                "branding.color {c:?} is not #rrggbb"
            )));
        }
        if let Some(u) = &self.logo_url
            && !u.starts_with("https://")
        {
            return Err(NotifyError::invalid(
                "branding.logo_url must be an https URL",
            ));
        }
        if let Some(n) = &self.email_from_name
            && n.chars()
                .any(|c| c.is_control() || c == '<' || c == '>' || c == '"')
        {
            return Err(NotifyError::invalid(
                "branding.email_from_name may not hold control characters, quotes or angle brackets",
            ));
        }
        Ok(())
    }
}

/// A user of a workspace who receives notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Id chosen by the workspace (`[A-Za-z0-9_.@-]`, ≤ 128).
    pub id: String,
    /// Email address.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// What the user may do in the workspace.
    pub role: beacon_ingest::UserRole,
    /// Preferences.
    pub preferences: Preferences,
    /// Creation, µs.
    pub created_at_us: i64,
    /// Whether the user can sign in with a password (set by the user
    /// through an invitation or reset link, or by the CLI).
    #[serde(default)]
    pub has_password: bool,
    /// Whether sign-in asks for a TOTP code.
    #[serde(default)]
    pub totp_enabled: bool,
    /// Last successful sign-in, µs.
    #[serde(default)]
    pub last_login_at_us: Option<i64>,
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `ep_...`.
    pub id: String,
    /// Where to POST.
    pub url: String,
    /// Payload format.
    pub flavour: Flavour,
    /// Categories it receives (empty: all).
    pub categories: Vec<String>,
    /// Signing secrets (the newest last).
    pub secrets: Vec<Secret>,
    /// Whether it receives anything.
    pub enabled: bool,
    /// Creation, µs.
    pub created_at_us: i64,
}

/// One delivery of a message on one channel to one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// `msg_...`: also the `webhook-id` and the email's Message-ID.
    pub id: String,
    /// Workspace.
    #[serde(skip)]
    pub tenant: String,
    /// The notification.
    pub message_id: String,
    /// Channel.
    pub channel: Channel,
    /// User id (inbox, websocket, email) or endpoint id (webhook).
    pub target: String,
    /// Status.
    pub status: Status,
    /// Why (the last error, the suppression or deferral reason).
    pub reason: Option<String>,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_us: i64,
    /// Creation.
    pub created_at_us: i64,
    /// Last change.
    pub updated_at_us: i64,
    /// When delivered.
    pub delivered_at_us: Option<i64>,
}

/// An inbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxItem {
    /// Notification id.
    pub id: String,
    /// Category.
    pub category: String,
    /// Severity.
    pub severity: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Data.
    pub data: Value,
    /// Arrival, µs.
    pub created_at_us: i64,
    /// Read, µs.
    pub read_at_us: Option<i64>,
    /// Archived, µs.
    pub archived_at_us: Option<i64>,
}

/// What to do with inbox rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxAction {
    /// Mark read.
    Read,
    /// Mark unread.
    Unread,
    /// Archive.
    Archive,
    /// Unarchive.
    Unarchive,
}

/// `POST /v1/notifications`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// User ids (each must exist).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Category (preference key).
    pub category: String,
    /// Severity (default `info`).
    #[serde(default)]
    pub severity: Option<String>,
    /// Title (1..=200 bytes).
    pub title: String,
    /// Body (≤ 10 000 bytes).
    #[serde(default)]
    pub body: String,
    /// Structured data (an object, ≤ 64 KiB as JSON).
    #[serde(default)]
    pub data: Option<Value>,
    /// Channels (default: all).
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Repeating a key returns the first notification and sends nothing.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Email addresses of people who are not users (a report's
    /// accountant): sent on the email channel as they are, without
    /// preferences (the sender chose them), when the email channel is
    /// among `channels`.
    #[serde(default)]
    pub emails: Vec<String>,
    /// The webhook endpoints (ids) this notification goes to, instead of
    /// every enabled endpoint subscribed to its category (each must exist
    /// and be enabled). `Some([])`: no webhook endpoint.
    #[serde(default)]
    pub webhooks: Option<Vec<String>>,
}

/// Most direct email addresses of one notification.
pub const MAX_DIRECT_EMAILS: usize = 100;

/// The delivery target of an email sent to an address rather than a user.
pub const MAILTO: &str = "mailto:";

/// Whether `s` is an email address one can send to: one `@` with text on
/// both sides, a dot in the domain, no spaces or control characters, at
/// most 254 bytes. (The SMTP server is the judge of the rest.)
pub fn is_email_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"'))
}

/// What [`Notifier::send`] answers.
#[derive(Debug, Clone, Serialize)]
pub struct SendReceipt {
    /// The notification.
    pub id: String,
    /// True when the idempotency key was seen before (nothing sent).
    pub duplicate: bool,
    /// Its deliveries.
    pub deliveries: Vec<Delivery>,
}

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Attempts per delivery before it is `failed`.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest delay between attempts.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How often the worker looks for due deliveries (it is also woken
    /// by every new notification).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Longest one webhook request may take.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How long a rotated-out webhook secret keeps signing.
    #[serde(with = "humantime_serde")]
    pub secret_grace: Duration,
    /// The SMTP server.
    pub smtp: email::SmtpConfig,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base: Duration::from_secs(15),
            retry_max: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            webhook_timeout: Duration::from_secs(10),
            concurrency: 16,
            secret_grace: Duration::from_secs(24 * 3600),
            smtp: email::SmtpConfig::default(),
        }
    }
}

impl NotifyConfig {
    /// Checks the limits (at startup).
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 || self.max_attempts > 50 {
            return Err("notify.max_attempts must be 1..=50".into());
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            return Err("notify.retry_base must be > 0 and <= notify.retry_max".into());
        }
        if self.concurrency == 0 || self.poll_interval.is_zero() || self.webhook_timeout.is_zero() {
            return Err("notify.concurrency, poll_interval and webhook_timeout must be > 0".into());
        }
        if !self.smtp.host.is_empty() {
            self.smtp
                .from
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("notify.smtp.from {:?}: {e}", self.smtp.from))?;
        }
        Ok(())
    }

    /// The delay after failed attempt number `attempt` (1-based), before
    /// jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// Ids: a prefix and a time-ordered UUID.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// RFC 3339 of µs.
pub fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Validates an id chosen by a workspace (users).
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// Counter: delivery attempts by channel and outcome (`delivered`,
/// `failed_attempt`).
pub const DELIVERIES_METRIC: &str = "beacon_notify_delivery_attempts_total";

/// Name of the SQL table of deliveries.
pub const DELIVERIES_TABLE: &str = "notification_deliveries";

/// Schema of [`DELIVERIES_TABLE`].
pub fn deliveries_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("notification_id", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("attempts", DataType::Int64, false),
        Field::new("next_attempt_at", ts(), false),
        Field::new("created_at", ts(), false),
        Field::new("updated_at", ts(), false),
        Field::new("delivered_at", ts(), true),
    ]))
}

fn deliveries_batch(rows: &[Delivery]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut id = StringBuilder::new();
    let mut msg = StringBuilder::new();
    let mut channel = StringBuilder::new();
    let mut target = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut attempts = Int64Builder::new();
    let mut ts: Vec<TimestampMicrosecondBuilder> = (0..4)
        .map(|_| TimestampMicrosecondBuilder::new().with_timezone("UTC"))
        .collect();
    for d in rows {
        id.append_value(&d.id);
        msg.append_value(&d.message_id);
        channel.append_value(d.channel.as_str());
        target.append_value(&d.target);
        status.append_value(d.status.as_str());
        reason.append_option(d.reason.as_deref());
        attempts.append_value(d.attempts);
        ts[0].append_value(d.next_attempt_us);
        ts[1].append_value(d.created_at_us);
        ts[2].append_value(d.updated_at_us);
        ts[3].append_option(d.delivered_at_us);
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(msg.finish()),
        Arc::new(channel.finish()),
        Arc::new(target.finish()),
        Arc::new(status.finish()),
        Arc::new(reason.finish()),
        Arc::new(attempts.finish()),
    ];
    cols.extend(ts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(deliveries_schema(), cols)
}

/// Rows of `notification_deliveries` a workspace sees in SQL (the newest).
const SQL_ROWS: usize = 50_000;

/// [`DELIVERIES_TABLE`]: a workspace's newest [`SQL_ROWS`] deliveries,
/// newest first, read from the metadata database when a query scans it.
#[derive(Debug)]
struct DeliveriesTable {
    db: NotifyDb,
}

impl beacon_engine::system_tables::SystemTable for DeliveriesTable {
    fn schema(&self) -> SchemaRef {
        deliveries_schema()
    }

    fn scan(&self, tenant: &str) -> datafusion::error::Result<RecordBatch> {
        let rows = self
            .db
            .deliveries(tenant, None, None, SQL_ROWS)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(deliveries_batch(&rows)?)
    }
}

/// The notification service (cheap to clone).
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    db: NotifyDb,
    hub: Hub,
    engine: Engine,
    config: NotifyConfig,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    templates: minijinja::Environment<'static>,
    wake: Notify,
    /// Where attached report files are (`<data dir>/reports`).
    reports_dir: std::path::PathBuf,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier(..)")
    }
}

impl Notifier {
    /// Opens the notification tables in `data_dir`.
    pub fn open(
        data_dir: &std::path::Path,
        hub: Hub,
        engine: Engine,
        config: NotifyConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, NotifyError> {
        let db = NotifyDb::new(Arc::new(MetaDb::open(data_dir)?))?;
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Beacon-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifyError::HttpClient)?;
        engine.register_system_table(
            DELIVERIES_TABLE,
            Arc::new(DeliveriesTable { db: db.clone() }),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                hub,
                engine,
                config,
                clock,
                http,
                templates: email::templates(),
                wake: Notify::new(),
                reports_dir: data_dir.join("reports"),
            }),
        })
    }

    /// The notification tables (the alert engine keeps its own in the
    /// same database: [`NotifyDb::metadata`]).
    pub fn db(&self) -> &NotifyDb {
        &self.inner.db
    }

    /// The clock.
    pub fn now_us(&self) -> i64 {
        self.inner.clock.now_us()
    }

    /// The configuration.
    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// A workspace's business time zone (for quiet hours and digests),
    /// from its validated calendar.
    pub fn timezone(&self, tenant: &str) -> chrono_tz::Tz {
        self.inner.engine.calendar(tenant).tz
    }

    // Users and settings.

    /// Creates or replaces a user after validation.
    pub fn put_user(&self, tenant: &str, mut user: User) -> Result<User, NotifyError> {
        if !valid_id(&user.id) {
            return Err(NotifyError::invalid(
                "user id must be 1-128 characters of A-Z a-z 0-9 _ - . @",
            ));
        }
        if let Some(e) = &user.email
            && e.parse::<lettre::Address>().is_err()
        {
            return Err(NotifyError::invalid(format!(
                "{e:?} is not an email address"
            )));
        }
        user.preferences.validate()?;
        if let Some(existing) = self.inner.db.user(tenant, &user.id)? {
            user.created_at_us = existing.created_at_us;
        } else {
            user.created_at_us = self.now_us();
        }
        self.inner.db.put_user(tenant, &user)?;
        Ok(user)
    }

    // Endpoints.

    /// Adds a webhook endpoint with a fresh secret.
    pub fn create_endpoint(
        &self,
        tenant: &str,
        url: &str,
        flavour: Flavour,
        categories: Vec<String>,
    ) -> Result<Endpoint, NotifyError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| NotifyError::invalid(format!("url {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(NotifyError::invalid(
                "url must be an http or https URL with a host",
            ));
        }
        if url.len() > 2000 || categories.len() > 100 {
            return Err(NotifyError::invalid(
                "url is longer than 2000 bytes or more than 100 categories",
            ));
        }
        let now = self.now_us();
        let endpoint = Endpoint {
            id: new_id("ep"),
            url: url.to_owned(),
            flavour,
            categories,
            secrets: vec![Secret {
                secret: webhook::new_secret(),
                created_at_us: now,
                expires_at_us: None,
            }],
            enabled: true,
            created_at_us: now,
        };
        self.inner.db.put_endpoint(tenant, &endpoint)?;
        Ok(endpoint)
    }

    /// Rotates an endpoint's secret: a new one signs from now on, the old
    /// ones keep signing for `secret_grace` (both signatures are sent).
    pub fn rotate_secret(&self, tenant: &str, id: &str) -> Result<Endpoint, NotifyError> {
        let mut e = self
            .inner
            .db
            .endpoint(tenant, id)?
            .ok_or_else(|| NotifyError::NotFound(format!("no webhook endpoint {id:?}")))?;
        let now = self.now_us();
        let grace = now + self.inner.config.secret_grace.as_micros() as i64;
        e.secrets
            .retain(|s| s.expires_at_us.is_none_or(|x| x > now));
        for s in &mut e.secrets {
            s.expires_at_us = Some(s.expires_at_us.map_or(grace, |x| x.min(grace)));
        }
        e.secrets.push(Secret {
            secret: webhook::new_secret(),
            created_at_us: now,
            expires_at_us: None,
        });
        self.inner.db.put_endpoint(tenant, &e)?;
        Ok(e)
    }

    // Sending.

    /// Validates and stores a notification with all its deliveries, then
    /// wakes the worker.
    pub fn send(&self, tenant: &str, request: SendRequest) -> Result<SendReceipt, NotifyError> {
        let severity = request.severity.clone().unwrap_or_else(|| "info".into());
        if !SEVERITIES.contains(&severity.as_str()) {
            return Err(NotifyError::invalid(format!(
                "severity must be one of {}",
                SEVERITIES.join(", ")
            )));
        }
        if request.category.is_empty()
            || request.category.len() > 64
            || !request
                .category
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(NotifyError::invalid(
                "category must be 1-64 characters of a-z 0-9 _ - .",
            ));
        }
        if request.title.trim().is_empty() || request.title.len() > 200 {
            return Err(NotifyError::invalid("title must be 1-200 bytes"));
        }
        if request.body.len() > 10_000 {
            return Err(NotifyError::invalid("body is longer than 10000 bytes"));
        }
        let data = request.data.clone().unwrap_or_else(|| json!({}));
        if !data.is_object() {
            return Err(NotifyError::invalid("data must be a JSON object"));
        }
        if serde_json::to_string(&data).map_or(0, |s| s.len()) > 65_536 {
            return Err(NotifyError::invalid("data is larger than 64 KiB"));
        }
        if request
            .idempotency_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 200)
        {
            return Err(NotifyError::invalid("idempotency_key must be 1-200 bytes"));
        }
        let channels: Vec<Channel> = match &request.channels {
            None => Channel::ALL.to_vec(),
            Some(list) if list.is_empty() => {
                return Err(NotifyError::invalid("channels may not be empty"));
            }
            Some(list) => list
                .iter()
                .map(|c| {
                    Channel::parse(c).ok_or_else(|| {
                        NotifyError::invalid(format!(
                            "unknown channel {c:?}; use inbox, websocket, webhook or email"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if request.recipients.len() > 1000 {
            return Err(NotifyError::invalid("at most 1000 recipients"));
        }
        let mut users = Vec::new();
        let mut seen = HashSet::new();
        for id in &request.recipients {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let user = self.inner.db.user(tenant, id)?.ok_or_else(|| {
                NotifyError::invalid(format!(
                    "unknown recipient {id:?}: create the user first (PUT /v1/users/{{id}})"
                ))
            })?;
            users.push(user);
        }
        if request.emails.len() > MAX_DIRECT_EMAILS {
            return Err(NotifyError::invalid(format!(
                "at most {MAX_DIRECT_EMAILS} email addresses"
            )));
        }
        if let Some(bad) = request.emails.iter().find(|e| !is_email_address(e)) {
            return Err(NotifyError::invalid(format!(
                "{bad:?} is not an email address"
            )));
        }
        let named_endpoints = match &request.webhooks {
            None => None,
            Some(ids) => {
                let mut found = Vec::with_capacity(ids.len());
                for id in ids {
                    match self.inner.db.endpoint(tenant, id)? {
                        Some(e) if e.enabled => found.push(e.id),
                        Some(_) => {
                            return Err(NotifyError::invalid(format!(
                                "webhook endpoint {id:?} is disabled"
                            )));
                        }
                        None => {
                            return Err(NotifyError::invalid(format!(
                                "unknown webhook endpoint {id:?}"
                            )));
                        }
                    }
                }
                Some(found)
            }
        };
        let user_channels = channels.iter().any(|c| *c != Channel::Webhook);
        let direct = !request.emails.is_empty() && channels.contains(&Channel::Email);
        if users.is_empty() && !direct && user_channels && !channels.contains(&Channel::Webhook) {
            return Err(NotifyError::invalid(
                "no recipients: give user ids or email addresses, or send on the webhook channel only",
            ));
        }
        let now = self.now_us();
        let message = Message {
            id: new_id("ntf"),
            tenant: tenant.to_owned(),
            category: request.category.clone(),
            severity: severity.clone(),
            title: request.title.clone(),
            body: request.body.clone(),
            data,
            recipients: users.iter().map(|u| u.id.clone()).collect(),
            created_at_us: now,
        };
        let critical = severity == "critical";
        let zone = self.timezone(tenant);
        let now_dt = chrono::DateTime::from_timestamp_micros(now).unwrap_or_default();
        let mut inbox = Vec::new();
        let mut deliveries = Vec::new();
        let mut add =
            |channel: Channel, target: &str, status: Status, reason: Option<&str>, at: i64| {
                deliveries.push(NewDelivery {
                    id: new_id("msg"),
                    channel,
                    target: target.to_owned(),
                    status,
                    reason: reason.map(str::to_owned),
                    next_attempt_us: at,
                });
            };
        for user in &users {
            for &channel in channels.iter().filter(|c| **c != Channel::Webhook) {
                if !user.preferences.allows(&message.category, channel) {
                    add(
                        channel,
                        &user.id,
                        Status::Suppressed,
                        Some("preference"),
                        now,
                    );
                    continue;
                }
                match channel {
                    Channel::Inbox => {
                        inbox.push(user.id.clone());
                        add(channel, &user.id, Status::Delivered, None, now);
                    }
                    Channel::Websocket => add(channel, &user.id, Status::Queued, None, now),
                    Channel::Email => {
                        if user.email.is_none() {
                            add(
                                channel,
                                &user.id,
                                Status::Suppressed,
                                Some("no email address"),
                                now,
                            );
                        } else if self.inner.config.smtp.host.is_empty() {
                            add(
                                channel,
                                &user.id,
                                Status::Suppressed,
                                Some("email_not_configured"),
                                now,
                            );
                        } else if critical {
                            add(channel, &user.id, Status::Queued, None, now);
                        } else if user.preferences.digest == Digest::Daily {
                            let at = user
                                .preferences
                                .next_digest(now_dt, zone)
                                .timestamp_micros();
                            add(channel, &user.id, Status::Digest, Some("daily digest"), at);
                        } else {
                            let at = user
                                .preferences
                                .next_allowed(now_dt, zone)
                                .timestamp_micros();
                            if at > now {
                                let why = if user.preferences.quiet_hours.as_ref().is_some() {
                                    "quiet hours"
                                } else {
                                    "outside business hours"
                                };
                                add(channel, &user.id, Status::Deferred, Some(why), at);
                            } else {
                                add(channel, &user.id, Status::Queued, None, now);
                            }
                        }
                    }
                    Channel::Webhook => {}
                }
            }
        }
        if channels.contains(&Channel::Email) {
            let mut seen = HashSet::new();
            for address in &request.emails {
                if !seen.insert(address.to_ascii_lowercase()) {
                    continue;
                }
                let target = format!("{MAILTO}{address}");
                if self.inner.config.smtp.host.is_empty() {
                    add(
                        Channel::Email,
                        &target,
                        Status::Suppressed,
                        Some("email_not_configured"),
                        now,
                    );
                } else {
                    add(Channel::Email, &target, Status::Queued, None, now);
                }
            }
        }
        if channels.contains(&Channel::Webhook) {
            match named_endpoints {
                Some(ids) => {
                    for id in ids {
                        add(Channel::Webhook, &id, Status::Queued, None, now);
                    }
                }
                None => {
                    for e in self.inner.db.endpoints(tenant)? {
                        if e.enabled
                            && (e.categories.is_empty()
                                || e.categories.contains(&message.category))
                        {
                            add(Channel::Webhook, &e.id, Status::Queued, None, now);
                        }
                    }
                }
            }
        }
        let receipt = match self.inner.db.insert_message(
            &message,
            request.idempotency_key.as_deref(),
            &inbox,
            &deliveries,
        )? {
            Inserted::New => {
                // Inbox rows are delivered on insert: tell each user's pages
                // their new unread count (whether or not the notification
                // also goes out on the `websocket` channel).
                for user in &inbox {
                    let unread = self.inner.db.unread(tenant, user)?;
                    let _ = self.inner.hub.publish(
                        tenant,
                        &format!("notifications:{user}"),
                        "inbox",
                        &json!({"unread": unread, "action": "new", "ids": [&message.id]}),
                        None,
                    );
                }
                SendReceipt {
                deliveries: self
                    .inner
                    .db
                    .deliveries(tenant, Some(&message.id), None, 10_000)?,
                id: message.id,
                duplicate: false,
            }
            }
            Inserted::Duplicate(id) => SendReceipt {
                deliveries: self.inner.db.deliveries(tenant, Some(&id), None, 10_000)?,
                id,
                duplicate: true,
            },
        };
        self.inner.wake.notify_one();
        Ok(receipt)
    }

    /// Marks inbox rows and pushes the new unread count to the user.
    pub fn mark(
        &self,
        tenant: &str,
        user: &str,
        ids: &[String],
        action: InboxAction,
    ) -> Result<(usize, u64), NotifyError> {
        let changed = self
            .inner
            .db
            .mark(tenant, user, ids, action, self.now_us())?;
        let unread = self.inner.db.unread(tenant, user)?;
        if changed > 0 {
            let _ = self.inner.hub.publish(
                tenant,
                &format!("notifications:{user}"),
                "inbox",
                &json!({"unread": unread, "action": action_name(action), "ids": ids}),
                None,
            );
        }
        Ok((changed, unread))
    }

    // The worker.

    /// Performs due deliveries until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            if stop.is_cancelled() {
                break;
            }
            match self.process_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %error_chain(&e), "Delivery round failed."),
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
    }

    /// Claims and performs every delivery due at the clock's now (up to
    /// 256 per call); returns how many were attempted.
    pub async fn process_due(&self) -> Result<usize, NotifyError> {
        let now = self.now_us();
        let due = self.inner.db.claim_due(now, 256)?;
        if due.is_empty() {
            return Ok(0);
        }
        let n = due.len();
        // Digest rows of one user and channel go out as one email.
        let mut digests: BTreeMap<(String, String), Vec<(Delivery, Message)>> = BTreeMap::new();
        let mut single = Vec::new();
        for (d, m) in due {
            if d.reason.as_deref() == Some("digest")
                && d.channel == Channel::Email
                && d.attempts == 1
            {
                digests
                    .entry((d.tenant.clone(), d.target.clone()))
                    .or_default()
                    .push((d, m));
            } else {
                single.push(vec![(d, m)]);
            }
        }
        single.extend(digests.into_values());
        let this = self.clone();
        futures::stream::iter(single)
            .for_each_concurrent(self.inner.config.concurrency, move |group| {
                let this = this.clone();
                async move { this.perform(group).await }
            })
            .await;
        Ok(n)
    }

    async fn perform(&self, group: Vec<(Delivery, Message)>) {
        let Some((d, m)) = group.first().cloned() else {
            return;
        };
        let outcome = match d.channel {
            Channel::Inbox => Ok(()),
            Channel::Websocket => {
                let payload = json!({
                    "id": m.id, "category": m.category, "severity": m.severity, "title": m.title,
                    "body": m.body, "data": m.data, "created_at": rfc3339(m.created_at_us),
                    "unread": self.inner.db.unread(&d.tenant, &d.target).unwrap_or(0),
                });
                self.inner
                    .hub
                    .publish(
                        &d.tenant,
                        &format!("notifications:{}", d.target),
                        "notification",
                        &payload,
                        Some(m.category.clone()),
                    )
                    .map(|_| ())
                    .map_err(|e| (false, e.to_string()))
            }
            Channel::Webhook => self.send_webhook(&d, &m).await,
            Channel::Email => self.send_email(&d, &group).await,
        };
        let now = self.now_us();
        let outcome_name = if outcome.is_ok() {
            "delivered"
        } else {
            "failed_attempt"
        };
        metrics::counter!(DELIVERIES_METRIC, "channel" => d.channel.as_str(), "outcome" => outcome_name).increment(group.len() as u64);
        for (d, _) in &group {
            let result = match &outcome {
                Ok(()) => self.inner.db.finish(
                    &d.id,
                    Status::Delivered,
                    d.reason.as_deref().filter(|r| *r == "digest"),
                    now,
                    now,
                ),
                Err((permanent, reason)) => {
                    let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
                    if *permanent || attempts >= self.inner.config.max_attempts {
                        let why = format!("{reason} (after {attempts} attempts)");
                        tracing::warn!(delivery = %d.id, channel = d.channel.as_str(), reason = %why, "Delivery failed for good.");
                        self.inner
                            .db
                            .finish(&d.id, Status::Failed, Some(&why), now, now)
                    } else {
                        let delay = self.inner.config.backoff(attempts).as_secs_f64()
                            * (0.8 + 0.4 * rand::random::<f64>());
                        let next = now + (delay * 1e6) as i64;
                        self.inner
                            .db
                            .finish(&d.id, Status::Queued, Some(reason), next, now)
                    }
                }
            };
            if let Err(e) = result {
                tracing::error!(error = %error_chain(&e), delivery = %d.id, "Recording a delivery outcome failed.");
            }
        }
    }

    /// Err((permanent, reason)).
    async fn send_webhook(&self, d: &Delivery, m: &Message) -> Result<(), (bool, String)> {
        let endpoint = match self.inner.db.endpoint(&d.tenant, &d.target) {
            Ok(Some(e)) => e,
            Ok(None) => return Err((true, "endpoint deleted".into())),
            Err(e) => return Err((false, error_chain(&e))),
        };
        if !endpoint.enabled {
            return Err((true, "endpoint disabled".into()));
        }
        let body =
            serde_json::to_vec(&webhook::body(endpoint.flavour, m, &d.id)).unwrap_or_default();
        let now = self.now_us();
        let mut request = self.inner.http.post(&endpoint.url);
        match endpoint.flavour {
            Flavour::Standard => {
                let ts = now / 1_000_000;
                request = request
                    .header("content-type", "application/cloudevents+json")
                    .header("webhook-id", &d.id)
                    .header("webhook-timestamp", ts.to_string())
                    .header(
                        "webhook-signature",
                        webhook::sign(&endpoint.secrets, &d.id, ts, &body, now),
                    );
            }
            Flavour::Slack => request = request.header("content-type", "application/json"),
        }
        match request.body(body).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err((false, format!("HTTP {}", r.status().as_u16()))),
            Err(e) => Err((false, format!("request failed: {}", error_chain(&e)))),
        }
    }

    async fn send_email(
        &self,
        d: &Delivery,
        group: &[(Delivery, Message)],
    ) -> Result<(), (bool, String)> {
        let address = if let Some(address) = d.target.strip_prefix(MAILTO) {
            address.to_owned()
        } else {
            let user = match self.inner.db.user(&d.tenant, &d.target) {
                Ok(Some(u)) => u,
                Ok(None) => return Err((true, "user deleted".into())),
                Err(e) => return Err((false, error_chain(&e))),
            };
            let Some(address) = user.email.clone() else {
                return Err((true, "no email address".into()));
            };
            address
        };
        let brand = self.inner.db.branding(&d.tenant).unwrap_or_default();
        let rendered = if group.len() > 1 || d.reason.as_deref() == Some("digest") {
            let head = Message {
                title: format!(
                    "Your daily digest: {} notification{}",
                    group.len(),
                    if group.len() == 1 { "" } else { "s" }
                ),
                body: String::new(),
                category: "digest".into(),
                severity: "info".into(),
                ..group[0].1.clone()
            };
            let items: Vec<Message> = group.iter().map(|(_, m)| m.clone()).collect();
            email::render(&self.inner.templates, &brand, &head, &items)
        } else {
            email::render(&self.inner.templates, &brand, &group[0].1, &[])
        }
        .map_err(|e| (true, e))?;
        // A single notification may carry one report file (a digest links
        // to its items instead).
        let mut rendered = rendered;
        if group.len() == 1 && d.reason.as_deref() != Some("digest") {
            rendered.attachments =
                email::attachment(&self.inner.reports_dir, &d.tenant, &group[0].1.data)
                    .into_iter()
                    .collect();
        }
        let config = self.inner.config.smtp.clone();
        let id = d.id.clone();
        tokio::task::spawn_blocking(move || email::send(&config, &brand, &address, &id, &rendered))
            .await
            .map_err(|e| (false, format!("email task: {e}")))?
            .map_err(|e| (false, e))
    }
}

fn action_name(a: InboxAction) -> &'static str {
    match a {
        InboxAction::Read => "read",
        InboxAction::Unread => "unread",
        InboxAction::Archive => "archive",
        InboxAction::Unarchive => "unarchive",
    }
}

/// `e` and its sources, joined with `: ` (for logs and delivery reasons).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
