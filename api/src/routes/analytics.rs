//! `/v1/analytics/{endpoint}`: the dashboard analytics of
//! [`beacon_engine::analytics`]. `POST` takes the request as a JSON body;
//! `GET` takes the same fields as query parameters (scalars as text,
//! `filters`, `steps`, `exclude`, `event`, `start_event` and `return_event`
//! as JSON text). Read or admin key. `format=csv|xlsx` (either form) and
//! `table` answer a file instead ([`crate::export`]).

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::access::Caller;
use crate::error::ApiError;
use crate::export::Export;
use crate::extract::{AppJsonOrEmpty, Path};
use crate::state::AppState;

/// Query parameters whose value is JSON text.
const JSON_PARAMS: [&str; 6] = [
    "filters",
    "steps",
    "exclude",
    "event",
    "start_event",
    "return_event",
];

/// Fields that are booleans or numbers when given as query parameters.
const TYPED_PARAMS: [&str; 7] = [
    "compare",
    "pairs",
    "revenue",
    "limit",
    "offset",
    "periods",
    "window_seconds",
];

/// The `{endpoint}` is one of [`beacon_engine::analytics::ENDPOINTS`]
/// (404 otherwise). Taken after the caller and before the body, so an
/// unknown endpoint is reported after the key is checked and before the
/// body is read.
pub struct KnownEndpoint;

impl FromRequestParts<AppState> for KnownEndpoint {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        endpoint(&name)?;
        Ok(Self)
    }
}

fn endpoint(name: &str) -> Result<(), ApiError> {
    if beacon_engine::analytics::ENDPOINTS.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no analytics endpoint {name:?}; available: {}",
                beacon_engine::analytics::ENDPOINTS.join(", ")
            ),
        ))
    }
}

/// Answers `request` on the rows the caller may see (one customer's for
/// a customer's embed token), as JSON or, with `format` (`csv`, `xlsx`;
/// or the `Accept` type) and `table`, as a file ([`crate::export`]).
async fn answer(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    name: &str,
    mut request: Value,
) -> Result<Response, ApiError> {
    let mut take = |key: &str| -> Result<Option<String>, ApiError> {
        match request.as_object_mut().and_then(|m| m.remove(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::bad_request(
                "invalid_request",
                format!("{key} must be text, not {other}"),
            )),
        }
    };
    let format = take("format")?;
    let table = take("table")?;
    let export = Export::choose(format.as_deref(), headers)?;
    let rows = caller.rows();
    // A file's About sheet names the request; JSON answers need no copy.
    let asked = (export != Export::Json).then(|| request.clone());
    let answer =
        beacon_engine::analytics::run_in(&state.engine, &caller.tenant, &rows, name, request)
            .await?;
    if export == Export::Pdf {
        return crate::export::pdf(&state, &caller.tenant, name, table.as_deref(), &answer).await;
    }
    let request = asked.unwrap_or(Value::Null);
    crate::export::respond(export, name, &request, table.as_deref(), answer)
}

/// `POST /v1/analytics/{endpoint}`.
#[tracing::instrument(skip_all, fields(endpoint = %name))]
pub async fn post(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Caller,
    _: KnownEndpoint,
    headers: HeaderMap,
    AppJsonOrEmpty(request): AppJsonOrEmpty<Value>,
) -> Result<Response, ApiError> {
    answer(&state, &principal, &headers, &name, request).await
}

/// `GET /v1/analytics/{endpoint}?range=7d&...`.
#[tracing::instrument(skip_all, fields(endpoint = %name))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    principal: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    endpoint(&name)?;
    let request = query_to_json(query.as_deref().unwrap_or(""))?;
    answer(&state, &principal, &headers, &name, request).await
}

/// Turns query parameters into the JSON request of the POST form.
fn query_to_json(query: &str) -> Result<Value, ApiError> {
    let mut seen = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if seen.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("query parameter {k:?} is given twice"),
            ));
        }
    }
    let mut out = Map::new();
    for (k, v) in seen {
        let value = if JSON_PARAMS.contains(&k.as_str()) {
            serde_json::from_str(&v).map_err(|e| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("query parameter {k:?} must be JSON: {e}"),
                )
            })?
        } else if TYPED_PARAMS.contains(&k.as_str()) {
            serde_json::from_str(&v).unwrap_or(Value::String(v))
        } else {
            Value::String(v)
        };
        out.insert(k, value);
    }
    Ok(Value::Object(out))
}
