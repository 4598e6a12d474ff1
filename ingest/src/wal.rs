//! The write-ahead log: numbered segment files of checksummed records.
//!
//! Segment file `{first_seq:020}.wal` starts with [`MAGIC`] and holds records
//!
//! ```text
//! [body_len: u32 LE][crc32(body): u32 LE][body]
//! body = [seq: u64 LE][tenant_len: u16 LE][tenant utf-8][Arrow IPC stream of one batch]
//! ```
//!
//! Records have strictly increasing sequence numbers across segments. Only
//! the [`crate::store`] group-commit thread writes; it appends the records of
//! a group, then flushes and (in [`SyncMode::Fsync`]) `fdatasync`s once before
//! any of them is acknowledged. A segment is closed only after a sync, so a
//! torn record can only be the tail of the newest segment: replay truncates it
//! there (it was never acknowledged). Damage anywhere else is reported as
//! [`Error::WalCorrupt`] and the server refuses to start rather than silently
//! skipping acknowledged data.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Bytes at the start of every segment.
pub const MAGIC: &[u8; 8] = b"BCNWAL01";
const HEADER_LEN: usize = 8;
/// Largest record body written or replayed (guards against garbage lengths).
pub const MAX_RECORD_BYTES: usize = 1 << 30;

/// How the log is made durable before an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// `fdatasync` each commit group before acknowledging (default). Survives
    /// process crashes and power loss.
    #[default]
    Fsync,
    /// Write to the OS page cache only. Survives a crash of the Beacon
    /// process, but acknowledged events can be lost on power loss or kernel
    /// crash. For benchmarks and disposable environments.
    None,
}

/// One decoded record.
#[derive(Debug)]
pub struct WalRecord {
    /// Sequence number.
    pub seq: u64,
    /// Tenant id.
    pub tenant: String,
    /// The events.
    pub batch: RecordBatch,
}

/// Encodes a batch as an Arrow IPC stream.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    let mut writer = StreamWriter::try_new(&mut buf, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(buf)
}

fn decode_batch(bytes: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    match reader.next() {
        Some(batch) => Ok(batch?),
        None => {
            Err(arrow::error::ArrowError::IpcError("empty IPC stream in WAL record".into()).into())
        }
    }
}

/// Path of the segment that starts at `first_seq`.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

/// Lists segments in `dir` as `(first_seq, path)`, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(first) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every record of every segment in order, calling `f` for each.
/// Truncates a torn tail of the newest segment. Returns the highest sequence
/// number seen (0 if none).
pub fn replay(dir: &Path, mut f: impl FnMut(WalRecord) -> Result<()>) -> Result<u64> {
    let segments = list_segments(dir)?;
    let mut last_seq = 0;
    for (i, (_, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let mut data = Vec::new();
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut data))
            .map_err(|e| Error::io(path, e))?;
        let corrupt = |offset: usize, reason: &str| Error::WalCorrupt {
            path: path.clone(),
            offset: offset as u64,
            reason: reason.to_owned(),
        };
        if data.len() < HEADER_LEN {
            if is_last {
                // Crashed while creating the segment: nothing in it was acknowledged.
                truncate_to(path, 0)?;
                continue;
            }
            return Err(corrupt(0, "segment shorter than its header"));
        }
        if &data[..HEADER_LEN] != MAGIC {
            return Err(corrupt(0, "bad magic"));
        }
        let mut offset = HEADER_LEN;
        while offset < data.len() {
            let torn = match parse_record(&data[offset..]) {
                Ok(Some((body, len))) => {
                    let record =
                        decode_record(body).map_err(|e| corrupt(offset, &e.to_string()))?;
                    if record.seq <= last_seq {
                        return Err(corrupt(offset, "sequence number does not increase"));
                    }
                    last_seq = record.seq;
                    f(record)?;
                    offset += len;
                    continue;
                }
                Ok(None) => "truncated record",
                Err(reason) => reason,
            };
            if is_last {
                // As in PostgreSQL, the log ends at the first invalid record of
                // the newest segment: an unsynced group may be torn in any
                // order on power loss, so later bytes cannot be trusted
                // either. They are kept aside for inspection, never deleted.
                let quarantine = path.with_extension(format!("wal.tail-{offset}"));
                fs::write(&quarantine, &data[offset..]).map_err(|e| Error::io(&quarantine, e))?;
                tracing::warn!(
                    path = %path.display(), offset, reason = torn, kept = %quarantine.display(),
                    "Truncated the torn tail of the write-ahead log."
                );
                truncate_to(path, offset as u64)?;
                break;
            }
            return Err(corrupt(offset, torn));
        }
    }
    Ok(last_seq)
}

