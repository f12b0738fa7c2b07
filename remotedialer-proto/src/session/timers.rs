//! Keepalive and SyncConnections timers. Time only ever comes in as an
//! argument.

use std::time::Instant;

use super::{Role, Session};
use crate::config::Config;
use crate::connection::State;
use crate::error::SessionError;
use crate::event::{Timeout, TimerReason};
use crate::frame::{Body, ConnId, Message, SyncIds};

#[derive(Debug)]
pub(super) struct Timers {
    /// Client role: when the next Ping is due.
    next_ping: Option<Instant>,
    /// Client role: when the next SyncConnections is due.
    next_sync: Option<Instant>,
    /// The last Ping or Pong received (or the session's start).
    last_keepalive: Instant,
    /// A Ping is waiting to be transmitted.
    pub(super) ping_due: bool,
    /// When a received SyncConnections was last applied.
    last_sync_applied: Option<Instant>,
}

impl Timers {
    pub(super) fn new(role: Role, config: &Config, now: Instant) -> Self {
        let client = role == Role::Client;
        Timers {
            next_ping: client.then(|| now + config.ping_interval),
            next_sync: client.then(|| now + config.sync_interval),
            last_keepalive: now,
            ping_due: false,
            last_sync_applied: None,
        }
    }
}

impl Session {
    /// A WebSocket Ping or Pong arrived: the peer is alive. (Data does not
    /// count, as in Go.)
    pub fn handle_keepalive(&mut self, now: Instant) {
        if now > self.timers.last_keepalive {
            self.timers.last_keepalive = now;
        }
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) is due, and
    /// why; `None` once the session has ended.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        if self.closed.is_some() {
            return None;
        }
        let deadline = Timeout {
            at: self.timers.last_keepalive + self.config.keepalive_timeout,
            reason: TimerReason::KeepaliveDeadline,
        };
        [
            self.timers.next_ping.map(|at| Timeout {
                at,
                reason: TimerReason::Ping,
            }),
            self.timers.next_sync.map(|at| Timeout {
                at,
                reason: TimerReason::Sync,
            }),
        ]
        .into_iter()
        .flatten()
        .fold(deadline, |best, t| if t.at < best.at { t } else { best })
        .into()
    }

    /// Runs whatever timers are due at `now`: queues a Ping or a
    /// SyncConnections, or ends the session when the keepalive deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        let silent = now.saturating_duration_since(self.timers.last_keepalive);
        if silent >= self.config.keepalive_timeout {
            self.fail(SessionError::KeepaliveTimeout(silent));
            return;
        }
        if self.timers.next_ping.is_some_and(|at| at <= now) {
            self.timers.ping_due = true;
            self.timers.next_ping = Some(now + self.config.ping_interval);
        }
        if self.timers.next_sync.is_some_and(|at| at <= now) {
            self.timers.next_sync = Some(now + self.config.sync_interval);
            self.queue_sync();
        }
    }

    /// Sends the ids of the connections still live on the wire, ascending.
    fn queue_sync(&mut self) {
        let mut ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !matches!(c.state, State::Finished(_)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let id = self.take_message_id();
        let body = Body::SyncConnections(SyncIds::from_ids(ids));
        self.push_control(
            Message {
                id,
                conn_id: ConnId(0),
                body,
            },
            false,
        );
    }

    /// A received SyncConnections: connections the peer no longer lists end
    /// silently (no Error is sent), except those younger than `sync_grace`,
    /// whose Connect the peer may not have seen when it built the list.
    ///
    /// Each one costs a pass over every connection, so one arriving within
    /// half a `sync_interval` of the last applied one is ignored: a peer
    /// cannot make us scan in a loop, and a SyncConnections may only ever
    /// remove connections, so skipping one only delays a cleanup.
    pub(super) fn apply_sync(&mut self, listed: &SyncIds, now: Instant) {
        let min_gap = self.config.sync_interval / 2;
        if self
            .timers
            .last_sync_applied
            .is_some_and(|t| now.saturating_duration_since(t) < min_gap)
        {
            return;
        }
        self.timers.last_sync_applied = Some(now);
        let mut keep: Vec<ConnId> = listed.iter().collect();
        keep.sort_unstable();
        let grace = self.config.sync_grace;
        let mut stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                !matches!(c.state, State::Finished(_))
                    && now.saturating_duration_since(c.opened_at) >= grace
                    && keep.binary_search(id).is_err()
            })
            .map(|(id, _)| *id)
            .collect();
        stale.sort_unstable();
        for id in stale {
            match self.conns.get(&id).map(|c| &c.state) {
                Some(State::Closing) => self.remove(id),
                _ => self.finish(id, Some(crate::error::ConnectionError::Sync)),
            }
        }
    }
}
