//! `business_currency()`: the workspace currency (ISO 4217 code, e.g.
//! `'EUR'`), so SQL can keep money in one currency:
//! `WHERE currency IS NULL OR currency = business_currency()`.
//!
//! Immutable with no arguments, so the planner folds it into a literal
//! before pruning: a filter on it prunes files as a literal would.

use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `business_currency()` bound to `currency`.
pub fn business_currency(currency: &str) -> ScalarUDF {
    ScalarUDF::new_from_impl(BusinessCurrency {
        currency: currency.to_owned(),
        signature: Signature::nullary(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BusinessCurrency {
    currency: String,
    signature: Signature,
}

impl ScalarUDFImpl for BusinessCurrency {
    fn name(&self) -> &str {
        "business_currency"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            self.currency.clone(),
        ))))
    }
}
