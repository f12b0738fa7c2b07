//! Reaching the server through an HTTP proxy: which proxy the environment
//! chooses (like Go's `http.ProxyFromEnvironment`), and the `CONNECT`
//! exchange as text in and bytes out. Adapters own the socket.

use std::io;
use std::net::IpAddr;

use http::Uri;

/// The most response-head bytes read from a proxy before giving up.
pub const MAX_RESPONSE_HEAD: usize = 16 << 10;

/// The proxy to use for `target_host` given the scheme (`ws`/`wss`), from
/// `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` (upper or lower case). As in Go,
/// `localhost` and loopback addresses never use a proxy.
pub fn proxy_for(secure: bool, target_host: &str, target_port: u16) -> Option<Uri> {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let proxy = if secure {
        var(&["HTTPS_PROXY", "https_proxy"])
    } else {
        var(&["HTTP_PROXY", "http_proxy"])
    }?;
    let no_proxy = var(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
    if bypasses(target_host, target_port, &no_proxy) {
        return None;
    }
    let proxy = if proxy.contains("://") {
        proxy
    } else {
        format!("http://{proxy}")
    };
    proxy.parse().ok()
}

/// Go's `NO_PROXY` rules: `*` matches everything; entries are host names
/// (matching the host and its subdomains; a leading `.` matches subdomains
/// only), IP addresses or CIDR ranges, each optionally with `:port`.
pub fn bypasses(host: &str, port: u16, no_proxy: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host == "localhost" {
        return true;
    }
    let ip: Option<IpAddr> = host.parse().ok();
    if ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    for entry in no_proxy.split(',').map(|e| e.trim().to_ascii_lowercase()) {
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return true;
        }
        if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
            if let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>())
                && in_cidr(ip, net, bits)
            {
                return true;
            }
            continue;
        }
        let (name, entry_port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => {
                (h.to_owned(), p.parse::<u16>().ok())
            }
            _ => (entry.clone(), None),
        };
        if entry_port.is_some_and(|p| p != port) {
            continue;
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if let Some(suffix) = name.strip_prefix('.') {
            if host.ends_with(&format!(".{suffix}")) {
                return true;
            }
        } else if host == name || host.ends_with(&format!(".{name}")) {
            return true;
        }
    }
    false
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The proxy's own host (without brackets) and port. Only `http://` proxies
/// are supported.
pub fn proxy_endpoint(proxy: &Uri) -> io::Result<(String, u16)> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_owned());
    let host = proxy
        .host()
        .ok_or_else(|| invalid("proxy URL has no host"))?;
    if proxy.scheme_str() == Some("https") {
        return Err(invalid(
            "HTTPS proxies are not supported; use an http:// proxy URL",
        ));
    }
    let port = proxy.port_u16().unwrap_or(80);
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// The `CONNECT` request head asking `proxy` for a tunnel to `host:port`,
/// with Basic credentials when the proxy URL has user info.
pub fn connect_request(proxy: &Uri, host: &str, port: u16) -> String {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(userinfo) = proxy
        .authority()
        .and_then(|a| a.as_str().rsplit_once('@'))
        .map(|(u, _)| u)
    {
        // As Go's url.User: the user and password are percent-decoded
        // before they are joined and encoded.
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let credentials = [
            percent_decode(user),
            b":".to_vec(),
            percent_decode(password),
        ]
        .concat();
        request.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(&credentials)
        ));
    }
    request.push_str("\r\n");
    request
}

/// Whether `head` holds the complete response head. Read the proxy's answer
/// a byte at a time until this holds, so nothing past the head (the
/// server's first bytes) is consumed; give up past [`MAX_RESPONSE_HEAD`].
pub fn response_head_complete(head: &[u8]) -> bool {
    head.ends_with(b"\r\n\r\n")
}

/// Checks a complete response head: any 2xx status opens the tunnel.
pub fn check_connect_response(head: &[u8]) -> io::Result<()> {
    let status_line =
        String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default())
            .into_owned();
    let ok = status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "proxy refused CONNECT: {status_line}"
        )))
    }
}

/// The error for a response head longer than [`MAX_RESPONSE_HEAD`].
pub fn response_head_too_long() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "proxy response head too long")
}

/// `%XX` sequences to bytes; anything else (including a malformed `%`) as is.
fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(char::from(TABLE.get(idx).copied().unwrap_or(b'=')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_rules() {
        assert!(bypasses("localhost", 80, ""));
        assert!(bypasses("127.0.0.1", 80, ""));
        assert!(bypasses("anything", 80, "*"));
        assert!(bypasses("api.example.com", 443, "example.com"));
        assert!(bypasses("example.com", 443, "example.com"));
        assert!(!bypasses("example.com", 443, ".example.com"));
        assert!(bypasses("a.example.com", 443, ".example.com"));
        assert!(!bypasses("notexample.com", 443, "example.com"));
        assert!(bypasses("10.1.2.3", 443, "10.0.0.0/8"));
        assert!(!bypasses("11.1.2.3", 443, "10.0.0.0/8"));
        assert!(bypasses("example.com", 8443, "example.com:8443"));
        assert!(!bypasses("example.com", 443, "example.com:8443"));
    }

    #[test]
    fn proxy_credentials_are_percent_decoded_as_in_go() {
        let proxy: Uri = "http://us%65r:p%40ss%3A@proxy.local:3128".parse().unwrap();
        let head = connect_request(&proxy, "h", 1);
        // base64("user:p@ss:")
        assert!(
            head.contains("Proxy-Authorization: Basic dXNlcjpwQHNzOg==\r\n"),
            "{head}"
        );
        assert_eq!(percent_decode("a%2"), b"a%2");
        assert_eq!(percent_decode("%zz%41"), b"%zzA");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn connect_exchange() {
        let proxy: Uri = "http://user:pass@proxy.local:3128"
            .parse()
            .unwrap_or_default();
        assert_eq!(
            proxy_endpoint(&proxy).ok(),
            Some(("proxy.local".to_owned(), 3128))
        );
        assert_eq!(
            connect_request(&proxy, "::1", 443),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\
             Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n"
        );
        let https: Uri = "https://proxy.local".parse().unwrap_or_default();
        assert!(proxy_endpoint(&https).is_err());
        assert!(!response_head_complete(b"HTTP/1.1 200 OK\r\n"));
        assert!(response_head_complete(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(check_connect_response(b"HTTP/1.1 200 Connection established\r\n\r\n").is_ok());
        let refused = check_connect_response(b"HTTP/1.1 407 Proxy Auth\r\n\r\n");
        assert!(refused.is_err_and(|e| e.to_string().contains("407")));
    }
}
