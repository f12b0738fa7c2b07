//! The server: accepts agents' WebSockets and dials through them.

mod connector;
mod peer;
mod upgrade;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use remotedialer_driver::{
    ConnectRequest, Metrics, RefuseConnects, SessionHandle, SessionHandler, SessionMetrics,
};
use remotedialer_proto::registry::{Registry, Route, forwarded_proto};
use remotedialer_proto::{Config, Role, Session, SessionIdentity, SessionStats};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::WebSocketStream;

pub use connector::{Connector, TunnelConnection};
pub use peer::{DialRoute, PeerConfig, PeerError, PeerStatus};
pub use upgrade::{Authorization, PEER_ID_HEADER, PEER_TOKEN_HEADER};

use crate::error::DialError;
use crate::runtime::TokioTimer;
use crate::stream::TunnelStream;

/// How long [`Server::shutdown`] lets sessions flush written bytes before
/// cutting them.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(3);

/// Decides whether an upgrade request may open a session, and for which
/// client key. Called with the request head (method, URI, headers).
pub type Authorizer = dyn Fn(&http::request::Parts) -> Authorization + Send + Sync;

/// Who opened a session.
#[derive(Debug, Clone)]
pub(crate) enum SessionKind {
    Client(String),
    Peer(String),
}

/// Server settings beyond the authorizer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The protocol core's settings for each session.
    pub session: Config,
    /// Largest incoming WebSocket message accepted.
    pub max_message: usize,
    /// Metrics to record into; `None` records nothing.
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: Config::default(),
            max_message: remotedialer_driver::DEFAULT_MAX_MESSAGE,
            metrics: None,
        }
    }
}

pub(crate) struct ServerInner {
    pub(crate) authorizer: Box<Authorizer>,
    pub(crate) config: ServerConfig,
    registry: Mutex<Registry<SessionHandle>>,
    /// Peer id -> the token that peer must present.
    peer_tokens: Mutex<HashMap<String, String>>,
    shutting_down: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
    active_sessions: AtomicUsize,
    sessions_done: Notify,
    /// Links to peer servers and what they announce.
    pub(crate) peering: peer::Peering,
}

impl ServerInner {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry<SessionHandle>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn peer_token(&self, id: &str) -> Option<String> {
        self.peer_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
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
        Server {
            inner: Arc::new(ServerInner {
                authorizer: Box::new(authorizer),
                config,
                registry: Mutex::new(Registry::new()),
                peer_tokens: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                shutdown_tx,
                active_sessions: AtomicUsize::new(0),
                sessions_done: Notify::new(),
                peering: peer::Peering::default(),
            }),
        }
    }

