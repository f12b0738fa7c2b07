//! The state one session's driver task and its streams share: the protocol
//! core behind a mutex, and the wakers of whoever waits on it.
//!
//! The lock is held only for a call into the core; wakers are always woken
//! after it is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use remotedialer_proto::{ConnId, Event, Session, SessionError};

use crate::metrics::SessionMetrics;

/// Wakers of one connection's reader and writer.
#[derive(Debug, Default)]
struct ConnWakers {
    read: Option<Waker>,
    write: Option<Waker>,
}

/// What the driver must hand to the application after draining events.
#[derive(Debug)]
pub(crate) enum Notice {
    ConnectRequested {
        conn_id: ConnId,
        proto: String,
        address: String,
    },
    RemoteClient {
        key: String,
        added: bool,
    },
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) session: Session,
    wakers: HashMap<ConnId, ConnWakers>,
    driver: Option<Waker>,
    /// The driver is gone: nothing will ever move bytes again.
    pub(crate) driver_gone: bool,
}

/// Wakers collected under the lock, woken after it is released.
#[derive(Default)]
pub(crate) struct Wakeups(Vec<Waker>);

impl Wakeups {
    pub(crate) fn push(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker {
            self.0.push(w);
        }
    }

    pub(crate) fn wake(&mut self) {
        for w in self.0.drain(..) {
            w.wake();
        }
    }
}

impl State {
    /// Takes the driver's waker if the core has something to transmit.
    pub(crate) fn driver_if_needed(&mut self) -> Option<Waker> {
        if self.session.wants_transmit() {
            self.driver.take()
        } else {
            None
        }
    }

    pub(crate) fn take_driver(&mut self) -> Option<Waker> {
        self.driver.take()
    }

    pub(crate) fn set_driver(&mut self, waker: &Waker) {
        match &self.driver {
            Some(w) if w.will_wake(waker) => {}
            _ => self.driver = Some(waker.clone()),
        }
    }

    pub(crate) fn set_read_waker(&mut self, conn_id: ConnId, waker: &Waker) {
        let slot = &mut self.wakers.entry(conn_id).or_default().read;
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    pub(crate) fn set_write_waker(&mut self, conn_id: ConnId, waker: &Waker) {
        let slot = &mut self.wakers.entry(conn_id).or_default().write;
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    pub(crate) fn forget_wakers(&mut self, conn_id: ConnId) {
        self.wakers.remove(&conn_id);
    }

    /// Drains the core's events: wakers into `wake`, what the application
    /// must handle into `notices`. Returns the session's end, if it ended.
    pub(crate) fn drain_events(
        &mut self,
        wake: &mut Wakeups,
        notices: &mut Vec<Notice>,
    ) -> Option<SessionError> {
        let mut ended = None;
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Readable(id) => {
                    wake.push(self.wakers.get_mut(&id).and_then(|w| w.read.take()))
                }
                Event::Writable(id) => {
                    wake.push(self.wakers.get_mut(&id).and_then(|w| w.write.take()))
                }
                Event::Closed { conn_id, error } => {
                    if let Some(err) = &error {
                        tracing::debug!(conn = %conn_id, %err, "connection closed");
                    }
                    if let Some(w) = self.wakers.get_mut(&conn_id) {
                        wake.push(w.read.take());
                        wake.push(w.write.take());
                    }
                }
                Event::ConnectRequested {
                    conn_id,
                    proto,
                    address,
                } => {
                    notices.push(Notice::ConnectRequested {
                        conn_id,
                        proto,
                        address,
                    });
                }
                Event::RemoteClientAdded(key) => {
                    notices.push(Notice::RemoteClient { key, added: true })
                }
                Event::RemoteClientRemoved(key) => {
                    notices.push(Notice::RemoteClient { key, added: false })
                }
                Event::SessionClosed(err) => {
                    for w in self.wakers.values_mut() {
                        wake.push(w.read.take());
                        wake.push(w.write.take());
                    }
                    ended = Some(err);
                }
            }
        }
        ended
    }
}

/// One session's shared state.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) metrics: SessionMetrics,
}

impl Shared {
    pub(crate) fn new(session: Session, metrics: SessionMetrics) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                session,
                wakers: HashMap::new(),
                driver: None,
                driver_gone: false,
            }),
            metrics,
        })
    }

    /// Locks the state. A panic elsewhere while holding the lock leaves the
    /// core consistent (every core call completes or does nothing), so a
    /// poisoned lock is used as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
