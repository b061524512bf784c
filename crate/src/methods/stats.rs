//! Streaming per-gallery statistics of a bank: the one pass over bank × gallery similarities that
//! every bank-based method is fitted from.
//!
//! Bank rows are consumed in fixed blocks of [`BANK_BLOCK`] rows. For each block, the gallery is cut
//! into fixed tiles of [`GALLERY_TILE`] items processed in parallel. From embeddings, the gallery is
//! packed once per pass and each bank block once (shared by every tile), and the fused kernel
//! ([`crate::kernels::fused`]) folds each micro-tile of products into the statistics while it is in
//! L1; from a precomputed matrix, each tile folds its columns in place. Peak extra memory is therefore
//! O(gallery · d + block · d + threads · block · 64 + gallery · K), never O(bank × gallery). Block
//! and tile boundaries are constants and per-item state is updated by exactly one task in block
//! order, so results are bit-identical for any thread count.
//!
//! Statistics (all optional, per gallery item j unless said otherwise):
//! - `lse[j] = log Σ_b exp(β·P_bj)` (f64 streaming log-sum-exp, see [`crate::kernels::lse`]);
//! - `top_mean[j]` = mean of the K largest `P_bj` over the bank axis (CSLS r_S, NNN);
//! - per **bank row** b, its k best gallery items (score desc, index asc) — the activation set of
//!   DIS/DualDIS is the union of these lists.

use rayon::prelude::*;

use crate::control::Control;
use crate::error::Result;
use crate::kernels::fused::{fold_tile, Fold, Packed, MR, PANEL};
use crate::kernels::isa::Isa;
use crate::kernels::lse::{add_exp_shifted, exp_nonpos, LseState};
use crate::kernels::topk::{TopKLists, TopValues};

/// Bank rows per streamed block.
pub const BANK_BLOCK: usize = 1024;
/// Gallery items per parallel tile.
pub const GALLERY_TILE: usize = 512;

/// Which statistics to compute.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatsRequest {
    /// Inverse temperature β of the log-sum-exp normaliser (`> 0`).
    pub lse_beta: Option<f64>,
    /// K of the bank-axis top-K mean (clamped to the bank size).
    pub top_values: Option<usize>,
    /// k of each bank row's best gallery items (clamped to the gallery size).
    pub row_topk: Option<usize>,
}

/// Per-gallery statistics of one bank. Vectors are indexed by gallery item unless noted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BankStats {
    /// Bank rows folded in.
    pub bank_rows: usize,
    /// `L(j)` (present iff requested).
    pub lse: Option<Vec<f64>>,
    /// The β used for `lse`.
    pub lse_beta: f64,
    /// Effective K of `top_mean` after clamping.
    pub top_k: usize,
    pub top_mean: Option<Vec<f64>>,
    /// Effective k of the row lists after clamping.
    pub row_k: usize,
    /// `bank_rows × row_k` gallery indices (best first) and their scores; row-major.
    pub row_topk_idx: Option<Vec<u32>>,
    pub row_topk_score: Option<Vec<f32>>,
}

impl BankStats {
    /// The activation set as a bitmap over `n_gallery` items: the union of every bank row's top-k.
    pub fn activation(&self, n_gallery: usize) -> Option<Vec<bool>> {
        let idx = self.row_topk_idx.as_ref()?;
        let mut act = vec![false; n_gallery];
        for &j in idx {
            act[j as usize] = true;
        }
        Some(act)
    }
}

/// Where the bank × gallery similarities come from.
pub enum Source<'a> {
    /// Bank rows `bank` (m×d) against gallery rows `gallery` (n×d); both already prepared for the
    /// metric (unit rows for cosine).
    Embeddings { bank: &'a [f32], gallery: &'a [f32], dim: usize },
    /// A precomputed bank × gallery matrix, row-major m×n.
    Sims { sims: &'a [f32] },
}

/// Per-column top-k candidate lists for one tile (columns = bank rows of the block): the shared
/// [`TopKLists`] (one insertion step and tie rule for every top-k of the crate).
type ColumnTopK = TopKLists;

/// Columns tested per vectorised threshold check.
const LANES: usize = 16;

/// Computes the requested statistics of a bank of `m` rows against a gallery of `n` items.
pub fn bank_stats(source: Source, m: usize, n: usize, req: StatsRequest, ctl: &Control, phase: &str) -> Result<BankStats> {
    bank_states(source, m, n, req, ctl, phase).map(BankStates::finish)
}

