//! The end-to-end tunnel benchmark (BENCHMARKS.md part 2), used by the
//! `tunnel-bench` binary.

pub mod harness;
pub mod measure;
pub mod report;
pub mod rt_async_std;
pub mod rt_tokio;
pub mod suite;
pub mod targets;
pub mod targets_neutral;
pub mod workloads;
