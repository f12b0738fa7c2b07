//! The client's side of a connect request: authorize, dial, pipe.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use remotedialer_driver::{ConnectRequest, Pipe, SessionHandler};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::runtime::TokioTarget;

/// A dialed target: any tokio byte stream.
pub trait TargetStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> TargetStream for T {}

/// A boxed dial in progress.
pub type DialFuture = Pin<Box<dyn Future<Output = io::Result<Box<dyn TargetStream>>> + Send>>;

/// Opens a local connection for `(proto, address)`; replaces the default
/// (TCP for `tcp`/`tcp4`/`tcp6`, Unix sockets for `unix`).
pub type LocalDialer = dyn Fn(&str, &str) -> DialFuture + Send + Sync;

/// Decides whether the server may open `(proto, address)` through this
/// client.
pub type ConnectAuthorizer = dyn Fn(&str, &str) -> bool + Send + Sync;

/// The default local dialer.
pub fn dial_default(proto: &str, address: &str) -> DialFuture {
    let (proto, address) = (proto.to_owned(), address.to_owned());
    Box::pin(async move {
        match proto.as_str() {
            "tcp" | "tcp4" | "tcp6" => {
                let tcp = tokio::net::TcpStream::connect(&address).await?;
                let _ = tcp.set_nodelay(true);
                Ok(Box::new(tcp) as Box<dyn TargetStream>)
            }
            #[cfg(unix)]
            "unix" => {
                Ok(Box::new(tokio::net::UnixStream::connect(&address).await?)
                    as Box<dyn TargetStream>)
            }
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("unknown network {other}"),
            )),
        }
    })
}

/// Go's text for a failed dial, e.g. `dial tcp 127.0.0.1:1: connect:
/// connection refused`, so a Go server's callers see what they expect.
pub fn dial_error_text(proto: &str, address: &str, err: &io::Error) -> String {
    let detail = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        io::ErrorKind::TimedOut => "i/o timeout".to_owned(),
        io::ErrorKind::HostUnreachable => "connect: no route to host".to_owned(),
        io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_owned(),
        _ => {
            let text = err.to_string();
            match text.find(" (os error") {
                Some(i) => text.get(..i).unwrap_or(&text).to_lowercase(),
                None => text,
            }
        }
    };
    format!("dial {proto} {address}: {detail}")
}

/// Handles connect requests on a client session.
pub(crate) struct DialHandler {
    pub(crate) authorizer: Arc<ConnectAuthorizer>,
    pub(crate) dialer: Option<Arc<LocalDialer>>,
    pub(crate) dial_timeout: Duration,
}

impl SessionHandler for DialHandler {
    fn connect_requested(&mut self, request: ConnectRequest) {
        if !(self.authorizer)(&request.proto, &request.address) {
            tracing::info!(proto = %request.proto, address = %request.address, "connect refused by authorizer");
            request.stream.reset("connect not allowed");
            return;
        }
        let dialer = self.dialer.clone();
        let timeout = self.dial_timeout;
        tokio::spawn(async move {
            let ConnectRequest {
                proto,
                address,
                stream,
            } = request;
            let dial = match &dialer {
                Some(d) => d(&proto, &address),
                None => dial_default(&proto, &address),
            };
            match tokio::time::timeout(timeout, dial).await {
                Ok(Ok(target)) => Pipe::new(stream, TokioTarget(target)).await,
                Ok(Err(e)) => {
                    tracing::debug!(%proto, %address, error = %e, "dial failed");
                    stream.reset(&dial_error_text(&proto, &address, &e));
                }
                Err(_) => stream.reset(&format!("dial {proto} {address}: i/o timeout")),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_dial_errors() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            dial_error_text("tcp", "127.0.0.1:1", &refused),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }
}
