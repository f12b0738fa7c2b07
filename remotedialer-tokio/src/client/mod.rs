//! The client (agent): connects to a server and dials what it is asked to.

mod dial;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use remotedialer_driver::client::{CheckedClient, ClientSettings};
use remotedialer_driver::{Metrics, SessionHandle, SessionHandler, SessionMetrics};
use remotedialer_proto::{Config, Role, Session, SessionIdentity};
use tokio::sync::watch;
use tokio_tungstenite::Connector as WsConnector;
use tungstenite::client::IntoClientRequest;

pub use remotedialer_driver::Backoff;

pub use dial::{
    ConnectAuthorizer, DialFuture, LocalDialer, TargetStream, dial_default, dial_error_text,
};

use crate::error::ClientError;
use crate::proxy;
use crate::runtime::TokioTimer;
use crate::tls::TlsRoots;

/// Called with each new session's handle.
pub type ConnectHook = dyn Fn(&SessionHandle) + Send + Sync;

/// Makes the handler of each new session, in place of the dialing handler
/// (server-to-server peer links serve connect requests differently).
pub(crate) type HandlerFactory = dyn Fn() -> Box<dyn SessionHandler> + Send + Sync;

/// Go's handshake timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Client`].
pub struct ClientBuilder {
    url: String,
    headers: HeaderMap,
    authorizer: Option<Arc<ConnectAuthorizer>>,
    dialer: Option<Arc<LocalDialer>>,
    session: Config,
    dial_timeout: Option<Duration>,
    roots: TlsRoots,
    tls: Option<Arc<rustls::ClientConfig>>,
    use_env_proxy: bool,
    proxy: Option<Uri>,
    on_connect: Option<Arc<ConnectHook>>,
    backoff: Backoff,
    max_message: usize,
    metrics: Option<Arc<Metrics>>,
    client_key: String,
    handler: Option<Arc<HandlerFactory>>,
    errors: Vec<String>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A client of the server at `url` (`ws://`, `wss://`, `http://` or
    /// `https://`, e.g. `ws://localhost:8123/connect`).
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            headers: HeaderMap::new(),
            authorizer: None,
            dialer: None,
            session: Config::default(),
            dial_timeout: None,
            roots: TlsRoots::default(),
            tls: None,
            use_env_proxy: true,
            proxy: None,
            on_connect: None,
            backoff: Backoff::default(),
            max_message: remotedialer_driver::DEFAULT_MAX_MESSAGE,
            metrics: None,
            client_key: "client".into(),
            handler: None,
            errors: Vec::new(),
        }
    }

    /// Adds a header to the upgrade request (e.g. `X-Tunnel-ID: foo`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                if n.as_str().eq_ignore_ascii_case("x-tunnel-id") {
                    self.client_key = value.to_owned();
                }
                self.headers.append(n, v);
            }
            _ => self.errors.push(format!("invalid header {name:?}")),
        }
        self
    }

    /// Decides which `(proto, address)` the server may dial through this
    /// client. Required: the library has no allow-all default.
    pub fn connect_authorizer(
        mut self,
        authorizer: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Replaces the default local dialer.
    pub fn local_dialer(
        mut self,
        dialer: impl Fn(&str, &str) -> DialFuture + Send + Sync + 'static,
    ) -> Self {
        self.dialer = Some(Arc::new(dialer));
        self
    }

    /// How long a dial may take (default 1 minute, as Go). Wins over the
    /// `dial_timeout` of [`session_config`](Self::session_config), in
    /// whichever order the two are called.
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = Some(timeout);
        self
    }

    /// The protocol core's settings (keepalive, sync, buffers).
    pub fn session_config(mut self, config: Config) -> Self {
        self.session = config;
        self
    }

    /// Which CAs to trust for `wss://` (default: webpki roots).
    pub fn tls_roots(mut self, roots: TlsRoots) -> Self {
        self.roots = roots;
        self
    }

    /// A complete rustls configuration for `wss://`, overriding
    /// [`tls_roots`](Self::tls_roots).
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Whether to honour `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` (default yes).
    pub fn proxy_from_env(mut self, enabled: bool) -> Self {
        self.use_env_proxy = enabled;
        self
    }

    /// Always reaches the server through this HTTP proxy (`http://host:port`,
    /// optionally `http://user:pass@host:port`) with `CONNECT`, whatever the
    /// environment says. Unlike a proxy from the environment, it is used for
    /// `localhost` and loopback servers too.
    pub fn proxy(mut self, proxy: Uri) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Called with the session handle each time a session is established.
    pub fn on_connect(mut self, hook: impl Fn(&SessionHandle) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// Reconnect delays for [`Client::run`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Largest incoming WebSocket message accepted.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// Metrics to record into.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves the session with handlers from `factory` instead of dialing
    /// targets, and names the session `name` in logs and metrics.
    pub(crate) fn session_handler(
        mut self,
        name: &str,
        factory: impl Fn() -> Box<dyn SessionHandler> + Send + Sync + 'static,
    ) -> Self {
        self.client_key = name.to_owned();
        self.handler = Some(Arc::new(factory));
        self
    }

    /// Checks the settings and builds the client.
    pub fn build(self) -> Result<Client, ClientError> {
        let CheckedClient {
            authorizer,
            url,
            tls,
            session,
        } = ClientSettings {
            url: &self.url,
            errors: &self.errors,
            authorizer: self.authorizer,
            session: self.session,
            dial_timeout: self.dial_timeout,
            roots: &self.roots,
            tls: self.tls,
        }
        .check()?;
        let (cancel, _) = watch::channel(false);
        Ok(Client {
            inner: Arc::new(ClientInner {
                url,
                headers: self.headers,
                authorizer,
                dialer: self.dialer,
                session,
                tls,
                use_env_proxy: self.use_env_proxy,
                proxy: self.proxy,
                on_connect: self.on_connect,
                backoff: self.backoff,
                max_message: self.max_message,
                metrics: self.metrics,
                client_key: self.client_key,
                handler: self.handler,
                cancel,
            }),
        })
    }
}

