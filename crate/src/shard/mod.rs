//! Fits that shard and merge.
//!
//! Every per-gallery statistic is a reduction over bank rows, and every per-bank-row statistic is a
//! reduction over gallery items, so a fit splits into a grid of independent pieces:
//!
//! - `L(j) = log Σ_b exp(β·P_bj)` over a bank split into row ranges is the log-add-exp of the
//!   ranges' values: `L = M + ln Σ_i e^{L_i − M}`, `M = max_i L_i` (in `f64`);
//! - the K largest bank similarities of item j (CSLS r_S, NNN) are the K largest of the ranges'
//!   K-largest lists, so a shard keeps the *values* (not their mean) and the merge re-selects them;
//! - each bank row's k best gallery items (the DIS / DualDIS activation sets) are the k best of the
//!   gallery ranges' k-best lists under the total order (score desc, index asc).
//!
//! A [`PartialFit`] holds these un-reduced states for one gallery range × one query-bank range ×
//! one gallery-bank range (each given as `start` within a `total`; the row count is the data's).
//! [`merge`] checks that the parts agree and tile the whole grid exactly once, then reduces them
//! into a [`Normalizer`] equal to the one-shot fit:
//!
//! - top-K values and row lists are selected exactly, so CSLS, NNN and the activation sets are
//!   bit-identical to the one-shot fit whenever the shards' similarities are (always in similarity
//!   mode; in embeddings mode when the GEMM computes each entry independently of its position);
//! - `L(j)` is bit-identical with one bank shard (`L + ln 1`); with several, the log-add-exp
//!   differs from the streamed sum by rounding only (a few `f64` ulp), far below one `f32` ulp of
//!   a score.

pub mod file;

use crate::control::Control;
use crate::error::{Error, ErrorCode, Result};
use crate::kernels::similarity::{prepare, Metric};
use crate::kernels::topk::{TopK, TopValues};
use crate::matrix::MatRef;
use crate::methods::stats::{bank_states, BankStates, BankStats, Source, StatsRequest};
use crate::methods::{Method, Params};
use crate::normalizer::{Mode, Normalizer};

/// `ERR_UNSUPPORTED` unless a fit of `method` splits into shards that [`merge`] reduces exactly:
/// its fitted data must be bank statistics only (the reductions of the module docs). Refused: methods
/// whose data depend on the whole gallery (`gallery_dependent`: SN / DBSN, plain InvGC), methods
/// that transform vectors (`embeddings_only`: DN, InvGC, DisSimLocal), methods with fitted state
/// (their `check_state` refuses an empty state), and methods reading parameters outside the
/// partial file's header block (the partial format stores that block only).
pub fn check_shardable(method: Method) -> Result<()> {
    let info = method.info();
    let shape = crate::methods::StateShape { n_gallery: 1, dim: 1, query_bank_rows: 1, gallery_bank_rows: 1 };
    let why = if info.gallery_dependent {
        Some("its per-item data depend on the whole gallery")
    } else if info.embeddings_only {
        Some("it transforms the embeddings")
    } else if (info.check_state)(&Params::default(), &crate::methods::MethodState::default(), &shape).is_err() {
        Some("it keeps fitted state beyond the bank statistics")
    } else if info.params.iter().any(|p| !crate::persist::format::HEADER_PARAMS.contains(p)) {
        Some("partial files store the version-1 parameter block only")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::unsupported(format!("method '{}' cannot be fitted in shards and merged ({why}); fit it in one process", method.as_str()))),
        None => Ok(()),
    }
}

/// A row range `start .. start + count` of an axis of `total` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    pub count: usize,
    pub total: usize,
}

impl Range {
    /// Validates `start + count ≤ total`, `count ≥ 1` and `total < 2³²` (gallery indices are `u32`).
    pub fn new(start: usize, count: usize, total: usize, what: &str) -> Result<Range> {
        if count == 0 {
            return Err(Error::shape(format!("shard {what}: the slice has 0 rows")));
        }
        if total > u32::MAX as usize {
            return Err(Error::param(format!("shard {what}: total {total} exceeds 2^32 − 1")));
        }
        match start.checked_add(count) {
            Some(end) if end <= total => Ok(Range { start, count, total }),
            _ => Err(Error::param(format!("shard {what}: rows {start}..{} do not fit in a total of {total}", start.saturating_add(count)))),
        }
    }

    pub fn end(&self) -> usize {
        self.start + self.count
    }
}

