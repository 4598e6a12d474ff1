//! Turning a table of mixed columns into a numeric design matrix, learnt on
//! training rows only and applied unchanged to new rows.
//!
//! - A numeric column becomes its standardised value (missing -> the
//!   training median), a missing indicator when the training rows had
//!   missing values, and one-hot quantile bins (`bins` of them), so a linear
//!   model can follow a non-linear effect such as churn against tenure.
//! - A text column becomes one-hot levels: the levels seen at least
//!   `min_count` times in training; rarer and unseen values share an
//!   "other" column, and missing values are their own level.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// One column of a [`Table`].
#[derive(Debug, Clone)]
pub enum Column {
    /// Numbers (`None` = missing).
    Numeric(Vec<Option<f64>>),
    /// Text (`None` = missing).
    Text(Vec<Option<String>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }
}

/// A table of named columns of equal length.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column names.
    pub names: Vec<String>,
    /// Columns, in the order of `names`.
    pub columns: Vec<Column>,
}

impl Table {
    /// Adds a column.
    pub fn push(&mut self, name: impl Into<String>, column: Column) {
        self.names.push(name.into());
        self.columns.push(column);
    }

    /// Builds a table from text records (a header and rows, as read from a
    /// CSV file): `numeric` columns are parsed as numbers, `drop` columns
    /// left out, and any cell in `missing` (after trimming) is missing.
    /// A numeric cell that does not parse is missing too.
    pub fn from_records(
        header: &[String],
        rows: &[Vec<String>],
        numeric: &[&str],
        drop: &[&str],
        missing: &[&str],
    ) -> Table {
        let mut table = Table::default();
        for (j, name) in header.iter().enumerate() {
            if drop.contains(&name.as_str()) {
                continue;
            }
            let cells = rows
                .iter()
                .map(|r| r.get(j).map(|c| c.trim()).filter(|c| !missing.contains(c)));
            let column = if numeric.contains(&name.as_str()) {
                Column::Numeric(
                    cells
                        .map(|c| c.and_then(|c| c.parse::<f64>().ok()))
                        .collect(),
                )
            } else {
                Column::Text(cells.map(|c| c.map(str::to_string)).collect())
            };
            table.push(name.clone(), column);
        }
        table
    }

    /// Removes and returns a column.
    pub fn take(&mut self, name: &str) -> Option<Column> {
        let i = self.names.iter().position(|n| n == name)?;
        self.names.remove(i);
        Some(self.columns.remove(i))
    }

    /// Rows (0 for a table without columns).
    pub fn rows(&self) -> usize {
        self.columns.first().map(Column::len).unwrap_or(0)
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Table {
        let columns = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Numeric(v) => Column::Numeric(idx.iter().map(|i| v[*i]).collect()),
                Column::Text(v) => Column::Text(idx.iter().map(|i| v[*i].clone()).collect()),
            })
            .collect();
        Table {
            names: self.names.clone(),
            columns,
        }
    }
}

/// How a table is encoded.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct EncoderOptions {
    /// Quantile bins per numeric column (0 or 1 = none).
    pub bins: usize,
    /// Fewest training rows a text level needs to get its own column.
    pub min_count: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self {
            bins: 5,
            min_count: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Encoding {
    Numeric {
        median: f64,
        mean: f64,
        std: f64,
        missing_indicator: bool,
        /// Upper edges of all bins but the last.
        edges: Vec<f64>,
    },
    Text {
        levels: Vec<Option<String>>,
    },
}

/// A fitted encoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Encoder {
    names: Vec<String>,
    encodings: Vec<Encoding>,
    /// Output feature names.
    pub feature_names: Vec<String>,
    /// The input column of each output feature.
    pub feature_column: Vec<usize>,
}

