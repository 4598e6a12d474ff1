#![allow(missing_docs)] // criterion_group! generates undocumented items.
//! Micro-benchmarks of the ingest hot path: JSON parse alone (the ceiling),
//! decode + validation, Arrow batch building, WAL record encoding.

use beacon_benches::{sample_events, segment_bodies};
use beacon_ingest::batch::events_to_batch;
use beacon_ingest::decode::{Limits, decode_batch};
use beacon_ingest::wal::encode_batch;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const NOW: i64 = 1_780_000_000_000_000;

fn ingest_path(c: &mut Criterion) {
    let events = sample_events(500, 7);
    let body = segment_bodies(&events, 500).remove(0);
    let limits = Limits::default();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(500));
    group.bench_with_input(
        BenchmarkId::new("parse_only", "500_events"),
        &body,
        |b, body| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(body).expect("json"));
        },
    );
    group.bench_with_input(
        BenchmarkId::new("decode_validate", "500_events"),
        &body,
        |b, body| {
            b.iter(|| decode_batch(body, &limits, NOW).expect("decode"));
        },
    );
    let decoded = decode_batch(&body, &limits, NOW).expect("decode");
    group.bench_with_input(
        BenchmarkId::new("to_arrow", "500_events"),
        &decoded.events,
        |b, events| {
            b.iter(|| events_to_batch(events).expect("batch"));
        },
    );
    let batch = events_to_batch(&decoded.events).expect("batch");
    group.bench_with_input(
        BenchmarkId::new("wal_encode", "500_events"),
        &batch,
        |b, batch| {
            b.iter(|| encode_batch(batch).expect("encode"));
        },
    );
    group.finish();
}

criterion_group!(benches, ingest_path);
criterion_main!(benches);
