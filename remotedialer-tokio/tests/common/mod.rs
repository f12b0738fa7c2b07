//! Shared fixtures for the integration tests: a real server on 127.0.0.1, a
//! real client connected to it, and TCP targets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use remotedialer_tokio::proto::Config;
use remotedialer_tokio::{
    Authorization, Backoff, Client, ClientBuilder, Server, ServerConfig, SessionHandle,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The example authorizer: the client key is the `X-Tunnel-ID` header.
pub fn tunnel_id_authorizer(req: &http::request::Parts) -> Authorization {
    match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => Authorization::Allow(id.to_owned()),
        _ => Authorization::Deny,
    }
}

/// Short timers so keepalive and sync paths run within a test.
pub fn fast_config() -> Config {
    Config {
        ping_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_secs(2),
        sync_interval: Duration::from_secs(1),
        sync_grace: Duration::from_secs(1),
        ..Config::default()
    }
}

pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    pub url: String,
}

pub async fn start_server(config: ServerConfig) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::with_config(tunnel_id_authorizer, config);
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    TestServer {
        server,
        addr,
        url: format!("ws://{addr}/connect"),
    }
}

pub fn client(url: &str, id: &str, session: Config) -> Client {
    ClientBuilder::new(url)
        .header("X-Tunnel-ID", id)
        .connect_authorizer(|proto, _| proto == "tcp")
        .session_config(session)
        .proxy_from_env(false)
        .build()
        .unwrap()
}

/// Waits (bounded) until `cond` holds.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A TCP echo server on 127.0.0.1.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP server that sends `len` pattern bytes to each connection, then closes.
pub async fn source_server(len: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if tcp.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = tcp.shutdown().await;
                let mut sink = [0u8; 1024];
                let _ = tcp.read(&mut sink).await;
            });
        }
    });
    addr
}

/// A server config whose sessions use [`fast_config`].
pub fn fast_server_config() -> ServerConfig {
    ServerConfig {
        session: fast_config(),
        ..ServerConfig::default()
    }
}

/// Starts a server with its own authorizer on an already bound listener.
pub fn serve_on(
    listener: TcpListener,
    authorizer: impl Fn(&http::request::Parts) -> Authorization + Send + Sync + 'static,
    config: ServerConfig,
) -> TestServer {
    let addr = listener.local_addr().unwrap();
    let server = Server::with_config(authorizer, config);
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    TestServer {
        server,
        addr,
        url: format!("ws://{addr}/connect"),
    }
}

/// Reconnect delays short enough for tests.
pub fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        healthy_after: Duration::from_secs(30),
    }
}

/// A client running [`Client::run`] in the background, with the handle of
/// its latest session.
pub struct RunningClient {
    pub client: Client,
    pub task: JoinHandle<()>,
    sessions: Arc<Mutex<Vec<SessionHandle>>>,
}

impl RunningClient {
    /// The latest session's handle, once there is one.
    pub fn session(&self) -> Option<SessionHandle> {
        self.sessions.lock().unwrap().last().cloned()
    }

    /// How many sessions were established so far.
    pub fn sessions(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// Waits until a session established after the `n`th exists.
    pub async fn wait_sessions(&self, n: usize) -> SessionHandle {
        wait_for("client session", || self.sessions() >= n).await;
        self.session().unwrap()
    }
}

impl Drop for RunningClient {
    fn drop(&mut self) {
        self.client.cancel();
    }
}

/// Builds a client with `customize` applied after the defaults of
/// [`client`], runs it and records its sessions.
pub fn run_client_with(
    url: &str,
    id: &str,
    session: Config,
    customize: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> RunningClient {
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let recorded = sessions.clone();
    let builder = ClientBuilder::new(url)
        .header("X-Tunnel-ID", id)
        .connect_authorizer(|proto, _| proto == "tcp")
        .session_config(session)
        .proxy_from_env(false)
        .backoff(fast_backoff())
        .on_connect(move |h| recorded.lock().unwrap().push(h.clone()));
    let client = customize(builder).build().unwrap();
    let c = client.clone();
    let task = tokio::spawn(async move { c.run().await });
    RunningClient {
        client,
        task,
        sessions,
    }
}

/// A running client with the fixture defaults.
pub fn run_client(url: &str, id: &str, session: Config) -> RunningClient {
    run_client_with(url, id, session, |b| b)
}

/// A server and a connected client `foo`, with Go's timers: data tests
/// must not depend on a loaded machine answering pings within 2 s.
pub async fn connected_pair() -> (TestServer, RunningClient) {
    let srv = start_server(ServerConfig::default()).await;
    let client = run_client(&srv.url, "foo", Config::default());
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    (srv, client)
}

/// Waits (bounded) until the async `cond` holds.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `fut`, failing the test if it takes longer than `limit`.
pub async fn within<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// The period of [`pattern`]: a prime, so a lost, repeated or reordered
/// chunk of any power-of-two size shifts the stream off the pattern.
pub const PATTERN_PERIOD: usize = 1_048_573;

/// Pseudo-random bytes, two periods long so that any window of up to one
/// period starting anywhere in the first period is contiguous.
pub fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut one = Vec::with_capacity(PATTERN_PERIOD);
        while one.len() < PATTERN_PERIOD {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            one.extend_from_slice(&x.to_le_bytes());
        }
        one.truncate(PATTERN_PERIOD);
        let mut two = one.clone();
        two.extend_from_slice(&one);
        two
    })
}

