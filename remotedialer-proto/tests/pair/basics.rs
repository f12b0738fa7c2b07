//! Connections: open, echo, close, reset, and unsolicited input.

use bytes::Bytes;
use remotedialer_proto::{
    Config, ConnId, ConnectionError, Event, Message, MessageType, ReadError, SessionStats,
    WriteError,
};

use Side::{Client, Server};

use crate::common::{Accepted, CLIENT_KEY, End, Pair, SESSION_KEY, Side, TARGET, pattern};
use crate::{REFUSED, assert_empty, closed_events};

// ---------------------------------------------------------------------------
// Connections: open, echo, close
// ---------------------------------------------------------------------------

#[test]
fn echo_open_close() {
    let mut p = Pair::default_config();
    let conn = p.open();
    assert_eq!(conn, ConnId(2), "server ids start at 2, as in Go");
    p.server.session.write(conn, b"hello").unwrap();
    p.drive();
    assert_eq!(
        p.client.accepted,
        [Accepted {
            conn_id: conn,
            proto: "tcp".into(),
            address: TARGET.into()
        }]
    );
    assert_eq!(p.read_all(Client, conn), (b"hello".to_vec(), End::Blocked));

    p.client.session.write(conn, b"world").unwrap();
    p.drive();
    assert_eq!(p.server.take_events(), [Event::Readable(conn)]);
    assert_eq!(p.read_all(Server, conn), (b"world".to_vec(), End::Blocked));

    p.server.session.close(conn);
    p.drive();
    assert_eq!(
        p.server.session.connection_count(),
        0,
        "EOF sent: server forgets the id"
    );
    assert_eq!(p.read_all(Client, conn), (Vec::new(), End::Eof));
    assert_eq!(closed_events(&p.client.take_events(), conn), [None]);
    p.client.session.close(conn);
    p.drive();
    assert_empty(&mut p);

    let kinds = |sent: &[crate::common::Wire]| sent.iter().map(|w| w.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(&p.server.sent),
        [MessageType::Connect, MessageType::Data, MessageType::Error]
    );
    assert_eq!(p.server.sent.last().unwrap().text, "EOF");
    assert_eq!(
        kinds(&p.client.sent),
        [MessageType::Data],
        "releasing a finished id sends nothing"
    );
}

#[test]
fn optimistic_open_buffers_data_sent_before_connect_is_seen() {
    let mut p = Pair::default_config();
    let conn = p.open();
    let data = pattern(100_000, 1);
    assert_eq!(p.server.session.write(conn, &data), Ok(data.len()));
    assert!(!p.client.has_accepted(conn));
    assert!(p.step());
    // Connect went out ahead of the Data written before it was transmitted.
    let kinds: Vec<_> = p.server.sent.iter().map(|w| w.kind).collect();
    assert_eq!(kinds[0], MessageType::Connect);
    assert_eq!(kinds.len(), 1 + data.len().div_ceil(32 << 10));
    assert_eq!(
        p.client.take_events(),
        [
            Event::ConnectRequested {
                conn_id: conn,
                proto: "tcp".into(),
                address: TARGET.into()
            },
            Event::Readable(conn),
        ]
    );
    assert_eq!(p.client.session.readable_len(conn), data.len());
    assert_eq!(p.read_all(Client, conn), (data, End::Blocked));
}

#[test]
fn refused_connect_reports_the_dial_error_and_the_session_lives_on() {
    let mut p = Pair::default_config();
    let conn = p.open();
    p.server
        .session
        .write(conn, b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    p.drive();
    assert!(p.client.has_accepted(conn));
    p.client.session.reset(conn, REFUSED);
    assert_eq!(
        p.client.session.connection_count(),
        0,
        "a reset forgets the id at once"
    );
    p.drive();

    let refused = ConnectionError::Remote(REFUSED.into());
    assert_eq!(
        closed_events(&p.server.take_events(), conn),
        [Some(refused.clone())]
    );
    assert_eq!(
        p.read_all(Server, conn),
        (Vec::new(), End::Error(ReadError::Closed(refused.clone())))
    );
    assert_eq!(
        p.server.session.write(conn, b"x"),
        Err(WriteError::Closed(refused))
    );
    let errors = p.client.sent_kind(MessageType::Error);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].text, REFUSED);

    p.server.session.close(conn);
    assert!(!p.server.session.is_closed() && !p.client.session.is_closed());
    let next = p.open_connected();
    assert_eq!(next, ConnId(3));
    p.client.session.write(next, b"pong").unwrap();
    p.drive();
    assert_eq!(p.read_all(Server, next).0, b"pong");
    p.server.session.close(next);
    p.drive();
    p.client.session.close(next);
    assert_empty(&mut p);
}

