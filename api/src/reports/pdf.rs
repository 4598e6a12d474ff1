//! A rendered report as PDF: the workspace's branding (name, colour,
//! logo, footer), the written summary, then each block's chart (when it
//! has one) and table, typeset by Typst ([`super::typeset`]).
//!
//! Cells are text made here: money (decimal text) to the cent with the
//! workspace's currency and thousands separators, rounded as text (never
//! through floating point); rates as percentages; whole numbers with
//! thousands separators; numbers right-aligned. Charts plot the same
//! values (as floating point: a picture, not a figure anyone reads to the
//! cent).

use plotters::style::RGBColor;
use serde_json::{Value, json};

use super::render::{
    ChartKind, ChartSpec, MAX_BLOCK_ROWS, Rendered, RenderedBlock, minor_units, to_places,
};
use super::typeset;
use crate::error::ApiError;
use crate::export::Table;
use crate::state::AppState;

/// Most rows of one block's table in a PDF (a table of more is cut, and
/// the cut is said under it; the Excel, CSV and Parquet files keep up to
/// [`MAX_BLOCK_ROWS`]).
pub const MAX_PDF_ROWS: usize = 5_000;

/// Most bars in a bar chart.
const MAX_BARS: usize = 15;

/// The workspace's look: name, colour (`#rrggbb`), footer and logo
/// (PNG, JPEG or SVG bytes).
#[derive(Debug, Clone, Default)]
pub struct Brand {
    /// Shown above the title and in the page header.
    pub name: String,
    /// Headings, rules and charts.
    pub color: Option<String>,
    /// The footer line.
    pub footer: Option<String>,
    /// The logo: (file extension, bytes).
    pub logo: Option<(&'static str, Vec<u8>)>,
}

/// The default colour (Beacon's blue).
const DEFAULT_COLOR: &str = "#2563eb";

/// The workspace's brand: its notification branding and logo.
pub fn brand(state: &AppState, tenant: &str) -> Result<Brand, ApiError> {
    let db = state.notifier.db();
    let b = db.branding(tenant)?;
    let logo = db
        .logo(tenant)?
        .and_then(|(_, bytes)| Some((typeset::image_kind(&bytes)?.0, bytes)));
    Ok(Brand {
        name: b.name.unwrap_or_default(),
        color: b.color,
        footer: b.footer,
        logo,
    })
}

/// The PDF of a report, typeset off the async runtime (seconds for a long
/// report).
pub async fn write(
    state: &AppState,
    tenant: &str,
    rendered: &Rendered,
) -> Result<Vec<u8>, ApiError> {
    let doc = Document {
        title: rendered.title.clone(),
        subtitle: format!(
            "{} to {} ({})",
            rendered.from, rendered.to, rendered.time_zone
        ),
        currency: rendered.currency.clone(),
        summary: rendered.summary.clone(),
    };
    document(state, tenant, &doc, &rendered.blocks).await
}

/// What a PDF says above its blocks.
#[derive(Debug, Clone)]
pub struct Document {
    /// The title.
    pub title: String,
    /// The line under it (the range and time zone).
    pub subtitle: String,
    /// Money is in this currency.
    pub currency: String,
    /// The summary's sentences.
    pub summary: Vec<String>,
}

/// The PDF of any tables laid out as a report (also `?format=pdf` on the
/// analytics and SQL endpoints).
pub async fn document(
    state: &AppState,
    tenant: &str,
    doc: &Document,
    blocks: &[RenderedBlock],
) -> Result<Vec<u8>, ApiError> {
    let brand = brand(state, tenant)?;
    let tz = state.engine.calendar(tenant).tz;
    let generated = state
        .engine
        .now()
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let (data, files) = prepare(doc, blocks, &brand, &generated);
    tokio::task::spawn_blocking(move || {
        let pdf = typeset::typeset(&data, files);
        // Typst memoises layouts across documents; a report server lays out
        // different documents, so keep only the last few's.
        typst::comemo::evict(4);
        pdf
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "report_layout_failed",
            format!("typesetting the PDF failed: {e}"),
        )
    })
}