/// Where a shard's slices sit in the whole fit: `(start, total)` per axis; the row counts are the
/// data's. `None` means the slice is the whole axis (`start` 0, `total` = its rows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardSpec {
    pub gallery: Option<(usize, usize)>,
    pub query_bank: Option<(usize, usize)>,
    pub gallery_bank: Option<(usize, usize)>,
}

/// The even split of `total` rows into `n` shards: shard `i` (0-based) covers
/// `⌊i·total/n⌋ .. ⌊(i+1)·total/n⌋` (sizes differ by at most one). `ERR_PARAM` unless `i < n ≤ total`.
pub fn even_split(i: usize, n: usize, total: usize) -> Result<(usize, usize)> {
    if n == 0 || i >= n {
        return Err(Error::param(format!("shard {i}/{n}: expected 0 ≤ i < n")));
    }
    if n > total {
        return Err(Error::param(format!("cannot split {total} rows into {n} non-empty shards")));
    }
    let at = |i: usize| ((i as u128 * total as u128) / n as u128) as usize;
    Ok((at(i), at(i + 1) - at(i)))
}

/// One bank's un-reduced statistics over a bank range × the shard's gallery range.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialBank {
    /// The bank rows this shard saw.
    pub range: Range,
    /// `L(j)` over those rows, per gallery item of the shard (present iff the method uses it).
    pub lse: Option<Vec<f64>>,
    pub lse_beta: f64,
    /// `min(K, range.count)` and, per gallery item, that many largest similarities, largest first
    /// (`n_shard × top_k`, row-major).
    pub top_k: usize,
    pub top_values: Option<Vec<f32>>,
    /// `min(k, gallery count)` and, per bank row of the range, its best gallery items of the shard:
    /// **global** gallery indices and scores, `range.count × row_k`, best first.
    pub row_k: usize,
    pub row_topk_idx: Option<Vec<u32>>,
    pub row_topk_score: Option<Vec<f32>>,
}

impl PartialBank {
    fn from_states(s: BankStates, range: Range, g0: usize) -> PartialBank {
        PartialBank {
            range,
            lse: s.lse,
            lse_beta: s.lse_beta,
            top_k: s.top_k,
            top_values: s.top_values.map(|tv| {
                let mut out = Vec::with_capacity(tv.len() * s.top_k);
                for t in &tv {
                    debug_assert_eq!(t.values().len(), s.top_k);
                    out.extend_from_slice(t.values());
                }
                out
            }),
            row_k: s.row_k,
            row_topk_idx: s.row_topk_idx.map(|v| v.into_iter().map(|j| j + g0 as u32).collect()),
            row_topk_score: s.row_topk_score,
        }
    }
}

/// One shard of a fit (see the module docs). It cannot score or search; [`merge`] the parts.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialFit {
    pub method: Method,
    pub params: Params,
    pub mode: Mode,
    /// The gallery rows this shard covers.
    pub gallery_range: Range,
    /// Embeddings mode: the shard's gallery rows and the bank rows it used, prepared for the metric
    /// (unit rows under cosine), row-major; empty in similarity mode and for banks the method does
    /// not use.
    pub gallery: Vec<f32>,
    pub query_bank: Vec<f32>,
    pub gallery_bank: Vec<f32>,
    pub query_stats: Option<PartialBank>,
    pub gallery_stats: Option<PartialBank>,
}

fn bank_range(spec: Option<(usize, usize)>, rows: usize, what: &str) -> Result<Range> {
    let (start, total) = spec.unwrap_or((0, rows));
    Range::new(start, rows, total, what)
}

fn need_bank<'a>(method: Method, bank: Option<MatRef<'a>>, name: &str) -> Result<MatRef<'a>> {
    match bank {
        Some(b) if b.rows > 0 => Ok(b),
        _ => Err(Error::empty_bank(format!("method '{}' needs a non-empty {name}; got {}", method.as_str(), if bank.is_some() { "0 rows" } else { "none" }))),
    }
}

