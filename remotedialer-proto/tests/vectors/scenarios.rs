//! `scenarios[]`: connection-level behaviours recorded from Go.

use std::time::{Duration, Instant};

use bytes::Bytes;
use remotedialer_proto::frame::{Body, ConnId, Message, SyncIds};
use remotedialer_proto::{Config, ConnectionError, Event, ReadError, Role, Session, WriteError};
use serde_json::Value;

use crate::load::{frames, list, text, unhex, wire_header};
use crate::sessions::{drain, events, go_frames, server_identity, without_id};

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
    let mut s = server_with_conns(&[2], config.clone(), t0);
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

    // A sync right after the last applied one is ignored (each costs a
    // pass over every connection), even though the connection is old now.
    drain(&mut s);
    s.handle_message(empty.to_bytes(), t0 + grace);
    assert!(events(&mut s).is_empty());

    // The next one in due time closes it, silently.
    s.handle_message(empty.to_bytes(), young + config.sync_interval / 2);
    assert_eq!(
        events(&mut s),
        [Event::Closed {
            conn_id: ConnId(2),
            error: Some(ConnectionError::Sync)
        }]
    );
    assert!(drain(&mut s).is_empty());
}
