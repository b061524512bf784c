//! The shared scoring model every method compiles to, and the fused search over it.
//!
//! Every method in this crate scores query q against gallery item j as
//!
//! ```text
//! ℓ(q, j) = scale · s(q, j) − bias[v(q)][j] − offset(q)
//! ```
//!
//! where `v(q)` is a *variant* chosen per query by a gate on the raw top-1 `t(q) = argmax_j s(q, j)`
//! (DIS: 2 variants, DualDIS: 4; everything else: 1) and `offset(q)` is a per-query constant
//! (CSLS: the mean of the K largest raw similarities of q; else 0). Biases are `f64`; `scale > 0`.
//! This is also why the methods are bias-reducible (docs/methods.md §4).
//!
//! # Finite scores (the contract)
//! Parameters are bounded: β_q, β_g and NNN's α are at most [`MAX_PARAM`] (1e30; `Params::validate`
//! refuses larger ones with `ERR_PARAM`). Everything downstream of a similarity is `f64`: β·s, the
//! log-sum-exp biases (shifted by the running maximum, so β·P never overflows: |β·P| ≤ 1e30 ·
//! 3.4e38), the scores ℓ and every ranking decision (search, rerank, activation sets), so rankings
//! are those of the exact `f64` scores under the tie rule (score desc, index asc). Returned scores
//! are those `f64` values rounded once to `f32`. Under cosine (|s| ≤ 1) every score then fits `f32`
//! (|ℓ| ≤ 2·(β_q+β_g) + ln(m_q·m_g) or 1 + α), so results are always finite. Under the dot metric or
//! precomputed similarities, s is only bounded by the input: a call whose score would exceed the
//! `f32` range (|ℓ| > 3.4e38) fails with `ERR_PARAM` ([`score_out_of_range`]) instead of
//! returning ±Inf or an index-order ranking.
//!
//! # Batch independence (the contract)
//! Every query × gallery similarity of `search`, `scores` and `rerank` (embeddings mode) comes from
//! one kernel, [`crate::kernels::dot`], whose per-element summation order depends only on the
//! dimension and the CPU's instruction-set level — not on the batch size, the tiling, the path or
//! the thread count — and everything after it is per-query `f64` arithmetic with a total order. So a
//! query's scores, top-k and reranked order are bit-identical whether it comes alone or in a batch
//! of any size, on any number of threads (tested: every method, batches 1..=40 and 300). Machines
//! with a different instruction-set level (AVX-512 / AVX2+FMA / portable) may differ in the last
//! bits of the `f32` similarities. `similarity()` and the bank statistics use the GEMM
//! ([`crate::kernels::gemm`]); their values may differ from the search kernel's by `f32` rounding.
//!
//! Search never materialises the query × gallery matrix: query blocks × gallery chunks are scored
//! tile by tile and reduced on the fly to a running top-k *per variant*; once the raw top-1 of the
//! row is known, the gated variant's list is kept. Top-k under the total order (score desc, index
//! asc) is unique, so merging chunk results in any order is bit-identical.

use rayon::prelude::*;

use crate::control::Control;
use crate::error::{Error, Result};
use crate::gallery::GalleryView;
use crate::kernels::dot::dot_rows;
use crate::kernels::lse::max_f32;
use crate::kernels::topk::{TopK, TopValues};

/// Largest accepted β_q, β_g and NNN α (see "Finite scores" in the module docs).
pub const MAX_PARAM: f64 = 1e30;

/// The error of a score outside the `f32` range (see "Finite scores" in the module docs).
pub fn score_out_of_range(v: f64) -> Error {
    Error::param(format!(
        "a normalised score of {v:e} does not fit float32 (|score| ≤ 3.4e38): β·s is outside the supported range; lower betaQuery/betaGallery/nnnAlpha or rescale the similarities"
    ))
}

/// `v` rounded to `f32`, or [`score_out_of_range`] when it does not fit.
#[inline(always)]
pub fn score_to_f32(v: f64) -> Result<f32> {
    let x = v as f32;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(score_out_of_range(v))
    }
}

/// How a query picks its variant.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// One variant.
    None,
    /// DIS: variant 1 (normalised) iff the raw top-1 is in the activation set, else variant 0.
    Single(Vec<bool>),
    /// DualDIS: variant `γq + 2·γg` from two activation sets.
    Dual(Vec<bool>, Vec<bool>),
}

