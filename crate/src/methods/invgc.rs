//! InvGC — inverse graph convolution of the gallery (Jian & Wang, "InvGC: Robust Cross-Modal Retrieval
//! by Inverse Graph Convolution", Findings of EMNLP 2023; yimuwangcs/Better_Cross_Modal_Retrieval,
//! `InvGC/InvGC.py`). docs/methods.md, "InvGC", has the math and the official code's deviations.
//!
//! Each gallery row g (prepared: unit under cosine) is pushed away from its neighbours in each bank B
//! (M rows) with a rate r, then renormalised; the two results are averaged and renormalised:
//!
//! ```text
//! LocalAdj (invgcVariant 0, default): g'_B = norm(g − (r/P) Σ_{b ∈ top-P(g)} (g·B_b) B_b),
//!                                      P = ⌊poolRate·M⌋ clamped to [1, M]
//! plain    (invgcVariant 1):          g'_B = norm(g − (r/M) Σ_b (g·B_b − w̄) B_b),
//!                                      w̄ = mean of g_i·B_b over every gallery item i and bank row b
//! g* = norm(½ g'_{gallery bank, r_g} + ½ g'_{query bank, r_q})
//! ```
//!
//! Search is the plain inner product `q·g*` (queries untouched): the gallery transform stores g*, the
//! scorer is `none`'s, and the augmented gallery is g* itself with a zero column.
//!
//! **Streaming.** LocalAdj needs each gallery item's top-P bank rows *with their indices*: gallery
//! items are cut into fixed tiles of [`ITEM_TILE`] processed in parallel; each tile walks the bank in
//! blocks of [`BANK_BLOCK`] rows, scores them with the search kernel [`dot_rows`] (whose value for a
//! pair depends only on the two rows, so an item's result does not depend on its tile, the thread
//! count, or whether it came in a fit or an `addGallery`) and keeps a running top-P; the message
//! Σ W_ib B_b is then gathered in `f64`. No bank × gallery matrix is held. Plain uses the d × d bank
//! Gram matrix `C = BᵀB` and the bank mean: `Σ_b (g·B_b − w̄) B_b = C g − w̄ M μ_B`, `w̄ = ḡ·μ_B`.
//!
//! **addGallery.** LocalAdj is per item (the banks are kept), so adding items equals a fit on the
//! concatenated gallery. Plain depends on the whole gallery through w̄ and the raw gallery is not kept:
//! `addGallery` refuses it with `ERR_PARAM` (refit instead).
//!
//! **Defaults.** The paper and code give no default rates ("required" in our spec); dbnorm uses
//! r_g = r_q = [`DEFAULT_RATE`] for cosine embeddings (see docs/methods.md for how it was chosen) and
//! requires them otherwise. `poolRate` defaults to 0.01 (the official `InvGC` entry point's value).

use rayon::prelude::*;

use super::stats::StatsRequest;
use super::{GalleryInput, MethodInfo, MethodState, Params};
use crate::control::Control;
use crate::error::{Error, Result};
use crate::kernels::dot::dot_rows;
use crate::kernels::similarity::matmul_abt_par;
use crate::kernels::topk::TopK;

/// The cosine default of `rateGallery` and `rateQuery`.
pub const DEFAULT_RATE: f64 = 0.1;
/// Largest accepted rate (the finite-score contract of `methods::scorer`).
pub const MAX_RATE: f64 = super::scorer::MAX_PARAM;

/// Gallery items per parallel task.
pub const ITEM_TILE: usize = 64;
/// Bank rows per streamed block.
pub const BANK_BLOCK: usize = 1024;

/// `invgcVariant` values.
pub const LOCAL_ADJ: usize = 0;
pub const PLAIN: usize = 1;

/// The descriptor (registry entry) of `invgc`.
pub const INFO: MethodInfo = MethodInfo {
    id: "invgc",
    summary: "q·g*: the gallery pushed away from its bank neighbours (inverse graph convolution)",
    query_bank: true,
    gallery_bank: true,
    params: &["rateGallery", "rateQuery", "poolRate", "invgcVariant"],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 10,
    requests,
    scorer: |p, _, _, _, n| super::none::scorer(p, n),
    embeddings_only: true,
    gallery_transform: Some(transform),
    ..MethodInfo::BASE
};

/// No bank statistics: the banks are used by the gallery transform.
pub fn requests(_: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (None, None)
}

