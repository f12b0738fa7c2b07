//! remotedialer messages: one WebSocket binary message each.
//!
//! ```text
//! varint id | varint conn_id | varint type | [varint deadline: Data, Connect] | payload
//! ```
//!
//! Decoding borrows from the received message: payloads are [`Bytes`] slices
//! of it, never copies. Encoding appends to a caller-owned buffer.

use std::fmt;

use bytes::{BufMut, Bytes};

use crate::varint::{self, VarintError};

/// The legacy deadline field Go writes into Data and Connect (milliseconds;
/// receivers ignore it).
pub const LEGACY_DEADLINE_MS: i64 = 15_000;
/// Go's `newServerMessage` reads at most this many bytes of a Connect payload.
pub const CONNECT_READ_LIMIT: usize = 266;
/// Go reads at most this many bytes of an Error text.
pub const ERROR_READ_LIMIT: usize = 100;
/// Go reads at most this many bytes of an AddClient/RemoveClient payload.
pub const CLIENT_READ_LIMIT: usize = 100;
/// Size of one connection id in a SyncConnections payload.
pub const SYNC_ID_LEN: usize = 8;

/// The identifier of one tunneled connection within a session.
///
/// Go uses `int64`; the server allocates them from 2 upward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub i64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Message type numbers on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1: bytes for a connection.
    Data,
    /// 2: open a connection to `proto/address`.
    Connect,
    /// 3: close a connection (`EOF` = graceful).
    Error,
    /// 4: a peer can reach `clientKey/sessionKey`.
    AddClient,
    /// 5: a peer can no longer reach `clientKey/sessionKey`.
    RemoveClient,
    /// 6: stop sending Data on this connection.
    Pause,
    /// 7: sending Data may go on.
    Resume,
    /// 8: the sender's live connection ids.
    SyncConnections,
    /// Any other number: ignored by receivers.
    Unknown(i64),
}

impl MessageType {
    /// The number written on the wire.
    pub fn code(self) -> i64 {
        match self {
            MessageType::Data => 1,
            MessageType::Connect => 2,
            MessageType::Error => 3,
            MessageType::AddClient => 4,
            MessageType::RemoveClient => 5,
            MessageType::Pause => 6,
            MessageType::Resume => 7,
            MessageType::SyncConnections => 8,
            MessageType::Unknown(code) => code,
        }
    }

    /// The type for a number read from the wire.
    pub fn from_code(code: i64) -> Self {
        match code {
            1 => MessageType::Data,
            2 => MessageType::Connect,
            3 => MessageType::Error,
            4 => MessageType::AddClient,
            5 => MessageType::RemoveClient,
            6 => MessageType::Pause,
            7 => MessageType::Resume,
            8 => MessageType::SyncConnections,
            other => MessageType::Unknown(other),
        }
    }

    /// Data and Connect carry the legacy deadline varint.
    fn has_deadline(self) -> bool {
        matches!(self, MessageType::Data | MessageType::Connect)
    }
}

/// What a message carries.
///
/// Text fields are raw bytes, as in Go (which does not check UTF-8); payloads
/// that Go reads only partly are kept as Go keeps them (see the `*_LIMIT`
/// constants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Bytes for the connection; any length, including zero.
    Data(Bytes),
    /// Open a connection. `proto` may be `clientKey::proto` on peer links.
    Connect {
        /// Before the first `/`, e.g. `tcp`.
        proto: Bytes,
        /// After the first `/`, e.g. `127.0.0.1:8125`.
        address: Bytes,
    },
    /// Close the connection; `EOF` means a graceful close.
    Error(Bytes),
    /// `clientKey/sessionKey` became reachable through the sender.
    AddClient(Bytes),
    /// `clientKey/sessionKey` is no longer reachable through the sender.
    RemoveClient(Bytes),
    /// Stop sending Data on this connection.
    Pause,
    /// Data may flow again on this connection.
    Resume,
    /// The sender's live connection ids, ascending.
    SyncConnections(SyncIds),
    /// A type this implementation does not know; receivers ignore it.
    Unknown {
        /// The type number.
        code: i64,
        /// Everything after the header.
        payload: Bytes,
    },
}

/// The payload of a SyncConnections message: little-endian 64-bit ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncIds(Bytes);

impl SyncIds {
    /// Encodes `ids` (Go sorts them ascending before sending).
    pub fn from_ids(ids: impl IntoIterator<Item = ConnId>) -> Self {
        let mut out = Vec::new();
        for id in ids {
            out.put_u64_le(id.0 as u64);
        }
        SyncIds(Bytes::from(out))
    }

