//! TLS on every listener with a private CA (made by `openssl` here): HTTPS
//! with the CA, plain HTTP refused, `psql` with `sslmode=verify-full`,
//! PostgreSQL without TLS refused, Flight SQL over `grpc+tls` (ADBC), Secure
//! session cookies, and a new certificate taken on SIGHUP.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (once) and a server certificate for 127.0.0.1 and localhost with
/// common name `cn`; returns (ca.pem, cert, key).
fn certificate(dir: &Path, cn: &str) -> (PathBuf, PathBuf, PathBuf) {
    if !dir.join("ca.pem").exists() {
        openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Beacon Test CA"]);
    }
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").expect("ext");
    openssl(dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &format!("{cn}.key"), "-out", &format!("{cn}.csr"), "-subj", &format!("/CN={cn}")]);
    openssl(dir, &["x509", "-req", "-in", &format!("{cn}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", &format!("{cn}.pem"), "-days", "2", "-extfile", "ext.cnf"]);
    (dir.join("ca.pem"), dir.join(format!("{cn}.pem")), dir.join(format!("{cn}.key")))
}

/// The common name of the certificate a TLS server presents.
fn served_cn(port: u16) -> String {
    let s_client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .expect("s_client");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-subject"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("x509");
    use std::io::Write;
    x509.stdin.take().expect("stdin").write_all(&s_client.stdout).expect("write");
    String::from_utf8_lossy(&x509.wait_with_output().expect("wait").stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_with_a_private_ca_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    let (ca, cert, key) = certificate(&certs, "beacon-test-1");
    let live_cert = certs.join("live.pem");
    let live_key = certs.join("live.key");
    std::fs::copy(&cert, &live_cert).expect("cert");
    std::fs::copy(&key, &live_key).expect("key");
    let data = dir.path().join("data");
    let t = create_tenant(&data, "Shop");
    let read = create_read_key(&data, "Shop");
    let (cert_env, key_env) = (live_cert.display().to_string(), live_key.display().to_string());
    let (server, lines) = Server::start_with(
        &data,
        &[("BEACON_TLS__CERT_FILE", cert_env.as_str()), ("BEACON_TLS__KEY_FILE", key_env.as_str())],
        &[],
        Some("Flight SQL listening on"),
    );
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    let port: u16 = server.base.rsplit(':').next().expect("port").parse().expect("port");

    // HTTPS with the CA.
    let ca_pem = std::fs::read(&ca).expect("ca");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).expect("ca"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let r = https.get(server.url("/healthz")).send().await.expect("https");
    assert_eq!(r.status(), 200);
    let r = https.get(server.url("/v1/workspace")).bearer_auth(&t.admin_key).send().await.expect("https");
    assert_eq!(r.status(), 200);
    // Session cookies are Secure over TLS.
    let (s, _) = {
        let r = https.put(server.url("/v1/users/ann")).bearer_auth(&t.admin_key).json(&json!({"email": "ann@shop.test", "role": "owner"})).send().await.expect("put");
        (r.status(), ())
    };
    assert_eq!(s, 200);
    let mut child = Command::new(BIN)
        .args(["users", "reset-password", "--workspace", "Shop", "ann", "--password-stdin", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("users");
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(b"correct horse battery staple").expect("write");
    }
    assert!(child.wait().expect("wait").success());
    let r = https.post(server.url("/v1/auth/login")).json(&json!({"email": "ann@shop.test", "password": "correct horse battery staple"})).send().await.expect("login");
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().expect("text").to_owned();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // Without the CA the certificate is not trusted; plain HTTP is refused.
    let untrusting = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    assert!(untrusting.get(server.url("/healthz")).send().await.is_err(), "an unknown CA is refused");
    let plain = untrusting.get(format!("http://127.0.0.1:{port}/healthz")).send().await.expect("an answer");
    assert_eq!(plain.status(), 400);
    let body: serde_json::Value = plain.json().await.expect("json");
    assert_eq!(body["error"]["code"], "tls_required");

    // psql with sslmode=verify-full against the private CA; without TLS refused.
    let pg_port = after(&lines, "PostgreSQL listening on").split(' ').next().expect("addr").rsplit(':').next().expect("port").to_owned();
    let psql = |sslmode: &str| {
        let out = Command::new("psql")
            .arg(format!("host=127.0.0.1 port={pg_port} user=Shop dbname=beacon sslmode={sslmode} sslrootcert={}", ca.display()))
            .args(["-At", "-c", "SELECT 40 + 2"])
            .env("PGPASSWORD", &read)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, out, err) = psql("verify-full");
    assert!(ok, "{err}");
    assert_eq!(out, "42");
    let (ok, _, err) = psql("disable");
    assert!(!ok);
    assert!(err.contains("requires TLS"), "{err}");

    // Flight SQL over grpc+tls with ADBC and the CA.
    let flight = after(&lines, "Flight SQL listening on").split(' ').next().expect("uri").to_owned();
    assert!(flight.starts_with("grpc+tls://"), "{flight}");
    let script = format!(
        r#"
import adbc_driver_flightsql as a, adbc_driver_flightsql.dbapi as f
conn = f.connect("{flight}", db_kwargs={{a.DatabaseOptions.TLS_ROOT_CERTS.value: open("{ca}").read(), a.DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer {read}"}})
cur = conn.cursor(); cur.execute("SELECT 40 + 2 AS answer"); print(cur.fetchall()[0][0])
"#,
        ca = ca.display()
    );
    let out = Command::new(python()).args(["-c", &script]).output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // A new certificate in place, then SIGHUP: new connections get it.
    assert!(served_cn(port).contains("beacon-test-1"));
    let (_, cert2, key2) = certificate(&certs, "beacon-test-2");
    std::fs::copy(&cert2, &live_cert).expect("cert");
    std::fs::copy(&key2, &live_key).expect("key");
    server.hangup();
    let mut cn = String::new();
    for _ in 0..50 {
        cn = served_cn(port);
        if cn.contains("beacon-test-2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cn.contains("beacon-test-2"), "{cn}");
    let r = https.get(server.url("/healthz")).send().await.expect("https after the reload");
    assert_eq!(r.status(), 200);
}
