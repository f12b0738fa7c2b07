//! Everything that arrives from the peer.

use std::time::Instant;

use bytes::Bytes;

use super::{CONNECT_NOT_ALLOWED, Role, Session};
use crate::connection::{Connection, State};
use crate::error::{ConnectionError, SessionError};
use crate::event::Event;
use crate::flow::Signal;
use crate::frame::{Body, ConnId, DecodeError, Message};

impl Session {
    /// A WebSocket binary message arrived.
    ///
    /// Hostile input ends at most this session (header garbage, a broken
    /// SyncConnections, a malformed peer announcement) and usually only one
    /// connection (a malformed Connect, a peer ignoring Pause); it never
    /// panics and never buffers without bound.
    pub fn handle_message(&mut self, message: Bytes, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        match Message::decode(message) {
            Ok(msg) => self.handle_decoded(msg, now),
            Err(DecodeError::ConnectAddress { conn_id }) => {
                // Go ends the session; one bad request should cost only itself.
                self.reply_error(conn_id, "failed to parse connect address");
            }
            Err(e) => self.fail(SessionError::Decode(e)),
        }
    }

    /// A WebSocket text message arrived: a protocol error that ends the session.
    pub fn handle_text_message(&mut self) {
        self.fail(SessionError::TextMessage);
    }

    fn handle_decoded(&mut self, msg: Message, now: Instant) {
        let conn_id = msg.conn_id;
        match msg.body {
            Body::Data(payload) => self.on_data(conn_id, payload),
            Body::Connect { proto, address } => self.on_connect(conn_id, &proto, &address, now),
            Body::Error(text) => self.on_error(conn_id, &text),
            Body::Pause => self.on_pause(conn_id, true),
            Body::Resume => self.on_pause(conn_id, false),
            Body::AddClient(client) => self.on_announcement(&client, true),
            Body::RemoveClient(client) => self.on_announcement(&client, false),
            Body::SyncConnections(ids) => self.apply_sync(&ids, now),
            Body::Unknown { .. } => {}
        }
    }

    fn on_data(&mut self, conn_id: ConnId, payload: Bytes) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            let text = format!(
                "connection not found {}/{}/{}",
                self.identity.client_key, self.identity.session_key, conn_id
            );
            self.reply_error(conn_id, &text);
            return;
        };
        if !conn.is_open() || payload.is_empty() {
            // Closing: the application no longer reads. Finished: in flight
            // when it ended. Either way the bytes have nowhere to go.
            return;
        }
        let n = payload.len();
        let limit = if conn.recv.len() + n > self.config.max_connection_receive_buffer {
            Some(ConnectionError::ReceiveOverflow(
                self.config.max_connection_receive_buffer,
            ))
        } else if self.received_total + n > self.config.max_session_receive_buffer {
            Some(ConnectionError::SessionBudget(
                self.config.max_session_receive_buffer,
            ))
        } else {
            None
        };
        if let Some(err) = limit {
            let text = err.to_string();
            self.finish(conn_id, Some(err));
            self.send_end(conn_id, &text);
            return;
        }
        let payload = if n < self.config.min_zero_copy_payload {
            Bytes::copy_from_slice(&payload)
        } else {
            payload
        };
        let was_empty = conn.recv.is_empty();
        // Under session-wide pressure every connection pauses early, so many
        // slow readers together stay inside the session budget instead of
        // each filling up to the per-connection threshold.
        // Twice the resume threshold, not the threshold itself: with no gap
        // every Data message would queue a Pause and the next small read a
        // Resume, a control message per message for a peer to pile up.
        let pause_at = if self.received_total > self.config.max_session_receive_buffer / 2 {
            (2 * self.config.resume_threshold).min(self.config.pause_threshold)
        } else {
            self.config.pause_threshold
        };
        let signal = conn.recv.push(payload, pause_at);
        self.received_total += n;
        if was_empty {
            self.events.push_back(Event::Readable(conn_id));
        }
        if signal == Signal::Pause {
            let id = self.take_message_id();
            self.push_control(
                Message {
                    id,
                    conn_id,
                    body: Body::Pause,
                },
                false,
            );
        }
    }

    fn on_connect(&mut self, conn_id: ConnId, proto: &[u8], address: &[u8], now: Instant) {
        if self.role != Role::Client {
            // A server must not dial into its own network for a client.
            self.reply_error(conn_id, CONNECT_NOT_ALLOWED);
            return;
        }
        if self.draining {
            self.reply_error(conn_id, "session shutting down");
            return;
        }
        if let Some(existing) = self.conns.get(&conn_id) {
            if existing.is_open() {
                self.finish(conn_id, Some(ConnectionError::DuplicateId));
                self.send_end(conn_id, "connection id already in use");
            }
            return;
        }
        if self.conns.len() >= self.config.max_connections {
            self.reply_error(conn_id, "too many connections");
            return;
        }
        let (Ok(proto), Ok(address)) = (std::str::from_utf8(proto), std::str::from_utf8(address))
        else {
            self.reply_error(conn_id, "connect target is not UTF-8");
            return;
        };
        self.conns.insert(conn_id, Connection::new(now));
        self.events.push_back(Event::ConnectRequested {
            conn_id,
            proto: proto.to_owned(),
            address: address.to_owned(),
        });
    }

    fn on_error(&mut self, conn_id: ConnId, text: &[u8]) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        match conn.state {
            State::Open => {
                let error = match text {
                    b"EOF" => None,
                    other => Some(ConnectionError::Remote(
                        String::from_utf8_lossy(other).into(),
                    )),
                };
                self.finish(conn_id, error);
            }
            // Both sides closed: nothing left to deliver either way.
            State::Closing => self.remove(conn_id),
            State::Finished(_) => {}
        }
    }

    fn on_pause(&mut self, conn_id: ConnId, paused: bool) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.send.set_paused_by_peer(paused);
        if !paused {
            self.schedule(conn_id);
            self.wake_writer(conn_id);
        }
    }

    fn on_announcement(&mut self, client: &[u8], added: bool) {
        // Only authenticated peers may steer routing; an agent announcing
        // clients is ignored.
        if self.role != Role::Peer {
            return;
        }
        let text = String::from_utf8_lossy(client);
        let parsed = text
            .split_once('/')
            .filter(|(key, rest)| !key.is_empty() && !rest.contains('/'))
            .and_then(|(key, session)| session.parse::<i64>().ok().map(|s| (key, s)));
        let Some((key, session_key)) = parsed else {
            self.fail(SessionError::BadAnnouncement(text.into_owned()));
            return;
        };
        if added {
            let known = self
                .remote_clients
                .get(key)
                .is_some_and(|s| s.contains(&session_key));
            // A repeated announcement adds nothing, so it cannot pass the cap.
            if !known && self.remote_client_count >= self.config.max_remote_clients {
                self.fail(SessionError::TooManyRemoteClients(
                    self.config.max_remote_clients,
                ));
                return;
            }
            let sessions = self.remote_clients.entry(key.to_owned()).or_default();
            let first = sessions.is_empty();
            if sessions.insert(session_key) {
                self.remote_client_count += 1;
            }
            if first {
                self.events
                    .push_back(Event::RemoteClientAdded(key.to_owned()));
            }
        } else if let Some(sessions) = self.remote_clients.get_mut(key) {
            if sessions.remove(&session_key) {
                self.remote_client_count -= 1;
            }
            if sessions.is_empty() {
                self.remote_clients.remove(key);
                self.events
                    .push_back(Event::RemoteClientRemoved(key.to_owned()));
            }
        }
    }
}
