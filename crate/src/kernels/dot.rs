//! Inner products of query rows with gallery rows — the similarity kernel of every search, score
//! and rerank path (the GEMM in [`super::gemm`] serves `similarity()`, the fused kernel in [`super::fused`] the bank
//! statistics).
//!
//! # One summation order per element (batch independence)
//! Every variant computes each inner product `q·g` with one fixed sequence of operations that
//! depends only on `d` and the variant — never on how many queries or gallery rows are processed
//! together, on the tile, or on the thread count:
//! - AVX-512: 16 lanes, lane `l` accumulates `q[t]·g[t]` for `t ≡ l (mod 16)` in increasing `t` with
//!   fused multiply-adds, the tail as one masked step, then `_mm512_reduce_add_ps`;
//! - AVX2 + FMA: 8 lanes the same way over the full 8-chunks, the horizontal sum
//!   `((lo+hi) → pairs → one)`, plus the tail summed in order (plain multiply then add);
//! - portable: [`dot_body`] (32 lanes in two interleaved sets, fixed reduction tree).
//!
//! The blocked drivers compute a register tile of queries × gallery rows at once (each gallery
//! load serves several queries and vice versa) but keep one accumulator per (query, row) pair, so a
//! query's similarities are bit-identical whether it is searched alone, in a batch of 16 or of
//! 10 000, scored, or reranked ([`dot_gather`] is the same body). The gallery needs no packing: its
//! rows are already the `d`-contiguous operand the kernel streams.
//!
//! Accuracy: `f32` products summed in `f32` lanes; tested against an `f64` reference over tail
//! lengths for every variant the CPU runs, and bit-identical across block shapes.

use super::isa::{Isa, Level};

const LANES: usize = 16;

/// The portable inner product (also the body of the portable drivers).
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

/// Gallery rows per cache sub-tile of the blocked driver (kept in L2 while every query group of the
/// tile meets them).
#[cfg(target_arch = "x86_64")]
const SUB_ROWS: usize = 96;

/// The blocked `rows` driver (register tiles of `$qb` queries × `$gb` gallery rows, gallery
/// sub-tiles of [`SUB_ROWS`] rows) and the `gather` driver over a module's `block::<G, H>` kernel,
/// compiled for that module's target features.
#[cfg(target_arch = "x86_64")]
macro_rules! drivers {
    ($feat:literal, $qb:literal, $gb:literal) => {
        /// `out[i·ldo + j] = q_i · g_j` (see [`super::dot_rows`]).
        ///
        /// # Safety
        /// The CPU must support this module's target features (the caller holds an `Isa` of this
        /// level), and `q.len() ≥ nq·d`, `g.len() ≥ n·d`, `ldo ≥ n`, `out.len() ≥ (nq − 1)·ldo + n`
        /// when `nq > 0` (the caller checks them; the kernel reads through raw pointers).
        #[target_feature(enable = $feat)]
        pub unsafe fn rows(q: &[f32], nq: usize, g: &[f32], n: usize, d: usize, out: &mut [f32], ldo: usize) {
            let (qp, gp) = (q.as_ptr(), g.as_ptr());
            let mut j0 = 0;
            while j0 < n {
                let j1 = (j0 + super::SUB_ROWS).min(n);
                let mut i = 0;
                while i + $qb <= nq {
                    let mut qs = [qp; $qb];
                    for k in 0..$qb {
                        qs[k] = qp.add((i + k) * d);
                    }
                    let mut j = j0;
                    while j + $gb <= j1 {
                        let mut gs = [gp; $gb];
                        for h in 0..$gb {
                            gs[h] = gp.add((j + h) * d);
                        }
                        let r = block::<$qb, $gb>(qs, gs, d);
                        for k in 0..$qb {
                            out[(i + k) * ldo + j..(i + k) * ldo + j + $gb].copy_from_slice(&r[k]);
                        }
                        j += $gb;
                    }
                    while j < j1 {
                        let r = block::<$qb, 1>(qs, [gp.add(j * d)], d);
                        for k in 0..$qb {
                            out[(i + k) * ldo + j] = r[k][0];
                        }
                        j += 1;
                    }
                    i += $qb;
                }
                while i < nq {
                    let qs = [qp.add(i * d)];
                    let mut j = j0;
                    while j + $gb <= j1 {
                        let mut gs = [gp; $gb];
                        for h in 0..$gb {
                            gs[h] = gp.add((j + h) * d);
                        }
                        let r = block::<1, $gb>(qs, gs, d);
                        out[i * ldo + j..i * ldo + j + $gb].copy_from_slice(&r[0]);
                        j += $gb;
                    }
                    while j < j1 {
                        out[i * ldo + j] = block::<1, 1>(qs, [gp.add(j * d)], d)[0][0];
                        j += 1;
                    }
                    i += 1;
                }
                j0 = j1;
            }
        }

        /// `out[t] = q · g_{ids[t]}` (see [`super::dot_gather`]).
        ///
        /// # Safety
        /// The CPU must support this module's target features; `q.len() == d`, `out.len() == ids.len()`
        /// and every `(ids[t] + 1)·d ≤ g.len()` (the caller checks them).
        #[target_feature(enable = $feat)]
        pub unsafe fn gather(q: &[f32], g: &[f32], d: usize, ids: &[u32], out: &mut [f32]) {
            for (o, &j) in out.iter_mut().zip(ids) {
                *o = block::<1, 1>([q.as_ptr()], [g.as_ptr().add(j as usize * d)], d)[0][0];
            }
        }
    };
}

