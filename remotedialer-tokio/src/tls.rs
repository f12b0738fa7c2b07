//! rustls configurations (ring provider) for clients and servers; shared
//! with the async-std adapter, defined in `remotedialer_driver::tls`.

pub use remotedialer_driver::tls::{
    TlsError, TlsRoots, client_config, server_config, server_config_from_files,
};
