//! The example tunnel server, with the flags of Go's example server.
//!
//! ```text
//! cargo run -p remotedialer-tokio --example server -- --listen :8123
//! ```
//!
//! Routes: `/connect` (agents connect here, client key = `X-Tunnel-ID`),
//! `/client/{id}/{scheme}/{host}/{path...}` (an HTTP request through agent
//! `id`, `?timeout=` seconds, default 15) and `/metrics` (Prometheus).
//! `--forward LISTEN=CLIENT:PROTO/ADDRESS` opens a plain TCP port whose
//! connections are dialed through an agent.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use common::parse::{ForwardSpec, PeerSpec, parse_peers};

#[derive(Parser, Debug)]
#[command(about = "remotedialer example server: agents connect to /connect; \
                   /client/{id}/http/{host}/{path} fetches through agent {id}")]
struct Args {
    /// Listen address: `:PORT` (every interface, as Go) or `HOST:PORT`.
    #[arg(long, default_value = ":8123")]
    listen: String,
    /// This server's peer id (peering with other servers).
    #[arg(long, default_value = "")]
    id: String,
    /// This server's peer token.
    #[arg(long, default_value = "")]
    token: String,
    /// Peers, `id:token:url,...` (e.g. `b:secret:ws://10.0.0.2:8123/connect`).
    #[arg(long, default_value = "")]
    peers: String,
    /// Debug logging (set REMOTEDIALER_TRACE_DATA=true to log every message).
    #[arg(long)]
    debug: bool,
    /// `LISTEN=CLIENT:PROTO/ADDRESS`, e.g. `127.0.0.1:2222=foo:tcp/127.0.0.1:22`
    /// (repeatable).
    #[arg(long, value_name = "LISTEN=CLIENT:PROTO/ADDRESS")]
    forward: Vec<ForwardSpec>,
    /// PEM certificate chain: serve wss:// and https:// (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_tracing(args.debug);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let peers = parse_peers(&args.peers)?;
    if !peers.is_empty() && (args.id.is_empty() || args.token.is_empty()) {
        return Err(
            "--peers needs this server's own --id and --token: peers authenticate each other \
             with them"
                .into(),
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            remotedialer_tokio::tls::server_config_from_files(cert, key)
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    let app = common::tunnel::TunnelServer::default();
    let listener = common::listen::bind(&args.listen, "--listen").await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let host = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("listening on {addr}; agents connect to {scheme}://{host}/connect");
    setup_peers(&app.server, &args.id, &args.token, &peers)?;

    for spec in args.forward {
        let listener = common::listen::bind(&spec.listen, "--forward").await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        println!(
            "forwarding {local} to {}/{} through client {}",
            spec.proto, spec.address, spec.client
        );
        tokio::spawn(common::forward::run(app.server.clone(), spec, listener));
    }

    tokio::spawn(common::serve::serve(listener, tls, app.router()));
    common::ctrl_c().await;
    tracing::info!("shutting down");
    app.server.shutdown().await;
    Ok(())
}

/// Go's `PeerID`/`PeerToken` and `AddPeer`: this server links to each peer
/// (presenting its own id and token) and accepts each peer's link (which
/// presents the peer's token).
fn setup_peers(
    server: &remotedialer_tokio::Server,
    id: &str,
    token: &str,
    peers: &[PeerSpec],
) -> Result<(), String> {
    if !id.is_empty() && !token.is_empty() {
        server
            .set_peer_identity(id, token)
            .map_err(|e| e.to_string())?;
    }
    for peer in peers {
        server
            .add_peer(&peer.url, &peer.id, &peer.token)
            .map_err(|e| format!("--peers {}: {e}", peer.id))?;
        println!("peering with {} at {}", peer.id, peer.url);
    }
    Ok(())
}
