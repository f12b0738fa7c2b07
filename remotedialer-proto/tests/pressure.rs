//! Session-wide receive pressure: many slow readers together must stay inside
//! the session budget, without any connection being closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{Pair, Side, pattern, small_config};
use remotedialer_proto::{Config, MessageType};

fn pressure_config() -> Config {
    Config {
        // 16 connections pausing at 64 KiB, each with up to 32 KiB more in
        // flight, would hold 1.5 MiB; the budget is 1 MiB, so only the early
        // pause keeps every connection alive.
        max_session_receive_buffer: 1 << 20,
        ..small_config()
    }
}

#[test]
fn slow_readers_pause_early_under_session_pressure() {
    let cfg = pressure_config();
    let mut p = Pair::new(cfg.clone());
    let conns: Vec<_> = (0..16).map(|_| p.open_connected()).collect();
    let data = pattern(200 << 10, 9);
    // Nobody reads on the client: every writer pushes until flow control
    // stops it.
    let taken: Vec<usize> = conns
        .iter()
        .map(|&conn| p.pump(Side::Server, conn, &data))
        .collect();
    p.drive();
    let stats = p.session(Side::Client).stats();
    assert!(
        stats.buffered_receive <= cfg.max_session_receive_buffer,
        "buffered {} over the session budget",
        stats.buffered_receive
    );
    assert_eq!(
        stats.connections,
        conns.len(),
        "no connection may be closed"
    );
    assert_eq!(
        stats.pausing_peer,
        conns.len(),
        "every connection paused its writer"
    );
    // Some connections paused below the normal threshold: the pressure rule.
    let early = conns
        .iter()
        .filter(|&&c| p.session(Side::Client).readable_len(c) <= cfg.pause_threshold)
        .count();
    assert!(early > 0, "expected early pauses under pressure");
    // Draining every reader resumes every writer, and all bytes arrive.
    for (&conn, &n) in conns.iter().zip(&taken) {
        let (got, _) = p.read(Side::Client, conn, usize::MAX);
        assert!(
            got == data[..n],
            "connection {conn:?}: bytes lost or changed"
        );
    }
    p.drive();
    for &conn in &conns {
        assert_eq!(
            p.ep(Side::Client).sent_count(conn, MessageType::Resume),
            1,
            "one Resume once drained"
        );
    }
    assert_eq!(p.session(Side::Server).stats().paused_by_peer, 0);
    // And the writers go on: the rest of each stream arrives whole.
    for (&conn, &n) in conns.iter().zip(&taken) {
        let rest = p.transfer(Side::Server, conn, &data[n..]);
        assert!(
            rest == data[n..],
            "connection {conn:?}: the rest did not arrive"
        );
    }
}
