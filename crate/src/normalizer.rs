//! The fitted normaliser: a method, its parameters, the per-gallery statistics fitted from the
//! banks, and (in embeddings mode) the prepared gallery and banks kept in native memory.

use crate::control::Control;
use crate::error::{Error, Result};
use crate::kernels::similarity::{matmul_abt_par, prepare, Metric};
use crate::matrix::MatRef;
use crate::methods::scorer::Scorer;
use crate::methods::stats::{bank_stats, BankStats, Source};
use crate::methods::{none, Method, Params};

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
    scorer: Scorer,
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
    ) -> Result<Normalizer> {
        params.validate(method)?;
        let (rq, rg) = method.requests(&params);
        if rq.is_some() != query_stats.is_some() || rg.is_some() != gallery_stats.is_some() {
            return Err(Error::format(format!("statistics do not match method '{}'", method.as_str())));
        }
        let scorer = method.scorer(&params, query_stats.as_ref(), gallery_stats.as_ref(), n_gallery);
        Ok(Normalizer { method, params, mode, n_gallery, gallery, query_bank, gallery_bank, query_stats, gallery_stats, scorer })
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
        let qb = check_bank(method, query_bank, rq.is_some(), "queryBank", "query-modality embeddings, e.g. training captions")?;
        let gb = check_bank(method, gallery_bank, rg.is_some(), "galleryBank", "gallery-modality embeddings, e.g. training images")?;
        for (b, name) in [(qb, "queryBank"), (gb, "galleryBank")] {
            if let Some(b) = b {
                if b.cols != gallery.cols {
                    return Err(Error::shape(format!("{name} has dim {}, gallery has dim {}", b.cols, gallery.cols)));
                }
            }
        }
        gallery.check_finite("gallery")?;
        if let Some(b) = qb {
            b.check_finite("queryBank")?;
        }
        if let Some(b) = gb {
            b.check_finite("galleryBank")?;
        }
        let g = prepare(gallery, metric, "gallery")?.into_owned();
        let qbv = qb.map(|b| prepare(b, metric, "queryBank").map(|c| c.into_owned())).transpose()?.unwrap_or_default();
        let gbv = gb.map(|b| prepare(b, metric, "galleryBank").map(|c| c.into_owned())).transpose()?.unwrap_or_default();
        let (n, d) = (gallery.rows, gallery.cols);
        let qs = match (rq, qb) {
            (Some(r), Some(b)) => Some(bank_stats(Source::Embeddings { bank: &qbv, gallery: &g, dim: d, normalize_bank: false }, b.rows, n, r, ctl, "fit:queryBank")?),
            _ => None,
        };
        let gs = match (rg, gb) {
            (Some(r), Some(b)) => Some(bank_stats(Source::Embeddings { bank: &gbv, gallery: &g, dim: d, normalize_bank: false }, b.rows, n, r, ctl, "fit:galleryBank")?),
            _ => None,
        };
        let scorer = method.scorer(&params, qs.as_ref(), gs.as_ref(), n);
        Ok(Normalizer {
            method,
            params,
            mode: Mode::Embeddings { metric, dim: d },
            n_gallery: n,
            gallery: g,
            query_bank: qbv,
            gallery_bank: gbv,
            query_stats: qs,
            gallery_stats: gs,
            scorer,
        })
    }

    /// Fits from precomputed similarities: `query_bank_sims` (m_q × n_g, query bank × gallery,
    /// cross-modal) and `gallery_bank_sims` (m_g × n_g, gallery bank × gallery, same modality), on
    /// the same scale as the query × gallery matrices scored later (e.g. ×100 logits).
    pub fn fit_similarities(method: Method, params: Params, query_bank_sims: Option<MatRef>, gallery_bank_sims: Option<MatRef>, gallery_count: Option<usize>, ctl: &Control) -> Result<Normalizer> {
        params.validate(method)?;
        let (rq, rg) = method.requests(&params);
        let qs_in = check_bank(method, query_bank_sims, rq.is_some(), "queryBankSims", "query bank × gallery similarities")?;
        let gs_in = check_bank(method, gallery_bank_sims, rg.is_some(), "galleryBankSims", "gallery bank × gallery similarities")?;
        let mut n: Option<usize> = gallery_count;
        for (m, name) in [(qs_in, "queryBankSims"), (gs_in, "galleryBankSims")] {
            if let Some(m) = m {
                match n {
                    Some(n0) if n0 != m.cols => {
                        return Err(Error::shape(format!("{name} has {} columns (gallery items), expected {n0}", m.cols)));
                    }
                    _ => n = Some(m.cols),
                }
                m.check_finite(name)?;
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
        let scorer = method.scorer(&params, qs.as_ref(), gs.as_ref(), n);
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
            scorer,
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

    /// Raw similarities of `queries` against the stored gallery (embeddings mode only).
    fn raw_sims(&self, queries: &MatRef) -> Result<Vec<f32>> {
        let Mode::Embeddings { metric, dim } = self.mode else { unreachable!() };
        self.check_queries(queries, dim)?;
        let q = prepare(*queries, metric, "queries")?;
        let mut out = vec![0f32; queries.rows * self.n_gallery];
        matmul_abt_par(&q, queries.rows, &self.gallery, self.n_gallery, dim, &mut out);
        Ok(out)
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
        match self.mode {
            Mode::Embeddings { .. } => {
                let raw = self.raw_sims(&input)?;
                Ok((self.scorer.scores_from_sims(&raw, input.rows), self.n_gallery))
            }
            Mode::Similarities => {
                input.check_finite("similarities")?;
                let sc = self.scorer_for_sims(&input)?;
                Ok((sc.scores_from_sims(input.data, input.rows), input.cols))
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
                let (i, s) = sc.search_sims(input.data, input.rows, ke);
                Ok((i, s, ke))
            }
        }
    }
}
