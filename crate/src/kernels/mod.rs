//! Pure numeric kernels: no napi, no method math.
//!
//! - [`dot`]: few-queries / gathered inner products for the latency path (runtime-dispatched SIMD).
//! - [`fused`]: the bank-statistics product with its epilogue fused (own per-ISA micro-kernels, packed operands).
//! - [`gemm`]: `A·Bᵀ` tiles for row-major `f32` (the `gemm` crate, runtime-dispatched SIMD).
//! - [`similarity`]: cosine / dot similarity, row normalisation, the parallel tile driver.
//! - [`lse`]: streaming log-sum-exp in `f64` with a SIMD `exp` (runtime-dispatched).
//! - [`half`]: float16 / bfloat16 rounding and widening of stored gallery rows (runtime-dispatched SIMD).
//! - [`topk`]: running top-k with the library's tie rule (score desc, index asc).

pub mod dot;
pub mod fused;
pub mod gemm;
pub mod half;
pub mod isa;
pub mod lse;
pub mod similarity;
pub mod topk;
