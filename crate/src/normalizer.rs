//! The fitted normaliser: a method, its parameters, the per-gallery statistics fitted from the
//! banks, and (in embeddings mode) the prepared gallery and banks kept in native memory.

use crate::control::Control;
use crate::error::{Error, Result};
use crate::kernels::dot::dot_gather;
use crate::kernels::similarity::{dot_abt_par, prepare, Metric};
use crate::matrix::MatRef;
use crate::methods::scorer::Scorer;
use crate::methods::stats::{bank_stats, BankStats, Source, StatsRequest};
use rayon::prelude::*;
use crate::methods::{none, GalleryInput, Method, MethodState, Params};

/// Where similarities come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// The library computes similarities from embeddings. `gallery` (and the banks) are stored
    /// prepared for the metric (unit rows under cosine), row-major `f32`.
    Embeddings { metric: Metric, dim: usize },
    /// The caller passes precomputed query × gallery (and bank × gallery) similarities.
    Similarities,
}

/// A fitted normaliser (see `methods` for the formulas).
#[derive(Clone, Debug)]
pub struct Normalizer {
    pub method: Method,
    pub params: Params,
    pub mode: Mode,
    /// Gallery items; 0 in similarity mode for `none` fitted without any matrix (width taken from input).
    pub n_gallery: usize,
    pub gallery: Vec<f32>,
    pub query_bank: Vec<f32>,
    pub gallery_bank: Vec<f32>,
    pub query_stats: Option<BankStats>,
    pub gallery_stats: Option<BankStats>,
    /// The method's own fitted data (see [`MethodState`]; empty for most methods).
    pub state: MethodState,
    scorer: Scorer,
    /// Hash index of the query-bank rows for the leak guard, built on first use.
    bank_index: std::sync::OnceLock<crate::rows::RowIndex>,
    /// Gallery rows that also appear in the gallery bank, counted when the state is built (inside
    /// the fit / addGallery / load work, off the event loop).
    overlap: usize,
}

/// Gallery rows (row-major, `dim` wide) that are also gallery-bank rows.
fn count_overlap(mode: &Mode, gallery: &[f32], gallery_bank: &[f32]) -> usize {
    match mode {
        Mode::Embeddings { dim, .. } if !gallery_bank.is_empty() => crate::rows::RowIndex::new(gallery_bank, *dim).count_in(gallery_bank, gallery),
        _ => 0,
    }
}

fn check_bank<'a>(method: Method, bank: Option<MatRef<'a>>, needed: bool, name: &str, what: &str) -> Result<Option<MatRef<'a>>> {
    if !needed {
        return Ok(None);
    }
    match bank {
        Some(b) if b.rows > 0 => Ok(Some(b)),
        _ => Err(Error::empty_bank(format!(
            "method '{}' needs a non-empty {name} ({what}); got {}",
            method.as_str(),
            if bank.is_some() { "0 rows" } else { "none" }
        ))),
    }
}

impl Normalizer {
    /// Reassembles a normaliser from its stored parts (e.g. a loaded file), recomputing everything
    /// derived from them (the scorer). The caller is responsible for the parts' consistency
    /// (lengths agree with `n_gallery`, `dim` and the bank sizes; the method's statistics present).
    #[allow(clippy::too_many_arguments)]
    pub fn rebuild(
        method: Method,
        params: Params,
        mode: Mode,
        n_gallery: usize,
        gallery: Vec<f32>,
        query_bank: Vec<f32>,
        gallery_bank: Vec<f32>,
        query_stats: Option<BankStats>,
        gallery_stats: Option<BankStats>,
        state: MethodState,
    ) -> Result<Normalizer> {
        params.validate(method)?;
        let (rq, rg) = method.requests(&params);
        if rq.is_some() != query_stats.is_some() || rg.is_some() != gallery_stats.is_some() {
            return Err(Error::format(format!("statistics do not match method '{}'", method.as_str())));
        }
        if let Some(check) = method.info().check_state {
            check(&params, &state, n_gallery, match mode {
                Mode::Embeddings { dim, .. } => dim,
                Mode::Similarities => 0,
            })?;
        }
        let scorer = method.scorer(&params, query_stats.as_ref(), gallery_stats.as_ref(), &state, n_gallery);
        let overlap = count_overlap(&mode, &gallery, &gallery_bank);
        Ok(Normalizer { method, params, mode, n_gallery, gallery, query_bank, gallery_bank, query_stats, gallery_stats, state, scorer, bank_index: Default::default(), overlap })
    }