#[test]
fn graceful_close_from_either_side_delivers_buffered_bytes_then_eof() {
    for closer in Side::BOTH {
        let mut p = Pair::default_config();
        let conn = p.open_connected();
        let data = pattern(300_000, 2);
        // Written and closed before anything was transmitted: the EOF must
        // still come after every byte.
        assert_eq!(p.pump(closer, conn, &data), data.len());
        p.session(closer).close(conn);
        assert_eq!(
            p.session(closer).write(conn, b"late"),
            Err(WriteError::Closed(ConnectionError::LocallyClosed))
        );
        p.drive();
        let reader = closer.other();
        assert_eq!(
            closed_events(&p.ep(reader).take_events(), conn),
            [None],
            "{closer:?}"
        );
        // Readable in small pieces, then EOF, and EOF again.
        let mut got = Vec::new();
        loop {
            let (chunk, end) = p.read(reader, conn, 7_777);
            got.extend(chunk);
            match end {
                End::Limit => continue,
                End::Eof => break,
                other => panic!("{closer:?}: {other:?}"),
            }
        }
        assert_eq!(got, data);
        assert_eq!(p.session(reader).read(conn, 10), Ok(None));
        assert!(matches!(
            p.session(reader).write(conn, b"x"),
            Err(WriteError::Closed(_))
        ));
        assert_eq!(p.session(closer).connection_count(), 0);
        p.session(reader).close(conn);
        p.drive();
        assert_empty(&mut p);
    }
}

#[test]
fn simultaneous_close_frees_both_sides() {
    let mut p = Pair::default_config();
    let conn = p.open_connected();
    p.server.session.write(conn, b"to client").unwrap();
    p.client.session.write(conn, b"to server").unwrap();
    p.server.session.close(conn);
    p.client.session.close(conn);
    p.drive();
    assert_empty(&mut p);
    // The client's EOF was moot once the server's arrived; nobody answered
    // with "connection not found".
    assert_eq!(p.server.sent_kind(MessageType::Error).len(), 1);
    assert!(p.client.sent_kind(MessageType::Error).len() <= 1);
    for side in Side::BOTH {
        assert!(
            p.ep(side)
                .sent
                .iter()
                .all(|w| !w.text.starts_with("connection not found"))
        );
    }
}

#[test]
fn reset_drops_unsent_data_and_the_peer_reads_the_reason_after_buffered_bytes() {
    let mut p = Pair::default_config();
    let conn = p.open_connected();
    p.client.session.write(conn, b"delivered").unwrap();
    p.drive();
    p.client.session.write(conn, b"never sent").unwrap();
    p.client.session.reset(conn, "target went away");
    p.drive();
    assert_eq!(
        p.read_all(Server, conn),
        (
            b"delivered".to_vec(),
            End::Error(ReadError::Closed(ConnectionError::Remote(
                "target went away".into()
            )))
        )
    );
    p.server.session.close(conn);
    assert_empty(&mut p);
}

// ---------------------------------------------------------------------------
// Hostile and unsolicited input
// ---------------------------------------------------------------------------

#[test]
fn data_for_an_unknown_connection_is_answered_and_a_flood_stays_bounded() {
    let cfg = Config::default();
    let mut p = Pair::default_config();
    p.inject(
        Server,
        Message::data(1, ConnId(42), Bytes::from_static(b"x")).to_bytes(),
    );
    p.drive();
    let errors = p.server.sent_kind(MessageType::Error);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].conn_id, ConnId(42));
    assert_eq!(
        errors[0].text,
        format!("connection not found {CLIENT_KEY}/{SESSION_KEY}/42")
    );

    let now = p.now;
    let payload = Bytes::from(vec![0u8; 1024]);
    for i in 0..10_000 {
        let msg = Message::data(i, ConnId(1_000 + i), payload.clone()).to_bytes();
        p.server.session.handle_message(msg, now);
    }
    let mut replies = Vec::new();
    while let Some(t) = p.server.session.poll_transmit() {
        replies.push(t);
    }
    assert_eq!(
        replies.len(),
        cfg.max_pending_replies,
        "replies beyond the bound are dropped"
    );
    assert_eq!(p.server.session.stats(), SessionStats::default());

    // Once drained, replies flow again, and the session is fine.
    p.inject(
        Server,
        Message::data(1, ConnId(43), Bytes::new()).to_bytes(),
    );
    p.drive();
    assert_eq!(p.server.sent_kind(MessageType::Error).len(), 2);
    assert!(!p.server.session.is_closed());
    let conn = p.open_connected();
    p.client.session.write(conn, b"ok").unwrap();
    p.drive();
    assert_eq!(p.read_all(Server, conn).0, b"ok");
}

#[test]
fn configs_that_would_hang_or_panic_are_refused() {
    use std::time::Duration;
    let bad = [
        Config {
            resume_threshold: 0,
            ..Config::default()
        },
        Config {
            max_session_send_buffer: 0,
            ..Config::default()
        },
        Config {
            max_session_receive_buffer: 0,
            ..Config::default()
        },
        Config {
            sync_interval: Duration::MAX,
            ..Config::default()
        },
        Config {
            keepalive_timeout: Duration::MAX,
            ..Config::default()
        },
    ];
    for cfg in bad {
        assert!(cfg.validate().is_err(), "{cfg:?}");
    }
    assert!(Config::default().validate().is_ok());
}