/// A compiled scoring rule (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Scorer {
    pub scale: f64,
    /// `variants × n_gallery` biases.
    pub bias: Vec<Vec<f64>>,
    pub gate: Gate,
    /// K of the per-query offset (mean of the K largest raw similarities of the row); 0 = no offset.
    pub offset_k: usize,
    pub n_gallery: usize,
}

/// Largest number of queries per search tile.
const QUERY_BLOCK: usize = 512;

/// Up to this many queries form one block: the gallery is then read once, its chunks spread over
/// the cores (memory-bound regime).
const ONE_BLOCK_MAX_QUERIES: usize = 128;

/// Queries per search tile for `nq` queries: all of them up to [`ONE_BLOCK_MAX_QUERIES`]; beyond,
/// at most [`QUERY_BLOCK`] and small enough that at least four blocks share the cores (multiples of
/// 16 for the GEMM micro-kernels). Depends on `nq` only, never on the thread count.
fn query_block(nq: usize) -> usize {
    if nq <= ONE_BLOCK_MAX_QUERIES {
        nq.max(1)
    } else {
        (nq.div_ceil(4).div_ceil(16) * 16).clamp(32, QUERY_BLOCK)
    }
}
/// Gallery items per search tile.
const GALLERY_CHUNK: usize = 1024;
/// Query blocks per abort / progress checkpoint.
const QUERY_BLOCK_GROUP: usize = 4;

/// Per-row running state during a fused search.
#[derive(Clone)]
struct RowState {
    raw_top: TopK,
    raw_vals: Option<TopValues>,
    lists: Vec<TopK>,
}

impl Scorer {
    pub fn variants(&self) -> usize {
        self.bias.len()
    }

    fn needs_top1(&self) -> bool {
        !matches!(self.gate, Gate::None)
    }

    /// Variant of a query whose raw top-1 is `t`.
    #[inline]
    pub fn variant_of(&self, t: usize) -> usize {
        match &self.gate {
            Gate::None => 0,
            Gate::Single(a) => a[t] as usize,
            Gate::Dual(aq, ag) => aq[t] as usize + 2 * ag[t] as usize,
        }
    }

    #[inline(always)]
    fn score(&self, s: f32, v: usize, j: usize, offset: f64) -> f64 {
        self.scale * s as f64 - self.bias[v][j] - offset
    }

    /// Raw top-1 (ties: lowest index) and the offset of one full raw row.
    pub fn row_context(&self, raw: &[f32]) -> (usize, f64) {
        let mut t = 0usize;
        if self.needs_top1() {
            for (j, &s) in raw.iter().enumerate() {
                if s > raw[t] {
                    t = j;
                }
            }
        }
        let off = if self.offset_k > 0 {
            let mut tv = TopValues::new(self.offset_k.min(raw.len()));
            tv.extend(raw);
            tv.mean()
        } else {
            0.0
        };
        (t, off)
    }

    /// Replaces each raw row of `rows` (row-major, `n_gallery` wide) by its normalised scores.
    /// Errors: a score outside the `f32` range ([`score_out_of_range`]; `rows` is then unspecified).
    pub fn score_rows_in_place(&self, rows: &mut [f32]) -> Result<()> {
        let ng = self.n_gallery;
        if ng == 0 {
            return Ok(());
        }
        let bad = rows
            .par_chunks_mut(ng)
            .map(|row| {
                let (t, off) = self.row_context(row);
                let v = self.variant_of(t);
                let mut worst = 0f64;
                for (j, x) in row.iter_mut().enumerate() {
                    let l = self.score(*x, v, j, off);
                    worst = if l.abs() > worst.abs() { l } else { worst };
                    *x = l as f32;
                }
                worst
            })
            .find_any(|w| !(*w as f32).is_finite());
        match bad {
            Some(v) => Err(score_out_of_range(v)),
            None => Ok(()),
        }
    }

    /// The full `nq × n_gallery` score matrix from raw similarities (row-major `f32`).
    pub fn scores_from_sims(&self, sims: &[f32], nq: usize) -> Result<Vec<f32>> {
        let mut out = sims[..nq * self.n_gallery].to_vec();
        self.score_rows_in_place(&mut out)?;
        Ok(out)
    }

    fn new_row(&self, k: usize) -> RowState {
        RowState {
            raw_top: TopK::new(if self.needs_top1() { 1 } else { 0 }),
            raw_vals: if self.offset_k > 0 { Some(TopValues::new(self.offset_k.min(self.n_gallery))) } else { None },
            lists: (0..self.variants()).map(|_| TopK::new(k)).collect(),
        }
    }

