//! Half-precision storage of `f32` rows: rounding to 16 bits (once, when a gallery is stored) and
//! widening back to `f32` (on every read of a stored chunk, so this is the hot direction).
//!
//! Two 16-bit formats ([`HalfKind`]): IEEE binary16 (`f16`: 5 exponent bits, 10 mantissa bits,
//! relative step 2⁻¹¹, largest finite 65504) and bfloat16 (`bf16`: the top half of an `f32`, 8
//! exponent bits, 7 mantissa bits, relative step 2⁻⁸). Widening is exact in both formats, so every
//! dispatched variant of [`widen_with`] returns bit-identical values to the scalar reference
//! [`widen_reference`] (tested over tail lengths). Rounding ([`narrow`]) is round-to-nearest-even by
//! the `half` crate and is not on the search path.
//!
//! Dispatch is at run time ([`Isa`]): AVX-512F (`vcvtph2ps` 16 lanes for f16; zero-extend + shift
//! for bf16), AVX2 with F16C (8 lanes), and the portable scalar loop.

use crate::kernels::isa::{Isa, Level};

/// The 16-bit format of stored rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfKind {
    /// IEEE 754 binary16.
    F16,
    /// bfloat16 (truncated-exponent-preserving `f32`).
    Bf16,
}

impl HalfKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HalfKind::F16 => "float16",
            HalfKind::Bf16 => "bfloat16",
        }
    }

    /// Largest finite magnitude the format holds.
    pub fn max_finite(self) -> f32 {
        match self {
            HalfKind::F16 => 65504.0,
            HalfKind::Bf16 => half::bf16::MAX.to_f32(),
        }
    }
}

/// Rounds `src` to `kind` (round to nearest, ties to even) into `dst` (same length). Values beyond
/// [`HalfKind::max_finite`] become ±Inf: callers check the range first.
pub fn narrow(kind: HalfKind, src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "narrow: lengths differ");
    match kind {
        HalfKind::F16 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = half::f16::from_f32(s).to_bits();
            }
        }
        HalfKind::Bf16 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = half::bf16::from_f32(s).to_bits();
            }
        }
    }
}

/// Scalar reference of [`widen_with`]: exact widening, one element at a time.
pub fn widen_reference(kind: HalfKind, src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen: lengths differ");
    match kind {
        HalfKind::F16 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = half::f16::from_bits(s).to_f32();
            }
        }
        HalfKind::Bf16 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f32::from_bits((s as u32) << 16);
            }
        }
    }
}

/// Whether the CPU has F16C (checked once; the AVX2 level alone does not imply it).
#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    static F16C: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *F16C.get_or_init(|| is_x86_feature_detected!("f16c"))
}

/// Widens `src` (16-bit `kind` values) into `dst` (same length) with the kernel of level `isa`.
pub fn widen_with(isa: Isa, kind: HalfKind, src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen: lengths differ");
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` of level Avx512 proves AVX-512F (see `isa`); lengths are equal (asserted).
        Level::Avx512 => unsafe { x86::widen_avx512(kind, src, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` of level Avx2 proves AVX2; F16C is checked here for the f16 path.
        Level::Avx2 if kind == HalfKind::Bf16 || has_f16c() => unsafe { x86::widen_avx2(kind, src, dst) },
        _ => widen_reference(kind, src, dst),
    }
}

