//! A server session and a client session driven against each other in memory
//! with a fake clock: connections, flow control, keepalive, SyncConnections,
//! hostile input, and a property test over random interleavings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../common/mod.rs"]
mod common;

mod basics;
mod flow_control;
mod keepalive_sync;
mod model;

use common::{Pair, Side};
use remotedialer_proto::{ConnId, ConnectionError, Event, SessionStats};

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
