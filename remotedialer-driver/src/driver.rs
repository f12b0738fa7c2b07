//! The future that drives one session over one WebSocket.
//!
//! One task per session: it reads a batch of the messages that are ready,
//! feeds them to the core under one lock, drains the core's transmits into
//! the WebSocket (fed and flushed until the socket pushes back), wakes the
//! streams whose state changed and re-arms one timer. While the session
//! runs, reading never waits for writing: a WebSocket that cannot take more
//! output leaves messages in the outbox while reads, Pongs, Pause and other
//! connections' data go on being processed. After the end, the last output
//! gets at most [`FLUSH_GRACE`] and the close handshake [`CLOSE_GRACE`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use remotedialer_proto::{Message as Frame, SessionError, Transmit};
use tungstenite::{Error as WsError, Message};

use crate::shared::{Notice, Shared, Wakeups};
use crate::stream::StreamCore;
use crate::trace::DataTrace;

/// Messages read from the WebSocket per lock of the core.
const READ_BATCH: usize = 64;
/// Bytes read per lock of the core (one message always goes through): the
/// core enforces the receive budgets only once it sees a message, so a batch
/// of 64 large messages must not sit here first.
const READ_BYTES: usize = 1 << 20;
/// Messages taken from the core per round before writing them out.
const WRITE_BATCH: usize = 64;
/// Rounds per poll before yielding to other tasks.
const ROUNDS: usize = 32;
/// How long a closing session waits for its Close frame to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long an ended session keeps writing what it had taken from the core
/// (a graceful shutdown's last Data and EOFs) before it gives up on a peer
/// that does not read.
const FLUSH_GRACE: Duration = Duration::from_secs(10);

/// A timer supplied by the runtime. The driver decides expiry by the clock;
/// the timer only has to wake the task at (or after) the deadline.
pub trait Timer: Send + Unpin {
    /// Arms the timer for `deadline`, replacing any earlier deadline.
    fn reset(&mut self, deadline: Instant);
    /// Registers the task to be woken at the deadline; `Ready` once it passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// A connection the server asked the client to open.
#[derive(Debug)]
pub struct ConnectRequest {
    /// Protocol, e.g. `tcp`, or `clientKey::tcp` on a peer link.
    pub proto: String,
    /// Address, e.g. `127.0.0.1:8125`.
    pub address: String,
    /// The connection, already registered: Data that arrives before the dial
    /// finishes is buffered. Refuse with [`StreamCore::reset`].
    pub stream: StreamCore,
}

/// What a driver hands to the application. Called from the driver task:
/// spawn anything that waits.
pub trait SessionHandler: Send + 'static {
    /// Client role: the server asks for a connection.
    fn connect_requested(&mut self, request: ConnectRequest);
    /// Peer role: the peer announced (`added`) or withdrew a client key.
    fn remote_client(&mut self, _client_key: &str, _added: bool) {}
}

/// A handler for sessions that never receive connect requests (servers):
/// any request is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct RefuseConnects;

impl SessionHandler for RefuseConnects {
    fn connect_requested(&mut self, request: ConnectRequest) {
        request
            .stream
            .reset(remotedialer_proto::CONNECT_NOT_ALLOWED);
    }
}

/// Drives one session; resolves with the reason the session ended.
pub struct Driver<W, T> {
    shared: Arc<Shared>,
    ws: W,
    timer: T,
    handler: Box<dyn SessionHandler>,
    inbox: Vec<Message>,
    outbox: VecDeque<Message>,
    need_flush: bool,
    armed: Option<Instant>,
    trace: DataTrace,
    /// Set once the core reported the end; the driver then only closes.
    ended: Option<SessionError>,
    /// A transport failure to report to the core on the next round.
    transport_error: Option<String>,
    /// The WebSocket itself failed or ended: nothing more can be sent on it.
    /// (A Close frame from the peer is a transport end too, but the close
    /// handshake can still be completed.)
    socket_gone: bool,
    close_sent: bool,
    close_deadline: Option<Instant>,
    flush_deadline: Option<Instant>,
    finished: bool,
}