    /// Accepts peer links from server `peer_id` presenting `token`.
    pub fn allow_peer(&self, peer_id: &str, token: &str) {
        self.inner
            .peer_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer_id.to_owned(), token.to_owned());
    }

    /// Stops accepting links from `peer_id`.
    pub fn disallow_peer(&self, peer_id: &str) {
        self.inner
            .peer_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer_id);
    }

    /// True when this server has its own session for `client_key`.
    pub fn has_session(&self, client_key: &str) -> bool {
        self.inner.registry().has_client(client_key)
    }

    /// The client keys with a session on this server.
    pub fn list_clients(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .inner
            .registry()
            .client_keys()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// Sizes (connections, buffered bytes, pauses) of this server's own
    /// session for `client_key`, the one [`dial`](Self::dial) uses.
    pub fn session_stats(&self, client_key: &str) -> Option<SessionStats> {
        let route = self.inner.registry().route(client_key);
        match route {
            Some(Route::Local(session)) => Some(session.stats()),
            _ => None,
        }
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
        if self.inner.is_shutting_down() {
            return Err(DialError::ShuttingDown);
        }
        let route = self.inner.registry().route(client_key);
        let core = match route {
            Some(Route::Local(session)) => session.open(proto, address)?,
            Some(Route::Peer { session, .. }) => {
                session.open(&forwarded_proto(client_key, proto), address)?
            }
            None => return Err(DialError::NoSession(client_key.to_owned())),
        };
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
        let Some(metrics) = &self.inner.config.metrics else {
            return;
        };
        let registry = self.inner.registry();
        let (mut sessions, mut conns, mut paused, mut buffered) = (0i64, 0i64, 0i64, 0i64);
        for (_, handle) in registry.client_sessions() {
            let stats = handle.stats();
            sessions += 1;
            conns += stats.connections as i64;
            paused += (stats.paused_by_peer + stats.pausing_peer) as i64;
            buffered += (stats.buffered_receive + stats.buffered_send) as i64;
        }
        metrics.sessions.set(sessions);
        metrics.connections.set(conns);
        metrics.paused_connections.set(paused);
        metrics.buffered_bytes.set(buffered);
    }

    /// Stops accepting sessions and ends every live one: bytes streams have
    /// already written are still delivered (then `Error "EOF"`), each open
    /// stream gets an error for further use, each agent and peer sees its
    /// WebSocket close, and the links to peers close. A stream whose peer
    /// keeps it paused is cut after [`DRAIN_DEADLINE`]; then it waits (up to
    /// 5 s) for the session tasks to finish.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let _ = self.inner.shutdown_tx.send(true);
        let links = self.inner.peering.stop_links();
        let sessions: Vec<SessionHandle> = {
            let registry = self.inner.registry();
            registry
                .client_sessions()
                .chain(registry.peer_sessions())
                .map(|(_, s)| s.clone())
                .collect()
        };
        // First flush what every stream was told it wrote, then cut whatever
        // is still stuck (a stream the peer keeps paused).
        for s in &sessions {
            s.shutdown_gracefully();
        }
        let _ = tokio::time::timeout(DRAIN_DEADLINE, self.sessions_finished()).await;
        for s in &sessions {
            s.shutdown();
        }
        let wait = self.sessions_finished();
        let all = async {
            wait.await;
            links.join().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
    }

    /// Resolves once no session task is running.
    async fn sessions_finished(&self) {
        loop {
            let notified = self.inner.sessions_done.notified();
            if self.inner.active_sessions.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Runs one upgraded session to its end.
    pub(crate) async fn run_session<S>(&self, kind: SessionKind, ws: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (role, client_key) = match &kind {
            SessionKind::Client(key) => (Role::Server, key.clone()),
            SessionKind::Peer(id) => (Role::Peer, id.clone()),
        };
        let identity = SessionIdentity {
            client_key: client_key.clone(),
            session_key: session_key(),
        };
        let session = match Session::new(
            role,
            identity,
            self.inner.config.session.clone(),
            Instant::now(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start session");
                return;
            }
        };
        let handle_slot = Arc::new(OnceLock::new());
        let handler: Box<dyn SessionHandler> = match &kind {
            SessionKind::Client(_) => Box::new(RefuseConnects),
            SessionKind::Peer(id) => Box::new(PeerRoutes {
                server: Arc::downgrade(&self.inner),
                peer_id: id.clone(),
                handle: handle_slot.clone(),
            }),
        };
        let metrics = SessionMetrics::new(self.inner.config.metrics.clone(), &client_key);
        let (handle, driver) =
            remotedialer_driver::start(session, ws, TokioTimer::new(), handler, metrics);
        let _ = handle_slot.set(handle.clone());
        let peer = matches!(kind, SessionKind::Peer(_));
        {
            let mut registry = self.inner.registry();
            match &kind {
                SessionKind::Client(key) => {
                    registry.add_client(key, handle.clone());
                    self.inner.peering.client_added(key, &handle);
                }
                SessionKind::Peer(id) => registry.add_peer(id, handle.clone()),
            }
        }
        if let Some(m) = &self.inner.config.metrics {
            m.session_added(&client_key, peer);
        }
        self.inner.active_sessions.fetch_add(1, Ordering::AcqRel);
        let span = tracing::info_span!("session", client = %client_key, peer);
        tracing::info!(parent: &span, "session started");
        if self.inner.is_shutting_down() {
            handle.shutdown();
        }
        let reason = driver.await;
        tracing::info!(parent: &span, %reason, "session ended");
        {
            let mut registry = self.inner.registry();
            match &kind {
                SessionKind::Client(key) => {
                    if registry.remove_client(key, &handle) {
                        self.inner.peering.client_removed(key, &handle);
                    }
                }
                SessionKind::Peer(id) => {
                    registry.remove_peer(&handle);
                    self.inner
                        .peering
                        .peer_session_ended(&self.inner, &registry, id);
                }
            }
        }
        if let Some(m) = &self.inner.config.metrics {
            m.session_removed(&client_key, peer);
        }
        self.inner.active_sessions.fetch_sub(1, Ordering::AcqRel);
        self.inner.sessions_done.notify_waiters();
    }
}

/// Go picks a random positive 63-bit session key.
fn session_key() -> i64 {
    (rand::random::<u64>() >> 1) as i64
}

/// Keeps the registry in step with what a peer announces.
struct PeerRoutes {
    server: std::sync::Weak<ServerInner>,
    peer_id: String,
    handle: Arc<OnceLock<SessionHandle>>,
}

impl SessionHandler for PeerRoutes {
    fn connect_requested(&mut self, request: ConnectRequest) {
        request.stream.reset("connect not allowed");
    }

    fn remote_client(&mut self, client_key: &str, added: bool) {
        let (Some(server), Some(handle)) = (self.server.upgrade(), self.handle.get()) else {
            return;
        };
        let mut registry = server.registry();
        if added {
            registry.peer_client_added(handle, client_key);
        } else {
            registry.peer_client_removed(handle, client_key);
        }
        if let Some(m) = &server.config.metrics {
            m.set_peer_remote_clients(&self.peer_id, registry.peer_client_count(&self.peer_id));
        }
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
