//! The example client (agent): options, the connect authorizer built from
//! `--allow` patterns, and errors explained.

use std::path::PathBuf;
use std::sync::Arc;

use remotedialer_tokio::proto::Config;
use remotedialer_tokio::tls::TlsRoots;
use remotedialer_tokio::{Client, ClientBuilder, ClientError};

use super::parse::{glob_match, parse_header};

/// Which dials the server may ask for.
#[derive(Debug, Clone)]
pub enum Allow {
    /// Everything (Go's example).
    All,
    /// `proto/address` globs, e.g. `tcp/127.0.0.1:*`.
    Patterns(Vec<String>),
}

/// Why the client refuses to start without `--allow`.
pub const MISSING_ALLOW: &str = "refusing to start without --allow: the server can ask this client \
to open a connection to any address this machine can reach, so say which ones it may. \
For example --allow 'tcp/127.0.0.1:*' (any local port) or --allow 'tcp/127.0.0.1:8125', \
repeatable; or --allow-all to allow everything, as Go's example client does";

impl Allow {
    /// From the `--allow` and `--allow-all` flags.
    pub fn from_flags(patterns: Vec<String>, all: bool) -> Result<Allow, String> {
        match (all, patterns.is_empty()) {
            (true, _) => Ok(Allow::All),
            (false, false) => Ok(Allow::Patterns(patterns)),
            (false, true) => Err(MISSING_ALLOW.to_owned()),
        }
    }

    /// Whether the server may dial `proto/address`.
    pub fn permits(&self, proto: &str, address: &str) -> bool {
        match self {
            Allow::All => true,
            Allow::Patterns(p) => {
                let target = format!("{proto}/{address}");
                p.iter().any(|pattern| glob_match(pattern, &target))
            }
        }
    }
}

/// What the client example needs to connect.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// e.g. `ws://localhost:8123/connect`.
    pub connect: String,
    /// Sent as `X-Tunnel-ID`.
    pub id: String,
    /// `--header K:V` values.
    pub headers: Vec<String>,
    /// What the server may dial.
    pub allow: Allow,
    /// Extra CA (PEM) to trust for `wss://`.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate checks (tests only).
    pub insecure: bool,
    /// Session timers and buffers.
    pub session: Config,
}

/// Builds the client from options.
pub fn build(opts: &AgentOptions) -> Result<Client, String> {
    let allow = Arc::new(opts.allow.clone());
    let mut builder = ClientBuilder::new(&opts.connect)
        .header("X-Tunnel-ID", &opts.id)
        .session_config(opts.session.clone())
        .connect_authorizer(move |proto, address| {
            let ok = allow.permits(proto, address);
            if !ok {
                tracing::warn!("refused a dial to {proto}/{address}: not matched by --allow");
            }
            ok
        });
    for spec in &opts.headers {
        let (name, value) = parse_header(spec)?;
        builder = builder.header(&name, &value);
    }
    if opts.insecure {
        builder = builder.tls_roots(TlsRoots::InsecureSkipVerify);
    } else if let Some(path) = &opts.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
        builder = builder.tls_roots(TlsRoots::WebPkiAndCa(pem));
    }
    builder.build().map_err(|e| e.to_string())
}

/// The error, and what to try.
pub fn explain(err: &ClientError, url: &str) -> String {
    match err {
        ClientError::Connect { source, .. } => format!(
            "cannot reach the server at {url}: {source}. Is it running? Start it with \
             `cargo run -p remotedialer-tokio --example server`, or point --connect at it. \
             Retrying with backoff"
        ),
        ClientError::Refused { status, body } => {
            let hint = match status {
                401 => {
                    "the server's authorizer rejected this client; the example server \
                        accepts any non-empty --id"
                }
                404 => "wrong path? the example server's tunnel is at /connect",
                _ => "check --connect and the server's log",
            };
            let body = if body.is_empty() {
                String::new()
            } else {
                format!(": {body}")
            };
            format!(
                "the server refused the tunnel with HTTP {status}{body}. Hint: {hint}. \
                 Retrying with backoff"
            )
        }
        ClientError::Handshake { .. } => format!(
            "{err}. Is {url} a remotedialer server (ws:// for plain, wss:// for TLS)? Retrying with backoff"
        ),
        other => format!("{other}. Retrying with backoff"),
    }
}

/// Connects and serves until `stop` resolves; reconnects with backoff.
/// The first failure is explained on stderr; later ones are logged.
pub async fn run_until(client: Client, url: String, stop: impl std::future::Future<Output = ()>) {
    let worker = {
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.connect_once().await {
                eprintln!("client: {}", explain(&e, &url));
            }
            client.run().await;
        })
    };
    stop.await;
    client.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), worker).await;
}
