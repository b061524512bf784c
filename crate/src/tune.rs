//! Parameter tuning from the banks alone.
//!
//! A query bank and a gallery bank are usually *paired* training data (the captions of the
//! gallery-bank items), so a split of the banks is a labelled retrieval task that never touches a
//! test set. For each cross-validation fold, a set of gallery-bank rows is held out as a pseudo
//! gallery, the query-bank rows that describe them become pseudo queries, and the remaining rows of
//! both banks are the banks the methods are fitted on (a held-out item is never in its own banks).
//!
//! Cost model: the similarity blocks of a fold are computed **once** —
//! `S` (held-out queries × held-out items, query-major), `P^q` and `P^g` (held-out items × remaining
//! bank rows, item-major so a column of the bank × gallery matrix is one contiguous row) — and every
//! parameter setting is then a pass over them: a new β costs one log-sum-exp pass over `P^q` (or
//! `P^g`) and is cached; k, CSLS K, NNN k and α only read per-item statistics taken once (sorted
//! top values per item, each bank row's best items); scoring a setting ranks every pseudo query's
//! positives (`n_q × n_h` comparisons).
//!
//! Scores equal the methods' own (see [`crate::methods`]): every method ranks a query's items by
//! `s − b_v(j)/scale` for a gate-chosen variant `v`, and the per-query CSLS offset never changes a
//! ranking. Ties are broken by lower item index, as in search.
//!
//! Search (per method): the full product of a coarse grid (log-spaced for β, k, K), then
//! `refine` rounds of coordinate refinement that try the geometric (β, K) or arithmetic (α)
//! midpoints around the best value. Every setting is scored by its mean over the folds. The
//! default parameters are always a candidate and win every tie, so a tuned setting is never worse
//! than the default on the tuner's own folds. Deterministic for a seed (fold assignment by a
//! seeded shuffle; all reductions in fixed order).

use std::collections::HashMap;

use rayon::prelude::*;

use crate::control::Control;
use crate::error::{Error, Result};
use crate::kernels::lse::{max_f32, sum_exp_shifted};
use crate::kernels::similarity::matmul_abt_par;
use crate::kernels::topk::TopK;
use crate::methods::{Method, Params};

/// The objective.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Recall at K: fraction of queries with a positive among the K best items.
    RecallAt(usize),
    /// Mean average precision over queries (= MRR with one positive per query).
    Map,
    /// Mean reciprocal rank of the first positive.
    Mrr,
    /// R@1 + R@5 + R@10 (in fractions, so 0..3).
    Rsum,
}

impl Objective {
    /// Parses `R@K` (K ≥ 1), `mAP`, `MRR` or `rsum` (case-insensitive).
    pub fn parse(s: &str) -> Result<Objective> {
        let l = s.trim().to_ascii_lowercase();
        if let Some(k) = l.strip_prefix("r@") {
            if let Ok(k) = k.parse::<usize>() {
                if k >= 1 {
                    return Ok(Objective::RecallAt(k));
                }
            }
        }
        match l.as_str() {
            "map" => Ok(Objective::Map),
            "mrr" => Ok(Objective::Mrr),
            "rsum" => Ok(Objective::Rsum),
            _ => Err(Error::param(format!("metric must be 'R@K' (K ≥ 1), 'mAP', 'MRR' or 'rsum', got '{s}'"))),
        }
    }

    /// Score of one query from its positives' 0-based ranks (sorted ascending, non-empty).
    fn of_ranks(self, ranks: &[usize]) -> f64 {
        let first = ranks[0];
        match self {
            Objective::RecallAt(k) => (first < k) as u8 as f64,
            Objective::Mrr => 1.0 / (first + 1) as f64,
            Objective::Map => ranks.iter().enumerate().map(|(i, &r)| (i + 1) as f64 / (r + 1) as f64).sum::<f64>() / ranks.len() as f64,
            Objective::Rsum => [1usize, 5, 10].iter().map(|&k| (first < k) as u8 as f64).sum(),
        }
    }
}

/// Candidate values searched per parameter (before refinement).
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub beta_query: Vec<f64>,
    pub beta_gallery: Vec<f64>,
    pub k: Vec<usize>,
    pub csls_k: Vec<usize>,
    pub nnn_k: Vec<usize>,
    pub nnn_alpha: Vec<f64>,
}

impl Default for Grid {
    /// Log-spaced grids for cosine similarities (β values as inverse temperatures on [−1, 1]).
    fn default() -> Self {
        Grid {
            beta_query: vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0],
            beta_gallery: vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0],
            k: vec![1, 2, 3, 5, 10],
            csls_k: vec![1, 2, 5, 10, 20, 50, 100],
            nnn_k: vec![1, 4, 16, 64, 128, 256, 512],
            nnn_alpha: vec![0.25, 0.5, 0.75, 1.0],
        }
    }
}

