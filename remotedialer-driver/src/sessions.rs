//! A server's sessions, runtime-neutral: admission of upgrade requests, the
//! registry of client and peer sessions, routing of dials, each session's
//! registration for its lifetime, shutdown and metrics. A server adapter
//! adds the listener, the WebSocket upgrade and a task that polls each
//! session's [`Driver`].

use crate::error::DialError;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_sink::Sink;
use remotedialer_proto::registry::{Registry, Route, forwarded_proto};
use remotedialer_proto::{
    Config, ConfigError, Role, Session, SessionError, SessionIdentity, SessionStats,
};
use tungstenite::{Error as WsError, Message};

use crate::admission::{self, Admission, Authorization, Refusal};
use crate::driver::{ConnectRequest, Driver, RefuseConnects, SessionHandler, Timer};
use crate::handle::SessionHandle;
use crate::metrics::{Metrics, SessionMetrics};
use crate::stream::StreamCore;

/// Decides whether an upgrade request may open a session, and for which
/// client key. Called with the request head (method, URI, headers).
pub type Authorizer = dyn Fn(&http::request::Parts) -> Authorization + Send + Sync;

/// How long a server's shutdown lets sessions flush bytes their streams
/// already wrote before cutting them.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(3);

/// How long a server's shutdown then waits for the cut sessions' tasks.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Told of registry changes an adapter must act on (peering announces its
/// client sessions to peers). Every call is made while the registry lock is
/// held, so whoever reads the registry under that lock (a peer link coming
/// up) sees each change either in the registry or through this observer,
/// never both nor neither, and in order.
pub trait SessionObserver: Send + Sync {
    /// A client session was registered for `key`.
    fn client_added(
        &self,
        registry: &Registry<SessionHandle>,
        key: &str,
        session_key: i64,
        handle: &SessionHandle,
    ) {
        let _ = (registry, key, session_key, handle);
    }

    /// The client session `handle` for `key` was unregistered, and `key`
    /// has no other session on this server.
    fn client_removed(
        &self,
        registry: &Registry<SessionHandle>,
        key: &str,
        session_key: i64,
        handle: &SessionHandle,
    ) {
        let _ = (registry, key, session_key, handle);
    }

    /// The session of peer `peer_id` ended; its announcements are gone.
    fn peer_session_ended(&self, peer_id: &str) {
        let _ = peer_id;
    }
}

/// The sessions of one server.
pub struct ServerSessions {
    config: Config,
    metrics: Option<Arc<Metrics>>,
    observer: Option<Arc<dyn SessionObserver>>,
    registry: Mutex<Registry<SessionHandle>>,
    /// Peer id -> the token that peer must present.
    peer_tokens: Mutex<HashMap<String, String>>,
    /// Every running session, client or peer.
    live: Mutex<HashSet<SessionHandle>>,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for ServerSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSessions")
            .field("clients", &self.list_clients())
            .field("live", &self.live_sessions())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a panic
    // elsewhere does not make it unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ServerSessions {
    /// Sessions created with `config`, recorded into `metrics` if any.
    pub fn new(config: Config, metrics: Option<Arc<Metrics>>) -> Arc<Self> {
        Self::build(config, metrics, None)
    }

    /// Like [`new`](Self::new), telling `observer` of registry changes.
    pub fn with_observer(
        config: Config,
        metrics: Option<Arc<Metrics>>,
        observer: Arc<dyn SessionObserver>,
    ) -> Arc<Self> {
        Self::build(config, metrics, Some(observer))
    }