impl PartialFit {
    /// Fits one shard from embeddings: `gallery` (n_s × d) are gallery rows `spec.gallery.start ..`
    /// of the whole gallery, the banks (m × d) likewise rows of the whole banks. Validation is the
    /// one of [`Normalizer::fit_embeddings`], plus the shard ranges (`ERR_PARAM`).
    #[allow(clippy::too_many_arguments)]
    pub fn fit_embeddings(method: Method, params: Params, metric: Metric, gallery: MatRef, query_bank: Option<MatRef>, gallery_bank: Option<MatRef>, spec: ShardSpec, ctl: &Control) -> Result<PartialFit> {
        check_shardable(method)?;
        params.validate(method)?;
        if gallery.rows == 0 {
            return Err(Error::shape("gallery has 0 rows (need at least one item)"));
        }
        if gallery.cols == 0 {
            return Err(Error::shape("gallery has dim 0"));
        }
        let d = gallery.cols;
        for (b, name) in [(query_bank, "queryBank"), (gallery_bank, "galleryBank")] {
            if let Some(b) = b {
                if b.rows > 0 && b.cols != d {
                    return Err(Error::shape(format!("{name} has dim {}, gallery has dim {d}", b.cols)));
                }
                b.check_finite(name)?;
            }
        }
        gallery.check_finite("gallery")?;
        let gr = bank_range(spec.gallery, gallery.rows, "gallery")?;
        let (rq, rg) = method.requests(&params);
        let g = prepare(gallery, metric, "gallery")?.into_owned();
        let bank = |req: Option<StatsRequest>, b: Option<MatRef>, s: Option<(usize, usize)>, name: &str, phase: &str| -> Result<(Vec<f32>, Option<PartialBank>)> {
            let Some(req) = req else { return Ok((Vec::new(), None)) };
            let b = need_bank(method, b, name)?;
            let range = bank_range(s, b.rows, name)?;
            let bv = prepare(b, metric, name)?.into_owned();
            let st = bank_states(Source::Embeddings { bank: &bv, gallery: &g, dim: d }, b.rows, gallery.rows, req, ctl, phase)?;
            Ok((bv, Some(PartialBank::from_states(st, range, gr.start))))
        };
        let (qbv, qs) = bank(rq, query_bank, spec.query_bank, "queryBank", "fit:queryBank")?;
        let (gbv, gs) = bank(rg, gallery_bank, spec.gallery_bank, "galleryBank", "fit:galleryBank")?;
        Ok(PartialFit {
            method,
            params,
            mode: Mode::Embeddings { metric, dim: d },
            gallery_range: gr,
            gallery: g,
            query_bank: qbv,
            gallery_bank: gbv,
            query_stats: qs,
            gallery_stats: gs,
        })
    }

    /// Fits one shard from precomputed similarities: `query_bank_sims` (m_q × n_s) holds the rows
    /// `spec.query_bank.start ..` of the whole query-bank × gallery matrix restricted to the gallery
    /// columns `spec.gallery.start ..`; likewise `gallery_bank_sims`. `gallery_count` is needed only
    /// when no matrix is given (method `none`).
    pub fn fit_similarities(method: Method, params: Params, query_bank_sims: Option<MatRef>, gallery_bank_sims: Option<MatRef>, gallery_count: Option<usize>, spec: ShardSpec, ctl: &Control) -> Result<PartialFit> {
        check_shardable(method)?;
        params.validate(method)?;
        for (m, name) in [(query_bank_sims, "queryBankSims"), (gallery_bank_sims, "galleryBankSims")] {
            if let Some(m) = m {
                m.check_finite(name)?;
            }
        }
        let (rq, rg) = method.requests(&params);
        let qs_in = rq.map(|_| need_bank(method, query_bank_sims, "queryBankSims")).transpose()?;
        let gs_in = rg.map(|_| need_bank(method, gallery_bank_sims, "galleryBankSims")).transpose()?;
        let mut n = gallery_count;
        for (m, name) in [(qs_in, "queryBankSims"), (gs_in, "galleryBankSims")] {
            if let Some(m) = m {
                match n {
                    Some(n0) if n0 != m.cols => return Err(Error::shape(format!("{name} has {} columns (gallery items), expected {n0}", m.cols))),
                    _ => n = Some(m.cols),
                }
            }
        }
        let n = n.unwrap_or(0);
        if n == 0 {
            return Err(Error::shape("the gallery slice has 0 items (a shard of method 'none' needs galleryCount)"));
        }
        let gr = bank_range(spec.gallery, n, "gallery")?;
        let bank = |req: Option<StatsRequest>, m: Option<MatRef>, s: Option<(usize, usize)>, name: &str, phase: &str| -> Result<Option<PartialBank>> {
            let (Some(req), Some(m)) = (req, m) else { return Ok(None) };
            let range = bank_range(s, m.rows, name)?;
            let st = bank_states(Source::Sims { sims: m.data }, m.rows, n, req, ctl, phase)?;
            Ok(Some(PartialBank::from_states(st, range, gr.start)))
        };
        let qs = bank(rq, qs_in, spec.query_bank, "queryBankSims", "fit:queryBank")?;
        let gs = bank(rg, gs_in, spec.gallery_bank, "galleryBankSims", "fit:galleryBank")?;
        Ok(PartialFit {
            method,
            params,
            mode: Mode::Similarities,
            gallery_range: gr,
            gallery: Vec::new(),
            query_bank: Vec::new(),
            gallery_bank: Vec::new(),
            query_stats: qs,
            gallery_stats: gs,
        })
    }

