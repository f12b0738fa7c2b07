//! A scripted raw-WebSocket peer: sends the Go side's messages and checks
//! what the Rust side sends back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, StreamExt};
use remotedialer_tokio::proto::{Body, ConnId, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message as Ws;

use super::transcript::{header_tail, tail};

/// Bound on every wait; a healthy run needs a fraction of it.
pub const WAIT: Duration = Duration::from_secs(30);

/// The connection id of barrier probes (see [`Peer::barrier`]).
const PROBE_CONN: i64 = 999_998;

enum Received {
    Frame(Bytes),
    Ping,
    Pong,
    Closed(String),
}

/// A control message (not Data) from the Rust side.
pub struct Got {
    pub msg: Message,
    pub tail: Vec<u8>,
    /// Data bytes received on its connection before it.
    pub data_before: u64,
}

/// What a control message from the Rust side must be.
#[derive(Debug, Clone)]
pub enum Check {
    /// Byte-identical after the message id.
    Tail(Vec<u8>),
    /// An Error on `conn` whose text starts and ends so.
    ErrorText {
        conn: i64,
        prefix: String,
        suffix: String,
    },
}

/// One expected control message.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The transcript entry it stands for.
    pub seq: u64,
    pub check: Check,
    /// Data bytes that must have arrived on the connection before it.
    pub data_before: Option<u64>,
}

pub fn describe(msg: &Message) -> String {
    let text =
        |b: &Bytes| String::from_utf8_lossy(b.get(..b.len().min(80)).unwrap_or(b)).into_owned();
    let what = match &msg.body {
        Body::Data(p) => format!("Data {} bytes", p.len()),
        Body::Connect { proto, address } => format!("Connect {}/{}", text(proto), text(address)),
        Body::Error(t) => format!("Error {:?}", text(t)),
        Body::AddClient(t) => format!("AddClient {:?}", text(t)),
        Body::RemoveClient(t) => format!("RemoveClient {:?}", text(t)),
        Body::Pause => "Pause".into(),
        Body::Resume => "Resume".into(),
        Body::SyncConnections(ids) => {
            format!(
                "SyncConnections {:?}",
                ids.iter().map(|c| c.0).collect::<Vec<_>>()
            )
        }
        Body::Unknown { code, .. } => format!("unknown type {code}"),
    };
    format!("{what} on connection {}", msg.conn_id.0)
}

type WsSink = Pin<Box<dyn Sink<Ws, Error = tungstenite::Error> + Send>>;

/// The Go side of the session.
pub struct Peer {
    sink: Option<WsSink>,
    rx: mpsc::UnboundedReceiver<Received>,
    reader: JoinHandle<()>,
    /// Everything the Rust side should send on each connection, in order.
    expected_streams: HashMap<i64, Vec<u8>>,
    /// The Go header (after the id) of Data on each connection.
    data_headers: HashMap<i64, Vec<u8>>,
    /// Data bytes received per connection.
    pub data: HashMap<i64, u64>,
    controls: VecDeque<Got>,
    pub pings: usize,
    pub pongs: usize,
    /// SyncConnections received (tail, ids), when they are periodic (the
    /// Rust side is a client on fast timers).
    pub syncs: Vec<(Vec<u8>, Vec<i64>)>,
    periodic_sync: bool,
    /// Pause/Resume from the Rust side are honoured, not checked (they are
    /// not in the transcript, but a receiver may send them any time).
    tolerate_flow_control: bool,
    /// Connections the Rust side has paused.
    rust_paused: HashSet<i64>,
    /// Connections opened so far (SyncConnections may only list these).
    pub opened: HashSet<i64>,
    last_id: Option<i64>,
    closed: Option<String>,
    next_probe_id: i64,
}

