//! `decode[]`: Go's decoding decisions, and how a session answers each input.

use std::time::Instant;

use bytes::Bytes;
use remotedialer_proto::frame::{Body, ConnId, DecodeError, Message};
use remotedialer_proto::{Config, Event, Role, Session, SessionError, SessionIdentity};
use serde_json::Value;

use crate::load::{
    check_blob, check_decoded, expected_decode_error, frames, list, text, unhex, wire_header,
};
use crate::sessions::{client_identity, drain, events, go_frames, server_identity, without_id};

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

    // At the cap of announced clients, a repeated announcement adds nothing
    // and is no reason to end the link; a new one is.
    let cfg = Config {
        max_remote_clients: 1,
        ..Config::default()
    };
    let mut peer = Session::new(Role::Peer, server_identity(), cfg, now).unwrap();
    let add = |id, who: &'static str| Message {
        id,
        conn_id: ConnId(0),
        body: Body::AddClient(who.into()),
    };
    peer.handle_message(add(1, "foo/1").to_bytes(), now);
    peer.handle_message(add(2, "foo/1").to_bytes(), now);
    assert!(!peer.is_closed(), "a repeated announcement ended the link");
    peer.handle_message(add(3, "bar/1").to_bytes(), now);
    assert!(peer.is_closed(), "the cap was not enforced");
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
