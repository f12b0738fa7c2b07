//! Reaching the server through an HTTP proxy, chosen from the environment
//! like Go's `http.ProxyFromEnvironment`. The rules and the `CONNECT` texts
//! are shared with the tokio adapter (`remotedialer_driver::proxy`); this
//! module owns the socket.

use std::io;

use async_net::TcpStream;
use futures_util::{AsyncReadExt, AsyncWriteExt};
use http::Uri;
use remotedialer_driver::proxy as rules;

pub use remotedialer_driver::proxy::{bypasses, proxy_for};

/// Opens a TCP tunnel to `host:port` through an HTTP proxy with `CONNECT`.
pub async fn connect_via(proxy: &Uri, host: &str, port: u16) -> io::Result<TcpStream> {
    let (proxy_host, proxy_port) = rules::proxy_endpoint(proxy)?;
    let mut tcp = TcpStream::connect((proxy_host.as_str(), proxy_port)).await?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(rules::connect_request(proxy, host, port).as_bytes())
        .await?;
    // Read the response head byte by byte so nothing past it is consumed.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !rules::response_head_complete(&head) {
        if head.len() > rules::MAX_RESPONSE_HEAD {
            return Err(rules::response_head_too_long());
        }
        tcp.read_exact(&mut byte).await?;
        head.extend_from_slice(&byte);
    }
    rules::check_connect_response(&head)?;
    Ok(tcp)
}