impl<W, T> Driver<W, T>
where
    W: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
    T: Timer,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        ws: W,
        timer: T,
        handler: Box<dyn SessionHandler>,
    ) -> Self {
        let trace = DataTrace::from_env(&shared.lock().session.identity().client_key);
        Driver {
            shared,
            ws,
            timer,
            handler,
            inbox: Vec::new(),
            outbox: VecDeque::new(),
            need_flush: false,
            armed: None,
            trace,
            ended: None,
            transport_error: None,
            socket_gone: false,
            close_sent: false,
            close_deadline: None,
            flush_deadline: None,
            finished: false,
        }
    }

    /// Reads whatever the WebSocket has ready, up to a batch.
    fn read_ready(&mut self, cx: &mut Context<'_>) {
        let mut bytes = 0;
        while self.inbox.len() < READ_BATCH && bytes < READ_BYTES && self.transport_error.is_none()
        {
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    bytes += msg.len();
                    self.inbox.push(msg);
                }
                Poll::Ready(Some(Err(e))) => self.socket_failed(e.to_string()),
                Poll::Ready(None) => self.socket_failed("connection closed".into()),
                Poll::Pending => break,
            }
        }
    }

    /// One pass through the core: inputs in, transmits and events out.
    /// Returns whether anything happened.
    fn step_core(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let timer_fired = self.armed.is_some_and(|at| now >= at);
        if timer_fired {
            self.armed = None;
        }
        let progressed = !self.inbox.is_empty() || timer_fired || self.transport_error.is_some();
        let mut wake = Wakeups::default();
        let mut notices = Vec::new();
        let mut st = self.shared.lock();
        for msg in self.inbox.drain(..) {
            match msg {
                Message::Binary(bytes) => {
                    self.trace.received(&bytes);
                    st.session.handle_message(bytes, now);
                }
                Message::Text(_) => st.session.handle_text_message(),
                Message::Ping(_) | Message::Pong(_) => st.session.handle_keepalive(now),
                Message::Close(_) => {
                    self.transport_error
                        .get_or_insert_with(|| "closed by peer".into());
                }
                Message::Frame(_) => {}
            }
        }
        if let Some(reason) = &self.transport_error {
            st.session.handle_disconnect(reason);
        }
        if timer_fired {
            st.session.handle_timeout(now);
        }
        let before = self.outbox.len();
        while self.outbox.len() < WRITE_BATCH {
            match st.session.poll_transmit() {
                Some(Transmit::Message(bytes)) => {
                    self.trace.sent(&bytes);
                    self.outbox.push_back(Message::Binary(bytes));
                }
                Some(Transmit::Ping) => self.outbox.push_back(Message::Ping(Bytes::new())),
                None => break,
            }
        }
        let ended = st.drain_events(&mut wake, &mut notices);
        st.set_driver(cx.waker());
        let next = st.session.poll_timeout();
        if ended.is_some() {
            st.driver_gone = true;
        }
        drop(st);
        wake.wake();
        let progressed = progressed || self.outbox.len() != before || !notices.is_empty();
        for notice in notices {
            self.dispatch(notice);
        }
        if let Some(err) = ended {
            tracing::debug!(%err, "session ended");
            self.ended = Some(err);
        }
        match next {
            Some(t) if self.armed != Some(t.at) => {
                self.timer.reset(t.at);
                self.armed = Some(t.at);
            }
            Some(_) => {}
            None => self.armed = None,
        }
        progressed
    }

    fn dispatch(&mut self, notice: Notice) {
        match notice {
            Notice::ConnectRequested {
                conn_id,
                proto,
                address,
            } => {
                let stream = StreamCore::new(self.shared.clone(), conn_id, &proto, &address);
                self.handler.connect_requested(ConnectRequest {
                    proto,
                    address,
                    stream,
                });
            }
            Notice::RemoteClient { key, added } => self.handler.remote_client(&key, added),
        }
    }

    /// Feeds the outbox into the WebSocket and flushes once it is empty or
    /// the socket pushes back. Returns whether anything was written.
    ///
    /// A flush that completes after `poll_ready` said Pending means the
    /// socket drained in between: feed again rather than return. The
    /// readiness registration that Pending made may be gone by then
    /// (async-net drops it as soon as a write succeeds), so returning would
    /// leave the outbox waiting for a wake-up that never comes, until
    /// some unrelated event (a keepalive) polls the driver again.
    fn write_out(&mut self, cx: &mut Context<'_>) -> bool {
        let mut wrote = false;
        loop {
            while !self.outbox.is_empty() && self.transport_error.is_none() {
                match Pin::new(&mut self.ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let Some(msg) = self.outbox.pop_front() else {
                            break;
                        };
                        if let Err(e) = Pin::new(&mut self.ws).start_send(msg) {
                            self.socket_failed(e.to_string());
                        }
                        wrote = true;
                        self.need_flush = true;
                    }
                    Poll::Ready(Err(e)) => self.socket_failed(e.to_string()),
                    Poll::Pending => break,
                }
            }
            if !self.need_flush || self.transport_error.is_some() {
                return wrote;
            }
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.need_flush = false;
                    if self.outbox.is_empty() {
                        return wrote;
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.socket_failed(e.to_string());
                    return wrote;
                }
                Poll::Pending => return wrote,
            }
        }
    }

    /// The WebSocket failed or ended: nothing more can be sent on it; the
    /// reason goes to the core on the next round.
    fn socket_failed(&mut self, reason: String) {
        self.socket_gone = true;
        self.transport_error.get_or_insert(reason);
    }

    /// After the end: completes the WebSocket close handshake, waiting at
    /// most [`CLOSE_GRACE`]. Sends Close (or, when the peer closed first,
    /// flushes tungstenite's reply), then reads until the peer's Close or the
    /// end of the stream. Dropping the socket earlier could leave unread
    /// input in it, and closing a TCP socket with unread input sends RST,
    /// which can destroy data the peer has received but not yet read.
    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.socket_gone {
            return Poll::Ready(());
        }
        let now = Instant::now();
        let deadline = *self.close_deadline.get_or_insert(now + CLOSE_GRACE);
        if now >= deadline {
            return Poll::Ready(());
        }
        if !self.close_sent {
            match Pin::new(&mut self.ws).poll_close(cx) {
                Poll::Ready(Ok(())) => self.close_sent = true,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return self.wait_until(deadline, cx),
            }
        }
        // A peer that keeps sending must not hold this task past the
        // deadline: read a batch, then yield.
        for _ in 0..READ_BATCH {
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return self.wait_until(deadline, cx),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// After the end: writes out what was taken from the core before it
    /// ended, for at most [`FLUSH_GRACE`]. Input is read and dropped
    /// meanwhile (the core has ended), so that a peer blocked writing to us
    /// can go on and read. `Ready` once the outbox is out or given up.
    fn poll_flush_last(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.write_out(cx);
        if self.outbox.is_empty() || self.transport_error.is_some() {
            return Poll::Ready(());
        }
        let deadline = *self
            .flush_deadline
            .get_or_insert_with(|| Instant::now() + FLUSH_GRACE);
        if Instant::now() >= deadline {
            tracing::debug!(
                left = self.outbox.len(),
                "peer not reading: last output dropped"
            );
            return Poll::Ready(());
        }
        for _ in 0..READ_BATCH {
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(e))) => self.socket_failed(e.to_string()),
                Poll::Ready(None) => self.socket_failed("connection closed".into()),
                Poll::Pending => return self.wait_until(deadline, cx),
            }
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn wait_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        self.timer.reset(deadline);
        self.timer.poll_expired(cx)
    }

    fn finish(&mut self) -> SessionError {
        self.finished = true;
        self.ended.take().unwrap_or(SessionError::Shutdown)
    }
}