    /// Fits from embeddings: `gallery` (n×d), optional `query_bank` (m_q×d, query modality) and
    /// `gallery_bank` (m_g×d, gallery modality), all row-major `f32`.
    pub fn fit_embeddings(method: Method, params: Params, metric: Metric, gallery: MatRef, query_bank: Option<MatRef>, gallery_bank: Option<MatRef>, ctl: &Control) -> Result<Normalizer> {
        params.validate(method)?;
        let (rq, rg) = method.requests(&params);
        if gallery.rows == 0 {
            return Err(Error::shape("gallery has 0 rows (need at least one item)"));
        }
        if gallery.cols == 0 {
            return Err(Error::shape("gallery has dim 0"));
        }
        // A bank the method does not use is still validated (dims, finiteness), then ignored.
        for (b, name) in [(query_bank, "queryBank"), (gallery_bank, "galleryBank")] {
            if let Some(b) = b {
                if b.rows > 0 && b.cols != gallery.cols {
                    return Err(Error::shape(format!("{name} has dim {}, gallery has dim {}", b.cols, gallery.cols)));
                }
                b.check_finite(name)?;
            }
        }
        // A declared bank is needed even without statistics (DN's means, InvGC's neighbours).
        let qb = check_bank(method, query_bank, rq.is_some() || method.needs_query_bank(), "queryBank", "query-modality embeddings, e.g. training captions")?;
        let gb = check_bank(method, gallery_bank, rg.is_some() || method.needs_gallery_bank(), "galleryBank", "gallery-modality embeddings, e.g. training images")?;
        for (b, name) in [(qb, "queryBank"), (gb, "galleryBank")] {
            if let Some(b) = b {
                if b.cols != gallery.cols {
                    return Err(Error::shape(format!("{name} has dim {}, gallery has dim {}", b.cols, gallery.cols)));
                }
            }
        }
        gallery.check_finite("gallery")?;
        let g = prepare(gallery, metric, "gallery")?.into_owned();
        let qbv = qb.map(|b| prepare(b, metric, "queryBank").map(|c| c.into_owned())).transpose()?.unwrap_or_default();
        let gbv = gb.map(|b| prepare(b, metric, "galleryBank").map(|c| c.into_owned())).transpose()?.unwrap_or_default();
        let (n, d) = (gallery.rows, gallery.cols);
        // The method's gallery transform (DN, InvGC), before the statistics pass.
        let mut state = MethodState::default();
        let g = match method.info().gallery_transform {
            Some(t) => t(&GalleryInput { params: &params, metric, dim: d, items: &g, n_existing: 0, query_bank: &qbv, gallery_bank: &gbv }, &mut state, ctl)?,
            None => g,
        };
        let qs = match (rq, qb) {
            (Some(r), Some(b)) => Some(bank_stats(Source::Embeddings { bank: &qbv, gallery: &g, dim: d }, b.rows, n, r, ctl, "fit:queryBank")?),
            _ => None,
        };
        let gs = match (rg, gb) {
            (Some(r), Some(b)) => Some(bank_stats(Source::Embeddings { bank: &gbv, gallery: &g, dim: d }, b.rows, n, r, ctl, "fit:galleryBank")?),
            _ => None,
        };
        let scorer = method.scorer(&params, qs.as_ref(), gs.as_ref(), &state, n);
        let mode = Mode::Embeddings { metric, dim: d };
        let overlap = count_overlap(&mode, &g, &gbv);
        Ok(Normalizer {
            method,
            params,
            mode,
            n_gallery: n,
            gallery: g,
            query_bank: qbv,
            gallery_bank: gbv,
            query_stats: qs,
            gallery_stats: gs,
            state,
            scorer,
            bank_index: Default::default(),
            overlap,
        })
    }

