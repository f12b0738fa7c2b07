//! `encode[]`: our encoder against Go's bytes.

use bytes::Bytes;
use remotedialer_proto::frame::{Body, ConnId, Message, SyncIds};
use serde_json::Value;

use crate::load::{
    check_blob, check_decoded, expand, frames, go_type_name, int, list, pattern, text, unhex,
};

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
