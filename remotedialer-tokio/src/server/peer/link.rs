//! One outgoing peer link: a client-role session from this server to a
//! peer's tunnel URL, kept up with backoff while the peer is configured.
//!
//! Over the link this server announces its client sessions, and serves the
//! peer's `clientKey::proto` connect requests through its own session for
//! that client, bridging the two connections.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use remotedialer_driver::{Bridge, ConnectRequest, PeerEvent, SessionHandle, SessionHandler};
use remotedialer_proto::registry::{Route, split_forwarded_proto};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{PeerConfig, PeerError, PeerIdentity};
use remotedialer_driver::BackoffSchedule;

use crate::client::{Backoff, Client, ClientBuilder};
use crate::server::{PEER_ID_HEADER, PEER_TOKEN_HEADER, ServerInner};

/// How long a stopping link may take to close its session gracefully.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the link task and the rest of the server share about a link.
#[derive(Debug, Default)]
pub(super) struct LinkState {
    /// The established session, while there is one.
    session: Mutex<Option<SessionHandle>>,
    /// Why the last attempt or session failed.
    last_error: Mutex<Option<String>>,
}

impl LinkState {
    pub(super) fn is_connected(&self) -> bool {
        lock(&self.session).as_ref().is_some_and(|s| !s.is_closed())
    }

    pub(super) fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running link: its settings, and how to stop it.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) config: PeerConfig,
    pub(super) state: Arc<LinkState>,
    client: Client,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Link {
    /// Builds the link's client and starts its task on the current tokio
    /// runtime.
    pub(super) fn start(
        server: &Arc<ServerInner>,
        config: PeerConfig,
        identity: &PeerIdentity,
    ) -> Result<Link, PeerError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| PeerError::NoRuntime)?;
        let weak = Arc::downgrade(server);
        let state = Arc::new(LinkState::default());
        let handler_server = weak.clone();
        let hook_server = weak.clone();
        let hook_state = state.clone();
        let hook_peer = config.id.clone();
        let client = ClientBuilder::new(config.url.clone())
            .header(PEER_ID_HEADER, &identity.id)
            .header(PEER_TOKEN_HEADER, &identity.token)
            // Unused: the link's own handler serves connect requests.
            .connect_authorizer(|_, _| false)
            .session_handler(&config.id, move || {
                Box::new(LinkHandler {
                    server: handler_server.clone(),
                })
            })
            .session_config(server.config.session.clone())
            .max_message(server.config.max_message)
            .tls_roots(config.tls_roots.clone())
            // Server-to-server traffic stays inside the cluster (Go's peer
            // dialer uses no proxy either).
            .proxy_from_env(false)
            .on_connect(move |handle| link_up(&hook_server, &hook_peer, &hook_state, handle))
            .build()
            .map_err(|e| PeerError::Invalid {
                id: config.id.clone(),
                reason: e.to_string(),
            })?;
        let (stop, stop_rx) = watch::channel(false);
        let task = runtime.spawn(run(
            weak,
            client.clone(),
            config.id.clone(),
            state.clone(),
            stop_rx,
        ));
        Ok(Link {
            config,
            state,
            client,
            stop,
            task,
        })
    }

    /// Asks the link to end (gracefully, closing its session); returns the
    /// task to await.
    pub(super) fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(true);
        self.client.cancel();
        self.task
    }
}

/// The link's session is up: announce every client session, then every
/// change (under the registry lock, so none is missed or reordered).
fn link_up(server: &Weak<ServerInner>, peer_id: &str, state: &LinkState, handle: &SessionHandle) {
    *lock(&state.session) = Some(handle.clone());
    *lock(&state.last_error) = None;
    let Some(server) = server.upgrade() else {
        return;
    };
    if let Some(m) = &server.config.metrics {
        m.peer_event(peer_id, PeerEvent::Connected);
    }
    tracing::info!(peer = %peer_id, "peer link connected");
    let registry = server.registry();
    server.peering.listen(&registry, handle.clone());
}

