//! `--forward LISTEN=CLIENT:PROTO/ADDRESS`: a plain TCP port on the server
//! whose connections are dialed through a client.

use remotedialer_tokio::Server;
use tokio::net::TcpListener;

use super::parse::ForwardSpec;
use super::serve::human_bytes;

/// Accepts on `listener` for ever; each connection is piped to
/// `spec.proto/spec.address` dialed through client `spec.client`.
///
/// remotedialer has no half-close: once the local side stops sending, the
/// tunneled connection closes in both directions.
pub async fn run(server: Server, spec: ForwardSpec, listener: TcpListener) {
    loop {
        let (mut tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "forward: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let server = server.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            let target = format!("{}/{} via {}", spec.proto, spec.address, spec.client);
            let mut stream = match server.dial(&spec.client, &spec.proto, &spec.address).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, "forward to {target}: {e}");
                    return;
                }
            };
            tracing::info!(%peer, "forward: connected to {target}");
            match tokio::io::copy_bidirectional(&mut tcp, &mut stream).await {
                Ok((up, down)) => tracing::info!(
                    %peer,
                    "forward to {target} closed: sent {}, received {}",
                    human_bytes(up),
                    human_bytes(down)
                ),
                // Once one side closes, remotedialer closes both directions,
                // so the other copy usually ends with "closed locally".
                Err(e) => tracing::info!(%peer, "forward to {target} closed ({e})"),
            }
        });
    }
}
