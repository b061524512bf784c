//! Log-domain Sinkhorn scaling over a streamed similarity matrix: the fitting step shared by `sn`
//! and `dual-sn` (docs/methods.md, "SN" and "DualSN").
//!
//! # The problem
//! `C` is an `n × m` matrix of similarities (`f32`): its rows are gallery-side items (the test
//! gallery, then — DBSN only — the gallery bank), its columns the query bank. With `β = 1/τ`, the
//! kernel `K_ib = exp(β·C_ib)` and uniform marginals `a_i = 1/n`, `b_b = 1/m`, Sinkhorn scaling looks
//! for `u, v` such that `diag(u)·K·diag(v)` has row sums `a` and column sums `b`. Starting from
//! `log u_i = −ln n`, each iteration runs, in this order,
//!
//! ```text
//! log v_b ← −ln m − LSE_i(β·C_ib + log u_i)        (the "column sweep", one pass over C)
//! log u_i ← −ln n − LSE_b(β·C_ib + log v_b)        (the "row sweep", one pass over C)
//! ```
//!
//! This is POT's `sinkhorn_knopp` with cost `1 − C` and regularisation τ (the constant 1 only
//! rescales v), written in the log domain: nothing is exponentiated outside a max-shifted
//! log-sum-exp, so no temperature overflows (τ down to 1e-30 on any finite `f32` similarity).
//!
//! # Streaming and memory
//! `C` is never held whole unless it fits the cache budget. It is cut into fixed tiles of
//! [`ROW_TILE`] rows × [`BANK_BLOCK`] columns; a tile is produced gallery-major (row i contiguous over
//! the bank) either by the GEMM of the row vectors against the bank vectors (embeddings) or by a
//! transposing copy from the caller's bank-major matrices (similarities). In embeddings mode the
//! first sweep keeps tiles in a cache, in a fixed order, up to `cache_budget` bytes; the rest are
//! recomputed in every sweep. A recomputed tile is bit-identical to its cached copy (same GEMM call
//! on the same operands), so the budget changes the time, never the result (tested).
//!
//! # Determinism
//! The column sweep runs one task per bank block, each folding the row tiles in order into its
//! columns' `f64` log-sum-exp states; the row sweep runs one task per row tile, each folding the bank
//! blocks in order into its rows' states. Tile boundaries are constants, and every state is updated
//! by exactly one task in a fixed order, so the potentials are bit-identical for any thread count.
//!
//! # Stopping
//! Exactly `iterations` iterations, unless `tol > 0`: the column sweep of iteration t + 1 yields, for
//! free, the column sums of the plan after iteration t, `exp(log v_b + LSE_i(β·C_ib + log u_i))`; if
//! the Euclidean norm of their deviation from `b` is below `tol` (POT's `stopThr` criterion, checked
//! every iteration instead of every tenth), the potentials of iteration t are returned.

use rayon::prelude::*;

use crate::control::Control;
use crate::error::Result;
use crate::kernels::gemm::matmul_abt;
use crate::kernels::isa::{Isa, Level};
use crate::kernels::lse::exp_nonpos;

/// Rows of `C` per tile (gallery-side items).
pub const ROW_TILE: usize = 256;
/// Columns of `C` per tile (query-bank items).
pub const BANK_BLOCK: usize = 512;
/// Default cache budget of the embeddings-mode tiles, in bytes (1 GiB): below it, `C` is computed
/// once; above it, the tiles past the budget are recomputed in each of the 2·T sweeps.
pub const DEFAULT_CACHE_BUDGET: usize = 1 << 30;

/// Where `C` comes from. Rows are stacked part after part (e.g. the gallery, then the gallery bank).
pub enum Source<'a> {
    /// Row vectors `parts[p]` (`n_p × dim`, row-major `f32`) against the bank vectors `bank`
    /// (`m × dim`), all prepared for the metric (unit rows under cosine): `C_ib = ⟨row_i, bank_b⟩`.
    Embeddings { parts: Vec<&'a [f32]>, bank: &'a [f32], dim: usize },
    /// Precomputed bank-major matrices, `parts[p]` being `m × n_p` row-major `f32`: `C_ib` of row
    /// `i` of part p is `parts[p][b·n_p + i]`.
    Sims { parts: Vec<&'a [f32]> },
}

