//! Optional TLS for every listener (rustls with the ring provider, the one
//! already in the tree through pgwire and lettre), from PEM files:
//! `[tls] cert_file` (the chain, leaf first) and `key_file`.
//!
//! With TLS on, each listener speaks only TLS: HTTP and WebSockets are
//! HTTPS (a plain-HTTP request gets a 400 naming `https://` and the
//! connection closes), the PostgreSQL wire takes `SSLRequest` and refuses a
//! connection that did not ask for it (FATAL 28000), Flight SQL is gRPC over
//! TLS. Session cookies are `Secure`.
//!
//! The files are read again on SIGHUP and when either file's modification
//! time changes (checked every 10 s); new connections get the new
//! certificate, open ones keep theirs. A new pair that does not load is
//! logged and the old one kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// `[tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain ("" with `key_file` "": no TLS).
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty()
    }

    /// What is wrong with the settings.
    pub fn problems(&self) -> Vec<String> {
        if self.enabled() && (self.cert_file.is_empty() || self.key_file.is_empty()) {
            vec!["tls.cert_file and tls.key_file are set together".into()]
        } else {
            Vec::new()
        }
    }
}

/// The acceptors of the current certificate, reloadable.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    /// (HTTP and gRPC with ALPN h2 and http/1.1, PostgreSQL without ALPN).
    acceptors: RwLock<(TlsAcceptor, TlsAcceptor)>,
    stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn acceptors(cert: &Path, key: &Path) -> anyhow::Result<(TlsAcceptor, TlsAcceptor)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("tls.cert_file {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert_file {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "tls.cert_file {} holds no certificate", cert.display());
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| format!("tls.key_file {}", key.display()))?;
    let config = |alpn: Vec<Vec<u8>>| -> anyhow::Result<TlsAcceptor> {
        let mut c = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key_der.clone_key())
            .context("the certificate and key do not make a TLS configuration")?;
        c.alpn_protocols = alpn;
        Ok(TlsAcceptor::from(Arc::new(c)))
    };
    Ok((config(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?, config(Vec::new())?))
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tls {
    /// Loads the configured files; `None` when TLS is off.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Option<Arc<Self>>> {
        if !config.enabled() {
            return Ok(None);
        }
        let (cert, key) = (PathBuf::from(&config.cert_file), PathBuf::from(&config.key_file));
        let acceptors = acceptors(&cert, &key)?;
        let stamps = (modified(&cert), modified(&key));
        Ok(Some(Arc::new(Self {
            cert,
            key,
            acceptors: RwLock::new(acceptors),
            stamps: Mutex::new(stamps),
        })))
    }

    /// For HTTP and Flight SQL (ALPN h2, http/1.1).
    pub fn http(&self) -> TlsAcceptor {
        self.acceptors.read().0.clone()
    }

    /// For the PostgreSQL wire.
    pub fn pg(&self) -> TlsAcceptor {
        self.acceptors.read().1.clone()
    }

    /// Reads the files again; keeps the current pair on failure.
    pub fn reload(&self) {
        match acceptors(&self.cert, &self.key) {
            Ok(new) => {
                *self.acceptors.write() = new;
                *self.stamps.lock() = (modified(&self.cert), modified(&self.key));
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded.");
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "TLS certificate not reloaded; keeping the current one.")
            }
        }
    }

    /// Reloads on SIGHUP and when the files change, until `stop`.
    pub fn spawn_reloader(self: Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = hangup => self.reload(),
                    _ = tick.tick() => {
                        let now = (modified(&self.cert), modified(&self.key));
                        if now != *self.stamps.lock() {
                            self.reload();
                        }
                    }
                }
            }
        })
    }
}
