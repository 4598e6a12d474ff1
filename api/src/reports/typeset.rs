//! PDF typesetting with Typst as a library: the report layout
//! (`report.typ`) laid out by Typst from a JSON document and SVG charts,
//! with fonts compiled into the binary (DejaVu Sans, `api/assets/fonts`).
//! Nothing is read from disk or the network: the [`World`] Typst sees
//! holds the layout, the data, the charts and the logo, and nothing else.
//!
//! Charts are drawn by plotters' SVG backend ([`line_chart`],
//! [`bar_chart`]) and placed by Typst as images, so the layout (pages,
//! tables split across pages with their header repeated, page numbers) is
//! the typesetting engine's, not hand-placed coordinates.

use std::collections::HashMap;
use std::sync::LazyLock;

use plotters::prelude::*;
use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Duration};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;

/// The report layout.
const LAYOUT: &str = include_str!("report.typ");

/// The fonts: DejaVu Sans regular and bold (Bitstream Vera licence,
/// `api/assets/fonts/LICENSE-DejaVu.txt`).
static FONTS: LazyLock<(LazyHash<FontBook>, Vec<Font>)> = LazyLock::new(|| {
    let fonts: Vec<Font> = [
        &include_bytes!("../../assets/fonts/DejaVuSans.ttf")[..],
        &include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf")[..],
    ]
    .into_iter()
    .flat_map(|data| Font::iter(Bytes::new(data)))
    .collect();
    (LazyHash::new(FontBook::from_fonts(&fonts)), fonts)
});

static LIBRARY: LazyLock<LazyHash<Library>> =
    LazyLock::new(|| LazyHash::new(Library::builder().build()));

/// The font family the layout and the charts use.
pub const FONT_FAMILY: &str = "DejaVu Sans";

fn file_id(path: &str) -> Option<FileId> {
    Some(RootedPath::new(VirtualRoot::Project, VirtualPath::new(path).ok()?).intern())
}

/// What Typst sees: the layout as `/main.typ` and the given files.
struct ReportWorld {
    main: FileId,
    source: Source,
    files: HashMap<FileId, Bytes>,
    today: Option<Datetime>,
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        &LIBRARY
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &FONTS.0
    }

    fn main(&self) -> FileId {
        self.main
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main {
            Ok(self.source.clone())
        } else {
            Err(FileError::NotSource)
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        self.files
            .get(&id)
            .cloned()
            .ok_or_else(|| FileError::NotFound(id.get().vpath().get_with_slash().into()))
    }

    fn font(&self, index: usize) -> Option<Font> {
        FONTS.1.get(index).cloned()
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        self.today
    }
}

/// Lays out the report layout over `data` (served as `/data.json`) and
/// `files` (`/<name>`: charts, the logo), and writes the PDF.
pub fn typeset(data: &serde_json::Value, files: Vec<(String, Vec<u8>)>) -> Result<Vec<u8>, String> {
    let main = file_id("/main.typ").ok_or("no main file id")?;
    let mut served = HashMap::new();
    let json = serde_json::to_vec(data).map_err(|e| e.to_string())?;
    served.insert(
        file_id("/data.json").ok_or("no data file id")?,
        Bytes::new(json),
    );
    for (name, bytes) in files {
        let id = file_id(&format!("/{name}")).ok_or_else(|| format!("bad file name {name:?}"))?;
        served.insert(id, Bytes::new(bytes));
    }
    let world = ReportWorld {
        main,
        source: Source::new(main, LAYOUT.to_owned()),
        files: served,
        today: None,
    };
    let document = typst::compile::<PagedDocument>(&world)
        .output
        .map_err(|errors| said(&errors[..]))?;
    typst_pdf::pdf(&document, &typst_pdf::PdfOptions::default()).map_err(|errors| said(&errors[..]))
}

