//! Shared fixtures for the integration tests: a real server on 127.0.0.1, a
//! real client connected to it, and TCP targets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use remotedialer_tokio::proto::Config;
use remotedialer_tokio::{Authorization, Client, ClientBuilder, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The example authorizer: the client key is the `X-Tunnel-ID` header.
pub fn tunnel_id_authorizer(req: &http::request::Parts) -> Authorization {
    match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => Authorization::Allow(id.to_owned()),
        _ => Authorization::Deny,
    }
}

/// Short timers so keepalive and sync paths run within a test.
pub fn fast_config() -> Config {
    Config {
        ping_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_secs(2),
        sync_interval: Duration::from_secs(1),
        sync_grace: Duration::from_secs(1),
        ..Config::default()
    }
}

pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    pub url: String,
}

pub async fn start_server(config: ServerConfig) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::with_config(tunnel_id_authorizer, config);
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    TestServer {
        server,
        addr,
        url: format!("ws://{addr}/connect"),
    }
}

pub fn client(url: &str, id: &str, session: Config) -> Client {
    ClientBuilder::new(url)
        .header("X-Tunnel-ID", id)
        .connect_authorizer(|proto, _| proto == "tcp")
        .session_config(session)
        .proxy_from_env(false)
        .build()
        .unwrap()
}

/// Waits (bounded) until `cond` holds.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A TCP echo server on 127.0.0.1.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP server that sends `len` pattern bytes to each connection, then closes.
pub async fn source_server(len: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if tcp.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = tcp.shutdown().await;
                let mut sink = [0u8; 1024];
                let _ = tcp.read(&mut sink).await;
            });
        }
    });
    addr
}
