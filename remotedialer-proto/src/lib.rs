//! The sans-IO core of remotedialer, byte-compatible with the Go library
//! rancher/remotedialer.
//!
//! remotedialer tunnels TCP connections over one WebSocket: an agent behind
//! NAT connects to a server, and the server then dials through the agent,
//! many connections at once, with per-connection Pause/Resume flow control.
//!
//! This crate holds every protocol rule and nothing else: no sockets, no
//! tasks, no clock reads (time is an argument). Adapters such as
//! `remotedialer-tokio` move bytes and wake tasks around it.
//!
//! * [`frame`]: the eight message types, Go's zig-zag varints, zero-copy
//!   decoding.
//! * [`Session`]: one WebSocket's connections, flow control, keepalive,
//!   SyncConnections and peer announcements.
//! * [`registry`]: which session reaches a client key, locally or through a
//!   peer.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod config;
mod connection;
mod error;
mod event;
mod flow;
pub mod frame;
pub mod registry;
mod session;
pub mod varint;

pub use config::{Config, ConfigError};
pub use error::{AnnounceError, ConnectionError, OpenError, ReadError, SessionError, WriteError};
pub use event::{Event, SessionStats, Timeout, TimerReason, Transmit};
pub use frame::{Body, ConnId, DecodeError, Message, MessageType};
pub use registry::{Registry, Route};
pub use session::{CONNECT_NOT_ALLOWED, Role, Session, SessionIdentity};
