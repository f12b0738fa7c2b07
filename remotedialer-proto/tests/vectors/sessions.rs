//! Sessions fed vector input, and what they queued and reported.

use bytes::Bytes;
use remotedialer_proto::frame::Message;
use remotedialer_proto::{Event, Session, SessionIdentity, Transmit};
use serde_json::Value;

use crate::load::{text, unhex};

pub(crate) fn server_identity() -> SessionIdentity {
    SessionIdentity {
        client_key: "foo".into(),
        session_key: 7,
    }
}

pub(crate) fn client_identity() -> SessionIdentity {
    SessionIdentity {
        client_key: "client".into(),
        session_key: 0,
    }
}

/// Every queued transmit, decoded, with ids zeroed (ours may differ from
/// Go's). Pings are left out.
pub(crate) fn drain(s: &mut Session) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        if let Transmit::Message(bytes) = t {
            let msg = Message::decode(bytes).expect("we transmit what we can decode");
            out.push(without_id(msg));
        }
    }
    out
}

pub(crate) fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A message with its id zeroed: message ids may differ from Go's.
pub(crate) fn without_id(mut m: Message) -> Message {
    m.id = 0;
    m
}

pub(crate) fn go_frames(hexes: &Value) -> Vec<Message> {
    hexes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| without_id(Message::decode(Bytes::from(unhex(text(h)))).unwrap()))
                .collect()
        })
        .unwrap_or_default()
}
