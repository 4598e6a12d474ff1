//! Channels, subscriptions and fan-out.
//!
//! Every workspace has its own channels, created on first use. A channel
//! numbers its messages (`seq`, from 1 within an `epoch` that is new every
//! time the channel is created, i.e. at every server start) and keeps the
//! last `history` of them so a client can resume after a reconnect.
//!
//! Publishing never waits for a client: under the channel's lock the
//! message is appended to the history and handed to each subscriber's
//! [`Outbox`], which is bounded:
//!
//! - Coalescing channels (`metrics`, `query:<id>`) carry full states, so an
//!   outbox keeps only the latest message per such channel: a slow client
//!   skips intermediate values, never the newest.
//! - The other channels (`activity`, `alerts`, `notifications:<user>`) are
//!   never coalesced. When a client's outbox already holds
//!   `connection_queue` of their messages, the client is unsubscribed from
//!   that channel and gets a `lagged` message with the last sequence
//!   number it was sent; it resumes from there (from history, or with
//!   `history_lost` and a snapshot when it is too far behind).
//!
//! Subscribing takes the channel's lock too, so a resumed client gets the
//! missed messages and then the live ones, with no gap and no duplicate.
//!
//! Liveness (heartbeats, dead, idle and stalled connections) is measured
//! with the injected clock ([`Hub::now_ms`]; in production a
//! [`crate::MonotonicClock`]); tokio timers only pace the sweeper, so tests
//! call [`Hub::sweep`] after advancing a manual clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use beacon_ingest::Clock;
use futures::task::AtomicWaker;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::RealtimeConfig;
use crate::protocol::{Cursor, Envelope, Text, control, error_message};
use crate::{Error, Result};

/// Metric names.
pub mod metric_names {
    /// Gauge: open real-time connections.
    pub const CONNECTIONS: &str = "beacon_realtime_connections";
    /// Counter: messages published on channels.
    pub const PUBLISHED: &str = "beacon_realtime_published_total";
    /// Counter: subscriptions ended because the client lagged.
    pub const LAGGED: &str = "beacon_realtime_lagged_total";
    /// Counter: coalesced (replaced before delivery) messages.
    pub const COALESCED: &str = "beacon_realtime_coalesced_total";
}

/// The kinds of channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Live KPI tiles (coalescing).
    Metrics,
    /// Accepted business events (filterable by event name).
    Activity,
    /// Alert state changes.
    Alerts,
    /// One user's inbox.
    Notifications(String),
    /// A live SQL query (coalescing).
    Query(String),
}

/// Longest channel name.
pub const MAX_CHANNEL_NAME: usize = 200;

impl ChannelKind {
    /// Parses a channel name.
    pub fn parse(name: &str) -> Result<Self> {
        let unknown = || Error::UnknownChannel {
            channel: name.chars().take(MAX_CHANNEL_NAME).collect(),
        };
        if name.len() > MAX_CHANNEL_NAME {
            return Err(unknown());
        }
        let valid_id = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        };
        Ok(match name {
            "metrics" => Self::Metrics,
            "activity" => Self::Activity,
            "alerts" => Self::Alerts,
            _ => match name.split_once(':') {
                Some(("notifications", user)) if valid_id(user) => {
                    Self::Notifications(user.to_owned())
                }
                Some(("query", id)) if valid_id(id) => Self::Query(id.to_owned()),
                _ => return Err(unknown()),
            },
        })
    }

    /// True for channels whose messages are full states (only the latest
    /// matters to a slow client).
    pub fn coalesces(&self) -> bool {
        matches!(self, Self::Metrics | Self::Query(_))
    }
}

/// Who a connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A member of the workspace, signed in or by a key (the API has
    /// checked that it may use the real-time channels): the workspace
    /// channels, live SQL (`query:<id>`) when `sql`, and the
    /// notifications of `user` when it is a person.
    Member {
        /// The person, if any.
        user: Option<String>,
        /// May run live SQL.
        sql: bool,
    },
    /// A user session token (embedded portals): that user's inbox only.
    User(String),
    /// An embed token (portal components, TV links): `metrics`,
    /// `activity` and `alerts` when workspace-wide; with a customer, only
    /// `activity`, and only that customer's events on it.
    Embed {
        /// The customer whose events alone it receives, if any.
        customer: Option<String>,
    },
}

/// An authenticated connection owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Workspace id.
    pub tenant: String,
    /// What the credentials allow.
    pub access: Access,
}

