//! Beacon's real-time side: the hub that pushes live metrics, the activity
//! feed, alerts, notifications and live SQL results to dashboards, portals
//! and other systems over WebSocket (and Server-Sent Events).
//!
//! - [`hub`]: channels per workspace with sequence numbers, bounded
//!   history and resume, per-connection bounded outboxes (coalescing for
//!   state channels, lag-and-resume for ordered ones), access rules.
//! - [`live`]: what feeds the channels from accepted events: live metrics
//!   in business time, the activity feed, live SQL queries.
//! - [`protocol`]: the JSON messages clients and the hub exchange.
//! - [`token`]: signed user session tokens for per-user channels.
//! - [`notify`]: users, preferences, the inbox and durable delivery
//!   (live push, webhooks, email) through an outbox.
//! - [`alerts`]: alert rules, their state machine, noise control,
//!   simulation and templates (depends on [`notify`], not the reverse).
//! - [`MonotonicClock`]: the hub's clock; all time is injected (see the
//!   `clock` module), so tests advance a manual clock instead of sleeping.
//! - [`db`]: the metadata database connection both use, with the
//!   versioned migrations of their tables.
//!
//! The socket handling (WebSocket upgrade, SSE, authentication by key) is in
//! the `api` crate; this crate knows no HTTP.

pub mod alerts;
mod clock;
mod config;
pub mod db;
mod error;
pub mod hub;
pub mod live;
pub mod notify;
pub mod protocol;
pub mod token;

pub use clock::MonotonicClock;
pub use config::RealtimeConfig;
pub use error::{Error, Result};
pub use hub::{Access, Connection, Hub, Principal, SubscribeOptions};
pub use live::Live;