    /// Wraps a received payload; its length must be a multiple of 8.
    pub fn from_payload(payload: Bytes) -> Result<Self, DecodeError> {
        if !payload.len().is_multiple_of(SYNC_ID_LEN) {
            return Err(DecodeError::SyncLength { len: payload.len() });
        }
        Ok(SyncIds(payload))
    }

    /// The ids, in the order sent.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ConnId> + '_ {
        self.0.chunks_exact(SYNC_ID_LEN).map(|chunk| {
            let mut raw = [0u8; SYNC_ID_LEN];
            raw.copy_from_slice(chunk);
            ConnId(i64::from_le_bytes(raw))
        })
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.0.len() / SYNC_ID_LEN
    }

    /// True when no id is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw payload.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// One remotedialer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's message counter; receivers ignore it.
    pub id: i64,
    /// The connection, or 0 for session-level messages.
    pub conn_id: ConnId,
    /// What the message carries.
    pub body: Body,
}

/// Why a received message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended inside the header (Go: `EOF`).
    #[error("message truncated inside its header")]
    Truncated,
    /// A header varint does not fit 64 bits (Go: `binary: varint overflows a 64-bit integer`).
    #[error("varint overflows a 64-bit integer")]
    VarintOverflow,
    /// A Connect payload without `/` in its first 266 bytes (Go: `failed to parse connect address`).
    #[error("failed to parse connect address on connection {conn_id}")]
    ConnectAddress {
        /// The connection the Connect was for.
        conn_id: ConnId,
    },
    /// A SyncConnections payload whose length is not a multiple of 8 (Go:
    /// `decoding sync connections payload: incorrect data format`).
    #[error("sync connections payload of {len} bytes is not a multiple of 8")]
    SyncLength {
        /// The payload length.
        len: usize,
    },
}

impl From<VarintError> for DecodeError {
    fn from(e: VarintError) -> Self {
        match e {
            VarintError::Truncated => DecodeError::Truncated,
            VarintError::Overflow => DecodeError::VarintOverflow,
        }
    }
}

/// Reads one varint from `input` at `*pos`, advancing it.
fn take_varint(input: &[u8], pos: &mut usize) -> Result<i64, DecodeError> {
    let rest = input.get(*pos..).ok_or(DecodeError::Truncated)?;
    let (value, used) = varint::get(rest)?;
    *pos += used;
    Ok(value)
}

fn prefix(payload: &Bytes, limit: usize) -> Bytes {
    payload.slice(..payload.len().min(limit))
}

impl Message {
    /// A Data message.
    pub fn data(id: i64, conn_id: ConnId, payload: Bytes) -> Self {
        Message {
            id,
            conn_id,
            body: Body::Data(payload),
        }
    }

    /// A Connect message for `proto/address`.
    pub fn connect(id: i64, conn_id: ConnId, proto: &str, address: &str) -> Self {
        let body = Body::Connect {
            proto: Bytes::copy_from_slice(proto.as_bytes()),
            address: Bytes::copy_from_slice(address.as_bytes()),
        };
        Message { id, conn_id, body }
    }

    /// An Error message; `EOF` is a graceful close.
    pub fn error(id: i64, conn_id: ConnId, text: &str) -> Self {
        let body = Body::Error(Bytes::copy_from_slice(text.as_bytes()));
        Message { id, conn_id, body }
    }

    /// The wire type of this message.
    pub fn message_type(&self) -> MessageType {
        match &self.body {
            Body::Data(_) => MessageType::Data,
            Body::Connect { .. } => MessageType::Connect,
            Body::Error(_) => MessageType::Error,
            Body::AddClient(_) => MessageType::AddClient,
            Body::RemoveClient(_) => MessageType::RemoveClient,
            Body::Pause => MessageType::Pause,
            Body::Resume => MessageType::Resume,
            Body::SyncConnections(_) => MessageType::SyncConnections,
            Body::Unknown { code, .. } => MessageType::Unknown(*code),
        }
    }

