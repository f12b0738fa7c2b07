//! Shared helpers for the remotedialer benchmarks.
