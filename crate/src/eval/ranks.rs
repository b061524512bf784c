//! Retrieval metrics (docs/methods.md §5): ranks of the ground truth, R@K, median / mean rank and mAP.
//!
//! **Ranks** are 0-based: the number of candidates placed above the best positive. For a query whose
//! best positive scores `s*`, let `c` = candidates scoring strictly above `s*`, `t` = non-positives
//! scoring exactly `s*` and `p` = positives scoring exactly `s*` (`p ≥ 1`). Then
//!
//! | [`TieMode`] | rank |
//! |---|---|
//! | `Average` (default) | `c + t/(p+1)` — the expected position of the first positive when the tied block is shuffled (`c + t/2` for one positive) |
//! | `Optimistic` | `c` |
//! | `Pessimistic` | `c + t` |
//!
//! Ranks cost one pass over the row (`O(n_g)` per query, `O(n_g log P)` with `P > 1` distinct positive
//! scores); rows are never sorted. Queries run in parallel with rayon and every output is independent
//! of the thread count.
//!
//! **Directions.** [`Direction::T2v`]: rows of the score matrix are the queries, columns the gallery.
//! [`Direction::V2t`]: each gallery item (column) is a query over all rows of the *same* matrix; its
//! positives are its captions, and its rank is that of its best caption (QB-Norm / VSE "minimum over the
//! captions' ranks"). Ties among several of its captions at the best score use `c + t/(p+1)` as above,
//! where QB-Norm's `metric.py` would count the tied captions as competitors (`c + (t+p−1)/2`); the two
//! agree whenever at most one positive holds the best score.
//!
//! **Metrics** (all over the evaluated queries): `R@K = 100·mean(r < K)`, `MedR = median(r) + 1` (even
//! counts average the two middle ranks), `MnR = mean(r) + 1`, and mAP = mean over queries of
//! `(1/P)·Σ_i i/(1 + r_(i))`, where `r_(i)` is the 0-based position of the i-th positive. Within a block
//! of `T` tied candidates holding `p` positives, the j-th of them sits at `c + j(T+1)/(p+1) − 1` under
//! `Average` (its expected position), `c + j − 1` under `Optimistic` and `c + (T − p) + j − 1` under
//! `Pessimistic`, with `c` the number of candidates strictly above the block.
//!
//! **QB-Norm compatibility** ([`EvalOptions::qbnorm_compat`]): QB-Norm's `metric.py` counts R@1 as
//! `r == 0` but R@K as `r < K`, so a ground truth tied at the top (`r = 0.5`) is an R@1 miss there and a
//! hit here. The switch reproduces QB-Norm; it changes R@1 only.

use std::borrow::Cow;

use rayon::prelude::*;

use super::check_no_nan;
use crate::error::{Error, Result};
use crate::matrix::MatRef;

/// Which items are relevant to which query. Indices refer to the `T2v` orientation of the score matrix
/// (`n_q` rows × `n_g` columns), whatever the [`Direction`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroundTruth {
    /// Query `i` ↔ gallery item `i`; needs `n_q == n_g` (else `ERR_SHAPE`).
    Diagonal,
    /// `c` captions per item, item-major and contiguous: query `i` ↔ item `i / c`. Needs
    /// `n_q == c·n_g` (else `ERR_SHAPE`) and `c ≥ 1` (else `ERR_PARAM`).
    CaptionsPerItem(usize),
    /// Positives of every query (`n_q` lists of gallery indices `< n_g`; order and duplicates do not
    /// matter). A query with an empty list — or, for `V2t`, a gallery item that no query lists — has no
    /// rank: it is skipped (rank NaN) and counted in [`RetrievalMetrics::skipped`].
    Explicit(Vec<Vec<u32>>),
}

/// How a ground truth tied with other candidates is ranked (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TieMode {
    /// Expected position under a random order of the tied block (McSherry & Najork, 2008).
    #[default]
    Average,
    /// Positives first within a tied block.
    Optimistic,
    /// Positives last within a tied block.
    Pessimistic,
}

/// Which side of the score matrix queries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Rows are queries (text→video, text→image).
    #[default]
    T2v,
    /// Columns are queries over the rows of the same matrix (video→text, image→text).
    V2t,
}

