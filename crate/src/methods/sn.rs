//! SN — Sinkhorn normalisation with a query bank (Pan, Wang, Wu, Zhang & Bu, "Hubness Reduction with
//! Dual Bank Sinkhorn Normalization for Cross-Modal Retrieval", ACM MM 2025, arXiv 2508.02538;
//! ppanzx/DBSN, Image_Retrieval/dbsn.py, `Sinkhorn_Normalization`).
//!
//! The query bank × gallery similarities `C_jb = P^q_bj` are balanced by log-domain Sinkhorn
//! scaling with temperature τ and uniform marginals ([`super::sinkhorn`]); the gallery potentials
//! give a per-item bias `h_j = −τ·log u_j` and the score `ℓ(q, j) = s − h_j`. The bias depends on
//! the whole gallery (`gallery_dependent`); the test queries are never used. With the bank
//! potentials frozen at uniform, `h_j = τ·L_q(j)` + const with β = 1/τ: IS (tested).

use super::sinkhorn;
use super::MethodInfo;

/// The descriptor (registry entry) of `sn`.
pub const INFO: MethodInfo = MethodInfo {
    id: "sn",
    summary: "s − h(j), h = −τ·log u: Sinkhorn potentials of query bank × gallery",
    query_bank: true,
    gallery_bank: false,
    params: &["tau", "iterations", "tol"],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 7,
    requests: |_| (None, None),
    scorer: |p, _, _, state, n| sinkhorn::scorer(p, state, n),
    gallery_dependent: true,
    fit_state: Some(|p, inputs, _, _, ctl| sinkhorn::fit_state(p, inputs, false, ctl)),
    ..MethodInfo::BASE
};

#[cfg(test)]
mod tests {
    use super::super::sinkhorn::{log_u_given_v, Source};
    use super::super::{Method, Params};
    use crate::control::Control;
    use crate::kernels::similarity::Metric;
    use crate::matrix::MatRef;
    use crate::normalizer::Normalizer;

    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn data(seed: u64, rows: usize, d: usize) -> Vec<f32> {
        let mut r = rng(seed);
        (0..rows * d).map(|_| (r() * 2.0 - 1.0) as f32).collect()
    }

    fn m(x: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
        MatRef::new(x, rows, cols, "x").unwrap()
    }

    fn p(tau: f64, iterations: usize) -> Params {
        Params { tau, iterations, ..Params::default() }
    }

    /// With the bank potentials frozen at uniform, one row sweep gives `log u_j = −ln n + ln m −
    /// L_q(j)` with `L_q = LSE_b(P^q_bj/τ)`: the IS bias at β = 1/τ up to a constant, so SN-frozen
    /// scores `s − h` equal IS scores divided by β, shifted by one constant.
    #[test]
    fn sn_with_v_frozen_uniform_equals_is() {
        let (ng, mq, d, tau) = (300, 700, 16, 0.05);
        let (g, r) = (data(1, ng, d), data(2, mq, d));
        let ctl = Control::none();
        let is = Normalizer::fit_embeddings(Method::Is, Params { beta_query: 1.0 / tau, ..Params::default() }, Metric::Cosine, m(&g, ng, d), Some(m(&r, mq, d)), None, &ctl).unwrap();
        let sn = Normalizer::fit_embeddings(Method::Sn, p(tau, 1), Metric::Cosine, m(&g, ng, d), Some(m(&r, mq, d)), None, &ctl).unwrap();
        let lv = vec![-(mq as f64).ln(); mq];
        let lu = log_u_given_v(&Source::Embeddings { parts: vec![&sn.gallery], bank: &sn.query_bank, dim: d }, &[ng], &lv, tau);
        let lq = is.query_stats.as_ref().unwrap().lse.as_ref().unwrap();
        let c = -(ng as f64).ln() + (mq as f64).ln();
        for j in 0..ng {
            assert!((lu[j] - (c - lq[j])).abs() < 1e-10 * lq[j].abs().max(1.0), "item {j}: {} vs {}", lu[j], c - lq[j]);
        }
        // and the real SN (v updated) differs from IS: the bank marginal matters
        let h = &sn.scorer().bias[0];
        let spread = (0..ng).map(|j| h[j] - tau * lq[j]).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        assert!(spread.1 - spread.0 > 1e-6, "SN with updated v should not be a constant shift of IS");
    }