impl Principal {
    /// Fails unless this principal may subscribe to `kind`.
    pub fn check(&self, name: &str, kind: &ChannelKind) -> Result<()> {
        let forbidden = |reason: &str| Error::Forbidden {
            channel: name.to_owned(),
            reason: reason.to_owned(),
        };
        match (&self.access, kind) {
            (Access::Member { user, .. }, ChannelKind::Notifications(target)) => {
                if user.as_deref() == Some(target.as_str()) {
                    Ok(())
                } else {
                    Err(forbidden(
                        "a user's notifications need that user's sign-in or session token",
                    ))
                }
            }
            (Access::Member { sql: false, .. }, ChannelKind::Query(_)) => Err(forbidden(
                "live SQL needs the analyst role or a key with the query scope",
            )),
            (Access::Member { .. }, _) => Ok(()),
            (Access::User(user), ChannelKind::Notifications(target)) if user == target => Ok(()),
            (Access::User(_), ChannelKind::Notifications(_)) => Err(forbidden(
                "a user token only opens that user's notifications",
            )),
            (Access::User(_), _) => Err(forbidden(
                "a user token only opens notifications:<user>; use a read key for workspace channels",
            )),
            (Access::Embed { customer: None }, ChannelKind::Metrics | ChannelKind::Activity | ChannelKind::Alerts)
            | (Access::Embed { customer: Some(_) }, ChannelKind::Activity) => Ok(()),
            (Access::Embed { customer: None }, _) => Err(forbidden(
                "an embed token opens metrics, activity and alerts only",
            )),
            (Access::Embed { customer: Some(_) }, _) => Err(forbidden(
                "a customer's embed token opens only its customer's activity",
            )),
        }
    }

    /// The customer whose events alone this principal receives.
    pub fn customer(&self) -> Option<&str> {
        match &self.access {
            Access::Embed { customer } => customer.as_deref(),
            _ => None,
        }
    }
}

/// One outgoing item of a connection.
#[derive(Debug, Clone)]
enum Item {
    Control(Text),
    Message(Arc<Envelope>),
}

#[derive(Debug, Default)]
struct OutboxState {
    /// Control messages and non-coalesced channel messages, in order.
    items: VecDeque<Item>,
    /// Channel messages among `items` (the bounded part).
    messages: usize,
    /// Latest message of each coalescing channel not yet sent.
    latest: Vec<(Arc<str>, Arc<Envelope>)>,
    /// Channels this connection is subscribed to (a few: a `Vec` is
    /// smaller than a set, and every connection has one).
    subscribed: Vec<Arc<str>>,
    closed: bool,
}

/// What the hub's sweeper ([`Hub::sweep`]) tells a connection's writer,
/// as bits of [`Outbox::take_signals`].
pub mod signal {
    /// A heartbeat round: send a WebSocket ping.
    pub const PING: u8 = 1;
    /// Nothing heard from the client for two heartbeats: close (4009).
    pub const DEAD: u8 = 2;
    /// No subscriptions for `idle_timeout`: close (4008).
    pub const IDLE: u8 = 4;
    /// A write has been blocked for `write_timeout`: drop the client.
    pub const STALLED: u8 = 8;
    /// The server is shutting down: close (1001).
    pub const SHUTDOWN: u8 = 16;
    /// The connection's workspace was deleted: close (4004).
    pub const DELETED: u8 = 32;
}

/// `idle_since` of a connection that has subscriptions.
const NOT_IDLE: u64 = u64::MAX;

/// The bounded queue between the hub and one connection's writer, and the
/// connection's liveness state that the hub-wide sweeper reads.
///
/// A connection's writer is polled, not a task with timers of its own: it
/// registers its waker here ([`Outbox::poll_ready`]) and is woken by a
/// publish or by a signal of the sweeper. That keeps the per-connection
/// state to this struct and the socket (see `ARCHITECTURE.md`).
#[derive(Debug)]
pub struct Outbox {
    id: u64,
    capacity: usize,
    state: Mutex<OutboxState>,
    waker: AtomicWaker,
    /// Bits of [`signal`] raised and not yet taken.
    signals: AtomicU8,
    /// Hub clock (ms) when the client was last heard from.
    heard: AtomicU64,
    /// Hub clock (ms) + 1 since a write has been waiting on the socket;
    /// 0 while not blocked.
    writing_since: AtomicU64,
    /// Hub clock (ms) since the connection has had no subscriptions
    /// (as seen by the sweeper), or [`NOT_IDLE`].
    idle_since: AtomicU64,
}

