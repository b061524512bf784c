//! Inner products for the latency path — a few queries against many gallery rows (online search) or
//! gathered candidate rows (rerank) — where a packed GEMM would spend more time packing the gallery
//! than multiplying. Each gallery row is read once and stays in L1 while every query meets it.
//!
//! Accuracy: `f32` products summed in SIMD lanes (fused multiply-adds in the AVX variants), then
//! the lanes; tested
//! against an `f64` reference over tail lengths for every variant this CPU runs.

const LANES: usize = 16;

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    // Two interleaved accumulator sets (2 × 16 lanes) hide the add latency.
    let mut acc = [0f32; 2 * LANES];
    let (ca, cb) = (a.chunks_exact(2 * LANES), b.chunks_exact(2 * LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..2 * LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += x * y;
    }
    for l in 0..LANES {
        acc[l] += acc[l + LANES];
    }
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    acc[0]
}

/// `out[i·ldo + j] = q_i · g_j` for `q` (nq × d) and `g` (n × d), row-major.
#[inline(always)]
fn rows_body(q: &[f32], nq: usize, g: &[f32], n: usize, d: usize, out: &mut [f32], ldo: usize) {
    for j in 0..n {
        let gj = &g[j * d..(j + 1) * d];
        for i in 0..nq {
            out[i * ldo + j] = dot_body(&q[i * d..(i + 1) * d], gj);
        }
    }
}

#[inline(always)]
fn gather_body(q: &[f32], g: &[f32], d: usize, ids: &[u32], out: &mut [f32]) {
    for (o, &j) in out.iter_mut().zip(ids) {
        *o = dot_body(q, &g[j as usize * d..(j as usize + 1) * d]);
    }
}

/// `rows` (queries × streamed gallery rows, four queries per gallery load) and `gather` (one query ×
/// listed rows) over a module's `dots::<G>` kernel, compiled for that module's target features.
#[cfg(target_arch = "x86_64")]
macro_rules! drivers {
    ($feat:literal) => {
        #[target_feature(enable = $feat)]
        pub unsafe fn rows(q: &[f32], nq: usize, g: &[f32], n: usize, d: usize, out: &mut [f32], ldo: usize) {
            for j in 0..n {
                let gj = &g[j * d..(j + 1) * d];
                let mut i = 0;
                while i + 4 <= nq {
                    let r = dots::<4>([&q[i * d..], &q[(i + 1) * d..], &q[(i + 2) * d..], &q[(i + 3) * d..]], gj, d);
                    for k in 0..4 {
                        out[(i + k) * ldo + j] = r[k];
                    }
                    i += 4;
                }
                while i < nq {
                    out[i * ldo + j] = dots::<1>([&q[i * d..]], gj, d)[0];
                    i += 1;
                }
            }
        }

        #[target_feature(enable = $feat)]
        pub unsafe fn gather(q: &[f32], g: &[f32], d: usize, ids: &[u32], out: &mut [f32]) {
            for (o, &j) in out.iter_mut().zip(ids) {
                *o = dots::<1>([q], &g[j as usize * d..(j as usize + 1) * d], d)[0];
            }
        }
    };
}

/// Explicit AVX-512 kernels: four queries share each gallery load, FMA into 16-lane accumulators,
/// masked tails. (Auto-vectorisation of the portable body only reached 128-bit lanes here.)
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// `Σ a·b` over `d` values, `G` queries at once against one gallery row.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn dots<const G: usize>(q: [&[f32]; G], g: &[f32], d: usize) -> [f32; G] {
        let mut acc = [_mm512_setzero_ps(); G];
        let mut t = 0;
        while t + 16 <= d {
            let gv = _mm512_loadu_ps(g.as_ptr().add(t));
            for k in 0..G {
                acc[k] = _mm512_fmadd_ps(_mm512_loadu_ps(q[k].as_ptr().add(t)), gv, acc[k]);
            }
            t += 16;
        }
        if t < d {
            let m: __mmask16 = ((1u32 << (d - t)) - 1) as u16;
            let gv = _mm512_maskz_loadu_ps(m, g.as_ptr().add(t));
            for k in 0..G {
                acc[k] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q[k].as_ptr().add(t)), gv, acc[k]);
            }
        }
        let mut out = [0f32; G];
        for k in 0..G {
            out[k] = _mm512_reduce_add_ps(acc[k]);
        }
        out
    }

    drivers!("avx512f");
}

