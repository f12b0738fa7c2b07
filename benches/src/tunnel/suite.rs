//! Runs the selected workloads `runs` times, interleaved so that drift in
//! the machine's load spreads over every workload alike.

use std::io;
use std::time::Duration;

use super::harness::{Backend, Runtime, spawn_join};
use super::measure::Watchdog;
use super::workloads::{self, Idle, Latencies, Sizes, Transfer};

/// A workload id of BENCHMARKS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// B1-down and B3-seq over plain loopback TCP.
    Floor,
    /// One connection, target to dialer.
    #[value(name = "b1-down")]
    B1Down,
    /// One connection, dialer to target.
    #[value(name = "b1-up")]
    B1Up,
    /// 64 concurrent downloads.
    B2,
    /// Sequential dial/echo/close.
    #[value(name = "b3-seq")]
    B3Seq,
    /// The same with 32 workers.
    #[value(name = "b3-par")]
    B3Par,
    /// Idle connections' memory.
    B4,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sizes and counts.
    pub sizes: Sizes,
    /// Repetitions of each workload (the report gives the median).
    pub runs: usize,
    /// The workloads; empty means all.
    pub only: Vec<Workload>,
    /// Longest any single workload may take.
    pub limit: Duration,
}

impl Plan {
    /// Whether `w` is selected.
    pub fn runs_workload(&self, w: Workload) -> bool {
        self.only.is_empty() || self.only.contains(&w)
    }
}

/// The figures of one run; `None` for workloads not selected.
#[derive(Debug, Default, Clone)]
pub struct RunResult {
    /// Floor: B1-down over plain TCP.
    pub floor_b1: Option<Transfer>,
    /// Floor: B3-seq over plain TCP.
    pub floor_b3: Option<Latencies>,
    /// B1-down.
    pub b1_down: Option<Transfer>,
    /// B1-up.
    pub b1_up: Option<Transfer>,
    /// B2.
    pub b2: Option<Transfer>,
    /// B3-seq.
    pub b3_seq: Option<Latencies>,
    /// B3-par.
    pub b3_par: Option<Latencies>,
    /// B4.
    pub b4: Option<Idle>,
}

/// Runs `f` under a watchdog, with a progress line on stderr.
async fn timed<T, F>(plan: &Plan, run: usize, name: &str, f: F) -> io::Result<T>
where
    F: std::future::Future<Output = io::Result<T>>,
{
    eprintln!("tunnel-bench: run {}/{}: {name}", run + 1, plan.runs);
    let _guard = Watchdog::arm(name, plan.limit);
    f.await
        .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))
}

/// Runs a single-stream workload as a task of the runtime under test, as an
/// application's dials run (in request handlers), not on the thread that
/// blocks on the suite. That thread is not one of the executor's workers, so
/// it gave the dialer a thread of its own that no application has (README,
/// "Measured", has the effect on the figures).
async fn in_task<T: Send + 'static>(
    rt: &dyn Runtime,
    f: impl std::future::Future<Output = io::Result<T>> + Send + 'static,
) -> io::Result<T> {
    spawn_join(rt, f).await?
}

/// Runs the plan on `backend`.
pub async fn run(backend: &Backend, plan: &Plan) -> io::Result<Vec<RunResult>> {
    let s = plan.sizes;
    let t = backend.targets;
    let (rt, tunnel, plain) = (backend.rt, &backend.tunnel, &backend.plain);
    let mut results = Vec::with_capacity(plan.runs);
    for run in 0..plan.runs {
        let mut r = RunResult::default();
        if plan.runs_workload(Workload::Floor) {
            r.floor_b1 = Some(
                timed(plan, run, "floor B1-down", {
                    let plain = plain.clone();
                    in_task(rt, async move {
                        workloads::download(plain.as_ref(), t.source, s.b1_bytes).await
                    })
                })
                .await?,
            );
        }
        if plan.runs_workload(Workload::B1Down) {
            r.b1_down = Some(
                timed(plan, run, "B1-down", {
                    let tunnel = tunnel.clone();
                    in_task(rt, async move {
                        workloads::download(tunnel.as_ref(), t.source, s.b1_bytes).await
                    })
                })
                .await?,
            );
        }
        if plan.runs_workload(Workload::B1Up) {
            r.b1_up = Some(
                timed(plan, run, "B1-up", {
                    let tunnel = tunnel.clone();
                    in_task(rt, async move {
                        workloads::upload(tunnel.as_ref(), t.sink, s.b1_bytes).await
                    })
                })
                .await?,
            );
        }
        if plan.runs_workload(Workload::B2) {
            r.b2 = Some(
                timed(plan, run, "B2", async {
                    workloads::parallel_download(rt, tunnel, t.source, s.b2_conns, s.b2_bytes).await
                })
                .await?,
            );
        }
        if plan.runs_workload(Workload::Floor) {
            r.floor_b3 = Some(
                timed(plan, run, "floor B3-seq", {
                    let plain = plain.clone();
                    in_task(rt, async move {
                        workloads::echo_seq(plain.as_ref(), t.echo, s.b3_seq).await
                    })
                })
                .await?,
            );
        }
        if plan.runs_workload(Workload::B3Seq) {
            r.b3_seq = Some(
                timed(plan, run, "B3-seq", {
                    let tunnel = tunnel.clone();
                    in_task(rt, async move {
                        workloads::echo_seq(tunnel.as_ref(), t.echo, s.b3_seq).await
                    })
                })
                .await?,
            );
        }
        if plan.runs_workload(Workload::B3Par) {
            r.b3_par = Some(
                timed(plan, run, "B3-par", async {
                    workloads::echo_par(rt, tunnel, t.echo, s.b3_workers, s.b3_par).await
                })
                .await?,
            );
        }
        if plan.runs_workload(Workload::B4) {
            let echo = t
                .echo_child
                .ok_or_else(|| io::Error::other("B4 needs the echo child"))?;
            r.b4 = Some(
                timed(plan, run, "B4", async {
                    workloads::idle_conns(rt, tunnel, echo, s.b4_conns).await
                })
                .await?,
            );
        }
        results.push(r);
    }
    Ok(results)
}
