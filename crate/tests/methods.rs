//! Integration tests of every method (`none, is, dis, dual-is, dual-dis, csls, nnn`) against
//! `docs/methods.md` (§2.3, §3.1–§3.6, §3.4's worked example, §7's fixtures).
//!
//! - An independent float64 reference (module [`reference`]) written plainly here: full bank×gallery
//!   matrices, sort-based top-k, max-shifted `f64::exp` log-sum-exp. It shares no code with the library.
//! - Limit laws, permutation/bank-order invariances, the exp-ratio form, huge β·s.
//! - The §3.4 worked example and the `nnn_toy` / `derived_dbnorm_toy` peer oracles
//!   (`../shared/peer-oracles/oracles.json`, read at run time; skipped with a printed reason if absent).
//! - Bit-identical results for rayon pools of 1, 2 and 4 threads.
//! - Bad input: the right `ErrorCode`, inputs unchanged.

mod common;

use std::path::PathBuf;

use dbnorm::control::Control;
use dbnorm::kernels::similarity::Metric;
use dbnorm::methods::{Method, Params};
use dbnorm::normalizer::Normalizer;
use dbnorm::{ErrorCode, MatRef};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------
// Independent float64 reference
// ---------------------------------------------------------------------------------------------------

mod reference {
    //! Plain float64 definitions of every method (docs/methods.md §2.3, §3). Everything is materialised.

    use dbnorm::methods::{Method, Params};

    pub type M = Vec<Vec<f64>>;

    pub fn from_f32(data: &[f32], rows: usize, cols: usize) -> M {
        (0..rows).map(|r| data[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).collect()).collect()
    }

    pub fn to_f32(m: &M) -> Vec<f32> {
        m.iter().flat_map(|r| r.iter().map(|&v| v as f32)).collect()
    }

    /// Rows L2-normalised in f64 under cosine; unchanged under dot.
    pub fn prepare(x: &M, cosine: bool) -> M {
        if !cosine {
            return x.clone();
        }
        x.iter()
            .map(|r| {
                let n = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                r.iter().map(|v| v / n).collect()
            })
            .collect()
    }

    /// `a · bᵀ` with plain loops.
    pub fn sims(a: &M, b: &M) -> M {
        a.iter().map(|x| b.iter().map(|y| x.iter().zip(y).map(|(p, q)| p * q).sum()).collect()).collect()
    }

    pub fn column(p: &M, j: usize) -> Vec<f64> {
        p.iter().map(|r| r[j]).collect()
    }

    /// Indices sorted by score descending, then index ascending (docs/methods.md §2.5).
    pub fn order(row: &[f64]) -> Vec<usize> {
        let mut o: Vec<usize> = (0..row.len()).collect();
        o.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
        o
    }

    /// `log Σ exp(β·x)` with the max shift, `f64::exp`.
    pub fn lse(xs: &[f64], beta: f64) -> f64 {
        let mx = xs.iter().map(|&x| beta * x).fold(f64::NEG_INFINITY, f64::max);
        mx + xs.iter().map(|&x| (beta * x - mx).exp()).sum::<f64>().ln()
    }

    /// Mean of the `k` largest values (k clamped to the length).
    pub fn mean_top(xs: &[f64], k: usize) -> f64 {
        let mut v = xs.to_vec();
        v.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let k = k.min(v.len());
        v[..k].iter().sum::<f64>() / k as f64
    }

    /// Per-item activation of a bank (union over bank rows of each row's top-k along the gallery
    /// axis) as `(sure, maybe)`. With `eps = 0` both are the exact set under the §2.5 tie rule. With
    /// `eps > 0` (embeddings: the library works from f32 similarities) an item whose membership
    /// depends on a difference ≤ eps is `maybe` but not `sure`.
    pub fn activation(p: &M, k: usize, ng: usize, eps: f64) -> (Vec<bool>, Vec<bool>) {
        let mut sure = vec![false; ng];
        let mut maybe = vec![false; ng];
        for row in p {
            let o = order(row);
            let kk = k.min(ng);
            if eps == 0.0 {
                for &j in &o[..kk] {
                    sure[j] = true;
                    maybe[j] = true;
                }
                continue;
            }
            let kth = row[o[kk - 1]];
            let next = if kk < ng { Some(row[o[kk]]) } else { None };
            for &j in &o[..kk] {
                if next.is_none_or(|nx| row[j] > nx + eps) {
                    sure[j] = true;
                }
            }
            for j in 0..ng {
                if row[j] >= kth - eps {
                    maybe[j] = true;
                }
            }
        }
        (sure, maybe)
    }

    /// Possible raw top-1 items of a row: exactly the §2.5 argmax when `eps = 0`, else every item
    /// within `eps` of the maximum.
    pub fn top1_candidates(row: &[f64], eps: f64) -> Vec<usize> {
        let o = order(row);
        if eps == 0.0 {
            return vec![o[0]];
        }
        let mx = row[o[0]];
        (0..row.len()).filter(|&j| row[j] >= mx - eps).collect()
    }

    /// The reference result: per query, every admissible score row (one unless a gate decision is
    /// within `eps`), and for gated methods the variant `γq + 2γg` of each admissible row.
    pub struct Ref {
        pub rows: Vec<Vec<Vec<f64>>>,
        pub variants: Vec<Vec<usize>>,
        pub scale: f64,
        pub ambiguous: usize,
    }

    /// Sinkhorn potentials in f64, log domain with `f64::exp` (docs/methods.md, "SN"): `rows` is
    /// `n × m` (gallery-side rows × query bank), uniform marginals, exactly `iters` iterations, each
    /// updating v then u. Returns `log u`.
    pub fn sinkhorn_log_u(rows: &M, tau: f64, iters: usize) -> Vec<f64> {
        let (n, m) = (rows.len(), rows[0].len());
        let mut lu = vec![-(n as f64).ln(); n];
        let mut lv = vec![-(m as f64).ln(); m];
        for _ in 0..iters {
            for b in 0..m {
                let col: Vec<f64> = (0..n).map(|i| rows[i][b] + tau * lu[i]).collect();
                lv[b] = -(m as f64).ln() - lse(&col, 1.0 / tau);
            }
            for i in 0..n {
                let row: Vec<f64> = (0..m).map(|b| rows[i][b] + tau * lv[b]).collect();
                lu[i] = -(n as f64).ln() - lse(&row, 1.0 / tau);
            }
        }
        lu
    }

    pub fn scores(method: Method, p: &Params, s: &M, pq: &M, pg: &M, eps: f64) -> Ref {
        scores_with_cross(method, p, s, pq, pg, &Vec::new(), eps)
    }

    /// [`scores`] with the query bank × gallery bank matrix `ph` (m_q × m_g; DualSN only).
    pub fn scores_with_cross(method: Method, p: &Params, s: &M, pq: &M, pg: &M, ph: &M, eps: f64) -> Ref {
        let nq = s.len();
        let ng = if nq > 0 { s[0].len() } else { pq.first().map_or(0, |r| r.len()) };
        let lq: Vec<f64> = if pq.is_empty() { vec![] } else { (0..ng).map(|j| lse(&column(pq, j), p.beta_query)).collect() };
        let lg: Vec<f64> = if pg.is_empty() { vec![] } else { (0..ng).map(|j| lse(&column(pg, j), p.beta_gallery)).collect() };
        let gates = |set: &(Vec<bool>, Vec<bool>), t: usize| -> Vec<bool> {
            if set.0[t] {
                vec![true]
            } else if set.1[t] {
                vec![false, true]
            } else {
                vec![false]
            }
        };
        let mut out = Ref { rows: Vec::new(), variants: Vec::new(), scale: 1.0, ambiguous: 0 };
        match method {
            Method::None | Method::Is | Method::DualIs | Method::Csls | Method::Nnn | Method::Sn | Method::DualSn => {
                let (scale, bias): (f64, Vec<f64>) = match method {
                    Method::None => (1.0, vec![0.0; ng]),
                    Method::Is => (p.beta_query, lq.clone()),
                    Method::DualIs => (p.beta_query + p.beta_gallery, (0..ng).map(|j| lq[j] + lg[j]).collect()),
                    Method::Csls => (2.0, (0..ng).map(|j| mean_top(&column(pq, j), p.csls_k)).collect()),
                    Method::Nnn => (1.0, (0..ng).map(|j| p.nnn_alpha * mean_top(&column(pq, j), p.nnn_k)).collect()),
                    Method::Sn | Method::DualSn => {
                        // rows: the gallery (P^q transposed), then (DualSN) the gallery bank (P^qh transposed)
                        let mut rows: M = (0..ng).map(|j| column(pq, j)).collect();
                        if method == Method::DualSn {
                            rows.extend((0..ph[0].len()).map(|h| column(ph, h)));
                        }
                        let lu = sinkhorn_log_u(&rows, p.tau, p.iterations);
                        (1.0, (0..ng).map(|j| -p.tau * lu[j]).collect())
                    }
                    _ => unreachable!(),
                };
                out.scale = scale;
                for row in s {
                    let off = if method == Method::Csls { mean_top(row, p.csls_k) } else { 0.0 };
                    out.rows.push(vec![(0..ng).map(|j| scale * row[j] - bias[j] - off).collect()]);
                    out.variants.push(vec![0]);
                }
            }
            _ => {
                let aq = activation(pq, p.k, ng, eps);
                let ag = if method == Method::DualDis { activation(pg, p.k, ng, eps) } else { (vec![false; ng], vec![false; ng]) };
                let scale = if method == Method::Dis { p.beta_query } else { p.beta_query + p.beta_gallery };
                out.scale = scale;
                for row in s {
                    let mut vs: Vec<usize> = Vec::new();
                    for t in top1_candidates(row, eps) {
                        for gq in gates(&aq, t) {
                            for gg in gates(&ag, t) {
                                let v = gq as usize + 2 * gg as usize;
                                if !vs.contains(&v) {
                                    vs.push(v);
                                }
                            }
                        }
                    }
                    if vs.len() > 1 {
                        out.ambiguous += 1;
                    }
                    let rows = vs
                        .iter()
                        .map(|&v| {
                            (0..ng)
                                .map(|j| {
                                    let mut x = scale * row[j];
                                    if v & 1 == 1 {
                                        x -= lq[j];
                                    }
                                    if v & 2 == 2 {
                                        x -= lg[j];
                                    }
                                    x
                                })
                                .collect()
                        })
                        .collect();
                    out.rows.push(rows);
                    out.variants.push(vs);
                }
            }
        }
        out
    }
}

use reference::M;

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

