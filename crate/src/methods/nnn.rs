//! NNN — nearest neighbor normalization (Chowdhury et al., "Nearest Neighbor Normalization Improves
//! Multimodal Retrieval", EMNLP 2024).
//!
//! `ℓ = s − α · (1/k) Σ_{b ∈ top-k} P^q_bj`, the top-k taken over the bank axis of column j
//! (k clamped to the bank size). Defaults k = 128, α = 0.75 (the project's README values; the
//! package constructor's 256 / 0.5 reproduce nnn_ranker).

use super::scorer::{Gate, Scorer};
use super::stats::{BankStats, StatsRequest};
use super::{MethodInfo, Params};

/// The descriptor (registry entry) of `nnn`.
pub const INFO: MethodInfo = MethodInfo {
    id: "nnn",
    summary: "s − α·mean of the k largest bank similarities of j",
    query_bank: true,
    gallery_bank: false,
    params: &["nnnK", "nnnAlpha"],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 6,
    requests,
    scorer: |p, q, _, _, n| scorer(p, q.expect("query bank stats"), n),
    ..MethodInfo::BASE
};

pub fn requests(p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (Some(StatsRequest { top_values: Some(p.nnn_k), ..Default::default() }), None)
}

pub fn scorer(p: &Params, q: &BankStats, n: usize) -> Scorer {
    let mean = q.top_mean.as_ref().expect("top_mean");
    Scorer {
        scale: 1.0,
        bias: vec![mean.iter().map(|m| p.nnn_alpha * m).collect()],
        gate: Gate::None,
        offset_k: 0,
        n_gallery: n,
    }
}
