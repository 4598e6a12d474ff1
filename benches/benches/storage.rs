#![allow(missing_docs)] // criterion_group! generates undocumented items.
//! Micro-benchmarks of the storage hot path: appending a WAL record (with
//! and without fdatasync), and a Parquet flush (sort + split by day + zstd
//! write) of generated demo events.

use beacon_benches::sample_events;
use beacon_ingest::batch::events_to_batch;
use beacon_ingest::decode::{Limits, decode_batch};
use beacon_ingest::storage::{split_by_day, write_file};
use beacon_ingest::wal::SyncMode;
use beacon_ingest::wal::{SegmentWriter, encode_batch};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const NOW: i64 = 1_780_000_000_000_000;

fn batch_of(n: usize) -> arrow::array::RecordBatch {
    let events = sample_events(n, 11);
    let body = serde_json::to_vec(&serde_json::json!({ "batch": events })).expect("json");
    let limits = Limits {
        max_batch_events: n,
        ..Limits::default()
    };
    let decoded = decode_batch(&body, &limits, NOW).expect("decode");
    events_to_batch(&decoded.events).expect("batch")
}

fn wal_append(c: &mut Criterion) {
    let batch = batch_of(500);
    let ipc = encode_batch(&batch).expect("encode");
    let mut group = c.benchmark_group("wal");
    group.throughput(Throughput::Elements(500));
    for (name, sync) in [
        ("append_nosync", SyncMode::None),
        ("append_fdatasync", SyncMode::Fsync),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = SegmentWriter::create(dir.path(), 1, sync).expect("segment");
        let mut seq = 1;
        group.bench_function(BenchmarkId::new(name, "500_events"), |b| {
            b.iter(|| {
                seq += 1;
                writer.append(seq, "ws_bench", &ipc).expect("append");
                writer.sync().expect("sync");
            });
        });
    }
    group.finish();
}

fn parquet_flush(c: &mut Criterion) {
    let batch = batch_of(50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("flush");
    group.throughput(Throughput::Elements(batch.num_rows() as u64));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("parquet", "50k_events"), |b| {
        b.iter(|| {
            for (date, sorted) in split_by_day(std::slice::from_ref(&batch)).expect("split") {
                write_file(dir.path(), "ws_bench", &date, &sorted).expect("write");
            }
        });
    });
    group.finish();
}

criterion_group!(benches, wal_append, parquet_flush);
criterion_main!(benches);
