//! Property test: random interleavings of both sessions against a model.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use remotedialer_proto::{ConnId, ConnectionError, Event, ReadError, SessionStats, WriteError};

use remotedialer_proto::Config;

use crate::common::{End, Pair, Side, TARGET, small_config};

/// Small limits, and a session send budget that one paused connection
/// with a full queue holds more than half of.
pub fn config() -> Config {
    Config {
        max_session_send_buffer: 48 << 10,
        ..small_config()
    }
}

/// The stream of one direction of one connection is a window into this
/// table, starting at a per-direction offset; the period is prime so a
/// misplaced 4 KiB message cannot look right.
const PERIOD: usize = 65_521;
const MAX_WRITE: usize = 200 << 10;
/// Longest slice compared at once.
const READ_WINDOW: usize = 1 << 20;

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // Periodic, so that every window of a stream reads the same
        // however writes and reads cut it.
        let base = crate::common::pattern(PERIOD, 99);
        base.iter()
            .cycle()
            .take(PERIOD + READ_WINDOW)
            .copied()
            .collect()
    })
}

fn idx(side: Side) -> usize {
    match side {
        Side::Server => 0,
        Side::Client => 1,
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    Open,
    Write {
        side: Side,
        conn: usize,
        len: usize,
        pump: bool,
    },
    Read {
        side: Side,
        conn: usize,
        max: usize,
    },
    Close {
        side: Side,
        conn: usize,
    },
    Reset {
        side: Side,
        conn: usize,
    },
    Step {
        first: Side,
    },
    Drive,
    Advance {
        ms: u64,
    },
    /// Advance with every Ping and Pong lost; long enough, it kills the
    /// session.
    Silence {
        secs: u64,
    },
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Server), Just(Side::Client)]
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Open),
        10 => (side(), any::<usize>(), 0..=MAX_WRITE, any::<bool>())
            .prop_map(|(side, conn, len, pump)| Op::Write { side, conn, len, pump }),
        8 => (side(), any::<usize>(), prop_oneof![1..64usize, 1..4096usize, 1..(256usize << 10)])
            .prop_map(|(side, conn, max)| Op::Read { side, conn, max }),
        1 => (side(), any::<usize>()).prop_map(|(side, conn)| Op::Close { side, conn }),
        1 => (side(), any::<usize>()).prop_map(|(side, conn)| Op::Reset { side, conn }),
        4 => side().prop_map(|first| Op::Step { first }),
        2 => Just(Op::Drive),
        1 => (0..20_000u64).prop_map(|ms| Op::Advance { ms }),
        1 => prop_oneof![9 => 0..30u64, 1 => 50..90u64].prop_map(|secs| Op::Silence { secs }),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalEnd {
    Closed,
    Reset(String),
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    /// What each side's application did to end it.
    local: [Option<LocalEnd>; 2],
    /// Bytes each side's writes were credited with.
    written: [usize; 2],
    /// Bytes each side read (of the other's stream).
    read: [usize; 2],
    /// Each side saw its reads end (EOF or error).
    read_ended: [bool; 2],
    /// Each side got `Event::Closed`.
    closed_event: [bool; 2],
    /// Each side's last write was refused by flow control and no Writable
    /// came since.
    blocked: [bool; 2],
}

impl Conn {
    /// Offset in the table of the stream written by `side`.
    fn seed(&self, side: Side) -> usize {
        ((self.id.0 as usize) * 2 + idx(side)) * 7_919 % PERIOD
    }

    fn expected(&self, side: Side, offset: usize, len: usize) -> &'static [u8] {
        let start = (self.seed(side) + offset) % PERIOD;
        &table()[start..start + len]
    }
}

pub struct Model {
    pair: Pair,
    conns: Vec<Conn>,
    dead: bool,
}

impl Model {
    pub fn new() -> Self {
        Model {
            pair: Pair::new(config()),
            conns: Vec::new(),
            dead: false,
        }
    }

    fn pick(&self, conn: usize) -> Option<usize> {
        (!self.conns.is_empty()).then(|| conn % self.conns.len())
    }

    /// Whether `side` can address the connection at all (the client
    /// learns of it from Connect).
    fn known(&self, side: Side, c: usize) -> bool {
        side == Side::Server || self.pair.client.has_accepted(self.conns[c].id)
    }