/// Options of [`retrieval_metrics`] and [`retrieval_metrics_topk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    pub direction: Direction,
    pub ties: TieMode,
    /// The K of every reported R@K (each ≥ 1, else `ERR_PARAM`). Default `[1, 5, 10]`.
    pub ks: Vec<usize>,
    /// Count R@1 as `r == 0` like QB-Norm's `metric.py` (R@K for K > 1 is `r < K` either way).
    pub qbnorm_compat: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { direction: Direction::T2v, ties: TieMode::Average, ks: vec![1, 5, 10], qbnorm_compat: false }
    }
}

/// Retrieval metrics of one direction. Values are unrounded.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievalMetrics {
    /// One 0-based rank per query (`T2v`: per row; `V2t`: per gallery item). NaN marks a query without
    /// positives (skipped); `+inf` marks a top-k query whose positives are all outside its list.
    pub ranks: Vec<f64>,
    /// `(K, R@K)` in the order of [`EvalOptions::ks`], as percentages. NaN when undefined (no evaluated
    /// query, or top-k input with K > k).
    pub recall: Vec<(usize, f64)>,
    /// `median(r) + 1`; `None` when not determined (no evaluated query, or top-k input whose middle
    /// rank(s) fall outside the lists).
    pub median_rank: Option<f64>,
    /// `mean(r) + 1`; `None` when not determined (no evaluated query, or a top-k miss).
    pub mean_rank: Option<f64>,
    /// Mean average precision; `None` when not determined (no evaluated query, ranks given without
    /// scores, or top-k input where some positive is outside its query's list).
    pub map: Option<f64>,
    /// Number of evaluated queries (the denominator of every metric).
    pub n: usize,
    /// Number of queries skipped because they have no positive.
    pub skipped: usize,
}

impl RetrievalMetrics {
    /// R@K as reported (`None` if K was not requested).
    pub fn recall_at(&self, k: usize) -> Option<f64> {
        self.recall.iter().find(|(kk, _)| *kk == k).map(|&(_, v)| v)
    }

    /// Geometric mean of the requested R@K values (QB-Norm reports it for K = 1, 5, 10); `None` if a K
    /// was not requested.
    pub fn geometric_mean_recall(&self, ks: &[usize]) -> Option<f64> {
        if ks.is_empty() {
            return None;
        }
        let mut log_sum = 0.0;
        for &k in ks {
            let r = self.recall_at(k)?;
            if r == 0.0 {
                return Some(0.0);
            }
            log_sum += r.ln();
        }
        Some((log_sum / ks.len() as f64).exp())
    }
}

/// Retrieval metrics from a score matrix.
///
/// `scores`: `n_q × n_g` row-major `f32`, higher is better; rows are queries in the `T2v` orientation
/// whatever `opts.direction`. `gt` uses the same orientation. Errors: `ERR_SHAPE` (ground truth does not
/// fit the matrix), `ERR_PARAM` (a K of 0), `ERR_NON_FINITE` (a NaN score; ±inf are allowed).
pub fn retrieval_metrics(scores: MatRef<'_>, gt: &GroundTruth, opts: &EvalOptions) -> Result<RetrievalMetrics> {
    check_ks(&opts.ks)?;
    check_no_nan(scores, "scores")?;
    let (nq, ng) = (scores.rows, scores.cols);
    let (ranks, aps) = match opts.direction {
        Direction::T2v => {
            let pos = Positives::resolve(gt, nq, ng, Direction::T2v)?;
            rank_rows(scores, &pos, opts.ties)
        }
        Direction::V2t => {
            let pos = Positives::resolve(gt, nq, ng, Direction::V2t)?;
            rank_columns(scores, &pos, opts.ties)
        }
    };
    summarize(ranks, Some(aps), None, &opts.ks, opts.qbnorm_compat)
}

