//! Email: text and HTML bodies from minijinja templates with the
//! workspace's branding, sent over SMTP with lettre.
//!
//! lettre's blocking transport runs on tokio's blocking pool (one delivery
//! per thread for the length of one SMTP conversation); see ARCHITECTURE.md
//! for why not its tokio transport.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Branding, Message};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or network).
    #[default]
    None,
    /// STARTTLS if the server offers it.
    Opportunistic,
    /// STARTTLS, refusing to send without it.
    Starttls,
    /// TLS from the first byte (port 465).
    Wrapper,
}

/// The SMTP server (`[notify.smtp]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name; empty disables email (deliveries are `suppressed` with
    /// reason `email_not_configured`).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// User name for AUTH (empty: no AUTH).
    pub username: String,
    /// Password for AUTH.
    pub password: String,
    /// Sender address (`Name <address>` or `address`).
    pub from: String,
    /// A PEM certificate (authority) to trust besides the public roots,
    /// for a relay with a private CA or a self-signed certificate; empty:
    /// public roots only.
    pub ca_file: String,
    /// Longest one SMTP conversation may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 25,
            tls: SmtpTls::None,
            username: String::new(),
            password: String::new(),
            from: "Beacon <beacon@localhost>".into(),
            ca_file: String::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

const TEXT: &str = "{{ title }}

{{ body }}
{% if items %}
{% for item in items %}- {{ item.title }}{% if item.body %}: {{ item.body }}{% endif %}
{% endfor %}{% endif %}
-- 
{{ brand.name }} · {{ category }} · {{ severity }}{% if brand.footer %}
{{ brand.footer }}{% endif %}
";

const HTML: &str = r#"<!doctype html>
<html><body style="margin:0;padding:0;background:#f5f6f8;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center" style="padding:24px">
<table role="presentation" width="560" cellpadding="0" cellspacing="0" style="background:#ffffff;border-radius:8px;overflow:hidden">
<tr><td style="background:{{ brand.color }};color:#ffffff;padding:16px 24px;font-size:16px;font-weight:600">
{% if brand.logo_url %}<img src="{{ brand.logo_url }}" alt="{{ brand.name }}" height="24" style="vertical-align:middle;margin-right:8px">{% endif %}{{ brand.name }}</td></tr>
<tr><td style="padding:24px">
<p style="margin:0 0 4px;font-size:12px;color:#6b7280;text-transform:uppercase">{{ category }} · {{ severity }}</p>
<h1 style="margin:0 0 12px;font-size:20px;color:#111827">{{ title }}</h1>
<p style="margin:0 0 12px;font-size:14px;color:#374151;white-space:pre-line">{{ body }}</p>
{% if items %}<ul style="padding-left:18px;font-size:14px;color:#374151">{% for item in items %}<li><strong>{{ item.title }}</strong>{% if item.body %}: {{ item.body }}{% endif %}</li>{% endfor %}</ul>{% endif %}
</td></tr>
{% if brand.footer %}<tr><td style="padding:12px 24px;font-size:12px;color:#9ca3af">{{ brand.footer }}</td></tr>{% endif %}
</table></td></tr></table>
</body></html>
"#;

/// The built-in templates (text and HTML, auto-escaped).
pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_template("email.txt", TEXT)
        .expect("the text template parses");
    env.add_template("email.html", HTML)
        .expect("the HTML template parses");
    env
}

/// A rendered email.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// text/plain part.
    pub text: String,
    /// text/html part.
    pub html: String,
    /// Files attached (a report run's file).
    pub attachments: Vec<Attachment>,
}

/// A file attached to an email.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Its name in the email.
    pub filename: String,
    /// Its media type.
    pub content_type: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Largest file attached to an email; a larger one is only linked.
pub const MAX_ATTACHMENT: u64 = 10 << 20;

/// The file a notification's `data.attachment` names
/// (`{"file": "<report id>/<file name>", "filename", "content_type"}`),
/// read from the workspace's report files (`<reports dir>/<workspace>/`):
/// only plain names, so no other file can be named; `None` when absent,
/// unreadable or larger than [`MAX_ATTACHMENT`] (the notification still
/// links it).
pub fn attachment(reports_dir: &std::path::Path, tenant: &str, data: &Value) -> Option<Attachment> {
    let a = data.get("attachment")?;
    let file = a.get("file")?.as_str()?;
    let plain = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let parts: Vec<&str> = file.split('/').collect();
    if parts.len() != 2 || !parts.iter().all(|p| plain(p)) || !plain(tenant) {
        return None;
    }
    let path = reports_dir.join(tenant).join(parts[0]).join(parts[1]);
    if std::fs::metadata(&path).ok()?.len() > MAX_ATTACHMENT {
        return None;
    }
    let filename: String = a
        .get("filename")
        .and_then(Value::as_str)
        .unwrap_or(parts[1])
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '/' | '\\'))
        .take(120)
        .collect();
    Some(Attachment {
        filename,
        content_type: a
            .get("content_type")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream")
            .to_owned(),
        bytes: std::fs::read(&path).ok()?,
    })
}

