//! A raw HTTP/1.1 client for tests: one request on a new connection, nothing hidden.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request on a new connection; the status and the body.
pub(crate) async fn request(
    addr: &str,
    method: &str,
    path: &str,
    ct: &str,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A reqwest client with TLS ready, built as the router builds its own
/// (`switchyard::http_client`: reqwest carries no crypto provider of its own).
#[cfg(feature = "dispatch")]
pub(crate) fn client() -> reqwest::Client {
    switchyard::http_client().build().expect("an HTTP client")
}

/// `GET url` with [`client`], answered (any status).
#[cfg(feature = "dispatch")]
pub(crate) async fn get(url: impl reqwest::IntoUrl) -> reqwest::Response {
    client().get(url).send().await.expect("an answer to GET")
}
