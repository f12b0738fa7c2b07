//! The server: accepts agents' WebSockets and dials through them.

mod connector;
mod peer;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use remotedialer_driver::admission::Admission;
use remotedialer_driver::{Metrics, SHUTDOWN_GRACE, ServerSessions, SessionHandle};
use remotedialer_proto::registry::Registry;
use remotedialer_proto::{Config, SessionStats};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::WebSocketStream;

pub use connector::{Connector, TunnelConnection};
pub use peer::{DialRoute, PeerConfig, PeerError, PeerStatus};
pub use remotedialer_driver::{Authorizer, DRAIN_DEADLINE};
pub use upgrade::{Authorization, PEER_ID_HEADER, PEER_TOKEN_HEADER};

use crate::error::DialError;
use crate::runtime::TokioTimer;
use crate::stream::TunnelStream;

/// Server settings beyond the authorizer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The protocol core's settings for each session.
    pub session: Config,
    /// Largest incoming WebSocket message accepted.
    pub max_message: usize,
    /// Metrics to record into; `None` records nothing.
    pub metrics: Option<Arc<Metrics>>,
    /// [`Server::serve`] and [`Server::serve_tls`]: how long a new
    /// connection may take to finish its TLS handshake, and again to send
    /// its request head (each gets this long). A client that connects and stays silent is dropped after this
    /// instead of holding a task and a socket for ever.
    pub handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: Config::default(),
            max_message: remotedialer_driver::DEFAULT_MAX_MESSAGE,
            metrics: None,
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

pub(crate) struct ServerInner {
    pub(crate) authorizer: Box<Authorizer>,
    pub(crate) config: ServerConfig,
    /// Admission, the registry, routing and shutdown, shared with the
    /// async-std adapter.
    pub(crate) sessions: Arc<ServerSessions>,
    shutdown_tx: watch::Sender<bool>,
    /// Notified whenever a session task ends.
    sessions_done: Notify,
    /// Links to peer servers and what they announce; also told of every
    /// client session coming and going.
    pub(crate) peering: Arc<peer::Peering>,
}

impl ServerInner {
    pub(crate) fn registry(&self) -> std::sync::MutexGuard<'_, Registry<SessionHandle>> {
        self.sessions.registry()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.sessions.is_shutting_down()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    pub(crate) fn websocket_config(&self) -> tungstenite::protocol::WebSocketConfig {
        remotedialer_driver::websocket_config(self.config.max_message)
    }
}

/// A remotedialer server. Cheap to clone; clones share sessions.
///
/// ```no_run
/// use remotedialer_tokio::{Authorization, Server};
///
/// # async fn run() -> std::io::Result<()> {
/// let server = Server::new(|req: &http::request::Parts| {
///     match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
///         Some(id) => Authorization::Allow(id.to_owned()),
///         None => Authorization::Deny,
///     }
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8123").await?;
/// tokio::spawn({
///     let server = server.clone();
///     async move { server.serve(listener).await }
/// });
/// // Later, once agent "foo" is connected:
/// let stream = server.dial("foo", "tcp", "127.0.0.1:8125").await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<ServerInner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("clients", &self.list_clients())
            .finish()
    }
}

impl Server {
    /// A server with default settings and this authorizer.
    pub fn new(
        authorizer: impl Fn(&http::request::Parts) -> Authorization + Send + Sync + 'static,
    ) -> Self {
        Self::with_config(authorizer, ServerConfig::default())
    }

    /// A server with explicit settings.
    pub fn with_config(
        authorizer: impl Fn(&http::request::Parts) -> Authorization + Send + Sync + 'static,
        config: ServerConfig,
    ) -> Self {
        let (shutdown_tx, _) = watch::channel(false);
        let peering = Arc::new(peer::Peering::default());
        let sessions = ServerSessions::with_observer(
            config.session.clone(),
            config.metrics.clone(),
            peering.clone(),
        );
        Server {
            inner: Arc::new(ServerInner {
                authorizer: Box::new(authorizer),
                config,
                sessions,
                shutdown_tx,
                sessions_done: Notify::new(),
                peering,
            }),
        }
    }

