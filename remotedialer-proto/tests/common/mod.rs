//! A deterministic pair of sessions in memory, in the manner of quinn-proto's
//! `Pair`: a `Role::Server` session and a `Role::Client` session wired to each
//! other, a fake clock, and `step`/`drive`/`advance` helpers.
//!
//! Nothing here reads the real clock or sleeps: time only moves when a test
//! calls [`Pair::advance`].
#![allow(dead_code)] // every test binary uses a different subset

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use remotedialer_proto::frame::Body;
use remotedialer_proto::{
    Config, ConnId, Event, Message, MessageType, ReadError, Role, Session, SessionIdentity,
    Transmit, WriteError,
};

/// The client key both sessions use in their "connection not found" replies.
pub const CLIENT_KEY: &str = "foo";
/// The session key both sessions use.
pub const SESSION_KEY: i64 = 7;
/// Where the server dials by default.
pub const TARGET: &str = "127.0.0.1:8125";

/// Upper bound on steps in one `drive`: a pair that does not settle by then
/// is livelocked.
const MAX_STEPS: usize = 1_000_000;

/// One end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The `Role::Server` session.
    Server,
    /// The `Role::Client` session.
    Client,
}

impl Side {
    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::Server => Side::Client,
            Side::Client => Side::Server,
        }
    }

    /// Both ends.
    pub const BOTH: [Side; 2] = [Side::Server, Side::Client];
}

/// What went over the wire, without the Data payload (so logs stay small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// The connection the message is for.
    pub conn_id: ConnId,
    /// Its type.
    pub kind: MessageType,
    /// Data: the payload length; others: the raw payload length.
    pub len: usize,
    /// Error, Connect, AddClient and RemoveClient: the text.
    pub text: String,
    /// SyncConnections: the ids listed.
    pub ids: Vec<ConnId>,
    /// Whether the network dropped it.
    pub dropped: bool,
}

impl Wire {
    fn of(msg: &Message, dropped: bool) -> Wire {
        let (len, text, ids) = match &msg.body {
            Body::Data(p) => (p.len(), String::new(), Vec::new()),
            Body::Connect { proto, address } => {
                let text = format!(
                    "{}/{}",
                    String::from_utf8_lossy(proto),
                    String::from_utf8_lossy(address)
                );
                (text.len(), text, Vec::new())
            }
            Body::Error(t) | Body::AddClient(t) | Body::RemoveClient(t) => {
                (t.len(), String::from_utf8_lossy(t).into_owned(), Vec::new())
            }
            Body::SyncConnections(ids) => {
                (ids.as_bytes().len(), String::new(), ids.iter().collect())
            }
            Body::Pause | Body::Resume => (0, String::new(), Vec::new()),
            Body::Unknown { payload, .. } => (payload.len(), String::new(), Vec::new()),
        };
        Wire {
            conn_id: msg.conn_id,
            kind: msg.message_type(),
            len,
            text,
            ids,
            dropped,
        }
    }
}

/// A connect request the client received (and accepted: the pair's client
/// application allows every dial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The connection.
    pub conn_id: ConnId,
    /// e.g. `tcp`.
    pub proto: String,
    /// e.g. `127.0.0.1:8125`.
    pub address: String,
}

/// One session and what the test harness recorded about it.
#[derive(Debug)]
pub struct Endpoint {
    /// The session under test.
    pub session: Session,
    /// Events drained from the session and not yet taken by the test.
    pub events: VecDeque<Event>,
    /// Every message this endpoint transmitted, in order.
    pub sent: Vec<Wire>,
    /// WebSocket Pings this endpoint transmitted.
    pub pings_sent: usize,
    /// Client: every ConnectRequested seen, in order.
    pub accepted: Vec<Accepted>,
}

impl Endpoint {
    fn new(session: Session) -> Self {
        Endpoint {
            session,
            events: VecDeque::new(),
            sent: Vec::new(),
            pings_sent: 0,
            accepted: Vec::new(),
        }
    }

    /// Takes every recorded event.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Messages of `kind` sent on `conn_id`.
    pub fn sent_count(&self, conn_id: ConnId, kind: MessageType) -> usize {
        self.sent
            .iter()
            .filter(|w| w.conn_id == conn_id && w.kind == kind)
            .count()
    }

    /// Messages of `kind` sent, on any connection.
    pub fn sent_kind(&self, kind: MessageType) -> Vec<&Wire> {
        self.sent.iter().filter(|w| w.kind == kind).collect()
    }

    /// Whether the client has seen (and accepted) `conn_id`.
    pub fn has_accepted(&self, conn_id: ConnId) -> bool {
        self.accepted.iter().any(|a| a.conn_id == conn_id)
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            if let Event::ConnectRequested {
                conn_id,
                proto,
                address,
            } = &event
            {
                // The pair's client application allows every dial; the
                // session has already registered the connection.
                self.accepted.push(Accepted {
                    conn_id: *conn_id,
                    proto: proto.clone(),
                    address: address.clone(),
                });
            }
            self.events.push_back(event);
        }
    }
}

