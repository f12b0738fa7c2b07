//! The bodies of the fuzz targets. Plain Rust over `remotedialer_proto`,
//! `bytes` and `std` only: each takes the fuzzer's `&[u8]` and interprets it
//! itself, so `remotedialer-proto/tests/fuzz_corpus.rs` can include this file
//! and replay the committed corpus without libFuzzer.
//!
//! * [`frame_decode`]: decoding never panics; whatever decodes re-encodes to
//!   something that decodes to the same message.
//! * [`session`]: a server (or peer) session and a client session wired to
//!   each other, driven by the input: opens, writes, reads, closes, resets,
//!   announcements, a fake clock advanced by arbitrary steps, and raw hostile
//!   bytes into either side. Nothing panics, the buffer bounds hold, the
//!   byte accounting adds up, and while no hostile bytes were injected every
//!   byte read is the next byte written on that connection.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use remotedialer_proto::frame::{Body, Message, SyncIds};
use remotedialer_proto::{
    Config, ConnId, Event, ReadError, Role, Session, SessionIdentity, Transmit, varint,
};

/// Decodes `data` as one message; checks the re-encoding round trip and the
/// varint reader on the same bytes.
pub fn frame_decode(data: &[u8]) {
    if let Ok(msg) = Message::decode(Bytes::copy_from_slice(data)) {
        let wire = msg.to_bytes();
        assert_eq!(wire.len(), msg.encoded_len(), "encoded_len");
        assert!(msg.header_len() <= wire.len());
        match Message::decode(wire.clone()) {
            Ok(again) => assert_eq!(again, msg, "decode(encode(m)) != m"),
            Err(e) => panic!("re-encoded message does not decode: {e}"),
        }
        if let Body::SyncConnections(ids) = &msg.body {
            assert_eq!(SyncIds::from_ids(ids.iter()).as_bytes(), ids.as_bytes());
        }
    }
    if let Ok((value, used)) = varint::get(data) {
        assert!((1..=varint::MAX_LEN).contains(&used) && used <= data.len());
        let mut buf = Vec::new();
        varint::put(&mut buf, value);
        assert!(
            buf.len() <= used,
            "minimal encoding longer than the one read"
        );
        assert_eq!(varint::get(&buf), Ok((value, buf.len())));
    }
}