impl Outbox {
    fn new(id: u64, capacity: usize, now_ms: u64) -> Self {
        Self {
            id,
            capacity,
            state: Mutex::new(OutboxState::default()),
            waker: AtomicWaker::new(),
            signals: AtomicU8::new(0),
            heard: AtomicU64::new(now_ms),
            writing_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(now_ms),
        }
    }

    fn wake(&self) {
        self.waker.wake();
    }

    fn raise(&self, bits: u8) {
        self.signals.fetch_or(bits, Ordering::AcqRel);
        self.wake();
    }

    /// Takes the raised [`signal`] bits.
    pub fn take_signals(&self) -> u8 {
        self.signals.swap(0, Ordering::AcqRel)
    }

    /// True if a [`signal`] is raised and not taken.
    pub fn has_signals(&self) -> bool {
        self.signals.load(Ordering::Acquire) != 0
    }

    fn push_control(&self, text: Text) {
        self.state.lock().items.push_back(Item::Control(text));
        self.wake();
    }

    /// Queues the messages of one publish (a batch), with one lock and one
    /// wake-up; false (nothing queued) when they do not all fit.
    fn push_messages(&self, envs: &[Arc<Envelope>]) -> bool {
        let mut s = self.state.lock();
        if s.messages + envs.len() > self.capacity {
            return false;
        }
        s.items
            .extend(envs.iter().map(|e| Item::Message(Arc::clone(e))));
        s.messages += envs.len();
        drop(s);
        self.wake();
        true
    }

    /// Queues a replay (bounded by the channel's history, not the outbox).
    fn push_replay(&self, envs: Vec<Arc<Envelope>>) {
        let mut s = self.state.lock();
        s.messages += envs.len();
        s.items.extend(envs.into_iter().map(Item::Message));
        drop(s);
        self.wake();
    }

    fn set_latest(&self, env: &Arc<Envelope>) {
        let mut s = self.state.lock();
        match s.latest.iter_mut().find(|(c, _)| *c == env.channel) {
            Some(slot) => {
                metrics::counter!(metric_names::COALESCED).increment(1);
                slot.1 = Arc::clone(env);
            }
            None => s.latest.push((Arc::clone(&env.channel), Arc::clone(env))),
        }
        drop(s);
        self.wake();
    }

    /// Takes everything queued: control and ordered messages first, then
    /// the latest value of each coalescing channel.
    pub fn drain(&self) -> Vec<Text> {
        let mut out = Vec::new();
        self.drain_into(&mut out);
        out
    }

    /// [`Outbox::drain`], appended to a reused buffer (the writer's), so a
    /// wake-up allocates nothing.
    pub fn drain_into(&self, out: &mut Vec<Text>) {
        let mut s = self.state.lock();
        out.extend(s.items.drain(..).map(|i| match i {
            Item::Control(t) => t,
            Item::Message(e) => e.text.clone(),
        }));
        s.messages = 0;
        out.extend(s.latest.drain(..).map(|(_, e)| e.text.clone()));
        // A burst (a replay, a large batch) can grow the queue; give the
        // memory back instead of holding it for the connection's life.
        if s.items.capacity() > 64 {
            s.items.shrink_to(16);
        }
    }