    pub fn apply(&mut self, op: &Op) {
        match *op {
            Op::Open => {
                let now = self.pair.now;
                match self.pair.server.session.open("tcp", TARGET, now) {
                    Ok(id) => {
                        assert!(!self.dead, "open on a dead session");
                        self.conns.push(Conn {
                            id,
                            local: [None, None],
                            written: [0; 2],
                            read: [0; 2],
                            read_ended: [false; 2],
                            closed_event: [false; 2],
                            blocked: [false; 2],
                        });
                    }
                    Err(e) => assert!(self.dead, "open failed: {e}"),
                }
            }
            Op::Write {
                side,
                conn,
                len,
                pump,
            } => {
                if let Some(c) = self.pick(conn) {
                    self.write(side, c, len, pump);
                }
            }
            Op::Read { side, conn, max } => {
                if let Some(c) = self.pick(conn) {
                    self.read(side, c, max);
                }
            }
            Op::Close { side, conn } | Op::Reset { side, conn } => {
                let Some(c) = self.pick(conn) else { return };
                if !self.known(side, c) || self.conns[c].local[idx(side)].is_some() {
                    return;
                }
                let id = self.conns[c].id;
                let end = if matches!(op, Op::Close { .. }) {
                    self.pair.session(side).close(id);
                    LocalEnd::Closed
                } else {
                    let reason = format!("reset {id} by {side:?}");
                    self.pair.session(side).reset(id, &reason);
                    LocalEnd::Reset(reason)
                };
                self.conns[c].local[idx(side)] = Some(end);
            }
            Op::Step { first } => {
                self.pair.step_from(first);
            }
            Op::Drive => self.pair.drive(),
            Op::Advance { ms } => self.pair.advance(Duration::from_millis(ms)),
            Op::Silence { secs } => {
                self.pair.deliver_pings = false;
                self.pair.advance(Duration::from_secs(secs));
                self.pair.deliver_pings = true;
            }
        }
        self.after_op();
    }

    fn write(&mut self, side: Side, c: usize, len: usize, pump: bool) {
        let i = idx(side);
        let id = self.conns[c].id;
        if !self.known(side, c) {
            assert_eq!(
                self.pair.session(side).write(id, b"x"),
                Err(WriteError::UnknownConnection(id))
            );
            return;
        }
        if self.conns[c].local[i].is_some() {
            let r = self.pair.session(side).write(id, b"x");
            assert!(
                matches!(
                    r,
                    Err(WriteError::Closed(ConnectionError::LocallyClosed))
                        | Err(WriteError::UnknownConnection(_))
                ),
                "write after local close: {r:?}"
            );
            return;
        }
        let mut done = 0;
        for _ in 0..10_000 {
            let data = self.conns[c].expected(side, self.conns[c].written[i], len - done);
            match self.pair.session(side).write(id, data) {
                Ok(n) => {
                    assert!(n <= data.len());
                    self.conns[c].written[i] += n;
                    done += n;
                    if n > 0 {
                        self.conns[c].blocked[i] = false;
                    }
                }
                Err(WriteError::Blocked) => {
                    assert!(!data.is_empty());
                    self.conns[c].blocked[i] = true;
                }
                Err(WriteError::Closed(e)) => {
                    self.check_peer_ended(side, c, &e, "write");
                    return;
                }
                Err(e) => panic!("write on {id} by {side:?}: {e}"),
            }
            if !pump || done == len {
                return;
            }
            if !self.pair.step() && self.conns[c].blocked[i] {
                return;
            }
            self.handle_events();
        }
    }

