//! Errors of the async-std/smol adapter: the driver's, shared with the tokio
//! adapter.

pub use remotedialer_driver::{ClientError, DialError};