/// Retrieval metrics from top-k lists (`T2v` only; `ERR_PARAM` for `V2t`, which needs the columns —
/// pass lists computed on the transposed matrix as `T2v` with an `Explicit` ground truth instead).
///
/// `indices`: `n_q × k` row-major `u32`, each row best first, entries `< n_g` (else `ERR_SHAPE`).
/// A query's rank is the list position of its first positive; the list order is taken as the ranking,
/// so [`EvalOptions::ties`] does not apply. Ranks beyond the list are unknown (`≥ k`):
/// - a query whose positives are all outside its list gets rank `+inf`;
/// - R@K is exact for `K ≤ k` and NaN for `K > k`;
/// - the median rank is reported when the middle rank(s) are inside the lists, else `None`;
/// - the mean rank only when every evaluated query has a positive inside its list, else `None`;
/// - mAP only when every positive of every evaluated query is inside its list, else `None`.
pub fn retrieval_metrics_topk(
    indices: &[u32],
    n_query: usize,
    k: usize,
    n_gallery: usize,
    gt: &GroundTruth,
    opts: &EvalOptions,
) -> Result<RetrievalMetrics> {
    check_ks(&opts.ks)?;
    if opts.direction == Direction::V2t {
        return Err(Error::param(
            "v2t metrics need the full score matrix: top-k lists hold only each query's best gallery items \
             (rank the transposed problem as t2v with an explicit ground truth instead)",
        ));
    }
    if k == 0 {
        return Err(Error::param("top-k lists: k must be at least 1"));
    }
    check_topk_lists(indices, n_query, k, n_gallery)?;
    let pos = Positives::resolve(gt, n_query, n_gallery, Direction::T2v)?;
    let mut ranks = vec![0.0f64; n_query];
    let mut aps = vec![0.0f64; n_query];
    ranks.par_iter_mut().zip(aps.par_iter_mut()).enumerate().for_each_init(Vec::new, |buf, (q, (r, ap))| {
        pos.fill(q, buf);
        (*r, *ap) = rank_in_list(&indices[q * k..(q + 1) * k], buf);
    });
    summarize(ranks, Some(aps), Some(k), &opts.ks, opts.qbnorm_compat)
}

/// Metrics from ranks computed elsewhere (0-based, NaN = skipped query, `+inf` = unknown rank). mAP is
/// `None` since it needs the positions of every positive.
pub fn retrieval_from_ranks(ranks: Vec<f64>, ks: &[usize], qbnorm_compat: bool) -> Result<RetrievalMetrics> {
    check_ks(ks)?;
    summarize(ranks, None, None, ks, qbnorm_compat)
}

fn check_ks(ks: &[usize]) -> Result<()> {
    if ks.contains(&0) {
        return Err(Error::param("R@K: every K must be at least 1"));
    }
    Ok(())
}

pub(crate) fn check_topk_lists(indices: &[u32], n_query: usize, k: usize, n_gallery: usize) -> Result<()> {
    let want = n_query.checked_mul(k).ok_or_else(|| Error::shape(format!("top-k lists: {n_query}×{k} overflows")))?;
    if indices.len() != want {
        return Err(Error::shape(format!(
            "top-k lists: expected n_query·k = {n_query}·{k} = {want} indices, got {}",
            indices.len()
        )));
    }
    const CHUNK: usize = 1 << 16;
    let out_of_range = |j: &u32| *j as usize >= n_gallery;
    if let Some(c) = indices.par_chunks(CHUNK).position_first(|c| c.iter().any(out_of_range)) {
        let i = c * CHUNK + indices[c * CHUNK..].iter().position(out_of_range).unwrap_or(0);
        return Err(Error::shape(format!(
            "top-k lists: index {} at query {}, position {} is out of range for a gallery of {n_gallery} items",
            indices[i],
            i / k,
            i % k
        )));
    }
    Ok(())
}

/// The positives of each query in the orientation being ranked.
enum Positives<'a> {
    /// Query `q`'s only positive is `q / d` (diagonal: `d = 1`; t2v captions: `d = c`).
    Div(usize),
    /// Query `q`'s positives are `q·c .. q·c + c` (v2t with `c` captions per item).
    Block(usize),
    /// Sorted, duplicate-free lists (possibly empty).
    Lists(Cow<'a, [Vec<u32>]>),
}