    /// Fits from precomputed similarities: `query_bank_sims` (m_q × n_g, query bank × gallery,
    /// cross-modal) and `gallery_bank_sims` (m_g × n_g, gallery bank × gallery, same modality), on
    /// the same scale as the query × gallery matrices scored later (e.g. ×100 logits).
    pub fn fit_similarities(method: Method, params: Params, query_bank_sims: Option<MatRef>, gallery_bank_sims: Option<MatRef>, gallery_count: Option<usize>, ctl: &Control) -> Result<Normalizer> {
        params.validate(method)?;
        if method.info().embeddings_only {
            return Err(Error::param(format!("method '{}' needs embeddings (it transforms or averages vectors); fit it with Normalizer.fit", method.as_str())));
        }
        let (rq, rg) = method.requests(&params);
        for (m, name) in [(query_bank_sims, "queryBankSims"), (gallery_bank_sims, "galleryBankSims")] {
            if let Some(m) = m {
                m.check_finite(name)?;
            }
        }
        let qs_in = check_bank(method, query_bank_sims, rq.is_some(), "queryBankSims", "query bank × gallery similarities")?;
        let gs_in = check_bank(method, gallery_bank_sims, rg.is_some(), "galleryBankSims", "gallery bank × gallery similarities")?;
        let mut n: Option<usize> = gallery_count;
        // Every given matrix fixes the gallery size, used by the method or not (`none` from matrices).
        for (m, name) in [(query_bank_sims, "queryBankSims"), (gallery_bank_sims, "galleryBankSims")] {
            if let Some(m) = m {
                match n {
                    Some(n0) if n0 != m.cols => {
                        return Err(Error::shape(format!("{name} has {} columns (gallery items), expected {n0}", m.cols)));
                    }
                    _ => n = Some(m.cols),
                }
            }
        }
        let n = n.unwrap_or(0);
        if n == 0 && method != Method::None {
            return Err(Error::shape("the gallery has 0 items"));
        }
        let qs = match (rq, qs_in) {
            (Some(r), Some(m)) => Some(bank_stats(Source::Sims { sims: m.data }, m.rows, n, r, ctl, "fit:queryBank")?),
            _ => None,
        };
        let gs = match (rg, gs_in) {
            (Some(r), Some(m)) => Some(bank_stats(Source::Sims { sims: m.data }, m.rows, n, r, ctl, "fit:galleryBank")?),
            _ => None,
        };
        let state = MethodState::default();
        let scorer = method.scorer(&params, qs.as_ref(), gs.as_ref(), &state, n);
        Ok(Normalizer {
            method,
            params,
            mode: Mode::Similarities,
            n_gallery: n,
            gallery: Vec::new(),
            query_bank: Vec::new(),
            gallery_bank: Vec::new(),
            query_stats: qs,
            gallery_stats: gs,
            state,
            scorer,
            bank_index: Default::default(),
            overlap: 0,
        })
    }

    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    /// The scorer for an input of `cols` columns (similarity mode): checks the width.
    fn scorer_for_sims(&self, input: &MatRef) -> Result<std::borrow::Cow<'_, Scorer>> {
        if self.method == Method::None && self.n_gallery == 0 {
            return Ok(std::borrow::Cow::Owned(none::scorer(&self.params, input.cols)));
        }
        if input.cols != self.n_gallery {
            return Err(Error::shape(format!("input has {} columns, the fitted gallery has {} items", input.cols, self.n_gallery)));
        }
        Ok(std::borrow::Cow::Borrowed(&self.scorer))
    }

    fn check_queries(&self, queries: &MatRef, dim: usize) -> Result<()> {
        if queries.cols != dim {
            return Err(Error::shape(format!("queries have dim {}, gallery has dim {dim}", queries.cols)));
        }
        queries.check_finite("queries")
    }

    /// Normalised `nq × n_gallery` scores (row-major `f32`). `input` is query embeddings (nq × d)
    /// in embeddings mode, or raw query × gallery similarities (nq × n_g) in similarity mode.
    pub fn scores(&self, input: MatRef) -> Result<(Vec<f32>, usize)> {
        self.scores_with(input, &Control::none())
    }

    /// [`Self::scores`] observing `ctl` (abort / progress between blocks of queries).
    pub fn scores_with(&self, input: MatRef, ctl: &Control) -> Result<(Vec<f32>, usize)> {
        const ROWS: usize = 2048;
        match self.mode {
            Mode::Embeddings { metric, dim } => {
                self.check_queries(&input, dim)?;
                let q = prepare(input, metric, "queries")?;
                let ng = self.n_gallery;
                let mut out = vec![0f32; input.rows * ng];
                for (b, chunk) in out.chunks_mut(ROWS * ng.max(1)).enumerate() {
                    ctl.check()?;
                    let r0 = b * ROWS;
                    let rows = chunk.len() / ng.max(1);
                    dot_abt_par(&q[r0 * dim..(r0 + rows) * dim], rows, &self.gallery, ng, dim, chunk);
                    self.scorer.score_rows_in_place(chunk)?;
                    ctl.progress("scores", r0 + rows, input.rows);
                }
                Ok((out, ng))
            }
            Mode::Similarities => {
                input.check_finite("similarities")?;
                let sc = self.scorer_for_sims(&input)?;
                ctl.check()?;
                Ok((sc.scores_from_sims(input.data, input.rows)?, input.cols))
            }
        }
    }

    /// Top-k per query: `(indices, scores, k_effective)`, each `nq × k_eff` row-major, best first
    /// (score desc, index asc). `k` is clamped to the gallery size; `k = 0` is an error.
    pub fn search(&self, input: MatRef, k: usize, ctl: &Control) -> Result<(Vec<u32>, Vec<f32>, usize)> {
        if k == 0 {
            return Err(Error::param("k must be an integer ≥ 1, got 0"));
        }
        match self.mode {
            Mode::Embeddings { metric, dim } => {
                self.check_queries(&input, dim)?;
                let ke = k.min(self.n_gallery);
                let q = prepare(input, metric, "queries")?;
                let (i, s) = self.scorer.search_embeddings(&q, input.rows, &self.gallery, dim, ke, ctl)?;
                Ok((i, s, ke))
            }
            Mode::Similarities => {
                input.check_finite("similarities")?;
                let sc = self.scorer_for_sims(&input)?;
                let ke = k.min(input.cols);
                if ke == 0 {
                    return Err(Error::shape("input has 0 columns"));
                }
                let (i, s) = sc.search_sims(input.data, input.rows, ke)?;
                Ok((i, s, ke))
            }
        }
    }
}