/// Parameters of one Sinkhorn run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Temperature τ (`1e-30 ≤ τ`; `β = 1/τ` multiplies the similarities).
    pub tau: f64,
    /// Iterations to run (0: the potentials stay uniform).
    pub iterations: usize,
    /// Early-stop threshold on the column-marginal error (0: off).
    pub tol: f64,
    /// Bytes of `f32` tiles the embeddings mode may keep between sweeps.
    pub cache_budget: usize,
}

/// The fitted potentials.
#[derive(Clone, Debug, PartialEq)]
pub struct Potentials {
    /// `log u_i` per row of `C` (all parts, in order), `f64`.
    pub log_u: Vec<f64>,
    /// `log v_b` per column of `C` (query-bank item), `f64`.
    pub log_v: Vec<f64>,
    /// Iterations whose potentials are returned (`≤ iterations`; fewer when `tol` stopped early).
    pub iterations_run: usize,
}

/// One row tile: part `part`, its rows `r0..r0 + rows`, global rows `g0..g0 + rows`.
#[derive(Clone, Copy)]
struct RowTile {
    part: usize,
    r0: usize,
    rows: usize,
    g0: usize,
}

struct Plan<'a> {
    source: &'a Source<'a>,
    part_rows: &'a [usize],
    m: usize,
    tiles: Vec<RowTile>,
    n_blocks: usize,
}

impl<'a> Plan<'a> {
    /// The tiling of `C` (rows: the parts stacked; columns: `m` bank items) and its row count.
    fn new(source: &'a Source<'a>, part_rows: &'a [usize], m: usize) -> (Plan<'a>, usize) {
        let mut tiles = Vec::new();
        let mut g0 = 0;
        for (part, &np) in part_rows.iter().enumerate() {
            for r0 in (0..np).step_by(ROW_TILE) {
                let rows = (np - r0).min(ROW_TILE);
                tiles.push(RowTile { part, r0, rows, g0: g0 + r0 });
            }
            g0 += np;
        }
        (Plan { source, part_rows, m, n_blocks: m.div_ceil(BANK_BLOCK), tiles }, g0)
    }

    fn block(&self, bk: usize) -> (usize, usize) {
        let b0 = bk * BANK_BLOCK;
        (b0, (self.m - b0).min(BANK_BLOCK))
    }

    /// Writes tile (row tile `t`, bank block `bk`) gallery-major into `out` (`rows × cols`).
    fn fill(&self, t: RowTile, bk: usize, out: &mut [f32]) {
        let (b0, bb) = self.block(bk);
        match self.source {
            Source::Embeddings { parts, bank, dim } => {
                let d = *dim;
                matmul_abt(&parts[t.part][t.r0 * d..(t.r0 + t.rows) * d], t.rows, &bank[b0 * d..(b0 + bb) * d], bb, d, out);
            }
            Source::Sims { parts } => {
                let np = self.part_rows[t.part];
                let p = parts[t.part];
                for c in 0..bb {
                    let col = &p[(b0 + c) * np + t.r0..(b0 + c) * np + t.r0 + t.rows];
                    for (ii, &x) in col.iter().enumerate() {
                        out[ii * bb + c] = x;
                    }
                }
            }
        }
    }
}