/// Tuning configuration.
#[derive(Clone, Debug)]
pub struct TuneConfig {
    pub methods: Vec<Method>,
    pub objective: Objective,
    pub grid: Grid,
    /// Cross-validation folds (≥ 1); fold f holds out its own disjoint set of items.
    pub folds: usize,
    /// Held-out items per fold (upper bound; lowered to fit `max_block_floats`).
    pub holdout: usize,
    /// Refinement rounds after the coarse grid.
    pub refine: usize,
    pub seed: u64,
    /// Budget for the similarity blocks of all folds, in `f32` values.
    pub max_block_floats: usize,
    /// The default parameters of each method (always a candidate); `None`: no default (e.g. dot
    /// products, where β has no default).
    pub defaults: Option<Params>,
}

/// One evaluated setting: parameters and its per-fold scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluated {
    pub params: Params,
    pub fold_scores: Vec<f64>,
    pub mean: f64,
}

/// Result for one method.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodTune {
    pub method: Method,
    pub best: Evaluated,
    /// The default's scores on the same folds (`None` without defaults).
    pub default: Option<Evaluated>,
    /// Every setting evaluated, in evaluation order (for tuning curves).
    pub trials: Vec<Evaluated>,
}

/// The whole tuning result.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneResult {
    pub methods: Vec<MethodTune>,
    /// Index into `methods` of the best mean score (earliest on ties).
    pub best: usize,
    /// Held-out items per fold actually used, and pseudo queries per fold.
    pub holdout_items: usize,
    pub holdout_queries: Vec<usize>,
    /// Settings × folds scored, and β log-sum-exp passes computed.
    pub evaluations: usize,
    pub lse_passes: usize,
}

/// Paired banks, prepared for the metric (unit rows for cosine), row-major `f32`.
pub struct TuneData<'a> {
    pub query_bank: &'a [f32],
    pub gallery_bank: &'a [f32],
    pub dim: usize,
    /// Query-bank row → the gallery-bank rows it describes (CSR: row i's items are
    /// `items[offsets[i]..offsets[i+1]]`; `offsets.len() == m_q + 1`).
    pub offsets: &'a [u32],
    pub items: &'a [u32],
}

impl TuneData<'_> {
    fn m_q(&self) -> usize {
        self.query_bank.len() / self.dim.max(1)
    }
    fn m_g(&self) -> usize {
        self.gallery_bank.len() / self.dim.max(1)
    }
}

/// Deterministic 64-bit generator (splitmix64) for the fold shuffle.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The cached state of one fold.
struct Fold {
    n_h: usize,
    nq: usize,
    /// `nq × n_h` raw similarities of the pseudo queries (query-major).
    s: Vec<f32>,
    /// Per pseudo query: sorted held-out positions of its positives.
    pos: Vec<Vec<u32>>,
    /// Raw top-1 (lowest index on ties) per pseudo query.
    top1: Vec<u32>,
    /// `n_h × m` item-major bank similarities and the bank size `m`.
    pq: Vec<f32>,
    mq: usize,
    pg: Vec<f32>,
    mg: usize,
    /// Per item: the largest `top_cap_q` query-bank similarities, prefix sums (f64, largest first).
    top_prefix_q: Vec<Vec<f64>>,
    /// Per bank row: its best held-out items, best first (`row_k_cap` each).
    rows_q: Vec<u32>,
    rows_g: Vec<u32>,
    row_k: usize,
    lse_q: HashMap<u64, Vec<f64>>,
    lse_g: HashMap<u64, Vec<f64>>,
}

fn lse_rows(p: &[f32], m: usize, beta: f64) -> Vec<f64> {
    if m == 0 {
        return vec![f64::NEG_INFINITY; p.len()];
    }
    p.par_chunks(m)
        .map(|col| {
            let mx = beta * max_f32(col) as f64;
            mx + sum_exp_shifted(col, beta, mx).ln()
        })
        .collect()
}

/// Each of the `m` bank rows' `k` best items (score desc, index asc) from an item-major `n × m` block.
fn row_best(p: &[f32], n: usize, m: usize, k: usize) -> Vec<u32> {
    const CHUNK: usize = 256;
    let k = k.min(n);
    let mut out = vec![0u32; m * k];
    if k == 0 {
        return out;
    }
    out.par_chunks_mut(CHUNK * k).enumerate().for_each(|(c, dst)| {
        let b0 = c * CHUNK;
        let bb = dst.len() / k;
        let mut lists: Vec<TopK> = (0..bb).map(|_| TopK::new(k)).collect();
        for j in 0..n {
            let row = &p[j * m + b0..j * m + b0 + bb];
            for (l, &v) in lists.iter_mut().zip(row) {
                if (v as f64) > l.threshold() {
                    l.push(v as f64, j as u32);
                }
            }
        }
        for (r, l) in lists.iter().enumerate() {
            dst[r * k..(r + 1) * k].copy_from_slice(&l.indices()[..k]);
        }
    });
    out
}

