//! The tokio backend: a `remotedialer_tokio::Server` and `Client` in this
//! process, joined by a real WebSocket on 127.0.0.1.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use remotedialer_tokio::proto::Config;
use remotedialer_tokio::{
    Authorization, Client, ClientBuilder, Server, ServerConfig, SessionHandle,
};

use super::harness::{Backend, BoxConn, BoxFuture, Dial, Runtime, Targets};
use super::targets;

/// The client key the benchmark's agent connects as.
const CLIENT_KEY: &str = "bench";

/// tokio's spawn and sleep.
struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Plain loopback TCP: the floor.
struct PlainTcp;

impl Dial for PlainTcp {
    fn dial(&self, target: SocketAddr) -> BoxFuture<io::Result<BoxConn>> {
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(target).await?;
            // As the adapter does for the WebSocket and its targets.
            tcp.set_nodelay(true)?;
            Ok(Box::new(tcp) as BoxConn)
        })
    }
}

/// Dials through the tunnel from the server side.
struct Tunnel {
    server: Server,
    /// The client's session, to count the connections it still holds.
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
            Ok(Box::new(stream) as BoxConn)
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

/// A running tokio tunnel; [`TokioTunnel::stop`] ends it.
pub struct TokioTunnel {
    server: Server,
    client: Client,
}

impl TokioTunnel {
    /// Cancels the client and shuts the server down.
    pub async fn stop(self) {
        self.client.cancel();
        self.server.shutdown().await;
    }
}

/// Starts the targets, the server and the client (inside a tokio runtime),
/// and waits (bounded) until the client's session is up.
pub async fn start(
    session: Config,
    echo_child: Option<SocketAddr>,
) -> io::Result<(Backend, TokioTunnel)> {
    let targets = Targets {
        source: targets::source().await?,
        sink: targets::sink().await?,
        echo: targets::echo().await?,
        echo_child,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/connect", listener.local_addr()?);
    let server = Server::with_config(
        |req: &http::request::Parts| match req.headers.get("X-Tunnel-ID") {
            Some(id) if id == CLIENT_KEY => Authorization::Allow(CLIENT_KEY.into()),
            _ => Authorization::Deny,
        },
        ServerConfig {
            session: session.clone(),
            ..ServerConfig::default()
        },
    );
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    let client_session = Arc::new(Mutex::new(None));
    let client = ClientBuilder::new(url)
        .header("X-Tunnel-ID", CLIENT_KEY)
        .connect_authorizer(|proto, address| proto == "tcp" && address.starts_with("127.0.0.1:"))
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
    tokio::spawn({
        let client = client.clone();
        async move { client.run().await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.has_session(CLIENT_KEY) {
        if Instant::now() > deadline {
            return Err(io::Error::other(
                "the tunnel client did not connect within 10 s",
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let backend = Backend {
        rt: &TokioRuntime,
        tunnel: Arc::new(Tunnel {
            server: server.clone(),
            client_session,
        }),
        plain: Arc::new(PlainTcp),
        targets,
    };
    Ok((backend, TokioTunnel { server, client }))
}
