//! Webhook payloads and signatures.
//!
//! - `standard` endpoints get the notification as a CloudEvents 1.0 JSON
//!   event (structured mode), signed per the Standard Webhooks spec:
//!   `webhook-id` (the delivery id, the same on every retry, so receivers
//!   de-duplicate by it), `webhook-timestamp` (Unix seconds of this
//!   attempt) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of
//!   "{id}.{timestamp}.{body}">` under each live secret, space-separated
//!   while a rotated secret is still in its grace period.
//! - `slack` endpoints get a Slack incoming-webhook body (`text` plus
//!   `blocks`), unsigned: Slack authenticates by the secret URL.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::Message;

/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Payload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// CloudEvents JSON, Standard Webhooks signature.
    Standard,
    /// Slack incoming webhook.
    Slack,
}

/// A signing secret of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// `whsec_<base64>`.
    pub secret: String,
    /// Creation, µs.
    pub created_at_us: i64,
    /// Set when rotated out: the secret still signs until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_us: Option<i64>,
}

/// A new random secret (24 bytes, as the spec's reference libraries make).
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// Signs `body` for delivery `id` at `timestamp` with every secret that
/// is live at `now_us`: the `webhook-signature` header value.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8], now_us: i64) -> String {
    let mut signed = Vec::with_capacity(body.len() + id.len() + 24);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    secrets
        .iter()
        .filter(|s| s.expires_at_us.is_none_or(|e| e > now_us))
        .filter_map(|s| {
            let key = STANDARD
                .decode(s.secret.strip_prefix(SECRET_PREFIX)?)
                .ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(&signed);
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The CloudEvents type of a message: `com.beacon.<category>[.<kind>]`.
fn event_type(message: &Message) -> String {
    let kind = message.data.get("kind").and_then(Value::as_str);
    match kind {
        Some(k) => format!("com.beacon.{}.{}", message.category, k),
        None => format!("com.beacon.{}", message.category),
    }
}

/// The body for `flavour`.
pub fn body(flavour: Flavour, message: &Message, delivery_id: &str) -> Value {
    match flavour {
        Flavour::Standard => json!({
            "specversion": "1.0",
            "id": delivery_id,
            "source": format!("/beacon/workspaces/{}", message.tenant),
            "type": event_type(message),
            "subject": message.data.get("rule_id").and_then(Value::as_str).unwrap_or(&message.id),
            "time": super::rfc3339(message.created_at_us),
            "datacontenttype": "application/json",
            "data": {
                "notification_id": message.id,
                "category": message.category,
                "severity": message.severity,
                "title": message.title,
                "body": message.body,
                "recipients": message.recipients,
                "data": message.data,
            },
        }),
        Flavour::Slack => {
            let emoji = match message.severity.as_str() {
                "critical" => ":rotating_light:",
                "warning" => ":warning:",
                _ => ":information_source:",
            };
            let text = format!("{emoji} *{}*\n{}", message.title, message.body);
            json!({
                "text": format!("{} {}", message.title, message.body).trim(),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("{} · {} · {}", message.category, message.severity, super::rfc3339(message.created_at_us))}]}
                ],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_spec_example() {
        // The Standard Webhooks reference test vector.
        let secrets = [Secret {
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            created_at_us: 0,
            expires_at_us: None,
        }];
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(
            &secrets,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            0,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn slack_flavour_is_an_incoming_webhook_body() {
        let m = Message {
            id: "ntf_1".into(),
            tenant: "ws".into(),
            category: "alert".into(),
            severity: "critical".into(),
            title: "[FIRING:1] Payment failures".into(),
            body: "payment_failures: 7.00 (firing)".into(),
            data: json!({"kind": "firing"}),
            recipients: vec![],
            created_at_us: 0,
        };
        let b = body(Flavour::Slack, &m, "msg_1");
        assert_eq!(
            b["text"],
            "[FIRING:1] Payment failures payment_failures: 7.00 (firing)"
        );
        assert_eq!(b["blocks"][0]["type"], "section");
        assert!(
            b["blocks"][0]["text"]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(":rotating_light: *[FIRING:1]"))
        );
        let ce = body(Flavour::Standard, &m, "msg_1");
        assert_eq!(
            (
                ce["specversion"].as_str(),
                ce["type"].as_str(),
                ce["id"].as_str()
            ),
            (Some("1.0"), Some("com.beacon.alert.firing"), Some("msg_1"))
        );
    }

    #[test]
    fn rotated_secret_signs_until_it_expires() {
        let old = Secret {
            secret: new_secret(),
            created_at_us: 0,
            expires_at_us: Some(100),
        };
        let new = Secret {
            secret: new_secret(),
            created_at_us: 50,
            expires_at_us: None,
        };
        let both = sign(&[old.clone(), new.clone()], "m", 1, b"{}", 99);
        assert_eq!(both.split(' ').count(), 2);
        let one = sign(&[old, new], "m", 1, b"{}", 100);
        assert_eq!(one.split(' ').count(), 1);
    }
}
