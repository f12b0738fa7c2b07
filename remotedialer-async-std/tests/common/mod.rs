//! Shared fixtures: the two runtimes the scenarios run under, a real server
//! on 127.0.0.1, real clients connected to it, TCP targets and a TCP
//! forwarder that can be cut. Everything here is runtime-neutral (async-net
//! sockets, async-io timers) except [`Runtime`].
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_util::future::{Either, select};
use futures_util::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use remotedialer_async_std::proto::Config;
use remotedialer_async_std::{
    Authorization, Backoff, Client, ClientBuilder, Server, ServerConfig, SessionHandle, Spawner,
};

/// A task's result, awaited from the test.
pub type Join<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What differs between async-std and smol, for the tests.
pub trait Runtime: 'static {
    /// For messages.
    const NAME: &'static str;
    /// Runs the test's top future on this thread.
    fn block_on<F: Future>(fut: F) -> F::Output;
    /// The spawner handed to servers and clients.
    fn spawner() -> Spawner;
    /// Spawns a task whose result the test awaits.
    fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Join<T>;
}

/// async-std: `task::block_on`, `task::spawn`.
pub struct AsyncStd;

impl Runtime for AsyncStd {
    const NAME: &'static str = "async-std";

    fn block_on<F: Future>(fut: F) -> F::Output {
        async_std::task::block_on(fut)
    }

    fn spawner() -> Spawner {
        Spawner::async_std()
    }

    fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Join<T> {
        Box::pin(async_std::task::spawn(fut))
    }
}

/// smol: `smol::block_on`, `smol::spawn`.
pub struct Smol;

impl Runtime for Smol {
    const NAME: &'static str = "smol";

    fn block_on<F: Future>(fut: F) -> F::Output {
        smol::block_on(fut)
    }

    fn spawner() -> Spawner {
        Spawner::smol()
    }

    fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Join<T> {
        Box::pin(smol::spawn(fut))
    }
}

/// Upper bound on one scenario: a hang fails the test instead of stalling
/// the run.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

/// Runs one scenario on runtime `R`.
pub fn run<R: Runtime>(scenario: impl Future<Output = ()>) {
    // Boxed so that block_on's layers move a pointer, not the whole state
    // machine: a debug build would otherwise copy it onto the 2 MiB test
    // thread stack at every layer.
    R::block_on(Box::pin(within(
        &format!("the scenario on {}", R::NAME),
        SCENARIO_LIMIT,
        scenario,
    )));
}

/// Instantiates each scenario (an `async fn name<R: Runtime>()`) once per
/// runtime: `on_async_std::name` and `on_smol::name`.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod on_async_std {
            $(
                #[test]
                fn $name() {
                    $crate::common::run::<$crate::common::AsyncStd>(super::$name::<$crate::common::AsyncStd>());
                }
            )*
        }
        mod on_smol {
            $(
                #[test]
                fn $name() {
                    $crate::common::run::<$crate::common::Smol>(super::$name::<$crate::common::Smol>());
                }
            )*
        }
    };
}

/// Awaits `fut`, failing the test if it takes longer than `limit` (a bound
/// against hangs, generous for a loaded machine; never a performance check).
pub async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match select(pin!(fut), Timer::after(limit)).await {
        Either::Left((out, _)) => out,
        Either::Right(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Waits (bounded) until `cond` holds.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        Timer::after(Duration::from_millis(5)).await;
    }
}

/// The example authorizer: the client key is the `X-Tunnel-ID` header.
pub fn tunnel_id_authorizer(req: &http::request::Parts) -> Authorization {
    match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => Authorization::Allow(id.to_owned()),
        _ => Authorization::Deny,
    }
}

/// Short ping and sync intervals, so those paths run inside every test. The
/// keepalive timeout and the sync grace stay long: with 2 cores shared by
/// many builds and tests, a busy debug process can stall for a second, and
/// a Connect queued behind megabytes of Data can take that long to reach
/// the agent (a SyncConnections sent before it arrives does not list the
/// connection; the grace keeps the server from closing it).
pub fn fast_config() -> Config {
    Config {
        ping_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_secs(15),
        sync_interval: Duration::from_millis(500),
        sync_grace: Duration::from_secs(10),
        ..Config::default()
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

pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    pub url: String,
}

/// A server with the tunnel-id authorizer on a fresh port.
pub async fn start_server<R: Runtime>(config: ServerConfig) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on::<R>(listener, tunnel_id_authorizer, config)
}

