//! Golden vectors from the Go reference implementation (`shared/vectors/`):
//! byte-exact encoding, Go's decoding decisions, how a session answers each
//! hostile input, the recorded live session, and the scenarios.
//!
//! Where we deliberately differ from Go, the test says so in a comment marked
//! `DEVIATION` and asserts our behaviour instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use remotedialer_proto::frame::{Body, ConnId, DecodeError, Message, MessageType, SyncIds};
use remotedialer_proto::{
    Config, ConnectionError, Event, ReadError, Role, Session, SessionError, SessionIdentity,
    Transmit, WriteError, varint,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- loading

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/"
    ))
}

fn frames() -> &'static Value {
    static FRAMES: OnceLock<Value> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let path = vectors_dir().join("go-frames.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).expect("go-frames.json is JSON")
    })
}

fn session_log() -> Vec<Value> {
    let path = vectors_dir().join("go-session.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("go-session.jsonl line is JSON"))
        .collect()
}

fn session_meta() -> Value {
    let path = vectors_dir().join("go-session.meta.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array"))
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an i64: {v}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

/// The 32 KiB payloads of the vectors: `byte[i] = i % 251`.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Expands the shorthand of `args` (`"h*255 + ':65500'"`, `"E*150"`, and
/// `\n` written as backslash-n) into the real string.
fn expand(desc: &str) -> String {
    let (rep, suffix) = match desc.split_once(" + '") {
        Some((rep, rest)) => (rep, rest.strip_suffix('\'').expect("quoted suffix")),
        None => (desc, ""),
    };
    if let Some((ch, n)) = rep.split_once('*')
        && ch.chars().count() == 1
        && let Ok(n) = n.parse::<usize>()
    {
        return ch.repeat(n) + suffix;
    }
    desc.replace("\\n", "\n")
}

/// Compares `actual` with a `{len, hex}` blob, or a `{len, truncated, sha256,
/// head64_hex}` one.
fn check_blob(actual: &[u8], blob: &Value, what: &str) {
    let len = usize::try_from(int(&blob["len"])).unwrap();
    assert_eq!(actual.len(), len, "{what}: length");
    if blob["truncated"].as_bool() == Some(true) {
        let sha = hex::encode(Sha256::digest(actual));
        assert_eq!(sha, text(&blob["sha256"]), "{what}: sha256");
        let head = unhex(text(&blob["head64_hex"]));
        assert_eq!(
            &actual[..head.len()],
            head.as_slice(),
            "{what}: first 64 bytes"
        );
    } else {
        let expected = blob["hex"].as_str().map(unhex).unwrap_or_default();
        assert_eq!(hex::encode(actual), hex::encode(expected), "{what}: bytes");
    }
}

/// Go's name for a message type, as the vectors spell it.
fn go_type_name(kind: MessageType) -> String {
    match kind {
        MessageType::Data => "Data".into(),
        MessageType::Connect => "Connect".into(),
        MessageType::Error => "Error".into(),
        MessageType::AddClient => "AddClient".into(),
        MessageType::RemoveClient => "RemoveClient".into(),
        MessageType::Pause => "Pause".into(),
        MessageType::Resume => "Resume".into(),
        MessageType::SyncConnections => "SyncConnections".into(),
        MessageType::Unknown(code) => format!("Unknown({code})"),
    }
}

/// The header varints as they appear on the wire: `(id, conn_id, type,
/// header length)`. The length is the real one, so non-minimal varints count
/// in full.
fn wire_header(input: &[u8]) -> (i64, i64, i64, usize) {
    let mut pos = 0;
    let mut fields = [0i64; 3];
    for field in &mut fields {
        let (value, used) = varint::get(&input[pos..]).expect("header varint");
        *field = value;
        pos += used;
    }
    if matches!(
        MessageType::from_code(fields[2]),
        MessageType::Data | MessageType::Connect
    ) {
        pos += varint::get(&input[pos..]).expect("deadline varint").1;
    }
    (fields[0], fields[1], fields[2], pos)
}

// ---------------------------------------------------------------- decoding

/// Maps Go's decode error text to our variant.
fn expected_decode_error(go: &str, input: &[u8]) -> DecodeError {
    match go {
        "EOF" | "unexpected EOF" => DecodeError::Truncated,
        "binary: varint overflows a 64-bit integer" => DecodeError::VarintOverflow,
        "failed to parse connect address" => DecodeError::ConnectAddress {
            conn_id: ConnId(wire_header(input).1),
        },
        other => panic!("unmapped Go decode error {other:?}"),
    }
}

/// Checks our decoding of `input` against Go's `decoded` object.
fn check_decoded(input: &[u8], expect: &Value, got: &Result<Message, DecodeError>, ctx: &str) {
    if expect["ok"].as_bool() == Some(false) {
        let want = expected_decode_error(text(&expect["error"]), input);
        assert_eq!(got.as_ref().err(), Some(&want), "{ctx}: decode error");
        return;
    }
    if let Some(go_err) = expect["sync_decode_error"].as_str() {
        // DEVIATION (in where, not whether): Go's newServerMessage accepts the
        // header and fails when serveMessage parses the payload ("incorrect
        // data format"); we refuse at decode. Both end the session.
        assert_eq!(go_err, "incorrect data format", "{ctx}");
        let len = usize::try_from(int(&expect["body_remaining"]["len"])).unwrap();
        assert_eq!(
            got.as_ref().err(),
            Some(&DecodeError::SyncLength { len }),
            "{ctx}"
        );
        return;
    }
    let msg = got
        .as_ref()
        .unwrap_or_else(|e| panic!("{ctx}: Go accepts, we refuse: {e}"));
    assert_eq!(msg.id, int(&expect["id"]), "{ctx}: id");
    assert_eq!(
        msg.conn_id,
        ConnId(int(&expect["conn_id"])),
        "{ctx}: conn_id"
    );
    assert_eq!(
        msg.message_type().code(),
        int(&expect["type"]),
        "{ctx}: type"
    );
    assert_eq!(
        go_type_name(msg.message_type()),
        text(&expect["type_name"]),
        "{ctx}: name"
    );

    let (_, _, _, header_len) = wire_header(input);
    let payload = &input[header_len..];
    // How many payload bytes Go's decoder reads; the rest is `body_remaining`.
    let consumed = match &msg.body {
        Body::Data(p) | Body::Unknown { payload: p, .. } => {
            assert_eq!(p.as_ref(), payload, "{ctx}: payload");
            0
        }
        Body::Connect { proto, address } => {
            assert_eq!(
                proto.as_ref(),
                text(&expect["proto"]).as_bytes(),
                "{ctx}: proto"
            );
            assert_eq!(
                address.as_ref(),
                text(&expect["address"]).as_bytes(),
                "{ctx}: address"
            );
            let parsed = [proto.as_ref(), b"/", address.as_ref()].concat();
            check_blob(
                &parsed,
                &expect["parsed_bytes"],
                &format!("{ctx}: parsed_bytes"),
            );
            parsed.len()
        }
        Body::Error(t) => {
            assert_eq!(
                t.as_ref(),
                text(&expect["err_text"]).as_bytes(),
                "{ctx}: err_text"
            );
            let is_eof = expect["err_is_io_eof"].as_bool().expect("err_is_io_eof");
            assert_eq!(t.as_ref() == b"EOF", is_eof, "{ctx}: err_is_io_eof");
            t.len()
        }
        Body::AddClient(c) | Body::RemoveClient(c) => {
            assert_eq!(
                c.as_ref(),
                text(&expect["address"]).as_bytes(),
                "{ctx}: client"
            );
            check_blob(c, &expect["parsed_bytes"], &format!("{ctx}: parsed_bytes"));
            c.len()
        }
        Body::Pause | Body::Resume => 0,
        Body::SyncConnections(ids) => {
            let want: Vec<ConnId> = expect["sync_ids"]
                .as_array()
                .map(|a| a.iter().map(|v| ConnId(int(v))).collect())
                .unwrap_or_default();
            assert_eq!(ids.iter().collect::<Vec<_>>(), want, "{ctx}: sync_ids");
            0
        }
    };
    check_blob(
        &payload[consumed..],
        &expect["body_remaining"],
        &format!("{ctx}: body_remaining"),
    );
}

// ---------------------------------------------------------------- encode[]

/// Builds the message an `encode[]` entry describes, with our constructors.
fn build(entry: &Value) -> Message {
    let args = &entry["args"];
    let id = int(&entry["id"]);
    let conn_id = ConnId(int(&entry["conn_id"]));
    let ctor = text(&entry["ctor"]);
    let name = ctor.split('(').next().unwrap();
    let msg = match name {
        "newMessage" => {
            let payload = if let Some(s) = args["data_utf8"].as_str() {
                s.as_bytes().to_vec()
            } else if let Some(h) = args["data_hex"].as_str() {
                unhex(h)
            } else {
                let len = usize::try_from(int(&args["data_len"])).unwrap();
                if args["data_pattern"].is_null() {
                    assert_eq!(len, 0, "{}: a data_len without pattern", entry["name"]);
                }
                pattern(len)
            };
            Message::data(id, conn_id, Bytes::from(payload))
        }
        "newConnect" => Message::connect(
            id,
            conn_id,
            &expand(text(&args["proto"])),
            &expand(text(&args["address"])),
        ),
        "newErrorMessage" => Message::error(id, conn_id, &expand(text(&args["err"]))),
        "newPause" => Message {
            id,
            conn_id,
            body: Body::Pause,
        },
        "newResume" => Message {
            id,
            conn_id,
            body: Body::Resume,
        },
        "newAddClient" => {
            let client = Bytes::from(expand(text(&args["client"])));
            Message {
                id,
                conn_id,
                body: Body::AddClient(client),
            }
        }
        "newRemoveClient" => {
            let client = Bytes::from(expand(text(&args["client"])));
            Message {
                id,
                conn_id,
                body: Body::RemoveClient(client),
            }
        }
        "newSyncConnectionsMessage" => {
            let ids = list(args, "ids").iter().map(|v| ConnId(int(v)));
            Message {
                id,
                conn_id,
                body: Body::SyncConnections(SyncIds::from_ids(ids)),
            }
        }
        other => panic!("unknown Go constructor {other}"),
    };
    if let Some(conn) = args["conn_id"].as_i64() {
        assert_eq!(
            conn, conn_id.0,
            "{}: args and header disagree",
            entry["name"]
        );
    }
    msg
}

#[test]
fn encode_matches_go_byte_for_byte() {
    let entries = list(frames(), "encode");
    assert!(entries.len() >= 50, "expected the full encode[] table");
    for entry in entries {
        let name = text(&entry["name"]);
        let msg = build(entry);
        assert_eq!(
            msg.message_type().code(),
            int(&entry["type"]),
            "{name}: type"
        );
        assert_eq!(
            go_type_name(msg.message_type()),
            text(&entry["type_name"]),
            "{name}"
        );

        let wire = msg.to_bytes();
        assert_eq!(wire.len(), msg.encoded_len(), "{name}: encoded_len");
        let header = unhex(text(&entry["header_hex"]));
        assert_eq!(msg.header_len(), header.len(), "{name}: header_len");
        assert_eq!(
            hex::encode(&wire[..header.len()]),
            hex::encode(&header),
            "{name}: header"
        );
        check_blob(
            &wire[header.len()..],
            &entry["payload"],
            &format!("{name}: payload"),
        );
        check_blob(&wire, &entry["frame"], &format!("{name}: frame"));

        // `wire` equals Go's frame (just checked), so decoding it is decoding Go's.
        let decoded = Message::decode(wire.clone());
        check_decoded(&wire, &entry["decoded"], &decoded, name);
        let decoded = decoded.unwrap();
        assert!(entry["roundtrip_fields_equal"].as_bool().unwrap(), "{name}");
        assert_eq!(
            (decoded.id, decoded.conn_id, decoded.message_type()),
            (msg.id, msg.conn_id, msg.message_type()),
            "{name}: round trip of the header fields"
        );
        // Payloads within Go's read limits come back whole.
        let remaining = int(&entry["decoded"]["body_remaining"]["len"]);
        let kept_whole = match &msg.body {
            Body::Data(_) | Body::SyncConnections(_) | Body::Unknown { .. } => true,
            Body::Pause | Body::Resume => true,
            _ => remaining == 0,
        };
        if kept_whole {
            assert_eq!(decoded, msg, "{name}: full round trip");
        }
    }
}

// ---------------------------------------------------------------- decode[]

fn server_identity() -> SessionIdentity {
    SessionIdentity {
        client_key: "foo".into(),
        session_key: 7,
    }
}

fn client_identity() -> SessionIdentity {
    SessionIdentity {
        client_key: "client".into(),
        session_key: 0,
    }
}

/// Every queued transmit, decoded, with ids zeroed (ours may differ from
/// Go's). Pings are left out.
fn drain(s: &mut Session) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        if let Transmit::Message(bytes) = t {
            let msg = Message::decode(bytes).expect("we transmit what we can decode");
            out.push(without_id(msg));
        }
    }
    out
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A message with its id zeroed: message ids may differ from Go's.
fn without_id(mut m: Message) -> Message {
    m.id = 0;
    m
}

