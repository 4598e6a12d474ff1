//! Event files: NDJSON (Segment messages, one per line) or Parquet (Beacon's
//! event schema, as stored by the server).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use beacon_ingest::Event;
use beacon_ingest::batch::events_to_batch;
use beacon_ingest::decode::{Limits, decode_ndjson};
use beacon_ingest::schema::{self, columns};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

use crate::message::iso_us;
use crate::{Error, Result};

/// Lines decoded per Parquet row group chunk.
const CHUNK: usize = 4_096;

/// A file format for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Newline-delimited Segment messages.
    Ndjson,
    /// Parquet in Beacon's event schema.
    Parquet,
}

impl Format {
    /// The format of a path, by extension (`.parquet`; anything else is NDJSON).
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => Format::Parquet,
            _ => Format::Ndjson,
        }
    }
}

/// What writing a file did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Events written.
    pub events: usize,
    /// Lines Beacon's decoder rejected (Parquet only): index, code, reason.
    pub rejected: Vec<(usize, String, String)>,
}

/// Writes JSON lines to `path` in the format its extension names.
pub fn write_lines(lines: &[String], path: &Path) -> Result<WriteReport> {
    match Format::of(path) {
        Format::Ndjson => {
            let mut w = BufWriter::new(File::create(path)?);
            for line in lines {
                w.write_all(line.as_bytes())?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            Ok(WriteReport {
                events: lines.len(),
                rejected: Vec::new(),
            })
        }
        Format::Parquet => {
            let mut writer = ParquetSink::create(path)?;
            let mut report = WriteReport::default();
            let limits = Limits {
                max_batch_events: CHUNK,
                max_future: std::time::Duration::from_secs(100 * 365 * 86_400),
                ..Limits::default()
            };
            let now = chrono::Utc::now().timestamp_micros();
            for (c, chunk) in lines.chunks(CHUNK).enumerate() {
                let body = chunk.join("\n");
                let decoded = decode_ndjson(body.as_bytes(), &limits, now)
                    .map_err(|e| Error::Data(format!("cannot decode lines: {e}")))?;
                for r in decoded.rejected {
                    report
                        .rejected
                        .push((c * CHUNK + r.index, r.code.to_owned(), r.reason));
                }
                report.events += decoded.events.len();
                writer.write_events(&decoded.events)?;
            }
            writer.finish()?;
            Ok(report)
        }
    }
}

/// A Parquet file of events being written.
pub struct ParquetSink {
    writer: ArrowWriter<File>,
}

impl ParquetSink {
    /// Creates the file.
    pub fn create(path: &Path) -> Result<Self> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(128 * 1024))
            .build();
        let writer =
            ArrowWriter::try_new(File::create(path)?, schema::event_schema(), Some(props))?;
        Ok(Self { writer })
    }

    /// Appends events.
    pub fn write_events(&mut self, events: &[Event]) -> Result<()> {
        if !events.is_empty() {
            self.writer.write(&events_to_batch(events)?)?;
        }
        Ok(())
    }

    /// Closes the file.
    pub fn finish(self) -> Result<()> {
        self.writer.close()?;
        Ok(())
    }
}

/// Reads an event file back as Segment messages. NDJSON lines that are not
/// JSON objects are counted in the second value, not fatal.
pub fn read_messages(path: &Path) -> Result<(Vec<Value>, usize)> {
    match Format::of(path) {
        Format::Ndjson => {
            let mut out = Vec::new();
            let mut bad = 0;
            for line in BufReader::new(File::open(path)?).split(b'\n') {
                let line = line?;
                if line.trim_ascii().is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Value>(&line) {
                    Ok(v @ Value::Object(_)) => out.push(v),
                    _ => bad += 1,
                }
            }
            Ok((out, bad))
        }
        Format::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
            let mut out = Vec::new();
            for batch in reader {
                out.extend(batch_to_messages(&batch?)?);
            }
            Ok((out, 0))
        }
    }
}