/// SplitMix64: deterministic test data without a dev-dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unif(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    /// Approximately normal (sum of 4 uniforms), so vectors have a shared-ish direction structure.
    fn normal(&mut self) -> f64 {
        (self.unif() + self.unif() + self.unif() + self.unif()) * 0.866
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Row-major f32 matrix; rows get a random norm in [0.5, 2] (irrelevant for cosine, matters for
    /// dot) and a common offset so that some gallery items are hubs.
    fn embeddings(&mut self, rows: usize, dim: usize, common: &[f64]) -> Vec<f32> {
        let mut v = Vec::with_capacity(rows * dim);
        for _ in 0..rows {
            let norm = 0.5 + 1.5 * (self.unif() + 1.0) / 2.0;
            let r: Vec<f64> = (0..dim).map(|t| self.normal() + common[t]).collect();
            let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.extend(r.iter().map(|x| (x / n * norm) as f32));
        }
        v
    }
    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
}

fn mat(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::new(data, rows, cols, "test").unwrap()
}

fn ctl() -> Control<'static> {
    Control::none()
}

/// Raw data of one random case: embeddings (queries, gallery, query bank, gallery bank).
#[derive(Clone)]
struct Case {
    name: String,
    nq: usize,
    ng: usize,
    mq: usize,
    mg: usize,
    d: usize,
    q: Vec<f32>,
    g: Vec<f32>,
    r: Vec<f32>,
    h: Vec<f32>,
}

impl Case {
    fn new(seed: u64, nq: usize, ng: usize, mq: usize, mg: usize, d: usize) -> Case {
        let mut rng = Rng(seed);
        let common: Vec<f64> = (0..d).map(|_| 0.6 * rng.unif()).collect();
        Case {
            name: format!("nq{nq} ng{ng} mq{mq} mg{mg} d{d}"),
            nq,
            ng,
            mq,
            mg,
            d,
            q: rng.embeddings(nq, d, &common),
            g: rng.embeddings(ng, d, &common),
            r: rng.embeddings(mq, d, &common),
            h: rng.embeddings(mg, d, &common),
        }
    }
}

/// The random shapes: 1-row banks, a gallery of 1, odd dims, galleries over 256 (several gallery
/// tiles of the fit) and over 2048 (several chunks of the fused search), banks over 1024 (several
/// bank blocks), over 128 queries (several query blocks of the search), and bank-size mixes that
/// make every DualDIS gate combination occur.
fn cases() -> Vec<Case> {
    vec![
        Case::new(1, 5, 7, 1, 1, 3),
        Case::new(2, 4, 1, 6, 5, 5),
        Case::new(3, 37, 300, 1100, 1030, 17),
        Case::new(4, 130, 2100, 50, 40, 9),
        Case::new(5, 1, 513, 2049, 3, 64),
        Case::new(6, 60, 200, 4, 600, 8),
        Case::new(7, 23, 41, 9, 11, 2),
    ]
}

/// How similarities are obtained.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Emb(Metric),
    Sims,
}

const MODES: [Mode; 3] = [Mode::Emb(Metric::Cosine), Mode::Emb(Metric::Dot), Mode::Sims];

/// f64 reference matrices of a case in a mode: S, P^q, P^g, plus (similarity mode) the f32 inputs.
struct Prepared {
    s: M,
    pq: M,
    pg: M,
    s32: Vec<f32>,
    pq32: Vec<f32>,
    pg32: Vec<f32>,
    /// Query bank × gallery bank (m_q × m_g; DualSN): f64 and, in similarity mode, f32.
    ph: M,
    ph32: Vec<f32>,
}

fn prepare(c: &Case, mode: Mode) -> Prepared {
    let cos = mode != Mode::Emb(Metric::Dot);
    let f = |x: &[f32], n: usize| reference::prepare(&reference::from_f32(x, n, c.d), cos);
    let (q, g, r, h) = (f(&c.q, c.nq), f(&c.g, c.ng), f(&c.r, c.mq), f(&c.h, c.mg));
    let (s, pq, pg, ph) = (reference::sims(&q, &g), reference::sims(&r, &g), reference::sims(&h, &g), reference::sims(&r, &h));
    if mode == Mode::Sims {
        // Similarity mode: the library sees f32 matrices; the reference uses exactly those values.
        let (s32, pq32, pg32, ph32) = (reference::to_f32(&s), reference::to_f32(&pq), reference::to_f32(&pg), reference::to_f32(&ph));
        let (s, pq, pg, ph) = (reference::from_f32(&s32, c.nq, c.ng), reference::from_f32(&pq32, c.mq, c.ng), reference::from_f32(&pg32, c.mg, c.ng), reference::from_f32(&ph32, c.mq, c.mg));
        Prepared { s, pq, pg, s32, pq32, pg32, ph, ph32 }
    } else {
        Prepared { s, pq, pg, s32: vec![], pq32: vec![], pg32: vec![], ph, ph32: vec![] }
    }
}

/// Fits `method` on a case in a mode (both banks always passed; unused ones are ignored).
fn fit(method: Method, p: Params, c: &Case, mode: Mode, pr: &Prepared) -> Normalizer {
    match mode {
        Mode::Emb(metric) => Normalizer::fit_embeddings(method, p, metric, mat(&c.g, c.ng, c.d), Some(mat(&c.r, c.mq, c.d)), Some(mat(&c.h, c.mg, c.d)), &ctl()),
        Mode::Sims => {
            let ph = (!pr.ph32.is_empty()).then(|| mat(&pr.ph32, c.mq, c.mg));
            Normalizer::fit_similarities_with(method, p, Some(mat(&pr.pq32, c.mq, c.ng)), Some(mat(&pr.pg32, c.mg, c.ng)), ph, Some(c.ng), &ctl())
        }
    }
    .unwrap_or_else(|e| panic!("fit {} on {} ({mode:?}): {e}", method.as_str(), c.name))
}

/// The library's input for `scores`/`search` in a mode.
fn input<'a>(c: &'a Case, mode: Mode, pr: &'a Prepared) -> MatRef<'a> {
    match mode {
        Mode::Emb(_) => mat(&c.q, c.nq, c.d),
        Mode::Sims => mat(&pr.s32, c.nq, c.ng),
    }
}

fn params(f: impl FnOnce(&mut Params)) -> Params {
    let mut p = Params::default();
    f(&mut p);
    p
}

/// Method configurations exercised against the reference.
fn configs(method: Method) -> Vec<Params> {
    match method {
        Method::None => vec![Params::default()],
        Method::Is => vec![params(|p| p.beta_query = 20.0), params(|p| p.beta_query = 3.0)],
        Method::Dis => vec![params(|p| (p.beta_query, p.k) = (20.0, 1)), params(|p| (p.beta_query, p.k) = (7.0, 3))],
        Method::DualIs => vec![params(|p| (p.beta_query, p.beta_gallery) = (20.0, 1.0)), params(|p| (p.beta_query, p.beta_gallery) = (5.0, 3.0))],
        Method::DualDis => vec![
            params(|p| (p.beta_query, p.beta_gallery, p.k) = (20.0, 1.0, 1)),
            params(|p| (p.beta_query, p.beta_gallery, p.k) = (5.0, 3.0, 2)),
        ],
        Method::Csls => vec![params(|p| p.csls_k = 10), params(|p| p.csls_k = 3)],
        Method::Nnn => vec![params(|p| (p.nnn_k, p.nnn_alpha) = (128, 0.75)), params(|p| (p.nnn_k, p.nnn_alpha) = (5, 0.5))],
        Method::Sn | Method::DualSn => vec![params(|p| (p.tau, p.iterations) = (0.05, 10)), params(|p| (p.tau, p.iterations) = (0.5, 3))],
    }
}

fn max_abs(m: &M) -> f64 {
    m.iter().flatten().fold(0.0f64, |a, &v| a.max(v.abs()))
}

/// Score tolerance: `rel` relative, with the magnitude floored at 10% of the score unit
/// (`scale · max|s|`), so that values near zero get a sensible absolute tolerance.
fn tol(refv: f64, unit: f64, rel: f64) -> f64 {
    rel * refv.abs().max(0.1 * unit)
}

/// Index of the first admissible reference row that `lib` matches within tolerance, and the largest
/// error of that row as a fraction of the tolerance.
fn match_row(lib: &[f32], cands: &[Vec<f64>], unit: f64, rel: f64) -> Result<(usize, f64), String> {
    let mut why = Vec::new();
    for (ci, c) in cands.iter().enumerate() {
        let mut worst = (0.0f64, 0usize);
        for (j, (&l, &r)) in lib.iter().zip(c).enumerate() {
            let e = (l as f64 - r).abs() / tol(r, unit, rel);
            if e.is_nan() || e > worst.0 {
                worst = (e, j);
            }
        }
        if worst.0 <= 1.0 && lib.iter().all(|v| v.is_finite()) {
            return Ok((ci, worst.0));
        }
        let j = worst.1;
        why.push(format!("candidate {ci}: item {j} lib {} ref {} ({}× tolerance)", lib[j], c[j], worst.0));
    }
    Err(why.join("; "))
}

/// Checks a library top-k row against a reference score row: position by position the same item,
/// except where the two items' reference scores are within `tie` (a swap among equal scores); the
/// returned scores match the reference within tolerance; items distinct; scores non-increasing.
fn check_topk(idx: &[u32], sc: &[f32], refrow: &[f64], tie: &dyn Fn(f64) -> f64, unit: f64, rel: f64) -> Result<(), String> {
    let o = reference::order(refrow);
    for r in 0..idx.len() {
        let (li, ri) = (idx[r] as usize, o[r]);
        if li >= refrow.len() {
            return Err(format!("position {r}: index {li} out of range"));
        }
        if li != ri && (refrow[li] - refrow[ri]).abs() > tie(refrow[ri]) {
            return Err(format!("position {r}: lib item {li} (ref {}) vs ref item {ri} (ref {})", refrow[li], refrow[ri]));
        }
        if (sc[r] as f64 - refrow[li]).abs() > tol(refrow[li], unit, rel) {
            return Err(format!("position {r}: item {li} lib score {} vs ref {}", sc[r], refrow[li]));
        }
        if idx[..r].contains(&idx[r]) {
            return Err(format!("position {r}: item {li} repeated"));
        }
        if r > 0 && sc[r] > sc[r - 1] {
            return Err(format!("position {r}: scores increase"));
        }
    }
    Ok(())
}

/// Gate coverage of DIS/DualDIS across the reference runs (variant histogram).
#[derive(Default)]
struct Coverage {
    variants: [usize; 4],
    ambiguous: usize,
    /// Largest score error as a fraction of the tolerance: [embeddings, similarity mode].
    worst: [f64; 2],
}

