//! DN — distribution normalisation (Zhou et al., "Test-Time Distribution Normalization for
//! Contrastively Learned Vision-Language Models", NeurIPS 2023), combined with NNN as in
//! multimodal-interpretability/nnn, `nnn/dn_ranker.py` (docs/methods.md, "DN").
//!
//! Queries move by `−λμ_Q` and the gallery by `−λμ_G`, where `μ_Q` (`μ_G`) is the mean of the
//! prepared query-bank (gallery-bank) rows; NNN (k, α) then runs on the shifted vectors:
//!
//! ```text
//! ℓ(q, j) = (q − λμ_Q)·g'_j − α · mean top-k_b (r_b − λμ_Q)·g'_j,     g'_j = g_j − λμ_G
//! ```
//!
//! Under cosine the rows are normalised first, then shifted, and never renormalised. With α = 0 this
//! is plain DN, with λ = 0 plain NNN.
//!
//! **How it is served.** The gallery transform stores `g'` (the gallery as the index sees it). With
//! `c_j = λ μ_Q·g'_j`, the query shift contributes `−c_j` (per item, independent of q), and
//! subtracting the constant `c_j` from a whole bank column leaves its top-k set unchanged, so
//! `mean top-k_b (r_b − λμ_Q)·g'_j = t_j − c_j` with `t_j` the top-k mean of the **unshifted** bank
//! against `g'` (the ordinary NNN statistic of the stored gallery). Hence
//! `ℓ = q·g'_j − b_j` with `b_j = c_j + α(t_j − c_j)`: one bias per item (bias-reducible, docs/methods.md
//! §4), and the bank is kept unshifted (the leak guard compares test queries with it).
//!
//! **State** ([`MethodState`]): `dnMeanQuery` (μ_Q, d values), `dnMeanGallery` (μ_G, d values) and
//! `dnQueryShift` (`c_j`, one per gallery item; `addGallery` appends). The means come from the banks,
//! so both banks are required (`ERR_EMPTY_BANK` otherwise); explicit means are not accepted yet.
//!
//! **Parameters.** `lambda` (λ ≥ 0, default 0.5, the package's `dn_lambda`), and NNN's own `nnnK` /
//! `nnnAlpha` (defaults 128 / 0.75): DN runs NNN, so it reads the same k and α. The package's
//! `DNRanker` defaults are k = 256, α = 0.5; pass those to reproduce it.

use rayon::prelude::*;

use super::scorer::{Gate, Scorer};
use super::stats::{BankStats, StatsRequest};
use super::{GalleryInput, MethodInfo, MethodState, Params};
use crate::control::Control;
use crate::error::{Error, Result};

/// Largest accepted λ (the finite-score contract of `methods::scorer`; a shift that leaves the
/// `f32` range is refused at fit with `ERR_PARAM`).
pub const MAX_LAMBDA: f64 = super::scorer::MAX_PARAM;

/// State names (see the module docs).
pub const MEAN_QUERY: &str = "dnMeanQuery";
pub const MEAN_GALLERY: &str = "dnMeanGallery";
pub const QUERY_SHIFT: &str = "dnQueryShift";

/// The descriptor (registry entry) of `dn`.
pub const INFO: MethodInfo = MethodInfo {
    id: "dn",
    summary: "(q − λμ_Q)·(g − λμ_G) − α·mean of the k largest shifted bank similarities of j",
    query_bank: true,
    gallery_bank: true,
    params: &["lambda", "nnnK", "nnnAlpha"],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 9,
    requests,
    scorer: |p, q, _, s, n| scorer(p, q.expect("query bank stats"), s, n),
    embeddings_only: true,
    gallery_transform: Some(transform),
    check_state: |_, s, shape| check_state(s, shape.n_gallery, shape.dim),
    ..MethodInfo::BASE
};