/// Runs Sinkhorn scaling on `C` (see the module docs). `part_rows[p]` is the number of rows of part
/// p; `m ≥ 1` the number of columns; the rows total `n ≥ 1`.
pub fn sinkhorn(source: &Source, part_rows: &[usize], m: usize, opts: Options, ctl: &Control, phase: &str) -> Result<Potentials> {
    let (plan, n) = Plan::new(source, part_rows, m);
    assert!(n >= 1 && m >= 1, "sinkhorn: empty matrix");
    let beta = 1.0 / opts.tau;
    let log_a = -(n as f64).ln();
    let log_b = -(m as f64).ln();
    let mut log_u = vec![log_a; n];
    let mut log_v = vec![log_b; m];
    // Which tiles the cache keeps: a prefix in (bank block, row tile) order within the budget.
    let cacheable = matches!(source, Source::Embeddings { .. });
    let mut cache: Vec<Vec<Option<Vec<f32>>>> = (0..plan.n_blocks).map(|_| vec![None; plan.tiles.len()]).collect();
    let mut keep: Vec<Vec<bool>> = (0..plan.n_blocks).map(|_| vec![false; plan.tiles.len()]).collect();
    if cacheable {
        let mut left = opts.cache_budget;
        'outer: for (bk, row) in keep.iter_mut().enumerate() {
            for (t, k) in row.iter_mut().enumerate() {
                let bytes = plan.tiles[t].rows * plan.block(bk).1 * std::mem::size_of::<f32>();
                if bytes > left {
                    break 'outer;
                }
                left -= bytes;
                *k = true;
            }
        }
    }

    let sweeps = 2 * opts.iterations;
    let mut run = 0;
    for it in 0..opts.iterations {
        ctl.check()?;
        // Column sweep: LSE_i(β·C_ib + log u_i) per bank item b.
        let lse_cols = column_sweep(&plan, beta, &log_u, &mut cache, &keep, ctl);
        ctl.check()?;
        if opts.tol > 0.0 && it > 0 {
            // Column sums of the plan of iteration `it` (u, v as they stand): v_b · Σ_i K_ib u_i.
            let b = 1.0 / m as f64;
            let err2: f64 = lse_cols.iter().zip(&log_v).map(|(l, lv)| ((lv + l).exp() - b).powi(2)).sum();
            if err2.sqrt() < opts.tol {
                break;
            }
        }
        for (lv, l) in log_v.iter_mut().zip(&lse_cols) {
            *lv = log_b - l;
        }
        ctl.progress(phase, 2 * it + 1, sweeps);
        // Row sweep: LSE_b(β·C_ib + log v_b) per row i.
        row_sweep(&plan, beta, &log_v, log_a, &cache, &mut log_u, ctl);
        ctl.check()?;
        run = it + 1;
        ctl.progress(phase, 2 * it + 2, sweeps);
    }
    Ok(Potentials { log_u, log_v, iterations_run: run })
}

/// One row sweep with given bank potentials: `log u_i = −ln n − LSE_b(β·C_ib + log v_b)` (no cache).
/// With `log v` uniform this is IS with β = 1/τ up to a constant (docs/methods.md, "SN").
pub fn log_u_given_v(source: &Source, part_rows: &[usize], log_v: &[f64], tau: f64) -> Vec<f64> {
    let (plan, n) = Plan::new(source, part_rows, log_v.len());
    let cache: Vec<Vec<Option<Vec<f32>>>> = (0..plan.n_blocks).map(|_| vec![None; plan.tiles.len()]).collect();
    let mut log_u = vec![0.0; n];
    row_sweep(&plan, 1.0 / tau, log_v, -(n as f64).ln(), &cache, &mut log_u, &Control::none());
    log_u
}

/// Column sweep: returns `LSE_i(β·C_ib + log u_i)` for every column b. One task per bank block.
fn column_sweep(plan: &Plan, beta: f64, log_u: &[f64], cache: &mut [Vec<Option<Vec<f32>>>], keep: &[Vec<bool>], ctl: &Control) -> Vec<f64> {
    let isa = Isa::detect();
    let per_block: Vec<Vec<f64>> = cache
        .par_iter_mut()
        .zip(keep.par_iter())
        .enumerate()
        .map(|(bk, (slots, keep))| {
            let (_, bb) = plan.block(bk);
            let mut cm = vec![f64::NEG_INFINITY; bb];
            let mut cz = vec![0f64; bb];
            let mut tmax = vec![f64::NEG_INFINITY; bb];
            let mut scratch = Vec::new();
            for (t, tile) in plan.tiles.iter().enumerate() {
                if ctl.check().is_err() {
                    break; // the caller checks again and discards the result
                }
                let len = tile.rows * bb;
                if slots[t].is_none() && keep[t] {
                    let mut buf = vec![0f32; len];
                    plan.fill(*tile, bk, &mut buf);
                    slots[t] = Some(buf);
                }
                let data: &[f32] = match &slots[t] {
                    Some(buf) => buf,
                    None => {
                        scratch.resize(len, 0.0);
                        plan.fill(*tile, bk, &mut scratch);
                        &scratch
                    }
                };
                fold_columns(isa, data, bb, &log_u[tile.g0..tile.g0 + tile.rows], beta, &mut cm, &mut cz, &mut tmax);
            }
            cm.iter().zip(&cz).map(|(&m, &z)| m + z.ln()).collect()
        })
        .collect();
    per_block.concat()
}

