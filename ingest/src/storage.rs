//! Parquet files: layout, writing with atomic publication, reading back.
//!
//! Layout: `{data_dir}/tables/events/tenant={id}/date={YYYY-MM-DD}/{uuid7}.parquet`,
//! one UTC day of one workspace per directory, rows sorted by event time;
//! compaction merges a cold month into `date={YYYY-MM}` (see
//! [`crate::Store::compact`]).
//! A file is written as `*.parquet.tmp`, `fsync`ed, renamed into place and its
//! directory `fsync`ed; it counts as published only once the catalog says so
//! (see [`crate::catalog`]), so a crash can leave at most unpublished orphans,
//! which [`remove_orphans`] deletes at startup.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, interleave_record_batch, take_record_batch};
use arrow::datatypes::TimestampMicrosecondType;
use chrono::DateTime;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::catalog::FileMeta;
use crate::schema::{columns, event_schema};
use crate::wal::sync_dir;
use crate::{Error, Result};

/// Directory of all event files, relative to the data directory.
pub const EVENTS_DIR: &str = "tables/events";
/// Microseconds in a day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// zstd level of event files: 1 keeps flushes cheap on the ingest path
/// (level 3 was ~5% smaller and markedly slower to write here).
pub const ZSTD_LEVEL: i32 = 1;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default(),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        // JSON blobs are rarely equal: dictionaries would only cost.
        .set_column_dictionary_enabled(ColumnPath::from(columns::PROPERTIES), false)
        .set_column_dictionary_enabled(ColumnPath::from(columns::CONTEXT), false)
        .set_column_dictionary_enabled(ColumnPath::from(columns::TRAITS), false)
        .set_column_dictionary_enabled(ColumnPath::from(columns::MESSAGE_ID), false)
        .set_created_by("beacon".into())
        .build()
}

/// Sorts rows by event time; rows with equal times keep their order
/// (arrival order on a flush). Arrow's sort kernels do not promise that,
/// and a stable order is what lets [`merge_files`] give the same file as
/// sorting everything at once. Rows mostly arrive in time order, which a
/// stable merge sort handles in close to linear time.
pub fn sort_by_time(batch: &RecordBatch) -> Result<RecordBatch> {
    let ts = timestamps(batch)?;
    let n = u32::try_from(ts.len())
        .map_err(|_| arrow::error::ArrowError::ComputeError("batch too large to sort".into()))?;
    let mut indices: Vec<u32> = (0..n).collect();
    indices.sort_by_key(|&i| ts[i as usize]);
    Ok(take_record_batch(batch, &UInt32Array::from(indices))?)
}

/// Sorts batches by event time and splits them into UTC days:
/// `date -> rows sorted by time` (each a zero-copy slice of one sorted copy).
pub fn split_by_day(batches: &[RecordBatch]) -> Result<BTreeMap<String, RecordBatch>> {
    let all = concat_batches(&event_schema(), batches)?;
    let sorted = sort_by_time(&all)?;
    let values = timestamps(&sorted)?;
    let mut out = BTreeMap::new();
    let mut start = 0;
    while start < values.len() {
        let day = values[start].div_euclid(MICROS_PER_DAY);
        let end = values[start..].partition_point(|t| t.div_euclid(MICROS_PER_DAY) == day) + start;
        out.insert(day_string(day), sorted.slice(start, end - start));
        start = end;
    }
    Ok(out)
}

