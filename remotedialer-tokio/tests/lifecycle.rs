//! Connection and session lifecycles: many short connections leave nothing
//! behind, sessions come and go in the server's registry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::time::Duration;

use common::*;
use remotedialer_tokio::ServerConfig;
use remotedialer_tokio::proto::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_open_close_cycles_leave_nothing_behind() {
    const CYCLES: usize = 10_000;
    const WORKERS: usize = 16;
    let (srv, client) = connected_pair().await;
    let (target, mut ends) = reporting_server().await;
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let server = srv.server.clone();
        workers.push(tokio::spawn(async move {
            for i in (w..CYCLES).step_by(WORKERS) {
                let mut s = server
                    .dial("foo", "tcp", &target.to_string())
                    .await
                    .unwrap();
                let byte = [(i % 251) as u8];
                s.write_all(&byte).await.unwrap();
                let mut back = [0u8; 1];
                s.read_exact(&mut back).await.unwrap();
                assert_eq!(back, byte);
                // Every way a stream can end.
                match i % 3 {
                    0 => drop(s),
                    1 => {
                        s.shutdown().await.unwrap();
                        drop(s);
                    }
                    _ => s.reset("done"),
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    // Every target connection was closed by the agent...
    let mut read = 0;
    for _ in 0..CYCLES {
        let end = within("target close", Duration::from_secs(10), ends.recv())
            .await
            .unwrap();
        read += end.read;
    }
    assert_eq!(read, CYCLES as u64);
    // ...and neither core holds a connection or a byte.
    let handle = client.session().unwrap();
    wait_for("both cores to be empty", || {
        let (c, s) = (handle.stats(), srv.server.session_stats("foo").unwrap());
        c.connections == 0 && s.connections == 0
    })
    .await;
    let (c, s) = (handle.stats(), srv.server.session_stats("foo").unwrap());
    assert_eq!((c.buffered_receive, c.buffered_send), (0, 0));
    assert_eq!((s.buffered_receive, s.buffered_send), (0, 0));
    assert_eq!(client.sessions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_come_and_go_in_the_registry() {
    let mut registry = prometheus_client::registry::Registry::default();
    let srv = start_server(ServerConfig {
        metrics: Some(remotedialer_tokio::Metrics::register(&mut registry)),
        ..ServerConfig::default()
    })
    .await;
    assert!(srv.server.list_clients().is_empty());
    let echo = echo_server().await;
    let a = run_client(&srv.url, "a", Config::default());
    let b = run_client(&srv.url, "b", Config::default());
    a.wait_sessions(1).await;
    b.wait_sessions(1).await;
    wait_for("both sessions", || srv.server.list_clients() == ["a", "b"]).await;
    assert!(
        srv.server
            .dial("c", "tcp", &echo.to_string())
            .await
            .is_err()
    );
    // Two agents with one key: a dial uses the first; when it goes, the
    // second takes over.
    let a2 = run_client(&srv.url, "a", Config::default());
    a2.wait_sessions(1).await;
    // The upgrade is answered before the server registers the session, so
    // wait for the server's own count of a's sessions.
    wait_for("a's second session", || {
        sample(
            &encoded(&registry),
            "session_server_total_add_websocket_session_total",
            r#"clientkey="a",peer="false""#,
        ) == Some(2.0)
    })
    .await;
    let mut s = srv
        .server
        .dial("a", "tcp", &echo.to_string())
        .await
        .unwrap();
    s.write_all(b"1").await.unwrap();
    s.read_exact(&mut [0u8; 1]).await.unwrap();
    assert_eq!(a.session().unwrap().stats().connections, 1);
    assert_eq!(a2.session().unwrap().stats().connections, 0);
    drop(s);
    a.client.cancel();
    wait_for("a's first session to end", || {
        a.session().unwrap().is_closed()
    })
    .await;
    wait_until("dials to go through the second agent", || async {
        match srv.server.dial("a", "tcp", &echo.to_string()).await {
            Ok(mut s) => {
                s.write_all(b"2").await.unwrap();
                let mut back = [0u8; 1];
                s.read_exact(&mut back).await.is_ok()
                    && a2.session().unwrap().stats().connections == 1
            }
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(srv.server.list_clients(), ["a", "b"]);
    a2.client.cancel();
    b.client.cancel();
    wait_for("no sessions", || srv.server.list_clients().is_empty()).await;
}

#[tokio::test]
async fn cancel_and_shutdown_stick_before_anything_runs() {
    // A cancel with no `run` in progress used to be dropped (a tokio watch
    // `send` with no receiver), so a later `run` went on for ever.
    let srv = start_server(fast_server_config()).await;
    let c = client(&srv.url, "early", fast_config());
    c.cancel();
    assert!(c.is_cancelled());
    within("run after cancel", Duration::from_secs(5), c.run()).await;
    assert!(!srv.server.has_session("early"));

    // The same for a server shut down before `serve` starts.
    let server = srv.server.clone();
    within("shutdown", Duration::from_secs(10), server.shutdown()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    within(
        "serve after shutdown",
        Duration::from_secs(5),
        server.serve(listener),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn cancel_during_the_handshake_ends_connect_once() {
    // A server that accepts and never answers the upgrade request.
    let silent = stuck_server().await;
    let c = client(&format!("ws://{silent}/connect"), "slow", fast_config());
    let connecting = tokio::spawn({
        let c = c.clone();
        async move { c.connect_once().await }
    });
    tokio::task::yield_now().await;
    c.cancel();
    // The handshake timeout is 10 s; a cancel must not wait for it.
    let result = within(
        "connect_once after cancel",
        Duration::from_secs(3),
        connecting,
    )
    .await;
    assert!(result.unwrap().is_ok());
}
