//! The one API error type and its status table.
//!
//! Every failure answers `{"error": {"code", "message", ...details}}`.
//! User errors (4xx) say what to fix; external/temporary ones (503) carry
//! `Retry-After`; internal ones (500) are logged with their cause chain and
//! the client gets a generic message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use beacon_ingest::decode::BodyError;
use serde_json::{Map, Value, json};

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request("invalid_query_string", rejection.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        Self::bad_request("invalid_path", rejection.body_text())
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Map<String, Value>,
    retry_after_secs: Option<u64>,
    www_authenticate: bool,
}

impl ApiError {
    /// The message shown to the client.
    pub fn message(&self) -> String {
        self.message.clone()
    }

    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after_secs: None,
            www_authenticate: false,
        }
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with a `WWW-Authenticate` challenge.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, code, message);
        e.www_authenticate = true;
        e
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        retry_after_secs: u64,
    ) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// 429 `rate_limited` with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        e.retry_after_secs = Some(retry_after_secs.max(1));
        e
    }

    /// 500; the cause is logged, not shown.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "Internal error.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    /// Adds a detail field next to code and message.
    pub fn with_detail(mut self, key: &str, value: Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        body.extend(self.details);
        let mut response = (self.status, axum::Json(json!({ "error": body }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"beacon\", Bearer"),
            );
        }
        response
    }
}

impl From<beacon_ingest::Error> for ApiError {
    fn from(e: beacon_ingest::Error) -> Self {
        use beacon_ingest::Error as E;
        match &e {
            E::Backpressure { .. } => Self::unavailable("overloaded", e.to_string(), 1),
            E::InFlight { .. } => Self::unavailable("in_flight", e.to_string(), 1),
            E::WalPoisoned | E::WalClosed => Self::unavailable("unavailable", e.to_string(), 5),
            E::UnknownTenant(_) | E::UnknownKey(_) => Self::not_found(e.to_string()),
            E::InvalidSetting { .. } => Self::bad_request("invalid_setting", e.to_string()),
            _ => Self::internal(&e),
        }
    }
}

impl From<beacon_engine::Error> for ApiError {
    fn from(e: beacon_engine::Error) -> Self {
        use beacon_engine::Error as E;
        match &e {
            E::Syntax(_) => Self::bad_request("sql_syntax", e.to_string()),
            E::Plan(_) => Self::bad_request("invalid_query", e.to_string()),
            E::NotAllowed(_) => Self::new(StatusCode::FORBIDDEN, "read_only", e.to_string()),
            E::InvalidRequest(_) | E::ModelInput(_) => {
                Self::bad_request("invalid_request", e.to_string())
            }
            E::UnknownEndpoint(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            E::MemoryLimit(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "memory_limit",
                e.to_string(),
            ),
            E::Timeout { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "timeout", e.to_string())
            }
            E::Execution(_) | E::Arrow(_) | E::InvalidCalendar { .. } => Self::internal(&e),
        }
    }
}

impl From<beacon_realtime::Error> for ApiError {
    fn from(e: beacon_realtime::Error) -> Self {
        use beacon_realtime::Error as E;
        match e {
            E::Engine(inner) => inner.into(),
            E::Forbidden { .. } => Self::forbidden(e.to_string()),
            E::InvalidToken(_) => Self::unauthorized("invalid_token", e.to_string()),
            other => Self::bad_request(other.code(), other.to_string()),
        }
    }
}

impl From<beacon_realtime::db::DbError> for ApiError {
    fn from(e: beacon_realtime::db::DbError) -> Self {
        Self::internal(&e)
    }
}

impl From<beacon_realtime::notify::NotifyError> for ApiError {
    fn from(e: beacon_realtime::notify::NotifyError) -> Self {
        use beacon_realtime::notify::NotifyError as E;
        match e {
            E::Invalid(m) => Self::bad_request("invalid_request", m),
            E::NotFound(m) => Self::not_found(m),
            E::Engine(inner) => inner.into(),
            E::Database(_) | E::Encode { .. } | E::HttpClient(_) => Self::internal(&e),
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match &e {
            BodyError::InvalidJson(_) => Self::bad_request("invalid_json", e.to_string()),
            BodyError::InvalidShape(_) => Self::bad_request("invalid_body", e.to_string()),
            BodyError::TooManyEvents { count, limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                e.to_string(),
            )
            .with_detail("events", json!(count))
            .with_detail("limit", json!(limit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use beacon_realtime::notify::NotifyError;

    use super::*;

    #[test]
    fn a_notification_store_failure_is_a_generic_500() {
        let source = serde_json::from_str::<Value>("{").expect_err("invalid JSON");
        let e = ApiError::from(NotifyError::Encode {
            what: "branding",
            source,
        });
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal server error"
            )
        );
        let e = ApiError::from(NotifyError::invalid("title must be 1-200 bytes"));
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "title must be 1-200 bytes"
            )
        );
    }
}
