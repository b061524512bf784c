//! `none`: the raw similarity, `ℓ(q, j) = s(q, j)`. The baseline every table starts from.

use super::scorer::{Gate, Scorer};
use super::stats::StatsRequest;
use super::{MethodInfo, Params};

/// The descriptor (registry entry) of `none`.
pub const INFO: MethodInfo = MethodInfo {
    id: "none",
    summary: "s (the raw similarity)",
    query_bank: false,
    gallery_bank: false,
    params: &[],
    bias_reducible: true,
    augmented: &[0],
    persist_code: 0,
    requests,
    scorer: |p, _, _, _, n| scorer(p, n),
    ..MethodInfo::BASE
};

pub fn requests(_: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (None, None)
}

pub fn scorer(_: &Params, n: usize) -> Scorer {
    Scorer { scale: 1.0, bias: vec![vec![0.0; n]], gate: Gate::None, offset_k: 0, n_gallery: n }
}
