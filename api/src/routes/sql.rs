//! `POST /v1/sql`: one read-only query over the caller's workspace, answered
//! as JSON (`columns`, `rows`, `truncated`). Read or admin key.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use beacon_ingest::Role;
use serde::Deserialize;
use serde_json::Value;

use crate::auth;
use crate::error::ApiError;
use crate::routes::{parse_json, read_body};
use crate::server::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
}

/// Runs the query.
#[tracing::instrument(skip_all, fields(tenant))]
pub async fn sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let principal = auth::from_headers(&state, &headers)?;
    principal.require(&[Role::Read, Role::Admin], "querying")?;
    tracing::Span::current().record("tenant", principal.tenant.as_str());
    let bytes = read_body(&headers, body, 1024 * 1024).await?;
    let request: SqlRequest = parse_json(&bytes)?;
    if request.query.trim().is_empty() {
        return Err(ApiError::bad_request(
            "empty_query",
            "query must not be empty",
        ));
    }
    let result = state.engine.sql(&principal.tenant, &request.query).await?;
    let mut doc = beacon_engine::json::to_json(&result.schema, &result.batches)?;
    if let Value::Object(map) = &mut doc {
        map.insert("truncated".into(), Value::Bool(result.truncated));
    }
    Ok(axum::Json(doc).into_response())
}
