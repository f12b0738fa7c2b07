//! remotedialer over runtime-neutral async I/O, for async-std and smol.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
