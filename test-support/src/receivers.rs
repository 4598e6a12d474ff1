//! The real receivers of the notification tests, in the test venv:
//! `api/tests/clients/python/receivers.py smtp | smtp-starttls CERT KEY |
//! webhook` on 127.0.0.1, port 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// `api/tests/clients/python` in this checkout.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/tests/clients/python")
}

/// The test venv's Python, created by `setup.sh` unless complete.
pub fn python() -> PathBuf {
    let dir = clients_dir();
    let status = Command::new("bash")
        .arg(dir.join("setup.sh"))
        .status()
        .expect("run api/tests/clients/python/setup.sh");
    assert!(status.success(), "installing the Python clients failed");
    dir.join(".venv/bin/python")
}

/// A running receiver: its port, and its stdout lines after the port line
/// (an SMTP receiver prints each email as a JSON line).
pub struct PyReceiver {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Stdout lines after the port line.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl PyReceiver {
    /// Starts `receivers.py ARGS` (`["webhook"]`, `["smtp"]`,
    /// `["smtp-starttls", cert, key]`) and waits for its port.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> PyReceiver {
        let mut child = Command::new(python())
            .arg(clients_dir().join("receivers.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a receiver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("port line").expect("read");
        let port = first
            .trim()
            .strip_prefix("port ")
            .expect("port line")
            .parse()
            .expect("port");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PyReceiver {
            child,
            port,
            lines: rx,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next stdout line as JSON, waiting at most `wait`.
    pub fn next_json(&self, wait: Duration) -> Option<Value> {
        self.lines
            .recv_timeout(wait)
            .ok()
            .map(|l| serde_json::from_str(&l).expect("receiver JSON line"))
    }

    /// A webhook receiver's behaviour (`POST /config`: status codes to
    /// answer, delays).
    pub async fn configure(&self, config: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/config", self.base()))
            .json(&config)
            .send()
            .await
            .expect("config");
        assert!(r.status().is_success());
    }

    /// A webhook receiver's log of deliveries (`GET /log`).
    pub async fn log(&self) -> Value {
        reqwest::get(format!("{}/log", self.base()))
            .await
            .expect("log")
            .json()
            .await
            .expect("log json")
    }
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
