//! What a session reports to the application and what it asks the adapter to
//! transmit.

use std::time::Instant;

use bytes::Bytes;

use crate::error::{ConnectionError, SessionError};
use crate::frame::ConnId;

/// Something the application must act on. Drain with
/// [`Session::poll_event`](crate::Session::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client role: the server asks to open a connection. Dial it, or refuse
    /// with [`Session::reset`](crate::Session::reset). Data for it may
    /// already be arriving; it is buffered.
    ConnectRequested {
        /// The new connection.
        conn_id: ConnId,
        /// Protocol, e.g. `tcp` (on peer links `clientKey::tcp`).
        proto: String,
        /// Address, e.g. `127.0.0.1:8125`.
        address: String,
    },
    /// Bytes arrived on a connection whose receive buffer was empty.
    Readable(ConnId),
    /// A write that returned [`WriteError::Blocked`](crate::WriteError::Blocked)
    /// may now succeed.
    Writable(ConnId),
    /// The connection ended on the wire: `None` for a graceful close by the
    /// peer. Buffered bytes stay readable; release the connection with
    /// [`Session::close`](crate::Session::close) when done.
    Closed {
        /// The connection.
        conn_id: ConnId,
        /// The error, or `None` for a graceful close.
        error: Option<ConnectionError>,
    },
    /// Peer role: the peer can now reach this client key.
    RemoteClientAdded(String),
    /// Peer role: the peer can no longer reach this client key.
    RemoteClientRemoved(String),
    /// The session is over; every connection has received its `Closed`.
    SessionClosed(SessionError),
}

/// Something to put on the WebSocket. Drain with
/// [`Session::poll_transmit`](crate::Session::poll_transmit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A binary message.
    Message(Bytes),
    /// A WebSocket Ping control frame with an empty payload.
    Ping,
}

/// Why the session wants to be woken at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerReason {
    /// Time to send a keepalive Ping.
    Ping,
    /// The keepalive deadline: no Ping or Pong yet means the peer is gone.
    KeepaliveDeadline,
    /// Time to send SyncConnections.
    Sync,
}

impl TimerReason {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TimerReason::Ping => "ping",
            TimerReason::KeepaliveDeadline => "keepalive-deadline",
            TimerReason::Sync => "sync-connections",
        }
    }
}

/// The next instant [`Session::handle_timeout`](crate::Session::handle_timeout)
/// must be called, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// When.
    pub at: Instant,
    /// Why.
    pub reason: TimerReason,
}

/// A snapshot of a session's size, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Connections held, in any state.
    pub connections: usize,
    /// Connections whose peer has paused our sending.
    pub paused_by_peer: usize,
    /// Connections on which we have paused the peer.
    pub pausing_peer: usize,
    /// Received bytes not yet read by the application.
    pub buffered_receive: usize,
    /// Written bytes not yet transmitted.
    pub buffered_send: usize,
}