    /// Embedding dimension (0 in similarity mode).
    pub fn dim(&self) -> usize {
        match self.mode {
            Mode::Embeddings { dim, .. } => dim,
            Mode::Similarities => 0,
        }
    }
}

fn merge_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::Merge, msg)
}

fn params_eq(a: &Params, b: &Params) -> bool {
    a.beta_query.to_bits() == b.beta_query.to_bits()
        && a.beta_gallery.to_bits() == b.beta_gallery.to_bits()
        && a.k == b.k
        && a.csls_k == b.csls_k
        && a.nnn_k == b.nnn_k
        && a.nnn_alpha.to_bits() == b.nnn_alpha.to_bits()
}

fn describe_mode(m: &Mode) -> String {
    match m {
        Mode::Embeddings { metric, dim } => format!("embeddings ({} metric, dim {dim})", metric.as_str()),
        Mode::Similarities => "similarities".into(),
    }
}

/// Checks that `ranges` (sorted by start) tile `0..total` exactly once.
fn check_tiling(ranges: &[(usize, usize, usize)], total: usize, axis: &str, within: &str) -> Result<()> {
    let mut next = 0usize;
    for &(start, end, part) in ranges {
        if start < next {
            return Err(merge_err(format!("{axis} rows {start}..{} of part {part} overlap rows already covered (up to {next}){within}", end)));
        }
        if start > next {
            return Err(merge_err(format!("{axis} rows {next}..{start} are missing{within}")));
        }
        next = end;
    }
    if next != total {
        return Err(merge_err(format!("{axis} rows {next}..{total} are missing{within}")));
    }
    Ok(())
}

/// Which part covers which slice of one bank within one gallery range, in bank order.
fn bank_parts<'p>(parts: &[(usize, &'p PartialFit)], bank: impl Fn(&PartialFit) -> Option<&PartialBank>, axis: &str, within: &str) -> Result<Vec<(usize, &'p PartialFit)>> {
    let mut v: Vec<(usize, &PartialFit)> = parts.to_vec();
    v.sort_by_key(|(i, p)| (bank(p).map_or(0, |b| b.range.start), *i));
    let ranges: Vec<(usize, usize, usize)> = v.iter().map(|(i, p)| bank(p).map(|b| (b.range.start, b.range.end(), *i)).unwrap()).collect();
    let total = bank(v[0].1).unwrap().range.total;
    check_tiling(&ranges, total, axis, within)?;
    Ok(v)
}