/// Renders one notification, or a digest of several (`items`).
pub fn render(
    env: &Environment<'_>,
    brand: &Branding,
    message: &Message,
    items: &[Message],
) -> Result<Rendered, String> {
    let items: Vec<Value> = items
        .iter()
        .map(|m| json!({"title": m.title, "body": m.body}))
        .collect();
    let ctx = json!({
        "title": message.title,
        "body": message.body,
        "category": message.category,
        "severity": message.severity,
        "items": items,
        "data": message.data,
        "brand": {
            "name": brand.name.as_deref().unwrap_or("Beacon"),
            "color": brand.color.as_deref().unwrap_or("#1f6feb"),
            "logo_url": brand.logo_url,
            "footer": brand.footer,
        },
    });
    let render = |name: &str| {
        env.get_template(name)
            .and_then(|t| t.render(&ctx))
            .map_err(|e| format!("template {name}: {e}"))
    };
    let prefix = match message.severity.as_str() {
        "critical" => "[CRITICAL] ",
        "warning" => "[Warning] ",
        _ => "",
    };
    Ok(Rendered {
        subject: format!("{prefix}{}", message.title),
        text: render("email.txt")?,
        html: render("email.html")?,
        attachments: Vec::new(),
    })
}

/// Sends one email (blocking: call from the blocking pool). `id` becomes
/// the Message-ID, so a receiver can spot a retried duplicate.
pub fn send(
    config: &SmtpConfig,
    brand: &Branding,
    to: &str,
    id: &str,
    email: &Rendered,
) -> Result<(), String> {
    let mut from: Mailbox = config
        .from
        .parse()
        .map_err(|e| format!("notify.smtp.from {:?}: {e}", config.from))?;
    if let Some(name) = &brand.email_from_name {
        from.name = Some(name.clone());
    }
    let to: Mailbox = to
        .parse()
        .map_err(|e| format!("recipient address {to:?}: {e}"))?;
    let message = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(&email.subject)
        .message_id(Some(format!("<{id}@beacon>")))
        .multipart({
            let body = MultiPart::alternative_plain_html(email.text.clone(), email.html.clone());
            if email.attachments.is_empty() {
                body
            } else {
                email
                    .attachments
                    .iter()
                    .fold(MultiPart::mixed().multipart(body), |m, a| {
                        let content_type =
                            ContentType::parse(&a.content_type).unwrap_or(ContentType::TEXT_PLAIN);
                        m.singlepart(
                            lettre::message::Attachment::new(a.filename.clone())
                                .body(a.bytes.clone(), content_type),
                        )
                    })
            }
        })
        .map_err(|e| format!("building the email: {e}"))?;
    let host = config.host.as_str();
    let params = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(host.to_owned());
        if !config.ca_file.is_empty() {
            let pem = std::fs::read(&config.ca_file)
                .map_err(|e| format!("notify.smtp.ca_file {:?}: {e}", config.ca_file))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("notify.smtp.ca_file {:?}: {e}", config.ca_file))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map_err(|e| format!("TLS parameters: {e}"))
    };
    let mut builder = SmtpTransport::builder_dangerous(host)
        .port(config.port)
        .timeout(Some(config.timeout));
    builder = match config.tls {
        SmtpTls::None => builder.tls(Tls::None),
        SmtpTls::Opportunistic => builder.tls(Tls::Opportunistic(params()?)),
        SmtpTls::Starttls => builder.tls(Tls::Required(params()?)),
        SmtpTls::Wrapper => builder.tls(Tls::Wrapper(params()?)),
    };
    if !config.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            config.username.clone(),
            config.password.clone(),
        ));
    }
    builder
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_branded() {
        let env = templates();
        let brand = Branding {
            name: Some("Rosa's <Shop>".into()),
            color: Some("#ff0000".into()),
            ..Default::default()
        };
        let m = Message {
            id: "n1".into(),
            tenant: "ws".into(),
            category: "alert".into(),
            severity: "critical".into(),
            title: "Stock <low>".into(),
            body: "Only 2 left".into(),
            data: json!({}),
            recipients: vec![],
            created_at_us: 0,
        };
        let r = render(&env, &brand, &m, &[]).expect("render");
        assert_eq!(r.subject, "[CRITICAL] Stock <low>");
        assert!(r.html.contains("Stock &lt;low&gt;"), "{}", r.html);
        assert!(r.html.contains("#ff0000"));
        assert!(r.text.contains("Stock <low>") && r.text.contains("Rosa's <Shop>"));
    }
}
