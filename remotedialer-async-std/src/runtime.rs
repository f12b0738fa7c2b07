//! What the runtime supplies: spawning (the caller's executor), a timer
//! (async-io), target I/O (futures-io), and the few futures combinators the
//! adapter needs. Nothing here names async-std or smol except the ready-made
//! spawners, so the same code runs under either.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::Event;
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::Stream;
use futures_util::future::{Either, select};
use remotedialer_driver::{TargetIo, Timer};

/// A task for a [`Spawner`]: a boxed future that runs to completion on its
/// own.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How the adapter starts background tasks: one per accepted connection on
/// a server, one per dialed target on a client. The caller chooses the
/// executor; [`Spawner::async_std`] and [`Spawner::smol`] are ready-made.
///
/// ```
/// use remotedialer_async_std::Spawner;
///
/// // Any executor works: hand the task over and let it run detached.
/// let spawner = Spawner::new(|task| {
///     std::thread::spawn(move || smol::block_on(task));
/// });
/// # let _ = spawner;
/// ```
#[derive(Clone)]
pub struct Spawner(Arc<dyn Fn(Task) + Send + Sync>);

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Spawner")
    }
}

impl Spawner {
    /// A spawner that hands each task to `spawn`, which must run it to
    /// completion (detached: nothing waits on it).
    pub fn new(spawn: impl Fn(Task) + Send + Sync + 'static) -> Self {
        Spawner(Arc::new(spawn))
    }

    /// Spawns onto async-std's executor (`async_std::task::spawn`).
    #[cfg(feature = "async-std")]
    pub fn async_std() -> Self {
        Spawner::new(|task| {
            // Dropping async-std's JoinHandle detaches the task.
            drop(async_std::task::spawn(task));
        })
    }

    /// Spawns onto smol's global executor (`smol::spawn(..).detach()`).
    #[cfg(feature = "smol")]
    pub fn smol() -> Self {
        Spawner::new(|task| smol::spawn(task).detach())
    }

    /// Starts `task` in the background.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        (self.0)(Box::pin(task));
    }
}

/// An async-io timer, re-armed in place. async-io's reactor drives it, and
/// both async-std and smol run that reactor.
pub(crate) struct IoTimer {
    timer: async_io::Timer,
    deadline: Option<Instant>,
}

impl IoTimer {
    pub(crate) fn new() -> Self {
        IoTimer {
            timer: async_io::Timer::never(),
            deadline: None,
        }
    }
}

impl Timer for IoTimer {
    fn reset(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        self.timer.set_at(deadline);
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // async-io's timer fires once per deadline and then stays Pending;
        // the contract is Ready for as long as the deadline has passed.
        if self.deadline.is_some_and(|at| Instant::now() >= at) {
            return Poll::Ready(());
        }
        match Pin::new(&mut self.timer).poll_next(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Any futures-io byte stream as a pipe target.
pub(crate) struct IoTarget<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Unpin> TargetIo for IoTarget<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// Runs `fut` for at most `limit`; `None` if the time ran out first.
pub(crate) async fn timeout<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    match select(pin!(fut), async_io::Timer::after(limit)).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// Runs `fut` until `signal` fires; `None` if the signal came first.
pub(crate) async fn until<F: Future>(signal: &Signal, fut: F) -> Option<F::Output> {
    match select(pin!(fut), pin!(signal.wait())).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// A flag that can be awaited: cancel for clients, stop for servers.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    event: Event,
}

impl Signal {
    pub(crate) fn fire(&self) {
        self.set.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Resolves once the signal has fired.
    pub(crate) async fn wait(&self) {
        while !self.is_set() {
            let listener = self.event.listen();
            // Re-check after registering: a fire in between is not missed.
            if self.is_set() {
                return;
            }
            listener.await;
        }
    }
}
