//! Keepalive and hostile peers, under async-std and under smol: an idle
//! session outlives many keepalive timeouts while pings flow and dies when
//! its peer goes silent; malformed, oversized and flooding input ends only
//! the offending session or connection, never the process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use common::*;
use futures_util::{AsyncReadExt, AsyncWriteExt, StreamExt};
use remotedialer_async_std::proto::{Body, Config, ConnId, Message as Frame, SessionError, varint};
use remotedialer_async_std::{ClientError, ServerConfig};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

scenarios!(
    keepalive_holds_an_idle_session_and_drops_a_silent_peer,
    hostile_clients_end_only_their_own_session,
    a_flooding_client_loses_only_its_connection,
    a_hostile_server_ends_the_session_without_harm,
);

/// Keepalive settings short enough to watch several timeouts in a test,
/// long enough that a loaded machine does not trip them.
fn keepalive_config() -> Config {
    Config {
        ping_interval: Duration::from_millis(250),
        keepalive_timeout: Duration::from_millis(2500),
        ..Config::default()
    }
}

async fn keepalive_holds_an_idle_session_and_drops_a_silent_peer<R: Runtime>() {
    let srv = start_server::<R>(ServerConfig {
        session: keepalive_config(),
        ..ServerConfig::default()
    })
    .await;
    let proxy = TcpProxy::start::<R>(srv.addr).await;
    let (tx, rx) = async_channel::unbounded();
    let client = builder::<R>(
        &format!("ws://{}/connect", proxy.addr),
        "foo",
        keepalive_config(),
    )
    .on_connect(move |h| {
        let _ = tx.try_send(h.clone());
    })
    .build()
    .unwrap();
    let running = client.clone();
    let session = R::spawn(async move { running.connect_once().await });
    let handle = within("the session", Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    wait_for("server session", || srv.server.has_session("foo")).await;
    // Idle for three keepalive timeouts: only Ping and Pong keep both ends
    // alive (data does not count), so both ends surviving shows pings going
    // out and pongs coming back.
    let before = proxy.upstream.load(Ordering::SeqCst);
    async_io::Timer::after(3 * keepalive_config().keepalive_timeout).await;
    assert!(!handle.is_closed());
    assert!(srv.server.has_session("foo"));
    let pinged = proxy.upstream.load(Ordering::SeqCst) - before;
    // A masked, empty Ping frame is 6 bytes; allow for a stalled machine.
    assert!(pinged >= 6 * 5, "only {pinged} bytes went upstream");
    let echo = echo_server::<R>().await;
    let mut s = srv
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    s.write_all(b"k").await.unwrap();
    s.read_exact(&mut [0u8; 1]).await.unwrap();
    // The peer goes silent (TCP stays up): both ends give up on their own.
    proxy.freeze();
    let ended = within("the client to give up", Duration::from_secs(20), session).await;
    match ended {
        Err(ClientError::Session(SessionError::KeepaliveTimeout(_))) => {}
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    wait_for("the server to drop the silent session", || {
        !srv.server.has_session("foo")
    })
    .await;
    let err = s.read(&mut [0u8; 1]).await.unwrap_err();
    assert!(err.to_string().contains("tunnel disconnect"), "{err}");
}

/// A WebSocket to `addr` authenticated as `id`, speaking raw frames.
async fn raw_session(addr: SocketAddr, id: &str) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/connect")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("X-Tunnel-ID", id.parse().unwrap());
    let (ws, _) = async_tungstenite::client_async(request, tcp).await.unwrap();
    ws
}

/// A message with the given header fields and payload, well-formed or not.
fn raw_message(conn_id: i64, kind: i64, payload: &[u8]) -> Bytes {
    let mut buf = Vec::new();
    for field in [1, conn_id, kind] {
        varint::put(&mut buf, field);
    }
    buf.extend_from_slice(payload);
    Bytes::from(buf)
}

/// Reads until the server ends the WebSocket; returns the frames it sent.
async fn until_closed(ws: &mut WebSocketStream<TcpStream>) -> Vec<Message> {
    let mut got = Vec::new();
    within("the server to close", Duration::from_secs(10), async {
        while let Some(Ok(msg)) = ws.next().await {
            let close = matches!(msg, Message::Close(_));
            got.push(msg);
            if close {
                break;
            }
        }
    })
    .await;
    got
}

/// The next remotedialer message from the server, skipping control frames.
async fn next_frame(ws: &mut WebSocketStream<TcpStream>) -> Frame {
    within("a message", Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => return Frame::decode(b).unwrap(),
                Some(Ok(_)) => {}
                other => panic!("session ended: {other:?}"),
            }
        }
    })
    .await
}

