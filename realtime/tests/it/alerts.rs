//! The alert engine on a real store and engine, with the clock injected:
//! events are ingested at fixed past times and each evaluation runs at a
//! chosen instant, so grouping, keep_firing_for, change against last
//! week, no-data, query errors, flap damping and cron schedules are
//! asserted exactly. Notifications are read back from the inbox.

use std::sync::Arc;

use beacon_datasets::output::decode_lines;
use beacon_engine::{Engine, EngineConfig};
use beacon_ingest::{Catalog, Clock, IngestConfig, Store, SystemClock};
use beacon_test_support::ManualClock;
use beacon_realtime::alerts::rule::RuleSpec;
use beacon_realtime::alerts::state::State;
use beacon_realtime::alerts::{Alerts, AlertsConfig};
use beacon_realtime::notify::prefs::Preferences;
use beacon_realtime::notify::store::InboxFilter;
use beacon_realtime::notify::{InboxItem, Notifier, NotifyConfig, User};
use beacon_realtime::{Hub, RealtimeConfig};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    tenant: String,
    clock: Arc<ManualClock>,
    store: Store,
    alerts: Alerts,
}

/// 2026-11-02 (a Monday) 12:30 UTC.
const BASE: &str = "2026-11-02T12:30:00Z";

fn us(t: &str) -> i64 {
    DateTime::parse_from_rfc3339(t)
        .expect("time")
        .with_timezone(&Utc)
        .timestamp_micros()
}

fn iso(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .expect("time")
        .to_rfc3339()
}

const MIN: i64 = 60_000_000;

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().to_owned();
    let catalog = Arc::new(Catalog::open(&dir).expect("catalog"));
    let (tenant, _) = catalog.create_tenant("shop").expect("tenant");
    let store = Store::open(
        IngestConfig::test_config(),
        &dir,
        catalog,
        Arc::new(SystemClock),
    )
    .expect("store");
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let clock = Arc::new(ManualClock::new(us(BASE)));
    let notifier = Notifier::open(
        &dir,
        Hub::new(RealtimeConfig::default(), Arc::new(SystemClock)),
        engine,
        NotifyConfig::default(),
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("notifier");
    notifier
        .put_user(
            &tenant.id,
            User {
                id: "ann".into(),
                email: None,
                name: None,
                role: beacon_ingest::UserRole::Owner,
                preferences: Preferences::default(),
                created_at_us: 0,
                has_password: false,
                totp_enabled: false,
                last_login_at_us: None,
            },
        )
        .expect("user");
    let alerts = Alerts::new(notifier, AlertsConfig::default());
    Fixture {
        _dir: tmp,
        tenant: tenant.id,
        clock,
        store,
        alerts,
    }
}

impl Fixture {
    async fn ingest(&self, events: Vec<Value>) {
        let lines: Vec<String> = events.iter().map(Value::to_string).collect();
        let (events, rejected) = decode_lines(&lines).expect("decode");
        assert_eq!(rejected, 0);
        self.store
            .ingest(&self.tenant, events)
            .await
            .expect("ingest");
    }

    async fn rule(&self, spec: Value) -> beacon_realtime::alerts::store::Rule {
        let spec: RuleSpec = serde_json::from_value(spec).expect("spec");
        self.alerts
            .create(&self.tenant, spec, None)
            .await
            .expect("create")
    }

    /// Evaluates `rule` at `at` (µs).
    async fn at(&self, at: i64, rule: &beacon_realtime::alerts::store::Rule) {
        self.clock.set(at);
        self.alerts
            .evaluate(&self.tenant, rule)
            .await
            .expect("evaluate");
    }

    fn states(&self, rule: &str) -> Vec<(String, State)> {
        self.alerts
            .instances(&self.tenant, Some(rule))
            .expect("instances")
            .into_iter()
            .map(|i| (i.key, i.instance.state))
            .collect()
    }

