//! Real local targets for our client to dial in the replay.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One connection accepted by [`EchoServer`].
#[derive(Default)]
pub struct EchoConn {
    pub received: AtomicU64,
    pub closed: AtomicBool,
}

/// Echoes every connection; reads never wait for writes, so the client's
/// writes to it always complete (a paused tunnel backs up its other
/// direction only).
pub struct EchoServer {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<EchoConn>>>>,
}

impl EchoServer {
    pub async fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<EchoConn>>>> = Arc::default();
        let list = conns.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = Arc::new(EchoConn::default());
                list.lock().unwrap().push(conn.clone());
                let (mut r, mut w) = tcp.into_split();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        conn.received.fetch_add(n as u64, Ordering::SeqCst);
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    conn.closed.store(true, Ordering::SeqCst);
                });
                tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if w.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = w.shutdown().await;
                });
            }
        });
        EchoServer { addr, conns }
    }

    pub fn conn(&self, i: usize) -> Option<Arc<EchoConn>> {
        self.conns.lock().unwrap().get(i).cloned()
    }
}

/// Sends `content` to each connection, then closes it. After the first
/// `split` bytes it waits for `gate`, so that the connection is still open
/// when the Go side's Pause arrives (as it was in the Go run, whose reader
/// was slow).
pub async fn source_server(content: Vec<u8>, split: usize, gate: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let content = Arc::new(content);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let content = content.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let (first, rest) = content.split_at(split.min(content.len()));
                if tcp.write_all(first).await.is_err() {
                    return;
                }
                gate.notified().await;
                if tcp.write_all(rest).await.is_ok() {
                    let _ = tcp.shutdown().await;
                    let mut sink = [0u8; 64];
                    let _ = tcp.read(&mut sink).await;
                }
            });
        }
    });
    addr
}

/// A loopback address where nothing listens.
pub async fn refused_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
