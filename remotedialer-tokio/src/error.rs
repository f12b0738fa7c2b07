//! Errors of the tokio adapter: the driver's, shared with the async-std
//! adapter.

pub use remotedialer_driver::{ClientError, DialError};
