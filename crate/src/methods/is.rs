//! IS — inverted softmax with a query bank (Smith et al., "Offline bilingual word vectors,
//! orthogonal transformations and the inverted softmax", ICLR 2017; the query-bank form used by
//! QB-Norm, Bogolin et al., CVPR 2022).
//!
//! `IS(q, j) = exp(β_q·s) / Σ_b exp(β_q·P^q_bj)`, returned in the log domain as
//! `ℓ = β_q·s − L_q(j)`, `L_q(j) = LSE_b(β_q·P^q_bj)` over the **bank axis** of column j.
//! Test queries are never in the bank (inductive IS). `exp(ℓ)` equals the official ratio wherever
//! that ratio is finite; ℓ itself never overflows.

use super::scorer::{Gate, Scorer};
use super::stats::{BankStats, StatsRequest};
use super::{MethodInfo, Params};

/// The descriptor (registry entry) of `is`.
pub const INFO: MethodInfo = MethodInfo {
    id: "is",
    summary: "β_q·s − L_q(j)",
    query_bank: true,
    gallery_bank: false,
    params: &["betaQuery"],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 1,
    requests,
    scorer: |p, q, _, _, n| scorer(p, q.expect("query bank stats"), n),
    ..MethodInfo::BASE
};

pub fn requests(p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (Some(StatsRequest { lse_beta: Some(p.beta_query), ..Default::default() }), None)
}

pub fn scorer(p: &Params, q: &BankStats, n: usize) -> Scorer {
    Scorer { scale: p.beta_query, bias: vec![q.lse.clone().expect("lse")], gate: Gate::None, offset_k: 0, n_gallery: n }
}
