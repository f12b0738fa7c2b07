//! The standalone listener: accepts TCP (optionally TLS), performs the
//! HTTP upgrade with async-tungstenite's `accept_hdr_async`, whose callback
//! runs the authorizer, then runs the session on the connection's task.

use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::AsyncWriteExt;
use futures_util::future::{Either, select};
use http::{HeaderValue, StatusCode, header};
use remotedialer_driver::admission::{self, Admission, Refusal};
use tungstenite::Error as WsError;
use tungstenite::error::ProtocolError;

use super::Server;
use crate::runtime::{IoTimer, timeout};

/// Pause after a failed accept (out of file descriptors and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the upgrade callback decided.
enum Verdict {
    /// The callback never ran: the request was not a WebSocket upgrade.
    NotReached,
    Admitted(Admission),
    Refused(Refusal),
}

/// The HTTP answer to a refused upgrade, with the body `http.Error` would
/// send minus Go's trailing newline (as the tokio adapter answers).
fn error_response(status: StatusCode, body: &str) -> ErrorResponse {
    let mut resp = http::Response::new(Some(body.to_owned()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(admission::REFUSAL_CONTENT_TYPE),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The same answer as raw bytes, for requests the handshake rejected before
/// the callback.
fn error_response_bytes(status: StatusCode, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        admission::REFUSAL_CONTENT_TYPE,
        body.len()
    )
    .into_bytes()
}

/// Whether the handshake refused the request for not being a WebSocket
/// upgrade (as opposed to not being HTTP at all).
fn not_websocket(err: &WsError) -> bool {
    matches!(
        err,
        WsError::Protocol(
            ProtocolError::WrongHttpMethod
                | ProtocolError::WrongHttpVersion
                | ProtocolError::MissingConnectionUpgradeHeader
                | ProtocolError::MissingUpgradeWebSocketHeader
                | ProtocolError::MissingSecWebSocketVersionHeader
                | ProtocolError::MissingSecWebSocketKey
                | ProtocolError::InvalidSecWebSocketKey
        )
    )
}

impl Server {
    /// Serves the tunnel on every path of `listener` (plain HTTP) until
    /// [`shutdown`](Self::shutdown). Use [`serve_tls`](Self::serve_tls) for
    /// `wss://`, or [`serve_connection`](Self::serve_connection) with your
    /// own accept loop.
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        self.serve_inner(listener, None).await
    }

    /// Like [`serve`](Self::serve), over TLS.
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<()> {
        self.serve_inner(listener, Some(futures_rustls::TlsAcceptor::from(tls)))
            .await
    }

    async fn serve_inner(
        &self,
        listener: TcpListener,
        tls: Option<futures_rustls::TlsAcceptor>,
    ) -> io::Result<()> {
        let mut stop = pin!(self.inner.stop.wait());
        loop {
            let tcp = match select(pin!(listener.accept()), stop.as_mut()).await {
                Either::Left((Ok((tcp, _)), _)) => tcp,
                Either::Left((Err(e), _)) => {
                    tracing::warn!(error = %e, "accept failed");
                    async_io::Timer::after(ACCEPT_BACKOFF).await;
                    continue;
                }
                Either::Right(_) => return Ok(()),
            };
            let server = self.clone();
            let tls = tls.clone();
            self.inner.spawner.spawn(async move {
                server.accept(tcp, tls).await;
            });
        }
    }

    async fn accept(&self, tcp: TcpStream, tls: Option<futures_rustls::TlsAcceptor>) {
        let _ = tcp.set_nodelay(true);
        match tls {
            None => self.serve_connection(tcp).await,
            Some(acceptor) => {
                let limit = self.inner.handshake_timeout;
                match timeout(limit, acceptor.accept(tcp)).await {
                    Some(Ok(stream)) => self.serve_connection(stream).await,
                    Some(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    None => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    }

    /// Serves one accepted connection: reads the upgrade request, answers
    /// 401 `failed authentication` or 400 with the authorizer's text if it
    /// is refused, else upgrades and runs the session until it ends. A
    /// request that is not a WebSocket upgrade gets 400 `websocket: the
    /// client is not using the websocket protocol` (before authorization,
    /// unlike the tokio adapter, which authorizes first).
    pub async fn serve_connection<S>(&self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut io = io;
        let inner = &self.inner;
        let mut verdict = Verdict::NotReached;
        // The signature is tungstenite's `Callback`; its error type is theirs.
        #[allow(clippy::result_large_err)]
        let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let parts = req.clone().into_parts().0;
            match inner.sessions.admit(&parts, &*inner.authorizer) {
                Ok(admitted) => {
                    verdict = Verdict::Admitted(admitted);
                    Ok(resp)
                }
                Err(refusal) => {
                    let resp = error_response(refusal.status, &refusal.body);
                    verdict = Verdict::Refused(refusal);
                    Err(resp)
                }
            }
        };
        let config = Some(remotedialer_driver::websocket_config(inner.max_message));
        let handshake = async_tungstenite::accept_hdr_async_with_config(&mut io, callback, config);
        let result = timeout(inner.handshake_timeout, handshake).await;
        let ws = match (result, verdict) {
            (Some(Ok(ws)), Verdict::Admitted(admitted)) => Some((ws, admitted)),
            (Some(Ok(_)), _) => None,
            (Some(Err(e)), Verdict::Refused(refusal)) => {
                tracing::debug!(error = %e, status = %refusal.status, body = %refusal.body, "upgrade refused");
                None
            }
            (Some(Err(e)), _) => {
                tracing::debug!(error = %e, "upgrade failed");
                if not_websocket(&e) {
                    let answer =
                        error_response_bytes(StatusCode::BAD_REQUEST, admission::NOT_WEBSOCKET);
                    let _ = io.write_all(&answer).await;
                    let _ = io.close().await;
                }
                None
            }
            (None, _) => {
                tracing::debug!("upgrade request timed out");
                None
            }
        };
        let Some((ws, admitted)) = ws else {
            return;
        };
        inner.sessions.run(admitted, ws, IoTimer::new()).await;
        inner.session_ended.notify(usize::MAX);
    }
}