/// NNN's top-k mean of the stored (shifted) gallery against the query bank. The gallery bank is used
/// for its mean only (no statistics).
pub fn requests(p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (Some(StatsRequest { top_values: Some(p.nnn_k), ..Default::default() }), None)
}

/// Mean of the `rows.len() / dim` rows, in `f64`, rows summed in order.
pub fn mean_rows(rows: &[f32], dim: usize) -> Vec<f64> {
    let m = rows.len() / dim.max(1);
    let mut acc = vec![0f64; dim];
    for r in rows.chunks_exact(dim.max(1)) {
        for (a, &x) in acc.iter_mut().zip(r) {
            *a += x as f64;
        }
    }
    for a in acc.iter_mut() {
        *a /= m.max(1) as f64;
    }
    acc
}

/// Shifts `items` by `−λμ_G` (rounded once to `f32`) and returns them with `c_j = λ μ_Q·g'_j`
/// (computed in `f64` from the stored `f32` row). Pure and per row (so a row's values do not depend
/// on the batch it came in).
pub fn shift(items: &[f32], dim: usize, lambda: f64, mean_query: &[f64], mean_gallery: &[f64]) -> (Vec<f32>, Vec<f64>) {
    let mut out = vec![0f32; items.len()];
    let n = items.len() / dim.max(1);
    let mut c = vec![0f64; n];
    out.par_chunks_mut(dim.max(1)).zip(items.par_chunks(dim.max(1))).zip(c.par_iter_mut()).for_each(|((o, g), cj)| {
        let mut dot = 0f64;
        for x in 0..dim {
            o[x] = (g[x] as f64 - lambda * mean_gallery[x]) as f32;
            dot += mean_query[x] * o[x] as f64;
        }
        *cj = lambda * dot;
    });
    (out, c)
}

fn transform(inp: &GalleryInput, state: &mut MethodState, _ctl: &Control) -> Result<Vec<f32>> {
    let d = inp.dim;
    if inp.n_existing == 0 {
        if inp.query_bank.is_empty() || inp.gallery_bank.is_empty() {
            return Err(Error::empty_bank("method 'dn' needs a non-empty queryBank and galleryBank: the shifts are their means μ_Q and μ_G"));
        }
        state.set(MEAN_QUERY, mean_rows(inp.query_bank, d));
        state.set(MEAN_GALLERY, mean_rows(inp.gallery_bank, d));
        state.set(QUERY_SHIFT, Vec::new());
    }
    let (mq, mg) = match (state.get(MEAN_QUERY), state.get(MEAN_GALLERY)) {
        (Some(a), Some(b)) if a.len() == d && b.len() == d => (a.to_vec(), b.to_vec()),
        _ => return Err(Error::format("dn: the fitted means are missing from the normaliser state")),
    };
    let lambda = inp.params.lambda;
    let (out, c) = shift(inp.items, d, lambda, &mq, &mg);
    if out.iter().any(|x| !x.is_finite()) || c.iter().any(|x| !x.is_finite()) {
        return Err(Error::param(format!("lambda = {lambda:e} shifts the gallery outside the float32 range; lower lambda")));
    }
    let mut all = state.get(QUERY_SHIFT).map(|v| v.to_vec()).unwrap_or_default();
    all.extend_from_slice(&c);
    state.set(QUERY_SHIFT, all);
    Ok(out)
}

/// Whether `state` holds both means (`dim` values each) and one shift per item (`n`): the check for
/// the framework's `MethodInfo::check_state` (run before a loaded state reaches the scorer).
pub fn check_state(state: &MethodState, n: usize, dim: usize) -> std::result::Result<(), String> {
    let len = |name| state.get(name).map(|v| v.len());
    if len(MEAN_QUERY) != Some(dim) || len(MEAN_GALLERY) != Some(dim) || len(QUERY_SHIFT) != Some(n) {
        return Err(format!("dn: the state must hold {MEAN_QUERY} and {MEAN_GALLERY} ({dim} values each) and {QUERY_SHIFT} ({n} values)"));
    }
    Ok(())
}

