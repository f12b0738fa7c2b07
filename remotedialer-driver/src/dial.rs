//! The texts a client sends back when it does not complete a dial, worded as
//! Go's `net.Dial` errors so that callers of a Go server see what they
//! expect.

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
