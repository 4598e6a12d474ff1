//! Errors of the real-time hub.

/// What went wrong in the hub.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client sent something that is not a valid message.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The channel name is not one of the documented channels.
    #[error(
        "unknown channel {channel:?}: use metrics, activity, alerts, notifications:<user> or query:<id>"
    )]
    UnknownChannel {
        /// The name given.
        channel: String,
    },
    /// The caller may not subscribe to this channel.
    #[error("not allowed to subscribe to {channel:?}: {reason}")]
    Forbidden {
        /// The channel.
        channel: String,
        /// Why.
        reason: String,
    },
    /// A live query was refused (bad SQL, sandbox, conflicting id).
    #[error("live query {id:?}: {message}")]
    Query {
        /// The query id.
        id: String,
        /// Why.
        message: String,
    },
    /// Too many subscriptions on one connection.
    #[error("at most {limit} subscriptions per connection")]
    TooManySubscriptions {
        /// The limit.
        limit: usize,
    },
    /// A user token is malformed, forged or expired.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The query engine failed.
    #[error(transparent)]
    Engine(#[from] beacon_engine::Error),
}

/// Result with the hub's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A stable machine-readable code for the client.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidMessage(_) => "invalid_message",
            Self::UnknownChannel { .. } => "unknown_channel",
            Self::Forbidden { .. } => "forbidden",
            Self::Query { .. } => "invalid_query",
            Self::TooManySubscriptions { .. } => "too_many_subscriptions",
            Self::InvalidToken(_) => "invalid_token",
            Self::Engine(e) if e.is_user_error() => "invalid_query",
            Self::Engine(_) => "internal",
        }
    }
}
