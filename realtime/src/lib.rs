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
//!   simulation and templates.
//!
//! The socket handling (WebSocket upgrade, SSE, authentication by key) is in
//! the `api` crate; this crate knows no HTTP.

pub mod alerts;
mod config;
mod error;
pub mod hub;
pub mod live;
pub mod notify;
pub mod protocol;
pub mod token;

pub use config::RealtimeConfig;
pub use error::{Error, Result};
pub use hub::{Access, Connection, Hub, Principal, SubscribeOptions};
pub use live::Live;
