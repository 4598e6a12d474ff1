//! The api suites' harness: start the real `beacon` binary on 127.0.0.1:0
//! and talk to it over HTTP. Harness code other crates share (the manual
//! clock, the Python receivers, the WebSocket client) is in
//! `beacon-test-support`, re-exported here.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use serde_json::Value;

pub use beacon_test_support::{PyReceiver, WAIT, python, ws};

pub const BIN: &str = env!("CARGO_BIN_EXE_beacon");

/// A running server.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

/// Settings that make flushes and maintenance happen during a test.
pub fn fast_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BEACON_INGEST__FLUSH_INTERVAL", "20ms"),
        ("BEACON_INGEST__FLUSH_BYTES", "200000"),
        ("BEACON_INGEST__MAINTENANCE_INTERVAL", "300ms"),
        ("BEACON_INGEST__COMPACTION_MIN_FILES", "3"),
        ("BEACON_INGEST__DELETE_GRACE", "0s"),
        ("BEACON_INGEST__WAL_SEGMENT_BYTES", "65536"),
    ]
}

impl Server {
    /// Starts `beacon serve` and waits for the address line on stdout.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_with(data_dir, env, &[], None).0
    }

    /// Starts `beacon serve ARGS`; after the address line, also collects the
    /// stdout lines up to and including one starting with `until`.
    pub fn start_with(
        data_dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        until: Option<&str>,
    ) -> (Server, Vec<String>) {
        Self::start_from(None, data_dir, env, args, until)
    }

    /// Starts `beacon serve` in the directory `cwd` with a `--data-dir`
    /// relative to it (the default `./beacon-data` is relative too).
    pub fn start_relative(cwd: &Path, data_dir: &str, env: &[(&str, &str)]) -> Server {
        Self::start_from(Some(cwd), Path::new(data_dir), env, &[], None).0
    }

    fn start_from(
        cwd: Option<&Path>,
        data_dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        until: Option<&str>,
    ) -> (Server, Vec<String>) {
        let data_dir = &cwd.map_or_else(|| data_dir.to_owned(), |c| c.join(data_dir));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]);
        match cwd {
            Some(cwd) => {
                let relative = data_dir.strip_prefix(cwd).expect("under cwd");
                cmd.current_dir(cwd).arg(relative);
            }
            None => {
                cmd.arg(data_dir);
            }
        }
        cmd
            .args(args)
            .env("BEACON_LOG__FILTER", "info,beacon_ingest=debug")
            // Tests run in parallel: the analyst listeners pick free ports.
            .env("BEACON_SQL__PG_LISTEN", "127.0.0.1:0")
            .env("BEACON_SQL__FLIGHT_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn beacon");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("Beacon listening on ") {
                        break addr.trim().to_owned();
                    }
                }
                other => {
                    let log =
                        std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
                    panic!("beacon exited before listening: {other:?}\n{log}");
                }
            }
        };
        let mut printed = Vec::new();
        if let Some(until) = until {
            for line in lines.by_ref() {
                let line = line.expect("stdout line");
                let done = line.trim_start().starts_with(until);
                printed.push(line);
                if done {
                    break;
                }
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let server = Server {
            child,
            base,
            data_dir: data_dir.to_owned(),
        };
        (server, printed)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `POST path` with a bearer key and a JSON body: status and JSON answer.
    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        call(self, reqwest::Method::POST, path, key, Some(body)).await
    }

    /// `GET path` with a bearer key: status and JSON answer.
    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        call(self, reqwest::Method::GET, path, key, None).await
    }

    /// `ws://.../v1/ws?QUERY` of this server.
    pub fn ws_url(&self, query: &str) -> String {
        ws::url(&self.base, query)
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn stop(mut self) -> ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY-free: libc::kill is a plain syscall wrapper.
        let rc = unsafe_kill(pid, libc::SIGTERM);
        assert_eq!(rc, 0, "kill failed");
        let status = self.child.wait().expect("wait");
        if !status.success() {
            // The caller asserts success: say why it was not.
            let log = std::fs::read_to_string(self.data_dir.with_extension("log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "beacon stopped with {status}; the end of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        status
    }

    /// Sends SIGHUP (the server reloads its TLS certificate).
    pub fn hangup(&self) {
        let rc = unsafe_kill(self.child.id() as libc::pid_t, libc::SIGHUP);
        assert_eq!(rc, 0, "kill failed");
    }

    /// SIGKILL and wait: a crash.
    pub fn crash(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

#[allow(unsafe_code)]
fn unsafe_kill(pid: libc::pid_t, signal: libc::c_int) -> libc::c_int {
    // SAFETY: sending a signal to our own child process id.
    unsafe { libc::kill(pid, signal) }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A workspace created with the CLI.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub write_key: String,
    pub admin_key: String,
}

/// `beacon tenants create NAME --data-dir DIR --json`.
pub fn create_tenant(data_dir: &Path, name: &str) -> Tenant {
    let out = Command::new(BIN)
        .args(["tenants", "create", name, "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run beacon tenants create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    Tenant {
        id: v["id"].as_str().expect("id").to_owned(),
        write_key: v["write_key"].as_str().expect("write key").to_owned(),
        admin_key: v["admin_key"].as_str().expect("admin key").to_owned(),
    }
}

/// `beacon keys create --tenant NAME --role read --json`: a read key.
pub fn create_read_key(data_dir: &Path, tenant: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "keys",
            "create",
            "--tenant",
            tenant,
            "--role",
            "read",
            "--json",
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .expect("run beacon keys create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    v["key"].as_str().expect("key").to_owned()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        // Model training answers within a minute on a quiet machine; a busy
        // one gets three before a call fails.
        .timeout(std::time::Duration::from_secs(180))
        .build()
        .expect("client")
}

/// Runs SQL with a key and returns the JSON answer (asserting 200).
pub async fn sql(server: &Server, key: &str, query: &str) -> Value {
    let resp = client()
        .post(server.url("/v1/sql"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .expect("send");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body
}

/// A single number from a one-cell query.
pub async fn scalar(server: &Server, key: &str, query: &str) -> i64 {
    let v = sql(server, key, query).await;
    v["rows"][0][0]
        .as_i64()
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `method path` with a bearer key and an optional JSON body: status and JSON answer (`null` if empty).
pub async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, server.url(path)).bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, value)
}

/// The rest of the first stdout line starting with `prefix` (trimmed), as
/// `serve --demo` prints its keys and listeners.
pub fn after<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {lines:#?}"))
        .trim()
}

/// Installs the npm packages pinned by `dir/package-lock.json` (`npm ci`)
/// unless `dir/node_modules/<marker>` is there already.
pub fn npm_ci(dir: &Path, marker: &str) {
    if dir.join("node_modules").join(marker).is_dir() {
        return;
    }
    let status = Command::new("npm")
        .current_dir(dir)
        .args(["ci", "--no-audit", "--no-fund"])
        .status()
        .expect("npm is installed (.ci/run installs Node.js and npm)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// `beacon users create` with a password on stdin.
pub fn create_user(data: &Path, workspace: &str, email: &str, role: &str, password: &str) {
    let mut child = Command::new(BIN)
        .args(["users", "create", "--workspace", workspace, "--email", email, "--role", role, "--password-stdin", "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(password.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Reads a workbook with openpyxl: sheet names and, per sheet, each row's
/// cells as `[value, type]` (numbers with their number format).
pub fn read_xlsx(bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("result.xlsx");
    std::fs::write(&file, bytes).expect("write");
    let script = r#"
import json, sys, datetime, openpyxl
book = openpyxl.load_workbook(sys.argv[1])
def cell(c):
    v = c.value
    if isinstance(v, (datetime.datetime, datetime.date)):
        return [v.isoformat(), "d", c.number_format]
    if c.data_type == "n":
        return [v, "n", c.number_format]
    return [v, c.data_type]
print(json.dumps({"sheets": book.sheetnames,
                  "cells": {ws.title: [[cell(c) for c in row] for row in ws.iter_rows()] for ws in book.worksheets}}))
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(&file)
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}