/// Merges the parts of a sharded fit into the full normaliser (see the module docs).
///
/// `ERR_MERGE` if there are no parts, if they disagree (method, parameters, mode, metric,
/// dimension, the totals of the gallery or a bank, or the rows two parts share), if two parts cover
/// the same gallery × bank rows, or if some rows are covered by none.
pub fn merge<P: std::borrow::Borrow<PartialFit>>(parts: &[P], ctl: &Control) -> Result<Normalizer> {
    let parts: Vec<&PartialFit> = parts.iter().map(|p| p.borrow()).collect();
    let Some(&first) = parts.first() else { return Err(merge_err("no parts to merge")) };
    let (method, params, mode) = (first.method, first.params, first.mode.clone());
    check_shardable(method)?;
    let n = first.gallery_range.total;
    let totals = |p: &PartialFit| (p.query_stats.as_ref().map(|b| b.range.total), p.gallery_stats.as_ref().map(|b| b.range.total));
    for (i, p) in parts.iter().enumerate() {
        let at = |what: String| merge_err(format!("part {i} differs from part 0: {what}"));
        if p.method != method {
            return Err(at(format!("method '{}' vs '{}'", p.method.as_str(), method.as_str())));
        }
        if !params_eq(&p.params, &params) {
            let (a, b) = (&p.params, &params);
            let diffs: Vec<String> = [
                ("betaQuery", a.beta_query.to_string(), b.beta_query.to_string()),
                ("betaGallery", a.beta_gallery.to_string(), b.beta_gallery.to_string()),
                ("k", a.k.to_string(), b.k.to_string()),
                ("cslsK", a.csls_k.to_string(), b.csls_k.to_string()),
                ("nnnK", a.nnn_k.to_string(), b.nnn_k.to_string()),
                ("nnnAlpha", a.nnn_alpha.to_string(), b.nnn_alpha.to_string()),
            ]
            .into_iter()
            .filter(|(_, x, y)| x != y)
            .map(|(n, x, y)| format!("{n} {x} vs {y}"))
            .collect();
            return Err(at(format!("parameters ({})", diffs.join(", "))));
        }
        if p.mode != mode {
            return Err(at(format!("mode {} vs {}", describe_mode(&p.mode), describe_mode(&mode))));
        }
        if p.gallery_range.total != n {
            return Err(at(format!("gallery total {} vs {n}", p.gallery_range.total)));
        }
        let (a, b) = (totals(p), totals(first));
        if a.0 != b.0 {
            return Err(at(format!("queryBank total {:?} vs {:?}", a.0, b.0)));
        }
        if a.1 != b.1 {
            return Err(at(format!("galleryBank total {:?} vs {:?}", a.1, b.1)));
        }
    }
    // Group the parts by gallery range; the ranges must tile the gallery.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| (parts[i].gallery_range.start, i));
    let mut groups: Vec<Vec<(usize, &PartialFit)>> = Vec::new();
    for &i in &order {
        let p = parts[i];
        match groups.last_mut() {
            Some(g) if g[0].1.gallery_range.start == p.gallery_range.start => {
                if g[0].1.gallery_range.count != p.gallery_range.count {
                    return Err(merge_err(format!(
                        "gallery rows {}..{} of part {i} overlap rows {}..{} of part {}",
                        p.gallery_range.start,
                        p.gallery_range.end(),
                        g[0].1.gallery_range.start,
                        g[0].1.gallery_range.end(),
                        g[0].0
                    )));
                }
                g.push((i, p));
            }
            _ => groups.push(vec![(i, p)]),
        }
    }
    let granges: Vec<(usize, usize, usize)> = groups.iter().map(|g| (g[0].1.gallery_range.start, g[0].1.gallery_range.end(), g[0].0)).collect();
    check_tiling(&granges, n, "gallery", "")?;
    ctl.check()?;

    let (rq, rg) = method.requests(&params);
    let mut q_groups = Vec::new();
    let mut g_groups = Vec::new();
    for g in &groups {
        let gr = g[0].1.gallery_range;
        let within = format!(" for gallery rows {}..{}", gr.start, gr.end());
        if rq.is_none() && rg.is_none() && g.len() > 1 {
            return Err(merge_err(format!("parts {} and {} both cover gallery rows {}..{}", g[0].0, g[1].0, gr.start, gr.end())));
        }
        // With both banks, a part carries one slice of each: each axis must tile on its own.
        if rq.is_some() {
            q_groups.push(bank_parts(g, |p| p.query_stats.as_ref(), "queryBank", &within)?);
        }
        if rg.is_some() {
            g_groups.push(bank_parts(g, |p| p.gallery_stats.as_ref(), "galleryBank", &within)?);
        }
    }

    // Stored rows: the gallery from each group, each bank from the first group; every other part's
    // copy of the same rows must agree (parts of different fits must not be mixed).
    let mut gallery = Vec::new();
    let mut query_bank = Vec::new();
    let mut gallery_bank = Vec::new();
    if let Mode::Embeddings { dim, .. } = mode {
        for g in &groups {
            let g0 = g[0].1;
            for (i, p) in &g[1..] {
                if p.gallery != g0.gallery {
                    return Err(merge_err(format!("parts {} and {i} hold different gallery rows {}..{}", g[0].0, p.gallery_range.start, p.gallery_range.end())));
                }
            }
            gallery.extend_from_slice(&g0.gallery);
        }
        for (bgroups, out, name, pick) in [
            (&q_groups, &mut query_bank, "queryBank", (|p: &PartialFit| &p.query_bank) as fn(&PartialFit) -> &Vec<f32>),
            (&g_groups, &mut gallery_bank, "galleryBank", |p: &PartialFit| &p.gallery_bank),
        ] {
            let Some(base) = bgroups.first() else { continue };
            for (_, p) in base {
                out.extend_from_slice(pick(p));
            }
            // Gallery ranges may split a bank differently: compare the concatenated rows.
            for other in &bgroups[1..] {
                let mut at = 0;
                for (i, p) in other {
                    let rows = pick(p);
                    if out.get(at..at + rows.len()) != Some(&rows[..]) {
                        return Err(merge_err(format!("part {i} holds {name} rows that differ from part {}'s", base[0].0)));
                    }
                    at += rows.len();
                }
            }
            debug_assert_eq!(out.len() % dim.max(1), 0);
        }
    }
    ctl.check()?;
    let qs = rq.map(|r| merge_bank(&q_groups, |p| p.query_stats.as_ref(), r, n)).transpose()?;
    ctl.check()?;
    let gs = rg.map(|r| merge_bank(&g_groups, |p| p.gallery_stats.as_ref(), r, n)).transpose()?;
    Normalizer::rebuild(method, params, mode, n, gallery, query_bank, gallery_bank, qs, gs, Default::default())
}