/// Explicit AVX2 + FMA kernels (8-lane accumulators, scalar tails), same structure as [`avx512`].
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots<const G: usize>(q: [&[f32]; G], g: &[f32], d: usize) -> [f32; G] {
        let mut acc = [_mm256_setzero_ps(); G];
        let mut t = 0;
        while t + 8 <= d {
            let gv = _mm256_loadu_ps(g.as_ptr().add(t));
            for k in 0..G {
                acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(q[k].as_ptr().add(t)), gv, acc[k]);
            }
            t += 8;
        }
        let mut out = [0f32; G];
        for k in 0..G {
            let mut tail = 0f32;
            for u in t..d {
                tail += q[k][u] * g[u];
            }
            out[k] = hsum(acc[k]) + tail;
        }
        out
    }

    drivers!("avx2,fma");
}

/// The dot kernels' variants are the shared instruction-set levels.
pub use super::isa::Isa as Variant;

impl Variant {
    /// See [`dot_rows`].
    pub fn dot_rows(self, q: &[f32], nq: usize, g: &[f32], n: usize, d: usize, out: &mut [f32], ldo: usize) {
        assert!(q.len() >= nq * d && g.len() >= n * d && ldo >= n && (nq == 0 || out.len() >= (nq - 1) * ldo + n));
        match self {
            // SAFETY: `available()` only lists variants whose features the CPU reports.
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => unsafe { avx512::rows(q, nq, g, n, d, out, ldo) },
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => unsafe { avx2::rows(q, nq, g, n, d, out, ldo) },
            _ => rows_body(q, nq, g, n, d, out, ldo),
        }
    }

    /// See [`dot_gather`].
    pub fn dot_gather(self, q: &[f32], g: &[f32], d: usize, ids: &[u32], out: &mut [f32]) {
        assert!(q.len() == d && out.len() == ids.len() && ids.iter().all(|&j| (j as usize + 1) * d <= g.len()));
        match self {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => unsafe { avx512::gather(q, g, d, ids, out) },
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => unsafe { avx2::gather(q, g, d, ids, out) },
            _ => gather_body(q, g, d, ids, out),
        }
    }
}

/// `out[i·ldo + j] = q_i · g_j` for queries `q` (nq × d) and gallery rows `g` (n × d), row-major `f32`.
pub fn dot_rows(q: &[f32], nq: usize, g: &[f32], n: usize, d: usize, out: &mut [f32], ldo: usize) {
    Variant::detect().dot_rows(q, nq, g, n, d, out, ldo)
}

/// `out[t] = q · g_{ids[t]}` for one query `q` (d values) and gathered gallery rows.
pub fn dot_gather(q: &[f32], g: &[f32], d: usize, ids: &[u32], out: &mut [f32]) {
    Variant::detect().dot_gather(q, g, d, ids, out)
}

/// Scalar reference: `f64` accumulation, rounded once.
pub fn dot_reference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_matches_reference_over_tail_lengths() {
        let mut s = 3u64;
        let mut r = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for d in 0..=70usize {
            let (nq, n) = (3, 5);
            let q: Vec<f32> = (0..nq * d).map(|_| r()).collect();
            let g: Vec<f32> = (0..n * d).map(|_| r()).collect();
            for v in Variant::available() {
                let mut out = vec![0f32; nq * 7];
                v.dot_rows(&q, nq, &g, n, d, &mut out, 7);
                let mut gathered = vec![0f32; 4];
                v.dot_gather(&q[..d], &g, d, &[4, 0, 4, 2], &mut gathered);
                for i in 0..nq {
                    for j in 0..n {
                        let want = dot_reference(&q[i * d..(i + 1) * d], &g[j * d..(j + 1) * d]);
                        assert!((out[i * 7 + j] - want).abs() <= 1e-6 * (d as f32).max(1.0), "{v:?} d {d}");
                    }
                }
                for (t, &j) in [4usize, 0, 4, 2].iter().enumerate() {
                    assert_eq!(gathered[t].to_bits(), out[j].to_bits(), "{v:?} gather vs rows, d {d}");
                }
            }
        }
    }
}
