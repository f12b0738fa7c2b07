//! remotedialer over runtime-neutral async I/O, for async-std and smol: the
//! same client, tunneled streams and session handling as
//! `remotedialer-tokio`. The server is a standalone listener: it accepts
//! peer links but does not open them, and has no hyper mounting or
//! `Connector` (README, "Differences from the tokio adapter").
//!
//! async-std is discontinued upstream in favour of smol, and both are built
//! on the same parts, so this crate depends on neither runtime: sockets are
//! async-net (or any futures-io stream you pass in), timers are async-io,
//! the WebSocket handshake is async-tungstenite's runtime-neutral
//! `client_async`/`accept_hdr_async`, TLS is futures-rustls with the ring
//! provider. The only runtime-specific thing is spawning: the server and
//! client take a [`Spawner`], with ready-made ones for async-std
//! ([`Spawner::async_std`], feature `async-std`) and smol
//! ([`Spawner::smol`], feature `smol`); both features are on by default.
//! The sessions themselves run inside the futures you await.
//!
//! * [`Server`]: authorizes and upgrades `/connect` requests on a listener
//!   ([`Server::serve`], [`Server::serve_tls`]) or on connections you
//!   accept ([`Server::serve_connection`]), then [`Server::dial`]s through
//!   the agents. Same authorizer, peer-token rules and refusal texts as the
//!   tokio server (shared in `remotedialer_driver`), except that a request
//!   that is not a WebSocket upgrade gets 400 before any authorization.
//! * [`Client`]: connects with custom headers over `ws://` or `wss://`,
//!   through `HTTP(S)_PROXY` if set, reconnects with backoff and jitter, and
//!   dials what its connect authorizer allows.
//! * [`TunnelStream`]: one tunneled connection,
//!   `futures::io::AsyncRead + AsyncWrite`.
//!
//! Wire-compatible with the Go library rancher/remotedialer and with
//! `remotedialer-tokio`: an agent of one adapter works with a server of the
//! other.
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
    Client, ClientBuilder, ConnectAuthorizer, ConnectHook, DialFuture, LocalDialer, TargetStream,
    dial_default, dial_error_text,
};
pub use error::{ClientError, DialError};
pub use remotedialer_driver::admission::{PEER_ID_HEADER, PEER_TOKEN_HEADER};
pub use remotedialer_driver::{Authorization, Backoff, Metrics, SessionHandle, data_trace_enabled};
pub use remotedialer_proto as proto;
pub use runtime::{Spawner, Task};
pub use server::{Authorizer, DRAIN_DEADLINE, Dialer, Server, ServerConfig};
pub use stream::TunnelStream;