/// The streaming states behind [`BankStats`] before the top-K values are reduced to their mean: what a
/// shard of a fit keeps so that shards merge exactly (see `crate::shard`).
#[derive(Clone, Debug)]
pub struct BankStates {
    pub bank_rows: usize,
    /// `L(j)` per gallery item (present iff requested) and its β.
    pub lse: Option<Vec<f64>>,
    pub lse_beta: f64,
    /// Effective K and, per gallery item, its K largest bank similarities (largest first).
    pub top_k: usize,
    pub top_values: Option<Vec<TopValues>>,
    /// Effective k and the per-bank-row lists, as in [`BankStats`].
    pub row_k: usize,
    pub row_topk_idx: Option<Vec<u32>>,
    pub row_topk_score: Option<Vec<f32>>,
}

impl BankStates {
    /// The finished statistics (top-K values reduced to their mean).
    pub fn finish(self) -> BankStats {
        BankStats {
            bank_rows: self.bank_rows,
            lse: self.lse,
            lse_beta: self.lse_beta,
            top_k: self.top_k,
            top_mean: self.top_values.map(|t| t.iter().map(|t| t.mean()).collect()),
            row_k: self.row_k,
            row_topk_idx: self.row_topk_idx,
            row_topk_score: self.row_topk_score,
        }
    }
}

/// [`bank_stats`] without the final reduction of the top-K values.
pub fn bank_states(source: Source, m: usize, n: usize, req: StatsRequest, ctl: &Control, phase: &str) -> Result<BankStates> {
    let top_k = req.top_values.map(|k| k.min(m)).unwrap_or(0);
    let row_k = req.row_topk.map(|k| k.min(n)).unwrap_or(0);
    let mut lse: Vec<LseState> = if req.lse_beta.is_some() { vec![LseState::default(); n] } else { Vec::new() };
    let mut topv: Vec<TopValues> = if top_k > 0 { (0..n).map(|_| TopValues::new(top_k)).collect() } else { Vec::new() };
    let mut row_idx: Vec<u32> = Vec::with_capacity(if row_k > 0 { m * row_k } else { 0 });
    let mut row_score: Vec<f32> = Vec::with_capacity(row_idx.capacity());
    let beta = req.lse_beta.unwrap_or(1.0);

    let n_tiles = n.div_ceil(GALLERY_TILE);
    let n_blocks = m.div_ceil(BANK_BLOCK);
    // From embeddings: the gallery packed once for the whole pass, each bank block once (one buffer).
    let isa = Isa::detect();
    let (mut gal_packed, mut bank_packed) = (Packed::new(PANEL), Packed::new(MR));
    if let Source::Embeddings { gallery, dim, .. } = &source {
        gal_packed.pack(gallery, n, *dim);
    }
    for blk in 0..n_blocks {
        ctl.check()?;
        let b0 = blk * BANK_BLOCK;
        let bb = (m - b0).min(BANK_BLOCK);
        if let Source::Embeddings { bank, dim, .. } = &source {
            bank_packed.pack(&bank[b0 * dim..(b0 + bb) * dim], bb, *dim);
        }
        let (gal_packed, bank_packed) = (&gal_packed, &bank_packed);
        // Per tile: fold the tile into its items' LSE / top values; return per-bank-row candidates.
        let work = |t: usize, lse_tile: &mut [LseState], topv_tile: &mut [TopValues]| -> Option<ColumnTopK> {
            let j0 = t * GALLERY_TILE;
            let gt = (n - j0).min(GALLERY_TILE);
            match &source {
                Source::Embeddings { .. } => {
                    let mut cand = (row_k > 0).then(|| ColumnTopK::new(bb, row_k));
                    let panels = j0 / PANEL..(j0 + gt).div_ceil(PANEL);
                    fold_tile(isa, gal_packed, panels, bank_packed, &mut Fold { beta, lse: lse_tile, topv: topv_tile, cand: cand.as_mut() });
                    cand
                }
                Source::Sims { sims } => {
                    // Bank-major input: fold column-wise in place, no transpose.
                    let rows: Vec<&[f32]> = (0..bb).map(|r| &sims[(b0 + r) * n + j0..(b0 + r) * n + j0 + gt]).collect();
                    fold_columns(&rows, j0, beta, lse_tile, topv_tile, row_k)
                }
            }
        };
        let cands: Vec<Option<ColumnTopK>> = if lse.is_empty() && topv.is_empty() {
            (0..n_tiles).into_par_iter().map(|t| work(t, &mut [], &mut [])).collect()
        } else if topv.is_empty() {
            lse.par_chunks_mut(GALLERY_TILE).enumerate().map(|(t, l)| work(t, l, &mut [])).collect()
        } else if lse.is_empty() {
            topv.par_chunks_mut(GALLERY_TILE).enumerate().map(|(t, v)| work(t, &mut [], v)).collect()
        } else {
            lse.par_chunks_mut(GALLERY_TILE)
                .zip(topv.par_chunks_mut(GALLERY_TILE))
                .enumerate()
                .map(|(t, (l, v))| work(t, l, v))
                .collect()
        };
        if row_k > 0 {
            // Merge tile candidates per bank row, tiles in order (any order gives the same result).
            let mut merged = ColumnTopK::new(bb, row_k);
            for cand in cands.iter().flatten() {
                for c in 0..bb {
                    let (ci, cs) = cand.list(c);
                    for (&i, &sc) in ci.iter().zip(cs) {
                        merged.push(c, sc, i);
                    }
                }
            }
            for c in 0..bb {
                let (mi, ms) = merged.list(c);
                debug_assert_eq!(mi.len(), row_k);
                row_idx.extend_from_slice(mi);
                row_score.extend_from_slice(ms);
            }
        }
        ctl.progress(phase, b0 + bb, m);
    }

    Ok(BankStates {
        bank_rows: m,
        lse: req.lse_beta.map(|_| lse.iter().map(|s| s.value()).collect()),
        lse_beta: req.lse_beta.unwrap_or(0.0),
        top_k,
        top_values: if top_k > 0 { Some(topv) } else { None },
        row_k,
        row_topk_idx: if row_k > 0 { Some(row_idx) } else { None },
        row_topk_score: if row_k > 0 { Some(row_score) } else { None },
    })
}

