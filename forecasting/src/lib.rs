//! Beacon's models: forecasts with intervals, anomaly bands, churn risk,
//! lead scores and segments, as pure functions over data.
//!
//! Nothing is built here yet (issue 8). The crate exists so the workspace
//! layout and dependency direction are fixed from the start.
