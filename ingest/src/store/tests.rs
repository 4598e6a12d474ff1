use std::sync::atomic::AtomicI64;

use arrow::array::AsArray;

use super::*;
use crate::catalog::Catalog;

#[derive(Debug)]
struct FixedClock(AtomicI64);

impl Clock for FixedClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const NOW: i64 = 1_750_000_000_000_000; // 2025-06-15

fn open(dir: &Path, config: IngestConfig) -> (Store, String) {
    let catalog = Arc::new(Catalog::open(dir).expect("catalog"));
    let tenant = match catalog.tenants().expect("tenants").first() {
        Some(t) => t.id.clone(),
        None => catalog.create_tenant("t").expect("tenant").0.id,
    };
    let clock = Arc::new(FixedClock(AtomicI64::new(NOW)));
    (
        Store::open(config, dir, catalog, clock).expect("open"),
        tenant,
    )
}

fn events(ids: std::ops::Range<usize>, day_offset: i64) -> Vec<Event> {
    ids.map(|i| Event {
        message_id: format!("m{i}"),
        anonymous_id: Some(format!("anon{}", i % 7)),
        event: Some("Order Completed".into()),
        timestamp_us: NOW - day_offset * 86_400_000_000 - i as i64,
        received_at_us: NOW,
        revenue: Some(i as i128 * 10_000),
        ..Event::default()
    })
    .collect()
}

fn ids_in(store: &Store, tenant: &str) -> Vec<String> {
    let snap = store.snapshot(tenant);
    let mut out = Vec::new();
    for batch in &snap.batches {
        let col = batch
            .column_by_name(columns::MESSAGE_ID)
            .expect("col")
            .as_string::<i32>();
        out.extend(col.iter().flatten().map(str::to_owned));
    }
    for (path, _) in &snap.files {
        for (id, _) in storage::read_message_ids(path).expect("read") {
            out.push(id);
        }
    }
    out.sort();
    out
}

