//! Hubness metrics (docs/methods.md §6, conventions §2.5–2.6).
//!
//! The k-occurrence `N_k(j)` of gallery item `j` is the number of queries whose top-k holds `j`, with
//! ties broken by score descending, then index ascending. So `Σ_j N_k(j) = k·n_q` and the mean
//! occurrence is `μ = k·n_q / n_g`.
//!
//! | field | definition |
//! |---|---|
//! | `skewness` | population skewness `m3 / m2^1.5` over all `n_g` items (zeros included, scipy's default); NaN when every `N_k` is equal |
//! | `skewness_nonzero` | the same over the items with `N_k > 0` (the official DBNorm `get_skewness`) |
//! | `robin_hood` | `Σ_j |N_k(j) − μ| / (2·k·n_q)` |
//! | `gini` | `Σ_ij |N_i − N_j| / (2·n_g·Σ N)`, computed in the sorted `O(n log n)` form |
//! | `atkinson` | `1 − (1/μ)·((1/n_g) Σ √N)²` (ε = 0.5) |
//! | `antihub_rate` | `|{j : N_k(j) = 0}| / n_g` |
//! | `hubs` | items with `N_k ≥ h·μ` ([`HubThreshold::Mean`], default) or `N_k ≥ h·k` ([`HubThreshold::Peer`]) |
//! | `hub_occurrence` | `Σ_{j ∈ hubs} N_k(j) / (k·n_q)` |
//! | `groupie_ratio` | `max_j N_k(j) / (k·n_q)` |
//!
//! Moments are computed from the exact integers `n_g·N_k(j) − Σ N`, so "every value equal" is decided
//! exactly rather than by a floating-point `m2 == 0`.

use rayon::prelude::*;

use super::{check_k, check_no_nan, row_topk};
use crate::error::{Error, Result};
use crate::matrix::MatRef;

/// Which hub threshold to apply (docs/methods.md §2.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HubThreshold {
    /// `N_k ≥ h·μ` with `μ = k·n_q/n_g`: valid for any `n_q`, `n_g`.
    #[default]
    Mean,
    /// `N_k ≥ h·k`, as in peer libraries; agrees with `Mean` only when `n_q = n_g`.
    Peer,
}

/// Options of the hubness functions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HubnessOptions {
    /// Neighbourhood size (default 10); `1 ≤ k ≤ n_g`, else `ERR_PARAM`.
    pub k: usize,
    /// Hub factor `h` (default 2); finite and > 0, else `ERR_PARAM`.
    pub hub_factor: f64,
    pub threshold: HubThreshold,
}

impl Default for HubnessOptions {
    fn default() -> Self {
        HubnessOptions { k: 10, hub_factor: 2.0, threshold: HubThreshold::Mean }
    }
}

/// Hubness of one retrieval direction. Rates are fractions in `[0, 1]`, not percentages.
#[derive(Clone, Debug, PartialEq)]
pub struct Hubness {
    pub k: usize,
    pub n_query: usize,
    pub n_gallery: usize,
    /// `N_k(j)` for every gallery item.
    pub occurrence: Vec<u32>,
    /// `μ = k·n_q / n_g`.
    pub mean_occurrence: f64,
    pub skewness: f64,
    pub skewness_nonzero: f64,
    pub robin_hood: f64,
    pub gini: f64,
    pub atkinson: f64,
    pub antihub_rate: f64,
    /// The numeric threshold applied: `h·μ` or `h·k`.
    pub hub_threshold: f64,
    /// Indices of the hubs, ascending.
    pub hubs: Vec<u32>,
    pub hub_occurrence: f64,
    pub groupie_ratio: f64,
}

