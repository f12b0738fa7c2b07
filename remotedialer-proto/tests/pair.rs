//! A server session and a client session driven against each other in memory
//! with a fake clock: connections, flow control, keepalive, SyncConnections,
//! hostile input, and a property test over random interleavings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Accepted, CLIENT_KEY, End, Pair, SESSION_KEY, Side, TARGET, pattern, small_config};
use remotedialer_proto::{
    Config, ConnId, ConnectionError, Event, Message, MessageType, OpenError, ReadError,
    SessionError, SessionStats, WriteError,
};

use Side::{Client, Server};

const REFUSED: &str = "dial tcp 127.0.0.1:1: connect: connection refused";

fn closed_events(events: &[Event], conn: ConnId) -> Vec<Option<ConnectionError>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Closed { conn_id, error } if *conn_id == conn => Some(error.clone()),
            _ => None,
        })
        .collect()
}

fn assert_empty(p: &mut Pair) {
    for side in Side::BOTH {
        let s = p.session(side);
        assert_eq!(s.connection_count(), 0, "{side:?} still holds connections");
        assert_eq!(s.stats(), SessionStats::default(), "{side:?} stats");
        assert!(!s.wants_transmit(), "{side:?} still wants to transmit");
    }
}

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

    let kinds = |sent: &[common::Wire]| sent.iter().map(|w| w.kind).collect::<Vec<_>>();
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
// Flow control
// ---------------------------------------------------------------------------

#[test]
fn pause_blocks_the_writer_and_reading_resumes_it() {
    let cfg = Config::default();
    let mut p = Pair::default_config();
    let conn = p.open_connected();
    let data = pattern(6 << 20, 3);
    let mut sent = 0;
    let mut blocked = false;
    // Uneven pieces, so the Pause is decided in the middle of a batch of Data
    // and more Data arrives after it.
    for _ in 0..1000 {
        match p
            .server
            .session
            .write(conn, &data[sent..(sent + 200_000).min(data.len())])
        {
            Ok(n) => sent += n,
            Err(WriteError::Blocked) => blocked = true,
            Err(e) => panic!("{e}"),
        }
        p.drive();
        let unread = p.client.session.readable_len(conn);
        assert_eq!(unread, sent, "everything transmitted arrives");
        let pauses = p.client.sent_count(conn, MessageType::Pause);
        assert_eq!(
            pauses,
            usize::from(unread > cfg.pause_threshold),
            "at {unread} unread"
        );
        if blocked {
            break;
        }
    }
    assert!(blocked, "the writer was never blocked");
    let unread = p.client.session.readable_len(conn);
    assert!(
        unread > cfg.pause_threshold + (32 << 10),
        "Data arrived after the Pause: {unread}"
    );
    assert!(unread <= cfg.pause_threshold + cfg.max_connection_send_buffer);
    assert_eq!(p.server.session.write(conn, b"x"), Err(WriteError::Blocked));
    assert_eq!(p.server.session.stats().paused_by_peer, 1);
    assert_eq!(p.client.session.stats().pausing_peer, 1);
    assert_eq!(p.client.sent_count(conn, MessageType::Resume), 0);
    p.server.take_events();

    // Read it down in 64 KiB pieces: exactly one Resume, sent once below 256 KiB.
    let mut got = Vec::new();
    while p.client.session.readable_len(conn) > 0 {
        let (chunk, end) = p.read(Client, conn, 64 << 10);
        assert!(matches!(end, End::Limit | End::Blocked));
        got.extend(chunk);
        p.drive();
        let unread = p.client.session.readable_len(conn);
        let resumes = p.client.sent_count(conn, MessageType::Resume);
        assert_eq!(
            resumes,
            usize::from(unread < cfg.resume_threshold),
            "at {unread} unread"
        );
        let writable = p.server.take_events().contains(&Event::Writable(conn));
        assert_eq!(
            writable,
            resumes == 1,
            "Writable follows the Resume, at {unread} unread"
        );
        if resumes == 1 {
            break;
        }
    }
    assert_eq!(p.client.sent_count(conn, MessageType::Pause), 1);
    assert_eq!(p.server.session.stats().paused_by_peer, 0);

    // The rest flows; everything arrives once, in order.
    while sent < data.len() {
        sent += p.pump(Server, conn, &data[sent..]);
        got.extend(p.read_all(Client, conn).0);
    }
    p.drive();
    got.extend(p.read_all(Client, conn).0);
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    assert_eq!(
        p.client.sent_count(conn, MessageType::Pause),
        p.client.sent_count(conn, MessageType::Resume)
    );
}

