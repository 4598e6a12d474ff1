//! Excel workbooks of query results (rust_xlsxwriter): one sheet of typed
//! cells per table, and an "About" sheet that says what the file holds.
//!
//! Cells keep their types: integers and floats as numbers, decimals (money)
//! as numbers with as many decimals as their scale, booleans as booleans,
//! dates and timestamps as Excel dates (timestamps in UTC, said in the
//! header), text as text; any other type as its text. The header row is
//! bold and frozen, with a filter. Excel holds 1,048,576 rows a sheet: a
//! result that does not fit stops there and the About sheet says so, as it
//! says when the server's row limit cut the result.
//!
//! A workbook is built in memory and written at the end (the format is a
//! zip of XML parts), so its size is bounded by the row limit of the
//! answer it holds.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Date32Array, RecordBatch};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    SchemaRef, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

/// Rows an Excel sheet holds (the header included).
pub const MAX_SHEET_ROWS: u32 = 1_048_576;

/// Days between Excel's epoch (1899-12-30, in its 1900 date system) and
/// 1970-01-01.
const EXCEL_UNIX_EPOCH_DAYS: f64 = 25_569.0;

/// Longest text in a cell (Excel's limit).
const MAX_CELL_TEXT: usize = 32_767;

/// A workbook being filled with one table per sheet.
pub struct XlsxBook {
    book: Workbook,
    about: Vec<(String, String)>,
    /// Text columns: decimals, dates and RFC 3339 times become typed cells.
    type_text: bool,
    /// Decimal text is money in this currency (shown to the cent with its
    /// sign or code; the cell keeps every place).
    currency: Option<String>,
    /// Float columns whose name says they are ratios are percentages.
    percentages: bool,
}

/// A native Excel chart of a sheet's columns.
#[derive(Debug, Clone)]
pub struct XlsxChart {
    /// A line chart (else columns).
    pub line: bool,
    /// The category column.
    pub label: usize,
    /// The value columns, a series each.
    pub values: Vec<usize>,
    /// Most rows drawn (from the first).
    pub max_rows: u32,
    /// The chart's title.
    pub title: String,
}

/// One sheet receiving the batches of a result.
pub struct XlsxSheet {
    schema: SchemaRef,
    index: usize,
    row: u32,
    /// Rows that did not fit the sheet.
    dropped: u64,
    widths: Vec<usize>,
    /// The sheet's name as written.
    name: String,
}

impl Default for XlsxBook {
    fn default() -> Self {
        Self::new()
    }
}

impl XlsxBook {
    /// An empty workbook.
    pub fn new() -> Self {
        Self {
            book: Workbook::new(),
            about: Vec::new(),
            type_text: false,
            currency: None,
            percentages: false,
        }
    }

    /// Decimal text is money in `currency`: shown as `£1,234.57` (or
    /// `CHF 1,234.57`), the cell's value every place of the decimal. Float
    /// columns named as ratios (`*_rate`, `conversion`, `change`, ...)
    /// are shown as percentages. For reports.
    pub fn money_in(mut self, currency: &str) -> Self {
        self.currency = Some(currency.to_owned());
        self.percentages = true;
        self
    }

    /// Adds a native chart to `sheet` (after its rows are written), right
    /// of its columns.
    pub fn chart(&mut self, sheet: &XlsxSheet, chart: &XlsxChart) -> Result<(), XlsxError> {
        use rust_xlsxwriter::{Chart, ChartType};
        let last = sheet.row.saturating_sub(1).min(chart.max_rows);
        if last == 0 || chart.values.is_empty() {
            return Ok(());
        }
        let mut c = Chart::new(if chart.line {
            ChartType::Line
        } else {
            ChartType::Column
        });
        for v in &chart.values {
            let series = c.add_series();
            series
                .set_categories((
                    sheet.name.as_str(),
                    1,
                    col(chart.label),
                    last,
                    col(chart.label),
                ))
                .set_values((sheet.name.as_str(), 1, col(*v), last, col(*v)))
                .set_name((sheet.name.as_str(), 0, col(*v)));
        }
        c.title().set_name(&chart.title);
        if chart.values.len() == 1 {
            c.legend().set_hidden();
        }
        c.set_width(720).set_height(360);
        let ws = self.book.worksheet_from_index(sheet.index)?;
        ws.insert_chart(1, col(sheet.schema.fields().len() + 1), &c)?;
        Ok(())
    }

