//! What each transcript entry means for the side under test: sent by the
//! scripted Go side, expected from ours, or skipped (with the reason: the
//! deliberate differences from Go listed in `replay.rs`).

use bytes::Bytes;
use remotedialer_tokio::proto::{Body, ConnId, Message, MessageType};

use super::peer::{Check, Expect};
use super::play::{Policy, Step};
use super::transcript::{self, Dir, Entry, Kind, Transcript, tail, with_payload};

/// What the side under test must send for a binary entry of the other
/// side: shared by both roles.
pub fn expect_reply(t: &Transcript, e: &Entry) -> Step {
    let msg = e.message();
    let conn = msg.conn_id.0;
    let go_side = match e.dir {
        Dir::C2s => Dir::S2c,
        Dir::S2c => Dir::C2s,
    };
    match &msg.body {
        Body::Data(p) => Step::ExpectData {
            conn,
            len: p.len() as u64,
        },
        Body::Error(_) if t.closed_before(e.seq, go_side, conn) => Step::Skip(
            "Go sends more Errors for a connection the other side already closed \
             (an echo, or its pipe's own close); ours sends one Error per close",
        ),
        Body::Error(_) if t.failed_before(e.seq) => {
            Step::Skip("written by Go after the WebSocket had failed")
        }
        Body::Error(_) => Step::Expect(Expect {
            seq: e.seq,
            check: Check::Tail(tail(&e.bytes).to_vec()),
            data_before: Some(t.data_before(e.seq, e.dir, conn)),
        }),
        _ => Step::Expect(Expect {
            seq: e.seq,
            check: Check::Tail(tail(&e.bytes).to_vec()),
            data_before: None,
        }),
    }
}

/// Our server under test: the Go client's entries are sent.
pub fn rust_server_policy() -> Policy {
    Box::new(|t, e| match (e.dir, e.kind) {
        (Dir::C2s, Kind::Binary) => Step::Send(e.bytes.clone()),
        (Dir::C2s, Kind::Ping) => Step::SendPing,
        (Dir::C2s, Kind::RecvError) => Step::Drop,
        (Dir::S2c, Kind::Pong) => Step::ExpectPong,
        (Dir::S2c, Kind::SendError) => Step::Skip("Go's server wrote to the dropped connection"),
        (Dir::S2c, Kind::Binary) if e.conn_id() == 999_999 => Step::Skip(
            "Data for a connection that does not exist, injected by the Go harness; \
             a Server only sends Data on connections it opened",
        ),
        (Dir::S2c, Kind::Binary) => expect_reply(t, e),
        _ => Step::Skip("not in this transcript"),
    })
}

/// Our client under test: the Go server's entries are sent, with the Go
/// run's target addresses replaced by ours.
pub fn rust_client_policy(addresses: Vec<(String, String)>) -> Policy {
    let remap = move |bytes: &Bytes| -> Bytes {
        let ty = Message::decode(bytes.clone()).map(|m| m.message_type());
        if !matches!(ty, Ok(MessageType::Connect | MessageType::Error)) {
            return bytes.clone();
        }
        let p = transcript::payload(bytes);
        let mut text = String::from_utf8_lossy(p).into_owned();
        for (go, ours) in &addresses {
            text = text.replace(go.as_str(), ours);
        }
        if text.as_bytes() == p {
            bytes.clone()
        } else {
            Bytes::from(with_payload(bytes, text.as_bytes()))
        }
    };
    Box::new(move |t, e| match (e.dir, e.kind) {
        (Dir::S2c, Kind::Binary) => Step::Send(remap(&e.bytes)),
        (Dir::S2c, Kind::SendError) => Step::Drop,
        (Dir::S2c, Kind::Pong) => Step::Skip("pongs are the WebSocket layer's"),
        (Dir::C2s, Kind::Ping) => {
            Step::Skip("our client pings on its own (fast) timer; counted separately")
        }
        (Dir::C2s, Kind::RecvError) => Step::Skip(
            "Go's client drops the session when its authorizer refuses a Connect; ours does not",
        ),
        (Dir::C2s, Kind::Binary) => {
            let msg = e.message();
            let conn = msg.conn_id.0;
            match &msg.body {
                Body::SyncConnections(_) => Step::ExpectSync {
                    seq: e.seq,
                    tail: tail(&e.bytes).to_vec(),
                },
                Body::Error(text)
                    if e.phase == "connect_denied_by_client_authorizer"
                        && text.as_ref() == b"tunnel disconnect" =>
                {
                    // Ours refuses the one connection and keeps the session.
                    let refused = t.entries[..e.seq as usize]
                        .iter()
                        .rev()
                        .find(|x| {
                            x.dir == Dir::S2c && x.message_type() == Some(MessageType::Connect)
                        })
                        .expect("the refused Connect")
                        .conn_id();
                    let reply =
                        Message::error(0, ConnId(refused), "connect not allowed").to_bytes();
                    Step::Expect(Expect {
                        seq: e.seq,
                        check: Check::Tail(tail(&reply).to_vec()),
                        data_before: None,
                    })
                }
                Body::Error(_) if conn == 999_999 => Step::Expect(Expect {
                    seq: e.seq,
                    check: Check::ErrorText {
                        conn,
                        prefix: "connection not found ".into(),
                        suffix: format!("/0/{conn}"),
                    },
                    data_before: None,
                }),
                Body::Error(_) => match expect_reply(t, e) {
                    Step::Expect(mut exp) => {
                        // Dial errors name our target's address.
                        exp.check = Check::Tail(tail(&remap(&e.bytes)).to_vec());
                        Step::Expect(exp)
                    }
                    other => other,
                },
                _ => expect_reply(t, e),
            }
        }
        _ => Step::Skip("not in this transcript"),
    })
}