    fn build(
        config: Config,
        metrics: Option<Arc<Metrics>>,
        observer: Option<Arc<dyn SessionObserver>>,
    ) -> Arc<Self> {
        Arc::new(ServerSessions {
            config,
            metrics,
            observer,
            registry: Mutex::new(Registry::new()),
            peer_tokens: Mutex::new(HashMap::new()),
            live: Mutex::new(HashSet::new()),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// The metrics sessions record into.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// Decides who an upgrade request is ([`admission::admit`] with this
    /// server's peer tokens); refuses everyone with 503 once shutting down.
    pub fn admit(
        &self,
        parts: &http::request::Parts,
        authorizer: &Authorizer,
    ) -> Result<Admission, Refusal> {
        if self.is_shutting_down() {
            return Err(Refusal {
                status: http::StatusCode::SERVICE_UNAVAILABLE,
                body: admission::SHUTTING_DOWN.into(),
            });
        }
        admission::admit(parts, |id| self.peer_token(id), authorizer)
    }

    /// The token peer `peer_id` must present, if it may link.
    pub fn peer_token(&self, peer_id: &str) -> Option<String> {
        lock(&self.peer_tokens).get(peer_id).cloned()
    }

    /// The registry of client and peer sessions, locked. Hold it only
    /// briefly: every session start and end waits for it.
    pub fn registry(&self) -> MutexGuard<'_, Registry<SessionHandle>> {
        lock(&self.registry)
    }

    /// Accepts peer links from server `peer_id` presenting `token`.
    pub fn allow_peer(&self, peer_id: &str, token: &str) {
        lock(&self.peer_tokens).insert(peer_id.to_owned(), token.to_owned());
    }

    /// Stops accepting links from `peer_id`.
    pub fn disallow_peer(&self, peer_id: &str) {
        lock(&self.peer_tokens).remove(peer_id);
    }

    /// True when this server has its own session for `client_key`.
    pub fn has_session(&self, client_key: &str) -> bool {
        lock(&self.registry).has_client(client_key)
    }

    /// The client keys with a session on this server, sorted.
    pub fn list_clients(&self) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.registry)
            .client_keys()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// Sizes of this server's own session for `client_key`, the one
    /// [`open`](Self::open) uses.
    pub fn session_stats(&self, client_key: &str) -> Option<SessionStats> {
        match lock(&self.registry).route(client_key) {
            Some(Route::Local(session)) => Some(session.stats()),
            _ => None,
        }
    }

    /// Opens a connection to `proto/address` through the agent `client_key`:
    /// through this server's own session, or else through a peer that
    /// announced the client. Optimistic, as in Go: a failed remote dial is
    /// the stream's first read error.
    pub fn open(
        &self,
        client_key: &str,
        proto: &str,
        address: &str,
    ) -> Result<StreamCore, DialError> {
        if self.is_shutting_down() {
            return Err(DialError::ShuttingDown);
        }
        let route = lock(&self.registry).route(client_key);
        match route {
            Some(Route::Local(session)) => Ok(session.open(proto, address)?),
            Some(Route::Peer { session, .. }) => {
                Ok(session.open(&forwarded_proto(client_key, proto), address)?)
            }
            None => Err(DialError::NoSession(client_key.to_owned())),
        }
    }

    /// Starts the session of an admitted, upgraded WebSocket and registers
    /// it; it stays registered until the returned [`ServerSession`] is
    /// dropped. The adapter polls the driver to its end, then drops the
    /// guard.
    pub fn start<W, T>(
        self: &Arc<Self>,
        admission: Admission,
        ws: W,
        timer: T,
    ) -> Result<(ServerSession, Driver<W, T>), ConfigError>
    where
        W: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
        T: Timer,
    {
        let role = if admission.is_peer() {
            Role::Peer
        } else {
            Role::Server
        };
        let key = admission.key().to_owned();
        let identity = SessionIdentity {
            client_key: key.clone(),
            session_key: session_key(),
        };
        let session = Session::new(role, identity, self.config.clone(), Instant::now())?;
        let handle_slot = Arc::new(OnceLock::new());
        let handler: Box<dyn SessionHandler> = match &admission {
            Admission::Client(_) => Box::new(RefuseConnects),
            Admission::Peer(id) => Box::new(PeerRoutes {
                sessions: Arc::downgrade(self),
                peer_id: id.clone(),
                handle: handle_slot.clone(),
            }),
        };
        let metrics = SessionMetrics::new(self.metrics.clone(), &key);
        let (handle, driver) = crate::handle::start(session, ws, timer, handler, metrics);
        let _ = handle_slot.set(handle.clone());
        {
            let mut registry = lock(&self.registry);
            match &admission {
                Admission::Client(key) => {
                    registry.add_client(key, handle.clone());
                    if let Some(observer) = &self.observer {
                        let session_key = handle.identity().session_key;
                        observer.client_added(&registry, key, session_key, &handle);
                    }
                }
                Admission::Peer(id) => registry.add_peer(id, handle.clone()),
            }
        }
        lock(&self.live).insert(handle.clone());
        if let Some(m) = &self.metrics {
            m.session_added(&key, admission.is_peer());
        }
        let span = tracing::info_span!("session", client = %key, peer = admission.is_peer());
        tracing::info!(parent: &span, "session started");
        // Shutdown may have begun between admission and registration.
        if self.is_shutting_down() {
            handle.shutdown();
        }
        let guard = ServerSession {
            sessions: self.clone(),
            admission,
            handle,
            span,
        };
        Ok((guard, driver))
    }

    /// Runs the session of an admitted, upgraded WebSocket to its end:
    /// [`start`](Self::start), poll the driver, unregister.
    pub async fn run<W, T>(self: &Arc<Self>, admission: Admission, ws: W, timer: T)
    where
        W: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
        T: Timer,
    {
        match self.start(admission, ws, timer) {
            Ok((session, driver)) => {
                let reason = driver.await;
                session.end(&reason);
            }
            Err(e) => tracing::error!(error = %e, "cannot start session"),
        }
    }

    /// Refuses new sessions and dials, and winds every live session down
    /// without losing data: bytes its streams already wrote are still
    /// delivered, then the session closes. The adapter waits up to
    /// [`DRAIN_DEADLINE`] for its session tasks, then calls
    /// [`shut_down`](Self::shut_down) for the rest (a stream its peer
    /// keeps paused never drains).
    pub fn shut_down_gracefully(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for s in self.live_handles() {
            s.shutdown_gracefully();
        }
    }

    /// Refuses new sessions and dials, and ends every live session now:
    /// each stream gets an error, each agent sees its WebSocket close. The
    /// adapter then waits (up to [`SHUTDOWN_GRACE`]) for its session tasks.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for s in self.live_handles() {
            s.shutdown();
        }
    }

    fn live_handles(&self) -> Vec<SessionHandle> {
        lock(&self.live).iter().cloned().collect()
    }

    /// True once a shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Running sessions, client and peer.
    pub fn live_sessions(&self) -> usize {
        lock(&self.live).len()
    }

    /// Updates the gauges (sessions, connections, paused, buffered) from the
    /// live client sessions; call before encoding the metrics registry.
    pub fn refresh_metrics(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let registry = lock(&self.registry);
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
}

