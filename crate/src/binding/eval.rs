//! napi glue for `crate::eval`: retrieval metrics and hubness, sync and async.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{run_sync, Code, NativeMatrix, Run};
use crate::control::Control;
use crate::error::Error as DbError;
use crate::eval::{self, Direction, EvalOptions, GroundTruth, HubThreshold, Hubness, HubnessOptions, RetrievalMetrics, TieMode};

/// Ground truth: `kind` is "diagonal", "captions" (with `captionsPerItem`) or "explicit" (CSR:
/// query i's positives are `items[offsets[i]..offsets[i+1]]`, `offsets` has n_q + 1 entries).
#[napi(object)]
pub struct NativeGroundTruth {
    pub kind: String,
    pub captions_per_item: Option<u32>,
    pub offsets: Option<Uint32Array>,
    pub items: Option<Uint32Array>,
}

#[napi(object)]
pub struct NativeEvalOptions {
    /// "t2v" or "v2t".
    pub direction: String,
    /// "average", "optimistic" or "pessimistic".
    pub ties: String,
    pub ks: Vec<u32>,
    pub qbnorm_compat: bool,
}

#[napi(object)]
pub struct NativeRetrieval {
    pub ranks: Float64Array,
    pub recall_k: Vec<u32>,
    pub recall: Vec<f64>,
    pub median_rank: Option<f64>,
    pub mean_rank: Option<f64>,
    pub map: Option<f64>,
    pub n: u32,
    pub skipped: u32,
}

#[napi(object)]
pub struct NativeHubnessOptions {
    pub k: u32,
    pub hub_factor: f64,
    /// "mean" or "peer".
    pub threshold: String,
}

#[napi(object)]
pub struct NativeHubness {
    pub k: u32,
    pub n_query: u32,
    pub n_gallery: u32,
    pub occurrence: Uint32Array,
    pub mean_occurrence: f64,
    pub skewness: f64,
    pub skewness_nonzero: f64,
    pub robin_hood: f64,
    pub gini: f64,
    pub atkinson: f64,
    pub antihub_rate: f64,
    pub hub_threshold: f64,
    pub hubs: Uint32Array,
    pub hub_occurrence: f64,
    pub groupie_ratio: f64,
}

fn gt_of(g: &NativeGroundTruth) -> crate::Result<GroundTruth> {
    match g.kind.as_str() {
        "diagonal" => Ok(GroundTruth::Diagonal),
        "captions" => Ok(GroundTruth::CaptionsPerItem(g.captions_per_item.unwrap_or(0) as usize)),
        "explicit" => {
            let (Some(off), Some(items)) = (&g.offsets, &g.items) else {
                return Err(DbError::param("explicit ground truth needs offsets and items"));
            };
            let (off, items): (&[u32], &[u32]) = (off, items);
            if off.is_empty() || off[0] != 0 || *off.last().unwrap() as usize != items.len() || off.windows(2).any(|w| w[0] > w[1]) {
                return Err(DbError::shape("explicit ground truth: offsets must start at 0, be non-decreasing and end at items.length"));
            }
            Ok(GroundTruth::Explicit(off.windows(2).map(|w| items[w[0] as usize..w[1] as usize].to_vec()).collect()))
        }
        other => Err(DbError::param(format!("ground truth kind must be diagonal, captions or explicit, got '{other}'"))),
    }
}

fn opts_of(o: &NativeEvalOptions) -> crate::Result<EvalOptions> {
    let direction = match o.direction.as_str() {
        "t2v" => Direction::T2v,
        "v2t" => Direction::V2t,
        d => return Err(DbError::param(format!("direction must be 't2v' or 'v2t', got '{d}'"))),
    };
    let ties = match o.ties.as_str() {
        "average" => TieMode::Average,
        "optimistic" => TieMode::Optimistic,
        "pessimistic" => TieMode::Pessimistic,
        t => return Err(DbError::param(format!("ties must be 'average', 'optimistic' or 'pessimistic', got '{t}'"))),
    };
    Ok(EvalOptions { direction, ties, ks: o.ks.iter().map(|&k| k as usize).collect(), qbnorm_compat: o.qbnorm_compat })
}

fn hopts_of(o: &NativeHubnessOptions) -> crate::Result<HubnessOptions> {
    let threshold = match o.threshold.as_str() {
        "mean" => HubThreshold::Mean,
        "peer" => HubThreshold::Peer,
        t => return Err(DbError::param(format!("hubThreshold must be 'mean' or 'peer', got '{t}'"))),
    };
    Ok(HubnessOptions { k: o.k as usize, hub_factor: o.hub_factor, threshold })
}

