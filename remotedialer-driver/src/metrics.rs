//! Prometheus metrics with the Go reference's names (subsystem
//! `session_server`), plus gauges of our own.
//!
//! Counters are exposed in OpenMetrics form, so each name gains the `_total`
//! suffix OpenMetrics requires (`session_server_total_transmit_bytes_total`).

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric of a server or client; register once, share by `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    add_session: Family<Labels, Counter>,
    remove_session: Family<Labels, Counter>,
    add_connection: Family<Labels, Counter>,
    remove_connection: Family<Labels, Counter>,
    transmit_bytes: Family<Labels, Counter>,
    transmit_error_bytes: Family<Labels, Counter>,
    receive_bytes: Family<Labels, Counter>,
    peer_attempt: Family<Labels, Counter>,
    peer_connected: Family<Labels, Counter>,
    peer_disconnected: Family<Labels, Counter>,
    /// Live sessions.
    pub sessions: Gauge,
    /// Live tunneled connections across sessions.
    pub connections: Gauge,
    /// Connections that the peer has paused or that pause the peer.
    pub paused_connections: Gauge,
    /// Bytes buffered in the cores (received unread plus written unsent).
    pub buffered_bytes: Gauge,
    /// Client keys each peer announced.
    pub peer_remote_clients: Family<Labels, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them under `session_server`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("session_server");
        r.register(
            "total_add_websocket_session",
            "Websocket sessions added",
            m.add_session.clone(),
        );
        r.register(
            "total_remove_websocket_session",
            "Websocket sessions removed",
            m.remove_session.clone(),
        );
        r.register(
            "total_add_connections",
            "Tunneled connections added",
            m.add_connection.clone(),
        );
        r.register(
            "total_remove_connections",
            "Tunneled connections removed",
            m.remove_connection.clone(),
        );
        r.register(
            "total_transmit_bytes",
            "Bytes written to tunneled connections",
            m.transmit_bytes.clone(),
        );
        r.register(
            "total_transmit_error_bytes",
            "Bytes of failed writes to tunneled connections",
            m.transmit_error_bytes.clone(),
        );
        r.register(
            "total_receive_bytes",
            "Bytes read from tunneled connections",
            m.receive_bytes.clone(),
        );
        r.register(
            "total_peer_ws_attempt",
            "Peer websocket connection attempts",
            m.peer_attempt.clone(),
        );
        r.register(
            "total_peer_ws_connected",
            "Peer websocket connections established",
            m.peer_connected.clone(),
        );
        r.register(
            "total_peer_ws_disconnected",
            "Peer websocket connections lost",
            m.peer_disconnected.clone(),
        );
        r.register("sessions", "Live websocket sessions", m.sessions.clone());
        r.register(
            "connections",
            "Live tunneled connections",
            m.connections.clone(),
        );
        r.register(
            "paused_connections",
            "Tunneled connections paused in either direction",
            m.paused_connections.clone(),
        );
        r.register(
            "buffered_bytes",
            "Bytes buffered in session cores",
            m.buffered_bytes.clone(),
        );
        r.register(
            "peer_remote_clients",
            "Client keys announced by each peer",
            m.peer_remote_clients.clone(),
        );
        Arc::new(m)
    }

    /// A session came up.
    pub fn session_added(&self, client_key: &str, peer: bool) {
        self.add_session
            .get_or_create(&session_labels(client_key, peer))
            .inc();
    }

    /// A session went away.
    pub fn session_removed(&self, client_key: &str, peer: bool) {
        self.remove_session
            .get_or_create(&session_labels(client_key, peer))
            .inc();
    }

    /// Counts a peer link attempt, success or loss.
    pub fn peer_event(&self, peer: &str, event: PeerEvent) {
        let labels = vec![("peer", peer.to_owned())];
        let family = match event {
            PeerEvent::Attempt => &self.peer_attempt,
            PeerEvent::Connected => &self.peer_connected,
            PeerEvent::Disconnected => &self.peer_disconnected,
        };
        family.get_or_create(&labels).inc();
    }

    /// Sets how many client keys `peer` announces.
    pub fn set_peer_remote_clients(&self, peer: &str, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.peer_remote_clients
            .get_or_create(&vec![("peer", peer.to_owned())])
            .set(count);
    }
}

/// What happened on a peer link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// A connection attempt started.
    Attempt,
    /// The link is up.
    Connected,
    /// The link went down.
    Disconnected,
}

fn session_labels(client_key: &str, peer: bool) -> Labels {
    vec![
        ("clientkey", client_key.to_owned()),
        ("peer", peer.to_string()),
    ]
}

/// One session's handles on the metrics: the per-client counters are looked
/// up once, so the data path only does an atomic add.
#[derive(Debug, Clone, Default)]
pub struct SessionMetrics {
    inner: Option<Arc<SessionCounters>>,
}

#[derive(Debug)]
struct SessionCounters {
    metrics: Arc<Metrics>,
    client_key: String,
    transmit: Counter,
    receive: Counter,
}

impl SessionMetrics {
    /// Counters for the session of `client_key`; `None` disables metrics.
    pub fn new(metrics: Option<Arc<Metrics>>, client_key: &str) -> Self {
        let inner = metrics.map(|metrics| {
            let labels = vec![("clientkey", client_key.to_owned())];
            Arc::new(SessionCounters {
                transmit: metrics.transmit_bytes.get_or_create_owned(&labels),
                receive: metrics.receive_bytes.get_or_create_owned(&labels),
                client_key: client_key.to_owned(),
                metrics,
            })
        });
        SessionMetrics { inner }
    }

    pub(crate) fn transmitted(&self, n: usize) {
        if let Some(c) = &self.inner {
            c.transmit.inc_by(n as u64);
        }
    }

    pub(crate) fn received(&self, n: usize) {
        if let Some(c) = &self.inner {
            c.receive.inc_by(n as u64);
        }
    }

    /// Bytes an application tried to write to a connection that had failed.
    pub fn transmit_failed(&self, n: usize) {
        if let Some(c) = &self.inner {
            let labels = vec![("clientkey", c.client_key.clone())];
            c.metrics
                .transmit_error_bytes
                .get_or_create(&labels)
                .inc_by(n as u64);
        }
    }

    pub(crate) fn connection_added(&self, proto: &str, address: &str) {
        if let Some(c) = &self.inner {
            c.metrics
                .add_connection
                .get_or_create(&conn_labels(&c.client_key, proto, address))
                .inc();
        }
    }

    pub(crate) fn connection_removed(&self, proto: &str, address: &str) {
        if let Some(c) = &self.inner {
            let labels = conn_labels(&c.client_key, proto, address);
            c.metrics.remove_connection.get_or_create(&labels).inc();
        }
    }
}

fn conn_labels(client_key: &str, proto: &str, address: &str) -> Labels {
    vec![
        ("clientkey", client_key.to_owned()),
        ("proto", proto.to_owned()),
        ("addr", address.to_owned()),
    ]
}
