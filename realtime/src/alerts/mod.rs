//! Alert rules: evaluation, the per-instance state machine, noise control
//! and notification.
//!
//! Every `tick` the evaluator runs the rules that are due (interval, cron
//! in the workspace's zone, or new data for `on_ingest` rules). A rule's
//! query yields one value per group; the condition turns each value into
//! an [`state::Observation`], and [`state::step`] moves that group's
//! instance. Every transition is stored in `alert_history` and published
//! on the workspace's `alerts` channel. Notable transitions (firing,
//! resolved, no data, error) of instances that are neither silenced nor
//! flapping make the rule's notification group pending; a pending group is
//! sent as one notification after `group_wait` (first) or `group_interval`
//! (later), and a group still firing is re-sent after `repeat_interval`.
//! The notification goes through [`Notifier::send`] with an idempotency
//! key per group send, so a crash between sending and recording cannot
//! send it twice.
//!
//! Alerts depend on [`crate::notify`] (they send through [`Notifier`] and
//! answer with its [`NotifyError`]), never the reverse. Their tables are in
//! the same metadata database ([`crate::db`], typed access in [`store`]);
//! the SQL tables `alert_history` and `alert_instances` ([`tables`]) read
//! them when queried.

pub mod bands;
pub mod rule;
pub mod state;
pub mod store;
pub mod templates;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use beacon_engine::Engine;
use chrono::{DateTime, TimeZone, Utc};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::notify::{Notifier, NotifyError, SendRequest, error_chain};
pub use bands::BandSeries;
use rule::{By, Compare, Condition, Direction, RuleSpec};
use state::{Instance, Observation, State, Timing};
use store::{AlertDb, Group, HistoryRow, Rule, Silence, StoredInstance};

/// Counter: rule evaluations by outcome (`ok`, `error`).
pub const EVALUATIONS_METRIC: &str = "beacon_alert_evaluations_total";
/// Counter: instance state transitions by target state.
pub const TRANSITIONS_METRIC: &str = "beacon_alert_transitions_total";

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// How often due rules are looked for and groups flushed.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Rules per workspace.
    pub max_rules: usize,
    /// Groups (instances) per rule.
    pub max_groups: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            max_rules: 500,
            max_groups: 1000,
        }
    }
}

/// A query row: group key, labels, value, matching events (metric rules).
type Row = (String, BTreeMap<String, String>, Option<f64>, Option<i64>);

/// One group's value at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Group key.
    pub key: String,
    /// Group labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: Option<f64>,
    /// What the condition says.
    pub observation: Observation,
}

/// A sample's observation for an instance in `state`: with a recovery
/// threshold, an alerting instance's condition holds until the value
/// crosses it (hysteresis), not the firing threshold.
pub fn recovering(condition: &Condition, state: State, s: &Sample) -> Observation {
    match (condition, s.value, &s.observation) {
        (
            Condition::Threshold {
                op,
                recover: Some(r),
                ..
            },
            Some(v),
            Observation::Condition(_),
        ) if matches!(state, State::Firing | State::Recovering) => {
            Observation::Condition(op.holds(v, *r))
        }
        _ => s.observation.clone(),
    }
}

/// The alert engine (cheap to clone).
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    notifier: Notifier,
    config: AlertsConfig,
    next_due: Mutex<HashMap<(String, String), i64>>,
    ingested: Mutex<HashSet<String>>,
    /// Evaluations run one at a time (the loop and "evaluate now" never
    /// step the same instance twice at once).
    evaluating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Alerts(..)")
    }
}

fn us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn bad(message: impl Into<String>) -> NotifyError {
    NotifyError::invalid(message)
}

/// A simulated transition.
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedTransition {
    /// When.
    pub at: String,
    /// Group key.
    pub key: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// From.
    pub from: State,
    /// To.
    pub to: State,
    /// Value.
    pub value: Option<f64>,
    /// Whether this transition would be notified.
    pub notify: bool,
}

/// One instance's value and state at one simulated evaluation (what the
/// web app's rule editor charts).
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedPoint {
    /// When.
    pub at: String,
    /// Group key.
    pub key: String,
    /// The observed value, if any.
    pub value: Option<f64>,
    /// The state after this evaluation.
    pub state: State,
}

/// At most this many points in a simulation's answer (the first ones).
const MAX_POINTS: usize = 20_000;

/// A simulation's result.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// Evaluations run.
    pub evaluations: usize,
    /// Each instance's value and state at each evaluation, in order (at
    /// most 20,000).
    pub points: Vec<SimulatedPoint>,
    /// Every transition in order.
    pub transitions: Vec<SimulatedTransition>,
    /// Firing notifications it would have caused (before grouping).
    pub firing: usize,
    /// When it would first have fired.
    pub first_firing_at: Option<String>,
}

