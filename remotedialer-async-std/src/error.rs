//! Errors of the async-std/smol adapter.

pub use remotedialer_driver::DialError;

/// Why a client session could not be established or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL or a header is not valid.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// TCP, proxy or TLS failure reaching the server.
    #[error("cannot reach {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered the upgrade with an HTTP error.
    #[error("server refused the websocket upgrade: HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body (e.g. `failed authentication`).
        body: String,
    },
    /// The WebSocket handshake failed otherwise.
    #[error("websocket handshake with {url} failed: {source}")]
    Handshake {
        /// The server URL.
        url: String,
        /// The underlying error.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// The established session ended.
    #[error("session ended: {0}")]
    Session(#[from] remotedialer_proto::SessionError),
}