impl Fold {
    fn lse(&mut self, gallery_side: bool, beta: f64, passes: &mut usize) -> &[f64] {
        let (cache, p, m) = if gallery_side { (&mut self.lse_g, &self.pg, self.mg) } else { (&mut self.lse_q, &self.pq, self.mq) };
        cache.entry(beta.to_bits()).or_insert_with(|| {
            *passes += 1;
            lse_rows(p, m, beta)
        })
    }

    fn top_mean(&self, k: usize) -> Vec<f64> {
        self.top_prefix_q
            .iter()
            .map(|pre| {
                let kk = k.min(pre.len());
                if kk == 0 {
                    0.0
                } else {
                    pre[kk - 1] / kk as f64
                }
            })
            .collect()
    }

    fn activation(&self, rows: &[u32], k: usize) -> Vec<bool> {
        let mut act = vec![false; self.n_h];
        let kk = k.min(self.row_k);
        if kk == 0 {
            return act;
        }
        for r in rows.chunks(self.row_k) {
            for &j in &r[..kk] {
                act[j as usize] = true;
            }
        }
        act
    }

    /// Mean objective over the pseudo queries when query q ranks items by `s − bias[variant(q)][j]`.
    fn score(&self, obj: Objective, bias: &[Vec<f64>], variant: &(dyn Fn(usize) -> usize + Sync)) -> f64 {
        let n = self.n_h;
        let total: f64 = (0..self.nq)
            .into_par_iter()
            .map(|q| {
                let row = &self.s[q * n..(q + 1) * n];
                let b = &bias[variant(self.top1[q] as usize)];
                let mut ranks: Vec<usize> = self.pos[q]
                    .iter()
                    .map(|&p| {
                        let p = p as usize;
                        let sp = row[p] as f64 - b[p];
                        let mut r = 0usize;
                        for j in 0..n {
                            let sj = row[j] as f64 - b[j];
                            r += (sj > sp || (sj == sp && j < p)) as usize;
                        }
                        r
                    })
                    .collect();
                ranks.sort_unstable();
                obj.of_ranks(&ranks)
            })
            .sum();
        total / self.nq.max(1) as f64
    }

    /// Scores `method` with `p` on this fold.
    fn eval(&mut self, method: Method, p: &Params, obj: Objective, passes: &mut usize) -> f64 {
        let n = self.n_h;
        let div = |v: &[f64], d: f64| v.iter().map(|x| x / d).collect::<Vec<f64>>();
        match method {
            Method::None => self.score(obj, &[vec![0.0; n]], &|_| 0),
            Method::Is => {
                let l = div(self.lse(false, p.beta_query, passes), p.beta_query);
                self.score(obj, &[l], &|_| 0)
            }
            Method::Dis => {
                let l = div(self.lse(false, p.beta_query, passes), p.beta_query);
                let act = self.activation(&self.rows_q, p.k);
                self.score(obj, &[vec![0.0; n], l], &|t| act[t] as usize)
            }
            Method::DualIs => {
                let sc = p.beta_query + p.beta_gallery;
                let lq = self.lse(false, p.beta_query, passes).to_vec();
                let lg = self.lse(true, p.beta_gallery, passes);
                let b: Vec<f64> = lq.iter().zip(lg).map(|(a, b)| (a + b) / sc).collect();
                self.score(obj, &[b], &|_| 0)
            }
            Method::DualDis => {
                let sc = p.beta_query + p.beta_gallery;
                let lq = self.lse(false, p.beta_query, passes).to_vec();
                let lg = self.lse(true, p.beta_gallery, passes).to_vec();
                let both: Vec<f64> = lq.iter().zip(&lg).map(|(a, b)| a + b).collect();
                let bias = vec![vec![0.0; n], div(&lq, sc), div(&lg, sc), div(&both, sc)];
                let (aq, ag) = (self.activation(&self.rows_q, p.k), self.activation(&self.rows_g, p.k));
                self.score(obj, &bias, &|t| aq[t] as usize + 2 * ag[t] as usize)
            }
            Method::Csls => {
                let b = div(&self.top_mean(p.csls_k), 2.0);
                self.score(obj, &[b], &|_| 0)
            }
            Method::Nnn => {
                let b: Vec<f64> = self.top_mean(p.nnn_k).iter().map(|m| p.nnn_alpha * m).collect();
                self.score(obj, &[b], &|_| 0)
            }
            other => unreachable!("method '{}' is refused by tune() (not tunable)", other.as_str()),
        }
    }
}

