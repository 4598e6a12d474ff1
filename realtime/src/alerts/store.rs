//! Typed access to the alert tables (`alert_*`) in the metadata database;
//! [`crate::db`] opens it and creates the tables.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::rule::RuleSpec;
use super::state::Instance;
use crate::db::MetaDb;
use crate::notify::NotifyError;

/// A saved rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// `rule_...`.
    pub id: String,
    /// The definition.
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// Creation, µs.
    pub created_at_us: i64,
    /// Last change, µs.
    pub updated_at_us: i64,
    /// The user who made it (`None`: made with a key, or before rules
    /// had owners). Analysts change only their own rules.
    pub created_by: Option<String>,
}

/// A stored instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredInstance {
    /// Rule.
    pub rule_id: String,
    /// Group key (`k=v,...`; empty for an ungrouped rule).
    pub key: String,
    /// Labels of the group.
    pub labels: BTreeMap<String, String>,
    /// Last value.
    pub value: Option<f64>,
    /// Machine state.
    #[serde(flatten)]
    pub instance: Instance,
    /// Last evaluation, µs.
    pub last_eval_us: i64,
}

/// A history row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    /// Rule.
    pub rule_id: String,
    /// Group key.
    pub key: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When, µs.
    pub at_us: i64,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Value then.
    pub value: Option<f64>,
    /// Error text or other reason.
    pub reason: Option<String>,
    /// Whether a silence matched.
    pub silenced: bool,
}

/// A silence: mutes notifications of matching instances until `ends`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// `sil_...`.
    #[serde(default)]
    pub id: String,
    /// Only this rule (else any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// Labels that must all be equal (rule labels, group labels and
    /// `alertname`).
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// Start, µs.
    pub starts_at_us: i64,
    /// End, µs.
    pub ends_at_us: i64,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    /// Whether it mutes an instance of `rule_id` with `labels` at `now`.
    pub fn matches(&self, rule_id: &str, labels: &BTreeMap<String, String>, now_us: i64) -> bool {
        self.starts_at_us <= now_us
            && now_us < self.ends_at_us
            && self.rule_id.as_deref().is_none_or(|r| r == rule_id)
            && self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// A rule's notification group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Group {
    /// First un-notified change.
    pub pending_since_us: Option<i64>,
    /// Last notification.
    pub last_sent_us: Option<i64>,
    /// Notifications sent (the idempotency counter).
    pub sent: i64,
}

fn json<T: serde::de::DeserializeOwned>(text: String) -> rusqlite::Result<T> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Typed access to the alert tables.
pub struct AlertDb<'a>(pub &'a MetaDb);