/// Fits `method` with every config on every case and mode and compares scores and search with the
/// reference. Returns the gate coverage.
fn agree_with_reference(method: Method) -> Coverage {
    let mut cov = Coverage::default();
    let mut runs = 0;
    for c in cases() {
        for mode in MODES {
            let pr = prepare(&c, mode);
            // f32 similarities (embeddings) differ from f64 by ~1e-7·|s|; decisions closer than eps are
            // accepted either way. In similarity mode both sides use the same f32 values: exact.
            let (eps, rel) = if mode == Mode::Sims { (0.0, 1e-6) } else { (1e-5 * max_abs(&pr.s).max(1e-30), 1e-4) };
            for p in configs(method) {
                let what = format!("{} {:?} on {} ({mode:?})", method.as_str(), p, c.name);
                let rf = reference::scores_with_cross(method, &p, &pr.s, &pr.pq, &pr.pg, &pr.ph, eps);
                let unit = rf.scale * max_abs(&pr.s).max(1e-30);
                let n = fit(method, p, &c, mode, &pr);
                let (sc, cols) = n.scores(input(&c, mode, &pr)).unwrap();
                assert_eq!((sc.len(), cols), (c.nq * c.ng, c.ng), "{what}: scores shape");
                for i in 0..c.nq {
                    let lib = &sc[i * c.ng..(i + 1) * c.ng];
                    let (ci, w) = match_row(lib, &rf.rows[i], unit, rel).unwrap_or_else(|e| panic!("{what}: query {i}: {e}"));
                    let slot = (mode == Mode::Sims) as usize;
                    cov.worst[slot] = cov.worst[slot].max(w);
                    if rf.rows[i].len() == 1 {
                        cov.variants[rf.variants[i][ci]] += 1;
                    }
                }
                cov.ambiguous += rf.ambiguous;
                // Search: k = 1, 5 and more than the gallery (clamped and reported).
                let tie_sims = |r: f64| 1e-9 * (r.abs() + unit);
                let tie_emb = |r: f64| 2.0 * tol(r, unit, rel);
                let tie: &dyn Fn(f64) -> f64 = if mode == Mode::Sims { &tie_sims } else { &tie_emb };
                for k in [1, 5, c.ng + 3] {
                    let (idx, ssc, ke) = n.search(input(&c, mode, &pr), k, &ctl()).unwrap();
                    assert_eq!(ke, k.min(c.ng), "{what}: effective k");
                    assert_eq!((idx.len(), ssc.len()), (c.nq * ke, c.nq * ke), "{what}: search shape");
                    for i in 0..c.nq {
                        let (ii, ss) = (&idx[i * ke..(i + 1) * ke], &ssc[i * ke..(i + 1) * ke]);
                        let errs: Vec<String> = rf.rows[i].iter().filter_map(|row| check_topk(ii, ss, row, tie, unit, rel).err()).collect();
                        assert!(errs.len() < rf.rows[i].len(), "{what}: search k={k} query {i}: {}", errs.join(" | "));
                    }
                }
                runs += 1;
            }
        }
    }
    println!(
        "{}: {runs} fits agree with the f64 reference (gate variants [none, q, g, q+g] = {:?}, ambiguous rows {}; worst error {:.3} of the tolerance in embeddings mode (1e-4 rel.), {:.3} in similarity mode (1e-6 rel.))",
        method.as_str(),
        cov.variants,
        cov.ambiguous,
        cov.worst[0],
        cov.worst[1]
    );
    cov
}

// ---------------------------------------------------------------------------------------------------
// Agreement with the f64 reference, one test per method
// ---------------------------------------------------------------------------------------------------

#[test]
fn none_matches_reference() {
    agree_with_reference(Method::None);
}

#[test]
fn is_matches_reference() {
    agree_with_reference(Method::Is);
}

#[test]
fn dis_matches_reference() {
    let cov = agree_with_reference(Method::Dis);
    assert!(cov.variants[0] > 0 && cov.variants[1] > 0, "DIS coverage: need gated and ungated rows, got {:?}", cov.variants);
}

#[test]
fn dual_is_matches_reference() {
    agree_with_reference(Method::DualIs);
}

#[test]
fn dual_dis_matches_reference() {
    let cov = agree_with_reference(Method::DualDis);
    assert!(cov.variants.iter().all(|&v| v > 0), "DualDIS coverage: every gate combination must occur, got {:?}", cov.variants);
}

#[test]
fn csls_matches_reference() {
    agree_with_reference(Method::Csls);
}

#[test]
fn nnn_matches_reference() {
    agree_with_reference(Method::Nnn);
}

#[test]
fn sn_matches_reference() {
    agree_with_reference(Method::Sn);
}

#[test]
fn dual_sn_matches_reference() {
    agree_with_reference(Method::DualSn);
}

