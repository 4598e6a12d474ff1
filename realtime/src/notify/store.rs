//! Typed access to the notification tables (`notify_*`) in the metadata
//! database; [`crate::db`] opens it and creates the tables.
//!
//! A notification and every delivery it causes are written in one
//! transaction before the caller gets an answer: the outbox. The worker
//! then claims due deliveries (`queued`/`deferred`/`digest` with
//! `next_attempt_us <= now` -> `sending`), performs them and records the
//! outcome. A process that dies while a delivery is `sending` leaves it so;
//! [`NotifyDb::open`] puts such rows back to `queued`, so they are sent
//! again with the same delivery id (at least once, de-duplicable).

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::webhook::Flavour;
use crate::db::MetaDb;
use super::{Branding, Delivery, Endpoint, InboxItem, Message, NotifyError, Status, User};

/// Handle to the notification tables.
#[derive(Debug, Clone)]
pub struct NotifyDb {
    db: Arc<MetaDb>,
}

/// A value stored as JSON text.
fn to_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, NotifyError> {
    serde_json::to_string(value).map_err(|source| NotifyError::Encode { what, source })
}

fn json_col<T: serde::de::DeserializeOwned>(text: String) -> rusqlite::Result<T> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

const MESSAGE_COLS: &str =
    "id, tenant_id, category, severity, title, body, data, recipients, created_at_us";

fn message_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        tenant: r.get(1)?,
        category: r.get(2)?,
        severity: r.get(3)?,
        title: r.get(4)?,
        body: r.get(5)?,
        data: json_col(r.get(6)?)?,
        recipients: json_col(r.get(7)?)?,
        created_at_us: r.get(8)?,
    })
}

const DELIVERY_COLS: &str = "id, tenant_id, message_id, channel, target, status, reason, attempts, next_attempt_us, created_at_us, updated_at_us, delivered_at_us";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let channel: String = r.get(3)?;
    let status: String = r.get(5)?;
    Ok(Delivery {
        id: r.get(0)?,
        tenant: r.get(1)?,
        message_id: r.get(2)?,
        channel: super::Channel::parse(&channel).unwrap_or(super::Channel::Inbox),
        target: r.get(4)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        reason: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_us: r.get(8)?,
        created_at_us: r.get(9)?,
        updated_at_us: r.get(10)?,
        delivered_at_us: r.get(11)?,
    })
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        role: beacon_ingest::UserRole::parse(&r.get::<_, String>(3)?)
            .unwrap_or(beacon_ingest::UserRole::Viewer),
        preferences: json_col(r.get(4)?)?,
        created_at_us: r.get(5)?,
        has_password: r.get::<_, Option<String>>(6)?.is_some(),
        totp_enabled: r.get::<_, i64>(7)? != 0,
        last_login_at_us: r.get(8)?,
    })
}

fn endpoint_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let flavour: String = r.get(2)?;
    Ok(Endpoint {
        id: r.get(0)?,
        url: r.get(1)?,
        flavour: if flavour == "slack" {
            Flavour::Slack
        } else {
            Flavour::Standard
        },
        categories: json_col(r.get(3)?)?,
        secrets: json_col(r.get(4)?)?,
        enabled: r.get::<_, i64>(5)? != 0,
        created_at_us: r.get(6)?,
    })
}

/// A delivery to insert with its message.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Id (`msg_...`).
    pub id: String,
    /// Channel.
    pub channel: super::Channel,
    /// User id or endpoint id.
    pub target: String,
    /// Initial status.
    pub status: Status,
    /// Why (suppressed, deferred).
    pub reason: Option<String>,
    /// When it is due.
    pub next_attempt_us: i64,
}

/// What [`NotifyDb::insert_message`] did.
#[derive(Debug)]
pub enum Inserted {
    /// New message.
    New,
    /// A message with the same idempotency key exists: its id.
    Duplicate(String),
}

/// Inbox listing filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct InboxFilter {
    /// Unread only.
    pub unread: bool,
    /// Archived instead of not archived.
    pub archived: bool,
    /// At most.
    pub limit: usize,
    /// Older than this creation time (paging).
    pub before_us: Option<i64>,
}

