//! The small abstraction the workloads are written against, so the same
//! code measures the tokio adapter, the async-std adapter and the plain-TCP
//! floor: a way to dial a target ([`Dial`]) and a way to run tasks
//! ([`Runtime`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A byte stream to a target, tunneled or not. tokio's I/O traits are the
/// common interface: they need no tokio runtime, so an async-std stream
/// only needs a thin adapter.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// A boxed [`Conn`].
pub type BoxConn = Box<dyn Conn>;

/// One way to reach a target: through the tunnel under test, or plain TCP.
pub trait Dial: Send + Sync + 'static {
    /// Opens a connection to `target`.
    fn dial(&self, target: SocketAddr) -> BoxFuture<io::Result<BoxConn>>;

    /// Tunneled connections the tunnel still holds; `None` for plain TCP.
    fn live_connections(&self) -> Option<usize> {
        None
    }
}

/// What the workloads need from the async runtime.
pub trait Runtime: Send + Sync + 'static {
    /// Runs `task` concurrently.
    fn spawn(&self, task: BoxFuture<()>);
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;
}

/// Spawns `fut` on `rt`; the returned future yields its output.
pub fn spawn_join<T: Send + 'static>(
    rt: &dyn Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = io::Result<T>> {
    // tokio's oneshot is runtime-neutral: it works on any executor.
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.spawn(Box::pin(async move {
        let _ = tx.send(fut.await);
    }));
    async move {
        rx.await
            .map_err(|_| io::Error::other("benchmark task panicked"))
    }
}

/// The plain TCP servers the workloads talk to.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// Sends as many bytes as asked (see `targets::source`).
    pub source: SocketAddr,
    /// Swallows as many bytes as announced, then acknowledges.
    pub sink: SocketAddr,
    /// Echoes, in this process.
    pub echo: SocketAddr,
    /// Echoes, in a child process (B4 only).
    pub echo_child: Option<SocketAddr>,
}

/// Everything a backend (runtime + adapter) supplies to the suite.
pub struct Backend {
    /// Spawning and sleeping.
    pub rt: &'static dyn Runtime,
    /// Dials through the tunnel: server side of the adapter, over one
    /// WebSocket to its client side in this process.
    pub tunnel: Arc<dyn Dial>,
    /// Dials plain loopback TCP with the same runtime: the floor.
    pub plain: Arc<dyn Dial>,
    /// The target servers.
    pub targets: Targets,
}

/// A futures-io stream as a tokio one.
pub struct Compat<T>(pub T);

impl<T: futures_io::AsyncRead + Unpin> AsyncRead for Compat<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Free when the caller's buffer is already initialized, as the
        // workloads' are.
        let dst = buf.initialize_unfilled();
        match Pin::new(&mut self.0).poll_read(cx, dst) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: futures_io::AsyncWrite + Unpin> AsyncWrite for Compat<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