/// The Sinkhorn methods under gallery and bank permutations: the potentials are sums over the
/// gallery and the banks, so a permutation changes only the summation order. Similarity mode:
/// scores agree within 1e-12 relative to the score unit and output is permuted accordingly.
#[test]
fn sn_permutations_permute_output_within_rounding() {
    for c in cases().into_iter().filter(|c| c.ng > 1) {
        let pr = prepare(&c, Mode::Sims);
        let mut rng = Rng(c.ng as u64 * 17 + 3);
        let (pi, pb, ph) = (rng.permutation(c.ng), rng.permutation(c.mq), rng.permutation(c.mg));
        // new gallery item j' is old pi[j']; new query-bank row b' is old pb[b']; gallery-bank column h' is old ph[h']
        let pq2: Vec<f32> = pb.iter().flat_map(|&b| pi.iter().map(move |&j| (b, j))).map(|(b, j)| pr.pq32[b * c.ng + j]).collect();
        let ph2: Vec<f32> = pb.iter().flat_map(|&b| ph.iter().map(move |&h| (b, h))).map(|(b, h)| pr.ph32[b * c.mg + h]).collect();
        let s2: Vec<f32> = (0..c.nq).flat_map(|i| pi.iter().map(move |&j| (i, j))).map(|(i, j)| pr.s32[i * c.ng + j]).collect();
        for method in [Method::Sn, Method::DualSn] {
            for p in configs(method) {
                let a = fit(method, p, &c, Mode::Sims, &pr);
                let b = Normalizer::fit_similarities_with(method, p, Some(mat(&pq2, c.mq, c.ng)), None, Some(mat(&ph2, c.mq, c.mg)), None, &ctl()).unwrap();
                let (sa, _) = a.scores(mat(&pr.s32, c.nq, c.ng)).unwrap();
                let (sb, _) = b.scores(mat(&s2, c.nq, c.ng)).unwrap();
                let unit = max_abs(&pr.s).max(1e-30);
                for i in 0..c.nq {
                    for (jp, &j) in pi.iter().enumerate() {
                        let (x, y) = (sa[i * c.ng + j] as f64, sb[i * c.ng + jp] as f64);
                        assert!((x - y).abs() <= 1e-6 * (x.abs() + unit), "{} {p:?} on {}: ({i}, {j}) {x} vs {y}", method.as_str(), c.name);
                    }
                }
                let (ba, bb) = (&a.scorer().bias[0], &b.scorer().bias[0]);
                for (jp, &j) in pi.iter().enumerate() {
                    assert!((ba[j] - bb[jp]).abs() <= 1e-10 * (ba[j].abs() + unit), "{} bias {j}: {} vs {}", method.as_str(), ba[j], bb[jp]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Limit laws and invariances
// ---------------------------------------------------------------------------------------------------

/// Scores and search of a fitted normaliser, for exact comparisons.
fn run(n: &Normalizer, inp: MatRef, k: usize) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let (sc, _) = n.scores(inp).unwrap();
    let (idx, ssc, _) = n.search(inp, k, &ctl()).unwrap();
    (sc, idx, ssc)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// With k ≥ n_g every item is active, every gate is on: DualDIS = DualIS and DIS = IS, bit for bit
/// (the gated variant's bias is computed the same way as the ungated method's).
fn gated_equals_ungated(dyn_m: Method, plain: Method) {
    for c in cases() {
        for mode in MODES {
            let pr = prepare(&c, mode);
            for base in configs(plain) {
                for k in [c.ng, c.ng + 7] {
                    let p = Params { k, ..base };
                    let a = run(&fit(dyn_m, p, &c, mode, &pr), input(&c, mode, &pr), 10);
                    let b = run(&fit(plain, p, &c, mode, &pr), input(&c, mode, &pr), 10);
                    let what = format!("{} k={k} vs {} on {} ({mode:?})", dyn_m.as_str(), plain.as_str(), c.name);
                    assert_eq!(bits(&a.0), bits(&b.0), "{what}: scores");
                    assert_eq!(a.1, b.1, "{what}: search indices");
                    assert_eq!(bits(&a.2), bits(&b.2), "{what}: search scores");
                }
            }
        }
    }
}

#[test]
fn dual_dis_with_k_at_least_gallery_equals_dual_is() {
    gated_equals_ungated(Method::DualDis, Method::DualIs);
}

#[test]
fn dis_with_k_at_least_gallery_equals_is() {
    gated_equals_ungated(Method::Dis, Method::Is);
}

/// Search top-k of `n` against a limiting score matrix `lim` (nq × ng, f64), allowing swaps among
/// items whose limiting scores are within `tie` (in s units). Returns the number of queries checked.
fn search_ranks_like(n: &Normalizer, inp: MatRef, lim: &M, k: usize, tie: f64, what: &str) {
    let (idx, _, ke) = n.search(inp, k, &ctl()).unwrap();
    for (i, row) in lim.iter().enumerate() {
        let o = reference::order(row);
        for r in 0..ke {
            let (li, ri) = (idx[i * ke + r] as usize, o[r]);
            assert!(li == ri || (row[li] - row[ri]).abs() <= tie, "{what}: query {i} position {r}: got item {li} ({}), limit ranking has {ri} ({})", row[li], row[ri]);
        }
    }
}

/// β → 0⁺. `L(j) = log m + β·mean_b P_bj + O(β²)`, so IS ranks as `s − mean_b P^q_bj` (the bank
/// column mean, i.e. NNN with k = m_q and α = 1), **not** as raw s, unless every bank column has the
/// same mean. Both are checked: a random bank gives the centred ranking (and differs from raw on
/// some queries), a cyclic bank (P_bj = v[(b + j) mod n], equal column multisets) gives the raw
/// ranking. DualIS with β_q, β_g → 0 ranks as `s − (β_q·mean P^q + β_g·mean P^g)/(β_q + β_g)`.
#[test]
fn is_small_beta_ranks_by_bank_centred_similarity() {
    let beta = 1e-6;
    let mut differs_from_raw = 0;
    for c in cases() {
        let pr = prepare(&c, Mode::Sims);
        let mean_q: Vec<f64> = (0..c.ng).map(|j| reference::column(&pr.pq, j).iter().sum::<f64>() / c.mq as f64).collect();
        let mean_g: Vec<f64> = (0..c.ng).map(|j| reference::column(&pr.pg, j).iter().sum::<f64>() / c.mg as f64).collect();
        let centred: M = pr.s.iter().map(|r| (0..c.ng).map(|j| r[j] - mean_q[j]).collect()).collect();
        let dual_centred: M = pr.s.iter().map(|r| (0..c.ng).map(|j| r[j] - (mean_q[j] + 2.0 * mean_g[j]) / 3.0).collect()).collect();
        let k = 5.min(c.ng);
        let n = fit(Method::Is, params(|p| p.beta_query = beta), &c, Mode::Sims, &pr);
        search_ranks_like(&n, input(&c, Mode::Sims, &pr), &centred, k, 1e-5, &format!("IS β=1e-6 on {}", c.name));
        let n2 = fit(Method::DualIs, params(|p| (p.beta_query, p.beta_gallery) = (beta, 2.0 * beta)), &c, Mode::Sims, &pr);
        search_ranks_like(&n2, input(&c, Mode::Sims, &pr), &dual_centred, k, 1e-5, &format!("DualIS β=(1e-6, 2e-6) on {}", c.name));
        let (idx, _, _) = n.search(input(&c, Mode::Sims, &pr), 1, &ctl()).unwrap();
        differs_from_raw += idx.iter().zip(&pr.s).filter(|(&t, row)| t as usize != reference::order(row)[0]).count();
    }
    assert!(differs_from_raw > 0, "expected the centred ranking to differ from raw somewhere");
    println!("IS β=1e-6: top-1 differs from raw top-1 on {differs_from_raw} queries (centred ranking, as derived)");

    // Cyclic bank: every column has the same multiset of values, so L(j) is constant and IS (any β,
    // in particular β → 0⁺) and DualIS keep the raw ranking.
    for c in cases().into_iter().filter(|c| c.ng > 1) {
        let pr = prepare(&c, Mode::Sims);
        let mut rng = Rng(99);
        let v: Vec<f32> = (0..c.ng).map(|_| rng.unif() as f32).collect();
        let cyc: Vec<f32> = (0..c.ng).flat_map(|b| (0..c.ng).map(move |j| (b, j))).map(|(b, j)| v[(b + j) % c.ng]).collect();
        let k = 5.min(c.ng);
        for (m, p) in [(Method::Is, params(|p| p.beta_query = beta)), (Method::DualIs, params(|p| (p.beta_query, p.beta_gallery) = (beta, beta)))] {
            let n = Normalizer::fit_similarities(m, p, Some(mat(&cyc, c.ng, c.ng)), Some(mat(&cyc, c.ng, c.ng)), None, &ctl()).unwrap();
            search_ranks_like(&n, mat(&pr.s32, c.nq, c.ng), &pr.s, k, 1e-6, &format!("{} β→0 cyclic bank on {}", m.as_str(), c.name));
        }
    }
}

/// Permuting the gallery permutes the output. Similarity mode: bit-identical (every per-item
/// statistic is computed from the same values in the same bank order). Embeddings mode: the f32
/// similarity kernel may round differently at another tile position, so scores agree within
/// 1e-6·(|ℓ| + 20) and top-k indices are equal except at near-ties (the count of bit-identical
/// scores is printed).
#[test]
fn gallery_permutation_permutes_output() {
    let (mut emb_same, mut emb_total) = (0usize, 0usize);
    for c in cases() {
        let mut rng = Rng(c.ng as u64 * 31 + 7);
        let pi = rng.permutation(c.ng); // new item j' is old item pi[j']
        for mode in MODES {
            let pr = prepare(&c, mode);
            let mut c2 = c.clone();
            c2.g = pi.iter().flat_map(|&j| c.g[j * c.d..(j + 1) * c.d].to_vec()).collect();
            let permcols = |x: &[f32], rows: usize| -> Vec<f32> { (0..rows).flat_map(|r| pi.iter().map(move |&j| (r, j))).map(|(r, j)| x[r * c.ng + j]).collect() };
            let pr2 = if mode == Mode::Sims {
                Prepared { s: vec![], pq: vec![], pg: vec![], s32: permcols(&pr.s32, c.nq), pq32: permcols(&pr.pq32, c.mq), pg32: permcols(&pr.pg32, c.mg), ph: vec![], ph32: pr.ph32.clone() }
            } else {
                Prepared { s: vec![], pq: vec![], pg: vec![], s32: vec![], pq32: vec![], pg32: vec![], ph: vec![], ph32: vec![] }
            };
            // Gallery-dependent methods (the Sinkhorn ones) sum over the gallery, so a permutation
            // changes their summation order: covered within rounding by sn_permutations_* below.
            for method in Method::ALL.into_iter().filter(|m| !m.info().gallery_dependent) {
                for p in configs(method) {
                    let what = format!("{} {p:?} on {} ({mode:?})", method.as_str(), c.name);
                    let k = 5.min(c.ng);
                    let a = run(&fit(method, p, &c, mode, &pr), input(&c, mode, &pr), k);
                    let b = run(&fit(method, p, &c2, mode, &pr2), input(&c2, mode, &pr2), k);
                    for i in 0..c.nq {
                        for (jp, &j) in pi.iter().enumerate() {
                            let (x, y) = (a.0[i * c.ng + j], b.0[i * c.ng + jp]);
                            if mode == Mode::Sims {
                                assert_eq!(x.to_bits(), y.to_bits(), "{what}: score ({i}, {jp}) {x} vs {y}");
                            } else {
                                assert!(((x - y).abs() as f64) <= 1e-6 * (x.abs() as f64 + 20.0), "{what}: score ({i}, {jp}) {x} vs {y}");
                                emb_same += (x.to_bits() == y.to_bits()) as usize;
                                emb_total += 1;
                            }
                        }
                        for r in 0..k {
                            let (ia, ib) = (a.1[i * k + r] as usize, pi[b.1[i * k + r] as usize]);
                            if mode == Mode::Sims {
                                assert_eq!(ia, ib, "{what}: search query {i} position {r}");
                                assert_eq!(a.2[i * k + r].to_bits(), b.2[i * k + r].to_bits(), "{what}: search score");
                            } else if ia != ib {
                                let (x, y) = (a.0[i * c.ng + ia], a.0[i * c.ng + ib]);
                                assert!(((x - y).abs() as f64) <= 2e-6 * (x.abs() as f64 + 20.0), "{what}: search query {i} position {r}: {ia} vs {ib}");
                            }
                        }
                    }
                }
            }
        }
    }
    println!("gallery permutation: similarity mode bit-identical; embeddings mode {emb_same}/{emb_total} scores bit-identical, all within 1e-6·(|ℓ|+20)");
}

/// Bank row order does not matter.
///
/// Similarity mode (the library reads the caller's values): the LSE is within 1e-12 relative — NOT
/// bit-exact, since permuting rows changes which rows share a 1024-row block and the order in which
/// the exponentials are summed; top-K means and activation sets are exactly equal (they depend on
/// multisets only); output f32 scores are equal up to one f32 rounding step (≤ 1 ulp); search
/// indices are equal.
///
/// Embeddings mode: the f32 similarity of a (bank row, gallery item) pair can round differently
/// when the row sits at another position of a GEMM tile, so the invariance holds to f32 similarity
/// precision: LSE within β·4e-6 absolute (|P| ≤ 4 here), top-K means within 1e-6, activation sets equal, scores
/// within 1e-6·(|ℓ| + 20), search indices equal except at near-ties. (Measured counts are printed.)
#[test]
fn bank_row_order_does_not_matter() {
    let mut lse_max_rel = [0.0f64; 2];
    let mut ulp_diffs = 0usize;
    let (mut emb_same, mut emb_total) = (0usize, 0usize);
    for c in cases() {
        let mut rng = Rng(c.mq as u64 * 13 + c.mg as u64);
        let (pq_perm, pg_perm) = (rng.permutation(c.mq), rng.permutation(c.mg));
        for mode in MODES {
            let sims = mode == Mode::Sims;
            let pr = prepare(&c, mode);
            let mut c2 = c.clone();
            c2.r = pq_perm.iter().flat_map(|&b| c.r[b * c.d..(b + 1) * c.d].to_vec()).collect();
            c2.h = pg_perm.iter().flat_map(|&b| c.h[b * c.d..(b + 1) * c.d].to_vec()).collect();
            let permrows = |x: &[f32], perm: &[usize]| -> Vec<f32> { perm.iter().flat_map(|&b| x[b * c.ng..(b + 1) * c.ng].to_vec()).collect() };
            let pr2 = if sims {
                Prepared { s: vec![], pq: vec![], pg: vec![], s32: pr.s32.clone(), pq32: permrows(&pr.pq32, &pq_perm), pg32: permrows(&pr.pg32, &pg_perm), ph: vec![], ph32: vec![] }
            } else {
                Prepared { s: vec![], pq: vec![], pg: vec![], s32: vec![], pq32: vec![], pg32: vec![], ph: vec![], ph32: vec![] }
            };
            // Gallery-dependent methods (the Sinkhorn ones): see sn_permutations_* below.
            for method in Method::ALL.into_iter().filter(|m| !m.info().gallery_dependent) {
                for p in configs(method) {
                    let what = format!("{} {p:?} on {} ({mode:?})", method.as_str(), c.name);
                    let (n1, n2) = (fit(method, p, &c, mode, &pr), fit(method, p, &c2, mode, &pr2));
                    for (s1, s2) in [(&n1.query_stats, &n2.query_stats), (&n1.gallery_stats, &n2.gallery_stats)] {
                        assert_eq!(s1.is_some(), s2.is_some());
                        let (Some(s1), Some(s2)) = (s1, s2) else { continue };
                        if let (Some(l1), Some(l2)) = (&s1.lse, &s2.lse) {
                            for (a, b) in l1.iter().zip(l2) {
                                let rel = (a - b).abs() / a.abs().max(1e-300);
                                lse_max_rel[sims as usize] = lse_max_rel[sims as usize].max(rel);
                                // Embeddings: |P| ≤ 4 here (row norms ≤ 2), a few f32 ulps of P times β.
                                let ok = if sims { rel <= 1e-12 } else { (a - b).abs() <= 4e-6 * s1.lse_beta };
                                assert!(ok, "{what}: LSE {a} vs {b}");
                            }
                        }
                        if sims {
                            assert_eq!(s1.top_mean, s2.top_mean, "{what}: top-K means");
                        } else if let (Some(t1), Some(t2)) = (&s1.top_mean, &s2.top_mean) {
                            assert!(t1.iter().zip(t2).all(|(a, b)| (a - b).abs() <= 1e-6), "{what}: top-K means");
                        }
                        assert_eq!(s1.activation(c.ng), s2.activation(c.ng), "{what}: activation set");
                    }
                    let k = 5.min(c.ng);
                    let (a, b) = (run(&n1, input(&c, mode, &pr), k), run(&n2, input(&c2, mode, &pr2), k));
                    for (x, y) in a.0.iter().zip(&b.0).chain(a.2.iter().zip(&b.2)) {
                        if sims {
                            let d = (x.to_bits() as i64 - y.to_bits() as i64).abs();
                            assert!(d <= 1, "{what}: scores {x} vs {y} differ by {d} ulp");
                            ulp_diffs += (d == 1) as usize;
                        } else {
                            assert!(((x - y).abs() as f64) <= 1e-6 * (x.abs() as f64 + 20.0), "{what}: scores {x} vs {y}");
                            emb_same += (x.to_bits() == y.to_bits()) as usize;
                            emb_total += 1;
                        }
                    }
                    if sims {
                        assert_eq!(a.1, b.1, "{what}: search indices");
                    } else {
                        for (r, (&ia, &ib)) in a.1.iter().zip(&b.1).enumerate() {
                            let i = r / k;
                            let (x, y) = (a.0[i * c.ng + ia as usize], a.0[i * c.ng + ib as usize]);
                            assert!(ia == ib || ((x - y).abs() as f64) <= 2e-6 * (x.abs() as f64 + 20.0), "{what}: search indices {ia} vs {ib}");
                        }
                    }
                }
            }
        }
    }
    println!(
        "bank row order: similarity mode max LSE rel. difference {:e}, {ulp_diffs} f32 outputs differ by 1 ulp, none by more; \
         embeddings mode max LSE rel. difference {:e}, {emb_same}/{emb_total} outputs bit-identical",
        lse_max_rel[1], lse_max_rel[0]
    );
}

/// IS in the log domain equals the exp-ratio form `exp(βs) / Σ_b exp(βP_bj)` (computed in f64
/// without any shift, as the official code does) wherever that ratio is finite and non-zero, and
/// ranks like it.
#[test]
fn is_equals_exp_ratio_form_where_finite() {
    let mut checked = 0usize;
    let mut skipped = 0usize;
    for c in cases() {
        let pr = prepare(&c, Mode::Sims);
        for (logit_scale, beta) in [(1.0f64, 1.0f64), (1.0, 20.0), (1.0, 100.0), (100.0, 1.0 / 1.99), (100.0, 20.0)] {
            let sc = |m: &M| -> M { m.iter().map(|r| r.iter().map(|v| v * logit_scale).collect()).collect() };
            let (s, pq) = (sc(&pr.s), sc(&pr.pq));
            let (s32, pq32) = (reference::to_f32(&s), reference::to_f32(&pq));
            let (s, pq) = (reference::from_f32(&s32, c.nq, c.ng), reference::from_f32(&pq32, c.mq, c.ng));
            let n = Normalizer::fit_similarities(Method::Is, params(|p| p.beta_query = beta), Some(mat(&pq32, c.mq, c.ng)), None, None, &ctl()).unwrap();
            let (lib, _) = n.scores(mat(&s32, c.nq, c.ng)).unwrap();
            let den: Vec<f64> = (0..c.ng).map(|j| reference::column(&pq, j).iter().map(|&x| (beta * x).exp()).sum()).collect();
            let ratio: M = s.iter().map(|r| (0..c.ng).map(|j| (beta * r[j]).exp() / den[j]).collect()).collect();
            for i in 0..c.nq {
                // "Finite" = a normal f64 (subnormal ratios have lost their precision).
                let ok = |j: usize| ratio[i][j].is_normal() && den[j].is_normal() && (beta * s[i][j]).exp().is_normal();
                let finite_row = (0..c.ng).all(ok);
                for j in 0..c.ng {
                    let l = lib[i * c.ng + j] as f64;
                    assert!(l.is_finite(), "IS score not finite at β={beta}, scale {logit_scale}");
                    let r = ratio[i][j];
                    if ok(j) {
                        // ℓ is f32: |Δℓ| ≤ ~6e-8·|ℓ|, so exp(ℓ) is within that (plus a tiny floor) relatively.
                        let want = r.ln();
                        assert!((l - want).abs() <= 1e-6 * want.abs().max(1.0), "exp-ratio: ℓ {l} vs ln ratio {want} (β={beta}, scale {logit_scale})");
                        assert!(((l.exp() - r) / r).abs() <= 1e-4, "exp(ℓ) {} vs ratio {r}", l.exp());
                        checked += 1;
                    } else {
                        skipped += 1;
                    }
                }
                if finite_row {
                    let (idx, _, ke) = n.search(mat(&s32[i * c.ng..(i + 1) * c.ng], 1, c.ng), c.ng.min(5), &ctl()).unwrap();
                    let o = reference::order(&ratio[i]);
                    for r in 0..ke {
                        let (li, ri) = (idx[r] as usize, o[r]);
                        assert!(li == ri || ((ratio[i][li] - ratio[i][ri]) / ratio[i][ri]).abs() <= 1e-9, "exp-ratio ranking differs at query {i}");
                    }
                }
            }
        }
    }
    assert!(checked > 0 && skipped > 0, "expected both finite and overflowing ratio entries ({checked}, {skipped})");
    println!("IS vs exp-ratio: {checked} finite entries agree; {skipped} entries where the ratio overflows/underflows skipped (library finite there)");
}

/// β·s up to 1e4 (×100 logits, β = 100): every β method gives finite scores that agree with the
/// max-shifted f64 reference and the reference ranking.
#[test]
fn is_dis_dual_is_dual_dis_finite_at_beta_times_s_1e4() {
    for c in cases() {
        let pr0 = prepare(&c, Mode::Sims);
        let x100 = |v: &[f32]| -> Vec<f32> { v.iter().map(|x| x * 100.0).collect() };
        let (s32, pq32, pg32) = (x100(&pr0.s32), x100(&pr0.pq32), x100(&pr0.pg32));
        let pr = Prepared {
            s: reference::from_f32(&s32, c.nq, c.ng),
            pq: reference::from_f32(&pq32, c.mq, c.ng),
            pg: reference::from_f32(&pg32, c.mg, c.ng),
            s32,
            pq32,
            pg32,
            ph: vec![],
            ph32: vec![],
        };
        assert!(max_abs(&pr.s) * 100.0 > 1e3, "β·s must reach the thousands");
        for method in [Method::Is, Method::Dis, Method::DualIs, Method::DualDis] {
            let p = params(|p| (p.beta_query, p.beta_gallery, p.k) = (100.0, 100.0, 1));
            let rf = reference::scores(method, &p, &pr.s, &pr.pq, &pr.pg, 0.0);
            let n = fit(method, p, &c, Mode::Sims, &pr);
            let (lib, _) = n.scores(input(&c, Mode::Sims, &pr)).unwrap();
            let unit = rf.scale * max_abs(&pr.s);
            for i in 0..c.nq {
                let row = &lib[i * c.ng..(i + 1) * c.ng];
                assert!(row.iter().all(|v| v.is_finite()), "{} β·s ~1e4: non-finite score", method.as_str());
                match_row(row, &rf.rows[i], unit, 1e-6).unwrap_or_else(|e| panic!("{} β·s ~1e4 on {}: query {i}: {e}", method.as_str(), c.name));
            }
            let (idx, ssc, ke) = n.search(input(&c, Mode::Sims, &pr), 5, &ctl()).unwrap();
            for i in 0..c.nq {
                let tie = |r: f64| 1e-9 * (r.abs() + unit);
                check_topk(&idx[i * ke..(i + 1) * ke], &ssc[i * ke..(i + 1) * ke], &rf.rows[i][0], &tie, unit, 1e-6).unwrap_or_else(|e| panic!("{} β·s ~1e4 search: {e}", method.as_str()));
            }
        }
    }
}

/// β_g → 0: L_g → log m_g (a constant), so DualIS ranks as IS and DualDIS as DIS (β = β_q, same k);
/// the scores differ by that constant.
fn gallery_beta_vanishes(dual: Method, single: Method) {
    for c in cases() {
        for mode in MODES {
            let pr = prepare(&c, mode);
            for base in configs(single) {
                let pd = Params { beta_gallery: 1e-9, ..base };
                let (nd, ns) = (fit(dual, pd, &c, mode, &pr), fit(single, base, &c, mode, &pr));
                let what = format!("{} β_g=1e-9 vs {} {base:?} on {} ({mode:?})", dual.as_str(), single.as_str(), c.name);
                let (sd, _) = nd.scores(input(&c, mode, &pr)).unwrap();
                let (ss, _) = ns.scores(input(&c, mode, &pr)).unwrap();
                let lim: M = (0..c.nq).map(|i| ss[i * c.ng..(i + 1) * c.ng].iter().map(|&v| v as f64).collect()).collect();
                // Single-method scores are f32 (|ℓ| up to ~40 → ~4e-6 resolution): ties within that.
                search_ranks_like(&nd, input(&c, mode, &pr), &lim, 5.min(c.ng), 1e-5 * (1.0 + max_abs(&lim)), &what);
                // Scores: dual = single − log m_g wherever the gallery gate is on (always for DualIS).
                // The gate is read on the library's own raw top-1 (from `none` scores, the same f32
                // similarity path as `scores`), so near-ties cannot make the two sides disagree.
                let logm = (c.mg as f64).ln();
                let raw = fit(Method::None, base, &c, mode, &pr).scores(input(&c, mode, &pr)).unwrap().0;
                let variants: Vec<usize> = (0..c.nq)
                    .map(|i| {
                        let row: Vec<f64> = raw[i * c.ng..(i + 1) * c.ng].iter().map(|&v| v as f64).collect();
                        nd.scorer().variant_of(reference::order(&row)[0])
                    })
                    .collect();
                if dual == Method::DualIs {
                    assert!(variants.iter().all(|&v| v == 0), "DualIS has one variant");
                }
                for i in 0..c.nq {
                    let shift = if dual == Method::DualIs || variants[i] & 2 == 2 { logm } else { 0.0 };
                    for j in 0..c.ng {
                        let (a, b) = (sd[i * c.ng + j] as f64, ss[i * c.ng + j] as f64 - shift);
                        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{what}: score ({i},{j}) {a} vs {b}");
                    }
                }
            }
        }
    }
}

#[test]
fn dual_is_reduces_to_is_as_beta_gallery_vanishes() {
    gallery_beta_vanishes(Method::DualIs, Method::Is);
}

#[test]
fn dual_dis_reduces_to_dis_as_beta_gallery_vanishes() {
    gallery_beta_vanishes(Method::DualDis, Method::Dis);
}

// ---------------------------------------------------------------------------------------------------
// §3.4 worked example
// ---------------------------------------------------------------------------------------------------

#[test]
fn dual_dis_worked_example() {
    let s: [f32; 9] = [0.9, 0.8, 0.1, 0.2, 0.6, 0.65, -0.5, -0.1, -0.3];
    let pq: [f32; 6] = [0.8, 0.3, 0.2, 0.7, 0.6, 0.1];
    let pg: [f32; 6] = [0.2, 0.1, 0.9, 0.1, 0.5, 0.6];
    let p = params(|p| (p.beta_query, p.beta_gallery, p.k) = (10.0, 10.0, 1));
    let fit_ex = |m: Method, p: Params| Normalizer::fit_similarities(m, p, Some(mat(&pq, 2, 3)), Some(mat(&pg, 2, 3)), None, &ctl()).unwrap();
    let top1 = |n: &Normalizer| -> Vec<u32> { n.search(mat(&s, 3, 3), 1, &ctl()).unwrap().0 };

    let n = fit_ex(Method::DualDis, p);
    let (qs, gs) = (n.query_stats.as_ref().unwrap(), n.gallery_stats.as_ref().unwrap());
    for (got, want, name) in [(qs.lse.as_ref().unwrap(), [8.313262, 6.048587, 2.313262], "L_q"), (gs.lse.as_ref().unwrap(), [2.313262, 5.018150, 9.048587], "L_g")] {
        for j in 0..3 {
            assert!((got[j] - want[j]).abs() <= 2e-6, "{name}[{j}] = {} (spec {})", got[j], want[j]);
        }
    }
    assert_eq!(qs.activation(3).unwrap(), vec![true, false, false], "A_q = {{0}}");
    assert_eq!(gs.activation(3).unwrap(), vec![false, false, true], "A_g = {{2}}");
    // Gates (γq, γg) on the raw top-1 t = [0, 2, 1]: (1,0), (0,1), (0,0) → variants γq + 2γg = 1, 2, 0.
    let v: Vec<usize> = [0, 2, 1].iter().map(|&t| n.scorer().variant_of(t)).collect();
    assert_eq!(v, vec![1, 2, 0], "gates");
    let (sc, _) = n.scores(mat(&s, 3, 3)).unwrap();
    let want = [9.6867, 9.9514, -0.3133, 1.6867, 6.9819, 3.9514, -10.0, -2.0, -6.0];
    for (i, (&g, &w)) in sc.iter().zip(&want).enumerate() {
        assert!((g as f64 - w).abs() <= 5e-5 + 1e-6 * w.abs(), "DualDIS score ({}, {}) = {g}, spec {w}", i / 3, i % 3);
    }
    assert_eq!(top1(&n), vec![1, 1, 1], "DualDIS top-1");
    assert_eq!(top1(&fit_ex(Method::DualIs, p)), vec![0, 2, 1], "DualIS top-1");
    assert_eq!(top1(&fit_ex(Method::Dis, p)), vec![1, 2, 1], "DIS (β = 10) top-1");
    assert_eq!(top1(&fit_ex(Method::None, p)), vec![0, 2, 1], "raw top-1");
    // The official product-with-raw-s gives [1, 1, 0] (docs/methods.md §3.4); the library must not.
    assert_ne!(top1(&n), vec![1, 1, 0]);
}

// ---------------------------------------------------------------------------------------------------
// Peer oracles (docs/methods.md §7)
// ---------------------------------------------------------------------------------------------------

fn oracles() -> Option<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/peer-oracles/oracles.json");
    match std::fs::read_to_string(&path) {
        Ok(t) => Some(serde_json::from_str(&t).expect("oracles.json parses")),
        Err(e) => {
            common::shared_missing(&format!("{} not readable ({e}); peer-oracle tests need ../shared/peer-oracles", path.display()));
            None
        }
    }
}

fn jmat(v: &Value) -> (Vec<f32>, usize, usize) {
    let rows = v.as_array().expect("matrix");
    let cols = rows[0].as_array().unwrap().len();
    let data: Vec<f32> = rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32)).collect();
    (data, rows.len(), cols)
}

fn jvec(v: &Value) -> Vec<f64> {
    v.as_array().expect("vector").iter().map(|x| x.as_f64().unwrap()).collect()
}

fn jidx(v: &Value) -> Vec<u32> {
    v.as_array().expect("vector").iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn nnn_peer_oracle_toy() {
    let Some(o) = oracles() else { return };
    let t = &o["nnn_toy"];
    let (g, ng, d) = jmat(&t["gallery_retrieval_embeds"]);
    let (q, nq, _) = jmat(&t["queries"]);
    let (r, mq, _) = jmat(&t["reference_query_bank"]);
    let k = t["params"]["alternate_ks"].as_u64().unwrap() as usize;
    let alpha = t["params"]["alternate_weight"].as_f64().unwrap();
    let tolv = 2e-5; // "float32 in peer; tolerance abs 2e-5"
    assert!(t["source"].as_str().unwrap().contains("2e-5"));
    let p = params(|p| (p.nnn_k, p.nnn_alpha) = (k, alpha));
    // The peer uses inner products of the raw (not normalised) bank vectors: `dot`.
    let n = Normalizer::fit_embeddings(Method::Nnn, p, Metric::Dot, mat(&g, ng, d), Some(mat(&r, mq, d)), None, &ctl()).unwrap();
    let base = Normalizer::fit_embeddings(Method::None, p, Metric::Dot, mat(&g, ng, d), None, None, &ctl()).unwrap();
    let (bi, bs, _) = base.search(mat(&q, nq, d), 1, &ctl()).unwrap();
    assert_eq!(bi, jidx(&t["expected_base_top1"]["indices"]), "base top-1");
    for (a, b) in bs.iter().zip(jvec(&t["expected_base_top1"]["scores"])) {
        assert!((*a as f64 - b).abs() <= tolv, "base top-1 score {a} vs {b}");
    }
    let (ni, ns, _) = n.search(mat(&q, nq, d), 1, &ctl()).unwrap();
    assert_eq!(ni, jidx(&t["expected_nnn_top1"]["indices"]), "NNN top-1");
    for (a, b) in ns.iter().zip(jvec(&t["expected_nnn_top1"]["scores"])) {
        assert!((*a as f64 - b).abs() <= tolv, "NNN top-1 score {a} vs {b}");
    }
    // derived: the top-k mean before α, and the full score matrix.
    let tm = n.query_stats.as_ref().unwrap().top_mean.as_ref().unwrap();
    for (j, (a, b)) in tm.iter().zip(jvec(&t["derived_bias_per_gallery"])).enumerate() {
        assert!((a - b).abs() <= tolv, "top-k mean of item {j}: {a} vs {b}");
        assert!((n.scorer().bias[0][j] - alpha * b).abs() <= tolv, "bias of item {j}");
    }
    let (full, _) = n.scores(mat(&q, nq, d)).unwrap();
    let want: Vec<f64> = t["derived_nnn_full_scores"].as_array().unwrap().iter().flat_map(jvec).collect();
    for (i, (a, b)) in full.iter().zip(&want).enumerate() {
        assert!((*a as f64 - b).abs() <= tolv, "NNN full score {i}: {a} vs {b}");
    }
    // Similarity mode gives the same (S = Q·Gᵀ, P^q = R·Gᵀ in f64, then f32).
    let (qm, gm, rm) = (reference::from_f32(&q, nq, d), reference::from_f32(&g, ng, d), reference::from_f32(&r, mq, d));
    let (s32, pq32) = (reference::to_f32(&reference::sims(&qm, &gm)), reference::to_f32(&reference::sims(&rm, &gm)));
    let ns2 = Normalizer::fit_similarities(Method::Nnn, p, Some(mat(&pq32, mq, ng)), None, None, &ctl()).unwrap();
    let (full2, _) = ns2.scores(mat(&s32, nq, ng)).unwrap();
    for (a, b) in full2.iter().zip(&want) {
        assert!((*a as f64 - b).abs() <= tolv, "NNN (similarity mode) {a} vs {b}");
    }
    println!("nnn_toy: base top-1, NNN top-1 (indices + scores), per-item bias and the full 5×5 score matrix agree (abs 2e-5), both modes");
}

/// docs/methods.md §7 statements about the NNN toy beyond the JSON (derived for the spec): IS (β = 1, 5, 20)
/// and DIS (k = 1) give [0,1,2,3,4]; CSLS (K = 2) keeps item 4 for every query, by 0.005.
#[test]
fn csls_and_is_on_nnn_peer_toy() {
    let Some(o) = oracles() else { return };
    let t = &o["nnn_toy"];
    let (g, ng, d) = jmat(&t["gallery_retrieval_embeds"]);
    let (q, nq, _) = jmat(&t["queries"]);
    let (r, mq, _) = jmat(&t["reference_query_bank"]);
    let fitm = |m: Method, p: Params| Normalizer::fit_embeddings(m, p, Metric::Dot, mat(&g, ng, d), Some(mat(&r, mq, d)), None, &ctl()).unwrap();
    for beta in [1.0, 5.0, 20.0] {
        let (i, _, _) = fitm(Method::Is, params(|p| p.beta_query = beta)).search(mat(&q, nq, d), 1, &ctl()).unwrap();
        assert_eq!(i, vec![0, 1, 2, 3, 4], "IS β={beta}");
        let (i, _, _) = fitm(Method::Dis, params(|p| (p.beta_query, p.k) = (beta, 1))).search(mat(&q, nq, d), 1, &ctl()).unwrap();
        assert_eq!(i, vec![0, 1, 2, 3, 4], "DIS β={beta} k=1");
    }
    let n = fitm(Method::Csls, params(|p| p.csls_k = 2));
    let (i, _, _) = n.search(mat(&q, nq, d), 2, &ctl()).unwrap();
    let (sc, _) = n.scores(mat(&q, nq, d)).unwrap();
    for qi in 0..4 {
        assert_eq!(i[qi * 2], 4, "CSLS K=2 query {qi} keeps item 4");
        let margin = sc[qi * ng + 4] - sc[qi * ng + qi];
        assert!((margin as f64 - 0.005).abs() <= 2e-5, "CSLS K=2 query {qi}: margin {margin} (spec 0.005)");
    }
    assert_eq!(i[8], 4);
}

#[test]
fn dual_is_derived_dbnorm_toy() {
    let Some(o) = oracles() else { return };
    let t = &o["derived_dbnorm_toy"];
    let (s, nq, ng) = jmat(&t["test_similarity_S=queries@gallery.T"]);
    let (bq, mq, _) = jmat(&t["query_bank_sims_Bq=R@G.T"]);
    let (bg, mg, _) = jmat(&t["gallery_bank_sims_Bg=Gb@G.T"]);
    let (h, _, d) = jmat(&t["gallery_bank_vectors_unit_norm"]);
    let nt = &o["nnn_toy"];
    let (g, _, _) = jmat(&nt["gallery_retrieval_embeds"]);
    let (q, _, _) = jmat(&nt["queries"]);
    let (r, _, _) = jmat(&nt["reference_query_bank"]);
    // No tolerance is stated for this derived float64 entry; the library returns f32 scores.
    let close = |a: f64, b: f64, rel: f64| (a - b).abs() <= rel * b.abs().max(1.0);
    let results = t["results"].as_object().unwrap();
    assert_eq!(results.len(), 3);
    let mut checked = 0;
    for (key, res) in results {
        // key "beta1=5.0,beta2=3.0": β1 = betaQuery, β2 = betaGallery (docs/methods.md §7).
        let nums: Vec<f64> = key.split(',').map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap()).collect();
        let (b1, b2) = (nums[0], nums[1]);
        let p = params(|p| (p.beta_query, p.beta_gallery, p.k) = (b1, b2, 1));
        let want_is: Vec<f64> = res["log_IS_querybank"].as_array().unwrap().iter().flat_map(jvec).collect();
        let want_dual: Vec<f64> = res["log_DIS"].as_array().unwrap().iter().flat_map(jvec).collect(); // = DualIS
        let want_bias = jvec(&res["gallery_bias_equivalent"]);
        for (mode, rel) in [("similarities", 2e-6), ("embeddings (dot)", 1e-5)] {
            let fitm = |m: Method| {
                if mode == "similarities" {
                    Normalizer::fit_similarities(m, p, Some(mat(&bq, mq, ng)), Some(mat(&bg, mg, ng)), None, &ctl()).unwrap()
                } else {
                    Normalizer::fit_embeddings(m, p, Metric::Dot, mat(&g, ng, d), Some(mat(&r, mq, d)), Some(mat(&h, mg, d)), &ctl()).unwrap()
                }
            };
            let inp_owned = if mode == "similarities" { s.clone() } else { q.clone() };
            let inp = if mode == "similarities" { mat(&inp_owned, nq, ng) } else { mat(&inp_owned, nq, d) };
            let what = format!("{key} ({mode})");
            let nis = fitm(Method::Is);
            let (sis, _) = nis.scores(inp).unwrap();
            for (i, (a, b)) in sis.iter().zip(&want_is).enumerate() {
                assert!(close(*a as f64, *b, rel), "{what}: log_IS_querybank[{i}] {a} vs {b}");
            }
            assert_eq!(nis.search(inp, 1, &ctl()).unwrap().0, jidx(&res["top1_IS"]), "{what}: top1_IS");
            // DualIS, and DualDIS (k = 1: A_g is the whole gallery, A_q = {4} = every raw top-1, so all
            // gates are on and DualDIS = DualIS on this toy).
            for m in [Method::DualIs, Method::DualDis] {
                let n = fitm(m);
                let (sd, _) = n.scores(inp).unwrap();
                for (i, (a, b)) in sd.iter().zip(&want_dual).enumerate() {
                    assert!(close(*a as f64, *b, rel), "{what}: {} vs log_DIS[{i}] {a} vs {b}", m.as_str());
                }
                assert_eq!(n.search(inp, 1, &ctl()).unwrap().0, jidx(&res["top1_DIS"]), "{what}: {} top1_DIS", m.as_str());
                let sc = n.scorer();
                let bias = sc.bias.last().unwrap();
                for j in 0..ng {
                    let b = -bias[j] / sc.scale;
                    assert!(close(b, want_bias[j], rel), "{what}: {} gallery_bias_equivalent[{j}] {b} vs {}", m.as_str(), want_bias[j]);
                }
                if m == Method::DualDis {
                    let act_q = n.query_stats.as_ref().unwrap().activation(ng).unwrap();
                    let want_q = jidx(&t["qbnorm_dynamic_k1"]["activation_set_from_Bq_top1"]);
                    assert_eq!(act_q, (0..ng as u32).map(|j| want_q.contains(&j)).collect::<Vec<_>>(), "{what}: A_q");
                    assert_eq!(n.gallery_stats.as_ref().unwrap().activation(ng).unwrap(), vec![true; ng], "{what}: A_g");
                }
            }
            // QB-Norm DIS (k = 1): A_q = {4}, every row gated (rows_normalized_mask), so DIS = IS.
            let nd = fitm(Method::Dis);
            let mask: Vec<bool> = t["qbnorm_dynamic_k1"]["rows_normalized_mask"].as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect();
            let (sd, _) = nd.scores(inp).unwrap();
            for i in 0..nq {
                assert!(mask[i]);
                assert_eq!(nd.scorer().variant_of(4), 1, "{what}: DIS gate");
                for j in 0..ng {
                    assert_eq!(sd[i * ng + j].to_bits(), sis[i * ng + j].to_bits(), "{what}: DIS = IS");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
    println!("derived_dbnorm_toy: IS, DualIS (= log_DIS), DualDIS, DIS, top-1s, biases, activation sets agree for 3 β pairs × 2 modes");
}

// ---------------------------------------------------------------------------------------------------
// Determinism across thread counts
// ---------------------------------------------------------------------------------------------------

/// Everything observable from one fit + scores + search, as bits.
#[derive(Debug, PartialEq)]
struct Snapshot {
    lse: Vec<Vec<u64>>,
    top_mean: Vec<Vec<u64>>,
    activation: Vec<Vec<bool>>,
    bias: Vec<Vec<u64>>,
    scores: Vec<u32>,
    idx: Vec<u32>,
    search: Vec<u32>,
}

fn snapshot(n: &Normalizer, inp: MatRef, ng: usize) -> Snapshot {
    let f64bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    let stats: Vec<_> = [&n.query_stats, &n.gallery_stats].into_iter().flatten().collect();
    let (sc, _) = n.scores(inp).unwrap();
    let (idx, ssc, _) = n.search(inp, 10, &ctl()).unwrap();
    Snapshot {
        lse: stats.iter().filter_map(|s| s.lse.as_ref().map(|v| f64bits(v))).collect(),
        top_mean: stats.iter().filter_map(|s| s.top_mean.as_ref().map(|v| f64bits(v))).collect(),
        activation: stats.iter().filter_map(|s| s.activation(ng)).collect(),
        bias: n.scorer().bias.iter().map(|b| f64bits(b)).collect(),
        scores: bits(&sc),
        idx,
        search: bits(&ssc),
    }
}

#[test]
fn all_methods_bit_identical_across_thread_counts() {
    // > 1024 queries (several query-block groups of the search), > 2048 gallery items (several search
    // chunks, many fit tiles), banks > 1024 rows (several bank blocks).
    let c = Case::new(11, 1100, 2300, 2100, 1500, 24);
    let pools: Vec<rayon::ThreadPool> = [1, 2, 4].iter().map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).collect();
    let mut compared = 0;
    for mode in MODES {
        let pr = prepare(&c, mode);
        for method in Method::ALL {
            let p = configs(method)[0];
            let snaps: Vec<Snapshot> = pools.iter().map(|pool| pool.install(|| snapshot(&fit(method, p, &c, mode, &pr), input(&c, mode, &pr), c.ng))).collect();
            for (t, s) in [2, 4].iter().zip(&snaps[1..]) {
                assert!(*s == snaps[0], "{} ({mode:?}): {t} threads differ from 1 thread", method.as_str());
            }
            compared += 1;
        }
    }
    println!("determinism: {compared} method × mode fits+searches bit-identical for 1, 2 and 4 threads");
}

// ---------------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------------

#[track_caller]
fn expect_code<T>(r: dbnorm::Result<T>, code: ErrorCode, what: &str) {
    match r {
        Ok(_) => panic!("{what}: expected {}, got Ok", code.as_str()),
        Err(e) => {
            assert_eq!(e.code, code, "{what}: got {e}");
            assert!(!e.message.is_empty(), "{what}: empty message");
        }
    }
}

/// A small valid embeddings/similarity problem; `check` compares every buffer with its pristine copy.
struct Inputs {
    q: Vec<f32>,
    g: Vec<f32>,
    r: Vec<f32>,
    h: Vec<f32>,
    s: Vec<f32>,
    pq: Vec<f32>,
    pg: Vec<f32>,
    /// Query bank × gallery bank (MQ × MG; DualSN in similarity mode).
    ph: Vec<f32>,
}

const NQ: usize = 4;
const NG: usize = 6;
const MQ: usize = 5;
const MG: usize = 3;
const D: usize = 3;

impl Inputs {
    fn new() -> Inputs {
        let c = Case::new(21, NQ, NG, MQ, MG, D);
        let pr = prepare(&c, Mode::Sims);
        Inputs { q: c.q, g: c.g, r: c.r, h: c.h, s: pr.s32, pq: pr.pq32, pg: pr.pg32, ph: pr.ph32 }
    }
    fn all(&self) -> Vec<Vec<u32>> {
        [&self.q, &self.g, &self.r, &self.h, &self.s, &self.pq, &self.pg, &self.ph].iter().map(|v| bits(v)).collect()
    }
}

fn bank_methods() -> [Method; 6] {
    [Method::Is, Method::Dis, Method::DualIs, Method::DualDis, Method::Csls, Method::Nnn]
}

#[test]
fn errors_shape_mismatches() {
    let x = Inputs::new();
    let before = x.all();
    let p = Params::default();
    let c = ctl();
    // A buffer whose length disagrees with rows·cols.
    expect_code(MatRef::new(&x.g, NG, D + 1, "gallery"), ErrorCode::Shape, "rows·cols ≠ len");
    for m in bank_methods() {
        let w = m.as_str();
        // Embeddings: bank dim ≠ gallery dim.
        let r2 = &x.r[..MQ * (D - 1)];
        expect_code(Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), Some(mat(r2, MQ, D - 1)), Some(mat(&x.h, MG, D)), &c), ErrorCode::Shape, &format!("{w}: queryBank dim"));
        if m.needs_gallery_bank() {
            let h2 = &x.h[..MG * (D - 1)];
            expect_code(Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), Some(mat(&x.r, MQ, D)), Some(mat(h2, MG, D - 1)), &c), ErrorCode::Shape, &format!("{w}: galleryBank dim"));
            // Similarities: bank matrices with different gallery widths.
            let pg2 = &x.pg[..MG * (NG - 1)];
            expect_code(Normalizer::fit_similarities(m, p, Some(mat(&x.pq, MQ, NG)), Some(mat(pg2, MG, NG - 1)), None, &c), ErrorCode::Shape, &format!("{w}: P^g width ≠ P^q width"));
        }
        // Similarities: stated gallery count ≠ bank width.
        expect_code(Normalizer::fit_similarities(m, p, Some(mat(&x.pq, MQ, NG)), Some(mat(&x.pg, MG, NG)), Some(NG + 1), &c), ErrorCode::Shape, &format!("{w}: galleryCount"));
        // Scoring: query dim ≠ gallery dim; similarity width ≠ gallery size.
        let ne = Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), Some(mat(&x.r, MQ, D)), Some(mat(&x.h, MG, D)), &c).unwrap();
        let q2 = &x.q[..NQ * (D - 1)];
        expect_code(ne.scores(mat(q2, NQ, D - 1)), ErrorCode::Shape, &format!("{w}: query dim (scores)"));
        expect_code(ne.search(mat(q2, NQ, D - 1), 2, &c), ErrorCode::Shape, &format!("{w}: query dim (search)"));
        let ns = Normalizer::fit_similarities(m, p, Some(mat(&x.pq, MQ, NG)), Some(mat(&x.pg, MG, NG)), None, &c).unwrap();
        let s2 = &x.s[..NQ * (NG - 1)];
        expect_code(ns.scores(mat(s2, NQ, NG - 1)), ErrorCode::Shape, &format!("{w}: sims width (scores)"));
        expect_code(ns.search(mat(s2, NQ, NG - 1), 2, &c), ErrorCode::Shape, &format!("{w}: sims width (search)"));
    }
    // An empty gallery (n_g = 0), or embeddings of dimension 0.
    expect_code(Normalizer::fit_embeddings(Method::None, p, Metric::Cosine, mat(&[], 0, D), None, None, &c), ErrorCode::Shape, "empty gallery");
    expect_code(Normalizer::fit_embeddings(Method::None, p, Metric::Dot, mat(&[], NG, 0), None, None, &c), ErrorCode::Shape, "dim 0");
    for m in bank_methods() {
        let e: [f32; 0] = [];
        expect_code(Normalizer::fit_similarities(m, p, Some(mat(&e, MQ, 0)), Some(mat(&e, MG, 0)), None, &c), ErrorCode::Shape, &format!("{}: 0 gallery items", m.as_str()));
    }
    // n_q = 0 is not an error: an empty result.
    let ns = Normalizer::fit_similarities(Method::Is, p, Some(mat(&x.pq, MQ, NG)), None, None, &c).unwrap();
    assert_eq!(ns.scores(mat(&[], 0, NG)).unwrap().0.len(), 0);
    assert_eq!(ns.search(mat(&[], 0, NG), 3, &c).unwrap().0.len(), 0);
    assert_eq!(x.all(), before, "inputs changed");
}