/// The layout's data (`data.json`) and files (charts, logo) of `rendered`.
pub fn prepare(
    doc: &Document,
    blocks_in: &[RenderedBlock],
    brand: &Brand,
    generated: &str,
) -> (Value, Vec<(String, Vec<u8>)>) {
    let color = brand
        .color
        .as_deref()
        .filter(|c| rgb(c).is_some())
        .unwrap_or(DEFAULT_COLOR);
    let colour = rgb(color).unwrap_or(RGBColor(37, 99, 235));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let logo = brand.logo.as_ref().map(|(ext, bytes)| {
        let name = format!("logo.{ext}");
        files.push((name.clone(), bytes.clone()));
        name
    });
    let mut blocks = Vec::with_capacity(blocks_in.len());
    for (i, b) in blocks_in.iter().enumerate() {
        let chart = match &b.chart {
            Some(spec) => match chart_svg(&b.table, spec, colour) {
                Ok(Some(svg)) => {
                    let name = format!("chart-{}.svg", i + 1);
                    files.push((name.clone(), svg.into_bytes()));
                    Some(name)
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, block = i + 1, "Drawing a report chart failed; the table is kept.");
                    None
                }
            },
            None => None,
        };
        let numeric: Vec<bool> = (0..b.table.columns.len())
            .map(|c| numeric_column(&b.table, c))
            .collect();
        let shown = b.table.rows.len().min(MAX_PDF_ROWS);
        let rows: Vec<Vec<String>> = b.table.rows[..shown]
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(c, v)| cell(&b.table.columns[c], v, &doc.currency))
                    .collect()
            })
            .collect();
        let mut notes = Vec::new();
        if b.table.rows.len() > shown {
            notes.push(format!(
                "The first {shown} of {} rows; the Excel, CSV and Parquet files hold them all.",
                b.table.rows.len()
            ));
        }
        if b.truncated {
            notes.push(format!("Cut at {MAX_BLOCK_ROWS} rows."));
        }
        blocks.push(json!({
            "heading": b.heading,
            "chart": chart,
            "columns": b.table.columns.iter().map(|c| header(c)).collect::<Vec<_>>(),
            "numeric": numeric,
            "rows": rows,
            "note": (!notes.is_empty()).then(|| notes.join(" ")),
        }));
    }
    let data = json!({
        "title": doc.title,
        "name": if brand.name.is_empty() { "Beacon" } else { brand.name.as_str() },
        "color": color,
        "footer": brand.footer.clone().unwrap_or_else(|| "Made with Beacon".into()),
        "logo": logo,
        "subtitle": doc.subtitle,
        "generated": generated,
        "summary": doc.summary,
        "blocks": blocks,
    });
    (data, files)
}

/// `#rrggbb` as a colour.
fn rgb(s: &str) -> Option<RGBColor> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let at = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some(RGBColor(at(0)?, at(2)?, at(4)?))
}

/// A column name as a header: `avg_order_value` is "avg order value".
fn header(c: &str) -> String {
    c.replace('_', " ")
}

/// Whether a column's name says it holds a ratio (shown as a percentage).
pub fn is_rate(column: &str) -> bool {
    let c = column.to_ascii_lowercase();
    c.ends_with("rate")
        || c.ends_with("_pct")
        || c.contains("conversion")
        || c == "change"
        || c == "percentage"
        || c == "share"
}

