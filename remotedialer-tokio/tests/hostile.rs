//! Hostile agents: raw WebSocket clients (tokio-tungstenite, no
//! remotedialer) sending what a well-behaved agent never would. Each costs at
//! most its own session or connection, ends cleanly, and a normal agent on
//! the same server keeps working throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use remotedialer_tokio::ServerConfig;
use remotedialer_tokio::proto::{Body, Config, ConnId, Message as Frame, varint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw agent: completes the upgrade as `id`, then does only what the test
/// makes it do.
async fn raw_agent(url: &str, id: &str) -> RawWs {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Tunnel-ID", http::HeaderValue::from_str(id).unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// The next remotedialer frame from the server; `None` once the server
/// closed the WebSocket (Close frame or end of stream).
async fn next_frame(ws: &mut RawWs) -> Option<Frame> {
    loop {
        match within(
            "a frame from the server",
            Duration::from_secs(10),
            ws.next(),
        )
        .await
        {
            Some(Ok(Message::Binary(b))) => return Some(Frame::decode(b).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
        }
    }
}

/// Reads until the server's WebSocket Close frame: a clean end, not a
/// dropped socket.
async fn expect_close(ws: &mut RawWs, what: &str) {
    loop {
        match within("the server's Close", Duration::from_secs(10), ws.next()).await {
            Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("{what}: expected a Close frame, got {other:?}"),
        }
    }
}

/// The next Error frame's connection and text, skipping other frames.
async fn next_error(ws: &mut RawWs) -> (ConnId, String) {
    loop {
        let frame = next_frame(ws).await.expect("session ended");
        if let Body::Error(text) = frame.body {
            return (frame.conn_id, String::from_utf8(text.to_vec()).unwrap());
        }
    }
}

fn data(conn: i64, payload: &'static [u8]) -> Message {
    Message::Binary(Frame::data(1, ConnId(conn), Bytes::from_static(payload)).to_bytes())
}

/// A well-behaved agent `good` on the same server, doing echo round trips
/// until stopped; returns how many it did.
struct Bystander {
    client: RunningClient,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Bystander {
    async fn start(srv: &TestServer) -> Bystander {
        let client = run_client(&srv.url, "good", Config::default());
        client.wait_sessions(1).await;
        wait_for("good session", || srv.server.has_session("good")).await;
        let echo = echo_server().await;
        let stream = srv
            .server
            .dial("good", "tcp", &echo.to_string())
            .await
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stop, rounds) = (stop.clone(), rounds.clone());
            async move {
                let mut stream = stream;
                let mut seed = 0;
                while !stop.load(Ordering::SeqCst) {
                    write_pattern(&mut stream, seed, 4096).await.unwrap();
                    read_pattern(&mut stream, seed, 4096).await.unwrap();
                    seed += 4096;
                    rounds.fetch_add(1, Ordering::SeqCst);
                    // Pacing, so the bystander does not hog the machine.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        Bystander {
            client,
            stop,
            rounds,
            task,
        }
    }

    /// Waits for a few more round trips, proving the session still works.
    async fn still_working(&self) {
        let now = self.rounds.load(Ordering::SeqCst);
        wait_for("the good agent to go on", || {
            self.rounds.load(Ordering::SeqCst) >= now + 3
        })
        .await;
    }

    async fn finish(self, srv: &TestServer) {
        self.still_working().await;
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        assert_eq!(self.client.sessions(), 1, "the good session was never lost");
        assert!(srv.server.has_session("good"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_end_only_their_session() {
    let srv = start_server(ServerConfig::default()).await;
    let good = Bystander::start(&srv).await;
    let mut too_long = vec![0xffu8; 10];
    too_long.push(0x01);
    let mut tenth_byte_too_big = vec![0xffu8; 9];
    tenth_byte_too_big.push(0x02);
    let mut odd_sync = BytesMut::new();
    for v in [1, 0, 8] {
        varint::put(&mut odd_sync, v);
    }
    odd_sync.put_slice(&[0u8; 7]);
    let cases: Vec<(&str, Message)> = vec![
        ("text frame", Message::text("hello")),
        ("empty binary", Message::Binary(Bytes::new())),
        (
            "truncated varint",
            Message::Binary(Bytes::from_static(&[0x80])),
        ),
        ("11-byte varint", Message::Binary(too_long.into())),
        (
            "10th varint byte > 1",
            Message::Binary(tenth_byte_too_big.into()),
        ),
        (
            "header cut short",
            Message::Binary(Bytes::from_static(&[0x02, 0x04])),
        ),
        ("sync of 7 bytes", Message::Binary(odd_sync.freeze())),
    ];
    for (i, (what, msg)) in cases.into_iter().enumerate() {
        let id = format!("hostile-{i}");
        let mut ws = raw_agent(&srv.url, &id).await;
        wait_for("hostile session", || srv.server.has_session(&id)).await;
        ws.send(msg).await.unwrap();
        // The server ends the session with a WebSocket close.
        expect_close(&mut ws, what).await;
        wait_for("the server to forget it", || !srv.server.has_session(&id)).await;
        good.still_working().await;
    }
    good.finish(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_connections_and_types_cost_nothing() {
    let srv = start_server(ServerConfig::default()).await;
    let good = Bystander::start(&srv).await;
    let mut ws = raw_agent(&srv.url, "hostile").await;
    wait_for("hostile session", || srv.server.has_session("hostile")).await;
    // Data for connections that do not exist, including huge ids: each is
    // answered with Go's "connection not found" and the session goes on.
    for conn in [42, i64::MAX, i64::MIN, -1] {
        ws.send(data(conn, b"who?")).await.unwrap();
        let (id, text) = next_error(&mut ws).await;
        assert_eq!(id, ConnId(conn));
        let rest = text.strip_prefix("connection not found hostile/").unwrap();
        let (session_key, conn_text) = rest.split_once('/').unwrap();
        assert!(session_key.parse::<i64>().unwrap() > 0, "{text}");
        assert_eq!(conn_text, conn.to_string());
    }
    // A type from the future, with a huge number, is ignored.
    let mut unknown = BytesMut::new();
    for v in [1, 5, i64::MAX] {
        varint::put(&mut unknown, v);
    }
    unknown.put_slice(b"whatever");
    ws.send(Message::Binary(unknown.freeze())).await.unwrap();
    // A flood of unknown-id Data while reading nothing: replies beyond a
    // small bound are dropped, so the server's memory does not grow.
    for _ in 0..5_000 {
        ws.feed(data(7, b"x")).await.unwrap();
    }
    ws.flush().await.unwrap();
    ws.send(data(8, b"last")).await.unwrap();
    // The session is still answering, in order.
    loop {
        let (id, _) = next_error(&mut ws).await;
        if id == ConnId(8) {
            break;
        }
        assert_eq!(id, ConnId(7));
    }
    assert!(srv.server.has_session("hostile"));
    good.finish(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_make_the_server_dial() {
    let srv = start_server(ServerConfig::default()).await;
    let good = Bystander::start(&srv).await;
    let inside = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = inside.local_addr().unwrap().to_string();
    let mut ws = raw_agent(&srv.url, "hostile").await;
    wait_for("hostile session", || srv.server.has_session("hostile")).await;
    let connect = Frame::connect(1, ConnId(7), "tcp", &target).to_bytes();
    ws.send(Message::Binary(connect)).await.unwrap();
    assert_eq!(
        next_error(&mut ws).await,
        (ConnId(7), "connect not allowed".to_owned())
    );
    // Nothing was dialed, and the session goes on.
    let accepted = tokio::time::timeout(Duration::from_millis(200), inside.accept()).await;
    assert!(accepted.is_err(), "the server dialed for an agent");
    ws.send(data(9, b"?")).await.unwrap();
    assert_eq!(next_error(&mut ws).await.0, ConnId(9));
    good.finish(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_ignoring_pause_loses_only_that_connection() {
    const CAP: usize = 1 << 20;
    let srv = start_server(ServerConfig {
        session: Config {
            pause_threshold: 64 << 10,
            resume_threshold: 8 << 10,
            max_connection_receive_buffer: CAP,
            ..Config::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let good = Bystander::start(&srv).await;
    let ws = raw_agent(&srv.url, "hostile").await;
    wait_for("hostile session", || srv.server.has_session("hostile")).await;
    let (mut tx, mut rx) = ws.split();
    let mut stream = srv
        .server
        .dial("hostile", "tcp", "127.0.0.1:9")
        .await
        .unwrap();
    let conn = loop {
        let msg = within("Connect", Duration::from_secs(10), rx.next()).await;
        if let Some(Ok(Message::Binary(b))) = msg {
            let frame = Frame::decode(b).unwrap();
            if let Body::Connect { .. } = frame.body {
                break frame.conn_id;
            }
        }
    };
    // Send 32 KiB Data messages for ever, whatever the server says.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn({
        let stop = stop.clone();
        async move {
            let chunk = Bytes::from(vec![0x5a; 32 << 10]);
            let mut sent = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let msg = Frame::data(1, conn, chunk.clone()).to_bytes();
                if tx.send(Message::Binary(msg)).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            (tx, sent)
        }
    });
    let mut paused = false;
    let error = loop {
        let msg = within("the server's answer", Duration::from_secs(10), rx.next()).await;
        let Some(Ok(Message::Binary(b))) = msg else {
            continue;
        };
        let frame = Frame::decode(b).unwrap();
        assert_eq!(frame.conn_id, conn);
        match frame.body {
            Body::Pause => paused = true,
            Body::Error(text) => break String::from_utf8(text.to_vec()).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    };
    stop.store(true, Ordering::SeqCst);
    let (_tx, sent) = flood.await.unwrap();
    assert!(paused, "the server asked for a pause first");
    assert_eq!(
        error,
        format!("receive buffer overflow: more than {CAP} unread bytes (the peer ignored Pause)")
    );
    assert!(sent > CAP);
    // The application reads what was accepted, at most the cap, then the
    // same error.
    let mut got = 0;
    let mut buf = vec![0u8; 64 << 10];
    let err = loop {
        match stream.read(&mut buf).await {
            Ok(0) => panic!("clean EOF after an overflow"),
            Ok(n) => {
                assert!(buf[..n].iter().all(|&b| b == 0x5a));
                got += n;
            }
            Err(e) => break e,
        }
    };
    assert!(got <= CAP, "{got} bytes buffered");
    assert_eq!(err.to_string(), error);
    assert!(stream.write_all(b"x").await.is_err());
    // Only the connection was lost.
    assert!(srv.server.has_session("hostile"));
    good.finish(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_hurt_another_session() {
    let srv = start_server(ServerConfig::default()).await;
    let good = Bystander::start(&srv).await;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for round in 0..40 {
        let id = format!("junk-{round}");
        let mut ws = raw_agent(&srv.url, &id).await;
        for _ in 0..20 {
            let len = rng.random_range(0..48);
            let mut junk = vec![0u8; len];
            rng.fill(&mut junk[..]);
            if ws.send(Message::Binary(junk.into())).await.is_err() {
                break;
            }
        }
        let _ = ws.close(None).await;
        // Whether the junk ended the session or not, closing it leaves
        // nothing behind.
        wait_for("the junk session to end", || !srv.server.has_session(&id)).await;
    }
    // The 101 comes before the server registers a session, so a junk session
    // could register after its check above: none may be left at the end.
    wait_for("only the good agent to be left", || {
        srv.server.list_clients() == ["good"]
    })
    .await;
    good.finish(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_request_is_not_upgraded() {
    let srv = start_server(ServerConfig::default()).await;
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(
        b"GET /connect HTTP/1.1\r\nHost: x\r\nX-Tunnel-ID: foo\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.ends_with("websocket: the client is not using the websocket protocol"));
    assert!(!srv.server.has_session("foo"));
}

/// A client that connects and then says nothing (or stops inside its request
/// head) is dropped after `handshake_timeout`, instead of holding a task and
/// a socket for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_dropped_after_the_handshake_timeout() {
    let srv = start_server(ServerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /connect HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for (what, tcp) in [("silent", &mut silent), ("slow", &mut slow)] {
        let mut buf = [0u8; 512];
        let closed = within(what, Duration::from_secs(10), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408 answer may come first
                }
            }
        });
        closed.await;
    }
}