#[test]
fn errors_empty_bank() {
    let x = Inputs::new();
    let before = x.all();
    let p = Params::default();
    let c = ctl();
    let empty: [f32; 0] = [];
    for m in bank_methods() {
        let w = m.as_str();
        let gb = Some(mat(&x.h, MG, D));
        expect_code(Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), None, gb, &c), ErrorCode::EmptyBank, &format!("{w}: no query bank"));
        expect_code(Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), Some(mat(&empty, 0, D)), gb, &c), ErrorCode::EmptyBank, &format!("{w}: 0-row query bank"));
        expect_code(Normalizer::fit_similarities(m, p, None, Some(mat(&x.pg, MG, NG)), None, &c), ErrorCode::EmptyBank, &format!("{w}: no P^q"));
        expect_code(Normalizer::fit_similarities(m, p, Some(mat(&empty, 0, NG)), Some(mat(&x.pg, MG, NG)), None, &c), ErrorCode::EmptyBank, &format!("{w}: 0-row P^q"));
        if m.needs_gallery_bank() {
            let qb = Some(mat(&x.r, MQ, D));
            expect_code(Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), qb, None, &c), ErrorCode::EmptyBank, &format!("{w}: no gallery bank"));
            expect_code(Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), qb, Some(mat(&empty, 0, D)), &c), ErrorCode::EmptyBank, &format!("{w}: 0-row gallery bank"));
            expect_code(Normalizer::fit_similarities(m, p, Some(mat(&x.pq, MQ, NG)), None, None, &c), ErrorCode::EmptyBank, &format!("{w}: no P^g"));
        }
    }
    // `none` needs no bank.
    assert!(Normalizer::fit_embeddings(Method::None, p, Metric::Cosine, mat(&x.g, NG, D), None, None, &c).is_ok());
    assert!(Normalizer::fit_similarities(Method::None, p, None, None, None, &c).is_ok());
    assert_eq!(x.all(), before, "inputs changed");
}

