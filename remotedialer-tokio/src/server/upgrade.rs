//! The HTTP side of the server: authorizing and upgrading `/connect`
//! requests, and the standalone listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use remotedialer_driver::admission;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::Role as WsRole;

use super::Server;

pub use remotedialer_driver::admission::{Authorization, PEER_ID_HEADER, PEER_TOKEN_HEADER};

pub(crate) fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

/// A refused upgrade, with Go's plain-text body and content type.
fn refuse(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = respond(status, body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(remotedialer_driver::admission::REFUSAL_CONTENT_TYPE),
    );
    resp
}

impl Server {
    /// Handles a tunnel upgrade request: authorizes it, answers `101
    /// Switching Protocols` and runs the session on the upgraded connection.
    /// Mount it on the tunnel route of any hyper 1 or axum 0.8 server (see
    /// the README, "Mounting in axum 0.8"); the server must serve
    /// connections `with_upgrades()`.
    pub async fn handle_upgrade<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let admitted = match self.inner.sessions.admit(&parts, &*self.inner.authorizer) {
            Ok(admitted) => admitted,
            Err(refusal) => return refuse(refusal.status, refusal.body),
        };
        let key = parts.headers.get(header::SEC_WEBSOCKET_KEY);
        let is_upgrade = admission::is_websocket_upgrade(&parts);
        let Some(key) = key.filter(|_| is_upgrade) else {
            return refuse(StatusCode::BAD_REQUEST, admission::NOT_WEBSOCKET);
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
                    server.run_session(admitted, ws).await;
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
                // `wait_for` sees a shutdown that came before this `serve`.
                _ = async { stop.wait_for(|stopped| *stopped).await.map(|_| ()) } => return Ok(()),
            };
            let _ = tcp.set_nodelay(true);
            let server = self.clone();
            let tls = tls.clone();
            let limit = self.inner.config.handshake_timeout;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle_upgrade(req).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limit);
                let result = match tls {
                    Some(acceptor) => match tokio::time::timeout(limit, acceptor.accept(tcp)).await
                    {
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                        Ok(Ok(stream)) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await
                        }
                        Ok(Err(e)) => {
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
