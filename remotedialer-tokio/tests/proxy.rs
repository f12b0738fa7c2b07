//! Reaching the server through a real HTTP `CONNECT` proxy on 127.0.0.1.
//!
//! A proxy from `HTTP_PROXY` is never used for loopback servers (Go's
//! rule), so these tests force it with `ClientBuilder::proxy`, and call
//! `proxy::connect_via` directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use remotedialer_tokio::proto::Config;
use remotedialer_tokio::{ClientError, ServerConfig, proxy};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A minimal HTTP `CONNECT` proxy that records each request head and may
/// require `Proxy-Authorization: Basic <credentials>`.
struct ConnectProxy {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    async fn start(credentials: Option<&'static str>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut client = BufReader::new(tcp);
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if client.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    recorded.lock().unwrap().push(head.clone());
                    let mut parts = head.split_whitespace();
                    let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
                    let reply = |status: &str| format!("HTTP/1.1 {status}\r\n\r\n");
                    let mut client = client.into_inner();
                    if method != "CONNECT" {
                        let _ = client
                            .write_all(reply("405 Method Not Allowed").as_bytes())
                            .await;
                        return;
                    }
                    if let Some(creds) = credentials {
                        let expected = format!("proxy-authorization: basic {creds}");
                        if !head
                            .to_ascii_lowercase()
                            .contains(&expected.to_ascii_lowercase())
                        {
                            let _ = client
                                .write_all(reply("407 Proxy Authentication Required").as_bytes())
                                .await;
                            return;
                        }
                    }
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        let _ = client.write_all(reply("502 Bad Gateway").as_bytes()).await;
                        return;
                    };
                    client
                        .write_all(reply("200 Connection established").as_bytes())
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        ConnectProxy { addr, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reaches_the_server_through_the_proxy() {
    let srv = start_server(ServerConfig::default()).await;
    let proxy = ConnectProxy::start(None).await;
    let uri: http::Uri = format!("http://{}", proxy.addr).parse().unwrap();
    let client = run_client_with(&srv.url, "foo", Config::default(), |b| b.proxy(uri));
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with(&format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", srv.addr)),
        "{}",
        heads[0]
    );
    assert!(
        !heads[0]
            .to_ascii_lowercase()
            .contains("proxy-authorization")
    );
    let echo = echo_server().await;
    let mut s = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    write_pattern(&mut s, 1, 500_000).await.unwrap();
    read_pattern(&mut s, 1, 500_000).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_come_from_the_url() {
    // base64("user:secret")
    let proxy = ConnectProxy::start(Some("dXNlcjpzZWNyZXQ=")).await;
    let srv = start_server(ServerConfig::default()).await;
    let with: http::Uri = format!("http://user:secret@{}", proxy.addr)
        .parse()
        .unwrap();
    let client = run_client_with(&srv.url, "foo", Config::default(), |b| b.proxy(with));
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;

    let without: http::Uri = format!("http://{}", proxy.addr).parse().unwrap();
    let refused = remotedialer_tokio::ClientBuilder::new(&srv.url)
        .header("X-Tunnel-ID", "bar")
        .connect_authorizer(|_, _| true)
        .proxy(without)
        .build()
        .unwrap();
    let err = refused.connect_once().await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("proxy refused CONNECT: HTTP/1.1 407 Proxy Authentication Required"),
        "{err}"
    );
    assert!(!srv.server.has_session("bar"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_via_opens_a_raw_tunnel() {
    let proxy = ConnectProxy::start(None).await;
    let uri: http::Uri = format!("http://{}", proxy.addr).parse().unwrap();
    let echo = echo_server().await;
    let mut tcp = proxy::connect_via(&uri, "127.0.0.1", echo.port())
        .await
        .unwrap();
    tcp.write_all(b"through the proxy").await.unwrap();
    let mut back = [0u8; 17];
    tcp.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"through the proxy");
    // A target the proxy cannot reach is the proxy's error.
    let closed = closed_port().await;
    let err = proxy::connect_via(&uri, "127.0.0.1", closed.port())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("502 Bad Gateway"), "{err}");
    // No proxy listening at all: the socket's error.
    let dead: http::Uri = format!("http://{closed}").parse().unwrap();
    let err = proxy::connect_via(&dead, "127.0.0.1", echo.port())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn environment_proxies_skip_loopback_servers() {
    // Why the tests above force the proxy: Go's rules bypass loopback.
    assert!(proxy::bypasses("127.0.0.1", 8123, ""));
    assert!(proxy::bypasses("localhost", 8123, ""));
    assert!(proxy::bypasses("[::1]", 8123, ""));
    assert!(!proxy::bypasses("tunnel.example.com", 443, "example.org"));
    assert!(proxy::bypasses(
        "tunnel.example.com",
        443,
        "example.org,.example.com"
    ));
}
