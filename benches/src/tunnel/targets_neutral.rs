//! The plain TCP target servers again, on async-net sockets and the
//! futures-io traits, for the async-std and smol backends: the targets then
//! run on the runtime under test, as the tokio backend's run on tokio, so
//! neither backend pays for a second runtime's threads and cross-runtime
//! wake-ups. Same protocol as [`super::targets`].

use std::io;
use std::net::SocketAddr;

use async_net::{TcpListener, TcpStream};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::Runtime;
use super::targets::PATTERN;

/// Chunk the targets read and write in (as the tokio targets).
const CHUNK: usize = PATTERN.len();

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

async fn read_len(tcp: &mut TcpStream) -> io::Result<u64> {
    let mut len = [0u8; 8];
    tcp.read_exact(&mut len).await?;
    Ok(u64::from_le_bytes(len))
}

/// Writes the requested number of pattern bytes, then closes.
pub async fn source(rt: &'static dyn Runtime) -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(rt, listener, |mut tcp| async move {
        let len = read_len(&mut tcp).await?;
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            tcp.write_all(PATTERN.get(..n).unwrap_or_default()).await?;
            left -= n as u64;
        }
        tcp.close().await
    });
    Ok(addr)
}

/// Reads the announced number of bytes, discards them and answers one byte.
pub async fn sink(rt: &'static dyn Runtime) -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(rt, listener, |mut tcp| async move {
        let len = read_len(&mut tcp).await?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < len {
            match tcp.read(&mut buf).await? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "sink: short upload",
                    ));
                }
                n => got += n as u64,
            }
        }
        tcp.write_all(&[1]).await?;
        tcp.close().await
    });
    Ok(addr)
}

/// Echoes until the peer closes.
pub async fn echo(rt: &'static dyn Runtime) -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(rt, listener, |mut tcp| async move {
        let mut buf = [0u8; 512];
        loop {
            let n = match tcp.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                // The tunnel may end a connection with a reset; that is its close.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => return Err(e),
            };
            tcp.write_all(buf.get(..n).unwrap_or_default()).await?;
        }
        let _ = tcp.close().await;
        Ok(())
    });
    Ok(addr)
}
