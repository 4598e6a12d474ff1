//! Crash safety: concurrent clients ingest with acknowledgements while the
//! real `beacon` binary is SIGKILLed at random moments, several rounds; after
//! each restart every acknowledged event is present exactly once.

use crate::common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Server, call, client, create_tenant, fast_env, sql};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::Mutex;
use tokio::sync::Notify;

const CLIENTS: usize = 4;
const BATCH: usize = 25;
const ROUNDS: usize = 4;

#[derive(Default)]
struct Ledger {
    /// Acknowledged message ids.
    acked: Mutex<BTreeSet<String>>,
    /// Batches sent without an answer (may or may not be stored): retried next round.
    unsure: Mutex<Vec<Vec<String>>>,
    count: AtomicUsize,
    notify: Notify,
}

fn batch_body(ids: &[String]) -> String {
    let events: Vec<_> = ids
        .iter()
        .map(|id| {
            json!({"type": "track", "event": "Order Completed", "userId": "crash", "messageId": id,
                         "properties": {"revenue": 1.5, "order_id": id}})
        })
        .collect();
    json!({ "batch": events }).to_string()
}

async fn client_loop(
    base: String,
    key: String,
    round: usize,
    c: usize,
    ledger: Arc<Ledger>,
    retries: Vec<Vec<String>>,
) {
    let http = client();
    let mut pending: Vec<Vec<String>> = retries;
    let mut n = 0;
    loop {
        let ids = match pending.pop() {
            Some(ids) => ids,
            None => {
                n += 1;
                (0..BATCH)
                    .map(|i| format!("r{round}-c{c}-b{n}-e{i}"))
                    .collect()
            }
        };
        if n > 400 {
            // Bounded: never loop forever if the server is not killed.
            return;
        }
        let result = http
            .post(format!("{base}/v1/batch"))
            .bearer_auth(&key)
            .body(batch_body(&ids))
            .send()
            .await;
        match result {
            Ok(resp) if resp.status() == 200 => {
                ledger
                    .acked
                    .lock()
                    .expect("lock")
                    .extend(ids.iter().cloned());
                ledger.count.fetch_add(ids.len(), Ordering::SeqCst);
                ledger.notify.notify_waiters();
            }
            Ok(resp) if resp.status() == 503 => pending.push(ids),
            Ok(resp) => panic!("unexpected status {}", resp.status()),
            Err(_) => {
                // Server gone mid-request: outcome unknown; retry after restart.
                ledger.unsure.lock().expect("lock").push(ids);
                ledger.unsure.lock().expect("lock").extend(pending);
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_and_duplicates_nothing() {
    let seed: u64 = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("crash test seed: {seed} (set CRASH_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tenant = create_tenant(&data, "Crashy");
    let ledger = Arc::new(Ledger::default());

    for round in 0..ROUNDS {
        let server = Server::start(&data, &fast_env());
        let retries = std::mem::take(&mut *ledger.unsure.lock().expect("lock"));
        let mut per_client: Vec<Vec<Vec<String>>> = vec![Vec::new(); CLIENTS];
        for (i, r) in retries.into_iter().enumerate() {
            per_client[i % CLIENTS].push(r);
        }
        let start = ledger.count.load(Ordering::SeqCst);
        let target = start + rng.random_range(BATCH * 4..BATCH * 200);
        let tasks: Vec<_> = per_client
            .into_iter()
            .enumerate()
            .map(|(c, retries)| {
                tokio::spawn(client_loop(
                    server.base.clone(),
                    tenant.write_key.clone(),
                    round,
                    c,
                    Arc::clone(&ledger),
                    retries,
                ))
            })
            .collect();
        loop {
            let notified = ledger.notify.notified();
            if ledger.count.load(Ordering::SeqCst) >= target {
                break;
            }
            // A bound, not a sleep: fail loudly if the clients stop making progress.
            tokio::time::timeout(std::time::Duration::from_secs(120), notified)
                .await
                .expect("clients made no progress for 120 s");
        }
        server.crash();
        for t in tasks {
            t.await.expect("client task");
        }

        // Restart and check: every acknowledged id present, none twice.
        let server = Server::start(&data, &fast_env());
        let v = sql(&server, &tenant.admin_key, "SELECT message_id FROM events").await;
        let rows = v["rows"].as_array().expect("rows");
        let stored: Vec<String> = rows
            .iter()
            .map(|r| r[0].as_str().expect("id").to_owned())
            .collect();
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(
            unique.len(),
            stored.len(),
            "round {round}: duplicates stored"
        );
        let acked = ledger.acked.lock().expect("lock").clone();
        let missing: Vec<&String> = acked.iter().filter(|id| !unique.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged events lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        eprintln!(
            "round {round}: {} acknowledged, {} stored",
            acked.len(),
            stored.len()
        );
        if round + 1 == ROUNDS {
            // The rounds must have exercised flushes (Parquet + WAL checkpoint), not only WAL replay.
            let (_, ws) = call(
                &server,
                reqwest::Method::GET,
                "/v1/workspace",
                &tenant.admin_key,
                None,
            )
            .await;
            assert!(
                ws["stats"]["file_rows"].as_u64().unwrap_or(0) > 0,
                "no flush happened: {ws}"
            );
        }
        server.crash();
    }
    assert!(ledger.count.load(Ordering::SeqCst) >= ROUNDS * BATCH);
}
