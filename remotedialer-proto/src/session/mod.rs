//! The session state machine: one WebSocket's worth of tunneled connections.

mod receive;
mod streams;
mod timers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::{Config, ConfigError};
use crate::connection::{Connection, State};
use crate::error::{AnnounceError, ConnectionError, OpenError, SessionError};
use crate::event::{Event, SessionStats};
use crate::flow::Outgoing;
use crate::frame::{Body, CLIENT_READ_LIMIT, CONNECT_READ_LIMIT, ConnId, Message};

/// The Error text (Go's) that refuses a Connect: sent by a server session for
/// any Connect, and by clients whose connect authorizer says no.
pub const CONNECT_NOT_ALLOWED: &str = "connect not allowed";

/// Which end of the WebSocket this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The agent: opened the WebSocket, is asked to dial, sends Pings and
    /// SyncConnections. The connecting side of a peer link is a client too.
    Client,
    /// The server side of an agent's session: opens connections, refuses
    /// Connect requests.
    Server,
    /// The accepting side of a peer link: a server session that also tracks
    /// the client keys the peer announces.
    Peer,
}

/// Names the session in Go's "connection not found" replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    /// The client key the authorizer returned (the client side uses its own id).
    pub client_key: String,
    /// Go's per-session random number.
    pub session_key: i64,
}

/// One control message waiting to be sent; `reply` marks the ones a peer can
/// provoke without limit, which are bounded by `max_pending_replies`.
#[derive(Debug)]
struct Control {
    bytes: Bytes,
    reply: bool,
}

/// The protocol state of one remotedialer session.
///
/// Sans-IO: feed it what arrives ([`handle_message`](Self::handle_message),
/// [`handle_keepalive`](Self::handle_keepalive),
/// [`handle_timeout`](Self::handle_timeout)) and what the application does
/// ([`open`](Self::open), [`write`](Self::write), [`read`](Self::read),
/// [`close`](Self::close), [`reset`](Self::reset)); after each, drain
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event)
/// and re-arm the timer from [`poll_timeout`](Self::poll_timeout).
///
/// ```
/// use std::time::Instant;
/// use remotedialer_proto::{Config, Event, Role, Session, SessionIdentity, Transmit};
///
/// let now = Instant::now();
/// let id = |key: &str| SessionIdentity { client_key: key.into(), session_key: 1 };
/// let mut server = Session::new(Role::Server, id("agent"), Config::default(), now).unwrap();
/// let mut client = Session::new(Role::Client, id("agent"), Config::default(), now).unwrap();
///
/// let conn = server.open("tcp", "127.0.0.1:8125", now).unwrap();
/// server.write(conn, b"hello").unwrap();
/// while let Some(Transmit::Message(msg)) = server.poll_transmit() {
///     client.handle_message(msg, now);
/// }
/// assert!(matches!(client.poll_event(), Some(Event::ConnectRequested { .. })));
/// assert_eq!(client.read(conn, 64).unwrap().unwrap(), "hello");
/// ```
#[derive(Debug)]
pub struct Session {
    role: Role,
    identity: SessionIdentity,
    config: Config,
    conns: HashMap<ConnId, Connection>,
    next_conn_id: i64,
    next_message_id: i64,
    control: VecDeque<Control>,
    pending_replies: usize,
    /// Round-robin of connections whose send queue may have a message ready.
    scheduled: VecDeque<ConnId>,
    /// Connections refused a write because the session's send budget was full.
    waiting_for_budget: HashSet<ConnId>,
    events: VecDeque<Event>,
    received_total: usize,
    send_total: usize,
    timers: timers::Timers,
    /// Peer role: announced client keys and their session keys.
    remote_clients: HashMap<String, HashSet<i64>>,
    remote_client_count: usize,
    closed: Option<SessionError>,
    /// [`Session::shutdown_gracefully`] was called: flushing, then closing.
    draining: bool,
    scratch: BytesMut,
}

