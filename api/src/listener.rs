//! The HTTP listener (and Flight SQL's under TLS): at most
//! `http.max_connections` connections open at once (one more waits in the
//! kernel's backlog until one closes, rather than being refused),
//! `TCP_NODELAY` on each (WebSocket and SSE pushes are small writes that
//! must leave at once; with Nagle a push could wait for the client's
//! delayed ACK, up to 40 ms), and TLS when configured ([`crate::tls`]):
//! handshakes run on their own tasks (at most 10 s each), so a slow client
//! never holds up the next accept.
//!
//! Header limits are hyper's (at most 100 headers and about 400 KB of
//! head per request, else 431); body limits are per route
//! (`crate::extract`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A TCP listener with a bound on open connections, maybe TLS.
pub struct Bounded {
    inner: Inner,
    local: SocketAddr,
}

enum Inner {
    Plain {
        listener: TcpListener,
        permits: Arc<Semaphore>,
    },
    /// Connections whose handshake finished, from the accept task.
    Tls(tokio::sync::mpsc::Receiver<(Conn, SocketAddr)>),
}

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a plain-HTTP request to the TLS port gets.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 89\r\n\r\n{\"error\":{\"code\":\"tls_required\",\"message\":\"this server speaks HTTPS only: use https://\"}}";

impl Bounded {
    /// Bounds `listener` to `max` open connections; TLS with `tls` (its
    /// HTTP acceptor, whose ALPN offers h2 for gRPC and http/1.1).
    pub fn new(listener: TcpListener, max: usize, tls: Option<Arc<crate::tls::Tls>>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let permits = Arc::new(Semaphore::new(max.max(1)));
        let Some(tls) = tls else {
            return Self {
                inner: Inner::Plain { listener, permits },
                local,
            };
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut listener = listener;
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let (tcp, addr) = axum::serve::Listener::accept(&mut listener).await;
                if tx.is_closed() {
                    return;
                }
                let _ = tcp.set_nodelay(true);
                let acceptor = tls.http();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
                        Ok(Ok(1)) if first[0] != 0x16 => {
                            use tokio::io::AsyncWriteExt;
                            let mut tcp = tcp;
                            let _ = tcp.write_all(PLAIN_HTTP_ANSWER).await;
                            let _ = tcp.shutdown().await;
                            return;
                        }
                        Ok(Ok(1)) => {}
                        _ => return,
                    }
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let conn = Conn {
                                io: Io::Tls(Box::new(stream)),
                                _permit: permit,
                            };
                            let _ = tx.send((conn, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed."),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out."),
                    }
                });
            }
        });
        Self {
            inner: Inner::Tls(rx),
            local,
        }
    }

    /// The next connection (for servers that take a stream of them).
    pub async fn next(&mut self) -> Conn {
        axum::serve::Listener::accept(self).await.0
    }
}

/// The client's address of a connection (axum's `ConnectInfo` for
/// [`Bounded`]).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Bounded>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Bounded>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// An accepted connection, holding its place until dropped.
pub struct Conn {
    io: Io,
    _permit: OwnedSemaphorePermit,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// gRPC (Flight SQL) takes these connections too.
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl axum::serve::Listener for Bounded {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match &mut self.inner {
            Inner::Plain { listener, permits } => {
                let permit = Arc::clone(permits)
                    .acquire_owned()
                    .await
                    .expect("the connection semaphore is never closed");
                let (io, addr) = axum::serve::Listener::accept(listener).await;
                if let Err(e) = io.set_nodelay(true) {
                    tracing::debug!(error = %e, "Could not set TCP_NODELAY.");
                }
                (
                    Conn {
                        io: Io::Plain(io),
                        _permit: permit,
                    },
                    addr,
                )
            }
            Inner::Tls(rx) => match rx.recv().await {
                Some(conn) => conn,
                // The accept task ended (its listener failed for good):
                // nothing more will come.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}
