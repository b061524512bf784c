//! Runtime instruction-set detection shared by the hand-dispatched kernels ([`super::lse`],
//! [`super::dot`]). Each kernel compiles one body per level (via `#[target_feature]`) and picks the
//! one the token it is given names; the binary itself assumes only the target baseline.
//!
//! Soundness: an [`Isa`] is a proof that the running CPU executes its level. Its field is private,
//! so the only ways to obtain one are [`Isa::detect`] and [`Isa::available`] (which consult the CPU)
//! and [`Isa::portable`] (the baseline, always executable). Safe code therefore can never ask a
//! kernel to run instructions the CPU lacks; the `unsafe` per-level bodies are private to their
//! kernel modules and are only reached through a match on an `Isa`.

use std::sync::OnceLock;

/// An instruction-set level the running CPU is known to support (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa(Level);

/// The name of a level. Holding a `Level` proves nothing; only an [`Isa`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 F + DQ + VL (and FMA).
    Avx512,
    /// AVX2 + FMA.
    Avx2,
    /// The compilation target's baseline (SSE2 on x86-64).
    Portable,
}

impl Isa {
    /// Every level the running CPU can execute, best first (always ends with the portable one).
    pub fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("fma") {
                v.push(Isa(Level::Avx512));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Isa(Level::Avx2));
            }
        }
        v.push(Isa(Level::Portable));
        v
    }

    /// The best available level (detected once per process).
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| Isa::available()[0])
    }

    /// The baseline level (executable everywhere).
    pub fn portable() -> Isa {
        Isa(Level::Portable)
    }

    /// Which level this token stands for.
    #[inline(always)]
    pub fn level(self) -> Level {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_lists_the_baseline_last_and_picks_the_first() {
        let v = Isa::available();
        assert_eq!(*v.last().unwrap(), Isa::portable());
        assert_eq!(Isa::detect(), v[0]);
        #[cfg(target_arch = "x86_64")]
        for isa in &v {
            match isa.level() {
                Level::Avx512 => assert!(is_x86_feature_detected!("avx512f")),
                Level::Avx2 => assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")),
                Level::Portable => {}
            }
        }
    }
}
