//! Beacon's models, as pure functions over data (no I/O, no async): the API
//! gathers the data with the engine, calls these on rayon threads, and
//! stores and serves the results.
//!
//! - [`ts`] and [`forecast`]: forecasts with 80%/95% intervals, chosen per
//!   series by a rolling-origin backtest over seasonal naive, Theta,
//!   MSTL+ETS (augurs), ETS and a lag regression; anomaly bands and reorder
//!   points built on them.
//! - [`metrics`]: the M4 accuracy measures (sMAPE, MASE, OWA) and the M4
//!   Naive2 reference method; [`evaluate`] applies them to held-out sets.
//! - [`features`] and [`classify`]: churn risk and lead scores: a mixed
//!   table encoded (standardised numbers, quantile bins, one-hot levels),
//!   logistic regression or a random forest chosen by cross-validated ROC
//!   AUC, Platt-calibrated, with per-row explanations.
//! - [`segments`]: k-means customer segments on RFM with readable names.

pub mod classify;
pub mod error;
pub mod evaluate;
pub mod features;
pub mod forecast;
pub mod metrics;
pub mod segments;
pub mod ts;

pub use error::{Error, Result};
