//! Bytes through the tunnel, under async-std and under smol: echo, 64
//! parallel streams, one paused connection never blocking another, and
//! 10 000 open/close cycles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use common::*;
use futures_util::{AsyncReadExt, AsyncWriteExt};
use remotedialer_async_std::ServerConfig;
use remotedialer_async_std::proto::Config;
use sha2::{Digest, Sha256};

scenarios!(
    echo_round_trips_of_every_size,
    sixty_four_parallel_streams_keep_their_bytes_apart,
    unread_stream_does_not_block_another,
    ten_thousand_open_close_cycles,
);

async fn echo_round_trips_of_every_size<R: Runtime>() {
    let (srv, _client) = connected_pair::<R>().await;
    let echo = echo_server::<R>().await;
    let mut stream = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    assert_eq!(stream.proto(), "tcp");
    assert_eq!(stream.address(), echo.to_string());
    // Around the 32 KiB Data message size and well past one message. The
    // writer runs beside the reader: an echo that is not read back stalls
    // the writer by flow control, as it should.
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
        let (mut r, mut w) = stream.split();
        let writer = R::spawn(async move {
            write_pattern(&mut w, seed, len).await.unwrap();
            w
        });
        read_pattern(&mut r, seed, len).await.unwrap();
        stream = r.reunite(writer.await).unwrap();
        seed += 7919;
    }
    assert_eq!(stream.readable_len(), 0);
}

async fn sixty_four_parallel_streams_keep_their_bytes_apart<R: Runtime>() {
    let (srv, client) = connected_pair::<R>().await;
    let echo = echo_server::<R>().await;
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let server = srv.server.clone();
        tasks.push(R::spawn(async move {
            let len = 1 + (i * 7919) % (384 << 10);
            let mut payload = Vec::with_capacity(len as usize);
            payload.extend((0..len).map(|j| pattern_byte(i * 1_000_003, j)));
            let sent = Sha256::digest(&payload);
            let stream = server.dial("foo", "tcp", &echo.to_string()).await.unwrap();
            let (mut r, mut w) = stream.split();
            let writer = R::spawn(async move {
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
                got += n as u64;
            }
            let _w = writer.await;
            assert_eq!(got, len);
            assert_eq!(hasher.finalize(), sent, "stream {i} corrupted");
        }));
    }
    for t in tasks {
        t.await;
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

/// Bytes the target sends: more than [`CAP`], so a connection that did not
/// stop at Pause would be closed with an overflow error.
const LEN: u64 = 24 << 20;
/// The per-connection receive cap (the default).
const CAP: usize = 16 << 20;

/// Small flow-control thresholds, so a few MiB exercise Pause.
fn small_buffers() -> Config {
    Config {
        pause_threshold: 256 << 10,
        resume_threshold: 32 << 10,
        max_connection_receive_buffer: CAP,
        max_connection_send_buffer: 128 << 10,
        max_session_send_buffer: 1 << 20,
        ..Config::default()
    }
}

/// Go's TestExceedBuffer: two responses through one session, the first never
/// read while the second is read completely; the first is then read intact.
async fn unread_stream_does_not_block_another<R: Runtime>() {
    let srv = start_server::<R>(ServerConfig {
        session: small_buffers(),
        ..ServerConfig::default()
    })
    .await;
    let client = run_client::<R>(&srv.url, "foo", small_buffers());
    let handle = client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let source = pattern_server::<R>(LEN).await;
    let mut first = srv
        .server
        .dial("foo", "tcp", &source.to_string())
        .await
        .unwrap();
    wait_for("the first stream to pause its peer", || {
        srv.server.session_stats("foo").unwrap().pausing_peer == 1
    })
    .await;
    let mut second = srv
        .server
        .dial("foo", "tcp", &source.to_string())
        .await
        .unwrap();
    read_pattern(&mut second, 0, LEN).await.unwrap();
    assert_eq!(
        second.read(&mut [0u8; 1]).await.unwrap(),
        0,
        "EOF after the data"
    );
    // The first stream was held at Pause all along, under the cap that
    // would have closed it.
    assert!(first.readable_len() >= 256 << 10);
    assert!(first.readable_len() < CAP);
    assert_eq!(handle.stats().paused_by_peer, 1);
    assert!(handle.stats().buffered_send <= 1 << 20);
    read_pattern(&mut first, 0, LEN).await.unwrap();
    assert_eq!(first.read(&mut [0u8; 1]).await.unwrap(), 0);
}

async fn ten_thousand_open_close_cycles<R: Runtime>() {
    const WORKERS: usize = 8;
    const CYCLES: usize = 10_000;
    let (srv, client) = connected_pair::<R>().await;
    let echo = echo_server::<R>().await.to_string();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let server = srv.server.clone();
        let echo = echo.clone();
        workers.push(R::spawn(async move {
            for i in 0..CYCLES / WORKERS {
                let byte = [(w * 31 + i) as u8];
                let mut s = server.dial("foo", "tcp", &echo).await.unwrap();
                s.write_all(&byte).await.unwrap();
                let mut back = [0u8; 1];
                s.read_exact(&mut back).await.unwrap();
                assert_eq!(back, byte, "worker {w} cycle {i}");
                s.close().await.unwrap();
            }
        }));
    }
    for w in workers {
        w.await;
    }
    // Nothing leaks: both cores hold no connection, and the session is the
    // one it started with.
    let handle = client.session().unwrap();
    wait_for("client connections released", || {
        handle.stats().connections == 0
    })
    .await;
    wait_for("server connections released", || {
        srv.server.session_stats("foo").unwrap().connections == 0
    })
    .await;
    assert_eq!(client.sessions(), 1);
    assert!(!handle.is_closed());
}