impl Encoder {
    /// Learns the encoding from `table`.
    pub fn fit(table: &Table, opts: EncoderOptions) -> Encoder {
        let mut encodings = Vec::new();
        let mut feature_names = Vec::new();
        let mut feature_column = Vec::new();
        for (ci, (name, col)) in table.names.iter().zip(&table.columns).enumerate() {
            match col {
                Column::Numeric(v) => {
                    let mut present: Vec<f64> = v
                        .iter()
                        .flatten()
                        .copied()
                        .filter(|x| x.is_finite())
                        .collect();
                    present.sort_by(f64::total_cmp);
                    let median = if present.is_empty() {
                        0.0
                    } else {
                        present[present.len() / 2]
                    };
                    let mean = if present.is_empty() {
                        0.0
                    } else {
                        present.iter().sum::<f64>() / present.len() as f64
                    };
                    let var = if present.len() > 1 {
                        present.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
                            / (present.len() - 1) as f64
                    } else {
                        0.0
                    };
                    let std = if var > 0.0 { var.sqrt() } else { 1.0 };
                    let missing_indicator = present.len() < v.len();
                    let mut edges: Vec<f64> = Vec::new();
                    if opts.bins > 1 && !present.is_empty() {
                        for b in 1..opts.bins {
                            let q = present[(b * present.len() / opts.bins).min(present.len() - 1)];
                            if edges.last().is_none_or(|last| q > *last) && q > present[0] {
                                edges.push(q);
                            }
                        }
                    }
                    feature_names.push(name.clone());
                    feature_column.push(ci);
                    if missing_indicator {
                        feature_names.push(format!("{name} is missing"));
                        feature_column.push(ci);
                    }
                    if !edges.is_empty() {
                        for b in 0..=edges.len() {
                            feature_names.push(format!("{name} bin {}", b + 1));
                            feature_column.push(ci);
                        }
                    }
                    encodings.push(Encoding::Numeric {
                        median,
                        mean,
                        std,
                        missing_indicator,
                        edges,
                    });
                }
                Column::Text(v) => {
                    let mut counts: std::collections::BTreeMap<Option<&str>, usize> =
                        Default::default();
                    for x in v {
                        *counts.entry(x.as_deref()).or_default() += 1;
                    }
                    let levels: Vec<Option<String>> = counts
                        .into_iter()
                        .filter(|(_, c)| *c >= opts.min_count)
                        .map(|(l, _)| l.map(str::to_string))
                        .collect();
                    for l in &levels {
                        feature_names
                            .push(format!("{name} = {}", l.as_deref().unwrap_or("(missing)")));
                        feature_column.push(ci);
                    }
                    feature_names.push(format!("{name} = (other)"));
                    feature_column.push(ci);
                    encodings.push(Encoding::Text { levels });
                }
            }
        }
        Encoder {
            names: table.names.clone(),
            encodings,
            feature_names,
            feature_column,
        }
    }

    /// The input column names the encoder expects.
    pub fn columns(&self) -> &[String] {
        &self.names
    }

    /// Encodes `table` (columns matched by name; a missing column is an
    /// error naming it).
    pub fn transform(&self, table: &Table) -> crate::Result<Array2<f64>> {
        let rows = table.rows();
        let mut out = Array2::<f64>::zeros((rows, self.feature_names.len()));
        let mut j = 0;
        for (name, enc) in self.names.iter().zip(&self.encodings) {
            let col = table
                .names
                .iter()
                .position(|n| n == name)
                .map(|i| &table.columns[i])
                .ok_or_else(|| crate::Error::MissingColumn(name.clone()))?;
            match (enc, col) {
                (
                    Encoding::Numeric {
                        median,
                        mean,
                        std,
                        missing_indicator,
                        edges,
                    },
                    Column::Numeric(v),
                ) => {
                    for (r, x) in v.iter().enumerate() {
                        let value = x.filter(|x| x.is_finite());
                        let filled = value.unwrap_or(*median);
                        out[[r, j]] = (filled - mean) / std;
                        let mut k = j + 1;
                        if *missing_indicator {
                            out[[r, k]] = f64::from(u8::from(value.is_none()));
                            k += 1;
                        }
                        if !edges.is_empty() {
                            let bin = edges.iter().take_while(|e| filled >= **e).count();
                            out[[r, k + bin]] = 1.0;
                        }
                    }
                    j += 1
                        + usize::from(*missing_indicator)
                        + if edges.is_empty() { 0 } else { edges.len() + 1 };
                }
                (Encoding::Text { levels }, Column::Text(v)) => {
                    for (r, x) in v.iter().enumerate() {
                        let k = levels.iter().position(|l| l == x).unwrap_or(levels.len());
                        out[[r, j + k]] = 1.0;
                    }
                    j += levels.len() + 1;
                }
                _ => {
                    return Err(crate::Error::MissingColumn(format!(
                        "{name} (of the other type)"
                    )));
                }
            }
        }
        Ok(out)
    }
}
