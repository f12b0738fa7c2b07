//! Everything in one process: the tunnel server, a client (agent) and the
//! dummy file server, on free loopback ports. Proxies a small request and a
//! large download through the tunnel, checks them, prints what happened
//! and the curl commands to try, then keeps serving until Ctrl-C.
//!
//! ```text
//! cargo run --release -p remotedialer-tokio --example demo
//! cargo run --release -p remotedialer-tokio --example demo -- --once   # exit after the checks
//! ```

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use common::agent::{AgentOptions, Allow};
use common::serve::human_bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use remotedialer_tokio::proto::Config;
use sha2::{Digest, Sha256};

#[derive(Parser, Debug)]
#[command(about = "server, client and dummy in one process, with checks")]
struct Args {
    /// Exit after the checks: 0 if they all pass, 1 otherwise.
    #[arg(long)]
    once: bool,
    /// Size of the generated download, in MiB.
    #[arg(long, default_value_t = 32)]
    size_mib: u64,
    /// The client's id.
    #[arg(long, default_value = "foo")]
    id: String,
    /// Debug logging.
    #[arg(long)]
    debug: bool,
}

const HELLO: &str = "hello from the dummy server, through the tunnel\n";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_tracing(args.debug);
    let dir = std::env::temp_dir().join(format!("remotedialer-demo-{}", std::process::id()));
    let code = match run(&args, &dir).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// Writes `hello.txt` and `download.bin` (pseudo-random, so nothing along
/// the way can compress it); returns the download's SHA-256.
fn make_files(dir: &Path, size: u64) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("hello.txt"), HELLO)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join("download.bin"))?);
    let mut hasher = Sha256::new();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or(&bytes));
        }
        let n = left.min(block.len() as u64) as usize;
        let piece = block.get(..n).unwrap_or(&block);
        hasher.update(piece);
        file.write_all(piece)?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Fetched {
    status: u16,
    bytes: u64,
    sha256: String,
    head: String,
    elapsed: Duration,
}

async fn fetch(http: &Client<HttpConnector, Empty<Bytes>>, url: &str) -> Result<Fetched, String> {
    let started = Instant::now();
    let uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let resp = http.get(uri).await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let (mut bytes, mut hasher, mut head) = (0u64, Sha256::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("GET {url}: body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            hasher.update(data);
            if head.len() < 512 {
                head.extend_from_slice(data.get(..data.len().min(512)).unwrap_or(data));
            }
        }
    }
    Ok(Fetched {
        status,
        bytes,
        sha256: hex(&hasher.finalize()),
        head: String::from_utf8_lossy(&head).trim().to_owned(),
        elapsed: started.elapsed(),
    })
}

/// Prints one check's outcome; returns whether it passed.
fn report(passed: bool, what: &str, detail: &str) -> bool {
    let mark = if passed { "ok  " } else { "FAIL" };
    println!("  {mark} {what}: {detail}");
    passed
}