    /// Ready when something is queued, a signal is raised or the
    /// connection is closed; otherwise registers `cx`'s waker (one waker:
    /// an outbox has one writer).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.signals.load(Ordering::Acquire) != 0 {
            return Poll::Ready(());
        }
        let s = self.state.lock();
        if !s.items.is_empty() || !s.latest.is_empty() || s.closed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits until [`Outbox::poll_ready`] is ready.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await;
    }

    /// Messages waiting (for tests and metrics).
    pub fn len(&self) -> usize {
        let s = self.state.lock();
        s.items.len() + s.latest.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
struct Subscriber {
    outbox: Arc<Outbox>,
    /// `activity`: only these events. Boxed: a channel holds one entry
    /// per subscriber, and most have no filter.
    events: Option<Box<HashSet<String>>>,
    /// `activity` of a customer's embed token: only this `user_id`'s.
    customer: Option<Box<str>>,
}

#[derive(Debug, Default)]
struct ChannelState {
    next_seq: u64,
    history: VecDeque<Arc<Envelope>>,
    /// Coalescing channels: the payload of the latest message (the
    /// current state), sent as a `snapshot` to new subscribers.
    state: Option<Value>,
    subscribers: HashMap<u64, Subscriber>,
}

/// One channel of one workspace.
#[derive(Debug)]
pub struct Channel {
    name: Arc<str>,
    kind: ChannelKind,
    epoch: Arc<str>,
    state: Mutex<ChannelState>,
}

impl Channel {
    fn new(name: &str, kind: ChannelKind) -> Self {
        Self {
            name: name.into(),
            kind,
            epoch: uuid::Uuid::new_v4().simple().to_string()[..12].into(),
            state: Mutex::new(ChannelState {
                next_seq: 1,
                ..ChannelState::default()
            }),
        }
    }

    /// Subscribers right now.
    pub fn subscribers(&self) -> usize {
        self.state.lock().subscribers.len()
    }

    /// The channel's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }
}

#[derive(Debug, Default)]
struct TenantChannels {
    channels: HashMap<String, Arc<Channel>>,
}

/// A watched connection: its workspace and its outbox.
type Watched = (Arc<str>, Arc<Outbox>);

/// The hub: every workspace's channels and the open connections.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    config: RealtimeConfig,
    tenants: Mutex<HashMap<String, TenantChannels>>,
    connections: AtomicUsize,
    next_id: AtomicU64,
    /// Set once when the server shuts down.
    closing: tokio::sync::watch::Sender<bool>,
    shut: AtomicBool,
    /// Connections the sweeper watches ([`Connection::watch`]).
    watched: Mutex<HashMap<u64, Watched>>,
    /// Where the hub's time comes from ([`Hub::now_ms`]).
    clock: Arc<dyn Clock>,
    /// The clock's reading (µs) when the hub was made: zero of
    /// [`Hub::now_ms`].
    origin_us: i64,
    /// The largest [`Hub::now_ms`] answered (it never goes back).
    latest_ms: AtomicU64,
}

/// A snapshot for a subscriber: the current state of a coalescing channel,
/// or recent history of an ordered one.
pub type Snapshot = Value;

impl Hub {
    /// An empty hub that measures time with `clock` (a
    /// [`crate::MonotonicClock`] in production).
    pub fn new(config: RealtimeConfig, clock: Arc<dyn Clock>) -> Self {
        let origin_us = clock.now_us();
        Self {
            inner: Arc::new(HubInner {
                config,
                tenants: Mutex::new(HashMap::new()),
                connections: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                closing: tokio::sync::watch::channel(false).0,
                shut: AtomicBool::new(false),
                watched: Mutex::new(HashMap::new()),
                clock,
                origin_us,
                latest_ms: AtomicU64::new(0),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RealtimeConfig {
        &self.inner.config
    }

    /// Tells every connection to close (server shutdown).
    pub fn shutdown(&self) {
        self.inner.shut.store(true, Ordering::Release);
        self.inner.closing.send_replace(true);
        for (_, outbox) in self.inner.watched.lock().values() {
            outbox.raise(signal::SHUTDOWN);
        }
    }

    /// Milliseconds of the hub's clock since the hub was made; never less
    /// than an earlier answer, even if the clock steps back.
    pub fn now_ms(&self) -> u64 {
        let elapsed_us = self
            .inner
            .clock
            .now_us()
            .saturating_sub(self.inner.origin_us)
            .max(0);
        let ms = elapsed_us as u64 / 1000;
        self.inner.latest_ms.fetch_max(ms, Ordering::AcqRel).max(ms)
    }

    /// One round of the sweeper over the watched connections: flags
    /// writes blocked for longer than `write_timeout` ([`signal::STALLED`])
    /// and, on a heartbeat round, clients silent for two heartbeats
    /// ([`signal::DEAD`]), connections without subscriptions for
    /// `idle_timeout` ([`signal::IDLE`]), and asks every connection to
    /// ping ([`signal::PING`]).
    ///
    /// One task does this for all connections (a few atomic loads each)
    /// instead of every connection owning timers: see
    /// [`Hub::start_sweeper`].
    pub fn sweep(&self, heartbeat: bool) {
        let config = &self.inner.config;
        let millis = |d: Duration| d.as_millis() as u64;
        let (write_ms, beat_ms, idle_ms) = (
            millis(config.write_timeout),
            millis(config.heartbeat),
            millis(config.idle_timeout),
        );
        let now = self.now_ms();
        for (_, outbox) in self.inner.watched.lock().values() {
            let mut bits = 0;
            let since = outbox.writing_since.load(Ordering::Acquire);
            if since != 0 && now.saturating_sub(since - 1) > write_ms {
                bits |= signal::STALLED;
            }
            if heartbeat {
                if now.saturating_sub(outbox.heard.load(Ordering::Acquire)) > 2 * beat_ms {
                    bits |= signal::DEAD;
                }
                if outbox.state.lock().subscribed.is_empty() {
                    let idle = outbox.idle_since.load(Ordering::Acquire);
                    if idle == NOT_IDLE {
                        outbox.idle_since.store(now, Ordering::Release);
                    } else if now.saturating_sub(idle) >= idle_ms {
                        bits |= signal::IDLE;
                    }
                } else {
                    outbox.idle_since.store(NOT_IDLE, Ordering::Release);
                }
                bits |= signal::PING;
            }
            if bits != 0 {
                outbox.raise(bits);
            }
        }
    }

    /// Runs [`Hub::sweep`] on a tokio task: every quarter of the shorter
    /// of `heartbeat` and `write_timeout` (5 ms to 1 s), with a heartbeat
    /// round once a `heartbeat` has passed. The task ends when the hub is
    /// dropped.
    pub fn start_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let config = &self.inner.config;
        let tick = (config.heartbeat.min(config.write_timeout) / 4)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let heartbeat_ms = config.heartbeat.as_millis() as u64;
        let hub: Weak<HubInner> = Arc::downgrade(&self.inner);
        let mut last_beat = self.now_ms();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = hub.upgrade() else {
                    return;
                };
                let hub = Hub { inner };
                let now = hub.now_ms();
                let beat = now.saturating_sub(last_beat) >= heartbeat_ms;
                if beat {
                    last_beat = now;
                }
                hub.sweep(beat);
            }
        })
    }

