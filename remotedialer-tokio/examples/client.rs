//! The example client (agent), with the flags of Go's example client, plus
//! the one Go lacks: which targets the server may dial.
//!
//! ```text
//! cargo run -p remotedialer-tokio --example client -- --id foo --allow 'tcp/127.0.0.1:*'
//! ```

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use common::agent::{AgentOptions, Allow};
use remotedialer_tokio::proto::Config;

#[derive(Parser, Debug)]
#[command(
    about = "remotedialer example client: connects to a server and dials what it asks \
                   for, if --allow permits"
)]
struct Args {
    /// The server's tunnel URL (ws://, wss://, http:// or https://).
    #[arg(long, default_value = "ws://localhost:8123/connect")]
    connect: String,
    /// This client's id, sent as the X-Tunnel-ID header.
    #[arg(long, default_value = "foo")]
    id: String,
    /// Extra header for the upgrade request, `NAME:VALUE` (repeatable).
    #[arg(long, value_name = "NAME:VALUE")]
    header: Vec<String>,
    /// Targets the server may dial, as `proto/address` globs with `*`, e.g.
    /// `tcp/127.0.0.1:*` (repeatable).
    #[arg(long, value_name = "PATTERN")]
    allow: Vec<String>,
    /// Let the server dial anything this machine can reach (Go's example).
    #[arg(long)]
    allow_all: bool,
    /// Trust this CA (PEM) for wss://, in addition to the public roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate. Tests only.
    #[arg(long)]
    insecure: bool,
    /// Debug logging (set REMOTEDIALER_TRACE_DATA=true to log every message).
    #[arg(long)]
    debug: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let allow = match Allow::from_flags(args.allow, args.allow_all) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("client: {e}");
            return ExitCode::from(2);
        }
    };
    common::init_tracing(args.debug);
    if args.insecure {
        tracing::warn!("--insecure: the server's certificate is not checked");
    }
    let opts = AgentOptions {
        connect: args.connect.clone(),
        id: args.id,
        headers: args.header,
        allow,
        ca_file: args.ca_file,
        insecure: args.insecure,
        session: Config::default(),
    };
    let client = match common::agent::build(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("client: {e}");
            return ExitCode::from(2);
        }
    };
    println!("connecting to {} as {}", opts.connect, opts.id);
    common::agent::run_until(client, opts.connect, common::ctrl_c()).await;
    ExitCode::SUCCESS
}