/// A searched parameter of a method.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Axis {
    BetaQuery,
    BetaGallery,
    K,
    CslsK,
    NnnK,
    NnnAlpha,
}

impl Axis {
    fn get(self, p: &Params) -> f64 {
        match self {
            Axis::BetaQuery => p.beta_query,
            Axis::BetaGallery => p.beta_gallery,
            Axis::K => p.k as f64,
            Axis::CslsK => p.csls_k as f64,
            Axis::NnnK => p.nnn_k as f64,
            Axis::NnnAlpha => p.nnn_alpha,
        }
    }
    fn set(self, p: &mut Params, v: f64) {
        match self {
            Axis::BetaQuery => p.beta_query = v,
            Axis::BetaGallery => p.beta_gallery = v,
            Axis::K => p.k = v as usize,
            Axis::CslsK => p.csls_k = v as usize,
            Axis::NnnK => p.nnn_k = v as usize,
            Axis::NnnAlpha => p.nnn_alpha = v,
        }
    }
    fn integer(self) -> bool {
        matches!(self, Axis::K | Axis::CslsK | Axis::NnnK)
    }
    fn grid(self, g: &Grid) -> Vec<f64> {
        match self {
            Axis::BetaQuery => g.beta_query.clone(),
            Axis::BetaGallery => g.beta_gallery.clone(),
            Axis::K => g.k.iter().map(|&v| v as f64).collect(),
            Axis::CslsK => g.csls_k.iter().map(|&v| v as f64).collect(),
            Axis::NnnK => g.nnn_k.iter().map(|&v| v as f64).collect(),
            Axis::NnnAlpha => g.nnn_alpha.clone(),
        }
    }
    /// Midpoint of two grid values: geometric for scale parameters, arithmetic for α.
    fn mid(self, a: f64, b: f64) -> f64 {
        match self {
            Axis::NnnAlpha => (a + b) / 2.0,
            _ if self.integer() => (a * b).sqrt().round(),
            _ => (a * b).sqrt(),
        }
    }
}

/// The searched axes of a method: the parameters it reads, from the method registry.
fn axes(m: Method) -> Vec<Axis> {
    m.info()
        .params
        .iter()
        .map(|&name| match name {
            "betaQuery" => Axis::BetaQuery,
            "betaGallery" => Axis::BetaGallery,
            "k" => Axis::K,
            "cslsK" => Axis::CslsK,
            "nnnK" => Axis::NnnK,
            "nnnAlpha" => Axis::NnnAlpha,
            other => unreachable!("parameter '{other}' of method '{}' has no tuning axis", m.as_str()),
        })
        .collect()
}

fn validate_grid(g: &Grid) -> Result<()> {
    let pos = |name: &str, v: &[f64], allow_zero: bool| -> Result<()> {
        if v.is_empty() {
            return Err(Error::param(format!("grid.{name} must not be empty")));
        }
        for &x in v {
            if !x.is_finite() || x < 0.0 || (!allow_zero && x == 0.0) {
                return Err(Error::param(format!("grid.{name} values must be finite and {}, got {x}", if allow_zero { "≥ 0" } else { "> 0" })));
            }
        }
        Ok(())
    };
    let int = |name: &str, v: &[usize]| -> Result<()> {
        if v.is_empty() || v.contains(&0) {
            return Err(Error::param(format!("grid.{name} must be a non-empty list of integers ≥ 1")));
        }
        Ok(())
    };
    pos("betaQuery", &g.beta_query, false)?;
    pos("betaGallery", &g.beta_gallery, false)?;
    pos("nnnAlpha", &g.nnn_alpha, true)?;
    int("k", &g.k)?;
    int("cslsK", &g.csls_k)?;
    int("nnnK", &g.nnn_k)
}

