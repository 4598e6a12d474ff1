//! Beacon benchmarks. `benches/decode.rs` holds the criterion
//! micro-benchmarks; `src/bin/ingest_bench.rs` is the macro harness that
//! starts the real `beacon` binary and records `benches/RESULTS.md`.

use std::path::Path;

use serde_json::{Value, json};

/// A realistic mix of shop events (`n` of them, deterministic).
pub fn sample_events(n: usize, seed: u64) -> Vec<Value> {
    let names = [
        "Product Viewed",
        "Product Added",
        "Checkout Started",
        "Order Completed",
        "Booking Created",
    ];
    (0..n)
        .map(|i| {
            let k = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(seed);
            let name = names[(k % names.len() as u64) as usize];
            json!({
                "type": "track",
                "event": name,
                "messageId": format!("{seed}-{i}"),
                "userId": format!("user-{}", k % 5000),
                "anonymousId": format!("anon-{}", k % 20000),
                "timestamp": format!("2025-{:02}-{:02}T{:02}:{:02}:00Z", 1 + k % 12, 1 + k % 28, k % 24, k % 60),
                "properties": {
                    "order_id": format!("o-{}", i),
                    "product_id": format!("sku-{}", k % 300),
                    "revenue": ((k % 50000) as f64) / 100.0,
                    "price": ((k % 9000) as f64) / 100.0,
                    "quantity": 1 + k % 4,
                    "currency": "EUR",
                    "channel": (["web", "app", "pos"][(k % 3) as usize]),
                    "payment_method": (["card", "paypal"][(k % 2) as usize]),
                },
                "context": {"ip": "203.0.113.7", "library": {"name": "analytics.js", "version": "5.2.0"},
                            "page": {"path": "/products/x", "referrer": "https://search.example/"}},
            })
        })
        .collect()
}

/// Segment `/v1/batch` bodies of `per_batch` events.
pub fn segment_bodies(events: &[Value], per_batch: usize) -> Vec<Vec<u8>> {
    events
        .chunks(per_batch)
        .map(|chunk| json!({ "batch": chunk }).to_string().into_bytes())
        .collect()
}

/// NDJSON bodies of `per_batch` events.
pub fn ndjson_bodies(events: &[Value], per_batch: usize) -> Vec<Vec<u8>> {
    events
        .chunks(per_batch)
        .map(|chunk| {
            let mut out = Vec::new();
            for e in chunk {
                out.extend_from_slice(e.to_string().as_bytes());
                out.push(b'\n');
            }
            out
        })
        .collect()
}

/// Replaces (or appends) `## {title}` in the results file.
pub fn write_section(path: &Path, title: &str, body: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmark results\n".to_owned());
    let header = format!("## {title}\n");
    let new_section = format!("{header}\n{body}\n");
    let updated = match old.find(&header) {
        Some(start) => {
            let rest = &old[start + header.len()..];
            let end = rest
                .find("\n## ")
                .map_or(old.len(), |i| start + header.len() + i + 1);
            format!("{}{}{}", &old[..start], new_section, &old[end..])
        }
        None => format!("{}\n\n{new_section}", old.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