/// Merges two per-bank-row top-k lists (`old` over items `0..n_old`, `new` over the appended items,
/// indices already offset) into lists of `min(k, n_old + n_new)` entries per row.
fn merge_row_topk(m: usize, k: usize, old: (&[u32], &[f32], usize), new: (&[u32], &[f32], usize)) -> (Vec<u32>, Vec<f32>, usize) {
    use crate::kernels::topk::TopK;
    let (oi, os, ok) = old;
    let (ni, ns, nk) = new;
    // ok = min(k, n_old), nk = min(k, n_new)  ⇒  min(k, ok + nk) = min(k, n_old + n_new).
    let rk = k.min(ok + nk);
    let mut idx = Vec::with_capacity(m * rk);
    let mut sc = Vec::with_capacity(m * rk);
    for b in 0..m {
        let mut t = TopK::new(rk);
        for r in 0..ok {
            t.push(os[b * ok + r] as f64, oi[b * ok + r]);
        }
        for r in 0..nk {
            t.push(ns[b * nk + r] as f64, ni[b * nk + r]);
        }
        idx.extend_from_slice(t.indices());
        sc.extend(t.scores().iter().map(|&s| s as f32));
    }
    (idx, sc, rk)
}

/// Appends the statistics of new gallery items (`new`, computed over items `0..n_new` only) to `old`.
fn append_stats(old: &BankStats, new: BankStats, n_old: usize, k_requested: usize) -> BankStats {
    let cat = |a: &Option<Vec<f64>>, b: Option<Vec<f64>>| match (a, b) {
        (Some(a), Some(b)) => Some(a.iter().copied().chain(b).collect()),
        _ => None,
    };
    let mut out = BankStats {
        bank_rows: old.bank_rows,
        lse: cat(&old.lse, new.lse),
        lse_beta: old.lse_beta,
        top_k: old.top_k,
        top_mean: cat(&old.top_mean, new.top_mean),
        row_k: old.row_k,
        row_topk_idx: None,
        row_topk_score: None,
    };
    if let (Some(oi), Some(os), Some(mut ni), Some(ns)) = (old.row_topk_idx.as_ref(), old.row_topk_score.as_ref(), new.row_topk_idx, new.row_topk_score) {
        for i in ni.iter_mut() {
            *i += n_old as u32;
        }
        let (idx, sc, rk) = merge_row_topk(old.bank_rows, k_requested, (oi, os, old.row_k), (&ni, &ns, new.row_k));
        out.row_topk_idx = Some(idx);
        out.row_topk_score = Some(sc);
        out.row_k = rk;
    }
    out
}

