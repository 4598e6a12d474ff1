//! Webhook delivery against a real HTTP receiver on loopback that checks
//! every signature with the reference `standardwebhooks` library, with the
//! notifier's clock injected: retry timing is asserted exactly (no sleeps),
//! as are exactly-once acceptance by webhook-id, the dead letter, secret
//! rotation and a restart in the middle of a delivery.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use beacon_engine::{Engine, EngineConfig};
use beacon_ingest::{Catalog, Clock, IngestConfig, Store, SystemClock};
use beacon_test_support::{ManualClock, PyReceiver};
use beacon_realtime::notify::webhook::Flavour;
use beacon_realtime::notify::{Notifier, NotifyConfig, SendRequest, Status};
use beacon_realtime::{Hub, RealtimeConfig};
use serde_json::json;

fn receiver() -> PyReceiver {
    PyReceiver::start(&["webhook"])
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    tenant: String,
    clock: Arc<ManualClock>,
    hub: Hub,
    engine: Engine,
    notifier: Notifier,
}

/// The injected clock starts at the real time: receivers reject webhook
/// timestamps more than 5 minutes away from their own clock (replay
/// protection), so the tests move the clock by less than that whenever a
/// request must verify.
fn t0() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn notifier(
    dir: &Path,
    hub: &Hub,
    engine: &Engine,
    clock: &Arc<ManualClock>,
    config: NotifyConfig,
) -> Notifier {
    let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
    Notifier::open(dir, hub.clone(), engine.clone(), config, clock).expect("notifier")
}

fn fixture(config: NotifyConfig) -> Fixture {
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
    let engine = Engine::new(store, EngineConfig::default());
    let hub = Hub::new(RealtimeConfig::default(), Arc::new(SystemClock));
    let clock = Arc::new(ManualClock::new(t0()));
    let notifier = notifier(&dir, &hub, &engine, &clock, config);
    Fixture {
        _dir: tmp,
        dir,
        tenant: tenant.id,
        clock,
        hub,
        engine,
        notifier,
    }
}

