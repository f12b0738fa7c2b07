//! The client's side of a connect request: authorize, dial, pipe.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};
use remotedialer_driver::dial::{admit_connect, serve_connect};
use remotedialer_driver::{ConnectRequest, SessionHandler};

use crate::runtime::{IoTarget, Spawner, timeout};

pub use remotedialer_driver::dial_error_text;

/// A dialed target: any futures-io byte stream (async-std, smol and
/// async-net sockets all qualify).
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

/// The default local dialer, on async-net sockets.
pub fn dial_default(proto: &str, address: &str) -> DialFuture {
    let (proto, address) = (proto.to_owned(), address.to_owned());
    Box::pin(async move {
        match proto.as_str() {
            "tcp" | "tcp4" | "tcp6" => {
                let tcp = async_net::TcpStream::connect(address.as_str()).await?;
                let _ = tcp.set_nodelay(true);
                Ok(Box::new(tcp) as Box<dyn TargetStream>)
            }
            #[cfg(unix)]
            "unix" => Ok(
                Box::new(async_net::unix::UnixStream::connect(&address).await?)
                    as Box<dyn TargetStream>,
            ),
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("unknown network {other}"),
            )),
        }
    })
}

/// Handles connect requests on a client session: each allowed one is dialed
/// and piped on a task of its own.
pub(crate) struct DialHandler {
    pub(crate) authorizer: Arc<ConnectAuthorizer>,
    pub(crate) dialer: Option<Arc<LocalDialer>>,
    pub(crate) dial_timeout: Duration,
    pub(crate) spawner: Spawner,
}

impl SessionHandler for DialHandler {
    fn connect_requested(&mut self, request: ConnectRequest) {
        let Some(request) = admit_connect(request, |p, a| (self.authorizer)(p, a)) else {
            return;
        };
        let dialer = self.dialer.clone();
        let limit = self.dial_timeout;
        self.spawner
            .spawn(Box::pin(serve_connect(request, move |proto, address| {
                let dial = match &dialer {
                    Some(d) => d(proto, address),
                    None => dial_default(proto, address),
                };
                async move { Some(timeout(limit, dial).await?.map(IoTarget)) }
            })));
    }
}