#[test]
fn errors_bad_beta_and_k() {
    let x = Inputs::new();
    let before = x.all();
    let c = ctl();
    let fit_both = |m: Method, p: Params| -> Vec<dbnorm::Result<Normalizer>> {
        vec![
            Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), Some(mat(&x.r, MQ, D)), Some(mat(&x.h, MG, D)), &c),
            Normalizer::fit_similarities_with(m, p, Some(mat(&x.pq, MQ, NG)), Some(mat(&x.pg, MG, NG)), Some(mat(&x.ph, MQ, MG)), None, &c),
        ]
    };
    for bad in [0.0, -1.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for m in [Method::Is, Method::Dis, Method::DualIs, Method::DualDis] {
            for r in fit_both(m, params(|p| p.beta_query = bad)) {
                expect_code(r, ErrorCode::Param, &format!("{}: betaQuery {bad}", m.as_str()));
            }
        }
        for m in [Method::DualIs, Method::DualDis] {
            for r in fit_both(m, params(|p| p.beta_gallery = bad)) {
                expect_code(r, ErrorCode::Param, &format!("{}: betaGallery {bad}", m.as_str()));
            }
        }
    }
    for m in [Method::Dis, Method::DualDis] {
        for r in fit_both(m, params(|p| p.k = 0)) {
            expect_code(r, ErrorCode::Param, &format!("{}: k = 0", m.as_str()));
        }
    }
    for r in fit_both(Method::Csls, params(|p| p.csls_k = 0)) {
        expect_code(r, ErrorCode::Param, "csls: K = 0");
    }
    for r in fit_both(Method::Nnn, params(|p| p.nnn_k = 0)) {
        expect_code(r, ErrorCode::Param, "nnn: k = 0");
    }
    for bad in [-0.5, f64::NAN, f64::INFINITY] {
        for r in fit_both(Method::Nnn, params(|p| p.nnn_alpha = bad)) {
            expect_code(r, ErrorCode::Param, &format!("nnn: α = {bad}"));
        }
    }
    // Search with k = 0, every method, both modes.
    for m in Method::ALL {
        for n in fit_both(m, Params::default()) {
            let n = n.unwrap();
            let inp = if matches!(n.mode, dbnorm::normalizer::Mode::Similarities) { mat(&x.s, NQ, NG) } else { mat(&x.q, NQ, D) };
            expect_code(n.search(inp, 0, &c), ErrorCode::Param, &format!("{}: search k = 0", m.as_str()));
        }
    }
    assert_eq!(x.all(), before, "inputs changed");
}

