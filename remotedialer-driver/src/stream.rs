//! The runtime-neutral half of a tunneled stream: poll functions that both
//! adapters wrap in their own `AsyncRead`/`AsyncWrite` traits.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use remotedialer_proto::{ConnId, ConnectionError, ReadError, WriteError};

use crate::shared::{Shared, Wakeups};

/// One tunneled connection: a handle on its state in the session.
///
/// Dropping it closes the connection gracefully (bytes already written are
/// still delivered, then `Error "EOF"`).
pub struct StreamCore {
    shared: Arc<Shared>,
    conn_id: ConnId,
    proto: Box<str>,
    address: Box<str>,
}

impl fmt::Debug for StreamCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCore")
            .field("conn_id", &self.conn_id)
            .field("target", &format_args!("{}/{}", self.proto, self.address))
            .finish()
    }
}

/// The `io::Error` an application sees for a connection error: the peer's
/// text is the message, as Go's `net.Conn` reports it.
pub fn connection_io_error(err: ConnectionError) -> io::Error {
    let kind = match &err {
        ConnectionError::Remote(text) if text.contains("connection refused") => {
            io::ErrorKind::ConnectionRefused
        }
        ConnectionError::LocallyClosed => io::ErrorKind::NotConnected,
        ConnectionError::ClosedByPeer => io::ErrorKind::BrokenPipe,
        ConnectionError::SessionClosed(_) => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, err)
}

fn read_io_error(err: ReadError) -> io::Error {
    match err {
        ReadError::Closed(e) => connection_io_error(e),
        other => io::Error::new(io::ErrorKind::NotConnected, other),
    }
}

fn write_io_error(err: WriteError) -> io::Error {
    match err {
        WriteError::Closed(e) => connection_io_error(e),
        other => io::Error::new(io::ErrorKind::NotConnected, other),
    }
}

fn driver_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "tunnel disconnect: session driver stopped",
    )
}

impl StreamCore {
    pub(crate) fn new(shared: Arc<Shared>, conn_id: ConnId, proto: &str, address: &str) -> Self {
        shared.metrics.connection_added(proto, address);
        StreamCore {
            shared,
            conn_id,
            proto: proto.into(),
            address: address.into(),
        }
    }

    /// The connection id within the session.
    pub fn conn_id(&self) -> ConnId {
        self.conn_id
    }

    /// The protocol dialed, e.g. `tcp`.
    pub fn proto(&self) -> &str {
        &self.proto
    }

    /// The address dialed, e.g. `127.0.0.1:8125`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Copies received bytes into `buf`; `Ok(0)` is the end of the stream.
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut st = self.shared.lock();
        match st.session.read_into(self.conn_id, buf) {
            Ok(n) => {
                let driver = st.driver_if_needed();
                drop(st);
                self.shared.metrics.received(n);
                if let Some(w) = driver {
                    w.wake();
                }
                Poll::Ready(Ok(n))
            }
            Err(ReadError::Blocked) if st.driver_gone => Poll::Ready(Err(driver_gone())),
            Err(ReadError::Blocked) => {
                st.set_read_waker(self.conn_id, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(read_io_error(e))),
        }
    }

    /// Takes up to `max` received bytes without copying; `Ok(None)` is the
    /// end of the stream.
    pub fn poll_read_chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        let mut st = self.shared.lock();
        match st.session.read(self.conn_id, max) {
            Ok(chunk) => {
                let driver = st.driver_if_needed();
                drop(st);
                self.shared
                    .metrics
                    .received(chunk.as_ref().map_or(0, Bytes::len));
                if let Some(w) = driver {
                    w.wake();
                }
                Poll::Ready(Ok(chunk))
            }
            Err(ReadError::Blocked) if st.driver_gone => Poll::Ready(Err(driver_gone())),
            Err(ReadError::Blocked) => {
                st.set_read_waker(self.conn_id, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(read_io_error(e))),
        }
    }

    /// Queues bytes for the peer; waits (without spinning) while the peer has
    /// paused this connection or the send buffers are full.
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        if st.driver_gone {
            drop(st);
            self.shared.metrics.transmit_failed(buf.len());
            return Poll::Ready(Err(driver_gone()));
        }
        match st.session.write(self.conn_id, buf) {
            Ok(n) => {
                let driver = st.take_driver();
                drop(st);
                self.shared.metrics.transmitted(n);
                if let Some(w) = driver {
                    w.wake();
                }
                Poll::Ready(Ok(n))
            }
            Err(WriteError::Blocked) => {
                st.set_write_waker(self.conn_id, cx.waker());
                Poll::Pending
            }
            Err(e) => {
                drop(st);
                self.shared.metrics.transmit_failed(buf.len());
                Poll::Ready(Err(write_io_error(e)))
            }
        }
    }

    /// Closes gracefully: written bytes go out, then `Error "EOF"`. There is
    /// no half-close in remotedialer: reading ends too.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        st.session.close(self.conn_id);
        let mut wake = Wakeups::default();
        wake.push(st.driver_if_needed());
        drop(st);
        wake.wake();
    }

    /// Closes at once, sending `reason` to the peer as the error text and
    /// dropping bytes not yet transmitted.
    pub fn reset(&self, reason: &str) {
        let mut st = self.shared.lock();
        st.session.reset(self.conn_id, reason);
        st.forget_wakers(self.conn_id);
        let driver = st.take_driver();
        drop(st);
        if let Some(w) = driver {
            w.wake();
        }
    }

    /// Unread received bytes.
    pub fn readable_len(&self) -> usize {
        self.shared.lock().session.readable_len(self.conn_id)
    }
}

impl Drop for StreamCore {
    fn drop(&mut self) {
        self.shared
            .metrics
            .connection_removed(&self.proto, &self.address);
        let mut st = self.shared.lock();
        st.session.close(self.conn_id);
        st.forget_wakers(self.conn_id);
        let driver = st.driver_if_needed();
        drop(st);
        if let Some(w) = driver {
            w.wake();
        }
    }
}