impl Session {
    /// A new session, created when the WebSocket is established.
    pub fn new(
        role: Role,
        identity: SessionIdentity,
        config: Config,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Session {
            role,
            identity,
            next_message_id: config.first_message_id,
            timers: timers::Timers::new(role, &config, now),
            config,
            conns: HashMap::new(),
            next_conn_id: 2,
            control: VecDeque::new(),
            pending_replies: 0,
            scheduled: VecDeque::new(),
            waiting_for_budget: HashSet::new(),
            events: VecDeque::new(),
            received_total: 0,
            send_total: 0,
            remote_clients: HashMap::new(),
            remote_client_count: 0,
            closed: None,
            draining: false,
            scratch: BytesMut::new(),
        })
    }

    /// This session's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The identity given at creation.
    pub fn identity(&self) -> &SessionIdentity {
        &self.identity
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&SessionError> {
        self.closed.as_ref()
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Ids of every connection the session holds, in no order.
    pub fn connection_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.keys().copied()
    }

    /// Number of connections held, in any state.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Peer role: the client keys the peer has announced.
    pub fn remote_clients(&self) -> impl Iterator<Item = &str> + '_ {
        self.remote_clients.keys().map(String::as_str)
    }

    /// Peer role: whether the peer announced `client_key`.
    pub fn has_remote_client(&self, client_key: &str) -> bool {
        self.remote_clients.contains_key(client_key)
    }

    /// Sizes, for metrics.
    pub fn stats(&self) -> SessionStats {
        let mut stats = SessionStats {
            connections: self.conns.len(),
            buffered_receive: self.received_total,
            buffered_send: self.send_total,
            ..SessionStats::default()
        };
        for conn in self.conns.values() {
            stats.paused_by_peer += usize::from(conn.send.paused_by_peer());
            stats.pausing_peer += usize::from(conn.recv.pausing_peer());
        }
        stats
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Server and peer roles: opens a connection to `proto/address` through
    /// the client. Optimistic, as in Go: the id is usable at once and Data may
    /// be written before the client has dialed; a failed dial arrives as
    /// [`Event::Closed`] with the client's error text.
    pub fn open(&mut self, proto: &str, address: &str, now: Instant) -> Result<ConnId, OpenError> {
        if self.role == Role::Client {
            return Err(OpenError::NotServer);
        }
        if let Some(err) = &self.closed {
            return Err(OpenError::SessionClosed(err.clone()));
        }
        if self.draining {
            return Err(OpenError::SessionClosed(SessionError::Shutdown));
        }
        if proto.contains('/') {
            return Err(OpenError::InvalidTarget("proto contains '/'"));
        }
        if proto.len() + 1 + address.len() > CONNECT_READ_LIMIT {
            return Err(OpenError::InvalidTarget(
                "proto/address longer than 266 bytes",
            ));
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(OpenError::TooManyConnections);
        }
        let mut id = ConnId(self.next_conn_id);
        while self.conns.contains_key(&id) {
            id = ConnId(id.0.wrapping_add(1));
        }
        self.next_conn_id = id.0.wrapping_add(1);
        self.conns.insert(id, Connection::new(now));
        let msg_id = self.take_message_id();
        self.push_control(Message::connect(msg_id, id, proto, address), false);
        Ok(id)
    }

    /// Closes a connection gracefully: bytes already written go out, then
    /// `Error "EOF"`. Received bytes not yet read are dropped. On a
    /// connection that already ended this releases its state. Closing an
    /// unknown or closing connection does nothing.
    pub fn close(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        match conn.state {
            State::Open => {
                conn.state = State::Closing;
                conn.write_blocked = false;
                self.received_total -= conn.recv.clear();
                let msg_id = self.take_message_id();
                let eof = self.encode(&Message::error(msg_id, conn_id, "EOF"));
                if let Some(conn) = self.conns.get_mut(&conn_id) {
                    conn.send.push(Outgoing::Eof(eof));
                }
                self.schedule(conn_id);
            }
            State::Closing => {}
            State::Finished(_) => self.remove(conn_id),
        }
    }

    /// Closes a connection at once with an error text sent to the peer
    /// (`Error(conn_id, reason)`), dropping whatever was not transmitted yet.
    /// Clients refuse a connect request this way. On a connection that
    /// already ended this only releases its state.
    pub fn reset(&mut self, conn_id: ConnId, reason: &str) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let on_wire = !matches!(conn.state, State::Finished(_));
        self.remove(conn_id);
        if on_wire {
            let msg_id = self.take_message_id();
            self.push_control(Message::error(msg_id, conn_id, reason), false);
        }
    }

    /// Client role (the connecting side of a peer link): tells the peer that
    /// `client_key` is reachable here (`added`) or no longer is.
    pub fn announce_client(
        &mut self,
        client_key: &str,
        session_key: i64,
        added: bool,
    ) -> Result<(), AnnounceError> {
        if self.role != Role::Client {
            return Err(AnnounceError::NotClient);
        }
        if client_key.contains('/') {
            return Err(AnnounceError::InvalidKey("contains '/'"));
        }
        if client_key.is_empty() {
            // A peer (ours) takes "/123" for a bad announcement and ends the link.
            return Err(AnnounceError::InvalidKey("empty"));
        }
        let text = format!("{client_key}/{session_key}");
        if text.len() > CLIENT_READ_LIMIT {
            return Err(AnnounceError::InvalidKey(
                "clientKey/sessionKey longer than 100 bytes",
            ));
        }
        let payload = Bytes::from(text);
        let body = if added {
            Body::AddClient(payload)
        } else {
            Body::RemoveClient(payload)
        };
        let msg = Message {
            id: self.take_message_id(),
            conn_id: ConnId(0),
            body,
        };
        self.push_control(msg, false);
        Ok(())
    }

    /// The transport is gone (WebSocket closed or failed): every connection
    /// ends with this error.
    pub fn handle_disconnect(&mut self, reason: &str) {
        self.fail(SessionError::Disconnected(reason.to_owned()));
    }

    /// Ends the session without losing what was written: every open
    /// connection is closed gracefully (its queued Data, then `Error "EOF"`),
    /// reports [`Event::Closed`] with [`SessionError::Shutdown`] to the
    /// application, no new connection is opened or accepted, and the session
    /// ends once every queue is flushed. A connection the peer keeps paused
    /// can hold this up: adapters put a deadline on it and then call
    /// [`shutdown`](Self::shutdown).
    pub fn shutdown_gracefully(&mut self) {
        if self.closed.is_some() || self.draining {
            return;
        }
        self.draining = true;
        let mut open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(id, _)| *id)
            .collect();
        open.sort_unstable();
        let error = ConnectionError::SessionClosed(SessionError::Shutdown);
        for conn_id in open {
            self.close(conn_id);
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.closed_by = Some(Box::new(error.clone()));
            }
            let error = Some(error.clone());
            self.events.push_back(Event::Closed { conn_id, error });
        }
        self.finish_drain_if_done();
    }

    /// True while a graceful shutdown is flushing.
    pub fn is_draining(&self) -> bool {
        self.draining && self.closed.is_none()
    }

    /// Ends a draining session once nothing is left to flush.
    pub(super) fn finish_drain_if_done(&mut self) {
        if self.draining
            && self.closed.is_none()
            && self.control.is_empty()
            && !self.conns.values().any(|c| c.state == State::Closing)
        {
            self.fail(SessionError::Shutdown);
        }
    }

    /// Ends the session from the local side; every connection gets an error.
    pub fn shutdown(&mut self) {
        self.fail(SessionError::Shutdown);
    }

    /// Ends the session: connections still on the wire end with
    /// [`ConnectionError::SessionClosed`]; nothing more is transmitted.
    fn fail(&mut self, err: SessionError) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(err.clone());
        let mut ids: Vec<ConnId> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            match self.conns.get(&id).map(|c| &c.state) {
                Some(State::Open) => {
                    self.finish(id, Some(ConnectionError::SessionClosed(err.clone())))
                }
                Some(State::Closing) => self.remove(id),
                _ => {}
            }
        }
        self.control.clear();
        self.pending_replies = 0;
        self.scheduled.clear();
        self.waiting_for_budget.clear();
        self.events.push_back(Event::SessionClosed(err));
    }

    /// Ends a connection on the wire without sending anything; its unread
    /// bytes stay readable.
    fn finish(&mut self, conn_id: ConnId, error: Option<ConnectionError>) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.state != State::Open {
            return;
        }
        conn.state = State::Finished(error.clone());
        conn.write_blocked = false;
        let freed = conn.send.clear();
        self.send_total -= freed;
        self.events.push_back(Event::Closed { conn_id, error });
        if freed > 0 {
            self.wake_budget_waiters();
        }
    }

    /// Forgets a connection entirely.
    fn remove(&mut self, conn_id: ConnId) {
        if let Some(mut conn) = self.conns.remove(&conn_id) {
            self.received_total -= conn.recv.clear();
            let freed = conn.send.clear();
            self.send_total -= freed;
            if freed > 0 {
                self.wake_budget_waiters();
            }
        }
    }

    fn take_message_id(&mut self) -> i64 {
        let id = self.next_message_id;
        self.next_message_id = id.wrapping_add(1);
        id
    }

    /// Encodes into the session's scratch buffer and splits the message off,
    /// so small messages share one allocation.
    fn encode(&mut self, msg: &Message) -> Bytes {
        self.scratch.reserve(msg.encoded_len());
        msg.encode(&mut self.scratch);
        self.scratch.split().freeze()
    }

    fn push_control(&mut self, msg: Message, reply: bool) {
        if reply {
            if self.pending_replies >= self.config.max_pending_replies {
                return;
            }
            self.pending_replies += 1;
        }
        let bytes = self.encode(&msg);
        self.control.push_back(Control { bytes, reply });
    }

    /// Answers an unsolicited message with an Error, within the reply bound.
    /// Tells the peer that a connection it has open ended here. Not a reply
    /// that the peer could provoke without bound (each connection ends once),
    /// so it is never dropped: a dropped one would leave the peer's end of
    /// the connection open for the rest of the session.
    fn send_end(&mut self, conn_id: ConnId, text: &str) {
        let msg_id = self.take_message_id();
        self.push_control(Message::error(msg_id, conn_id, text), false);
    }

    fn reply_error(&mut self, conn_id: ConnId, text: &str) {
        let msg_id = self.take_message_id();
        self.push_control(Message::error(msg_id, conn_id, text), true);
    }

    /// Puts a connection in the send round-robin if its front message may go.
    fn schedule(&mut self, conn_id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&conn_id)
            && !conn.scheduled
            && conn.send.ready()
        {
            conn.scheduled = true;
            self.scheduled.push_back(conn_id);
        }
    }
}
