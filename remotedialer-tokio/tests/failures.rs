//! Things going wrong: failed and refused dials, closing targets, server
//! shutdown, refused sessions, a WebSocket torn down mid-transfer, a server
//! restarted under a running client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use remotedialer_tokio::proto::Config;
use remotedialer_tokio::{
    Authorization, ClientBuilder, ClientError, DialError, ServerConfig, TunnelStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One byte through an echo target and back.
async fn ping_echo(stream: &mut TunnelStream) {
    stream.write_all(b"?").await.unwrap();
    let mut b = [0u8; 1];
    stream.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_to_a_closed_port_reads_gos_dial_error() {
    let (srv, client) = connected_pair().await;
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
    let echo = echo_server().await;
    let mut ok = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    ping_echo(&mut ok).await;
    assert_eq!(client.sessions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_target_is_eof_after_its_bytes() {
    let (srv, client) = connected_pair().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        write_pattern(&mut tcp, 5, 100_000).await.unwrap();
        // Dropped: FIN after the bytes.
    });
    let mut stream = srv
        .server
        .dial("foo", "tcp", &target.to_string())
        .await
        .unwrap();
    read_pattern(&mut stream, 5, 100_000).await.unwrap();
    assert_eq!(stream.read(&mut [0u8; 16]).await.unwrap(), 0);
    assert_eq!(stream.read(&mut [0u8; 16]).await.unwrap(), 0, "EOF repeats");
    drop(stream);
    let handle = client.session().unwrap();
    wait_for("both cores to release it", || {
        handle.stats().connections == 0 && srv.server.session_stats("foo").unwrap().connections == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_fails_streams_and_closes_targets() {
    let (srv, client) = connected_pair().await;
    let (target, mut ends) = reporting_server().await;
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
    let reader = tokio::spawn(async move { parked.read(&mut [0u8; 16]).await });
    within("shutdown", Duration::from_secs(10), srv.server.shutdown()).await;
    let err = within("the parked read", Duration::from_secs(1), reader)
        .await
        .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_fails_only_that_stream() {
    let srv = start_server(ServerConfig::default()).await;
    let echo = echo_server().await;
    let allowed = echo.to_string();
    let client = run_client_with(&srv.url, "foo", Config::default(), move |b| {
        b.connect_authorizer(move |proto, address| proto == "tcp" && address == allowed)
    });
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let mut before = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    ping_echo(&mut before).await;
    let other = echo_server().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrades_report_status_and_body() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = serve_on(
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
        let client = client(&srv.url, id, Config::default());
        match client.connect_once().await {
            Err(ClientError::Refused { status: s, body: b }) => {
                assert_eq!((s, b.as_str()), (status, body));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // On the wire the refusal is plain text, as Go's http.Error sends it.
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(
        b"GET /connect HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            tcp.read(&mut byte).await.unwrap(),
            1,
            "response head cut short"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(
        head.contains("content-type: text/plain; charset=utf-8\r\n"),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_backs_off_and_retries_until_authorized() {
    const DENIALS: usize = 3;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = serve_on(
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
    let client = run_client(&srv.url, "foo", Config::default());
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    assert_eq!(attempts.load(Ordering::SeqCst), DENIALS + 1);
    let echo = echo_server().await;
    let mut s = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    ping_echo(&mut s).await;
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
    let (mut r, mut w) = tokio::io::split(stream);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_down_websocket_fails_every_stream_and_the_agent_comes_back() {
    let srv = start_server(ServerConfig::default()).await;
    let proxy = TcpProxy::start(srv.addr).await;
    let proxy_addr = proxy.addr;
    let client = run_client(
        &format!("ws://{proxy_addr}/connect"),
        "foo",
        Config::default(),
    );
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    let source = pattern_server(1 << 40).await;
    let (sink, mut sink_ends) = reporting_server().await;
    let idle = echo_server().await;
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
            tasks.push(tokio::spawn(until_error(stream, traffic, flowing.clone())));
        }
    }
    wait_for("bytes to flow on every stream", || {
        flowing.load(Ordering::SeqCst) == 9
    })
    .await;
    proxy.kill();
    // A dropped WebSocket fails every stream promptly; this is a bound on
    // the wait, generous for a loaded machine, not a performance check.
    let failed = within("every stream to fail", Duration::from_secs(1), async {
        let mut errors = Vec::new();
        for t in tasks {
            errors.push(t.await.unwrap());
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
            Duration::from_secs(1),
            sink_ends.recv(),
        )
        .await
        .unwrap();
    }
    assert!(client.session().unwrap().is_closed());
    wait_for("server forgets the session", || {
        !srv.server.has_session("foo")
    })
    .await;
    // The same address comes back: the agent reconnects on its own.
    let _proxy = TcpProxy::start_on(rebind(proxy_addr).await, srv.addr);
    client.wait_sessions(2).await;
    wait_for("server session again", || srv.server.has_session("foo")).await;
    let mut s = srv
        .server
        .dial("foo", "tcp", &idle.to_string())
        .await
        .unwrap();
    ping_echo(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_on_the_same_port_gets_its_agent_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = serve_on(listener, tunnel_id_authorizer, ServerConfig::default());
    let client = run_client(&first.url, "foo", Config::default());
    let handle = client.wait_sessions(1).await;
    wait_for("first server session", || first.server.has_session("foo")).await;
    first.server.shutdown().await;
    wait_for("agent sees the end", || handle.is_closed()).await;
    let second = serve_on(
        rebind(addr).await,
        tunnel_id_authorizer,
        ServerConfig::default(),
    );
    client.wait_sessions(2).await;
    wait_for("second server session", || second.server.has_session("foo")).await;
    let echo = echo_server().await;
    let mut s = second
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    ping_echo(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_session_and_run() {
    let srv = start_server(ServerConfig::default()).await;
    let c = ClientBuilder::new(&srv.url)
        .header("X-Tunnel-ID", "foo")
        .connect_authorizer(|_, _| true)
        .proxy_from_env(false)
        .build()
        .unwrap();
    let running = c.clone();
    let task = tokio::spawn(async move { running.run().await });
    wait_for("server session", || srv.server.has_session("foo")).await;
    c.cancel();
    assert!(c.is_cancelled());
    within("run to return", Duration::from_secs(10), task)
        .await
        .unwrap();
    wait_for("server forgets the session", || {
        !srv.server.has_session("foo")
    })
    .await;
    // A cancelled client does not connect again.
    assert!(c.connect_once().await.is_ok());
    assert!(!srv.server.has_session("foo"));
}

/// Nothing lost: bytes a stream accepted before `Server::shutdown` still reach
/// the target, then it sees EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_delivers_bytes_already_written() {
    let (srv, _client) = connected_pair().await;
    // A target that only counts what it reads.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let counted = tokio::spawn(async move {
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
    let total = within("target EOF", Duration::from_secs(10), counted)
        .await
        .unwrap();
    assert_eq!(total, data.len(), "every accepted byte arrived");
}
