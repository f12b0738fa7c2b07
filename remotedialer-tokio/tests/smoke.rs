#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use remotedialer_tokio::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_through_tunnel() {
    let srv = start_server(ServerConfig::default()).await;
    let client = client(&srv.url, "foo", fast_config());
    let c = client.clone();
    tokio::spawn(async move { c.run().await });
    wait_for("session", || srv.server.has_session("foo")).await;
    let echo = echo_server().await;
    let mut stream = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 253) as u8).collect();
    let (mut r, mut w) = tokio::io::split(stream);
    let expect = big.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&big).await.unwrap();
        w
    });
    let mut got = vec![0u8; expect.len()];
    r.read_exact(&mut got).await.unwrap();
    assert!(got == expect);
    let _w = writer.await.unwrap();
    client.cancel();
}
