//! DualIS — dual inverted softmax, DBNorm (Wang, Jian & Xue, "Balance Act: Mitigating Hubness in
//! Cross-Modal Retrieval with Query and Gallery Banks", EMNLP 2023).
//!
//! `DualIS = [e^{β_q s} / Σ_b e^{β_q P^q_bj}] · [e^{β_g s} / Σ_b e^{β_g P^g_bj}]`, returned as
//! `ℓ = (β_q + β_g)·s − L_q(j) − L_g(j)`. Both numerators use the same cross-modal s; the first
//! normaliser is cross-modal (query bank × gallery), the second intra-modal (gallery bank × gallery).
//! Ranks as `s − b_j` with `b_j = (L_q + L_g)/(β_q + β_g)`. The gallery bank must not contain
//! gallery items.

use super::scorer::{Gate, Scorer};
use super::stats::{BankStats, StatsRequest};
use super::{MethodInfo, Params};

/// The descriptor (registry entry) of `dual-is`.
pub const INFO: MethodInfo = MethodInfo {
    id: "dual-is",
    summary: "(β_q+β_g)·s − L_q(j) − L_g(j)",
    query_bank: true,
    gallery_bank: true,
    params: &["betaQuery", "betaGallery"],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 3,
    requests,
    scorer: |p, q, g, _, n| scorer(p, q.expect("query bank stats"), g.expect("gallery bank stats"), n),
    ..MethodInfo::BASE
};

pub fn requests(p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (
        Some(StatsRequest { lse_beta: Some(p.beta_query), ..Default::default() }),
        Some(StatsRequest { lse_beta: Some(p.beta_gallery), ..Default::default() }),
    )
}

pub fn scorer(p: &Params, q: &BankStats, g: &BankStats, n: usize) -> Scorer {
    let (lq, lg) = (q.lse.as_ref().expect("lse"), g.lse.as_ref().expect("lse"));
    Scorer {
        scale: p.beta_query + p.beta_gallery,
        bias: vec![lq.iter().zip(lg).map(|(a, b)| a + b).collect()],
        gate: Gate::None,
        offset_k: 0,
        n_gallery: n,
    }
}
