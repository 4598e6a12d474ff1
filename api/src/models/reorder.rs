//! Reorder points: the demand of one product over a lead time plus safety
//! stock, from its daily units sold ([`beacon_engine::series::product_sales`]).

use beacon_engine::Engine;
use beacon_forecasting::forecast::{ForecastOptions, ReorderPoint};
use beacon_forecasting::ts::Frequency;

use super::{model_error, off_thread};
use crate::error::ApiError;

/// The reorder point of one product from its daily units sold (zero-filled
/// business days), and its latest `Inventory Updated` quantity if any.
pub async fn reorder_point(
    engine: &Engine,
    tenant: &str,
    product: &str,
    lead_time: usize,
    service_level: f64,
    history_days: Option<u32>,
) -> Result<(ReorderPoint, Option<f64>), ApiError> {
    let series =
        beacon_engine::series::product_sales(engine, tenant, product, history_days).await?;
    if series.values.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_data",
            format!("no sales of product {product:?} in the history"),
        ));
    }
    let values = series.values;
    let rp = off_thread(move || {
        beacon_forecasting::forecast::reorder_point(
            &values,
            Frequency::Daily,
            lead_time,
            service_level,
            &ForecastOptions::default(),
        )
    })
    .await
    .map_err(model_error)?;
    let stock = beacon_engine::series::latest_stock(engine, tenant, product).await?;
    Ok((rp, stock))
}
