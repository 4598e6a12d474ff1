//! Model endpoints (read or admin key): `POST /v1/forecasts` (forecast a
//! metric with intervals; the latest per metric and interval is kept and
//! published as the SQL table `forecasts`), `GET /v1/forecasts` (those
//! kept), `POST /v1/anomalies` (expected value and band per period of a
//! metric's history), `GET /v1/segments` (RFM k-means segments) and
//! `POST /v1/models/{churn,leads}/train`, `GET /v1/models/{kind}`. The
//! semantics of series are in [`beacon_engine::series`].

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::access::Caller;
use crate::extract::{AppJson, AppJsonOrEmpty, Path, SMALL_JSON_LIMIT};
use crate::models::{self, ModelKind, SeriesRequest, StoredForecast, model_error, off_thread};
use crate::state::AppState;

/// `POST /v1/forecasts` body.
#[derive(Debug, Deserialize)]
struct ForecastRequest {
    #[serde(flatten)]
    series: SeriesRequest,
    /// Steps ahead (default: 48 hours, 14 days or 13 weeks).
    horizon: Option<usize>,
    /// Interval levels (default 0.8 and 0.95).
    levels: Option<Vec<f64>>,
    /// Candidate methods (default: all fast ones).
    methods: Option<Vec<String>>,
}

/// `POST /v1/anomalies` body.
#[derive(Debug, Deserialize)]
struct AnomalyRequest {
    #[serde(flatten)]
    series: SeriesRequest,
    /// `low`, `medium` (default) or `high`.
    sensitivity: Option<String>,
    /// Only the last N periods in the answer (default 200).
    last: Option<usize>,
    /// Candidate methods.
    methods: Option<Vec<String>>,
}

const SERIES_FIELDS: [&str; 4] = ["metric", "interval", "sql", "history_days"];

/// Deserializes `v` after checking it has only the series fields and
/// `own` (serde's `deny_unknown_fields` does not combine with `flatten`).
fn request<T: serde::de::DeserializeOwned>(v: Value, own: &[&str]) -> Result<T, ApiError> {
    let Value::Object(map) = &v else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the request must be a JSON object",
        ));
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !SERIES_FIELDS.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        let known: Vec<&str> = SERIES_FIELDS.iter().chain(own).copied().collect();
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "unknown field {unknown:?}; expected one of {}",
                known.join(", ")
            ),
        ));
    }
    serde_json::from_value(v).map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

fn fmt(p: &chrono::NaiveDateTime) -> String {
    p.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A forecast's points as answered: `period`, `value`, and `lower_<pct>`,
/// `upper_<pct>` per interval level.
fn forecast_points(
    periods: &[chrono::NaiveDateTime],
    fc: &beacon_forecasting::forecast::Forecast,
) -> Vec<Value> {
    periods
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let mut point = json!({"period": fmt(p), "value": fc.point[k]});
            for i in &fc.intervals {
                let pct = (i.level * 100.0).round() as u32;
                point[format!("lower_{pct}")] = json!(i.lower[k]);
                point[format!("upper_{pct}")] = json!(i.upper[k]);
            }
            point
        })
        .collect()
}

/// `POST /v1/forecasts`.
#[tracing::instrument(skip_all)]
pub async fn forecast(
    State(state): State<AppState>,
    principal: Caller,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let req: ForecastRequest = request(body, &["horizon", "levels", "methods"])?;
    let opts = models::options(req.methods, req.levels)?;
    let (series, fc, periods) = models::run_forecast(
        &state.engine,
        &principal.tenant,
        &req.series,
        req.horizon,
        opts,
    )
    .await?;
    let horizon = periods.len();
    let last = *series.periods.last().expect("a forecast has history");
    let points = forecast_points(&periods, &fc);
    let answer = json!({
        "metric": req.series.metric,
        "interval": req.series.interval,
        "horizon": horizon,
        "history": {"periods": series.values.len(), "from": fmt(&series.periods[0]), "to": fmt(&last)},
        "points": points,
        "methods": fc.methods.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "backtest": {
            "mase": finite(fc.backtest_mase),
            "smape": finite(fc.backtest_smape),
            "origins": fc.origins,
            "scores": fc.scores.iter().map(|s| json!({"method": s.method.name(), "mase": finite(s.mase)})).collect::<Vec<_>>(),
        },
    });
    if req.series.metric != "sql" {
        let stored = StoredForecast {
            metric: req.series.metric.clone(),
            interval: req.series.interval.clone(),
            generated_at: state.engine.now(),
            periods,
            history_days: req.series.history_days,
            forecast: fc,
        };
        state.forecasts.keep(
            &state.engine,
            &principal.tenant,
            stored,
            Some(&state.model_files),
        )?;
    }
    Ok(Json(answer))
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// `GET /v1/forecasts` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListForecasts {
    /// Include each forecast's points (the dashboards' forecast band).
    #[serde(default)]
    points: bool,
}