fn go_frames(hexes: &Value) -> Vec<Message> {
    hexes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| without_id(Message::decode(Bytes::from(unhex(text(h)))).unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// What a session did with one input.
struct Served {
    sent: Vec<Message>,
    events: Vec<Event>,
    session: Session,
}

fn serve(role: Role, identity: SessionIdentity, input: &[u8]) -> Served {
    let now = Instant::now();
    let mut session = Session::new(role, identity, Config::default(), now).unwrap();
    session.handle_message(Bytes::copy_from_slice(input), now);
    let events = events(&mut session);
    // A client application with a denying connect authorizer refuses every
    // request the way our API offers: reset with an error text.
    for e in &events {
        if let Event::ConnectRequested { conn_id, .. } = e {
            session.reset(*conn_id, "connect not allowed");
        }
    }
    let sent = drain(&mut session);
    Served {
        sent,
        events,
        session,
    }
}

/// What we send and whether we end, given what Go did. Identical to Go except
/// for the deviations named here.
fn our_expectation(role: Role, go: &Value, input: &[u8]) -> (Vec<Message>, bool) {
    let go_sent = go_frames(&go["frames_written_hex"]);
    let go_ends = go["session_ends"].as_bool().unwrap();
    let Some(err) = go["returned_error"].as_str() else {
        assert!(!go_ends);
        return (go_sent, false);
    };
    assert!(
        go_ends,
        "Go returned {err:?} from serveMessage, which ends Serve"
    );
    let conn_id = ConnId(wire_header(input).1);
    match err {
        // Ours too: a broken SyncConnections ends the session.
        e if e.starts_with("decoding sync connections payload") => (go_sent, true),
        // DEVIATION: Go ends the whole session on a malformed Connect, and on
        // any Connect to a server (or a client whose authorizer refuses). We
        // refuse only that connection id, with an Error carrying Go's text.
        "failed to parse connect address" | "connect not allowed" => {
            (vec![without_id(Message::error(0, conn_id, err))], false)
        }
        // DEVIATION: Go parses AddClient/RemoveClient on every server session
        // (and RemoveClient on clients) and ends the session on a malformed
        // one. Only our Role::Peer tracks announcements (and ends, like Go);
        // Role::Server and Role::Client ignore them, since an agent must not
        // steer routing.
        e if e.starts_with("invalid remote Session") => (Vec::new(), role == Role::Peer),
        other => panic!("unmapped Go serve error {other:?}"),
    }
}

#[test]
fn decode_accepts_and_refuses_like_go() {
    let entries = list(frames(), "decode");
    assert!(entries.len() >= 30, "expected the full decode[] table");
    for entry in entries {
        let name = text(&entry["name"]);
        let input = entry["input"]["hex"]
            .as_str()
            .map(unhex)
            .unwrap_or_default();
        check_blob(&input, &entry["input"], name);
        let got = Message::decode(Bytes::from(input.clone()));
        check_decoded(&input, &entry["decoded"], &got, name);
        // The Go >= 1.20 text maps to the same variant.
        if let Some(newer) = entry["error_go1_20_plus"].as_str() {
            assert_eq!(
                got.as_ref().err(),
                Some(&expected_decode_error(newer, &input)),
                "{name}"
            );
        }
    }
}

#[test]
fn server_session_serves_hostile_input_like_go() {
    let mut checked = 0;
    for entry in list(frames(), "decode") {
        let name = text(&entry["name"]);
        let input = entry["input"]["hex"]
            .as_str()
            .map(unhex)
            .unwrap_or_default();
        let Some(serves) = entry["serve"].as_array() else {
            continue;
        };
        for go in serves {
            let (role, identity) = match text(&go["session"]) {
                "server" => (Role::Server, server_identity()),
                "client_denying_authorizer" => (Role::Client, client_identity()),
                other => panic!("unknown session kind {other}"),
            };
            let (want_sent, want_end) = our_expectation(role, go, &input);
            let served = serve(role, identity, &input);
            assert_eq!(served.sent, want_sent, "{name} on {role:?}: frames sent");
            assert_eq!(
                served.session.is_closed(),
                want_end,
                "{name} on {role:?}: ends"
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} serve results checked");
}

#[test]
fn peer_session_tracks_announcements_and_ends_on_malformed_ones() {
    let mut checked = 0;
    for entry in list(frames(), "decode") {
        let name = text(&entry["name"]);
        let input = entry["input"]["hex"]
            .as_str()
            .map(unhex)
            .unwrap_or_default();
        let Some(go) = entry["serve"]
            .as_array()
            .and_then(|s| s.iter().find(|g| g["session"] == "server"))
        else {
            continue;
        };
        let (want_sent, want_end) = our_expectation(Role::Peer, go, &input);
        let served = serve(Role::Peer, server_identity(), &input);
        assert_eq!(served.sent, want_sent, "{name} on Peer: frames sent");
        assert_eq!(served.session.is_closed(), want_end, "{name} on Peer: ends");
        let decoded = Message::decode(Bytes::from(input.clone()));
        match decoded.map(|m| m.body) {
            Ok(Body::AddClient(client)) if !want_end => {
                let key = std::str::from_utf8(&client)
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap();
                assert!(served.session.has_remote_client(key), "{name}");
                assert_eq!(
                    served.events,
                    [Event::RemoteClientAdded(key.into())],
                    "{name}"
                );
            }
            Ok(Body::AddClient(client) | Body::RemoveClient(client)) if want_end => {
                // Malformed: Go ends with "invalid remote Session <text>: ...".
                assert!(want_end, "{name}");
                let text = String::from_utf8(client.to_vec()).unwrap();
                let err = go["returned_error"].as_str().unwrap();
                assert!(
                    err.starts_with(&format!("invalid remote Session {text}")),
                    "{name}"
                );
                assert_eq!(
                    served.session.close_reason(),
                    Some(&SessionError::BadAnnouncement(text)),
                    "{name}"
                );
            }
            _ => {}
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} entries checked");

    // A full add/remove cycle on a peer session.
    let now = Instant::now();
    let mut peer = Session::new(Role::Peer, server_identity(), Config::default(), now).unwrap();
    let add = Message {
        id: 1,
        conn_id: ConnId(0),
        body: Body::AddClient("foo/1".into()),
    };
    let remove = Message {
        id: 2,
        conn_id: ConnId(0),
        body: Body::RemoveClient("foo/1".into()),
    };
    peer.handle_message(add.to_bytes(), now);
    assert!(peer.has_remote_client("foo"));
    peer.handle_message(remove.to_bytes(), now);
    assert!(!peer.has_remote_client("foo"));
    assert_eq!(
        events(&mut peer),
        [
            Event::RemoteClientAdded("foo".into()),
            Event::RemoteClientRemoved("foo".into())
        ]
    );
    assert!(drain(&mut peer).is_empty() && !peer.is_closed());
}

#[test]
fn refused_decodes_end_the_session_except_connect() {
    // Go's Serve returns on every decode error. So do we, except for a
    // malformed Connect (see our_expectation: DEVIATION, that id only).
    let mut checked = 0;
    for entry in list(frames(), "decode") {
        if entry["decoded"]["ok"].as_bool() != Some(false) {
            continue;
        }
        let name = text(&entry["name"]);
        let input = entry["input"]["hex"]
            .as_str()
            .map(unhex)
            .unwrap_or_default();
        let want = expected_decode_error(text(&entry["decoded"]["error"]), &input);
        let served = serve(Role::Server, server_identity(), &input);
        if let DecodeError::ConnectAddress { conn_id } = want {
            let reply = without_id(Message::error(
                0,
                conn_id,
                "failed to parse connect address",
            ));
            assert_eq!(served.sent, [reply], "{name}");
            assert!(!served.session.is_closed(), "{name}");
        } else {
            assert!(served.sent.is_empty(), "{name}");
            assert_eq!(
                served.session.close_reason(),
                Some(&SessionError::Decode(want)),
                "{name}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} refused inputs");
}

// ---------------------------------------------------------------- go-session.jsonl

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

// ---------------------------------------------------------------- scenarios[]

/// A server session holding exactly the connections `ids` (ids are handed
/// out from 2 upward, as in Go; the ones not wanted are reset).
fn server_with_conns(ids: &[i64], config: Config, now: Instant) -> Session {
    let mut s = Session::new(Role::Server, server_identity(), config, now).unwrap();
    let max = ids.iter().copied().max().unwrap();
    for want in 2..=max {
        let id = s.open("tcp", "127.0.0.1:80", now).unwrap();
        assert_eq!(id, ConnId(want));
    }
    for unwanted in (2..=max).filter(|i| !ids.contains(i)) {
        s.reset(ConnId(unwanted), "unused");
    }
    drain(&mut s);
    events(&mut s);
    s
}

fn scenario_conn(scenario: &Value) -> ConnId {
    for step in list(scenario, "steps") {
        let mut hexes = step["input_hex"]
            .as_str()
            .into_iter()
            .chain(list(step, "frames_written_hex").iter().map(text));
        if let Some(h) = hexes.next() {
            return ConnId(wire_header(&unhex(h)).1);
        }
    }
    panic!("scenario {} names no connection", scenario["name"]);
}

fn step_input(step: &Value) -> Bytes {
    Bytes::from(unhex(text(&step["input_hex"])))
}

/// `Read -> n=3 data="abc" err=<nil>` as `(data, err)`; `err` is `None` for
/// `<nil>`.
fn parse_read(result: &str) -> (String, Option<String>) {
    let data = result
        .split("data=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let err = result
        .split(" err=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim();
    (data.to_owned(), (err != "<nil>").then(|| err.to_owned()))
}

/// Our read against Go's logged `Read` result.
fn check_read(s: &mut Session, conn: ConnId, result: &str, ctx: &str) {
    let (data, err) = parse_read(result);
    let got = s.read(conn, 1 << 16);
    if !data.is_empty() {
        assert_eq!(got, Ok(Some(Bytes::from(data))), "{ctx}");
        return;
    }
    match err.as_deref() {
        Some("EOF") => assert_eq!(got, Ok(None), "{ctx}: end of stream"),
        Some(text) => match got {
            Err(ReadError::Closed(e)) => assert_eq!(e.to_string(), text, "{ctx}"),
            other => panic!("{ctx}: expected error {text:?}, got {other:?}"),
        },
        None => panic!("{ctx}: Go read nothing and no error"),
    }
}

fn scenario(name: &str) -> &'static Value {
    list(frames(), "scenarios")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("scenario {name} missing from the vectors"))
}

#[test]
fn every_scenario_is_covered() {
    let covered = [
        "pause_then_local_read_sends_spurious_resume",
        "error_for_known_conn_is_echoed_back",
        "error_text_for_known_conn",
        "local_close_sends_error_EOF",
        "write_deadline_closes_connection_when_it_expires",
        "sync_connections_closes_unlisted_without_error_frame",
    ];
    for s in list(frames(), "scenarios") {
        let name = text(&s["name"]);
        assert!(covered.contains(&name), "scenario {name} has no test");
    }
}

#[test]
fn scenario_pause_received_does_not_make_our_reader_resume() {
    let sc = scenario("pause_then_local_read_sends_spurious_resume");
    let steps = list(sc, "steps");
    let conn = scenario_conn(sc);
    let now = Instant::now();
    let mut s = server_with_conns(&[conn.0], Config::default(), now);

    // Pause, then Data: neither Go nor we send anything.
    for step in &steps[..2] {
        s.handle_message(step_input(step), now);
        assert_eq!(
            drain(&mut s),
            go_frames(&step["frames_written_hex"]),
            "{}",
            step["action"]
        );
    }
    assert_eq!(s.stats().paused_by_peer, 1);
    assert_eq!(events(&mut s), [Event::Readable(conn)]);

    // The application reads. Go sends a Resume the peer never asked for and
    // lifts the pause on its own writes.
    let step = &steps[2];
    check_read(&mut s, conn, text(&step["result"]), "read");
    let go = go_frames(&step["frames_written_hex"]);
    assert_eq!(
        go.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        [Body::Resume]
    );
    // DEVIATION: the two pause directions are separate state here, so we
    // send nothing and our writes stay paused until the peer resumes us.
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.write(conn, b"x"), Err(WriteError::Blocked));
    let resume = Message {
        id: 9,
        conn_id: conn,
        body: Body::Resume,
    };
    s.handle_message(resume.to_bytes(), now);
    assert_eq!(events(&mut s), [Event::Writable(conn)]);
    assert_eq!(s.write(conn, b"x"), Ok(1));
}

fn check_error_scenario(name: &str) {
    let sc = scenario(name);
    let steps = list(sc, "steps");
    let conn = scenario_conn(sc);
    let now = Instant::now();
    let mut s = server_with_conns(&[conn.0], Config::default(), now);
    let mut closed_with = None;
    for (i, step) in steps.iter().enumerate() {
        let ctx = format!("{name} step {i}: {}", step["action"]);
        let go = go_frames(&step["frames_written_hex"]);
        if step["input_hex"].is_string() {
            let input = step_input(step);
            let received = Message::decode(input.clone()).unwrap();
            s.handle_message(input, now);
            let sent = drain(&mut s);
            if let Body::Error(t) = &received.body
                && closed_with.is_none()
            {
                // Go echoes an Error for a live connection back once.
                assert_eq!(go, [without_id(received.clone())], "{ctx}");
                // DEVIATION: we do not echo it; the peer has already
                // forgotten the id, so the echo carries nothing.
                assert!(sent.is_empty(), "{ctx}");
                let error = (t.as_ref() != b"EOF")
                    .then(|| ConnectionError::Remote(String::from_utf8_lossy(t).into()));
                let evs = events(&mut s);
                assert!(evs.contains(&Event::Closed {
                    conn_id: conn,
                    error: error.clone()
                }));
                closed_with = Some(error);
            } else {
                assert_eq!(sent, go, "{ctx}");
                events(&mut s);
            }
        } else {
            // An application read: buffered bytes first, then EOF or the error.
            check_read(&mut s, conn, text(&step["result"]), &ctx);
            assert_eq!(drain(&mut s), go, "{ctx}");
        }
    }
    assert!(closed_with.is_some(), "{name}: no Error step");
}

#[test]
fn scenario_error_eof_delivers_buffered_data_then_eof_without_echo() {
    check_error_scenario("error_for_known_conn_is_echoed_back");
}

#[test]
fn scenario_error_text_delivers_buffered_data_then_the_error_without_echo() {
    check_error_scenario("error_text_for_known_conn");
}

#[test]
fn scenario_local_close_sends_error_eof_after_data() {
    let sc = scenario("local_close_sends_error_EOF");
    let steps = list(sc, "steps");
    let conn = scenario_conn(sc);
    let now = Instant::now();
    let mut s = server_with_conns(&[conn.0], Config::default(), now);

    // Write: the same Data message as Go (ids aside).
    let go_write = go_frames(&steps[0]["frames_written_hex"]);
    let Body::Data(payload) = &go_write[0].body else {
        panic!("Go wrote no Data")
    };
    assert_eq!(s.write(conn, payload), Ok(payload.len()));
    // Close before the Data went out: Data first, then Error EOF.
    s.close(conn);
    let go_close = go_frames(&steps[1]["frames_written_hex"]);
    assert_eq!(go_close, [without_id(Message::error(0, conn, "EOF"))]);
    let sent = drain(&mut s);
    assert_eq!(sent, [go_write, go_close].concat());

    // A later write fails (Go: "io: read/write on closed pipe"), sends nothing.
    assert!(text(&steps[2]["result"]).contains("n=0 err="));
    match s.write(conn, b"again") {
        Err(WriteError::Blocked) | Ok(_) => panic!("write after close must fail"),
        Err(_) => {}
    }
    assert_eq!(drain(&mut s), go_frames(&steps[2]["frames_written_hex"]));
}

#[test]
fn scenario_write_deadline_is_not_a_core_concept() {
    let sc = scenario("write_deadline_closes_connection_when_it_expires");
    let steps = list(sc, "steps");
    let conn = scenario_conn(sc);
    let now = Instant::now();
    let mut s = server_with_conns(&[conn.0], Config::default(), now);

    let go_write = go_frames(&steps[0]["frames_written_hex"]);
    let Body::Data(payload) = &go_write[0].body else {
        panic!("Go wrote no Data")
    };
    assert_eq!(s.write(conn, payload), Ok(payload.len()));
    assert_eq!(drain(&mut s), go_write);

    // Go closes the connection (Error EOF) when a write deadline set long
    // before passes, even after the write completed: a library quirk.
    let go_later = go_frames(&steps[1]["frames_written_hex"]);
    assert_eq!(go_later, [without_id(Message::error(0, conn, "EOF"))]);
    // DEVIATION: the sans-IO core has no write deadlines (adapters own
    // timeouts), and time passing closes nothing.
    let later = now + Duration::from_millis(300);
    s.handle_keepalive(later);
    s.handle_timeout(later);
    assert!(drain(&mut s).is_empty());
    assert!(events(&mut s).is_empty());
    assert_eq!(s.write(conn, b"b"), Ok(1));
}

/// `ok; remaining=[3]; conn2.Err=sync from client; ...` as the ids that
/// remain and `(id, error)` for the ones closed.
fn parse_sync_result(result: &str) -> (Vec<i64>, Vec<(i64, String)>) {
    let mut remaining = Vec::new();
    let mut closed = Vec::new();
    for part in result.split(';').map(str::trim) {
        if let Some(list) = part
            .strip_prefix("remaining=[")
            .and_then(|r| r.strip_suffix(']'))
        {
            remaining = list
                .split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(|x| x.parse().unwrap())
                .collect();
        } else if let Some(rest) = part.strip_prefix("conn") {
            let (id, err) = rest.split_once(".Err=").unwrap();
            closed.push((id.parse().unwrap(), err.to_owned()));
        }
    }
    (remaining, closed)
}

#[test]
fn scenario_sync_closes_unlisted_connections_silently() {
    let sc = scenario("sync_connections_closes_unlisted_without_error_frame");
    let step = &list(sc, "steps")[0];
    let (remaining, closed) = parse_sync_result(text(&step["result"]));
    assert!(!remaining.is_empty() && !closed.is_empty());
    let mut all: Vec<i64> = remaining
        .iter()
        .copied()
        .chain(closed.iter().map(|c| c.0))
        .collect();
    all.sort_unstable();

    // Our sync_grace protects connections younger than it (see the next
    // test); Go has none, so the scenario runs with it off.
    let config = Config {
        sync_grace: Duration::ZERO,
        ..Config::default()
    };
    let now = Instant::now();
    let mut s = server_with_conns(&all, config, now);
    s.handle_message(step_input(step), now);

    assert_eq!(
        drain(&mut s),
        go_frames(&step["frames_written_hex"]),
        "no Error frames"
    );
    let want: Vec<Event> = closed
        .iter()
        .map(|(id, _)| Event::Closed {
            conn_id: ConnId(*id),
            error: Some(ConnectionError::Sync),
        })
        .collect();
    assert_eq!(events(&mut s), want);
    for (id, err) in &closed {
        match s.read(ConnId(*id), 16) {
            Err(ReadError::Closed(e)) => assert_eq!(&e.to_string(), err, "Go's text"),
            other => panic!("conn {id}: {other:?}"),
        }
    }
    for id in &remaining {
        assert_eq!(s.write(ConnId(*id), b"still open"), Ok(10), "conn {id}");
    }
}

#[test]
fn sync_spares_connections_younger_than_sync_grace() {
    let t0 = Instant::now();
    let config = Config::default();
    let grace = config.sync_grace;
    let mut s = server_with_conns(&[2], config, t0);
    let empty = Message {
        id: 1,
        conn_id: ConnId(0),
        body: Body::SyncConnections(SyncIds::default()),
    };

    // Within the grace period the client may not have seen our Connect yet.
    let young = t0 + grace - Duration::from_millis(1);
    s.handle_message(empty.to_bytes(), young);
    assert!(events(&mut s).is_empty());
    assert_eq!(s.write(ConnId(2), b"x"), Ok(1));

    // Once it is older, an unlisting sync closes it, silently.
    drain(&mut s);
    s.handle_message(empty.to_bytes(), t0 + grace);
    assert_eq!(
        events(&mut s),
        [Event::Closed {
            conn_id: ConnId(2),
            error: Some(ConnectionError::Sync)
        }]
    );
    assert!(drain(&mut s).is_empty());
}
