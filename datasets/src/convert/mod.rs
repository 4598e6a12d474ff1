//! The public datasets as Beacon events (Segment messages).
//!
//! Each converter reads one file of `../shared/datasets` (copied into
//! `datasets/data/`), maps rows to messages as documented in
//! `datasets/README.md`, and reports what it read, what it produced and what
//! it skipped and why. A bad row is counted, never fatal. Message ids are
//! derived from the data, so converting twice and replaying both files
//! stores every event once.

#[cfg(feature = "convert")]
mod clickstream;
#[cfg(feature = "convert")]
mod hotel;
#[cfg(feature = "convert")]
mod leads;
#[cfg(feature = "convert")]
mod online_retail;
#[cfg(feature = "convert")]
mod telco;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;

use crate::Result;
#[cfg(feature = "convert")]
use crate::message::Message;

/// A dataset Beacon can convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// UCI Online Retail: orders and cancellations of a UK gift shop.
    OnlineRetail,
    /// Hotel booking demand: bookings, cancellations, no-shows.
    HotelBookings,
    /// REES46 clickstream: product views, carts, purchases with sessions.
    Clickstream,
    /// IBM Telco churn: subscribers, monthly payments, cancellations.
    TelcoChurn,
    /// X Education leads: leads, visits, conversions.
    LeadScoring,
}

impl Dataset {
    /// Every dataset.
    pub const ALL: [Dataset; 5] = [
        Dataset::OnlineRetail,
        Dataset::HotelBookings,
        Dataset::Clickstream,
        Dataset::TelcoChurn,
        Dataset::LeadScoring,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::OnlineRetail => "online-retail",
            Dataset::HotelBookings => "hotel-bookings",
            Dataset::Clickstream => "clickstream",
            Dataset::TelcoChurn => "telco-churn",
            Dataset::LeadScoring => "lead-scoring",
        }
    }

    /// The file's path under `datasets/data` (the layout of `../shared/datasets`).
    pub fn default_file(self) -> &'static str {
        match self {
            Dataset::OnlineRetail => "online_retail/online-retail-dataset.csv.gz",
            Dataset::HotelBookings => "hotel_bookings/hotel_bookings.csv.gz",
            Dataset::Clickstream => "clickstream/rees46-2019-Oct-head17k.csv.gz",
            Dataset::TelcoChurn => "telco_churn/Telco-Customer-Churn.csv.gz",
            Dataset::LeadScoring => "lead_scoring/Leads.csv.gz",
        }
    }

    /// The business time zone the dataset's local times are in.
    pub fn time_zone(self) -> &'static str {
        match self {
            Dataset::OnlineRetail => "Europe/London",
            Dataset::HotelBookings => "Europe/Lisbon",
            Dataset::Clickstream | Dataset::TelcoChurn | Dataset::LeadScoring => "UTC",
        }
    }

    /// The dataset's currency.
    pub fn currency(self) -> &'static str {
        match self {
            Dataset::OnlineRetail => "GBP",
            Dataset::HotelBookings => "EUR",
            Dataset::Clickstream | Dataset::TelcoChurn => "USD",
            Dataset::LeadScoring => "INR",
        }
    }

    /// Converts the file at `path`.
    ///
    /// Without the crate's `convert` feature (the CSV reader, polars) this
    /// answers [`Error::NotBuilt`](crate::Error::NotBuilt): the shipped
    /// `beacon` binary leaves it out (ARCHITECTURE.md, datasets).
    #[cfg(not(feature = "convert"))]
    pub fn convert(self, _path: &Path) -> Result<Conversion> {
        Err(crate::Error::NotBuilt(
            "this build has no dataset converters; build with \
             `cargo build --release --bin beacon --features beacon-datasets/convert`",
        ))
    }

    /// Converts the file at `path`.
    #[cfg(feature = "convert")]
    pub fn convert(self, path: &Path) -> Result<Conversion> {
        match self {
            Dataset::OnlineRetail => online_retail::convert(path),
            Dataset::HotelBookings => hotel::convert(path),
            Dataset::Clickstream => clickstream::convert(path),
            Dataset::TelcoChurn => telco::convert(path),
            Dataset::LeadScoring => leads::convert(path),
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.replace('_', "-").to_ascii_lowercase();
        Dataset::ALL
            .into_iter()
            .find(|d| d.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = Dataset::ALL.iter().map(|d| d.name()).collect();
                format!("unknown dataset {s:?}; one of: {}", names.join(", "))
            })
    }
}

/// What a conversion produced.
#[derive(Debug, Default)]
pub struct Conversion {
    /// One Segment message per event, as JSON lines.
    pub lines: Vec<String>,
    /// Counts.
    pub report: Report,
}

#[cfg(feature = "convert")]
impl Conversion {
    pub(crate) fn push(&mut self, message: Message, name: &str) {
        self.lines.push(message.line());
        *self.report.events.entry(name.to_owned()).or_default() += 1;
    }

    pub(crate) fn skip(&mut self, reason: &str, rows: usize) {
        *self
            .report
            .skipped_rows
            .entry(reason.to_owned())
            .or_default() += rows;
    }

    pub(crate) fn note(&mut self, what: &str) {
        *self.report.notes.entry(what.to_owned()).or_default() += 1;
    }
}

/// Counts of a conversion.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Data rows read.
    pub rows: usize,
    /// Events produced, by event name (`identify` and `page` for those calls).
    pub events: BTreeMap<String, usize>,
    /// Rows not turned into events, by reason.
    pub skipped_rows: BTreeMap<String, usize>,
    /// Other counted facts (quirks met and how they were handled).
    pub notes: BTreeMap<String, usize>,
}

impl Report {
    /// Total events.
    pub fn total_events(&self) -> usize {
        self.events.values().sum()
    }
}
