//! The Go session transcript (`shared/vectors/go-session.jsonl`): entries
//! with their full message bytes, payloads the transcript truncated
//! regenerated at the recorded length.

use std::collections::HashMap;

use bytes::Bytes;
use remotedialer_tokio::proto::{Message, MessageType, varint};
use serde_json::Value;

pub const TRANSCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/go-session.jsonl"
);
pub const META: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/go-session.meta.json"
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client to server.
    C2s,
    /// Server to client.
    S2c,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Binary,
    Ping,
    Pong,
    /// The server's read failed: the Go client dropped the connection.
    RecvError,
    /// The server's write failed: the connection was gone.
    SendError,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub t_ms: f64,
    pub phase: String,
    pub dir: Dir,
    pub kind: Kind,
    /// The whole WebSocket message (binary entries only).
    pub bytes: Bytes,
}

impl Entry {
    pub fn message(&self) -> Message {
        Message::decode(self.bytes.clone())
            .unwrap_or_else(|e| panic!("seq {}: transcript message does not decode: {e}", self.seq))
    }

    pub fn message_type(&self) -> Option<MessageType> {
        (self.kind == Kind::Binary).then(|| self.message().message_type())
    }

    pub fn conn_id(&self) -> i64 {
        self.message().conn_id.0
    }
}

/// The bytes after the message id: what must match whatever ids the two
/// implementations pick.
pub fn tail(bytes: &[u8]) -> &[u8] {
    let (_, id_len) = varint::get(bytes).expect("message id");
    &bytes[id_len..]
}

/// The header after the id (connection id, type, legacy deadline).
pub fn header_tail(bytes: &[u8]) -> Vec<u8> {
    let msg = Message::decode(Bytes::copy_from_slice(bytes)).expect("decodes");
    let (_, id_len) = varint::get(bytes).expect("message id");
    bytes[id_len..msg.header_len()].to_vec()
}

/// The same message with another payload (addresses differ between the Go
/// run and ours).
pub fn with_payload(bytes: &[u8], payload: &[u8]) -> Vec<u8> {
    let msg = Message::decode(Bytes::copy_from_slice(bytes)).expect("decodes");
    let mut out = bytes[..msg.header_len()].to_vec();
    out.extend_from_slice(payload);
    out
}

/// The payload after the header.
pub fn payload(bytes: &[u8]) -> &[u8] {
    let msg = Message::decode(Bytes::copy_from_slice(bytes)).expect("decodes");
    &bytes[msg.header_len()..]
}

/// Stand-in content for payloads the transcript truncated: a function of
/// the byte's offset in its connection's stream, so an echo of it is the
/// same bytes again.
pub fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

pub struct Transcript {
    pub entries: Vec<Entry>,
    /// Every Data payload of one direction and connection, concatenated.
    streams: HashMap<(Dir, i64), Vec<u8>>,
    pub meta: Value,
}

fn hex_field(v: &Value, seq: u64) -> Vec<u8> {
    hex::decode(v["hex"].as_str().unwrap_or(""))
        .unwrap_or_else(|e| panic!("seq {seq}: bad hex: {e}"))
}

