//! Fixtures for the peering tests: server replicas with peer identities on
//! real listeners, agents, TCP targets and bounded waits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry as MetricsRegistry;
use remotedialer_tokio::proto::Config;
use remotedialer_tokio::{
    Authorization, Backoff, Client, ClientBuilder, DialRoute, Metrics, Server, ServerConfig,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- fixtures

pub fn tunnel_id_authorizer(req: &http::request::Parts) -> Authorization {
    match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => Authorization::Allow(id.to_owned()),
        _ => Authorization::Deny,
    }
}

/// Short timers so keepalive and sync run within a test.
pub fn fast_session() -> Config {
    Config {
        ping_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_secs(2),
        sync_interval: Duration::from_secs(1),
        sync_grace: Duration::from_secs(1),
        ..Config::default()
    }
}

pub fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        healthy_after: Duration::from_secs(1),
    }
}

pub fn token(id: &str) -> String {
    format!("token-of-{id}")
}

/// One server replica with its peer identity, serving on a real listener.
pub struct Node {
    pub id: String,
    pub server: Server,
    pub addr: SocketAddr,
    pub url: String,
    pub serve: JoinHandle<io::Result<()>>,
    pub metrics: MetricsRegistry,
}

impl Node {
    pub async fn start(id: &str, session: Config) -> Node {
        Node::start_on(id, TcpListener::bind("127.0.0.1:0").await.unwrap(), session)
    }

    pub fn start_on(id: &str, listener: TcpListener, session: Config) -> Node {
        let addr = listener.local_addr().unwrap();
        let mut metrics = MetricsRegistry::default();
        let config = ServerConfig {
            session,
            metrics: Some(Metrics::register(&mut metrics)),
            ..ServerConfig::default()
        };
        let server = Server::with_config(tunnel_id_authorizer, config);
        server.set_peer_identity(id, &token(id)).unwrap();
        server.set_peer_backoff(fast_backoff());
        let s = server.clone();
        let serve = tokio::spawn(async move { s.serve(listener).await });
        Node {
            id: id.to_owned(),
            server,
            addr,
            url: format!("ws://{addr}/connect"),
            serve,
            metrics,
        }
    }

    pub fn peer_with(&self, other: &Node) {
        self.server
            .add_peer(&other.url, &other.id, &token(&other.id))
            .unwrap();
    }

    /// The value of one metric line, e.g.
    /// `session_server_total_peer_ws_connected_total{peer="b"}`.
    pub fn metric(&self, series: &str) -> f64 {
        self.server.refresh_metrics();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.metrics).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Every node links to every other one.
pub async fn mesh(nodes: &[&Node]) {
    for n in nodes {
        for m in nodes {
            if n.id != m.id {
                n.peer_with(m);
            }
        }
    }
    for n in nodes {
        let expected = nodes.len() - 1;
        wait_for(&format!("{}'s peer links", n.id), || {
            let peers = n.server.peers();
            peers.len() == expected && peers.iter().all(|p| p.connected && p.inbound)
        })
        .await;
    }
}

pub fn agent(url: &str, id: &str, session: Config) -> Client {
    ClientBuilder::new(url)
        .header("X-Tunnel-ID", id)
        .connect_authorizer(|proto, _| proto == "tcp")
        .session_config(session)
        .proxy_from_env(false)
        .backoff(fast_backoff())
        .build()
        .unwrap()
}

pub fn run(client: &Client) -> JoinHandle<()> {
    let c = client.clone();
    tokio::spawn(async move { c.run().await })
}

/// Waits (bounded) until `cond` holds.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `fut`, failing the test if it takes longer than `limit`.
pub async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

pub async fn route_is(node: &Node, key: &str, want: Option<DialRoute>) {
    let what = format!("{}'s route to {key} to become {want:?}", node.id);
    wait_for(&what, || node.server.dial_route(key) == want).await;
}

pub fn via(peer: &str) -> Option<DialRoute> {
    Some(DialRoute::Peer(peer.to_owned()))
}

/// A TCP echo server.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends `len` bytes through `server`'s dial of `key` to an echo server and
/// checks the sha256 of what comes back.
pub async fn echo_through(server: &Server, key: &str, echo: SocketAddr, seed: u64, len: usize) {
    let stream = server.dial(key, "tcp", &echo.to_string()).await.unwrap();
    let data = noise(seed, len);
    let sent = Sha256::digest(&data);
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w
    });
    let mut hasher = Sha256::new();
    let mut got = 0;
    let mut buf = vec![0u8; 64 << 10];
    while got < len {
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0, "echo ended after {got} of {len} bytes");
        hasher.update(&buf[..n]);
        got += n;
    }
    assert_eq!(hasher.finalize(), sent, "bytes changed on the way");
    drop(writer.await.unwrap());
}

// ---------------------------------------------------------------- helpers

/// Binds `addr` again once the old listener is gone.
pub async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    }
}

/// Socket buffer size (the kernel doubles it) for the flow control test.
pub const SOCKET_BUFFER: u32 = 64 << 10;

pub fn tagged_byte(tag: u8, i: usize) -> u8 {
    (i % 251) as u8 ^ tag.wrapping_mul(0x5b)
}

/// A TCP server that reads a one-byte tag, then sends `len` bytes of that
/// tag's pattern; `written[tag]` counts what it has written so far.
pub async fn tagged_source(len: usize) -> (SocketAddr, Arc<[AtomicUsize; 2]>) {
    // Accepted sockets inherit the listener's send buffer size.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SOCKET_BUFFER).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let written: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let counters = written.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counters = counters.clone();
            tokio::spawn(async move {
                let tag = tcp.read_u8().await.unwrap();
                let chunk: Vec<u8> = (0..251 * 256).map(|i| tagged_byte(tag, i)).collect();
                let mut sent = 0;
                while sent < len {
                    let n = (len - sent).min(chunk.len());
                    if tcp.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                    counters[usize::from(tag)].store(sent, Ordering::Relaxed);
                }
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, written)
}

pub async fn read_tagged(stream: &mut (impl AsyncReadExt + Unpin), tag: u8, len: usize) {
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0;
    while got < len {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream {tag} ended after {got} of {len} bytes");
        for (k, byte) in buf[..n].iter().enumerate() {
            assert_eq!(
                *byte,
                tagged_byte(tag, got + k),
                "byte {} of stream {tag}",
                got + k
            );
        }
        got += n;
    }
}
