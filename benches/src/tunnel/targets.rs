//! The plain TCP target servers (tokio, 127.0.0.1), the connection handlers
//! every backend's targets share, and the echo child process of B4.
//!
//! Source and sink read an 8-byte little-endian length first, so one server
//! serves every size and the dialer knows when the transfer is complete.

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Chunk the targets read and write in.
const CHUNK: usize = 64 << 10;

/// What the source sends and the uploader writes: one buffer shared by every
/// connection, so B2's 64 sources do not each bring 64 KiB of cache misses.
pub static PATTERN: [u8; CHUNK] = pattern();

const fn pattern() -> [u8; CHUNK] {
    let mut p = [0u8; CHUNK];
    let mut i = 0;
    while i < CHUNK {
        p[i] = (i % 251) as u8;
        i += 1;
    }
    p
}

/// Accept queue length: B4 opens connections 256 at a time, and a queue
/// that overflows costs each dropped SYN a 1 s retransmission.
const BACKLOG: u32 = 4096;

async fn listen() -> io::Result<(TcpListener, SocketAddr)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let listener = socket.listen(BACKLOG)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Accepts until the runtime stops; a failed accept (e.g. out of file
/// descriptors) is logged and the loop goes on with the next one.
fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = io::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    let conn = handler(tcp);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            eprintln!("tunnel-bench: target connection failed: {e}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("tunnel-bench: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}

/// Writes the requested number of pattern bytes, then closes.
pub async fn source() -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(listener, source_conn);
    Ok(addr)
}

/// Reads the announced number of bytes, discards them and answers one byte.
pub async fn sink() -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(listener, sink_conn);
    Ok(addr)
}

/// Echoes until the peer closes.
pub async fn echo() -> io::Result<SocketAddr> {
    let (listener, addr) = listen().await?;
    serve(listener, echo_conn);
    Ok(addr)
}

// The connection handlers, on tokio's I/O traits (which need no tokio
// runtime), so that every backend's targets run the same code.

/// One source connection: the length, then that many pattern bytes.
pub async fn source_conn<S: AsyncRead + AsyncWrite + Unpin>(mut tcp: S) -> io::Result<()> {
    let len = tcp.read_u64_le().await?;
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        tcp.write_all(PATTERN.get(..n).unwrap_or_default()).await?;
        left -= n as u64;
    }
    tcp.shutdown().await
}

/// One sink connection: the length, that many bytes swallowed, one byte back.
pub async fn sink_conn<S: AsyncRead + AsyncWrite + Unpin>(mut tcp: S) -> io::Result<()> {
    let len = tcp.read_u64_le().await?;
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
    tcp.shutdown().await
}

/// One echo connection, until the peer closes.
pub async fn echo_conn<S: AsyncRead + AsyncWrite + Unpin>(mut tcp: S) -> io::Result<()> {
    // A small buffer: B4's child holds 10000 of these.
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
    let _ = tcp.shutdown().await;
    Ok(())
}

/// The hidden `--echo-child` mode: an echo server in its own process,
/// printing its port on stdout, ending when stdin closes (so it never
/// outlives the benchmark).
pub fn echo_child_main() -> io::Result<()> {
    super::measure::raise_nofile(u64::MAX)?;
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while let Ok(n) = io::stdin().read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let addr = echo().await?;
        println!("{}", addr.port());
        std::future::pending::<io::Result<()>>().await
    })
}

/// The echo child process, killed when dropped.
#[derive(Debug)]
pub struct EchoChild {
    child: Child,
    _stdin: Option<ChildStdin>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl EchoChild {
    /// Starts this binary with `--echo-child` and reads the port it prints.
    pub fn spawn() -> io::Result<EchoChild> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("--echo-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let port = child
            .stdout
            .take()
            .map(|out| {
                let mut line = String::new();
                BufReader::new(out).read_line(&mut line).map(|_| line)
            })
            .transpose()?
            .and_then(|line| line.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("echo child did not report its port"));
        };
        Ok(EchoChild {
            child,
            _stdin: stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

impl Drop for EchoChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