impl Transcript {
    pub fn load() -> Transcript {
        let text = std::fs::read_to_string(TRANSCRIPT)
            .unwrap_or_else(|e| panic!("cannot read the Go transcript {TRANSCRIPT}: {e}"));
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(META).unwrap_or_else(|e| panic!("cannot read {META}: {e}")),
        )
        .expect("meta is JSON");
        let mut entries = Vec::new();
        let mut streams: HashMap<(Dir, i64), Vec<u8>> = HashMap::new();
        for (line_no, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("line {}: not JSON: {e}", line_no + 1));
            let seq = v["seq"].as_u64().expect("seq");
            assert_eq!(seq, entries.len() as u64, "transcript seq out of order");
            let dir = match v["dir"].as_str() {
                Some("c2s") => Dir::C2s,
                Some("s2c") => Dir::S2c,
                other => panic!("seq {seq}: unknown dir {other:?}"),
            };
            let kind = match v["type"].as_str() {
                Some("binary") => Kind::Binary,
                Some("ping") => Kind::Ping,
                Some("pong") => Kind::Pong,
                Some("recv_error") => Kind::RecvError,
                Some("send_error") => Kind::SendError,
                other => panic!("seq {seq}: unknown type {other:?}"),
            };
            let mut bytes = Vec::new();
            if kind == Kind::Binary {
                bytes = hex_field(&v, seq);
                let conn = v["decoded"]["conn_id"].as_i64().expect("conn_id");
                let stream = streams.entry((dir, conn)).or_default();
                if v["truncated"].as_bool() == Some(true) {
                    let len = v["payload_len"].as_u64().expect("payload_len");
                    let start = stream.len() as u64;
                    let fill: Vec<u8> = (start..start + len).map(pattern).collect();
                    stream.extend_from_slice(&fill);
                    bytes.extend_from_slice(&fill);
                } else if v["decoded"]["type_name"] == "Data" {
                    stream.extend_from_slice(payload(&bytes));
                }
                assert_eq!(
                    bytes.len() as u64,
                    v["len"].as_u64().expect("len"),
                    "seq {seq}: rebuilt message has the wrong length"
                );
            }
            entries.push(Entry {
                seq,
                t_ms: v["t_ms"].as_f64().expect("t_ms"),
                phase: v["phase"].as_str().expect("phase").to_owned(),
                dir,
                kind,
                bytes: Bytes::from(bytes),
            });
        }
        Transcript {
            entries,
            streams,
            meta,
        }
    }

    /// The concatenated Data payloads of one direction and connection.
    pub fn stream(&self, dir: Dir, conn: i64) -> &[u8] {
        self.streams
            .get(&(dir, conn))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The Go header (after the id) of the first Data on `conn` in `dir`.
    pub fn data_header(&self, dir: Dir, conn: i64) -> Option<Vec<u8>> {
        self.entries
            .iter()
            .find(|e| {
                e.dir == dir && e.message_type() == Some(MessageType::Data) && e.conn_id() == conn
            })
            .map(|e| header_tail(&e.bytes))
    }

    /// Data bytes sent in `dir` on `conn` before entry `seq`.
    pub fn data_before(&self, seq: u64, dir: Dir, conn: i64) -> u64 {
        self.entries[..seq as usize]
            .iter()
            .filter(|e| {
                e.dir == dir && e.message_type() == Some(MessageType::Data) && e.conn_id() == conn
            })
            .map(|e| payload(&e.bytes).len() as u64)
            .sum()
    }

    /// Whether an Error for `conn` went `dir` before entry `seq`.
    pub fn closed_before(&self, seq: u64, dir: Dir, conn: i64) -> bool {
        self.entries[..seq as usize].iter().any(|e| {
            e.dir == dir && e.message_type() == Some(MessageType::Error) && e.conn_id() == conn
        })
    }

    /// Whether the WebSocket had failed before entry `seq`.
    pub fn failed_before(&self, seq: u64) -> bool {
        self.entries[..seq as usize]
            .iter()
            .any(|e| matches!(e.kind, Kind::RecvError | Kind::SendError))
    }

    /// The first entry of `phase`.
    pub fn phase_start(&self, phase: &str) -> u64 {
        self.entries
            .iter()
            .find(|e| e.phase == phase)
            .unwrap_or_else(|| panic!("no phase {phase}"))
            .seq
    }

    /// The first entry at or after `from` of this direction and type.
    pub fn find(&self, from: u64, dir: Dir, ty: MessageType) -> u64 {
        self.entries[from as usize..]
            .iter()
            .find(|e| e.dir == dir && e.message_type() == Some(ty))
            .unwrap_or_else(|| panic!("no {ty:?} {dir:?} after seq {from}"))
            .seq
    }

    /// A Go address of the run (`echo`, `refused`, `source_3MiB`).
    pub fn address(&self, name: &str) -> String {
        self.meta["addresses"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no address {name} in the meta"))
            .to_owned()
    }

    /// The recorded upgrade request or response.
    pub fn handshake(&self, dir: &str) -> String {
        self.meta["handshake"]
            .as_array()
            .expect("handshake")
            .iter()
            .find(|h| h["dir"] == dir)
            .and_then(|h| h["text"].as_str())
            .expect("handshake text")
            .to_owned()
    }
}