/// Keeps one link up until stopped or the server is gone.
async fn run(
    server: Weak<ServerInner>,
    client: Client,
    peer_id: String,
    state: Arc<LinkState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut schedule: Option<(Backoff, BackoffSchedule)> = None;
    loop {
        if stopped(&stop) {
            break;
        }
        let backoff = match server.upgrade() {
            Some(inner) if !inner.is_shutting_down() => {
                if let Some(m) = &inner.config.metrics {
                    m.peer_event(&peer_id, PeerEvent::Attempt);
                }
                inner.peering.backoff()
            }
            _ => break,
        };
        let started = Instant::now();
        let attempt = client.connect_once();
        tokio::pin!(attempt);
        let result = tokio::select! {
            result = &mut attempt => Some(result),
            _ = stop_requested(&mut stop) => {
                // An established session closes gracefully (the client is
                // cancelled too); a handshake in progress is abandoned.
                if state.is_connected() {
                    tokio::time::timeout(STOP_GRACE, &mut attempt).await.ok()
                } else {
                    None
                }
            }
        };
        link_down(&server, &peer_id, &state);
        if let Some(Err(e)) = result {
            tracing::warn!(peer = %peer_id, error = %e, "peer link failed");
            *lock(&state.last_error) = Some(e.to_string());
        }
        if stopped(&stop) {
            break;
        }
        // A changed backoff (set_peer_backoff) starts a new schedule.
        if !schedule
            .as_ref()
            .is_some_and(|(b, _)| same_backoff(b, &backoff))
        {
            schedule = Some((backoff, backoff.schedule()));
        }
        let jittered = schedule
            .as_mut()
            .map_or(backoff.initial, |(_, s)| s.next_delay(started.elapsed()));
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = stop_requested(&mut stop) => break,
        }
    }
}

fn same_backoff(a: &Backoff, b: &Backoff) -> bool {
    (a.initial, a.max, a.healthy_after) == (b.initial, b.max, b.healthy_after)
}

/// Resolves once stop is asked for or the link's owner is gone.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Stop was asked for, or the link's owner is gone.
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// The link's session ended: stop announcing on it.
fn link_down(server: &Weak<ServerInner>, peer_id: &str, state: &LinkState) {
    let Some(handle) = lock(&state.session).take() else {
        return;
    };
    if let Some(server) = server.upgrade() {
        server.peering.unlisten(&handle);
        if let Some(m) = &server.config.metrics {
            m.peer_event(peer_id, PeerEvent::Disconnected);
        }
    }
    tracing::info!(peer = %peer_id, "peer link disconnected");
}

/// Serves the peer's connect requests on a link: `clientKey::proto` is
/// dialed through this server's own session for `clientKey`, never through
/// another peer (no multi-hop, so no loops).
struct LinkHandler {
    server: Weak<ServerInner>,
}

impl SessionHandler for LinkHandler {
    fn connect_requested(&mut self, request: ConnectRequest) {
        let Some((client_key, proto)) = split_forwarded_proto(&request.proto) else {
            // Go's text.
            let text = format!("invalid clientKey/proto: {}", request.proto);
            request.stream.reset(&text);
            return;
        };
        let route = match self.server.upgrade() {
            Some(server) if !server.is_shutting_down() => server.registry().route(client_key),
            _ => {
                request.stream.reset("server is shutting down");
                return;
            }
        };
        let Some(Route::Local(session)) = route else {
            tracing::debug!(client = %client_key, "peer dial for a client without a local session");
            let text = remotedialer_driver::DialError::NoSession(client_key.to_owned());
            request.stream.reset(&text.to_string());
            return;
        };
        match session.open(proto, &request.address) {
            Ok(local) => {
                tracing::debug!(client = %client_key, %proto, address = %request.address, "relaying peer dial");
                tokio::spawn(Bridge::new(request.stream, local));
            }
            Err(e) => request.stream.reset(&e.to_string()),
        }
    }
}

/// Default reconnect delays of peer links: Go retries every 5 s; start
/// faster, and never wait longer.
pub(super) fn default_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(5),
        healthy_after: Duration::from_secs(30),
    }
}