/// Folds a gallery-major tile (`rows × bb`, row ii shifted by `lu[ii]`) into the column states
/// `(cm, cz)`: `cm` the running maximum of `β·C + log u`, `cz` the sum of exponentials shifted by it.
/// Runs the body compiled for the CPU's instruction-set level (see [`dispatch`]).
#[allow(clippy::too_many_arguments)]
fn fold_columns(isa: Isa, data: &[f32], bb: usize, lu: &[f64], beta: f64, cm: &mut [f64], cz: &mut [f64], tmax: &mut [f64]) {
    match isa.level() {
        // SAFETY: an `Isa` of a level exists only if the CPU reports its features.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { fold_columns_avx512(data, bb, lu, beta, cm, cz, tmax) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { fold_columns_avx2(data, bb, lu, beta, cm, cz, tmax) },
        _ => fold_columns_body(data, bb, lu, beta, cm, cz, tmax),
    }
}

/// [`fold_columns_body`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512 F/DQ/VL and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,fma")]
unsafe fn fold_columns_avx512(data: &[f32], bb: usize, lu: &[f64], beta: f64, cm: &mut [f64], cz: &mut [f64], tmax: &mut [f64]) {
    fold_columns_body(data, bb, lu, beta, cm, cz, tmax)
}

/// [`fold_columns_body`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fold_columns_avx2(data: &[f32], bb: usize, lu: &[f64], beta: f64, cm: &mut [f64], cz: &mut [f64], tmax: &mut [f64]) {
    fold_columns_body(data, bb, lu, beta, cm, cz, tmax)
}

/// The loop every variant of [`fold_columns`] compiles (no fused multiply-adds are formed: Rust does
/// not contract `a·b + c`, so every variant gives the same bits; tested).
#[inline(always)]
fn fold_columns_body(data: &[f32], bb: usize, lu: &[f64], beta: f64, cm: &mut [f64], cz: &mut [f64], tmax: &mut [f64]) {
    tmax.fill(f64::NEG_INFINITY);
    for (row, &l) in data.chunks_exact(bb).zip(lu) {
        for (mx, &x) in tmax.iter_mut().zip(row) {
            let y = beta * x as f64 + l;
            *mx = if y > *mx { y } else { *mx };
        }
    }
    for c in 0..bb {
        let m2 = if tmax[c] > cm[c] { tmax[c] } else { cm[c] };
        cz[c] = if cz[c] == 0.0 { 0.0 } else { cz[c] * exp_nonpos(cm[c] - m2) };
        cm[c] = m2;
    }
    for (row, &l) in data.chunks_exact(bb).zip(lu) {
        for ((z, &m), &x) in cz.iter_mut().zip(cm.iter()).zip(row) {
            *z += exp_nonpos(beta * x as f64 + l - m);
        }
    }
}

/// Row sweep: `log u_i ← log a − LSE_b(β·C_ib + log v_b)` for every row. One task per row tile.
fn row_sweep(plan: &Plan, beta: f64, log_v: &[f64], log_a: f64, cache: &[Vec<Option<Vec<f32>>>], log_u: &mut [f64], ctl: &Control) {
    // Row tiles are contiguous in the global row order (parts stacked, tiles in order).
    let mut chunks: Vec<&mut [f64]> = Vec::with_capacity(plan.tiles.len());
    let mut rest = log_u;
    for tile in &plan.tiles {
        let (head, tail) = rest.split_at_mut(tile.rows);
        chunks.push(head);
        rest = tail;
    }
    let isa = Isa::detect();
    chunks.into_par_iter().enumerate().for_each(|(t, out)| {
        let tile = plan.tiles[t];
        let mut rm = vec![f64::NEG_INFINITY; tile.rows];
        let mut rz = vec![0f64; tile.rows];
        let mut scratch = Vec::new();
        for (bk, slots) in cache.iter().enumerate() {
            if ctl.check().is_err() {
                return; // the caller checks again and discards the result
            }
            let (b0, bb) = plan.block(bk);
            let data: &[f32] = match &slots[t] {
                Some(buf) => buf,
                None => {
                    scratch.resize(tile.rows * bb, 0.0);
                    plan.fill(tile, bk, &mut scratch);
                    &scratch
                }
            };
            fold_rows(isa, data, bb, &log_v[b0..b0 + bb], beta, &mut rm, &mut rz);
        }
        for ((o, &m), &z) in out.iter_mut().zip(&rm).zip(&rz) {
            *o = log_a - (m + z.ln());
        }
    });
}