/// Folds a bank-major block — `rows[r]` holds bank row r's similarities to gallery items
/// `j0..j0 + rows[r].len()` — into those items' statistics, column-wise (one lane per gallery item, so
/// nothing is transposed). Per column the sums run over the rows in order: deterministic.
fn fold_columns(rows: &[&[f32]], j0: usize, beta: f64, lse: &mut [LseState], topv: &mut [TopValues], row_k: usize) -> Option<ColumnTopK> {
    let gt = rows.first().map_or(0, |r| r.len());
    if !lse.is_empty() {
        let mut mx = vec![f32::NEG_INFINITY; gt];
        for row in rows {
            for (m, &x) in mx.iter_mut().zip(*row) {
                *m = if x > *m { x } else { *m };
            }
        }
        let mut shift = vec![0f64; gt];
        let mut acc = vec![0f64; gt];
        for jj in 0..gt {
            let st = &mut lse[jj];
            let m2 = st.m.max(beta * mx[jj] as f64);
            acc[jj] = if st.z == 0.0 { 0.0 } else { st.z * exp_nonpos(st.m - m2) };
            shift[jj] = m2;
            st.m = m2;
        }
        for row in rows {
            add_exp_shifted(row, beta, &shift, &mut acc);
        }
        for (st, a) in lse.iter_mut().zip(acc) {
            st.z = a;
        }
    }
    if !topv.is_empty() {
        let mut thr: Vec<f32> = topv.iter().map(|t| t.threshold()).collect();
        for row in rows {
            for c0 in (0..gt).step_by(LANES) {
                let c1 = (c0 + LANES).min(gt);
                if row[c0..c1].iter().zip(&thr[c0..c1]).fold(false, |a, (x, t)| a | (x > t)) {
                    for jj in c0..c1 {
                        if row[jj] > thr[jj] {
                            topv[jj].extend(&row[jj..jj + 1]);
                            thr[jj] = topv[jj].threshold();
                        }
                    }
                }
            }
        }
    }
    if row_k == 0 {
        return None;
    }
    let mut cand = ColumnTopK::new(rows.len(), row_k);
    for (r, row) in rows.iter().enumerate() {
        // Candidates of bank row r arrive in increasing gallery index: `>` decides ties exactly.
        for c0 in (0..gt).step_by(LANES) {
            let c1 = (c0 + LANES).min(gt);
            let t = cand.threshold(r);
            if row[c0..c1].iter().fold(false, |a, &x| a | (x > t)) {
                for jj in c0..c1 {
                    if row[jj] > cand.threshold(r) {
                        cand.push(r, row[jj], (j0 + jj) as u32);
                    }
                }
            }
        }
    }
    Some(cand)
}
