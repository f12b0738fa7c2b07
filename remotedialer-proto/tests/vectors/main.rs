//! Golden vectors from the Go reference implementation (`shared/vectors/`):
//! byte-exact encoding, Go's decoding decisions, how a session answers each
//! hostile input, the recorded live session, and the scenarios.
//!
//! Where we deliberately differ from Go, the test says so in a comment marked
//! `DEVIATION` and asserts our behaviour instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod decode_serve;
mod encode;
mod load;
mod scenarios;
mod sessions;
mod transcript;