/// Decides whether the network drops a message: `(sender, message) -> drop`.
pub type DropFilter = Box<dyn FnMut(Side, &Message) -> bool>;

/// How a read loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Nothing more buffered for now.
    Blocked,
    /// The requested amount was read; more may be buffered.
    Limit,
    /// Graceful end of stream.
    Eof,
    /// The read failed.
    Error(ReadError),
}

/// Two sessions wired in memory with a fake clock.
pub struct Pair {
    /// The fake clock.
    pub now: Instant,
    /// The `Role::Server` end.
    pub server: Endpoint,
    /// The `Role::Client` end.
    pub client: Endpoint,
    /// WebSocket Pings reach the other side (and its automatic Pong comes back
    /// when `deliver_pongs`).
    pub deliver_pings: bool,
    /// The automatic Pong reaches the pinger.
    pub deliver_pongs: bool,
    /// Drops chosen messages on the way.
    pub drop_filter: Option<DropFilter>,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("server", &self.server)
            .field("client", &self.client)
            .finish()
    }
}

/// The identity both ends use.
pub fn identity() -> SessionIdentity {
    SessionIdentity {
        client_key: CLIENT_KEY.into(),
        session_key: SESSION_KEY,
    }
}

/// Small limits that exercise Pause/Resume with little data.
pub fn small_config() -> Config {
    Config {
        pause_threshold: 64 << 10,
        resume_threshold: 8 << 10,
        max_data_message: 4 << 10,
        max_connection_send_buffer: 32 << 10,
        max_session_send_buffer: 96 << 10,
        max_connection_receive_buffer: 256 << 10,
        max_session_receive_buffer: 64 << 20,
        ..Config::default()
    }
}

impl Pair {
    /// A pair with the same config on both ends.
    pub fn new(config: Config) -> Self {
        Self::with_configs(config.clone(), config)
    }

    /// A pair with the default config.
    pub fn default_config() -> Self {
        Self::new(Config::default())
    }

    /// A pair with a config per end.
    pub fn with_configs(server: Config, client: Config) -> Self {
        let now = Instant::now();
        let server = Session::new(Role::Server, identity(), server, now).expect("server config");
        let client = Session::new(Role::Client, identity(), client, now).expect("client config");
        Pair {
            now,
            server: Endpoint::new(server),
            client: Endpoint::new(client),
            deliver_pings: true,
            deliver_pongs: true,
            drop_filter: None,
        }
    }

