//! Shared helpers for the remotedialer benchmarks.
//!
//! [`MemoryPair`] wires a server session and a client session of
//! `remotedialer-proto` to each other in memory, with no sockets and a
//! frozen clock: what it measures is the protocol logic alone (framing, flow
//! control, buffering), the ceiling for every adapter built on it.
#![deny(missing_docs)]

use std::time::Instant;

use bytes::Bytes;
use remotedialer_proto::{
    Config, ConnId, Event, ReadError, Role, Session, SessionIdentity, Transmit, WriteError,
};

/// A `Role::Server` and a `Role::Client` session connected back to back.
///
/// Every transmit of one side is handed straight to the other; Pings are
/// answered at once. The clock never moves, so no timer fires.
#[derive(Debug)]
pub struct MemoryPair {
    /// The side that opens connections and, in [`transfer`](Self::transfer),
    /// writes.
    pub server: Session,
    /// The side that accepts connections and, in [`transfer`](Self::transfer),
    /// reads.
    pub client: Session,
    /// The frozen clock.
    pub now: Instant,
}

impl MemoryPair {
    /// A pair with `config` on both sides.
    pub fn new(config: Config) -> Self {
        let now = Instant::now();
        let id = SessionIdentity {
            client_key: "bench".into(),
            session_key: 1,
        };
        let server = Session::new(Role::Server, id.clone(), config.clone(), now)
            .unwrap_or_else(|e| panic!("server config: {e}"));
        let client = Session::new(Role::Client, id, config, now)
            .unwrap_or_else(|e| panic!("client config: {e}"));
        MemoryPair {
            server,
            client,
            now,
        }
    }

    /// Moves every pending transmit of the server to the client; returns how
    /// many messages moved.
    pub fn server_to_client(&mut self) -> usize {
        move_transmits(&mut self.server, &mut self.client, self.now)
    }

    /// Moves every pending transmit of the client to the server; returns how
    /// many messages moved.
    pub fn client_to_server(&mut self) -> usize {
        move_transmits(&mut self.client, &mut self.server, self.now)
    }

    /// Moves transmits both ways until nothing moves.
    pub fn settle(&mut self) {
        while self.server_to_client() + self.client_to_server() > 0 {}
    }

    /// Opens `n` connections from the server and delivers their Connects;
    /// the client accepts them all. Events are drained.
    pub fn open(&mut self, n: usize) -> Vec<ConnId> {
        let conns = (0..n)
            .map(|_| {
                self.server
                    .open("tcp", "127.0.0.1:8125", self.now)
                    .unwrap_or_else(|e| panic!("open: {e}"))
            })
            .collect();
        self.settle();
        while self.client.poll_event().is_some() {}
        while self.server.poll_event().is_some() {}
        conns
    }

    /// Moves `per_conn` bytes from the server to the client on each of
    /// `conns`, written from `source` (repeated as needed; it must not be
    /// empty) and read by the client as they arrive, zero-copy. Returns the
    /// bytes the client read.
    ///
    /// One round: the server writes on every unfinished connection until flow
    /// control blocks it, its messages go to the client, the client reads
    /// every connection that became readable, and its control messages
    /// (Pause, Resume) go back.
    pub fn transfer(&mut self, conns: &[ConnId], per_conn: usize, source: &[u8]) -> u64 {
        assert!(!source.is_empty(), "empty source");
        let mut to_write: Vec<usize> = vec![per_conn; conns.len()];
        let mut received = 0u64;
        let total = (per_conn as u64) * (conns.len() as u64);
        let mut readable = Vec::with_capacity(conns.len());
        while received < total {
            for (&conn, left) in conns.iter().zip(to_write.iter_mut()) {
                while *left > 0 {
                    let offset = (per_conn - *left) % source.len();
                    let piece = &source[offset..source.len().min(offset + *left)];
                    match self.server.write(conn, piece) {
                        Ok(n) => *left -= n,
                        Err(WriteError::Blocked) => break,
                        Err(e) => panic!("write on {conn}: {e}"),
                    }
                }
            }
            self.server_to_client();
            readable.clear();
            while let Some(event) = self.client.poll_event() {
                if let Event::Readable(conn) = event {
                    readable.push(conn);
                }
            }
            for &conn in &readable {
                loop {
                    match self.client.read(conn, usize::MAX) {
                        Ok(Some(chunk)) => received += chunk.len() as u64,
                        Ok(None) | Err(ReadError::Blocked) => break,
                        Err(e) => panic!("read on {conn}: {e}"),
                    }
                }
            }
            self.client_to_server();
            while self.server.poll_event().is_some() {}
        }
        received
    }
}

/// Hands every pending transmit of `from` to `to`.
fn move_transmits(from: &mut Session, to: &mut Session, now: Instant) -> usize {
    let mut moved = 0;
    while let Some(transmit) = from.poll_transmit() {
        moved += 1;
        match transmit {
            Transmit::Message(bytes) => to.handle_message(bytes, now),
            Transmit::Ping => {
                to.handle_keepalive(now);
                from.handle_keepalive(now);
            }
        }
    }
    moved
}

/// A Data payload of `len` bytes with non-trivial content.
pub fn payload(len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i.wrapping_mul(31) >> 3) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_moves_every_byte() {
        let config = Config {
            pause_threshold: 64 << 10,
            resume_threshold: 8 << 10,
            max_data_message: 4 << 10,
            max_connection_send_buffer: 32 << 10,
            ..Config::default()
        };
        let mut pair = MemoryPair::new(config);
        let conns = pair.open(3);
        let source = payload(10_000);
        assert_eq!(pair.transfer(&conns, 1 << 20, &source), 3 << 20);
        pair.settle();
        assert_eq!(pair.client.stats().buffered_receive, 0);
        assert_eq!(pair.server.stats().buffered_send, 0);
        assert_eq!(pair.server.stats().paused_by_peer, 0);
    }
}
