//! HOOK: the async-std backend (`--runtime async-std`).
//!
//! To plug the `remotedialer-async-std` adapter in, build a [`Backend`]
//! here the way `rt_tokio::start` does, and run the suite inside
//! `async_std::task::block_on`:
//!
//! * `rt`: `async_std::task::spawn` and `async_std::task::sleep`;
//! * `tunnel`: the adapter's server dialing through its client over a real
//!   WebSocket on 127.0.0.1; its stream implements the futures-io traits,
//!   so wrap it in a small adapter to tokio's `AsyncRead`/`AsyncWrite`
//!   (those traits need no tokio runtime);
//! * `plain`: `async_std::net::TcpStream`, wrapped the same way;
//! * `targets`: the tokio target servers, on a one-thread tokio runtime of
//!   their own (they are not what is measured).
//!
//! Then `suite::run(&backend, plan)`, exactly as the tokio path does.

use std::io;
use std::net::SocketAddr;

use remotedialer_tokio::proto::Config;

#[allow(unused_imports)] // Used once the backend is built here.
use super::harness::Backend;
use super::suite::{Plan, RunResult};

/// Runs the plan over the async-std adapter; not available until the
/// adapter exists.
pub fn run(
    _session: Config,
    _echo_child: Option<SocketAddr>,
    _plan: &Plan,
) -> io::Result<Vec<RunResult>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "--runtime async-std: not available yet (the remotedialer-async-std adapter has no \
         server/client API to benchmark yet); use --runtime tokio",
    ))
}
