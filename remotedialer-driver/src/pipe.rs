//! Client side: moves bytes between a dialed target and its tunneled stream.
//!
//! An idle piped connection holds no buffer. Reads from the target go
//! through one buffer per thread and straight into the session's send queue
//! (the one copy the data path needs); bytes are kept aside only when flow
//! control refuses them. The other way, received chunks are slices of the
//! WebSocket message (payloads under `Config::min_zero_copy_payload` are
//! small copies), written to the target as they are.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::stream::StreamCore;

/// Largest read from a target in one go.
const READ_CHUNK: usize = 64 << 10;
/// Reads or writes per direction per poll before yielding.
const TURNS: usize = 16;

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's read buffer of `READ_CHUNK` bytes (a fresh one
/// if it is already in use further up the stack).
fn with_read_buf<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUF.with(|cell| {
        let mut owned = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let buf = match guard.as_deref_mut() {
            Ok(buf) => buf,
            Err(_) => &mut owned,
        };
        if buf.len() < READ_CHUNK {
            buf.resize(READ_CHUNK, 0);
        }
        f(buf)
    })
}

/// A dialed target as poll functions; adapters implement it for their
/// runtime's sockets.
pub trait TargetIo: Unpin {
    /// Reads into `buf`; `Ok(0)` is end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes from `buf`.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Flushes buffered writes.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts down the write side.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// Pipes a target and a tunneled stream until either side ends. There is no
/// half-close in remotedialer: the target's EOF closes the tunneled
/// connection (gracefully, after the bytes read so far), and the tunnel's
/// end shuts the target down.
pub struct Pipe<T> {
    stream: StreamCore,
    target: T,
    /// Read from the target, refused by flow control so far.
    upload: Option<Bytes>,
    /// Received from the tunnel, not yet written to the target.
    download: Option<Bytes>,
    download_unflushed: bool,
    shutting_down: bool,
    /// The tunnel refused further uploads; only the download goes on.
    upload_stopped: bool,
    /// After uploads stopped, the target's output reached its end.
    target_drained: bool,
}

enum Turn {
    Idle,
    Busy,
    Done,
    /// The tunnel takes no more bytes, but what it already delivered must
    /// still reach the target.
    Stopped,
}

impl<T: TargetIo> Pipe<T> {
    /// Pipes `target` and `stream`.
    pub fn new(stream: StreamCore, target: T) -> Self {
        Pipe {
            stream,
            target,
            upload: None,
            download: None,
            download_unflushed: false,
            shutting_down: false,
            upload_stopped: false,
            target_drained: false,
        }
    }

    /// Target to tunnel, one turn.
    fn upload_turn(&mut self, cx: &mut Context<'_>) -> Turn {
        if let Some(pending) = &mut self.upload {
            return match self.stream.poll_write(cx, pending) {
                Poll::Ready(Ok(n)) => {
                    let _ = pending.split_to(n);
                    if pending.is_empty() {
                        self.upload = None;
                    }
                    Turn::Busy
                }
                Poll::Ready(Err(_)) => Turn::Stopped,
                Poll::Pending => Turn::Idle,
            };
        }
        let (stream, target) = (&self.stream, &mut self.target);
        let (turn, rest) = with_read_buf(|buf| match target.poll_read(cx, buf) {
            Poll::Ready(Ok(0)) => {
                stream.close();
                (Turn::Done, None)
            }
            Poll::Ready(Ok(n)) => {
                let data = buf.get(..n).unwrap_or_default();
                match stream.poll_write(cx, data) {
                    Poll::Ready(Ok(w)) if w == n => (Turn::Busy, None),
                    Poll::Ready(Ok(w)) => {
                        let rest = data.get(w..).unwrap_or_default();
                        (Turn::Busy, Some(Bytes::copy_from_slice(rest)))
                    }
                    Poll::Ready(Err(_)) => (Turn::Stopped, None),
                    Poll::Pending => (Turn::Busy, Some(Bytes::copy_from_slice(data))),
                }
            }
            Poll::Ready(Err(e)) => {
                stream.reset(&e.to_string());
                (Turn::Done, None)
            }
            Poll::Pending => (Turn::Idle, None),
        });
        self.upload = rest;
        turn
    }

    /// After uploads stopped: one read from the target, discarded.
    fn drain_target(&mut self, cx: &mut Context<'_>) -> Turn {
        if self.target_drained {
            return Turn::Idle;
        }
        let target = &mut self.target;
        with_read_buf(|buf| match target.poll_read(cx, buf) {
            Poll::Ready(Ok(n)) if n > 0 => Turn::Busy,
            Poll::Ready(_) => {
                self.target_drained = true;
                Turn::Idle
            }
            Poll::Pending => Turn::Idle,
        })
    }

    /// Tunnel to target, one turn.
    fn download_turn(&mut self, cx: &mut Context<'_>) -> Turn {
        if let Some(pending) = &mut self.download {
            return match self.target.poll_write(cx, pending) {
                Poll::Ready(Ok(n)) => {
                    let _ = pending.split_to(n);
                    if pending.is_empty() {
                        self.download = None;
                    }
                    self.download_unflushed = true;
                    Turn::Busy
                }
                Poll::Ready(Err(e)) => {
                    self.stream.reset(&e.to_string());
                    Turn::Done
                }
                Poll::Pending => Turn::Idle,
            };
        }
        match self.stream.poll_read_chunk(cx, READ_CHUNK) {
            Poll::Ready(Ok(Some(chunk))) => {
                self.download = Some(chunk);
                Turn::Busy
            }
            Poll::Ready(Ok(None)) => {
                self.shutting_down = true;
                Turn::Done
            }
            Poll::Ready(Err(_)) => Turn::Done,
            Poll::Pending => {
                if self.download_unflushed
                    && let Poll::Ready(Ok(())) = self.target.poll_flush(cx)
                {
                    self.download_unflushed = false;
                }
                Turn::Idle
            }
        }
    }
}

impl<T: TargetIo> Future for Pipe<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.shutting_down {
            // Best effort: the tunnel ended gracefully, tell the target.
            let _ = this.target.poll_flush(cx);
            return this.target.poll_shutdown(cx).map(|_| ());
        }
        // Yield (wake ourselves) only when a direction used up its turns
        // with work left. A direction that went idle has registered its
        // wake-up; waking anyway costs a needless poll, and on executors
        // without a local slot (async-io's) a hop to another thread.
        let mut more = false;
        'upload: {
            for _ in 0..TURNS {
                if this.upload_stopped {
                    match this.drain_target(cx) {
                        Turn::Busy => continue,
                        _ => break 'upload,
                    }
                }
                match this.upload_turn(cx) {
                    Turn::Done => return Poll::Ready(()),
                    Turn::Stopped => {
                        this.upload_stopped = true;
                        this.upload = None;
                    }
                    Turn::Busy => {}
                    Turn::Idle => break 'upload,
                }
            }
            more = true;
        }
        'download: {
            for _ in 0..TURNS {
                match this.download_turn(cx) {
                    Turn::Done if this.shutting_down => {
                        let _ = this.target.poll_flush(cx);
                        return this.target.poll_shutdown(cx).map(|_| ());
                    }
                    Turn::Done | Turn::Stopped => return Poll::Ready(()),
                    Turn::Busy => {}
                    Turn::Idle => break 'download,
                }
            }
            more = true;
        }
        if more {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
