//! The application's handle on a running session.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use futures_core::Stream;
use futures_sink::Sink;
use remotedialer_proto::{AnnounceError, OpenError, Session, SessionIdentity, SessionStats};
use tungstenite::{Error as WsError, Message};

use crate::driver::{Driver, SessionHandler, Timer};
use crate::metrics::SessionMetrics;
use crate::shared::{Shared, Wakeups};
use crate::stream::StreamCore;

/// Starts a session over an established WebSocket: returns the handle the
/// application keeps and the driver future the runtime must spawn.
pub fn start<W, T>(
    session: Session,
    ws: W,
    timer: T,
    handler: Box<dyn SessionHandler>,
    metrics: SessionMetrics,
) -> (SessionHandle, Driver<W, T>)
where
    W: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
    T: Timer,
{
    let shared = Shared::new(session, metrics);
    let driver = Driver::new(shared.clone(), ws, timer, handler);
    (SessionHandle { shared }, driver)
}

/// A cheap, clonable handle on one session. Equal handles name the same
/// session.
#[derive(Clone)]
pub struct SessionHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("SessionHandle")
            .field("client_key", &st.session.identity().client_key)
            .field("session_key", &st.session.identity().session_key)
            .field("role", &st.session.role())
            .finish()
    }
}

impl PartialEq for SessionHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for SessionHandle {}

impl Hash for SessionHandle {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.shared).hash(state);
    }
}

impl SessionHandle {
    /// Opens a connection to `proto/address` through the client. Returns at
    /// once (the open is optimistic, as in Go): a failed remote dial shows up
    /// as the stream's first read error.
    pub fn open(&self, proto: &str, address: &str) -> Result<StreamCore, OpenError> {
        let mut st = self.shared.lock();
        let conn_id = st.session.open(proto, address, Instant::now())?;
        let driver = st.take_driver();
        drop(st);
        if let Some(w) = driver {
            w.wake();
        }
        Ok(StreamCore::new(
            self.shared.clone(),
            conn_id,
            proto,
            address,
        ))
    }

    /// Ends the session: every stream gets an error, the driver sends a
    /// WebSocket Close and resolves.
    pub fn shutdown(&self) {
        let mut st = self.shared.lock();
        st.session.shutdown();
        let mut wake = Wakeups::default();
        wake.push(st.take_driver());
        drop(st);
        wake.wake();
    }

    /// Ends the session without losing written bytes: every stream is closed
    /// gracefully (what was written still goes out, then `Error "EOF"`) and
    /// gets an error for further use; the session ends once flushed. A stream
    /// the peer keeps paused can hold this up, so follow with
    /// [`shutdown`](Self::shutdown) after a deadline.
    pub fn shutdown_gracefully(&self) {
        let mut st = self.shared.lock();
        st.session.shutdown_gracefully();
        let mut wake = Wakeups::default();
        wake.push(st.take_driver());
        drop(st);
        wake.wake();
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        let st = self.shared.lock();
        st.session.is_closed() || st.driver_gone
    }

    /// The identity the session was created with.
    pub fn identity(&self) -> SessionIdentity {
        self.shared.lock().session.identity().clone()
    }

    /// Sizes, for metrics.
    pub fn stats(&self) -> SessionStats {
        self.shared.lock().session.stats()
    }

    /// Client side of a peer link: announces that `client_key` is reachable
    /// here (`added`) or no longer is.
    pub fn announce_client(
        &self,
        client_key: &str,
        session_key: i64,
        added: bool,
    ) -> Result<(), AnnounceError> {
        let mut st = self.shared.lock();
        st.session.announce_client(client_key, session_key, added)?;
        let driver = st.take_driver();
        drop(st);
        if let Some(w) = driver {
            w.wake();
        }
        Ok(())
    }

    /// Peer side: the client keys the peer announced.
    pub fn remote_clients(&self) -> Vec<String> {
        self.shared
            .lock()
            .session
            .remote_clients()
            .map(str::to_owned)
            .collect()
    }

    /// Peer side: whether the peer announced `client_key`.
    pub fn has_remote_client(&self, client_key: &str) -> bool {
        self.shared.lock().session.has_remote_client(client_key)
    }
}
