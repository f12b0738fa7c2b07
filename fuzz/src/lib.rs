//! Fuzz targets for remotedialer-proto. The bodies live in [`bodies`], a
//! plain file that `remotedialer-proto/tests/fuzz_corpus.rs` also includes to
//! replay the committed corpus in a normal `cargo test`.

pub mod bodies;