/// The pattern bytes of stream offsets `[offset, offset + len)` for a
/// stream starting at pattern position `seed`; `len` at most one period.
fn pattern_window(seed: usize, offset: u64, len: usize) -> &'static [u8] {
    let start = ((seed as u64 + offset) % PATTERN_PERIOD as u64) as usize;
    &pattern()[start..start + len]
}

/// Writes `len` pattern bytes starting at pattern position `seed`.
pub async fn write_pattern<W: AsyncWrite + Unpin>(
    w: &mut W,
    seed: usize,
    len: u64,
) -> io::Result<()> {
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(256 << 10) as usize;
        w.write_all(pattern_window(seed, off, n)).await?;
        off += n as u64;
    }
    Ok(())
}

/// Reads exactly `len` bytes and checks each against the pattern (no copy of
/// the whole stream is kept). Fails with the offset of the first mismatch.
pub async fn read_pattern<R: AsyncRead + Unpin>(
    r: &mut R,
    seed: usize,
    len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    let mut off = 0u64;
    while off < len {
        let want = (len - off).min(buf.len() as u64) as usize;
        let n = r.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream ended after {off} of {len} bytes"),
            ));
        }
        if buf[..n] != *pattern_window(seed, off, n) {
            let at = buf[..n]
                .iter()
                .zip(pattern_window(seed, off, n))
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt byte at offset {}", off + at as u64),
            ));
        }
        off += n as u64;
    }
    Ok(())
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, which a test can kill
/// (every socket dropped at once) and restart on the same port.
pub struct TcpProxy {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), upstream)
    }

    pub fn start_on(listener: TcpListener, upstream: SocketAddr) -> TcpProxy {
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                let task = tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        TcpProxy { addr, tasks }
    }

    /// Drops the listener and every proxied socket.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Binds `addr` again, retrying while the old socket is still being torn
/// down.
pub async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot rebind {addr}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A TCP server that sends `len` [`pattern`] bytes (seed 0) to each
/// connection, then closes it.
pub async fn pattern_server(len: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if write_pattern(&mut tcp, 0, len).await.is_ok() {
                    let _ = tcp.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A TCP server that accepts connections and holds them without reading.
pub async fn stuck_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

/// How a target connection ended, seen by the target.
#[derive(Debug)]
pub struct TargetEnd {
    /// Bytes the target read.
    pub read: u64,
    /// `Ok` for a clean EOF, else the read error.
    pub result: io::Result<()>,
}

/// A TCP echo target that reports how each connection ended.
pub async fn reporting_server() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<TargetEnd>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut read = 0u64;
                let mut buf = vec![0u8; 64 << 10];
                let result = async {
                    loop {
                        match tcp.read(&mut buf).await? {
                            0 => return Ok(()),
                            n => {
                                read += n as u64;
                                tcp.write_all(&buf[..n]).await?;
                            }
                        }
                    }
                }
                .await;
                let _ = tx.send(TargetEnd { read, result });
            });
        }
    });
    (addr, rx)
}

/// The value of the sample `name{labels}` in a text exposition; `labels` is
/// the exact label text, e.g. `clientkey="foo"`.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

pub fn encoded(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}
