//! A tunneled connection as a futures-io byte stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use remotedialer_driver::StreamCore;
use remotedialer_proto::ConnId;

/// One connection through the tunnel: `futures::io::AsyncRead +
/// AsyncWrite` (the traits async-std and smol sockets implement), like a
/// `TcpStream` to the target.
///
/// * Reading reports consumption to the session (that is what sends Resume
///   to a paused peer). `Ok(0)` is the peer's graceful close; the peer's
///   error text (for example a failed dial such as `dial tcp
///   127.0.0.1:1: connect: connection refused`) is the `io::Error` message.
/// * A write while the peer has paused the connection waits (no spinning).
/// * `close` ends the connection gracefully: written bytes go out, then
///   `Error "EOF"`. remotedialer has no half-close, so reading ends too.
///   Dropping the stream does the same.
#[derive(Debug)]
pub struct TunnelStream {
    core: StreamCore,
}

impl TunnelStream {
    pub(crate) fn new(core: StreamCore) -> Self {
        TunnelStream { core }
    }

    /// The connection id within its session.
    pub fn conn_id(&self) -> ConnId {
        self.core.conn_id()
    }

    /// The protocol dialed, e.g. `tcp` (Go's `RemoteAddr().Network()`).
    pub fn proto(&self) -> &str {
        self.core.proto()
    }

    /// The address dialed (Go's `RemoteAddr().String()`).
    pub fn address(&self) -> &str {
        self.core.address()
    }

    /// Closes at once, sending `reason` to the peer as the error text and
    /// dropping bytes not yet transmitted.
    pub fn reset(self, reason: &str) {
        self.core.reset(reason);
    }

    /// Received bytes not yet read.
    pub fn readable_len(&self) -> usize {
        self.core.readable_len()
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.core.poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.core.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are already queued in the session; the driver sends
        // them without being asked.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.core.close();
        Poll::Ready(Ok(()))
    }
}
