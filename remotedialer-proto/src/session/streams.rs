//! The data path: application writes and reads, and draining transmits.

use bytes::{BufMut, Bytes};

use super::Session;
use crate::connection::State;
use crate::error::{ConnectionError, ReadError, WriteError};
use crate::event::{Event, Transmit};
use crate::flow::{Outgoing, Signal};
use crate::frame::{self, Body, ConnId, Message, MessageType};

impl Session {
    /// Queues bytes for a connection; returns how many were taken (possibly
    /// fewer than offered). They go out as Data messages of at most
    /// `max_data_message` bytes, behind any control message.
    ///
    /// [`WriteError::Blocked`] means flow control: the peer paused this
    /// connection or the send buffers are full; an [`Event::Writable`]
    /// follows when a write may succeed.
    pub fn write(&mut self, conn_id: ConnId, data: &[u8]) -> Result<usize, WriteError> {
        let (max_conn, max_session) = (
            self.config.max_connection_send_buffer,
            self.config.max_session_send_buffer,
        );
        let send_total = self.send_total;
        let conn = self
            .conns
            .get_mut(&conn_id)
            .ok_or(WriteError::UnknownConnection(conn_id))?;
        match &conn.state {
            State::Open => {}
            State::Closing => return Err(WriteError::Closed(conn.closing_error())),
            State::Finished(None) => {
                return Err(WriteError::Closed(ConnectionError::ClosedByPeer));
            }
            State::Finished(Some(e)) => return Err(WriteError::Closed(e.clone())),
        }
        if data.is_empty() {
            return Ok(0);
        }
        let conn_room = max_conn.saturating_sub(conn.send.len());
        let session_room = max_session.saturating_sub(send_total);
        if conn.send.paused_by_peer() || conn_room == 0 || session_room == 0 {
            conn.write_blocked = true;
            if session_room == 0 {
                self.waiting_for_budget.insert(conn_id);
            }
            return Err(WriteError::Blocked);
        }
        let taken = data.len().min(conn_room).min(session_room);
        let Some(data) = data.get(..taken) else {
            return Err(WriteError::Blocked);
        };
        for chunk in data.chunks(self.config.max_data_message) {
            let msg_id = self.take_message_id();
            let len = frame::header_len(msg_id, conn_id, MessageType::Data) + chunk.len();
            self.scratch.reserve(len);
            frame::put_header(&mut self.scratch, msg_id, conn_id, MessageType::Data);
            self.scratch.put_slice(chunk);
            let bytes = self.scratch.split().freeze();
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.send.push(Outgoing::Data(bytes, chunk.len()));
            }
        }
        self.send_total += taken;
        self.schedule(conn_id);
        Ok(taken)
    }

    /// Takes up to `max` received bytes of a connection, as a slice of the
    /// received message (no copy). `Ok(None)` is the end of the stream after
    /// a graceful close by the peer. With `max == 0` and bytes waiting the
    /// chunk is empty (the stream has not ended, and nothing blocks).
    ///
    /// Reading is what lets a paused peer go on: once the unread bytes fall
    /// below `resume_threshold` a Resume is queued.
    pub fn read(&mut self, conn_id: ConnId, max: usize) -> Result<Option<Bytes>, ReadError> {
        let resume_below = self.config.resume_threshold;
        let conn = self
            .conns
            .get_mut(&conn_id)
            .ok_or(ReadError::UnknownConnection(conn_id))?;
        if max == 0 && !conn.recv.is_empty() {
            // Nothing can be taken, but unread bytes mean the stream has not
            // ended, and a Blocked would never be followed by Readable.
            return Ok(Some(Bytes::new()));
        }
        let popped = if max > 0 {
            conn.recv.pop(max, resume_below)
        } else {
            None
        };
        if let Some((chunk, signal)) = popped {
            let resume = signal == Signal::Resume && conn.is_open();
            self.received_total -= chunk.len();
            if resume {
                let id = self.take_message_id();
                self.push_control(
                    Message {
                        id,
                        conn_id,
                        body: Body::Resume,
                    },
                    false,
                );
            }
            return Ok(Some(chunk));
        }
        match &conn.state {
            State::Open => Err(ReadError::Blocked),
            State::Finished(None) => Ok(None),
            State::Finished(Some(e)) => Err(ReadError::Closed(e.clone())),
            State::Closing => Err(ReadError::Closed(conn.closing_error())),
        }
    }

    /// Copies received bytes into `buf`, as many as are buffered and fit.
    /// `Ok(0)` with a non-empty `buf` is the end of the stream.
    pub fn read_into(&mut self, conn_id: ConnId, buf: &mut [u8]) -> Result<usize, ReadError> {
        let mut filled = 0;
        while filled < buf.len() {
            let Some(dst) = buf.get_mut(filled..) else {
                break;
            };
            match self.read(conn_id, dst.len()) {
                Ok(Some(chunk)) => {
                    if let Some(dst) = dst.get_mut(..chunk.len()) {
                        dst.copy_from_slice(&chunk);
                    }
                    filled += chunk.len();
                }
                Ok(None) => break,
                Err(e) if filled == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(filled)
    }

    /// Received bytes of a connection not yet read.
    pub fn readable_len(&self, conn_id: ConnId) -> usize {
        self.conns.get(&conn_id).map_or(0, |c| c.recv.len())
    }

    /// True when [`poll_transmit`](Self::poll_transmit) may return something;
    /// adapters use it to decide whether to wake the task that writes.
    pub fn wants_transmit(&self) -> bool {
        self.closed.is_none()
            && (self.timers.ping_due || !self.control.is_empty() || !self.scheduled.is_empty())
    }

    /// The next thing to put on the WebSocket: a due Ping first, then control
    /// messages (Connect, Pause, Resume, Error, announcements, sync), then
    /// Data round-robin across connections, one message per turn, skipping
    /// connections the peer paused.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.closed.is_some() {
            return None;
        }
        if self.timers.ping_due {
            self.timers.ping_due = false;
            return Some(Transmit::Ping);
        }
        if let Some(control) = self.control.pop_front() {
            if control.reply {
                self.pending_replies -= 1;
            }
            return Some(Transmit::Message(control.bytes));
        }
        while let Some(conn_id) = self.scheduled.pop_front() {
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                continue;
            };
            conn.scheduled = false;
            if !conn.send.ready() {
                continue;
            }
            match conn.send.pop() {
                Some(Outgoing::Data(bytes, n)) => {
                    self.send_total -= n;
                    self.after_data_sent(conn_id);
                    return Some(Transmit::Message(bytes));
                }
                Some(Outgoing::Eof(bytes)) => {
                    self.after_eof_sent(conn_id);
                    return Some(Transmit::Message(bytes));
                }
                None => continue,
            }
        }
        // Nothing can go out now, so no transmit will free send budget until
        // something changes: writers refused by the budget must try again
        // while there is room, or they wait for ever when connections the
        // peer paused hold more than half of it.
        self.wake_budget_waiters();
        self.finish_drain_if_done();
        None
    }

    /// A connection's closing `Error "EOF"` went out. One the application
    /// closed is forgotten; one a graceful shutdown closed stays, ended with
    /// that reason, until the application releases it.
    fn after_eof_sent(&mut self, conn_id: ConnId) {
        let closed_by = self
            .conns
            .get_mut(&conn_id)
            .and_then(|c| c.closed_by.take());
        match (closed_by, self.conns.get_mut(&conn_id)) {
            (Some(reason), Some(conn)) => {
                conn.state = State::Finished(Some(*reason));
                self.send_total -= conn.send.clear();
            }
            _ => self.remove(conn_id),
        }
    }

    /// Reschedules a connection after one of its Data messages went out, and
    /// pays the Writable events that freed room allows.
    fn after_data_sent(&mut self, conn_id: ConnId) {
        self.schedule(conn_id);
        self.wake_writer(conn_id);
        if !self.waiting_for_budget.is_empty()
            && self.send_total <= self.config.max_session_send_buffer / 2
        {
            self.wake_budget_waiters();
        }
    }

    /// Offers a Writable to every connection refused a write by the
    /// session's send budget, if it has room; those still blocked wait again.
    pub(super) fn wake_budget_waiters(&mut self) {
        if self.waiting_for_budget.is_empty()
            || self.closed.is_some()
            || self.send_total >= self.config.max_session_send_buffer
        {
            return;
        }
        for id in std::mem::take(&mut self.waiting_for_budget) {
            self.wake_writer(id);
        }
    }

    /// Emits Writable for a connection that was refused a write once a write
    /// can succeed again. When it cannot yet, whatever is in the way calls
    /// this again later: Resume for a pause, the connection's own transmits
    /// for its buffer, the session budget draining for the budget.
    pub(super) fn wake_writer(&mut self, conn_id: ConnId) {
        let half_conn = self.config.max_connection_send_buffer / 2;
        let session_full = self.send_total >= self.config.max_session_send_buffer;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if !conn.write_blocked || !conn.is_open() || conn.send.paused_by_peer() {
            return;
        }
        if conn.send.len() > half_conn {
            return;
        }
        if session_full {
            self.waiting_for_budget.insert(conn_id);
            return;
        }
        conn.write_blocked = false;
        self.events.push_back(Event::Writable(conn_id));
    }
}