/// Explicit AVX-512 kernels: 4 queries × 4 gallery rows per register tile (16 accumulators), FMA into
/// 16-lane accumulators, masked tails. (Auto-vectorisation of the portable body only reached
/// 128-bit lanes here.)
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// `Σ_t q_k[t]·g_h[t]` for every (k, h) of a `G × H` register tile.
    ///
    /// # Safety
    /// AVX-512F must be available; each `q[k]` and `g[h]` must be valid for reads of `d` floats.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const G: usize, const H: usize>(q: [*const f32; G], g: [*const f32; H], d: usize) -> [[f32; H]; G] {
        let mut acc = [[_mm512_setzero_ps(); H]; G];
        let mut t = 0;
        while t + 16 <= d {
            let mut gv = [_mm512_setzero_ps(); H];
            for h in 0..H {
                gv[h] = _mm512_loadu_ps(g[h].add(t));
            }
            for k in 0..G {
                let qv = _mm512_loadu_ps(q[k].add(t));
                for h in 0..H {
                    acc[k][h] = _mm512_fmadd_ps(qv, gv[h], acc[k][h]);
                }
            }
            t += 16;
        }
        if t < d {
            let m: __mmask16 = ((1u32 << (d - t)) - 1) as u16;
            let mut gv = [_mm512_setzero_ps(); H];
            for h in 0..H {
                gv[h] = _mm512_maskz_loadu_ps(m, g[h].add(t));
            }
            for k in 0..G {
                let qv = _mm512_maskz_loadu_ps(m, q[k].add(t));
                for h in 0..H {
                    acc[k][h] = _mm512_fmadd_ps(qv, gv[h], acc[k][h]);
                }
            }
        }
        let mut out = [[0f32; H]; G];
        for k in 0..G {
            for h in 0..H {
                out[k][h] = _mm512_reduce_add_ps(acc[k][h]);
            }
        }
        out
    }

    drivers!("avx512f", 4, 4);
}

/// Explicit AVX2 + FMA kernels: 3 × 3 register tiles (16 ymm registers), 8-lane accumulators,
/// in-order scalar tails; same structure as [`avx512`].
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Horizontal sum of 8 lanes: `(lo + hi)`, then pairs, then one.
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// `Σ_t q_k[t]·g_h[t]` for every (k, h) of a `G × H` register tile.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; each `q[k]` and `g[h]` must be valid for reads of `d` floats.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const G: usize, const H: usize>(q: [*const f32; G], g: [*const f32; H], d: usize) -> [[f32; H]; G] {
        let mut acc = [[_mm256_setzero_ps(); H]; G];
        let mut t = 0;
        while t + 8 <= d {
            let mut gv = [_mm256_setzero_ps(); H];
            for h in 0..H {
                gv[h] = _mm256_loadu_ps(g[h].add(t));
            }
            for k in 0..G {
                let qv = _mm256_loadu_ps(q[k].add(t));
                for h in 0..H {
                    acc[k][h] = _mm256_fmadd_ps(qv, gv[h], acc[k][h]);
                }
            }
            t += 8;
        }
        let mut out = [[0f32; H]; G];
        for k in 0..G {
            for h in 0..H {
                let mut tail = 0f32;
                for u in t..d {
                    tail += *q[k].add(u) * *g[h].add(u);
                }
                out[k][h] = hsum(acc[k][h]) + tail;
            }
        }
        out
    }

    drivers!("avx2,fma", 3, 3);
}

fn check_rows(q: &[f32], nq: usize, g: &[f32], n: usize, d: usize, out: &[f32], ldo: usize) {
    assert!(q.len() >= nq * d && g.len() >= n * d && ldo >= n && (nq == 0 || out.len() >= (nq - 1) * ldo + n), "dot_rows: slice too short");
}