impl Normalizer {
    fn embeddings(&self) -> Result<(Metric, usize)> {
        match self.mode {
            Mode::Embeddings { metric, dim } => Ok((metric, dim)),
            Mode::Similarities => Err(Error::param("this normaliser was fitted from precomputed similarities; the operation needs embeddings")),
        }
    }

    /// A new normaliser with `items` (n_new × d embeddings) appended to the gallery. Their statistics
    /// come from the stored banks, so for every bank-based method the result is exactly what fitting
    /// on the whole gallery gives (activation sets are updated from the stored per-bank-row top-k).
    pub fn add_gallery_embeddings(&self, items: MatRef, ctl: &Control) -> Result<Normalizer> {
        let (metric, dim) = self.embeddings()?;
        if items.cols != dim {
            return Err(Error::shape(format!("new gallery items have dim {}, gallery has dim {dim}", items.cols)));
        }
        items.check_finite("items")?;
        let prepared = prepare(items, metric, "items")?.into_owned();
        let n_new = items.rows;
        // The method's gallery transform (DN, InvGC) applies to the new items too.
        let mut state = self.state.clone();
        let prepared = match self.method.info().gallery_transform {
            Some(t) => t(
                &GalleryInput { params: &self.params, metric, dim, items: &prepared, n_existing: self.n_gallery, query_bank: &self.query_bank, gallery_bank: &self.gallery_bank },
                &mut state,
                ctl,
            )?,
            None => prepared,
        };
        let (rq, rg) = self.method.requests(&self.params);
        let mq = self.query_bank.len() / dim;
        let mg = self.gallery_bank.len() / dim;
        let stats = |bank: &[f32], m: usize, r, phase| bank_stats(Source::Embeddings { bank, gallery: &prepared, dim }, m, n_new, r, ctl, phase);
        let qs = match (rq, &self.query_stats) {
            (Some(r), Some(old)) => Some(append_stats(old, stats(&self.query_bank, mq, r, "addGallery:queryBank")?, self.n_gallery, self.params.k)),
            _ => None,
        };
        let gs = match (rg, &self.gallery_stats) {
            (Some(r), Some(old)) => Some(append_stats(old, stats(&self.gallery_bank, mg, r, "addGallery:galleryBank")?, self.n_gallery, self.params.k)),
            _ => None,
        };
        let mut gallery = Vec::with_capacity(self.gallery.len() + prepared.len());
        gallery.extend_from_slice(&self.gallery);
        gallery.extend_from_slice(&prepared);
        Normalizer::rebuild(self.method, self.params, self.mode.clone(), self.n_gallery + n_new, gallery, self.query_bank.clone(), self.gallery_bank.clone(), qs, gs, state)
    }