impl Alerts {
    /// The engine on top of `notifier` (whose database holds the tables).
    pub fn new(notifier: Notifier, config: AlertsConfig) -> Self {
        let db = Arc::clone(notifier.db().metadata());
        for (name, table) in [
            (
                tables::HISTORY,
                Arc::new(tables::HistoryTable {
                    db: Arc::clone(&db),
                }) as Arc<dyn beacon_engine::system_tables::SystemTable>,
            ),
            (tables::INSTANCES, Arc::new(tables::InstancesTable { db })),
        ] {
            if let Err(e) = notifier.engine().register_system_table(name, table) {
                tracing::error!(table = name, error = %e, "Registering an alert table failed.");
            }
        }
        Self {
            inner: Arc::new(Inner {
                notifier,
                config,
                next_due: Mutex::default(),
                ingested: Mutex::default(),
                evaluating: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn db(&self) -> AlertDb<'_> {
        AlertDb(self.inner.notifier.db().metadata())
    }

    fn engine(&self) -> &Engine {
        self.inner.notifier.engine()
    }

    fn now(&self) -> i64 {
        self.inner.notifier.now_us()
    }

    /// The notifier.
    pub fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    // Rules.

    /// Validates a rule fully: statically, its users, and its SQL planned
    /// in the workspace's sandbox.
    pub async fn validate(&self, tenant: &str, spec: &RuleSpec) -> Result<(), NotifyError> {
        spec.validate_static()?;
        for u in &spec.notify.users {
            if self.inner.notifier.db().user(tenant, u)?.is_none() {
                return Err(bad(format!(
                    "notify.users: unknown user {u:?}; create it first (PUT /v1/users/{{id}})"
                )));
            }
        }
        if let Condition::Anomaly { .. } = spec.condition {
            let metric = spec.query.metric.as_deref().unwrap_or_default();
            if !bands::metrics().contains(&metric) {
                let list = bands::metrics().join(", ");
                return Err(bad(format!(
                    "anomaly conditions work on the metrics {list}, not {metric:?}"
                )));
            }
        }
        let sql = spec.sql();
        let engine = self.engine();
        let plan = async {
            let ctx = engine.query_session(tenant, Some(&sql)).await?;
            let df = engine.plan(&ctx, &sql).await?;
            Engine::parameter_types(&df)
        };
        let params = plan.await.map_err(|e| bad(format!("query.sql: {e}")))?;
        if params.len() > 2 {
            return Err(bad(
                "query.sql may use $1 (window start) and $2 (window end) only",
            ));
        }
        if matches!(spec.condition, Condition::Change { .. })
            && spec.query.sql.is_some()
            && params.is_empty()
        {
            return Err(bad(
                "change conditions compare windows: the SQL must filter on $1 and $2 (window start and end)",
            ));
        }
        Ok(())
    }

    /// Creates a rule, made by `created_by` (a user) if given.
    pub async fn create(
        &self,
        tenant: &str,
        spec: RuleSpec,
        created_by: Option<&str>,
    ) -> Result<Rule, NotifyError> {
        self.validate(tenant, &spec).await?;
        if self.db().rules(Some(tenant))?.len() >= self.inner.config.max_rules {
            return Err(bad(format!(
                "a workspace has at most {} alert rules",
                self.inner.config.max_rules
            )));
        }
        let now = self.now();
        let rule = Rule {
            id: crate::notify::new_id("rule"),
            spec,
            created_at_us: now,
            updated_at_us: now,
            created_by: created_by.map(str::to_owned),
        };
        self.db().put_rule(tenant, &rule)?;
        Ok(rule)
    }

    /// Replaces a rule's definition (its instances keep their state).
    pub async fn update(
        &self,
        tenant: &str,
        id: &str,
        spec: RuleSpec,
    ) -> Result<Rule, NotifyError> {
        self.validate(tenant, &spec).await?;
        let mut rule = self
            .db()
            .rule(tenant, id)?
            .ok_or_else(|| NotifyError::NotFound(format!("no alert rule {id:?}")))?;
        rule.spec = spec;
        rule.updated_at_us = self.now();
        self.db().put_rule(tenant, &rule)?;
        self.inner
            .next_due
            .lock()
            .remove(&(tenant.to_owned(), id.to_owned()));
        Ok(rule)
    }

    /// Deletes a rule.
    pub fn delete(&self, tenant: &str, id: &str) -> Result<bool, NotifyError> {
        self.db().delete_rule(tenant, id)
    }

    /// One rule.
    pub fn rule(&self, tenant: &str, id: &str) -> Result<Rule, NotifyError> {
        self.db()
            .rule(tenant, id)?
            .ok_or_else(|| NotifyError::NotFound(format!("no alert rule {id:?}")))
    }

    /// Rules of a workspace.
    pub fn rules(&self, tenant: &str) -> Result<Vec<Rule>, NotifyError> {
        Ok(self
            .db()
            .rules(Some(tenant))?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Instances (of one rule).
    pub fn instances(
        &self,
        tenant: &str,
        rule: Option<&str>,
    ) -> Result<Vec<StoredInstance>, NotifyError> {
        self.db().instances(tenant, rule)
    }

    /// History, newest first.
    pub fn history(
        &self,
        tenant: &str,
        rule: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryRow>, NotifyError> {
        self.db().history(tenant, rule, limit)
    }

    /// Adds a silence.
    pub fn silence(&self, tenant: &str, mut s: Silence) -> Result<Silence, NotifyError> {
        if s.ends_at_us <= s.starts_at_us {
            return Err(bad("a silence must end after it starts"));
        }
        if s.ends_at_us - s.starts_at_us > 366 * 86_400_000_000 {
            return Err(bad("a silence lasts at most a year"));
        }
        if s.rule_id.is_none() && s.matchers.is_empty() {
            return Err(bad("a silence needs a rule_id or at least one matcher"));
        }
        if s.matchers.len() > 32 || s.comment.len() > 1000 {
            return Err(bad("at most 32 matchers and a 1000-byte comment"));
        }
        if let Some(r) = &s.rule_id {
            self.rule(tenant, r)?;
        }
        s.id = crate::notify::new_id("sil");
        self.db().put_silence(tenant, &s)?;
        Ok(s)
    }

    /// Silences.
    pub fn silences(&self, tenant: &str) -> Result<Vec<Silence>, NotifyError> {
        self.db().silences(tenant)
    }

    /// Deletes (expires) a silence.
    pub fn unsilence(&self, tenant: &str, id: &str) -> Result<bool, NotifyError> {
        self.db().delete_silence(tenant, id)
    }

    // Evaluation.

    /// Runs a rule's query for the window ending at `at_us` and applies
    /// the condition.
    pub async fn observe(
        &self,
        tenant: &str,
        spec: &RuleSpec,
        at_us: i64,
        bands: Option<&BandSeries>,
    ) -> Result<Vec<Sample>, String> {
        let window = us(spec.query.window);
        if let Condition::Anomaly {
            direction,
            sensitivity,
            interval,
        } = &spec.condition
        {
            let owned;
            let series = match bands {
                Some(b) => b,
                None => {
                    owned = bands::bands(
                        self.engine(),
                        tenant,
                        spec.query.metric.as_deref().unwrap_or_default(),
                        interval,
                        sensitivity,
                    )
                    .await?;
                    &owned
                }
            };
            // The last complete period at `at_us` that has a band.
            let i = (0..series.starts_us.len()).rev().find(|&i| {
                series.starts_us[i] + series.step_us <= at_us && series.lower[i].is_finite()
            });
            let Some(i) = i else {
                return Ok(vec![Sample {
                    key: String::new(),
                    labels: BTreeMap::new(),
                    value: None,
                    observation: Observation::NoData,
                }]);
            };
            let v = series.values[i];
            let (lo, hi) = (series.lower[i], series.upper[i]);
            let outside = match direction {
                Direction::Above => v > hi,
                Direction::Below => v < lo,
                Direction::Both => v > hi || v < lo,
            };
            let mut labels = BTreeMap::new();
            labels.insert("period".into(), crate::notify::rfc3339(series.starts_us[i]));
            labels.insert("expected".into(), format!("{:.2}", series.expected[i]));
            labels.insert("band".into(), format!("{lo:.2}..{hi:.2}"));
            return Ok(vec![Sample {
                key: String::new(),
                labels,
                value: Some(v),
                observation: Observation::Condition(outside),
            }]);
        }
        let (labelled, current) = self.run_query(tenant, spec, at_us - window, at_us).await?;
        let previous = match &spec.condition {
            Condition::Change { compare, .. } => {
                let shift = match compare {
                    Compare::PreviousPeriod => window,
                    Compare::LastWeek => 7 * 86_400_000_000,
                };
                Some(
                    self.run_query(tenant, spec, at_us - window - shift, at_us - shift)
                        .await?
                        .1,
                )
            }
            _ => None,
        };
        let grouped = spec.query.group_by.is_some() || labelled;
        let mut out = Vec::new();
        if current.is_empty() && !grouped {
            let observation = match spec.condition {
                Condition::NoData => Observation::Condition(true),
                _ => Observation::NoData,
            };
            out.push(Sample {
                key: String::new(),
                labels: BTreeMap::new(),
                value: None,
                observation,
            });
            return Ok(out);
        }
        let prev: HashMap<&str, Option<f64>> = previous
            .iter()
            .flatten()
            .map(|(k, _, v, _)| (k.as_str(), *v))
            .collect();
        for (key, labels, value, count) in &current {
            let empty = value.is_none() || *count == Some(0);
            let observation = match (&spec.condition, value) {
                (Condition::NoData, _) => Observation::Condition(empty),
                (_, None) => Observation::NoData,
                (Condition::Threshold { op, value: t, .. }, Some(v)) => {
                    Observation::Condition(op.holds(*v, *t))
                }
                (
                    Condition::Change {
                        op, value: t, by, ..
                    },
                    Some(v),
                ) => match prev.get(key.as_str()).copied().flatten() {
                    None => Observation::Condition(false),
                    Some(p) => match by {
                        By::Absolute => Observation::Condition(op.holds(v - p, *t)),
                        By::Percent if p == 0.0 => Observation::Condition(false),
                        By::Percent => {
                            Observation::Condition(op.holds((v - p) / p.abs() * 100.0, *t))
                        }
                    },
                },
                (Condition::Anomaly { .. }, Some(_)) => Observation::Condition(false),
            };
            out.push(Sample {
                key: key.clone(),
                labels: labels.clone(),
                value: *value,
                observation,
            });
        }
        Ok(out)
    }

    /// Runs the rule's SQL for `[start, end)`: whether the result has
    /// label columns (a grouped rule, even with no rows), and per row
    /// (key, labels, value, count).
    async fn run_query(
        &self,
        tenant: &str,
        spec: &RuleSpec,
        start: i64,
        end: i64,
    ) -> Result<(bool, Vec<Row>), String> {
        let sql = spec.sql();
        let engine = self.engine();
        let run = async {
            let ctx = engine.query_session(tenant, Some(&sql)).await?;
            let mut df = engine.plan(&ctx, &sql).await?;
            let n = Engine::parameter_types(&df)?.len();
            if n > 0 {
                let ts = |v: i64| ScalarValue::TimestampMicrosecond(Some(v), Some("UTC".into()));
                let params: Vec<ScalarValue> = [ts(start), ts(end)].into_iter().take(n).collect();
                df = df
                    .with_param_values(params)
                    .map_err(beacon_engine::Error::from)?;
            }
            let (schema, mut stream) = engine.start(df).await?;
            let mut batches = Vec::new();
            let mut rows = 0;
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows();
                batches.push(b);
                if rows > self.inner.config.max_groups {
                    break;
                }
            }
            Ok::<_, beacon_engine::Error>((schema, batches))
        };
        let (schema, batches) = run.await.map_err(|e| e.to_string())?;
        let metric = spec.query.metric.is_some();
        let labelled = {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let value_col = names
                .iter()
                .position(|n| *n == "value")
                .unwrap_or(names.len().saturating_sub(1));
            (0..names.len()).any(|i| i != value_col && !(metric && names[i] == "n"))
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > self.inner.config.max_groups {
            return Err(format!(
                "the query returned more than {} groups",
                self.inner.config.max_groups
            ));
        }
        let mut out = Vec::with_capacity(rows);
        for batch in &batches {
            let schema = batch.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let value_col = names
                .iter()
                .position(|n| *n == "value")
                .unwrap_or(names.len().saturating_sub(1));
            let values = arrow::compute::cast(batch.column(value_col), &DataType::Float64)
                .map_err(|e| {
                    format!(
                        "the value column {:?} is not a number: {e}",
                        names[value_col]
                    )
                })?;
            let values = values.as_primitive::<Float64Type>();
            let count_col = if metric {
                names.iter().position(|n| *n == "n")
            } else {
                None
            };
            let counts = count_col
                .map(|i| arrow::compute::cast(batch.column(i), &DataType::Int64))
                .transpose()
                .map_err(|e| e.to_string())?;
            let label_cols: Vec<usize> = (0..names.len())
                .filter(|i| *i != value_col && Some(*i) != count_col)
                .collect();
            let texts: Vec<_> = label_cols
                .iter()
                .map(|&i| arrow::compute::cast(batch.column(i), &DataType::Utf8))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            for r in 0..batch.num_rows() {
                let mut labels = BTreeMap::new();
                for (j, &i) in label_cols.iter().enumerate() {
                    let col = texts[j].as_string::<i32>();
                    let v = if col.is_null(r) {
                        "".to_owned()
                    } else {
                        col.value(r).to_owned()
                    };
                    labels.insert(names[i].to_owned(), v);
                }
                let key = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let value = (!values.is_null(r))
                    .then(|| values.value(r))
                    .filter(|v| v.is_finite());
                let count = counts
                    .as_ref()
                    .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>())
                    .map(|c| if c.is_null(r) { 0 } else { c.value(r) });
                out.push((key, labels, value, count));
            }
        }
        Ok((labelled, out))
    }

    fn timing(spec: &RuleSpec) -> Timing {
        Timing {
            for_us: us(spec.for_),
            keep_us: us(spec.keep_firing_for),
            no_data: spec.no_data,
            on_error: spec.on_error,
            flap_threshold: spec.flap.threshold,
            flap_window_us: us(spec.flap.window),
        }
    }

    fn all_labels(rule: &Rule, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut all = rule.spec.labels.clone();
        all.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        all.insert("alertname".into(), rule.spec.name.clone());
        all
    }

    /// Evaluates one rule now: steps its instances, stores and publishes
    /// transitions, and sends its group if due.
    pub async fn evaluate(&self, tenant: &str, rule: &Rule) -> Result<(), NotifyError> {
        let _one_at_a_time = self.inner.evaluating.lock().await;
        let now = self.now();
        let samples = self.observe(tenant, &rule.spec, now, None).await;
        metrics::counter!(EVALUATIONS_METRIC, "outcome" => if samples.is_ok() { "ok" } else { "error" }).increment(1);
        let timing = Self::timing(&rule.spec);
        let existing: HashMap<String, StoredInstance> = self
            .db()
            .instances(tenant, Some(&rule.id))?
            .into_iter()
            .map(|i| (i.key.clone(), i))
            .collect();
        let silences: Vec<Silence> = self.db().silences(tenant)?;
        let mut group = self.db().group(tenant, &rule.id)?;
        // Observations per key: the query's rows; groups that vanished are
        // "good" (or "bad" for a no-data condition); a failed query is an
        // error for every known instance (or the single one).
        let mut obs: Vec<Sample> = match &samples {
            Ok(s) => s.clone(),
            Err(e) => {
                let keys: Vec<&StoredInstance> = existing.values().collect();
                if keys.is_empty() {
                    vec![Sample {
                        key: String::new(),
                        labels: BTreeMap::new(),
                        value: None,
                        observation: Observation::Error(e.clone()),
                    }]
                } else {
                    keys.iter()
                        .map(|i| Sample {
                            key: i.key.clone(),
                            labels: i.labels.clone(),
                            value: i.value,
                            observation: Observation::Error(e.clone()),
                        })
                        .collect()
                }
            }
        };
        if samples.is_ok() {
            let seen: HashSet<String> = obs.iter().map(|s| s.key.clone()).collect();
            for i in existing.values() {
                if !seen.contains(&i.key) {
                    let gone = matches!(rule.spec.condition, Condition::NoData);
                    obs.push(Sample {
                        key: i.key.clone(),
                        labels: i.labels.clone(),
                        value: None,
                        observation: Observation::Condition(gone),
                    });
                }
            }
        }
        let mut keep = Vec::new();
        let mut drop = Vec::new();
        let mut history = Vec::new();
        let mut silenced_keys = HashSet::new();
        for s in obs {
            let mut stored = existing
                .get(&s.key)
                .cloned()
                .unwrap_or_else(|| StoredInstance {
                    rule_id: rule.id.clone(),
                    key: s.key.clone(),
                    labels: s.labels.clone(),
                    value: None,
                    instance: Instance::new(now),
                    last_eval_us: now,
                });
            if !s.labels.is_empty() {
                stored.labels = s.labels.clone();
            }
            stored.value = s
                .value
                .or(if matches!(s.observation, Observation::Error(_)) {
                    stored.value
                } else {
                    None
                });
            stored.last_eval_us = now;
            let all = Self::all_labels(rule, &stored.labels);
            let silenced = silences.iter().any(|x| x.matches(&rule.id, &all, now));
            if silenced {
                silenced_keys.insert(stored.key.clone());
            }
            let observation = recovering(&rule.spec.condition, stored.instance.state, &s);
            let transition = state::step(&mut stored.instance, &observation, now, &timing);
            let settled = state::settle(&mut stored.instance, now, &timing);
            if let Some((from, to)) = transition {
                let reason = match &s.observation {
                    Observation::Error(e) => Some(e.clone()),
                    _ => None,
                };
                metrics::counter!(TRANSITIONS_METRIC, "to" => to.as_str()).increment(1);
                self.publish_transition(tenant, rule, &stored, from, to, silenced, now);
                history.push(HistoryRow {
                    rule_id: rule.id.clone(),
                    key: stored.key.clone(),
                    labels: stored.labels.clone(),
                    at_us: now,
                    from: from.as_str().into(),
                    to: to.as_str().into(),
                    value: stored.value,
                    reason,
                    silenced,
                });
                if state::notable(from, to) && !silenced && !stored.instance.flapping {
                    group.pending_since_us.get_or_insert(now);
                }
            }
            if settled && !silenced && stored.instance.notified != Some(stored.instance.state) {
                group.pending_since_us.get_or_insert(now);
            }
            // Forget quiet instances of groups that vanished or never fired.
            let idle = stored.instance.state == State::Normal
                && stored.instance.notified.is_none()
                && !stored.instance.flapping
                && stored.instance.flips.is_empty();
            // A group that is fine and was never bad is not stored.
            let known = existing.contains_key(&s.key);
            let forget =
                idle && transition.is_none() && (!s.key.is_empty() || (s.value.is_none() && known));
            if !forget {
                keep.push(stored);
            } else if known {
                drop.push(stored.key.clone());
            }
        }
        self.flush(tenant, rule, &mut keep, &silenced_keys, &mut group, now)?;
        self.db()
            .commit_evaluation(tenant, &rule.id, &keep, &drop, &history, group)
    }

    #[allow(clippy::too_many_arguments)]
    fn publish_transition(
        &self,
        tenant: &str,
        rule: &Rule,
        i: &StoredInstance,
        from: State,
        to: State,
        silenced: bool,
        now: i64,
    ) {
        let payload = json!({
            "rule_id": rule.id, "rule": rule.spec.name, "severity": rule.spec.severity,
            "key": i.key, "labels": i.labels, "from": from, "to": to, "value": i.value,
            "at": crate::notify::rfc3339(now), "silenced": silenced, "flapping": i.instance.flapping,
        });
        let _ = self.inner.notifier.hub().publish(
            tenant,
            crate::live::channels::ALERTS,
            "alert",
            &payload,
            Some(to.as_str().to_owned()),
        );
    }

    /// Sends the rule's group if due (see the module docs).
    fn flush(
        &self,
        tenant: &str,
        rule: &Rule,
        instances: &mut [StoredInstance],
        silenced: &HashSet<String>,
        group: &mut Group,
        now: i64,
    ) -> Result<(), NotifyError> {
        let n = &rule.spec.notify;
        let muted = |i: &StoredInstance| silenced.contains(&i.key) || i.instance.flapping;
        let firing: Vec<usize> = (0..instances.len())
            .filter(|&k| instances[k].instance.state.alerting() && !muted(&instances[k]))
            .collect();
        let resolved: Vec<usize> = (0..instances.len())
            .filter(|&k| {
                let i = &instances[k];
                !i.instance.state.alerting()
                    && i.instance.notified.is_some_and(State::alerting)
                    && !muted(i)
            })
            .collect();
        // As in Alertmanager: a group that has nothing notified as alerting
        // is new and waits `group_wait`; an active group sends its changes
        // at most every `group_interval`.
        let active = instances
            .iter()
            .any(|i| i.instance.notified.is_some_and(State::alerting));
        let due_change = match group.pending_since_us {
            None => false,
            Some(_) if active => group
                .last_sent_us
                .is_none_or(|l| l + us(n.group_interval) <= now),
            Some(p) => p + us(n.group_wait) <= now,
        };
        let due_repeat = group.pending_since_us.is_none()
            && !firing.is_empty()
            && group
                .last_sent_us
                .is_some_and(|l| l + us(n.repeat_interval) <= now);
        if !(due_change || due_repeat) {
            return Ok(());
        }
        group.pending_since_us = None;
        if firing.is_empty() && resolved.is_empty() {
            return Ok(());
        }
        let kind = if firing.is_empty() {
            "resolved"
        } else {
            "firing"
        };
        let title = if firing.is_empty() {
            format!("[RESOLVED] {}", rule.spec.name)
        } else {
            format!("[FIRING:{}] {}", firing.len(), rule.spec.name)
        };
        let describe = |i: &StoredInstance| {
            let what = if i.labels.is_empty() {
                rule.spec.name.clone()
            } else {
                i.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let value = i
                .value
                .map_or_else(|| "no value".to_owned(), |v| format!("{v:.2}"));
            format!("{what}: {value} ({})", i.instance.state.as_str())
        };
        let mut lines: Vec<String> = firing.iter().map(|&k| describe(&instances[k])).collect();
        if !resolved.is_empty() {
            lines.push(format!(
                "Resolved: {}",
                resolved
                    .iter()
                    .map(|&k| describe(&instances[k]))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let alerts: Vec<Value> = firing
            .iter()
            .chain(&resolved)
            .map(|&k| {
                let i = &instances[k];
                json!({"key": i.key, "labels": i.labels, "state": i.instance.state, "value": i.value, "since": crate::notify::rfc3339(i.instance.since_us)})
            })
            .collect();
        // Users deleted since the rule was saved are skipped, not fatal.
        let recipients: Vec<String> = n
            .users
            .iter()
            .filter(|u| {
                self.inner
                    .notifier
                    .db()
                    .user(tenant, u)
                    .ok()
                    .flatten()
                    .is_some()
            })
            .cloned()
            .collect();
        let request = SendRequest {
            recipients: recipients.clone(),
            category: "alert".into(),
            severity: Some(if firing.is_empty() {
                "info".into()
            } else {
                rule.spec.severity.clone()
            }),
            title,
            body: format!(
                "{}{}",
                if rule.spec.description.is_empty() {
                    String::new()
                } else {
                    format!("{}\n", rule.spec.description)
                },
                lines.join("\n")
            ),
            data: Some(
                json!({"kind": kind, "rule_id": rule.id, "rule": rule.spec.name, "severity": rule.spec.severity, "labels": rule.spec.labels, "alerts": alerts, "repeat": due_repeat && !due_change}),
            ),
            channels: n.channels.clone(),
            idempotency_key: Some(format!("alert:{}:{}", rule.id, group.sent + 1)),
            ..SendRequest::default()
        };
        if recipients.is_empty()
            && n.channels
                .as_ref()
                .is_some_and(|c| !c.iter().any(|c| c == "webhook"))
        {
            tracing::debug!(rule = %rule.id, "Alert group has no recipients.");
        } else if let Err(e) = self.inner.notifier.send(tenant, request) {
            tracing::warn!(rule = %rule.id, error = %error_chain(&e), "Alert notification refused.");
        }
        group.sent += 1;
        group.last_sent_us = Some(now);
        for &k in firing.iter().chain(&resolved) {
            let i = &mut instances[k].instance;
            i.notified = i.state.alerting().then_some(i.state);
        }
        Ok(())
    }

    /// Runs `spec` over past data (`from..to`, at the rule's interval or
    /// `step`) without saving anything: when it would have fired.
    pub async fn simulate(
        &self,
        tenant: &str,
        spec: &RuleSpec,
        from_us: i64,
        to_us: i64,
        step: Option<Duration>,
    ) -> Result<Simulation, NotifyError> {
        self.validate(tenant, spec).await?;
        if to_us <= from_us {
            return Err(bad("to must be after from"));
        }
        let tz = self.engine().calendar(tenant).tz;
        let times: Vec<i64> = match (step, spec.schedule.every, &spec.schedule.cron) {
            (Some(s), _, _) | (None, Some(s), _) => {
                let s = us(s).max(1_000_000);
                if (to_us - from_us) / s > 5000 {
                    return Err(bad(
                        "the simulation would run more than 5000 evaluations; shorten the range or give a longer step",
                    ));
                }
                (0..)
                    .map(|k| from_us + k * s)
                    .take_while(|t| *t <= to_us)
                    .collect()
            }
            (None, None, Some(cron)) => {
                let cron: croner::Cron = cron
                    .parse()
                    .map_err(|e| bad(format!("schedule.cron: {e}")))?;
                let mut t = tz.from_utc_datetime(
                    &DateTime::<Utc>::from_timestamp_micros(from_us)
                        .unwrap_or_default()
                        .naive_utc(),
                );
                let mut out = Vec::new();
                while let Ok(next) = cron.find_next_occurrence(&t, true) {
                    let u = next.timestamp_micros();
                    if u > to_us {
                        break;
                    }
                    out.push(u);
                    if out.len() > 5000 {
                        return Err(bad(
                            "the simulation would run more than 5000 evaluations; shorten the range",
                        ));
                    }
                    t = next + chrono::Duration::seconds(1);
                }
                out
            }
            (None, None, None) => {
                let s = 60_000_000;
                if (to_us - from_us) / s > 5000 {
                    return Err(bad(
                        "on_ingest rules are simulated every minute: at most 5000 minutes; shorten the range or give a step",
                    ));
                }
                (0..)
                    .map(|k| from_us + k * s)
                    .take_while(|t| *t <= to_us)
                    .collect()
            }
        };
        let bands = match &spec.condition {
            Condition::Anomaly {
                sensitivity,
                interval,
                ..
            } => Some(
                bands::bands(
                    self.engine(),
                    tenant,
                    spec.query.metric.as_deref().unwrap_or_default(),
                    interval,
                    sensitivity,
                )
                .await
                .map_err(bad)?,
            ),
            _ => None,
        };
        let timing = Self::timing(spec);
        let mut instances: HashMap<String, (Instance, BTreeMap<String, String>)> = HashMap::new();
        let mut transitions = Vec::new();
        let mut points = Vec::new();
        for &t in &times {
            let obs = match self.observe(tenant, spec, t, bands.as_ref()).await {
                Ok(s) => s,
                Err(e) => vec![Sample {
                    key: String::new(),
                    labels: BTreeMap::new(),
                    value: None,
                    observation: Observation::Error(e),
                }],
            };
            let seen: HashSet<String> = obs.iter().map(|s| s.key.clone()).collect();
            let mut all = obs;
            for (k, (_, labels)) in &instances {
                if !seen.contains(k) {
                    all.push(Sample {
                        key: k.clone(),
                        labels: labels.clone(),
                        value: None,
                        observation: Observation::Condition(matches!(
                            spec.condition,
                            Condition::NoData
                        )),
                    });
                }
            }
            for s in all {
                let entry = instances
                    .entry(s.key.clone())
                    .or_insert_with(|| (Instance::new(t), s.labels.clone()));
                let observation = recovering(&spec.condition, entry.0.state, &s);
                if let Some((from, to)) = state::step(&mut entry.0, &observation, t, &timing) {
                    transitions.push(SimulatedTransition {
                        at: crate::notify::rfc3339(t),
                        key: s.key.clone(),
                        labels: entry.1.clone(),
                        from,
                        to,
                        value: s.value,
                        notify: state::notable(from, to) && !entry.0.flapping,
                    });
                }
                if points.len() < MAX_POINTS {
                    points.push(SimulatedPoint {
                        at: crate::notify::rfc3339(t),
                        key: s.key.clone(),
                        value: s.value,
                        state: entry.0.state,
                    });
                }
            }
        }
        let firing: Vec<&SimulatedTransition> = transitions
            .iter()
            .filter(|t| t.to == State::Firing && t.notify)
            .collect();
        Ok(Simulation {
            evaluations: times.len(),
            points,
            firing: firing.len(),
            first_firing_at: firing.first().map(|t| t.at.clone()),
            transitions,
        })
    }

    // The loop.

    fn next_after(&self, tenant: &str, spec: &RuleSpec, now: i64) -> i64 {
        if let Some(every) = spec.schedule.every {
            return now + us(every);
        }
        if let Some(cron) = spec
            .schedule
            .cron
            .as_deref()
            .and_then(|c| c.parse::<croner::Cron>().ok())
        {
            let tz = self.engine().calendar(tenant).tz;
            let t = tz.from_utc_datetime(
                &DateTime::<Utc>::from_timestamp_micros(now)
                    .unwrap_or_default()
                    .naive_utc(),
            );
            if let Ok(next) = cron.find_next_occurrence(&t, false) {
                return next.timestamp_micros();
            }
        }
        i64::MAX
    }

    /// One pass: evaluates every due rule.
    pub async fn tick(&self) {
        let rules = match self.db().rules(None) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "Reading alert rules failed.");
                return;
            }
        };
        let ingested: HashSet<String> = std::mem::take(&mut *self.inner.ingested.lock());
        let now = self.now();
        for (tenant, rule) in rules {
            if !rule.spec.enabled {
                continue;
            }
            let key = (tenant.clone(), rule.id.clone());
            let due = {
                let mut next = self.inner.next_due.lock();
                let at = *next.entry(key.clone()).or_insert(now);
                let due = if rule.spec.schedule.on_ingest {
                    ingested.contains(&tenant) || at <= now
                } else {
                    at <= now
                };
                if due {
                    // on_ingest rules also run every 10 minutes, so `for`
                    // and keep_firing_for advance without new data.
                    let next_at = if rule.spec.schedule.on_ingest {
                        now + 600_000_000
                    } else {
                        self.next_after(&tenant, &rule.spec, now)
                    };
                    next.insert(key, next_at);
                }
                due
            };
            if due && let Err(e) = self.evaluate(&tenant, &rule).await {
                tracing::warn!(rule = %rule.id, error = %error_chain(&e), "Alert evaluation failed.");
            }
        }
    }

    /// Evaluates rules until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut feed = self.engine().store().subscribe();
        let mut tick = tokio::time::interval(self.inner.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => self.tick().await,
                got = feed.recv() => match got {
                    Ok(batch) => { self.inner.ingested.lock().insert(batch.tenant.clone()); }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let tenants: Vec<String> = self.db().rules(None).map(|r| r.into_iter().map(|(t, _)| t).collect()).unwrap_or_default();
                        self.inner.ingested.lock().extend(tenants);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    }
}

/// The `alert_history` and `alert_instances` SQL tables: system tables of
/// the engine ([`beacon_engine::system_tables`]) that read the alert tables
/// of the metadata database when a query scans them, for the querying
/// workspace only.
pub mod tables {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanBuilder, Float64Builder, RecordBatch, StringBuilder,
        TimestampMicrosecondBuilder,
    };
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
    use beacon_engine::system_tables::SystemTable;
    use datafusion::error::DataFusionError;

    use super::store::{AlertDb, HistoryRow, StoredInstance};
    use crate::db::MetaDb;

    /// Table name.
    pub const HISTORY: &str = "alert_history";
    /// Table name.
    pub const INSTANCES: &str = "alert_instances";
    /// Rows of [`HISTORY`] a workspace sees (the newest, oldest first).
    pub const HISTORY_ROWS: usize = 50_000;

    /// [`HISTORY`] over the metadata database.
    #[derive(Debug)]
    pub struct HistoryTable {
        /// The database.
        pub db: Arc<MetaDb>,
    }

    impl SystemTable for HistoryTable {
        fn schema(&self) -> SchemaRef {
            history_schema()
        }

        fn scan(&self, tenant: &str) -> datafusion::error::Result<RecordBatch> {
            let rows = AlertDb(&self.db)
                .history(tenant, None, HISTORY_ROWS)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok(history_batch(&rows)?)
        }
    }

    /// [`INSTANCES`] over the metadata database.
    #[derive(Debug)]
    pub struct InstancesTable {
        /// The database.
        pub db: Arc<MetaDb>,
    }

    impl SystemTable for InstancesTable {
        fn schema(&self) -> SchemaRef {
            instances_schema()
        }

        fn scan(&self, tenant: &str) -> datafusion::error::Result<RecordBatch> {
            let rows = AlertDb(&self.db)
                .instances(tenant, None)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok(instances_batch(&rows)?)
        }
    }

    fn ts() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }

    /// Schema of [`HISTORY`].
    pub fn history_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("rule_id", DataType::Utf8, false),
            Field::new("group_key", DataType::Utf8, false),
            Field::new("labels", DataType::Utf8, false),
            Field::new("at", ts(), false),
            Field::new("from_state", DataType::Utf8, false),
            Field::new("to_state", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new("reason", DataType::Utf8, true),
            Field::new("silenced", DataType::Boolean, false),
        ]))
    }

    /// Rows of [`HISTORY`].
    pub fn history_batch(rows: &[HistoryRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
        let (mut rule, mut key, mut labels, mut from, mut to, mut reason) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut value = Float64Builder::new();
        let mut silenced = BooleanBuilder::new();
        for r in rows.iter().rev() {
            rule.append_value(&r.rule_id);
            key.append_value(&r.key);
            labels.append_value(serde_json::to_string(&r.labels).unwrap_or_default());
            at.append_value(r.at_us);
            from.append_value(&r.from);
            to.append_value(&r.to);
            value.append_option(r.value);
            reason.append_option(r.reason.as_deref());
            silenced.append_value(r.silenced);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(rule.finish()),
            Arc::new(key.finish()),
            Arc::new(labels.finish()),
            Arc::new(at.finish()),
            Arc::new(from.finish()),
            Arc::new(to.finish()),
            Arc::new(value.finish()),
            Arc::new(reason.finish()),
            Arc::new(silenced.finish()),
        ];
        RecordBatch::try_new(history_schema(), cols)
    }

    /// Schema of [`INSTANCES`].
    pub fn instances_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("rule_id", DataType::Utf8, false),
            Field::new("group_key", DataType::Utf8, false),
            Field::new("labels", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("since", ts(), false),
            Field::new("value", DataType::Float64, true),
            Field::new("flapping", DataType::Boolean, false),
            Field::new("last_evaluated", ts(), false),
        ]))
    }