/// One running server session's registration; dropping it unregisters the
/// session.
pub struct ServerSession {
    sessions: Arc<ServerSessions>,
    admission: Admission,
    handle: SessionHandle,
    span: tracing::Span,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("admission", &self.admission)
            .finish()
    }
}

impl ServerSession {
    /// The session's handle.
    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    /// Who opened the session.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Logs the end of the session and unregisters it.
    pub fn end(self, reason: &SessionError) {
        tracing::info!(parent: &self.span, %reason, "session ended");
    }
}

impl Drop for ServerSession {
    fn drop(&mut self) {
        {
            let sessions = &self.sessions;
            let mut registry = lock(&sessions.registry);
            match &self.admission {
                Admission::Client(key) => {
                    if registry.remove_client(key, &self.handle)
                        && let Some(observer) = &sessions.observer
                    {
                        let session_key = self.handle.identity().session_key;
                        observer.client_removed(&registry, key, session_key, &self.handle);
                    }
                }
                Admission::Peer(id) => {
                    registry.remove_peer(&self.handle);
                    if let Some(m) = &sessions.metrics {
                        m.set_peer_remote_clients(id, registry.peer_client_count(id));
                    }
                    if let Some(observer) = &sessions.observer {
                        observer.peer_session_ended(id);
                    }
                }
            }
        }
        lock(&self.sessions.live).remove(&self.handle);
        if let Some(m) = &self.sessions.metrics {
            m.session_removed(self.admission.key(), self.admission.is_peer());
        }
    }
}

/// Go picks a random positive 63-bit session key.
fn session_key() -> i64 {
    (rand::random::<u64>() >> 1) as i64
}

/// Keeps the registry in step with what a peer announces.
struct PeerRoutes {
    sessions: Weak<ServerSessions>,
    peer_id: String,
    handle: Arc<OnceLock<SessionHandle>>,
}

impl SessionHandler for PeerRoutes {
    fn connect_requested(&mut self, request: ConnectRequest) {
        request.stream.reset(crate::dial::CONNECT_NOT_ALLOWED);
    }

    fn remote_client(&mut self, client_key: &str, added: bool) {
        let (Some(sessions), Some(handle)) = (self.sessions.upgrade(), self.handle.get()) else {
            return;
        };
        let mut registry = lock(&sessions.registry);
        if added {
            registry.peer_client_added(handle, client_key);
        } else {
            registry.peer_client_removed(handle, client_key);
        }
        if let Some(m) = &sessions.metrics {
            m.set_peer_remote_clients(&self.peer_id, registry.peer_client_count(&self.peer_id));
        }
    }
}
