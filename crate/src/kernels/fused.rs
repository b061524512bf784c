//! The bank-statistics product with its epilogue fused: `bank · galleryᵀ` micro-tiles folded into
//! per-gallery-item running statistics while they are hot, never written out as a whole matrix.
//!
//! # Layout
//! Both operands are *packed* once into panels, k-major ([`Packed`]): the gallery into panels of
//! [`PANEL`] = 64 items (once per statistics pass, reused against every bank block), each bank block
//! into panels of [`MR`] = 6 rows (once per block, shared by every gallery tile). Element `(row, t)`
//! of panel `p` sits at `p·w·d + t·w + (row − p·w)` for panel width `w`; rows past the end are zeros.
//!
//! # Micro-kernel
//! [`MicroKernel::tile`] computes one `MR × PANEL` tile `c[r·PANEL + l] = Σ_t bank[r, t] · gal[l, t]`
//! with `f32` accumulators, one fused multiply-add per depth step in increasing `t` (so the AVX-512
//! and AVX2+FMA bodies give the same bits; the portable body, without FMA, rounds the product
//! separately). One zero-sized type per instruction set implements it, matrixmultiply-style; a
//! caller picks one through an [`Isa`] token, which exists only if the CPU runs that level.
//!
//! # Epilogue
//! [`fold_tile`] runs the micro-kernel over every bank panel for one gallery panel and folds each
//! `MR × PANEL` tile, while it is in L1, into: the running column maxima (log-sum-exp shift), each
//! gallery item's top-K bank values (CSLS / NNN) and each bank row's top-k gallery items (activation
//! sets). Only the log-sum-exp needs the block's values a second time (the shift is the block
//! maximum, known after the last tile): the `block × PANEL` buffer (256 KiB for a 1024-row block)
//! stays in L2 for that pass. Measured on the coco shape before this kernel: the `gemm` crate's
//! per-call packing was 14% of a DualDIS fit and the tile write/read-back epilogue 9%.
//!
//! Results depend only on the operands and the block/tile constants, never on the thread count.

use super::isa::{Isa, Level};
use super::lse::{exp_nonpos, LseState};
use super::topk::{TopKLists, TopValues};

/// Gallery items per packed panel (lanes of a micro-tile).
pub const PANEL: usize = 64;
/// Bank rows per packed panel (rows of a micro-tile).
pub const MR: usize = 6;

/// A row-major `rows × d` matrix packed into k-major panels of `width` rows (see the module docs);
/// the first panel is 64-byte aligned (so is every [`PANEL`]-wide one).
pub struct Packed {
    buf: Vec<f32>,
    off: usize,
    rows: usize,
    d: usize,
    width: usize,
}

impl Packed {
    /// An empty packing of panel width `width` (fill it with [`Packed::pack`]).
    pub fn new(width: usize) -> Packed {
        Packed { buf: Vec::new(), off: 0, rows: 0, d: 0, width }
    }

    /// Packs `src` (`rows × d`, row-major) into this buffer, reusing its allocation.
    ///
    /// # Panics
    /// If `src.len() < rows · d`.
    pub fn pack(&mut self, src: &[f32], rows: usize, d: usize) {
        use rayon::prelude::*;
        assert!(src.len() >= rows * d, "Packed::pack: source too short");
        let w = self.width;
        let panels = rows.div_ceil(w);
        let len = panels * w * d;
        if self.buf.len() < len + 16 {
            self.buf = vec![0f32; len + 16];
        }
        self.off = self.buf.as_ptr().align_offset(64).min(15);
        let (rows_, off) = (rows, self.off);
        let data = &mut self.buf[off..off + len];
        let body = |(p, panel): (usize, &mut [f32])| {
            for l in 0..w {
                let r = p * w + l;
                if r < rows_ {
                    let row = &src[r * d..(r + 1) * d];
                    for (t, &v) in row.iter().enumerate() {
                        panel[t * w + l] = v;
                    }
                } else {
                    for t in 0..d {
                        panel[t * w + l] = 0.0;
                    }
                }
            }
        };
        if d > 0 {
            if len >= 1 << 16 {
                data.par_chunks_mut(w * d).enumerate().for_each(body);
            } else {
                data.chunks_mut(w * d).enumerate().for_each(body);
            }
        }
        self.rows = rows;
        self.d = d;
    }