impl<'a> Positives<'a> {
    /// Validates `gt` against an `n_q × n_g` matrix and orients it for `dir`.
    fn resolve(gt: &'a GroundTruth, nq: usize, ng: usize, dir: Direction) -> Result<Self> {
        match gt {
            GroundTruth::Diagonal => {
                if nq != ng {
                    return Err(Error::shape(format!(
                        "diagonal ground truth needs as many queries as gallery items, got {nq} queries × {ng} items"
                    )));
                }
                Ok(Positives::Div(1))
            }
            &GroundTruth::CaptionsPerItem(c) => {
                if c == 0 {
                    return Err(Error::param("captions per item must be at least 1"));
                }
                if Some(nq) != c.checked_mul(ng) {
                    return Err(Error::shape(format!(
                        "{c} captions per item need n_q = {c}·n_g; got {nq} queries × {ng} items"
                    )));
                }
                Ok(match dir {
                    Direction::T2v => Positives::Div(c),
                    Direction::V2t => Positives::Block(c),
                })
            }
            GroundTruth::Explicit(lists) => {
                if lists.len() != nq {
                    return Err(Error::shape(format!(
                        "explicit ground truth has {} lists for {nq} queries",
                        lists.len()
                    )));
                }
                for (q, list) in lists.iter().enumerate() {
                    if let Some(&j) = list.iter().find(|&&j| j as usize >= ng) {
                        return Err(Error::shape(format!(
                            "explicit ground truth: query {q} lists item {j}, out of range for a gallery of {ng} items"
                        )));
                    }
                }
                Ok(Positives::Lists(match dir {
                    Direction::T2v => {
                        if lists.iter().all(|l| l.windows(2).all(|w| w[0] < w[1])) {
                            Cow::Borrowed(lists.as_slice())
                        } else {
                            Cow::Owned(
                                lists
                                    .iter()
                                    .map(|l| {
                                        let mut l = l.clone();
                                        l.sort_unstable();
                                        l.dedup();
                                        l
                                    })
                                    .collect(),
                            )
                        }
                    }
                    Direction::V2t => {
                        let mut inv = vec![Vec::new(); ng];
                        for (q, list) in lists.iter().enumerate() {
                            for &j in list {
                                let v: &mut Vec<u32> = &mut inv[j as usize];
                                // Captions arrive in ascending order; skip a repeated (q, j) pair.
                                if v.last() != Some(&(q as u32)) {
                                    v.push(q as u32);
                                }
                            }
                        }
                        Cow::Owned(inv)
                    }
                }))
            }
        }
    }

    /// Writes query `q`'s positives (ascending) into `out`.
    fn fill(&self, q: usize, out: &mut Vec<u32>) {
        out.clear();
        match self {
            Positives::Div(d) => out.push((q / d) as u32),
            Positives::Block(c) => out.extend((q * c) as u32..((q + 1) * c) as u32),
            Positives::Lists(l) => out.extend_from_slice(&l[q]),
        }
    }
}

/// Reused per-thread buffers of [`rank_query`].
#[derive(Default)]
struct Scratch {
    pos: Vec<u32>,
    /// Distinct positive scores, descending.
    levels: Vec<f32>,
    /// Number of positives at each level.
    mult: Vec<u32>,
    /// Candidates strictly above each level (built from a difference array of length `levels + 1`).
    above: Vec<u32>,
    /// Candidates equal to each level (positives included).
    equal: Vec<u32>,
}