    fn read(&mut self, side: Side, c: usize, max: usize) {
        let i = idx(side);
        let id = self.conns[c].id;
        if !self.known(side, c) {
            assert_eq!(
                self.pair.session(side).read(id, 1),
                Err(ReadError::UnknownConnection(id))
            );
            return;
        }
        if self.conns[c].local[i].is_some() {
            let r = self.pair.session(side).read(id, max);
            assert!(
                matches!(
                    r,
                    Err(ReadError::Closed(ConnectionError::LocallyClosed))
                        | Err(ReadError::UnknownConnection(_))
                ),
                "read after local close: {r:?}"
            );
            return;
        }
        let (data, end) = self.pair.read(side, id, max);
        let conn = &mut self.conns[c];
        let writer = side.other();
        let offset = conn.read[i];
        assert!(
            offset + data.len() <= conn.written[idx(writer)],
            "{side:?} read past what {writer:?} wrote on {id}"
        );
        for (k, piece) in data.chunks(READ_WINDOW).enumerate() {
            let at = offset + k * READ_WINDOW;
            assert!(
                piece == conn.expected(writer, at, piece.len()),
                "{side:?} read wrong bytes on {id} in {at}..{}",
                at + piece.len()
            );
        }
        conn.read[i] += data.len();
        match end {
            End::Blocked | End::Limit => {}
            End::Eof => {
                assert_eq!(
                    conn.local[idx(writer)],
                    Some(LocalEnd::Closed),
                    "EOF on {id} but {writer:?} did not close"
                );
                assert_eq!(
                    conn.read[i],
                    conn.written[idx(writer)],
                    "EOF before every byte on {id}"
                );
                conn.read_ended[i] = true;
            }
            End::Error(ReadError::Closed(e)) => {
                self.check_peer_ended(side, c, &e, "read");
                self.conns[c].read_ended[i] = true;
            }
            End::Error(e) => panic!("read on {id} by {side:?}: {e}"),
        }
    }

    /// `side` saw its connection end with `e` (None: graceful).
    fn check_peer_ended(&self, side: Side, c: usize, e: &ConnectionError, what: &str) {
        let conn = &self.conns[c];
        let peer = &conn.local[idx(side.other())];
        let ok = match e {
            // Writes after the peer's graceful close say the stream is over.
            ConnectionError::ClosedByPeer => what == "write" && *peer == Some(LocalEnd::Closed),
            ConnectionError::Remote(text) => *peer == Some(LocalEnd::Reset(text.clone())),
            ConnectionError::SessionClosed(_) => self.dead,
            _ => false,
        };
        assert!(
            ok,
            "{what} on {} by {side:?} ended with {e:?}; peer did {peer:?}",
            conn.id
        );
    }

