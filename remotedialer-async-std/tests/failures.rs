//! Things going wrong, under async-std and under smol: failed and refused
//! dials, refused upgrades, a WebSocket torn down mid-transfer, server
//! shutdown, cancel, and reconnecting with backoff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use common::*;
use futures_util::{AsyncReadExt, AsyncWriteExt};
use remotedialer_async_std::proto::Config;
use remotedialer_async_std::{
    Authorization, ClientError, DialError, PEER_ID_HEADER, PEER_TOKEN_HEADER, ServerConfig,
    TunnelStream,
};

scenarios!(
    dial_to_a_closed_port_reads_gos_dial_error,
    a_refused_connect_fails_only_that_stream,
    refused_upgrades_report_status_and_body,
    peers_need_their_token,
    a_torn_down_websocket_fails_every_stream_and_the_agent_comes_back,
    server_shutdown_fails_streams_and_ends_sessions,
    server_shutdown_delivers_bytes_already_written,
    cancel_ends_the_session_and_run,
    run_backs_off_and_retries_until_authorized,
);

/// One byte through an echo target and back.
async fn ping_echo(stream: &mut TunnelStream) {
    stream.write_all(b"?").await.unwrap();
    let mut b = [0u8; 1];
    stream.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"?");
}

async fn dial_to_a_closed_port_reads_gos_dial_error<R: Runtime>() {
    let (srv, client) = connected_pair::<R>().await;
    let closed = closed_port().await;
    let mut stream = srv
        .server
        .dial("foo", "tcp", &closed.to_string())
        .await
        .unwrap();
    let err = stream.read(&mut [0u8; 16]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("dial tcp {closed}: connect: connection refused")
    );
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    // Writing to it fails too, and the session is unharmed.
    assert!(stream.write_all(b"x").await.is_err());
    let echo = echo_server::<R>().await;
    let mut ok = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    ping_echo(&mut ok).await;
    assert_eq!(client.sessions(), 1);
    assert_eq!(
        srv.server
            .dial("bar", "tcp", &echo.to_string())
            .await
            .unwrap_err(),
        DialError::NoSession("bar".into())
    );
}

async fn a_refused_connect_fails_only_that_stream<R: Runtime>() {
    let srv = start_server::<R>(ServerConfig::default()).await;
    let echo = echo_server::<R>().await;
    let allowed = echo.to_string();
    let client = run_built::<R>(
        builder::<R>(&srv.url, "foo", Config::default())
            .connect_authorizer(move |proto, address| proto == "tcp" && address == allowed),
    );
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let mut before = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    ping_echo(&mut before).await;
    let other = echo_server::<R>().await;
    for (proto, address) in [("tcp", other.to_string()), ("unix", "/tmp/x".into())] {
        let mut refused = srv.server.dial("foo", proto, &address).await.unwrap();
        let err = refused.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(err.to_string(), "connect not allowed");
    }
    ping_echo(&mut before).await;
    let mut after = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    ping_echo(&mut after).await;
    assert_eq!(client.sessions(), 1);
}