    /// Text that is a decimal (`"59.9000"`: how the API answers money)
    /// becomes a number shown to its places, `YYYY-MM-DD` a date, and an
    /// RFC 3339 time a UTC date and time; other text stays text. For
    /// tables made from JSON answers, whose columns are all text.
    pub fn typing_text(mut self) -> Self {
        self.type_text = true;
        self
    }

    /// A line of the About sheet.
    pub fn about(&mut self, key: &str, value: impl Into<String>) {
        self.about.push((key.to_owned(), value.into()));
    }

    /// Adds a sheet named `name` (cut to Excel's 31 characters, without
    /// the characters Excel refuses) with the header row of `schema`.
    pub fn sheet(&mut self, name: &str, schema: SchemaRef) -> Result<XlsxSheet, XlsxError> {
        let clean: String = name
            .chars()
            .filter(|c| !matches!(c, '[' | ']' | ':' | '*' | '?' | '/' | '\\'))
            .take(31)
            .collect();
        let clean = if clean.trim().is_empty() {
            format!("Sheet{}", self.book.worksheets().len() + 1)
        } else {
            clean
        };
        let bold = Format::new().set_bold();
        let sheet = self.book.add_worksheet();
        sheet.set_name(&clean)?;
        let mut widths = Vec::with_capacity(schema.fields().len());
        for (c, field) in schema.fields().iter().enumerate() {
            let title = match field.data_type() {
                DataType::Timestamp(_, _) => format!("{} (UTC)", field.name()),
                _ => field.name().clone(),
            };
            widths.push(title.chars().count().max(8));
            sheet.write_string_with_format(0, col(c), &title, &bold)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        let index = self.book.worksheets().len() - 1;
        Ok(XlsxSheet {
            schema,
            index,
            row: 1,
            dropped: 0,
            widths,
            name: clean,
        })
    }

    /// Appends a batch to `sheet`.
    pub fn write(&mut self, sheet: &mut XlsxSheet, batch: &RecordBatch) -> Result<(), XlsxError> {
        let ws = self.book.worksheet_from_index(sheet.index)?;
        let room = u64::from(MAX_SHEET_ROWS - sheet.row);
        let rows = batch.num_rows() as u64;
        let take = rows.min(room) as usize;
        sheet.dropped += rows - take as u64;
        let percent = Format::new().set_num_format("0.0%");
        let money = self.currency.as_deref().map(currency_format);
        for (c, column) in batch.columns().iter().enumerate() {
            let name = sheet.schema.field(c).name();
            if self.type_text && column.data_type() == &DataType::Utf8 {
                write_typed_text(
                    ws,
                    sheet.row,
                    col(c),
                    column,
                    take,
                    &mut sheet.widths[c],
                    money.as_ref(),
                )?;
            } else if self.percentages
                && column.data_type() == &DataType::Float64
                && crate::reports::pdf::is_rate(name)
            {
                let a = column.as_primitive::<Float64Type>();
                for i in 0..take {
                    if a.is_valid(i) {
                        ws.write_number_with_format(
                            sheet.row + i as u32,
                            col(c),
                            a.value(i),
                            &percent,
                        )?;
                    }
                }
            } else {
                write_column(ws, sheet.row, col(c), column, take, &mut sheet.widths[c])?;
            }
        }
        sheet.row += take as u32;
        Ok(())
    }

    /// Finishes `sheet`: column widths and the filter; the rows that did
    /// not fit, for the About sheet.
    pub fn close(&mut self, sheet: XlsxSheet) -> Result<u64, XlsxError> {
        let ws = self.book.worksheet_from_index(sheet.index)?;
        let last_col = sheet.schema.fields().len().saturating_sub(1);
        for (c, w) in sheet.widths.iter().enumerate() {
            ws.set_column_width(col(c), (*w).min(60) as f64 + 2.0)?;
        }
        if !sheet.schema.fields().is_empty() {
            ws.autofilter(0, 0, sheet.row.saturating_sub(1).max(0), col(last_col))?;
        }
        Ok(sheet.dropped)
    }

    /// The file: the About sheet last, then the bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, XlsxError> {
        let bold = Format::new().set_bold();
        let about = std::mem::take(&mut self.about);
        let ws = self.book.add_worksheet();
        ws.set_name("About")?;
        let mut width = 10;
        for (r, (key, value)) in about.iter().enumerate() {
            ws.write_string_with_format(r as u32, 0, key, &bold)?;
            ws.write_string(r as u32, 1, clip(value))?;
            width = width.max(key.chars().count());
        }
        ws.set_column_width(0, width as f64 + 2.0)?;
        ws.set_column_width(1, 80)?;
        self.book.save_to_buffer()
    }
}