/// Decimal text (`-12.3400`): how the API answers money.
pub fn is_decimal_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    match digits.split_once('.') {
        Some((w, f)) => {
            !w.is_empty()
                && !f.is_empty()
                && w.bytes().all(|b| b.is_ascii_digit())
                && f.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Numbers (and money) are right-aligned.
fn numeric_column(t: &Table, c: usize) -> bool {
    let mut any = false;
    for r in &t.rows {
        match &r[c] {
            Value::Null => {}
            Value::Number(_) => any = true,
            Value::String(s) if is_decimal_text(s) => any = true,
            _ => return false,
        }
    }
    any
}

/// Thousands separators in the whole part of a number's text.
fn grouped(s: &str) -> String {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", s),
    };
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let mut out = String::with_capacity(s.len() + whole.len() / 3);
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    match frac {
        Some(f) => format!("{neg}{out}.{f}"),
        None => format!("{neg}{out}"),
    }
}

/// A currency's sign where it is well known, else its code and a space.
pub fn currency_prefix(currency: &str) -> String {
    match currency {
        "GBP" => "£".into(),
        "USD" => "$".into(),
        "EUR" => "€".into(),
        "JPY" => "¥".into(),
        "INR" => "₹".into(),
        other => format!("{other} "),
    }
}

/// Money (decimal text) as shown: `£1,234.57`, `-CHF 12.00`; rounded to
/// the cent as text.
pub fn money(decimal: &str, currency: &str) -> String {
    let shown = to_places(decimal, minor_units(currency));
    match shown.strip_prefix('-') {
        Some(c) => format!("-{}{}", currency_prefix(currency), grouped(c)),
        None => format!("{}{}", currency_prefix(currency), grouped(&shown)),
    }
}

/// An estimate (a forecast, an expected value) in whole units: `about
/// £1,235`.
pub fn estimate(v: f64, currency: &str) -> String {
    let whole = format!("{:.0}", v.abs());
    format!(
        "{}{}{}",
        if v < -0.5 { "-" } else { "" },
        currency_prefix(currency),
        grouped(&whole)
    )
}

/// A cell as shown.
fn cell(column: &str, v: &Value, currency: &str) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if is_decimal_text(s) => money(s, currency),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => grouped(&n.to_string()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or_default();
            if is_rate(column) {
                format!("{:.1}%", f * 100.0)
            } else {
                grouped(&format!("{f:.2}"))
            }
        }
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// A value as a number for a chart.
fn plotted(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if is_decimal_text(s) => s.parse().ok(),
        _ => None,
    }
}

fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// The chart of a block's table, `None` when it has nothing to plot.
fn chart_svg(t: &Table, spec: &ChartSpec, colour: RGBColor) -> Result<Option<String>, String> {
    if t.rows.is_empty() || spec.values.is_empty() {
        return Ok(None);
    }
    match spec.kind {
        ChartKind::Line => {
            let labels: Vec<String> = t
                .rows
                .iter()
                .map(|r| {
                    let l = label(&r[spec.label]);
                    // Days and times: the date is enough under the axis.
                    l.get(..10)
                        .filter(|_| l.len() > 10 && l.as_bytes()[4] == b'-')
                        .map_or(l.clone(), str::to_owned)
                })
                .collect();
            let series: Vec<(String, Vec<Option<f64>>)> = spec
                .values
                .iter()
                .map(|c| {
                    (
                        header(&t.columns[*c]),
                        t.rows.iter().map(|r| plotted(&r[*c])).collect(),
                    )
                })
                .collect();
            let band = spec.band.map(|(lo, hi)| {
                let col = |c: usize| -> Vec<f64> {
                    t.rows
                        .iter()
                        .map(|r| plotted(&r[c]).unwrap_or(f64::NAN))
                        .collect()
                };
                (col(lo), col(hi))
            });
            typeset::line_chart(
                &labels,
                &series,
                band.as_ref().map(|(l, h)| (l.as_slice(), h.as_slice())),
                colour,
            )
            .map(Some)
        }
        ChartKind::Bar => {
            let rows: Vec<(String, f64)> = t
                .rows
                .iter()
                .take(MAX_BARS)
                .map(|r| {
                    (
                        label(&r[spec.label]),
                        plotted(&r[spec.values[0]]).unwrap_or(0.0),
                    )
                })
                .collect();
            typeset::bar_chart(&rows, colour).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_shown_to_the_cent_with_separators() {
        assert_eq!(cell("net", &json!("1234567.8950"), "GBP"), "£1,234,567.90");
        assert_eq!(cell("net", &json!("-1234.5000"), "EUR"), "-€1,234.50");
        assert_eq!(cell("net", &json!("12.0000"), "CHF"), "CHF 12.00");
        assert_eq!(cell("net", &json!("1234567.5000"), "JPY"), "¥1,234,568");
        assert_eq!(cell("net", &json!("1234.5675"), "KWD"), "KWD 1,234.568");
        assert_eq!(cell("orders", &json!(1234567), "GBP"), "1,234,567");
        assert_eq!(cell("no_show_rate", &json!(0.1234), "GBP"), "12.3%");
        assert_eq!(cell("day", &json!("2026-03-02"), "GBP"), "2026-03-02");
        assert_eq!(cell("x", &Value::Null, "GBP"), "");
    }
}