#[test]
fn errors_non_finite_inputs() {
    let c = ctl();
    let p = Params::default();
    let mut n_cases = 0;
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for m in Method::ALL {
            let w = m.as_str();
            // Poison each input matrix in turn (a different position each time).
            for which in 0..7 {
                let mut x = Inputs::new();
                let pos = 1 + which;
                match which {
                    0 => x.g[pos] = bad,
                    1 => x.r[pos] = bad,
                    2 => x.h[pos] = bad,
                    3 => x.q[pos] = bad,
                    4 => x.pq[pos] = bad,
                    5 => x.pg[pos] = bad,
                    _ => x.s[pos] = bad,
                }
                let before = x.all();
                let what = format!("{w}: {bad} in input #{which}");
                let fe = || Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, NG, D), Some(mat(&x.r, MQ, D)), Some(mat(&x.h, MG, D)), &c);
                let fs = || Normalizer::fit_similarities_with(m, p, Some(mat(&x.pq, MQ, NG)), Some(mat(&x.pg, MG, NG)), Some(mat(&x.ph, MQ, MG)), None, &c);
                match which {
                    0 => expect_code(fe(), ErrorCode::NonFinite, &what),
                    1 if m.needs_query_bank() => expect_code(fe(), ErrorCode::NonFinite, &what),
                    2 if m.needs_gallery_bank() => expect_code(fe(), ErrorCode::NonFinite, &what),
                    3 => {
                        let n = fe().unwrap();
                        expect_code(n.scores(mat(&x.q, NQ, D)), ErrorCode::NonFinite, &format!("{what} (scores)"));
                        expect_code(n.search(mat(&x.q, NQ, D), 2, &c), ErrorCode::NonFinite, &format!("{what} (search)"));
                    }
                    4 if m.needs_query_bank() => expect_code(fs(), ErrorCode::NonFinite, &what),
                    5 if m.needs_gallery_bank() => expect_code(fs(), ErrorCode::NonFinite, &what),
                    6 => {
                        let n = fs().unwrap();
                        expect_code(n.scores(mat(&x.s, NQ, NG)), ErrorCode::NonFinite, &format!("{what} (scores)"));
                        expect_code(n.search(mat(&x.s, NQ, NG), 2, &c), ErrorCode::NonFinite, &format!("{what} (search)"));
                    }
                    _ => continue, // a bank the method does not use is ignored (not validated) by the library
                }
                assert_eq!(x.all(), before, "{what}: inputs changed");
                n_cases += 1;
            }
        }
    }
    println!("non-finite inputs: {n_cases} cases rejected with ERR_NON_FINITE, inputs unchanged");
}

