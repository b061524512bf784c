//! Cosine / dot similarity between the rows of two row-major `f32` matrices, computed as tiled,
//! multi-threaded `A·Bᵀ` products (see [`super::gemm`]).

use std::borrow::Cow;

use rayon::prelude::*;

use super::dot::dot_rows;
use super::gemm::{matmul_abt_strided, matmul_abt_reference};
use crate::error::{Error, Result};
use crate::matrix::MatRef;

/// How two embeddings are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Inner product of L2-normalised rows (rows are normalised on the fly; inputs are not modified).
    Cosine,
    /// Plain inner product.
    Dot,
}

impl Metric {
    pub fn parse(s: &str) -> Result<Metric> {
        match s {
            "cosine" => Ok(Metric::Cosine),
            "dot" => Ok(Metric::Dot),
            _ => Err(Error::param(format!("metric must be 'cosine' or 'dot', got '{s}'"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
        }
    }
}

/// Largest tile of the output: rows × columns. Tile shapes depend only on the matrix shape (never on
/// the thread count), so results are bit-identical on any machine size.
pub const TILE_ROWS: usize = 512;
pub const TILE_COLS: usize = 1024;

/// Tile rows for an `m`-row output: at most [`TILE_ROWS`], and small outputs are cut in two so that
/// two cores share them (multiples of 16 keep the GEMM micro-kernels on their fast path).
fn tile_rows(m: usize) -> usize {
    if m >= 2 * TILE_ROWS {
        TILE_ROWS
    } else {
        (m.div_ceil(2).div_ceil(16) * 16).clamp(16, TILE_ROWS)
    }
}

/// Returns `m`'s rows L2-normalised (a new buffer) under cosine, or `m` itself under dot.
/// Norms are accumulated in `f64`. A zero row under cosine is an `ERR_NON_FINITE` error naming `name`.
pub fn prepare<'a>(m: MatRef<'a>, metric: Metric, name: &str) -> Result<Cow<'a, [f32]>> {
    match metric {
        Metric::Dot => Ok(Cow::Borrowed(m.data)),
        Metric::Cosine => {
            let mut out = m.data.to_vec();
            normalize_rows_in_place(&mut out, m.cols, name)?;
            Ok(Cow::Owned(out))
        }
    }
}

/// L2-normalises each row of `data` (row length `cols`) in place; zero rows are an error.
pub fn normalize_rows_in_place(data: &mut [f32], cols: usize, name: &str) -> Result<()> {
    if cols == 0 {
        return Ok(());
    }
    let bad = data
        .par_chunks_mut(cols)
        .enumerate()
        .map(|(r, row)| {
            let nrm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            if nrm == 0.0 || !nrm.is_finite() {
                return Some(r);
            }
            let inv = 1.0 / nrm;
            for v in row.iter_mut() {
                *v = (*v as f64 * inv) as f32;
            }
            None
        })
        .find_first(|r| r.is_some())
        .flatten();
    match bad {
        Some(r) => Err(Error::non_finite(format!("{name}: row {r} has zero norm (cosine similarity is undefined)"))),
        None => Ok(()),
    }
}

/// `a`'s rows against `b`'s rows: the `a.rows × b.rows` similarity matrix, row-major `f32`.
///
/// Errors: `ERR_SHAPE` if `a.cols != b.cols`; `ERR_NON_FINITE` for NaN/±Inf or a zero row under cosine.
pub fn similarity(a: MatRef, b: MatRef, metric: Metric) -> Result<Vec<f32>> {
    if a.cols != b.cols {
        return Err(Error::shape(format!("a has dim {}, b has dim {} (they must agree)", a.cols, b.cols)));
    }
    a.check_finite("a")?;
    b.check_finite("b")?;
    let mut out = vec![0f32; a.rows * b.rows];
    match metric {
        Metric::Dot => {
            matmul_abt_par_scaled(a.data, a.rows, b.data, b.rows, a.cols, &mut out, None);
            // Finite inputs can still have a dot product beyond the float32 range (e.g. 3e38 · 2):
            // refuse rather than return ±Inf (results are finite whenever inputs are).
            if let Some(i) = first_non_finite(&out) {
                let (r, c) = (i / b.rows.max(1), i % b.rows.max(1));
                return Err(Error::non_finite(format!(
                    "the dot product of a row {r} and b row {c} is outside the float32 range (|s| > 3.4e38); scale the inputs down"
                )));
            }
        }
        Metric::Cosine => {
            let (ia, ib) = (inverse_norms(a, "a")?, inverse_norms(b, "b")?);
            let in_range = |inv: &[f64]| inv.iter().all(|&v| (SAFE_INV_NORM.0..=SAFE_INV_NORM.1).contains(&v));
            if in_range(&ia) && in_range(&ib) {
                // Raw products scaled by 1/(|a_i|·|b_j|) inside each tile (while it is in cache): no
                // normalised copies of the inputs. Safe because every |a_i|·|b_j| lies in
                // [2^-60, 2^60]: the raw f32 products neither overflow nor sink into subnormals.
                let (ia, ib): (Vec<f32>, Vec<f32>) = (ia.iter().map(|&v| v as f32).collect(), ib.iter().map(|&v| v as f32).collect());
                matmul_abt_par_scaled(a.data, a.rows, b.data, b.rows, a.cols, &mut out, Some((&ia, &ib)));
            } else {
                // Some row norm is outside [2^-30, 2^30] (e.g. 1e30 or 1e-30): normalise copies first
                // (f64 norms, as the Normalizer does), then multiply unit rows.
                let (pa, pb) = (prepare(a, metric, "a")?, prepare(b, metric, "b")?);
                matmul_abt_par_scaled(&pa, a.rows, &pb, b.rows, a.cols, &mut out, None);
            }
        }
    }
    Ok(out)
}

/// Index of the first NaN/±Inf in `v` (parallel scan in fixed chunks).
fn first_non_finite(v: &[f32]) -> Option<usize> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let c = v.par_chunks(CHUNK).position_first(|c| c.iter().any(|x| !x.is_finite()))?;
    v[c * CHUNK..].iter().position(|x| !x.is_finite()).map(|i| c * CHUNK + i)
}