/// `GET /v1/forecasts`: the latest forecast per metric and interval.
pub async fn list_forecasts(
    State(state): State<AppState>,
    crate::extract::Query(query): crate::extract::Query<ListForecasts>,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = state
        .forecasts
        .list(&principal.tenant)
        .iter()
        .map(|s| {
            let mut v = json!({
                "metric": s.metric, "interval": s.interval,
                "generated_at": s.generated_at.to_rfc3339(),
                "from": s.periods.first().map(fmt), "to": s.periods.last().map(fmt),
                "methods": s.forecast.methods.iter().map(|m| m.name()).collect::<Vec<_>>(),
                "backtest_mase": finite(s.forecast.backtest_mase),
            });
            if query.points {
                v["points"] = json!(forecast_points(&s.periods, &s.forecast));
            }
            v
        })
        .collect();
    Ok(Json(json!({"forecasts": list})))
}

/// `POST /v1/anomalies`.
#[tracing::instrument(skip_all)]
pub async fn anomalies(
    State(state): State<AppState>,
    principal: Caller,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let req: AnomalyRequest = request(body, &["sensitivity", "last", "methods"])?;
    anomaly_answer(&state, &principal, req).await
}

/// `GET /v1/anomalies?metric=revenue&interval=day&history_days=&sensitivity=&last=`:
/// the band of a named metric for dashboards (a viewer's, a TV link's);
/// SQL series are `POST`'s, for analysts.
#[tracing::instrument(skip_all)]
pub async fn anomalies_get(
    State(state): State<AppState>,
    crate::extract::Query(q): crate::extract::Query<AnomalyQuery>,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
    if q.metric == "sql" {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a SQL series needs POST /v1/anomalies (analysts and admins)",
        ));
    }
    let req = AnomalyRequest {
        series: beacon_engine::series::SeriesRequest {
            metric: q.metric,
            interval: q.interval.unwrap_or_else(|| "day".to_owned()),
            sql: None,
            history_days: q.history_days,
        },
        sensitivity: q.sensitivity,
        last: q.last,
        methods: None,
    };
    anomaly_answer(&state, &principal, req).await
}

/// `GET /v1/anomalies` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyQuery {
    metric: String,
    interval: Option<String>,
    history_days: Option<u32>,
    sensitivity: Option<String>,
    last: Option<usize>,
}

async fn anomaly_answer(
    state: &AppState,
    principal: &Caller,
    req: AnomalyRequest,
) -> Result<Json<Value>, ApiError> {
    let sensitivity = models::sensitivity(req.sensitivity.as_deref())?;
    let opts = models::options(req.methods, None)?;
    let series = models::series(&state.engine, &principal.tenant, &req.series).await?;
    let values = series.values.clone();
    let freq = models::frequency(series.interval);
    let bands = off_thread(move || {
        beacon_forecasting::forecast::anomaly_bands(&values, freq, sensitivity, &opts)
    })
    .await
    .map_err(model_error)?;
    let last = req.last.unwrap_or(200).min(series.values.len());
    let start = series.values.len() - last;
    let points: Vec<Value> = (start..series.values.len())
        .map(|t| {
            json!({
                "period": fmt(&series.periods[t]),
                "value": series.values[t],
                "expected": finite(bands.expected[t]),
                "lower": finite(bands.lower[t]),
                "upper": finite(bands.upper[t]),
                "anomalous": bands.anomalous[t],
            })
        })
        .collect();
    Ok(Json(json!({
        "metric": req.series.metric,
        "interval": req.series.interval,
        "sensitivity": req.sensitivity.as_deref().unwrap_or("medium"),
        "level": sensitivity.level(),
        "anomalies": bands.anomalous[start..].iter().filter(|a| **a).count(),
        "points": points,
    })))
}

