//! The HTTP side of the server: authorizing and upgrading `/connect`
//! requests, and the standalone listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::Role as WsRole;

use super::{Server, SessionKind};

/// Header a peer server sends with its id.
pub const PEER_ID_HEADER: &str = "X-API-Tunnel-ID";
/// Header a peer server sends with its token.
pub const PEER_TOKEN_HEADER: &str = "X-API-Tunnel-Token";

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

pub(crate) fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Compares secrets without leaking where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

impl Server {
    /// Decides who the request is: a peer with a valid id/token pair, a
    /// client the authorizer accepts, or nobody.
    fn authorize(&self, parts: &http::request::Parts) -> Result<SessionKind, (StatusCode, String)> {
        if let Some(id) = parts.headers.get(PEER_ID_HEADER) {
            let id = id.to_str().unwrap_or_default();
            let token = parts
                .headers
                .get(PEER_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let known = self.inner.peer_token(id);
            return match known {
                Some(expected) if constant_time_eq(expected.as_bytes(), token.as_bytes()) => {
                    Ok(SessionKind::Peer(id.to_owned()))
                }
                _ => Err((StatusCode::UNAUTHORIZED, "failed authentication".into())),
            };
        }
        match (self.inner.authorizer)(parts) {
            Authorization::Allow(key) => Ok(SessionKind::Client(key)),
            Authorization::Deny => Err((StatusCode::UNAUTHORIZED, "failed authentication".into())),
            Authorization::Error(text) => Err((StatusCode::BAD_REQUEST, text)),
        }
    }

    /// Handles a tunnel upgrade request: authorizes it, answers `101
    /// Switching Protocols` and runs the session on the upgraded connection.
    /// Mount it on the tunnel route of any hyper 1 or axum 0.8 server (see
    /// the crate docs); the server must serve connections `with_upgrades()`.
    pub async fn handle_upgrade<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        if self.inner.is_shutting_down() {
            return respond(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
        }
        let (parts, body) = req.into_parts();
        let kind = match self.authorize(&parts) {
            Ok(kind) => kind,
            Err((status, text)) => return respond(status, text),
        };
        let key = parts.headers.get(header::SEC_WEBSOCKET_KEY);
        let is_upgrade = parts.method == http::Method::GET
            && header_has_token(&parts.headers, header::CONNECTION, "upgrade")
            && header_has_token(&parts.headers, header::UPGRADE, "websocket")
            && parts
                .headers
                .get(header::SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v == "13");
        let Some(key) = key.filter(|_| is_upgrade) else {
            return respond(
                StatusCode::BAD_REQUEST,
                "websocket: the client is not using the websocket protocol",
            );
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut req = Request::from_parts(parts, body);
        let on_upgrade = hyper::upgrade::on(&mut req);
        let server = self.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    let config = Some(server.inner.websocket_config());
                    let ws = WebSocketStream::from_raw_socket(io, WsRole::Server, config).await;
                    server.run_session(kind, ws).await;
                }
                Err(e) => tracing::warn!(error = %e, "websocket upgrade failed"),
            }
        });
        let mut resp = respond(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
        h.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }

    /// Serves the tunnel on every path of `listener` (plain HTTP) until
    /// [`shutdown`](Self::shutdown). Use [`serve_tls`](Self::serve_tls) for
    /// `wss://`, or mount [`handle_upgrade`](Self::handle_upgrade) in your own
    /// router.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_inner(listener, None).await
    }

    /// Like [`serve`](Self::serve), over TLS.
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        self.serve_inner(listener, Some(tokio_rustls::TlsAcceptor::from(tls)))
            .await
    }

    async fn serve_inner(
        &self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<()> {
        let mut stop = self.inner.shutdown_signal();
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return Ok(()),
            };
            let _ = tcp.set_nodelay(true);
            let server = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle_upgrade(req).await) }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    },
                    None => {
                        builder
                            .serve_connection(TokioIo::new(tcp), service)
                            .with_upgrades()
                            .await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "http connection ended");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
