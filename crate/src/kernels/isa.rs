//! Runtime instruction-set detection shared by the hand-dispatched kernels ([`super::lse`],
//! [`super::dot`]). Each kernel compiles one body per [`Isa`] (via `#[target_feature]`) and picks
//! the best one the running CPU supports; the binary itself assumes only the target baseline.

use std::sync::OnceLock;

/// An instruction-set level a kernel variant is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F + DQ + VL (and FMA).
    Avx512,
    /// AVX2 + FMA.
    Avx2,
    /// The compilation target's baseline (SSE2 on x86-64).
    Portable,
}

impl Isa {
    /// Every level the running CPU can execute, best first.
    pub fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
        }
        v.push(Isa::Portable);
        v
    }

    /// The best available level (detected once per process).
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| Isa::available()[0])
    }
}
