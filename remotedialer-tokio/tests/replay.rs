#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
// tungstenite's handshake callback returns its (large) error response type.
#![allow(clippy::result_large_err)]
//! Transcript replay: a scripted raw-WebSocket peer plays one side of the
//! Go session in `shared/vectors/go-session.jsonl` against our other side.
//!
//! * [`go_client_messages_against_rust_server`]: the Go client's messages
//!   (c2s) against our [`Server`]; a test application does what the Go
//!   server's application did (dial, write, read slowly, close).
//! * [`go_server_messages_against_rust_client`]: the Go server's messages
//!   (s2c) against our [`Client`], dialing real local targets.
//!
//! Our replies must be the ones a Go peer expects: same message types and
//! connection ids, byte-identical after the message id (ids may differ),
//! Data on each connection complete and in order (chunking may differ), and
//! Errors after the last Data of their connection. Payloads the transcript
//! truncated are regenerated at the recorded length with known content, so
//! the content is checked end to end too.
//!
//! Where our replies deliberately differ from Go's (each is a `Step::Skip`
//! with its reason, or a replaced expectation):
//! * Go echoes a received Error back once, and a Go client follows the
//!   close of a connection with extra Errors (`EOF` again, or its pipe's
//!   `use of closed network connection`). The connection is already closed
//!   on both ends, so we send nothing: one Error per close.
//! * A Go client whose connect authorizer refuses a Connect sends `Error
//!   "tunnel disconnect"` for every live connection and drops the session.
//!   Ours answers `Error "connect not allowed"` on the refused connection
//!   only, and the session and its other connections carry on.
//! * A client's "connection not found" text names the client by its
//!   `X-Tunnel-ID` (`foo/0/999999`) where Go's says `client/0/999999`; only
//!   the prefix and the connection id are compared.
//! * Our client's timers are fast (Ping every 5 s / 60, SyncConnections
//!   every second), so pings and syncs come at any point of the run; each
//!   sync must list only opened connections, and one after the idle
//!   connection opened must be byte-identical to Go's.
//! * Data for an unknown connection (999999) was injected by the Go
//!   harness; a Server has no API to send it, so that entry is skipped when
//!   our server is under test.

#[path = "replay/peer.rs"]
mod peer;
#[path = "replay/play.rs"]
mod play;
#[path = "replay/policy.rs"]
mod policy;
#[path = "replay/targets.rs"]
mod targets;
#[path = "replay/transcript.rs"]
mod transcript;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peer::{Peer, WAIT};
use play::Player;
use policy::{rust_client_policy, rust_server_policy};
use remotedialer_tokio::proto::{Body, Config, MessageType};
use remotedialer_tokio::{
    Authorization, Client, ClientBuilder, ClientError, Server, SessionHandle, TunnelStream,
};
use targets::{EchoServer, refused_address, source_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use transcript::{Dir, Transcript};
use tungstenite::client::IntoClientRequest;

const IDLE: &str = "idle_one_conn_pings_and_sync";
/// The idle phase (62 s in Go) replays in about a second.
const TIME_SCALE: f64 = 60.0;

fn tunnel_id_authorizer(req: &http::request::Parts) -> Authorization {
    match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => Authorization::Allow(id.to_owned()),
        _ => Authorization::Deny,
    }
}

/// A header's value in a recorded HTTP head.
fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Phases {
    dial_echo: u64,
    hello: u64,
    bulk: u64,
    close: u64,
    download: u64,
    refused: u64,
    stray: u64,
    idle: u64,
    denied: u64,
    end: u64,
}

impl Phases {
    fn of(t: &Transcript) -> Phases {
        let p = |name| t.phase_start(name);
        Phases {
            dial_echo: p("dial_echo"),
            hello: p("hello_echo"),
            bulk: p("bulk_3MiB_slow_reader"),
            close: p("close_from_dialer"),
            download: p("download_3MiB_slow_reader"),
            refused: p("dial_refused"),
            stray: p("data_for_unknown_conn"),
            idle: p(IDLE),
            denied: p("connect_denied_by_client_authorizer"),
            end: t.entries.len() as u64 - 1,
        }
    }
}

/// The connections of the session.
const CONNS: [i64; 5] = [2, 3, 4, 5, 6];

fn expect_streams(peer: &mut Peer, t: &Transcript, rust_dir: Dir) {
    for conn in CONNS {
        peer.expect_stream(
            conn,
            t.stream(rust_dir, conn).to_vec(),
            t.data_header(rust_dir, conn),
        );
    }
}