    /// Similarity-mode twin of [`Self::add_gallery_embeddings`]: the new items' bank similarities,
    /// `query_bank_sims` (m_q × n_new) and `gallery_bank_sims` (m_g × n_new), rows in the same bank
    /// order as at fit.
    pub fn add_gallery_similarities(&self, query_bank_sims: Option<MatRef>, gallery_bank_sims: Option<MatRef>, n_new: usize, ctl: &Control) -> Result<Normalizer> {
        if self.mode != Mode::Similarities {
            return Err(Error::param("this normaliser was fitted from embeddings; add gallery items as embeddings"));
        }
        let (rq, rg) = self.method.requests(&self.params);
        let one = |sims: Option<MatRef>, req: Option<StatsRequest>, old: &Option<BankStats>, name: &str, phase: &str| -> Result<Option<BankStats>> {
            match (req, old) {
                (Some(r), Some(old)) => {
                    let s = sims.ok_or_else(|| Error::empty_bank(format!("method '{}' needs {name} for the new items", self.method.as_str())))?;
                    if s.rows != old.bank_rows || s.cols != n_new {
                        return Err(Error::shape(format!("{name} is {}×{}, expected {}×{n_new} (bank rows × new items)", s.rows, s.cols, old.bank_rows)));
                    }
                    s.check_finite(name)?;
                    let new = bank_stats(Source::Sims { sims: s.data }, s.rows, n_new, r, ctl, phase)?;
                    Ok(Some(append_stats(old, new, self.n_gallery, self.params.k)))
                }
                _ => Ok(None),
            }
        };
        let qs = one(query_bank_sims, rq, &self.query_stats, "queryBankSims", "addGallery:queryBank")?;
        let gs = one(gallery_bank_sims, rg, &self.gallery_stats, "galleryBankSims", "addGallery:galleryBank")?;
        Normalizer::rebuild(self.method, self.params, Mode::Similarities, self.n_gallery + n_new, Vec::new(), Vec::new(), Vec::new(), qs, gs, self.state.clone())
    }

    /// Re-scores given candidates per query (e.g. what an ANN index returned) with the normalised
    /// score, and returns them best first (score desc, index asc): `(indices, scores)`, nq × c.
    ///
    /// `input` is query embeddings (nq × d) in embeddings mode, or the candidates' raw similarities
    /// (nq × c, aligned with `candidates`) in similarity mode. Per-query context — the DIS/DualDIS gate
    /// (raw top-1) and the CSLS offset (mean of the K best raw similarities) — is taken over the
    /// candidates, which is exact whenever the candidates contain the raw top-1 (top-K), as a raw
    /// nearest-neighbour index returns them.
    pub fn rerank(&self, input: MatRef, candidates: &[u32], c: usize) -> Result<(Vec<u32>, Vec<f32>)> {
        let nq = input.rows;
        if candidates.len() != nq * c {
            return Err(Error::shape(format!("candidates has {} ids, expected queries·c = {nq}·{c}", candidates.len())));
        }
        if let Some(&bad) = candidates.iter().find(|&&j| j as usize >= self.n_gallery) {
            return Err(Error::shape(format!("candidate id {bad} is out of range (gallery has {} items)", self.n_gallery)));
        }
        input.check_finite("input")?;
        let raw: Vec<f32> = match self.mode {
            Mode::Embeddings { metric, dim } => {
                if input.cols != dim {
                    return Err(Error::shape(format!("queries have dim {}, gallery has dim {dim}", input.cols)));
                }
                let q = prepare(input, metric, "queries")?;
                let mut raw = vec![0f32; nq * c];
                raw.par_chunks_mut(c.max(1)).enumerate().for_each(|(i, out)| {
                    dot_gather(&q[i * dim..(i + 1) * dim], &self.gallery, dim, &candidates[i * c..(i + 1) * c], out);
                });
                raw
            }
            Mode::Similarities => {
                if input.cols != c {
                    return Err(Error::shape(format!("candidate similarities have {} columns, candidates have {c} per query", input.cols)));
                }
                input.data.to_vec()
            }
        };
        let sc = &self.scorer;
        let mut idx = vec![0u32; nq * c];
        let mut out = vec![0f32; nq * c];
        let bad = idx.par_chunks_mut(c.max(1)).zip(out.par_chunks_mut(c.max(1))).enumerate().find_map_any(|(i, (io, so))| {
            let r = &raw[i * c..(i + 1) * c];
            let cand = &candidates[i * c..(i + 1) * c];
            let (t, off) = sc.row_context(r);
            let v = sc.variant_of(cand.get(t).map(|&j| j as usize).unwrap_or(0));
            let mut scored: Vec<(f64, u32)> = r.iter().zip(cand).map(|(&s, &j)| (sc.scale * s as f64 - sc.bias[v][j as usize] - off, j)).collect();
            // The crate's one tie rule (score desc, index asc), on the f64 scores.
            crate::kernels::topk::sort_ranked(&mut scored);
            for (r, (s, j)) in scored.into_iter().enumerate() {
                io[r] = j;
                // The finite-score contract (methods::scorer): a score outside f32 is an error.
                match crate::methods::scorer::score_to_f32(s) {
                    Ok(x) => so[r] = x,
                    Err(e) => return Some(e),
                }
            }
            None
        });
        if let Some(e) = bad {
            return Err(e);
        }
        Ok((idx, out))
    }

