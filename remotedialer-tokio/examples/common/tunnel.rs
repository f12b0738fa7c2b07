//! The example tunnel server: a remotedialer [`Server`] whose authorizer
//! takes the client key from `X-Tunnel-ID` (as Go's example), mounted in an
//! axum router with the `/client/...` proxy and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use prometheus_client::registry::Registry;
use remotedialer_tokio::{Authorization, Metrics, Server, ServerConfig};

/// The tunnel server and the metrics registry it records into.
#[derive(Clone)]
pub struct TunnelServer {
    /// The remotedialer server.
    pub server: Server,
    registry: Arc<Registry>,
}

/// Go's example authorizer: any non-empty `X-Tunnel-ID` is the client key.
pub fn tunnel_id_authorizer(req: &http::request::Parts) -> Authorization {
    match req.headers.get("X-Tunnel-ID").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => Authorization::Allow(id.to_owned()),
        _ => Authorization::Deny,
    }
}

impl Default for TunnelServer {
    fn default() -> Self {
        Self::with_config(ServerConfig::default())
    }
}

impl TunnelServer {
    /// A server with these settings; metrics are added.
    pub fn with_config(mut config: ServerConfig) -> Self {
        let mut registry = Registry::default();
        config.metrics = Some(Metrics::register(&mut registry));
        TunnelServer {
            server: Server::with_config(tunnel_id_authorizer, config),
            registry: Arc::new(registry),
        }
    }

    /// `/connect` (the tunnel), `/client/{id}/{scheme}/{host}/{path...}` (an
    /// HTTP request through client `id`) and `/metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/connect", any(connect))
            .route("/client/{*rest}", any(super::proxy::handle))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .with_state(self.clone())
    }
}

async fn connect(State(app): State<TunnelServer>, req: Request) -> Response {
    app.server.handle_upgrade(req).await.map(Body::new)
}

async fn not_found(req: Request) -> Response {
    (
        http::StatusCode::NOT_FOUND,
        format!(
            "no route for {}: this server has /connect (the tunnel), \
             /client/{{id}}/http/{{host}}/{{path}} and /metrics\n",
            req.uri().path()
        ),
    )
        .into_response()
}

async fn metrics(State(app): State<TunnelServer>) -> Response {
    app.server.refresh_metrics();
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        return (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
