//! The end-to-end tunnel benchmark of BENCHMARKS.md part 2: a server and a
//! client of the adapter in this process over a real WebSocket on
//! 127.0.0.1, plain TCP targets, the median of 3 runs of each workload, and
//! every figure as a ratio to plain loopback TCP measured in the same run.
//!
//! ```text
//! cargo run --release -p remotedialer-benches --bin tunnel-bench [-- --json] [--quick] [--runtime tokio|async-std|smol]
//! ```

#[path = "../tunnel/mod.rs"]
mod tunnel;

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use remotedialer_tokio::proto::Config;

use tunnel::report::{self, Context};
use tunnel::rt_async_std::Flavor;
use tunnel::suite::{self, Plan, Workload};
use tunnel::targets::{self, EchoChild};
use tunnel::workloads::Sizes;
use tunnel::{measure, rt_async_std, rt_tokio};

/// The adapter to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeKind {
    /// remotedialer-tokio.
    Tokio,
    /// remotedialer-async-std on async-std's executor.
    AsyncStd,
    /// remotedialer-async-std on smol's executor (threads: `SMOL_THREADS`).
    Smol,
}

/// End-to-end remotedialer tunnel benchmark (BENCHMARKS.md part 2).
#[derive(Debug, Parser)]
#[command(name = "tunnel-bench")]
struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Byte sizes and dial/connection counts divided by 16, for smoke runs
    /// (B2's 64 connections and B3-par's 32 workers stay).
    #[arg(long)]
    quick: bool,
    /// The adapter to measure.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Tokio)]
    runtime: RuntimeKind,
    /// Runs of each workload; the report gives the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=25))]
    runs: u8,
    /// Only these workloads (comma-separated); the floor is needed for
    /// ratios.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Workload>,
    /// Largest Data payload per WebSocket message, both sides (default: the
    /// protocol's 32 KiB, as Go sends).
    #[arg(long)]
    max_data_message: Option<usize>,
    /// tokio worker threads (default: one per core).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Internal: run as B4's echo target and print the port.
    #[arg(long, hide = true)]
    echo_child: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.echo_child {
        return match targets::echo_child_main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tunnel-bench --echo-child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunnel-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> io::Result<()> {
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let mut plan = Plan {
        sizes,
        runs: usize::from(args.runs),
        only: args.only.clone(),
        limit: Duration::from_secs(if args.quick { 30 } else { 300 }),
    };
    let mut session = Config::default();
    if let Some(n) = args.max_data_message {
        session.max_data_message = n;
    }
    session
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    // B4 holds its connections' client-side sockets in this process.
    let nofile = measure::raise_nofile(u64::MAX)?;
    let needed = sizes.b4_conns as u64 + 512;
    if plan.runs_workload(Workload::B4) && nofile < needed {
        let msg = format!("B4 needs {needed} open files, the limit is {nofile}");
        let rest: Vec<Workload> = Workload::value_variants()
            .iter()
            .copied()
            .filter(|w| *w != Workload::B4 && plan.runs_workload(*w))
            .collect();
        // A smoke run should not fail on a small machine limit.
        if !args.quick || rest.is_empty() {
            return Err(io::Error::other(msg));
        }
        eprintln!("tunnel-bench: skipping B4: {msg}");
        plan.only = rest;
    }
    let load_start = measure::load_average();
    let echo_child = if plan.runs_workload(Workload::B4) {
        Some(EchoChild::spawn()?)
    } else {
        None
    };
    let echo_addr = echo_child.as_ref().map(|c| c.addr);
    let results = match args.runtime {
        RuntimeKind::Tokio => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = args.worker_threads {
                builder.worker_threads(n.max(1));
            }
            let rt = builder.enable_all().build()?;
            rt.block_on(async {
                let (backend, tunnel) = rt_tokio::start(session.clone(), echo_addr).await?;
                let results = suite::run(&backend, &plan).await;
                tunnel.stop().await;
                results
            })?
        }
        RuntimeKind::AsyncStd => {
            rt_async_std::run(Flavor::AsyncStd, session.clone(), echo_addr, &plan)?
        }
        RuntimeKind::Smol => rt_async_std::run(Flavor::Smol, session.clone(), echo_addr, &plan)?,
    };
    drop(echo_child);
    let ctx = Context {
        runtime: match args.runtime {
            RuntimeKind::Tokio => "tokio",
            RuntimeKind::AsyncStd => "async-std",
            RuntimeKind::Smol => "smol",
        },
        quick: args.quick,
        runs: plan.runs,
        sizes,
        load_start,
        load_end: measure::load_average(),
        max_data_message: session.max_data_message,
    };
    let rows = report::rows(&results);
    if args.json {
        println!("{}", report::json(&ctx, &rows));
    } else {
        print!("{}", report::table(&ctx, &rows));
    }
    Ok(())
}
