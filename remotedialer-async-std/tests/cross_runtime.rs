//! The two adapters against each other over real WebSockets: an async-std
//! agent joins a tokio server, and a tokio agent joins an async-std server.
//! The tokio side runs on its own runtime's threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::io;
use std::time::Duration;

use common::*;
use futures_util::{AsyncReadExt, AsyncWriteExt};
use remotedialer_async_std::proto::Config;
use remotedialer_async_std::{ClientError, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn tokio_authorizer(req: &http::request::Parts) -> remotedialer_tokio::Authorization {
    match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
        Some("broken") => remotedialer_tokio::Authorization::Error("token expired".into()),
        Some(id) if id != "denied" => remotedialer_tokio::Authorization::Allow(id.to_owned()),
        _ => remotedialer_tokio::Authorization::Deny,
    }
}

fn async_std_authorizer(req: &http::request::Parts) -> remotedialer_async_std::Authorization {
    match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
        Some("broken") => remotedialer_async_std::Authorization::Error("token expired".into()),
        Some(id) if id != "denied" => remotedialer_async_std::Authorization::Allow(id.to_owned()),
        _ => remotedialer_async_std::Authorization::Deny,
    }
}

/// Writes `len` pattern bytes and reads them back through a tokio stream.
async fn tokio_echo(stream: remotedialer_tokio::TunnelStream, seed: u64, len: u64) {
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..len).map(|i| pattern_byte(seed, i)).collect();
        w.write_all(&data).await.unwrap();
        w
    });
    let mut got = vec![0u8; len as usize];
    r.read_exact(&mut got).await.unwrap();
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(seed, i as u64))
    );
    let _w = writer.await.unwrap();
}

#[test]
fn async_std_agent_with_a_tokio_server() {
    let rt = tokio_runtime();
    let (server, addr) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = remotedialer_tokio::Server::new(tokio_authorizer);
        let s = server.clone();
        tokio::spawn(async move { s.serve(listener).await });
        (server, addr)
    });
    run::<AsyncStd>(async {
        let url = format!("ws://{addr}/connect");
        // Refusals read the same from either server.
        for (id, status, body) in [
            ("denied", 401, "failed authentication"),
            ("broken", 400, "token expired"),
        ] {
            match client::<AsyncStd>(&url, id, Config::default())
                .connect_once()
                .await
            {
                Err(ClientError::Refused { status: s, body: b }) => {
                    assert_eq!((s, b.as_str()), (status, body));
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        let agent = run_client::<AsyncStd>(&url, "foo", fast_config());
        agent.wait_sessions(1).await;
        wait_for("tokio server session", || server.has_session("foo")).await;
        // The agent's targets are async-net sockets.
        let echo = echo_server::<AsyncStd>().await;
        let closed = closed_port().await;
        let dialing = server.clone();
        let checks = rt.spawn(async move {
            for (seed, len) in [(1u64, 1u64), (2, 100_000), (3, 3 << 20)] {
                let s = dialing.dial("foo", "tcp", &echo.to_string()).await.unwrap();
                tokio_echo(s, seed, len).await;
            }
            let mut refused = dialing
                .dial("foo", "tcp", &closed.to_string())
                .await
                .unwrap();
            let err = refused.read(&mut [0u8; 1]).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("dial tcp {closed}: connect: connection refused")
            );
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
            let handles: Vec<_> = (0..16u64)
                .map(|i| {
                    let server = dialing.clone();
                    tokio::spawn(async move {
                        let s = server.dial("foo", "tcp", &echo.to_string()).await.unwrap();
                        tokio_echo(s, 100 + i, 50_000 + i * 3000).await;
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
        within("the tokio side", Duration::from_secs(60), checks)
            .await
            .unwrap();
        let handle = agent.session().unwrap();
        wait_for("agent connections released", || {
            handle.stats().connections == 0
        })
        .await;
        agent.client.cancel();
        wait_for("the tokio server to see the end", || {
            !server.has_session("foo")
        })
        .await;
    });
}

#[test]
fn tokio_agent_with_an_async_std_server() {
    let rt = tokio_runtime();
    run::<AsyncStd>(async {
        let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let srv = serve_on::<AsyncStd>(listener, async_std_authorizer, ServerConfig::default());
        let url = srv.url.clone();
        // Refusals read the same from either server.
        let refusals = rt.spawn({
            let url = url.clone();
            async move {
                let mut seen = Vec::new();
                for id in ["denied", "broken"] {
                    let c = remotedialer_tokio::ClientBuilder::new(&url)
                        .header("X-Tunnel-ID", id)
                        .connect_authorizer(|_, _| true)
                        .proxy_from_env(false)
                        .build()
                        .unwrap();
                    match c.connect_once().await {
                        Err(remotedialer_tokio::ClientError::Refused { status, body }) => {
                            seen.push((status, body));
                        }
                        other => panic!("expected a refusal, got {other:?}"),
                    }
                }
                seen
            }
        });
        assert_eq!(
            refusals.await.unwrap(),
            [
                (401, "failed authentication".to_owned()),
                (400, "token expired".to_owned())
            ]
        );
        // A tokio agent whose targets are tokio sockets.
        let agent = remotedialer_tokio::ClientBuilder::new(&url)
            .header("X-Tunnel-ID", "foo")
            .connect_authorizer(|proto, _| proto == "tcp")
            .proxy_from_env(false)
            .build()
            .unwrap();
        let running = agent.clone();
        let agent_task = rt.spawn(async move { running.run().await });
        wait_for("server session", || srv.server.has_session("foo")).await;
        let echo = echo_server::<AsyncStd>().await;
        for (seed, len) in [(1u64, 1u64), (2, 100_000), (3, 3 << 20)] {
            let s = srv
                .server
                .dial("foo", "tcp", &echo.to_string())
                .await
                .unwrap();
            let (mut r, mut w) = s.split();
            let writer = AsyncStd::spawn(async move {
                write_pattern(&mut w, seed, len).await.unwrap();
                w
            });
            read_pattern(&mut r, seed, len).await.unwrap();
            let _w = writer.await;
        }
        let closed = closed_port().await;
        let mut refused = srv
            .server
            .dial("foo", "tcp", &closed.to_string())
            .await
            .unwrap();
        let err = refused.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("dial tcp {closed}: connect: connection refused")
        );
        drop(refused);
        let mut tasks = Vec::new();
        for i in 0..16u64 {
            let server = srv.server.clone();
            tasks.push(AsyncStd::spawn(async move {
                let mut s = server.dial("foo", "tcp", &echo.to_string()).await.unwrap();
                let len = 50_000 + i * 3000;
                let (mut r, mut w) = s.split();
                let writer = AsyncStd::spawn(async move {
                    write_pattern(&mut w, 100 + i, len).await.unwrap();
                    w
                });
                read_pattern(&mut r, 100 + i, len).await.unwrap();
                s = r.reunite(writer.await).unwrap();
                s.close().await.unwrap();
            }));
        }
        for t in tasks {
            t.await;
        }
        wait_for("server connections released", || {
            srv.server.session_stats("foo").unwrap().connections == 0
        })
        .await;
        agent.cancel();
        within(
            "the tokio agent to stop",
            Duration::from_secs(10),
            agent_task,
        )
        .await
        .unwrap();
        wait_for("the server to see the end", || {
            !srv.server.has_session("foo")
        })
        .await;
    });
}
