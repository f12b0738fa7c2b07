//! `/client/{id}/{scheme}/{host}/{path...}`: an HTTP request through client
//! `id`, as Go's example server does, but for every method, with request and
//! response bodies streamed both ways.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName};
use http::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use remotedialer_tokio::DialError;

use super::parse::parse_client_route;
use super::serve::{Logged, human_bytes};
use super::tunnel::TunnelServer;

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Headers that describe one HTTP hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those the `Connection` header
/// names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (status, format!("{body}\n")).into_response()
}

/// The DialError behind a hyper client error, if the tunnel caused it.
fn dial_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a DialError> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(d) = e.downcast_ref::<DialError>() {
            return Some(d);
        }
        // io::Error::source skips the error it wraps; look inside.
        if let Some(d) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<DialError>())
        {
            return Some(d);
        }
        cur = e.source();
    }
    None
}

/// The whole chain, `outer: inner: innermost`.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cur = e.source();
    }
    text
}

/// The `/client/...` handler.
pub async fn handle(State(app): State<TunnelServer>, req: Request) -> Response {
    let rest = req.uri().path().strip_prefix("/client/").unwrap_or("");
    let route = match parse_client_route(rest, req.uri().query()) {
        Ok(r) => r,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    if route.scheme != "http" {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "scheme {:?} is not supported by this example: it proxies plain http; \
                 for anything else use --forward",
                route.scheme
            ),
        );
    }
    let url = format!("http://{}{}", route.host, route.path_and_query);
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("invalid target {url}: {e}"),
            );
        }
    };
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    let method = req.method().clone();
    let timeout = route.timeout_secs;
    tracing::info!(
        "[{n:03}] REQ t={timeout} {method} {url} via {}",
        route.client
    );

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The target's Host, not ours; hyper sets it from the URI.
    parts.headers.remove(header::HOST);
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let outgoing = Request::from_parts(parts, body);

    // One connection per request: tunneled connections are cheap, and a
    // pool would keep idle ones open on the agent.
    let client: Client<_, Body> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(app.server.connector(&route.client));
    // The timeout covers the response head; bodies stream for as long as
    // they keep flowing (Go's example times out the whole transfer).
    let result = tokio::time::timeout(Duration::from_secs(timeout), client.request(outgoing)).await;
    let response = match result {
        Err(_) => {
            tracing::warn!("[{n:03}] REQ TIMEOUT t={timeout} {url}");
            return text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "no response from {url} through client {} within {timeout} s (raise it with ?timeout=SECONDS)",
                    route.client
                ),
            );
        }
        Ok(Err(e)) => {
            tracing::warn!("[{n:03}] REQ ERR t={timeout} {url}: {}", error_chain(&e));
            let msg = match dial_error(&e) {
                Some(DialError::NoSession(_)) => {
                    let clients = app.server.list_clients();
                    format!(
                        "client {:?} is not connected to this server (connected clients: {}). \
                         Start it with: cargo run -p remotedialer-tokio --example client -- --id {} --allow-all",
                        route.client,
                        if clients.is_empty() {
                            "none".to_owned()
                        } else {
                            clients.join(", ")
                        },
                        route.client
                    )
                }
                _ => format!(
                    "request to {url} through client {} failed: {}",
                    route.client,
                    error_chain(&e)
                ),
            };
            return text(StatusCode::BAD_GATEWAY, msg);
        }
        Ok(Ok(resp)) => resp,
    };
    let status = response.status();
    tracing::info!("[{n:03}] REQ OK t={timeout} {url}: {status}");
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = Logged::new(body, move |t| {
        let what = if t.complete { "DONE" } else { "ABORTED" };
        tracing::info!(
            "[{n:03}] REQ {what} t={timeout} {url}: {} in {:.1?}",
            human_bytes(t.bytes),
            t.elapsed
        );
    });
    Response::from_parts(parts, Body::new(body))
}