/// [`widen_with`] at the best level of the running CPU.
#[inline]
pub fn widen(kind: HalfKind, src: &[u16], dst: &mut [f32]) {
    widen_with(Isa::detect(), kind, src, dst)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{widen_reference, HalfKind};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F; `src.len() == dst.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn widen_avx512(kind: HalfKind, src: &[u16], dst: &mut [f32]) {
        let n = src.len();
        let body = n - n % 16;
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        match kind {
            HalfKind::F16 => {
                while i < body {
                    // SAFETY: i + 16 ≤ n for both slices.
                    let h = _mm256_loadu_si256(s.add(i) as *const __m256i);
                    _mm512_storeu_ps(d.add(i), _mm512_cvtph_ps(h));
                    i += 16;
                }
            }
            HalfKind::Bf16 => {
                while i < body {
                    let h = _mm256_loadu_si256(s.add(i) as *const __m256i);
                    let w = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h));
                    _mm512_storeu_si512(d.add(i) as *mut __m512i, w);
                    i += 16;
                }
            }
        }
        widen_reference(kind, &src[body..], &mut dst[body..]);
    }

    /// # Safety
    /// The CPU must support AVX2, and F16C when `kind` is `F16`; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn widen_avx2(kind: HalfKind, src: &[u16], dst: &mut [f32]) {
        let n = src.len();
        let body = n - n % 8;
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        match kind {
            HalfKind::F16 => {
                while i < body {
                    // SAFETY: i + 8 ≤ n for both slices.
                    let h = _mm_loadu_si128(s.add(i) as *const __m128i);
                    _mm256_storeu_ps(d.add(i), _mm256_cvtph_ps(h));
                    i += 8;
                }
            }
            HalfKind::Bf16 => {
                while i < body {
                    let h = _mm_loadu_si128(s.add(i) as *const __m128i);
                    let w = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
                    _mm256_storeu_si256(d.add(i) as *mut __m256i, w);
                    i += 8;
                }
            }
        }
        widen_reference(kind, &src[body..], &mut dst[body..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 16-bit pattern (all finite values, ±Inf, NaNs, subnormals), in a shuffled order.
    fn all_patterns() -> Vec<u16> {
        let mut v: Vec<u16> = (0..=u16::MAX).collect();
        let mut s = 0x9e37_79b9u32;
        for i in (1..v.len()).rev() {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            v.swap(i, s as usize % (i + 1));
        }
        v
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn every_dispatched_variant_matches_the_scalar_reference_over_tail_lengths() {
        let pats = all_patterns();
        for kind in [HalfKind::F16, HalfKind::Bf16] {
            let mut want = vec![0f32; pats.len()];
            widen_reference(kind, &pats, &mut want);
            for isa in Isa::available() {
                let mut got = vec![0f32; pats.len()];
                widen_with(isa, kind, &pats, &mut got);
                assert!(want.iter().zip(&got).all(|(&a, &b)| same(a, b)), "{kind:?} {isa:?}: all patterns");
                // tails: every length 0..=40 at several (unaligned) offsets
                for off in [0usize, 1, 3, 7, 13] {
                    for len in 0..=40 {
                        let src = &pats[off..off + len];
                        let mut w = vec![-1f32; len];
                        let mut g = vec![-2f32; len];
                        widen_reference(kind, src, &mut w);
                        widen_with(isa, kind, src, &mut g);
                        assert!(w.iter().zip(&g).all(|(&a, &b)| same(a, b)), "{kind:?} {isa:?} off {off} len {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn narrow_then_widen_round_trips_and_bounds_the_error() {
        let v: Vec<f32> = (0..4099).map(|i| ((i as f32) * 0.37).sin() * 0.2).collect();
        for (kind, rel) in [(HalfKind::F16, 2f32.powi(-11)), (HalfKind::Bf16, 2f32.powi(-8))] {
            let mut h = vec![0u16; v.len()];
            narrow(kind, &v, &mut h);
            let mut back = vec![0f32; v.len()];
            widen(kind, &h, &mut back);
            for (&x, &y) in v.iter().zip(&back) {
                // relative error of round-to-nearest, or an absolute one below the normal range
                assert!((x - y).abs() <= rel * x.abs() + 6.0e-8, "{kind:?}: {x} → {y}");
            }
            // values already representable survive a second round trip exactly
            let mut h2 = vec![0u16; v.len()];
            narrow(kind, &back, &mut h2);
            assert_eq!(h, h2, "{kind:?}");
        }
        assert_eq!(HalfKind::F16.max_finite(), 65504.0);
    }
}
