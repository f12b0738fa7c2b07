//! `wss://`: `Server::serve_tls` with a self-signed certificate (rcgen) and
//! clients trusting it, or not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::net::SocketAddr;

use common::*;
use remotedialer_tokio::proto::Config;
use remotedialer_tokio::tls::{self, TlsRoots};
use remotedialer_tokio::{ClientBuilder, ClientError, Server};
use tokio::net::TcpListener;

/// A self-signed certificate for 127.0.0.1 and localhost, named
/// `common_name`: (cert PEM, key PEM).
fn self_signed(common_name: &str) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A TLS tunnel server; returns it, its address and its certificate PEM.
async fn tls_server() -> (Server, SocketAddr, String) {
    let (cert, key) = self_signed("tunnel server");
    let config = tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(tunnel_id_authorizer);
    let s = server.clone();
    tokio::spawn(async move { s.serve_tls(listener, config).await });
    (server, addr, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_custom_ca() {
    let (server, addr, cert) = tls_server().await;
    // By IP, and by name with an https:// URL (normalized to wss://).
    for (id, url) in [
        ("by-ip", format!("wss://127.0.0.1:{}/connect", addr.port())),
        (
            "by-name",
            format!("https://localhost:{}/connect", addr.port()),
        ),
    ] {
        let client = run_client_with(&url, id, Config::default(), |b| {
            b.tls_roots(TlsRoots::CustomCa(cert.clone().into_bytes()))
        });
        client.wait_sessions(1).await;
        wait_for("server session", || server.has_session(id)).await;
        let echo = echo_server().await;
        let mut s = server.dial(id, "tcp", &echo.to_string()).await.unwrap();
        write_pattern(&mut s, 11, 300_000).await.unwrap();
        read_pattern(&mut s, 11, 300_000).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_with_a_clear_error() {
    let (server, addr, _) = tls_server().await;
    let (other_ca, _) = self_signed("some other CA");
    let client = ClientBuilder::new(format!("wss://127.0.0.1:{}/connect", addr.port()))
        .header("X-Tunnel-ID", "foo")
        .connect_authorizer(|_, _| true)
        .tls_roots(TlsRoots::CustomCa(other_ca.into_bytes()))
        .proxy_from_env(false)
        .build()
        .unwrap();
    let err = client.connect_once().await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ClientError::Connect { .. } | ClientError::Handshake { .. }
        ),
        "{err:?}"
    );
    assert!(text.contains("invalid peer certificate"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(!server.has_session("foo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_websocket_to_a_tls_port_fails_and_the_port_serves_on() {
    let (server, addr, cert) = tls_server().await;
    let plain = client(&format!("ws://{addr}/connect"), "plain", Config::default());
    let err = plain.connect_once().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Connect { .. } | ClientError::Handshake { .. }
        ),
        "{err:?}"
    );
    assert!(!server.has_session("plain"));
    let good = run_client_with(
        &format!("wss://{addr}/connect"),
        "good",
        Config::default(),
        |b| b.tls_roots(TlsRoots::CustomCa(cert.into_bytes())),
    );
    good.wait_sessions(1).await;
    wait_for("server session", || server.has_session("good")).await;
}

#[test]
fn bad_pem_is_a_configuration_error() {
    let err = tls::server_config(b"junk", b"junk").unwrap_err();
    assert!(err.to_string().contains("no certificate found"), "{err}");
    let err = ClientBuilder::new("wss://127.0.0.1:1/connect")
        .connect_authorizer(|_, _| true)
        .tls_roots(TlsRoots::CustomCa(b"junk".to_vec()))
        .build()
        .unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains("no certificate found in CA PEM"),
        "{err}"
    );
}