    /// Extra dimensions of the augmented vectors (the method descriptor's augmented columns).
    pub fn augmented_extra(&self) -> usize {
        self.method.info().augmented_columns()
    }

    /// Scale of the augmented inner product: the normalised score is
    /// `scale · ⟨[q ; γ…], [g_j ; −b_j]⟩ − offset(q)`, with `offset(q)` the mean of the
    /// [`Self::augmented_offset_k`] largest raw similarities of q (CSLS) or 0.
    pub fn augmented_scale(&self) -> f64 {
        self.scorer.scale
    }

    /// K of the per-query score offset (CSLS: mean of the K largest raw similarities; 0 = none).
    pub fn augmented_offset_k(&self) -> usize {
        self.scorer.offset_k
    }

    /// Whether [`Self::augment_queries_with_top1`] needs each query's raw top-1 (DIS, DualDIS).
    pub fn augmented_gated(&self) -> bool {
        !matches!(self.scorer.gate, crate::methods::scorer::Gate::None)
    }

    /// Gallery vectors `[g_j ; −b_j]` for `j ∈ start..start + count` ((count) × (d + e), row-major
    /// `f32`, `g_j` prepared for the metric) such that an inner product with
    /// [`Self::augment_queries`] ranks exactly as the method (docs/methods.md §4). DIS: `b = L_q/β_q`; DualDIS:
    /// two columns `−L_q/(β_q+β_g)`, `−L_g/(β_q+β_g)`; otherwise `b_j = bias_j / scale` of the
    /// single-variant score. See [`Self::augmented_gallery_rows`] for a range of rows.
    pub fn augmented_gallery(&self) -> Result<(Vec<f32>, usize)> {
        self.augmented_gallery_rows(None)
    }

    /// [`Self::augmented_gallery`] for rows `start..start + count` only (`None`: all rows).
    pub fn augmented_gallery_rows(&self, range: Option<(usize, usize)>) -> Result<(Vec<f32>, usize)> {
        let (_, dim) = self.embeddings()?;
        let (start, count) = range.unwrap_or((0, self.n_gallery));
        if start.checked_add(count).is_none_or(|end| end > self.n_gallery) {
            return Err(Error::shape(format!("rows {start}..{start}+{count} are out of range (gallery has {} items)", self.n_gallery)));
        }
        let e = self.augmented_extra();
        let sc = &self.scorer;
        let cols: Vec<&Vec<f64>> = self.method.info().augmented.iter().map(|&v| &sc.bias[v]).collect();
        let w = dim + e;
        let mut out = vec![0f32; count * w];
        for (r, j) in (start..start + count).enumerate() {
            out[r * w..r * w + dim].copy_from_slice(&self.gallery[j * dim..(j + 1) * dim]);
            for (x, col) in cols.iter().enumerate() {
                // |bias/scale| ≈ |max s| + ln(m)/β: finite for any accepted input, but checked.
                out[r * w + dim + x] = crate::methods::scorer::score_to_f32(-col[j] / sc.scale)?;
            }
        }
        Ok((out, w))
    }