fn said(errors: &[SourceDiagnostic]) -> String {
    errors
        .iter()
        .map(|e| e.message.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Chart width and height in SVG pixels (placed at the page's width).
const CHART: (u32, u32) = (900, 300);

/// A line chart of one or more series over labelled points (dates), with
/// an optional band (low, high) drawn under the first series.
pub fn line_chart(
    labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
    band: Option<(&[f64], &[f64])>,
    colour: RGBColor,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let values = series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten().copied())
            .chain(
                band.into_iter()
                    .flat_map(|(lo, hi)| lo.iter().chain(hi).copied()),
            );
        let (lo, hi) = bounds(values);
        let n = labels.len().max(2);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..(n - 1) as f64, lo..hi)
            .map_err(|e| e.to_string())?;
        let font = (FONT_FAMILY, 13);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_labels(labels.len().min(8))
            .x_label_formatter(&|x| {
                labels
                    .get(x.round().max(0.0) as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .y_label_formatter(&|y| short_number(*y))
            .label_style(font)
            .draw()
            .map_err(|e| e.to_string())?;
        if let Some((low, high)) = band {
            let upper: Vec<(f64, f64)> = high
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect();
            let lower: Vec<(f64, f64)> = low
                .iter()
                .enumerate()
                .rev()
                .map(|(i, v)| (i as f64, *v))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    upper.into_iter().chain(lower).collect::<Vec<_>>(),
                    colour.mix(0.18).filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
        let palette = [
            colour,
            RGBColor(230, 120, 30),
            RGBColor(90, 90, 90),
            RGBColor(60, 160, 90),
        ];
        for (k, (name, values)) in series.iter().enumerate() {
            let c = palette[k % palette.len()];
            let points: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i as f64, (*v)?)))
                .collect();
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .label_font(font)
                .background_style(WHITE.mix(0.8))
                .border_style(RGBColor(200, 200, 200))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// A horizontal bar chart of labelled values, the first row on top.
pub fn bar_chart(rows: &[(String, f64)], colour: RGBColor) -> Result<String, String> {
    let mut svg = String::new();
    {
        let height = (40 + rows.len() as u32 * 26).clamp(120, 520);
        let root = SVGBackend::with_string(&mut svg, (CHART.0, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (lo, hi) = bounds(rows.iter().map(|r| r.1).chain([0.0]));
        let n = rows.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(220)
            .build_cartesian_2d(lo..hi, (0..n).into_segmented())
            .map_err(|e| e.to_string())?;
        let font = (FONT_FAMILY, 13);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .y_labels(n)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(k) if *k < n => rows
                    .get(n - 1 - k)
                    .map(|r| clip(&r.0, 30))
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .x_label_formatter(&|x| short_number(*x))
            .label_style(font)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            // A bar of nothing is no rectangle (an SVG rect of width 0 is
            // invalid).
            .draw_series(rows.iter().enumerate().filter(|(_, (_, v))| *v != 0.0).map(
                |(i, (_, v))| {
                    let k = n - 1 - i;
                    let mut bar = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(k)),
                            (*v, SegmentValue::Exact(k + 1)),
                        ],
                        colour.filled(),
                    );
                    bar.set_margin(4, 4, 0, 0);
                    bar
                },
            ))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// The y range of values, with a little room above and 0 included when
/// all are of one sign.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    lo = lo.min(0.0);
    hi = hi.max(0.0);
    if (hi - lo).abs() < f64::EPSILON {
        hi = lo + 1.0;
    }
    (lo, hi + (hi - lo) * 0.05)
}

/// An axis label: 1.2k, 3.4M.
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// An image's kind by its bytes: (file extension, media type) for PNG,
/// JPEG and SVG.
pub fn image_kind(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(("png", "image/png"));
    }
    if bytes.starts_with(b"\xff\xd8\xff") {
        return Some(("jpg", "image/jpeg"));
    }
    let head = std::str::from_utf8(&bytes[..bytes.len().min(4096)]).ok()?;
    let head = head.trim_start_matches('\u{feff}').trim_start();
    (head.starts_with("<svg") || (head.starts_with("<?xml") && head.contains("<svg")))
        .then_some(("svg", "image/svg+xml"))
}

/// Lays out a page with only the image on it: `Err` when Typst cannot
/// decode or draw it.
pub fn check_image(ext: &str, bytes: Vec<u8>) -> Result<(), String> {
    let main = file_id("/main.typ").ok_or("no main file id")?;
    let name = format!("/logo.{ext}");
    let world = ReportWorld {
        main,
        source: Source::new(main, format!("#image(\"{name}\", height: 1cm)")),
        files: HashMap::from([(file_id(&name).ok_or("bad name")?, Bytes::new(bytes))]),
        today: None,
    };
    typst::compile::<PagedDocument>(&world)
        .output
        .map(|_| ())
        .map_err(|errors| said(&errors[..]))
}
