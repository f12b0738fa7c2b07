//! rustls configurations (ring provider) for clients and servers, the same
//! as the tokio adapter's (`remotedialer_driver::tls`); the streams are
//! futures-rustls.

pub use remotedialer_driver::tls::{
    TlsError, TlsRoots, client_config, server_config, server_config_from_files,
};