impl AlertDb<'_> {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, NotifyError> {
        Ok(self.0.with(f)?)
    }

    /// Inserts or replaces a rule.
    pub fn put_rule(&self, tenant: &str, rule: &Rule) -> Result<(), NotifyError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO alert_rules (tenant_id, id, spec, created_at_us, updated_at_us, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant_id, id) DO UPDATE SET spec = excluded.spec, updated_at_us = excluded.updated_at_us",
                params![tenant, rule.id, text(&rule.spec), rule.created_at_us, rule.updated_at_us, rule.created_by],
            )
        })?;
        Ok(())
    }

    /// Rules of a workspace (`None`: of every workspace).
    pub fn rules(&self, tenant: Option<&str>) -> Result<Vec<(String, Rule)>, NotifyError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT tenant_id, id, spec, created_at_us, updated_at_us, created_by FROM alert_rules WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY tenant_id, created_at_us, id",
            )?;
            s.query_map(params![tenant], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Rule { id: r.get(1)?, spec: json(r.get(2)?)?, created_at_us: r.get(3)?, updated_at_us: r.get(4)?, created_by: r.get(5)? },
                ))
            })?
            .collect()
        })
    }

    /// One rule.
    pub fn rule(&self, tenant: &str, id: &str) -> Result<Option<Rule>, NotifyError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, spec, created_at_us, updated_at_us, created_by FROM alert_rules WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
                |r| Ok(Rule { id: r.get(0)?, spec: json(r.get(1)?)?, created_at_us: r.get(2)?, updated_at_us: r.get(3)?, created_by: r.get(4)? }),
            )
            .optional()
        })
    }

    /// Deletes a rule with its instances and group (history stays).
    pub fn delete_rule(&self, tenant: &str, id: &str) -> Result<bool, NotifyError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM alert_rules WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
            )?;
            tx.execute(
                "DELETE FROM alert_instances WHERE tenant_id = ?1 AND rule_id = ?2",
                params![tenant, id],
            )?;
            tx.execute(
                "DELETE FROM alert_groups WHERE tenant_id = ?1 AND rule_id = ?2",
                params![tenant, id],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// Instances of a rule (`None`: of the workspace).
    pub fn instances(
        &self,
        tenant: &str,
        rule: Option<&str>,
    ) -> Result<Vec<StoredInstance>, NotifyError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT rule_id, group_key, labels, value, instance, last_eval_us FROM alert_instances
                 WHERE tenant_id = ?1 AND (?2 IS NULL OR rule_id = ?2) ORDER BY rule_id, group_key",
            )?;
            s.query_map(params![tenant, rule], |r| {
                Ok(StoredInstance {
                    rule_id: r.get(0)?,
                    key: r.get(1)?,
                    labels: json(r.get(2)?)?,
                    value: r.get(3)?,
                    instance: json(r.get(4)?)?,
                    last_eval_us: r.get(5)?,
                })
            })?
            .collect()
        })
    }

    /// Writes an evaluation's outcome in one transaction: instances to
    /// keep, instances to drop, history rows and the group.
    pub fn commit_evaluation(
        &self,
        tenant: &str,
        rule_id: &str,
        keep: &[StoredInstance],
        drop: &[String],
        history: &[HistoryRow],
        group: Group,
    ) -> Result<(), NotifyError> {
        self.with(|c| {
            let tx = c.transaction()?;
            for i in keep {
                tx.execute(
                    "INSERT INTO alert_instances (tenant_id, rule_id, group_key, labels, value, instance, last_eval_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (tenant_id, rule_id, group_key) DO UPDATE SET labels = excluded.labels, value = excluded.value, instance = excluded.instance, last_eval_us = excluded.last_eval_us",
                    params![tenant, rule_id, i.key, text(&i.labels), i.value, text(&i.instance), i.last_eval_us],
                )?;
            }
            for k in drop {
                tx.execute("DELETE FROM alert_instances WHERE tenant_id = ?1 AND rule_id = ?2 AND group_key = ?3", params![tenant, rule_id, k])?;
            }
            for h in history {
                tx.execute(
                    "INSERT INTO alert_history (tenant_id, rule_id, group_key, labels, at_us, from_state, to_state, value, reason, silenced) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![tenant, rule_id, h.key, text(&h.labels), h.at_us, h.from, h.to, h.value, h.reason, i64::from(h.silenced)],
                )?;
            }
            tx.execute(
                "INSERT INTO alert_groups (tenant_id, rule_id, pending_since_us, last_sent_us, sent) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant_id, rule_id) DO UPDATE SET pending_since_us = excluded.pending_since_us, last_sent_us = excluded.last_sent_us, sent = excluded.sent",
                params![tenant, rule_id, group.pending_since_us, group.last_sent_us, group.sent],
            )?;
            tx.commit()
        })
    }

    /// A rule's group.
    pub fn group(&self, tenant: &str, rule_id: &str) -> Result<Group, NotifyError> {
        let g = self.with(|c| {
            c.query_row(
                "SELECT pending_since_us, last_sent_us, sent FROM alert_groups WHERE tenant_id = ?1 AND rule_id = ?2",
                params![tenant, rule_id],
                |r| Ok(Group { pending_since_us: r.get(0)?, last_sent_us: r.get(1)?, sent: r.get(2)? }),
            )
            .optional()
        })?;
        Ok(g.unwrap_or_default())
    }

    /// History, newest first.
    pub fn history(
        &self,
        tenant: &str,
        rule: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryRow>, NotifyError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT rule_id, group_key, labels, at_us, from_state, to_state, value, reason, silenced FROM alert_history
                 WHERE tenant_id = ?1 AND (?2 IS NULL OR rule_id = ?2) ORDER BY seq DESC LIMIT ?3",
            )?;
            s.query_map(params![tenant, rule, limit as i64], |r| {
                Ok(HistoryRow {
                    rule_id: r.get(0)?,
                    key: r.get(1)?,
                    labels: json(r.get(2)?)?,
                    at_us: r.get(3)?,
                    from: r.get(4)?,
                    to: r.get(5)?,
                    value: r.get(6)?,
                    reason: r.get(7)?,
                    silenced: r.get::<_, i64>(8)? != 0,
                })
            })?
            .collect()
        })
    }

    /// Saves a silence.
    pub fn put_silence(&self, tenant: &str, s: &Silence) -> Result<(), NotifyError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO alert_silences (tenant_id, id, silence) VALUES (?1, ?2, ?3) ON CONFLICT (tenant_id, id) DO UPDATE SET silence = excluded.silence",
                params![tenant, s.id, text(s)],
            )
        })?;
        Ok(())
    }

    /// Silences of a workspace.
    pub fn silences(&self, tenant: &str) -> Result<Vec<Silence>, NotifyError> {
        self.with(|c| {
            let mut s =
                c.prepare("SELECT silence FROM alert_silences WHERE tenant_id = ?1 ORDER BY id")?;
            s.query_map(params![tenant], |r| json(r.get(0)?))?.collect()
        })
    }

    /// Deletes a silence.
    pub fn delete_silence(&self, tenant: &str, id: &str) -> Result<bool, NotifyError> {
        Ok(self.with(|c| {
            c.execute(
                "DELETE FROM alert_silences WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
            )
        })? > 0)
    }
}
