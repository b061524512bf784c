//! Evaluation: retrieval metrics ([`ranks`]) and hubness metrics ([`hubness`]).
//!
//! Pure Rust, no napi. Conventions (docs/methods.md §2.5, §2.6, §5, §6):
//! - score matrices are row-major `f32` slices (`MatRef`), rows are queries, **higher is better**;
//! - ranks are 0-based (`0` = the ground truth is first);
//! - top-k and k-occurrence break ties by score descending, then index ascending;
//! - NaN scores are rejected with `ERR_NON_FINITE`; `±inf` are allowed (e.g. `-inf` to exclude self).
//!
//! The top-k here is a small, self-contained reference used by the metrics; the fast kernel lives in
//! `kernels::topk`.

pub mod hubness;
pub mod ranks;

pub use hubness::{
    hubness_from_occurrence, hubness_from_scores, hubness_from_topk, k_occurrence_from_scores, k_occurrence_from_topk,
    HubThreshold, Hubness, HubnessOptions,
};
pub use ranks::{
    retrieval_from_ranks, retrieval_metrics, retrieval_metrics_topk, Direction, EvalOptions, GroundTruth,
    RetrievalMetrics, TieMode,
};

use crate::error::{Error, Result};
use crate::matrix::MatRef;
use rayon::prelude::*;

/// Above this k, [`row_topk`] selects with `select_nth_unstable` instead of an insertion buffer.
const INSERTION_TOPK_MAX: usize = 64;

/// Writes into `out` the indices of the `k` best entries of `row`, best first (score descending, then
/// index ascending). `k` is clamped to `row.len()`. The row must not contain NaN (callers check).
pub fn row_topk(row: &[f32], k: usize, out: &mut Vec<u32>) {
    out.clear();
    let k = k.min(row.len());
    if k == 0 {
        return;
    }
    if k > INSERTION_TOPK_MAX {
        out.extend(0..row.len() as u32);
        // The crate's one tie rule (kernels::topk).
        let better = |a: &u32, b: &u32| crate::kernels::topk::rank_cmp(row[*a as usize] as f64, *a, row[*b as usize] as f64, *b);
        if k < out.len() {
            out.select_nth_unstable_by(k - 1, better);
            out.truncate(k);
        }
        out.sort_unstable_by(better);
        return;
    }
    // Insertion buffer sorted best first, with the crate's one insertion step (kernels::topk).
    // Candidates arrive in ascending index order, so once the buffer is full only strictly better
    // scores get in: the `<=` pre-test rejects the rest with one comparison.
    let mut scores = [0f32; INSERTION_TOPK_MAX];
    let mut idx = [0u32; INSERTION_TOPK_MAX];
    let mut len = 0;
    for (j, &x) in row.iter().enumerate() {
        if len == k && x <= scores[k - 1] {
            continue;
        }
        len = crate::kernels::topk::insert_ranked(&mut scores[..k], &mut idx[..k], len, x, j as u32);
    }
    out.extend_from_slice(&idx[..len]);
}

/// Top-k indices of every row of `scores`: `rows × k` row-major `u32`, each row best first (score
/// descending, index ascending). Errors: `k == 0` or `k > cols` (`ERR_PARAM`), NaN (`ERR_NON_FINITE`).
pub fn topk_indices(scores: MatRef<'_>, k: usize) -> Result<Vec<u32>> {
    check_k(k, scores.cols)?;
    check_no_nan(scores, "scores")?;
    let mut out = vec![0u32; scores.rows * k];
    out.par_chunks_mut(k).enumerate().for_each_init(
        || Vec::with_capacity(k),
        |buf, (r, dst)| {
            row_topk(scores.row(r), k, buf);
            dst.copy_from_slice(buf);
        },
    );
    Ok(out)
}

pub(crate) fn check_k(k: usize, cols: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::param("k must be at least 1"));
    }
    if k > cols {
        return Err(Error::param(format!("k = {k} exceeds the number of gallery items ({cols})")));
    }
    Ok(())
}

/// `ERR_NON_FINITE` naming the first NaN (±inf are allowed: they order correctly).
pub(crate) fn check_no_nan(m: MatRef<'_>, name: &str) -> Result<()> {
    // Coarse parallel chunks: a per-element parallel search costs more than the scan itself.
    const CHUNK: usize = 1 << 16;
    let Some(c) = m.data.par_chunks(CHUNK).position_first(|c| c.iter().any(|v| v.is_nan())) else {
        return Ok(());
    };
    let i = c * CHUNK + m.data[c * CHUNK..].iter().position(|v| v.is_nan()).unwrap_or(0);
    let cols = m.cols.max(1);
    Err(Error::non_finite(format!(
        "{name}: value at row {}, column {} is NaN (scores must not be NaN)",
        i / cols,
        i % cols
    )))
}