async fn read_error(stream: &mut TunnelStream) -> String {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Ok(Ok(n)) => panic!("expected an error, read {n} bytes"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("the read did not fail within {WAIT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_messages_against_rust_server() {
    let t = Transcript::load();
    let ph = Phases::of(&t);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(tunnel_id_authorizer);
    tokio::spawn({
        let s = server.clone();
        async move { s.serve(listener).await }
    });

    // The Go client's upgrade request; our answer must look like Go's.
    let go_request = t.handshake("c2s");
    let id = header_value(&go_request, "X-Tunnel-ID").expect("X-Tunnel-ID");
    let mut request = format!("ws://{addr}/connect")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("X-Tunnel-ID", id.parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let go_response = t.handshake("s2c");
    assert!(go_response.starts_with("HTTP/1.1 101"));
    assert_eq!(response.status().as_u16(), 101);
    for name in ["Upgrade", "Connection"] {
        let ours = response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let go = header_value(&go_response, name).unwrap();
        assert!(
            ours.eq_ignore_ascii_case(&go),
            "{name}: ours {ours:?}, Go {go:?}"
        );
    }
    for name in ["Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"] {
        assert_eq!(header_value(&go_response, name), None);
        assert!(
            response.headers().get(name).is_none(),
            "Go's answer has no {name}"
        );
    }
    wait_for("the session", || server.has_session(&id)).await;

    let mut peer = Peer::new(ws, false);
    expect_streams(&mut peer, &t, Dir::S2c);
    let mut player = Player::new(peer, &t, rust_server_policy());
    let out2 = t.stream(Dir::S2c, 2);
    let in2 = t.stream(Dir::C2s, 2);

    // dial_echo + hello_echo: an optimistic dial, then "hello" each way.
    let mut s2 = server.dial(&id, "tcp", &t.address("echo")).await.unwrap();
    player.play(ph.dial_echo..=ph.hello - 1).await;
    let hello = transcript::payload(&t.entries[ph.hello as usize].bytes).len();
    s2.write_all(&out2[..hello]).await.unwrap();
    player.play(ph.hello..=ph.bulk - 1).await;
    let mut got = vec![0u8; hello];
    s2.read_exact(&mut got).await.unwrap();
    assert_eq!(got, in2[..hello]);

    // bulk: 3 MiB each way; the application reads nothing until our server
    // has paused the Go client, then reads everything and gets Resume.
    let (mut r2, mut w2) = tokio::io::split(s2);
    let rest_out = out2[hello..].to_vec();
    let writer = tokio::spawn(async move {
        w2.write_all(&rest_out).await.unwrap();
        w2
    });
    let resume = t.find(ph.bulk, Dir::S2c, MessageType::Resume);
    player.play(ph.bulk..=resume - 1).await;
    let rest_in = in2[hello..].to_vec();
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; rest_in.len()];
        r2.read_exact(&mut got).await.unwrap();
        assert!(got == rest_in, "bulk data differs");
        r2
    });
    player.play(resume..=ph.close - 1).await;
    let mut s2 = reader.await.unwrap().unsplit(writer.await.unwrap());

    // close_from_dialer: Error "EOF" after the last Data.
    s2.shutdown().await.unwrap();
    drop(s2);
    player.play(ph.close..=ph.download - 1).await;
    player.peer.barrier().await;

    // download: 3 MiB from the Go client, paused and resumed.
    let mut s3 = server
        .dial(&id, "tcp", &t.address("source_3MiB"))
        .await
        .unwrap();
    let resume3 = t.find(ph.download, Dir::S2c, MessageType::Resume);
    player.play(ph.download..=resume3 - 1).await;
    let reader3 = tokio::spawn(async move {
        let mut got = Vec::new();
        s3.read_to_end(&mut got).await.unwrap();
        got
    });
    player.play(resume3..=ph.refused - 1).await;
    let got3 = reader3.await.unwrap();
    assert!(
        got3 == t.stream(Dir::C2s, 3),
        "download differs ({} bytes)",
        got3.len()
    );
    player.peer.barrier().await;

    // dial_refused: the Go client's dial error is the first read's error.
    let mut s4 = server
        .dial(&id, "tcp", &t.address("refused"))
        .await
        .unwrap();
    player.play(ph.refused..=ph.stray - 1).await;
    let dial_error = t.entries[ph.refused as usize..ph.stray as usize]
        .iter()
        .find(|e| e.dir == Dir::C2s && e.message_type() == Some(MessageType::Error))
        .map(|e| String::from_utf8_lossy(transcript::payload(&e.bytes)).into_owned())
        .unwrap();
    assert_eq!(read_error(&mut s4).await, dial_error);
    player.peer.barrier().await;

    // data_for_unknown_conn: the Go client's "connection not found" is
    // ignored.
    player.play(ph.stray..=ph.idle - 1).await;
    player.peer.barrier().await;

    // idle: one connection, pings answered, SyncConnections keeps it.
    let mut s5 = server.dial(&id, "tcp", &t.address("echo")).await.unwrap();
    let x = t.stream(Dir::S2c, 5).to_vec();
    s5.write_all(&x).await.unwrap();
    player.pace(IDLE, TIME_SCALE);
    player.play(ph.idle..=ph.denied - 1).await;
    let mut got = vec![0u8; x.len()];
    s5.read_exact(&mut got).await.unwrap();
    assert_eq!(got, t.stream(Dir::C2s, 5));
    assert!(player.peer.pongs > 0);

    // connect_denied: the Go client reports "tunnel disconnect" for the
    // idle connection and vanishes without a close frame.
    let denied_connect = &t.entries[t.find(ph.denied, Dir::S2c, MessageType::Connect) as usize];
    let Body::Connect { address, .. } = denied_connect.message().body else {
        unreachable!()
    };
    let mut s6 = server
        .dial(&id, "tcp", std::str::from_utf8(&address).unwrap())
        .await
        .unwrap();
    player.play(ph.denied..=ph.end).await;
    assert_eq!(read_error(&mut s5).await, "tunnel disconnect");
    let _ = read_error(&mut s6).await;
    wait_for("the session to end", || !server.has_session(&id)).await;
    player.peer.assert_quiet();
    for (seq, why) in &player.skipped {
        eprintln!("skipped seq {seq}: {why}");
    }
}

