//! The analyst interfaces with real clients: `psql` (Debian's
//! postgresql-client) and, through api/tests/clients/python, psycopg and
//! the ADBC Flight SQL driver. Each answer is compared with HTTP SQL on the
//! demo workspace's generated data.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Server, after, python, sql};
use serde_json::json;

/// A demo server with its interfaces and keys.
struct Wire {
    server: Server,
    pg_port: u16,
    flight: String,
    read_key: String,
    write_key: String,
    admin_key: String,
    _dir: tempfile::TempDir,
}

fn start() -> Wire {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let (server, lines) = Server::start_with(
        &data,
        &[
            ("BEACON_DEMO__HISTORY_DAYS", "45"),
            ("BEACON_DEMO__LIVE_INTERVAL", "0s"),
        ],
        &["--demo"],
        Some("admin key:"),
    );
    let pg = after(&lines, "PostgreSQL listening on ");
    let pg_port = pg
        .split_whitespace()
        .next()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("pg port");
    let flight = after(&lines, "Flight SQL listening on ")
        .split_whitespace()
        .next()
        .expect("flight address")
        .to_owned();
    Wire {
        server,
        pg_port,
        flight,
        read_key: after(&lines, "read key:").to_owned(),
        write_key: after(&lines, "write key:").to_owned(),
        admin_key: after(&lines, "admin key:").to_owned(),
        _dir: dir,
    }
}

/// `psql` with the workspace as user and `password`; (exit ok, stdout, stderr).
fn psql(port: u16, password: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "demo",
            "-d",
            "beacon",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (Debian package postgresql-client) must be installed: .ci/run installs it");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_lists_tables_and_answers_like_http() {
    let w = start();
    let read = w.read_key.clone();

    // A count and an analytics function: equal to HTTP SQL.
    let q = "SELECT count(*) FROM events";
    let (ok, out, err) = psql(w.pg_port, &read, &["-At", "-c", q]);
    assert!(ok, "{err}");
    let http = sql(&w.server, &read, q).await;
    assert_eq!(out.trim(), http["rows"][0][0].to_string(), "{out}");
    assert!(out.trim().parse::<i64>().expect("number") > 0);

    let q = "SELECT business_date(timestamp, 'month') AS month, count(*) AS orders, sum(revenue) AS revenue \
             FROM events WHERE event = 'Order Completed' GROUP BY 1 ORDER BY 1";
    let (ok, out, err) = psql(w.pg_port, &read, &["-At", "-F", ",", "-c", q]);
    assert!(ok, "{err}");
    let http = sql(&w.server, &read, q).await;
    let want: Vec<String> = http["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let cells: Vec<String> = r
                .as_array()
                .expect("row")
                .iter()
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                .collect();
            cells.join(",")
        })
        .collect();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want, "psql rows differ from HTTP SQL");

    // psql's own catalog queries: \dt lists the events table and the views.
    let (ok, out, err) = psql(w.pg_port, &read, &["-c", "\\dt"]);
    assert!(ok, "\\dt failed: {err}");
    assert!(out.contains("events"), "{out}");
    let (ok, out, err) = psql(w.pg_port, &read, &["-c", "\\dv"]);
    assert!(ok, "\\dv failed: {err}");
    assert!(out.contains("orders") && out.contains("bookings"), "{out}");
    // \d looks the table up in pg_class, then its columns by OID in
    // pg_attribute, in separate statements: OIDs must hold across them.
    for _ in 0..2 {
        let (ok, out, err) = psql(w.pg_port, &read, &["-c", "\\d events"]);
        assert!(ok, "\\d events failed: {err}");
        assert!(out.contains("Table \"public.events\""), "{out}");
        assert!(
            out.contains("message_id") && out.contains("timestamp"),
            "{out}"
        );
        assert!(
            !out.contains("slot_name"),
            "columns of another table: {out}"
        );
    }
    let (ok, out, err) = psql(w.pg_port, &read, &["-c", "\\d orders"]);
    assert!(ok, "\\d orders failed: {err}");
    assert!(out.contains("order_id") && out.contains("revenue"), "{out}");
    let (ok, out, err) = psql(w.pg_port, &read, &["-At", "-c", "SELECT version()"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("PostgreSQL 16"), "{out}");

    // Transactions (psql scripts wrap in BEGIN/COMMIT) and SHOW.
    let (ok, out, err) = psql(
        w.pg_port,
        &read,
        &[
            "-At",
            "-c",
            "BEGIN; SELECT 1; COMMIT;",
            "-c",
            "SHOW transaction_isolation",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("read committed"), "{out}");

    // Refusals: wrong password, a write key, a sandbox violation.
    let (ok, _, err) = psql(w.pg_port, "bk_not_a_key", &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
    let (ok, _, err) = psql(w.pg_port, &w.write_key, &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("cannot query"), "{err}");
    let (ok, _, err) = psql(w.pg_port, &read, &["-c", "DROP TABLE events"]);
    assert!(!ok);
    assert!(err.contains("not allowed"), "{err}");
    let (ok, _, err) = psql(w.pg_port, &read, &["-c", "SELECT nope FROM events"]);
    assert!(!ok);
    assert!(err.contains("nope"), "{err}");

    // Nothing was harmed.
    let (ok, out, _) = psql(
        w.pg_port,
        &read,
        &["-At", "-c", "SELECT count(*) > 0 FROM events"],
    );
    assert!(ok);
    assert_eq!(out.trim(), "t");
    drop(w.server);
}

fn run_python(w: &Wire, which: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python/wire_clients.py");
    let cfg = json!({
        "http": w.server.base,
        "pg_host": "127.0.0.1",
        "pg_port": w.pg_port,
        "flight": w.flight,
        "tenant": "demo",
        "read_key": w.read_key,
        "write_key": w.write_key,
        "admin_key": w.admin_key,
    });
    let out = Command::new(python())
        .arg(script)
        .arg(cfg.to_string())
        .arg(which)
        .output()
        .expect("run wire_clients.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{which} checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_matches_http_sql() {
    let w = start();
    tokio::task::block_in_place(|| run_python(&w, "psycopg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_flight_sql_matches_http_sql() {
    let w = start();
    tokio::task::block_in_place(|| run_python(&w, "adbc"));
}
