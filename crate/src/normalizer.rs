//! The fitted normaliser: a method, its parameters, the per-gallery statistics fitted from the
//! banks, and (in embeddings mode) the prepared gallery and banks kept in native memory.

use std::sync::Arc;

use crate::control::Control;
use crate::error::{Error, Result};
use crate::gallery::{check_raw_rows, source_err, GalleryView, HalfRows, Lean, LeanGallery, SourceFile, SourceRef};
use crate::kernels::half::HalfKind;
use crate::kernels::dot::dot_rows;
use crate::kernels::dot::dot_gather;
use crate::kernels::similarity::{dot_abt_par, normalize_rows_in_place, prepare, Metric};
use crate::matrix::MatRef;
use crate::methods::scorer::Scorer;
use crate::methods::stats::{bank_stats, BankStats, Source, StatsRequest};
use rayon::prelude::*;
use crate::methods::{none, FitInputs, Method, MethodState, Params};

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
    /// The gallery stored in half precision (`galleryStorage`); `gallery` is then empty.
    pub half: Option<Arc<HalfRows>>,
    /// `keep: 'statistics'`: the gallery stays in its source file and the banks are referenced, not
    /// held (see [`crate::gallery`]); `gallery`, `query_bank` and `gallery_bank` are then empty.
    pub lean: Option<Arc<Lean>>,
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