/// Go's `TestExceedBuffer`: two responses through one tunnel, the first never
/// read, the second read completely.
#[test]
fn a_paused_connection_never_stalls_another() {
    let cfg = Config::default();
    let mut p = Pair::default_config();
    let (a, b) = (p.open_connected(), p.open_connected());
    let (da, db) = (pattern(4 << 20, 10), pattern(4 << 20, 11));
    let (mut sa, mut sb) = (0, 0);
    let mut got_b = Vec::new();
    for _ in 0..10_000 {
        for (conn, data, sent) in [(a, &da, &mut sa), (b, &db, &mut sb)] {
            if *sent < data.len() {
                match p.client.session.write(conn, &data[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(WriteError::Blocked) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
        p.drive();
        got_b.extend(p.read_all(Server, b).0);
        if got_b.len() == db.len() {
            break;
        }
    }
    assert!(got_b == db, "the second connection was read completely");
    assert!(sa < da.len(), "the first is held back");
    assert!(p.server.session.readable_len(a) > cfg.pause_threshold);
    assert_eq!(p.client.session.write(a, b"x"), Err(WriteError::Blocked));
    assert_eq!(p.server.sent_count(a, MessageType::Pause), 1);
    assert_eq!(p.server.sent_count(b, MessageType::Pause), 0);

    // Reading the first releases it.
    let mut got_a = Vec::new();
    for _ in 0..10_000 {
        if sa < da.len() {
            sa += p.pump(Client, a, &da[sa..]);
        }
        got_a.extend(p.read_all(Server, a).0);
        p.drive();
        if got_a.len() == da.len() {
            break;
        }
    }
    assert!(got_a == da);
}

#[test]
fn a_peer_ignoring_pause_loses_that_connection_only() {
    let cfg = small_config();
    let mut p = Pair::new(cfg.clone());
    let (a, b) = (p.open_connected(), p.open_connected());
    let chunk = Bytes::from(pattern(4096, 5));
    let mut injected = 0;
    let mut id = 1_000;
    let overflow = ConnectionError::ReceiveOverflow(cfg.max_connection_receive_buffer);
    while injected <= cfg.max_connection_receive_buffer + (64 << 10) {
        p.inject(Client, Message::data(id, a, chunk.clone()).to_bytes());
        id += 1;
        injected += chunk.len();
        p.drive();
        let buffered = p.client.session.readable_len(a);
        assert!(buffered <= cfg.max_connection_receive_buffer);
        let closed = closed_events(&p.client.take_events(), a);
        if injected <= cfg.max_connection_receive_buffer {
            assert_eq!(buffered, injected);
            assert!(closed.is_empty());
        } else if injected == cfg.max_connection_receive_buffer + chunk.len() {
            assert_eq!(
                closed,
                [Some(overflow.clone())],
                "closed when the cap is passed"
            );
        } else {
            assert!(closed.is_empty(), "one Closed only");
            assert_eq!(
                buffered, cfg.max_connection_receive_buffer,
                "later Data is dropped"
            );
        }
    }
    assert_eq!(p.client.sent_count(a, MessageType::Pause), 1);
    let errors = p.client.sent_kind(MessageType::Error);
    assert_eq!(errors.len(), 1, "one Error tells the peer");
    assert_eq!(errors[0].conn_id, a);
    assert_eq!(errors[0].text, overflow.to_string());
    assert_eq!(
        p.read_all(Server, a).1,
        End::Error(ReadError::Closed(ConnectionError::Remote(
            overflow.to_string()
        )))
    );
    // The application still gets what was buffered, then the error.
    let (got, end) = p.read_all(Client, a);
    assert_eq!(got.len(), cfg.max_connection_receive_buffer);
    assert_eq!(end, End::Error(ReadError::Closed(overflow)));

    // The other connection is untouched, both ways.
    let data = pattern(200_000, 6);
    assert!(p.transfer(Server, b, &data) == data);
    p.client.session.write(b, b"fine").unwrap();
    p.drive();
    assert_eq!(p.read_all(Server, b).0, b"fine");
    assert!(!p.client.session.is_closed() && !p.server.session.is_closed());
}

#[test]
fn the_session_receive_budget_closes_the_connection_that_would_exceed_it() {
    let cfg = Config {
        max_session_receive_buffer: 160 << 10,
        ..small_config()
    };
    let mut p = Pair::new(cfg.clone());
    let (a, b, c) = (p.open_connected(), p.open_connected(), p.open_connected());
    let chunk = Bytes::from(pattern(4096, 7));
    let mut id = 5_000;
    let mut feed = |p: &mut Pair, conn: ConnId, n: usize| {
        for _ in 0..n {
            p.inject(Client, Message::data(id, conn, chunk.clone()).to_bytes());
            id += 1;
        }
        p.drive();
    };
    feed(&mut p, a, 16);
    feed(&mut p, b, 16);
    feed(&mut p, c, 8);
    assert_eq!(
        p.client.session.stats().buffered_receive,
        160 << 10,
        "exactly at the budget"
    );
    assert!(
        p.client
            .take_events()
            .iter()
            .all(|e| !matches!(e, Event::Closed { .. }))
    );
    feed(&mut p, c, 1);
    let budget = ConnectionError::SessionBudget(cfg.max_session_receive_buffer);
    let events = p.client.take_events();
    assert_eq!(closed_events(&events, c), [Some(budget.clone())]);
    assert!(closed_events(&events, a).is_empty() && closed_events(&events, b).is_empty());
    let (got, end) = p.read_all(Client, c);
    assert_eq!(
        (got.len(), end),
        (32 << 10, End::Error(ReadError::Closed(budget.clone())))
    );
    assert_eq!(
        p.read_all(Server, c).1,
        End::Error(ReadError::Closed(ConnectionError::Remote(
            budget.to_string()
        )))
    );
    // Reading frees budget for the others.
    assert_eq!(p.read_all(Client, a).0.len(), 64 << 10);
    feed(&mut p, b, 8);
    assert_eq!(p.client.session.readable_len(b), 96 << 10);
    assert_eq!(closed_events(&p.client.take_events(), b), []);
}

/// A connection refused a write because the session's send budget was full
/// gets its Writable once the budget has room again, even when the rest of
/// the budget is held by connections the peer has paused.
#[test]
fn a_write_refused_by_the_session_budget_is_woken_when_room_appears() {
    let cfg = small_config();
    let mut p = Pair::new(cfg.clone());
    let conns: Vec<ConnId> = (0..4).map(|_| p.open_connected()).collect();
    let (stuck, free) = (&conns[..3], conns[3]);
    // Three connections the client never reads: paused while each has a full
    // send queue on the server, which fills the session's send budget.
    for (i, &conn) in stuck.iter().enumerate() {
        let data = pattern(cfg.pause_threshold * 2, 20 + i as u64);
        let mut sent = 0;
        while p.client.session.readable_len(conn) <= cfg.pause_threshold {
            sent += p.server.session.write(conn, &data[sent..]).unwrap();
            p.flush(Server);
        }
        // The client's Pause is not delivered yet: fill the queue, then let
        // the Pause arrive before any of it is transmitted.
        p.server.session.write(conn, &data[sent..]).unwrap();
        p.step_from(Client);
        p.drive();
        assert_eq!(p.server.session.write(conn, b"x"), Err(WriteError::Blocked));
    }
    let stats = p.server.session.stats();
    assert_eq!(stats.paused_by_peer, 3);
    assert_eq!(stats.buffered_send, cfg.max_session_send_buffer);
    assert_eq!(p.server.session.write(free, b"x"), Err(WriteError::Blocked));
    p.server.take_events();
    // One paused connection is read: its queue drains, and the budget has
    // room again (though more than half of it is still held).
    let (mut got, _) = p.read_all(Client, stuck[0]);
    p.drive();
    got.extend(p.read_all(Client, stuck[0]).0);
    p.drive();
    assert!(p.server.session.stats().buffered_send < cfg.max_session_send_buffer);
    let events = p.server.take_events();
    assert!(
        events.contains(&Event::Writable(free)),
        "no Writable for {free}: {events:?}"
    );
    assert!(p.server.session.write(free, b"x").is_ok());
}

/// The same, when the budget is freed by a connection ending with bytes
/// still queued: the Writable comes at once, not only at the next transmit.
#[test]
fn a_connection_ending_with_queued_bytes_wakes_budget_waiters() {
    let cfg = Config {
        max_session_send_buffer: 48 << 10,
        ..small_config()
    };
    let mut p = Pair::new(cfg.clone());
    let (stuck, waiter) = (p.open_connected(), p.open_connected());
    let data = pattern(cfg.pause_threshold * 2, 30);
    let mut sent = 0;
    while p.client.session.readable_len(stuck) <= cfg.pause_threshold {
        sent += p.server.session.write(stuck, &data[sent..]).unwrap();
        p.flush(Server);
    }
    p.server.session.write(stuck, &data[sent..]).unwrap();
    p.step_from(Client);
    p.drive();
    // `stuck` holds 32 KiB of the 48 KiB budget; fill the rest from `waiter`.
    assert_eq!(
        p.server.session.write(waiter, &data[..16 << 10]),
        Ok(16 << 10)
    );
    assert_eq!(
        p.server.session.write(waiter, b"x"),
        Err(WriteError::Blocked)
    );
    p.drive();
    assert_eq!(p.server.session.stats().buffered_send, 32 << 10);
    assert!(p.server.take_events().contains(&Event::Writable(waiter)));
    // Fill the budget again, be refused, and free it by resetting `stuck`.
    assert_eq!(
        p.server.session.write(waiter, &data[..16 << 10]),
        Ok(16 << 10)
    );
    assert_eq!(
        p.server.session.write(waiter, b"x"),
        Err(WriteError::Blocked)
    );
    p.server.session.reset(stuck, "enough");
    let events: Vec<Event> = std::iter::from_fn(|| p.server.session.poll_event()).collect();
    assert_eq!(
        events,
        [Event::Writable(waiter)],
        "woken by the reset itself"
    );
}

// ---------------------------------------------------------------------------
// Keepalive
// ---------------------------------------------------------------------------

#[test]
fn the_client_pings_every_interval_and_the_server_never_does() {
    let mut p = Pair::default_config();
    p.advance(Duration::from_millis(4_999));
    assert_eq!(p.client.pings_sent, 0);
    p.advance(Duration::from_millis(1));
    assert_eq!(p.client.pings_sent, 1);
    p.advance(Duration::from_secs(5 * 100));
    assert_eq!(p.client.pings_sent, 101);
    assert_eq!(p.server.pings_sent, 0);
    assert!(!p.client.session.is_closed() && !p.server.session.is_closed());
}

#[test]
fn no_ping_or_pong_for_the_keepalive_timeout_ends_the_session() {
    let cfg = Config::default();
    let mut p = Pair::default_config();
    p.deliver_pings = false;
    let (a, b) = (p.open_connected(), p.open_connected());
    p.server.session.write(a, b"left over").unwrap();
    p.client.session.write(b, b"bye").unwrap();
    p.drive();
    // Data does not count as a sign of life (as in Go).
    for _ in 0..5 {
        p.advance(Duration::from_secs(10));
        p.client.session.write(b, b".").unwrap();
        p.drive();
    }
    p.advance(cfg.keepalive_timeout - Duration::from_secs(50) - Duration::from_millis(1));
    assert!(!p.client.session.is_closed() && !p.server.session.is_closed());
    assert_eq!(
        p.client.pings_sent, 11,
        "pings were sent, the network lost them"
    );
    p.advance(Duration::from_millis(1));

    let err = SessionError::KeepaliveTimeout(cfg.keepalive_timeout);
    let gone = ConnectionError::SessionClosed(err.clone());
    for side in Side::BOTH {
        assert_eq!(p.session(side).close_reason(), Some(&err), "{side:?}");
        let events = p.ep(side).take_events();
        assert_eq!(
            events.last(),
            Some(&Event::SessionClosed(err.clone())),
            "{side:?}"
        );
        assert_eq!(closed_events(&events, a), [Some(gone.clone())]);
        assert_eq!(closed_events(&events, b), [Some(gone.clone())]);
        assert_eq!(p.session(side).poll_timeout(), None);
    }
    assert_eq!(
        p.read_all(Client, a),
        (
            b"left over".to_vec(),
            End::Error(ReadError::Closed(gone.clone()))
        )
    );
    assert_eq!(
        p.read_all(Server, b),
        (
            b"bye.....".to_vec(),
            End::Error(ReadError::Closed(gone.clone()))
        )
    );
    assert_eq!(
        p.server.session.write(a, b"x"),
        Err(WriteError::Closed(gone))
    );
    let now = p.now;
    assert_eq!(
        p.server.session.open("tcp", TARGET, now),
        Err(OpenError::SessionClosed(err))
    );
    for side in Side::BOTH {
        for conn in [a, b] {
            p.session(side).close(conn);
        }
    }
    assert_empty(&mut p);
}

#[test]
fn pongs_keep_the_client_alive_and_pings_keep_the_server_alive() {
    let mut p = Pair::default_config();
    let conn = p.open_connected();
    p.advance(Duration::from_secs(600));
    assert!(!p.client.session.is_closed() && !p.server.session.is_closed());
    assert_eq!(p.client.pings_sent, 120);
    p.server.session.write(conn, b"still here").unwrap();
    p.drive();
    assert_eq!(p.read_all(Client, conn).0, b"still here");

    // Pings arrive but the Pongs are lost: only the client's deadline passes;
    // the server sees the WebSocket go away.
    p.deliver_pongs = false;
    p.advance(Duration::from_secs(60));
    let timeout = SessionError::KeepaliveTimeout(Duration::from_secs(60));
    assert_eq!(p.client.session.close_reason(), Some(&timeout));
    assert_eq!(
        p.server.session.close_reason(),
        Some(&SessionError::Disconnected("websocket closed".into()))
    );
}

// ---------------------------------------------------------------------------
// SyncConnections
// ---------------------------------------------------------------------------

#[test]
fn the_client_sends_its_live_ids_every_sync_interval() {
    let mut p = Pair::default_config();
    let (a, b, c) = (p.open_connected(), p.open_connected(), p.open_connected());
    let d = p.open_connected();
    p.client.session.close(b);
    p.server.session.close(c);
    p.drive();
    p.server.session.close(b);
    p.advance(Duration::from_secs(59));
    assert!(p.client.sent_kind(MessageType::SyncConnections).is_empty());
    p.advance(Duration::from_secs(1));
    let syncs = p.client.sent_kind(MessageType::SyncConnections);
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0].conn_id, ConnId(0));
    assert_eq!(
        syncs[0].ids,
        [a, d],
        "live ids, ascending; not the closed ones"
    );
    p.advance(Duration::from_secs(60 * 4));
    assert_eq!(p.client.sent_kind(MessageType::SyncConnections).len(), 5);
    assert!(p.server.sent_kind(MessageType::SyncConnections).is_empty());
    for conn in [a, d] {
        assert!(closed_events(&p.server.take_events(), conn).is_empty());
        p.server.session.write(conn, b"ok").unwrap();
    }
}

/// Drops the client's Error for `conn`: the server never hears of the reset.
fn lose_client_errors_for(conn: ConnId) -> common::DropFilter {
    Box::new(move |from, msg| {
        from == Client && msg.conn_id == conn && msg.message_type() == MessageType::Error
    })
}

#[test]
fn sync_closes_a_connection_the_client_no_longer_has() {
    let mut p = Pair::default_config();
    let (lost, kept) = (p.open_connected(), p.open_connected());
    p.drop_filter = Some(lose_client_errors_for(lost));
    p.client.session.reset(lost, "gone");
    p.drive();
    assert_eq!(
        p.client.session.connection_ids().collect::<Vec<_>>(),
        [kept]
    );
    assert!(p.server.session.write(lost, b"into the void").is_ok());
    p.advance(Duration::from_secs(59));
    assert!(closed_events(&p.server.take_events(), lost).is_empty());
    p.advance(Duration::from_secs(1));
    let events = p.server.take_events();
    assert_eq!(closed_events(&events, lost), [Some(ConnectionError::Sync)]);
    assert!(closed_events(&events, kept).is_empty());
    assert_eq!(
        p.read_all(Server, lost).1,
        End::Error(ReadError::Closed(ConnectionError::Sync))
    );
    assert_eq!(
        p.server.sent_count(lost, MessageType::Error),
        0,
        "closed without an Error"
    );
    p.server.session.close(lost);
    p.client.session.write(kept, b"alive").unwrap();
    p.drive();
    assert_eq!(p.read_all(Server, kept).0, b"alive");
}

/// Go's race: the client builds its list before it has seen the Connect of a
/// connection the server just opened.
#[test]
fn sync_spares_a_connection_younger_than_the_grace_period() {
    for grace in [Config::default().sync_grace, Duration::ZERO] {
        let mut p = Pair::new(Config {
            sync_grace: grace,
            ..Config::default()
        });
        let lost = p.open_connected();
        p.drop_filter = Some(lose_client_errors_for(lost));
        p.client.session.reset(lost, "gone");
        p.drive();
        p.advance(Duration::from_secs(59));
        let young = p.open(); // Connect still queued when the sync is built
        p.advance(Duration::from_secs(1));
        let syncs = p.client.sent_kind(MessageType::SyncConnections);
        assert_eq!(syncs.len(), 1);
        assert_eq!(syncs[0].ids, [], "the race happened: neither id listed");
        assert!(p.client.has_accepted(young));
        let events = p.server.take_events();
        assert_eq!(closed_events(&events, lost), [Some(ConnectionError::Sync)]);
        if grace.is_zero() {
            // Without the grace period this is Go's behaviour: the young
            // connection is closed under the application.
            assert_eq!(closed_events(&events, young), [Some(ConnectionError::Sync)]);
            continue;
        }
        assert!(
            closed_events(&events, young).is_empty(),
            "young connection spared"
        );
        p.client.session.write(young, b"made it").unwrap();
        p.drive();
        assert_eq!(p.read_all(Server, young).0, b"made it");
        p.advance(Duration::from_secs(60));
        let syncs = p.client.sent_kind(MessageType::SyncConnections);
        assert_eq!(syncs[1].ids, [young]);
        assert!(closed_events(&p.server.take_events(), young).is_empty());
    }
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

// ---------------------------------------------------------------------------
// Property test: random interleavings against a model
// ---------------------------------------------------------------------------

mod model {
    use std::collections::HashSet;
    use std::sync::OnceLock;
    use std::time::Duration;

    use proptest::prelude::*;
    use remotedialer_proto::{ConnId, ConnectionError, Event, ReadError, SessionStats, WriteError};

    use remotedialer_proto::Config;

    use super::common::{End, Pair, Side, TARGET, small_config};

    /// Small limits, and a session send budget that one paused connection
    /// with a full queue holds more than half of.
    pub fn config() -> Config {
        Config {
            max_session_send_buffer: 48 << 10,
            ..small_config()
        }
    }

    /// The stream of one direction of one connection is a window into this
    /// table, starting at a per-direction offset; the period is prime so a
    /// misplaced 4 KiB message cannot look right.
    const PERIOD: usize = 65_521;
    const MAX_WRITE: usize = 200 << 10;
    /// Longest slice compared at once.
    const READ_WINDOW: usize = 1 << 20;

    fn table() -> &'static [u8] {
        static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
        TABLE.get_or_init(|| {
            // Periodic, so that every window of a stream reads the same
            // however writes and reads cut it.
            let base = super::pattern(PERIOD, 99);
            base.iter()
                .cycle()
                .take(PERIOD + READ_WINDOW)
                .copied()
                .collect()
        })
    }

    fn idx(side: Side) -> usize {
        match side {
            Side::Server => 0,
            Side::Client => 1,
        }
    }

    #[derive(Debug, Clone)]
    pub enum Op {
        Open,
        Write {
            side: Side,
            conn: usize,
            len: usize,
            pump: bool,
        },
        Read {
            side: Side,
            conn: usize,
            max: usize,
        },
        Close {
            side: Side,
            conn: usize,
        },
        Reset {
            side: Side,
            conn: usize,
        },
        Step {
            first: Side,
        },
        Drive,
        Advance {
            ms: u64,
        },
        /// Advance with every Ping and Pong lost; long enough, it kills the
        /// session.
        Silence {
            secs: u64,
        },
    }

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Server), Just(Side::Client)]
    }

    pub fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Open),
            10 => (side(), any::<usize>(), 0..=MAX_WRITE, any::<bool>())
                .prop_map(|(side, conn, len, pump)| Op::Write { side, conn, len, pump }),
            8 => (side(), any::<usize>(), prop_oneof![1..64usize, 1..4096usize, 1..(256usize << 10)])
                .prop_map(|(side, conn, max)| Op::Read { side, conn, max }),
            1 => (side(), any::<usize>()).prop_map(|(side, conn)| Op::Close { side, conn }),
            1 => (side(), any::<usize>()).prop_map(|(side, conn)| Op::Reset { side, conn }),
            4 => side().prop_map(|first| Op::Step { first }),
            2 => Just(Op::Drive),
            1 => (0..20_000u64).prop_map(|ms| Op::Advance { ms }),
            1 => prop_oneof![9 => 0..30u64, 1 => 50..90u64].prop_map(|secs| Op::Silence { secs }),
        ]
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum LocalEnd {
        Closed,
        Reset(String),
    }

    #[derive(Debug)]
    struct Conn {
        id: ConnId,
        /// What each side's application did to end it.
        local: [Option<LocalEnd>; 2],
        /// Bytes each side's writes were credited with.
        written: [usize; 2],
        /// Bytes each side read (of the other's stream).
        read: [usize; 2],
        /// Each side saw its reads end (EOF or error).
        read_ended: [bool; 2],
        /// Each side got `Event::Closed`.
        closed_event: [bool; 2],
        /// Each side's last write was refused by flow control and no Writable
        /// came since.
        blocked: [bool; 2],
    }

    impl Conn {
        /// Offset in the table of the stream written by `side`.
        fn seed(&self, side: Side) -> usize {
            ((self.id.0 as usize) * 2 + idx(side)) * 7_919 % PERIOD
        }

        fn expected(&self, side: Side, offset: usize, len: usize) -> &'static [u8] {
            let start = (self.seed(side) + offset) % PERIOD;
            &table()[start..start + len]
        }
    }

    pub struct Model {
        pair: Pair,
        conns: Vec<Conn>,
        dead: bool,
    }

    impl Model {
        pub fn new() -> Self {
            Model {
                pair: Pair::new(config()),
                conns: Vec::new(),
                dead: false,
            }
        }

        fn pick(&self, conn: usize) -> Option<usize> {
            (!self.conns.is_empty()).then(|| conn % self.conns.len())
        }

        /// Whether `side` can address the connection at all (the client
        /// learns of it from Connect).
        fn known(&self, side: Side, c: usize) -> bool {
            side == Side::Server || self.pair.client.has_accepted(self.conns[c].id)
        }

        pub fn apply(&mut self, op: &Op) {
            match *op {
                Op::Open => {
                    let now = self.pair.now;
                    match self.pair.server.session.open("tcp", TARGET, now) {
                        Ok(id) => {
                            assert!(!self.dead, "open on a dead session");
                            self.conns.push(Conn {
                                id,
                                local: [None, None],
                                written: [0; 2],
                                read: [0; 2],
                                read_ended: [false; 2],
                                closed_event: [false; 2],
                                blocked: [false; 2],
                            });
                        }
                        Err(e) => assert!(self.dead, "open failed: {e}"),
                    }
                }
                Op::Write {
                    side,
                    conn,
                    len,
                    pump,
                } => {
                    if let Some(c) = self.pick(conn) {
                        self.write(side, c, len, pump);
                    }
                }
                Op::Read { side, conn, max } => {
                    if let Some(c) = self.pick(conn) {
                        self.read(side, c, max);
                    }
                }
                Op::Close { side, conn } | Op::Reset { side, conn } => {
                    let Some(c) = self.pick(conn) else { return };
                    if !self.known(side, c) || self.conns[c].local[idx(side)].is_some() {
                        return;
                    }
                    let id = self.conns[c].id;
                    let end = if matches!(op, Op::Close { .. }) {
                        self.pair.session(side).close(id);
                        LocalEnd::Closed
                    } else {
                        let reason = format!("reset {id} by {side:?}");
                        self.pair.session(side).reset(id, &reason);
                        LocalEnd::Reset(reason)
                    };
                    self.conns[c].local[idx(side)] = Some(end);
                }
                Op::Step { first } => {
                    self.pair.step_from(first);
                }
                Op::Drive => self.pair.drive(),
                Op::Advance { ms } => self.pair.advance(Duration::from_millis(ms)),
                Op::Silence { secs } => {
                    self.pair.deliver_pings = false;
                    self.pair.advance(Duration::from_secs(secs));
                    self.pair.deliver_pings = true;
                }
            }
            self.after_op();
        }

        fn write(&mut self, side: Side, c: usize, len: usize, pump: bool) {
            let i = idx(side);
            let id = self.conns[c].id;
            if !self.known(side, c) {
                assert_eq!(
                    self.pair.session(side).write(id, b"x"),
                    Err(WriteError::UnknownConnection(id))
                );
                return;
            }
            if self.conns[c].local[i].is_some() {
                let r = self.pair.session(side).write(id, b"x");
                assert!(
                    matches!(
                        r,
                        Err(WriteError::Closed(ConnectionError::LocallyClosed))
                            | Err(WriteError::UnknownConnection(_))
                    ),
                    "write after local close: {r:?}"
                );
                return;
            }
            let mut done = 0;
            for _ in 0..10_000 {
                let data = self.conns[c].expected(side, self.conns[c].written[i], len - done);
                match self.pair.session(side).write(id, data) {
                    Ok(n) => {
                        assert!(n <= data.len());
                        self.conns[c].written[i] += n;
                        done += n;
                        if n > 0 {
                            self.conns[c].blocked[i] = false;
                        }
                    }
                    Err(WriteError::Blocked) => {
                        assert!(!data.is_empty());
                        self.conns[c].blocked[i] = true;
                    }
                    Err(WriteError::Closed(e)) => {
                        self.check_peer_ended(side, c, &e, "write");
                        return;
                    }
                    Err(e) => panic!("write on {id} by {side:?}: {e}"),
                }
                if !pump || done == len {
                    return;
                }
                if !self.pair.step() && self.conns[c].blocked[i] {
                    return;
                }
                self.handle_events();
            }
        }

        fn read(&mut self, side: Side, c: usize, max: usize) {
            let i = idx(side);
            let id = self.conns[c].id;
            if !self.known(side, c) {
                assert_eq!(
                    self.pair.session(side).read(id, 1),
                    Err(ReadError::UnknownConnection(id))
                );
                return;
            }
            if self.conns[c].local[i].is_some() {
                let r = self.pair.session(side).read(id, max);
                assert!(
                    matches!(
                        r,
                        Err(ReadError::Closed(ConnectionError::LocallyClosed))
                            | Err(ReadError::UnknownConnection(_))
                    ),
                    "read after local close: {r:?}"
                );
                return;
            }
            let (data, end) = self.pair.read(side, id, max);
            let conn = &mut self.conns[c];
            let writer = side.other();
            let offset = conn.read[i];
            assert!(
                offset + data.len() <= conn.written[idx(writer)],
                "{side:?} read past what {writer:?} wrote on {id}"
            );
            for (k, piece) in data.chunks(READ_WINDOW).enumerate() {
                let at = offset + k * READ_WINDOW;
                assert!(
                    piece == conn.expected(writer, at, piece.len()),
                    "{side:?} read wrong bytes on {id} in {at}..{}",
                    at + piece.len()
                );
            }
            conn.read[i] += data.len();
            match end {
                End::Blocked | End::Limit => {}
                End::Eof => {
                    assert_eq!(
                        conn.local[idx(writer)],
                        Some(LocalEnd::Closed),
                        "EOF on {id} but {writer:?} did not close"
                    );
                    assert_eq!(
                        conn.read[i],
                        conn.written[idx(writer)],
                        "EOF before every byte on {id}"
                    );
                    conn.read_ended[i] = true;
                }
                End::Error(ReadError::Closed(e)) => {
                    self.check_peer_ended(side, c, &e, "read");
                    self.conns[c].read_ended[i] = true;
                }
                End::Error(e) => panic!("read on {id} by {side:?}: {e}"),
            }
        }

        /// `side` saw its connection end with `e` (None: graceful).
        fn check_peer_ended(&self, side: Side, c: usize, e: &ConnectionError, what: &str) {
            let conn = &self.conns[c];
            let peer = &conn.local[idx(side.other())];
            let ok = match e {
                // Writes after the peer's graceful close say the stream is over.
                ConnectionError::ClosedByPeer => what == "write" && *peer == Some(LocalEnd::Closed),
                ConnectionError::Remote(text) => *peer == Some(LocalEnd::Reset(text.clone())),
                ConnectionError::SessionClosed(_) => self.dead,
                _ => false,
            };
            assert!(
                ok,
                "{what} on {} by {side:?} ended with {e:?}; peer did {peer:?}",
                conn.id
            );
        }

        fn handle_events(&mut self) {
            if self.pair.server.session.is_closed() || self.pair.client.session.is_closed() {
                assert!(
                    self.pair.server.session.is_closed() && self.pair.client.session.is_closed(),
                    "one session died alone"
                );
                self.dead = true;
            }
            for side in Side::BOTH {
                for event in self.pair.ep(side).take_events() {
                    match event {
                        Event::ConnectRequested { conn_id, .. } => {
                            assert_eq!(side, Side::Client);
                            assert!(self.conns.iter().any(|c| c.id == conn_id));
                        }
                        Event::Readable(_) => {}
                        Event::Writable(id) => {
                            if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
                                c.blocked[idx(side)] = false;
                            }
                        }
                        Event::Closed { conn_id, error } => {
                            let c = self
                                .conns
                                .iter()
                                .position(|c| c.id == conn_id)
                                .expect("known");
                            assert!(!self.conns[c].closed_event[idx(side)], "second Closed");
                            match &error {
                                None => assert_eq!(
                                    self.conns[c].local[idx(side.other())],
                                    Some(LocalEnd::Closed),
                                    "graceful Closed on {conn_id} without a close"
                                ),
                                Some(e) => self.check_peer_ended(side, c, e, "event"),
                            }
                            self.conns[c].closed_event[idx(side)] = true;
                        }
                        Event::SessionClosed(_) => assert!(self.dead),
                        other => panic!("unexpected event {other:?}"),
                    }
                }
            }
        }

        fn quiescent(&mut self) -> bool {
            !self.pair.server.session.wants_transmit() && !self.pair.client.session.wants_transmit()
        }

        fn after_op(&mut self) {
            self.handle_events();
            let cfg = config();
            let quiet = self.quiescent();
            for side in Side::BOTH {
                let (s, other) = match side {
                    Side::Server => (&self.pair.server.session, &self.pair.client.session),
                    Side::Client => (&self.pair.client.session, &self.pair.server.session),
                };
                let ids: HashSet<ConnId> = s.connection_ids().collect();
                let stats = s.stats();
                assert_eq!(stats.connections, ids.len());
                let buffered: usize = ids.iter().map(|id| s.readable_len(*id)).sum();
                assert_eq!(stats.buffered_receive, buffered, "{side:?}");
                // The pair returns a Pause within at most two steps, each of
                // which moves at most one send queue of Data: that bounds the
                // overshoot an honest peer can cause, well below the cap.
                let overshoot = cfg.pause_threshold + 2 * cfg.max_connection_send_buffer;
                assert!(overshoot < cfg.max_connection_receive_buffer);
                for id in &ids {
                    let n = s.readable_len(*id);
                    assert!(n <= overshoot, "{side:?} {id}: {n} unread");
                }
                if !quiet {
                    continue;
                }
                // Nothing in flight: a reader pauses its peer only while it
                // holds at least resume_threshold unread bytes (or is closing).
                let holding = |c: &Conn| {
                    ids.contains(&c.id)
                        && (s.readable_len(c.id) >= cfg.resume_threshold
                            || c.local[idx(side)].is_some())
                };
                let may_pause = self.conns.iter().filter(|c| holding(c)).count();
                assert!(
                    stats.pausing_peer <= may_pause,
                    "{side:?} pauses with drained readers"
                );
                // A writer is paused (or blocked) only by a peer that holds
                // unread bytes, or on a connection that is over.
                let peer_ids: HashSet<ConnId> = other.connection_ids().collect();
                let peer_holding = |c: &Conn| {
                    peer_ids.contains(&c.id)
                        && (other.readable_len(c.id) >= cfg.resume_threshold
                            || c.local[idx(side.other())].is_some())
                };
                let over = |c: &Conn| c.local[idx(side)].is_some() || c.closed_event[idx(side)];
                let may_be_paused = self
                    .conns
                    .iter()
                    .filter(|c| ids.contains(&c.id) && (peer_holding(c) || over(c)))
                    .count();
                assert!(
                    stats.paused_by_peer <= may_be_paused,
                    "{side:?} paused by a peer that drained"
                );
                let budget_full = stats.buffered_send >= cfg.max_session_send_buffer;
                for c in &self.conns {
                    if c.blocked[idx(side)] && !over(c) && !budget_full {
                        assert!(
                            peer_holding(c),
                            "{side:?} blocked on {} with no reason and no Writable",
                            c.id
                        );
                    }
                }
            }
        }

        /// Reads everything, closes everything on both sides and checks that
        /// every byte arrived and no state is left.
        pub fn finish(mut self) {
            for _ in 0..10_000 {
                self.pair.drive();
                self.after_op();
                let before: usize = self.conns.iter().map(|c| c.read[0] + c.read[1]).sum();
                for c in 0..self.conns.len() {
                    for side in Side::BOTH {
                        if !self.conns[c].read_ended[idx(side)] {
                            self.read(side, c, usize::MAX);
                        }
                    }
                }
                self.pair.drive();
                self.after_op();
                let after: usize = self.conns.iter().map(|c| c.read[0] + c.read[1]).sum();
                if after == before {
                    break;
                }
            }
            for conn in &self.conns {
                for reader in Side::BOTH {
                    let (r, w) = (idx(reader), idx(reader.other()));
                    if conn.local[r].is_some() || self.dead {
                        continue;
                    }
                    match &conn.local[w] {
                        None => {
                            assert_eq!(conn.read[r], conn.written[w], "{reader:?} on {}", conn.id)
                        }
                        Some(LocalEnd::Closed) => {
                            assert!(
                                conn.read_ended[r],
                                "{reader:?} never saw EOF on {}",
                                conn.id
                            );
                            assert_eq!(conn.read[r], conn.written[w]);
                        }
                        Some(LocalEnd::Reset(_)) => {
                            assert!(
                                conn.read_ended[r],
                                "{reader:?} never saw the reset of {}",
                                conn.id
                            );
                            assert!(conn.read[r] <= conn.written[w]);
                        }
                    }
                }
            }
            // Every reader drained: nobody pauses anybody on a live connection.
            assert_eq!(self.pair.server.session.stats().pausing_peer, 0);
            assert_eq!(self.pair.client.session.stats().pausing_peer, 0);

            for side in Side::BOTH {
                let ids: Vec<ConnId> = self.pair.session(side).connection_ids().collect();
                for id in ids {
                    self.pair.session(side).close(id);
                    if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
                        c.local[idx(side)].get_or_insert(LocalEnd::Closed);
                    }
                }
                self.pair.drive();
                self.handle_events();
            }
            for side in Side::BOTH {
                let s = self.pair.session(side);
                assert_eq!(s.connection_count(), 0, "{side:?} kept connections");
                assert_eq!(s.stats(), SessionStats::default(), "{side:?} kept state");
                assert!(!s.wants_transmit());
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        // PROPTEST_CASES=n runs more (or fewer) cases.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        max_shrink_iters: 2_000,
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn random_interleavings_keep_every_stream_intact(
        ops in proptest::collection::vec(model::op(), 1..120)
    ) {
        let mut m = model::Model::new();
        for op in &ops {
            m.apply(op);
        }
        m.finish();
    }
}