/// `N_k` from a score matrix: `scores` is `n_q × n_g` row-major `f32`, rows are queries, higher is
/// better. Errors: `k == 0` or `k > n_g` (`ERR_PARAM`), NaN (`ERR_NON_FINITE`; `-inf` is fine, e.g. to
/// exclude self-matches).
pub fn k_occurrence_from_scores(scores: MatRef<'_>, k: usize) -> Result<Vec<u32>> {
    check_k(k, scores.cols)?;
    check_no_nan(scores, "scores")?;
    let ng = scores.cols;
    // Integer counts: the reduction order does not change the result.
    let occ = (0..scores.rows)
        .into_par_iter()
        .fold(
            || (vec![0u32; ng], Vec::with_capacity(k)),
            |(mut occ, mut buf), q| {
                row_topk(scores.row(q), k, &mut buf);
                for &j in &buf {
                    occ[j as usize] += 1;
                }
                (occ, buf)
            },
        )
        .map(|(occ, _)| occ)
        .reduce(|| vec![0u32; ng], add_counts);
    Ok(occ)
}

/// `N_k` from top-k lists: `indices` is `n_q × k` row-major `u32` with entries `< n_g` (else
/// `ERR_SHAPE`). Each listed entry counts once; the lists are trusted to hold distinct items.
pub fn k_occurrence_from_topk(indices: &[u32], n_query: usize, k: usize, n_gallery: usize) -> Result<Vec<u32>> {
    if k == 0 {
        return Err(Error::param("k must be at least 1"));
    }
    super::ranks::check_topk_lists(indices, n_query, k, n_gallery)?;
    let occ = indices
        .par_chunks(k.max(1) * 1024)
        .fold(
            || vec![0u32; n_gallery],
            |mut occ, chunk| {
                for &j in chunk {
                    occ[j as usize] += 1;
                }
                occ
            },
        )
        .reduce(|| vec![0u32; n_gallery], add_counts);
    Ok(occ)
}

fn add_counts(mut a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
    for (x, y) in a.iter_mut().zip(&b) {
        *x += y;
    }
    a
}

/// Hubness from a score matrix (see [`k_occurrence_from_scores`] for the input contract).
pub fn hubness_from_scores(scores: MatRef<'_>, opts: &HubnessOptions) -> Result<Hubness> {
    check_options(opts)?;
    let occ = k_occurrence_from_scores(scores, opts.k)?;
    hubness_from_occurrence(occ, opts.k, scores.rows, opts)
}

/// Hubness from top-k lists (see [`k_occurrence_from_topk`]); `k` is the list length and must equal
/// `opts.k` (else `ERR_PARAM`).
pub fn hubness_from_topk(
    indices: &[u32],
    n_query: usize,
    k: usize,
    n_gallery: usize,
    opts: &HubnessOptions,
) -> Result<Hubness> {
    check_options(opts)?;
    if k != opts.k {
        return Err(Error::param(format!("top-k lists have k = {k} but the options ask for k = {}", opts.k)));
    }
    let occ = k_occurrence_from_topk(indices, n_query, k, n_gallery)?;
    hubness_from_occurrence(occ, k, n_query, opts)
}

