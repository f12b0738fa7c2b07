//! remotedialer over tokio: the server that dials through connected agents,
//! the client (agent) that serves those dials, and tunneled streams.
//!
//! Wire-compatible with the Go library rancher/remotedialer: a Rust agent
//! works with a Go server and the reverse. All protocol rules live in
//! `remotedialer-proto`; the session pump is shared with the async-std
//! adapter in `remotedialer-driver`. This crate adds sockets, TLS, HTTP and
//! tokio tasks.
//!
//! * [`Server`]: authorizes and upgrades `/connect` requests (standalone with
//!   [`Server::serve`], or mounted in hyper/axum with
//!   [`Server::handle_upgrade`]), then [`Server::dial`]s through the agents.
//! * [`Client`]: connects with custom headers over `ws://` or `wss://`,
//!   through `HTTP(S)_PROXY` if set, reconnects with backoff, and dials
//!   what its connect authorizer allows.
//! * [`TunnelStream`]: one tunneled connection, `AsyncRead + AsyncWrite`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod error;
pub mod proxy;
mod runtime;
mod server;
mod stream;
pub mod tls;

pub use client::{
    Backoff, Client, ClientBuilder, ConnectAuthorizer, ConnectHook, DialFuture, LocalDialer,
    TargetStream, dial_default, dial_error_text,
};
pub use error::{ClientError, DialError};
pub use remotedialer_driver::{Metrics, SessionHandle, data_trace_enabled};
pub use remotedialer_proto as proto;
pub use server::{
    Authorization, Authorizer, Connector, DRAIN_DEADLINE, DialRoute, Dialer, PEER_ID_HEADER,
    PEER_TOKEN_HEADER, PeerConfig, PeerError, PeerStatus, Server, ServerConfig, TunnelConnection,
};
pub use stream::TunnelStream;

/// The README's complete examples, compiled and run by `cargo test`.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
