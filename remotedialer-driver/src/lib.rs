//! The runtime-neutral driver shared by the remotedialer adapters.
//!
//! [`remotedialer_proto`] holds the protocol; this crate runs it over a
//! WebSocket without choosing a runtime: the WebSocket is any
//! `Stream + Sink` of `tungstenite` messages (tokio-tungstenite and
//! async-tungstenite both qualify), the timer is a [`Timer`] the adapter
//! supplies, and tunneled streams are poll functions ([`StreamCore`]) the
//! adapters wrap in their runtime's I/O traits. `remotedialer-tokio` and
//! `remotedialer-async-std` differ only in sockets, timers, spawning and
//! the WebSocket handshake.
//!
//! Beside the pump, the decisions both adapters make the same way live here
//! so that they cannot drift apart: who may open a server session
//! ([`admission`]) and the server's session bookkeeping ([`sessions`]), the
//! client's settings check ([`client`]), its handling of connect requests and
//! dial error texts ([`dial`]), its reconnect policy ([`backoff`]), its proxy
//! rules ([`proxy`]), and the rustls configurations ([`tls`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admission;
pub mod backoff;
mod bridge;
pub mod client;
pub mod dial;
mod driver;
mod error;
mod handle;
mod metrics;
mod pipe;
pub mod proxy;
pub mod sessions;
mod shared;
mod stream;
pub mod tls;
mod trace;

pub use admission::{Admission, Authorization};
pub use backoff::{Backoff, BackoffSchedule};
pub use bridge::Bridge;
pub use dial::dial_error_text;
pub use driver::{ConnectRequest, Driver, RefuseConnects, SessionHandler, Timer};
pub use error::{ClientError, DialError};
pub use handle::{SessionHandle, start};
pub use metrics::{Metrics, PeerEvent, SessionMetrics};
pub use pipe::{Pipe, TargetIo};
pub use remotedialer_proto as proto;
pub use sessions::{
    Authorizer, DRAIN_DEADLINE, SHUTDOWN_GRACE, ServerSession, ServerSessions, SessionObserver,
};
pub use stream::{StreamCore, connection_io_error};
pub use trace::data_trace_enabled;

/// Default bound on one incoming WebSocket message: far above Go's 32 KiB
/// Data messages, enough for a SyncConnections listing a million
/// connections, and below the core's per-connection receive cap.
pub const DEFAULT_MAX_MESSAGE: usize = 8 << 20;

/// tungstenite settings for a remotedialer WebSocket: incoming messages and
/// frames bounded by `max_message`. Outgoing buffering needs no bound here:
/// the driver hands tungstenite at most a batch at a time and waits for it
/// to drain.
pub fn websocket_config(max_message: usize) -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .write_buffer_size(128 << 10)
}