/// `GET /v1/segments?k=5&days=365&customers=20`.
#[tracing::instrument(skip_all)]
pub async fn segments(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
    let params: BTreeMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        params
            .get(name)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_request",
                        format!("{name} must be a whole number, not {v:?}"),
                    )
                })
            })
            .unwrap_or(Ok(default))
    };
    if let Some(unknown) = params
        .keys()
        .find(|k| !["k", "days", "customers"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("unknown parameter {unknown:?}; expected k, days, customers"),
        ));
    }
    let (k, days, customers) = (
        number("k", 5)?,
        number("days", 365)?,
        number("customers", 0)?,
    );
    if days == 0 || days > 3660 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "days must be in 1..=3660",
        ));
    }
    let (people, rfm) = models::rfm(&state.engine, &principal.tenant, days as u32).await?;
    let seg = models::segments(rfm.clone(), k).await?;
    let list: Vec<Value> = people
        .iter()
        .zip(&seg.assignment)
        .zip(&rfm)
        .take(customers)
        .map(|((p, s), r)| json!({"person": p, "segment": seg.segments[*s].name, "recency_days": r.recency_days, "frequency": r.frequency, "monetary": r.monetary}))
        .collect();
    Ok(Json(json!({
        "k": k,
        "customers_total": people.len(),
        "segments": seg.segments.iter().map(|s| json!({
            "name": s.name, "size": s.size,
            "mean_recency_days": s.mean.recency_days, "mean_frequency": s.mean.frequency, "mean_monetary": s.mean.monetary,
        })).collect::<Vec<_>>(),
        "customers": list,
    })))
}

/// `POST /v1/models/{kind}/train` (admin key): `churn` (body
/// `{"horizon_days": 90}`, optional) or `leads` (`{"window_days": 7}`):
/// trains on the workspace's events, scores, and publishes the scores
/// (`customer_scores`, `lead_scores`).
#[tracing::instrument(skip_all, fields(kind = %name))]
pub async fn train(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Caller,
    KnownModel(kind, field, default): KnownModel,
    AppJsonOrEmpty(v): AppJsonOrEmpty<Value, SMALL_JSON_LIMIT>,
) -> Result<Json<Value>, ApiError> {
    let Value::Object(map) = &v else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the request must be a JSON object",
        ));
    };
    if let Some(k) = map.keys().find(|k| k.as_str() != field) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("unknown field {k:?}; expected {field}"),
        ));
    }
    let days = match map.get(field) {
        None => default,
        Some(h) => h
            .as_u64()
            .filter(|h| *h <= u64::from(u32::MAX))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_request", format!("{field} must be a whole number"))
            })? as u32,
    };
    let version = state.models.next_version(&principal.tenant, kind);
    let (model, scores) = match kind {
        ModelKind::Churn => {
            models::train_churn(&state.engine, &principal.tenant, days, version).await?
        }
        ModelKind::Leads => {
            models::train_leads(&state.engine, &principal.tenant, days, version).await?
        }
    };
    let mut answer = json!({
        "model": kind.name(),
        "version": model.version,
        "trained_at": model.trained_at.to_rfc3339(),
        "training_rows": model.classifier.rows,
        "positives_in_training": model.classifier.positives,
        "chosen": model.classifier.model,
        "cv_auc": finite(model.cv_auc),
        "candidates": model.classifier.candidates.iter().map(|c| json!({"name": c.name, "cv_auc": finite(c.auc)})).collect::<Vec<_>>(),
        "scored": scores.num_rows(),
        "table": kind.table(),
    });
    answer[field] = json!(model.window_days);
    state.models.keep(
        &state.engine,
        &principal.tenant,
        kind,
        model,
        scores,
        Some(&state.model_files),
    )?;
    Ok(Json(answer))
}

