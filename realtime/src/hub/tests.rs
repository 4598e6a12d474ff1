use beacon_test_support::ManualClock;

use super::*;

fn hub(history: usize, queue: usize) -> Hub {
    Hub::new(
        RealtimeConfig {
            history,
            connection_queue: queue,
            ..RealtimeConfig::default()
        },
        Arc::new(ManualClock::default()),
    )
}

fn reader(tenant: &str) -> Principal {
    Principal {
        tenant: tenant.into(),
        access: Access::Member { user: None, sql: true },
    }
}

fn plain() -> SubscribeOptions {
    SubscribeOptions {
        resume: None,
        events: None,
        snapshot: None,
        recent: None,
    }
}

fn drained(c: &Connection) -> Vec<Value> {
    c.outbox()
        .drain()
        .iter()
        .map(|t| serde_json::from_str(t.as_str()).expect("json"))
        .collect()
}

fn seqs(msgs: &[Value], kind: &str) -> Vec<u64> {
    msgs.iter()
        .filter(|m| m["type"] == kind)
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

#[test]
fn messages_arrive_in_order_and_resume_gets_exactly_the_missed_ones() {
    let hub = hub(100, 1000);
    let mut a = hub.connect(reader("t1")).expect("connect");
    a.subscribe("activity", plain()).expect("subscribe");
    for i in 0..10 {
        hub.publish("t1", "activity", "event", &json!({"i": i}), None)
            .expect("publish");
    }
    let got = drained(&a);
    assert_eq!(got[0]["type"], "subscribed");
    assert_eq!(seqs(&got, "event"), (1..=10).collect::<Vec<_>>());
    let epoch = got[0]["epoch"].as_str().expect("epoch").to_owned();
    drop(a);
    for i in 10..15 {
        hub.publish("t1", "activity", "event", &json!({"i": i}), None)
            .expect("publish");
    }
    let mut b = hub.connect(reader("t1")).expect("connect");
    b.subscribe(
        "activity",
        SubscribeOptions {
            resume: Some(Cursor { epoch, seq: 10 }),
            ..plain()
        },
    )
    .expect("resume");
    hub.publish("t1", "activity", "event", &json!({"i": 15}), None)
        .expect("publish");
    let got = drained(&b);
    assert_eq!(seqs(&got, "event"), vec![11, 12, 13, 14, 15, 16]);
}

#[test]
fn too_far_behind_gets_history_lost_and_a_snapshot() {
    let hub = hub(5, 1000);
    let channel = hub.channel("t1", "alerts").expect("channel");
    let epoch = channel.epoch().to_owned();
    for i in 0..20 {
        hub.publish("t1", "alerts", "event", &json!({"i": i}), None)
            .expect("publish");
    }
    for cursor in [
        Cursor {
            epoch: epoch.clone(),
            seq: 3,
        },
        Cursor {
            epoch: "other".into(),
            seq: 19,
        },
        Cursor { epoch, seq: 99 },
    ] {
        let mut c = hub.connect(reader("t1")).expect("connect");
        c.subscribe(
            "alerts",
            SubscribeOptions {
                resume: Some(cursor),
                ..plain()
            },
        )
        .expect("subscribe");
        let got = drained(&c);
        assert_eq!(got[1]["type"], "history_lost", "{got:?}");
        assert_eq!(got[2]["type"], "snapshot");
        assert_eq!(got[2]["seq"], 20);
        let recent = got[2]["payload"]["recent"].as_array().expect("recent");
        assert_eq!(recent.len(), 5);
        assert_eq!(recent[4], json!({"i": 19}));
    }
}

#[test]
fn a_full_outbox_lags_the_ordered_channel_and_coalesces_the_state_channel() {
    let hub = hub(100, 4);
    let mut slow = hub.connect(reader("t1")).expect("connect");
    let mut fast = hub.connect(reader("t1")).expect("connect");
    for c in [&mut slow, &mut fast] {
        c.subscribe("activity", plain()).expect("activity");
        c.subscribe("metrics", plain()).expect("metrics");
    }
    drained(&slow);
    drained(&fast);
    let mut fast_seen = Vec::new();
    for i in 0..10u64 {
        hub.publish("t1", "activity", "event", &json!({"i": i}), None)
            .expect("publish");
        hub.publish("t1", "metrics", "update", &json!({"v": i}), None)
            .expect("publish");
        fast_seen.extend(drained(&fast));
    }
    // The healthy client got everything, in order.
    assert_eq!(seqs(&fast_seen, "event"), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(&fast_seen, "update"), (1..=10).collect::<Vec<_>>());
    // The stalled one: 4 events, then lagged at 4; one (the latest) metric.
    let got = drained(&slow);
    assert_eq!(seqs(&got, "event"), vec![1, 2, 3, 4]);
    let lagged: Vec<&Value> = got.iter().filter(|m| m["type"] == "lagged").collect();
    assert_eq!(lagged.len(), 1);
    assert_eq!(lagged[0]["seq"], 4);
    assert_eq!(seqs(&got, "update"), vec![10]);
    // A new subscriber to a state channel starts with the current state.
    let mut late = hub.connect(reader("t1")).expect("connect");
    late.subscribe("metrics", plain()).expect("metrics");
    let got = drained(&late);
    assert_eq!(got[1]["type"], "snapshot");
    assert_eq!(got[1]["seq"], 10);
    assert_eq!(got[1]["payload"], json!({"v": 9}));
    assert_eq!(slow.subscriptions(), 1, "still on metrics, off activity");
    assert_eq!(hub.channel("t1", "activity").expect("c").subscribers(), 1);
}

#[test]
fn activity_filters_by_event_and_resume_respects_the_filter() {
    let hub = hub(100, 100);
    let mut c = hub.connect(reader("t1")).expect("connect");
    c.subscribe(
        "activity",
        SubscribeOptions {
            events: Some(vec!["Order Completed".into()]),
            ..plain()
        },
    )
    .expect("subscribe");
    for name in [
        "Product Viewed",
        "Order Completed",
        "Product Viewed",
        "Order Completed",
    ] {
        hub.publish("t1", "activity", "event", &json!({}), Some(name.into()))
            .expect("publish");
    }
    assert_eq!(seqs(&drained(&c), "event"), vec![2, 4]);
}

#[test]
fn access_rules() {
    let hub = hub(10, 10);
    // A viewer: workspace channels and their own inbox, no live SQL.
    let mut viewer = hub
        .connect(Principal {
            tenant: "t1".into(),
            access: Access::Member {
                user: Some("vic".into()),
                sql: false,
            },
        })
        .expect("connect");
    viewer.subscribe("metrics", plain()).expect("metrics");
    viewer
        .subscribe("notifications:vic", plain())
        .expect("own inbox");
    assert!(matches!(
        viewer.subscribe("notifications:ann", plain()),
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        viewer.subscribe("query:q1", plain()),
        Err(Error::Forbidden { .. })
    ));
    let mut reader = hub.connect(reader("t1")).expect("connect");
    assert!(matches!(
        reader.subscribe("notifications:ann", plain()),
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        reader.subscribe("nope", plain()),
        Err(Error::UnknownChannel { .. })
    ));
    assert!(matches!(
        reader.subscribe("query:bad id", plain()),
        Err(Error::UnknownChannel { .. })
    ));
    let mut ann = hub
        .connect(Principal {
            tenant: "t1".into(),
            access: Access::User("ann".into()),
        })
        .expect("connect");
    ann.subscribe("notifications:ann", plain())
        .expect("own inbox");
    assert!(ann.subscribe("notifications:bob", plain()).is_err());
    assert!(ann.subscribe("metrics", plain()).is_err());
    // Channels are per workspace: t2's publish never reaches t1.
    reader.subscribe("alerts", plain()).expect("alerts");
    drained(&reader);
    hub.publish("t2", "alerts", "event", &json!({}), None)
        .expect("publish");
    assert!(reader.outbox().is_empty());
}

#[test]
fn connection_limit_and_drop_release_slots() {
    let hub = Hub::new(
        RealtimeConfig {
            max_connections: 2,
            ..RealtimeConfig::default()
        },
        Arc::new(ManualClock::default()),
    );
    let a = hub.connect(reader("t")).expect("a");
    let b = hub.connect(reader("t")).expect("b");
    assert!(hub.connect(reader("t")).is_none());
    drop(a);
    let _c = hub.connect(reader("t")).expect("c after a left");
    drop(b);
    assert_eq!(hub.connections(), 1);
}

#[test]
fn a_batch_is_published_as_one_unit() {
    let hub = hub(100, 5);
    let mut all = hub.connect(reader("t1")).expect("connect");
    let mut orders = hub.connect(reader("t1")).expect("connect");
    let mut slow = hub.connect(reader("t1")).expect("connect");
    all.subscribe("activity", plain()).expect("all");
    orders
        .subscribe(
            "activity",
            SubscribeOptions {
                events: Some(vec!["Order Completed".into()]),
                ..plain()
            },
        )
        .expect("orders");
    slow.subscribe("activity", plain()).expect("slow");
    for c in [&all, &orders, &slow] {
        drained(c);
    }
    let payloads: Vec<Value> = (0..4).map(|i| json!({"i": i})).collect();
    let names = [
        "Product Viewed",
        "Order Completed",
        "Product Viewed",
        "Order Completed",
    ];
    let batch: Vec<(&Value, Option<String>)> = payloads
        .iter()
        .zip(names.map(|n| Some(n.to_owned())))
        .collect();
    assert_eq!(
        hub.publish_many("t1", "activity", "event", &batch)
            .expect("publish"),
        4
    );
    // Consecutive sequence numbers, in order, filters applied.
    let got = drained(&all);
    assert_eq!(seqs(&got, "event"), vec![1, 2, 3, 4]);
    assert_eq!(got[3]["payload"], json!({"i": 3}));
    assert_eq!(seqs(&drained(&orders), "event"), vec![2, 4]);
    // A batch that does not fit lags the client at the last sequence it
    // got, with nothing of the batch queued (no partial batch).
    let _ = drained(&slow);
    assert_eq!(
        hub.publish_many("t1", "activity", "event", &batch)
            .expect("publish"),
        8
    );
    assert_eq!(seqs(&drained(&slow), "event"), vec![5, 6, 7, 8]);
    hub.publish_many("t1", "activity", "event", &batch[..1])
        .expect("publish");
    assert_eq!(seqs(&drained(&slow), "event"), vec![9]);
    // Fill to 4 of 5, then a batch of 4 does not fit.
    hub.publish_many("t1", "activity", "event", &batch)
        .expect("publish");
    hub.publish_many("t1", "activity", "event", &batch)
        .expect("publish");
    let got = drained(&slow);
    assert_eq!(seqs(&got, "event"), vec![10, 11, 12, 13]);
    let lagged: Vec<&Value> = got.iter().filter(|m| m["type"] == "lagged").collect();
    assert_eq!(lagged.len(), 1);
    assert_eq!(lagged[0]["seq"], 13);
    // The history has the whole batch for resuming.
    let mut back = hub.connect(reader("t1")).expect("connect");
    let epoch = hub.channel("t1", "activity").expect("c").epoch().to_owned();
    back.subscribe(
        "activity",
        SubscribeOptions {
            resume: Some(Cursor { epoch, seq: 13 }),
            ..plain()
        },
    )
    .expect("resume");
    assert_eq!(seqs(&drained(&back), "event"), vec![14, 15, 16, 17]);
}

#[test]
fn many_distinct_activity_filters_each_get_their_events() {
    let hub = hub(100, 100);
    let mut conns = Vec::new();
    for k in 0..40 {
        let mut c = hub.connect(reader("t1")).expect("connect");
        c.subscribe(
            "activity",
            SubscribeOptions {
                events: Some(vec![format!("E{}", k % 20)]),
                ..plain()
            },
        )
        .expect("subscribe");
        drained(&c);
        conns.push(c);
    }
    let payloads: Vec<Value> = (0..20).map(|i| json!({"i": i})).collect();
    let batch: Vec<(&Value, Option<String>)> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (p, Some(format!("E{i}"))))
        .collect();
    hub.publish_many("t1", "activity", "event", &batch)
        .expect("publish");
    for (k, c) in conns.iter().enumerate() {
        let got = drained(c);
        assert_eq!(
            seqs(&got, "event"),
            vec![(k % 20) as u64 + 1],
            "subscriber {k}"
        );
    }
}