async fn flush(store: &Store) -> FlushReport {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.flush())
        .await
        .expect("join")
        .expect("flush")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_queryable_flushes_and_dedupes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, tenant) = open(dir.path(), IngestConfig::test_config());
    let receipt = store
        .ingest(&tenant, events(0..10, 0))
        .await
        .expect("ingest");
    assert_eq!(receipt.accepted, 10);
    assert_eq!(ids_in(&store, &tenant).len(), 10);

    // Retrying the same batch stores nothing new.
    let again = store
        .ingest(&tenant, events(5..15, 0))
        .await
        .expect("ingest");
    assert_eq!(again.accepted, 5);
    assert_eq!(again.duplicates, (0..5).collect::<Vec<_>>());

    let report = flush(&store).await;
    assert_eq!(report.rows, 15);
    assert_eq!(store.snapshot(&tenant).batches.len(), 0);
    assert_eq!(ids_in(&store, &tenant).len(), 15);
    // Only the fresh segment remains in the WAL.
    assert_eq!(
        wal::list_segments(&dir.path().join("wal"))
            .expect("ls")
            .len(),
        1
    );

    // Still deduplicated after the flush, and after a restart.
    let third = store
        .ingest(&tenant, events(0..3, 0))
        .await
        .expect("ingest");
    assert_eq!(third.accepted, 0);
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.shutdown())
        .await
        .expect("join")
        .expect("shutdown");
    let (store, tenant) = open(dir.path(), IngestConfig::test_config());
    assert_eq!(ids_in(&store, &tenant).len(), 15);
    let fourth = store
        .ingest(&tenant, events(0..20, 0))
        .await
        .expect("ingest");
    assert_eq!(fourth.accepted, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unflushed_events_are_replayed_once_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, tenant) = open(dir.path(), IngestConfig::test_config());
    store
        .ingest(&tenant, events(0..5, 0))
        .await
        .expect("ingest");
    flush(&store).await;
    store
        .ingest(&tenant, events(5..9, 1))
        .await
        .expect("ingest");
    let live_bytes = store.buffered_bytes();
    // No shutdown: the process "dies" here with 4 events only in the WAL.
    let (recovered, tenant) = open(dir.path(), IngestConfig::test_config());
    let ids = ids_in(&recovered, &tenant);
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert_eq!(recovered.tenant_stats(&tenant).memory_rows, 4);
    // The replayed batch counts what it holds, not its IPC buffer once per
    // column (which was many times what the live batch counted).
    let replayed_bytes = recovered.buffered_bytes();
    assert!(
        replayed_bytes > 0 && replayed_bytes <= live_bytes,
        "replayed {replayed_bytes} bytes, live {live_bytes}"
    );
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_is_refused_not_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = IngestConfig {
        max_buffer_bytes: 40_000,
        flush_bytes: 40_000,
        ..IngestConfig::test_config()
    };
    let (store, tenant) = open(dir.path(), config);
    let mut accepted = 0;
    let mut refused = false;
    for round in 0..50 {
        match store
            .ingest(&tenant, events(round * 20..round * 20 + 20, 0))
            .await
        {
            Ok(r) => accepted += r.accepted,
            Err(Error::Backpressure { .. }) => {
                refused = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(refused, "the buffer limit was never reached");
    assert_eq!(ids_in(&store, &tenant).len(), accepted);
    flush(&store).await;
    assert_eq!(store.buffered_bytes(), 0);
    // After the flush there is room again, and the refused events were not half-stored.
    let r = store
        .ingest(&tenant, events(5000..5010, 0))
        .await
        .expect("room again");
    assert_eq!(r.accepted, 10);
    assert_eq!(ids_in(&store, &tenant).len(), accepted + 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_land_in_their_day_and_compaction_keeps_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, tenant) = open(dir.path(), IngestConfig::test_config());
    for round in 0..3 {
        store
            .ingest(&tenant, events(round * 10..round * 10 + 10, 0))
            .await
            .expect("ingest");
        // A late event, three days old.
        store
            .ingest(&tenant, events(100 + round..101 + round, 3))
            .await
            .expect("ingest");
        flush(&store).await;
    }
    let snap = store.snapshot(&tenant);
    let dates: HashSet<&str> = snap.files.iter().map(|(_, f)| f.date.as_str()).collect();
    assert_eq!(dates, HashSet::from(["2025-06-15", "2025-06-12"]));
    assert_eq!(snap.files.len(), 6);
    let s = store.clone();
    let merged = tokio::task::spawn_blocking(move || s.compact())
        .await
        .expect("join")
        .expect("compact");
    assert_eq!(merged, 6);
    let snap = store.snapshot(&tenant);
    assert_eq!(snap.files.len(), 2);
    assert_eq!(ids_in(&store, &tenant).len(), 33);
    // Files on disk match the catalog (old ones deleted).
    let on_disk = walk(&dir.path().join(storage::EVENTS_DIR));
    assert_eq!(on_disk, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, tenant) = open(dir.path(), IngestConfig::test_config());
    store
        .ingest(&tenant, events(0..5, 0))
        .await
        .expect("ingest");
    store
        .ingest(&tenant, events(5..10, 40))
        .await
        .expect("ingest");
    flush(&store).await;
    let mut t = store.catalog().tenant(&tenant).expect("tenant");
    t.retention_days = Some(30);
    store.catalog().update_tenant(&t).expect("update");
    let s = store.clone();
    let removed = tokio::task::spawn_blocking(move || s.apply_retention())
        .await
        .expect("join")
        .expect("retention");
    assert_eq!(removed, 1);
    assert_eq!(ids_in(&store, &tenant).len(), 5);
}

fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("ls") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            n += walk(&path);
        } else {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_months_merge_into_one_file_and_late_events_rejoin_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, tenant) = open(dir.path(), IngestConfig::test_config());
    let compact = |store: &Store| {
        let s = store.clone();
        async move {
            tokio::task::spawn_blocking(move || s.compact())
                .await
                .expect("join")
                .expect("compact")
        }
    };
    let dates = |store: &Store| {
        let mut d: Vec<String> = store
            .snapshot(&tenant)
            .files
            .iter()
            .map(|(_, f)| f.date.clone())
            .collect();
        d.sort();
        d
    };
    // May 2025 ended more than `compaction_cold_after` (3 days) before NOW
    // (2025-06-15); June has not.
    for (ids, offset) in [
        (0..10, 40),
        (10..20, 41),
        (20..30, 30),
        (30..40, 0),
        (40..50, 1),
    ] {
        store
            .ingest(&tenant, events(ids, offset))
            .await
            .expect("ingest");
    }
    flush(&store).await;
    assert_eq!(
        dates(&store),
        [
            "2025-05-05",
            "2025-05-06",
            "2025-05-16",
            "2025-06-14",
            "2025-06-15"
        ]
    );
    // The three May days become one month file; the two June days (fewer
    // than `compaction_min_files`) stay.
    assert_eq!(compact(&store).await, 3);
    assert_eq!(dates(&store), ["2025-05", "2025-06-14", "2025-06-15"]);
    assert_eq!(ids_in(&store, &tenant).len(), 50);
    let snap = store.snapshot(&tenant);
    let (path, month) = snap
        .files
        .iter()
        .find(|(_, f)| f.date == "2025-05")
        .expect("month");
    assert_eq!(month.rows, 30);
    assert!(path.to_string_lossy().contains("date=2025-05/"));
    let batches = storage::read_file(path, Some(&[columns::TIMESTAMP])).expect("read");
    let ts: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .values()
                .to_vec()
        })
        .collect();
    assert!(ts.is_sorted(), "a month file is sorted by time");
    assert_eq!(
        (month.min_ts_us, month.max_ts_us),
        (ts[0], ts[ts.len() - 1])
    );
    // A compacted month is left alone.
    assert_eq!(compact(&store).await, 0);

    // Late events for May land in day files; one or two of them do not
    // rewrite the month...
    for (round, offset) in [(0, 42), (1, 43)] {
        let ids = 100 + round * 10..110 + round * 10;
        store
            .ingest(&tenant, events(ids, offset))
            .await
            .expect("ingest");
        flush(&store).await;
        assert_eq!(compact(&store).await, 0);
    }
    assert_eq!(
        dates(&store),
        [
            "2025-05",
            "2025-05-03",
            "2025-05-04",
            "2025-06-14",
            "2025-06-15"
        ]
    );
    // ... the third (`compaction_min_files`) merges them into it.
    store
        .ingest(&tenant, events(120..130, 44))
        .await
        .expect("ingest");
    flush(&store).await;
    assert_eq!(compact(&store).await, 4);
    assert_eq!(dates(&store), ["2025-05", "2025-06-14", "2025-06-15"]);
    assert_eq!(ids_in(&store, &tenant).len(), 80);
    assert_eq!(walk(&dir.path().join(storage::EVENTS_DIR)), 3);

    // Retention cuts by UTC day, month files included: a month file that
    // straddles the cut is rewritten without the expired rows.
    let retain = |days: u32| {
        let s = store.clone();
        let mut t = s.catalog().tenant(&tenant).expect("tenant");
        t.retention_days = Some(days);
        s.catalog().update_tenant(&t).expect("update");
        async move {
            tokio::task::spawn_blocking(move || s.apply_retention())
                .await
                .expect("join")
                .expect("retention")
        }
    };
    // 35 days before NOW is 2025-05-11: May 2-6 go, May 16 stays.
    assert_eq!(retain(35).await, 1);
    assert_eq!(dates(&store), ["2025-05", "2025-06-14", "2025-06-15"]);
    let mut left = ids_in(&store, &tenant);
    left.retain(|id| id[1..].parse::<usize>().is_ok_and(|n| n < 30));
    assert_eq!(left.len(), 10, "of May, only May 16 (m20..m29) is left");
    assert_eq!(ids_in(&store, &tenant).len(), 30);
    let snap = store.snapshot(&tenant);
    let (_, month) = snap
        .files
        .iter()
        .find(|(_, f)| f.date == "2025-05")
        .expect("month");
    assert_eq!(month.rows, 10);
    assert!(month.min_ts_us >= NOW - 30 * 86_400_000_000 - 100);
    // The cut does not move within a day: nothing to do again.
    assert_eq!(retain(35).await, 0);
    assert_eq!(retain(29).await, 1);
    assert_eq!(dates(&store), ["2025-06-14", "2025-06-15"]);
    assert_eq!(ids_in(&store, &tenant).len(), 20);
}