impl<W, T> Future for Driver<W, T>
where
    W: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
    T: Timer,
{
    type Output = SessionError;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionError> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(SessionError::Shutdown);
        }
        for _ in 0..ROUNDS {
            if this.ended.is_some() {
                // Messages taken from the core before it ended (a graceful
                // shutdown's last Data and EOFs) still go out first.
                if this.poll_flush_last(cx).is_pending() {
                    return Poll::Pending;
                }
                return match this.poll_closing(cx) {
                    Poll::Ready(()) => Poll::Ready(this.finish()),
                    Poll::Pending => Poll::Pending,
                };
            }
            this.read_ready(cx);
            let mut progressed = this.step_core(cx, Instant::now());
            if this.ended.is_some() {
                continue;
            }
            progressed |= this.write_out(cx);
            if this.transport_error.is_some() {
                continue;
            }
            if this.armed.is_some() && this.timer.poll_expired(cx).is_ready() {
                progressed = true;
            }
            if !progressed {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<W, T> Drop for Driver<W, T> {
    fn drop(&mut self) {
        // A driver dropped mid-session (its task aborted) must not leave
        // streams waiting for bytes that will never move.
        let mut wake = Wakeups::default();
        let mut notices = Vec::new();
        let mut st = self.shared.lock();
        st.session.handle_disconnect("session driver stopped");
        st.driver_gone = true;
        st.drain_events(&mut wake, &mut notices);
        drop(st);
        wake.wake();
    }
}

/// Decodes a message for logs; never fails.
pub(crate) fn describe(bytes: &Bytes) -> String {
    match Frame::decode(bytes.clone()) {
        Ok(msg) => {
            let body = match &msg.body {
                remotedialer_proto::Body::Data(p) => format!("{} bytes", p.len()),
                other => format!("{other:?}"),
            };
            format!(
                "id={} conn={} {:?} {}",
                msg.id,
                msg.conn_id,
                msg.message_type(),
                body
            )
        }
        Err(e) => format!("undecodable ({e}), {} bytes", bytes.len()),
    }
}
