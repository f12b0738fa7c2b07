//! The checks both adapters' client builders run before connecting.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use remotedialer_proto::Config;

use crate::error::ClientError;
use crate::tls::{self, TlsRoots};

/// What a client builder collected, to be checked.
#[derive(Debug)]
pub struct ClientSettings<'a, A> {
    /// The server URL as given (`ws://`, `wss://`, `http://`, `https://`).
    pub url: &'a str,
    /// Problems noted while building (e.g. an invalid header).
    pub errors: &'a [String],
    /// The connect authorizer; required.
    pub authorizer: Option<A>,
    /// The core's settings.
    pub session: Config,
    /// A dial timeout set on its own; it wins over `session.dial_timeout`
    /// whichever of the two setters ran last.
    pub dial_timeout: Option<Duration>,
    /// Roots to trust for `wss://` when no complete TLS config was given.
    pub roots: &'a TlsRoots,
    /// A complete TLS config, overriding `roots`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The checked, resolved settings.
#[derive(Debug)]
pub struct CheckedClient<A> {
    /// The connect authorizer.
    pub authorizer: A,
    /// The server URL, normalized to `ws://` or `wss://`.
    pub url: Uri,
    /// The TLS config, for `wss://` only.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The core's settings, with the dial timeout applied.
    pub session: Config,
}

impl<A> ClientSettings<'_, A> {
    /// Refuses a client without a connect authorizer (the library has no
    /// allow-all default), an invalid URL, header or session config, and
    /// resolves the TLS config for `wss://`.
    pub fn check(self) -> Result<CheckedClient<A>, ClientError> {
        if let Some(e) = self.errors.first() {
            return Err(ClientError::Config(e.clone()));
        }
        let authorizer = self.authorizer.ok_or_else(|| {
            ClientError::Config(
                "no connect authorizer: choose which targets the server may dial".into(),
            )
        })?;
        let mut session = self.session;
        if let Some(timeout) = self.dial_timeout {
            session.dial_timeout = timeout;
        }
        session
            .validate()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let url = normalize_url(self.url)?;
        let tls = match (self.tls, url.scheme_str() == Some("wss")) {
            (Some(cfg), true) => Some(cfg),
            (None, true) => Some(
                tls::client_config(self.roots).map_err(|e| ClientError::Config(e.to_string()))?,
            ),
            // A TLS config given for a `ws://` URL is not used: the scheme
            // decides, in both adapters.
            (_, false) => None,
        };
        Ok(CheckedClient {
            authorizer,
            url,
            tls,
            session,
        })
    }
}

/// `http(s)://` becomes `ws(s)://`; anything but a `ws://` or `wss://` URL
/// with a host is refused.
pub fn normalize_url(url: &str) -> Result<Uri, ClientError> {
    let url = if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_owned()
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| ClientError::Config(format!("invalid URL {url}: {e}")))?;
    match uri.scheme_str() {
        Some("ws") | Some("wss") if uri.host().is_some() => Ok(uri),
        _ => Err(ClientError::Config(format!(
            "URL must be ws:// or wss:// with a host: {url}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{ClientSettings, normalize_url};
    use crate::tls::TlsRoots;

    static ROOTS: TlsRoots = TlsRoots::WebPki;

    fn settings(url: &str) -> ClientSettings<'_, ()> {
        ClientSettings {
            url,
            errors: &[],
            authorizer: Some(()),
            session: remotedialer_proto::Config {
                dial_timeout: Duration::from_secs(7),
                ..Default::default()
            },
            dial_timeout: None,
            roots: &ROOTS,
            tls: None,
        }
    }

    #[test]
    fn a_dial_timeout_set_on_its_own_wins_over_the_session_config() {
        assert_eq!(
            settings("ws://h/c").check().unwrap().session.dial_timeout,
            Duration::from_secs(7)
        );
        let mut s = settings("ws://h/c");
        s.dial_timeout = Some(Duration::from_secs(3));
        assert_eq!(
            s.check().unwrap().session.dial_timeout,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn plain_urls_get_no_tls_even_with_a_config() {
        let mut s = settings("ws://h/c");
        s.tls = Some(crate::tls::client_config(&TlsRoots::default()).unwrap());
        assert!(s.check().unwrap().tls.is_none());
        assert!(settings("wss://h/c").check().unwrap().tls.is_some());
    }

    #[test]
    fn urls_are_normalized_or_refused() {
        assert_eq!(
            normalize_url("http://h:1/c").unwrap().to_string(),
            "ws://h:1/c"
        );
        assert_eq!(
            normalize_url("https://h/c").unwrap().to_string(),
            "wss://h/c"
        );
        assert!(normalize_url("ftp://h/c").is_err());
        assert!(normalize_url("ws:///nohost").is_err());
    }
}
