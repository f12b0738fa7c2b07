//! The example target: a static file server for the current directory, as
//! Go's example `dummy`.
//!
//! ```text
//! cargo run -p remotedialer-tokio --example dummy -- --listen :8125
//! ```

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "static file server for a directory (default: the current one)")]
struct Args {
    /// Listen address: `:PORT` (every interface, as Go) or `HOST:PORT`.
    #[arg(long, default_value = ":8125")]
    listen: String,
    /// Directory to serve.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_tracing(false);
    let root = match std::fs::canonicalize(&args.dir) {
        Ok(p) if p.is_dir() => p,
        Ok(p) => {
            eprintln!("dummy: {} is not a directory", p.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("dummy: cannot serve {}: {e}", args.dir.display());
            return ExitCode::FAILURE;
        }
    };
    let listener = match common::listen::bind(&args.listen, "--listen").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dummy: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("serving {} on http://{addr}/", root.display()),
        Err(e) => {
            eprintln!("dummy: {e}");
            return ExitCode::FAILURE;
        }
    }
    tokio::select! {
        _ = common::serve::serve(listener, None, common::files::router(root)) => {}
        _ = common::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}