    /// Forgets a deleted workspace: its channels (their state and
    /// history) go, and its watched connections are closed (4004).
    pub fn delete_tenant(&self, tenant: &str) {
        self.inner.tenants.lock().remove(tenant);
        for (of, outbox) in self.inner.watched.lock().values() {
            if &**of == tenant {
                outbox.raise(signal::DELETED);
            }
        }
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Acquire)
    }

    /// Registers a connection, or `None` at `max_connections`.
    pub fn connect(&self, principal: Principal) -> Option<Connection> {
        let max = self.inner.config.max_connections;
        let admitted = self
            .inner
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return None;
        }
        metrics::gauge!(metric_names::CONNECTIONS).increment(1.0);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Some(Connection {
            hub: self.clone(),
            principal,
            outbox: Arc::new(Outbox::new(
                id,
                self.inner.config.connection_queue,
                self.now_ms(),
            )),
            subscriptions: Vec::new(),
        })
    }

    /// The channel, created on first use.
    pub fn channel(&self, tenant: &str, name: &str) -> Result<Arc<Channel>> {
        let kind = ChannelKind::parse(name)?;
        let mut tenants = self.inner.tenants.lock();
        let t = tenants.entry(tenant.to_owned()).or_default();
        Ok(Arc::clone(
            t.channels
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Channel::new(name, kind))),
        ))
    }

    /// The channel if it exists.
    pub fn existing(&self, tenant: &str, name: &str) -> Option<Arc<Channel>> {
        let tenants = self.inner.tenants.lock();
        tenants.get(tenant)?.channels.get(name).cloned()
    }

    /// Workspaces with a channel named `name` that has subscribers.
    pub fn tenants_watching(&self, name: &str) -> Vec<String> {
        let tenants = self.inner.tenants.lock();
        tenants
            .iter()
            .filter(|(_, t)| t.channels.get(name).is_some_and(|c| c.subscribers() > 0))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The `query:<id>` channels of a workspace that have subscribers.
    pub fn watched_queries(&self, tenant: &str) -> Vec<String> {
        let tenants = self.inner.tenants.lock();
        tenants.get(tenant).map_or_else(Vec::new, |t| {
            t.channels
                .iter()
                .filter(|(_, c)| matches!(c.kind, ChannelKind::Query(_)) && c.subscribers() > 0)
                .map(|(n, _)| n.clone())
                .collect()
        })
    }

    /// Publishes a message on a channel (created if needed); returns its
    /// sequence number.
    pub fn publish(
        &self,
        tenant: &str,
        name: &str,
        kind: &str,
        payload: &Value,
        event: Option<String>,
    ) -> Result<u64> {
        self.publish_many(tenant, name, kind, std::slice::from_ref(&(payload, event)))
    }

    /// Publishes several messages on one channel as one unit: they get
    /// consecutive sequence numbers, and each subscriber receives all of
    /// them with one queue operation and one wake-up, so its writer sends
    /// them in one socket write. Returns the last sequence number.
    ///
    /// This is how the activity feed publishes an accepted batch: fan-out
    /// cost is dominated by the per-connection wake-up and write syscall,
    /// so a batch of k events costs about one delivery per connection,
    /// not k.
    pub fn publish_many(
        &self,
        tenant: &str,
        name: &str,
        kind: &str,
        messages: &[(&Value, Option<String>)],
    ) -> Result<u64> {
        let channel = self.channel(tenant, name)?;
        Ok(publish_on(
            &channel,
            self.inner.config.history,
            kind,
            messages,
        ))
    }
}

