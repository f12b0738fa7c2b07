//! `wss://` with real certificates, Prometheus metrics, and reaching the
//! server through an HTTP CONNECT proxy, under async-std and under smol.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use common::*;
use futures_util::{AsyncReadExt, AsyncWriteExt};
use prometheus_client::encoding::text::encode;
use remotedialer_async_std::proto::Config;
use remotedialer_async_std::tls::{self, TlsRoots};
use remotedialer_async_std::{ClientError, Metrics, Server, ServerConfig, proxy};

scenarios!(
    wss_with_a_private_ca,
    metrics_count_sessions_connections_and_bytes,
    connect_via_an_http_proxy,
);

async fn wss_with_a_private_ca<R: Runtime>() {
    let (cert, key) = test_certificate();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::new(R::spawner(), tunnel_id_authorizer);
    let tls_config = tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap();
    let s = server.clone();
    R::spawner().spawn(async move {
        s.serve_tls(listener, tls_config).await.unwrap();
    });
    let url = format!("wss://localhost:{port}/connect");
    // The public roots do not know this certificate.
    let untrusting = client::<R>(&url, "foo", Config::default());
    match untrusting.connect_once().await {
        Err(ClientError::Connect { source, .. }) => {
            assert!(source.to_string().contains("certificate"), "{source}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    let running = run_built::<R>(
        builder::<R>(&url, "foo", Config::default())
            .tls_roots(TlsRoots::CustomCa(cert.clone().into_bytes())),
    );
    running.wait_sessions(1).await;
    wait_for("server session", || server.has_session("foo")).await;
    let echo = echo_server::<R>().await;
    let mut s = server.dial("foo", "tcp", &echo.to_string()).await.unwrap();
    let (mut r, mut w) = s.split();
    let writer = R::spawn(async move {
        write_pattern(&mut w, 3, 1 << 20).await.unwrap();
        w
    });
    read_pattern(&mut r, 3, 1 << 20).await.unwrap();
    s = r.reunite(writer.await).unwrap();
    s.close().await.unwrap();
}

/// The value of the sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_count_sessions_connections_and_bytes<R: Runtime>() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let srv = start_server::<R>(ServerConfig {
        metrics: Some(metrics.clone()),
        ..ServerConfig::default()
    })
    .await;
    let client = run_client::<R>(&srv.url, "foo", Config::default());
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let echo = echo_server::<R>().await;
    const LEN: u64 = 100_000;
    let mut s = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    write_pattern(&mut s, 1, LEN).await.unwrap();
    read_pattern(&mut s, 1, LEN).await.unwrap();
    srv.server.refresh_metrics();
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let label = r#"{clientkey="foo",peer="false"}"#;
    assert_eq!(
        sample(
            &text,
            &format!("session_server_total_add_websocket_session_total{label}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "session_server_sessions "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "session_server_connections "),
        Some(1.0),
        "{text}"
    );
    let bytes = |name: &str| {
        sample(
            &text,
            &format!(r#"session_server_{name}_total{{clientkey="foo"}}"#),
        )
        .unwrap()
    };
    assert_eq!(bytes("total_transmit_bytes"), LEN as f64, "{text}");
    assert_eq!(bytes("total_receive_bytes"), LEN as f64, "{text}");
    drop(s);
    drop(client);
    wait_for("the session to end", || !srv.server.has_session("foo")).await;
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert_eq!(
        sample(
            &text,
            &format!("session_server_total_remove_websocket_session_total{label}")
        ),
        Some(1.0),
        "{text}"
    );
}

/// A minimal HTTP CONNECT proxy: answers `status`, and on 200 pipes bytes.
/// Records each request head.
async fn connect_proxy<R: Runtime>(status: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    R::spawner().spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            R::spawner().spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tcp.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap().to_owned();
                seen.lock().unwrap().push(head);
                let answer = format!("HTTP/1.1 {status}\r\n\r\n");
                tcp.write_all(answer.as_bytes()).await.unwrap();
                if !status.starts_with("200") {
                    return;
                }
                let upstream = TcpStream::connect(target.as_str()).await.unwrap();
                let (a, b) = (tcp.clone(), upstream.clone());
                R::spawner().spawn(async move {
                    let mut b = b;
                    let _ = futures_util::io::copy(a, &mut b).await;
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
                let mut tcp = tcp;
                let _ = futures_util::io::copy(upstream, &mut tcp).await;
                let _ = tcp.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, heads)
}

async fn connect_via_an_http_proxy<R: Runtime>() {
    let echo = echo_server::<R>().await;
    let (proxy_addr, heads) = connect_proxy::<R>("200 Connection established").await;
    let proxy_url = format!("http://user:pass@{proxy_addr}").parse().unwrap();
    let mut tcp = proxy::connect_via(&proxy_url, "127.0.0.1", echo.port())
        .await
        .unwrap();
    tcp.write_all(b"through").await.unwrap();
    let mut back = [0u8; 7];
    within(
        "the echo",
        Duration::from_secs(10),
        tcp.read_exact(&mut back),
    )
    .await
    .unwrap();
    assert_eq!(&back, b"through");
    let head = heads.lock().unwrap()[0].clone();
    assert!(
        head.starts_with(&format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n", echo.port())),
        "{head}"
    );
    assert!(
        head.contains("Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"),
        "{head}"
    );
    // A proxy that refuses: the error carries its status line.
    let (refusing, _) = connect_proxy::<R>("407 Proxy Authentication Required").await;
    let url = format!("http://{refusing}").parse().unwrap();
    let err = proxy::connect_via(&url, "127.0.0.1", echo.port())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("407"), "{err}");
    // A whole agent session through the proxy, to a TLS server.
    let (cert, key) = test_certificate();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::new(R::spawner(), tunnel_id_authorizer);
    let tls_config = tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap();
    let s = server.clone();
    R::spawner().spawn(async move {
        s.serve_tls(listener, tls_config).await.unwrap();
    });
    let agent = run_built::<R>(
        builder::<R>(
            &format!("wss://localhost:{port}/connect"),
            "foo",
            Config::default(),
        )
        .tls_roots(TlsRoots::CustomCa(cert.into_bytes()))
        .proxy(proxy_url),
    );
    agent.wait_sessions(1).await;
    wait_for("server session", || server.has_session("foo")).await;
    let mut s = server.dial("foo", "tcp", &echo.to_string()).await.unwrap();
    s.write_all(b"via proxy").await.unwrap();
    let mut back = [0u8; 9];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"via proxy");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2);
    assert!(
        heads[1].starts_with(&format!("CONNECT localhost:{port} HTTP/1.1\r\n")),
        "{}",
        heads[1]
    );
}
