//! Keepalive with shortened intervals: idle sessions live on, silent peers
//! are declared dead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use remotedialer_tokio::proto::{Config, SessionError};
use remotedialer_tokio::{ClientError, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

/// Pings every 50 ms, dead after 1 s of silence: a peer that answers at all
/// is never close to the deadline, even on a loaded machine.
fn keepalive_config() -> Config {
    Config {
        ping_interval: Duration::from_millis(50),
        keepalive_timeout: Duration::from_secs(1),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_outlives_several_keepalive_periods() {
    let srv = start_server(ServerConfig {
        session: keepalive_config(),
        ..ServerConfig::default()
    })
    .await;
    let client = run_client(&srv.url, "foo", keepalive_config());
    let handle = client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    // Nothing but keepalive for four deadlines.
    tokio::time::sleep(4 * keepalive_config().keepalive_timeout).await;
    assert!(!handle.is_closed());
    assert_eq!(client.sessions(), 1, "the session was never replaced");
    assert!(srv.server.has_session("foo"));
    let echo = echo_server().await;
    let mut s = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    s.write_all(b"still here").await.unwrap();
    let mut back = [0u8; 10];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_pings_is_declared_dead() {
    // A raw WebSocket server: it answers pings while it reads (tungstenite
    // queues the pong on read and flushes it on the next read), then stops
    // reading, like a wedged process.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (pings_tx, pings_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut pings = 0;
        while pings < 5 {
            if let Message::Ping(_) = ws.next().await.unwrap().unwrap() {
                pings += 1;
            }
        }
        let _ = pings_tx.send(());
        // Hold the socket open, reading nothing.
        std::future::pending::<()>().await;
        drop(ws);
    });
    let client = client(&format!("ws://{addr}/connect"), "foo", keepalive_config());
    let result = within(
        "the agent to give up on the server",
        Duration::from_secs(20),
        client.connect_once(),
    )
    .await;
    // The server task got its five Pings before it fell silent (it only
    // sends once it has them).
    pings_rx.await.expect("5 pings flowed before the silence");
    match result {
        Err(ClientError::Session(SessionError::KeepaliveTimeout(silent))) => {
            assert!(silent >= keepalive_config().keepalive_timeout);
        }
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_drops_an_agent_that_never_pings() {
    let srv = start_server(ServerConfig {
        session: keepalive_config(),
        ..ServerConfig::default()
    })
    .await;
    let good = run_client(&srv.url, "good", keepalive_config());
    let good_session = good.wait_sessions(1).await;
    // A raw agent that completes the upgrade and then goes silent: no
    // pings, no reads.
    let mut req = srv.url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Tunnel-ID", http::HeaderValue::from_static("mute"));
    let (mute, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    wait_for("the mute session", || srv.server.has_session("mute")).await;
    wait_until("the server to drop the mute agent", || async {
        !srv.server.has_session("mute")
    })
    .await;
    drop(mute);
    assert!(srv.server.has_session("good"));
    assert!(!good_session.is_closed());
    assert_eq!(good.sessions(), 1);
}