/// Appends to the channel and hands the messages to every subscriber;
/// returns the last sequence number.
fn publish_on(
    channel: &Channel,
    history: usize,
    kind: &str,
    messages: &[(&Value, Option<String>)],
) -> u64 {
    let mut s = channel.state.lock();
    let first = s.next_seq;
    let envs: Vec<Arc<Envelope>> = messages
        .iter()
        .enumerate()
        .map(|(i, (payload, event))| {
            Arc::new(Envelope::new(
                &channel.name,
                &channel.epoch,
                first + i as u64,
                kind,
                payload,
                event.clone(),
            ))
        })
        .collect();
    s.next_seq += envs.len() as u64;
    let last = s.next_seq - 1;
    let Some(newest) = envs.last() else {
        return last;
    };
    if channel.kind.coalesces() {
        s.state = messages.last().map(|(p, _)| (*p).clone());
    } else {
        s.history.extend(envs.iter().cloned());
        while s.history.len() > history {
            s.history.pop_front();
        }
    }
    let mut lagged = Vec::new();
    // Per filter, the messages it lets through. Subscribers mostly share a
    // handful of filters (usually none); past `MAX_CACHED_FILTERS`
    // distinct ones each is applied on its own, so a channel where every
    // subscriber has its own filter stays linear in subscribers.
    const MAX_CACHED_FILTERS: usize = 16;
    let mut filtered: Vec<(&HashSet<String>, Vec<Arc<Envelope>>)> = Vec::new();
    let keep = |filter: &HashSet<String>| -> Vec<Arc<Envelope>> {
        envs.iter()
            .filter(|e| e.event.as_ref().is_none_or(|ev| filter.contains(ev)))
            .cloned()
            .collect()
    };
    for (id, sub) in &s.subscribers {
        if channel.kind.coalesces() {
            sub.outbox.set_latest(newest);
            continue;
        }
        if let Some(customer) = sub.customer.as_deref() {
            // Rare (portal components): filtered for this subscriber alone.
            let kept: Vec<Arc<Envelope>> = envs
                .iter()
                .filter(|e| e.user.as_deref() == Some(customer))
                .filter(|e| {
                    sub.events.as_deref().is_none_or(|f| {
                        e.event.as_ref().is_none_or(|ev| f.contains(ev))
                    })
                })
                .cloned()
                .collect();
            if !(kept.is_empty() || sub.outbox.push_messages(&kept)) {
                lagged.push(*id);
            }
            continue;
        }
        let pushed = match sub.events.as_deref() {
            None => sub.outbox.push_messages(&envs),
            Some(filter) => match filtered.iter().position(|(f, _)| *f == filter) {
                Some(pos) => {
                    let kept = &filtered[pos].1;
                    kept.is_empty() || sub.outbox.push_messages(kept)
                }
                None => {
                    let kept = keep(filter);
                    let pushed = kept.is_empty() || sub.outbox.push_messages(&kept);
                    if filtered.len() < MAX_CACHED_FILTERS {
                        filtered.push((filter, kept));
                    }
                    pushed
                }
            },
        };
        if !pushed {
            lagged.push(*id);
        }
    }
    for id in lagged {
        if let Some(sub) = s.subscribers.remove(&id) {
            metrics::counter!(metric_names::LAGGED).increment(1);
            sub.outbox
                .state
                .lock()
                .subscribed
                .retain(|c| *c != channel.name);
            sub.outbox.push_control(control(
                "lagged",
                json!({
                    "channel": &*channel.name,
                    "epoch": &*channel.epoch,
                    "seq": first - 1,
                    "message": "the client fell too far behind; resume from seq to continue",
                }),
            ));
        }
    }
    metrics::counter!(metric_names::PUBLISHED).increment(envs.len() as u64);
    last
}

