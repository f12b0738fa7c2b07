//! The client (agent): connects to a server and dials what it is asked to.

mod dial;
mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use futures_util::future::{Either, select};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use remotedialer_driver::client::{CheckedClient, ClientSettings};
use remotedialer_driver::{Backoff, Metrics, SessionHandle, SessionMetrics};
use remotedialer_proto::{Config, Role, Session, SessionIdentity};
use rustls::pki_types::ServerName;
use tungstenite::client::IntoClientRequest;

pub use dial::{
    ConnectAuthorizer, DialFuture, LocalDialer, TargetStream, dial_default, dial_error_text,
};

use crate::error::ClientError;
use crate::proxy;
use crate::runtime::{IoTimer, Signal, Spawner, timeout, until};
use crate::tls::TlsRoots;
use transport::Transport;

/// Called with each new session's handle.
pub type ConnectHook = dyn Fn(&SessionHandle) + Send + Sync;

/// Go's handshake timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Client`].
pub struct ClientBuilder {
    url: String,
    spawner: Spawner,
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
    /// `https://`, e.g. `ws://localhost:8123/connect`), spawning the task of
    /// each dialed target with `spawner`.
    pub fn new(url: impl Into<String>, spawner: Spawner) -> Self {
        ClientBuilder {
            url: url.into(),
            spawner,
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
        Ok(Client {
            inner: Arc::new(ClientInner {
                url,
                spawner: self.spawner,
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
                cancel: Signal::default(),
            }),
        })
    }
}

struct ClientInner {
    url: Uri,
    spawner: Spawner,
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
    cancel: Signal,
}

/// A remotedialer client (agent). Cheap to clone.
///
/// The session runs in the future of [`run`](Self::run) or
/// [`connect_once`](Self::connect_once), on whatever executor awaits it;
/// each dialed target gets a task from the [`Spawner`].
///
/// ```no_run
/// use remotedialer_async_std::{ClientBuilder, Spawner};
///
/// # fn main() -> Result<(), remotedialer_async_std::ClientError> {
/// let client = ClientBuilder::new("ws://localhost:8123/connect", Spawner::smol())
///     .header("X-Tunnel-ID", "foo")
///     .connect_authorizer(|proto, address| proto == "tcp" && address.starts_with("127.0.0.1:"))
///     .build()?;
/// smol::block_on(client.run()); // reconnects with backoff until client.cancel()
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

type ClientWebSocket = WebSocketStream<Transport>;

impl Client {
    /// Stops [`run`](Self::run) and ends the current session.
    pub fn cancel(&self) {
        self.inner.cancel.fire();
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_set()
    }

    /// Connects, reconnecting after every failure or lost session with
    /// exponential backoff and jitter, until [`cancel`](Self::cancel).
    pub async fn run(&self) {
        let cancel = &self.inner.cancel;
        let mut schedule = self.inner.backoff.schedule();
        while !cancel.is_set() {
            let started = Instant::now();
            if let Err(e) = self.connect_once().await {
                tracing::warn!(error = %e, "remotedialer session failed");
            }
            if cancel.is_set() {
                break;
            }
            let delay = schedule.next_delay(started.elapsed());
            tracing::info!(?delay, "reconnecting");
            if until(cancel, async_io::Timer::after(delay)).await.is_none() {
                break;
            }
        }
    }

    /// Connects once and serves the session until it ends. `Ok(())` when
    /// ended by [`cancel`](Self::cancel).
    pub async fn connect_once(&self) -> Result<(), ClientError> {
        let inner = &self.inner;
        if inner.cancel.is_set() {
            return Ok(());
        }
        // Boxed: the handshake's state (TLS, HTTP buffers) would otherwise
        // make every future that awaits a client several times larger.
        let handshake = Box::pin(self.handshake());
        let handshake = match until(&inner.cancel, timeout(HANDSHAKE_TIMEOUT, handshake)).await {
            None => return Ok(()),
            Some(None) => {
                return Err(ClientError::Connect {
                    url: inner.url.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "handshake timed out",
                    ),
                });
            }
            Some(Some(result)) => result,
        };
        let ws = handshake?;
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
        let handler = Box::new(dial::DialHandler {
            authorizer: inner.authorizer.clone(),
            dialer: inner.dialer.clone(),
            dial_timeout: inner.session.dial_timeout,
            spawner: inner.spawner.clone(),
        });
        let metrics = SessionMetrics::new(inner.metrics.clone(), &inner.client_key);
        let (handle, driver) =
            remotedialer_driver::start(session, ws, IoTimer::new(), handler, metrics);
        tracing::info!(url = %inner.url, "connected");
        if let Some(hook) = &inner.on_connect {
            hook(&handle);
        }
        let cancelled = std::pin::pin!(inner.cancel.wait());
        let reason = match select(driver, cancelled).await {
            Either::Left((reason, _)) => reason,
            Either::Right(((), driver)) => {
                handle.shutdown();
                driver.await;
                return Ok(());
            }
        };
        if inner.cancel.is_set() {
            return Ok(());
        }
        Err(ClientError::Session(reason))
    }

    async fn handshake(&self) -> Result<ClientWebSocket, ClientError> {
        let inner = &self.inner;
        let url = inner.url.to_string();
        let host = inner.url.host().unwrap_or_default().to_owned();
        let bare_host = host.trim_matches(['[', ']']);
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
            Some(p) => proxy::connect_via(&p, bare_host, port).await,
            None => async_net::TcpStream::connect((bare_host, port)).await,
        }
        .map_err(connect_err)?;
        let _ = tcp.set_nodelay(true);
        let transport = match &inner.tls {
            Some(cfg) => {
                let name = ServerName::try_from(bare_host.to_owned())
                    .map_err(|e| ClientError::Config(format!("invalid TLS name {host}: {e}")))?;
                let tls = futures_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(connect_err)?;
                Transport::Tls(Box::new(tls))
            }
            None => Transport::Plain(tcp),
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Config(format!("invalid URL {url}: {e}")))?;
        for (name, value) in &inner.headers {
            request.headers_mut().append(name, value.clone());
        }
        let config = remotedialer_driver::websocket_config(inner.max_message);
        match async_tungstenite::client_async_with_config(request, transport, Some(config)).await {
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