fn retrieval_out(m: RetrievalMetrics) -> NativeRetrieval {
    NativeRetrieval {
        recall_k: m.recall.iter().map(|&(k, _)| k as u32).collect(),
        recall: m.recall.iter().map(|&(_, r)| r).collect(),
        ranks: Float64Array::new(m.ranks),
        median_rank: m.median_rank,
        mean_rank: m.mean_rank,
        map: m.map,
        n: m.n as u32,
        skipped: m.skipped as u32,
    }
}

fn hubness_out(h: Hubness) -> NativeHubness {
    NativeHubness {
        k: h.k as u32,
        n_query: h.n_query as u32,
        n_gallery: h.n_gallery as u32,
        occurrence: Uint32Array::new(h.occurrence),
        mean_occurrence: h.mean_occurrence,
        skewness: h.skewness,
        skewness_nonzero: h.skewness_nonzero,
        robin_hood: h.robin_hood,
        gini: h.gini,
        atkinson: h.atkinson,
        antihub_rate: h.antihub_rate,
        hub_threshold: h.hub_threshold,
        hubs: Uint32Array::new(h.hubs),
        hub_occurrence: h.hub_occurrence,
        groupie_ratio: h.groupie_ratio,
    }
}

/// What an evaluation reads: a full score matrix or top-k lists.
#[napi(object)]
pub struct NativeEvalInput {
    pub scores: Option<NativeMatrix>,
    pub indices: Option<Uint32Array>,
    pub rows: u32,
    pub k: u32,
    pub n_gallery: u32,
}

fn evaluate_impl(input: &NativeEvalInput, gt: &NativeGroundTruth, opts: &NativeEvalOptions) -> crate::Result<RetrievalMetrics> {
    let (gt, opts) = (gt_of(gt)?, opts_of(opts)?);
    match (&input.scores, &input.indices) {
        (Some(s), _) => eval::retrieval_metrics(s.view("scores")?, &gt, &opts),
        (None, Some(i)) => eval::retrieval_metrics_topk(i, input.rows as usize, input.k as usize, input.n_gallery as usize, &gt, &opts),
        _ => Err(DbError::param("evaluate needs scores or top-k indices")),
    }
}

fn hubness_impl(input: &NativeEvalInput, opts: &NativeHubnessOptions) -> crate::Result<Hubness> {
    let opts = hopts_of(opts)?;
    match (&input.scores, &input.indices) {
        (Some(s), _) => eval::hubness_from_scores(s.view("scores")?, &opts),
        (None, Some(i)) => eval::hubness_from_topk(i, input.rows as usize, input.k as usize, input.n_gallery as usize, &opts),
        _ => Err(DbError::param("hubness needs scores or top-k indices")),
    }
}

fn evaluate_work(input: NativeEvalInput, gt: NativeGroundTruth, opts: NativeEvalOptions) -> impl FnOnce(&Control) -> crate::Result<RetrievalMetrics> + Send + 'static {
    move |_| evaluate_impl(&input, &gt, &opts)
}

fn hubness_work(input: NativeEvalInput, opts: NativeHubnessOptions) -> impl FnOnce(&Control) -> crate::Result<Hubness> + Send + 'static {
    move |_| hubness_impl(&input, &opts)
}

#[napi]
pub fn evaluate_sync(input: NativeEvalInput, gt: NativeGroundTruth, opts: NativeEvalOptions) -> napi::Result<NativeRetrieval, Code> {
    run_sync(evaluate_work(input, gt, opts), retrieval_out)
}

#[napi(ts_return_type = "Promise<NativeRetrieval>")]
pub fn evaluate(input: NativeEvalInput, gt: NativeGroundTruth, opts: NativeEvalOptions) -> AsyncTask<Run<RetrievalMetrics, NativeRetrieval>> {
    Run::spawn(evaluate_work(input, gt, opts), None, retrieval_out)
}

#[napi]
pub fn hubness_sync(input: NativeEvalInput, opts: NativeHubnessOptions) -> napi::Result<NativeHubness, Code> {
    run_sync(hubness_work(input, opts), hubness_out)
}

#[napi(ts_return_type = "Promise<NativeHubness>")]
pub fn hubness(input: NativeEvalInput, opts: NativeHubnessOptions) -> AsyncTask<Run<Hubness, NativeHubness>> {
    Run::spawn(hubness_work(input, opts), None, hubness_out)
}
