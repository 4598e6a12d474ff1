//! Errors of the engine crate.

use std::time::Duration;

/// Result with the engine [`enum@Error`] as default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while running a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query text is not valid SQL.
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    /// The query refers to something that does not exist, or types do not fit.
    #[error("invalid query: {0}")]
    Plan(String),
    /// The query tries something the read-only sandbox forbids.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The query needed more memory than its limit.
    #[error("query exceeded its memory limit: {0}")]
    MemoryLimit(String),
    /// The query ran longer than its limit.
    #[error("query exceeded its time limit of {limit:?}")]
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// Any other engine failure.
    #[error("query failed: {0}")]
    Execution(#[source] datafusion::error::DataFusionError),
    /// An analytics request is malformed (unknown field, bad range, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No analytics endpoint has this name.
    #[error("unknown analytics endpoint {0:?}")]
    UnknownEndpoint(String),
    /// A model series or feature table cannot be built from the request or
    /// the workspace's data (the message says why, for the caller).
    #[error("{0}")]
    ModelInput(String),
    /// A stored workspace calendar setting does not parse.
    #[error("invalid {setting} setting {value:?}")]
    InvalidCalendar {
        /// `timezone`, `week_start` or `currency`.
        setting: &'static str,
        /// The stored value.
        value: String,
    },
    /// Arrow failure while formatting results.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as E;
        match e.find_root() {
            E::SQL(inner, _) => Self::Syntax(inner.to_string()),
            E::SchemaError(inner, _) => Self::Plan(inner.to_string()),
            E::Plan(msg) => {
                if is_sandbox_message(msg) {
                    Self::NotAllowed(msg.clone())
                } else {
                    Self::Plan(msg.clone())
                }
            }
            E::NotImplemented(msg) => Self::Plan(format!("not supported: {msg}")),
            E::ResourcesExhausted(msg) => Self::MemoryLimit(msg.clone()),
            _ => Self::Execution(e),
        }
    }
}

fn is_sandbox_message(msg: &str) -> bool {
    // DataFusion's SQLOptions verification messages.
    [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

impl Error {
    /// True when the client caused the failure (4xx), not the server.
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            Self::Execution(_) | Self::Arrow(_) | Self::InvalidCalendar { .. }
        )
    }
}