impl NotifyDb {
    /// The notification tables of `db`; puts deliveries left `sending` by
    /// a previous process back to `queued`.
    pub fn new(db: Arc<MetaDb>) -> Result<Self, NotifyError> {
        let requeued = db.with(|c| {
            c.execute("UPDATE notify_deliveries SET status = 'queued', reason = 'interrupted by a restart' WHERE status = 'sending'", [])
        })?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "Deliveries interrupted by a restart are queued again."
            );
        }
        Ok(Self { db })
    }

    /// The database (the alert tables share it).
    pub fn metadata(&self) -> &Arc<MetaDb> {
        &self.db
    }

    /// Runs `f` on the connection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, NotifyError> {
        Ok(self.db.with(f)?)
    }

    // Users.

    /// Creates or replaces a user.
    pub fn put_user(&self, tenant: &str, user: &User) -> Result<(), NotifyError> {
        let prefs = to_json("preferences", &user.preferences)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO notify_users (tenant_id, id, email, name, role, preferences, created_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (tenant_id, id) DO UPDATE SET email = excluded.email, name = excluded.name, role = excluded.role, preferences = excluded.preferences",
                params![tenant, user.id, user.email, user.name, user.role.as_str(), prefs, user.created_at_us],
            )
        })?;
        Ok(())
    }

    /// One user.
    pub fn user(&self, tenant: &str, id: &str) -> Result<Option<User>, NotifyError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, email, name, role, preferences, created_at_us, password_hash, totp_enabled, last_login_at_us FROM notify_users WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
                user_row,
            )
            .optional()
        })
    }

    /// Every user of a workspace.
    pub fn users(&self, tenant: &str) -> Result<Vec<User>, NotifyError> {
        self.with(|c| {
            let mut s = c.prepare("SELECT id, email, name, role, preferences, created_at_us, password_hash, totp_enabled, last_login_at_us FROM notify_users WHERE tenant_id = ?1 ORDER BY id")?;
            s.query_map(params![tenant], user_row)?.collect()
        })
    }

    /// Deletes a user (their inbox stays for the record); false if unknown.
    pub fn delete_user(&self, tenant: &str, id: &str) -> Result<bool, NotifyError> {
        Ok(self.with(|c| {
            c.execute(
                "DELETE FROM notify_users WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
            )
        })? > 0)
    }

    // Branding.

    /// The workspace's branding.
    pub fn branding(&self, tenant: &str) -> Result<Branding, NotifyError> {
        let text: Option<String> = self.with(|c| {
            c.query_row(
                "SELECT branding FROM notify_branding WHERE tenant_id = ?1",
                params![tenant],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Replaces the workspace's branding.
    pub fn set_branding(&self, tenant: &str, branding: &Branding) -> Result<(), NotifyError> {
        let text = to_json("branding", branding)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO notify_branding (tenant_id, branding) VALUES (?1, ?2) ON CONFLICT (tenant_id) DO UPDATE SET branding = excluded.branding",
                params![tenant, text],
            )
        })?;
        Ok(())
    }

    /// The workspace's logo: (content type, bytes).
    pub fn logo(&self, tenant: &str) -> Result<Option<(String, Vec<u8>)>, NotifyError> {
        self.with(|c| {
            c.query_row(
                "SELECT content_type, data FROM notify_logos WHERE tenant_id = ?1",
                params![tenant],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    /// Replaces the workspace's logo (`None`: removes it). Answers whether
    /// there was one.
    pub fn set_logo(
        &self,
        tenant: &str,
        logo: Option<(&str, &[u8])>,
        now_us: i64,
    ) -> Result<bool, NotifyError> {
        self.with(|c| match logo {
            Some((content_type, data)) => c
                .execute(
                    "INSERT INTO notify_logos (tenant_id, content_type, data, updated_at_us) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (tenant_id) DO UPDATE SET content_type = excluded.content_type, data = excluded.data, updated_at_us = excluded.updated_at_us",
                    params![tenant, content_type, data, now_us],
                )
                .map(|n| n > 0),
            None => c
                .execute("DELETE FROM notify_logos WHERE tenant_id = ?1", params![tenant])
                .map(|n| n > 0),
        })
    }

    // Endpoints.

    /// Creates or replaces an endpoint.
    pub fn put_endpoint(&self, tenant: &str, e: &Endpoint) -> Result<(), NotifyError> {
        let categories = to_json("endpoint categories", &e.categories)?;
        let secrets = to_json("endpoint secrets", &e.secrets)?;
        let flavour = match e.flavour {
            Flavour::Standard => "standard",
            Flavour::Slack => "slack",
        };
        self.with(|c| {
            c.execute(
                "INSERT INTO notify_endpoints (tenant_id, id, url, flavour, categories, secrets, enabled, created_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tenant_id, id) DO UPDATE SET url = excluded.url, flavour = excluded.flavour, categories = excluded.categories, secrets = excluded.secrets, enabled = excluded.enabled",
                params![tenant, e.id, e.url, flavour, categories, secrets, i64::from(e.enabled), e.created_at_us],
            )
        })?;
        Ok(())
    }

    /// The workspace's endpoints.
    pub fn endpoints(&self, tenant: &str) -> Result<Vec<Endpoint>, NotifyError> {
        self.with(|c| {
            let mut s = c.prepare("SELECT id, url, flavour, categories, secrets, enabled, created_at_us FROM notify_endpoints WHERE tenant_id = ?1 ORDER BY created_at_us, id")?;
            s.query_map(params![tenant], endpoint_row)?.collect()
        })
    }

    /// One endpoint.
    pub fn endpoint(&self, tenant: &str, id: &str) -> Result<Option<Endpoint>, NotifyError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, url, flavour, categories, secrets, enabled, created_at_us FROM notify_endpoints WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
                endpoint_row,
            )
            .optional()
        })
    }

    /// Deletes an endpoint; its queued deliveries fail with a reason.
    pub fn delete_endpoint(
        &self,
        tenant: &str,
        id: &str,
        now_us: i64,
    ) -> Result<bool, NotifyError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM notify_endpoints WHERE tenant_id = ?1 AND id = ?2", params![tenant, id])?;
            tx.execute(
                "UPDATE notify_deliveries SET status = 'failed', reason = 'endpoint deleted', updated_at_us = ?3
                 WHERE tenant_id = ?1 AND channel = 'webhook' AND target = ?2 AND status IN ('queued', 'deferred')",
                params![tenant, id, now_us],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    // Messages and deliveries.

    /// Inserts a message with its inbox rows and deliveries in one
    /// transaction, unless its idempotency key was used before.
    pub fn insert_message(
        &self,
        message: &Message,
        idempotency_key: Option<&str>,
        inbox: &[String],
        deliveries: &[NewDelivery],
    ) -> Result<Inserted, NotifyError> {
        let data = to_json("notification data", &message.data)?;
        let recipients = to_json("recipients", &message.recipients)?;
        self.with(|c| {
            let tx = c.transaction()?;
            if let Some(key) = idempotency_key {
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT id FROM notify_messages WHERE tenant_id = ?1 AND idempotency_key = ?2",
                        params![message.tenant, key],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(id) = existing {
                    return Ok(Inserted::Duplicate(id));
                }
            }
            tx.execute(
                &format!("INSERT INTO notify_messages ({MESSAGE_COLS}, idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    message.id,
                    message.tenant,
                    message.category,
                    message.severity,
                    message.title,
                    message.body,
                    data,
                    recipients,
                    message.created_at_us,
                    idempotency_key
                ],
            )?;
            for user in inbox {
                tx.execute(
                    "INSERT INTO notify_inbox (tenant_id, user_id, message_id, created_at_us) VALUES (?1, ?2, ?3, ?4)",
                    params![message.tenant, user, message.id, message.created_at_us],
                )?;
            }
            for d in deliveries {
                let delivered = (d.status == Status::Delivered).then_some(message.created_at_us);
                tx.execute(
                    &format!("INSERT INTO notify_deliveries ({DELIVERY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?9, ?10)"),
                    params![
                        d.id,
                        message.tenant,
                        message.id,
                        d.channel.as_str(),
                        d.target,
                        d.status.as_str(),
                        d.reason,
                        d.next_attempt_us,
                        message.created_at_us,
                        delivered
                    ],
                )?;
            }
            tx.commit()?;
            Ok(Inserted::New)
        })
    }

    /// One message.
    pub fn message(&self, tenant: &str, id: &str) -> Result<Option<Message>, NotifyError> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {MESSAGE_COLS} FROM notify_messages WHERE tenant_id = ?1 AND id = ?2"
                ),
                params![tenant, id],
                message_row,
            )
            .optional()
        })
    }

    /// Claims up to `limit` due deliveries (-> `sending`, attempts + 1)
    /// with their messages. Digest deliveries come grouped by user in
    /// the same claim.
    pub fn claim_due(
        &self,
        now_us: i64,
        limit: usize,
    ) -> Result<Vec<(Delivery, Message)>, NotifyError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let ids: Vec<String> = {
                let mut s = tx.prepare(
                    "SELECT id FROM notify_deliveries WHERE status IN ('queued', 'deferred', 'digest') AND next_attempt_us <= ?1
                     ORDER BY next_attempt_us, id LIMIT ?2",
                )?;
                s.query_map(params![now_us, limit as i64], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                tx.execute(
                    "UPDATE notify_deliveries SET status = 'sending', attempts = attempts + 1, updated_at_us = ?2,
                       reason = CASE WHEN status = 'digest' THEN 'digest' ELSE reason END
                     WHERE id = ?1",
                    params![id, now_us],
                )?;
                let d = tx.query_row(&format!("SELECT {DELIVERY_COLS} FROM notify_deliveries WHERE id = ?1"), params![id], delivery_row)?;
                let m = tx.query_row(
                    &format!("SELECT {MESSAGE_COLS} FROM notify_messages WHERE id = ?1"),
                    params![d.message_id],
                    message_row,
                )?;
                out.push((d, m));
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// Records the outcome of an attempt.
    pub fn finish(
        &self,
        id: &str,
        status: Status,
        reason: Option<&str>,
        next_attempt_us: i64,
        now_us: i64,
    ) -> Result<(), NotifyError> {
        let delivered = (status == Status::Delivered).then_some(now_us);
        self.with(|c| {
            c.execute(
                "UPDATE notify_deliveries SET status = ?2, reason = ?3, next_attempt_us = ?4, updated_at_us = ?5, delivered_at_us = coalesce(?6, delivered_at_us) WHERE id = ?1",
                params![id, status.as_str(), reason, next_attempt_us, now_us, delivered],
            )
        })?;
        Ok(())
    }

    /// Deliveries of a workspace, newest first, optionally of one message
    /// or with one status.
    pub fn deliveries(
        &self,
        tenant: &str,
        message: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<Delivery>, NotifyError> {
        self.with(|c| {
            let mut s = c.prepare(&format!(
                "SELECT {DELIVERY_COLS} FROM notify_deliveries WHERE tenant_id = ?1 AND (?2 IS NULL OR message_id = ?2) AND (?3 IS NULL OR status = ?3)
                 ORDER BY created_at_us DESC, id LIMIT ?4"
            ))?;
            s.query_map(params![tenant, message, status.map(Status::as_str), limit as i64], delivery_row)?.collect()
        })
    }

    /// A user's inbox, newest first.
    pub fn inbox(
        &self,
        tenant: &str,
        user: &str,
        filter: InboxFilter,
    ) -> Result<Vec<InboxItem>, NotifyError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT m.id, m.category, m.severity, m.title, m.body, m.data, i.created_at_us, i.read_at_us, i.archived_at_us
                 FROM notify_inbox i JOIN notify_messages m ON m.id = i.message_id
                 WHERE i.tenant_id = ?1 AND i.user_id = ?2
                   AND ((?3 = 0 AND i.archived_at_us IS NULL) OR (?3 = 1 AND i.archived_at_us IS NOT NULL))
                   AND (?4 = 0 OR i.read_at_us IS NULL)
                   AND (?5 IS NULL OR i.created_at_us < ?5)
                 ORDER BY i.created_at_us DESC, m.id DESC LIMIT ?6",
            )?;
            s.query_map(
                params![tenant, user, i64::from(filter.archived), i64::from(filter.unread), filter.before_us, filter.limit as i64],
                |r| {
                    Ok(InboxItem {
                        id: r.get(0)?,
                        category: r.get(1)?,
                        severity: r.get(2)?,
                        title: r.get(3)?,
                        body: r.get(4)?,
                        data: json_col::<Value>(r.get(5)?)?,
                        created_at_us: r.get(6)?,
                        read_at_us: r.get(7)?,
                        archived_at_us: r.get(8)?,
                    })
                },
            )?
            .collect()
        })
    }

    /// Unread, not archived notifications of a user.
    pub fn unread(&self, tenant: &str, user: &str) -> Result<u64, NotifyError> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM notify_inbox WHERE tenant_id = ?1 AND user_id = ?2 AND read_at_us IS NULL AND archived_at_us IS NULL",
                params![tenant, user],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n.max(0) as u64)
    }

    /// Sets read / unread / archived / unarchived on inbox rows (`ids`
    /// empty: all of the user's); returns the rows changed.
    pub fn mark(
        &self,
        tenant: &str,
        user: &str,
        ids: &[String],
        action: super::InboxAction,
        now_us: i64,
    ) -> Result<usize, NotifyError> {
        let set = match action {
            super::InboxAction::Read => "read_at_us = coalesce(read_at_us, ?3)",
            super::InboxAction::Unread => "read_at_us = NULL",
            super::InboxAction::Archive => "archived_at_us = coalesce(archived_at_us, ?3)",
            super::InboxAction::Unarchive => "archived_at_us = NULL",
        };
        self.with(|c| {
            let tx = c.transaction()?;
            let mut n = 0;
            if ids.is_empty() {
                n += tx.execute(
                    &format!("UPDATE notify_inbox SET {set} WHERE tenant_id = ?1 AND user_id = ?2 AND ?3 IS NOT NULL"),
                    params![tenant, user, now_us],
                )?;
            } else {
                for id in ids {
                    n += tx.execute(
                        &format!("UPDATE notify_inbox SET {set} WHERE tenant_id = ?1 AND user_id = ?2 AND ?3 IS NOT NULL AND message_id = ?4"),
                        params![tenant, user, now_us, id],
                    )?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }
}
