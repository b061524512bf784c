//! DIS — dynamic inverted softmax (QB-Norm; Bogolin et al., "Cross Modal Retrieval with Querybank
//! Normalisation", CVPR 2022).
//!
//! Activation set `A_q = ∪_b top-k_j(P^q_bj)`: each bank row's k best gallery items (top-k along
//! the **gallery axis**, ties by lowest index). A query is gated iff its raw top-1 `t(q)` is in
//! `A_q`; the whole row switches:
//! `ℓ = β_q·s − L_q(j)` when gated, `ℓ = β_q·s` otherwise. Unlike the official code (which keeps raw
//! `s` in ungated rows) every row is on one scale, so column-wise use stays valid; each row ranks
//! exactly as the official code ranks it. With `k ≥ n_g` every item is active and DIS = IS.

use super::scorer::{Gate, Scorer};
use super::stats::{BankStats, StatsRequest};
use super::{MethodInfo, Params};

/// The descriptor (registry entry) of `dis`.
pub const INFO: MethodInfo = MethodInfo {
    id: "dis",
    summary: "β_q·s − γ_q(q)·L_q(j)",
    query_bank: true,
    gallery_bank: false,
    params: &["betaQuery", "k"],
    bias_reducible: true,
    augmented: &[1],
    persist_code: 2,
    requests,
    scorer: |p, q, _, _, n| scorer(p, q.expect("query bank stats"), n),
    ..MethodInfo::BASE
};

pub fn requests(p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (Some(StatsRequest { lse_beta: Some(p.beta_query), row_topk: Some(p.k), ..Default::default() }), None)
}

pub fn scorer(p: &Params, q: &BankStats, n: usize) -> Scorer {
    Scorer {
        scale: p.beta_query,
        bias: vec![vec![0.0; n], q.lse.clone().expect("lse")],
        gate: Gate::Single(q.activation(n).expect("activation")),
        offset_k: 0,
        n_gallery: n,
    }
}