fn webhook_only(title: &str) -> SendRequest {
    SendRequest {
        category: "billing".into(),
        title: title.into(),
        body: "Invoice 42 is overdue".into(),
        channels: Some(vec!["webhook".into()]),
        data: Some(json!({"invoice": 42})),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_exponentially_and_the_receiver_accepts_exactly_once() {
    let f = fixture(NotifyConfig::default());
    let rx = receiver();
    let endpoint = f
        .notifier
        .create_endpoint(
            &f.tenant,
            &format!("{}/hook", rx.base()),
            Flavour::Standard,
            vec![],
        )
        .expect("endpoint");
    rx.configure(json!({"secret": endpoint.secrets[0].secret, "fail_first": 3}))
        .await;
    let receipt = f
        .notifier
        .send(&f.tenant, webhook_only("Overdue invoice"))
        .expect("send");
    assert_eq!(receipt.deliveries.len(), 1);
    let id = receipt.deliveries[0].id.clone();
    let config = f.notifier.config().clone();
    let start = f.clock.now_us();
    let mut now = start;
    for attempt in 1..=4u32 {
        assert_eq!(
            f.notifier.process_due().await.expect("process"),
            1,
            "attempt {attempt} is due"
        );
        let d = f
            .notifier
            .db()
            .deliveries(&f.tenant, None, None, 10)
            .expect("deliveries")
            .remove(0);
        assert_eq!(d.attempts, i64::from(attempt));
        if attempt == 4 {
            assert_eq!(d.status, Status::Delivered);
            assert_eq!(d.delivered_at_us, Some(now));
            break;
        }
        assert_eq!(d.status, Status::Queued);
        assert_eq!(d.reason.as_deref(), Some("HTTP 503"));
        // The delay is retry_base * 2^(attempt-1) with ±20% jitter.
        let expected = config.backoff(attempt).as_micros() as f64;
        let delay = (d.next_attempt_us - now) as f64;
        assert!(
            delay >= expected * 0.8 - 1.0 && delay <= expected * 1.2 + 1.0,
            "attempt {attempt}: delay {delay} vs {expected}"
        );
        // Not a microsecond early.
        f.clock.set(d.next_attempt_us - 1);
        assert_eq!(f.notifier.process_due().await.expect("process"), 0);
        now = d.next_attempt_us;
        f.clock.set(now);
    }
    assert_eq!(config.backoff(1), Duration::from_secs(15));
    assert_eq!(config.backoff(3), Duration::from_secs(60));
    assert_eq!(config.backoff(8), Duration::from_secs(600));
    let log = rx.log().await;
    let attempts = log["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 4);
    for a in attempts {
        assert_eq!(
            a["id"],
            json!(id),
            "the webhook-id is the delivery id on every retry"
        );
        assert_eq!(
            a["verified"],
            json!(true),
            "reference verifier: {}",
            a["error"]
        );
        assert_eq!(a["content_type"], json!("application/cloudevents+json"));
    }
    assert_eq!(log["accepted"], json!({ id.clone(): 1 }));
    let event = &attempts[3]["payload"];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], json!(id));
    assert_eq!(event["type"], "com.beacon.billing");
    assert_eq!(event["data"]["title"], "Overdue invoice");
    assert_eq!(event["data"]["data"]["invoice"], 42);
    // Nothing more is due, ever.
    f.clock.set(start + 86_400_000_000);
    assert_eq!(f.notifier.process_due().await.expect("process"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_keeps_failing_ends_in_the_dead_letter_state() {
    let f = fixture(NotifyConfig {
        max_attempts: 3,
        ..NotifyConfig::default()
    });
    let rx = receiver();
    let endpoint = f
        .notifier
        .create_endpoint(
            &f.tenant,
            &format!("{}/hook", rx.base()),
            Flavour::Standard,
            vec![],
        )
        .expect("endpoint");
    rx.configure(json!({"secret": endpoint.secrets[0].secret, "fail_first": 100}))
        .await;
    f.notifier
        .send(&f.tenant, webhook_only("Doomed"))
        .expect("send");
    // An endpoint nobody listens on fails with a connection error.
    let dead = f
        .notifier
        .create_endpoint(
            &f.tenant,
            "http://127.0.0.1:9/nothing",
            Flavour::Standard,
            vec![],
        )
        .expect("endpoint");
    for _ in 0..3 {
        assert!(f.notifier.process_due().await.expect("process") >= 1);
        f.clock.set(f.clock.now_us() + 3_600_000_000);
    }
    let all = f
        .notifier
        .db()
        .deliveries(&f.tenant, None, None, 10)
        .expect("deliveries");
    let ours = all
        .iter()
        .find(|d| d.target == endpoint.id)
        .expect("delivery");
    assert_eq!(ours.status, Status::Failed);
    assert_eq!(ours.attempts, 3);
    assert!(
        ours.reason
            .as_deref()
            .is_some_and(|r| r.contains("HTTP 503") && r.contains("after 3 attempts")),
        "{:?}",
        ours.reason
    );
    assert!(
        all.iter().all(|d| d.target != dead.id),
        "the second endpoint was added after the notification"
    );
    assert_eq!(f.notifier.process_due().await.expect("process"), 0);
    assert_eq!(rx.log().await["attempts"].as_array().map(Vec::len), Some(3));
    // The SQL table shows the dead letter.
    let r = f
        .engine
        .sql(
            &f.tenant,
            "SELECT status, attempts FROM notification_deliveries",
        )
        .await
        .expect("sql");
    let text = arrow::util::pretty::pretty_format_batches(&r.batches)
        .expect("format")
        .to_string();
    assert!(text.contains("failed") && text.contains('3'), "{text}");
    drop(f.hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_keeps_signing_through_its_grace_period() {
    let f = fixture(NotifyConfig {
        secret_grace: Duration::from_secs(60),
        ..NotifyConfig::default()
    });
    let rx = receiver();
    let endpoint = f
        .notifier
        .create_endpoint(
            &f.tenant,
            &format!("{}/hook", rx.base()),
            Flavour::Standard,
            vec![],
        )
        .expect("endpoint");
    let old = endpoint.secrets[0].secret.clone();
    let rotated = f
        .notifier
        .rotate_secret(&f.tenant, &endpoint.id)
        .expect("rotate");
    let new = rotated.secrets.last().expect("new").secret.clone();
    assert_ne!(old, new);
    // A receiver still on the old secret verifies during the grace period...
    rx.configure(json!({"secret": old})).await;
    f.notifier
        .send(&f.tenant, webhook_only("During grace"))
        .expect("send");
    f.notifier.process_due().await.expect("process");
    // ... and one on the new secret too.
    rx.configure(json!({"secret": new})).await;
    f.notifier
        .send(&f.tenant, webhook_only("New secret"))
        .expect("send");
    f.notifier.process_due().await.expect("process");
    // After the grace period (60 s here) only the new secret signs.
    f.clock.set(f.clock.now_us() + 61_000_000);
    rx.configure(json!({"secret": old})).await;
    f.notifier
        .send(&f.tenant, webhook_only("After grace"))
        .expect("send");
    f.notifier.process_due().await.expect("process");
    let log = rx.log().await;
    let a = log["attempts"].as_array().expect("attempts");
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["verified"], json!(true), "{}", a[0]["error"]);
    assert_eq!(
        a[0]["signature"].as_str().map(|s| s.split(' ').count()),
        Some(2)
    );
    assert_eq!(a[1]["verified"], json!(true), "{}", a[1]["error"]);
    assert_eq!(
        a[2]["verified"],
        json!(false),
        "the expired secret no longer signs"
    );
    assert_eq!(
        a[2]["signature"].as_str().map(|s| s.split(' ').count()),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_delivery_resends_with_the_same_id_and_loses_nothing() {
    let f = fixture(NotifyConfig::default());
    let rx = receiver();
    let endpoint = f
        .notifier
        .create_endpoint(
            &f.tenant,
            &format!("{}/hook", rx.base()),
            Flavour::Standard,
            vec![],
        )
        .expect("endpoint");
    rx.configure(json!({"secret": endpoint.secrets[0].secret}))
        .await;
    f.notifier
        .send(&f.tenant, webhook_only("Crash test"))
        .expect("send");
    // The process claims the delivery and dies before recording anything.
    let claimed = f
        .notifier
        .db()
        .claim_due(f.clock.now_us(), 10)
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let id = claimed[0].0.id.clone();
    drop(f.notifier);
    // The next process finds it `sending` and queues it again.
    let again = notifier(&f.dir, &f.hub, &f.engine, &f.clock, NotifyConfig::default());
    let d = again
        .db()
        .deliveries(&f.tenant, None, None, 10)
        .expect("deliveries")
        .remove(0);
    assert_eq!((d.id.as_str(), d.status), (id.as_str(), Status::Queued));
    assert_eq!(again.process_due().await.expect("process"), 1);
    let d = again
        .db()
        .deliveries(&f.tenant, None, None, 10)
        .expect("deliveries")
        .remove(0);
    assert_eq!(d.status, Status::Delivered);
    assert_eq!(rx.log().await["accepted"], json!({ id: 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_defer_email_and_the_daily_digest_collects_it() {
    use beacon_realtime::notify::User;
    use beacon_realtime::notify::email::SmtpConfig;
    use beacon_realtime::notify::prefs::{Digest, HoursRange, Preferences};
    let server = PyReceiver::start(&["smtp"]);
    let config = NotifyConfig {
        smtp: SmtpConfig {
            host: "127.0.0.1".into(),
            port: server.port,
            from: "Beacon <beacon@shop.test>".into(),
            ..SmtpConfig::default()
        },
        ..NotifyConfig::default()
    };
    let f = fixture(config);
    // 2026-12-01 23:00 UTC: inside 22:00-07:00.
    let night = chrono::DateTime::parse_from_rfc3339("2026-12-01T23:00:00Z")
        .expect("t")
        .timestamp_micros();
    f.clock.set(night);
    let quiet = Preferences {
        quiet_hours: Some(HoursRange {
            start: "22:00".into(),
            end: "07:00".into(),
            days: vec![],
        }),
        ..Preferences::default()
    };
    let digest = Preferences {
        digest: Digest::Daily,
        digest_hour: Some(8),
        ..Preferences::default()
    };
    for (id, prefs) in [("nia", quiet), ("dev", digest)] {
        f.notifier
            .put_user(
                &f.tenant,
                User {
                    id: id.into(),
                    email: Some(format!("{id}@shop.test")),
                    name: None,
                    role: beacon_ingest::UserRole::Viewer,
                    preferences: prefs,
                    created_at_us: 0,
                    has_password: false,
                    totp_enabled: false,
                    last_login_at_us: None,
                },
            )
            .expect("user");
    }
    let mail = |title: &str| SendRequest {
        recipients: vec!["nia".into(), "dev".into()],
        category: "ops".into(),
        title: title.into(),
        channels: Some(vec!["email".into()]),
        ..Default::default()
    };
    f.notifier
        .send(&f.tenant, mail("Late delivery"))
        .expect("send");
    f.notifier
        .send(&f.tenant, mail("Low stock: tea"))
        .expect("send");
    // Nothing goes out at night.
    assert_eq!(f.notifier.process_due().await.expect("process"), 0);
    let ds = f
        .notifier
        .db()
        .deliveries(&f.tenant, None, None, 10)
        .expect("deliveries");
    let seven = chrono::DateTime::parse_from_rfc3339("2026-12-02T07:00:00Z")
        .expect("t")
        .timestamp_micros();
    let eight = chrono::DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
        .expect("t")
        .timestamp_micros();
    for d in &ds {
        match d.target.as_str() {
            "nia" => assert_eq!(
                (d.status, d.next_attempt_us, d.reason.as_deref()),
                (Status::Deferred, seven, Some("quiet hours"))
            ),
            _ => assert_eq!((d.status, d.next_attempt_us), (Status::Digest, eight)),
        }
    }
    // 07:00: Nia's two emails, one by one.
    f.clock.set(seven);
    assert_eq!(f.notifier.process_due().await.expect("process"), 2);
    let mut got: Vec<String> = (0..2)
        .map(|_| {
            server.next_json(Duration::from_secs(20)).expect("email")["headers"]["subject"]
                .as_str()
                .expect("s")
                .to_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, ["Late delivery", "Low stock: tea"]);
    // 08:00: Dev's digest, one email listing both.
    f.clock.set(eight);
    assert_eq!(f.notifier.process_due().await.expect("process"), 2);
    let digest = server.next_json(Duration::from_secs(20)).expect("digest");
    assert_eq!(digest["rcpt_tos"], json!(["dev@shop.test"]));
    assert_eq!(
        digest["headers"]["subject"],
        "Your daily digest: 2 notifications"
    );
    let text = digest["text"].as_str().expect("text");
    assert!(
        text.contains("- Late delivery") && text.contains("- Low stock: tea"),
        "{text}"
    );
    assert!(
        server.next_json(Duration::from_millis(500)).is_none(),
        "one digest, not two emails"
    );
    let ds = f
        .notifier
        .db()
        .deliveries(&f.tenant, None, None, 10)
        .expect("deliveries");
    assert!(ds.iter().all(|d| d.status == Status::Delivered), "{ds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_used_and_the_certificate_is_verified() {
    use beacon_realtime::notify::User;
    use beacon_realtime::notify::email::{SmtpConfig, SmtpTls};
    // A private CA and a server certificate it signed (for 127.0.0.1).
    let certs = tempfile::tempdir().expect("dir");
    let p = |name: &str| certs.path().join(name);
    std::fs::write(
        p("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .current_dir(certs.path())
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Beacon Test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "cert.pem",
    ]);
    let (cert, key, ca) = (p("cert.pem"), p("key.pem"), p("ca.pem"));
    let server = PyReceiver::start(&[
        std::ffi::OsStr::new("smtp-starttls"),
        cert.as_os_str(),
        key.as_os_str(),
    ]);
    let smtp = |ca: &Path| SmtpConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        tls: SmtpTls::Starttls,
        ca_file: ca.to_string_lossy().into_owned(),
        from: "Beacon <beacon@shop.test>".into(),
        ..SmtpConfig::default()
    };
    let user = User {
        id: "ann".into(),
        email: Some("ann@shop.test".into()),
        name: None,
        role: beacon_ingest::UserRole::Owner,
        preferences: Default::default(),
        created_at_us: 0,
        has_password: false,
        totp_enabled: false,
        last_login_at_us: None,
    };
    let request = SendRequest {
        recipients: vec!["ann".into()],
        category: "ops".into(),
        title: "Over TLS".into(),
        channels: Some(vec!["email".into()]),
        ..Default::default()
    };

    // Without trusting the private CA: refused, retried later.
    let f = fixture(NotifyConfig {
        smtp: smtp(Path::new("")),
        ..NotifyConfig::default()
    });
    f.notifier.put_user(&f.tenant, user.clone()).expect("user");
    f.notifier.send(&f.tenant, request.clone()).expect("send");
    assert_eq!(f.notifier.process_due().await.expect("process"), 1);
    let d = f
        .notifier
        .db()
        .deliveries(&f.tenant, None, None, 10)
        .expect("deliveries")
        .remove(0);
    assert_eq!(d.status, Status::Queued);
    assert!(
        d.reason
            .as_deref()
            .is_some_and(|r| r.to_lowercase().contains("certificate")),
        "{:?}",
        d.reason
    );
    assert!(server.next_json(Duration::from_millis(500)).is_none());

    // Trusting the CA: delivered over STARTTLS.
    let f = fixture(NotifyConfig {
        smtp: smtp(&ca),
        ..NotifyConfig::default()
    });
    f.notifier.put_user(&f.tenant, user).expect("user");
    f.notifier.send(&f.tenant, request).expect("send");
    assert_eq!(f.notifier.process_due().await.expect("process"), 1);
    let d = f
        .notifier
        .db()
        .deliveries(&f.tenant, None, None, 10)
        .expect("deliveries")
        .remove(0);
    assert_eq!(d.status, Status::Delivered, "{:?}", d.reason);
    let mail = server.next_json(Duration::from_secs(20)).expect("email");
    assert_eq!(
        (mail["tls"].clone(), mail["headers"]["subject"].clone()),
        (json!(true), json!("Over TLS"))
    );
}