/// What a subscription starts with.
#[derive(Debug)]
pub struct SubscribeOptions {
    /// Resume after this position.
    pub resume: Option<Cursor>,
    /// `activity`: only these events.
    pub events: Option<Vec<String>>,
    /// The snapshot sent to a client that cannot be resumed (or that
    /// subscribes to a coalescing channel without a current state).
    pub snapshot: Option<Snapshot>,
    /// Ordered channels, without `resume`: start with a snapshot of the
    /// last `recent` messages (1 to [`MAX_RECENT`]) the subscriber may see,
    /// so a feed opened at a quiet moment is not empty.
    pub recent: Option<usize>,
}

/// Most messages of a `recent` snapshot (also after `history_lost`).
pub const MAX_RECENT: usize = 50;

/// One client connection: its subscriptions and outbox. Dropping it
/// unsubscribes everything.
#[derive(Debug)]
pub struct Connection {
    hub: Hub,
    principal: Principal,
    outbox: Arc<Outbox>,
    /// The channels subscribed to (see `OutboxState::subscribed` for why
    /// not a map).
    subscriptions: Vec<Arc<Channel>>,
}

impl Connection {
    /// Who owns the connection.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The outgoing queue (its writer drains it).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Number of live subscriptions (lagged ones are gone).
    pub fn subscriptions(&self) -> usize {
        self.outbox.state.lock().subscribed.len()
    }

    /// Hands the connection to the hub's sweeper: from now on its outbox
    /// gets [`signal`]s (pings, dead, idle, stalled, shutdown). For
    /// WebSocket connections, whose writer acts on them; raises
    /// [`signal::SHUTDOWN`] at once if the server is already shutting down.
    pub fn watch(&self) {
        self.hub
            .inner
            .watched
            .lock()
            .insert(
                self.outbox.id,
                (Arc::from(self.principal.tenant.as_str()), Arc::clone(&self.outbox)),
            );
        if self.hub.inner.shut.load(Ordering::Acquire) {
            self.outbox.raise(signal::SHUTDOWN);
        }
    }

    /// Records that the client was heard from (any frame).
    pub fn heard(&self) {
        self.outbox
            .heard
            .store(self.hub.now_ms(), Ordering::Release);
    }