fn paused_by_peer(handle: &Mutex<Option<SessionHandle>>) -> usize {
    handle
        .lock()
        .unwrap()
        .as_ref()
        .map_or(0, |h| h.stats().paused_by_peer)
}

/// Waits until our client has `n` connections paused by the Go side.
async fn wait_paused(handle: &Mutex<Option<SessionHandle>>, n: usize, player: &Player<'_>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while paused_by_peer(handle) != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "our client did not get to {n} paused connections; stats {:?}, data received {:?}",
            handle.lock().unwrap().as_ref().map(|h| h.stats()),
            player.peer.data
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_server_messages_against_rust_client() {
    let t = Transcript::load();
    let ph = Phases::of(&t);
    let echo = EchoServer::start().await;
    let pause3 = t.find(ph.download, Dir::S2c, MessageType::Pause);
    let source_gate = Arc::new(Notify::new());
    let source = source_server(
        t.stream(Dir::C2s, 3).to_vec(),
        t.data_before(pause3, Dir::C2s, 3) as usize,
        source_gate.clone(),
    )
    .await;
    let refused = refused_address().await;
    let addresses = vec![
        (t.address("echo"), echo.addr.to_string()),
        (t.address("source_3MiB"), source.to_string()),
        (t.address("refused"), refused.to_string()),
    ];

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/connect", listener.local_addr().unwrap());
    let go_request = t.handshake("c2s");
    let id = header_value(&go_request, "X-Tunnel-ID").expect("X-Tunnel-ID");
    let handle: Arc<Mutex<Option<SessionHandle>>> = Arc::default();
    let fast = Config {
        ping_interval: Duration::from_secs_f64(5.0 / TIME_SCALE),
        sync_interval: Duration::from_secs_f64(60.0 / TIME_SCALE),
        sync_grace: Duration::from_secs_f64(60.0 / TIME_SCALE),
        // Generous: a loaded machine must not end the session.
        keepalive_timeout: WAIT,
        ..Config::default()
    };
    let client: Client = ClientBuilder::new(&url)
        .header("X-Tunnel-ID", &id)
        // The Go run's client authorizer: everything except port 7.
        .connect_authorizer(|_, address| !address.ends_with(":7"))
        .session_config(fast)
        .proxy_from_env(false)
        .on_connect({
            let handle = handle.clone();
            move |h| *handle.lock().unwrap() = Some(h.clone())
        })
        .build()
        .unwrap();
    let session = tokio::spawn({
        let client = client.clone();
        async move { client.connect_once().await }
    });

    // Our upgrade request must carry what Go's did.
    let (tcp, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let head: Arc<Mutex<Option<http::request::Parts>>> = Arc::default();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, {
        let head = head.clone();
        move |req: &tungstenite::handshake::server::Request, resp| {
            let mut copy = http::Request::builder()
                .method(req.method())
                .uri(req.uri())
                .body(())
                .unwrap();
            *copy.headers_mut() = req.headers().clone();
            *head.lock().unwrap() = Some(copy.into_parts().0);
            Ok(resp)
        }
    })
    .await
    .unwrap();
    let head = head.lock().unwrap().take().unwrap();
    let go_path = go_request.split_whitespace().nth(1).unwrap();
    assert_eq!(head.method, http::Method::GET);
    assert_eq!(head.uri.path(), go_path);
    for name in [
        "X-Tunnel-ID",
        "Sec-WebSocket-Version",
        "Upgrade",
        "Connection",
    ] {
        let ours = head
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let go = header_value(&go_request, name).unwrap();
        assert!(
            ours.eq_ignore_ascii_case(&go),
            "{name}: ours {ours:?}, Go {go:?}"
        );
    }
    for name in ["Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"] {
        assert!(
            head.headers.get(name).is_none(),
            "Go's request has no {name}"
        );
    }

    let mut peer = Peer::new(ws, true);
    expect_streams(&mut peer, &t, Dir::C2s);
    let mut player = Player::new(peer, &t, rust_client_policy(addresses));
    wait_for("the session handle", || handle.lock().unwrap().is_some()).await;

    // dial_echo, hello_echo, bulk: our client dials the echo server and
    // relays; the Go server pauses and later resumes it.
    let pause = t.find(ph.bulk, Dir::S2c, MessageType::Pause);
    let resume = t.find(ph.bulk, Dir::S2c, MessageType::Resume);
    player.play(ph.dial_echo..=pause).await;
    wait_paused(&handle, 1, &player).await;
    player.play(pause + 1..=resume).await;
    wait_paused(&handle, 0, &player).await;

    // close_from_dialer: the Go server's Error "EOF" closes our target.
    player.play(resume + 1..=ph.download - 1).await;
    let echo2 = echo.conn(0).expect("the echo connection");
    assert_eq!(
        echo2.received.load(Ordering::SeqCst),
        t.stream(Dir::S2c, 2).len() as u64
    );
    wait_for("the echo connection to close", || {
        echo2.closed.load(Ordering::SeqCst)
    })
    .await;
    player.peer.barrier().await;

    // download: our client relays 3 MiB, paused and resumed, then EOF.
    let resume3 = t.find(ph.download, Dir::S2c, MessageType::Resume);
    player.play(ph.download..=pause3).await;
    wait_paused(&handle, 1, &player).await;
    source_gate.notify_one();
    player.play(pause3 + 1..=resume3).await;
    wait_paused(&handle, 0, &player).await;
    player.play(resume3 + 1..=ph.refused - 1).await;
    player.peer.barrier().await;

    // dial_refused, data_for_unknown_conn.
    player.play(ph.refused..=ph.stray - 1).await;
    player.peer.barrier().await;
    player.play(ph.stray..=ph.idle - 1).await;
    player.peer.barrier().await;

    // idle: pings and a SyncConnections listing the one live connection.
    player.play(ph.idle..=ph.denied - 1).await;
    assert!(player.peer.pings > 0, "our client never pinged");

    // connect_denied: our client refuses that connection only; the Go
    // server then closes the idle one and drops the connection.
    let close5 = t.find(ph.denied, Dir::S2c, MessageType::Error);
    player.play(ph.denied..=close5).await;
    let echo5 = echo.conn(1).expect("the idle echo connection");
    wait_for("the idle echo connection to close", || {
        echo5.closed.load(Ordering::SeqCst)
    })
    .await;
    player.play(close5 + 1..=ph.end).await;
    let ended = tokio::time::timeout(WAIT, session)
        .await
        .expect("the session ends")
        .unwrap();
    assert!(
        matches!(ended, Err(ClientError::Session(_))),
        "connect_once ended with {ended:?}"
    );
    player.peer.assert_quiet();
    for (seq, why) in &player.skipped {
        eprintln!("skipped seq {seq}: {why}");
    }
}