async fn hostile_clients_end_only_their_own_session<R: Runtime>() {
    const MAX_MESSAGE: usize = 64 << 10;
    let srv = start_server::<R>(ServerConfig {
        max_message: MAX_MESSAGE,
        ..ServerConfig::default()
    })
    .await;
    // A well-behaved agent keeps working through all of it.
    let good = run_client::<R>(&srv.url, "good", Config::default());
    good.wait_sessions(1).await;
    wait_for("good session", || srv.server.has_session("good")).await;
    let echo = echo_server::<R>().await;
    let check_good = || async {
        let mut s = srv
            .server
            .dial("good", "tcp", &echo.to_string())
            .await
            .unwrap();
        s.write_all(b"ok").await.unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ok");
    };
    let fatal: [(&str, Message); 5] = [
        // A varint that runs past 10 bytes.
        ("varint", Message::Binary(Bytes::from_static(&[0xff; 11]))),
        // remotedialer speaks binary only.
        ("text", Message::text("hello")),
        // Over the configured message bound.
        (
            "huge",
            Message::Binary(Bytes::from(vec![0u8; MAX_MESSAGE + 1])),
        ),
        // SyncConnections whose length is not a multiple of 8.
        ("sync", Message::Binary(raw_message(0, 8, &[1, 2, 3]))),
        // A header cut short.
        ("truncated", Message::Binary(Bytes::from_static(&[2]))),
    ];
    for (name, msg) in fatal {
        let key = format!("evil-{name}");
        let mut ws = raw_session(srv.addr, &key).await;
        wait_for("evil session", || srv.server.has_session(&key)).await;
        ws.send(msg).await.unwrap();
        until_closed(&mut ws).await;
        wait_for("the evil session to end", || !srv.server.has_session(&key)).await;
        check_good().await;
    }
    // Survivable nonsense: Data for an unknown connection is answered with
    // an Error; a Connect from a client is refused; the session stays.
    let mut ws = raw_session(srv.addr, "odd").await;
    wait_for("odd session", || srv.server.has_session("odd")).await;
    let unknown = Frame::data(1, ConnId(77), Bytes::from_static(b"x"));
    ws.send(Message::Binary(unknown.to_bytes())).await.unwrap();
    let reply = next_frame(&mut ws).await;
    assert_eq!(reply.conn_id, ConnId(77));
    assert!(
        matches!(&reply.body, Body::Error(text) if text.starts_with(b"connection not found")),
        "{reply:?}"
    );
    let connect = Frame::connect(2, ConnId(5), "tcp", &echo.to_string());
    ws.send(Message::Binary(connect.to_bytes())).await.unwrap();
    let reply = next_frame(&mut ws).await;
    assert_eq!(reply.conn_id, ConnId(5));
    assert!(matches!(reply.body, Body::Error(_)), "{reply:?}");
    assert!(srv.server.has_session("odd"));
    check_good().await;
    // Garbage instead of HTTP, and a request head that never ends.
    for junk in [&b"\x00\x01\x02\x03\r\n\r\n"[..], &[b'A'; 100 << 10][..]] {
        let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
        let _ = tcp.write_all(junk).await;
        let mut rest = Vec::new();
        let _ = within(
            "the server to hang up",
            Duration::from_secs(10),
            tcp.read_to_end(&mut rest),
        )
        .await;
        assert!(!String::from_utf8_lossy(&rest).contains(" 101 "));
    }
    check_good().await;
    assert_eq!(srv.server.list_clients(), ["good", "odd"]);
}