/// The `{kind}` of a model route, its settings field and that field's
/// default: 404 for an unknown kind. Taken after the caller and before the
/// body, so an unknown kind is reported after the key is checked and
/// before the body is read.
pub struct KnownModel(ModelKind, &'static str, u32);

impl FromRequestParts<AppState> for KnownModel {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        let (kind, field, default) = model_kind(&name)?;
        Ok(Self(kind, field, default))
    }
}

fn model_kind(name: &str) -> Result<(ModelKind, &'static str, u32), ApiError> {
    match name {
        "churn" => Ok((ModelKind::Churn, "horizon_days", 90)),
        "leads" => Ok((ModelKind::Leads, "window_days", 7)),
        other => Err(ApiError::not_found(format!(
            "no model {other:?}; available: churn, leads"
        ))),
    }
}

/// `GET /v1/models/{kind}`: the current model's metadata.
pub async fn model(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
    let (kind, field, _) = model_kind(&kind)?;
    let Some(m) = state.models.get(&principal.tenant, kind) else {
        return Err(ApiError::not_found(format!(
            "no {} model yet; train one with POST /v1/models/{}/train",
            kind.name(),
            kind.name()
        )));
    };
    let mut answer = json!({
        "model": kind.name(), "version": m.version, "trained_at": m.trained_at.to_rfc3339(),
        "chosen": m.classifier.model, "cv_auc": finite(m.cv_auc),
        "features": m.classifier.columns(), "table": kind.table(),
    });
    answer[field] = json!(m.window_days);
    Ok(Json(answer))
}

/// `POST /v1/models/refit` (admin key): what the refit schedule does, now,
/// for this workspace: retrain its models, remake its kept forecasts.
pub async fn refit(
    State(state): State<AppState>,
    principal: Caller,
) -> Result<Json<Value>, ApiError> {
    let (done, failed) = models::refit_all(
        &state.engine,
        &state.forecasts,
        &state.models,
        &state.model_files,
        Some(&principal.tenant),
    )
    .await;
    Ok(Json(json!({"refitted": done, "failed": failed})))
}

/// `POST /v1/reorder-point` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReorderRequest {
    /// The product (`order_items.product_id`).
    product_id: String,
    /// Days from ordering stock to having it (1..=365).
    lead_time_days: usize,
    /// Share of lead times without a stock-out, in (0.5, 1) (default 0.95).
    service_level: Option<f64>,
    /// Days of sales history (default 365).
    history_days: Option<u32>,
}

/// `POST /v1/reorder-point` (read key): forecast daily units sold of one
/// product over the lead time, plus safety stock for the service level;
/// with the latest `Inventory Updated` quantity, whether to reorder now.
#[tracing::instrument(skip_all)]
pub async fn reorder_point(
    State(state): State<AppState>,
    principal: Caller,
    AppJson(v): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let req: ReorderRequest = serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    if !(1..=365).contains(&req.lead_time_days) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "lead_time_days must be in 1..=365",
        ));
    }
    let (rp, stock) = models::reorder_point(
        &state.engine,
        &principal.tenant,
        &req.product_id,
        req.lead_time_days,
        req.service_level.unwrap_or(0.95),
        req.history_days,
    )
    .await?;
    Ok(Json(json!({
        "product_id": req.product_id,
        "lead_time_days": req.lead_time_days,
        "service_level": req.service_level.unwrap_or(0.95),
        "lead_time_demand": rp.lead_time_demand,
        "safety_stock": rp.safety_stock,
        "reorder_point": rp.reorder_point,
        "stock": stock,
        "reorder_now": stock.map(|s| s <= rp.reorder_point),
        "methods": rp.forecast.methods.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "backtest_mase": finite(rp.forecast.backtest_mase),
    })))
}
