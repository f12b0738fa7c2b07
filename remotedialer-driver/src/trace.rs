//! The data-trace mode: every message logged, switched on by
//! `REMOTEDIALER_TRACE_DATA=true` or Go's `CATTLE_TUNNEL_DATA_DEBUG=true`.

use bytes::Bytes;

use crate::driver::describe;

/// Whether the environment asks for every message to be logged.
pub fn data_trace_enabled() -> bool {
    ["REMOTEDIALER_TRACE_DATA", "CATTLE_TUNNEL_DATA_DEBUG"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true")))
}

#[derive(Debug)]
pub(crate) struct DataTrace {
    client_key: Option<String>,
}

impl DataTrace {
    pub(crate) fn from_env(client_key: &str) -> Self {
        DataTrace {
            client_key: data_trace_enabled().then(|| client_key.to_owned()),
        }
    }

    pub(crate) fn received(&self, bytes: &Bytes) {
        if let Some(key) = &self.client_key {
            tracing::info!(client = %key, "<- {}", describe(bytes));
        }
    }

    pub(crate) fn sent(&self, bytes: &Bytes) {
        if let Some(key) = &self.client_key {
            tracing::info!(client = %key, "-> {}", describe(bytes));
        }
    }
}
