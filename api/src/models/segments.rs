//! RFM k-means segments of the customers who ordered recently.

use beacon_engine::Engine;
use beacon_forecasting::segments::{Rfm, Segmentation};

use super::{model_error, off_thread};
use crate::error::ApiError;

/// RFM per customer with an order in the last `days` days, as of now
/// (monetary in the workspace currency: amounts in others are not added).
/// Returns the customers and their RFM, in the same order.
pub async fn rfm(
    engine: &Engine,
    tenant: &str,
    days: u32,
) -> Result<(Vec<String>, Vec<Rfm>), ApiError> {
    let rows = beacon_engine::features::rfm(engine, tenant, days).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.person,
                Rfm {
                    recency_days: r.recency_days,
                    frequency: r.frequency,
                    monetary: r.monetary,
                },
            )
        })
        .unzip())
}

/// Segments for the RFM table.
pub async fn segments(rfm: Vec<Rfm>, k: usize) -> Result<Segmentation, ApiError> {
    off_thread(move || beacon_forecasting::segments::segment(&rfm, k, 42))
        .await
        .map_err(model_error)
}
