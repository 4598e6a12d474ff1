//! Query results as JSON: `{"columns": [{"name", "type"}], "rows": [[...]]}`.
//!
//! Integers, floats and booleans become JSON numbers and booleans; decimals
//! become strings so no digit is lost (`"19.9900"`); timestamps become
//! RFC 3339 strings; everything else is rendered as text.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value, json};

use crate::Result;

/// Converts results to the JSON document described in the module docs.
pub fn to_json(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Value> {
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut rows = Vec::new();
    let options = FormatOptions::default().with_null("");
    for batch in batches {
        let mut cols: Vec<Vec<Value>> = Vec::with_capacity(batch.num_columns());
        for array in batch.columns() {
            cols.push(column_values(array.as_ref(), &options)?);
        }
        for row in 0..batch.num_rows() {
            rows.push(Value::Array(cols.iter().map(|c| c[row].clone()).collect()));
        }
    }
    let mut doc = Map::new();
    doc.insert("columns".into(), Value::Array(columns));
    doc.insert("rows".into(), Value::Array(rows));
    Ok(Value::Object(doc))
}

/// Converts results to one JSON object per row (`{"column": value}`), with
/// the value conventions of [`to_json`] and JSON `null` for NULL.
pub fn to_objects(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>> {
    let options = FormatOptions::default().with_null("");
    let mut out = Vec::new();
    for batch in batches {
        let mut cols: Vec<Vec<Value>> = Vec::with_capacity(batch.num_columns());
        for array in batch.columns() {
            let mut values = column_values(array.as_ref(), &options)?;
            for (i, v) in values.iter_mut().enumerate() {
                if array.is_null(i) {
                    *v = Value::Null;
                }
            }
            cols.push(values);
        }
        for row in 0..batch.num_rows() {
            let mut object = Map::new();
            for (field, col) in schema.fields().iter().zip(&cols) {
                object.insert(field.name().clone(), col[row].clone());
            }
            out.push(object);
        }
    }
    Ok(out)
}

fn column_values(array: &dyn Array, options: &FormatOptions<'_>) -> Result<Vec<Value>> {
    macro_rules! numbers {
        ($t:ty) => {
            array
                .as_primitive::<$t>()
                .iter()
                .map(|v| v.map_or(Value::Null, |v| json!(v)))
                .collect()
        };
    }
    Ok(match array.data_type() {
        DataType::Int8 => numbers!(Int8Type),
        DataType::Int16 => numbers!(Int16Type),
        DataType::Int32 => numbers!(Int32Type),
        DataType::Int64 => numbers!(Int64Type),
        DataType::UInt8 => numbers!(UInt8Type),
        DataType::UInt16 => numbers!(UInt16Type),
        DataType::UInt32 => numbers!(UInt32Type),
        DataType::UInt64 => numbers!(UInt64Type),
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| {
                v.and_then(|v| serde_json::Number::from_f64(f64::from(v)))
                    .map_or(Value::Null, Value::Number)
            })
            .collect(),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| {
                v.and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            })
            .collect(),
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        _ => {
            let formatter = ArrayFormatter::try_new(array, options)?;
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(formatter.value(i).to_string())
                    }
                })
                .collect()
        }
    })
}
