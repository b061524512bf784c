//! CSLS — cross-domain similarity local scaling (Conneau et al., "Word Translation Without Parallel
//! Data", ICLR 2018), query-bank form.
//!
//! `ℓ = 2s − r_T(q) − r_S(j)`: `r_T(q)` = mean of the K largest entries of q's raw row (K clamped
//! to n_g), `r_S(j)` = mean of the K largest entries of column j of `P^q` (bank axis, K clamped to
//! m_q). Default K = 10. Ranks as `s − r_S/2` (NNN with α = ½, k = K).

use super::scorer::{Gate, Scorer};
use super::stats::{BankStats, StatsRequest};
use super::{MethodInfo, Params};

/// The descriptor (registry entry) of `csls`.
pub const INFO: MethodInfo = MethodInfo {
    id: "csls",
    summary: "2s − r_T(q) − r_S(j)",
    query_bank: true,
    gallery_bank: false,
    params: &["cslsK"],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 5,
    requests,
    scorer: |p, q, _, _, n| scorer(p, q.expect("query bank stats"), n),
    ..MethodInfo::BASE
};

pub fn requests(p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (Some(StatsRequest { top_values: Some(p.csls_k), ..Default::default() }), None)
}

pub fn scorer(p: &Params, q: &BankStats, n: usize) -> Scorer {
    Scorer {
        scale: 2.0,
        bias: vec![q.top_mean.clone().expect("top_mean")],
        gate: Gate::None,
        offset_k: p.csls_k.min(n),
        n_gallery: n,
    }
}
