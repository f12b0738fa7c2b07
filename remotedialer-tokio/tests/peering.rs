//! Peering across server replicas: several servers in one process, real
//! sockets on 127.0.0.1, agents connected to some of them, dials from the
//! others relayed over the peer links.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod peering_support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use peering_support::*;
use remotedialer_tokio::proto::Config;
use remotedialer_tokio::tls::TlsRoots;
use remotedialer_tokio::{
    ClientBuilder, ClientError, DialError, DialRoute, PEER_ID_HEADER, PEER_TOKEN_HEADER,
    PeerConfig, PeerError, Server, ServerConfig, TargetStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

// ------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_reaches_an_agent_from_every_replica() {
    let (a, b, c) = (
        Node::start("a", fast_session()).await,
        Node::start("b", fast_session()).await,
        Node::start("c", fast_session()).await,
    );
    mesh(&[&a, &b, &c]).await;
    let foo = agent(&a.url, "foo", fast_session());
    let _run = run(&foo);
    route_is(&a, "foo", Some(DialRoute::Local)).await;
    route_is(&b, "foo", via("a")).await;
    route_is(&c, "foo", via("a")).await;

    let echo = echo_server().await;
    let from_b = echo_through(&b.server, "foo", echo, 1, 4 << 20);
    let from_c = echo_through(&c.server, "foo", echo, 2, 4 << 20);
    within("relayed echoes", Duration::from_secs(60), async {
        tokio::join!(from_b, from_c)
    })
    .await;

    // The target's end of stream ends the relayed connection after the
    // last byte.
    let (source, _) = tagged_source(3 << 20).await;
    let mut download = c
        .server
        .dial("foo", "tcp", &source.to_string())
        .await
        .unwrap();
    download.write_all(&[1]).await.unwrap();
    let mut all = Vec::new();
    within(
        "download to EOF",
        Duration::from_secs(30),
        download.read_to_end(&mut all),
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 3 << 20);
    assert!(all.iter().enumerate().all(|(i, b)| *b == tagged_byte(1, i)));

    // The dialer's close reaches the target, after the bytes written.
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut closing = b
        .server
        .dial("foo", "tcp", &target.local_addr().unwrap().to_string())
        .await
        .unwrap();
    closing.write_all(b"last words").await.unwrap();
    drop(closing);
    let (mut tcp, _) = within(
        "the target's accept",
        Duration::from_secs(10),
        target.accept(),
    )
    .await
    .unwrap();
    let mut heard = Vec::new();
    within(
        "the target to see EOF",
        Duration::from_secs(10),
        tcp.read_to_end(&mut heard),
    )
    .await
    .unwrap();
    assert_eq!(heard, b"last words");

    // The agent's own dial error reaches the far dialer unchanged.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut refused = b
        .server
        .dial("foo", "tcp", &closed.to_string())
        .await
        .unwrap();
    let err = within("refused dial", Duration::from_secs(10), refused.read_u8())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("dial tcp {closed}: connect: connection refused")),
        "{err}"
    );

    // Unknown clients fail at once, everywhere.
    match c.server.dial("nobody", "tcp", &echo.to_string()).await {
        Err(e @ DialError::NoSession(_)) => {
            assert_eq!(e.to_string(), "failed to find Session for client nobody")
        }
        other => panic!("expected NoSession, got {other:?}"),
    }

    // Peer links are not clients.
    assert_eq!(a.server.list_clients(), vec!["foo".to_owned()]);
    assert!(b.server.list_clients().is_empty());
    assert!(c.server.list_clients().is_empty());
    assert!(!b.server.has_session("a"));
    for n in [&a, &b, &c] {
        for p in n.server.peers() {
            assert!(p.connected && p.inbound && p.last_error.is_none(), "{p:?}");
        }
    }
    assert_eq!(b.server.peers()[0].announced_clients, 1); // b's view of a
    assert_eq!(b.server.peers()[1].announced_clients, 0); // b's view of c

    // Go's peer counters and the gauge of announced clients.
    for (n, peer) in [(&a, "b"), (&a, "c"), (&b, "a"), (&c, "a")] {
        let attempts = n.metric(&format!(
            "session_server_total_peer_ws_attempt_total{{peer=\"{peer}\"}}"
        ));
        let connected = n.metric(&format!(
            "session_server_total_peer_ws_connected_total{{peer=\"{peer}\"}}"
        ));
        assert!(attempts >= 1.0 && connected >= 1.0, "{} -> {peer}", n.id);
    }
    assert_eq!(
        b.metric("session_server_peer_remote_clients{peer=\"a\"}"),
        1.0
    );
    assert_eq!(a.metric("session_server_sessions"), 1.0);
    foo.cancel();
    route_is(&c, "foo", None).await;
    assert_eq!(
        c.metric("session_server_peer_remote_clients{peer=\"a\"}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_an_agent_that_moves() {
    let (a, b, c) = (
        Node::start("a", fast_session()).await,
        Node::start("b", fast_session()).await,
        Node::start("c", fast_session()).await,
    );
    mesh(&[&a, &b, &c]).await;
    let echo = echo_server().await;

    let on_a = agent(&a.url, "foo", fast_session());
    let _run_a = run(&on_a);
    route_is(&c, "foo", via("a")).await;
    route_is(&b, "foo", via("a")).await;

    // Overlapping move: the agent connects to b, then leaves a. b dials
    // locally at once; a and c switch to b once a's RemoveClient is in.
    let on_b = agent(&b.url, "foo", fast_session());
    let _run_b = run(&on_b);
    route_is(&b, "foo", Some(DialRoute::Local)).await;
    on_a.cancel();
    route_is(&a, "foo", via("b")).await;
    route_is(&c, "foo", via("b")).await;
    // No dial goes to the session that left: a has none for foo, and would
    // refuse a relayed dial, so every one of these must succeed.
    for (i, n) in [&a, &b, &c, &c, &a].into_iter().enumerate() {
        within(
            "echo after move",
            Duration::from_secs(30),
            echo_through(&n.server, "foo", echo, 10 + i as u64, 64 << 10),
        )
        .await;
    }

    // Gap move: the agent leaves b; its removal reaches every replica, whose
    // dials then fail at once with a clear error; it reappears on c.
    on_b.cancel();
    route_is(&a, "foo", None).await;
    route_is(&c, "foo", None).await;
    for n in [&a, &b, &c] {
        let err = n
            .server
            .dial("foo", "tcp", &echo.to_string())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "failed to find Session for client foo");
    }
    let on_c = agent(&c.url, "foo", fast_session());
    let _run_c = run(&on_c);
    route_is(&c, "foo", Some(DialRoute::Local)).await;
    route_is(&a, "foo", via("c")).await;
    route_is(&b, "foo", via("c")).await;
    for n in [&a, &b] {
        within(
            "echo after second move",
            Duration::from_secs(30),
            echo_through(&n.server, "foo", echo, 20, 256 << 10),
        )
        .await;
    }
    on_c.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_fails_dials_fast_and_returns() {
    let (a, b, c) = (
        Node::start("a", fast_session()).await,
        Node::start("b", fast_session()).await,
        Node::start("c", fast_session()).await,
    );
    mesh(&[&a, &b, &c]).await;
    let echo = echo_server().await;
    let foo = agent(&a.url, "foo", fast_session());
    let _run = run(&foo);
    route_is(&b, "foo", via("a")).await;
    route_is(&c, "foo", via("a")).await;

    // A connection relayed through a, live when a dies.
    let mut live = b
        .server
        .dial("foo", "tcp", &echo.to_string())
        .await
        .unwrap();
    live.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    live.read_exact(&mut four).await.unwrap();

    within(
        "shutdown of a",
        Duration::from_secs(10),
        a.server.shutdown(),
    )
    .await;
    within("a's listener to close", Duration::from_secs(10), a.serve)
        .await
        .unwrap()
        .unwrap();
    let addr = a.addr;

    // The relayed connection fails promptly, with an error, not EOF.
    let res = within(
        "the relayed read",
        Duration::from_secs(10),
        live.read(&mut four),
    )
    .await;
    assert!(res.is_err(), "relayed stream ended with {res:?}");

    // Dials made now fail fast, whether or not b and c have yet seen a's
    // links close: either at once, or on the first read.
    for n in [&b, &c] {
        let attempt = async {
            match n.server.dial("foo", "tcp", &echo.to_string()).await {
                Err(e) => e.to_string(),
                Ok(mut s) => s.read_u8().await.unwrap_err().to_string(),
            }
        };
        let err = within("a dial while a is gone", Duration::from_secs(10), attempt).await;
        assert!(!err.is_empty());
        route_is(n, "foo", None).await;
        let err = n
            .server
            .dial("foo", "tcp", &echo.to_string())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "failed to find Session for client foo");
        let status = n.server.peers();
        let a_status = status.iter().find(|p| p.id == "a").unwrap();
        assert!(!a_status.inbound);
    }

    // a comes back on the same port; the agent, b and c reconnect to it.
    let listener = rebind(addr).await;
    let a = Node::start_on("a", listener, fast_session());
    a.peer_with(&b);
    a.peer_with(&c);
    route_is(&a, "foo", Some(DialRoute::Local)).await;
    route_is(&b, "foo", via("a")).await;
    route_is(&c, "foo", via("a")).await;
    wait_for("b's link to the new a", || {
        b.server.peers().iter().any(|p| p.id == "a" && p.connected)
    })
    .await;
    for (i, n) in [&b, &c].into_iter().enumerate() {
        within(
            "echo through the new a",
            Duration::from_secs(30),
            echo_through(&n.server, "foo", echo, 30 + i as u64, 256 << 10),
        )
        .await;
    }
    assert!(b.metric("session_server_total_peer_ws_disconnected_total{peer=\"a\"}") >= 1.0);
    foo.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_peer_token_is_refused() {
    let (a, b) = (
        Node::start("a", fast_session()).await,
        Node::start("b", fast_session()).await,
    );
    // b knows a by its real token; a presents another one.
    b.peer_with(&a);
    a.server.set_peer_identity("a", "not-the-token").unwrap();
    a.peer_with(&b);
    wait_for("a's link to be refused", || {
        a.server.peers()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 401") && e.contains("failed authentication"))
    })
    .await;
    assert!(!a.server.peers()[0].connected);
    assert!(!b.server.peers()[0].inbound);

    // The same refusal, seen directly.
    let probe = ClientBuilder::new(&b.url)
        .header(PEER_ID_HEADER, "a")
        .header(PEER_TOKEN_HEADER, "not-the-token")
        .connect_authorizer(|_, _| false)
        .proxy_from_env(false)
        .build()
        .unwrap();
    match probe.connect_once().await {
        Err(ClientError::Refused { status, body }) => {
            assert_eq!((status, body.as_str()), (401, "failed authentication"))
        }
        other => panic!("expected 401, got {other:?}"),
    }

    // The right token restarts the link; it is a peer, never a client.
    a.server.set_peer_identity("a", &token("a")).unwrap();
    wait_for("a's link with the right token", || {
        a.server.peers()[0].connected && b.server.peers()[0].inbound
    })
    .await;
    assert!(a.server.peers()[0].last_error.is_none());
    assert!(b.server.list_clients().is_empty());
    assert!(!b.server.has_session("a"));
    assert_eq!(b.metric("session_server_sessions"), 0.0);
    assert!(a.metric("session_server_total_peer_ws_attempt_total{peer=\"b\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_settings_changes() {
    let (a, b) = (
        Node::start("a", fast_session()).await,
        Node::start("b", fast_session()).await,
    );
    let lone = Server::new(tunnel_id_authorizer);
    assert_eq!(lone.add_peer(&a.url, "a", "t"), Err(PeerError::NoIdentity));
    assert!(matches!(
        a.server.add_peer(&b.url, "a", "t"),
        Err(PeerError::SelfPeer(_))
    ));
    assert!(matches!(
        a.server.add_peer("not a url", "x", "t"),
        Err(PeerError::Invalid { .. })
    ));
    mesh(&[&a, &b]).await;
    let foo = agent(&a.url, "foo", fast_session());
    let _run = run(&foo);
    route_is(&b, "foo", via("a")).await;

    // Adding the same peer again leaves the link alone.
    let attempts = "session_server_total_peer_ws_attempt_total{peer=\"b\"}";
    let before = a.metric(attempts);
    a.peer_with(&b);
    a.peer_with(&b);
    assert_eq!(a.metric(attempts), before);
    assert!(a.server.peers()[0].connected);

    // Removing a peer ends both directions and the routes through it.
    b.server.remove_peer("a");
    route_is(&b, "foo", None).await;
    wait_for("a's link to be refused", || {
        a.server.peers()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 401"))
    })
    .await;
    assert!(b.server.peers().is_empty());

    // And adding it back restores them.
    b.peer_with(&a);
    route_is(&b, "foo", via("a")).await;
    foo.cancel();
    b.server.shutdown().await;
    assert_eq!(
        b.server.add_peer(&a.url, "a", &token("a")),
        Err(PeerError::ShuttingDown)
    );
}

/// Two connections relayed through a peer: the first is never read, the
/// second is read to its end. The first must stall all the way back to its
/// source (Pause/Resume hold across the bridge), not pile up in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_holds_across_a_relay() {
    let session = Config {
        pause_threshold: 256 << 10,
        resume_threshold: 32 << 10,
        max_connection_send_buffer: 128 << 10,
        ..fast_session()
    };
    let (a, b) = (
        Node::start("a", session.clone()).await,
        Node::start("b", session.clone()).await,
    );
    mesh(&[&a, &b]).await;
    // Small socket buffers at both ends of the agent's target connection
    // (which also stops the kernel from growing them), so what the kernel
    // holds stays small next to what the test measures.
    let foo = ClientBuilder::new(&a.url)
        .header("X-Tunnel-ID", "foo")
        .connect_authorizer(|proto, _| proto == "tcp")
        .local_dialer(|_, address| {
            let address: SocketAddr = address.parse().unwrap();
            Box::pin(async move {
                let socket = TcpSocket::new_v4()?;
                socket.set_recv_buffer_size(SOCKET_BUFFER)?;
                let tcp = socket.connect(address).await?;
                Ok(Box::new(tcp) as Box<dyn TargetStream>)
            })
        })
        .session_config(session.clone())
        .proxy_from_env(false)
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let _run = run(&foo);
    route_is(&b, "foo", via("a")).await;

    const LEN: usize = 64 << 20;
    let (source, written) = tagged_source(LEN).await;
    let mut first = b
        .server
        .dial("foo", "tcp", &source.to_string())
        .await
        .unwrap();
    first.write_all(&[0]).await.unwrap();
    let mut second = b
        .server
        .dial("foo", "tcp", &source.to_string())
        .await
        .unwrap();
    second.write_all(&[1]).await.unwrap();
    within(
        "reading the second stream",
        Duration::from_secs(120),
        read_tagged(&mut second, 1, LEN),
    )
    .await;

    // The first stream's bytes wait in bounded buffers: two small socket
    // buffers, a send buffer and a pause threshold per hop, plus what was in
    // flight on each WebSocket when its Pause went out (about 1 MiB per hop
    // on loopback, as with Go). Were any hop reading ahead, its source would
    // have sent about as much as the second's.
    let sent_first = written[0].load(Ordering::Relaxed);
    eprintln!(
        "unread stream: {sent_first} bytes sent by its source, {} unread at b, a's session {:?}",
        first.readable_len(),
        a.server.session_stats("foo")
    );
    assert!(
        sent_first < LEN / 4,
        "{sent_first} bytes of the unread stream left its source"
    );
    assert!(first.readable_len() <= session.max_connection_receive_buffer);
    let at_a = a.server.session_stats("foo").unwrap();
    assert!(
        at_a.buffered_receive <= session.max_connection_receive_buffer,
        "{at_a:?}"
    );
    assert!(at_a.paused_by_peer + at_a.pausing_peer >= 1, "{at_a:?}");

    // Nothing was lost: the first stream still delivers all of its bytes.
    within(
        "reading the first stream",
        Duration::from_secs(120),
        read_tagged(&mut first, 0, LEN),
    )
    .await;
    foo.cancel();
}

/// A peer link over TLS verifies the peer's certificate by default, and
/// accepts it with the peer's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peer_links_verify_certificates() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let tls = remotedialer_tokio::tls::server_config(
        cert_pem.as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let secure = Server::with_config(
        tunnel_id_authorizer,
        ServerConfig {
            session: fast_session(),
            ..ServerConfig::default()
        },
    );
    secure.set_peer_identity("a", &token("a")).unwrap();
    secure.set_peer_backoff(fast_backoff());
    let s = secure.clone();
    tokio::spawn(async move { s.serve_tls(listener, tls).await });
    let b = Node::start("b", fast_session()).await;
    let a_url = format!("wss://localhost:{port}/connect");
    secure.add_peer(&b.url, "b", &token("b")).unwrap();

    // Default: verified against public roots, so the self-signed peer fails.
    b.server.add_peer(&a_url, "a", &token("a")).unwrap();
    wait_for("the unverified link to fail", || {
        b.server.peers()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("certificate") || e.contains("Certificate"))
    })
    .await;
    assert!(!b.server.peers()[0].connected);

    // With the peer's CA the link comes up, and dials relay over it.
    b.server
        .add_peer_with(
            PeerConfig::new(&a_url, "a", token("a"))
                .tls_roots(TlsRoots::CustomCa(cert_pem.into_bytes())),
        )
        .unwrap();
    wait_for("the verified link", || b.server.peers()[0].connected).await;
    let foo = agent(&b.url, "foo", fast_session());
    let _run = run(&foo);
    wait_for("a's route to foo", || secure.dial_route("foo") == via("b")).await;
    let echo = echo_server().await;
    within(
        "echo over the TLS link",
        Duration::from_secs(30),
        echo_through(&secure, "foo", echo, 40, 256 << 10),
    )
    .await;
    foo.cancel();
    secure.shutdown().await;
}