/// Every hubness metric from a k-occurrence vector (`occurrence.len() = n_g ≥ 1`). `k` and `n_query`
/// give the slot count `k·n_q` used by μ, Robin Hood, hub occurrence and the groupie ratio; the
/// occurrences need not sum to it (e.g. lists with excluded entries), though they do for real top-k.
/// `opts.k` is ignored here.
pub fn hubness_from_occurrence(
    occurrence: Vec<u32>,
    k: usize,
    n_query: usize,
    opts: &HubnessOptions,
) -> Result<Hubness> {
    check_options(opts)?;
    if k == 0 {
        return Err(Error::param("k must be at least 1"));
    }
    let ng = occurrence.len();
    if ng == 0 {
        return Err(Error::shape("hubness needs at least one gallery item"));
    }
    let slots = (k as f64) * (n_query as f64);
    let mu = slots / ng as f64;
    let sum: u64 = occurrence.iter().map(|&x| u64::from(x)).sum();

    let skewness = population_skewness(occurrence.iter().copied());
    let skewness_nonzero = population_skewness(occurrence.iter().copied().filter(|&x| x > 0));

    // Σ|N − μ| = Σ|n_g·N − k·n_q| / n_g, exact in integers.
    let slots_int = (k as u128) * (n_query as u128);
    let abs_dev: u128 = occurrence.iter().map(|&x| (u128::from(x) * ng as u128).abs_diff(slots_int)).sum();
    let robin_hood = abs_dev as f64 / ng as f64 / (2.0 * slots);

    let gini = gini_sorted(&occurrence, sum);

    let root_mean = occurrence.iter().map(|&x| f64::from(x).sqrt()).sum::<f64>() / ng as f64;
    let atkinson = 1.0 - root_mean * root_mean / mu;

    let antihub_rate = occurrence.iter().filter(|&&x| x == 0).count() as f64 / ng as f64;

    let hub_threshold = match opts.threshold {
        // h·(k·n_q)/n_g with one rounding, so an integral threshold stays exact.
        HubThreshold::Mean => opts.hub_factor * slots / ng as f64,
        HubThreshold::Peer => opts.hub_factor * k as f64,
    };
    let hubs: Vec<u32> = (0..ng as u32).filter(|&j| f64::from(occurrence[j as usize]) >= hub_threshold).collect();
    let hub_sum: u64 = hubs.iter().map(|&j| u64::from(occurrence[j as usize])).sum();
    let max = occurrence.iter().copied().max().unwrap_or(0);

    Ok(Hubness {
        k,
        n_query,
        n_gallery: ng,
        mean_occurrence: mu,
        skewness,
        skewness_nonzero,
        robin_hood,
        gini,
        atkinson,
        antihub_rate,
        hub_threshold,
        hub_occurrence: hub_sum as f64 / slots,
        groupie_ratio: f64::from(max) / slots,
        hubs,
        occurrence,
    })
}

fn check_options(opts: &HubnessOptions) -> Result<()> {
    if !(opts.hub_factor.is_finite() && opts.hub_factor > 0.0) {
        return Err(Error::param(format!("hubFactor must be finite and > 0, got {}", opts.hub_factor)));
    }
    Ok(())
}

/// Population skewness `m3 / m2^1.5` of integer counts; NaN if empty or all equal. With the integer
/// deviations `d = n·x − Σx` it is `√n · Σd³ / (Σd²)^1.5`; the sums are exact in `i128` unless they
/// would overflow (then `f64`).
fn population_skewness(values: impl Iterator<Item = u32> + Clone) -> f64 {
    let (n, sum) = values.clone().fold((0u64, 0u64), |(n, s), x| (n + 1, s + u64::from(x)));
    if n == 0 {
        return f64::NAN;
    }
    let dev = |x: u32| i128::from(x) * i128::from(n) - i128::from(sum);
    if values.clone().all(|x| dev(x) == 0) {
        return f64::NAN;
    }
    let exact = values.clone().try_fold((0i128, 0i128), |(s2, s3), x| {
        let d = dev(x);
        let d2 = d.checked_mul(d)?;
        Some((s2.checked_add(d2)?, s3.checked_add(d2.checked_mul(d)?)?))
    });
    let (s2, s3) = match exact {
        Some((s2, s3)) => (s2 as f64, s3 as f64),
        None => values.fold((0.0f64, 0.0f64), |(s2, s3), x| {
            let d = dev(x) as f64;
            (s2 + d * d, s3 + d * d * d)
        }),
    };
    (n as f64).sqrt() * s3 / s2.powf(1.5)
}

/// Gini `Σ_ij |x_i − x_j| / (2 n Σx)` as `Σ_i (2i − n − 1)·x_(i) / (n Σx)` over ascending `x_(i)`
/// (i 1-based), exact in integers; NaN when `Σx = 0`.
fn gini_sorted(values: &[u32], sum: u64) -> f64 {
    if sum == 0 {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as i128;
    let num: i128 = sorted.iter().enumerate().map(|(i, &x)| (2 * (i as i128 + 1) - n - 1) * i128::from(x)).sum();
    num as f64 / (n as f64 * sum as f64)
}