/// LocalAdj's neighbourhood size for a bank of `m` rows: `⌊poolRate·m⌋` clamped to `[1, m]` (the
/// official code divides by zero when it is 0).
pub fn pool_size(pool_rate: f64, m: usize) -> usize {
    ((pool_rate * m as f64).floor() as usize).clamp(1, m.max(1))
}

/// LocalAdj messages: for each of the `items.len() / dim` rows, `Σ_{b ∈ top-P} (g·B_b) B_b` in `f64`
/// (row-major, `dim` wide), the top-P under the crate's tie rule (similarity desc, bank index asc).
pub fn local_messages(items: &[f32], bank: &[f32], dim: usize, p: usize, ctl: &Control) -> Result<Vec<f64>> {
    let n = items.len() / dim;
    let m = bank.len() / dim;
    let mut out = vec![0f64; n * dim];
    out.par_chunks_mut(ITEM_TILE * dim).enumerate().try_for_each(|(t, msg)| -> Result<()> {
        ctl.check()?;
        let i0 = t * ITEM_TILE;
        let gt = msg.len() / dim;
        let tile = &items[i0 * dim..(i0 + gt) * dim];
        let mut tops: Vec<TopK> = (0..gt).map(|_| TopK::new(p)).collect();
        let mut buf = vec![0f32; gt * BANK_BLOCK.min(m)];
        for b0 in (0..m).step_by(BANK_BLOCK) {
            let bb = (m - b0).min(BANK_BLOCK);
            dot_rows(tile, gt, &bank[b0 * dim..(b0 + bb) * dim], bb, dim, &mut buf, bb);
            for (r, top) in tops.iter_mut().enumerate() {
                // Bank rows arrive in increasing index, so `>` against the threshold decides ties exactly.
                for (c, &w) in buf[r * bb..(r + 1) * bb].iter().enumerate() {
                    if w as f64 > top.threshold() {
                        top.push(w as f64, (b0 + c) as u32);
                    }
                }
            }
        }
        for (r, top) in tops.iter().enumerate() {
            let acc = &mut msg[r * dim..(r + 1) * dim];
            for (&w, &b) in top.scores().iter().zip(top.indices()) {
                let row = &bank[b as usize * dim..(b as usize + 1) * dim];
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += w * x as f64;
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Plain messages: for each row, `Σ_b (g·B_b − w̄) B_b = C g − w̄ M μ_B` with `C = BᵀB`, `w̄ = ḡ·μ_B`
/// (`gallery_mean` = ḡ over the whole gallery).
pub fn plain_messages(items: &[f32], bank: &[f32], dim: usize, gallery_mean: &[f64]) -> Vec<f64> {
    let m = bank.len() / dim;
    // C = Bᵀ·B through the tiled GEMM on Bᵀ (dim × m).
    let mut bt = vec![0f32; dim * m];
    for (b, row) in bank.chunks_exact(dim).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            bt[x * m + b] = v;
        }
    }
    let mut c = vec![0f32; dim * dim];
    matmul_abt_par(&bt, dim, &bt, dim, m, &mut c);
    let mu = super::dn::mean_rows(bank, dim);
    let wbar: f64 = gallery_mean.iter().zip(&mu).map(|(a, b)| a * b).sum();
    let mut out = vec![0f64; items.len()];
    out.par_chunks_mut(dim).zip(items.par_chunks(dim)).for_each(|(o, g)| {
        for (x, ox) in o.iter_mut().enumerate() {
            let crow = &c[x * dim..(x + 1) * dim];
            let cg: f64 = crow.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum();
            *ox = cg - wbar * m as f64 * mu[x];
        }
    });
    out
}

/// `v / ‖v‖` in place; `false` when `‖v‖` is 0 or not finite.
fn normalise(v: &mut [f64]) -> bool {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if !(n > 0.0 && n.is_finite()) {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= n);
    true
}

/// The InvGC gallery: `items` (n × dim) → g* (n × dim, `f32`), given each bank's messages and the
/// divisor of its message (P for LocalAdj, M for plain).
fn combine(items: &[f32], dim: usize, parts: [(&[f64], f64); 2]) -> Result<Vec<f32>> {
    let mut out = vec![0f32; items.len()];
    let bad = out.par_chunks_mut(dim).zip(items.par_chunks(dim)).enumerate().find_map_any(|(i, (o, g))| {
        let mut sum = vec![0f64; dim];
        for (msg, scale) in parts {
            let mut v: Vec<f64> = g.iter().zip(&msg[i * dim..(i + 1) * dim]).map(|(&x, &mm)| x as f64 - scale * mm).collect();
            if !normalise(&mut v) {
                return Some(i);
            }
            for (s, x) in sum.iter_mut().zip(v) {
                *s += 0.5 * x;
            }
        }
        if !normalise(&mut sum) {
            return Some(i);
        }
        for (ox, s) in o.iter_mut().zip(sum) {
            *ox = s as f32;
        }
        None
    });
    match bad {
        Some(i) => Err(Error::non_finite(format!("invgc: gallery item {i} has no direction after the convolution (its vector cancels out); lower rateGallery / rateQuery"))),
        None => Ok(out),
    }
}

fn transform(inp: &GalleryInput, _state: &mut MethodState, ctl: &Control) -> Result<Vec<f32>> {
    let (d, p) = (inp.dim, inp.params);
    if inp.query_bank.is_empty() || inp.gallery_bank.is_empty() {
        return Err(Error::empty_bank("method 'invgc' needs a non-empty queryBank and galleryBank (its graph links the gallery to both)"));
    }
    let (mq, mg) = (inp.query_bank.len() / d, inp.gallery_bank.len() / d);
    match p.invgc_variant {
        LOCAL_ADJ => {
            let (pg, pq) = (pool_size(p.pool_rate, mg), pool_size(p.pool_rate, mq));
            let msg_g = local_messages(inp.items, inp.gallery_bank, d, pg, ctl)?;
            let msg_q = local_messages(inp.items, inp.query_bank, d, pq, ctl)?;
            combine(inp.items, d, [(&msg_g, p.rate_gallery / pg as f64), (&msg_q, p.rate_query / pq as f64)])
        }
        _ => {
            if inp.n_existing > 0 {
                return Err(Error::param(
                    "invgc with invgcVariant 1 (plain) depends on the whole gallery (its centring uses the mean over every gallery item): addGallery cannot extend it; fit again on the whole gallery",
                ));
            }
            let gmean = super::dn::mean_rows(inp.items, d);
            ctl.check()?;
            let msg_g = plain_messages(inp.items, inp.gallery_bank, d, &gmean);
            ctl.check()?;
            let msg_q = plain_messages(inp.items, inp.query_bank, d, &gmean);
            combine(inp.items, d, [(&msg_g, p.rate_gallery / mg as f64), (&msg_q, p.rate_query / mq as f64)])
        }
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

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn norm(v: Vec<f64>) -> Vec<f64> {
        let n = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// One bank's convolution in float64 (docs/methods.md "InvGC"): LocalAdj with P neighbours, or
    /// plain (centred by the mean over the whole gallery × bank similarity matrix).
    fn conv(g: &M, b: &M, rate: f64, plain: bool, pool: usize) -> M {
        let w: M = g.iter().map(|gi| b.iter().map(|bb| dot(gi, bb)).collect()).collect();
        let wbar = w.iter().flatten().sum::<f64>() / (g.len() * b.len()) as f64;
        g.iter()
            .zip(&w)
            .map(|(gi, wi)| {
                let mut coef = vec![0f64; b.len()];
                let div = if plain {
                    for (c, x) in coef.iter_mut().zip(wi) {
                        *c = x - wbar;
                    }
                    b.len()
                } else {
                    let mut order: Vec<usize> = (0..b.len()).collect();
                    order.sort_by(|&x, &y| wi[y].partial_cmp(&wi[x]).unwrap().then(x.cmp(&y)));
                    for &o in &order[..pool] {
                        coef[o] = wi[o];
                    }
                    pool
                };
                let mut v = gi.clone();
                for (c, bb) in coef.iter().zip(b) {
                    for (x, y) in v.iter_mut().zip(bb) {
                        *x -= rate / div as f64 * c * y;
                    }
                }
                norm(v)
            })
            .collect()
    }

    fn reference(g: &M, r: &M, h: &M, p: &Params) -> M {
        let plain = p.invgc_variant == PLAIN;
        let (pg, pq) = (pool_size(p.pool_rate, h.len()), pool_size(p.pool_rate, r.len()));
        let a = conv(g, h, p.rate_gallery, plain, pg);
        let b = conv(g, r, p.rate_query, plain, pq);
        a.iter().zip(&b).map(|(x, y)| norm(x.iter().zip(y).map(|(u, v)| 0.5 * u + 0.5 * v).collect())).collect()
    }

    const D: usize = 20;

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
        let (nq, ng, mq, mg) = (31, 150, 230, 117);
        Case { q: data(nq, D, seed, 0.8), g: data(ng, D, seed + 1, -0.6), r: data(mq, D, seed + 2, 0.8), h: data(mg, D, seed + 3, -0.6), nq, ng, mq, mg }
    }

    fn mat(x: &[f32], rows: usize) -> MatRef<'_> {
        MatRef::new(x, rows, D, "m").unwrap()
    }

    fn fit(p: Params, metric: Metric, c: &Case) -> Normalizer {
        Normalizer::fit_embeddings(Method::Invgc, p, metric, mat(&c.g, c.ng), Some(mat(&c.r, c.mq)), Some(mat(&c.h, c.mg)), &Control::none()).unwrap()
    }

    fn p(rg: f64, rq: f64, pool: f64, variant: usize) -> Params {
        Params { rate_gallery: rg, rate_query: rq, pool_rate: pool, invgc_variant: variant, ..Params::default() }
    }

    fn worst(lib: &[f32], refm: &M) -> f64 {
        refm.iter().flatten().zip(lib).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max)
    }

    #[test]
    fn gallery_and_scores_match_the_float64_reference() {
        for (seed, metric) in [(1, Metric::Cosine), (2, Metric::Cosine), (3, Metric::Dot)] {
            let c = case(seed);
            let cos = metric == Metric::Cosine;
            let (q, g, r, h) = (to_m(&c.q, D, cos), to_m(&c.g, D, cos), to_m(&c.r, D, cos), to_m(&c.h, D, cos));
            for params in [Params::default(), p(0.3, 1.2, 0.05, LOCAL_ADJ), p(1.0, 0.1, 0.5, LOCAL_ADJ), p(0.5, 0.5, 0.01, PLAIN), p(2.0, 0.7, 0.01, PLAIN)] {
                let n = fit(params, metric, &c);
                let gstar = reference(&g, &r, &h, &params);
                let e = worst(&n.gallery, &gstar);
                assert!(e < 2e-6, "{metric:?} {params:?}: gallery {e}");
                let s: M = q.iter().map(|qi| gstar.iter().map(|gj| dot(qi, gj)).collect()).collect();
                let e = worst(&n.scores(mat(&c.q, c.nq)).unwrap().0, &s);
                assert!(e < if cos { 2e-6 } else { 2e-5 }, "{metric:?} {params:?}: scores {e}");
            }
        }
    }

    #[test]
    fn rates_zero_give_the_raw_cosine() {
        let c = case(4);
        for variant in [LOCAL_ADJ, PLAIN] {
            let n = fit(p(0.0, 0.0, 0.01, variant), Metric::Cosine, &c);
            let raw = Normalizer::fit_embeddings(Method::None, Params::default(), Metric::Cosine, mat(&c.g, c.ng), None, None, &Control::none()).unwrap();
            let (a, b) = (n.scores(mat(&c.q, c.nq)).unwrap().0, raw.scores(mat(&c.q, c.nq)).unwrap().0);
            let e = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(e < 1e-6, "{e}");
        }
    }

    #[test]
    fn pool_size_is_clamped_to_the_bank() {
        assert_eq!(pool_size(0.01, 50), 1, "⌊0.5⌋ = 0 is clamped to 1 (the official code divides by zero)");
        assert_eq!(pool_size(0.01, 415), 4);
        assert_eq!(pool_size(1.0, 415), 415);
        assert_eq!(pool_size(1e-9, 7), 1);
        // P = 1 and P = M against the reference
        let c = case(5);
        let (g, r, h) = (to_m(&c.g, D, true), to_m(&c.r, D, true), to_m(&c.h, D, true));
        for pool in [1e-9, 1.0] {
            let params = p(0.8, 0.4, pool, LOCAL_ADJ);
            let e = worst(&fit(params, Metric::Cosine, &c).gallery, &reference(&g, &r, &h, &params));
            assert!(e < 2e-6, "{pool}: {e}");
        }
    }

    #[test]
    fn bit_identical_on_any_thread_count() {
        let c = case(6);
        for variant in [LOCAL_ADJ, PLAIN] {
            let run = |t: usize| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap().install(|| fit(p(0.5, 0.5, 0.03, variant), Metric::Cosine, &c).gallery);
            let one = run(1);
            for t in [2, 5] {
                assert_eq!(one, run(t), "{t} threads");
            }
        }
    }

    #[test]
    fn add_gallery_equals_a_fit_on_the_whole_gallery() {
        let c = case(7);
        let ctl = Control::none();
        let params = p(0.6, 0.9, 0.05, LOCAL_ADJ);
        let whole = fit(params, Metric::Cosine, &c);
        for split in [1, 64, 100] {
            let part = Normalizer::fit_embeddings(Method::Invgc, params, Metric::Cosine, mat(&c.g[..split * D], split), Some(mat(&c.r, c.mq)), Some(mat(&c.h, c.mg)), &ctl).unwrap();
            let grown = part.add_gallery_embeddings(mat(&c.g[split * D..], c.ng - split), &ctl).unwrap();
            assert_eq!(grown.gallery, whole.gallery, "split {split}");
        }
        // plain depends on the whole gallery: refused
        let plain = fit(p(0.5, 0.5, 0.01, PLAIN), Metric::Cosine, &c);
        let e = plain.add_gallery_embeddings(mat(&c.g[..D], 1), &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::Param);
        assert!(e.message.contains("whole gallery"), "{}", e.message);
    }

    #[test]
    fn augmented_vectors_are_the_new_gallery() {
        let c = case(8);
        let n = fit(Params::default(), Metric::Cosine, &c);
        let (ag, w) = n.augmented_gallery().unwrap();
        let (aq, _) = n.augment_queries(mat(&c.q, c.nq), &Control::none()).unwrap();
        let sc = n.scores(mat(&c.q, c.nq)).unwrap().0;
        for j in 0..c.ng {
            assert_eq!(&ag[j * w..j * w + D], &n.gallery[j * D..(j + 1) * D]);
            assert_eq!(ag[j * w + D], 0.0);
        }
        for i in 0..c.nq {
            for j in 0..c.ng {
                let ip: f64 = (0..w).map(|x| aq[i * w + x] as f64 * ag[j * w + x] as f64).sum();
                assert!((ip - sc[i * c.ng + j] as f64).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn refusals_and_inputs_untouched() {
        let c = case(9);
        let ctl = Control::none();
        let before = (c.g.clone(), c.r.clone(), c.h.clone());
        for (qb, gb) in [(true, false), (false, true)] {
            let e = Normalizer::fit_embeddings(
                Method::Invgc,
                Params::default(),
                Metric::Cosine,
                mat(&c.g, c.ng),
                qb.then(|| mat(&c.r, c.mq)),
                gb.then(|| mat(&c.h, c.mg)),
                &ctl,
            )
            .unwrap_err();
            assert_eq!(e.code, ErrorCode::EmptyBank);
        }
        let sims = vec![0.5f32; c.mq * c.ng];
        let e = Normalizer::fit_similarities(Method::Invgc, Params::default(), Some(MatRef::new(&sims, c.mq, c.ng, "s").unwrap()), None, None, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::Param);
        for bad in [p(-0.1, 0.5, 0.01, 0), p(0.5, f64::NAN, 0.01, 0), p(0.5, 0.5, 0.0, 0), p(0.5, 0.5, 1.5, 0), p(0.5, 0.5, 0.01, 2)] {
            assert!(bad.validate(Method::Invgc).is_err(), "{bad:?}");
        }
        let n = fit(Params::default(), Metric::Cosine, &c);
        let _ = n.add_gallery_embeddings(mat(&c.g[..2 * D], 2), &ctl).unwrap();
        assert_eq!(before, (c.g.clone(), c.r.clone(), c.h.clone()));
        // a gallery row that the convolution cancels: g = B_0 with one bank row and rate 1 (P = 1)
        let one = vec![0.6f32, 0.8].into_iter().chain(std::iter::repeat(0.0).take(D - 2)).collect::<Vec<f32>>();
        let e = Normalizer::fit_embeddings(Method::Invgc, p(1.0, 1.0, 0.01, LOCAL_ADJ), Metric::Cosine, mat(&one, 1), Some(mat(&one, 1)), Some(mat(&one, 1)), &ctl);
        assert!(e.is_err() || e.unwrap().gallery.iter().all(|x| x.is_finite()));
    }
}
