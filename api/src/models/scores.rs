//! The churn and lead classifiers: trained on feature tables from
//! [`beacon_engine::features`], scored, explained, and kept per workspace
//! and kind ([`ModelStore`]) with their scores published as the SQL tables
//! `customer_scores` and `lead_scores`.

use std::sync::Arc;

use arrow::array::{
    Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use beacon_engine::Engine;
use beacon_engine::features::{self, Features};
use beacon_forecasting::features::{Column, Table};
use chrono::{DateTime, Duration};
use serde::Deserialize;

use super::files::{ModelFiles, utc_time};
use super::{bad, model_error, off_thread};
use crate::error::ApiError;

/// The forecasting crate's table of `features`: text columns, then numeric.
fn to_table(features: Features) -> Table {
    let mut table = Table::default();
    for (name, col) in features.text {
        table.push(name, Column::Text(col));
    }
    for (name, col) in features.numeric {
        table.push(name, Column::Numeric(col));
    }
    table
}

/// A trained classifier (churn or lead model) and its metadata.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct TrainedModel {
    /// Version (1, 2, ... per workspace and kind while the server runs).
    pub version: u64,
    /// When it was trained.
    #[serde(with = "utc_time")]
    pub trained_at: DateTime<chrono::Utc>,
    /// Churn: days without an order that count as churned. Leads: days
    /// after creation whose engagement counts.
    pub window_days: u32,
    /// The classifier.
    pub classifier: beacon_forecasting::classify::Classifier,
    /// Cross-validated AUC of the chosen model.
    pub cv_auc: f64,
}

/// Trains the churn model: features as of `now - horizon_days`, label =
/// no order in the `horizon_days` since; then scores every customer on
/// features as of now. Returns the model and the `customer_scores` rows.
pub async fn train_churn(
    engine: &Engine,
    tenant: &str,
    horizon_days: u32,
    version: u64,
) -> Result<(TrainedModel, RecordBatch), ApiError> {
    if !(7..=365).contains(&horizon_days) {
        return Err(bad("horizon_days must be in 7..=365"));
    }
    let now = engine.now();
    let cutoff = now - Duration::days(i64::from(horizon_days));
    let (people, past) = features::churn_features(engine, tenant, cutoff).await?;
    let table = to_table(past);
    let returned = features::ordering_people(engine, tenant, cutoff, now).await?;
    let y: Vec<bool> = people.iter().map(|p| !returned.contains(p)).collect();
    let opts = beacon_forecasting::classify::ClassifierOptions::default();
    let classifier = off_thread(move || beacon_forecasting::classify::train(&table, &y, &opts))
        .await
        .map_err(model_error)?;
    let cv_auc = classifier
        .candidates
        .first()
        .map(|c| c.auc)
        .unwrap_or(f64::NAN);
    let (people, current) = features::churn_features(engine, tenant, now).await?;
    let current = to_table(current);
    let model = TrainedModel {
        version,
        trained_at: now,
        window_days: horizon_days,
        classifier,
        cv_auc,
    };
    let scorer = model.classifier.clone();
    let (p, factors) = score(scorer, current).await?;
    let batch = scores_batch(
        ModelKind::Churn,
        vec![Arc::new(StringArray::from(people))],
        p,
        factors,
        &model,
    )?;
    Ok((model, batch))
}

/// The SQL table of churn scores.
pub const CUSTOMER_SCORES_TABLE: &str = "customer_scores";

/// The schema of `customer_scores`.
pub fn customer_scores_schema() -> Arc<Schema> {
    scores_schema(
        vec![Field::new("person", DataType::Utf8, false)],
        "churn_probability",
    )
}