    /// Rows packed.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of panels.
    pub fn panels(&self) -> usize {
        self.rows.div_ceil(self.width)
    }

    /// Panel `p` (`width · d` floats, k-major).
    #[inline]
    pub fn panel(&self, p: usize) -> &[f32] {
        let s = self.width * self.d;
        &self.buf[self.off + p * s..self.off + (p + 1) * s]
    }

    /// Bytes held (the packing's contribution to a memory figure).
    pub fn bytes(&self) -> usize {
        self.buf.len() * 4
    }
}

/// One `MR × PANEL` product tile per instruction set (see the module docs).
trait MicroKernel {
    /// `c[r·PANEL + l] = Σ_{t<d} b[t·MR + r] · a[t·PANEL + l]` for r < MR, l < PANEL.
    ///
    /// # Safety
    /// `a` must be valid for reads of `d·PANEL` floats, `b` of `d·MR` floats, `c` for writes of
    /// `MR·PANEL` floats, and the CPU must support the implementing type's instruction set.
    unsafe fn tile(d: usize, a: *const f32, b: *const f32, c: *mut f32);
}

#[cfg(target_arch = "x86_64")]
struct Avx512;
#[cfg(target_arch = "x86_64")]
struct Avx2;
struct Portable;

#[cfg(target_arch = "x86_64")]
impl MicroKernel for Avx512 {
    /// 6 rows × 4 vectors of 16 lanes: 24 accumulators in zmm registers.
    ///
    /// # Safety
    /// As [`MicroKernel::tile`]; the CPU must support AVX-512 F and FMA.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn tile(d: usize, a: *const f32, b: *const f32, c: *mut f32) {
        use std::arch::x86_64::*;
        let mut acc = [_mm512_setzero_ps(); MR * 4];
        for t in 0..d {
            let ap = a.add(t * PANEL);
            let av = [_mm512_loadu_ps(ap), _mm512_loadu_ps(ap.add(16)), _mm512_loadu_ps(ap.add(32)), _mm512_loadu_ps(ap.add(48))];
            let bp = b.add(t * MR);
            for r in 0..MR {
                let bv = _mm512_set1_ps(*bp.add(r));
                for v in 0..4 {
                    acc[r * 4 + v] = _mm512_fmadd_ps(av[v], bv, acc[r * 4 + v]);
                }
            }
        }
        for r in 0..MR {
            for v in 0..4 {
                _mm512_storeu_ps(c.add(r * PANEL + 16 * v), acc[r * 4 + v]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl MicroKernel for Avx2 {
    /// Four 16-lane strips, each 6 rows × 2 vectors of 8 lanes (12 accumulators in ymm registers).
    ///
    /// # Safety
    /// As [`MicroKernel::tile`]; the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile(d: usize, a: *const f32, b: *const f32, c: *mut f32) {
        use std::arch::x86_64::*;
        for s in 0..PANEL / 16 {
            let mut acc = [_mm256_setzero_ps(); MR * 2];
            for t in 0..d {
                let ap = a.add(t * PANEL + 16 * s);
                let (a0, a1) = (_mm256_loadu_ps(ap), _mm256_loadu_ps(ap.add(8)));
                let bp = b.add(t * MR);
                for r in 0..MR {
                    let bv = _mm256_broadcast_ss(&*bp.add(r));
                    acc[2 * r] = _mm256_fmadd_ps(a0, bv, acc[2 * r]);
                    acc[2 * r + 1] = _mm256_fmadd_ps(a1, bv, acc[2 * r + 1]);
                }
            }
            for r in 0..MR {
                _mm256_storeu_ps(c.add(r * PANEL + 16 * s), acc[2 * r]);
                _mm256_storeu_ps(c.add(r * PANEL + 16 * s + 8), acc[2 * r + 1]);
            }
        }
    }
}

impl MicroKernel for Portable {
    /// Four 16-lane strips of plain loops (the compiler vectorises them for the target baseline).
    ///
    /// # Safety
    /// As [`MicroKernel::tile`] (any CPU).
    unsafe fn tile(d: usize, a: *const f32, b: *const f32, c: *mut f32) {
        let (a, b, c) = (std::slice::from_raw_parts(a, d * PANEL), std::slice::from_raw_parts(b, d * MR), std::slice::from_raw_parts_mut(c, MR * PANEL));
        for s in 0..PANEL / 16 {
            let mut acc = [[0f32; 16]; MR];
            for t in 0..d {
                let av: &[f32; 16] = a[t * PANEL + 16 * s..t * PANEL + 16 * s + 16].try_into().unwrap();
                for r in 0..MR {
                    let bv = b[t * MR + r];
                    for l in 0..16 {
                        acc[r][l] += av[l] * bv;
                    }
                }
            }
            for r in 0..MR {
                c[r * PANEL + 16 * s..r * PANEL + 16 * s + 16].copy_from_slice(&acc[r]);
            }
        }
    }
}

/// One micro-tile with the kernel of `isa`: `c` (`MR·PANEL`) from gallery panel `a` and bank panel `b`.
#[inline]
fn tile(isa: Isa, d: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= d * PANEL && b.len() >= d * MR && c.len() >= MR * PANEL);
    // SAFETY: lengths checked above; an `Isa` of a level exists only if the CPU reports its features.
    unsafe {
        match isa.level() {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => Avx512::tile(d, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => Avx2::tile(d, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()),
            _ => Portable::tile(d, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()),
        }
    }
}

/// What [`fold_tile`] folds the products into. Slices are indexed by gallery item relative to the
/// tile's first item; empty slices mean "not requested".
pub struct Fold<'a> {
    /// β of the log-sum-exp (used iff `lse` is non-empty).
    pub beta: f64,
    pub lse: &'a mut [LseState],
    pub topv: &'a mut [TopValues],
    /// Per bank row of the block, its best gallery items (offered in increasing gallery index).
    pub cand: Option<&'a mut TopKLists>,
}

thread_local! {
    /// Per-thread `block × PANEL` product buffer (kept in L2 between the product and the exp pass).
    static BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Folds gallery panels `panels` of `gal` against every row of the packed bank block `bank` into
/// `fold`; gallery item indices reported to `fold.cand` start at `panels.start · PANEL`.
///
/// Per gallery item and block: the log-sum-exp state takes the block maximum as its shift and adds
/// `exp(β·x − shift)` over the bank rows in order (`f64`); the top-K values and the per-row lists
/// are offered the values in bank-row order, then gallery order.
pub fn fold_tile(isa: Isa, gal: &Packed, panels: std::ops::Range<usize>, bank: &Packed, fold: &mut Fold) {
    let (bb, d) = (bank.rows(), gal.d);
    assert_eq!(bank.d, d, "fold_tile: depth mismatch");
    assert_eq!((gal.width, bank.width), (PANEL, MR), "fold_tile: panel widths");
    let nq = bank.panels();
    let j_first = panels.start * PANEL;
    BUF.with(|cell| {
        let mut owned;
        let mut guard = cell.try_borrow_mut();
        let buf: &mut Vec<f32> = match guard.as_mut() {
            Ok(b) => b,
            Err(_) => {
                owned = Vec::new();
                &mut owned
            }
        };
        if buf.len() < nq * MR * PANEL {
            buf.resize(nq * MR * PANEL, 0.0);
        }
        for p in panels {
            let jp = p * PANEL;
            let valid = (gal.rows - jp).min(PANEL);
            let rel = jp - j_first;
            let a = gal.panel(p);
            let mut colmax = [f32::NEG_INFINITY; PANEL];
            let mut thr = [f32::INFINITY; PANEL];
            if !fold.topv.is_empty() {
                for l in 0..valid {
                    thr[l] = fold.topv[rel + l].threshold();
                }
            }
            for q in 0..nq {
                let c = &mut buf[q * MR * PANEL..(q + 1) * MR * PANEL];
                tile(isa, d, a, bank.panel(q), c);
                let rows = (bb - q * MR).min(MR);
                for r in 0..rows {
                    let row = &c[r * PANEL..r * PANEL + valid];
                    if !fold.lse.is_empty() {
                        for (m, &x) in colmax.iter_mut().zip(row) {
                            *m = if x > *m { x } else { *m };
                        }
                    }
                    if !fold.topv.is_empty() && row.iter().zip(&thr).fold(false, |a, (x, t)| a | (x > t)) {
                        for l in 0..valid {
                            if row[l] > thr[l] {
                                fold.topv[rel + l].extend(&row[l..l + 1]);
                                thr[l] = fold.topv[rel + l].threshold();
                            }
                        }
                    }
                    if let Some(cand) = fold.cand.as_deref_mut() {
                        let b = q * MR + r;
                        let t = cand.threshold(b);
                        if row.iter().fold(false, |a, &x| a | (x > t)) {
                            for l in 0..valid {
                                if row[l] > cand.threshold(b) {
                                    cand.push(b, row[l], (jp + l) as u32);
                                }
                            }
                        }
                    }
                }
            }
            if !fold.lse.is_empty() && bb > 0 {
                let beta = fold.beta;
                let mut shift = [0f64; PANEL];
                let mut acc = [0f64; PANEL];
                for l in 0..valid {
                    let st = &mut fold.lse[rel + l];
                    let m2 = st.m.max(beta * colmax[l] as f64);
                    acc[l] = if st.z == 0.0 { 0.0 } else { st.z * exp_nonpos(st.m - m2) };
                    shift[l] = m2;
                    st.m = m2;
                }
                super::lse::Variant::detect().add_exp_shifted_rows(&buf[..bb * PANEL], bb, PANEL, beta, &shift[..valid], &mut acc[..valid]);
                for l in 0..valid {
                    fold.lse[rel + l].z = acc[l];
                }
            }
        }
    });
}

/// Scalar reference of one micro-tile (f64 accumulation, rounded once).
pub fn tile_reference(d: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    for r in 0..MR {
        for l in 0..PANEL {
            let mut s = 0f64;
            for t in 0..d {
                s += b[t * MR + r] as f64 * a[t * PANEL + l] as f64;
            }
            c[r * PANEL + l] = s as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: &mut u64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn packing_places_every_element_and_zero_pads() {
        let mut s = 3;
        for &(rows, d, w) in &[(1, 1, 6), (7, 3, 6), (65, 5, 64), (130, 17, 64), (6, 0, 6)] {
            let src = data(rows * d, &mut s);
            let mut p = Packed::new(w);
            p.pack(&src, rows, d);
            assert_eq!(p.panels(), rows.div_ceil(w));
            for q in 0..p.panels() {
                let panel = p.panel(q);
                // every gallery panel (64·d floats) and the first panel of any width is 64-byte aligned
                if d > 0 && (w == PANEL || q == 0) {
                    assert_eq!(panel.as_ptr() as usize % 64, 0);
                }
                for t in 0..d {
                    for l in 0..w {
                        let r = q * w + l;
                        assert_eq!(panel[t * w + l], if r < rows { src[r * d + t] } else { 0.0 });
                    }
                }
            }
        }
    }

    /// Every micro-kernel this CPU runs against the scalar reference over depths 0..=70 (every tail
    /// of the unrolled depth loop); the FMA bodies agree bit for bit.
    #[test]
    fn every_micro_kernel_matches_reference_over_depths() {
        let mut s = 5;
        for d in 0..=70usize {
            let (a, b) = (data(d * PANEL, &mut s), data(d * MR, &mut s));
            let mut want = vec![0f32; MR * PANEL];
            tile_reference(d, &a, &b, &mut want);
            let mut fma_bits: Option<Vec<u32>> = None;
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; MR * PANEL];
                tile(isa, d, &a, &b, &mut got);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 2e-6 * d as f32 + 1e-7, "{isa:?} d {d}: {g} vs {w}");
                }
                if isa.level() != Level::Portable {
                    let bits: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
                    if let Some(prev) = &fma_bits {
                        assert_eq!(prev, &bits, "FMA bodies disagree at d {d}");
                    }
                    fma_bits = Some(bits);
                }
            }
        }
    }

    /// The fused fold of every kernel against a scalar reference of the same statistics over odd
    /// gallery sizes (panel tails), odd bank blocks (micro-tile tails) and odd depths.
    #[test]
    fn every_kernel_folds_like_the_reference() {
        let mut s = 9;
        for &(n, bb, d) in &[(1, 1, 1), (5, 7, 3), (63, 13, 17), (64, 6, 8), (65, 11, 33), (130, 25, 64), (200, 97, 5)] {
            let (g, bk) = (data(n * d, &mut s), data(bb * d, &mut s));
            let (beta, kv, kr) = (3.5, 3, 2);
            // reference: exact products, f64 log-sum-exp, sorted top lists
            let sim = |b: usize, j: usize| (0..d).map(|t| bk[b * d + t] as f64 * g[j * d + t] as f64).sum::<f64>();
            for isa in Isa::available() {
                let (mut gp, mut bp) = (Packed::new(PANEL), Packed::new(MR));
                gp.pack(&g, n, d);
                bp.pack(&bk, bb, d);
                let mut lse = vec![LseState::default(); n];
                let mut topv: Vec<TopValues> = (0..n).map(|_| TopValues::new(kv)).collect();
                let mut cand = TopKLists::new(bb, kr);
                // two tiles of panels, as the driver cuts them
                let np = gp.panels();
                let cut = np / 2;
                for range in [0..cut, cut..np] {
                    let j0 = range.start * PANEL;
                    let j1 = (range.end * PANEL).min(n);
                    let mut f = Fold { beta, lse: &mut lse[j0..j1], topv: &mut topv[j0..j1], cand: Some(&mut cand) };
                    fold_tile(isa, &gp, range, &bp, &mut f);
                }
                for j in 0..n {
                    let xs: Vec<f64> = (0..bb).map(|b| sim(b, j)).collect();
                    let mx = xs.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(beta * x));
                    let want = mx + xs.iter().map(|&x| (beta * x - mx).exp()).sum::<f64>().ln();
                    assert!((lse[j].value() - want).abs() < 1e-4, "{isa:?} {n}x{bb}x{d} lse[{j}]: {} vs {want}", lse[j].value());
                    let mut sorted = xs.clone();
                    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
                    let got = topv[j].values();
                    assert_eq!(got.len(), kv.min(bb));
                    for (g, w) in got.iter().zip(&sorted) {
                        assert!((*g as f64 - w).abs() < 1e-5, "{isa:?} top value of {j}: {g} vs {w}");
                    }
                }
                for b in 0..bb {
                    let (idx, sc) = cand.list(b);
                    assert_eq!(idx.len(), kr.min(n));
                    let mut all: Vec<(f64, usize)> = (0..n).map(|j| (sim(b, j), j)).collect();
                    all.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap().then(x.1.cmp(&y.1)));
                    for (r, (&i, &s)) in idx.iter().zip(sc).enumerate() {
                        // near-ties may swap under f32 rounding: compare scores, and indices when well separated
                        assert!((s as f64 - all[r].0).abs() < 1e-5, "{isa:?} row {b} rank {r}: {s} vs {}", all[r].0);
                        let gap = (all[r].0 - all.get(r + 1).map_or(f64::NEG_INFINITY, |x| x.0)).abs().min(if r > 0 { (all[r - 1].0 - all[r].0).abs() } else { f64::INFINITY });
                        if gap > 1e-5 {
                            assert_eq!(i as usize, all[r].1, "{isa:?} row {b} rank {r}");
                        }
                    }
                }
            }
        }
    }
}