    /// Folds raw similarities `raw` of gallery items `j0..j0+raw.len()` into a row state.
    #[inline]
    fn fold(&self, st: &mut RowState, raw: &[f32], j0: usize) {
        if raw.is_empty() {
            return;
        }
        if self.needs_top1() {
            // First index of the chunk maximum (ties → lowest index), found with vectorised passes.
            let m = max_f32(raw);
            let jj = raw.iter().position(|&x| x == m).unwrap_or(0);
            st.raw_top.push(m as f64, (j0 + jj) as u32);
        }
        if let Some(tv) = st.raw_vals.as_mut() {
            tv.extend(raw);
        }
        const L: usize = 16;
        for (v, list) in st.lists.iter_mut().enumerate() {
            let bias = &self.bias[v][j0..j0 + raw.len()];
            let mut c0 = 0;
            while c0 < raw.len() {
                let c1 = (c0 + L).min(raw.len());
                let thr = list.threshold();
                let mut sc = [0f64; L];
                let mut any = false;
                for l in 0..c1 - c0 {
                    sc[l] = self.scale * raw[c0 + l] as f64 - bias[c0 + l];
                    any |= sc[l] > thr;
                }
                // Candidates arrive in increasing index and the list holds only lower indices, so a
                // score equal to the threshold loses its tie: `>` is exact.
                if any {
                    for l in 0..c1 - c0 {
                        if sc[l] > list.threshold() {
                            list.push(sc[l], (j0 + c0 + l) as u32);
                        }
                    }
                }
                c0 = c1;
            }
        }
    }

    fn merge_row(&self, into: &mut RowState, other: &RowState) {
        into.raw_top.merge(&other.raw_top);
        if let (Some(a), Some(b)) = (into.raw_vals.as_mut(), other.raw_vals.as_ref()) {
            a.merge(b);
        }
        for (a, b) in into.lists.iter_mut().zip(&other.lists) {
            a.merge(b);
        }
    }

    fn finish_row(&self, st: &RowState, k: usize, idx: &mut [u32], sc: &mut [f32]) -> Result<()> {
        let t = if self.needs_top1() { st.raw_top.indices()[0] as usize } else { 0 };
        let off = st.raw_vals.as_ref().map(|tv| tv.mean()).unwrap_or(0.0);
        let list = &st.lists[self.variant_of(t)];
        for r in 0..k {
            idx[r] = list.indices()[r];
            sc[r] = score_to_f32(list.scores()[r] - off)?;
        }
        Ok(())
    }

    /// Top-k per query from precomputed raw similarities (`nq × n_gallery`), `k ≤ n_gallery`.
    /// Returns `(indices, scores)`, each `nq × k` row-major, best first.
    pub fn search_sims(&self, sims: &[f32], nq: usize, k: usize) -> Result<(Vec<u32>, Vec<f32>)> {
        let ng = self.n_gallery;
        let mut idx = vec![0u32; nq * k];
        let mut sc = vec![0f32; nq * k];
        idx.par_chunks_mut(k.max(1)).zip(sc.par_chunks_mut(k.max(1))).enumerate().try_for_each(|(q, (i, s))| {
            let mut st = self.new_row(k);
            self.fold(&mut st, &sims[q * ng..(q + 1) * ng], 0);
            self.finish_row(&st, k, i, s)
        })?;
        Ok((idx, sc))
    }

    /// Fused top-k search from query embeddings (`nq × dim`, prepared for the metric) against the
    /// prepared gallery (`n_gallery × dim`). Never builds the `nq × n_gallery` matrix.
    pub fn search_embeddings(&self, queries: &[f32], nq: usize, gallery: &[f32], dim: usize, k: usize, ctl: &Control) -> Result<(Vec<u32>, Vec<f32>)> {
        self.search_embeddings_view(queries, nq, GalleryView::F32 { data: gallery, dim }, k, ctl)
    }

