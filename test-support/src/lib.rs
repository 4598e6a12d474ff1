//! Harness code shared by Beacon's tests, as influxdb3's test helpers: a
//! dev-dependency only, never linked into the server.
//!
//! - [`clock::ManualClock`]: the injected [`beacon_ingest::Clock`] that tests
//!   set and advance instead of sleeping.
//! - [`receivers`]: the real SMTP and webhook receivers of
//!   `api/tests/clients/python/receivers.py` (aiosmtpd and the reference
//!   `standardwebhooks` library) in the test venv.
//! - [`ws`]: a WebSocket client of the hub: connect, read the next JSON
//!   message, wait for a matching one, subscribe, read the close code.
//!
//! The `beacon` binary's harness (`Server`: start on `127.0.0.1:0`,
//! `server.post(path, key, json)`, the CLI helpers) stays in
//! `api/tests/it/common.rs`: only the api crate's tests can name the binary
//! (`CARGO_BIN_EXE_beacon`).

pub mod clock;
pub mod receivers;
pub mod ws;

pub use clock::ManualClock;
pub use receivers::{PyReceiver, python};

/// Longest a test waits for one expected message or state.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
