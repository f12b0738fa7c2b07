//! Joins two tunneled streams: what a server does when a peer asks it to dial
//! one of its own clients (`clientKey::proto`). One stream is the connection
//! on the peer link, the other the connection opened through the client's
//! session; the bridge moves bytes between them until one side ends.
//!
//! Flow control carries across the bridge: a chunk is taken from one stream
//! only after the previous one was accepted by the other, so a destination
//! that is paused (or whose send buffers are full) leaves bytes unread in the
//! source, whose session then pauses its own sender. At most one chunk per
//! direction is held outside the sessions, and it is a slice of a received
//! WebSocket message, not a copy (payloads under
//! `Config::min_zero_copy_payload` are small copies made by the core).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::stream::StreamCore;

/// Largest chunk taken from a stream in one go.
const CHUNK: usize = 64 << 10;
/// Moves per direction per poll before yielding.
const TURNS: usize = 16;

/// One direction of a bridge.
#[derive(Debug, Default)]
struct Lane {
    /// Taken from the source, not yet accepted by the destination.
    pending: Option<Bytes>,
    /// The destination failed a write: this direction is over, and the
    /// other one will see how the destination ended.
    stopped: bool,
}

enum Turn {
    /// Waiting on a stream (a waker is registered), or this lane stopped.
    Idle,
    /// Moved something; more may be ready.
    Busy,
    /// The bridge is over.
    End,
}

impl Lane {
    /// One move from `src` to `dst`.
    fn turn(&mut self, cx: &mut Context<'_>, src: &StreamCore, dst: &StreamCore) -> Turn {
        if self.stopped {
            return Turn::Idle;
        }
        if let Some(chunk) = &mut self.pending {
            return match dst.poll_write(cx, chunk) {
                Poll::Ready(Ok(n)) => {
                    let _ = chunk.split_to(n);
                    if chunk.is_empty() {
                        self.pending = None;
                    }
                    Turn::Busy
                }
                Poll::Ready(Err(e)) => {
                    // The destination has ended; its own read side reports
                    // how (graceful or with an error), and the other lane
                    // forwards that to `src` after the bytes still buffered.
                    tracing::debug!(error = %e, "bridge: destination ended");
                    self.pending = None;
                    self.stopped = true;
                    Turn::Busy
                }
                Poll::Pending => Turn::Idle,
            };
        }
        match src.poll_read_chunk(cx, CHUNK) {
            Poll::Ready(Ok(Some(chunk))) => {
                self.pending = Some(chunk);
                Turn::Busy
            }
            Poll::Ready(Ok(None)) => {
                // No half-close in remotedialer: the source's EOF ends both.
                dst.close();
                Turn::End
            }
            Poll::Ready(Err(e)) => {
                dst.reset(&e.to_string());
                Turn::End
            }
            Poll::Pending => Turn::Idle,
        }
    }
}

/// A future joining two tunneled streams until either ends.
///
/// * Bytes move both ways in order and complete, at the pace the slower side
///   allows (Pause/Resume hold across the bridge).
/// * A graceful end (`EOF`) of either stream closes the other gracefully,
///   after the bytes already written to it.
/// * An error on either stream resets the other with the same text, so the
///   far end sees, for example, the agent's `dial tcp ...: connection
///   refused`.
///
/// Runtime-neutral: spawn it on any executor. Dropping it closes both
/// streams gracefully.
#[derive(Debug)]
pub struct Bridge {
    a: StreamCore,
    b: StreamCore,
    a_to_b: Lane,
    b_to_a: Lane,
}

impl Bridge {
    /// Joins `a` and `b`.
    pub fn new(a: StreamCore, b: StreamCore) -> Self {
        Bridge {
            a,
            b,
            a_to_b: Lane::default(),
            b_to_a: Lane::default(),
        }
    }
}

impl Future for Bridge {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Yield only when a lane used up its turns with work left; an idle
        // lane has registered its wake-up (or is stopped), as in `Pipe`.
        let mut more = false;
        'a_to_b: {
            for _ in 0..TURNS {
                match this.a_to_b.turn(cx, &this.a, &this.b) {
                    Turn::End => return Poll::Ready(()),
                    Turn::Busy => {}
                    Turn::Idle => break 'a_to_b,
                }
            }
            more = true;
        }
        'b_to_a: {
            for _ in 0..TURNS {
                match this.b_to_a.turn(cx, &this.b, &this.a) {
                    Turn::End => return Poll::Ready(()),
                    Turn::Busy => {}
                    Turn::Idle => break 'b_to_a,
                }
            }
            more = true;
        }
        if this.a_to_b.stopped && this.b_to_a.stopped {
            // Both destinations failed writes: both streams are over.
            return Poll::Ready(());
        }
        if more {
            // A burst used up its turns: yield so one connection cannot
            // starve the others.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