    /// Accepts peer links from server `peer_id` presenting `token`.
    pub fn allow_peer(&self, peer_id: &str, token: &str) {
        self.inner.sessions.allow_peer(peer_id, token);
    }

    /// Stops accepting links from `peer_id`.
    pub fn disallow_peer(&self, peer_id: &str) {
        self.inner.sessions.disallow_peer(peer_id);
    }

    /// True when this server has its own session for `client_key`.
    pub fn has_session(&self, client_key: &str) -> bool {
        self.inner.sessions.has_session(client_key)
    }

    /// The client keys with a session on this server.
    pub fn list_clients(&self) -> Vec<String> {
        self.inner.sessions.list_clients()
    }

    /// Sizes (connections, buffered bytes, pauses) of this server's own
    /// session for `client_key`, the one [`dial`](Self::dial) uses.
    pub fn session_stats(&self, client_key: &str) -> Option<SessionStats> {
        self.inner.sessions.session_stats(client_key)
    }

    /// A dialer bound to one client key.
    pub fn dialer(&self, client_key: &str) -> Dialer {
        Dialer {
            server: self.clone(),
            client_key: client_key.to_owned(),
        }
    }

    /// Opens a connection to `proto/address` (e.g. `tcp`, `10.0.0.5:6443`)
    /// through the agent `client_key`: through this server's own session, or
    /// else through a peer server that announced the client.
    ///
    /// The open is optimistic, as in Go: this returns at once and a failed
    /// remote dial shows up as the stream's first read error.
    pub async fn dial(
        &self,
        client_key: &str,
        proto: &str,
        address: &str,
    ) -> Result<TunnelStream, DialError> {
        let core = self.inner.sessions.open(client_key, proto, address)?;
        Ok(TunnelStream::new(core))
    }

    /// A `tower::Service<Uri>` that connects through `client_key`, for a
    /// `hyper_util` client (this is how Rancher talks to a cluster's API).
    pub fn connector(&self, client_key: &str) -> Connector {
        Connector::new(self.dialer(client_key))
    }

    /// Updates the gauges (sessions, connections, paused, buffered) from the
    /// live sessions; call before encoding the metrics registry.
    pub fn refresh_metrics(&self) {
        self.inner.sessions.refresh_metrics();
    }

    /// Stops accepting sessions and ends every live one: bytes streams have
    /// already written are still delivered (then `Error "EOF"`), each open
    /// stream gets an error for further use, each agent and peer sees its
    /// WebSocket close, and the links to peers close. A stream whose peer
    /// keeps it paused is cut after [`DRAIN_DEADLINE`]; then it waits (up to
    /// 5 s) for the session tasks to finish.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        // First flush what every stream was told it wrote, then cut whatever
        // is still stuck (a stream the peer keeps paused).
        inner.sessions.shut_down_gracefully();
        // `send` drops the value when no `serve` is subscribed; a `serve`
        // started after shutdown must see it.
        inner.shutdown_tx.send_replace(true);
        let links = inner.peering.stop_links();
        let _ = tokio::time::timeout(DRAIN_DEADLINE, self.sessions_finished()).await;
        inner.sessions.shut_down();
        let all = async {
            self.sessions_finished().await;
            links.join().await;
        };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, all).await;
    }

    /// Resolves once no session task is running.
    async fn sessions_finished(&self) {
        loop {
            let notified = self.inner.sessions_done.notified();
            if self.inner.sessions.live_sessions() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Runs one upgraded session to its end.
    pub(crate) async fn run_session<S>(&self, admission: Admission, ws: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let timer = TokioTimer::new();
        self.inner.sessions.run(admission, ws, timer).await;
        self.inner.sessions_done.notify_waiters();
    }
}

/// Dials through one client key; Go's `Dialer`.
#[derive(Clone, Debug)]
pub struct Dialer {
    server: Server,
    client_key: String,
}

impl Dialer {
    /// The client key this dialer goes through.
    pub fn client_key(&self) -> &str {
        &self.client_key
    }

    /// Opens `proto/address` through the client; see [`Server::dial`].
    pub async fn dial(&self, proto: &str, address: &str) -> Result<TunnelStream, DialError> {
        self.server.dial(&self.client_key, proto, address).await
    }
}
