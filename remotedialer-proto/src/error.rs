//! Typed errors, one enum per operation.

use std::time::Duration;

use crate::frame::{ConnId, DecodeError};

/// Why a session ended. Reported once, as
/// [`Event::SessionClosed`](crate::Event::SessionClosed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A message whose header (or session-level payload) could not be decoded.
    #[error("protocol error: {0}")]
    Decode(#[from] DecodeError),
    /// A WebSocket text message: remotedialer speaks binary only.
    #[error("protocol error: text message on a remotedialer session")]
    TextMessage,
    /// A peer announced a client in a form other than `clientKey/sessionKey`.
    #[error("invalid remote session {0:?}")]
    BadAnnouncement(String),
    /// A peer announced more client sessions than allowed.
    #[error("peer announced more than {0} client sessions")]
    TooManyRemoteClients(usize),
    /// No Ping or Pong arrived in time.
    #[error("no ping or pong for {0:?}: peer is gone")]
    KeepaliveTimeout(Duration),
    /// The transport went away (reported by the adapter).
    #[error("websocket closed: {0}")]
    Disconnected(String),
    /// The local application closed the session.
    #[error("session closed")]
    Shutdown,
}

/// Why a connection ended other than by a graceful close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer closed it with this error text (for example a dial failure
    /// such as `dial tcp 127.0.0.1:1: connect: connection refused`).
    #[error("{0}")]
    Remote(String),
    /// The peer's SyncConnections no longer lists it (Go's text).
    #[error("sync from client")]
    Sync,
    /// The peer kept sending past Pause until the per-connection cap.
    #[error("receive buffer overflow: more than {0} unread bytes (the peer ignored Pause)")]
    ReceiveOverflow(usize),
    /// This connection's Data would have exceeded the session's receive budget.
    #[error("session receive budget of {0} bytes exhausted")]
    SessionBudget(usize),
    /// The peer sent a second Connect for a live connection id.
    #[error("peer reused a live connection id")]
    DuplicateId,
    /// The whole session ended.
    #[error("tunnel disconnect: {0}")]
    SessionClosed(SessionError),
    /// The local side closed or reset the connection.
    #[error("connection closed locally")]
    LocallyClosed,
    /// The peer closed the connection gracefully (`Error "EOF"`); there is
    /// no half-close, so nothing more can be written.
    #[error("connection closed by peer")]
    ClosedByPeer,
}

/// Result of [`Session::read`](crate::Session::read) when no bytes are returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Nothing buffered yet; an [`Event::Readable`](crate::Event::Readable)
    /// follows when there is.
    #[error("no data available yet")]
    Blocked,
    /// The connection ended with an error after all buffered bytes were read.
    #[error(transparent)]
    Closed(ConnectionError),
    /// No such connection on this session.
    #[error("connection {0} not found")]
    UnknownConnection(ConnId),
}

/// Result of [`Session::write`](crate::Session::write) when no bytes are taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Flow control: the peer paused this connection or the send buffers are
    /// full. An [`Event::Writable`](crate::Event::Writable) follows.
    #[error("blocked by flow control")]
    Blocked,
    /// The connection has ended.
    #[error(transparent)]
    Closed(ConnectionError),
    /// No such connection on this session.
    #[error("connection {0} not found")]
    UnknownConnection(ConnId),
}

/// Why [`Session::open`](crate::Session::open) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Only server and peer sessions open connections.
    #[error("only the server side of a session opens connections")]
    NotServer,
    /// The session has ended.
    #[error("session closed: {0}")]
    SessionClosed(SessionError),
    /// The target cannot be sent as Go reads it.
    #[error("invalid dial target: {0}")]
    InvalidTarget(&'static str),
    /// The session holds `max_connections` already.
    #[error("too many connections on this session")]
    TooManyConnections,
}

/// Why an announcement could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// Only the client side of a peer link announces clients.
    #[error("only the connecting side of a peer link announces clients")]
    NotClient,
    /// The client key contains `/` or `clientKey/sessionKey` exceeds 100 bytes.
    #[error("client key cannot be announced: {0}")]
    InvalidKey(&'static str),
}