/// Reduces one bank's partial statistics: `groups[g]` lists the parts of gallery range g in bank order.
fn merge_bank<'p>(groups: &[Vec<(usize, &'p PartialFit)>], bank: fn(&PartialFit) -> Option<&PartialBank>, req: StatsRequest, n: usize) -> Result<BankStats> {
    fn pick<'a>(bank: fn(&PartialFit) -> Option<&PartialBank>, p: &'a PartialFit) -> &'a PartialBank {
        bank(p).expect("bank statistics checked present")
    }
    let b = |p: &'p PartialFit| pick(bank, p);
    let first = b(groups[0][0].1);
    let m = first.range.total;
    let mut lse = req.lse_beta.map(|_| Vec::with_capacity(n));
    let top_k = req.top_values.map(|k| k.min(m)).unwrap_or(0);
    let mut top_mean = if top_k > 0 { Some(Vec::with_capacity(n)) } else { None };
    for g in groups {
        let count = g[0].1.gallery_range.count;
        if let Some(out) = lse.as_mut() {
            let parts: Vec<&[f64]> = g.iter().map(|(_, p)| b(p).lse.as_deref().expect("lse")).collect();
            for j in 0..count {
                out.push(log_add_exp(parts.iter().map(|l| l[j])));
            }
        }
        if let Some(out) = top_mean.as_mut() {
            let parts: Vec<(&[f32], usize)> = g.iter().map(|(_, p)| (b(p).top_values.as_deref().expect("top values"), b(p).top_k)).collect();
            for j in 0..count {
                let mut t = TopValues::new(top_k);
                for &(v, k) in &parts {
                    t.extend(&v[j * k..(j + 1) * k]);
                }
                out.push(t.mean());
            }
        }
    }
    let row_k = req.row_topk.map(|k| k.min(n)).unwrap_or(0);
    let (mut row_idx, mut row_score) = (None, None);
    if row_k > 0 {
        let mut idx = Vec::with_capacity(m * row_k);
        let mut sc = Vec::with_capacity(m * row_k);
        // Bank row r of the whole bank is row r − start of the part covering it, in every group.
        let mut cursor: Vec<(usize, usize)> = vec![(0, 0); groups.len()]; // (part position, row within part)
        for _ in 0..m {
            let mut t = TopK::new(row_k);
            for (gi, g) in groups.iter().enumerate() {
                let (pi, r) = cursor[gi];
                let pb = b(g[pi].1);
                let (pi_, pk) = (pb.row_topk_idx.as_deref().expect("row idx"), pb.row_k);
                let ps = pb.row_topk_score.as_deref().expect("row scores");
                for c in 0..pk {
                    t.push(ps[r * pk + c] as f64, pi_[r * pk + c]);
                }
                cursor[gi] = if r + 1 == pb.range.count { (pi + 1, 0) } else { (pi, r + 1) };
            }
            if t.len() != row_k {
                return Err(Error::new(ErrorCode::Internal, format!("merged row list has {} of {row_k} items", t.len())));
            }
            idx.extend_from_slice(t.indices());
            sc.extend(t.scores().iter().map(|&s| s as f32));
        }
        row_idx = Some(idx);
        row_score = Some(sc);
    }
    Ok(BankStats { bank_rows: m, lse, lse_beta: first.lse_beta, top_k, top_mean, row_k, row_topk_idx: row_idx, row_topk_score: row_score })
}

/// `log Σ_i e^{x_i}` of finite values, shifted by their maximum (`f64`). One value is returned as is.
pub fn log_add_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let mx = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if mx == f64::NEG_INFINITY {
        return mx;
    }
    let z: f64 = xs.map(|x| (x - mx).exp()).sum();
    mx + z.ln()
}

