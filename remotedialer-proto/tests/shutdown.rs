//! Graceful shutdown: bytes the application was told were written still
//! arrive, then the session ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{End, Pair, Side, pattern, small_config};
use remotedialer_proto::{
    Body, ConnectionError, Event, Message, OpenError, ReadError, SessionError,
};

#[test]
fn graceful_shutdown_flushes_every_accepted_byte_then_ends() {
    let mut p = Pair::new(small_config());
    let a = p.open_connected();
    let b = p.open_connected();
    let data_a = pattern(20_000, 1);
    let data_b = pattern(9_000, 2);
    // Accepted by the core but not transmitted yet.
    assert_eq!(
        p.session(Side::Server).write(a, &data_a).unwrap(),
        data_a.len()
    );
    assert_eq!(
        p.session(Side::Server).write(b, &data_b).unwrap(),
        data_b.len()
    );
    p.session(Side::Server).shutdown_gracefully();
    assert!(p.session(Side::Server).is_draining());
    let now = p.now;
    let opened = p.session(Side::Server).open("tcp", "127.0.0.1:1", now);
    assert_eq!(
        opened,
        Err(OpenError::SessionClosed(SessionError::Shutdown))
    );
    let mut events = Vec::new();
    while let Some(e) = p.session(Side::Server).poll_event() {
        events.push(e);
    }
    for conn in [a, b] {
        assert!(events.contains(&Event::Closed {
            conn_id: conn,
            error: Some(ConnectionError::SessionClosed(SessionError::Shutdown)),
        }));
    }
    p.drive();
    for (conn, data) in [(a, &data_a), (b, &data_b)] {
        let (got, end) = p.read_all(Side::Client, conn);
        assert_eq!(&got, data, "every byte of {conn} arrives");
        assert_eq!(end, End::Eof, "then a graceful end");
    }
    assert_eq!(
        p.session(Side::Server).close_reason(),
        Some(&SessionError::Shutdown),
        "the session ends once flushed"
    );
    // The application still holds its handles: each reports the shutdown,
    // and releasing it frees the state.
    for conn in [a, b] {
        assert_eq!(
            p.session(Side::Server).read(conn, 16),
            Err(ReadError::Closed(ConnectionError::SessionClosed(
                SessionError::Shutdown
            )))
        );
        p.session(Side::Server).close(conn);
    }
    assert_eq!(p.session(Side::Server).connection_count(), 0);
}

#[test]
fn a_connection_the_peer_keeps_paused_holds_the_drain_until_hard_shutdown() {
    let mut p = Pair::new(small_config());
    let conn = p.open_connected();
    // Data queued, then the peer pauses before it could go out.
    let data = pattern(10_000, 3);
    assert_eq!(
        p.session(Side::Server).write(conn, &data).unwrap(),
        data.len()
    );
    let pause = Message {
        id: 1,
        conn_id: conn,
        body: Body::Pause,
    };
    p.inject(Side::Server, pause.to_bytes());
    assert_eq!(p.session(Side::Server).stats().paused_by_peer, 1);
    p.session(Side::Server).shutdown_gracefully();
    p.drive();
    let reason = p.session(Side::Server).close_reason().cloned();
    assert!(
        p.session(Side::Server).is_draining(),
        "held by the paused connection, not ended by {reason:?}"
    );
    // Resume lets it finish: the bytes arrive, then EOF, then the end.
    let resume = Message {
        id: 2,
        conn_id: conn,
        body: Body::Resume,
    };
    p.inject(Side::Server, resume.to_bytes());
    p.drive();
    let (got, end) = p.read_all(Side::Client, conn);
    assert_eq!((got, end), (data, End::Eof));
    assert_eq!(
        p.session(Side::Server).close_reason(),
        Some(&SessionError::Shutdown)
    );
}

#[test]
fn hard_shutdown_ends_a_stuck_drain() {
    let mut p = Pair::new(small_config());
    let conn = p.open_connected();
    p.session(Side::Server).write(conn, b"stuck").unwrap();
    let pause = Message {
        id: 1,
        conn_id: conn,
        body: Body::Pause,
    };
    p.inject(Side::Server, pause.to_bytes());
    p.session(Side::Server).shutdown_gracefully();
    p.drive();
    assert!(p.session(Side::Server).is_draining());
    p.session(Side::Server).shutdown();
    assert!(p.session(Side::Server).is_closed());
    assert!(!p.session(Side::Server).is_draining());
}
