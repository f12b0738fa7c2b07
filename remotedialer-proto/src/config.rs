//! Session configuration. Defaults are the Go reference's values where it has
//! one, and bounds of our own where Go has none.

use std::time::Duration;

/// Tunables for one [`Session`](crate::Session).
///
/// Construct with [`Config::default`] and change fields; [`Config::validate`]
/// checks the relations between them.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client role: send a WebSocket Ping this often (Go: 5 s).
    pub ping_interval: Duration,
    /// Both roles: the session is dead when no Ping or Pong arrived for this
    /// long (Go: 60 s; Data does not count, as in Go).
    pub keepalive_timeout: Duration,
    /// Client role: send SyncConnections this often (Go: 60 s).
    pub sync_interval: Duration,
    /// A connection younger than this is never closed by a SyncConnections
    /// that does not list it: the peer may not have seen its Connect yet (Go
    /// has a race here).
    pub sync_grace: Duration,
    /// How long a client may take to dial a target (Go: 1 min). The core does
    /// not dial; adapters apply it.
    pub dial_timeout: Duration,
    /// Send Pause when a connection's unread bytes exceed this (Go's
    /// `MaxBuffer`, 2 MiB). Once the session's unread bytes pass half of
    /// `max_session_receive_buffer`, connections pause at `resume_threshold`
    /// instead.
    pub pause_threshold: usize,
    /// Send Resume once reading brings them below this (Go: `MaxBuffer / 8`).
    pub resume_threshold: usize,
    /// Close a connection whose peer keeps sending past Pause until this many
    /// bytes are unread. Bytes in flight when Pause is sent still arrive: the
    /// sender's queued messages and the socket buffers of both directions
    /// (the Pause may wait behind data going the other way), about 14 MiB
    /// with Linux's default loopback buffers. So this must exceed
    /// `pause_threshold` by more than the transport can hold, or a peer that
    /// did stop is cut off.
    pub max_connection_receive_buffer: usize,
    /// Close the connection whose Data would push the unread bytes of the
    /// whole session past this.
    pub max_session_receive_buffer: usize,
    /// Writes on a connection block while this many of its bytes wait to be
    /// transmitted.
    pub max_connection_send_buffer: usize,
    /// Writes on every connection block while this many bytes of the session
    /// wait to be transmitted.
    pub max_session_send_buffer: usize,
    /// Outgoing Data is split into messages carrying at most this many bytes
    /// (Go's peers send 32 KiB).
    pub max_data_message: usize,
    /// At most this many connections per session, counting those still
    /// closing or not yet released by the application; further Connect
    /// requests (and `open`s) are refused.
    pub max_connections: usize,
    /// At most this many replies a peer can provoke without bound (Error for
    /// an unknown connection, a refused or unparsable Connect) wait to be
    /// sent; more are dropped, so a flood cannot grow the send queue. The
    /// Error that ends a connection the peer has open is not counted: each
    /// connection ends once.
    pub max_pending_replies: usize,
    /// Peer sessions: at most this many announced client sessions.
    pub max_remote_clients: usize,
    /// Received Data payloads shorter than this are copied out of the
    /// WebSocket message instead of kept as slices of it. A slice keeps the
    /// transport's whole read buffer alive, so a few unread bytes could pin
    /// far more memory than the receive budgets count; larger payloads stay
    /// zero-copy, where the overhead is bounded.
    pub min_zero_copy_payload: usize,
    /// The first message id this session sends (Go starts at a random value;
    /// receivers ignore ids).
    pub first_message_id: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(60),
            sync_interval: Duration::from_secs(60),
            sync_grace: Duration::from_secs(60),
            dial_timeout: Duration::from_secs(60),
            pause_threshold: 2 << 20,
            resume_threshold: 256 << 10,
            max_connection_receive_buffer: 64 << 20,
            max_session_receive_buffer: 256 << 20,
            max_connection_send_buffer: 512 << 10,
            max_session_send_buffer: 16 << 20,
            max_data_message: 32 << 10,
            max_connections: 65_536,
            max_pending_replies: 64,
            max_remote_clients: 100_000,
            min_zero_copy_payload: 16 << 10,
            first_message_id: 1,
        }
    }
}

/// A [`Config`] whose values contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session config: {0}")]
pub struct ConfigError(pub &'static str);

/// The longest interval or timeout a [`Config`] accepts.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Config {
    /// Checks the relations the session relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.resume_threshold >= self.pause_threshold {
            return Err(ConfigError(
                "resume_threshold must be below pause_threshold",
            ));
        }
        if self.max_connection_receive_buffer <= self.pause_threshold {
            return Err(ConfigError(
                "max_connection_receive_buffer must exceed pause_threshold",
            ));
        }
        if self.resume_threshold == 0 {
            // Nothing is ever below 0 bytes: a paused peer would never resume.
            return Err(ConfigError("resume_threshold must be positive"));
        }
        if self.max_data_message == 0
            || self.max_connection_send_buffer == 0
            || self.max_session_send_buffer == 0
            || self.max_session_receive_buffer == 0
        {
            return Err(ConfigError("buffer sizes must be positive"));
        }
        if self.ping_interval.is_zero() || self.sync_interval.is_zero() {
            return Err(ConfigError("intervals must be positive"));
        }
        // Deadlines are `now + duration`; a duration no clock can add (say
        // Duration::MAX for "never") would panic there.
        let longest = [
            self.ping_interval,
            self.keepalive_timeout,
            self.sync_interval,
            self.sync_grace,
            self.dial_timeout,
        ];
        if longest.iter().any(|d| *d > MAX_DURATION) {
            return Err(ConfigError("durations must not exceed 100 years"));
        }
        if self.keepalive_timeout <= self.ping_interval {
            return Err(ConfigError("keepalive_timeout must exceed ping_interval"));
        }
        Ok(())
    }
}