    fn inbox(&self) -> Vec<InboxItem> {
        let mut items = self
            .alerts
            .notifier()
            .db()
            .inbox(
                &self.tenant,
                "ann",
                InboxFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
            .expect("inbox");
        items.reverse();
        items
    }
}

fn event(id: &str, name: &str, ts: i64, props: Value) -> Value {
    json!({"type": "track", "messageId": id, "userId": "u1", "event": name, "timestamp": iso(ts), "properties": props})
}

fn titles(items: &[InboxItem]) -> Vec<String> {
    items.iter().map(|i| i.title.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_grouped_into_one_notification_and_keep_firing_for_holds_them() {
    let f = fixture().await;
    let base = us(BASE);
    f.ingest(vec![
        event(
            "r1",
            "Product Returned",
            base - 10 * MIN,
            json!({"product_id": "p1", "quantity": 3}),
        ),
        event(
            "r2",
            "Product Returned",
            base - 10 * MIN,
            json!({"product_id": "p2", "quantity": 5}),
        ),
        event(
            "r3",
            "Product Returned",
            base - 10 * MIN,
            json!({"product_id": "p3", "quantity": 1}),
        ),
    ])
    .await;
    let rule = f
        .rule(json!({
            "name": "Returns",
            "query": {"sql": "SELECT product_id, CAST(sum(quantity) AS DOUBLE) AS value FROM events WHERE event = 'Product Returned' AND timestamp >= $1 AND timestamp < $2 GROUP BY 1", "window": "1h"},
            "condition": {"type": "threshold", "op": "above", "value": 2},
            "schedule": {"every": "1m"}, "keep_firing_for": "5m",
            "notify": {"users": ["ann"], "channels": ["inbox"], "group_wait": "2m", "group_interval": "5m", "repeat_interval": "1h"}
        }))
        .await;
    f.at(base, &rule).await;
    assert_eq!(
        f.states(&rule.id),
        vec![
            ("product_id=p1".into(), State::Firing),
            ("product_id=p2".into(), State::Firing)
        ],
        "p3 is fine and not stored"
    );
    assert!(
        f.inbox().is_empty(),
        "group_wait holds the first notification"
    );
    f.at(base + MIN, &rule).await;
    assert!(f.inbox().is_empty());
    f.at(base + 2 * MIN, &rule).await;
    let inbox = f.inbox();
    assert_eq!(titles(&inbox), ["[FIRING:2] Returns"]);
    let alerts = inbox[0].data["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["labels"]["product_id"], "p1");
    assert_eq!(alerts[1]["value"], 5.0);
    // Still firing: not news.
    f.at(base + 3 * MIN, &rule).await;
    assert_eq!(f.inbox().len(), 1);
    // The returns leave the window at base+50m: Recovering for 5 minutes, then Resolved.
    f.at(base + 51 * MIN, &rule).await;
    assert!(
        f.states(&rule.id)
            .iter()
            .all(|(_, s)| *s == State::Recovering),
        "{:?}",
        f.states(&rule.id)
    );
    f.at(base + 55 * MIN, &rule).await;
    assert!(
        f.states(&rule.id)
            .iter()
            .all(|(_, s)| *s == State::Recovering),
        "4 of 5 minutes"
    );
    assert_eq!(f.inbox().len(), 1);
    f.at(base + 56 * MIN, &rule).await;
    assert!(
        f.states(&rule.id)
            .iter()
            .all(|(_, s)| *s == State::Resolved)
    );
    assert_eq!(
        titles(&f.inbox()),
        ["[FIRING:2] Returns", "[RESOLVED] Returns"]
    );
    // Quiet groups are forgotten once normal and past the flap window.
    f.at(base + 57 * MIN, &rule).await;
    assert!(f.states(&rule.id).iter().all(|(_, s)| *s == State::Normal));
    f.at(base + 120 * MIN, &rule).await;
    assert!(f.states(&rule.id).is_empty(), "{:?}", f.states(&rule.id));
    let history = f
        .alerts
        .history(&f.tenant, Some(&rule.id), 100)
        .expect("history");
    let p1: Vec<String> = history
        .iter()
        .rev()
        .filter(|h| h.key == "product_id=p1")
        .map(|h| h.to.clone())
        .collect();
    assert_eq!(p1, ["firing", "recovering", "resolved", "normal"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_group_repeats_and_a_new_instance_joins_at_the_group_interval() {
    let f = fixture().await;
    let base = us(BASE);
    let stock = |id: &str, p: &str, q: i64, t: i64| {
        event(
            id,
            "Inventory Updated",
            t,
            json!({"product_id": p, "quantity": q}),
        )
    };
    f.ingest(vec![stock("s1", "mug", 1, base - MIN)]).await;
    let rule = f
        .rule(json!({
            "name": "Low stock",
            "query": {"sql": "SELECT product_id, CAST(last_value(quantity ORDER BY timestamp) AS DOUBLE) AS value FROM events WHERE event = 'Inventory Updated' AND timestamp < $2 GROUP BY 1"},
            "condition": {"type": "threshold", "op": "below", "value": 5},
            "schedule": {"every": "1m"}, "severity": "critical",
            "notify": {"users": ["ann"], "channels": ["inbox"], "group_wait": "0s", "group_interval": "10m", "repeat_interval": "1h"}
        }))
        .await;
    f.at(base, &rule).await;
    assert_eq!(titles(&f.inbox()), ["[FIRING:1] Low stock"]);
    assert_eq!(f.inbox()[0].severity, "critical");
    // A second product runs low 2 minutes later: it waits for the group interval.
    f.ingest(vec![stock("s2", "tea", 2, base + MIN)]).await;
    f.at(base + 2 * MIN, &rule).await;
    assert_eq!(f.inbox().len(), 1);
    f.at(base + 10 * MIN, &rule).await;
    assert_eq!(
        titles(&f.inbox()),
        ["[FIRING:1] Low stock", "[FIRING:2] Low stock"]
    );
    // Nothing changes: repeated after repeat_interval (1 h after the last send).
    f.at(base + 69 * MIN, &rule).await;
    assert_eq!(f.inbox().len(), 2);
    f.at(base + 70 * MIN, &rule).await;
    let inbox = f.inbox();
    assert_eq!(titles(&inbox)[2], "[FIRING:2] Low stock");
    assert_eq!(inbox[2].data["repeat"], true);
    // Restocking the mug resolves only the mug.
    f.ingest(vec![stock("s3", "mug", 40, base + 71 * MIN)])
        .await;
    f.at(base + 81 * MIN, &rule).await;
    let last = f.inbox().pop().expect("last");
    assert_eq!(last.title, "[FIRING:1] Low stock");
    assert!(
        last.body.contains("Resolved: product_id=mug"),
        "{}",
        last.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_against_last_week_no_data_and_query_errors() {
    let f = fixture().await;
    let base = us(BASE);
    let day = 24 * 60 * MIN;
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(event(
            &format!("lw{i}"),
            "Order Completed",
            base - 7 * day - 12 * 60 * MIN + i * MIN,
            json!({"revenue": 10}),
        ));
    }
    for i in 0..3 {
        events.push(event(
            &format!("tw{i}"),
            "Order Completed",
            base - 12 * 60 * MIN + i * MIN,
            json!({"revenue": 10}),
        ));
    }
    // An order in another currency: its money is never added to the
    // workspace currency's, and it is no order of the workspace's numbers.
    events.push(event(
        "yen",
        "Order Completed",
        base - 12 * 60 * MIN + 5 * MIN,
        json!({"revenue": 1000, "currency": "JPY"}),
    ));
    events.push(event("hb", "Heartbeat", base - MIN, json!({})));
    events.push(event("weird", "Weird", base - MIN, json!({"note": "text"})));
    f.ingest(events).await;

    // Orders down 70% on the same day last week (below -50%).
    let change = f
        .rule(json!({
            "name": "Orders dropped",
            "query": {"metric": "orders", "window": "1d"},
            "condition": {"type": "change", "op": "below", "value": -50, "compare": "last_week", "by": "percent"},
            "schedule": {"every": "1h"}
        }))
        .await;
    f.at(base, &change).await;
    let i = f
        .alerts
        .instances(&f.tenant, Some(&change.id))
        .expect("instances");
    assert_eq!(
        (i[0].instance.state, i[0].value),
        (State::Firing, Some(3.0))
    );
    // Revenue today: 30 in the workspace currency; by currency, JPY apart.
    let revenue = f
        .rule(json!({
            "name": "Revenue",
            "query": {"metric": "revenue", "window": "1d"},
            "condition": {"type": "threshold", "op": "above", "value": 0},
            "schedule": {"every": "1h"}
        }))
        .await;
    f.at(base, &revenue).await;
    let i = f
        .alerts
        .instances(&f.tenant, Some(&revenue.id))
        .expect("instances");
    assert_eq!(i.len(), 1);
    assert_eq!(i[0].value, Some(30.0));
    let by_currency = f
        .rule(json!({
            "name": "Revenue by currency",
            "query": {"metric": "revenue", "window": "1d", "group_by": "currency"},
            "condition": {"type": "threshold", "op": "above", "value": 0},
            "schedule": {"every": "1h"}
        }))
        .await;
    f.at(base, &by_currency).await;
    let mut values: Vec<Option<f64>> = f
        .alerts
        .instances(&f.tenant, Some(&by_currency.id))
        .expect("instances")
        .iter()
        .map(|i| i.value)
        .collect();
    values.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    assert_eq!(values, [Some(30.0), Some(1000.0)]);

    // Against the previous day (no orders then): a percent change from 0 is not bad.
    let prev = f
        .rule(json!({
            "name": "Orders dropped vs yesterday",
            "query": {"metric": "orders", "window": "1d"},
            "condition": {"type": "change", "op": "below", "value": -50, "compare": "previous_period", "by": "percent"},
            "schedule": {"every": "1h"}
        }))
        .await;
    f.at(base, &prev).await;
    assert!(f.states(&prev.id).is_empty() || f.states(&prev.id)[0].1 == State::Normal);

    // No heartbeat for 10 minutes, held 10 minutes.
    let silent = f
        .rule(json!({
            "name": "Tracking is silent",
            "query": {"metric": "events", "event": "Heartbeat", "window": "10m"},
            "condition": {"type": "no_data"},
            "schedule": {"every": "5m"}, "for": "10m"
        }))
        .await;
    f.at(base, &silent).await;
    assert_eq!(f.states(&silent.id), vec![(String::new(), State::Normal)]);
    f.at(base + 10 * MIN, &silent).await;
    assert_eq!(f.states(&silent.id)[0].1, State::Pending);
    f.at(base + 15 * MIN, &silent).await;
    assert_eq!(f.states(&silent.id)[0].1, State::Pending);
    f.at(base + 20 * MIN, &silent).await;
    assert_eq!(f.states(&silent.id)[0].1, State::Firing);

    // A query that plans but fails on the data: the Error state, with the reason.
    let broken = f
        .rule(json!({
            "name": "Broken",
            "query": {"sql": "SELECT CAST(json_get_str(properties, 'note') AS DOUBLE) AS value FROM events WHERE event = 'Weird'"},
            "condition": {"type": "threshold", "op": "above", "value": 1},
            "schedule": {"every": "1m"}
        }))
        .await;
    f.at(base, &broken).await;
    assert_eq!(f.states(&broken.id)[0].1, State::Error);
    let h = f
        .alerts
        .history(&f.tenant, Some(&broken.id), 10)
        .expect("history");
    assert!(
        h[0].reason
            .as_deref()
            .is_some_and(|r| r.to_lowercase().contains("cast")),
        "{:?}",
        h[0].reason
    );
    // A metric with no value (AOV without orders): the NoData state by default.
    let aov = f
        .rule(json!({
            "name": "AOV",
            "query": {"metric": "aov", "window": "10m"},
            "condition": {"type": "threshold", "op": "below", "value": 20},
            "schedule": {"every": "1m"}
        }))
        .await;
    f.at(base, &aov).await;
    assert_eq!(f.states(&aov.id)[0].1, State::NoData);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_instance_stops_notifying_until_it_is_stable() {
    let f = fixture().await;
    let base = us(BASE);
    // A failed payment in every other minute.
    let events: Vec<Value> = (0..5)
        .map(|k| {
            event(
                &format!("pf{k}"),
                "Payment Failed",
                base + 2 * k * MIN - MIN / 2,
                json!({}),
            )
        })
        .collect();
    f.ingest(events).await;
    let rule = f
        .rule(json!({
            "name": "Payments",
            "query": {"metric": "payment_failures", "window": "1m"},
            "condition": {"type": "threshold", "op": "above", "value": 0},
            "schedule": {"every": "1m"},
            "notify": {"users": ["ann"], "channels": ["inbox"], "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1s"}
        }))
        .await;
    for k in 0..10 {
        f.at(base + k * MIN, &rule).await;
    }
    let history = f
        .alerts
        .history(&f.tenant, Some(&rule.id), 100)
        .expect("history");
    assert!(
        history.iter().filter(|h| h.to == "firing").count() >= 5,
        "it flipped on every minute"
    );
    // Firing, resolved, firing: the fourth flip marks it flapping.
    assert_eq!(
        titles(&f.inbox()),
        [
            "[FIRING:1] Payments",
            "[RESOLVED] Payments",
            "[FIRING:1] Payments"
        ]
    );
    let i = &f
        .alerts
        .instances(&f.tenant, Some(&rule.id))
        .expect("instances")[0];
    assert!(i.instance.flapping);
    // An hour without flips: flapping ends and the current state is told.
    f.at(base + 75 * MIN, &rule).await;
    assert_eq!(
        titles(&f.inbox()).last().map(String::as_str),
        Some("[RESOLVED] Payments")
    );
    assert_eq!(f.inbox().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_rules_run_at_their_occurrences() {
    let f = fixture().await;
    let base = us(BASE); // 12:30
    let rule = f
        .rule(json!({
            "name": "Hourly orders",
            "query": {"metric": "orders", "window": "1h"},
            "condition": {"type": "threshold", "op": "below", "value": 1},
            "schedule": {"cron": "0 * * * *"}
        }))
        .await;
    let evaluated = || {
        f.alerts
            .instances(&f.tenant, Some(&rule.id))
            .expect("instances")
            .first()
            .map(|i| i.last_eval_us)
    };
    let tick = |t: i64| {
        f.clock.set(t);
        f.alerts.tick()
    };
    tick(base).await; // first sight: evaluated at once
    assert_eq!(evaluated(), Some(base));
    tick(base + 29 * MIN).await; // 12:59
    assert_eq!(evaluated(), Some(base));
    tick(base + 30 * MIN).await; // 13:00
    assert_eq!(evaluated(), Some(base + 30 * MIN));
    tick(base + 31 * MIN).await;
    assert_eq!(evaluated(), Some(base + 30 * MIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_an_analytics_result_watches_funnel_conversion() {
    let f = fixture().await;
    let base = us(BASE);
    let mut events = Vec::new();
    for s in 0..4 {
        events.push(json!({"type": "track", "messageId": format!("v{s}"), "anonymousId": format!("a{s}"), "event": "Product Viewed",
            "timestamp": iso(base - 30 * MIN + s * MIN), "properties": {"session_id": format!("s{s}")}}));
    }
    events.push(
        json!({"type": "track", "messageId": "o0", "anonymousId": "a0", "event": "Order Completed",
        "timestamp": iso(base - 20 * MIN), "properties": {"session_id": "s0", "revenue": 30}}),
    );
    f.ingest(events).await;
    // View -> purchase conversion by session over the window (window_funnel, in SQL).
    let rule = f
        .rule(json!({
            "name": "Checkout conversion",
            "query": {"sql": "SELECT CAST(100.0 * count(*) FILTER (WHERE level >= 2) / nullif(count(*) FILTER (WHERE level >= 1), 0) AS DOUBLE) AS value FROM (SELECT session_id, window_funnel(86400, 'sequential', timestamp, event = 'Product Viewed', event = 'Order Completed') AS level FROM events WHERE session_id IS NOT NULL AND timestamp >= $1 AND timestamp < $2 GROUP BY 1)", "window": "1h"},
            "condition": {"type": "threshold", "op": "below", "value": 50},
            "schedule": {"every": "15m"}
        }))
        .await;
    f.at(base, &rule).await;
    let i = &f
        .alerts
        .instances(&f.tenant, Some(&rule.id))
        .expect("instances")[0];
    assert_eq!((i.instance.state, i.value), (State::Firing, Some(25.0)));
}
