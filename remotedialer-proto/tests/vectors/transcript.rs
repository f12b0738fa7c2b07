//! `go-session.jsonl`: the recorded live session, decoded and replayed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use remotedialer_proto::frame::{Body, ConnId, Message, MessageType};
use remotedialer_proto::{Config, ConnectionError, Event, Role, Session, SessionIdentity};
use serde_json::Value;

use crate::load::{go_type_name, int, list, session_log, session_meta, text, unhex};
use crate::sessions::{drain, events, without_id};

/// Checks our decoding against the log's `decoded` object.
fn check_logged_fields(msg: &Message, d: &Value, seq: i64) {
    assert_eq!(msg.id, int(&d["id"]), "seq {seq}: id");
    assert_eq!(
        msg.conn_id,
        ConnId(int(&d["conn_id"])),
        "seq {seq}: conn_id"
    );
    assert_eq!(
        msg.message_type().code(),
        int(&d["type"]),
        "seq {seq}: type"
    );
    assert_eq!(
        go_type_name(msg.message_type()),
        text(&d["type_name"]),
        "seq {seq}"
    );
    match &msg.body {
        Body::Data(p) => {
            assert_eq!(p.len() as i64, int(&d["data_len"]), "seq {seq}: data_len");
            if let Some(s) = d["data_utf8"].as_str() {
                assert_eq!(p.as_ref(), s.as_bytes(), "seq {seq}: data");
            }
        }
        Body::Connect { proto, address } => {
            assert_eq!(proto.as_ref(), text(&d["proto"]).as_bytes(), "seq {seq}");
            assert_eq!(
                address.as_ref(),
                text(&d["address"]).as_bytes(),
                "seq {seq}"
            );
        }
        Body::Error(t) => assert_eq!(t.as_ref(), text(&d["error"]).as_bytes(), "seq {seq}"),
        Body::AddClient(c) | Body::RemoveClient(c) => {
            assert_eq!(c.as_ref(), text(&d["client"]).as_bytes(), "seq {seq}")
        }
        Body::SyncConnections(ids) => {
            let want: Vec<ConnId> = list(d, "ids").iter().map(|v| ConnId(int(v))).collect();
            assert_eq!(ids.iter().collect::<Vec<_>>(), want, "seq {seq}: ids");
        }
        Body::Pause | Body::Resume | Body::Unknown { .. } => {}
    }
}

#[test]
fn live_session_messages_decode_and_reencode_identically() {
    let mut seen = HashMap::<String, usize>::new();
    for e in session_log() {
        if e["type"] != "binary" {
            continue;
        }
        let seq = int(&e["seq"]);
        let bytes = Bytes::from(unhex(text(&e["hex"])));
        let d = &e["decoded"];
        let msg = Message::decode(bytes.clone()).unwrap_or_else(|err| panic!("seq {seq}: {err}"));
        *seen.entry(go_type_name(msg.message_type())).or_default() += 1;
        if e["truncated"].as_bool() == Some(true) {
            // Only the header was logged: check it and the payload length.
            assert_eq!(msg.body, Body::Data(Bytes::new()), "seq {seq}: header only");
            assert_eq!(msg.header_len(), bytes.len(), "seq {seq}: header length");
            let payload_len = int(&e["payload_len"]);
            assert_eq!(payload_len, int(&d["data_len"]), "seq {seq}");
            assert_eq!(
                int(&e["len"]),
                bytes.len() as i64 + payload_len,
                "seq {seq}: len"
            );
            let header = Message::data(int(&d["id"]), ConnId(int(&d["conn_id"])), Bytes::new());
            assert_eq!(header.to_bytes(), bytes, "seq {seq}: header re-encoding");
            assert_eq!(
                (msg.id, msg.conn_id),
                (header.id, header.conn_id),
                "seq {seq}"
            );
            continue;
        }
        assert_eq!(int(&e["len"]), bytes.len() as i64, "seq {seq}: len");
        check_logged_fields(&msg, d, seq);
        assert_eq!(msg.encoded_len(), bytes.len(), "seq {seq}: encoded_len");
        assert_eq!(
            hex::encode(msg.to_bytes()),
            hex::encode(&bytes),
            "seq {seq}: re-encoding"
        );
    }
    for kind in [
        "Data",
        "Connect",
        "Error",
        "Pause",
        "Resume",
        "SyncConnections",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in the log"
        );
    }
}