pub fn scorer(p: &Params, q: &BankStats, state: &MethodState, n: usize) -> Scorer {
    let t = q.top_mean.as_ref().expect("top_mean");
    // Present with n values whenever the state was fitted here ([`check_state`] guards loaded ones);
    // never panic on a foreign state: without it the query shift term is taken as 0.
    let zeros = vec![0.0; n];
    let c = state.get(QUERY_SHIFT).filter(|c| c.len() == n).unwrap_or(&zeros);
    Scorer {
        scale: 1.0,
        bias: vec![t.iter().zip(c).map(|(t, c)| c + p.nnn_alpha * (t - c)).collect()],
        gate: Gate::None,
        offset_k: 0,
        n_gallery: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::kernels::similarity::Metric;
    use crate::matrix::MatRef;
    use crate::methods::Method;
    use crate::normalizer::Normalizer;

    type M = Vec<Vec<f64>>;

    /// Deterministic data with a shared offset per modality (a cone, as in real embeddings).
    fn data(rows: usize, dim: usize, seed: u64, offset: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..rows * dim)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 + if i % dim < 3 { offset } else { 0.0 }
            })
            .collect()
    }

    fn to_m(x: &[f32], dim: usize, cosine: bool) -> M {
        x.chunks(dim)
            .map(|r| {
                let n = if cosine { r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() } else { 1.0 };
                r.iter().map(|&v| v as f64 / n).collect()
            })
            .collect()
    }

    fn mean(m: &M) -> Vec<f64> {
        let d = m[0].len();
        (0..d).map(|x| m.iter().map(|r| r[x]).sum::<f64>() / m.len() as f64).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn mean_top(mut xs: Vec<f64>, k: usize) -> f64 {
        xs.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let k = k.min(xs.len());
        xs[..k].iter().sum::<f64>() / k as f64
    }

    /// The float64 reference of docs/methods.md "DN": shift everything, then NNN on the shifted vectors.
    fn reference(p: &Params, q: &M, g: &M, r: &M, h: &M) -> M {
        let (mq, mg) = (mean(r), mean(h));
        let sh = |v: &[f64], mu: &[f64]| -> Vec<f64> { v.iter().zip(mu).map(|(a, b)| a - p.lambda * b).collect() };
        let g2: M = g.iter().map(|x| sh(x, &mg)).collect();
        let r2: M = r.iter().map(|x| sh(x, &mq)).collect();
        let bias: Vec<f64> = g2.iter().map(|gj| p.nnn_alpha * mean_top(r2.iter().map(|rb| dot(rb, gj)).collect(), p.nnn_k)).collect();
        q.iter().map(|qi| { let q2 = sh(qi, &mq); g2.iter().zip(&bias).map(|(gj, b)| dot(&q2, gj) - b).collect() }).collect()
    }

    const D: usize = 24;

    struct Case {
        q: Vec<f32>,
        g: Vec<f32>,
        r: Vec<f32>,
        h: Vec<f32>,
        nq: usize,
        ng: usize,
        mq: usize,
        mg: usize,
    }

    fn case(seed: u64) -> Case {
        let (nq, ng, mq, mg) = (37, 53, 71, 29);
        Case { q: data(nq, D, seed, 0.8), g: data(ng, D, seed + 1, -0.6), r: data(mq, D, seed + 2, 0.8), h: data(mg, D, seed + 3, -0.6), nq, ng, mq, mg }
    }

    fn mat(x: &[f32], rows: usize) -> MatRef<'_> {
        MatRef::new(x, rows, D, "m").unwrap()
    }

    fn fit(m: Method, p: Params, metric: Metric, c: &Case) -> Normalizer {
        Normalizer::fit_embeddings(m, p, metric, mat(&c.g, c.ng), Some(mat(&c.r, c.mq)), Some(mat(&c.h, c.mg)), &Control::none()).unwrap()
    }

    fn scores(n: &Normalizer, c: &Case) -> Vec<f32> {
        n.scores(mat(&c.q, c.nq)).unwrap().0
    }

    fn worst(lib: &[f32], refm: &M) -> f64 {
        refm.iter().flatten().zip(lib).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max)
    }

    fn p(lambda: f64, k: usize, alpha: f64) -> Params {
        Params { lambda, nnn_k: k, nnn_alpha: alpha, ..Params::default() }
    }

    #[test]
    fn matches_the_float64_reference() {
        for (seed, metric) in [(1, Metric::Cosine), (2, Metric::Cosine), (3, Metric::Dot)] {
            let c = case(seed);
            let cos = metric == Metric::Cosine;
            let (q, g, r, h) = (to_m(&c.q, D, cos), to_m(&c.g, D, cos), to_m(&c.r, D, cos), to_m(&c.h, D, cos));
            for params in [Params::default(), p(0.5, 5, 0.75), p(1.3, 1, 0.2), p(0.25, 1000, 1.5)] {
                let n = fit(Method::Dn, params, metric, &c);
                let unit = if cos { 1.0 } else { 30.0 };
                let e = worst(&scores(&n, &c), &reference(&params, &q, &g, &r, &h));
                assert!(e < 2e-5 * unit * (1.0 + params.lambda).powi(2), "{metric:?} {params:?}: {e}");
                // search agrees with the score matrix
                let (idx, sc, k) = n.search(mat(&c.q, c.nq), 5, &Control::none()).unwrap();
                let full = scores(&n, &c);
                for i in 0..c.nq {
                    for t in 0..k {
                        assert_eq!(sc[i * k + t], full[i * c.ng + idx[i * k + t] as usize]);
                    }
                }
            }
        }
    }

    #[test]
    fn lambda_zero_is_nnn_bit_for_bit() {
        let c = case(4);
        for metric in [Metric::Cosine, Metric::Dot] {
            let dn = fit(Method::Dn, p(0.0, 7, 0.6), metric, &c);
            let nnn = fit(Method::Nnn, p(0.0, 7, 0.6), metric, &c);
            let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(scores(&dn, &c)), bits(scores(&nnn, &c)));
            assert_eq!(dn.search(mat(&c.q, c.nq), 9, &Control::none()).unwrap().0, nnn.search(mat(&c.q, c.nq), 9, &Control::none()).unwrap().0);
        }
    }

    #[test]
    fn alpha_zero_is_the_plain_shifted_dot() {
        let c = case(5);
        let (q, g, r, h) = (to_m(&c.q, D, true), to_m(&c.g, D, true), to_m(&c.r, D, true), to_m(&c.h, D, true));
        let lambda = 0.7;
        let (mq, mg) = (mean(&r), mean(&h));
        let plain: M = q
            .iter()
            .map(|qi| g.iter().map(|gj| (0..D).map(|x| (qi[x] - lambda * mq[x]) * (gj[x] - lambda * mg[x])).sum()).collect())
            .collect();
        let n = fit(Method::Dn, p(lambda, 128, 0.0), Metric::Cosine, &c);
        let e = worst(&scores(&n, &c), &plain);
        assert!(e < 1e-5, "{e}");
        // cosine: normalised, then shifted, not renormalised
        let norm0: f64 = n.gallery[..D].iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        assert!((norm0 - 1.0).abs() > 1e-3, "the stored gallery row is shifted, not renormalised ({norm0})");
    }

    #[test]
    fn bit_identical_on_any_thread_count() {
        let c = case(6);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
                let n = fit(Method::Dn, p(0.5, 9, 0.75), Metric::Cosine, &c);
                (scores(&n, &c).iter().map(|x| x.to_bits()).collect::<Vec<_>>(), n.state.clone(), n.gallery.clone())
            })
        };
        let one = run(1);
        for t in [2, 3, 8] {
            let other = run(t);
            assert_eq!(one.0, other.0, "{t} threads");
            assert_eq!(one.1, other.1);
            assert_eq!(one.2, other.2);
        }
    }

    #[test]
    fn augmented_vectors_give_the_scores() {
        let c = case(7);
        let n = fit(Method::Dn, Params::default(), Metric::Cosine, &c);
        let (ag, w) = n.augmented_gallery().unwrap();
        let (aq, wq) = n.augment_queries(mat(&c.q, c.nq), &Control::none()).unwrap();
        assert_eq!((w, wq), (D + 1, D + 1));
        let sc = scores(&n, &c);
        let s = n.augmented_scale();
        for i in 0..c.nq {
            for j in 0..c.ng {
                let ip: f64 = (0..w).map(|x| aq[i * w + x] as f64 * ag[j * w + x] as f64).sum();
                assert!((s * ip - sc[i * c.ng + j] as f64).abs() < 1e-5, "{i},{j}");
            }
        }
    }

    #[test]
    fn add_gallery_equals_a_fit_on_the_whole_gallery() {
        let c = case(8);
        let ctl = Control::none();
        for split in [1, 20, 52] {
            let part = Normalizer::fit_embeddings(Method::Dn, Params::default(), Metric::Cosine, mat(&c.g[..split * D], split), Some(mat(&c.r, c.mq)), Some(mat(&c.h, c.mg)), &ctl).unwrap();
            let grown = part.add_gallery_embeddings(mat(&c.g[split * D..], c.ng - split), &ctl).unwrap();
            let whole = fit(Method::Dn, Params::default(), Metric::Cosine, &c);
            assert_eq!(grown.gallery, whole.gallery);
            assert_eq!(grown.state, whole.state);
            let (a, b) = (scores(&grown, &c), scores(&whole, &c));
            let e = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(e < 1e-6, "split {split}: {e}");
        }
    }

    #[test]
    fn refusals_and_inputs_untouched() {
        let c = case(9);
        let ctl = Control::none();
        let before = (c.g.clone(), c.r.clone(), c.h.clone());
        let e = Normalizer::fit_embeddings(Method::Dn, Params::default(), Metric::Cosine, mat(&c.g, c.ng), Some(mat(&c.r, c.mq)), None, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::EmptyBank);
        let e = Normalizer::fit_embeddings(Method::Dn, Params::default(), Metric::Cosine, mat(&c.g, c.ng), None, Some(mat(&c.h, c.mg)), &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::EmptyBank);
        let sims = vec![0.5f32; c.mq * c.ng];
        let e = Normalizer::fit_similarities(Method::Dn, Params::default(), Some(MatRef::new(&sims, c.mq, c.ng, "s").unwrap()), None, None, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::Param);
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            assert!(p(bad, 5, 0.5).validate(Method::Dn).is_err(), "{bad}");
        }
        // λ so large the shift leaves f32
        let huge = Normalizer::fit_embeddings(Method::Dn, p(1e30, 5, 0.5), Metric::Dot, mat(&vec![1e30f32; c.ng * D], c.ng), Some(mat(&c.r, c.mq)), Some(mat(&vec![1e30f32; c.mg * D], c.mg)), &ctl);
        assert_eq!(huge.unwrap_err().code, ErrorCode::Param);
        let n = fit(Method::Dn, Params::default(), Metric::Cosine, &c);
        let _ = n.add_gallery_embeddings(mat(&c.g[..3 * D], 3), &ctl).unwrap();
        assert_eq!(before, (c.g.clone(), c.r.clone(), c.h.clone()));
        // the state check
        assert!(check_state(&n.state, n.n_gallery, D).is_ok());
        let mut st = n.state.clone();
        st.set(QUERY_SHIFT, vec![0.0; 2]);
        assert!(check_state(&st, n.n_gallery, D).is_err());
    }
}