/// Rows of Beacon's event schema as the Segment messages that produce them.
pub fn batch_to_messages(batch: &RecordBatch) -> Result<Vec<Value>> {
    let text = |name: &str| -> Result<Option<&arrow::array::StringArray>> {
        Ok(batch.column_by_name(name).map(|c| c.as_string::<i32>()))
    };
    let missing = |name: &str| Error::Data(format!("the file has no {name} column"));
    let message_id = text(columns::MESSAGE_ID)?.ok_or_else(|| missing(columns::MESSAGE_ID))?;
    let kind = text(columns::TYPE)?.ok_or_else(|| missing(columns::TYPE))?;
    let time = batch
        .column_by_name(columns::TIMESTAMP)
        .ok_or_else(|| missing(columns::TIMESTAMP))?
        .as_primitive::<TimestampMicrosecondType>();
    let ids = [
        (columns::EVENT, "event"),
        (columns::USER_ID, "userId"),
        (columns::ANONYMOUS_ID, "anonymousId"),
        (columns::GROUP_ID, "groupId"),
        (columns::PREVIOUS_ID, "previousId"),
    ];
    let id_cols = ids
        .iter()
        .map(|(c, _)| text(c))
        .collect::<Result<Vec<_>>>()?;
    let objects = [
        (columns::PROPERTIES, "properties"),
        (columns::CONTEXT, "context"),
        (columns::TRAITS, "traits"),
    ];
    let object_cols = objects
        .iter()
        .map(|(c, _)| text(c))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut m = Map::new();
        let kind = kind.value(row);
        m.insert("type".into(), kind.into());
        m.insert("messageId".into(), message_id.value(row).into());
        m.insert("timestamp".into(), iso_us(time.value(row)).into());
        for ((_, key), col) in ids.iter().zip(&id_cols) {
            if let Some(col) = col.filter(|c| c.is_valid(row)) {
                // page and screen calls carry their name in `event`.
                let key = if *key == "event" && (kind == "page" || kind == "screen") {
                    "name"
                } else {
                    key
                };
                m.insert(key.into(), col.value(row).into());
            }
        }
        for ((_, key), col) in objects.iter().zip(&object_cols) {
            if let Some(col) = col.filter(|c| c.is_valid(row)) {
                let value: Value = serde_json::from_str(col.value(row))
                    .map_err(|e| Error::Data(format!("row {row}: {key} is not JSON: {e}")))?;
                m.insert((*key).into(), value);
            }
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// A streaming event file writer (NDJSON or Parquet by extension).
pub enum EventWriter {
    /// NDJSON lines.
    Ndjson(BufWriter<File>),
    /// Parquet, decoded through Beacon's ingest decoder.
    Parquet(ParquetSink),
}

impl EventWriter {
    /// Creates `path`.
    pub fn create(path: &Path) -> Result<Self> {
        Ok(match Format::of(path) {
            Format::Ndjson => EventWriter::Ndjson(BufWriter::new(File::create(path)?)),
            Format::Parquet => EventWriter::Parquet(ParquetSink::create(path)?),
        })
    }

    /// Appends JSON lines; returns how many lines were rejected by the decoder.
    pub fn write(&mut self, lines: &[String]) -> Result<usize> {
        match self {
            EventWriter::Ndjson(w) => {
                for line in lines {
                    w.write_all(line.as_bytes())?;
                    w.write_all(b"\n")?;
                }
                Ok(0)
            }
            EventWriter::Parquet(sink) => {
                let mut rejected = 0;
                for chunk in lines.chunks(CHUNK) {
                    let (events, bad) = decode_lines(chunk)?;
                    rejected += bad;
                    sink.write_events(&events)?;
                }
                Ok(rejected)
            }
        }
    }

    /// Flushes and closes.
    pub fn finish(self) -> Result<()> {
        match self {
            EventWriter::Ndjson(mut w) => Ok(w.flush()?),
            EventWriter::Parquet(sink) => sink.finish(),
        }
    }
}

/// Decodes JSON lines (at most 4,096) with Beacon's ingest decoder, as the
/// server would; returns the events and the number of rejected lines.
pub fn decode_lines(lines: &[String]) -> Result<(Vec<Event>, usize)> {
    let limits = Limits {
        max_batch_events: lines.len().max(1),
        max_future: std::time::Duration::from_secs(100 * 365 * 86_400),
        ..Limits::default()
    };
    let now = chrono::Utc::now().timestamp_micros();
    let body = lines.join("\n");
    let decoded = decode_ndjson(body.as_bytes(), &limits, now)
        .map_err(|e| Error::Data(format!("cannot decode lines: {e}")))?;
    Ok((decoded.events, decoded.rejected.len()))
}
