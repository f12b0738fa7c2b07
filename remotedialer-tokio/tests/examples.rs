#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The example programs as processes: the one-command demo, the
//! server/client/dummy walkthrough with requests through the tunnel,
//! `--forward`, TLS, peering flags, and the errors a newcomer meets.
//!
//! The examples are built once per run with `cargo build --examples` (a
//! no-op when `cargo test` already built them), in the profile of this
//! test binary. Every process listens on a port the OS picked (`:0`) and
//! prints it; a guard kills the processes when a test ends.

#[path = "examples/harness.rs"]
mod harness;
#[path = "../examples/common/parse.rs"]
#[allow(dead_code)]
mod parse;

use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_once_passes_its_checks() {
    let mut demo = tokio::task::block_in_place(|| Proc::start("demo", &["--once"], None));
    let status = tokio::task::block_in_place(|| demo.exit());
    let out = demo.stdout.try_iter().collect::<Vec<_>>().join("\n");
    assert!(
        status.success(),
        "demo --once failed:\n{out}\n{}",
        demo.stderr()
    );
    assert!(out.contains("sha256 matches"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_server_client_dummy() {
    let dir = TempDir::new("walkthrough");
    std::fs::write(dir.0.join("hello.txt"), "hello through the tunnel\n").unwrap();
    let big = noise(8 << 20, 7);
    std::fs::write(dir.0.join("big.bin"), &big).unwrap();
    let target = http_echo_target().await;
    let echo = tcp_echo_target().await;

    let forward = format!("127.0.0.1:0=foo:tcp/{echo}");
    let (dummy, server, _client, dummy_addr, server_addr, forward_addr) =
        tokio::task::block_in_place(|| {
            // The dummy serves its working directory, as Go's.
            let mut dummy = Proc::start("dummy", &["--listen", "127.0.0.1:0"], Some(&dir.0));
            let dummy_addr = dummy.address("serving ");
            let mut server = Proc::start(
                "server",
                &["--listen", "127.0.0.1:0", "--forward", &forward],
                None,
            );
            let server_addr = server.address("listening on ");
            let forward_addr = server.address("forwarding ");
            let connect = format!("ws://{server_addr}/connect");
            let client = Proc::start(
                "client",
                &[
                    "--connect",
                    &connect,
                    "--id",
                    "foo",
                    "--allow",
                    "tcp/127.0.0.1:*",
                ],
                None,
            );
            (dummy, server, client, dummy_addr, server_addr, forward_addr)
        });
    let http = http_client();
    let base = format!("http://{server_addr}/client/foo/http");

    // GET a small file through the tunnel.
    let hello = get_when_connected(&http, &format!("{base}/{dummy_addr}/hello.txt")).await;
    assert_eq!(hello.status, 200, "{:?}", hello.body);
    assert_eq!(hello.body, "hello through the tunnel\n");

    // A large download, checked by hash.
    let got = get(&http, &format!("{base}/{dummy_addr}/big.bin")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), big.len());
    assert_eq!(Sha256::digest(&got.body), Sha256::digest(&big));

    // POST with a body: method, path, query, body and end-to-end headers
    // arrive; hop-by-hop headers do not, either way.
    let body = noise(3 << 20, 11);
    let req = http::Request::post(format!("{base}/{target}/upload/a%20b?x=1&timeout=30&y=2"))
        .header("x-custom", "kept")
        .header("connection", "x-hop")
        .header("x-hop", "dropped")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let posted = send(&http, req).await;
    assert_eq!(posted.status, 200, "{:?}", posted.body);
    let seen = |name: &str| {
        posted
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(seen("x-seen-method"), "POST");
    assert_eq!(seen("x-seen-path"), "/upload/a%20b?x=1&y=2");
    assert_eq!(seen("x-seen-host"), target.to_string());
    assert_eq!(seen("x-seen-custom"), "kept");
    assert_eq!(seen("x-seen-hop"), "-");
    assert_eq!(seen("x-seen-proxy-authorization"), "-");
    assert!(posted.headers.get("x-back-hop").is_none());
    assert!(posted.body == body, "POST body came back different");

    // Other methods go through too.
    let put = http::Request::put(format!("{base}/{target}/thing"))
        .body(Full::new(Bytes::from_static(b"put body")))
        .unwrap();
    let put = send(&http, put).await;
    assert_eq!(put.headers.get("x-seen-method").unwrap(), "PUT");
    assert_eq!(put.body, "put body");

    // ?timeout= bounds the wait for the response head.
    let slow = get(&http, &format!("{base}/{target}/slow?timeout=1")).await;
    assert_eq!(slow.status, 504, "{:?}", slow.body);

    // An unknown client is a 502 that says so.
    let unknown = get(
        &http,
        &format!("http://{server_addr}/client/bar/http/{dummy_addr}/hello.txt"),
    )
    .await;
    assert_eq!(unknown.status, 502);
    assert!(String::from_utf8_lossy(&unknown.body).contains("\"bar\" is not connected"));

    // The dummy refuses to leave its directory.
    let mut tcp = tokio::net::TcpStream::connect(dummy_addr).await.unwrap();
    tcp.write_all(b"GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");

    // --forward: a plain TCP port dialed through the client.
    let mut fwd = tokio::net::TcpStream::connect(forward_addr).await.unwrap();
    let payload = noise(1 << 20, 3);
    let (mut r, mut w) = fwd.split();
    let (_, echoed) = tokio::join!(
        async {
            w.write_all(&payload).await.unwrap();
        },
        async {
            let mut got = vec![0u8; payload.len()];
            r.read_exact(&mut got).await.unwrap();
            got
        }
    );
    assert!(echoed == payload, "forwarded bytes came back different");

    // Metrics name the session.
    let metrics = get(&http, &format!("http://{server_addr}/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("session_server_sessions 1"), "{text}");

    // Each request was logged with its duration.
    tokio::task::block_in_place(|| {
        dummy.stderr_contains("GET /big.bin 200 8.0 MiB in");
        server.stderr_contains("REQ DONE");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_ca_file() {
    let dir = TempDir::new("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.0.join("hello.txt"), "over wss\n").unwrap();

    let (_dummy, _server, _client, dummy_addr, server_addr) = tokio::task::block_in_place(|| {
        let dir_arg = dir.0.to_str().unwrap();
        let mut dummy = Proc::start(
            "dummy",
            &["--listen", "127.0.0.1:0", "--dir", dir_arg],
            None,
        );
        let dummy_addr = dummy.address("serving ");
        let mut server = Proc::start(
            "server",
            &[
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert_path.to_str().unwrap(),
                "--tls-key",
                key_path.to_str().unwrap(),
            ],
            None,
        );
        let line = server.line("listening on ");
        assert!(line.contains("wss://"), "{line}");
        let server_addr = server.address("listening on ");
        let connect = format!("wss://localhost:{}/connect", server_addr.port());
        let client = Proc::start(
            "client",
            &[
                "--connect",
                &connect,
                "--allow",
                &format!("tcp/{dummy_addr}"),
                "--ca-file",
                cert_path.to_str().unwrap(),
            ],
            None,
        );
        (dummy, server, client, dummy_addr, server_addr)
    });

    // An HTTPS request to the server's proxy route, trusting the same CA.
    let roots = remotedialer_tokio::tls::TlsRoots::CustomCa(cert.cert.pem().into_bytes());
    let tls = remotedialer_tokio::tls::client_config(&roots).unwrap();
    let url = format!("/client/foo/http/{dummy_addr}/hello.txt");
    let deadline = Instant::now() + WAIT;
    loop {
        let tcp = tokio::net::TcpStream::connect(server_addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(&url)
            .header("host", "localhost")
            .body(Full::<Bytes>::default())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if status == 200 {
            assert_eq!(body, "over wss\n");
            break;
        }
        assert!(
            status == 502 && Instant::now() < deadline,
            "HTTP {status}: {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peering_flags_reach_a_client_of_another_server() {
    let dir = TempDir::new("peering");
    std::fs::write(dir.0.join("hello.txt"), "via a peer\n").unwrap();
    // Each server must know the other's URL before it starts, so the ports
    // are picked here; another program may take one first, hence retries.
    for attempt in 0..5 {
        let (a, b) = {
            let l1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            (l1.local_addr().unwrap(), l2.local_addr().unwrap())
        };
        let started = tokio::task::block_in_place(|| {
            let peers_of_a = format!("b:token-b:ws://{b}/connect");
            let peers_of_b = format!("a:token-a:ws://{a}/connect");
            let mut sa = Proc::start(
                "server",
                &[
                    "--listen",
                    &a.to_string(),
                    "--id",
                    "a",
                    "--token",
                    "token-a",
                    "--peers",
                    &peers_of_a,
                ],
                None,
            );
            let mut sb = Proc::start(
                "server",
                &[
                    "--listen",
                    &b.to_string(),
                    "--id",
                    "b",
                    "--token",
                    "token-b",
                    "--peers",
                    &peers_of_b,
                ],
                None,
            );
            let ready = |p: &mut Proc| {
                let deadline = Instant::now() + WAIT;
                loop {
                    if p.seen.iter().any(|l| l.starts_with("peering with")) {
                        return true;
                    }
                    if let Ok(l) = p.stdout.recv_timeout(Duration::from_millis(50)) {
                        p.seen.push(l);
                        continue;
                    }
                    if p.child.try_wait().unwrap().is_some() {
                        assert!(p.stderr().contains("already in use"), "{}", p.stderr());
                        return false;
                    }
                    assert!(Instant::now() < deadline, "{} did not start", p.name);
                }
            };
            let ok = ready(&mut sa) && ready(&mut sb);
            ok.then_some((sa, sb))
        });
        let Some((_sa, _sb)) = started else {
            eprintln!("attempt {attempt}: a port was taken, retrying");
            continue;
        };
        let (_dummy, _client, dummy_addr) = tokio::task::block_in_place(|| {
            let mut dummy = Proc::start("dummy", &["--listen", "127.0.0.1:0"], Some(&dir.0));
            let dummy_addr = dummy.address("serving ");
            let client = Proc::start(
                "client",
                &[
                    "--connect",
                    &format!("ws://{a}/connect"),
                    "--allow",
                    "tcp/127.0.0.1:*",
                ],
                None,
            );
            (dummy, client, dummy_addr)
        });
        // The client is connected to server a; ask server b.
        let http = http_client();
        let reply = get_when_connected(
            &http,
            &format!("http://{b}/client/foo/http/{dummy_addr}/hello.txt"),
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body, "via a peer\n");
        return;
    }
    panic!("could not find two free ports");
}

#[test]
fn client_refuses_to_start_without_allow() {
    let mut client = Proc::start("client", &["--connect", "ws://127.0.0.1:9/connect"], None);
    let status = client.exit();
    assert_eq!(status.code(), Some(2));
    let err = client.stderr();
    assert!(err.contains("refusing to start without --allow"), "{err}");
    assert!(err.contains("--allow-all"), "{err}");
}

#[test]
fn server_explains_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut server = Proc::start("server", &["--listen", &addr], None);
    assert!(!server.exit().success());
    let err = server.stderr();
    assert!(
        err.contains(&format!(
            "port {} is already in use",
            taken.local_addr().unwrap().port()
        )),
        "{err}"
    );
    assert!(err.contains("--listen"), "{err}");
    let mut dummy = Proc::start("dummy", &["--listen", &addr], None);
    assert!(!dummy.exit().success());
    assert!(
        dummy.stderr().contains("already in use"),
        "{}",
        dummy.stderr()
    );
}

#[test]
fn client_explains_an_unreachable_server() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let connect = format!("ws://127.0.0.1:{port}/connect");
    let client = Proc::start("client", &["--connect", &connect, "--allow-all"], None);
    client.stderr_contains("cannot reach the server at");
    client.stderr_contains("Is it running?");
}

#[test]
fn client_shows_a_refused_upgrade() {
    let mut server = Proc::start("server", &["--listen", "127.0.0.1:0"], None);
    let addr = server.address("listening on ");
    // The example server's authorizer refuses an empty client id.
    let connect = format!("ws://{addr}/connect");
    let client = Proc::start(
        "client",
        &["--connect", &connect, "--id", "", "--allow-all"],
        None,
    );
    client.stderr_contains("the server refused the tunnel with HTTP 401: failed authentication");
    // A wrong path: the server's 404 text is shown.
    let connect = format!("ws://{addr}/wrong");
    let client = Proc::start("client", &["--connect", &connect, "--allow-all"], None);
    client.stderr_contains("HTTP 404: no route for /wrong");
}

#[test]
fn flag_parsing() {
    use parse::*;
    assert_eq!(normalize_listen(":8123"), "0.0.0.0:8123");
    assert_eq!(normalize_listen("127.0.0.1:8123"), "127.0.0.1:8123");
    assert!(glob_match("tcp/127.0.0.1:*", "tcp/127.0.0.1:8125"));
    assert!(!glob_match("tcp/127.0.0.1:*", "tcp/127.0.0.10:8125"));
    assert!(glob_match("*", ""));
    assert!(glob_match("tcp/*:22", "tcp/10.0.0.5:22"));
    assert!(!glob_match("tcp/*:22", "tcp/10.0.0.5:2222"));
    assert!(glob_match("*/*:8*5", "unix/host:8125"));
    assert!(!glob_match("tcp/127.0.0.1:8125", "tcp/127.0.0.1:81250"));
    let f: ForwardSpec = "127.0.0.1:2222=foo:tcp/127.0.0.1:22".parse().unwrap();
    assert_eq!(
        f,
        ForwardSpec {
            listen: "127.0.0.1:2222".into(),
            client: "foo".into(),
            proto: "tcp".into(),
            address: "127.0.0.1:22".into()
        }
    );
    assert!(":2222=foo:tcp/[::1]:22".parse::<ForwardSpec>().is_ok());
    for bad in [
        "2222=foo:tcp/x:1",
        "127.0.0.1:1=foo",
        "127.0.0.1:1=foo:tcp",
        "=foo:tcp/x:1",
    ] {
        assert!(bad.parse::<ForwardSpec>().is_err(), "{bad}");
    }
    let peers = parse_peers("b:tok:ws://10.0.0.2:8123/connect, c:t2:wss://x/connect").unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[1].url, "wss://x/connect");
    assert!(parse_peers("").unwrap().is_empty());
    assert!(parse_peers("b:tok").is_err());
    let r = parse_client_route("foo/http/127.0.0.1:8125/a/b", Some("timeout=3&q=1")).unwrap();
    assert_eq!(
        (r.client.as_str(), r.host.as_str()),
        ("foo", "127.0.0.1:8125")
    );
    assert_eq!((r.path_and_query.as_str(), r.timeout_secs), ("/a/b?q=1", 3));
    assert_eq!(
        parse_client_route("foo/http/h", None)
            .unwrap()
            .path_and_query,
        "/"
    );
    assert_eq!(
        parse_client_route("foo/http/h", None).unwrap().timeout_secs,
        15
    );
    assert!(parse_client_route("foo/http", None).is_err());
    assert!(parse_client_route("foo/http/h", Some("timeout=x")).is_err());
    assert_eq!(safe_relative_path("/a/./b/").unwrap(), ["a", "b"]);
    assert!(safe_relative_path("/a/../b").is_none());
    assert!(safe_relative_path("/a/%2e%2e/b").is_none());
    assert!(safe_relative_path("/a%5cb").is_none());
    assert!(safe_relative_path("/a%zz").is_none());
    assert_eq!(safe_relative_path("/a%20b").unwrap(), ["a b"]);
    assert_eq!(
        parse_header("X-Team: blue").unwrap(),
        ("X-Team".into(), "blue".into())
    );
    assert!(parse_header("novalue").is_err());
}