    /// Decodes a received WebSocket binary message. Payloads are slices of
    /// `input`.
    pub fn decode(input: Bytes) -> Result<Message, DecodeError> {
        let mut pos = 0;
        let id = take_varint(&input, &mut pos)?;
        let conn_id = ConnId(take_varint(&input, &mut pos)?);
        let kind = MessageType::from_code(take_varint(&input, &mut pos)?);
        if kind.has_deadline() {
            take_varint(&input, &mut pos)?;
        }
        let payload = input.slice(pos.min(input.len())..);
        let body = match kind {
            MessageType::Data => Body::Data(payload),
            MessageType::Connect => {
                let target = prefix(&payload, CONNECT_READ_LIMIT);
                let slash = target
                    .iter()
                    .position(|&b| b == b'/')
                    .ok_or(DecodeError::ConnectAddress { conn_id })?;
                Body::Connect {
                    proto: target.slice(..slash),
                    address: target.slice(slash + 1..),
                }
            }
            MessageType::Error => Body::Error(prefix(&payload, ERROR_READ_LIMIT)),
            MessageType::AddClient => Body::AddClient(prefix(&payload, CLIENT_READ_LIMIT)),
            MessageType::RemoveClient => Body::RemoveClient(prefix(&payload, CLIENT_READ_LIMIT)),
            MessageType::Pause => Body::Pause,
            MessageType::Resume => Body::Resume,
            MessageType::SyncConnections => Body::SyncConnections(SyncIds::from_payload(payload)?),
            MessageType::Unknown(code) => Body::Unknown { code, payload },
        };
        Ok(Message { id, conn_id, body })
    }

    /// Length of the header (ids, type, legacy deadline).
    pub fn header_len(&self) -> usize {
        header_len(self.id, self.conn_id, self.message_type())
    }

    /// Total encoded length.
    pub fn encoded_len(&self) -> usize {
        let payload = match &self.body {
            Body::Data(p) | Body::Error(p) | Body::AddClient(p) | Body::RemoveClient(p) => p.len(),
            Body::Connect { proto, address } => proto.len() + 1 + address.len(),
            Body::Pause | Body::Resume => 0,
            Body::SyncConnections(ids) => ids.as_bytes().len(),
            Body::Unknown { payload, .. } => payload.len(),
        };
        self.header_len() + payload
    }

    /// Appends the encoded message to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        put_header(buf, self.id, self.conn_id, self.message_type());
        match &self.body {
            Body::Data(p) | Body::Error(p) | Body::AddClient(p) | Body::RemoveClient(p) => {
                buf.put_slice(p)
            }
            Body::Connect { proto, address } => {
                buf.put_slice(proto);
                buf.put_u8(b'/');
                buf.put_slice(address);
            }
            Body::Pause | Body::Resume => {}
            Body::SyncConnections(ids) => buf.put_slice(ids.as_bytes()),
            Body::Unknown { payload, .. } => buf.put_slice(payload),
        }
    }

    /// The encoded message as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        Bytes::from(out)
    }
}

/// Header length for a message with these fields.
pub(crate) fn header_len(id: i64, conn_id: ConnId, kind: MessageType) -> usize {
    let deadline = if kind.has_deadline() {
        varint::encoded_len(LEGACY_DEADLINE_MS)
    } else {
        0
    };
    varint::encoded_len(id)
        + varint::encoded_len(conn_id.0)
        + varint::encoded_len(kind.code())
        + deadline
}

/// Writes a header; the payload follows directly. Lets the session write a
/// Data message's payload straight from the application's buffer.
pub(crate) fn put_header(buf: &mut impl BufMut, id: i64, conn_id: ConnId, kind: MessageType) {
    varint::put(buf, id);
    varint::put(buf, conn_id.0);
    varint::put(buf, kind.code());
    if kind.has_deadline() {
        varint::put(buf, LEGACY_DEADLINE_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trip_is_zero_copy() {
        let msg = Message::data(2, ConnId(2), Bytes::from_static(b"hello"));
        let wire = msg.to_bytes();
        assert_eq!(hex(&wire), "040402b0ea0168656c6c6f");
        let back = Message::decode(wire.clone()).unwrap();
        assert_eq!(back, msg);
        let Body::Data(payload) = back.body else {
            panic!("not data")
        };
        assert_eq!(payload.as_ptr(), wire[6..].as_ptr());
    }

    #[test]
    fn connect_splits_at_first_slash_within_limit() {
        let msg = Message::connect(1, ConnId(2), "tcp", "a/b:1");
        let back = Message::decode(msg.to_bytes()).unwrap();
        assert_eq!(back, msg);
        let mut raw = vec![0x02, 0x04, 0x04, 0xb0, 0xea, 0x01];
        raw.extend(std::iter::repeat_n(b't', CONNECT_READ_LIMIT));
        raw.extend(b"/x");
        assert_eq!(
            Message::decode(Bytes::from(raw)),
            Err(DecodeError::ConnectAddress { conn_id: ConnId(2) })
        );
    }

    #[test]
    fn sync_ids_round_trip() {
        let ids = SyncIds::from_ids([ConnId(2), ConnId(-1), ConnId(1 << 40)]);
        assert_eq!(
            ids.iter().collect::<Vec<_>>(),
            [ConnId(2), ConnId(-1), ConnId(1 << 40)]
        );
        assert!(SyncIds::from_payload(Bytes::from_static(&[0; 7])).is_err());
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