    /// Records whether a write is blocked on the socket (the sweeper
    /// raises [`signal::STALLED`] when one stays blocked for
    /// `write_timeout`).
    pub fn writing(&self, blocked: bool) {
        if blocked {
            let _ = self.outbox.writing_since.compare_exchange(
                0,
                self.hub.now_ms() + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        } else {
            self.outbox.writing_since.store(0, Ordering::Release);
        }
    }

    /// Resolves when the server shuts down.
    pub fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.hub.inner.closing.subscribe();
        async move {
            loop {
                if *rx.borrow_and_update() {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Queues a control message.
    pub fn send_control(&self, text: Text) {
        self.outbox.push_control(text);
    }

    /// Queues an `error` message.
    pub fn send_error(&self, error: &Error, channel: Option<&str>) {
        self.outbox
            .push_control(error_message(error.code(), &error.to_string(), channel));
    }

    /// Checks that this connection may subscribe to `name`.
    pub fn authorize(&self, name: &str) -> Result<ChannelKind> {
        let kind = ChannelKind::parse(name)?;
        self.principal.check(name, &kind)?;
        Ok(kind)
    }

    /// Subscribes (see the module docs for resume and snapshots).
    pub fn subscribe(&mut self, name: &str, options: SubscribeOptions) -> Result<()> {
        let kind = self.authorize(name)?;
        // A repeated subscribe replaces the earlier one (new filter/resume).
        self.unsubscribe(name);
        if self.subscriptions() >= self.hub.inner.config.max_subscriptions {
            return Err(Error::TooManySubscriptions {
                limit: self.hub.inner.config.max_subscriptions,
            });
        }
        if options.events.is_some() && kind != ChannelKind::Activity {
            return Err(Error::InvalidMessage(
                "events filters only apply to the activity channel".into(),
            ));
        }
        if let Some(n) = options.recent {
            if kind.coalesces() {
                return Err(Error::InvalidMessage(format!(
                    "recent applies to ordered channels; {name} always starts with its current state"
                )));
            }
            if !(1..=MAX_RECENT).contains(&n) {
                return Err(Error::InvalidMessage(format!(
                    "recent must be 1 to {MAX_RECENT}"
                )));
            }
        }
        let channel = self.hub.channel(&self.principal.tenant, name)?;
        let mut s = channel.state.lock();
        let last_seq = s.next_seq - 1;
        self.outbox.push_control(control(
            "subscribed",
            json!({"channel": name, "epoch": &*channel.epoch, "seq": last_seq}),
        ));
        let filter: Option<Box<HashSet<String>>> =
            options.events.map(|e| Box::new(e.into_iter().collect()));
        let customer: Option<Box<str>> = self.principal.customer().map(Box::from);
        let wanted = |e: &Envelope| {
            let event = match (&filter, &e.event) {
                (Some(f), Some(ev)) => f.contains(ev),
                _ => true,
            };
            event && customer.as_deref().is_none_or(|c| e.user.as_deref() == Some(c))
        };
        // The last `n` payloads the subscriber may see, oldest first.
        let recent = |history: &std::collections::VecDeque<Arc<Envelope>>, n: usize| -> Value {
            let payloads: Vec<Value> = history
                .iter()
                .rev()
                .filter(|e| wanted(e))
                .take(n)
                .filter_map(|e| serde_json::from_slice::<Value>(e.text.bytes()).ok())
                .map(|mut v| v["payload"].take())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            json!({ "recent": payloads })
        };
        if kind.coalesces() {
            // Full states: resuming is just getting the current one.
            if let Some(state) = s.state.as_ref().or(options.snapshot.as_ref()) {
                self.outbox
                    .push_control(snapshot_message(&channel, last_seq, state));
            }
        } else if let Some(cursor) = options.resume {
            let oldest = s.history.front().map_or(s.next_seq, |e| e.seq);
            let resumable = cursor.epoch == *channel.epoch
                && cursor.seq <= last_seq
                && cursor.seq + 1 >= oldest;
            if resumable {
                let replay: Vec<Arc<Envelope>> = s
                    .history
                    .iter()
                    .filter(|e| e.seq > cursor.seq && wanted(e))
                    .cloned()
                    .collect();
                self.outbox.push_replay(replay);
            } else {
                let reason = if cursor.epoch != *channel.epoch {
                    "the channel restarted (new epoch)"
                } else if cursor.seq > last_seq {
                    "the sequence number is ahead of the channel"
                } else {
                    "the missed messages are no longer in the history"
                };
                self.outbox.push_control(control(
                    "history_lost",
                    json!({"channel": name, "epoch": &*channel.epoch, "seq": last_seq, "reason": reason}),
                ));
                let snapshot = options
                    .snapshot
                    .unwrap_or_else(|| recent(&s.history, MAX_RECENT));
                self.outbox
                    .push_control(snapshot_message(&channel, last_seq, &snapshot));
            }
        } else if let Some(n) = options.recent {
            let snapshot = recent(&s.history, n);
            self.outbox
                .push_control(snapshot_message(&channel, last_seq, &snapshot));
        }
        s.subscribers.insert(
            self.outbox.id,
            Subscriber {
                outbox: Arc::clone(&self.outbox),
                events: filter,
                customer,
            },
        );
        drop(s);
        self.outbox
            .state
            .lock()
            .subscribed
            .push(Arc::clone(&channel.name));
        self.subscriptions.push(channel);
        Ok(())
    }

    /// Ends a subscription; true if there was one.
    pub fn unsubscribe(&mut self, name: &str) -> bool {
        let Some(at) = self.subscriptions.iter().position(|c| &*c.name == name) else {
            return false;
        };
        let channel = self.subscriptions.swap_remove(at);
        channel.state.lock().subscribers.remove(&self.outbox.id);
        let mut s = self.outbox.state.lock();
        let before = s.subscribed.len();
        s.subscribed.retain(|c| *c != channel.name);
        s.subscribed.len() < before
    }
}

fn snapshot_message(channel: &Channel, seq: u64, snapshot: &Value) -> Text {
    Envelope::new(
        &channel.name,
        &channel.epoch,
        seq,
        "snapshot",
        snapshot,
        None,
    )
    .text
}

impl Drop for Connection {
    fn drop(&mut self) {
        for channel in self.subscriptions.drain(..) {
            channel.state.lock().subscribers.remove(&self.outbox.id);
        }
        self.hub.inner.watched.lock().remove(&self.outbox.id);
        {
            let mut s = self.outbox.state.lock();
            s.closed = true;
        }
        self.outbox.wake();
        self.hub.inner.connections.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(metric_names::CONNECTIONS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests;
