//! A WebSocket client of the hub (`GET /v1/ws`), every wait bounded by
//! [`WAIT`](crate::WAIT).

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::WAIT;

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `ws://HOST/v1/ws?QUERY` of a server at `http://HOST`.
pub fn url(http_base: &str, query: &str) -> String {
    format!(
        "{}/v1/ws{query}",
        http_base.replacen("http://", "ws://", 1)
    )
}

/// Opens a connection (no messages read).
pub async fn open(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws
}

/// The next JSON message (pings and pongs skipped); panics on close,
/// another frame or timeout.
pub async fn next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until a message matches `pred` (at most `max` messages).
pub async fn until<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    max: usize,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..max {
        let m = next(ws).await;
        if pred(&m) {
            return m;
        }
    }
    panic!("no matching message within {max} messages");
}

/// Sends a JSON message.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Sends a subscribe message and returns the answer (`subscribed` or
/// `error`).
pub async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    v: Value,
) -> Value {
    send(ws, v).await;
    until(ws, 50, |m| m["type"] == "subscribed" || m["type"] == "error").await
}

/// The close code the server ends the connection with (1005 for none).
pub async fn close_code<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> u16 {
    for _ in 0..100 {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) | None => return 1005,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("error instead of close: {e}"),
        }
    }
    panic!("no close frame");
}
