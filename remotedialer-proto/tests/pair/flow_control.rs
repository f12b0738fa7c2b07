//! Flow control: PAUSE/RESUME per connection and the session budgets.

use bytes::Bytes;
use remotedialer_proto::{
    Config, ConnId, ConnectionError, Event, Message, MessageType, ReadError, WriteError,
};

use Side::{Client, Server};

use crate::closed_events;
use crate::common::{End, Pair, Side, pattern, small_config};

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

#[test]
fn a_zero_byte_read_with_bytes_waiting_is_neither_blocked_nor_the_end() {
    let mut p = Pair::default_config();
    let conn = p.open_connected();
    assert_eq!(p.client.session.read(conn, 0), Err(ReadError::Blocked));
    assert_eq!(p.pump(Server, conn, b"abc"), 3);
    p.drive();
    assert_eq!(p.client.session.read(conn, 0), Ok(Some(Bytes::new())));
    p.server.session.close(conn);
    p.drive();
    // Closed by the peer with bytes unread: still not the end.
    assert_eq!(p.client.session.read(conn, 0), Ok(Some(Bytes::new())));
    assert_eq!(
        p.client.session.read(conn, 10),
        Ok(Some(Bytes::from_static(b"abc")))
    );
    assert_eq!(p.client.session.read(conn, 0), Ok(None));
}

#[test]
fn under_session_pressure_pause_and_resume_keep_a_gap() {
    // Small budgets so that pressure (over half the session budget) is easy
    // to reach: then a connection pauses early, but at twice the resume
    // threshold, so reading a little does not Resume only for the next Data
    // message to Pause again.
    let cfg = Config {
        pause_threshold: 64 << 10,
        resume_threshold: 8 << 10,
        max_connection_receive_buffer: 1 << 20,
        max_session_receive_buffer: 256 << 10,
        min_zero_copy_payload: 0,
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone());
    let conns: Vec<ConnId> = (0..6).map(|_| p.open_connected()).collect();
    let data = pattern(40 << 10, 9);
    for &c in &conns {
        p.pump(Server, c, &data);
    }
    p.drive();
    // Now over half the budget (the other five hold 200 KiB). Bring one
    // connection just under the resume threshold, then let it hover there:
    // 100 bytes in, 100 bytes read, twenty times.
    let c = conns[0];
    let mut excess = p.client.session.readable_len(c) - (cfg.resume_threshold - 50);
    while excess > 0 {
        excess -= p.client.session.read(c, excess).unwrap().unwrap().len();
    }
    p.drive();
    let before = p.client.sent_count(c, MessageType::Pause);
    for _ in 0..20 {
        assert_eq!(p.pump(Server, c, &data[..100]), 100);
        p.drive();
        assert_eq!(p.client.session.read(c, 100).unwrap().unwrap().len(), 100);
        p.drive();
    }
    let pauses = p.client.sent_count(c, MessageType::Pause) - before;
    assert!(pauses <= 1, "{pauses} Pauses for 2 KB of small messages");
}
