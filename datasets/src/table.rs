//! Reading the CSV files with polars.

use std::path::Path;

use polars::prelude::*;

use crate::{Error, Result};

/// A CSV file read with every column as text (`None` for an empty cell).
///
/// Everything is read as text on purpose: money must be parsed as exact
/// decimals, ids such as `category_id` do not fit an `f64`, and each
/// dataset's own null markers (`NULL`, `NA`, `Select`) are handled by its
/// converter, where they are documented.
pub struct Table {
    df: DataFrame,
}

impl Table {
    /// Reads a CSV file (plain or gzip) with a header row.
    pub fn read(path: &Path) -> Result<Self> {
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|reader| reader.finish())
            .map_err(|e| Error::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Self { df })
    }

    /// Number of data rows.
    pub fn rows(&self) -> usize {
        self.df.height()
    }

    /// One column's cells.
    pub fn col(&self, name: &str) -> Result<Vec<Option<&str>>> {
        let column = self
            .df
            .column(name)
            .map_err(|_| Error::Data(format!("the file has no column {name:?}")))?;
        let text = column
            .str()
            .map_err(|e| Error::Data(format!("column {name:?}: {e}")))?;
        Ok(text.iter().collect())
    }
}
