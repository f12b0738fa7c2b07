//! `--listen` addresses and binding with errors a newcomer can act on.

use std::io;

use tokio::net::TcpListener;

use super::parse::normalize_listen as normalize;

/// Binds `addr` (`:PORT` or `HOST:PORT`); `flag` names the option that chose
/// it, so the error can say what to change.
pub async fn bind(addr: &str, flag: &str) -> Result<TcpListener, String> {
    let normalized = normalize(addr);
    TcpListener::bind(&normalized)
        .await
        .map_err(|e| bind_error(addr, &normalized, flag, &e))
}

fn bind_error(addr: &str, normalized: &str, flag: &str, e: &io::Error) -> String {
    let port = normalized.rsplit(':').next().unwrap_or(normalized);
    match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "cannot listen on {normalized}: port {port} is already in use \
             (perhaps by an earlier run of this example). Stop that program, \
             or choose another address with {flag}, e.g. {flag} 127.0.0.1:0 \
             for any free port"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {normalized}: permission denied (ports below \
             1024 need privileges). Choose another port with {flag}"
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {normalized}: that address is not on this \
             machine. Use {flag} :{port} for every interface or {flag} \
             127.0.0.1:{port} for loopback only"
        ),
        _ => format!("cannot listen on {addr} ({flag}): {e}"),
    }
}