/// Folds a gallery-major tile (`rows × bb`, column c shifted by `lv[c]`) into the row states
/// `(rm, rz)` (running maximum of `β·C + log v` and the shifted sum of exponentials), with the body
/// compiled for the CPU's instruction-set level.
fn fold_rows(isa: Isa, data: &[f32], bb: usize, lv: &[f64], beta: f64, rm: &mut [f64], rz: &mut [f64]) {
    match isa.level() {
        // SAFETY: an `Isa` of a level exists only if the CPU reports its features.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { fold_rows_avx512(data, bb, lv, beta, rm, rz) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { fold_rows_avx2(data, bb, lv, beta, rm, rz) },
        _ => fold_rows_body(data, bb, lv, beta, rm, rz),
    }
}

/// [`fold_rows_body`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512 F/DQ/VL and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,fma")]
unsafe fn fold_rows_avx512(data: &[f32], bb: usize, lv: &[f64], beta: f64, rm: &mut [f64], rz: &mut [f64]) {
    fold_rows_body(data, bb, lv, beta, rm, rz)
}

/// [`fold_rows_body`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fold_rows_avx2(data: &[f32], bb: usize, lv: &[f64], beta: f64, rm: &mut [f64], rz: &mut [f64]) {
    fold_rows_body(data, bb, lv, beta, rm, rz)
}

/// The loop every variant of [`fold_rows`] compiles (same bits in every variant; tested).
#[inline(always)]
fn fold_rows_body(data: &[f32], bb: usize, lv: &[f64], beta: f64, rm: &mut [f64], rz: &mut [f64]) {
    for (ii, row) in data.chunks_exact(bb).enumerate() {
        let mut mx = f64::NEG_INFINITY;
        for (&x, &v) in row.iter().zip(lv) {
            let y = beta * x as f64 + v;
            mx = if y > mx { y } else { mx };
        }
        let m2 = if mx > rm[ii] { mx } else { rm[ii] };
        let mut acc = if rz[ii] == 0.0 { 0.0 } else { rz[ii] * exp_nonpos(rm[ii] - m2) };
        acc += sum_exp(row, lv, beta, m2);
        rz[ii] = acc;
        rm[ii] = m2;
    }
}