    /// [`Self::search_embeddings`] over any gallery store (`crate::gallery`): each gallery chunk is read
    /// through the view (borrowed for an `f32` store, widened or read from the source file otherwise).
    pub fn search_embeddings_view(&self, queries: &[f32], nq: usize, gallery: GalleryView<'_>, k: usize, ctl: &Control) -> Result<(Vec<u32>, Vec<f32>)> {
        let dim = gallery.dim();
        let ng = self.n_gallery;
        let qbs = query_block(nq);
        let n_qb = nq.div_ceil(qbs);
        let n_gc = ng.div_ceil(GALLERY_CHUNK);
        let mut idx = vec![0u32; nq * k];
        let mut sc = vec![0f32; nq * k];
        // One (query block × gallery chunk) tile: raw similarities folded into the rows' states.
        let tile_into = |b: usize, c: usize, rows: &mut [RowState], tile: &mut Vec<f32>, gbuf: &mut Vec<f32>| -> Result<()> {
            let q0 = b * qbs;
            let qb = (nq - q0).min(qbs);
            let j0 = c * GALLERY_CHUNK;
            let gc = (ng - j0).min(GALLERY_CHUNK);
            tile.resize(qb * gc, 0.0);
            let (q, g) = (&queries[q0 * dim..(q0 + qb) * dim], gallery.rows(j0, gc, gbuf)?);
            // The one similarity kernel of search, scores and rerank: each element's value depends
            // only on its query and gallery row (not on qb, the tile or the thread count), so a
            // query's results do not depend on the batch it came in. It reads the gallery rows in
            // place: nothing is packed per tile or per search.
            dot_rows(q, qb, g, gc, dim, tile, gc);
            for (r, st) in rows.iter_mut().enumerate() {
                self.fold(st, &tile[r * gc..(r + 1) * gc], j0);
            }
            Ok(())
        };
        let rows_of = |b: usize| (nq - b * qbs).min(qbs);
        // Tiles are the same (query block × GALLERY_CHUNK) shapes whichever way the work is spread, and
        // top-k under a total order is unique, so both strategies give bit-identical results.
        if n_qb >= 2 {
            // Many queries: blocks in parallel, each walking the gallery chunks in order (memory:
            // one row state per query of the block).
            for g0 in (0..n_qb).step_by(QUERY_BLOCK_GROUP) {
                ctl.check()?;
                let g1 = (g0 + QUERY_BLOCK_GROUP).min(n_qb);
                let done: Vec<Vec<RowState>> = (g0..g1)
                    .into_par_iter()
                    .map(|b| -> Result<Vec<RowState>> {
                        let mut rows: Vec<RowState> = (0..rows_of(b)).map(|_| self.new_row(k)).collect();
                        let (mut tile, mut gbuf) = (Vec::new(), Vec::new());
                        for c in 0..n_gc {
                            // an abort stops within one tile (the result is then discarded below)
                            if ctl.check().is_err() {
                                break;
                            }
                            tile_into(b, c, &mut rows, &mut tile, &mut gbuf)?;
                        }
                        Ok(rows)
                    })
                    .collect::<Result<_>>()?;
                ctl.check()?;
                for (b, rows) in (g0..g1).zip(done) {
                    for (r, st) in rows.iter().enumerate() {
                        let q = b * qbs + r;
                        self.finish_row(st, k, &mut idx[q * k..(q + 1) * k], &mut sc[q * k..(q + 1) * k])?;
                    }
                }
                ctl.progress("search", (g1 * qbs).min(nq), nq);
            }
        } else {
            // Few queries (online): gallery chunks in parallel, partial states merged per row.
            for b in 0..n_qb {
                ctl.check()?;
                let fresh = || (0..rows_of(b)).map(|_| self.new_row(k)).collect::<Vec<RowState>>();
                let merged = (0..n_gc)
                    .into_par_iter()
                    .map_init(
                        || (Vec::new(), Vec::new()),
                        |(tile, gbuf), c| -> Result<Vec<RowState>> {
                            let mut rows = fresh();
                            if ctl.check().is_ok() {
                                tile_into(b, c, &mut rows, tile, gbuf)?;
                            }
                            Ok(rows)
                        },
                    )
                    .reduce(
                        || Ok(fresh()),
                        |a, bb| {
                            let (mut a, bb) = (a?, bb?);
                            for (x, y) in a.iter_mut().zip(&bb) {
                                self.merge_row(x, y);
                            }
                            Ok(a)
                        },
                    )?;
                ctl.check()?;
                for (r, st) in merged.iter().enumerate() {
                    let q = b * qbs + r;
                    self.finish_row(st, k, &mut idx[q * k..(q + 1) * k], &mut sc[q * k..(q + 1) * k])?;
                }
                ctl.progress("search", ((b + 1) * qbs).min(nq), nq);
            }
        }
        Ok((idx, sc))
    }
}
