//! The async-std and smol backends (`--runtime async-std`, `--runtime
//! smol`): a `remotedialer_async_std::Server` and `Client` in this process,
//! joined by a real WebSocket on 127.0.0.1, driven by async-std's or smol's
//! executor. The targets and the floor's sockets run on the same executor
//! (async-net), as the tokio backend's run on tokio.
//!
//! The workloads are the same code as for tokio: the adapter's streams speak
//! the futures-io traits, so [`Compat`] presents them as tokio's (which need
//! no tokio runtime).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use remotedialer_async_std::{
    Authorization, Client, ClientBuilder, Server, ServerConfig, SessionHandle, Spawner,
};
use remotedialer_tokio::proto::Config;

use super::harness::{Backend, BoxConn, BoxFuture, Compat, Dial, Runtime, Targets};
use super::suite::{self, Plan, RunResult};
use super::targets_neutral;

/// The client key the benchmark's agent connects as.
const CLIENT_KEY: &str = "bench";

/// The executor a run uses: spawning, sleeping and blocking on the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// async-std's global executor (`async_std::task`).
    AsyncStd,
    /// smol's global executor (`smol::spawn`); its thread count follows
    /// `SMOL_THREADS` (default 1).
    Smol,
}

impl Flavor {
    fn spawner(self) -> Spawner {
        match self {
            Flavor::AsyncStd => Spawner::async_std(),
            Flavor::Smol => Spawner::smol(),
        }
    }

    fn runtime(self) -> &'static dyn Runtime {
        match self {
            Flavor::AsyncStd => &AsyncStdRuntime,
            Flavor::Smol => &SmolRuntime,
        }
    }

    fn block_on<T>(self, fut: impl Future<Output = T>) -> T {
        match self {
            Flavor::AsyncStd => async_std::task::block_on(fut),
            Flavor::Smol => smol::block_on(fut),
        }
    }
}

/// async-std's spawn and sleep.
struct AsyncStdRuntime;

impl Runtime for AsyncStdRuntime {
    fn spawn(&self, task: BoxFuture<()>) {
        // Dropping the JoinHandle detaches the task.
        drop(async_std::task::spawn(task));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async_std::task::sleep(duration))
    }
}

/// smol's spawn and sleep.
struct SmolRuntime;

impl Runtime for SmolRuntime {
    fn spawn(&self, task: BoxFuture<()>) {
        smol::spawn(task).detach();
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::after(duration).await;
        })
    }
}

/// Plain loopback TCP with async-net's sockets: the floor.
struct PlainTcp;

impl Dial for PlainTcp {
    fn dial(&self, target: SocketAddr) -> BoxFuture<io::Result<BoxConn>> {
        Box::pin(async move {
            let tcp = async_net::TcpStream::connect(target).await?;
            tcp.set_nodelay(true)?;
            Ok(Box::new(Compat(tcp)) as BoxConn)
        })
    }
}

/// Dials through the tunnel from the server side.
struct Tunnel {
    server: Server,
    client_session: Arc<Mutex<Option<SessionHandle>>>,
}

impl Dial for Tunnel {
    fn dial(&self, target: SocketAddr) -> BoxFuture<io::Result<BoxConn>> {
        let server = self.server.clone();
        Box::pin(async move {
            let stream = server
                .dial(CLIENT_KEY, "tcp", &target.to_string())
                .await
                .map_err(io::Error::other)?;
            Ok(Box::new(Compat(stream)) as BoxConn)
        })
    }

    fn live_connections(&self) -> Option<usize> {
        let session = self
            .client_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(session.as_ref().map_or(0, |s| s.stats().connections))
    }
}

/// Runs the plan over the async-std adapter on `flavor`'s executor.
pub fn run(
    flavor: Flavor,
    session: Config,
    echo_child: Option<SocketAddr>,
    plan: &Plan,
) -> io::Result<Vec<RunResult>> {
    let rt = flavor.runtime();
    flavor.block_on(async {
        let targets = Targets {
            source: targets_neutral::source(rt).await?,
            sink: targets_neutral::sink(rt).await?,
            echo: targets_neutral::echo(rt).await?,
            echo_child,
        };
        let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}/connect", listener.local_addr()?);
        let server = Server::with_config(
            flavor.spawner(),
            |req: &http::request::Parts| match req.headers.get("X-Tunnel-ID") {
                Some(id) if id == CLIENT_KEY => Authorization::Allow(CLIENT_KEY.into()),
                _ => Authorization::Deny,
            },
            ServerConfig {
                session: session.clone(),
                ..ServerConfig::default()
            },
        );
        rt.spawn(Box::pin({
            let server = server.clone();
            async move {
                if let Err(e) = server.serve(listener).await {
                    eprintln!("tunnel-bench: server failed: {e}");
                }
            }
        }));
        let client_session = Arc::new(Mutex::new(None));
        let client: Client = ClientBuilder::new(url, flavor.spawner())
            .header("X-Tunnel-ID", CLIENT_KEY)
            .connect_authorizer(|proto, address| {
                proto == "tcp" && address.starts_with("127.0.0.1:")
            })
            .session_config(session)
            .proxy_from_env(false)
            .on_connect({
                let slot = client_session.clone();
                move |handle: &SessionHandle| {
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle.clone());
                }
            })
            .build()
            .map_err(io::Error::other)?;
        rt.spawn(Box::pin({
            let client = client.clone();
            async move {
                client.run().await;
            }
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.has_session(CLIENT_KEY) {
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "the tunnel client did not connect within 10 s",
                ));
            }
            rt.sleep(Duration::from_millis(5)).await;
        }
        let backend = Backend {
            rt,
            tunnel: Arc::new(Tunnel {
                server: server.clone(),
                client_session,
            }),
            plain: Arc::new(PlainTcp),
            targets,
        };
        let results = suite::run(&backend, plan).await;
        client.cancel();
        server.shutdown().await;
        results
    })
}
