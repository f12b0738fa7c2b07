//! HTTP integration: the tunnel mounted in axum 0.8 and in a plain hyper 1
//! server, and a hyper_util client reaching a real HTTP server behind the
//! agent through `Server::connector`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{Request as AxumRequest, State};
use axum::routing::get;
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use remotedialer_tokio::Server;
use remotedialer_tokio::proto::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Size of the `/big` response: about 2 MB, within one pattern window.
const BIG: usize = 2_000_000;

/// Sends a raw HTTP/1.1 request and returns the status code.
async fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Connects agent `foo` to `url` and proves the tunnel works.
async fn agent_works_through(server: &Server, url: &str) {
    let client = run_client(url, "foo", Config::default());
    client.wait_sessions(1).await;
    wait_for("server session", || server.has_session("foo")).await;
    let echo = echo_server().await;
    let mut s = server.dial("foo", "tcp", &echo.to_string()).await.unwrap();
    write_pattern(&mut s, 3, 200_000).await.unwrap();
    read_pattern(&mut s, 3, 200_000).await.unwrap();
}

async fn axum_connect(State(server): State<Server>, req: AxumRequest) -> Response<Full<Bytes>> {
    server.handle_upgrade(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_in_axum() {
    let server = Server::new(tunnel_id_authorizer);
    let app = axum::Router::new()
        .route("/connect", get(axum_connect))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(server.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    assert_eq!(status_of(addr, "/healthz").await, 200);
    assert_eq!(status_of(addr, "/elsewhere").await, 404);
    // Authorized, but not a WebSocket request.
    assert_eq!(status_of(addr, "/connect").await, 401);
    agent_works_through(&server, &format!("ws://{addr}/connect")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_in_plain_hyper() {
    let server = Server::new(tunnel_id_authorizer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mounted = server.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let server = mounted.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let server = server.clone();
                async move {
                    if req.uri().path() == "/connect" {
                        return Ok::<_, Infallible>(server.handle_upgrade(req).await);
                    }
                    let mut resp = Response::new(Full::new(Bytes::from("not here")));
                    *resp.status_mut() = StatusCode::NOT_FOUND;
                    Ok(resp)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    assert_eq!(status_of(addr, "/elsewhere").await, 404);
    agent_works_through(&server, &format!("ws://{addr}/connect")).await;
}

/// A real HTTP server: `GET /hello/<name>` greets, `GET /big` sends [`BIG`] bytes of
/// pattern, `POST /echo` returns the body.
async fn http_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let svc = service_fn(|req: Request<Incoming>| async move {
                let path = req.uri().path().to_owned();
                let body = if let Some(name) = path.strip_prefix("/hello/") {
                    Bytes::from(format!("hello {name}"))
                } else if path == "/big" {
                    Bytes::from_static(&pattern()[..BIG])
                } else {
                    req.into_body().collect().await?.to_bytes()
                };
                Ok::<_, hyper::Error>(Response::new(Full::new(body)))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_client_through_the_connector() {
    let (srv, agent) = connected_pair().await;
    let target = http_target().await;
    let http = HttpClient::builder(TokioExecutor::new())
        .build::<_, Full<Bytes>>(srv.server.connector("foo"));
    let get = |path: String| {
        let http = http.clone();
        async move {
            let resp = http
                .get(format!("http://{target}{path}").parse().unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap().to_bytes()
        }
    };
    assert_eq!(get("/hello/world".into()).await, "hello world");
    assert_eq!(get("/big".into()).await, pattern()[..BIG]);
    let upload = Bytes::from_static(&pattern()[7..(1 << 20) + 7]);
    let req = Request::post(format!("http://{target}/echo"))
        .body(Full::new(upload.clone()))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), upload);
    // Requests in parallel share the session.
    let many: Vec<_> = (0..16)
        .map(|i| tokio::spawn(get(format!("/hello/{i}"))))
        .collect();
    for (i, t) in many.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), format!("hello {i}"));
    }
    // The pool keeps its connections open through the tunnel.
    let live = agent.session().unwrap().stats().connections;
    assert!((1..=17).contains(&live), "{live} pooled connections");
    // A client key without a session is a connect error.
    let nobody = HttpClient::builder(TokioExecutor::new())
        .build::<_, Full<Bytes>>(srv.server.connector("nobody"));
    let err = nobody
        .get(format!("http://{target}/hello/x").parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}