/// `Σ_c exp(β·x_c + v_c − shift)` with 8 fixed lanes and a fixed reduction tree (the arguments are
/// ≤ 0 by the choice of `shift`).
#[inline(always)]
fn sum_exp(xs: &[f32], vs: &[f64], beta: f64, shift: f64) -> f64 {
    const L: usize = 8;
    let mut acc = [0f64; L];
    let mut cx = xs.chunks_exact(L);
    let mut cv = vs.chunks_exact(L);
    for (x, v) in (&mut cx).zip(&mut cv) {
        for l in 0..L {
            acc[l] += exp_nonpos(beta * x[l] as f64 + v[l] - shift);
        }
    }
    for (l, (&x, &v)) in cx.remainder().iter().zip(cv.remainder()).enumerate() {
        acc[l] += exp_nonpos(beta * x as f64 + v - shift);
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

// ---------------------------------------------------------------------------------------------
// The fitting step and the scorer of `sn` / `dual-sn` (their method files point here).

use super::scorer::{Gate, Scorer};
use super::{FitInputs, MethodState, Params};
use crate::error::Error;

/// Names of the [`MethodState`] vectors of `sn` / `dual-sn`.
pub const STATE_LOG_U: &str = "logU";
pub const STATE_LOG_V: &str = "logV";
pub const STATE_ITERATIONS: &str = "iterationsRun";

/// Fits the Sinkhorn potentials of `sn` (`dual = false`: rows are the gallery) or `dual-sn`
/// (`dual = true`: the gallery, then the gallery bank, scored against the query bank cross-modally).
/// The state holds `logU` (n_g values: the gallery rows only), `logV` (m_q) and `iterationsRun` (1).
pub fn fit_state(p: &Params, inputs: &FitInputs, dual: bool, ctl: &Control) -> Result<MethodState> {
    let opts = Options { tau: p.tau, iterations: p.iterations, tol: p.tol, cache_budget: DEFAULT_CACHE_BUDGET };
    let (pot, n_gallery) = match inputs {
        FitInputs::Embeddings { gallery, query_bank, gallery_bank, dim } => {
            let (d, ng, mq) = (*dim, gallery.len() / dim, query_bank.len() / dim);
            let mut parts = vec![*gallery];
            let mut rows = vec![ng];
            if dual {
                parts.push(gallery_bank);
                rows.push(gallery_bank.len() / d);
            }
            if mq == 0 || (dual && rows[1] == 0) {
                return Err(Error::empty_bank("the Sinkhorn methods need a non-empty query bank (and, for dual-sn, gallery bank)"));
            }
            (sinkhorn(&Source::Embeddings { parts, bank: query_bank, dim: d }, &rows, mq, opts, ctl, "fit:sinkhorn")?, ng)
        }
        FitInputs::Similarities { n_gallery, query_bank_sims, query_gallery_bank_sims, .. } => {
            let q = query_bank_sims.ok_or_else(|| Error::empty_bank("the Sinkhorn methods need queryBankSims (query bank × gallery)"))?;
            let mut parts = vec![q.data];
            let mut rows = vec![*n_gallery];
            if dual {
                let h = query_gallery_bank_sims.ok_or_else(|| Error::empty_bank("dual-sn needs queryBankGalleryBankSims (query bank × gallery bank, m_q × m_g) in similarity mode"))?;
                if h.rows != q.rows {
                    return Err(Error::shape(format!("queryBankGalleryBankSims has {} rows, queryBankSims has {} (both are query-bank rows)", h.rows, q.rows)));
                }
                parts.push(h.data);
                rows.push(h.cols);
            }
            if q.rows == 0 || q.cols != *n_gallery || rows.contains(&0) {
                return Err(Error::empty_bank("the Sinkhorn methods need non-empty bank matrices"));
            }
            (sinkhorn(&Source::Sims { parts }, &rows, q.rows, opts, ctl, "fit:sinkhorn")?, *n_gallery)
        }
    };
    let mut state = MethodState::default();
    let mut log_u = pot.log_u;
    log_u.truncate(n_gallery);
    state.set(STATE_LOG_U, log_u);
    state.set(STATE_LOG_V, pot.log_v);
    state.set(STATE_ITERATIONS, vec![pot.iterations_run as f64]);
    Ok(state)
}

/// The scorer `ℓ(q, j) = s − h_j` with `h_j = −τ·log u_j` (scale 1, one bias variant).
pub fn scorer(p: &Params, state: &MethodState, n: usize) -> Scorer {
    let lu = state.get(STATE_LOG_U).expect("Sinkhorn state logU");
    assert_eq!(lu.len(), n, "Sinkhorn state logU has {} values for {n} gallery items", lu.len());
    Scorer { scale: 1.0, bias: vec![lu.iter().map(|&l| -p.tau * l).collect()], gate: Gate::None, offset_k: 0, n_gallery: n }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Plain linear-domain Sinkhorn in f64 (POT's `sinkhorn_knopp` loop without the early stop),
    /// on an `n × m` matrix `c` (row-major, gallery-major): returns `log u`.
    pub(crate) fn linear_reference(c: &[f64], n: usize, m: usize, tau: f64, iters: usize) -> (Vec<f64>, Vec<f64>) {
        let k: Vec<f64> = c.iter().map(|&x| (x / tau).exp()).collect();
        let mut u = vec![1.0 / n as f64; n];
        let mut v = vec![1.0 / m as f64; m];
        for _ in 0..iters {
            for b in 0..m {
                let s: f64 = (0..n).map(|i| k[i * m + b] * u[i]).sum();
                v[b] = (1.0 / m as f64) / s;
            }
            for i in 0..n {
                let s: f64 = (0..m).map(|b| k[i * m + b] * v[b]).sum();
                u[i] = (1.0 / n as f64) / s;
            }
        }
        (u.iter().map(|x| x.ln()).collect(), v.iter().map(|x| x.ln()).collect())
    }

    fn opts(tau: f64, iterations: usize) -> Options {
        Options { tau, iterations, tol: 0.0, cache_budget: DEFAULT_CACHE_BUDGET }
    }

    #[test]
    fn log_domain_equals_linear_domain_on_well_scaled_data() {
        let mut r = rng(7);
        // two parts (gallery + gallery bank) crossing tile boundaries on both axes
        let (n1, n2, m) = (300, 45, 700);
        let c: Vec<f32> = (0..(n1 + n2) * m).map(|_| (r() * 2.0 - 1.0) as f32).collect();
        // bank-major parts for the Sims source
        let part = |lo: usize, np: usize| -> Vec<f32> {
            let mut p = vec![0f32; m * np];
            for b in 0..m {
                for i in 0..np {
                    p[b * np + i] = c[(lo + i) * m + b];
                }
            }
            p
        };
        let (p1, p2) = (part(0, n1), part(n1, n2));
        let c64: Vec<f64> = c.iter().map(|&x| x as f64).collect();
        for &t in &[1usize, 5, 10] {
            let (want_u, want_v) = linear_reference(&c64, n1 + n2, m, 0.5, t);
            let got = sinkhorn(&Source::Sims { parts: vec![&p1, &p2] }, &[n1, n2], m, opts(0.5, t), &Control::none(), "t").unwrap();
            assert_eq!(got.iterations_run, t);
            for (g, w) in got.log_u.iter().zip(&want_u) {
                assert!((g - w).abs() < 1e-11 * w.abs().max(1.0), "T={t}: log u {g} vs {w}");
            }
            for (g, w) in got.log_v.iter().zip(&want_v) {
                assert!((g - w).abs() < 1e-11 * w.abs().max(1.0), "T={t}: log v {g} vs {w}");
            }
        }
    }

    /// Every dispatched variant of the two tile loops gives the bits of the portable body, and the
    /// portable body matches a scalar `f64::exp` reference to 1e-14, over tail lengths 1..=40.
    #[test]
    fn every_variant_of_the_tile_loops_matches_the_reference_over_tail_lengths() {
        let mut r = rng(21);
        for bb in 1..=40usize {
            let rows = 1 + bb % 7;
            let data: Vec<f32> = (0..rows * bb).map(|_| (r() * 2.0 - 1.0) as f32).collect();
            let lu: Vec<f64> = (0..rows).map(|_| -3.0 * r()).collect();
            let lv: Vec<f64> = (0..bb).map(|_| -3.0 * r()).collect();
            let beta = 7.5;
            // scalar reference of the row fold from an empty state: LSE_c(β·x + v) per row
            let want_rows: Vec<f64> = data.chunks(bb).map(|row| {
                let ys: Vec<f64> = row.iter().zip(&lv).map(|(&x, &v)| beta * x as f64 + v).collect();
                let m = ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                m + ys.iter().map(|y| (y - m).exp()).sum::<f64>().ln()
            }).collect();
            let want_cols: Vec<f64> = (0..bb).map(|c| {
                let ys: Vec<f64> = (0..rows).map(|i| beta * data[i * bb + c] as f64 + lu[i]).collect();
                let m = ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                m + ys.iter().map(|y| (y - m).exp()).sum::<f64>().ln()
            }).collect();
            let mut bits: Vec<(Vec<u64>, Vec<u64>)> = Vec::new();
            for isa in Isa::available() {
                let (mut rm, mut rz) = (vec![f64::NEG_INFINITY; rows], vec![0.0; rows]);
                fold_rows(isa, &data, bb, &lv, beta, &mut rm, &mut rz);
                let (mut cm, mut cz, mut tmax) = (vec![f64::NEG_INFINITY; bb], vec![0.0; bb], vec![0.0; bb]);
                fold_columns(isa, &data, bb, &lu, beta, &mut cm, &mut cz, &mut tmax);
                let got_rows: Vec<f64> = rm.iter().zip(&rz).map(|(m, z)| m + z.ln()).collect();
                let got_cols: Vec<f64> = cm.iter().zip(&cz).map(|(m, z)| m + z.ln()).collect();
                for (g, w) in got_rows.iter().zip(&want_rows).chain(got_cols.iter().zip(&want_cols)) {
                    assert!((g - w).abs() <= 1e-14 * w.abs().max(1.0), "{isa:?} bb {bb}: {g} vs {w}");
                }
                bits.push((got_rows.iter().map(|x| x.to_bits()).collect(), got_cols.iter().map(|x| x.to_bits()).collect()));
            }
            assert!(bits.windows(2).all(|w| w[0] == w[1]), "variants disagree at bb {bb}");
        }
    }

    #[test]
    fn zero_iterations_keep_uniform_potentials() {
        let c = vec![0.5f32; 12];
        let got = sinkhorn(&Source::Sims { parts: vec![&c] }, &[4], 3, opts(0.1, 0), &Control::none(), "t").unwrap();
        assert!(got.log_u.iter().all(|&x| x == -(4f64).ln()));
        assert!(got.log_v.iter().all(|&x| x == -(3f64).ln()));
        assert_eq!(got.iterations_run, 0);
    }

    #[test]
    fn embeddings_equal_sims_and_cache_budget_never_changes_bits() {
        let mut r = rng(11);
        let (n, mg, m, d) = (600, 100, 1100, 24);
        let unit = |rows: usize, r: &mut dyn FnMut() -> f64| -> Vec<f32> {
            let mut v: Vec<f32> = (0..rows * d).map(|_| (r() * 2.0 - 1.0) as f32).collect();
            for row in v.chunks_mut(d) {
                let s = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                row.iter_mut().for_each(|x| *x /= s);
            }
            v
        };
        let (g, h, q) = (unit(n, &mut r), unit(mg, &mut r), unit(m, &mut r));
        let src = Source::Embeddings { parts: vec![&g, &h], bank: &q, dim: d };
        let full = sinkhorn(&src, &[n, mg], m, opts(0.05, 4), &Control::none(), "t").unwrap();
        for budget in [0usize, 300_000, 1 << 20] {
            let o = Options { cache_budget: budget, ..opts(0.05, 4) };
            let got = sinkhorn(&src, &[n, mg], m, o, &Control::none(), "t").unwrap();
            assert_eq!(got, full, "budget {budget}");
        }
        // the same matrix from precomputed bank-major similarities (f32 GEMM vs f64 dot: loose)
        let sims = |rows: &[f32], nr: usize| -> Vec<f32> {
            let mut out = vec![0f32; m * nr];
            matmul_abt(&q, m, rows, nr, d, &mut out);
            out
        };
        let (sg, sh) = (sims(&g, n), sims(&h, mg));
        let s = sinkhorn(&Source::Sims { parts: vec![&sg, &sh] }, &[n, mg], m, opts(0.05, 4), &Control::none(), "t").unwrap();
        for (a, b) in s.log_u.iter().zip(&full.log_u) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        let mut r = rng(3);
        let (n, m) = (900, 1300);
        let p: Vec<f32> = (0..n * m).map(|_| (r() * 2.0 - 1.0) as f32).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| sinkhorn(&Source::Sims { parts: vec![&p] }, &[n], m, opts(0.02, 6), &Control::none(), "t").unwrap())
        };
        let one = run(1);
        for t in [2, 3, 7] {
            assert_eq!(run(t), one, "{t} threads");
        }
    }

    #[test]
    fn tiny_temperature_stays_finite() {
        let mut r = rng(5);
        let (n, m) = (70, 90);
        // ×100 logits at τ = 1e-4: β·C up to 1e6, e^{β·C} overflows any float
        let p: Vec<f32> = (0..n * m).map(|_| (100.0 * (r() * 2.0 - 1.0)) as f32).collect();
        for tau in [1e-4, 1e-12, 1e-30] {
            let got = sinkhorn(&Source::Sims { parts: vec![&p] }, &[n], m, opts(tau, 10), &Control::none(), "t").unwrap();
            assert!(got.log_u.iter().chain(&got.log_v).all(|x| x.is_finite()), "τ {tau}");
            let h: Vec<f64> = got.log_u.iter().map(|&l| -tau * l).collect();
            assert!(h.iter().all(|x| x.is_finite() && x.abs() < 1e3), "τ {tau}: {h:?}");
        }
    }

    #[test]
    fn tol_stops_early_at_the_marginal_criterion() {
        let mut r = rng(9);
        let (n, m) = (50, 40);
        let p: Vec<f32> = (0..n * m).map(|_| (r() * 2.0 - 1.0) as f32).collect();
        let src = Source::Sims { parts: vec![&p] };
        let exact = sinkhorn(&src, &[n], m, opts(0.5, 200), &Control::none(), "t").unwrap();
        let o = Options { tol: 1e-6, ..opts(0.5, 200) };
        let early = sinkhorn(&src, &[n], m, o, &Control::none(), "t").unwrap();
        assert!(early.iterations_run >= 1 && early.iterations_run < 200, "{}", early.iterations_run);
        // the stopped potentials are exactly those of a plain run of that many iterations
        let same = sinkhorn(&src, &[n], m, opts(0.5, early.iterations_run), &Control::none(), "t").unwrap();
        assert_eq!(same.log_u, early.log_u);
        // and their column marginals are within tol (checked independently in f64)
        let c64: Vec<f64> = (0..n * m).map(|k| p[(k % m) * n + k / m] as f64).collect();
        let mut err2 = 0.0;
        for b in 0..m {
            let s: f64 = (0..n).map(|i| (c64[i * m + b] / 0.5 + early.log_u[i] + early.log_v[b]).exp()).sum();
            err2 += (s - 1.0 / m as f64).powi(2);
        }
        assert!(err2.sqrt() < 1e-6, "marginal error {}", err2.sqrt());
        // converged potentials agree with the long run
        for (a, b) in early.log_u.iter().zip(&exact.log_u) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
