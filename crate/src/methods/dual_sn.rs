//! DualSN (DBSN) — dual-bank Sinkhorn normalisation: a query bank and a gallery bank (Pan, Wang,
//! Wu, Zhang & Bu, "Hubness Reduction with Dual Bank Sinkhorn Normalization for Cross-Modal
//! Retrieval", ACM MM 2025, arXiv 2508.02538; ppanzx/DBSN, Image_Retrieval/dbsn.py, the
//! "Dual-Bank Sinkhorn_Normalization" step of `main_embs` / `main_sims`).
//!
//! As [`super::sn`], but the rows balanced against the query bank are the gallery **followed by the
//! gallery bank**, scored cross-modally: `C = [P^q ; P^qh]ᵀ`, with P^qh the query bank × gallery
//! bank similarities (in similarity mode the caller passes it as `queryBankGalleryBankSims`,
//! m_q × m_g). The gallery-bank rows share the row marginal and so compete for the bank mass; only
//! the gallery rows' potentials are kept: `ℓ(q, j) = s − h_j`, `h_j = −τ·log u_j`.

use super::sinkhorn;
use super::MethodInfo;

/// The descriptor (registry entry) of `dual-sn`.
pub const INFO: MethodInfo = MethodInfo {
    id: "dual-sn",
    summary: "s − h(j), h = −τ·log u: Sinkhorn potentials of query bank × [gallery ; gallery bank]",
    query_bank: true,
    gallery_bank: true,
    params: &["tau", "iterations", "tol"],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 8,
    requests: |_| (None, None),
    scorer: |p, _, _, state, n| sinkhorn::scorer(p, state, n),
    gallery_dependent: true,
    fit_state: Some(|p, inputs, _, _, ctl| sinkhorn::fit_state(p, inputs, true, ctl)),
    cross_bank_sims: true,
    ..MethodInfo::BASE
};

#[cfg(test)]
mod tests {
    use super::super::sinkhorn::tests::linear_reference;
    use super::super::{Method, Params};
    use crate::control::Control;
    use crate::error::ErrorCode;
    use crate::kernels::similarity::Metric;
    use crate::matrix::MatRef;
    use crate::normalizer::Normalizer;

    fn data(seed: u64, rows: usize, d: usize) -> Vec<f32> {
        let mut s = seed;
        (0..rows * d)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }

    fn m(x: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
        MatRef::new(x, rows, cols, "x").unwrap()
    }

    fn p(tau: f64, iterations: usize) -> Params {
        Params { tau, iterations, ..Params::default() }
    }

    /// Float64 linear-domain Sinkhorn on the stacked rows [gallery; gallery bank] × query bank
    /// (well-scaled data: τ = 0.2 on similarities in [−1, 1]) equals the log-domain fit, T = 1, 5, 10.
    #[test]
    fn dual_sn_matches_linear_reference() {
        let (ng, mg, mq) = (90, 40, 130);
        let (pq, ph) = (data(1, mq, ng), data(2, mq, mg));
        for t in [1, 5, 10] {
            let n = Normalizer::fit_similarities_with(Method::DualSn, p(0.2, t), Some(m(&pq, mq, ng)), None, Some(m(&ph, mq, mg)), None, &Control::none()).unwrap();
            // gallery-major C: gallery rows from P^q, then gallery-bank rows from P^qh
            let mut c = Vec::with_capacity((ng + mg) * mq);
            for j in 0..ng {
                c.extend((0..mq).map(|b| pq[b * ng + j] as f64));
            }
            for h in 0..mg {
                c.extend((0..mq).map(|b| ph[b * mg + h] as f64));
            }
            let (lu, _) = linear_reference(&c, ng + mg, mq, 0.2, t);
            for j in 0..ng {
                let want = -0.2 * lu[j];
                let got = n.scorer().bias[0][j];
                assert!((got - want).abs() < 1e-12 * want.abs().max(1.0), "T={t} item {j}: {got} vs {want}");
            }
            assert_eq!(n.state.get("iterationsRun"), Some(&[t as f64][..]));
            assert_eq!(n.state.get("logU").unwrap().len(), ng);
            assert_eq!(n.state.get("logV").unwrap().len(), mq);
        }
    }

    /// A gallery bank that duplicates the gallery gives SN's biases shifted by τ·ln 2: the stacked
    /// problem is SN's with every row counted twice (row marginal 1/(2n) each, so u halves), the
    /// same ranking.
    #[test]
    fn dual_sn_with_the_gallery_as_gallery_bank_equals_sn() {
        let (ng, mq, d) = (200, 310, 9);
        let (g, r) = (data(3, ng, d), data(4, mq, d));
        let ctl = Control::none();
        for t in [1, 4, 10] {
            let sn = Normalizer::fit_embeddings(Method::Sn, p(0.03, t), Metric::Cosine, m(&g, ng, d), Some(m(&r, mq, d)), None, &ctl).unwrap();
            let db = Normalizer::fit_embeddings(Method::DualSn, p(0.03, t), Metric::Cosine, m(&g, ng, d), Some(m(&r, mq, d)), Some(m(&g, ng, d)), &ctl).unwrap();
            let shift = 0.03 * std::f64::consts::LN_2;
            for (a, b) in sn.scorer().bias[0].iter().zip(&db.scorer().bias[0]) {
                assert!((a + shift - b).abs() < 1e-12 * a.abs().max(1.0), "T={t}: {a} + τ·ln 2 vs {b}");
            }
        }
    }

    #[test]
    fn dual_sn_similarity_mode_needs_the_cross_bank_matrix() {
        let (ng, mg, mq) = (12, 5, 7);
        let (pq, ph) = (data(5, mq, ng), data(6, mq, mg));
        let ctl = Control::none();
        let e = Normalizer::fit_similarities(Method::DualSn, p(0.1, 10), Some(m(&pq, mq, ng)), None, None, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::EmptyBank);
        assert!(e.message.contains("queryBankGalleryBankSims"), "{}", e.message);
        let ph_bad = &ph[..(mq - 1) * mg];
        let e = Normalizer::fit_similarities_with(Method::DualSn, p(0.1, 10), Some(m(&pq, mq, ng)), None, Some(m(ph_bad, mq - 1, mg)), None, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::Shape);
        let mut ph_nan = ph.clone();
        ph_nan[3] = f32::NAN;
        let e = Normalizer::fit_similarities_with(Method::DualSn, p(0.1, 10), Some(m(&pq, mq, ng)), None, Some(m(&ph_nan, mq, mg)), None, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::NonFinite);
        // galleryBankSims is not needed (P^g is not part of DBSN)
        assert!(Normalizer::fit_similarities_with(Method::DualSn, p(0.1, 10), Some(m(&pq, mq, ng)), None, Some(m(&ph, mq, mg)), None, &ctl).is_ok());
        // embeddings mode needs the gallery bank
        let (g, r) = (data(7, ng, 4), data(8, mq, 4));
        let e = Normalizer::fit_embeddings(Method::DualSn, p(0.1, 10), Metric::Cosine, m(&g, ng, 4), Some(m(&r, mq, 4)), None, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::EmptyBank);
    }
}