    fn handle_events(&mut self) {
        if self.pair.server.session.is_closed() || self.pair.client.session.is_closed() {
            assert!(
                self.pair.server.session.is_closed() && self.pair.client.session.is_closed(),
                "one session died alone"
            );
            self.dead = true;
        }
        for side in Side::BOTH {
            for event in self.pair.ep(side).take_events() {
                match event {
                    Event::ConnectRequested { conn_id, .. } => {
                        assert_eq!(side, Side::Client);
                        assert!(self.conns.iter().any(|c| c.id == conn_id));
                    }
                    Event::Readable(_) => {}
                    Event::Writable(id) => {
                        if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
                            c.blocked[idx(side)] = false;
                        }
                    }
                    Event::Closed { conn_id, error } => {
                        let c = self
                            .conns
                            .iter()
                            .position(|c| c.id == conn_id)
                            .expect("known");
                        assert!(!self.conns[c].closed_event[idx(side)], "second Closed");
                        match &error {
                            None => assert_eq!(
                                self.conns[c].local[idx(side.other())],
                                Some(LocalEnd::Closed),
                                "graceful Closed on {conn_id} without a close"
                            ),
                            Some(e) => self.check_peer_ended(side, c, e, "event"),
                        }
                        self.conns[c].closed_event[idx(side)] = true;
                    }
                    Event::SessionClosed(_) => assert!(self.dead),
                    other => panic!("unexpected event {other:?}"),
                }
            }
        }
    }

    fn quiescent(&mut self) -> bool {
        !self.pair.server.session.wants_transmit() && !self.pair.client.session.wants_transmit()
    }

    fn after_op(&mut self) {
        self.handle_events();
        let cfg = config();
        let quiet = self.quiescent();
        for side in Side::BOTH {
            let (s, other) = match side {
                Side::Server => (&self.pair.server.session, &self.pair.client.session),
                Side::Client => (&self.pair.client.session, &self.pair.server.session),
            };
            let ids: HashSet<ConnId> = s.connection_ids().collect();
            let stats = s.stats();
            assert_eq!(stats.connections, ids.len());
            let buffered: usize = ids.iter().map(|id| s.readable_len(*id)).sum();
            assert_eq!(stats.buffered_receive, buffered, "{side:?}");
            // The pair returns a Pause within at most two steps, each of
            // which moves at most one send queue of Data: that bounds the
            // overshoot an honest peer can cause, well below the cap.
            let overshoot = cfg.pause_threshold + 2 * cfg.max_connection_send_buffer;
            assert!(overshoot < cfg.max_connection_receive_buffer);
            for id in &ids {
                let n = s.readable_len(*id);
                assert!(n <= overshoot, "{side:?} {id}: {n} unread");
            }
            if !quiet {
                continue;
            }
            // Nothing in flight: a reader pauses its peer only while it
            // holds at least resume_threshold unread bytes (or is closing).
            let holding = |c: &Conn| {
                ids.contains(&c.id)
                    && (s.readable_len(c.id) >= cfg.resume_threshold
                        || c.local[idx(side)].is_some())
            };
            let may_pause = self.conns.iter().filter(|c| holding(c)).count();
            assert!(
                stats.pausing_peer <= may_pause,
                "{side:?} pauses with drained readers"
            );
            // A writer is paused (or blocked) only by a peer that holds
            // unread bytes, or on a connection that is over.
            let peer_ids: HashSet<ConnId> = other.connection_ids().collect();
            let peer_holding = |c: &Conn| {
                peer_ids.contains(&c.id)
                    && (other.readable_len(c.id) >= cfg.resume_threshold
                        || c.local[idx(side.other())].is_some())
            };
            let over = |c: &Conn| c.local[idx(side)].is_some() || c.closed_event[idx(side)];
            let may_be_paused = self
                .conns
                .iter()
                .filter(|c| ids.contains(&c.id) && (peer_holding(c) || over(c)))
                .count();
            assert!(
                stats.paused_by_peer <= may_be_paused,
                "{side:?} paused by a peer that drained"
            );
            let budget_full = stats.buffered_send >= cfg.max_session_send_buffer;
            for c in &self.conns {
                if c.blocked[idx(side)] && !over(c) && !budget_full {
                    assert!(
                        peer_holding(c),
                        "{side:?} blocked on {} with no reason and no Writable",
                        c.id
                    );
                }
            }
        }
    }

    /// Reads everything, closes everything on both sides and checks that
    /// every byte arrived and no state is left.
    pub fn finish(mut self) {
        for _ in 0..10_000 {
            self.pair.drive();
            self.after_op();
            let before: usize = self.conns.iter().map(|c| c.read[0] + c.read[1]).sum();
            for c in 0..self.conns.len() {
                for side in Side::BOTH {
                    if !self.conns[c].read_ended[idx(side)] {
                        self.read(side, c, usize::MAX);
                    }
                }
            }
            self.pair.drive();
            self.after_op();
            let after: usize = self.conns.iter().map(|c| c.read[0] + c.read[1]).sum();
            if after == before {
                break;
            }
        }
        for conn in &self.conns {
            for reader in Side::BOTH {
                let (r, w) = (idx(reader), idx(reader.other()));
                if conn.local[r].is_some() || self.dead {
                    continue;
                }
                match &conn.local[w] {
                    None => {
                        assert_eq!(conn.read[r], conn.written[w], "{reader:?} on {}", conn.id)
                    }
                    Some(LocalEnd::Closed) => {
                        assert!(
                            conn.read_ended[r],
                            "{reader:?} never saw EOF on {}",
                            conn.id
                        );
                        assert_eq!(conn.read[r], conn.written[w]);
                    }
                    Some(LocalEnd::Reset(_)) => {
                        assert!(
                            conn.read_ended[r],
                            "{reader:?} never saw the reset of {}",
                            conn.id
                        );
                        assert!(conn.read[r] <= conn.written[w]);
                    }
                }
            }
        }
        // Every reader drained: nobody pauses anybody on a live connection.
        assert_eq!(self.pair.server.session.stats().pausing_peer, 0);
        assert_eq!(self.pair.client.session.stats().pausing_peer, 0);

        for side in Side::BOTH {
            let ids: Vec<ConnId> = self.pair.session(side).connection_ids().collect();
            for id in ids {
                self.pair.session(side).close(id);
                if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
                    c.local[idx(side)].get_or_insert(LocalEnd::Closed);
                }
            }
            self.pair.drive();
            self.handle_events();
        }
        for side in Side::BOTH {
            let s = self.pair.session(side);
            assert_eq!(s.connection_count(), 0, "{side:?} kept connections");
            assert_eq!(s.stats(), SessionStats::default(), "{side:?} kept state");
            assert!(!s.wants_transmit());
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        // PROPTEST_CASES=n runs more (or fewer) cases.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        max_shrink_iters: 2_000,
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn random_interleavings_keep_every_stream_intact(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        let mut m = Model::new();
        for op in &ops {
            m.apply(op);
        }
        m.finish();
    }
}
