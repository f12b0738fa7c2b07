//! The driver must not stall when the WebSocket drains between its
//! `poll_ready` and its `poll_flush`.
//!
//! async-net drops a socket's writability registration as soon as a write
//! succeeds. So when `poll_ready` says Pending (socket full) and the
//! `poll_flush` right after it succeeds (the peer read in between), nothing
//! is registered any more: a driver that then returns Pending with messages
//! still in its outbox is never woken, and the tunnel stalls until the next
//! keepalive. This happened in about 1 run in 10 of tunnel-bench B1 on
//! async-std's two-thread executor. The socket here is scripted so that the
//! race happens on every run; the tunnel over real sockets is covered by the
//! adapters' integration tests.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use futures_core::Stream;
use futures_sink::Sink;
use remotedialer_driver::proto::{Body, Config, Message as Frame, Role, Session, SessionIdentity};
use remotedialer_driver::{RefuseConnects, SessionMetrics, Timer, start};
use tungstenite::{Error as WsError, Message};

/// One scripted outcome of `poll_ready` or `poll_flush`.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ready,
    /// The socket is full: the waker is kept until the socket drains.
    Full,
}

/// What the scripted WebSocket records and holds.
#[derive(Default)]
struct Script {
    ready: VecDeque<Outcome>,
    flush: VecDeque<Outcome>,
    sent: Vec<Message>,
    /// The writability registration, as async-net keeps it: set by a
    /// Pending outcome, dropped by the next successful flush.
    registered: Option<Waker>,
}

#[derive(Clone, Default)]
struct ScriptedSocket(Arc<Mutex<Script>>);

impl ScriptedSocket {
    fn outcome(
        &self,
        which: fn(&mut Script) -> &mut VecDeque<Outcome>,
        cx: &Context<'_>,
    ) -> Poll<Result<(), WsError>> {
        let mut s = self.0.lock().unwrap();
        match which(&mut s).pop_front().unwrap_or(Outcome::Ready) {
            Outcome::Ready => Poll::Ready(Ok(())),
            Outcome::Full => {
                s.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Stream for ScriptedSocket {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Nothing to read; the test never needs reads.
        Poll::Pending
    }
}

impl Sink<Message> for ScriptedSocket {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.outcome(|s| &mut s.ready, cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        self.0.lock().unwrap().sent.push(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let out = self.outcome(|s| &mut s.flush, cx);
        if out.is_ready() {
            // The write went through: async-net drops its registration.
            self.0.lock().unwrap().registered = None;
        }
        out
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
}

/// A timer that never fires.
struct NeverTimer;

impl Timer for NeverTimer {
    fn reset(&mut self, _deadline: Instant) {}

    fn poll_expired(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// Records whether the driver task was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn flush_that_drains_the_socket_does_not_strand_the_outbox() {
    let socket = ScriptedSocket::default();
    {
        let mut s = socket.0.lock().unwrap();
        // Poll 1: the Connect goes in, then the socket is full and the
        // flush waits. Poll 2 (after the wake-up): still full at
        // `poll_ready`, but the flush right after it finds the socket
        // drained: the race.
        s.ready
            .extend([Outcome::Ready, Outcome::Full, Outcome::Full]);
        s.flush.extend([Outcome::Full, Outcome::Ready]);
    }
    let identity = SessionIdentity {
        client_key: "agent".into(),
        session_key: 1,
    };
    let session = Session::new(Role::Server, identity, Config::default(), Instant::now()).unwrap();
    let (handle, mut driver) = start(
        session,
        socket.clone(),
        NeverTimer,
        Box::new(RefuseConnects),
        SessionMetrics::new(None, "agent"),
    );
    let stream = handle.open("tcp", "127.0.0.1:1").unwrap();
    let payload = vec![7u8; 96 << 10];
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut written = 0;
    while written < payload.len() {
        match stream.poll_write(&mut cx, &payload[written..]) {
            Poll::Ready(n) => written += n.unwrap(),
            Poll::Pending => panic!("the send buffer holds 96 KiB"),
        }
    }

    // Run the driver as an executor would: poll while woken; when it is
    // not, let the socket drain (wake whatever is registered on it). Stop
    // when nobody will wake the driver again.
    for _ in 0..100 {
        flag.0.store(false, Ordering::SeqCst);
        assert!(Pin::new(&mut driver).poll(&mut cx).is_pending());
        if flag.0.load(Ordering::SeqCst) {
            continue;
        }
        let registered = socket.0.lock().unwrap().registered.take();
        match registered {
            Some(w) => w.wake(),
            None => break,
        }
    }

    let sent: usize = socket
        .0
        .lock()
        .unwrap()
        .sent
        .iter()
        .filter_map(|m| match m {
            Message::Binary(bytes) => Frame::decode(bytes.clone()).ok(),
            _ => None,
        })
        .map(|f| match f.body {
            Body::Data(p) => p.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(
        sent,
        payload.len(),
        "the driver went idle with data in its outbox and nothing to wake it"
    );
}

/// A timer that only answers when asked (the test polls on its own).
struct ClockTimer(Option<Instant>);

impl Timer for ClockTimer {
    fn reset(&mut self, deadline: Instant) {
        self.0 = Some(deadline);
    }

    fn poll_expired(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        match self.0 {
            Some(at) if Instant::now() >= at => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

#[test]
fn an_ended_session_gives_up_on_a_peer_that_never_reads() {
    // The socket is full for ever: the peer never reads.
    let socket = ScriptedSocket::default();
    socket
        .0
        .lock()
        .unwrap()
        .ready
        .extend(std::iter::repeat_n(Outcome::Full, 1_000_000));
    let identity = SessionIdentity {
        client_key: "agent".into(),
        session_key: 1,
    };
    let session = Session::new(Role::Server, identity, Config::default(), Instant::now()).unwrap();
    let (handle, mut driver) = start(
        session,
        socket.clone(),
        ClockTimer(None),
        Box::new(RefuseConnects),
        SessionMetrics::new(None, "agent"),
    );
    let stream = handle.open("tcp", "127.0.0.1:1").unwrap();
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(stream.poll_write(&mut cx, &[1u8; 4096]).is_ready());
    assert!(Pin::new(&mut driver).poll(&mut cx).is_pending());
    handle.shutdown_gracefully();

    // It used to wait for ever with its outbox full. Now it gives up after
    // its grace periods; the bound here only keeps a regression from hanging.
    let limit = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if Pin::new(&mut driver).poll(&mut cx).is_ready() {
            break;
        }
        assert!(Instant::now() < limit, "the ended driver never gave up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
