//! Per-connection flow control: the receive buffer with the Pause/Resume
//! decision, and the send queue with the peer's pause.
//!
//! The two directions are separate state. Go keeps one `paused` flag for
//! both, so a Pause it receives can be cleared by its own reader sending
//! Resume; here "we paused the peer" and "the peer paused us" never touch.

use std::collections::VecDeque;

use bytes::Bytes;

/// Received bytes not yet read, and whether we have asked the peer to pause.
#[derive(Debug, Default)]
pub(crate) struct ReceiveBuffer {
    chunks: VecDeque<Bytes>,
    len: usize,
    pausing_peer: bool,
}

/// What a change to the receive buffer asks the session to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    None,
    Pause,
    Resume,
}

impl ReceiveBuffer {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn pausing_peer(&self) -> bool {
        self.pausing_peer
    }

    /// Appends `chunk`; says Pause the first time the unread bytes pass
    /// `pause_at`.
    pub(crate) fn push(&mut self, chunk: Bytes, pause_at: usize) -> Signal {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
        if !self.pausing_peer && self.len > pause_at {
            self.pausing_peer = true;
            return Signal::Pause;
        }
        Signal::None
    }

    /// Takes up to `max` bytes from the front (a slice, not a copy); says
    /// Resume once the unread bytes fall below `resume_below` after a Pause.
    pub(crate) fn pop(&mut self, max: usize, resume_below: usize) -> Option<(Bytes, Signal)> {
        let front = self.chunks.front_mut()?;
        let chunk = if front.len() <= max {
            self.chunks.pop_front()?
        } else {
            front.split_to(max)
        };
        self.len -= chunk.len();
        let signal = if self.pausing_peer && self.len < resume_below {
            self.pausing_peer = false;
            Signal::Resume
        } else {
            Signal::None
        };
        Some((chunk, signal))
    }

    /// Drops everything; returns how many bytes were freed.
    pub(crate) fn clear(&mut self) -> usize {
        let freed = self.len;
        self.chunks = VecDeque::new();
        self.len = 0;
        freed
    }
}

/// An encoded message waiting in a connection's send queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A Data message and the number of payload bytes in it.
    Data(Bytes, usize),
    /// The closing `Error "EOF"`: goes after the last Data, even when paused
    /// (Pause holds back Data only).
    Eof(Bytes),
}

/// Messages written by the application and not yet transmitted.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    queue: VecDeque<Outgoing>,
    /// Payload bytes queued.
    len: usize,
    paused_by_peer: bool,
}

impl SendQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn paused_by_peer(&self) -> bool {
        self.paused_by_peer
    }

    pub(crate) fn set_paused_by_peer(&mut self, paused: bool) {
        self.paused_by_peer = paused;
    }

    pub(crate) fn push(&mut self, item: Outgoing) {
        if let Outgoing::Data(_, n) = &item {
            self.len += n;
        }
        self.queue.push_back(item);
    }

    /// True when the front message may go out now.
    pub(crate) fn ready(&self) -> bool {
        match self.queue.front() {
            Some(Outgoing::Data(..)) => !self.paused_by_peer,
            Some(Outgoing::Eof(_)) => true,
            None => false,
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Outgoing> {
        let item = self.queue.pop_front()?;
        if let Outgoing::Data(_, n) = &item {
            self.len -= n;
        }
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
        Some(item)
    }

    /// Drops everything; returns how many payload bytes were dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let dropped = self.len;
        self.queue = VecDeque::new();
        self.len = 0;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_once_resume_once() {
        let mut rb = ReceiveBuffer::default();
        assert_eq!(rb.push(Bytes::from(vec![0; 60]), 100), Signal::None);
        assert_eq!(rb.push(Bytes::from(vec![0; 60]), 100), Signal::Pause);
        assert_eq!(rb.push(Bytes::from(vec![0; 60]), 100), Signal::None);
        let (chunk, sig) = rb.pop(50, 20).unwrap();
        assert_eq!((chunk.len(), sig), (50, Signal::None));
        let mut resumes = 0;
        while let Some((_, sig)) = rb.pop(7, 20) {
            resumes += usize::from(sig == Signal::Resume);
        }
        assert_eq!(resumes, 1);
        assert!(rb.is_empty() && !rb.pausing_peer());
    }

    #[test]
    fn eof_passes_a_pause_but_data_does_not() {
        let mut q = SendQueue::default();
        q.push(Outgoing::Data(Bytes::from_static(b"x"), 1));
        q.set_paused_by_peer(true);
        assert!(!q.ready());
        q.set_paused_by_peer(false);
        assert!(q.ready());
        q.pop();
        q.push(Outgoing::Eof(Bytes::new()));
        q.set_paused_by_peer(true);
        assert!(q.ready());
        assert_eq!(q.len(), 0);
    }
}
