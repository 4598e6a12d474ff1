//! The wire protocol: what clients send and what the hub sends back.
//!
//! Every message is one JSON object (a WebSocket text frame, or an SSE
//! `data:` line). Messages on a channel:
//!
//! ```json
//! {"channel": "activity", "type": "event", "epoch": "3f2a...", "seq": 41, "payload": {...}}
//! ```
//!
//! Control messages carry no `channel` sequence: `welcome`, `subscribed`,
//! `unsubscribed`, `history_lost`, `lagged`, `error`, `pong`. The full
//! protocol is documented in `docs/realtime.md`.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Error, Result};

/// A position in a channel: the epoch (changes when the channel's history
/// restarts, e.g. after a server restart) and the last sequence number seen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// The channel's epoch.
    pub epoch: String,
    /// Last sequence number the client received.
    pub seq: u64,
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Authenticates with an API key (read or admin) or a user token.
    Auth {
        /// An API key.
        #[serde(default)]
        key: Option<String>,
        /// A user session token (`POST /v1/realtime/tokens`).
        #[serde(default)]
        token: Option<String>,
    },
    /// Subscribes to a channel.
    Subscribe {
        /// The channel name.
        channel: String,
        /// Resume after this position instead of starting at "now".
        #[serde(default)]
        resume: Option<Cursor>,
        /// `activity` only: event names to receive (all when absent).
        #[serde(default)]
        events: Option<Vec<String>>,
        /// Ordered channels without `resume`: start with a snapshot of the
        /// last N messages (1 to 50).
        #[serde(default)]
        recent: Option<usize>,
        /// `query:<id>` only: the read-only SQL to keep live.
        #[serde(default)]
        sql: Option<String>,
    },
    /// Stops a subscription.
    Unsubscribe {
        /// The channel name.
        channel: String,
    },
    /// Application-level ping; answered with `pong` (echoing `id`).
    Ping {
        /// Echoed back.
        #[serde(default)]
        id: Option<Value>,
    },
}

impl ClientMessage {
    /// Parses one client message.
    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::InvalidMessage(e.to_string()))
    }
}

/// A message's JSON text, serialized once and shared: every subscriber's
/// writer hands the same bytes to its socket (a reference count, no copy
/// per delivery). Always valid UTF-8 (made only from `String`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(Bytes);

impl Text {
    /// The bytes, for a socket.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The text. Checks the UTF-8 again (a scan, no copy): for tests and
    /// the SSE path, not per WebSocket delivery.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message on a channel, serialized once and shared by every subscriber.
#[derive(Debug)]
pub struct Envelope {
    /// The channel.
    pub channel: Arc<str>,
    /// Sequence number within the channel's epoch.
    pub seq: u64,
    /// The channel's epoch.
    pub epoch: Arc<str>,
    /// For `activity`: the event name (subscribers may filter on it).
    pub event: Option<String>,
    /// The payload's `user_id`, if it has one: a customer's embed token
    /// receives only the `activity` messages of its customer.
    pub user: Option<Box<str>>,
    /// The JSON text sent to clients.
    pub text: Text,
}

impl Envelope {
    /// Builds and serializes a channel message.
    pub fn new(
        channel: &Arc<str>,
        epoch: &Arc<str>,
        seq: u64,
        kind: &str,
        payload: &Value,
        event: Option<String>,
    ) -> Self {
        let text = json!({
            "channel": &**channel,
            "type": kind,
            "epoch": &**epoch,
            "seq": seq,
            "payload": payload,
        })
        .to_string();
        Self {
            channel: Arc::clone(channel),
            seq,
            epoch: Arc::clone(epoch),
            event,
            user: payload.get("user_id").and_then(Value::as_str).map(Box::from),
            text: text.into(),
        }
    }
}

/// A control message (not part of any channel's sequence).
pub fn control(kind: &str, fields: Value) -> Text {
    let mut doc = json!({ "type": kind });
    if let (Some(map), Value::Object(extra)) = (doc.as_object_mut(), fields) {
        map.extend(extra);
    }
    doc.to_string().into()
}

/// An `error` control message.
pub fn error_message(code: &str, message: &str, channel: Option<&str>) -> Text {
    let mut fields = json!({"code": code, "message": message});
    if let Some(c) = channel {
        fields["channel"] = json!(c);
    }
    control("error", fields)
}

/// WebSocket close codes used by the hub (4000-4999 are for applications).
pub mod close {
    /// No or unknown credentials, or authentication took too long.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The credentials may not use the hub (a write key).
    pub const FORBIDDEN: u16 = 4003;
    /// No subscription for `idle_timeout`.
    pub const IDLE: u16 = 4008;
    /// The server has too many connections.
    pub const TRY_AGAIN: u16 = 1013;
    /// A client message was larger than `max_message_bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// The client stopped answering pings.
    pub const DEAD: u16 = 4009;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The connection's workspace was deleted.
    pub const WORKSPACE_DELETED: u16 = 4004;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_messages() {
        let m = ClientMessage::parse(
            r#"{"type":"subscribe","channel":"activity","events":["Order Completed"],"resume":{"epoch":"e1","seq":4}}"#,
        )
        .expect("parse");
        assert_eq!(
            m,
            ClientMessage::Subscribe {
                channel: "activity".into(),
                resume: Some(Cursor {
                    epoch: "e1".into(),
                    seq: 4
                }),
                events: Some(vec!["Order Completed".into()]),
                sql: None,
                recent: None,
            }
        );
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"type":"subscribe"}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"subscribe","channel":"x","extra":1}"#,
            r#"{"type":"subscribe","channel":"x","resume":{"epoch":"e","seq":-1}}"#,
        ] {
            assert!(ClientMessage::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn envelope_text_has_every_field() {
        let e = Envelope::new(
            &Arc::from("metrics"),
            &Arc::from("ep"),
            7,
            "update",
            &json!({"a": 1}),
            None,
        );
        let v: Value = serde_json::from_str(e.text.as_str()).expect("json");
        assert_eq!(
            v,
            json!({"channel": "metrics", "type": "update", "epoch": "ep", "seq": 7, "payload": {"a": 1}})
        );
    }
}