/// The fuzzer's bytes, read as a stream of choices. Arguments read past the
/// end are zero; the op loop stops at the end.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn op(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    fn u8(&mut self) -> u8 {
        self.op().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn i64(&mut self) -> i64 {
        let mut raw = [0u8; 8];
        for b in &mut raw {
            *b = self.u8();
        }
        i64::from_le_bytes(raw)
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

/// The byte written at `offset` of connection `conn`: lets a reader check
/// every byte without the writer keeping a copy.
fn stream_byte(conn: ConnId, offset: usize) -> u8 {
    ((offset % 251) as u8) ^ (conn.0 as u8)
}

const SERVER: usize = 0;
const CLIENT: usize = 1;

/// Small limits, so that a short input reaches every bound.
fn fuzz_config(flags: u8) -> Config {
    Config {
        ping_interval: Duration::from_secs(5),
        keepalive_timeout: Duration::from_secs(30),
        sync_interval: Duration::from_secs(20),
        sync_grace: Duration::from_millis(u64::from(flags >> 4) * 700),
        pause_threshold: 2048,
        resume_threshold: 512,
        max_connection_receive_buffer: 4096,
        max_session_receive_buffer: 6144,
        max_connection_send_buffer: 1500,
        max_session_send_buffer: 3000,
        max_data_message: 700,
        max_connections: 6,
        max_pending_replies: 4,
        max_remote_clients: 3,
        first_message_id: i64::from(flags & 0x0e) - 4,
        ..Config::default()
    }
}

struct Pair {
    sides: [Session; 2],
    /// In flight from side `i` to the other side, in order.
    wire: [VecDeque<Transmit>; 2],
    config: Config,
    now: Instant,
    /// Bytes written per (writing side, connection) and read per (reading
    /// side, connection).
    written: HashMap<(usize, ConnId), usize>,
    read: HashMap<(usize, ConnId), usize>,
    /// Hostile bytes went in: the byte-stream check no longer applies.
    tainted: bool,
    deny_connects: bool,
}

impl Pair {
    fn new(flags: u8) -> Option<Self> {
        let config = fuzz_config(flags);
        let now = Instant::now();
        let server_role = if flags & 1 == 1 {
            Role::Peer
        } else {
            Role::Server
        };
        let id = |key: &str, session_key| SessionIdentity {
            client_key: key.into(),
            session_key,
        };
        let server = Session::new(server_role, id("foo", 7), config.clone(), now).ok()?;
        let client = Session::new(Role::Client, id("foo", 0), config.clone(), now).ok()?;
        Some(Pair {
            sides: [server, client],
            wire: [VecDeque::new(), VecDeque::new()],
            config,
            now,
            written: HashMap::new(),
            read: HashMap::new(),
            tainted: false,
            deny_connects: flags & 2 == 2,
        })
    }

    fn side(&mut self, side: usize) -> &mut Session {
        let [server, client] = &mut self.sides;
        if side == SERVER { server } else { client }
    }

    /// A connection of `side` chosen by `choice`, sometimes one it does not
    /// have.
    fn pick(&self, side: usize, choice: u8) -> ConnId {
        let Some(s) = self.sides.get(side) else {
            return ConnId(0);
        };
        let mut ids: Vec<ConnId> = s.connection_ids().collect();
        ids.sort_unstable();
        let index = usize::from(choice) % (ids.len() + 1);
        ids.get(index)
            .copied()
            .unwrap_or(ConnId(i64::from(choice) - 1))
    }

    /// Moves up to `n` transmits of `side` onto the wire; each must decode.
    fn pull(&mut self, side: usize, n: usize) {
        let max_data = self.config.max_data_message;
        for _ in 0..n {
            let Some(t) = self.side(side).poll_transmit() else {
                break;
            };
            if let Transmit::Message(bytes) = &t {
                match Message::decode(bytes.clone()) {
                    Ok(Message {
                        body: Body::Data(p),
                        ..
                    }) => assert!(p.len() <= max_data),
                    Ok(_) => {}
                    Err(e) => panic!("side {side} transmitted an undecodable message: {e}"),
                }
            }
            if let Some(wire) = self.wire.get_mut(side) {
                wire.push_back(t);
            }
        }
    }

    /// Delivers up to `n` messages in flight from `side` to the other side.
    fn deliver(&mut self, side: usize, n: usize) {
        let now = self.now;
        for _ in 0..n {
            let Some(t) = self.wire.get_mut(side).and_then(VecDeque::pop_front) else {
                break;
            };
            match t {
                Transmit::Message(bytes) => self.side(1 - side).handle_message(bytes, now),
                Transmit::Ping => {
                    // The Ping arrives, and its Pong comes back.
                    self.side(1 - side).handle_keepalive(now);
                    self.side(side).handle_keepalive(now);
                }
            }
        }
    }

    fn write(&mut self, side: usize, conn: ConnId, len: usize) {
        let offset = self.written.get(&(side, conn)).copied().unwrap_or(0);
        let data: Vec<u8> = (0..len).map(|i| stream_byte(conn, offset + i)).collect();
        if let Ok(n) = self.side(side).write(conn, &data) {
            assert!(n <= len, "took more than offered");
            assert!(len == 0 || n > 0, "Ok(0) for a non-empty write");
            *self.written.entry((side, conn)).or_default() += n;
        }
    }

    /// Checks bytes read by `side` on `conn` against what the other side wrote.
    fn check_read(&mut self, side: usize, conn: ConnId, chunk: &[u8]) {
        let offset = self.read.get(&(side, conn)).copied().unwrap_or(0);
        if !self.tainted {
            let written = self.written.get(&(1 - side, conn)).copied().unwrap_or(0);
            assert!(
                offset + chunk.len() <= written,
                "read more than was written"
            );
            for (i, &b) in chunk.iter().enumerate() {
                assert_eq!(
                    b,
                    stream_byte(conn, offset + i),
                    "byte {} of {conn}",
                    offset + i
                );
            }
        }
        *self.read.entry((side, conn)).or_default() += chunk.len();
    }

    fn read(&mut self, side: usize, conn: ConnId, max: usize) {
        match self.side(side).read(conn, max) {
            Ok(Some(chunk)) => {
                // Empty only for a zero-byte read while bytes wait.
                assert!(chunk.len() <= max && (max == 0 || !chunk.is_empty()));
                self.check_read(side, conn, &chunk);
            }
            Ok(None) | Err(ReadError::Blocked | ReadError::Closed(_)) => {}
            Err(ReadError::UnknownConnection(id)) => assert_eq!(id, conn),
            Err(_) => {}
        }
    }

    fn read_into(&mut self, side: usize, conn: ConnId, len: usize) {
        let mut buf = vec![0u8; len];
        if let Ok(n) = self.side(side).read_into(conn, &mut buf) {
            let filled = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
            assert_eq!(filled.len(), n, "read_into reported more than the buffer");
            self.check_read(side, conn, &filled);
        }
    }

    fn advance(&mut self, step: Duration) {
        self.now += step;
        let now = self.now;
        self.side(SERVER).handle_timeout(now);
        self.side(CLIENT).handle_timeout(now);
    }

    /// Jumps to the earlier of the two sessions' deadlines and runs it.
    fn advance_to_deadline(&mut self) {
        let next = self
            .sides
            .iter()
            .filter_map(Session::poll_timeout)
            .map(|t| t.at)
            .min();
        if let Some(at) = next {
            let step = at.saturating_duration_since(self.now);
            self.advance(step);
        }
    }

    /// What an application does with events: refuse or accept connect
    /// requests; reads happen only when the input says so.
    fn handle_events(&mut self) {
        for side in [SERVER, CLIENT] {
            while let Some(event) = self.side(side).poll_event() {
                if let Event::ConnectRequested { conn_id, .. } = event {
                    assert_eq!(side, CLIENT, "only clients are asked to connect");
                    if self.deny_connects {
                        self.side(side).reset(conn_id, "connect not allowed");
                    }
                }
            }
        }
    }

    fn check_bounds(&self) {
        let c = &self.config;
        for s in &self.sides {
            let stats = s.stats();
            assert!(
                stats.buffered_receive <= c.max_session_receive_buffer,
                "{stats:?}"
            );
            assert!(
                stats.buffered_send <= c.max_session_send_buffer,
                "{stats:?}"
            );
            assert!(s.connection_count() <= c.max_connections, "{stats:?}");
            assert_eq!(stats.connections, s.connection_count());
            let mut readable = 0;
            for id in s.connection_ids() {
                let n = s.readable_len(id);
                assert!(n <= c.max_connection_receive_buffer, "{id}: {n} unread");
                readable += n;
            }
            assert_eq!(readable, stats.buffered_receive, "receive accounting");
            if s.is_closed() {
                assert!(s.poll_timeout().is_none() && !s.wants_transmit());
            } else {
                assert!(s.poll_timeout().is_some());
            }
        }
    }
}

/// A message with fields from the input: a header of any type, any payload.
fn structured_message(input: &mut Input<'_>, conn: ConnId) -> Bytes {
    let mut out = Vec::new();
    varint::put(&mut out, i64::from(input.u8()));
    varint::put(&mut out, conn.0);
    let kind = i64::from(input.u8() % 11) - 1;
    varint::put(&mut out, kind);
    if kind == 1 || kind == 2 {
        varint::put(&mut out, 15_000);
    }
    let len = usize::from(input.u16() % 4200);
    let body = input.bytes(len);
    if kind == 1 && body.len() < len {
        // Short of input: pad Data so large messages still happen.
        out.extend(body);
        out.resize(out.len() + len - body.len(), 0x5a);
    } else {
        out.extend(body);
    }
    Bytes::from(out)
}

/// Runs a server (or peer) and a client session wired to each other through
/// the operations `data` encodes.
pub fn session(data: &[u8]) {
    let mut input = Input { data };
    let flags = input.u8();
    let Some(mut pair) = Pair::new(flags) else {
        return;
    };
    while let Some(op) = input.op() {
        let side = usize::from(op & 1);
        match (op >> 1) % 16 {
            0 => {
                let protos = ["tcp", "udp", "unix", "foo::tcp", "", "tcp/x"];
                let proto = protos.get(usize::from(input.u8()) % protos.len()).copied();
                let len = usize::from(input.u8()) + usize::from(input.u8());
                let address = format!("127.0.0.1:{}", "9".repeat(len % 270));
                let now = pair.now;
                let _ = pair
                    .side(SERVER)
                    .open(proto.unwrap_or("tcp"), &address, now);
                let _ = pair.side(CLIENT).open("tcp", "x:1", now);
            }
            1 => {
                let conn = pair.pick(side, input.u8());
                let len = usize::from(input.u16() % 5000);
                pair.write(side, conn, len);
            }
            2 => {
                let conn = pair.pick(side, input.u8());
                let max = usize::from(input.u16() % 5000);
                pair.read(side, conn, max);
            }
            3 => {
                let conn = pair.pick(side, input.u8());
                let len = usize::from(input.u16() % 5000);
                pair.read_into(side, conn, len);
            }
            4 => {
                let conn = pair.pick(side, input.u8());
                pair.side(side).close(conn);
            }
            5 => {
                let conn = pair.pick(side, input.u8());
                let reason = if input.u8() & 1 == 0 {
                    "EOF"
                } else {
                    "reset by fuzzer"
                };
                pair.side(side).reset(conn, reason);
            }
            6 => {
                let step = Duration::from_millis(u64::from(input.u16()) * 4);
                pair.advance(step);
            }
            7 => pair.advance_to_deadline(),
            8 => {
                let now = pair.now;
                pair.side(side).handle_keepalive(now);
            }
            9 => {
                let n = usize::from(input.u8() % 16) + 1;
                pair.pull(side, n);
            }
            10 => {
                let n = usize::from(input.u8() % 16) + 1;
                pair.deliver(side, n);
            }
            11 => {
                // Everything in flight both ways, until quiet (bounded).
                for _ in 0..32 {
                    pair.pull(SERVER, 64);
                    pair.pull(CLIENT, 64);
                    if pair.wire.iter().all(VecDeque::is_empty) {
                        break;
                    }
                    pair.deliver(SERVER, 64);
                    pair.deliver(CLIENT, 64);
                    pair.handle_events();
                }
            }
            12 => {
                let len = usize::from(input.u8());
                let raw = Bytes::copy_from_slice(input.bytes(len));
                pair.tainted = true;
                let now = pair.now;
                pair.side(side).handle_message(raw, now);
            }
            13 => {
                let conn = pair.pick(side, input.u8());
                let msg = structured_message(&mut input, conn);
                pair.tainted = true;
                let now = pair.now;
                pair.side(side).handle_message(msg, now);
            }
            14 => {
                let keys = ["bar", "baz", "", "a/b", "k"];
                let key = keys.get(usize::from(input.u8()) % keys.len()).copied();
                let session_key = input.i64();
                let added = input.u8() & 1 == 0;
                let _ = pair
                    .side(side)
                    .announce_client(key.unwrap_or("k"), session_key, added);
            }
            _ => match input.u8() {
                0 => pair.side(side).handle_text_message(),
                1 => pair.side(side).handle_disconnect("fuzzer hung up"),
                2 => pair.side(side).shutdown(),
                b => pair.deny_connects = b & 1 == 1,
            },
        }
        pair.handle_events();
        pair.check_bounds();
    }
}
