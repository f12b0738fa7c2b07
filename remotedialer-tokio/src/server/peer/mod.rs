//! Peering: server replicas that reach each other's agents.
//!
//! Each server has a peer identity (id, token). For every configured peer it
//! keeps an outgoing *link*: a client-role session to the peer's tunnel URL,
//! authenticated with `X-API-Tunnel-ID`/`X-API-Tunnel-Token`. Over its links
//! a server announces its client sessions (`AddClient`/`RemoveClient`); the
//! peer, which accepted the link as a peer session, records them and dials
//! those clients through the link with proto `clientKey::proto`. The server
//! at the link's origin then dials through its own session for the client
//! and bridges the two connections.
//!
//! A full mesh therefore has two links per pair of servers: each carries
//! the announcements of the server that opened it, and the dials towards
//! that server's clients.

mod link;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use remotedialer_driver::{SessionHandle, SessionObserver};
use remotedialer_proto::registry::{Registry, Route};
use tokio::task::JoinHandle;

use super::Server;
use crate::client::Backoff;
use crate::tls::TlsRoots;

use link::Link;

/// One peer server this server links to, and accepts links from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's tunnel URL (`ws://`, `wss://`, `http://` or `https://`),
    /// e.g. `wss://replica-2.example:8123/connect`.
    pub url: String,
    /// The peer's id (its own [`Server::set_peer_identity`] id).
    pub id: String,
    /// The peer's token: the one it presents when it links to this server.
    pub token: String,
    /// Which certificates to trust for a `wss://` URL. Default: webpki
    /// roots, verified (Go's peers skip verification; use
    /// [`TlsRoots::CustomCa`] for a private CA, and
    /// [`TlsRoots::InsecureSkipVerify`] only in tests).
    pub tls_roots: TlsRoots,
}

impl PeerConfig {
    /// A peer at `url` with id `id` and token `token`, TLS verified against
    /// the webpki roots.
    pub fn new(url: impl Into<String>, id: impl Into<String>, token: impl Into<String>) -> Self {
        PeerConfig {
            url: url.into(),
            id: id.into(),
            token: token.into(),
            tls_roots: TlsRoots::default(),
        }
    }

    /// Which certificates to trust for this peer's `wss://` URL.
    pub fn tls_roots(mut self, roots: TlsRoots) -> Self {
        self.tls_roots = roots;
        self
    }
}

/// Why a peer could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// [`Server::set_peer_identity`] was not called: a link needs this
    /// server's id and token.
    #[error("no peer identity: call Server::set_peer_identity(id, token) before adding peers")]
    NoIdentity,
    /// The peer's settings are unusable (bad URL, header value or CA).
    #[error("invalid peer {id:?}: {reason}")]
    Invalid {
        /// The peer id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The peer id is this server's own id.
    #[error("peer {0:?} is this server's own id")]
    SelfPeer(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// Links are tokio tasks: call from within a tokio runtime.
    #[error("peers must be added from within a tokio runtime")]
    NoRuntime,
}

/// Where [`Server::dial`] would send a dial for a client key right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialRoute {
    /// Through this server's own session with the client.
    Local,
    /// Through the peer with this id, which announced the client.
    Peer(String),
}

/// The state of one configured peer, for health checks and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer id.
    pub id: String,
    /// The peer's tunnel URL.
    pub url: String,
    /// Whether this server's link to the peer is up.
    pub connected: bool,
    /// Why the link's last attempt or session failed, until it connects.
    pub last_error: Option<String>,
    /// Whether the peer's own link to this server is up.
    pub inbound: bool,
    /// Client keys the peer announces over its link to this server.
    pub announced_clients: usize,
}

/// This server's id and token, sent on every link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    id: String,
    token: String,
}

/// Peering state of one server.
#[derive(Debug)]
pub(crate) struct Peering {
    identity: Mutex<Option<PeerIdentity>>,
    backoff: Mutex<Backoff>,
    links: Mutex<HashMap<String, Link>>,
    /// Established link sessions; every client change is announced on each.
    listeners: Mutex<Vec<SessionHandle>>,
}