fn day_string(day: i64) -> String {
    DateTime::from_timestamp(day * 86_400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// The `YYYY-MM` month of a partition key (a day `YYYY-MM-DD` or a month).
pub fn month_of(date: &str) -> &str {
    date.get(..7).unwrap_or(date)
}

/// Whether a partition key is a month (`YYYY-MM`) rather than a day.
pub fn is_month(date: &str) -> bool {
    date.len() == 7
}

/// The first microsecond after a `YYYY-MM` month (UTC); `None` if `month`
/// is not one.
pub fn month_end_us(month: &str) -> Option<i64> {
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    Some(next.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Relative directory of one workspace-day or, after cold compaction,
/// workspace-month.
pub fn partition_dir(tenant_id: &str, date: &str) -> PathBuf {
    Path::new(EVENTS_DIR)
        .join(format!("tenant={tenant_id}"))
        .join(format!("date={date}"))
}

/// The workspace id in a file path of the layout above.
pub fn tenant_of_path(path: &Path) -> Option<&str> {
    path.components()
        .filter_map(|c| c.as_os_str().to_str())
        .find_map(|c| c.strip_prefix("tenant="))
}

/// Writes one file for a workspace-day (or month) from rows already sorted by time
/// ([`split_by_day`], [`sort_by_time`]) and makes it durable. The file is not
/// published until the caller commits its [`FileMeta`] to the catalog.
pub fn write_file(
    data_dir: &Path,
    tenant_id: &str,
    date: &str,
    sorted: &RecordBatch,
) -> Result<FileMeta> {
    let mut out = PartitionWriter::create(data_dir, tenant_id, date)?;
    out.write(sorted)?;
    out.finish()
}

/// Rows each input of [`merge_files`] is read in.
const MERGE_BATCH_ROWS: usize = 8 * 1024;

/// Merges files that are each sorted by time into one new file of the
/// partition `date`, sorted by time; rows with equal times keep the order
/// of `inputs`, then of each file (what a stable sort of their
/// concatenation gives). Streams: it holds one batch of each input and the
/// writer's open row group, never the inputs themselves, so merging a
/// month costs memory per file merged, not per event in the month. Made
/// durable, not published, as [`write_file`].
pub fn merge_files(
    data_dir: &Path,
    tenant_id: &str,
    date: &str,
    inputs: &[PathBuf],
) -> Result<FileMeta> {
    merge_files_in(
        data_dir,
        tenant_id,
        date,
        inputs,
        i64::MIN,
        MERGE_BATCH_ROWS,
    )
}

/// [`merge_files`] without the rows before `from_us` (retention cutting a
/// month file).
pub fn merge_files_from(
    data_dir: &Path,
    tenant_id: &str,
    date: &str,
    inputs: &[PathBuf],
    from_us: i64,
) -> Result<FileMeta> {
    merge_files_in(data_dir, tenant_id, date, inputs, from_us, MERGE_BATCH_ROWS)
}

fn merge_files_in(
    data_dir: &Path,
    tenant_id: &str,
    date: &str,
    inputs: &[PathBuf],
    from_us: i64,
    batch_rows: usize,
) -> Result<FileMeta> {
    /// One input: its reader and the current batch's times.
    struct Input {
        reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
        batch: RecordBatch,
        times: arrow::buffer::ScalarBuffer<i64>,
        row: usize,
    }
    impl Input {
        /// Moves to the next non-empty batch; `false` at the end.
        fn advance(&mut self) -> Result<bool> {
            for batch in self.reader.by_ref() {
                let batch = batch?;
                if batch.num_rows() == 0 {
                    continue;
                }
                self.times = timestamps(&batch)?;
                self.batch = batch;
                self.row = 0;
                return Ok(true);
            }
            Ok(false)
        }
    }

    let mut open = Vec::with_capacity(inputs.len());
    for path in inputs {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(batch_rows)
            .build()?;
        let mut input = Input {
            reader,
            batch: RecordBatch::new_empty(event_schema()),
            times: Vec::new().into(),
            row: 0,
        };
        if input.advance()? {
            open.push(input);
        }
    }
    let mut out = PartitionWriter::create(data_dir, tenant_id, date)?;
    // The next row of every input, smallest time (then input) first.
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = open
        .iter()
        .enumerate()
        .map(|(i, input)| Reverse((input.times[0], i)))
        .collect();
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(batch_rows);
    let emit = |open: &[Input], picks: &mut Vec<(usize, usize)>, out: &mut PartitionWriter| {
        if picks.is_empty() {
            return Ok(());
        }
        let batches: Vec<&RecordBatch> = open.iter().map(|i| &i.batch).collect();
        out.write(&interleave_record_batch(&batches, picks)?)?;
        picks.clear();
        Ok::<(), Error>(())
    };
    while let Some(Reverse((time, i))) = heap.pop() {
        let input = &mut open[i];
        if time >= from_us {
            picks.push((i, input.row));
        }
        input.row += 1;
        if input.row == input.batch.num_rows() {
            // The picks point into this batch: write them before it goes.
            emit(&open, &mut picks, &mut out)?;
            if !open[i].advance()? {
                continue;
            }
        } else if picks.len() == batch_rows {
            emit(&open, &mut picks, &mut out)?;
        }
        let input = &open[i];
        heap.push(Reverse((input.times[input.row], i)));
    }
    emit(&open, &mut picks, &mut out)?;
    out.finish()
}

fn timestamps(batch: &RecordBatch) -> Result<arrow::buffer::ScalarBuffer<i64>> {
    let ts = batch
        .column_by_name(columns::TIMESTAMP)
        .ok_or_else(|| arrow::error::ArrowError::SchemaError("no timestamp column".into()))?;
    Ok(ts
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .clone())
}

/// Deletes a file when dropped, unless disarmed (`.0 = None`): a write or
/// merge that fails half-way leaves no `.tmp` file behind (startup would
/// delete it too, but a failing merge retried every maintenance round
/// would pile them up until then).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A new file of one workspace partition being written: rows go in sorted
/// by time, in as many batches as the caller likes; [`Self::finish`] makes
/// it durable under its final name.
struct PartitionWriter {
    rel_dir: PathBuf,
    dir: PathBuf,
    name: String,
    tmp_path: PathBuf,
    writer: ArrowWriter<File>,
    /// Removes the `.tmp` file unless [`Self::finish`] renamed it.
    unfinished: RemoveOnDrop,
    tenant_id: String,
    date: String,
    rows: u64,
    min_ts: Option<i64>,
    max_ts: Option<i64>,
    max_received: Option<i64>,
}

impl PartitionWriter {
    fn create(data_dir: &Path, tenant_id: &str, date: &str) -> Result<Self> {
        let rel_dir = partition_dir(tenant_id, date);
        let dir = data_dir.join(&rel_dir);
        create_dir_durable(data_dir, &rel_dir)?;
        let name = format!("{}.parquet", uuid::Uuid::now_v7());
        let tmp_path = dir.join(format!("{name}.tmp"));
        let file = File::create(&tmp_path).map_err(|e| Error::io(&tmp_path, e))?;
        let writer = ArrowWriter::try_new(file, event_schema(), Some(writer_properties()))?;
        Ok(Self {
            rel_dir,
            dir,
            name,
            unfinished: RemoveOnDrop(Some(tmp_path.clone())),
            tmp_path,
            writer,
            tenant_id: tenant_id.to_owned(),
            date: date.to_owned(),
            rows: 0,
            min_ts: None,
            max_ts: None,
            max_received: None,
        })
    }

    /// Appends rows; they must not be earlier than the rows before them.
    fn write(&mut self, sorted: &RecordBatch) -> Result<()> {
        if sorted.num_rows() == 0 {
            return Ok(());
        }
        let ts = sorted
            .column_by_name(columns::TIMESTAMP)
            .map(|c| c.as_primitive::<TimestampMicrosecondType>());
        // Computed, not taken from the ends: the catalog's range prunes
        // files, so it must hold even for rows that were not sorted.
        let (min, max) = (
            ts.and_then(arrow::compute::min),
            ts.and_then(arrow::compute::max),
        );
        self.min_ts = match (self.min_ts, min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_ts = self.max_ts.max(max);
        let received = sorted
            .column_by_name(columns::RECEIVED_AT)
            .and_then(|c| arrow::compute::max(c.as_primitive::<TimestampMicrosecondType>()));
        self.max_received = self.max_received.max(received);
        self.rows += sorted.num_rows() as u64;
        self.writer.write(sorted)?;
        Ok(())
    }

    fn finish(self) -> Result<FileMeta> {
        let Self {
            rel_dir,
            dir,
            name,
            tmp_path,
            writer,
            mut unfinished,
            tenant_id,
            date,
            rows,
            min_ts,
            max_ts,
            max_received,
        } = self;
        let file = writer.into_inner()?;
        file.sync_all().map_err(|e| Error::io(&tmp_path, e))?;
        let bytes = file.metadata().map_err(|e| Error::io(&tmp_path, e))?.len();
        drop(file);
        let final_path = dir.join(&name);
        fs::rename(&tmp_path, &final_path).map_err(|e| Error::io(&final_path, e))?;
        unfinished.0 = None;
        sync_dir(&dir)?;
        Ok(FileMeta {
            path: rel_dir.join(name).to_string_lossy().into_owned(),
            tenant_id,
            date,
            rows,
            bytes,
            min_ts_us: min_ts.unwrap_or(0),
            max_ts_us: max_ts.unwrap_or(0),
            max_received_us: max_received.unwrap_or(0),
        })
    }
}

fn create_dir_durable(data_dir: &Path, rel: &Path) -> Result<()> {
    let mut current = data_dir.to_path_buf();
    for part in rel.components() {
        let parent = current.clone();
        current.push(part);
        if !current.exists() {
            fs::create_dir_all(&current).map_err(|e| Error::io(&current, e))?;
            sync_dir(&parent)?;
        }
    }
    Ok(())
}

/// Reads a whole file (optionally only some columns).
pub fn read_file(path: &Path, projection: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(64 * 1024);
    let builder = match projection {
        Some(names) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Deletes Parquet files under the events directory that the catalog does not
/// list (left by a crash between write and commit, or by a compaction whose
/// old files were not yet deleted, or a deleted workspace's), leftover
/// `.tmp` files, and the directories this leaves empty. Startup only: a
/// flush may be creating a directory at any other time.
pub fn remove_orphans(data_dir: &Path, published: &HashSet<String>) -> Result<usize> {
    let root = data_dir.join(EVENTS_DIR);
    let mut removed = 0;
    let mut stack = vec![root.clone()];
    let mut dirs = Vec::new();
    while let Some(dir) = stack.pop() {
        if dir != root {
            dirs.push(dir.clone());
        }
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(data_dir)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_tmp = rel.ends_with(".tmp");
            if is_tmp || (rel.ends_with(".parquet") && !published.contains(&rel)) {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                removed += 1;
            }
        }
    }
    // Children were pushed after their parents: deepest first.
    for dir in dirs.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
    Ok(removed)
}

/// Number of rows in a batch list.
pub fn total_rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Reads `message_id` and `received_at` of a file (for the dedupe index).
pub fn read_message_ids(path: &Path) -> Result<Vec<(String, i64)>> {
    let batches = read_file(path, Some(&[columns::MESSAGE_ID, columns::RECEIVED_AT]))?;
    let mut out = Vec::new();
    for batch in batches {
        let (Some(ids), Some(received)) = (
            batch.column_by_name(columns::MESSAGE_ID),
            batch.column_by_name(columns::RECEIVED_AT),
        ) else {
            continue;
        };
        let ids = ids.as_string::<i32>();
        let received = received.as_primitive::<TimestampMicrosecondType>();
        for i in 0..ids.len() {
            out.push((ids.value(i).to_owned(), received.value(i)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::events_to_batch;
    use crate::event::{Event, EventType};

    fn arb_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-zA-Z0-9 éü€{}\"\\\\]{0,12}")
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            (
                "[a-z0-9-]{1,16}",
                0usize..6,
                arb_text(),
                arb_text(),
                arb_text(),
                0i64..4_000_000_000_000_000,
                proptest::option::of(-999_999_999_999_999_999i128..999_999_999_999_999_999),
                proptest::option::of(any::<i64>()),
            ),
            (arb_text(), arb_text(), arb_text(), arb_text()),
        )
            .prop_map(
                |((id, kind, event, user, props, ts, revenue, qty), (cur, order, status, ctx))| {
                    Event {
                        message_id: id,
                        kind: Some(EventType::ALL[kind]),
                        event,
                        user_id: user,
                        anonymous_id: Some("a".into()),
                        timestamp_us: ts,
                        received_at_us: ts + 1,
                        revenue,
                        quantity: qty,
                        currency: cur,
                        order_id: order,
                        status,
                        properties: props,
                        context: ctx,
                        ..Event::default()
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// A streamed merge of sorted files, read a few rows at a time, is
        /// exactly the stable sort of their concatenation, equal times
        /// included.
        #[test]
        fn merge_is_a_stable_sort(
            files in proptest::collection::vec(proptest::collection::vec(arb_event(), 0..25), 1..5),
            batch_rows in 1usize..7,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut inputs = Vec::new();
            let mut all = Vec::new();
            for (i, events) in files.into_iter().enumerate() {
                let events: Vec<Event> = events
                    .into_iter()
                    .enumerate()
                    .map(|(j, mut e)| {
                        e.timestamp_us %= 4;
                        e.message_id = format!("{i}-{j}");
                        e
                    })
                    .collect();
                let batch = sort_by_time(&events_to_batch(&events).expect("batch")).expect("sort");
                let meta = write_file(dir.path(), "t", "2025-01-01", &batch).expect("write");
                inputs.push(dir.path().join(&meta.path));
                all.push(batch);
            }
            let expected = sort_by_time(&concat_batches(&event_schema(), &all).expect("concat")).expect("sort");
            let meta = merge_files_in(dir.path(), "t", "2025-01", &inputs, i64::MIN, batch_rows).expect("merge");
            let back = read_file(&dir.path().join(&meta.path), None).expect("read");
            let back = concat_batches(&event_schema(), &back).expect("concat");
            prop_assert_eq!(meta.rows as usize, expected.num_rows());
            prop_assert!(meta.path.contains("date=2025-01/"));
            prop_assert_eq!(back, expected.clone());
            if expected.num_rows() > 0 {
                let ts = timestamps(&expected).expect("ts");
                prop_assert_eq!((meta.min_ts_us, meta.max_ts_us), (ts[0], ts[ts.len() - 1]));
            }
        }

        /// Event -> Arrow -> Parquet -> Arrow keeps every value (rows come back sorted by time).
        #[test]
        fn parquet_round_trip(events in proptest::collection::vec(arb_event(), 1..40)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let batch = events_to_batch(&events).expect("batch");
            let meta = write_file(dir.path(), "t", "2025-01-01", &sort_by_time(&batch).expect("sort")).expect("write");
            prop_assert_eq!(meta.rows as usize, events.len());
            let back = read_file(&dir.path().join(&meta.path), None).expect("read");
            let back = concat_batches(&event_schema(), &back).expect("concat");
            prop_assert_eq!(back, sort_by_time(&batch).expect("sort"));
            prop_assert_eq!(meta.min_ts_us, events.iter().map(|e| e.timestamp_us).min().expect("min"));
        }
    }

    /// A file abandoned half-way (a merge whose input fails to read)
    /// leaves nothing behind; a finished one is renamed into place.
    #[test]
    fn unfinished_files_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = |date: &str| -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir.path().join(partition_dir("t", date)))
                .expect("partition dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let batch = events_to_batch(&[Event {
            message_id: "m".into(),
            anonymous_id: Some("a".into()),
            timestamp_us: 1,
            ..Event::default()
        }])
        .expect("batch");

        let mut out = PartitionWriter::create(dir.path(), "t", "2025-01").expect("create");
        out.write(&batch).expect("write");
        assert_eq!(files("2025-01").len(), 1);
        assert!(files("2025-01")[0].ends_with(".parquet.tmp"));
        drop(out);
        assert_eq!(files("2025-01"), Vec::<String>::new());

        // A merge whose input is not Parquet fails before writing anything.
        let good = write_file(dir.path(), "t", "2025-01-01", &batch).expect("write");
        let bad = dir.path().join("not-parquet.parquet");
        fs::write(&bad, b"not parquet").expect("write");
        assert!(
            merge_files(
                dir.path(),
                "t",
                "2025-01",
                &[dir.path().join(&good.path), bad]
            )
            .is_err()
        );
        assert_eq!(files("2025-01"), Vec::<String>::new());

        let mut out = PartitionWriter::create(dir.path(), "t", "2025-01").expect("create");
        out.write(&batch).expect("write");
        let meta = out.finish().expect("finish");
        assert_eq!(
            files("2025-01"),
            vec![
                Path::new(&meta.path)
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            ]
        );
    }

    #[test]
    fn days_split_on_utc_midnight() {
        let at = |us: i64| Event {
            message_id: us.to_string(),
            anonymous_id: Some("a".into()),
            timestamp_us: us,
            ..Event::default()
        };
        let midnight = 1_735_689_600_000_000; // 2025-01-01T00:00:00Z
        let batch =
            events_to_batch(&[at(midnight - 1), at(midnight), at(midnight + 1)]).expect("batch");
        let days = split_by_day(&[batch]).expect("split");
        let counts: Vec<(String, usize)> = days
            .iter()
            .map(|(d, b)| (d.clone(), b.num_rows()))
            .collect();
        assert_eq!(
            counts,
            vec![("2024-12-31".into(), 1), ("2025-01-01".into(), 2)]
        );
    }
}
