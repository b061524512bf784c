//! `none`: the raw similarity, `ℓ(q, j) = s(q, j)`. The baseline every table starts from.

use super::scorer::{Gate, Scorer};
use super::stats::StatsRequest;
use super::Params;

pub fn requests(_: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
    (None, None)
}

pub fn scorer(_: &Params, n: usize) -> Scorer {
    Scorer { scale: 1.0, bias: vec![vec![0.0; n]], gate: Gate::None, offset_k: 0, n_gallery: n }
}