    /// Rows of [`INSTANCES`].
    pub fn instances_batch(
        rows: &[StoredInstance],
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let (mut rule, mut key, mut labels, mut state) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut since = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut last = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut value = Float64Builder::new();
        let mut flapping = BooleanBuilder::new();
        for r in rows {
            rule.append_value(&r.rule_id);
            key.append_value(&r.key);
            labels.append_value(serde_json::to_string(&r.labels).unwrap_or_default());
            state.append_value(r.instance.state.as_str());
            since.append_value(r.instance.since_us);
            value.append_option(r.value);
            flapping.append_value(r.instance.flapping);
            last.append_value(r.last_eval_us);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(rule.finish()),
            Arc::new(key.finish()),
            Arc::new(labels.finish()),
            Arc::new(state.finish()),
            Arc::new(since.finish()),
            Arc::new(value.finish()),
            Arc::new(flapping.finish()),
            Arc::new(last.finish()),
        ];
        RecordBatch::try_new(instances_schema(), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::rule::Op;
    use super::rule::{ErrorPolicy, NoDataPolicy};
    use super::state::{Instance, Timing};
    use super::*;

    /// A value hovering at the threshold fires once and resolves only
    /// when it falls to the recovery threshold.
    #[test]
    fn a_recovery_threshold_keeps_a_hovering_value_from_flapping() {
        let timing = Timing {
            for_us: 0,
            keep_us: 0,
            no_data: NoDataPolicy::NoData,
            on_error: ErrorPolicy::Error,
            flap_threshold: 4,
            flap_window_us: 3_600_000_000,
        };
        let run = |recover: Option<f64>| {
            let condition = Condition::Threshold {
                op: Op::Above,
                value: 100.0,
                recover,
            };
            let mut inst = Instance::new(0);
            let mut states = Vec::new();
            for (i, v) in [95.0, 101.0, 99.0, 101.0, 95.0, 90.5, 90.0, 99.0]
                .iter()
                .enumerate()
            {
                let sample = Sample {
                    key: String::new(),
                    labels: BTreeMap::new(),
                    value: Some(*v),
                    observation: Observation::Condition(Op::Above.holds(*v, 100.0)),
                };
                let obs = recovering(&condition, inst.state, &sample);
                state::step(&mut inst, &obs, (i as i64 + 1) * 1_000_000, &timing);
                states.push(inst.state);
            }
            states
        };
        use State::*;
        assert_eq!(
            run(None),
            [
                Normal, Firing, Resolved, Firing, Resolved, Normal, Normal, Normal
            ]
        );
        assert_eq!(
            run(Some(90.0)),
            [
                Normal, Firing, Firing, Firing, Firing, Firing, Resolved, Normal
            ]
        );
    }
}
