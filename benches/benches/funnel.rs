#![allow(missing_docs)] // criterion_group! generates undocumented items.
//! Micro-benchmarks of the funnel aggregate: the per-group evaluation
//! alone, and `window_funnel` through DataFusion over 200,000 events of
//! 20,000 people (a 3-step and a 5-step funnel).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use beacon_engine::udf::funnel::{FunnelMode, FunnelRow, evaluate};
use beacon_engine::udf::{register, time::BusinessCalendar};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use rand::{Rng, SeedableRng};

const EVENTS: usize = 200_000;
const PEOPLE: usize = 20_000;
const NAMES: [&str; 6] = [
    "Page Viewed",
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Other",
];

fn table() -> (Arc<Schema>, Vec<RecordBatch>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let mut batches = Vec::new();
    for chunk in 0..4 {
        let n = EVENTS / 4;
        let users: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|_| format!("u{}", rng.random_range(0..PEOPLE))),
        ));
        // Earlier funnel steps are more frequent.
        let events: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|_| {
            let x: f64 = rng.random();
            NAMES[((x * x) * NAMES.len() as f64) as usize % NAMES.len()]
        })));
        let ts: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                (0..n)
                    .map(|i| (chunk * n + i) as i64 * 30_000_000 + rng.random_range(0..1_000_000)),
            )
            .with_timezone("UTC"),
        );
        batches.push(
            RecordBatch::try_new(Arc::clone(&schema), vec![users, events, ts]).expect("batch"),
        );
    }
    (schema, batches)
}

fn funnel(c: &mut Criterion) {
    let mut group = c.benchmark_group("funnel");

    // The evaluation of one person's 200 rows.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let rows: Vec<FunnelRow> = (0..200)
        .map(|i| FunnelRow {
            ts: i * 60_000_000 + rng.random_range(0..1_000_000),
            mask: 1 << rng.random_range(0..5),
        })
        .collect();
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function(BenchmarkId::new("evaluate", "200_rows_5_steps"), |b| {
        b.iter(|| {
            let mut r = rows.clone();
            evaluate(&mut r, 5, 14 * 86_400 * 1_000_000, FunnelMode::Sequential)
        });
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let (schema, batches) = table();
    let ctx = SessionContext::new();
    register(&ctx, BusinessCalendar::default(), "USD");
    let mem =
        MemTable::try_new(schema, batches.into_iter().map(|b| vec![b]).collect()).expect("table");
    ctx.register_table("events", Arc::new(mem))
        .expect("register");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    for steps in [3usize, 5] {
        let conditions: Vec<String> = NAMES[..5]
            .iter()
            .take(steps)
            .map(|n| format!("event = '{n}'"))
            .collect();
        let sql = format!(
            "SELECT level, count(*) FROM (SELECT user_id, window_funnel(1209600, 'sequential', timestamp, {}) AS level \
             FROM events GROUP BY user_id) GROUP BY level",
            conditions.join(", ")
        );
        group.bench_function(
            BenchmarkId::new("window_funnel_sql", format!("{steps}_steps_200k_events")),
            |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        ctx.sql(&sql)
                            .await
                            .expect("plan")
                            .collect()
                            .await
                            .expect("run")
                    })
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, funnel);
criterion_main!(benches);