/// Splits one framed record off `data`: `Ok(None)` if incomplete.
fn parse_record(data: &[u8]) -> Result<Option<(&[u8], usize)>, &'static str> {
    if data.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if !(10..=MAX_RECORD_BYTES).contains(&len) {
        return Err("bad record length");
    }
    if data.len() < 8 + len {
        return Ok(None);
    }
    let body = &data[8..8 + len];
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch");
    }
    Ok(Some((body, 8 + len)))
}

fn decode_record(body: &[u8]) -> Result<WalRecord> {
    let seq = u64::from_le_bytes(body[..8].try_into().map_err(|_| bad_record())?);
    let tenant_len = u16::from_le_bytes([body[8], body[9]]) as usize;
    let tenant_end = 10 + tenant_len;
    let tenant = body
        .get(10..tenant_end)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(bad_record)?
        .to_owned();
    let batch = decode_batch(&body[tenant_end..])?;
    Ok(WalRecord { seq, tenant, batch })
}

fn bad_record() -> Error {
    arrow::error::ArrowError::IpcError("malformed WAL record header".into()).into()
}

fn truncate_to(path: &Path, len: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.set_len(len).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Deletes segments that hold no record (left by a crash right after a
/// rotation, or emptied by torn-tail truncation).
pub fn delete_empty_segments(dir: &Path) -> Result<usize> {
    let mut deleted = 0;
    for (_, path) in list_segments(dir)? {
        let len = fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        if len <= HEADER_LEN as u64 {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

/// Deletes every segment that starts before `first_seq_kept`.
pub fn delete_segments_before(dir: &Path, first_seq_kept: u64) -> Result<usize> {
    let mut deleted = 0;
    for (first, path) in list_segments(dir)? {
        if first < first_seq_kept {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

/// `fsync`s a directory so renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Appends records to the newest segment.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    path: PathBuf,
    first_seq: u64,
    file: BufWriter<File>,
    /// Bytes written to this segment (including unsynced ones).
    written: u64,
    /// Length of the segment at the last successful sync.
    synced: u64,
    sync: SyncMode,
}

impl SegmentWriter {
    /// Creates a new segment whose first record will be `first_seq`.
    pub fn create(dir: &Path, first_seq: u64, sync: SyncMode) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = segment_path(dir, first_seq);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.write_all(MAGIC).map_err(|e| Error::io(&path, e))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            path,
            first_seq,
            file: BufWriter::with_capacity(1 << 20, file),
            written: HEADER_LEN as u64,
            synced: HEADER_LEN as u64,
            sync,
        })
    }

    /// First sequence number of this segment.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Bytes in this segment.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// True when the segment holds no record.
    pub fn is_empty(&self) -> bool {
        self.written == HEADER_LEN as u64
    }

    /// Buffers one record; it is durable only after [`Self::sync`].
    pub fn append(&mut self, seq: u64, tenant: &str, ipc: &[u8]) -> Result<()> {
        let tenant_len = u16::try_from(tenant.len()).map_err(|_| Error::InvalidSetting {
            name: "tenant".into(),
            reason: "tenant id too long".into(),
        })?;
        let body_len = 10 + tenant.len() + ipc.len();
        if body_len > MAX_RECORD_BYTES {
            return Err(Error::InvalidSetting {
                name: "batch".into(),
                reason: format!("WAL record of {body_len} bytes exceeds {MAX_RECORD_BYTES}"),
            });
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_le_bytes());
        hasher.update(&tenant_len.to_le_bytes());
        hasher.update(tenant.as_bytes());
        hasher.update(ipc);
        let crc = hasher.finalize();
        let len = u32::try_from(body_len).map_err(|_| Error::InvalidSetting {
            name: "batch".into(),
            reason: "record larger than 4 GiB".into(),
        })?;
        let io = |e| Error::io(&self.path, e);
        self.file.write_all(&len.to_le_bytes()).map_err(io)?;
        self.file.write_all(&crc.to_le_bytes()).map_err(io)?;
        self.file.write_all(&seq.to_le_bytes()).map_err(io)?;
        self.file.write_all(&tenant_len.to_le_bytes()).map_err(io)?;
        self.file.write_all(tenant.as_bytes()).map_err(io)?;
        self.file.write_all(ipc).map_err(io)?;
        self.written += 8 + body_len as u64;
        Ok(())
    }

    /// Makes every appended record durable (per [`SyncMode`]).
    pub fn sync(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        if self.sync == SyncMode::Fsync {
            self.file
                .get_ref()
                .sync_data()
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.synced = self.written;
        Ok(())
    }

    /// After a failed append or sync: cut the file back to the last synced
    /// length so no half-written record precedes later ones.
    pub fn rollback(&mut self) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        file.set_len(self.synced)
            .map_err(|e| Error::io(&self.path, e))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        // Discard whatever the old buffer still holds.
        let old = std::mem::replace(&mut self.file, BufWriter::with_capacity(1 << 20, file));
        let _ = old.into_parts();
        self.written = self.synced;
        Ok(())
    }

    /// Directory of the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::events_to_batch;
    use crate::event::Event;

    fn batch(n: usize) -> RecordBatch {
        let events: Vec<Event> = (0..n)
            .map(|i| Event {
                message_id: format!("m{i}"),
                anonymous_id: Some("a".into()),
                timestamp_us: 1_700_000_000_000_000 + i as i64,
                received_at_us: 1_700_000_000_000_000,
                ..Event::default()
            })
            .collect();
        events_to_batch(&events).expect("valid batch")
    }

    #[test]
    fn append_sync_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::create(dir.path(), 1, SyncMode::Fsync).expect("create");
        for seq in 1..=3 {
            w.append(
                seq,
                "t1",
                &encode_batch(&batch(seq as usize)).expect("encode"),
            )
            .expect("append");
        }
        w.sync().expect("sync");
        let mut seen = vec![];
        let last = replay(dir.path(), |r| {
            seen.push((r.seq, r.tenant, r.batch.num_rows()));
            Ok(())
        })
        .expect("replay");
        assert_eq!(last, 3);
        assert_eq!(
            seen,
            vec![
                (1, "t1".into(), 1),
                (2, "t1".into(), 2),
                (3, "t1".into(), 3)
            ]
        );
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::create(dir.path(), 1, SyncMode::Fsync).expect("create");
        w.append(1, "t", &encode_batch(&batch(2)).expect("encode"))
            .expect("append");
        w.append(2, "t", &encode_batch(&batch(2)).expect("encode"))
            .expect("append");
        w.sync().expect("sync");
        let path = segment_path(dir.path(), 1);
        let full = fs::metadata(&path).expect("meta").len();
        // Tear the second record in half.
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(full - 40).expect("truncate");
        let mut seqs = vec![];
        replay(dir.path(), |r| {
            seqs.push(r.seq);
            Ok(())
        })
        .expect("replay");
        assert_eq!(seqs, vec![1]);
        // The cut bytes are kept aside, not destroyed.
        let kept = fs::read_dir(dir.path())
            .expect("ls")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().contains(".wal.tail-"))
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(kept, 1);
        // And the file was cut back to the end of record 1: a second replay agrees.
        let mut again = vec![];
        replay(dir.path(), |r| {
            again.push(r.seq);
            Ok(())
        })
        .expect("replay");
        assert_eq!(again, vec![1]);
    }

    #[test]
    fn corruption_in_a_closed_segment_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::create(dir.path(), 1, SyncMode::Fsync).expect("create");
        w.append(1, "t", &encode_batch(&batch(2)).expect("encode"))
            .expect("append");
        w.sync().expect("sync");
        let mut w2 = SegmentWriter::create(dir.path(), 2, SyncMode::Fsync).expect("create");
        w2.append(2, "t", &encode_batch(&batch(2)).expect("encode"))
            .expect("append");
        w2.sync().expect("sync");
        let path = segment_path(dir.path(), 1);
        let mut data = fs::read(&path).expect("read");
        let n = data.len();
        data[n - 5] ^= 0xff;
        fs::write(&path, data).expect("write");
        let err = replay(dir.path(), |_| Ok(())).expect_err("corrupt");
        assert!(matches!(err, Error::WalCorrupt { .. }), "{err}");
    }
}
