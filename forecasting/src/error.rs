//! Errors of the model functions.

/// What went wrong fitting or applying a model. Every variant is a problem
/// with the data or the request (the API maps them to 4xx), except
/// [`Error::Model`], which wraps a failure inside a model library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The series or table is too short for the request.
    #[error("too little history: {what} needs at least {needed} points, got {got}")]
    TooLittleHistory {
        /// What needed the history (a method, a backtest, a classifier).
        what: String,
        /// Points (or rows) needed.
        needed: usize,
        /// Points (or rows) given.
        got: usize,
    },
    /// Every value of the series is the same; nothing can be learnt from it.
    #[error("the series is constant (every value is {value})")]
    ConstantSeries {
        /// The value.
        value: f64,
    },
    /// A value is NaN or infinite.
    #[error("value {index} is not a finite number")]
    NotFinite {
        /// Position of the value.
        index: usize,
    },
    /// A column the model needs is missing from the input.
    #[error("missing column {0:?}")]
    MissingColumn(String),
    /// A target has only one class (a classifier needs both).
    #[error("the target has only one class ({0}); a classifier needs both outcomes")]
    OneClass(String),
    /// A parameter is out of range (horizon 0, level outside (0, 1), k < 2, ...).
    #[error("invalid parameter {name}: {message}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// A model library failed.
    #[error("{model}: {message}")]
    Model {
        /// The model.
        model: &'static str,
        /// The library's message.
        message: String,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(name: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidParameter {
        name,
        message: message.into(),
    }
}
