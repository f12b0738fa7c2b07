//! The server: accepts agents' WebSockets and dials through them.

mod listen;

use std::sync::Arc;
use std::time::Duration;

use event_listener::Event;
use remotedialer_driver::{Authorization, Metrics, SHUTDOWN_GRACE, ServerSessions};
use remotedialer_proto::{Config, SessionStats};

use crate::error::DialError;
use crate::runtime::{Signal, Spawner, timeout};
use crate::stream::TunnelStream;

pub use remotedialer_driver::{Authorizer, DRAIN_DEADLINE};

/// Server settings beyond the authorizer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The protocol core's settings for each session.
    pub session: Config,
    /// Largest incoming WebSocket message accepted.
    pub max_message: usize,
    /// How long a new connection may take for its TLS handshake, and again
    /// for its upgrade request (each gets this long).
    pub handshake_timeout: Duration,
    /// Metrics to record into; `None` records nothing.
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: Config::default(),
            max_message: remotedialer_driver::DEFAULT_MAX_MESSAGE,
            handshake_timeout: Duration::from_secs(30),
            metrics: None,
        }
    }
}

struct ServerInner {
    authorizer: Box<Authorizer>,
    sessions: Arc<ServerSessions>,
    max_message: usize,
    handshake_timeout: Duration,
    spawner: Spawner,
    /// Fired by shutdown: the listeners stop accepting.
    stop: Signal,
    /// Notified whenever a session ends.
    session_ended: Event,
}

/// A remotedialer server. Cheap to clone; clones share sessions.
///
/// The server spawns one task per accepted connection with its
/// [`Spawner`]; everything else runs in the futures the caller awaits.
///
/// ```no_run
/// use remotedialer_async_std::{Authorization, Server, Spawner};
///
/// # async fn run() -> std::io::Result<()> {
/// let server = Server::new(Spawner::async_std(), |req: &http::request::Parts| {
///     match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
///         Some(id) => Authorization::Allow(id.to_owned()),
///         None => Authorization::Deny,
///     }
/// });
/// let listener = async_net::TcpListener::bind("127.0.0.1:8123").await?;
/// async_std::task::spawn({
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
    inner: Arc<ServerInner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("clients", &self.list_clients())
            .finish()
    }
}

impl Server {
    /// A server with default settings and this authorizer, spawning its
    /// connection tasks with `spawner`.
    pub fn new(
        spawner: Spawner,
        authorizer: impl Fn(&http::request::Parts) -> Authorization + Send + Sync + 'static,
    ) -> Self {
        Self::with_config(spawner, authorizer, ServerConfig::default())
    }

    /// A server with explicit settings.
    pub fn with_config(
        spawner: Spawner,
        authorizer: impl Fn(&http::request::Parts) -> Authorization + Send + Sync + 'static,
        config: ServerConfig,
    ) -> Self {
        Server {
            inner: Arc::new(ServerInner {
                authorizer: Box::new(authorizer),
                sessions: ServerSessions::new(config.session, config.metrics),
                max_message: config.max_message,
                handshake_timeout: config.handshake_timeout,
                spawner,
                stop: Signal::default(),
                session_ended: Event::new(),
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

    /// The client keys with a session on this server, sorted.
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

    /// Updates the gauges (sessions, connections, paused, buffered) from the
    /// live sessions; call before encoding the metrics registry.
    pub fn refresh_metrics(&self) {
        self.inner.sessions.refresh_metrics();
    }

    /// Stops accepting sessions and ends every live one: bytes streams have
    /// already written are still delivered (then `Error "EOF"`), each open
    /// stream gets an error for further use, each agent sees its WebSocket
    /// close. A stream whose peer keeps it paused is cut after
    /// [`DRAIN_DEADLINE`]; then it waits (up to 5 s) for the session tasks
    /// to finish.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.sessions.shut_down_gracefully();
        inner.stop.fire();
        let _ = timeout(DRAIN_DEADLINE, self.sessions_ended()).await;
        inner.sessions.shut_down();
        let _ = timeout(SHUTDOWN_GRACE, self.sessions_ended()).await;
    }

    /// Resolves once no session is running.
    async fn sessions_ended(&self) {
        let inner = &self.inner;
        loop {
            let ended = inner.session_ended.listen();
            if inner.sessions.live_sessions() == 0 {
                return;
            }
            ended.await;
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
