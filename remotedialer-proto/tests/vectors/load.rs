//! Reading the Go vectors and comparing against what Go recorded.

use std::path::PathBuf;
use std::sync::OnceLock;

use remotedialer_proto::frame::{Body, ConnId, DecodeError, Message, MessageType};
use remotedialer_proto::varint;
use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- loading

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/"
    ))
}

pub(crate) fn frames() -> &'static Value {
    static FRAMES: OnceLock<Value> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let path = vectors_dir().join("go-frames.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).expect("go-frames.json is JSON")
    })
}

pub(crate) fn session_log() -> Vec<Value> {
    let path = vectors_dir().join("go-session.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("go-session.jsonl line is JSON"))
        .collect()
}

pub(crate) fn session_meta() -> Value {
    let path = vectors_dir().join("go-session.meta.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub(crate) fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array"))
}

pub(crate) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an i64: {v}"))
}

pub(crate) fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

/// The 32 KiB payloads of the vectors: `byte[i] = i % 251`.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Expands the shorthand of `args` (`"h*255 + ':65500'"`, `"E*150"`, and
/// `\n` written as backslash-n) into the real string.
pub(crate) fn expand(desc: &str) -> String {
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
pub(crate) fn check_blob(actual: &[u8], blob: &Value, what: &str) {
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
pub(crate) fn go_type_name(kind: MessageType) -> String {
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
pub(crate) fn wire_header(input: &[u8]) -> (i64, i64, i64, usize) {
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
pub(crate) fn expected_decode_error(go: &str, input: &[u8]) -> DecodeError {
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
pub(crate) fn check_decoded(
    input: &[u8],
    expect: &Value,
    got: &Result<Message, DecodeError>,
    ctx: &str,
) {
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
