//! The dummy target: a static file server for one directory, as Go's
//! example `dummy` (`http.FileServer`), streaming files and logging each
//! request with its duration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::{Method, StatusCode, header};
use tokio::io::AsyncReadExt;

use super::parse::safe_relative_path;
use super::serve::{Logged, human_bytes};

/// Serves the files under `root`.
pub fn router(root: PathBuf) -> Router {
    Router::new()
        .fallback(serve_path)
        .with_state(Arc::new(root))
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}

async fn serve_path(State(root): State<Arc<PathBuf>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = respond(&root, &method, &path).await;
    let status = response.status();
    let (parts, body) = response.into_parts();
    let len = if method == Method::HEAD {
        Some(0)
    } else {
        parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    let mut body = Logged::new(body, move |t| {
        let end = if t.complete { "" } else { " (aborted)" };
        tracing::info!(
            "{method} {path} {} {} in {:.1?}{end}",
            status.as_u16(),
            human_bytes(t.bytes),
            started.elapsed()
        );
    });
    if let Some(len) = len {
        body = body.expect_len(len);
    }
    Response::from_parts(parts, Body::new(body))
}

async fn respond(root: &Path, method: &Method, url_path: &str) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let Some(parts) = safe_relative_path(url_path) else {
        return plain(StatusCode::BAD_REQUEST, "invalid path");
    };
    let mut path = root.to_path_buf();
    path.extend(&parts);
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return plain(StatusCode::NOT_FOUND, "404 page not found");
        }
        Err(e) => return plain(StatusCode::FORBIDDEN, &e.to_string()),
    };
    if meta.is_dir() {
        if !url_path.ends_with('/') {
            // Relative links in a listing need the trailing slash.
            let location = format!("{url_path}/");
            return (
                StatusCode::MOVED_PERMANENTLY,
                [(header::LOCATION, location)],
            )
                .into_response();
        }
        let index = path.join("index.html");
        if tokio::fs::metadata(&index).await.is_ok_and(|m| m.is_file()) {
            return file(&index, method).await;
        }
        return listing(&path).await;
    }
    file(&path, method).await
}

async fn file(path: &Path, method: &Method) -> Response {
    let f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => return plain(StatusCode::FORBIDDEN, &e.to_string()),
    };
    let len = match f.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let headers = [
        (header::CONTENT_TYPE, content_type(path).to_owned()),
        (header::CONTENT_LENGTH, len.to_string()),
    ];
    if method == Method::HEAD {
        return (headers, Body::empty()).into_response();
    }
    // Read in 64 KiB pieces as the client takes them: memory stays flat
    // whatever the file size.
    let chunks = futures_util::stream::try_unfold(f, |mut f| async move {
        let mut buf = BytesMut::with_capacity(64 << 10);
        match f.read_buf(&mut buf).await? {
            0 => Ok::<_, std::io::Error>(None),
            _ => Ok(Some((buf.freeze(), f))),
        }
    });
    (headers, Body::from_stream(chunks)).into_response()
}

async fn listing(dir: &Path) -> Response {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) => return plain(StatusCode::FORBIDDEN, &e.to_string()),
    };
    let mut names = Vec::new();
    while let Ok(Some(entry)) = entries.next_entry().await {
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    let mut html = String::from("<!doctype html>\n<pre>\n");
    for name in names {
        let escaped = name
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        html.push_str(&format!("<a href=\"{escaped}\">{escaped}</a>\n"));
    }
    html.push_str("</pre>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "md" | "log") => "text/plain; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}