/// A server with its own authorizer on an already bound listener.
pub fn serve_on<R: Runtime>(
    listener: TcpListener,
    authorizer: impl Fn(&http::request::Parts) -> Authorization + Send + Sync + 'static,
    config: ServerConfig,
) -> TestServer {
    let addr = listener.local_addr().unwrap();
    let server = Server::with_config(R::spawner(), authorizer, config);
    let s = server.clone();
    R::spawner().spawn(async move {
        s.serve(listener).await.unwrap();
    });
    TestServer {
        server,
        addr,
        url: format!("ws://{addr}/connect"),
    }
}

/// A client builder with the test defaults (tunnel id, tcp allowed, no
/// proxy from the environment).
pub fn builder<R: Runtime>(url: &str, id: &str, session: Config) -> ClientBuilder {
    ClientBuilder::new(url, R::spawner())
        .header("X-Tunnel-ID", id)
        .connect_authorizer(|proto, _| proto == "tcp")
        .session_config(session)
        .backoff(fast_backoff())
        .proxy_from_env(false)
}

pub fn client<R: Runtime>(url: &str, id: &str, session: Config) -> Client {
    builder::<R>(url, id, session).build().unwrap()
}

/// A client running [`Client::run`] in the background, with the handles of
/// its sessions.
pub struct RunningClient {
    pub client: Client,
    pub task: Join<()>,
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

    /// Waits until at least `n` sessions were established; the latest one.
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

/// Runs a client built from `builder` after recording its sessions.
pub fn run_built<R: Runtime>(builder: ClientBuilder) -> RunningClient {
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let recorded = sessions.clone();
    let client = builder
        .on_connect(move |h| recorded.lock().unwrap().push(h.clone()))
        .build()
        .unwrap();
    let running = client.clone();
    let task = R::spawn(async move { running.run().await });
    RunningClient {
        client,
        task,
        sessions,
    }
}

pub fn run_client<R: Runtime>(url: &str, id: &str, session: Config) -> RunningClient {
    run_built::<R>(builder::<R>(url, id, session))
}

/// A server with a connected agent `foo` (fast keepalive settings).
pub async fn connected_pair<R: Runtime>() -> (TestServer, RunningClient) {
    let srv = start_server::<R>(ServerConfig {
        session: fast_config(),
        ..ServerConfig::default()
    })
    .await;
    let client = run_client::<R>(&srv.url, "foo", fast_config());
    client.wait_sessions(1).await;
    wait_for("server session", || srv.server.has_session("foo")).await;
    (srv, client)
}

/// A TCP echo server on 127.0.0.1.
pub async fn echo_server<R: Runtime>() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    R::spawner().spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            R::spawner().spawn(async move {
                let (r, mut w) = (tcp.clone(), tcp);
                let _ = futures_util::io::copy(r, &mut w).await;
                let _ = w.close().await;
            });
        }
    });
    addr
}

/// Byte `i` of pattern `seed`.
pub fn pattern_byte(seed: u64, i: u64) -> u8 {
    (seed.wrapping_add(i).wrapping_mul(0x9E37_79B9) >> 7) as u8
}

/// Writes `len` bytes of pattern `seed`.
pub async fn write_pattern(
    w: &mut (impl AsyncWrite + Unpin),
    seed: u64,
    len: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        for (j, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(seed, off + j as u64);
        }
        w.write_all(&buf[..n]).await?;
        off += n as u64;
    }
    w.flush().await
}

/// Reads exactly `len` bytes and checks them against pattern `seed`.
pub async fn read_pattern(r: &mut (impl AsyncRead + Unpin), seed: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    let mut off = 0;
    while off < len {
        let want = (len - off).min(buf.len() as u64) as usize;
        let n = r.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF after {off} of {len} bytes"),
            ));
        }
        for (j, b) in buf[..n].iter().enumerate() {
            let at = off + j as u64;
            if *b != pattern_byte(seed, at) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("byte {at} differs"),
                ));
            }
        }
        off += n as u64;
    }
    Ok(())
}

/// A TCP server that sends `len` pattern bytes (seed 0) to each connection,
/// then closes.
pub async fn pattern_server<R: Runtime>(len: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    R::spawner().spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            R::spawner().spawn(async move {
                if write_pattern(&mut tcp, 0, len).await.is_ok() {
                    let _ = tcp.close().await;
                }
            });
        }
    });
    addr
}