fn col(c: usize) -> u16 {
    u16::try_from(c).unwrap_or(u16::MAX)
}

fn clip(s: &str) -> &str {
    if s.len() <= MAX_CELL_TEXT {
        return s;
    }
    let mut end = MAX_CELL_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The number format of a decimal of `scale`: thousands and `scale` places.
fn decimal_format(scale: i8) -> Format {
    let places = scale.clamp(0, 30) as usize;
    let num = if places == 0 {
        "#,##0".to_owned()
    } else {
        format!("#,##0.{}", "0".repeat(places))
    };
    Format::new().set_num_format(num)
}

/// The number format of money in `currency`: its sign where well known
/// (`£#,##0.00`), else its code (`"CHF "#,##0.00`), negatives with a
/// minus.
fn currency_format(currency: &str) -> Format {
    let prefix = crate::reports::pdf::currency_prefix(currency).replace('"', "");
    let places = crate::reports::render::minor_units(currency) as usize;
    let digits = if places == 0 {
        "#,##0".to_owned()
    } else {
        format!("#,##0.{}", "0".repeat(places))
    };
    let num = format!("\"{prefix}\"{digits};-\"{prefix}\"{digits}");
    Format::new().set_num_format(num)
}

/// Writes `take` rows of a text column, typing what is a decimal, a date
/// or a time ([`XlsxBook::typing_text`]); decimals in `money`'s format
/// when given.
fn write_typed_text(
    ws: &mut Worksheet,
    row: u32,
    c: u16,
    array: &ArrayRef,
    take: usize,
    width: &mut usize,
    money: Option<&Format>,
) -> Result<(), XlsxError> {
    let a = array.as_string::<i32>();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let time = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    // One format per number of places, not one per cell.
    let mut decimals: Vec<(i8, Format)> = Vec::new();
    for i in 0..take {
        if !a.is_valid(i) {
            continue;
        }
        let r = row + i as u32;
        let text = a.value(i);
        *width = (*width).max(text.chars().count().min(60));
        if let Some(places) = decimal_places(text)
            && let Ok(v) = text.parse::<f64>()
        {
            if let Some(f) = money {
                ws.write_number_with_format(r, c, v, f)?;
                continue;
            }
            let at = match decimals.iter().position(|(p, _)| *p == places) {
                Some(at) => at,
                None => {
                    decimals.push((places, decimal_format(places)));
                    decimals.len() - 1
                }
            };
            ws.write_number_with_format(r, c, v, &decimals[at].1)?;
        } else if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            let days = (d - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days() as f64;
            ws.write_number_with_format(r, c, days + EXCEL_UNIX_EPOCH_DAYS, &date)?;
        } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            let v = t.timestamp_micros() as f64 / 86_400_000_000.0 + EXCEL_UNIX_EPOCH_DAYS;
            ws.write_number_with_format(r, c, v, &time)?;
        } else {
            ws.write_string(r, c, clip(text))?;
        }
    }
    Ok(())
}

/// The places of a plain decimal (`-12.50`: 2), if `text` is one.
fn decimal_places(text: &str) -> Option<i8> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, frac) = digits.split_once('.')?;
    let ok = !whole.is_empty()
        && !frac.is_empty()
        && whole.len() <= 15
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| i8::try_from(frac.len()).unwrap_or(30))
}