/// Replays what the Go client sent into our server session, opening each
/// connection when the Go server did, with an application that reads
/// everything at once: connection ids agree with Go's, every byte arrives,
/// each connection ends the way the log shows, and nothing ends the session
/// before the socket fails.
#[test]
fn live_session_replays_into_our_server() {
    let meta = session_meta();
    let identity = SessionIdentity {
        client_key: "foo".into(),
        session_key: int(&meta["server_session_key"]),
    };
    let t0 = Instant::now();
    let mut server = Session::new(Role::Server, identity, Config::default(), t0).unwrap();
    let mut live: HashSet<ConnId> = HashSet::new();
    let mut sent_bytes: HashMap<ConnId, usize> = HashMap::new();
    let mut received: HashMap<ConnId, usize> = HashMap::new();
    let mut ended: HashMap<ConnId, Option<ConnectionError>> = HashMap::new();
    let mut our_errors: Vec<Message> = Vec::new();
    let mut disconnected = false;
    let mut opened = 0;

    for e in session_log() {
        let now = t0 + Duration::from_micros((e["t_ms"].as_f64().unwrap() * 1000.0) as u64);
        let seq = int(&e["seq"]);
        if server.poll_timeout().is_some_and(|t| t.at <= now) {
            server.handle_timeout(now);
        }
        let kind = text(&e["type"]);
        let mut fed: Option<(Message, bool)> = None;
        match (text(&e["dir"]), kind) {
            ("s2c", "binary") => {
                let msg = Message::decode(Bytes::from(unhex(text(&e["hex"])))).unwrap();
                match msg.body {
                    Body::Connect { proto, address } => {
                        let proto = std::str::from_utf8(&proto).unwrap();
                        let address = std::str::from_utf8(&address).unwrap();
                        let id = server.open(proto, address, now).unwrap();
                        assert_eq!(id, msg.conn_id, "seq {seq}: connection ids as Go's");
                        let go = without_id(
                            Message::decode(Bytes::from(unhex(text(&e["hex"])))).unwrap(),
                        );
                        assert_eq!(drain(&mut server), [go], "seq {seq}: the same Connect");
                        live.insert(id);
                        opened += 1;
                    }
                    // The Go application closing a live connection (an Error
                    // for one already gone is Go's echo: not ours to send).
                    Body::Error(t) if live.remove(&msg.conn_id) => {
                        if t.as_ref() == b"EOF" {
                            server.close(msg.conn_id);
                        } else {
                            server.reset(msg.conn_id, std::str::from_utf8(&t).unwrap());
                        }
                    }
                    // Data, Pause and Resume come from Go's own application
                    // and flow control.
                    _ => {}
                }
            }
            ("c2s", "binary") => {
                let mut bytes = unhex(text(&e["hex"]));
                if e["truncated"].as_bool() == Some(true) {
                    let n = usize::try_from(int(&e["payload_len"])).unwrap();
                    bytes.extend(std::iter::repeat_n(0xa5, n));
                }
                let msg = Message::decode(Bytes::from(bytes.clone())).unwrap();
                if let Body::Data(p) = &msg.body {
                    *sent_bytes.entry(msg.conn_id).or_default() += p.len();
                }
                let was_live = live.contains(&msg.conn_id);
                server.handle_message(Bytes::from(bytes), now);
                fed = Some((msg, was_live));
            }
            ("c2s", "ping") | ("c2s", "pong") => server.handle_keepalive(now),
            ("c2s", "recv_error") => {
                server.handle_disconnect(text(&e["error"]));
                disconnected = true;
            }
            _ => {}
        }

        let mut closed_now: Vec<(ConnId, Option<ConnectionError>)> = Vec::new();
        for ev in events(&mut server) {
            match ev {
                Event::Readable(id) => {
                    while let Ok(Some(chunk)) = server.read(id, usize::MAX) {
                        *received.entry(id).or_default() += chunk.len();
                    }
                }
                Event::Closed { conn_id, error } => {
                    while let Ok(Some(chunk)) = server.read(conn_id, usize::MAX) {
                        *received.entry(conn_id).or_default() += chunk.len();
                    }
                    server.close(conn_id);
                    live.remove(&conn_id);
                    ended.insert(conn_id, error.clone());
                    closed_now.push((conn_id, error));
                }
                Event::SessionClosed(err) => {
                    assert!(disconnected, "seq {seq}: session ended early: {err}");
                }
                other => panic!("seq {seq}: unexpected event {other:?}"),
            }
        }
        for m in drain(&mut server) {
            assert_eq!(
                m.message_type(),
                MessageType::Error,
                "seq {seq}: we only close"
            );
            our_errors.push(m);
        }
        assert_eq!(server.is_closed(), disconnected, "seq {seq}");

        // An Error from the client ends exactly that live connection with its
        // text; a SyncConnections ends none of the connections it lists.
        match fed.map(|(m, was_live)| (m.conn_id, m.body, was_live)) {
            Some((conn_id, Body::Error(t), was_live)) => {
                let want: Vec<_> = if was_live {
                    let error = (t.as_ref() != b"EOF")
                        .then(|| ConnectionError::Remote(String::from_utf8_lossy(&t).into()));
                    vec![(conn_id, error)]
                } else {
                    Vec::new()
                };
                assert_eq!(closed_now, want, "seq {seq}");
            }
            Some((_, Body::SyncConnections(ids), _)) => {
                for id in ids.iter() {
                    assert!(
                        live.contains(&id),
                        "seq {seq}: listed connection {id} ended"
                    );
                }
                assert!(closed_now.is_empty(), "seq {seq}: {closed_now:?}");
            }
            _ => {}
        }
    }

    assert!(disconnected && server.is_closed());
    assert_eq!(opened, 5, "the log opens five connections");
    assert_eq!(received, sent_bytes, "every byte the client sent was read");
    assert!(sent_bytes[&ConnId(2)] > 3 << 20, "the 3 MiB echo came back");
    // The refused dial, the denied client and the dropped socket.
    let refused =
        ConnectionError::Remote("dial tcp 127.0.0.1:33667: connect: connection refused".into());
    assert_eq!(ended.get(&ConnId(4)), Some(&Some(refused)));
    assert_eq!(
        ended.get(&ConnId(5)),
        Some(&Some(ConnectionError::Remote("tunnel disconnect".into())))
    );
    assert_eq!(
        ended.get(&ConnId(3)),
        Some(&None),
        "the download ended with EOF"
    );
    assert!(matches!(
        ended.get(&ConnId(6)),
        Some(Some(ConnectionError::SessionClosed(_)))
    ));
    // Our only transmit was the close of connection 2 by the dialer.
    assert_eq!(
        our_errors,
        [without_id(Message::error(0, ConnId(2), "EOF"))]
    );
}
