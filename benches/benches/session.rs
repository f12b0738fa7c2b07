//! Two sessions wired to each other in memory: the cost of the protocol
//! logic alone (framing, per-connection flow control, buffering), with no
//! sockets and no WebSocket.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use remotedialer_benches::{MemoryPair, payload};
use remotedialer_proto::Config;

const MIB: usize = 1 << 20;

fn bench(c: &mut Criterion, name: &str, conns: usize, per_conn: usize) {
    let source = payload(MIB);
    let total = (conns * per_conn) as u64;
    let mut group = c.benchmark_group("session");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(total));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut pair = MemoryPair::new(Config::default());
            let ids = pair.open(conns);
            let moved = pair.transfer(&ids, per_conn, &source);
            assert_eq!(moved, total);
        })
    });
    group.finish();
}

fn one_connection(c: &mut Criterion) {
    bench(c, "1-connection-256MiB", 1, 256 * MIB);
}

fn many_connections(c: &mut Criterion) {
    bench(c, "64-connections-4MiB-each", 64, 4 * MIB);
}

criterion_group!(benches, one_connection, many_connections);
criterion_main!(benches);
