//! Who may open a session: the decision every server adapter makes on an
//! upgrade request, the way Go's `Server.ServeHTTP` makes it, so that every
//! adapter answers the same status and text.

use http::request::Parts;
use http::{HeaderMap, StatusCode, header};

/// Header a peer server sends with its id.
pub const PEER_ID_HEADER: &str = "X-API-Tunnel-ID";
/// Header a peer server sends with its token.
pub const PEER_TOKEN_HEADER: &str = "X-API-Tunnel-Token";
/// Go's body for a refused upgrade (HTTP 401).
pub const FAILED_AUTHENTICATION: &str = "failed authentication";
/// Gorilla's body for a request that is not a WebSocket upgrade (HTTP 400).
pub const NOT_WEBSOCKET: &str = "websocket: the client is not using the websocket protocol";
/// The `Content-Type` of a refusal, as Go's `http.Error` sends it.
pub const REFUSAL_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Body for an upgrade refused because the server is stopping (HTTP 503).
pub const SHUTTING_DOWN: &str = "server is shutting down";

/// What the application's authorizer decides about an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Accept; the session belongs to this client key.
    Allow(String),
    /// Refuse: HTTP 401 `failed authentication`.
    Deny,
    /// Refuse with an error: HTTP 400 with this text.
    Error(String),
}

/// Who an admitted upgrade request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// An agent; the session serves this client key.
    Client(String),
    /// A peer server with this id.
    Peer(String),
}

impl Admission {
    /// The client key, or the peer id.
    pub fn key(&self) -> &str {
        match self {
            Admission::Client(key) | Admission::Peer(key) => key,
        }
    }

    /// True for a peer server.
    pub fn is_peer(&self) -> bool {
        matches!(self, Admission::Peer(_))
    }
}

/// A refused upgrade: the HTTP status and body to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}: {body}")]
pub struct Refusal {
    /// The status, 401 or 400.
    pub status: StatusCode,
    /// The body, e.g. `failed authentication`.
    pub body: String,
}

impl Refusal {
    fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Refusal {
            status,
            body: body.into(),
        }
    }
}

/// Decides who the request is: a peer presenting its id and the token
/// `peer_token` knows for that id (compared in constant time), else whoever
/// `authorizer` accepts. A request with a peer id header never reaches the
/// authorizer (Go falls through to it; see the README's table of
/// differences).
pub fn admit(
    parts: &Parts,
    peer_token: impl FnOnce(&str) -> Option<String>,
    authorizer: impl FnOnce(&Parts) -> Authorization,
) -> Result<Admission, Refusal> {
    if let Some(id) = parts.headers.get(PEER_ID_HEADER) {
        let id = id.to_str().unwrap_or_default();
        let token = parts
            .headers
            .get(PEER_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        return match peer_token(id) {
            Some(expected) if constant_time_eq(expected.as_bytes(), token.as_bytes()) => {
                Ok(Admission::Peer(id.to_owned()))
            }
            _ => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                FAILED_AUTHENTICATION,
            )),
        };
    }
    match authorizer(parts) {
        Authorization::Allow(key) => Ok(Admission::Client(key)),
        Authorization::Deny => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            FAILED_AUTHENTICATION,
        )),
        Authorization::Error(text) => Err(Refusal::new(StatusCode::BAD_REQUEST, text)),
    }
}

/// True for a well-formed WebSocket upgrade request (RFC 6455 section 4.2.1:
/// GET, `Connection: upgrade`, `Upgrade: websocket`, version 13, a key).
pub fn is_websocket_upgrade(parts: &Parts) -> bool {
    parts.method == http::Method::GET
        && header_has_token(&parts.headers, header::CONNECTION, "upgrade")
        && header_has_token(&parts.headers, header::UPGRADE, "websocket")
        && parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13")
        && parts.headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Compares secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().uri("/connect");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        req.body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| http::Request::new(()).into_parts().0)
    }

    fn by_tunnel_id(p: &Parts) -> Authorization {
        match p.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
            Some("bad") => Authorization::Error("bad client".into()),
            Some(id) => Authorization::Allow(id.to_owned()),
            None => Authorization::Deny,
        }
    }

    fn tokens(id: &str) -> Option<String> {
        (id == "peer1").then(|| "secret".to_owned())
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn clients_go_through_the_authorizer() {
        let ok = admit(&parts(&[("X-Tunnel-ID", "foo")]), tokens, by_tunnel_id);
        assert_eq!(ok, Ok(Admission::Client("foo".into())));
        let denied = admit(&parts(&[]), tokens, by_tunnel_id);
        assert_eq!(
            denied,
            Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "failed authentication"
            ))
        );
        let error = admit(&parts(&[("X-Tunnel-ID", "bad")]), tokens, by_tunnel_id);
        assert_eq!(
            error,
            Err(Refusal::new(StatusCode::BAD_REQUEST, "bad client"))
        );
    }

    #[test]
    fn peers_need_their_token_and_skip_the_authorizer() {
        let peer = [
            (PEER_ID_HEADER, "peer1"),
            (PEER_TOKEN_HEADER, "secret"),
            ("X-Tunnel-ID", "foo"),
        ];
        assert_eq!(
            admit(&parts(&peer), tokens, by_tunnel_id),
            Ok(Admission::Peer("peer1".into()))
        );
        let wrong = [(PEER_ID_HEADER, "peer1"), (PEER_TOKEN_HEADER, "secreT")];
        let unknown = [(PEER_ID_HEADER, "peer2"), (PEER_TOKEN_HEADER, "secret")];
        for h in [&wrong[..], &unknown[..], &[(PEER_ID_HEADER, "peer1")][..]] {
            assert_eq!(
                admit(&parts(h), tokens, |_: &Parts| -> Authorization {
                    panic!("a peer request reached the authorizer")
                }),
                Err(Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "failed authentication"
                ))
            );
        }
    }

    #[test]
    fn recognises_websocket_upgrades() {
        let upgrade = [
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "WebSocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert!(is_websocket_upgrade(&parts(&upgrade)));
        assert!(!is_websocket_upgrade(&parts(&upgrade[..3])));
        assert!(!is_websocket_upgrade(&parts(&[])));
    }
}