/// Sends a raw HTTP request and returns the whole answer.
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(
        "the answer",
        Duration::from_secs(10),
        tcp.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn refused_upgrades_report_status_and_body<R: Runtime>() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = serve_on::<R>(
        listener,
        |req: &http::request::Parts| match req.headers.get("X-Tunnel-ID") {
            Some(v) if v == "broken" => Authorization::Error("token expired".into()),
            _ => Authorization::Deny,
        },
        ServerConfig::default(),
    );
    for (id, status, body) in [
        ("foo", 401, "failed authentication"),
        ("broken", 400, "token expired"),
    ] {
        match client::<R>(&srv.url, id, Config::default())
            .connect_once()
            .await
        {
            Err(ClientError::Refused { status: s, body: b }) => {
                assert_eq!((s, b.as_str()), (status, body));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // A plain HTTP request is not an upgrade: Gorilla's 400 text.
    let answer = raw_http(
        srv.addr,
        "GET /connect HTTP/1.1\r\nHost: x\r\nX-Tunnel-ID: foo\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\nwebsocket: the client is not using the websocket protocol"),
        "{answer}"
    );
    // Not HTTP at all: the connection is closed, the server keeps serving.
    let garbage = raw_http(srv.addr, "\u{16}\u{3}\u{1}\u{0}garbage\r\n\r\n").await;
    assert!(!garbage.contains("101"), "{garbage}");
    match client::<R>(&srv.url, "foo", Config::default())
        .connect_once()
        .await
    {
        Err(ClientError::Refused { status: 401, .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn peers_need_their_token<R: Runtime>() {
    let srv = start_server::<R>(ServerConfig::default()).await;
    srv.server.allow_peer("peer1", "secret");
    let peer = |id: &str, token: &str| {
        builder::<R>(&srv.url, "ignored", Config::default())
            .header(PEER_ID_HEADER, id)
            .header(PEER_TOKEN_HEADER, token)
            .build()
            .unwrap()
    };
    for (id, token) in [("peer1", "wrong"), ("peer2", "secret")] {
        match peer(id, token).connect_once().await {
            Err(ClientError::Refused { status: 401, body }) => {
                assert_eq!(body, "failed authentication");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // The right token opens a peer session: not a client of this server,
    // but a route to the clients it announces.
    let echo = echo_server::<R>().await.to_string();
    assert_eq!(
        srv.server.dial("agent", "tcp", &echo).await.unwrap_err(),
        DialError::NoSession("agent".into())
    );
    let link = run_built::<R>(
        builder::<R>(&srv.url, "ignored", Config::default())
            .header(PEER_ID_HEADER, "peer1")
            .header(PEER_TOKEN_HEADER, "secret"),
    );
    let handle = link.wait_sessions(1).await;
    handle.announce_client("agent", 7, true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut through_peer = loop {
        match srv.server.dial("agent", "tcp", &echo).await {
            Ok(stream) => break stream,
            Err(DialError::NoSession(_)) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the announced route never appeared"
                );
                async_io::Timer::after(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(srv.server.list_clients().is_empty());
    // The far end receives `agent::tcp`, which its authorizer refuses.
    let err = through_peer.read(&mut [0u8; 1]).await.unwrap_err();
    assert_eq!(err.to_string(), "connect not allowed");
    handle.announce_client("agent", 7, false).unwrap();
    wait_for("the route to go", || {
        matches!(
            futures_util::FutureExt::now_or_never(srv.server.dial("agent", "tcp", &echo)),
            Some(Err(DialError::NoSession(_)))
        )
    })
    .await;
}

#[derive(Clone, Copy)]
enum Traffic {
    Download,
    Upload,
    Idle,
}

/// Moves bytes (or waits, for `Idle`) until the stream fails; returns the
/// error. Counts itself in `flowing` once bytes moved.
async fn until_error(
    stream: TunnelStream,
    traffic: Traffic,
    flowing: Arc<AtomicUsize>,
) -> io::Error {
    let (mut r, mut w) = stream.split();
    let mut buf = vec![0u8; 64 << 10];
    let mut counted = false;
    loop {
        let step = match traffic {
            Traffic::Upload => w.write_all(&buf[..16 << 10]).await.map(|_| 1),
            Traffic::Download => r.read(&mut buf).await,
            Traffic::Idle => {
                if !counted {
                    counted = true;
                    flowing.fetch_add(1, Ordering::SeqCst);
                }
                r.read(&mut buf).await
            }
        };
        match step {
            Ok(0) => return io::Error::other("unexpected EOF"),
            Ok(_) if !counted => {
                counted = true;
                flowing.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}

async fn a_torn_down_websocket_fails_every_stream_and_the_agent_comes_back<R: Runtime>() {
    let srv = start_server::<R>(ServerConfig::default()).await;
    let proxy = TcpProxy::start::<R>(srv.addr).await;
    let proxy_addr = proxy.addr;
    let client = run_client::<R>(&format!("ws://{proxy_addr}/connect"), "foo", fast_config());
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let source = pattern_server::<R>(1 << 40).await;
    let (sink, sink_ends) = reporting_server::<R>().await;
    let idle = echo_server::<R>().await;
    let flowing = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (target, traffic) in [
        (source, Traffic::Download),
        (sink, Traffic::Upload),
        (idle, Traffic::Idle),
    ] {
        for _ in 0..3 {
            let stream = srv
                .server
                .dial("foo", "tcp", &target.to_string())
                .await
                .unwrap();
            tasks.push(R::spawn(until_error(stream, traffic, flowing.clone())));
        }
    }
    wait_for("bytes to flow on every stream", || {
        flowing.load(Ordering::SeqCst) == 9
    })
    .await;
    proxy.kill();
    // A dropped WebSocket fails every stream promptly (the bound is for a
    // loaded machine, not a performance check).
    let failed = within("every stream to fail", Duration::from_secs(10), async {
        let mut errors = Vec::new();
        for t in tasks {
            errors.push(t.await);
        }
        errors
    })
    .await;
    for e in failed {
        assert!(
            e.to_string().starts_with("tunnel disconnect"),
            "unexpected error: {e}"
        );
    }
    // The agent's side ends too: its targets are closed.
    for _ in 0..3 {
        within(
            "sink target closed",
            Duration::from_secs(10),
            sink_ends.recv(),
        )
        .await
        .unwrap();
    }
    wait_for("the agent's session to end", || {
        client.session().unwrap().is_closed()
    })
    .await;
    wait_for("server forgets the session", || {
        !srv.server.has_session("foo")
    })
    .await;
    // The same address comes back: the agent reconnects on its own.
    let _proxy = TcpProxy::start_on::<R>(rebind(proxy_addr).await, srv.addr);
    client.wait_sessions(2).await;
    wait_for("server session again", || srv.server.has_session("foo")).await;
    let mut s = srv
        .server
        .dial("foo", "tcp", &idle.to_string())
        .await
        .unwrap();
    ping_echo(&mut s).await;
}

async fn server_shutdown_fails_streams_and_ends_sessions<R: Runtime>() {
    let (srv, client) = connected_pair::<R>().await;
    let (target, ends) = reporting_server::<R>().await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = srv
            .server
            .dial("foo", "tcp", &target.to_string())
            .await
            .unwrap();
        s.write_all(b"0123456789").await.unwrap();
        let mut back = [0u8; 10];
        s.read_exact(&mut back).await.unwrap();
        streams.push(s);
    }
    // One reader is parked on a read when the shutdown comes.
    let mut parked = streams.pop().unwrap();
    let reader = R::spawn(async move { parked.read(&mut [0u8; 16]).await });
    within("shutdown", Duration::from_secs(10), srv.server.shutdown()).await;
    let err = within("the parked read", Duration::from_secs(5), reader)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tunnel disconnect"), "{err}");
    for mut s in streams {
        assert!(s.read(&mut [0u8; 16]).await.is_err());
        assert!(s.write_all(b"more").await.is_err());
    }
    for _ in 0..3 {
        let end = within("target EOF", Duration::from_secs(10), ends.recv())
            .await
            .unwrap();
        end.result.unwrap();
        assert_eq!(end.read, 10);
    }
    assert!(!srv.server.has_session("foo"));
    assert_eq!(
        srv.server
            .dial("foo", "tcp", &target.to_string())
            .await
            .unwrap_err(),
        DialError::ShuttingDown
    );
    let handle = client.session().unwrap();
    wait_for("the agent to see the end", || handle.is_closed()).await;
}

async fn server_shutdown_delivers_bytes_already_written<R: Runtime>() {
    let (srv, _client) = connected_pair::<R>().await;
    // A target that only counts what it reads.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let counted = R::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0usize;
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let mut stream = srv
        .server
        .dial("foo", "tcp", &target.to_string())
        .await
        .unwrap();
    let data = vec![7u8; 4 << 20];
    // Returns once the core took the last byte, before it all went out.
    stream.write_all(&data).await.unwrap();
    within("shutdown", Duration::from_secs(10), srv.server.shutdown()).await;
    let total = within("target EOF", Duration::from_secs(10), counted).await;
    assert_eq!(total, data.len(), "every accepted byte arrived");
}

async fn cancel_ends_the_session_and_run<R: Runtime>() {
    let srv = start_server::<R>(ServerConfig::default()).await;
    let c = client::<R>(&srv.url, "foo", Config::default());
    let running = c.clone();
    let task = R::spawn(async move { running.run().await });
    wait_for("server session", || srv.server.has_session("foo")).await;
    c.cancel();
    assert!(c.is_cancelled());
    within("run to return", Duration::from_secs(10), task).await;
    wait_for("server forgets the session", || {
        !srv.server.has_session("foo")
    })
    .await;
    // A cancelled client does not connect again.
    assert!(c.connect_once().await.is_ok());
    assert!(!srv.server.has_session("foo"));
}

async fn run_backs_off_and_retries_until_authorized<R: Runtime>() {
    const DENIALS: usize = 3;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = serve_on::<R>(
        listener,
        move |req: &http::request::Parts| {
            if counted.fetch_add(1, Ordering::SeqCst) < DENIALS {
                Authorization::Deny
            } else {
                tunnel_id_authorizer(req)
            }
        },
        ServerConfig::default(),
    );
    let client = run_client::<R>(&srv.url, "foo", Config::default());
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    assert_eq!(attempts.load(Ordering::SeqCst), DENIALS + 1);
    let echo = echo_server::<R>().await;
    let mut s = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    ping_echo(&mut s).await;
}