/// A port on 127.0.0.1 nobody listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// How one connection to a [`reporting_server`] ended.
#[derive(Debug)]
pub struct TargetEnd {
    /// Bytes read before the end.
    pub read: u64,
    /// The end: `Ok` for EOF.
    pub result: io::Result<()>,
}

/// A TCP server that echoes what it reads and reports each connection's end.
pub async fn reporting_server<R: Runtime>() -> (SocketAddr, async_channel::Receiver<TargetEnd>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = async_channel::unbounded();
    R::spawner().spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            R::spawner().spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                let mut read = 0u64;
                let result = loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            read += n as u64;
                            if let Err(e) = tcp.write_all(&buf[..n]).await {
                                break Err(e);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                let _ = tx.send(TargetEnd { read, result }).await;
            });
        }
    });
    (addr, rx)
}

/// A TCP forwarder in front of a server: `kill` cuts every connection (a
/// torn-down WebSocket), `freeze` stops moving bytes but keeps the sockets
/// open (a peer gone silent). Counts the bytes it moved.
pub struct TcpProxy {
    pub addr: SocketAddr,
    killed: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    kill_event: Arc<event_listener::Event>,
    /// Bytes moved client to server.
    pub upstream: Arc<AtomicU64>,
}

impl TcpProxy {
    pub async fn start<R: Runtime>(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on::<R>(listener, target)
    }

    pub fn start_on<R: Runtime>(listener: TcpListener, target: SocketAddr) -> TcpProxy {
        let proxy = TcpProxy {
            addr: listener.local_addr().unwrap(),
            killed: Arc::new(AtomicBool::new(false)),
            frozen: Arc::new(AtomicBool::new(false)),
            kill_event: Arc::new(event_listener::Event::new()),
            upstream: Arc::new(AtomicU64::new(0)),
        };
        let (killed, frozen, kill_event, upstream) = (
            proxy.killed.clone(),
            proxy.frozen.clone(),
            proxy.kill_event.clone(),
            proxy.upstream.clone(),
        );
        R::spawner().spawn(async move {
            loop {
                let killed_now = kill_event.listen();
                if killed.load(Ordering::SeqCst) {
                    return;
                }
                let accepted = match select(pin!(listener.accept()), killed_now).await {
                    Either::Left((Ok((tcp, _)), _)) => tcp,
                    _ => return,
                };
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                for (from, to, count) in [
                    (accepted.clone(), server.clone(), Some(upstream.clone())),
                    (server, accepted, None),
                ] {
                    let (killed, frozen, kill_event) =
                        (killed.clone(), frozen.clone(), kill_event.clone());
                    R::spawner().spawn(forward(from, to, count, killed, frozen, kill_event));
                }
            }
        });
        proxy
    }

    /// Cuts every connection and stops accepting.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_event.notify(usize::MAX);
    }

    /// Stops moving bytes; the sockets stay open.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    count: Option<Arc<AtomicU64>>,
    killed: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    kill_event: Arc<event_listener::Event>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let killed_now = kill_event.listen();
        if killed.load(Ordering::SeqCst) {
            break;
        }
        let n = match select(pin!(from.read(&mut buf)), killed_now).await {
            Either::Left((Ok(n), _)) if n > 0 => n,
            _ => break,
        };
        if frozen.load(Ordering::SeqCst) {
            // Swallow: the peer looks alive at the TCP level but silent.
            continue;
        }
        // A kill must cut the link even while this write is stuck behind a
        // peer that is not reading: the sockets are shared with the other
        // direction's task, and stay open until both tasks have let go.
        let killed_now = kill_event.listen();
        if killed.load(Ordering::SeqCst) {
            break;
        }
        match select(pin!(to.write_all(&buf[..n])), killed_now).await {
            Either::Left((Ok(()), _)) => {}
            _ => break,
        }
        if let Some(c) = &count {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    // A frozen link shows nothing, not even the other side hanging up: the
    // sockets stay open until the proxy is killed.
    while frozen.load(Ordering::SeqCst) && !killed.load(Ordering::SeqCst) {
        let killed_now = kill_event.listen();
        if killed.load(Ordering::SeqCst) {
            break;
        }
        killed_now.await;
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Binds `addr` again once the old listener is gone (bounded retries).
pub async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..200 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        Timer::after(Duration::from_millis(10)).await;
    }
    panic!("cannot bind {addr} again");
}

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM, key
/// PEM).
pub fn test_certificate() -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}