async fn run(args: &Args, dir: &Path) -> Result<bool, String> {
    let size = args.size_mib * 1024 * 1024;
    let made = Instant::now();
    let digest =
        make_files(dir, size).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
    tracing::info!("generated {} in {:.1?}", human_bytes(size), made.elapsed());

    // The dummy target.
    let dummy = common::listen::bind("127.0.0.1:0", "--listen").await?;
    let dummy_addr = dummy.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(common::serve::serve(
        dummy,
        None,
        common::files::router(dir.to_path_buf()),
    ));

    // The tunnel server.
    let app = common::tunnel::TunnelServer::default();
    let listener = common::listen::bind("127.0.0.1:0", "--listen").await?;
    let server_addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(common::serve::serve(listener, None, app.router()));

    // The client, allowed to reach the dummy and nothing else.
    let url = format!("ws://{server_addr}/connect");
    let opts = AgentOptions {
        connect: url.clone(),
        id: args.id.clone(),
        headers: Vec::new(),
        allow: Allow::Patterns(vec![format!("tcp/{dummy_addr}")]),
        ca_file: None,
        insecure: false,
        session: Config::default(),
    };
    let client = common::agent::build(&opts)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(common::agent::run_until(client, url.clone(), async {
        let _ = stop_rx.await;
    }));

    println!("remotedialer demo");
    println!(
        "  server  ws://{server_addr}/connect (tunnel), http://{server_addr}/client/... (proxy)"
    );
    println!("  client  id {:?}, may dial tcp/{dummy_addr} only", args.id);
    println!("  dummy   http://{dummy_addr}/ serving {}", dir.display());

    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.server.has_session(&args.id) {
        if Instant::now() > deadline {
            return Err("the client did not connect within 10 s (see the log above)".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("  tunnel  client {:?} connected\n", args.id);

    let http: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let base = format!("http://{server_addr}/client/{}/http", args.id);
    let mut all_ok = true;
    println!("checks");

    let hello_url = format!("{base}/{dummy_addr}/hello.txt");
    all_ok &= match fetch(&http, &hello_url).await {
        Ok(f) => report(
            f.status == 200 && f.head == HELLO.trim(),
            "GET hello.txt through the tunnel",
            &format!("HTTP {}, {:?}", f.status, f.head),
        ),
        Err(e) => report(false, "GET hello.txt through the tunnel", &e),
    };

    let big_url = format!("{base}/{dummy_addr}/download.bin");
    all_ok &= match fetch(&http, &big_url).await {
        Ok(f) => {
            let secs = f.elapsed.as_secs_f64().max(1e-9);
            let rate = f.bytes as f64 / secs / (1024.0 * 1024.0);
            let ok = f.status == 200 && f.bytes == size && f.sha256 == digest;
            report(
                ok,
                "download through the tunnel",
                &format!(
                    "HTTP {}, {} of {} in {:.2} s = {rate:.0} MiB/s, sha256 {}",
                    f.status,
                    human_bytes(f.bytes),
                    human_bytes(size),
                    secs,
                    if f.sha256 == digest {
                        "matches"
                    } else {
                        "DIFFERS"
                    }
                ),
            )
        }
        Err(e) => report(false, "download through the tunnel", &e),
    };

    // The client's --allow does not cover the server's own port.
    let refused_url = format!("{base}/{server_addr}/metrics");
    all_ok &= match fetch(&http, &refused_url).await {
        Ok(f) => report(
            f.status == 502 && f.head.contains("connect not allowed"),
            "a target outside the client's --allow is refused",
            &format!("HTTP {}, {:?}", f.status, f.head),
        ),
        Err(e) => report(
            false,
            "a target outside the client's --allow is refused",
            &e,
        ),
    };

    let unknown_url = format!("http://{server_addr}/client/nobody/http/{dummy_addr}/hello.txt");
    all_ok &= match fetch(&http, &unknown_url).await {
        Ok(f) => report(
            f.status == 502 && f.head.contains("not connected"),
            "an unknown client id is answered 502",
            &format!("HTTP {}", f.status),
        ),
        Err(e) => report(false, "an unknown client id is answered 502", &e),
    };

    println!();
    if !all_ok {
        println!("some checks FAILED");
    }
    if args.once {
        let _ = stop_tx.send(());
        let _ = agent.await;
        return Ok(all_ok);
    }
    println!("Try it yourself while the demo runs (Ctrl-C to stop):");
    println!("  curl {hello_url}");
    println!(
        "  curl -o /dev/null -w '%{{size_download}} bytes at %{{speed_download}} B/s\\n' {big_url}"
    );
    println!("  curl -i {refused_url}");
    println!("  curl http://{server_addr}/metrics");
    common::ctrl_c().await;
    let _ = stop_tx.send(());
    let _ = agent.await;
    app.server.shutdown().await;
    Ok(all_ok)
}
