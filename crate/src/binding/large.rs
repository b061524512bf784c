//! napi glue for large galleries: metrics streamed from a fitted normaliser
//! ([`crate::eval::retrieval_metrics_normalized`]).

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::eval::{gt_of, opts_of, retrieval_out, NativeEvalOptions, NativeGroundTruth, NativeRetrieval};
use super::{guarded, job_state, with_control, JobState, NativeJob, NativeMatrix, NativeNormalizer};
use crate::control::Control;
use crate::eval::{retrieval_metrics_normalized, RetrievalMetrics};
use crate::normalizer::Normalizer;

fn evaluate_impl(
    n: &Normalizer,
    input: &NativeMatrix,
    gt: &NativeGroundTruth,
    opts: &NativeEvalOptions,
    ctl: &Control,
) -> crate::Result<RetrievalMetrics> {
    retrieval_metrics_normalized(n, input.view("input")?, &gt_of(gt)?, &opts_of(opts)?, ctl)
}

pub struct EvaluateStreamTask {
    inner: Arc<Normalizer>,
    input: NativeMatrix,
    gt: NativeGroundTruth,
    opts: NativeEvalOptions,
    job: Option<Arc<JobState>>,
}

impl Task for EvaluateStreamTask {
    type Output = RetrievalMetrics;
    type JsValue = NativeRetrieval;
    fn compute(&mut self) -> napi::Result<RetrievalMetrics> {
        let (n, i, g, o) = (&self.inner, &self.input, &self.gt, &self.opts);
        guarded(|| with_control(&self.job, |ctl| evaluate_impl(n, i, g, o, ctl)))
    }
    fn resolve(&mut self, _env: Env, out: RetrievalMetrics) -> napi::Result<NativeRetrieval> {
        Ok(retrieval_out(out))
    }
}

#[napi]
impl NativeNormalizer {
    /// Retrieval metrics of the normalised scores of `input` (t2v), streamed: the score matrix is never built.
    #[napi]
    pub fn evaluate_sync(&self, input: NativeMatrix, gt: NativeGroundTruth, opts: NativeEvalOptions) -> napi::Result<NativeRetrieval> {
        let n = self.snapshot();
        guarded(|| evaluate_impl(&n, &input, &gt, &opts, &Control::none())).map(retrieval_out)
    }

    #[napi(ts_return_type = "Promise<NativeRetrieval>")]
    pub fn evaluate(&self, input: NativeMatrix, gt: NativeGroundTruth, opts: NativeEvalOptions, job: Option<&NativeJob>) -> AsyncTask<EvaluateStreamTask> {
        AsyncTask::new(EvaluateStreamTask { inner: self.snapshot(), input, gt, opts, job: job_state(job) })
    }
}
