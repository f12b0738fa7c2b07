//! The workloads of BENCHMARKS.md, written once against [`Dial`] and
//! [`Runtime`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::{BoxConn, Dial, Runtime, spawn_join};
use super::measure;
use super::targets::PATTERN;

/// Buffer the dialer reads and writes with.
const CHUNK: usize = 64 << 10;
/// B4: connections being opened at once (keeps the target's accept backlog
/// from overflowing).
const OPEN_WAVE: usize = 256;

/// Sizes and counts of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// B1 and the floor: bytes moved.
    pub b1_bytes: u64,
    /// B2: connections.
    pub b2_conns: usize,
    /// B2: bytes per connection.
    pub b2_bytes: u64,
    /// B3-seq: dials.
    pub b3_seq: usize,
    /// B3-par: dials in all.
    pub b3_par: usize,
    /// B3-par: workers.
    pub b3_workers: usize,
    /// B4: idle connections.
    pub b4_conns: usize,
}

impl Sizes {
    /// The sizes of BENCHMARKS.md.
    pub fn full() -> Sizes {
        Sizes {
            b1_bytes: 1 << 30,
            b2_conns: 64,
            b2_bytes: 16 << 20,
            b3_seq: 2000,
            b3_par: 10_000,
            b3_workers: 32,
            b4_conns: 10_000,
        }
    }

    /// Byte sizes and dial/connection counts divided by 16, for smoke runs
    /// (B2's 64 connections and B3-par's 32 workers stay).
    pub fn quick() -> Sizes {
        let f = Sizes::full();
        Sizes {
            b1_bytes: f.b1_bytes / 16,
            b2_conns: f.b2_conns,
            b2_bytes: f.b2_bytes / 16,
            b3_seq: f.b3_seq / 16,
            b3_par: f.b3_par / 16,
            b3_workers: f.b3_workers,
            b4_conns: f.b4_conns / 16,
        }
    }
}

/// A bulk transfer.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// CPU time (user + system) of the whole process meanwhile.
    pub cpu: Duration,
}

impl Transfer {
    /// Throughput in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU seconds per GiB moved.
    pub fn cpu_s_per_gib(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.bytes as f64 / (1u64 << 30) as f64).max(1e-12)
    }
}

/// Dial/echo/close round trips.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// Wall time of all of them.
    pub elapsed: Duration,
    /// Each round trip, sorted.
    pub samples: Vec<Duration>,
}

impl Latencies {
    fn new(elapsed: Duration, mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies { elapsed, samples }
    }

    /// Round trips per second.
    pub fn dials_per_s(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (nearest rank) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let rank = ((q * self.samples.len() as f64).ceil() as usize).clamp(1, self.samples.len());
        self.samples
            .get(rank - 1)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    }
}

/// Memory held by idle connections.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Connections held.
    pub conns: usize,
    /// Process RSS before opening them.
    pub rss_before: u64,
    /// Process RSS while holding them.
    pub rss_after: u64,
}

impl Idle {
    /// RSS growth per connection.
    pub fn bytes_per_conn(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.conns.max(1) as f64
    }
}

fn unexpected(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Asks the source for `bytes` and reads them to the end of the stream.
async fn read_from_source(conn: &mut BoxConn, bytes: u64) -> io::Result<()> {
    conn.write_all(&bytes.to_le_bytes()).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        match conn.read(&mut buf).await? {
            0 => break,
            n => got += n as u64,
        }
        if got > bytes {
            return Err(unexpected(format!(
                "source sent {got} bytes, asked {bytes}"
            )));
        }
    }
    if got != bytes {
        return Err(unexpected(format!("received {got} of {bytes} bytes")));
    }
    Ok(())
}

/// B1-down (and the floor): one connection, the target writes `bytes`, the
/// dialer reads them.
pub async fn download(dial: &dyn Dial, source: SocketAddr, bytes: u64) -> io::Result<Transfer> {
    let cpu = measure::cpu_time()?;
    let start = Instant::now();
    let mut conn = dial.dial(source).await?;
    read_from_source(&mut conn, bytes).await?;
    let elapsed = start.elapsed();
    Ok(Transfer {
        bytes,
        elapsed,
        cpu: measure::cpu_time()?.saturating_sub(cpu),
    })
}

/// B1-up: one connection, the dialer writes `bytes`, the target discards
/// them and acknowledges the last one.
pub async fn upload(dial: &dyn Dial, sink: SocketAddr, bytes: u64) -> io::Result<Transfer> {
    let cpu = measure::cpu_time()?;
    let start = Instant::now();
    let mut conn = dial.dial(sink).await?;
    conn.write_all(&bytes.to_le_bytes()).await?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        conn.write_all(PATTERN.get(..n).unwrap_or_default()).await?;
        left -= n as u64;
    }
    let mut ack = [0u8; 1];
    conn.read_exact(&mut ack).await?;
    let elapsed = start.elapsed();
    Ok(Transfer {
        bytes,
        elapsed,
        cpu: measure::cpu_time()?.saturating_sub(cpu),
    })
}