/// `ERR_PARAM` for an embeddings-only method asked to work from precomputed similarities.
pub fn embeddings_only_error(method: Method) -> Error {
    Error::param(format!(
        "method '{}' needs embeddings (it transforms or averages vectors); it cannot be fitted from precomputed similarities: use Normalizer.fit with embeddings",
        method.as_str()
    ))
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
        let shape = crate::methods::StateShape {
            n_gallery,
            dim: match mode {
                Mode::Embeddings { dim, .. } => dim,
                Mode::Similarities => 0,
            },
            // rows of the statistics, else of the stored bank (embeddings mode), else unknown (0)
            query_bank_rows: query_stats.as_ref().map_or_else(|| match mode {
                Mode::Embeddings { dim, .. } if dim > 0 => query_bank.len() / dim,
                _ => 0,
            }, |s| s.bank_rows),
            gallery_bank_rows: gallery_stats.as_ref().map_or_else(|| match mode {
                Mode::Embeddings { dim, .. } if dim > 0 => gallery_bank.len() / dim,
                _ => 0,
            }, |s| s.bank_rows),
        };
        (method.info().check_state)(&params, &state, &shape).map_err(|e| Error::format(format!("method '{}': {e}", method.as_str())))?;
        let scorer = method.scorer(&params, query_stats.as_ref(), gallery_stats.as_ref(), &state, n_gallery);
        let overlap = count_overlap(&mode, &gallery, &gallery_bank);
        Ok(Normalizer { method, params, mode, n_gallery, gallery, query_bank, gallery_bank, query_stats, gallery_stats, state, half: None, lean: None, scorer, bank_index: Default::default(), overlap })
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
        Self::fit_prepared(method, params, metric, gallery.cols, g, qbv, gbv, ctl, "fit")
    }

    /// The statistics pass of an embeddings-mode fit over already prepared (metric-normalised,
    /// validated) gallery and banks, row-major `dim` wide; a bank the method does not use is empty.
    /// Shared by [`Self::fit_embeddings`] and the refit of gallery-dependent methods in
    /// [`Self::add_gallery_embeddings`]; `phase` prefixes the progress phases.
    #[allow(clippy::too_many_arguments)]
    fn fit_prepared(method: Method, params: Params, metric: Metric, d: usize, g: Vec<f32>, qbv: Vec<f32>, gbv: Vec<f32>, ctl: &Control, phase: &str) -> Result<Normalizer> {
        let (rq, rg) = method.requests(&params);
        let n = g.len() / d;
        let qs = match rq {
            Some(r) => Some(bank_stats(Source::Embeddings { bank: &qbv, gallery: &g, dim: d }, qbv.len() / d, n, r, ctl, &format!("{phase}:queryBank"))?),
            _ => None,
        };
        let gs = match rg {
            Some(r) => Some(bank_stats(Source::Embeddings { bank: &gbv, gallery: &g, dim: d }, gbv.len() / d, n, r, ctl, &format!("{phase}:galleryBank"))?),
            _ => None,
        };
        let state = match method.info().fit_state {
            Some(f) => f(&params, &FitInputs::Embeddings { gallery: &g, query_bank: &qbv, gallery_bank: &gbv, dim: d }, qs.as_ref(), gs.as_ref(), ctl)?,
            None => MethodState::default(),
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
            half: None,
            lean: None,
            scorer,
            bank_index: Default::default(),
            overlap,
        })
    }

    /// Fits from precomputed similarities: `query_bank_sims` (m_q × n_g, query bank × gallery,
    /// cross-modal) and `gallery_bank_sims` (m_g × n_g, gallery bank × gallery, same modality), on
    /// the same scale as the query × gallery matrices scored later (e.g. ×100 logits).
    pub fn fit_similarities(method: Method, params: Params, query_bank_sims: Option<MatRef>, gallery_bank_sims: Option<MatRef>, gallery_count: Option<usize>, ctl: &Control) -> Result<Normalizer> {
        Self::fit_similarities_with(method, params, query_bank_sims, gallery_bank_sims, None, gallery_count, ctl)
    }

    /// [`Self::fit_similarities`] with the query bank × gallery bank matrix `query_gallery_bank_sims`
    /// (m_q × m_g, cross-modal, bank rows in the order of `query_bank_sims`; read by the methods
    /// whose descriptor sets `cross_bank_sims`, i.e. DBSN, and validated otherwise).
    pub fn fit_similarities_with(method: Method, params: Params, query_bank_sims: Option<MatRef>, gallery_bank_sims: Option<MatRef>, query_gallery_bank_sims: Option<MatRef>, gallery_count: Option<usize>, ctl: &Control) -> Result<Normalizer> {
        if method.info().embeddings_only {
            return Err(embeddings_only_error(method));
        }
        params.validate(method)?;
        let (rq, rg) = method.requests(&params);
        for (m, name) in [(query_bank_sims, "queryBankSims"), (gallery_bank_sims, "galleryBankSims"), (query_gallery_bank_sims, "queryBankGalleryBankSims")] {
            if let Some(m) = m {
                m.check_finite(name)?;
            }
        }
        let cross = method.info().cross_bank_sims;
        let qs_in = check_bank(method, query_bank_sims, rq.is_some() || method.needs_query_bank(), "queryBankSims", "query bank × gallery similarities")?;
        let hs_in = check_bank(method, query_gallery_bank_sims, cross, "queryBankGalleryBankSims", "query bank × gallery bank similarities, m_q × m_g")?;
        if let (Some(q), Some(h)) = (query_bank_sims, query_gallery_bank_sims) {
            if h.rows > 0 && q.rows > 0 && h.rows != q.rows {
                return Err(Error::shape(format!("queryBankGalleryBankSims has {} rows, queryBankSims has {} (both are query-bank rows)", h.rows, q.rows)));
            }
        }
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
        let state = match method.info().fit_state {
            Some(f) => f(&params, &FitInputs::Similarities { n_gallery: n, query_bank_sims: qs_in, gallery_bank_sims: gs_in, query_gallery_bank_sims: hs_in }, qs.as_ref(), gs.as_ref(), ctl)?,
            None => MethodState::default(),
        };
        Normalizer::rebuild(method, params, Mode::Similarities, n, Vec::new(), Vec::new(), Vec::new(), qs, gs, state)
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
                self.check_sources()?;
                let q = prepare(input, metric, "queries")?;
                let ng = self.n_gallery;
                let view = self.gallery_view(dim);
                let mut out = vec![0f32; input.rows * ng];
                let mut gbuf = Vec::new();
                for (b, chunk) in out.chunks_mut(ROWS * ng.max(1)).enumerate() {
                    ctl.check()?;
                    let r0 = b * ROWS;
                    let rows = chunk.len() / ng.max(1);
                    let qb = &q[r0 * dim..(r0 + rows) * dim];
                    if let GalleryView::F32 { data, .. } = view {
                        dot_abt_par(qb, rows, data, ng, dim, chunk);
                    } else {
                        // Gallery chunks read once each, query rows in parallel (the same per-element
                        // kernel as the search, so the values are those of an f32 store of these rows).
                        const GC: usize = 1024;
                        for j0 in (0..ng).step_by(GC) {
                            let n = (ng - j0).min(GC);
                            let g = view.rows(j0, n, &mut gbuf)?;
                            chunk.par_chunks_mut(ng).enumerate().for_each(|(r, row)| dot_rows(&qb[r * dim..(r + 1) * dim], 1, g, n, dim, &mut row[j0..j0 + n], n));
                        }
                    }
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
                self.check_sources()?;
                let q = prepare(input, metric, "queries")?;
                let (i, s) = self.scorer.search_embeddings_view(&q, input.rows, self.gallery_view(dim), ke, ctl)?;
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
    let mut out = old.clone();
    append_stats_in_place(&mut out, new, n_old, k_requested);
    out
}

/// Gallery rows per block of a lean fit: a multiple of the statistics' gallery tile, so every tile
/// of the block-wise fit is a tile of the one-shot fit and the statistics are bit-identical.
pub const LEAN_FIT_BLOCK: usize = crate::methods::stats::GALLERY_TILE * 32;

/// Appends `new` (statistics of the gallery items `n_old..`, indices relative to `n_old`) to `acc` in
/// place (as [`append_stats`], without copying what is already there).
fn append_stats_in_place(acc: &mut BankStats, new: BankStats, n_old: usize, k_requested: usize) {
    if let (Some(a), Some(b)) = (acc.lse.as_mut(), new.lse) {
        a.extend(b);
    }
    if let (Some(a), Some(b)) = (acc.top_mean.as_mut(), new.top_mean) {
        a.extend(b);
    }
    if let (Some(oi), Some(os), Some(mut ni), Some(ns)) = (acc.row_topk_idx.as_ref(), acc.row_topk_score.as_ref(), new.row_topk_idx, new.row_topk_score) {
        for i in ni.iter_mut() {
            *i += n_old as u32;
        }
        let (idx, sc, rk) = merge_row_topk(acc.bank_rows, k_requested, (oi, os, acc.row_k), (&ni, &ns, new.row_k));
        acc.row_topk_idx = Some(idx);
        acc.row_topk_score = Some(sc);
        acc.row_k = rk;
    }
}

impl Normalizer {
    /// The gallery rows as the search reads them (see [`crate::gallery`]). `dim` is the embeddings width.
    pub fn gallery_view(&self, dim: usize) -> GalleryView<'_> {
        match (&self.lean, &self.half) {
            (Some(l), _) => GalleryView::Lean(&l.gallery),
            (None, Some(h)) => GalleryView::Half(h),
            _ => GalleryView::F32 { data: &self.gallery, dim },
        }
    }

    /// `ERR_SOURCE` if a lean normaliser's gallery file changed since it was verified (length or
    /// modification time; see [`crate::gallery`]). Free for every other normaliser.
    pub fn check_sources(&self) -> Result<()> {
        match &self.lean {
            Some(l) => l.gallery.source.check_unchanged("gallery"),
            None => Ok(()),
        }
    }

    /// The half-precision storage of the gallery, if any.
    pub fn gallery_storage(&self) -> Option<HalfKind> {
        self.half.as_ref().map(|h| h.kind)
    }

    /// This normaliser with its gallery stored as `kind` (`None`: `f32`). Half precision rounds the
    /// prepared rows once (round to nearest even) and halves the gallery's memory; similarities are
    /// then computed from the widened values, accumulated in `f32`. `ERR_PARAM` for a similarity-mode or
    /// lean normaliser (no gallery held), or a dot-metric value beyond the format's range.
    pub fn with_gallery_storage(mut self, kind: Option<HalfKind>) -> Result<Normalizer> {
        let (_, dim) = self.embeddings()?;
        if self.lean.is_some() {
            return Err(Error::param("galleryStorage applies to a gallery held in memory; a keep: 'statistics' normaliser reads its gallery from the source file"));
        }
        match (kind, self.half.as_ref().map(|h| h.kind)) {
            (None, None) => {}
            (None, Some(_)) => {
                self.gallery = self.half.take().map(|h| h.to_f32()).unwrap_or_default();
            }
            (Some(k), cur) if Some(k) == cur => {}
            (Some(k), _) => {
                let rows = match self.half.take() {
                    Some(h) => h.to_f32(),
                    None => std::mem::take(&mut self.gallery),
                };
                match HalfRows::from_f32(k, &rows, dim) {
                    Ok(h) => self.half = Some(Arc::new(h)),
                    Err(e) => {
                        self.gallery = rows;
                        return Err(e);
                    }
                }
            }
        }
        Ok(self)
    }

    /// Fits from embeddings keeping only statistics (`keep: 'statistics'`): the gallery is read block
    /// by block from its source file (never held whole) and referenced by the result, which reads it
    /// again at search time (see [`crate::gallery`]). `query_bank` / `gallery_bank` are the bank values
    /// (m×d row-major, as in [`Self::fit_embeddings`]); `bank_sources` the files they were read from, if
    /// any (kept as references for `addGallery`). The statistics, scores and rankings are bit-identical
    /// to [`Self::fit_embeddings`] on the file's values.
    pub fn fit_embeddings_lean(
        method: Method,
        params: Params,
        metric: Metric,
        gallery: SourceFile,
        query_bank: Option<MatRef>,
        gallery_bank: Option<MatRef>,
        bank_sources: (Option<SourceRef>, Option<SourceRef>),
        ctl: &Control,
    ) -> Result<Normalizer> {
        Self::fit_lean_blocked(method, params, metric, gallery, query_bank, gallery_bank, bank_sources, LEAN_FIT_BLOCK, ctl)
    }

    /// [`Self::fit_embeddings_lean`] with `block` gallery rows per block (a multiple of
    /// `stats::GALLERY_TILE` keeps the statistics bit-identical; exposed for tests).
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    pub fn fit_lean_blocked(
        method: Method,
        params: Params,
        metric: Metric,
        gallery: SourceFile,
        query_bank: Option<MatRef>,
        gallery_bank: Option<MatRef>,
        bank_sources: (Option<SourceRef>, Option<SourceRef>),
        block: usize,
        ctl: &Control,
    ) -> Result<Normalizer> {
        params.validate(method)?;
        if method.info().fit_state.is_some() {
            return Err(Error::param(format!(
                "method '{}' fits its state over the whole gallery in memory; keep: 'statistics' is not available for it (use keep: 'all')",
                method.as_str()
            )));
        }
        let (rq, rg) = method.requests(&params);
        let (n, d) = (gallery.rows, gallery.cols);
        if n == 0 {
            return Err(Error::shape("gallery has 0 rows (need at least one item)"));
        }
        if d == 0 {
            return Err(Error::shape("gallery has dim 0"));
        }
        if n > u32::MAX as usize {
            return Err(Error::shape(format!("gallery has {n} rows, more than 2^32 - 1")));
        }
        for (b, name) in [(query_bank, "queryBank"), (gallery_bank, "galleryBank")] {
            if let Some(b) = b {
                if b.rows > 0 && b.cols != d {
                    return Err(Error::shape(format!("{name} has dim {}, gallery has dim {d}", b.cols)));
                }
                b.check_finite(name)?;
            }
        }
        let qb = check_bank(method, query_bank, rq.is_some(), "queryBank", "query-modality embeddings, e.g. training captions")?;
        let gb = check_bank(method, gallery_bank, rg.is_some(), "galleryBank", "gallery-modality embeddings, e.g. training images")?;
        let qbv = qb.map(|b| prepare(b, metric, "queryBank").map(|c| c.into_owned())).transpose()?.unwrap_or_default();
        let gbv = gb.map(|b| prepare(b, metric, "galleryBank").map(|c| c.into_owned())).transpose()?.unwrap_or_default();
        let (mq, mg) = (qbv.len() / d, gbv.len() / d);
        let overlap_index = (!gbv.is_empty()).then(|| crate::rows::RowIndex::new(&gbv, d));
        let source = Arc::new(gallery);
        let nb = n.div_ceil(block);
        let (mut qs, mut gs): (Option<BankStats>, Option<BankStats>) = (None, None);
        let mut overlap = 0;
        let mut rows = Vec::new();
        for bi in 0..nb {
            ctl.check()?;
            let j0 = bi * block;
            let nbk = (n - j0).min(block);
            rows.clear();
            source.read_rows(j0, nbk, &mut rows)?;
            check_raw_rows(&rows, d, j0, metric, "gallery")?;
            if metric == Metric::Cosine {
                normalize_rows_in_place(&mut rows, d, "gallery")?;
            }
            if let Some(ix) = &overlap_index {
                overlap += ix.count_in(&gbv, &rows);
            }
            // Progress over the whole gallery: block bi of nb, each a full pass over the bank.
            let report = |phase: &str, done: usize, total: usize| ctl.progress(phase, bi * total + done, nb * total);
            let inner = ctl.with_progress(&report);
            for (req, bank, m, acc, phase) in [(rq, &qbv, mq, &mut qs, "fit:queryBank"), (rg, &gbv, mg, &mut gs, "fit:galleryBank")] {
                let Some(r) = req else { continue };
                let new = bank_stats(Source::Embeddings { bank, gallery: &rows, dim: d }, m, nbk, r, &inner, phase)?;
                match acc {
                    None => *acc = Some(new),
                    Some(a) => append_stats_in_place(a, new, j0, params.k),
                }
            }
        }
        let lean = Lean { gallery: LeanGallery { source, metric, appended: Vec::new() }, query_bank: bank_sources.0.filter(|_| rq.is_some()), gallery_bank: bank_sources.1.filter(|_| rg.is_some()) };
        let mut out = Normalizer::rebuild(method, params, Mode::Embeddings { metric, dim: d }, n, Vec::new(), Vec::new(), Vec::new(), qs, gs, MethodState::default())?;
        out.lean = Some(Arc::new(lean));
        // counted block by block above (the lean normaliser holds no gallery rows to count from)
        out.overlap = overlap;
        Ok(out)
    }

    fn embeddings(&self) -> Result<(Metric, usize)> {
        match self.mode {
            Mode::Embeddings { metric, dim } => Ok((metric, dim)),
            Mode::Similarities => Err(Error::param("this normaliser was fitted from precomputed similarities; the operation needs embeddings")),
        }
    }

    /// A new normaliser with `items` (n_new × d embeddings) appended to the gallery. Their statistics
    /// come from the stored banks, so for every bank-based method the result is exactly what fitting
    /// on the whole gallery gives (activation sets are updated from the stored per-bank-row top-k).
    ///
    /// A gallery-dependent method (descriptor `gallery_dependent`: SN / DBSN potentials, plain
    /// InvGC) is refitted instead: the statistics pass runs again over the stored gallery plus the
    /// new items, from the kept banks (the cost of a fit).
    pub fn add_gallery_embeddings(&self, items: MatRef, ctl: &Control) -> Result<Normalizer> {
        let (metric, dim) = self.embeddings()?;
        if items.cols != dim {
            return Err(Error::shape(format!("new gallery items have dim {}, gallery has dim {dim}", items.cols)));
        }
        items.check_finite("items")?;
        let prepared = prepare(items, metric, "items")?.into_owned();
        let n_new = items.rows;
        if self.method.info().gallery_dependent {
            if self.lean.is_some() || self.half.is_some() {
                return Err(Error::unsupported(format!(
                    "method '{}' depends on the whole gallery and refits on addGallery, which needs the float32 gallery and banks in memory; this normaliser keeps {}: fit again",
                    self.method.as_str(),
                    if self.lean.is_some() { "statistics only (keep: 'statistics')" } else { "a half-precision gallery" }
                )));
            }
            let mut gallery = Vec::with_capacity(self.gallery.len() + prepared.len());
            gallery.extend_from_slice(&self.gallery);
            gallery.extend_from_slice(&prepared);
            return Self::fit_prepared(self.method, self.params, metric, dim, gallery, self.query_bank.clone(), self.gallery_bank.clone(), ctl, "addGallery");
        }
        let (rq, rg) = self.method.requests(&self.params);
        self.check_sources()?;
        let qbank = if rq.is_some() { self.bank_for_add(true, metric, dim)? } else { std::borrow::Cow::Borrowed(&self.query_bank[..]) };
        let gbank = if rg.is_some() { self.bank_for_add(false, metric, dim)? } else { std::borrow::Cow::Borrowed(&self.gallery_bank[..]) };
        let mq = qbank.len() / dim;
        let mg = gbank.len() / dim;
        let stats = |bank: &[f32], m: usize, r, phase| bank_stats(Source::Embeddings { bank, gallery: &prepared, dim }, m, n_new, r, ctl, phase);
        let qs = match (rq, &self.query_stats) {
            (Some(r), Some(old)) => Some(append_stats(old, stats(&qbank, mq, r, "addGallery:queryBank")?, self.n_gallery, self.params.k)),
            _ => None,
        };
        let gs = match (rg, &self.gallery_stats) {
            (Some(r), Some(old)) => Some(append_stats(old, stats(&gbank, mg, r, "addGallery:galleryBank")?, self.n_gallery, self.params.k)),
            _ => None,
        };
        if let Some(l) = &self.lean {
            let mut appended = Vec::with_capacity(l.gallery.appended.len() + prepared.len());
            appended.extend_from_slice(&l.gallery.appended);
            appended.extend_from_slice(&prepared);
            let lean = Lean { gallery: LeanGallery { source: l.gallery.source.clone(), metric, appended }, query_bank: l.query_bank.clone(), gallery_bank: l.gallery_bank.clone() };
            let mut n = Normalizer::rebuild(self.method, self.params, self.mode.clone(), self.n_gallery + n_new, Vec::new(), Vec::new(), Vec::new(), qs, gs, self.state.clone())?;
            n.lean = Some(Arc::new(lean));
            return Ok(n);
        }
        if let Some(h) = &self.half {
            let add = HalfRows::from_f32(h.kind, &prepared, dim)?;
            let mut data = Vec::with_capacity(h.data.len() + add.data.len());
            data.extend_from_slice(&h.data);
            data.extend_from_slice(&add.data);
            let mut n = Normalizer::rebuild(self.method, self.params, self.mode.clone(), self.n_gallery + n_new, Vec::new(), self.query_bank.clone(), self.gallery_bank.clone(), qs, gs, self.state.clone())?;
            n.half = Some(Arc::new(HalfRows { kind: h.kind, dim, data }));
            return Ok(n);
        }
        let mut gallery = Vec::with_capacity(self.gallery.len() + prepared.len());
        gallery.extend_from_slice(&self.gallery);
        gallery.extend_from_slice(&prepared);
        Normalizer::rebuild(self.method, self.params, self.mode.clone(), self.n_gallery + n_new, gallery, self.query_bank.clone(), self.gallery_bank.clone(), qs, gs, self.state.clone())
    }

    /// The prepared query bank (`query`) or gallery bank for `addGallery`: the stored one, or for a
    /// lean normaliser the one read again from its verified source file (`ERR_SOURCE` when it has none
    /// or it changed).
    fn bank_for_add(&self, query: bool, metric: Metric, dim: usize) -> Result<std::borrow::Cow<'_, [f32]>> {
        let (name, stored) = if query { ("queryBank", &self.query_bank) } else { ("galleryBank", &self.gallery_bank) };
        let Some(l) = &self.lean else { return Ok(std::borrow::Cow::Borrowed(&stored[..])) };
        let src = if query { &l.query_bank } else { &l.gallery_bank };
        let Some(src) = src else {
            return Err(source_err(format!(
                "this normaliser was fitted with keep: 'statistics' from an in-memory {name}, so it holds no {name} to compute the new items' statistics from; fit from a {name} file (readNpy(path, {{ mmap: true }}) or --{}) to keep addGallery available",
                if query { "query-bank" } else { "gallery-bank" }
            )));
        };
        let f = SourceFile::open(&src.path, Some((src.file_len, src.crc)), name)?;
        if f.cols != dim {
            return Err(source_err(format!("{}: the {name} source file has dim {}, gallery has dim {dim}", f.path.display(), f.cols)));
        }
        let mut v = Vec::new();
        f.read_rows(0, f.rows, &mut v)?;
        let m = MatRef::new(&v, f.rows, dim, name)?;
        m.check_finite(name)?;
        Ok(std::borrow::Cow::Owned(prepare(m, metric, name)?.into_owned()))
    }

    /// Similarity-mode twin of [`Self::add_gallery_embeddings`]: the new items' bank similarities,
    /// `query_bank_sims` (m_q × n_new) and `gallery_bank_sims` (m_g × n_new), rows in the same bank
    /// order as at fit.
    pub fn add_gallery_similarities(&self, query_bank_sims: Option<MatRef>, gallery_bank_sims: Option<MatRef>, n_new: usize, ctl: &Control) -> Result<Normalizer> {
        if self.mode != Mode::Similarities {
            return Err(Error::param("this normaliser was fitted from embeddings; add gallery items as embeddings"));
        }
        if self.method.info().gallery_dependent {
            return Err(Error::unsupported(format!(
                "method '{}' depends on the whole gallery and a similarity-mode normaliser does not keep the old bank × gallery similarities: fit again with the bank similarities of the whole gallery",
                self.method.as_str()
            )));
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
                self.check_sources()?;
                let q = prepare(input, metric, "queries")?;
                let mut raw = vec![0f32; nq * c];
                match self.gallery_view(dim) {
                    GalleryView::F32 { data, .. } => raw.par_chunks_mut(c.max(1)).enumerate().for_each(|(i, out)| {
                        dot_gather(&q[i * dim..(i + 1) * dim], data, dim, &candidates[i * c..(i + 1) * c], out);
                    }),
                    view => raw.par_chunks_mut(c.max(1)).enumerate().try_for_each_init(Vec::new, |rows, (i, out)| -> Result<()> {
                        view.gather(&candidates[i * c..(i + 1) * c], rows)?;
                        dot_rows(&q[i * dim..(i + 1) * dim], 1, rows, c, dim, out, c);
                        Ok(())
                    })?,
                }
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

    /// `ERR_UNSUPPORTED` unless the method is bias-reducible (descriptor `bias_reducible`): only
    /// then does an inner product of augmented vectors rank exactly as the method.
    pub fn check_servable(&self) -> Result<()> {
        if self.method.info().bias_reducible {
            return Ok(());
        }
        Err(Error::unsupported(format!(
            "method '{}' is not bias-reducible: its ranking is not an inner product of augmented vectors, so it cannot be served from a vector index; search with the normaliser, or re-rank an index's raw candidates with rerank()",
            self.method.as_str()
        )))
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
        self.check_servable()?;
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
        self.check_sources()?;
        let mut gbuf = Vec::new();
        let rows = self.gallery_view(dim).rows(start, count, &mut gbuf)?;
        for (r, j) in (start..start + count).enumerate() {
            out[r * w..r * w + dim].copy_from_slice(&rows[r * dim..(r + 1) * dim]);
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
        self.check_servable()?;
        let (metric, dim) = self.embeddings()?;
        if queries.cols != dim {
            return Err(Error::shape(format!("queries have dim {}, gallery has dim {dim}", queries.cols)));
        }
        queries.check_finite("queries")?;
        let q = prepare(queries, metric, "queries")?;
        let nq = queries.rows;
        let top1 = if self.augmented_gated() {
            let raw = none::scorer(&self.params, self.n_gallery);
            self.check_sources()?;
            Some(raw.search_embeddings_view(&q, nq, self.gallery_view(dim), 1, ctl)?.0)
        } else {
            None
        };
        Ok(self.augment_prepared(&q, nq, dim, top1.as_deref()))
    }

    /// [`Self::augment_queries`] with each query's raw top-1 gallery index given (`top1`, one per
    /// query; ignored by ungated methods, may then be empty), e.g. what an external inner-product
    /// index returned for `[q ; 0…]`. Needs no stored gallery vectors.
    pub fn augment_queries_with_top1(&self, queries: MatRef, top1: &[u32]) -> Result<(Vec<f32>, usize)> {
        self.check_servable()?;
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