/// [`dot_rows`] with the given instruction-set level.
pub fn dot_rows_with(isa: Isa, q: &[f32], nq: usize, g: &[f32], n: usize, d: usize, out: &mut [f32], ldo: usize) {
    check_rows(q, nq, g, n, d, out, ldo);
    match isa.level() {
        // SAFETY: an `Isa` of this level exists only if the CPU reports its features; lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512::rows(q, nq, g, n, d, out, ldo) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { avx2::rows(q, nq, g, n, d, out, ldo) },
        _ => rows_body(q, nq, g, n, d, out, ldo),
    }
}

/// [`dot_gather`] with the given instruction-set level.
pub fn dot_gather_with(isa: Isa, q: &[f32], g: &[f32], d: usize, ids: &[u32], out: &mut [f32]) {
    assert!(q.len() == d && out.len() == ids.len() && ids.iter().all(|&j| (j as usize + 1) * d <= g.len()), "dot_gather: bad lengths or ids");
    match isa.level() {
        // SAFETY: as in `dot_rows_with`.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512::gather(q, g, d, ids, out) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { avx2::gather(q, g, d, ids, out) },
        _ => gather_body(q, g, d, ids, out),
    }
}

/// `out[i·ldo + j] = q_i · g_j` for queries `q` (nq × d) and gallery rows `g` (n × d), row-major
/// `f32`, `ldo ≥ n`. Each element's value depends only on `(q_i, g_j)` (see the module docs).
///
/// # Panics
/// If a slice is shorter than its shape says.
pub fn dot_rows(q: &[f32], nq: usize, g: &[f32], n: usize, d: usize, out: &mut [f32], ldo: usize) {
    dot_rows_with(Isa::detect(), q, nq, g, n, d, out, ldo)
}

/// `out[t] = q · g_{ids[t]}` for one query `q` (d values) and gathered gallery rows (`g` is n × d);
/// bit-identical to the corresponding [`dot_rows`] elements.
///
/// # Panics
/// If `q.len() != d`, `out.len() != ids.len()` or an id is out of range.
pub fn dot_gather(q: &[f32], g: &[f32], d: usize, ids: &[u32], out: &mut [f32]) {
    dot_gather_with(Isa::detect(), q, g, d, ids, out)
}

/// Scalar reference: `f64` accumulation, rounded once.
pub fn dot_reference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(s: &mut u64) -> f32 {
        *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn every_variant_matches_reference_over_tail_lengths() {
        let mut s = 3u64;
        for d in 0..=70usize {
            let (nq, n) = (3, 5);
            let q: Vec<f32> = (0..nq * d).map(|_| lcg(&mut s)).collect();
            let g: Vec<f32> = (0..n * d).map(|_| lcg(&mut s)).collect();
            for v in Isa::available() {
                let mut out = vec![0f32; nq * 7];
                dot_rows_with(v, &q, nq, &g, n, d, &mut out, 7);
                let mut gathered = vec![0f32; 4];
                dot_gather_with(v, &q[..d], &g, d, &[4, 0, 4, 2], &mut gathered);
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

    /// Every element is bit-identical whatever the block shape: one query × one row, a query alone
    /// against the whole gallery, and every (query count, gallery count) around the register tiles
    /// and the cache sub-tile.
    #[test]
    fn elements_do_not_depend_on_the_block_shape() {
        let mut s = 5u64;
        for &d in &[1usize, 7, 16, 17, 33, 64, 100] {
            let (nq, n) = (11, super::SUB_ROWS_TEST + 9);
            let q: Vec<f32> = (0..nq * d).map(|_| lcg(&mut s)).collect();
            let g: Vec<f32> = (0..n * d).map(|_| lcg(&mut s)).collect();
            for v in Isa::available() {
                let mut single = vec![0f32; nq * n];
                for i in 0..nq {
                    for j in 0..n {
                        let mut o = [0f32];
                        dot_gather_with(v, &q[i * d..(i + 1) * d], &g, d, &[j as u32], &mut o);
                        single[i * n + j] = o[0];
                    }
                }
                for mq in 1..=nq {
                    for &mn in &[1usize, 2, 3, 4, 5, 8, n] {
                        let mut out = vec![0f32; mq * mn];
                        dot_rows_with(v, &q, mq, &g, mn, d, &mut out, mn);
                        for i in 0..mq {
                            for j in 0..mn {
                                assert_eq!(out[i * mn + j].to_bits(), single[i * n + j].to_bits(), "{v:?} d {d} block {mq}x{mn} at ({i},{j})");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[cfg(target_arch = "x86_64")]
const SUB_ROWS_TEST: usize = SUB_ROWS;
#[cfg(test)]
#[cfg(not(target_arch = "x86_64"))]
const SUB_ROWS_TEST: usize = 96;