    /// Query vectors `[q ; γ…]` (nq × (d + e)) matching [`Self::augmented_gallery`]: `[q; 1]` for
    /// single-variant methods; for DIS / DualDIS the gates from the raw top-1 (the spec's two-pass
    /// rule, done here by a raw search over the stored gallery).
    pub fn augment_queries(&self, queries: MatRef, ctl: &Control) -> Result<(Vec<f32>, usize)> {
        let (metric, dim) = self.embeddings()?;
        if queries.cols != dim {
            return Err(Error::shape(format!("queries have dim {}, gallery has dim {dim}", queries.cols)));
        }
        queries.check_finite("queries")?;
        let q = prepare(queries, metric, "queries")?;
        let nq = queries.rows;
        let top1 = if self.augmented_gated() {
            let raw = none::scorer(&self.params, self.n_gallery);
            Some(raw.search_embeddings(&q, nq, &self.gallery, dim, 1, ctl)?.0)
        } else {
            None
        };
        Ok(self.augment_prepared(&q, nq, dim, top1.as_deref()))
    }

    /// [`Self::augment_queries`] with each query's raw top-1 gallery index given (`top1`, one per
    /// query; ignored by ungated methods, may then be empty), e.g. what an external inner-product
    /// index returned for `[q ; 0…]`. Needs no stored gallery vectors.
    pub fn augment_queries_with_top1(&self, queries: MatRef, top1: &[u32]) -> Result<(Vec<f32>, usize)> {
        let (metric, dim) = self.embeddings()?;
        if queries.cols != dim {
            return Err(Error::shape(format!("queries have dim {}, gallery has dim {dim}", queries.cols)));
        }
        queries.check_finite("queries")?;
        let gated = self.augmented_gated();
        if gated && top1.len() != queries.rows {
            return Err(Error::shape(format!("top1 has {} ids, expected one per query ({})", top1.len(), queries.rows)));
        }
        if let Some(&bad) = top1.iter().find(|&&t| t as usize >= self.n_gallery) {
            return Err(Error::shape(format!("top-1 id {bad} is out of range (gallery has {} items)", self.n_gallery)));
        }
        let q = prepare(queries, metric, "queries")?;
        Ok(self.augment_prepared(&q, queries.rows, dim, if gated { Some(top1) } else { None }))
    }

    fn augment_prepared(&self, q: &[f32], nq: usize, dim: usize, top1: Option<&[u32]>) -> (Vec<f32>, usize) {
        let e = self.augmented_extra();
        let w = dim + e;
        let gate = |i: usize| -> [f32; 2] {
            match (&self.scorer.gate, top1) {
                (crate::methods::scorer::Gate::Single(a), Some(t)) => [a[t[i] as usize] as u8 as f32, 0.0],
                (crate::methods::scorer::Gate::Dual(aq, ag), Some(t)) => [aq[t[i] as usize] as u8 as f32, ag[t[i] as usize] as u8 as f32],
                _ => [1.0, 0.0],
            }
        };
        let mut out = vec![0f32; nq * w];
        for i in 0..nq {
            out[i * w..i * w + dim].copy_from_slice(&q[i * dim..(i + 1) * dim]);
            out[i * w + dim..i * w + w].copy_from_slice(&gate(i)[..e]);
        }
        (out, w)
    }

    /// How many rows of `queries` (embeddings) are bit-identical, after the metric's preparation, to a
    /// query-bank row: test queries inside the bank inflate results (the leak guard).
    pub fn leaked_queries(&self, queries: MatRef) -> Result<usize> {
        let (metric, dim) = self.embeddings()?;
        if self.query_bank.is_empty() || queries.cols != dim {
            return Ok(0);
        }
        queries.check_finite("queries")?;
        let q = prepare(queries, metric, "queries")?;
        let index = self.bank_index.get_or_init(|| crate::rows::RowIndex::new(&self.query_bank, dim));
        Ok(index.count_in(&self.query_bank, &q))
    }

    /// How many gallery rows also appear in the gallery bank (the spec forbids that: every such item
    /// gets a near-constant e^{β_g} term).
    pub fn gallery_bank_overlap(&self) -> usize {
        self.overlap
    }
}