/// A scores table: its key columns, then the probability, the top
/// factors, the model, its version and when it scored.
fn scores_schema(keys: Vec<Field>, probability: &str) -> Arc<Schema> {
    let mut fields = keys;
    fields.extend([
        Field::new(probability, DataType::Float64, false),
        Field::new("top_factors", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("model_version", DataType::UInt32, false),
        Field::new(
            "scored_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]);
    Arc::new(Schema::new(fields))
}

/// The rows of `kind`'s scores table: `keys` (its key columns), then the
/// scores and explanations of `model`, stamped with its version and time.
fn scores_batch(
    kind: ModelKind,
    mut keys: Vec<arrow::array::ArrayRef>,
    p: Vec<f64>,
    factors: Vec<String>,
    model: &TrainedModel,
) -> Result<RecordBatch, ApiError> {
    let n = p.len();
    keys.extend([
        Arc::new(Float64Array::from(p)) as arrow::array::ArrayRef,
        Arc::new(StringArray::from(factors)),
        Arc::new(StringArray::from(vec![model.classifier.model.clone(); n])),
        Arc::new(UInt32Array::from(vec![model.version as u32; n])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![model.trained_at.timestamp_micros(); n])
                .with_timezone("UTC"),
        ),
    ]);
    RecordBatch::try_new(kind.schema(), keys).map_err(|e| ApiError::internal(&e))
}

/// Calibrated probabilities and "column +effect; ..." explanations.
async fn score(
    model: beacon_forecasting::classify::Classifier,
    table: Table,
) -> Result<(Vec<f64>, Vec<String>), ApiError> {
    let (p, why) = off_thread(move || -> beacon_forecasting::Result<_> {
        Ok((model.predict(&table)?, model.explain(&table, 3)?))
    })
    .await
    .map_err(model_error)?;
    let factors = why
        .iter()
        .map(|c| {
            c.iter()
                .map(|c| format!("{} {:+.3}", c.column, c.effect))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect();
    Ok((p, factors))
}

/// The two kinds of trained models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Churn risk per customer (`customer_scores`).
    Churn,
    /// Conversion probability per open lead (`lead_scores`).
    Leads,
}

impl ModelKind {
    /// `churn` or `leads`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Churn => "churn",
            ModelKind::Leads => "leads",
        }
    }

    /// The SQL table of its scores.
    pub fn table(self) -> &'static str {
        match self {
            ModelKind::Churn => CUSTOMER_SCORES_TABLE,
            ModelKind::Leads => LEAD_SCORES_TABLE,
        }
    }

    /// The schema of its scores table.
    pub fn schema(self) -> Arc<Schema> {
        match self {
            ModelKind::Churn => customer_scores_schema(),
            ModelKind::Leads => lead_scores_schema(),
        }
    }
}

/// The latest model per workspace and kind (in memory; their scores are
/// the `customer_scores` and `lead_scores` tables).
#[derive(Debug, Clone, Default)]
pub struct ModelStore {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<(String, ModelKind), TrainedModel>>>,
}

impl ModelStore {
    /// Publishes the empty score tables every workspace sees first.
    pub fn publish_defaults(engine: &Engine) -> Result<(), ApiError> {
        for kind in [ModelKind::Churn, ModelKind::Leads] {
            engine.publish_table(
                beacon_engine::ALL_TENANTS,
                kind.table(),
                kind.schema(),
                Vec::new(),
            )?;
        }
        Ok(())
    }

    /// The next version number.
    pub fn next_version(&self, tenant: &str, kind: ModelKind) -> u64 {
        self.get(tenant, kind).map_or(1, |m| m.version + 1)
    }

    /// Keeps the model, publishes its scores and, with `files`, saves both.
    pub fn keep(
        &self,
        engine: &Engine,
        tenant: &str,
        kind: ModelKind,
        model: TrainedModel,
        scores: RecordBatch,
        files: Option<&ModelFiles>,
    ) -> Result<(), ApiError> {
        if let Some(files) = files {
            files
                .save_model(tenant, kind, &model, &scores)
                .map_err(|e| ApiError::internal(&e))?;
        }
        engine.publish_table(tenant, kind.table(), kind.schema(), vec![scores])?;
        self.inner
            .lock()
            .expect("the model store lock is never held across a panic")
            .insert((tenant.to_owned(), kind), model);
        Ok(())
    }

    /// Forgets a deleted workspace's models.
    pub fn forget(&self, tenant: &str) {
        self.inner
            .lock()
            .expect("the model store lock is never held across a panic")
            .retain(|(t, _), _| t != tenant);
    }

    /// Every (workspace, kind, window) with a model.
    pub fn all(&self) -> Vec<(String, ModelKind, u32)> {
        let all = self
            .inner
            .lock()
            .expect("the model store lock is never held across a panic");
        all.iter()
            .map(|((t, k), m)| (t.clone(), *k, m.window_days))
            .collect()
    }

    /// The workspace's model of `kind`.
    pub fn get(&self, tenant: &str, kind: ModelKind) -> Option<TrainedModel> {
        self.inner
            .lock()
            .expect("the model store lock is never held across a panic")
            .get(&(tenant.to_owned(), kind))
            .cloned()
    }
}

/// Trains the lead model on leads older than `window_days` (their outcome
/// is known) and scores every open (not converted) lead.
pub async fn train_leads(
    engine: &Engine,
    tenant: &str,
    window_days: u32,
    version: u64,
) -> Result<(TrainedModel, RecordBatch), ApiError> {
    if !(1..=365).contains(&window_days) {
        return Err(bad("window_days must be in 1..=365"));
    }
    let features::Leads {
        ids,
        people,
        features,
        converted,
        mature,
    } = features::lead_features(engine, tenant, window_days).await?;
    let table = to_table(features);
    let train_rows: Vec<usize> = (0..ids.len()).filter(|i| mature[*i]).collect();
    let open_rows: Vec<usize> = (0..ids.len()).filter(|i| !converted[*i]).collect();
    let train_table = table.select(&train_rows);
    let y: Vec<bool> = train_rows.iter().map(|i| converted[*i]).collect();
    let opts = beacon_forecasting::classify::ClassifierOptions::default();
    let classifier =
        off_thread(move || beacon_forecasting::classify::train(&train_table, &y, &opts))
            .await
            .map_err(model_error)?;
    let cv_auc = classifier
        .candidates
        .first()
        .map(|c| c.auc)
        .unwrap_or(f64::NAN);
    let now = engine.now();
    let model = TrainedModel {
        version,
        trained_at: now,
        window_days,
        classifier,
        cv_auc,
    };
    let (p, factors) = score(model.classifier.clone(), table.select(&open_rows)).await?;
    let keys: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(StringArray::from(
            open_rows
                .iter()
                .map(|i| ids[*i].clone())
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            open_rows
                .iter()
                .map(|i| people[*i].clone())
                .collect::<Vec<_>>(),
        )),
    ];
    let batch = scores_batch(ModelKind::Leads, keys, p, factors, &model)?;
    Ok((model, batch))
}

/// The SQL table of lead scores.
pub const LEAD_SCORES_TABLE: &str = "lead_scores";

/// The schema of `lead_scores`.
pub fn lead_scores_schema() -> Arc<Schema> {
    scores_schema(
        vec![
            Field::new("lead_id", DataType::Utf8, false),
            Field::new("person", DataType::Utf8, true),
        ],
        "conversion_probability",
    )
}
