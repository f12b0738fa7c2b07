//! Bytes through the tunnel: echo, many parallel streams, bulk transfer, and
//! one paused connection never blocking another (Go's TestExceedBuffer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::time::Duration;

use common::*;
use rand::RngCore;
use remotedialer_tokio::ServerConfig;
use remotedialer_tokio::proto::Config;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trips_of_every_size() {
    let (srv, _client) = connected_pair().await;
    let echo = echo_server().await;
    let mut stream = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    assert_eq!(stream.proto(), "tcp");
    assert_eq!(stream.address(), echo.to_string());
    // Around the 32 KiB Data message size and well past one message.
    let mut seed = 0;
    for len in [
        1u64,
        2,
        100,
        32 << 10,
        (32 << 10) + 1,
        1 << 20,
        (3 << 20) + 7,
    ] {
        write_pattern(&mut stream, seed, len).await.unwrap();
        read_pattern(&mut stream, seed, len).await.unwrap();
        seed += 7919;
    }
    assert_eq!(stream.readable_len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_parallel_streams_keep_their_bytes_apart() {
    let (srv, client) = connected_pair().await;
    let echo = echo_server().await;
    let mut tasks = Vec::new();
    for i in 0..64usize {
        let server = srv.server.clone();
        tasks.push(tokio::spawn(async move {
            let mut payload = vec![0u8; 1 + (i * 7919) % (384 << 10)];
            rand::rng().fill_bytes(&mut payload);
            let sent = Sha256::digest(&payload);
            let stream = server.dial("foo", "tcp", &echo.to_string()).await.unwrap();
            let (mut r, mut w) = tokio::io::split(stream);
            let len = payload.len();
            let writer = tokio::spawn(async move {
                w.write_all(&payload).await.unwrap();
                w
            });
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 16 << 10];
            let mut got = 0;
            while got < len {
                let n = r.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "stream {i} ended after {got} of {len} bytes");
                hasher.update(&buf[..n]);
                got += n;
            }
            let _w = writer.await.unwrap();
            assert_eq!(got, len);
            assert_eq!(hasher.finalize(), sent, "stream {i} corrupted");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Every stream was dropped: both cores forget them.
    let handle = client.session().unwrap();
    wait_for("client connections released", || {
        handle.stats().connections == 0
    })
    .await;
    wait_for("server connections released", || {
        srv.server.session_stats("foo").unwrap().connections == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_256_mib_each_way() {
    const LEN: u64 = 256 << 20;
    let (srv, _client) = connected_pair().await;
    let echo = echo_server().await;
    let stream = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    let (mut r, mut w) = tokio::io::split(stream);
    let started = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        write_pattern(&mut w, 12345, LEN).await.unwrap();
        w
    });
    read_pattern(&mut r, 12345, LEN).await.unwrap();
    let _w = writer.await.unwrap();
    eprintln!(
        "256 MiB each way in {:?} (informational, not asserted)",
        started.elapsed()
    );
}

/// Bytes each target sends.
const LEN: u64 = 48 << 20;
/// Most a paused stream may hold: Pause at 256 KiB plus what was in flight
/// when it was sent (the sender's queue, tungstenite and loopback socket
/// buffers in both directions: up to about 14 MiB on a loaded machine). A
/// stream whose peer did not stop would hold all of `LEN`.
const HELD_AT_MOST: usize = 24 << 20;

/// Config with small flow-control thresholds, so a few MiB exercise Pause.
fn small_buffers() -> Config {
    Config {
        pause_threshold: 256 << 10,
        resume_threshold: 32 << 10,
        max_connection_send_buffer: 128 << 10,
        max_session_send_buffer: 1 << 20,
        ..Config::default()
    }
}

/// Go's TestExceedBuffer, agent to server: two responses through one
/// session, the first never read while the second is read completely; the
/// first is then read intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_stream_does_not_block_another_toward_the_server() {
    let srv = start_server(ServerConfig {
        session: small_buffers(),
        ..ServerConfig::default()
    })
    .await;
    let client = run_client(&srv.url, "foo", small_buffers());
    let handle = client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let source = pattern_server(LEN).await;
    let mut first = srv
        .server
        .dial("foo", "tcp", &source.to_string())
        .await
        .unwrap();
    // The first stream fills up to Pause and stays there.
    wait_for("the first stream to pause its peer", || {
        srv.server.session_stats("foo").unwrap().pausing_peer == 1
    })
    .await;
    let mut second = srv
        .server
        .dial("foo", "tcp", &source.to_string())
        .await
        .unwrap();
    let (mut max_server, mut max_client) = (0, 0);
    {
        let reading = read_pattern(&mut second, 0, LEN);
        tokio::pin!(reading);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tokio::select! {
                done = &mut reading => { done.unwrap(); break; }
                _ = tick.tick() => {
                    let s = srv.server.session_stats("foo").unwrap();
                    let c = handle.stats();
                    max_server = max_server.max(s.buffered_receive);
                    max_client = max_client.max(c.buffered_send);
                }
            }
        }
    }
    assert_eq!(
        second.read(&mut [0u8; 1]).await.unwrap(),
        0,
        "EOF after the data"
    );
    // The first stream was held at Pause all along: paused on both ends, and
    // memory stayed bounded by Pause, not by the bytes the targets sent.
    assert!(first.readable_len() > 256 << 10);
    assert!(
        first.readable_len() < HELD_AT_MOST,
        "{}",
        first.readable_len()
    );
    assert_eq!(handle.stats().paused_by_peer, 1);
    assert!(
        max_server < 2 * HELD_AT_MOST,
        "server buffered {max_server} bytes"
    );
    assert!(max_client <= 1 << 20, "client buffered {max_client} bytes");
    read_pattern(&mut first, 0, LEN).await.unwrap();
    assert_eq!(first.read(&mut [0u8; 1]).await.unwrap(), 0);
}

/// The same, server to agent: the first target never reads, so the server's
/// writer on it is paused, while a second stream's bytes all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_target_does_not_block_another_toward_the_agent() {
    let srv = start_server(ServerConfig {
        session: small_buffers(),
        ..ServerConfig::default()
    })
    .await;
    let client = run_client(&srv.url, "foo", small_buffers());
    let handle = client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let stuck = stuck_server().await;
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let received = tokio::spawn(async move {
        let (mut tcp, _) = sink.accept().await.unwrap();
        read_pattern(&mut tcp, 99, LEN).await.unwrap();
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.unwrap();
        rest.len()
    });
    let first = srv
        .server
        .dial("foo", "tcp", &stuck.to_string())
        .await
        .unwrap();
    let (first_r, mut first_w) = tokio::io::split(first);
    let stuck_writer = tokio::spawn(async move {
        // Blocks once the agent pauses it; never finishes (far more than
        // socket buffers can take).
        write_pattern(&mut first_w, 0, 16 * LEN).await
    });
    wait_for("the agent to pause the first stream", || {
        handle.stats().pausing_peer == 1
    })
    .await;
    let mut second = srv
        .server
        .dial("foo", "tcp", &sink_addr.to_string())
        .await
        .unwrap();
    write_pattern(&mut second, 99, LEN).await.unwrap();
    second.shutdown().await.unwrap();
    assert_eq!(received.await.unwrap(), 0, "nothing after the data");
    if stuck_writer.is_finished() {
        panic!("the paused writer ended: {:?}", stuck_writer.await);
    }
    let s = srv.server.session_stats("foo").unwrap();
    assert_eq!(s.paused_by_peer, 1);
    assert!(s.buffered_send <= 1 << 20);
    assert!(handle.stats().buffered_receive < HELD_AT_MOST);
    stuck_writer.abort();
    drop(first_r);
}