impl Peer {
    pub fn new<S>(ws: WebSocketStream<S>, periodic_sync: bool) -> Peer
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let received = match item {
                    Ok(Ws::Binary(b)) => Received::Frame(b),
                    Ok(Ws::Ping(_)) => Received::Ping,
                    Ok(Ws::Pong(_)) => Received::Pong,
                    Ok(Ws::Close(c)) => Received::Closed(format!("close frame {c:?}")),
                    Ok(other) => {
                        Received::Closed(format!("unexpected websocket message {other:?}"))
                    }
                    Err(e) => Received::Closed(e.to_string()),
                };
                let end = matches!(received, Received::Closed(_));
                if tx.send(received).is_err() || end {
                    return;
                }
            }
            let _ = tx.send(Received::Closed("websocket ended".into()));
        });
        Peer {
            sink: Some(Box::pin(sink)),
            rx,
            reader,
            expected_streams: HashMap::new(),
            data_headers: HashMap::new(),
            data: HashMap::new(),
            controls: VecDeque::new(),
            pings: 0,
            pongs: 0,
            syncs: Vec::new(),
            periodic_sync,
            tolerate_flow_control: periodic_sync,
            rust_paused: HashSet::new(),
            opened: HashSet::new(),
            last_id: None,
            closed: None,
            next_probe_id: 1 << 40,
        }
    }

    /// What the Rust side must send on `conn`, and the Go header its Data
    /// messages carry (after the id).
    pub fn expect_stream(&mut self, conn: i64, content: Vec<u8>, header: Option<Vec<u8>>) {
        self.expected_streams.insert(conn, content);
        if let Some(h) = header {
            self.data_headers.insert(conn, h);
        }
    }

    fn absorb(&mut self, item: Received) {
        let bytes = match item {
            Received::Ping => {
                self.pings += 1;
                return;
            }
            Received::Pong => {
                self.pongs += 1;
                return;
            }
            Received::Closed(why) => {
                self.closed = Some(why);
                return;
            }
            Received::Frame(b) => b,
        };
        let msg = Message::decode(bytes.clone()).unwrap_or_else(|e| {
            panic!("the Rust side sent an undecodable message {bytes:02x?}: {e}")
        });
        if let Some(last) = self.last_id {
            assert!(
                msg.id > last,
                "message ids must increase (Go: +1 per message): {} after {last}",
                msg.id
            );
        }
        self.last_id = Some(msg.id);
        let conn = msg.conn_id.0;
        match &msg.body {
            Body::Data(payload) => {
                if let Some(h) = self.data_headers.get(&conn) {
                    assert_eq!(
                        &header_tail(&bytes),
                        h,
                        "Data header on connection {conn} differs from Go's"
                    );
                }
                let offset = self.data.get(&conn).copied().unwrap_or(0);
                let expected = self.expected_streams.get(&conn).unwrap_or_else(|| {
                    panic!("Data on connection {conn}, which carries none in the transcript")
                });
                let end = offset as usize + payload.len();
                let want = expected.get(offset as usize..end).unwrap_or_else(|| {
                    panic!(
                        "connection {conn}: {} bytes past the {} the transcript carries",
                        end - expected.len().min(end),
                        expected.len()
                    )
                });
                assert!(
                    want == payload.as_ref(),
                    "connection {conn}: Data at offset {offset} differs from what was sent"
                );
                *self.data.entry(conn).or_default() += payload.len() as u64;
            }
            Body::SyncConnections(ids) if self.periodic_sync => {
                let ids: Vec<i64> = ids.iter().map(|c| c.0).collect();
                assert!(
                    ids.windows(2).all(|w| w[0] < w[1]),
                    "SyncConnections ids not ascending: {ids:?}"
                );
                assert!(
                    ids.iter().all(|id| self.opened.contains(id)),
                    "SyncConnections lists {ids:?}, but only {:?} were opened",
                    self.opened
                );
                self.syncs.push((tail(&bytes).to_vec(), ids));
            }
            Body::Pause if self.tolerate_flow_control => {
                self.rust_paused.insert(conn);
            }
            Body::Resume if self.tolerate_flow_control => {
                self.rust_paused.remove(&conn);
            }
            _ => {
                let data_before = self.data.get(&conn).copied().unwrap_or(0);
                self.controls.push_back(Got {
                    tail: tail(&bytes).to_vec(),
                    msg,
                    data_before,
                });
            }
        }
    }

    /// Takes in everything already received, without waiting.
    fn drain(&mut self) {
        while let Ok(item) = self.rx.try_recv() {
            self.absorb(item);
        }
    }

    /// Waits (bounded) until `done` holds, taking in what arrives.
    pub async fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Peer) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.drain();
            if done(self) {
                return;
            }
            if let Some(why) = &self.closed {
                panic!("the websocket ended ({why}) while waiting for {what}");
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(item)) => self.absorb(item),
                Ok(None) => panic!("the reader stopped while waiting for {what}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; data so far {:?}, pending {:?}",
                    self.data,
                    self.controls
                        .iter()
                        .map(|g| describe(&g.msg))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for the Rust side's next control message and checks it.
    pub async fn expect(&mut self, exp: &Expect) {
        self.wait_until(&format!("the reply to seq {}", exp.seq), |p| {
            !p.controls.is_empty()
        })
        .await;
        let got = self.controls.pop_front().expect("a control message");
        let ok = match &exp.check {
            Check::Tail(t) => &got.tail == t,
            Check::ErrorText {
                conn,
                prefix,
                suffix,
            } => match &got.msg.body {
                Body::Error(text) => {
                    let text = String::from_utf8_lossy(text);
                    got.msg.conn_id == ConnId(*conn)
                        && text.starts_with(prefix.as_str())
                        && text.ends_with(suffix.as_str())
                }
                _ => false,
            },
        };
        let wanted = match &exp.check {
            Check::Tail(t) => format!("tail {t:02x?}"),
            other => format!("{other:?}"),
        };
        assert!(
            ok,
            "seq {}: expected {wanted}, the Rust side sent {} (tail {:02x?})",
            exp.seq,
            describe(&got.msg),
            got.tail
        );
        if let Some(n) = exp.data_before {
            assert_eq!(
                got.data_before,
                n,
                "seq {}: {} came after {} data bytes, the transcript has {n}",
                exp.seq,
                describe(&got.msg),
                got.data_before
            );
        }
    }

    /// Sends one binary message (waiting first if the Rust side paused
    /// its connection and it is Data).
    pub async fn send(&mut self, bytes: Bytes) {
        let msg = Message::decode(bytes.clone()).expect("script messages decode");
        let conn = msg.conn_id.0;
        if matches!(msg.body, Body::Data(_)) && self.rust_paused.contains(&conn) {
            self.wait_until("the Rust side's Resume", |p| !p.rust_paused.contains(&conn))
                .await;
        }
        if matches!(msg.body, Body::Connect { .. }) {
            self.opened.insert(conn);
        }
        self.sink_mut()
            .send(Ws::Binary(bytes))
            .await
            .expect("send to the Rust side");
    }

    pub async fn ping(&mut self) {
        self.sink_mut()
            .send(Ws::Ping(Bytes::new()))
            .await
            .expect("ping the Rust side");
    }

    fn sink_mut(&mut self) -> &mut WsSink {
        self.sink.as_mut().expect("the connection was dropped")
    }

    /// Sends Data for a connection nobody has and waits for the "connection
    /// not found" Error both Go roles answer: anything the Rust side sent
    /// before that answer has arrived by then, so a stray reply shows up as
    /// a mismatch here.
    pub async fn barrier(&mut self) {
        let id = self.next_probe_id;
        self.next_probe_id += 1;
        let probe = Message::data(id, ConnId(PROBE_CONN), Bytes::from_static(b"probe"));
        self.send(probe.to_bytes()).await;
        self.expect(&Expect {
            seq: u64::MAX,
            check: Check::ErrorText {
                conn: PROBE_CONN,
                prefix: "connection not found ".into(),
                suffix: format!("/{PROBE_CONN}"),
            },
            data_before: None,
        })
        .await;
    }

    /// Drops the TCP connection without a close frame, as the Go client did.
    pub fn drop_connection(&mut self) {
        self.sink = None;
        self.reader.abort();
    }

    /// No control message from the Rust side is left unexplained.
    pub fn assert_quiet(&mut self) {
        self.drain();
        let left: Vec<String> = self.controls.iter().map(|g| describe(&g.msg)).collect();
        assert!(
            left.is_empty(),
            "unexpected messages from the Rust side: {left:?}"
        );
    }

    pub fn data_on(&self, conn: i64) -> u64 {
        self.data.get(&conn).copied().unwrap_or(0)
    }
}
