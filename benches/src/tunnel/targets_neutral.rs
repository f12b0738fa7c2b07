//! The plain TCP target servers on async-net sockets, for the async-std and
//! smol backends: the targets then run on the runtime under test, as the
//! tokio backend's run on tokio, so neither backend pays for a second
//! runtime's threads and cross-runtime wake-ups. The connection handlers
//! are [`super::targets`]' own.

use std::io;
use std::net::SocketAddr;

use super::harness::{Compat, Runtime};
use super::targets;
use async_net::{TcpListener, TcpStream};

/// Accepts until the runtime stops; a failed accept (e.g. out of file
/// descriptors) is logged and the loop goes on with the next one.
fn serve<F, Fut>(rt: &'static dyn Runtime, listener: TcpListener, handler: F)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = io::Result<()>> + Send + 'static,
{
    rt.spawn(Box::pin(async move {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    let conn = handler(tcp);
                    rt.spawn(Box::pin(async move {
                        if let Err(e) = conn.await {
                            eprintln!("tunnel-bench: target connection failed: {e}");
                        }
                    }));
                }
                Err(e) => {
                    eprintln!("tunnel-bench: accept failed: {e}");
                    rt.sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }));
}

async fn listen() -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Writes the requested number of pattern bytes, then closes.
pub async fn source(rt: &'static dyn Runtime) -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(rt, listener, |tcp| targets::source_conn(Compat(tcp)));
    Ok(addr)
}

/// Reads the announced number of bytes, discards them and answers one byte.
pub async fn sink(rt: &'static dyn Runtime) -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(rt, listener, |tcp| targets::sink_conn(Compat(tcp)));
    Ok(addr)
}

/// Echoes until the peer closes.
pub async fn echo(rt: &'static dyn Runtime) -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(rt, listener, |tcp| targets::echo_conn(Compat(tcp)));
    Ok(addr)
}
