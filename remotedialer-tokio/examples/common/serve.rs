//! Serving an axum router over plain TCP or TLS, with upgrades (the tunnel
//! route needs them), and a body wrapper that logs when a transfer ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Accepts connections for ever and serves `router` on each, over TLS when
/// `tls` is set. Each connection is HTTP/1.1 with upgrades enabled.
pub async fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, router: Router) {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => serve_connection(tls, router).await,
                    Err(e) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                },
                None => serve_connection(tcp, router).await,
            }
        });
    }
}

async fn serve_connection<S>(io: S, router: Router)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = TowerToHyperService::new(router);
    let result = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended");
    }
}

/// What a [`Logged`] body reports when it ends.
pub struct Transfer {
    /// Body bytes that went through.
    pub bytes: u64,
    /// Since the body was created.
    pub elapsed: Duration,
    /// False when the body failed or was dropped before its end.
    pub complete: bool,
}

type OnDone = Box<dyn FnOnce(Transfer) + Send>;

/// Wraps a body and calls `on_done` once, when it ends or is dropped.
pub struct Logged<B: Body> {
    inner: B,
    bytes: u64,
    expected: Option<u64>,
    started: Instant,
    on_done: Option<OnDone>,
}

impl<B: Body> Logged<B> {
    /// Starts the clock now.
    pub fn new(inner: B, on_done: impl FnOnce(Transfer) + Send + 'static) -> Self {
        Logged {
            inner,
            bytes: 0,
            expected: None,
            started: Instant::now(),
            on_done: Some(Box::new(on_done)),
        }
    }

    /// The body's length is known (from `Content-Length`): hyper stops
    /// polling once it has that many bytes, so reaching it means complete.
    pub fn expect_len(mut self, len: u64) -> Self {
        self.expected = Some(len);
        self
    }

    fn finish(&mut self, complete: bool) {
        if let Some(done) = self.on_done.take() {
            done(Transfer {
                bytes: self.bytes,
                elapsed: self.started.elapsed(),
                complete,
            });
        }
    }
}

impl<B: Body> Drop for Logged<B> {
    fn drop(&mut self) {
        // hyper does not poll a body to its end once it has the
        // Content-Length bytes, nor one that is empty from the start.
        let complete = self.inner.is_end_stream() || self.expected == Some(self.bytes);
        self.finish(complete);
    }
}

impl<B> Body for Logged<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.remaining() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `1.5 MiB`-style sizes for logs.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("B")),
    }
}