#[test]
fn month_keys() {
    assert_eq!(storage::month_of("2025-05-06"), "2025-05");
    assert_eq!(storage::month_of("2025-05"), "2025-05");
    assert!(storage::is_month("2025-05") && !storage::is_month("2025-05-06"));
    // 2025-06-01T00:00:00Z and 2026-01-01T00:00:00Z.
    assert_eq!(
        storage::month_end_us("2025-05"),
        Some(1_748_736_000_000_000)
    );
    assert_eq!(
        storage::month_end_us("2025-12"),
        Some(1_767_225_600_000_000)
    );
    assert_eq!(storage::month_end_us("garbage"), None);
}

/// Two workspaces, each with 6 events in a file and 4 in the tail: the
/// store, the one kept and the one to delete.
async fn two_workspaces(dir: &Path) -> (Store, String, String) {
    let (store, keep) = open(dir, IngestConfig::test_config());
    let gone = store.catalog().create_tenant("gone").expect("tenant").0.id;
    for tenant in [&keep, &gone] {
        store.ingest(tenant, events(0..6, 1)).await.expect("ingest");
    }
    flush(&store).await;
    for tenant in [&keep, &gone] {
        store.ingest(tenant, events(6..10, 0)).await.expect("ingest");
    }
    (store, keep, gone)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_workspace_leaves_nothing_and_stays_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, keep, gone) = two_workspaces(dir.path()).await;
    let kept_bytes = {
        let s = store.clone();
        let g = gone.clone();
        tokio::task::spawn_blocking(move || {
            let stats = s.delete_tenant(&g, Some("user:owner")).expect("delete");
            assert_eq!((stats.files, stats.file_rows, stats.memory_rows), (1, 6, 4));
            s.buffered_bytes()
        })
        .await
        .expect("join")
    };
    // The delete flushed: the kept workspace's tail is in files now.
    assert_eq!(kept_bytes, 0);
    assert_eq!(ids_in(&store, &keep).len(), 10);
    assert!(ids_in(&store, &gone).is_empty());
    assert!(matches!(
        store.ingest(&gone, events(10..11, 0)).await,
        Err(Error::UnknownTenant(_))
    ));
    assert!(matches!(store.catalog().tenant(&gone), Err(Error::UnknownTenant(_))));
    assert!(
        !dir.path().join(storage::EVENTS_DIR).join(format!("tenant={gone}")).exists(),
        "its directory goes with its last file"
    );
    // A restart brings nothing back.
    drop(store);
    let (store, _) = open(dir.path(), IngestConfig::test_config());
    assert!(ids_in(&store, &gone).is_empty());
    assert_eq!(ids_in(&store, &keep).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_catalog_deleted_a_workspace_loses_it_at_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, keep, gone) = two_workspaces(dir.path()).await;
    // The catalog's transaction, then the process dies: the files and WAL
    // records of the workspace are still on disk.
    store.catalog().delete_tenant(&gone, None).expect("catalog");
    drop(store);
    let (store, _) = open(dir.path(), IngestConfig::test_config());
    assert!(ids_in(&store, &gone).is_empty());
    assert_eq!(store.tenant_stats(&gone).memory_rows, 0);
    assert_eq!(ids_in(&store, &keep).len(), 10);
    assert!(!dir.path().join(storage::EVENTS_DIR).join(format!("tenant={gone}")).exists());
    assert_eq!(store.catalog().deleted_tenants().expect("tombstones"), HashSet::from([gone]));
}