/// `(rank, average precision)` of one query over `row`, or `(NaN, NaN)` without positives.
fn rank_query(row: &[f32], ties: TieMode, sc: &mut Scratch) -> (f64, f64) {
    let pos = &sc.pos;
    match pos.len() {
        0 => (f64::NAN, f64::NAN),
        1 => {
            let (gt, eq) = count_single(row, row[pos[0] as usize]);
            let r = position(gt, eq, 1, 1, ties);
            (r, 1.0 / (1.0 + r))
        }
        n_pos => {
            sc.levels.clear();
            sc.levels.extend(pos.iter().map(|&j| row[j as usize]));
            sc.levels.sort_unstable_by(|a, b| b.total_cmp(a));
            sc.mult.clear();
            let mut w = 0;
            for i in 0..sc.levels.len() {
                let x = sc.levels[i];
                if w > 0 && sc.levels[w - 1] == x {
                    sc.mult[w - 1] += 1;
                } else {
                    sc.levels[w] = x;
                    sc.mult.push(1);
                    w += 1;
                }
            }
            sc.levels.truncate(w);
            count_levels(row, &sc.levels, &mut sc.above, &mut sc.equal);

            let rank = position(sc.above[0], sc.equal[0], sc.mult[0], 1, ties);
            let mut ap = 0.0;
            let mut before = 0u32;
            for l in 0..w {
                let p = sc.mult[l];
                for j in 1..=p {
                    let r = position(sc.above[l], sc.equal[l], p, j, ties);
                    ap += f64::from(before + j) / (1.0 + r);
                }
                before += p;
            }
            (rank, ap / n_pos as f64)
        }
    }
}

/// 0-based position of the j-th (1-based) of `p` positives inside a block of `eq` tied candidates that
/// has `above` candidates strictly above it.
#[inline]
fn position(above: u32, eq: u32, p: u32, j: u32, ties: TieMode) -> f64 {
    let c = f64::from(above);
    let j = f64::from(j);
    match ties {
        TieMode::Optimistic => c + j - 1.0,
        TieMode::Pessimistic => c + f64::from(eq - p) + j - 1.0,
        TieMode::Average => c + j * f64::from(eq + 1) / f64::from(p + 1) - 1.0,
    }
}

/// `(#{x > s}, #{x == s})` over `row`: the hot loop of every single-positive query.
#[inline]
fn count_single(row: &[f32], s: f32) -> (u32, u32) {
    let (mut gt, mut eq) = (0u32, 0u32);
    for &x in row {
        gt += u32::from(x > s);
        eq += u32::from(x == s);
    }
    (gt, eq)
}

/// Up to this many distinct positive scores, [`count_levels`] makes one vectorised pass per level;
/// beyond it, one pass with a binary search per candidate.
const LEVEL_PASSES_MAX: usize = 16;

/// For descending distinct `levels`: `above[l] = #{x > levels[l]}`, `equal[l] = #{x == levels[l]}`.
fn count_levels(row: &[f32], levels: &[f32], above: &mut Vec<u32>, equal: &mut Vec<u32>) {
    let m = levels.len();
    above.clear();
    equal.clear();
    if m <= LEVEL_PASSES_MAX {
        for &s in levels {
            let (gt, eq) = count_single(row, s);
            above.push(gt);
            equal.push(eq);
        }
        return;
    }
    // `above[l]` first counts the candidates strictly above level l but not above level l − 1.
    above.resize(m + 1, 0);
    equal.resize(m, 0);
    for &x in row {
        let g = levels.partition_point(|&v| v > x);
        if g < m && levels[g] == x {
            equal[g] += 1;
            above[g + 1] += 1;
        } else {
            above[g] += 1;
        }
    }
    for l in 1..m {
        above[l] += above[l - 1];
    }
    above.truncate(m);
}

/// T2v: one query per row.
fn rank_rows(scores: MatRef<'_>, pos: &Positives<'_>, ties: TieMode) -> (Vec<f64>, Vec<f64>) {
    let nq = scores.rows;
    let mut ranks = vec![0.0f64; nq];
    let mut aps = vec![0.0f64; nq];
    ranks.par_iter_mut().zip(aps.par_iter_mut()).enumerate().for_each_init(Scratch::default, |sc, (q, (r, ap))| {
        pos.fill(q, &mut sc.pos);
        (*r, *ap) = rank_query(scores.row(q), ties, sc);
    });
    (ranks, aps)
}