async fn a_flooding_client_loses_only_its_connection<R: Runtime>() {
    // Small buffers: the server pauses at 64 KiB and gives up on a
    // connection holding 256 KiB unread.
    let config = Config {
        pause_threshold: 64 << 10,
        resume_threshold: 8 << 10,
        max_connection_receive_buffer: 256 << 10,
        ..Config::default()
    };
    let srv = start_server::<R>(ServerConfig {
        session: config,
        ..ServerConfig::default()
    })
    .await;
    let mut ws = raw_session(srv.addr, "flood").await;
    wait_for("flood session", || srv.server.has_session("flood")).await;
    let mut victim = srv
        .server
        .dial("flood", "tcp", "10.0.0.1:80")
        .await
        .unwrap();
    let mut bystander = srv
        .server
        .dial("flood", "tcp", "10.0.0.1:81")
        .await
        .unwrap();
    let mut connects = Vec::new();
    while connects.len() < 2 {
        if let Frame {
            conn_id,
            body: Body::Connect { .. },
            ..
        } = next_frame(&mut ws).await
        {
            connects.push(conn_id);
        }
    }
    let (conn, other) = (connects[0], connects[1]);
    // 1 MiB on one connection, ignoring the Pause the server sends after
    // 64 KiB, with nothing read on the server side.
    let chunk = Bytes::from(vec![7u8; 32 << 10]);
    for i in 0..32 {
        let data = Frame::data(10 + i, conn, chunk.clone());
        ws.send(Message::Binary(data.to_bytes())).await.unwrap();
    }
    let mut paused = false;
    let closed_with = loop {
        match next_frame(&mut ws).await {
            Frame {
                conn_id,
                body: Body::Pause,
                ..
            } if conn_id == conn => paused = true,
            Frame {
                conn_id,
                body: Body::Error(text),
                ..
            } if conn_id == conn => break String::from_utf8_lossy(&text).into_owned(),
            _ => {}
        }
    };
    assert!(paused, "no Pause before the flood was cut");
    assert!(!closed_with.is_empty());
    // Memory stayed bounded by the cap, not by what was sent; the bytes
    // received before the cap are still readable, then the error.
    let stats = srv.server.session_stats("flood").unwrap();
    assert!(stats.buffered_receive <= 256 << 10, "{stats:?}");
    let mut total = 0usize;
    let err = loop {
        let mut buf = vec![0u8; 64 << 10];
        match victim.read(&mut buf).await {
            Ok(0) => panic!("EOF instead of an error"),
            Ok(n) => total += n,
            Err(e) => break e,
        }
    };
    assert!(total <= 256 << 10, "read {total} bytes");
    assert!(!err.to_string().is_empty());
    // The session and its other connection live on.
    assert!(srv.server.has_session("flood"));
    let hello = Frame::data(100, other, Bytes::from_static(b"hello"));
    ws.send(Message::Binary(hello.to_bytes())).await.unwrap();
    let mut b = [0u8; 5];
    within(
        "the bystander's bytes",
        Duration::from_secs(10),
        bystander.read_exact(&mut b),
    )
    .await
    .unwrap();
    assert_eq!(&b, b"hello");
}

async fn a_hostile_server_ends_the_session_without_harm<R: Runtime>() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = echo_server::<R>().await;
    let echo_target = echo.to_string();
    R::spawner().spawn(async move {
        let mut round = 0u8;
        while let Ok((tcp, _)) = listener.accept().await {
            let echo_target = echo_target.clone();
            round += 1;
            R::spawner().spawn(async move {
                let mut ws = async_tungstenite::accept_async(tcp).await.unwrap();
                // A Connect the client may serve, then garbage.
                let ok = Frame::connect(1, ConnId(2), "tcp", &echo_target);
                let _ = ws.send(Message::Binary(ok.to_bytes())).await;
                let junk = match round {
                    // SyncConnections whose length is not a multiple of 8.
                    1 => raw_message(0, 8, &[1, 2, 3]),
                    // A varint that runs past 10 bytes.
                    _ => Bytes::from_static(&[0xff; 11]),
                };
                let _ = ws.send(Message::Binary(junk)).await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    for _ in 0..2 {
        let client = client::<R>(&format!("ws://{addr}/connect"), "foo", Config::default());
        let ended = within(
            "the client to end",
            Duration::from_secs(10),
            client.connect_once(),
        )
        .await;
        assert!(
            matches!(ended, Err(ClientError::Session(SessionError::Decode(_)))),
            "{ended:?}"
        );
    }
}
