//! Plays ranges of the transcript: the Go side's entries are sent, the
//! Rust side's become expectations, checked in lockstep (before each send,
//! everything the transcript shows the Rust side sending earlier must have
//! arrived).

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use remotedialer_tokio::proto::{Body, Message};
use tokio::time::Instant;

use super::peer::{Expect, Peer};
use super::transcript::{Entry, Transcript};

/// What to do with one transcript entry.
pub enum Step {
    /// The Go side sends this message.
    Send(Bytes),
    /// The Go side sends a WebSocket Ping.
    SendPing,
    /// The Rust side sends `len` Data bytes on `conn` (aggregated: chunking
    /// is free to differ).
    ExpectData { conn: i64, len: u64 },
    /// The Rust side sends this control message.
    Expect(Expect),
    /// The Rust side answers a Ping.
    ExpectPong,
    /// The Rust side (a client on fast timers) sends SyncConnections with
    /// this tail, some time after the last Connect.
    ExpectSync { seq: u64, tail: Vec<u8> },
    /// Go behaviour the Rust side deliberately does not reproduce.
    Skip(&'static str),
    /// The Go side drops the TCP connection without a close frame.
    Drop,
}

/// Decides what each entry means for the side under test.
pub type Policy = Box<dyn Fn(&Transcript, &Entry) -> Step + Send>;

pub struct Player<'t> {
    pub peer: Peer,
    t: &'t Transcript,
    policy: Policy,
    /// Cumulative Data the Rust side must have sent, per connection.
    expected_data: HashMap<i64, u64>,
    pending: Vec<Expect>,
    pongs_expected: usize,
    /// Connections the Go side paused: their Data expectations wait for
    /// the Go side's Resume (what arrives meanwhile was in flight).
    go_paused: HashSet<i64>,
    /// SyncConnections received before this index predate the last Connect.
    sync_mark: usize,
    /// Replays this phase at 1/`scale` of the recorded pace.
    paced: Option<(&'static str, f64)>,
    pace_origin: Option<(Instant, f64)>,
    /// Why entries were skipped, for the log.
    pub skipped: Vec<(u64, &'static str)>,
}

impl<'t> Player<'t> {
    pub fn new(peer: Peer, t: &'t Transcript, policy: Policy) -> Self {
        Player {
            peer,
            t,
            policy,
            expected_data: HashMap::new(),
            pending: Vec::new(),
            pongs_expected: 0,
            go_paused: HashSet::new(),
            sync_mark: 0,
            paced: None,
            pace_origin: None,
            skipped: Vec::new(),
        }
    }

    /// Sends of `phase` keep the recorded spacing, divided by `scale`.
    pub fn pace(&mut self, phase: &'static str, scale: f64) {
        self.paced = Some((phase, scale));
    }

    async fn keep_pace(&mut self, e: &Entry) {
        let Some((phase, scale)) = self.paced else {
            return;
        };
        if e.phase != phase {
            return;
        }
        let (origin, t0) = *self.pace_origin.get_or_insert((Instant::now(), e.t_ms));
        let offset = Duration::from_secs_f64(((e.t_ms - t0) / scale / 1000.0).max(0.0));
        tokio::time::sleep_until(origin + offset).await;
    }

    /// Waits for everything expected so far.
    pub async fn settle(&mut self) {
        let mut data: Vec<(i64, u64)> = self
            .expected_data
            .iter()
            .filter(|(c, _)| !self.go_paused.contains(c))
            .map(|(&c, &n)| (c, n))
            .collect();
        data.sort();
        for (conn, n) in data {
            self.peer
                .wait_until(&format!("{n} Data bytes on connection {conn}"), |p| {
                    p.data_on(conn) >= n
                })
                .await;
        }
        for exp in std::mem::take(&mut self.pending) {
            self.peer.expect(&exp).await;
        }
        let pongs = self.pongs_expected;
        self.peer
            .wait_until(&format!("{pongs} pongs"), |p| p.pongs >= pongs)
            .await;
    }

    pub async fn play(&mut self, range: RangeInclusive<u64>) {
        for seq in range {
            let e = &self.t.entries[seq as usize];
            match (self.policy)(self.t, e) {
                Step::Send(bytes) => {
                    self.settle().await;
                    self.keep_pace(e).await;
                    let msg = Message::decode(bytes.clone()).expect("decodes");
                    match msg.body {
                        Body::Pause => {
                            self.go_paused.insert(msg.conn_id.0);
                        }
                        Body::Resume => {
                            self.go_paused.remove(&msg.conn_id.0);
                        }
                        Body::Connect { .. } => self.sync_mark = self.peer.syncs.len(),
                        _ => {}
                    }
                    self.peer.send(bytes).await;
                }
                Step::SendPing => {
                    self.settle().await;
                    self.keep_pace(e).await;
                    self.peer.ping().await;
                }
                Step::ExpectData { conn, len } => {
                    *self.expected_data.entry(conn).or_default() += len;
                }
                Step::Expect(exp) => self.pending.push(exp),
                Step::ExpectPong => self.pongs_expected += 1,
                Step::ExpectSync { seq, tail } => {
                    self.settle().await;
                    let mark = self.sync_mark;
                    self.peer
                        .wait_until(&format!("SyncConnections like seq {seq}"), |p| {
                            p.syncs.iter().skip(mark).any(|(t, _)| *t == tail)
                        })
                        .await;
                }
                Step::Skip(why) => self.skipped.push((seq, why)),
                Step::Drop => {
                    self.settle().await;
                    self.peer.barrier().await;
                    self.peer.drop_connection();
                }
            }
        }
        self.settle().await;
    }
}
