//! The errors both adapters report: dialing through a server, and running a
//! client.

use remotedialer_proto::OpenError;

/// Why a dial through the tunnel failed before a stream existed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// No session (local or through a peer) reaches this client.
    #[error("failed to find Session for client {0}")]
    NoSession(String),
    /// The session refused to open the connection.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
}

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