impl Default for Peering {
    fn default() -> Self {
        Peering {
            identity: Mutex::new(None),
            backoff: Mutex::new(link::default_backoff()),
            links: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Link tasks being stopped.
#[derive(Debug, Default)]
pub(crate) struct StoppingLinks(Vec<JoinHandle<()>>);

impl StoppingLinks {
    /// Waits until every stopped link has closed its session.
    pub(crate) async fn join(self) {
        for task in self.0 {
            let _ = task.await;
        }
    }
}

impl Peering {
    pub(super) fn backoff(&self) -> Backoff {
        *lock(&self.backoff)
    }

    fn announce(&self, client_key: &str, session_key: i64, added: bool) {
        let listeners = lock(&self.listeners);
        for link in listeners.iter().filter(|l| !l.is_closed()) {
            if let Err(e) = link.announce_client(client_key, session_key, added) {
                tracing::warn!(client = %client_key, error = %e, "cannot announce client to peer");
            }
        }
    }

    /// A link session is up: announce every client session on it, then
    /// every change. Called with the registry locked.
    fn listen(&self, registry: &Registry<SessionHandle>, link: SessionHandle) {
        for (client_key, session) in registry.client_sessions() {
            let session_key = session.identity().session_key;
            if let Err(e) = link.announce_client(client_key, session_key, true) {
                tracing::warn!(client = %client_key, error = %e, "cannot announce client to peer");
            }
        }
        lock(&self.listeners).push(link);
    }

    fn unlisten(&self, link: &SessionHandle) {
        lock(&self.listeners).retain(|l| l != link);
    }

    /// Stops every link (on server shutdown); later adds are refused by the
    /// server's shutdown flag.
    pub(crate) fn stop_links(&self) -> StoppingLinks {
        let links: Vec<Link> = lock(&self.links).drain().map(|(_, l)| l).collect();
        StoppingLinks(links.into_iter().map(Link::stop).collect())
    }
}

/// Announces client sessions on every link. The server's sessions call it
/// with the registry locked, which orders announcements with links coming
/// up (`Peering::listen`).
impl SessionObserver for Peering {
    fn client_added(
        &self,
        _registry: &Registry<SessionHandle>,
        key: &str,
        session_key: i64,
        _handle: &SessionHandle,
    ) {
        self.announce(key, session_key, true);
    }

    fn client_removed(
        &self,
        _registry: &Registry<SessionHandle>,
        key: &str,
        session_key: i64,
        _handle: &SessionHandle,
    ) {
        self.announce(key, session_key, false);
    }
}

impl Drop for Peering {
    fn drop(&mut self) {
        // The server is gone: nothing is left to announce or relay.
        for (_, link) in lock(&self.links).drain() {
            drop(link.stop());
        }
    }
}

impl Server {
    /// Sets this server's peer identity: the id and token it presents on
    /// every link to a peer (`X-API-Tunnel-ID` / `X-API-Tunnel-Token`). Each
    /// peer must list this server with the same id and token (its
    /// [`add_peer`](Self::add_peer)). Changing it restarts existing links.
    pub fn set_peer_identity(&self, id: &str, token: &str) -> Result<(), PeerError> {
        if id.is_empty() || token.is_empty() {
            return Err(PeerError::Invalid {
                id: id.to_owned(),
                reason: "this server's peer id and token must not be empty".into(),
            });
        }
        let identity = PeerIdentity {
            id: id.to_owned(),
            token: token.to_owned(),
        };
        let peering = &self.inner.peering;
        let mut current = lock(&peering.identity);
        if current.as_ref() == Some(&identity) {
            return Ok(());
        }
        *current = Some(identity.clone());
        drop(current);
        let configs: Vec<PeerConfig> = lock(&peering.links)
            .values()
            .map(|l| l.config.clone())
            .collect();
        for config in configs {
            let link = Link::start(&self.inner, config, &identity)?;
            self.install_link(link);
        }
        Ok(())
    }

    /// Reconnect delays of peer links (default: from 500 ms doubling to 5 s,
    /// with jitter). Applies from each link's next attempt.
    pub fn set_peer_backoff(&self, backoff: Backoff) {
        *lock(&self.inner.peering.backoff) = backoff;
    }

    /// Adds peer server `id` at `url` (Go's `AddPeer`): keeps a link to it,
    /// announcing this server's clients and relaying its dials to them, and
    /// accepts its link when it presents `token`. TLS is verified against
    /// the webpki roots; see [`add_peer_with`](Self::add_peer_with) for a
    /// private CA.
    ///
    /// Adding a peer again with the same settings does nothing; a new URL or
    /// token restarts the link. Requires
    /// [`set_peer_identity`](Self::set_peer_identity) first, and a tokio
    /// runtime.
    ///
    /// ```no_run
    /// # use remotedialer_tokio::{Authorization, Server};
    /// # async fn run() -> Result<(), remotedialer_tokio::PeerError> {
    /// let server = Server::new(|_: &http::request::Parts| Authorization::Deny);
    /// server.set_peer_identity("a", "token-a")?;
    /// server.add_peer("ws://replica-b:8123/connect", "b", "token-b")?;
    /// server.add_peer("ws://replica-c:8123/connect", "c", "token-c")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn add_peer(&self, url: &str, id: &str, token: &str) -> Result<(), PeerError> {
        self.add_peer_with(PeerConfig::new(url, id, token))
    }

    /// [`add_peer`](Self::add_peer) with every setting, e.g. the CA of a
    /// `wss://` peer.
    pub fn add_peer_with(&self, config: PeerConfig) -> Result<(), PeerError> {
        if self.inner.is_shutting_down() {
            return Err(PeerError::ShuttingDown);
        }
        if config.id.is_empty() || config.token.is_empty() {
            return Err(PeerError::Invalid {
                id: config.id,
                reason: "peer id and token must not be empty".into(),
            });
        }
        let identity = lock(&self.inner.peering.identity)
            .clone()
            .ok_or(PeerError::NoIdentity)?;
        if identity.id == config.id {
            return Err(PeerError::SelfPeer(config.id));
        }
        let (unchanged, token_changed) = match lock(&self.inner.peering.links).get(&config.id) {
            Some(link) => (link.config == config, link.config.token != config.token),
            None => (false, false),
        };
        if unchanged {
            return Ok(());
        }
        tracing::info!(peer = %config.id, url = %config.url, "adding peer");
        let (id, token) = (config.id.clone(), config.token.clone());
        let link = Link::start(&self.inner, config, &identity)?;
        self.allow_peer(&id, &token);
        if token_changed {
            // Its link to us was accepted with the old token.
            self.close_peer_sessions(&id);
        }
        self.install_link(link);
        Ok(())
    }

    /// Removes peer `id` (Go's `RemovePeer`): closes the link to it, stops
    /// accepting its links and closes the one it has open, so routes through
    /// it disappear.
    pub fn remove_peer(&self, id: &str) {
        let link = lock(&self.inner.peering.links).remove(id);
        if let Some(link) = link {
            tracing::info!(peer = %id, "removing peer");
            drop(link.stop());
        }
        self.disallow_peer(id);
        self.close_peer_sessions(id);
    }

    /// The configured peers and the state of their links, sorted by id.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let mut peers: Vec<PeerStatus> = lock(&self.inner.peering.links)
            .values()
            .map(|l| PeerStatus {
                id: l.config.id.clone(),
                url: l.config.url.clone(),
                connected: l.state.is_connected(),
                last_error: l.state.last_error(),
                inbound: false,
                announced_clients: 0,
            })
            .collect();
        let registry = self.inner.registry();
        for p in &mut peers {
            p.inbound = registry.peer_sessions().any(|(id, _)| id == p.id);
            p.announced_clients = registry.peer_client_count(&p.id);
        }
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        peers
    }

    /// Where a dial for `client_key` would go now: this server's own
    /// session, a peer that announced the client, or nowhere (`None`).
    pub fn dial_route(&self, client_key: &str) -> Option<DialRoute> {
        match self.inner.registry().route(client_key)? {
            Route::Local(_) => Some(DialRoute::Local),
            Route::Peer { peer_id, .. } => Some(DialRoute::Peer(peer_id)),
        }
    }

    /// Keeps a started link, stopping the one it replaces.
    fn install_link(&self, link: Link) {
        let old = lock(&self.inner.peering.links).insert(link.config.id.clone(), link);
        if let Some(old) = old {
            drop(old.stop());
        }
    }

    fn close_peer_sessions(&self, id: &str) {
        let sessions: Vec<SessionHandle> = self
            .inner
            .registry()
            .peer_sessions()
            .filter(|(peer, _)| *peer == id)
            .map(|(_, s)| s.clone())
            .collect();
        for s in sessions {
            s.shutdown();
        }
    }
}
