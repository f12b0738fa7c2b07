//! One tunneled connection as the session sees it.

use std::time::Instant;

use crate::error::ConnectionError;
use crate::flow::{ReceiveBuffer, SendQueue};

/// Where a connection is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Both directions live.
    Open,
    /// Closed locally and gracefully: queued Data then `Error "EOF"` are
    /// still to go out; received Data is dropped.
    Closing,
    /// Over on the wire (`None`: the peer closed gracefully). Buffered bytes
    /// remain readable until the application releases the connection.
    Finished(Option<ConnectionError>),
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) state: State,
    /// When it was opened or requested, for SyncConnections' grace period.
    pub(crate) opened_at: Instant,
    pub(crate) recv: ReceiveBuffer,
    pub(crate) send: SendQueue,
    /// In the session's round-robin of connections with something to send.
    pub(crate) scheduled: bool,
    /// A write was refused by flow control: a Writable event is owed.
    pub(crate) write_blocked: bool,
    /// Why a Closing connection is closing, when it was not the
    /// application's own close (a graceful session shutdown).
    pub(crate) closed_by: Option<Box<ConnectionError>>,
}

impl Connection {
    pub(crate) fn new(now: Instant) -> Self {
        Connection {
            state: State::Open,
            opened_at: now,
            recv: ReceiveBuffer::default(),
            send: SendQueue::default(),
            scheduled: false,
            write_blocked: false,
            closed_by: None,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The error reads and writes report while Closing.
    pub(crate) fn closing_error(&self) -> ConnectionError {
        self.closed_by
            .as_deref()
            .cloned()
            .unwrap_or(ConnectionError::LocallyClosed)
    }
}