/// Range of `1/|row|` for which [`similarity`] scales raw products instead of normalising copies.
const SAFE_INV_NORM: (f64, f64) = (1.0 / (1u64 << 30) as f64, (1u64 << 30) as f64);

/// `1/|row|` for every row (f64 accumulation, so any finite f32 row has a finite, non-zero norm
/// unless it is all zeros); a zero row is `ERR_NON_FINITE`.
fn inverse_norms(m: MatRef, name: &str) -> Result<Vec<f64>> {
    let inv: Vec<f64> = (0..m.rows).into_par_iter().map(|r| 1.0 / m.row(r).iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt()).collect();
    if let Some(r) = inv.iter().position(|v| !v.is_finite()) {
        return Err(Error::non_finite(format!("{name}: row {r} has zero norm (cosine similarity is undefined)")));
    }
    Ok(inv)
}

/// Scalar reference for [`similarity`] (f64 norms and f64 dot products).
pub fn similarity_reference(a: MatRef, b: MatRef, metric: Metric) -> Vec<f32> {
    let norm = |m: &MatRef| -> Vec<f32> {
        let mut v = m.data.to_vec();
        if metric == Metric::Cosine {
            for row in v.chunks_mut(m.cols.max(1)) {
                let n = row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
                for x in row.iter_mut() {
                    *x = (*x as f64 / n) as f32;
                }
            }
        }
        v
    };
    let (na, nb) = (norm(&a), norm(&b));
    let mut out = vec![0f32; a.rows * b.rows];
    matmul_abt_reference(&na, a.rows, &nb, b.rows, a.cols, &mut out);
    out
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint output tiles to rayon workers.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Multi-threaded `out (m×n) = a (m×d) · b (n×d)ᵀ` over fixed [`TILE_ROWS`]×[`TILE_COLS`] tiles.
pub fn matmul_abt_par(a: &[f32], m: usize, b: &[f32], n: usize, d: usize, out: &mut [f32]) {
    matmul_abt_par_scaled(a, m, b, n, d, out, None)
}

/// Multi-threaded `out (m×n) = a (m×d) · b (n×d)ᵀ` computed with the search kernel
/// ([`super::dot::dot_rows`]): every element's value depends only on its two rows, never on `m`,
/// the tiling or the thread count (the batch-independent product behind `Normalizer::scores`).
pub fn dot_abt_par(a: &[f32], m: usize, b: &[f32], n: usize, d: usize, out: &mut [f32]) {
    assert!(a.len() >= m * d && b.len() >= n * d && out.len() >= m * n, "dot_abt_par: slice too short");
    if m == 0 || n == 0 {
        return;
    }
    // Row blocks of 64 queries × the whole gallery in chunks of TILE_COLS: independent tasks.
    const ROWS: usize = 64;
    out[..m * n].par_chunks_mut(ROWS * n).enumerate().for_each(|(ib, chunk)| {
        let i0 = ib * ROWS;
        let tm = chunk.len() / n;
        for j0 in (0..n).step_by(TILE_COLS) {
            let tn = (n - j0).min(TILE_COLS);
            dot_rows(&a[i0 * d..(i0 + tm) * d], tm, &b[j0 * d..(j0 + tn) * d], tn, d, &mut chunk[j0..], n);
        }
    });
}

/// [`matmul_abt_par`], optionally multiplying element (i, j) by `sa[i]·sb[j]` inside each tile.
fn matmul_abt_par_scaled(a: &[f32], m: usize, b: &[f32], n: usize, d: usize, out: &mut [f32], scale: Option<(&[f32], &[f32])>) {
    assert!(out.len() >= m * n);
    let tr = tile_rows(m);
    let tiles: Vec<(usize, usize)> = (0..m.div_ceil(tr)).flat_map(|ib| (0..n.div_ceil(TILE_COLS)).map(move |jb| (ib * tr, jb * TILE_COLS))).collect();
    let base = SendPtr(out.as_mut_ptr());
    tiles.par_iter().for_each(|&(i0, j0)| {
        let base = &base;
        let (tm, tn) = ((m - i0).min(tr), (n - j0).min(TILE_COLS));
        // SAFETY: tiles are disjoint and lie inside `out` (m rows of stride n).
        unsafe {
            matmul_abt_strided(&a[i0 * d..(i0 + tm) * d], tm, &b[j0 * d..(j0 + tn) * d], tn, d, base.0.add(i0 * n + j0), n);
            if let Some((sa, sb)) = scale {
                for i in 0..tm {
                    let row = std::slice::from_raw_parts_mut(base.0.add((i0 + i) * n + j0), tn);
                    let si = sa[i0 + i];
                    for (x, &sj) in row.iter_mut().zip(&sb[j0..j0 + tn]) {
                        *x *= si * sj;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_dot_match_reference_across_tiles() {
        let mut s = 11u64;
        let mut r = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(m, n, d) in &[(1, 1, 1), (3, 5, 7), (300, 1030, 33), (1, 2100, 16)] {
            let a: Vec<f32> = (0..m * d).map(|_| r()).collect();
            let b: Vec<f32> = (0..n * d).map(|_| r()).collect();
            for metric in [Metric::Cosine, Metric::Dot] {
                let (am, bm) = (MatRef::new(&a, m, d, "a").unwrap(), MatRef::new(&b, n, d, "b").unwrap());
                let got = similarity(am, bm, metric).unwrap();
                let want = similarity_reference(am, bm, metric);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5, "{m}x{n}x{d} {metric:?}: {g} vs {w}");
                }
            }
        }
    }

    /// A dot product beyond the float32 range from finite inputs is a coded error, never ±Inf; the
    /// same inputs one notch smaller give the finite product.
    #[test]
    fn dot_overflow_is_refused() {
        let (a, b) = (vec![3e38f32, 3e38], vec![1f32, 1.0]);
        let e = similarity(MatRef::new(&a, 1, 2, "a").unwrap(), MatRef::new(&b, 1, 2, "b").unwrap(), Metric::Dot).unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::NonFinite, "{e}");
        let b2 = vec![0.5f32, 0.5];
        let ok = similarity(MatRef::new(&a, 1, 2, "a").unwrap(), MatRef::new(&b2, 1, 2, "b").unwrap(), Metric::Dot).unwrap();
        assert!(ok[0].is_finite() && (ok[0] - 3e38).abs() < 1e32);
    }

    /// Cosine similarity is scale-free: rows with norms from 1e-30 to 1e30 (and subnormal entries)
    /// give the same finite values as their unit-norm versions, on both paths of `similarity`.
    #[test]
    fn cosine_is_finite_and_exact_for_extreme_norms() {
        let mut s = 13u64;
        let mut r = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let scales = [1e-30f32, 1e-25, 1e-19, 1e-10, 1.0, 1e10, 1e19, 1e25, 1e30, 3e36];
        let (m, n, d) = (scales.len(), 7, 19);
        let a: Vec<f32> = (0..m * d).map(|_| r()).collect();
        let b: Vec<f32> = (0..n * d).map(|_| r()).collect();
        let want = similarity_reference(MatRef::new(&a, m, d, "a").unwrap(), MatRef::new(&b, n, d, "b").unwrap(), Metric::Cosine);
        // a's rows span every scale; b is scaled as a whole (both paths: all in range, some out)
        let a2: Vec<f32> = a.iter().enumerate().map(|(i, &v)| v * scales[i / d]).collect();
        for &sb in &scales {
            {
                let b2: Vec<f32> = b.iter().map(|&v| v * sb).collect();
                let got = similarity(MatRef::new(&a2, m, d, "a").unwrap(), MatRef::new(&b2, n, d, "b").unwrap(), Metric::Cosine).unwrap();
                let reference = similarity_reference(MatRef::new(&a2, m, d, "a").unwrap(), MatRef::new(&b2, n, d, "b").unwrap(), Metric::Cosine);
                for ((g, w), r0) in got.iter().zip(&want).zip(&reference) {
                    assert!(g.is_finite(), "b scale {sb:e}: {g}");
                    // tiny scales make some entries subnormal (fewer significant bits): compare to the
                    // reference on the same data tightly, to the unit-norm data loosely
                    assert!((g - r0).abs() < 1e-5, "b scale {sb:e}: {g} vs {r0}");
                    assert!((g - w).abs() < 1e-3, "b scale {sb:e}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn zero_row_under_cosine_is_an_error() {
        let a = [1.0f32, 0.0, 0.0, 0.0];
        let err = similarity(MatRef::new(&a, 2, 2, "a").unwrap(), MatRef::new(&a, 2, 2, "b").unwrap(), Metric::Cosine).unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::NonFinite);
        assert!(similarity(MatRef::new(&a, 2, 2, "a").unwrap(), MatRef::new(&a, 2, 2, "b").unwrap(), Metric::Dot).is_ok());
    }
}