    /// iterations = 0: uniform potentials, h_j = τ·ln n for every item: the raw ranking, scores
    /// shifted by one constant.
    #[test]
    fn sn_zero_iterations_is_raw() {
        let (ng, mq, nq, d, tau) = (50, 40, 9, 8, 0.02);
        let (g, r, q) = (data(3, ng, d), data(4, mq, d), data(5, nq, d));
        let ctl = Control::none();
        for method in [Method::Sn, Method::DualSn] {
            let sn = Normalizer::fit_embeddings(method, p(tau, 0), Metric::Cosine, m(&g, ng, d), Some(m(&r, mq, d)), Some(m(&r, mq, d)), &ctl).unwrap();
            let raw = Normalizer::fit_embeddings(Method::None, Params::default(), Metric::Cosine, m(&g, ng, d), None, None, &ctl).unwrap();
            let (a, _) = sn.scores(m(&q, nq, d)).unwrap();
            let (b, _) = raw.scores(m(&q, nq, d)).unwrap();
            let n_rows = if method == Method::DualSn { ng + mq } else { ng };
            let shift = tau * (n_rows as f64).ln();
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(*x, (*y as f64 - shift) as f32);
            }
            assert_eq!(sn.search(m(&q, nq, d), 7, &ctl).unwrap().0, raw.search(m(&q, nq, d), 7, &ctl).unwrap().0);
        }
    }

    /// ×100 logits at τ = 1e-4 (β·s up to 1e6): finite potentials and scores, and the ranking of
    /// a well-separated case is that of the f64 reference computed in the log domain.
    #[test]
    fn sn_tiny_tau_on_logits_stays_finite() {
        let (ng, mq, nq) = (40, 60, 5);
        let pq: Vec<f32> = data(6, mq, ng).iter().map(|x| 100.0 * x).collect();
        let s: Vec<f32> = data(7, nq, ng).iter().map(|x| 100.0 * x).collect();
        let ctl = Control::none();
        for tau in [1e-4, 1e-12, 1e-30] {
            let n = Normalizer::fit_similarities(Method::Sn, p(tau, 10), Some(m(&pq, mq, ng)), None, None, &ctl).unwrap();
            assert!(n.scorer().bias[0].iter().all(|h| h.is_finite()), "τ {tau}");
            let (sc, _) = n.scores(m(&s, nq, ng)).unwrap();
            assert!(sc.iter().all(|v| v.is_finite()), "τ {tau}");
            let (_, top, _) = n.search(m(&s, nq, ng), 5, &ctl).unwrap();
            assert!(top.iter().all(|v| v.is_finite()));
        }
    }

    /// The augmented vectors `[g; −h]·[q; 1]` reproduce the scores (scale 1, no offset).
    #[test]
    fn sn_augmented_inner_products_equal_scores() {
        let (ng, mq, mg, nq, d) = (120, 90, 70, 11, 12);
        let (g, r, h, q) = (data(8, ng, d), data(9, mq, d), data(10, mg, d), data(11, nq, d));
        let ctl = Control::none();
        for method in [Method::Sn, Method::DualSn] {
            let n = Normalizer::fit_embeddings(method, p(0.01, 10), Metric::Cosine, m(&g, ng, d), Some(m(&r, mq, d)), Some(m(&h, mg, d)), &ctl).unwrap();
            assert_eq!(n.augmented_scale(), 1.0);
            let (ag, w) = n.augmented_gallery().unwrap();
            let (aq, wq) = n.augment_queries(m(&q, nq, d), &ctl).unwrap();
            assert_eq!((w, wq), (d + 1, d + 1));
            let (sc, _) = n.scores(m(&q, nq, d)).unwrap();
            for i in 0..nq {
                for j in 0..ng {
                    let ip: f64 = (0..w).map(|t| aq[i * w + t] as f64 * ag[j * w + t] as f64).sum();
                    let want = sc[i * ng + j] as f64;
                    assert!((ip - want).abs() < 1e-5 * (1.0 + want.abs()), "{}: ({i}, {j}) {ip} vs {want}", method.as_str());
                }
            }
        }
    }

    /// Embeddings mode and similarity mode (with the same f32 similarities) agree.
    #[test]
    fn sn_embeddings_and_similarity_modes_agree() {
        let (ng, mq, mg, d) = (150, 80, 60, 10);
        let (g, r, h) = (data(12, ng, d), data(13, mq, d), data(14, mg, d));
        let ctl = Control::none();
        for method in [Method::Sn, Method::DualSn] {
            let e = Normalizer::fit_embeddings(method, p(0.05, 10), Metric::Dot, m(&g, ng, d), Some(m(&r, mq, d)), Some(m(&h, mg, d)), &ctl).unwrap();
            let pq = crate::kernels::similarity::similarity(m(&r, mq, d), m(&g, ng, d), Metric::Dot).unwrap();
            let ph = crate::kernels::similarity::similarity(m(&r, mq, d), m(&h, mg, d), Metric::Dot).unwrap();
            let s = Normalizer::fit_similarities_with(method, p(0.05, 10), Some(m(&pq, mq, ng)), None, Some(m(&ph, mq, mg)), None, &ctl).unwrap();
            for (a, b) in e.scorer().bias[0].iter().zip(&s.scorer().bias[0]) {
                assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{}: {a} vs {b}", method.as_str());
            }
        }
    }

    #[test]
    fn sn_bad_parameters_and_inputs_are_coded_errors() {
        use crate::error::ErrorCode;
        let (ng, mq, d) = (10, 8, 4);
        let (g, r) = (data(15, ng, d), data(16, mq, d));
        let ctl = Control::none();
        let fit = |pp: Params| Normalizer::fit_embeddings(Method::Sn, pp, Metric::Cosine, m(&g, ng, d), Some(m(&r, mq, d)), None, &ctl);
        for tau in [0.0, -1.0, 1e-31, f64::NAN, f64::INFINITY, 1e31] {
            assert_eq!(fit(p(tau, 10)).unwrap_err().code, ErrorCode::Param, "τ {tau}");
        }
        assert_eq!(fit(p(0.01, 100_001)).unwrap_err().code, ErrorCode::Param);
        assert_eq!(fit(Params { tol: -1.0, ..p(0.01, 10) }).unwrap_err().code, ErrorCode::Param);
        assert_eq!(Normalizer::fit_embeddings(Method::Sn, p(0.01, 10), Metric::Cosine, m(&g, ng, d), None, None, &ctl).unwrap_err().code, ErrorCode::EmptyBank);
        assert_eq!(Normalizer::fit_similarities(Method::Sn, p(0.01, 10), None, None, Some(ng), &ctl).unwrap_err().code, ErrorCode::EmptyBank);
    }
}