#[test]
fn the_sweeper_pings_and_flags_dead_idle_stalled_and_shutdown() {
    let clock = Arc::new(ManualClock::default());
    let hub = Hub::new(
        RealtimeConfig {
            heartbeat: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(200),
            write_timeout: Duration::from_millis(100),
            ..RealtimeConfig::default()
        },
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let mut busy = hub.connect(reader("t1")).expect("connect");
    busy.subscribe("activity", plain()).expect("subscribe");
    let idle = hub.connect(reader("t1")).expect("connect");
    let unwatched = hub.connect(reader("t1")).expect("connect");
    busy.watch();
    idle.watch();

    // A round that is not a heartbeat flags nothing.
    hub.sweep(false);
    assert!(!busy.outbox().has_signals() && !idle.outbox().has_signals());

    // A heartbeat round asks both to ping; within two heartbeats nobody
    // is dead, and the idle one is not yet idle for long enough.
    hub.sweep(true);
    assert_eq!(busy.outbox().take_signals(), signal::PING);
    assert_eq!(idle.outbox().take_signals(), signal::PING);

    // Past the timeouts: the busy client was heard, the idle one was not.
    clock.advance(Duration::from_millis(300));
    busy.heard();
    hub.sweep(true);
    assert_eq!(busy.outbox().take_signals(), signal::PING);
    assert_eq!(
        idle.outbox().take_signals(),
        signal::PING | signal::DEAD | signal::IDLE
    );

    // A write blocked for longer than write_timeout is stalled; a
    // finished one is not.
    busy.writing(true);
    hub.sweep(false);
    assert!(!busy.outbox().has_signals(), "not blocked long enough yet");
    clock.advance(Duration::from_millis(150));
    hub.sweep(false);
    assert_eq!(busy.outbox().take_signals(), signal::STALLED);
    busy.writing(false);
    hub.sweep(false);
    assert!(!busy.outbox().has_signals());

    // Shutdown reaches the watched connections and any watched later.
    hub.shutdown();
    assert_eq!(busy.outbox().take_signals(), signal::SHUTDOWN);
    assert_eq!(idle.outbox().take_signals(), signal::SHUTDOWN);
    let late = hub.connect(reader("t1")).expect("connect");
    late.watch();
    assert_eq!(late.outbox().take_signals(), signal::SHUTDOWN);
    // A connection nobody watches (SSE) gets no signals.
    assert!(!unwatched.outbox().has_signals());

    // Dropped connections leave the sweeper's set.
    drop((busy, idle, late));
    assert_eq!(hub.inner.watched.lock().len(), 0);
}

#[tokio::test]
async fn a_signal_wakes_the_writer() {
    let hub = hub(10, 10);
    let c = hub.connect(reader("t1")).expect("connect");
    c.watch();
    let outbox = Arc::clone(c.outbox());
    let waiter = tokio::spawn(async move { outbox.ready().await });
    tokio::task::yield_now().await;
    hub.sweep(true);
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(c.outbox().take_signals(), signal::PING);
}

#[test]
fn recent_starts_an_ordered_subscription_with_the_last_messages_it_may_see() {
    let hub = hub(100, 1000);
    for i in 0..10 {
        let event = if i % 2 == 0 { "Order Completed" } else { "Page Viewed" };
        hub.publish("t1", "activity", "event", &json!({"i": i}), Some(event.into()))
            .expect("publish");
    }
    // The last three orders, oldest first, then the live ones.
    let mut c = hub.connect(reader("t1")).expect("connect");
    c.subscribe(
        "activity",
        SubscribeOptions {
            recent: Some(3),
            events: Some(vec!["Order Completed".into()]),
            ..plain()
        },
    )
    .expect("subscribe");
    hub.publish("t1", "activity", "event", &json!({"i": 10}), Some("Order Completed".into()))
        .expect("publish");
    let got = drained(&c);
    assert_eq!(got[1]["type"], "snapshot", "{got:?}");
    assert_eq!(got[1]["seq"], 10);
    assert_eq!(got[1]["payload"]["recent"], json!([{"i": 4}, {"i": 6}, {"i": 8}]));
    assert_eq!(seqs(&got, "event"), vec![11]);
    // More than there is: what there is; another workspace: nothing.
    let mut all = hub.connect(reader("t1")).expect("connect");
    all.subscribe("activity", SubscribeOptions { recent: Some(50), ..plain() })
        .expect("subscribe");
    assert_eq!(drained(&all)[1]["payload"]["recent"].as_array().map(Vec::len), Some(11));
    let mut other = hub.connect(reader("t2")).expect("connect");
    other
        .subscribe("activity", SubscribeOptions { recent: Some(5), ..plain() })
        .expect("subscribe");
    assert_eq!(drained(&other)[1]["payload"]["recent"], json!([]));
    // Out of bounds, or on a channel of states: refused, the connection stays.
    for (channel, n) in [("activity", 0), ("activity", 51), ("metrics", 5)] {
        let err = c
            .subscribe(channel, SubscribeOptions { recent: Some(n), ..plain() })
            .expect_err("refused");
        assert!(matches!(err, Error::InvalidMessage(_)), "{channel} {n}: {err}");
    }
}
