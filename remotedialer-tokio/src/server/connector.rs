//! A `tower::Service<Uri>` connector, so a `hyper_util` client can send
//! requests through an agent.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

use super::Dialer;
use crate::stream::TunnelStream;

/// Connects to a URI's host and port through one client's tunnel.
///
/// The connection is plain TCP through the tunnel: for `https` targets wrap
/// it in your TLS connector (as for any TCP connector).
#[derive(Clone, Debug)]
pub struct Connector {
    dialer: Dialer,
}

impl Connector {
    pub(crate) fn new(dialer: Dialer) -> Self {
        Connector { dialer }
    }
}

/// A tunneled stream as a hyper connection.
#[derive(Debug)]
pub struct TunnelConnection(TokioIo<TunnelStream>);

impl TunnelConnection {
    /// The tunneled stream.
    pub fn into_inner(self) -> TunnelStream {
        self.0.into_inner()
    }
}

impl Connection for TunnelConnection {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TunnelConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TunnelConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

fn target(uri: &Uri) -> io::Result<String> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}")))?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") | Some("wss") => 443,
        _ => 80,
    });
    Ok(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

impl tower::Service<Uri> for Connector {
    type Response = TunnelConnection;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TunnelConnection>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        Box::pin(async move {
            let address = target(&uri)?;
            let stream = dialer
                .dial("tcp", &address)
                .await
                .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e))?;
            Ok(TunnelConnection(TokioIo::new(stream)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn target_from_uri() {
        assert_eq!(
            target(&"http://10.0.0.5:6443/x".parse().unwrap()).unwrap(),
            "10.0.0.5:6443"
        );
        assert_eq!(
            target(&"https://kube/x".parse().unwrap()).unwrap(),
            "kube:443"
        );
        assert_eq!(
            target(&"http://[::1]/".parse().unwrap()).unwrap(),
            "[::1]:80"
        );
    }
}