struct ClientInner {
    url: Uri,
    headers: HeaderMap,
    authorizer: Arc<ConnectAuthorizer>,
    dialer: Option<Arc<LocalDialer>>,
    session: Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    use_env_proxy: bool,
    proxy: Option<Uri>,
    on_connect: Option<Arc<ConnectHook>>,
    backoff: Backoff,
    max_message: usize,
    metrics: Option<Arc<Metrics>>,
    client_key: String,
    handler: Option<Arc<HandlerFactory>>,
    cancel: watch::Sender<bool>,
}

/// A remotedialer client (agent). Cheap to clone.
///
/// ```no_run
/// use remotedialer_tokio::ClientBuilder;
///
/// # async fn run() -> Result<(), remotedialer_tokio::ClientError> {
/// let client = ClientBuilder::new("ws://localhost:8123/connect")
///     .header("X-Tunnel-ID", "foo")
///     .connect_authorizer(|proto, address| proto == "tcp" && address.starts_with("127.0.0.1:"))
///     .build()?;
/// client.run().await; // reconnects with backoff until client.cancel()
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Stops [`run`](Self::run) and ends the current session.
    pub fn cancel(&self) {
        // `send` drops the value when nobody is subscribed (no `run` in
        // progress); the flag must stick for `is_cancelled` and later runs.
        self.inner.cancel.send_replace(true);
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        *self.inner.cancel.borrow()
    }

    /// Connects, reconnecting after every failure or lost session with
    /// exponential backoff and jitter, until [`cancel`](Self::cancel).
    pub async fn run(&self) {
        let mut cancelled = self.inner.cancel.subscribe();
        let mut schedule = self.inner.backoff.schedule();
        while !*cancelled.borrow() {
            let started = Instant::now();
            match self.connect_once().await {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "remotedialer session failed"),
            }
            if *cancelled.borrow() {
                break;
            }
            let jittered = schedule.next_delay(started.elapsed());
            tracing::info!(delay = ?jittered, "reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(jittered) => {}
                _ = cancelled.changed() => break,
            }
        }
    }

    /// Connects once and serves the session until it ends. `Ok(())` when
    /// ended by [`cancel`](Self::cancel).
    pub async fn connect_once(&self) -> Result<(), ClientError> {
        let inner = &self.inner;
        let mut cancelled = inner.cancel.subscribe();
        if *cancelled.borrow() {
            return Ok(());
        }
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake());
        let ws = tokio::select! {
            result = handshake => result.map_err(|_| ClientError::Connect {
                url: inner.url.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"),
            })??,
            // A cancel during the handshake ends it at once, as on async-std.
            _ = cancelled.changed() => return Ok(()),
        };
        let identity = SessionIdentity {
            client_key: inner.client_key.clone(),
            session_key: 0,
        };
        let session = Session::new(
            Role::Client,
            identity,
            inner.session.clone(),
            Instant::now(),
        )
        .map_err(|e| ClientError::Config(e.to_string()))?;
        let handler: Box<dyn SessionHandler> = match &inner.handler {
            Some(factory) => factory(),
            None => Box::new(dial::DialHandler {
                authorizer: inner.authorizer.clone(),
                dialer: inner.dialer.clone(),
                dial_timeout: inner.session.dial_timeout,
            }),
        };
        let metrics = SessionMetrics::new(inner.metrics.clone(), &inner.client_key);
        let (handle, mut driver) =
            remotedialer_driver::start(session, ws, TokioTimer::new(), handler, metrics);
        tracing::info!(url = %inner.url, "connected");
        if let Some(hook) = &inner.on_connect {
            hook(&handle);
        }
        let reason = tokio::select! {
            reason = &mut driver => reason,
            _ = cancelled.changed() => {
                handle.shutdown();
                driver.await;
                return Ok(());
            }
        };
        if *cancelled.borrow() {
            return Ok(());
        }
        Err(ClientError::Session(reason))
    }

    async fn handshake(
        &self,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        ClientError,
    > {
        let inner = &self.inner;
        let url = inner.url.to_string();
        let host = inner.url.host().unwrap_or_default().to_owned();
        let secure = inner.url.scheme_str() == Some("wss");
        let port = inner
            .url
            .port_u16()
            .unwrap_or(if secure { 443 } else { 80 });
        let connect_err = |source| ClientError::Connect {
            url: url.clone(),
            source,
        };
        let proxy = match &inner.proxy {
            Some(p) => Some(p.clone()),
            None if inner.use_env_proxy => proxy::proxy_for(secure, &host, port),
            None => None,
        };
        let tcp = match proxy {
            Some(p) => proxy::connect_via(&p, host.trim_matches(['[', ']']), port).await,
            None => tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await,
        }
        .map_err(connect_err)?;
        let _ = tcp.set_nodelay(true);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Config(format!("invalid URL {url}: {e}")))?;
        for (name, value) in &inner.headers {
            request.headers_mut().append(name, value.clone());
        }
        let connector = match &inner.tls {
            Some(cfg) => WsConnector::Rustls(cfg.clone()),
            None => WsConnector::Plain,
        };
        let config = remotedialer_driver::websocket_config(inner.max_message);
        match tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            Some(config),
            Some(connector),
        )
        .await
        {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                    .unwrap_or_default();
                Err(ClientError::Refused { status, body })
            }
            Err(tungstenite::Error::Io(e)) => Err(connect_err(e)),
            Err(e) => Err(ClientError::Handshake {
                url,
                source: Box::new(e),
            }),
        }
    }
}
