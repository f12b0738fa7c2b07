//! Code shared by the example programs. Each example includes it with
//! `#[path = "common/mod.rs"] mod common;` and uses the parts it needs.
#![allow(dead_code)]

pub mod agent;
pub mod files;
pub mod forward;
pub mod listen;
pub mod parse;
pub mod proxy;
pub mod serve;
pub mod tunnel;

/// Logs to stderr (stdout carries the lines scripts read, such as the
/// address a server listens on). `RUST_LOG` overrides the level.
pub fn init_tracing(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Resolves on Ctrl-C (or if Ctrl-C cannot be watched, never).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
