//! DualDIS — dual dynamic inverted softmax, DBNorm (Wang, Jian & Xue, EMNLP 2023).
//!
//! `ℓ = (β_q + β_g)·s − γ_q(q)·L_q(j) − γ_g(q)·L_g(j)` with per-factor gates evaluated on the raw
//! top-1: `γ_x(q) = [t(q) ∈ A_x]`, `A_q` = each query-bank row's k best gallery items, `A_g` = each
//! gallery-bank row's k best gallery items (one k, default 1). An ungated factor is the
//! unnormalised `e^{β_x s}`. Limits: both gates on ⇒ DualIS; both off ⇒ the raw ranking.
//!
//! Deliberately **not** reproduced from the official code (docs/methods.md §2.3): its raw-`s` fallback for
//! ungated factors (reverses negative similarities), its aliasing of the two factors, and its
//! `db_norm` that scores the gallery-bank matrix instead of the test matrix.

use super::scorer::{Gate, Scorer};
use super::stats::{BankStats, StatsRequest};
use super::{MethodInfo, Params};

/// The descriptor (registry entry) of `dual-dis`.
pub const INFO: MethodInfo = MethodInfo {
    id: "dual-dis",
    summary: "(β_q+β_g)·s − γ_q(q)·L_q(j) − γ_g(q)·L_g(j)",
    query_bank: true,
    gallery_bank: true,
    params: &["betaQuery", "betaGallery", "k"],
    bias_reducible: true,
    augmented: &[1, 2],
    persist_code: 4,
    requests,
    scorer: |p, q, g, _, n| scorer(p, q.expect("query bank stats"), g.expect("gallery bank stats"), n),
    ..MethodInfo::BASE
};

pub fn requests(p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (
        Some(StatsRequest { lse_beta: Some(p.beta_query), row_topk: Some(p.k), ..Default::default() }),
        Some(StatsRequest { lse_beta: Some(p.beta_gallery), row_topk: Some(p.k), ..Default::default() }),
    )
}

pub fn scorer(p: &Params, q: &BankStats, g: &BankStats, n: usize) -> Scorer {
    let (lq, lg) = (q.lse.as_ref().expect("lse"), g.lse.as_ref().expect("lse"));
    // Variant index γq + 2·γg.
    let bias = vec![vec![0.0; n], lq.clone(), lg.clone(), lq.iter().zip(lg).map(|(a, b)| a + b).collect()];
    Scorer {
        scale: p.beta_query + p.beta_gallery,
        bias,
        gate: Gate::Dual(q.activation(n).expect("activation"), g.activation(n).expect("activation")),
        offset_k: 0,
        n_gallery: n,
    }
}
