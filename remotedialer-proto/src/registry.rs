//! Routing: which session reaches a client key. Pure data; the server
//! adapter keeps one and feeds it session and announcement changes.

use std::collections::{HashMap, HashSet};

/// The separator between a client key and the proto in a forwarded Connect
/// (`foo::tcp`).
pub const FORWARD_SEPARATOR: &str = "::";

/// The proto a server sends to a peer to dial through the peer's session for
/// `client_key`: `clientKey::proto`.
pub fn forwarded_proto(client_key: &str, proto: &str) -> String {
    format!("{client_key}{FORWARD_SEPARATOR}{proto}")
}

/// Splits a forwarded proto into `(client_key, proto)`; `None` for a plain
/// proto.
pub fn split_forwarded_proto(proto: &str) -> Option<(&str, &str)> {
    proto.split_once(FORWARD_SEPARATOR)
}

/// Where a dial for a client key goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<S> {
    /// Through this server's own session with the client.
    Local(S),
    /// Through a peer that announced the client; send Connect with
    /// [`forwarded_proto`].
    Peer {
        /// The peer's id.
        peer_id: String,
        /// The peer session to open the connection on.
        session: S,
    },
}

#[derive(Debug)]
struct PeerEntry<S> {
    peer_id: String,
    session: S,
    clients: HashSet<String>,
}

/// Client sessions and peer sessions of one server, and the client keys each
/// peer announced. `S` is the adapter's session handle.
#[derive(Debug)]
pub struct Registry<S> {
    clients: HashMap<String, Vec<S>>,
    peers: Vec<PeerEntry<S>>,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Registry {
            clients: HashMap::new(),
            peers: Vec::new(),
        }
    }
}

impl<S: Clone + PartialEq> Registry<S> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a client session; returns true when it is the first for
    /// `client_key` (time to announce it to peers).
    pub fn add_client(&mut self, client_key: &str, session: S) -> bool {
        let sessions = self.clients.entry(client_key.to_owned()).or_default();
        sessions.push(session);
        sessions.len() == 1
    }

    /// Removes a client session; returns true when it was registered.
    pub fn remove_client(&mut self, client_key: &str, session: &S) -> bool {
        let Some(sessions) = self.clients.get_mut(client_key) else {
            return false;
        };
        let before = sessions.len();
        sessions.retain(|s| s != session);
        let removed = sessions.len() != before;
        if sessions.is_empty() {
            self.clients.remove(client_key);
        }
        removed
    }

    /// Whether this server has its own session for `client_key`.
    pub fn has_client(&self, client_key: &str) -> bool {
        self.clients.contains_key(client_key)
    }

    /// The client keys with a local session.
    pub fn client_keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.clients.keys().map(String::as_str)
    }

    /// Every local client session with its key.
    pub fn client_sessions(&self) -> impl Iterator<Item = (&str, &S)> + '_ {
        self.clients
            .iter()
            .flat_map(|(k, v)| v.iter().map(move |s| (k.as_str(), s)))
    }

    /// Registers a peer session (the accepting side of a peer link).
    pub fn add_peer(&mut self, peer_id: &str, session: S) {
        self.peers.push(PeerEntry {
            peer_id: peer_id.to_owned(),
            session,
            clients: HashSet::new(),
        });
    }

    /// Every peer session with its peer id, in registration order.
    pub fn peer_sessions(&self) -> impl Iterator<Item = (&str, &S)> + '_ {
        self.peers.iter().map(|p| (p.peer_id.as_str(), &p.session))
    }

    /// Removes a peer session and everything it announced.
    pub fn remove_peer(&mut self, session: &S) {
        self.peers.retain(|p| &p.session != session);
    }

    /// A peer session announced `client_key`.
    pub fn peer_client_added(&mut self, session: &S, client_key: &str) {
        if let Some(p) = self.peers.iter_mut().find(|p| &p.session == session) {
            p.clients.insert(client_key.to_owned());
        }
    }

    /// A peer session withdrew `client_key`.
    pub fn peer_client_removed(&mut self, session: &S, client_key: &str) {
        if let Some(p) = self.peers.iter_mut().find(|p| &p.session == session) {
            p.clients.remove(client_key);
        }
    }

    /// Number of client keys a peer (by id) currently announces.
    pub fn peer_client_count(&self, peer_id: &str) -> usize {
        self.peers
            .iter()
            .filter(|p| p.peer_id == peer_id)
            .map(|p| p.clients.len())
            .sum()
    }

    /// Where to dial `client_key`: the first local session, else the first
    /// peer (in registration order) that announced it.
    pub fn route(&self, client_key: &str) -> Option<Route<S>> {
        if let Some(session) = self.clients.get(client_key).and_then(|v| v.first()) {
            return Some(Route::Local(session.clone()));
        }
        self.peers
            .iter()
            .find(|p| p.clients.contains(client_key))
            .map(|p| Route::Peer {
                peer_id: p.peer_id.clone(),
                session: p.session.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_beats_peer_and_routes_follow_changes() {
        let mut r: Registry<u32> = Registry::new();
        assert_eq!(r.route("foo"), None);
        r.add_peer("b", 10);
        r.peer_client_added(&10, "foo");
        assert_eq!(
            r.route("foo"),
            Some(Route::Peer {
                peer_id: "b".into(),
                session: 10
            })
        );
        assert!(r.add_client("foo", 1));
        assert!(!r.add_client("foo", 2));
        assert_eq!(r.route("foo"), Some(Route::Local(1)));
        assert!(r.remove_client("foo", &1));
        assert_eq!(r.route("foo"), Some(Route::Local(2)));
        r.remove_client("foo", &2);
        r.remove_peer(&10);
        assert_eq!(r.route("foo"), None);
        assert_eq!(r.peer_client_count("b"), 0);
    }

    #[test]
    fn forwarded_proto_round_trips() {
        assert_eq!(forwarded_proto("foo", "tcp"), "foo::tcp");
        assert_eq!(split_forwarded_proto("foo::tcp"), Some(("foo", "tcp")));
        assert_eq!(split_forwarded_proto("tcp"), None);
    }
}
