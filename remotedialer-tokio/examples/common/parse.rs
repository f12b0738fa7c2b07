//! Flag parsing shared by the examples. Plain std only, so that
//! `tests/examples.rs` can include this file and test it directly.

/// Go's `:8123` means every interface; Rust's resolver wants a host.
pub fn normalize_listen(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_owned(),
    }
}

/// `*` matches any run of characters (including none); everything else
/// matches itself. Patterns are matched against `proto/address`, e.g.
/// `tcp/127.0.0.1:*` against `tcp/127.0.0.1:8125`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// A `--header K:V` value.
pub fn parse_header(spec: &str) -> Result<(String, String), String> {
    match spec.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!(
            "invalid --header {spec:?}: expected NAME:VALUE, e.g. --header X-Team:blue"
        )),
    }
}

/// One `--forward LISTEN=CLIENT:PROTO/ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Where the server listens (`:PORT` or `HOST:PORT`).
    pub listen: String,
    /// The client (agent) to dial through.
    pub client: String,
    /// e.g. `tcp`.
    pub proto: String,
    /// e.g. `127.0.0.1:22`, as the agent resolves it.
    pub address: String,
}

impl std::str::FromStr for ForwardSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "invalid --forward {spec:?}: expected LISTEN=CLIENT:PROTO/ADDRESS, \
                 e.g. --forward 127.0.0.1:2222=foo:tcp/127.0.0.1:22"
            )
        };
        let (listen, target) = spec.split_once('=').ok_or_else(usage)?;
        let (client, rest) = target.split_once(':').ok_or_else(usage)?;
        let (proto, address) = rest.split_once('/').ok_or_else(usage)?;
        if [listen, client, proto, address]
            .iter()
            .any(|s| s.is_empty())
            || !listen.contains(':')
        {
            return Err(usage());
        }
        Ok(ForwardSpec {
            listen: listen.to_owned(),
            client: client.to_owned(),
            proto: proto.to_owned(),
            address: address.to_owned(),
        })
    }
}

/// One peer of `--peers id:token:url,...` (Go's format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer server's id (its `--id`).
    pub id: String,
    /// The peer server's token (its `--token`): what it presents to us.
    pub token: String,
    /// Where to reach the peer, e.g. `ws://10.0.0.2:8123/connect`.
    pub url: String,
}

/// Parses `--peers`. Unlike Go, which skips malformed entries silently, a
/// malformed entry is an error.
pub fn parse_peers(list: &str) -> Result<Vec<PeerSpec>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(id), Some(token), Some(url))
                    if !id.is_empty() && !token.is_empty() && url.contains("://") =>
                {
                    Ok(PeerSpec {
                        id: id.to_owned(),
                        token: token.to_owned(),
                        url: url.to_owned(),
                    })
                }
                _ => Err(format!(
                    "invalid --peers entry {entry:?}: expected id:token:url, \
                     e.g. --peers second:secret:ws://10.0.0.2:8123/connect"
                )),
            }
        })
        .collect()
}

/// The `/client/{id}/{scheme}/{host}/{path...}` route: what to fetch, through
/// which client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRoute {
    /// The client (agent) key.
    pub client: String,
    /// `http` (the only scheme the example proxies).
    pub scheme: String,
    /// `host:port` as the agent resolves it.
    pub host: String,
    /// The path with its leading `/` and the query (without `timeout`).
    pub path_and_query: String,
    /// `?timeout=` seconds (default 15, as Go).
    pub timeout_secs: u64,
}

/// Parses the part of the request path after `/client/`, and the query.
pub fn parse_client_route(rest: &str, query: Option<&str>) -> Result<ClientRoute, String> {
    let usage = "expected /client/{id}/{scheme}/{host}/{path...}, \
                 e.g. /client/foo/http/127.0.0.1:8125/index.html";
    let mut parts = rest.splitn(4, '/');
    let (client, scheme, host) = match (parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(s), Some(h)) if !c.is_empty() && !s.is_empty() && !h.is_empty() => (c, s, h),
        _ => return Err(usage.to_owned()),
    };
    let path = parts.next().unwrap_or("");
    let mut timeout_secs = 15;
    let mut kept = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("timeout=") {
            Some(v) => {
                timeout_secs = v
                    .parse()
                    .map_err(|_| format!("invalid timeout {v:?}: expected whole seconds"))?
            }
            None => kept.push(pair),
        }
    }
    let mut path_and_query = format!("/{path}");
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    Ok(ClientRoute {
        client: client.to_owned(),
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        path_and_query,
        timeout_secs,
    })
}

/// Decodes `%XX` escapes; `None` for a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}

/// The safe relative path components of a URL path: `None` when the path
/// could leave the served directory (`..`, backslashes, NUL, bad escapes).
pub fn safe_relative_path(url_path: &str) -> Option<Vec<String>> {
    let decoded = String::from_utf8(percent_decode(url_path)?).ok()?;
    let mut parts = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s if s.contains('\\') || s.contains('\0') => return None,
            s => parts.push(s.to_owned()),
        }
    }
    Some(parts)
}
