//! Prometheus metrics with Go's names, read back from the text encoding
//! after real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::*;
use prometheus_client::registry::Registry;
use remotedialer_tokio::proto::Config;
use remotedialer_tokio::{Metrics, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_shows_up_under_gos_names() {
    const STREAMS: usize = 3;
    const BYTES: u64 = 100_000;
    let mut server_registry = Registry::default();
    let srv = start_server(ServerConfig {
        metrics: Some(Metrics::register(&mut server_registry)),
        ..ServerConfig::default()
    })
    .await;
    let mut client_registry = Registry::default();
    let client_metrics = Metrics::register(&mut client_registry);
    let client = run_client_with(&srv.url, "foo", Config::default(), |b| {
        b.metrics(client_metrics)
    });
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let echo = echo_server().await;
    let addr = echo.to_string();
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let mut s = srv.server.dial("foo", "tcp", &addr).await.unwrap();
        write_pattern(&mut s, i, BYTES).await.unwrap();
        read_pattern(&mut s, i, BYTES).await.unwrap();
        streams.push(s);
    }
    // A write on a connection whose dial failed is counted as failed.
    let closed = closed_port().await;
    let mut failed = srv
        .server
        .dial("foo", "tcp", &closed.to_string())
        .await
        .unwrap();
    assert!(failed.read(&mut [0u8; 1]).await.is_err());
    assert!(failed.write_all(b"lost!").await.is_err());
    drop(failed);
    srv.server.refresh_metrics();
    let text = encoded(&server_registry);
    let key = r#"clientkey="foo""#;
    let conn = format!(r#"clientkey="foo",proto="tcp",addr="{addr}""#);
    let total = (STREAMS as u64 * BYTES) as f64;
    let expect = [
        ("session_server_total_transmit_bytes_total", key, total),
        ("session_server_total_receive_bytes_total", key, total),
        (
            "session_server_total_add_websocket_session_total",
            r#"clientkey="foo",peer="false""#,
            1.0,
        ),
        (
            "session_server_total_add_connections_total",
            conn.as_str(),
            STREAMS as f64,
        ),
        ("session_server_total_transmit_error_bytes_total", key, 5.0),
        ("session_server_sessions", "", 1.0),
        ("session_server_connections", "", STREAMS as f64),
    ];
    for (name, labels, value) in expect {
        assert_eq!(sample(&text, name, labels), Some(value), "{name}\n{text}");
    }
    assert_eq!(
        sample(&text, "session_server_paused_connections", ""),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "session_server_buffered_bytes", ""),
        Some(0.0)
    );
    // The agent counts the same bytes the other way round.
    let client_text = encoded(&client_registry);
    for name in [
        "session_server_total_transmit_bytes_total",
        "session_server_total_receive_bytes_total",
    ] {
        assert_eq!(
            sample(&client_text, name, key),
            Some(total),
            "{client_text}"
        );
    }
    // Connections and the session going away are counted too.
    drop(streams);
    client.client.cancel();
    wait_for("the session to end", || !srv.server.has_session("foo")).await;
    srv.server.refresh_metrics();
    let text = encoded(&server_registry);
    assert_eq!(
        sample(
            &text,
            "session_server_total_remove_connections_total",
            &conn
        ),
        Some(STREAMS as f64)
    );
    assert_eq!(
        sample(
            &text,
            "session_server_total_remove_websocket_session_total",
            r#"clientkey="foo",peer="false""#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "session_server_sessions", ""), Some(0.0));
    assert_eq!(sample(&text, "session_server_connections", ""), Some(0.0));
}
