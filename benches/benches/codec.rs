//! Encoding and decoding single remotedialer messages.
//!
//! Decoding is zero-copy (payloads are slices of the received buffer), so its
//! cost is the header alone; encoding copies the payload once into a reused
//! buffer.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use remotedialer_benches::payload;
use remotedialer_proto::frame::{Body, SyncIds};
use remotedialer_proto::{ConnId, Message};

const CONN: ConnId = ConnId(1_234);
const MSG_ID: i64 = 987_654_321;

fn data_messages(c: &mut Criterion) {
    let sizes: [(usize, &str); 4] = [
        (0, "0B"),
        (64, "64B"),
        (32 << 10, "32KiB"),
        (1 << 20, "1MiB"),
    ];
    let mut group = c.benchmark_group("codec/data");
    for (size, name) in sizes {
        let msg = Message::data(MSG_ID, CONN, payload(size));
        let wire = msg.to_bytes();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut buf = Vec::with_capacity(wire.len());
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&msg).encode(&mut buf);
                black_box(buf.len())
            })
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| Message::decode(black_box(wire.clone())))
        });
    }
    group.finish();
}

fn control_messages(c: &mut Criterion) {
    let ids = SyncIds::from_ids((2..102).map(ConnId));
    let text = |s: &'static str| Bytes::from_static(s.as_bytes());
    let messages: Vec<(&str, Message)> = vec![
        (
            "connect",
            Message::connect(MSG_ID, CONN, "tcp", "10.43.0.1:443"),
        ),
        ("error-eof", Message::error(MSG_ID, CONN, "EOF")),
        (
            "error-dial",
            Message::error(
                MSG_ID,
                CONN,
                "dial tcp 127.0.0.1:1: connect: connection refused",
            ),
        ),
        (
            "add-client",
            Message {
                id: MSG_ID,
                conn_id: ConnId(0),
                body: Body::AddClient(text("foo/42")),
            },
        ),
        (
            "remove-client",
            Message {
                id: MSG_ID,
                conn_id: ConnId(0),
                body: Body::RemoveClient(text("foo/42")),
            },
        ),
        (
            "pause",
            Message {
                id: MSG_ID,
                conn_id: CONN,
                body: Body::Pause,
            },
        ),
        (
            "resume",
            Message {
                id: MSG_ID,
                conn_id: CONN,
                body: Body::Resume,
            },
        ),
        (
            "sync-100-ids",
            Message {
                id: MSG_ID,
                conn_id: ConnId(0),
                body: Body::SyncConnections(ids),
            },
        ),
    ];
    let mut group = c.benchmark_group("codec/control");
    for (name, msg) in &messages {
        let wire = msg.to_bytes();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut buf = Vec::with_capacity(wire.len());
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                buf.clear();
                black_box(msg).encode(&mut buf);
                black_box(buf.len())
            })
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| Message::decode(black_box(wire.clone())))
        });
    }
    group.finish();
}

criterion_group!(benches, data_messages, control_messages);
criterion_main!(benches);