/// B2: `conns` concurrent connections, each reading `bytes` from the source.
pub async fn parallel_download(
    rt: &dyn Runtime,
    dial: &Arc<dyn Dial>,
    source: SocketAddr,
    conns: usize,
    bytes: u64,
) -> io::Result<Transfer> {
    let cpu = measure::cpu_time()?;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let dial = dial.clone();
        tasks.push(spawn_join(rt, async move {
            let mut conn = dial.dial(source).await?;
            read_from_source(&mut conn, bytes).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    Ok(Transfer {
        bytes: bytes * conns as u64,
        elapsed,
        cpu: measure::cpu_time()?.saturating_sub(cpu),
    })
}

/// Dial, write one byte, read its echo, close; returns the round trip.
async fn echo_once(dial: &dyn Dial, echo: SocketAddr, byte: u8) -> io::Result<Duration> {
    let start = Instant::now();
    let mut conn = dial.dial(echo).await?;
    conn.write_all(&[byte]).await?;
    let mut back = [0u8; 1];
    conn.read_exact(&mut back).await?;
    drop(conn);
    let took = start.elapsed();
    if back[0] != byte {
        return Err(unexpected(format!("echo returned {} for {byte}", back[0])));
    }
    Ok(took)
}

/// B3-seq (and the floor): `count` round trips in a row.
pub async fn echo_seq(dial: &dyn Dial, echo: SocketAddr, count: usize) -> io::Result<Latencies> {
    let mut samples = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        samples.push(echo_once(dial, echo, i as u8).await?);
    }
    Ok(Latencies::new(start.elapsed(), samples))
}

/// B3-par: `total` round trips shared by `workers` concurrent workers.
pub async fn echo_par(
    rt: &dyn Runtime,
    dial: &Arc<dyn Dial>,
    echo: SocketAddr,
    workers: usize,
    total: usize,
) -> io::Result<Latencies> {
    let workers = workers.clamp(1, total.max(1));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        // Spread the remainder over the first workers.
        let count = total / workers + usize::from(w < total % workers);
        let dial = dial.clone();
        tasks.push(spawn_join(rt, async move {
            let mut samples = Vec::with_capacity(count);
            for i in 0..count {
                samples.push(echo_once(dial.as_ref(), echo, (w + i) as u8).await?);
            }
            Ok::<_, io::Error>(samples)
        }));
    }
    let mut samples = Vec::with_capacity(total);
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok(Latencies::new(start.elapsed(), samples))
}

/// B4: opens `count` connections to the echo child, checks each with one
/// echoed byte, and measures the process RSS while they are held idle.
pub async fn idle_conns(
    rt: &dyn Runtime,
    dial: &Arc<dyn Dial>,
    echo: SocketAddr,
    count: usize,
) -> io::Result<Idle> {
    settle(rt, dial.as_ref()).await?;
    measure::trim_heap();
    let rss_before = measure::rss_bytes()?;
    let mut held: Vec<BoxConn> = Vec::with_capacity(count);
    while held.len() < count {
        let wave = OPEN_WAVE.min(count - held.len());
        let mut tasks = Vec::with_capacity(wave);
        for i in 0..wave {
            let dial = dial.clone();
            tasks.push(spawn_join(rt, async move {
                let mut conn = dial.dial(echo).await?;
                conn.write_all(&[i as u8]).await?;
                let mut back = [0u8; 1];
                conn.read_exact(&mut back).await?;
                Ok::<_, io::Error>(conn)
            }));
        }
        for task in tasks {
            held.push(task.await??);
        }
    }
    // Let whatever the opening left in flight (acks, wakeups) go quiet.
    rt.sleep(Duration::from_millis(200)).await;
    let rss_after = measure::rss_bytes()?;
    drop(held);
    settle(rt, dial.as_ref()).await?;
    Ok(Idle {
        conns: count,
        rss_before,
        rss_after,
    })
}

/// Waits (bounded) until the tunnel holds no connection.
async fn settle(rt: &dyn Runtime, dial: &dyn Dial) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while dial.live_connections().is_some_and(|n| n > 0) {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "tunnel still holds {:?} connections after 30 s",
                dial.live_connections()
            )));
        }
        rt.sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let samples = (1..=100).map(Duration::from_micros).collect();
        let l = Latencies::new(Duration::from_secs(1), samples);
        assert_eq!(l.quantile_us(0.5), 50.0);
        assert_eq!(l.quantile_us(0.99), 99.0);
        assert_eq!(l.dials_per_s(), 100.0);
    }
}
