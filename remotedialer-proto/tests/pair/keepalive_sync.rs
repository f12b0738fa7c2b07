//! Keepalive pings and SyncConnections.

use std::time::Duration;

use remotedialer_proto::{
    Config, ConnId, ConnectionError, Event, MessageType, OpenError, ReadError, SessionError,
    WriteError,
};

use Side::{Client, Server};

use crate::common::{End, Pair, Side, TARGET};
use crate::{assert_empty, closed_events};

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
fn lose_client_errors_for(conn: ConnId) -> crate::common::DropFilter {
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