    /// One end.
    pub fn ep(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::Server => &mut self.server,
            Side::Client => &mut self.client,
        }
    }

    /// One end's session.
    pub fn session(&mut self, side: Side) -> &mut Session {
        &mut self.ep(side).session
    }

    /// Both ends, `side` first.
    fn both(&mut self, side: Side) -> (&mut Endpoint, &mut Endpoint) {
        match side {
            Side::Server => (&mut self.server, &mut self.client),
            Side::Client => (&mut self.client, &mut self.server),
        }
    }

    /// Moves every pending transmit of the server to the client, then every
    /// pending transmit of the client to the server; drains events. Returns
    /// whether anything moved.
    pub fn step(&mut self) -> bool {
        self.step_from(Side::Server)
    }

    /// Like [`step`](Self::step), starting with `first`.
    pub fn step_from(&mut self, first: Side) -> bool {
        let a = self.flush(first);
        let b = self.flush(first.other());
        self.settle();
        a || b
    }

    /// Drains events on both ends and, when one session has ended, tells the
    /// other that the transport is gone (as a closing WebSocket would).
    pub fn settle(&mut self) {
        self.server.drain_events();
        self.client.drain_events();
        let (s, c) = (
            self.server.session.is_closed(),
            self.client.session.is_closed(),
        );
        if s != c {
            let survivor = if s {
                &mut self.client
            } else {
                &mut self.server
            };
            survivor.session.handle_disconnect("websocket closed");
            survivor.drain_events();
        }
    }

    /// Moves every pending transmit of `from` to the other end.
    pub fn flush(&mut self, from: Side) -> bool {
        let now = self.now;
        let (deliver_pings, deliver_pongs) = (self.deliver_pings, self.deliver_pongs);
        let mut filter = self.drop_filter.take();
        let (src, dst) = self.both(from);
        let mut moved = false;
        while let Some(transmit) = src.session.poll_transmit() {
            moved = true;
            match transmit {
                Transmit::Ping => {
                    src.pings_sent += 1;
                    if deliver_pings {
                        dst.session.handle_keepalive(now);
                        if deliver_pongs {
                            src.session.handle_keepalive(now);
                        }
                    }
                }
                Transmit::Message(bytes) => {
                    let msg = Message::decode(bytes.clone()).expect("sessions send valid messages");
                    let dropped = filter.as_mut().is_some_and(|f| f(from, &msg));
                    src.sent.push(Wire::of(&msg, dropped));
                    if !dropped {
                        dst.session.handle_message(bytes, now);
                    }
                }
            }
        }
        self.drop_filter = filter;
        moved
    }

    /// Steps until nothing moves.
    pub fn drive(&mut self) {
        for _ in 0..MAX_STEPS {
            if !self.step() {
                return;
            }
        }
        panic!("pair did not quiesce after {MAX_STEPS} steps");
    }

    /// Moves the fake clock forward by `dur`, running each session's timers
    /// at the instants they fall due and driving the pair after each.
    pub fn advance(&mut self, dur: Duration) {
        let target = self.now + dur;
        for _ in 0..MAX_STEPS {
            let next = [
                self.server.session.poll_timeout(),
                self.client.session.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .map(|t| t.at)
            .min();
            let Some(at) = next.filter(|at| *at <= target) else {
                self.now = self.now.max(target);
                self.drive();
                return;
            };
            self.now = self.now.max(at);
            for side in Side::BOTH {
                let now = self.now;
                let session = self.session(side);
                if session.poll_timeout().is_some_and(|t| t.at <= now) {
                    session.handle_timeout(now);
                }
            }
            self.settle();
            self.drive();
        }
        panic!("timers did not settle within {MAX_STEPS} firings");
    }

    /// Injects a raw message into `to`, as if the other end had sent it.
    pub fn inject(&mut self, to: Side, message: Bytes) {
        let now = self.now;
        self.session(to).handle_message(message, now);
        self.settle();
    }

    /// Opens a connection from the server (not yet delivered).
    pub fn open(&mut self) -> ConnId {
        let now = self.now;
        self.server.session.open("tcp", TARGET, now).expect("open")
    }

    /// Opens a connection and drives until the client has accepted it.
    pub fn open_connected(&mut self) -> ConnId {
        let conn = self.open();
        self.drive();
        assert!(
            self.client.has_accepted(conn),
            "client did not see Connect for {conn}"
        );
        conn
    }

    /// Writes as much of `data` as flow control lets through, driving between
    /// writes; stops when everything was taken or a write stays blocked
    /// after the pair quiesced. Returns the bytes taken.
    pub fn pump(&mut self, from: Side, conn: ConnId, data: &[u8]) -> usize {
        let mut taken = 0;
        loop {
            let rest = data.get(taken..).unwrap_or_default();
            if rest.is_empty() {
                return taken;
            }
            match self.session(from).write(conn, rest) {
                Ok(n) => taken += n,
                Err(WriteError::Blocked) => {
                    if !self.step() {
                        // Quiescent and still blocked: only a reader can help.
                        match self.session(from).write(conn, rest) {
                            Ok(n) => taken += n,
                            Err(WriteError::Blocked) => return taken,
                            Err(e) => panic!("write on {conn}: {e}"),
                        }
                    }
                }
                Err(e) => panic!("write on {conn}: {e}"),
            }
        }
    }

    /// Writes all of `data` on `conn` from `from` while the other end reads,
    /// and returns what the other end read (for a stream that stays open,
    /// exactly `data`).
    pub fn transfer(&mut self, from: Side, conn: ConnId, data: &[u8]) -> Vec<u8> {
        let mut sent = 0;
        let mut got = Vec::with_capacity(data.len());
        for _ in 0..MAX_STEPS {
            sent += self.pump(from, conn, data.get(sent..).unwrap_or_default());
            let (chunk, end) = self.read_all(from.other(), conn);
            got.extend_from_slice(&chunk);
            assert_eq!(end, End::Blocked, "transfer on {conn}");
            self.drive();
            if got.len() >= data.len() {
                return got;
            }
        }
        panic!("transfer on {conn} did not finish");
    }

    /// Reads at most `max` bytes from `conn` on `side`, until nothing more is
    /// buffered or the stream ends.
    pub fn read(&mut self, side: Side, conn: ConnId, max: usize) -> (Vec<u8>, End) {
        let mut out = Vec::new();
        loop {
            let want = max - out.len();
            if want == 0 {
                return (out, End::Limit);
            }
            match self.session(side).read(conn, want) {
                Ok(Some(chunk)) => {
                    assert!(
                        !chunk.is_empty() && chunk.len() <= want,
                        "read returned {}",
                        chunk.len()
                    );
                    out.extend_from_slice(&chunk);
                }
                Ok(None) => return (out, End::Eof),
                Err(ReadError::Blocked) => return (out, End::Blocked),
                Err(e) => return (out, End::Error(e)),
            }
        }
    }

    /// Reads everything buffered on `conn`.
    pub fn read_all(&mut self, side: Side, conn: ConnId) -> (Vec<u8>, End) {
        self.read(side, conn, usize::MAX)
    }
}

/// Deterministic, non-periodic-looking bytes for stream checks.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
