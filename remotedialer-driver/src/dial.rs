//! The client's side of a connect request, shared by both adapters: refuse
//! it, or dial and pipe, and the texts sent back when a dial does not
//! complete, worded as Go's `net.Dial` errors so that callers of a Go server
//! see what they expect. Adapters supply only spawning, the timer and the
//! socket type.

use std::io;

pub use remotedialer_proto::CONNECT_NOT_ALLOWED;

/// Go's text for a failed dial, e.g. `dial tcp 127.0.0.1:1: connect:
/// connection refused`.
pub fn dial_error_text(proto: &str, address: &str, err: &io::Error) -> String {
    let detail = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        io::ErrorKind::TimedOut => "i/o timeout".to_owned(),
        io::ErrorKind::HostUnreachable => "connect: no route to host".to_owned(),
        io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_owned(),
        _ => {
            let text = err.to_string();
            match text.find(" (os error") {
                Some(i) => text.get(..i).unwrap_or(&text).to_lowercase(),
                None => text,
            }
        }
    };
    format!("dial {proto} {address}: {detail}")
}

/// Go's text for a dial that did not finish within the dial timeout.
pub fn dial_timeout_text(proto: &str, address: &str) -> String {
    format!("dial {proto} {address}: i/o timeout")
}

/// Passes an allowed connect request on; refuses a denied one on the wire
/// (`Error "connect not allowed"`, only that connection) and returns `None`.
pub fn admit_connect(
    request: crate::ConnectRequest,
    allowed: impl FnOnce(&str, &str) -> bool,
) -> Option<crate::ConnectRequest> {
    if allowed(&request.proto, &request.address) {
        return Some(request);
    }
    tracing::info!(proto = %request.proto, address = %request.address, "connect refused by authorizer");
    request.stream.reset(CONNECT_NOT_ALLOWED);
    None
}

/// Finishes an admitted connect request: `dial` opens the target within the
/// dial timeout (`None`: the time ran out). A dialed target is piped to the
/// tunneled connection; a failure closes that connection with Go's text.
pub async fn serve_connect<T, F>(request: crate::ConnectRequest, dial: impl FnOnce(&str, &str) -> F)
where
    T: crate::TargetIo,
    F: std::future::Future<Output = Option<io::Result<T>>>,
{
    let crate::ConnectRequest {
        proto,
        address,
        stream,
    } = request;
    match dial(&proto, &address).await {
        Some(Ok(target)) => crate::Pipe::new(stream, target).await,
        Some(Err(e)) => {
            tracing::debug!(%proto, %address, error = %e, "dial failed");
            stream.reset(&dial_error_text(&proto, &address, &e));
        }
        None => stream.reset(&dial_timeout_text(&proto, &address)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_dial_errors() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            dial_error_text("tcp", "127.0.0.1:1", &refused),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
        let os = io::Error::from_raw_os_error(2);
        assert_eq!(
            dial_error_text("unix", "/nowhere", &os),
            "dial unix /nowhere: no such file or directory"
        );
        assert_eq!(
            dial_timeout_text("tcp", "10.0.0.1:80"),
            "dial tcp 10.0.0.1:80: i/o timeout"
        );
    }
}