/// Writes `take` rows of `array` into column `c` from row `row`.
fn write_column(
    ws: &mut Worksheet,
    row: u32,
    c: u16,
    array: &ArrayRef,
    take: usize,
    width: &mut usize,
) -> Result<(), XlsxError> {
    macro_rules! numbers {
        ($t:ty, $fmt:expr) => {{
            let a = array.as_primitive::<$t>();
            let fmt: Option<Format> = $fmt;
            for i in 0..take {
                if a.is_valid(i) {
                    let v = a.value(i) as f64;
                    match &fmt {
                        Some(f) => ws.write_number_with_format(row + i as u32, c, v, f)?,
                        None => ws.write_number(row + i as u32, c, v)?,
                    };
                }
            }
            *width = (*width).max(12);
        }};
    }
    match array.data_type() {
        DataType::Int8 => numbers!(Int8Type, None),
        DataType::Int16 => numbers!(Int16Type, None),
        DataType::Int32 => numbers!(Int32Type, None),
        DataType::Int64 => numbers!(Int64Type, None),
        DataType::UInt8 => numbers!(UInt8Type, None),
        DataType::UInt16 => numbers!(UInt16Type, None),
        DataType::UInt32 => numbers!(UInt32Type, None),
        DataType::UInt64 => numbers!(UInt64Type, None),
        DataType::Float32 => numbers!(Float32Type, None),
        DataType::Float64 => numbers!(Float64Type, None),
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            for i in 0..take {
                if a.is_valid(i) {
                    ws.write_number(row + i as u32, c, f64::from(a.value(i)))?;
                }
            }
        }
        DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) => {
            // Excel stores every number as a double: the decimal's text is
            // parsed once, so the cell shows the decimal to its scale.
            let f = decimal_format(*scale);
            let options = FormatOptions::default();
            let text = ArrayFormatter::try_new(array.as_ref(), &options)
                .map_err(|e| XlsxError::ParameterError(e.to_string()))?;
            for i in 0..take {
                if array.is_valid(i)
                    && let Ok(v) = text.value(i).to_string().parse::<f64>()
                {
                    ws.write_number_with_format(row + i as u32, c, v, &f)?;
                }
            }
            *width = (*width).max(14);
        }
        DataType::Boolean => {
            let a: &BooleanArray = array.as_boolean();
            for i in 0..take {
                if a.is_valid(i) {
                    ws.write_boolean(row + i as u32, c, a.value(i))?;
                }
            }
        }
        DataType::Date32 | DataType::Date64 => {
            let days = arrow::compute::cast(array, &DataType::Date32)
                .map_err(|e| XlsxError::ParameterError(e.to_string()))?;
            let a: &Date32Array = days.as_primitive();
            let f = Format::new().set_num_format("yyyy-mm-dd");
            for i in 0..take {
                if a.is_valid(i) {
                    let v = f64::from(a.value(i)) + EXCEL_UNIX_EPOCH_DAYS;
                    ws.write_number_with_format(row + i as u32, c, v, &f)?;
                }
            }
            *width = (*width).max(12);
        }
        DataType::Timestamp(unit, _) => {
            // Every timestamp in UTC (the header says so): Excel has no
            // time zones.
            let per_day = match unit {
                TimeUnit::Second => 86_400.0,
                TimeUnit::Millisecond => 86_400_000.0,
                TimeUnit::Microsecond => 86_400_000_000.0,
                TimeUnit::Nanosecond => 86_400_000_000_000.0,
            };
            let f = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
            let values = arrow::compute::cast(array, &DataType::Int64)
                .map_err(|e| XlsxError::ParameterError(e.to_string()))?;
            let a = values.as_primitive::<Int64Type>();
            for i in 0..take {
                if a.is_valid(i) {
                    let v = a.value(i) as f64 / per_day + EXCEL_UNIX_EPOCH_DAYS;
                    ws.write_number_with_format(row + i as u32, c, v, &f)?;
                }
            }
            *width = (*width).max(20);
        }
        _ => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options)
                .map_err(|e| XlsxError::ParameterError(e.to_string()))?;
            for i in 0..take {
                if array.is_valid(i) {
                    let text = formatter.value(i).to_string();
                    *width = (*width).max(text.chars().count().min(60));
                    ws.write_string(row + i as u32, c, clip(&text))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn a_workbook_is_a_zip_with_a_sheet_per_table_and_about() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("revenue", DataType::Decimal128(18, 4), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(
                    Decimal128Array::from(vec![Some(599_000), None])
                        .with_precision_and_scale(18, 4)
                        .expect("decimal"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![0, 86_400_000_000]).with_timezone("UTC"),
                ),
            ],
        )
        .expect("batch");
        let mut book = XlsxBook::new();
        let mut sheet = book.sheet("Result: [1]", schema).expect("sheet");
        book.write(&mut sheet, &batch).expect("write");
        assert_eq!(book.close(sheet).expect("close"), 0);
        book.about("query", "SELECT 1");
        let bytes = book.finish().expect("finish");
        assert_eq!(&bytes[..2], b"PK", "a zip");
    }
}