/// Builds the folds: a seeded shuffle of the paired items, cut into `folds` disjoint held-out sets.
fn build_folds(data: &TuneData, cfg: &TuneConfig, ctl: &Control) -> Result<(Vec<Fold>, usize)> {
    let (mq, mg, d) = (data.m_q(), data.m_g(), data.dim);
    // Items with at least one describing query-bank row, and each item's queries.
    let mut queries_of: Vec<Vec<u32>> = vec![Vec::new(); mg];
    for qi in 0..mq {
        for &it in &data.items[data.offsets[qi] as usize..data.offsets[qi + 1] as usize] {
            queries_of[it as usize].push(qi as u32);
        }
    }
    let mut paired: Vec<u32> = (0..mg as u32).filter(|&i| !queries_of[i as usize].is_empty()).collect();
    let mut rng = SplitMix(cfg.seed ^ 0x5eed_7_u64);
    for i in (1..paired.len()).rev() {
        let j = rng.below(i + 1);
        paired.swap(i, j);
    }
    // At most half of the paired items are held out per fold, so every fold keeps banks to fit on.
    let per_fold_items = (paired.len() / cfg.folds.max(2)).min(cfg.holdout);
    // Memory: per fold n_h × (m_q + m_g) bank similarities plus the query block (≈ c·n_h²).
    let c = (mq as f64 / paired.len().max(1) as f64).ceil() as usize;
    let mut n_h = per_fold_items;
    while n_h > 0 && cfg.folds * n_h * (mq + mg + c * n_h) > cfg.max_block_floats {
        n_h = n_h * 9 / 10;
    }
    if n_h < 10 {
        return Err(Error::param(format!(
            "too few paired items to tune: {} paired gallery-bank rows for {} folds within the memory budget (need ≥ 10 held-out items per fold)",
            paired.len(),
            cfg.folds
        )));
    }
    let mut folds = Vec::with_capacity(cfg.folds);
    for f in 0..cfg.folds {
        ctl.check()?;
        let start = f * per_fold_items;
        let held: Vec<u32> = {
            let mut h = paired[start..start + n_h].to_vec();
            h.sort_unstable();
            h
        };
        let mut pos_of = vec![u32::MAX; mg];
        for (hp, &it) in held.iter().enumerate() {
            pos_of[it as usize] = hp as u32;
        }
        // Pseudo queries: query-bank rows describing any held-out item; they leave the query bank.
        let mut qrows = Vec::new();
        let mut pos = Vec::new();
        let mut bank_q = Vec::new();
        for qi in 0..mq {
            let its = &data.items[data.offsets[qi] as usize..data.offsets[qi + 1] as usize];
            let mut p: Vec<u32> = its.iter().filter_map(|&it| (pos_of[it as usize] != u32::MAX).then_some(pos_of[it as usize])).collect();
            if p.is_empty() {
                bank_q.push(qi);
            } else {
                p.sort_unstable();
                p.dedup();
                qrows.push(qi);
                pos.push(p);
            }
        }
        let bank_g: Vec<usize> = (0..mg).filter(|&i| pos_of[i] == u32::MAX).collect();
        if bank_q.is_empty() || bank_g.is_empty() {
            return Err(Error::empty_bank("tune: a fold left no query-bank or gallery-bank rows to fit on (every row is paired with a held-out item)"));
        }
        let gather = |src: &[f32], rows: &mut dyn Iterator<Item = usize>| -> Vec<f32> {
            let mut out = Vec::new();
            for r in rows {
                out.extend_from_slice(&src[r * d..(r + 1) * d]);
            }
            out
        };
        let hv = gather(data.gallery_bank, &mut held.iter().map(|&i| i as usize));
        let qv = gather(data.query_bank, &mut qrows.iter().copied());
        let nq = qrows.len();
        let mut s = vec![0f32; nq * n_h];
        matmul_abt_par(&qv, nq, &hv, n_h, d, &mut s);
        drop(qv);
        let block = |rows: &[usize], src: &[f32]| -> Vec<f32> {
            // item-major n_h × m, built in bank chunks so the gathered bank copy stays small
            let m = rows.len();
            let mut out = vec![0f32; n_h * m];
            const CH: usize = 4096;
            let mut tmp = Vec::new();
            for c0 in (0..m).step_by(CH) {
                let c1 = (c0 + CH).min(m);
                let bv = gather(src, &mut rows[c0..c1].iter().copied());
                tmp.resize(n_h * (c1 - c0), 0.0);
                matmul_abt_par(&hv, n_h, &bv, c1 - c0, d, &mut tmp);
                for j in 0..n_h {
                    out[j * m + c0..j * m + c1].copy_from_slice(&tmp[j * (c1 - c0)..(j + 1) * (c1 - c0)]);
                }
            }
            out
        };
        let pq = block(&bank_q, data.query_bank);
        ctl.check()?;
        let pg = block(&bank_g, data.gallery_bank);
        let top1: Vec<u32> = s
            .par_chunks(n_h)
            .map(|row| {
                let mut t = 0usize;
                for (j, &v) in row.iter().enumerate() {
                    if v > row[t] {
                        t = j;
                    }
                }
                t as u32
            })
            .collect();
        let m_q = bank_q.len();
        let top_cap = cfg.grid.csls_k.iter().chain(&cfg.grid.nnn_k).copied().max().unwrap_or(1).max(cfg.defaults.map(|p| p.csls_k.max(p.nnn_k)).unwrap_or(1));
        // refinement never leaves the grid's range, so the largest grid / default value bounds K
        let top_cap = top_cap.min(m_q);
        let top_prefix_q: Vec<Vec<f64>> = pq
            .par_chunks(m_q.max(1))
            .map(|col| {
                let mut v: Vec<f32> = col.to_vec();
                let kk = top_cap.min(v.len());
                if kk > 0 && kk < v.len() {
                    v.select_nth_unstable_by(kk - 1, |a, b| b.total_cmp(a));
                }
                v.truncate(kk);
                v.sort_unstable_by(|a, b| b.total_cmp(a));
                let mut acc = 0.0;
                v.iter()
                    .map(|&x| {
                        acc += x as f64;
                        acc
                    })
                    .collect()
            })
            .collect();
        let row_k = cfg.grid.k.iter().copied().max().unwrap_or(1).max(cfg.defaults.map(|p| p.k).unwrap_or(1)).min(n_h);
        let rows_q = row_best(&pq, n_h, m_q, row_k);
        let rows_g = row_best(&pg, n_h, bank_g.len(), row_k);
        folds.push(Fold {
            n_h,
            nq,
            s,
            pos,
            top1,
            pq,
            mq: m_q,
            pg,
            mg: bank_g.len(),
            top_prefix_q,
            rows_q,
            rows_g,
            row_k,
            lse_q: HashMap::new(),
            lse_g: HashMap::new(),
        });
        ctl.progress("tune:blocks", f + 1, cfg.folds);
    }
    Ok((folds, n_h))
}