/// V2t: one query per column. Columns are gathered a block at a time into contiguous buffers so the
/// row kernel runs unchanged and the matrix is read with unit stride.
fn rank_columns(scores: MatRef<'_>, pos: &Positives<'_>, ties: TieMode) -> (Vec<f64>, Vec<f64>) {
    let (nq, ng) = (scores.rows, scores.cols);
    let mut ranks = vec![0.0f64; ng];
    let mut aps = vec![0.0f64; ng];
    if ng == 0 {
        return (ranks, aps);
    }
    // About 4 MiB of gathered columns per task, 8 to 64 columns at a time (results do not depend on it).
    let block = ((1usize << 20) / nq.max(1)).clamp(8, 64).min(ng);
    ranks.par_chunks_mut(block).zip(aps.par_chunks_mut(block)).enumerate().for_each_init(
        || (Scratch::default(), Vec::new()),
        |(sc, cols), (b, (r_out, ap_out))| {
            let j0 = b * block;
            let width = r_out.len();
            cols.clear();
            cols.resize(width * nq, 0.0f32);
            // Transpose in tiles of 64 rows: reads stay in L1, writes are contiguous runs.
            const TILE: usize = 64;
            for i0 in (0..nq).step_by(TILE) {
                let i1 = (i0 + TILE).min(nq);
                for w in 0..width {
                    let col = j0 + w;
                    for (d, i) in cols[w * nq + i0..w * nq + i1].iter_mut().zip(i0..i1) {
                        *d = scores.data[i * ng + col];
                    }
                }
            }
            for w in 0..width {
                pos.fill(j0 + w, &mut sc.pos);
                (r_out[w], ap_out[w]) = rank_query(&cols[w * nq..(w + 1) * nq], ties, sc);
            }
        },
    );
    (ranks, aps)
}

/// Rank and average precision of one query from its top-k list (`+inf` / NaN when not determined).
fn rank_in_list(list: &[u32], pos: &[u32]) -> (f64, f64) {
    if pos.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut found = 0usize;
    let mut first = f64::INFINITY;
    let mut ap = 0.0;
    for (r, j) in list.iter().enumerate() {
        if pos.binary_search(j).is_ok() {
            found += 1;
            if found == 1 {
                first = r as f64;
            }
            ap += found as f64 / (1.0 + r as f64);
        }
    }
    // A duplicated entry could count a positive twice; require exactly the positives.
    let ap = if found == pos.len() { ap / pos.len() as f64 } else { f64::NAN };
    (first, ap)
}

/// Aggregates per-query ranks (NaN = skipped) and average precisions. `topk = Some(k)` marks ranks
/// from lists of length k (unknown beyond).
fn summarize(
    mut ranks: Vec<f64>,
    aps: Option<Vec<f64>>,
    topk: Option<usize>,
    ks: &[usize],
    qbnorm_compat: bool,
) -> Result<RetrievalMetrics> {
    let evaluated: Vec<f64> = ranks.iter().copied().filter(|r| !r.is_nan()).collect();
    let n = evaluated.len();
    let skipped = ranks.len() - n;
    let recall = ks
        .iter()
        .map(|&k| {
            let known = topk.is_none_or(|len| k <= len);
            let v = if n == 0 || !known {
                f64::NAN
            } else {
                let hits = if qbnorm_compat && k == 1 {
                    evaluated.iter().filter(|&&r| r == 0.0).count()
                } else {
                    evaluated.iter().filter(|&&r| r < k as f64).count()
                };
                100.0 * hits as f64 / n as f64
            };
            (k, v)
        })
        .collect();
    let mean_rank = if n > 0 && evaluated.iter().all(|r| r.is_finite()) {
        Some(evaluated.iter().sum::<f64>() / n as f64 + 1.0)
    } else {
        None
    };
    let median_rank = median(evaluated).map(|m| m + 1.0);
    let map = aps.and_then(|aps| {
        let (mut sum, mut count) = (0.0, 0usize);
        for (ap, r) in aps.iter().zip(&ranks) {
            if r.is_nan() {
                continue;
            }
            if ap.is_nan() {
                return None;
            }
            sum += ap;
            count += 1;
        }
        (count > 0).then(|| sum / count as f64)
    });
    ranks.shrink_to_fit();
    Ok(RetrievalMetrics { ranks, recall, median_rank, mean_rank, map, n, skipped })
}

/// Median of non-NaN values (`+inf` allowed); `None` if empty or if a middle value is infinite.
fn median(mut v: Vec<f64>) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lower, &mut hi, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = if n % 2 == 1 {
        hi
    } else {
        let lo = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    };
    m.is_finite().then_some(m)
}
