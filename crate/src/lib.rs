//! dbnorm — hubness reduction for cross-modal retrieval.
//!
//! Pure Rust: `kernels` (similarity GEMM, SIMD exp / log-sum-exp, top-k), `methods` (one file per
//! normaliser), `eval` (retrieval and hubness metrics). None of these import napi; the `#[napi]`
//! glue lives in `binding` behind the default `binding` feature.
//!
//! Conventions everywhere: matrices are row-major `f32` slices with explicit `rows`/`cols`;
//! β is an inverse temperature (it multiplies similarities); higher scores are better.

pub mod bank;
pub mod control;
pub mod error;
pub mod eval;
pub mod kernels;
pub mod matrix;
pub mod methods;
pub mod normalizer;
pub mod rows;
pub mod npy;
pub mod mapped;
pub mod fileio;
pub mod gallery;
pub mod persist;
pub mod shard;
pub mod tune;

#[cfg(feature = "binding")]
mod binding;

pub use error::{Error, ErrorCode, Result};
pub use matrix::MatRef;