/// Whether [`tune`] can search `m`'s parameters (the methods of the first release; the issue-13
/// methods, e.g. the Sinkhorn ones, are refused with `ERR_PARAM` until they get tuning axes).
pub fn tunable(m: Method) -> bool {
    matches!(m, Method::None | Method::Is | Method::Dis | Method::DualIs | Method::DualDis | Method::Csls | Method::Nnn)
}

/// Tunes every method of `cfg.methods` on the paired banks.
pub fn tune(data: &TuneData, cfg: &TuneConfig, ctl: &Control) -> Result<TuneResult> {
    let (mq, mg, d) = (data.m_q(), data.m_g(), data.dim);
    if d == 0 || data.query_bank.len() != mq * d || data.gallery_bank.len() != mg * d {
        return Err(Error::shape("tune: bank sizes must be multiples of dim > 0"));
    }
    if data.offsets.len() != mq + 1 || data.offsets[0] != 0 || data.offsets.windows(2).any(|w| w[0] > w[1]) || data.offsets[mq] as usize != data.items.len() {
        return Err(Error::shape(format!("tune: pairs offsets must be a non-decreasing list of {} entries from 0 to the item count", mq + 1)));
    }
    if let Some(&bad) = data.items.iter().find(|&&i| i as usize >= mg) {
        return Err(Error::param(format!("tune: paired gallery-bank row {bad} is out of range (gallery bank has {mg} rows)")));
    }
    if cfg.folds == 0 || cfg.holdout == 0 {
        return Err(Error::param("tune: folds and holdout must be ≥ 1"));
    }
    if cfg.methods.is_empty() {
        return Err(Error::param("tune: methods must not be empty"));
    }
    if let Some(m) = cfg.methods.iter().find(|&&m| !tunable(m)) {
        return Err(Error::param(format!("tune: method '{}' cannot be tuned yet (no tuning axes for its parameters)", m.as_str())));
    }
    validate_grid(&cfg.grid)?;
    if let Some(p) = cfg.defaults {
        for &m in &cfg.methods {
            p.validate(m)?;
        }
    }
    let (mut folds, n_h) = build_folds(data, cfg, ctl)?;
    let mut passes = 0usize;
    let mut evaluations = 0usize;
    let base = cfg.defaults.unwrap_or_default();
    let mut out = Vec::new();
    for (mi, &method) in cfg.methods.iter().enumerate() {
        ctl.check()?;
        let mut trials: Vec<Evaluated> = Vec::new();
        let mut eval = |p: Params, folds: &mut Vec<Fold>, trials: &mut Vec<Evaluated>| -> Result<Evaluated> {
            if let Some(e) = trials.iter().find(|e| e.params == p) {
                return Ok(e.clone());
            }
            ctl.check()?;
            let fold_scores: Vec<f64> = folds.iter_mut().map(|f| f.eval(method, &p, cfg.objective, &mut passes)).collect();
            evaluations += fold_scores.len();
            let mean = fold_scores.iter().sum::<f64>() / fold_scores.len() as f64;
            let e = Evaluated { params: p, fold_scores, mean };
            trials.push(e.clone());
            Ok(e)
        };
        let default = match cfg.defaults {
            Some(p) => Some(eval(p, &mut folds, &mut trials)?),
            None => None,
        };
        let ax = axes(method);
        // Coarse grid: full product.
        let grids: Vec<Vec<f64>> = ax.iter().map(|a| a.grid(&cfg.grid)).collect();
        let mut best = default.clone();
        let consider = |e: Evaluated, best: &mut Option<Evaluated>| {
            if best.as_ref().is_none_or(|b| e.mean > b.mean) {
                *best = Some(e);
            }
        };
        let total: usize = grids.iter().map(|g| g.len()).product();
        for idx in 0..total {
            let mut p = base;
            let mut r = idx;
            for (a, g) in ax.iter().zip(&grids) {
                a.set(&mut p, g[r % g.len()]);
                r /= g.len();
            }
            let e = eval(p, &mut folds, &mut trials)?;
            consider(e, &mut best);
        }
        // Refinement: per axis, midpoints between the best value and its sorted neighbours among
        // the values tried so far on that axis.
        for _ in 0..cfg.refine {
            for &a in &ax {
                let cur = best.as_ref().expect("a candidate").params;
                let v = a.get(&cur);
                let mut vals: Vec<f64> = trials.iter().map(|e| a.get(&e.params)).collect();
                vals.sort_by(|x, y| x.total_cmp(y));
                vals.dedup();
                let i = vals.iter().position(|&x| x == v).unwrap_or(0);
                let mut cands = Vec::new();
                if i > 0 {
                    cands.push(a.mid(vals[i - 1], v));
                }
                if i + 1 < vals.len() {
                    cands.push(a.mid(v, vals[i + 1]));
                }
                for c in cands {
                    if c == v || (a.integer() && c < 1.0) {
                        continue;
                    }
                    let mut p = cur;
                    a.set(&mut p, c);
                    let e = eval(p, &mut folds, &mut trials)?;
                    consider(e, &mut best);
                }
            }
        }
        let best = best.expect("at least one candidate");
        out.push(MethodTune { method, best, default, trials });
        ctl.progress("tune", mi + 1, cfg.methods.len());
    }
    let mut best = 0;
    for (i, m) in out.iter().enumerate() {
        if m.best.mean > out[best].best.mean {
            best = i;
        }
    }
    Ok(TuneResult { holdout_queries: folds.iter().map(|f| f.nq).collect(), methods: out, best, holdout_items: n_h, evaluations, lse_passes: passes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::similarity::{prepare, Metric};
    use crate::matrix::MatRef;
    use crate::methods::stats::{bank_stats, Source};

    /// Seeded paired banks: `items` concepts with `c` noisy captions each, plus a few hubs.
    fn paired(items: usize, c: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut r = SplitMix(seed);
        let mut g = || (r.next() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let hub: Vec<f64> = (0..d).map(|_| g()).collect();
        let mut gb = Vec::new();
        let mut qb = Vec::new();
        for i in 0..items {
            let concept: Vec<f64> = (0..d).map(|_| g()).collect();
            let pull = if i % 25 == 0 { 1.5 } else { 0.0 };
            gb.extend(concept.iter().zip(&hub).map(|(x, h)| (x + 0.8 * g() + pull * h) as f32));
            for _ in 0..c {
                qb.extend(concept.iter().zip(&hub).map(|(x, h)| (x + 1.2 * g() + 0.3 * h) as f32));
            }
        }
        (qb, gb)
    }

    fn unit(v: &[f32], d: usize) -> Vec<f32> {
        prepare(MatRef::new(v, v.len() / d, d, "x").unwrap(), Metric::Cosine, "x").unwrap().into_owned()
    }

    fn cfg(methods: Vec<Method>) -> TuneConfig {
        TuneConfig {
            methods,
            objective: Objective::RecallAt(1),
            grid: Grid::default(),
            folds: 2,
            holdout: 60,
            refine: 2,
            seed: 7,
            max_block_floats: 1 << 26,
            defaults: Some(Params::default()),
        }
    }

    fn captions(items: usize, c: usize) -> (Vec<u32>, Vec<u32>) {
        ((0..=items * c).map(|i| i as u32).collect(), (0..items * c).map(|i| (i / c) as u32).collect())
    }

    #[test]
    fn never_worse_than_default_and_deterministic() {
        let (d, items, c) = (24, 200, 3);
        let (qb, gb) = paired(items, c, d, 3);
        let (qb, gb) = (unit(&qb, d), unit(&gb, d));
        let (off, it) = captions(items, c);
        let data = TuneData { query_bank: &qb, gallery_bank: &gb, dim: d, offsets: &off, items: &it };
        let cfg = cfg(Method::ALL.into_iter().filter(|&m| tunable(m)).collect());
        let r = tune(&data, &cfg, &Control::none()).unwrap();
        assert_eq!(r.methods.len(), 7);
        for m in &r.methods {
            let def = m.default.as_ref().unwrap();
            assert!(m.best.mean >= def.mean, "{:?}: {} < default {}", m.method, m.best.mean, def.mean);
            assert_eq!(m.best.fold_scores.len(), 2);
            assert!(m.trials.len() > 1 || m.method == Method::None);
        }
        let r2 = tune(&data, &cfg, &Control::none()).unwrap();
        assert_eq!(r, r2);
        let mut c3 = cfg.clone();
        c3.seed = 8;
        let r3 = tune(&data, &c3, &Control::none()).unwrap();
        assert_ne!(r.methods[1].best.fold_scores, r3.methods[1].best.fold_scores);
    }

    /// The fold's scoring equals a fit of the real normaliser on the fold's banks, searched for top-1.
    #[test]
    fn fold_scores_match_a_real_fit() {
        let (d, items, c) = (16, 120, 2);
        let (qb, gb) = paired(items, c, d, 11);
        let (qb, gb) = (unit(&qb, d), unit(&gb, d));
        let (off, it) = captions(items, c);
        let data = TuneData { query_bank: &qb, gallery_bank: &gb, dim: d, offsets: &off, items: &it };
        let mut cf = cfg(vec![]);
        cf.folds = 1;
        cf.holdout = 40;
        let (mut folds, n_h) = build_folds(&data, &cf, &Control::none()).unwrap();
        let f = &mut folds[0];
        // Recover the held-out set from the fold's block sizes: rebuild it the same way.
        let mut rng = SplitMix(cf.seed ^ 0x5eed_7_u64);
        let mut paired: Vec<u32> = (0..items as u32).collect();
        for i in (1..paired.len()).rev() {
            let j = rng.below(i + 1);
            paired.swap(i, j);
        }
        let mut held = paired[..n_h].to_vec();
        held.sort_unstable();
        let gal: Vec<f32> = held.iter().flat_map(|&i| gb[i as usize * d..(i as usize + 1) * d].to_vec()).collect();
        let qrows: Vec<usize> = (0..items * c).filter(|q| held.contains(&((q / c) as u32))).collect();
        let bq: Vec<f32> = (0..items * c).filter(|q| !held.contains(&((q / c) as u32))).flat_map(|q| qb[q * d..(q + 1) * d].to_vec()).collect();
        let bg: Vec<f32> = (0..items as u32).filter(|i| !held.contains(i)).flat_map(|i| gb[i as usize * d..(i as usize + 1) * d].to_vec()).collect();
        let qv: Vec<f32> = qrows.iter().flat_map(|&q| qb[q * d..(q + 1) * d].to_vec()).collect();
        for (method, p) in [
            (Method::Is, Params { beta_query: 7.0, ..Params::default() }),
            (Method::Dis, Params { beta_query: 12.0, k: 2, ..Params::default() }),
            (Method::DualIs, Params { beta_query: 15.0, beta_gallery: 3.0, ..Params::default() }),
            (Method::DualDis, Params { beta_query: 15.0, beta_gallery: 3.0, k: 1, ..Params::default() }),
            (Method::Csls, Params { csls_k: 5, ..Params::default() }),
            (Method::Nnn, Params { nnn_k: 16, nnn_alpha: 0.6, ..Params::default() }),
        ] {
            let mut passes = 0;
            let got = f.eval(method, &p, Objective::RecallAt(1), &mut passes);
            let (rq, rg) = method.requests(&p);
            let mq = bq.len() / d;
            let mg = bg.len() / d;
            let sq = rq.map(|r| bank_stats(Source::Embeddings { bank: &bq, gallery: &gal, dim: d }, mq, n_h, r, &Control::none(), "q").unwrap());
            let sg = rg.map(|r| bank_stats(Source::Embeddings { bank: &bg, gallery: &gal, dim: d }, mg, n_h, r, &Control::none(), "g").unwrap());
            let scorer = method.scorer(&p, sq.as_ref(), sg.as_ref(), &Default::default(), n_h);
            let mut sims = vec![0f32; qrows.len() * n_h];
            matmul_abt_par(&qv, qrows.len(), &gal, n_h, d, &mut sims);
            let (idx, _) = scorer.search_sims(&sims, qrows.len(), 1).unwrap();
            let hits = qrows.iter().enumerate().filter(|(r, &q)| held[idx[*r] as usize] == (q / c) as u32).count();
            let want = hits as f64 / qrows.len() as f64;
            assert!((got - want).abs() < 1e-12, "{method:?}: tuner {got} vs fitted normaliser {want}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        let (qb, gb) = (vec![1f32; 8], vec![1f32; 8]);
        let off = vec![0u32, 1, 2, 3, 9];
        let it = vec![0u32, 1, 2, 3];
        let data = TuneData { query_bank: &qb, gallery_bank: &gb, dim: 2, offsets: &off, items: &it };
        assert!(tune(&data, &cfg(vec![Method::Is]), &Control::none()).is_err());
        assert!(Objective::parse("R@0").is_err());
        assert_eq!(Objective::parse("r@5").unwrap(), Objective::RecallAt(5));
        assert_eq!(Objective::parse("mAP").unwrap(), Objective::Map);
    }
}