#[test]
fn errors_zero_row_under_cosine() {
    let c = ctl();
    let p = Params::default();
    for m in Method::ALL {
        let w = m.as_str();
        for which in 0..4 {
            let mut x = Inputs::new();
            let v = match which {
                0 => &mut x.g,
                1 => &mut x.r,
                2 => &mut x.h,
                _ => &mut x.q,
            };
            v[D..2 * D].fill(0.0); // row 1
            let before = x.all();
            let what = format!("{w}: zero row in input #{which}");
            let fe = |metric| Normalizer::fit_embeddings(m, p, metric, mat(&x.g, NG, D), Some(mat(&x.r, MQ, D)), Some(mat(&x.h, MG, D)), &c);
            let used = match which {
                0 | 3 => true,
                1 => m.needs_query_bank(),
                _ => m.needs_gallery_bank(),
            };
            if !used {
                continue;
            }
            if which == 3 {
                let n = fe(Metric::Cosine).unwrap();
                expect_code(n.scores(mat(&x.q, NQ, D)), ErrorCode::NonFinite, &format!("{what} (scores)"));
                expect_code(n.search(mat(&x.q, NQ, D), 2, &c), ErrorCode::NonFinite, &format!("{what} (search)"));
                // Under dot a zero query is fine.
                let n = fe(Metric::Dot).unwrap();
                assert!(n.scores(mat(&x.q, NQ, D)).is_ok() && n.search(mat(&x.q, NQ, D), 2, &c).is_ok(), "{what}: dot must accept a zero row");
            } else {
                expect_code(fe(Metric::Cosine), ErrorCode::NonFinite, &what);
                assert!(fe(Metric::Dot).is_ok(), "{what}: dot must accept a zero row");
            }
            assert_eq!(x.all(), before, "{what}: inputs changed");
        }
    }
}
