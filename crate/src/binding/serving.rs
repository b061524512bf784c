//! napi glue for the serving features of a fitted normaliser: appending gallery items, re-ranking
//! candidates, augmented vectors for inner-product indexes, and the leak guard.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{guarded, job_state, with_control, JobState, NativeJob, NativeMatrix, NativeNormalizer, NativeTopK, Slot};
use crate::error::Error as DbError;
use crate::normalizer::Normalizer;
use std::sync::Arc;

/// New gallery items: embeddings (`items`) or, in similarity mode, their bank similarities.
#[napi(object)]
pub struct NativeAddInput {
    pub items: Option<NativeMatrix>,
    pub query_bank_sims: Option<NativeMatrix>,
    pub gallery_bank_sims: Option<NativeMatrix>,
    pub count: Option<u32>,
}

fn add_impl(n: &Normalizer, input: &NativeAddInput, ctl: &crate::control::Control) -> crate::Result<Normalizer> {
    match &input.items {
        Some(items) => n.add_gallery_embeddings(items.view("items")?, ctl),
        None => {
            let q = input.query_bank_sims.as_ref().map(|m| m.view("queryBankSims")).transpose()?;
            let g = input.gallery_bank_sims.as_ref().map(|m| m.view("galleryBankSims")).transpose()?;
            let count = input.count.map(|c| c as usize).or(q.map(|m| m.cols)).or(g.map(|m| m.cols)).ok_or_else(|| DbError::shape("no new items given"))?;
            n.add_gallery_similarities(q, g, count, ctl)
        }
    }
}

/// Augmented vectors: `rows × cols` row-major, `cols = dim + extra`.
#[napi(object)]
pub struct NativeAugmented {
    pub data: Float32Array,
    pub rows: u32,
    pub cols: u32,
}

/// See `NativeNormalizer::augmented_info`.
#[napi(object)]
pub struct NativeAugmentedInfo {
    pub scale: f64,
    pub offset_k: u32,
    pub extra: u32,
    pub gated: bool,
}

pub struct AugmentTask {
    base: Arc<Normalizer>,
    queries: NativeMatrix,
    job: Option<Arc<JobState>>,
}

impl Task for AugmentTask {
    type Output = (Vec<f32>, usize);
    type JsValue = NativeAugmented;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let (base, q) = (&self.base, &self.queries);
        guarded(|| with_control(&self.job, |ctl| base.augment_queries(q.view("queries")?, ctl)))
    }
    fn resolve(&mut self, _env: Env, (v, w): Self::Output) -> napi::Result<NativeAugmented> {
        Ok(NativeAugmented { rows: self.queries.rows, cols: w as u32, data: Float32Array::new(v) })
    }
}

pub struct AddTask {
    base: Arc<Normalizer>,
    input: NativeAddInput,
    job: Option<Arc<JobState>>,
    target: Slot,
}

impl Task for AddTask {
    type Output = Normalizer;
    type JsValue = u32;
    fn compute(&mut self) -> napi::Result<Normalizer> {
        let (base, input) = (&self.base, &self.input);
        guarded(|| with_control(&self.job, |ctl| add_impl(base, input, ctl)))
    }
    fn resolve(&mut self, _env: Env, out: Normalizer) -> napi::Result<u32> {
        let n = out.n_gallery as u32;
        self.target.set(out);
        Ok(n)
    }
}

pub struct RerankTask {
    base: Arc<Normalizer>,
    input: NativeMatrix,
    candidates: Uint32Array,
    c: u32,
}

fn rerank_impl(n: &Normalizer, input: &NativeMatrix, candidates: &[u32], c: u32) -> crate::Result<(Vec<u32>, Vec<f32>)> {
    n.rerank(input.view("input")?, candidates, c as usize)
}

impl Task for RerankTask {
    type Output = (Vec<u32>, Vec<f32>);
    type JsValue = NativeTopK;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded(|| rerank_impl(&self.base, &self.input, &self.candidates, self.c))
    }
    fn resolve(&mut self, _env: Env, (i, s): Self::Output) -> napi::Result<NativeTopK> {
        Ok(NativeTopK { rows: self.input.rows, k: self.c, indices: Uint32Array::new(i), scores: Float32Array::new(s) })
    }
}

#[napi]
impl NativeNormalizer {
    /// Appends gallery items (returns the new gallery size). Blocks the event loop.
    #[napi]
    pub fn add_gallery_sync(&self, input: NativeAddInput) -> napi::Result<u32> {
        let base = self.snapshot();
        let out = guarded(|| add_impl(&base, &input, &crate::control::Control::none()))?;
        let n = out.n_gallery as u32;
        self.replace(out);
        Ok(n)
    }

    /// Appends gallery items on the thread pool; the normaliser switches to the extended state when
    /// the promise resolves (work already running keeps the old state).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn add_gallery(&self, input: NativeAddInput, job: Option<&NativeJob>) -> AsyncTask<AddTask> {
        AsyncTask::new(AddTask { base: self.snapshot(), input, job: job_state(job), target: self.slot() })
    }

    #[napi]
    pub fn rerank_sync(&self, input: NativeMatrix, candidates: Uint32Array, c: u32) -> napi::Result<NativeTopK> {
        let rows = input.rows;
        guarded(|| rerank_impl(&self.snapshot(), &input, &candidates, c)).map(|(i, s)| NativeTopK { rows, k: c, indices: Uint32Array::new(i), scores: Float32Array::new(s) })
    }

    #[napi(ts_return_type = "Promise<NativeTopK>")]
    pub fn rerank(&self, input: NativeMatrix, candidates: Uint32Array, c: u32) -> AsyncTask<RerankTask> {
        AsyncTask::new(RerankTask { base: self.snapshot(), input, candidates, c })
    }

    /// Augmented gallery rows `start..start + count` (default: all).
    #[napi]
    pub fn augmented_gallery(&self, start: Option<u32>, count: Option<u32>) -> napi::Result<NativeAugmented> {
        let n = self.snapshot();
        let range = start.map(|s| (s as usize, count.map(|c| c as usize).unwrap_or(n.n_gallery.saturating_sub(s as usize))));
        guarded(|| n.augmented_gallery(range)).map(|(v, w)| NativeAugmented { rows: (v.len() / w.max(1)) as u32, cols: w as u32, data: Float32Array::new(v) })
    }

    #[napi]
    pub fn augment_queries(&self, queries: NativeMatrix) -> napi::Result<NativeAugmented> {
        let n = self.snapshot();
        let rows = queries.rows;
        guarded(|| n.augment_queries(queries.view("queries")?, &crate::control::Control::none())).map(|(v, w)| NativeAugmented { rows, cols: w as u32, data: Float32Array::new(v) })
    }

    /// `augment_queries` on the thread pool (the raw search of DIS / DualDIS runs off the event loop).
    #[napi(ts_return_type = "Promise<NativeAugmented>")]
    pub fn augment_queries_async(&self, queries: NativeMatrix, job: Option<&NativeJob>) -> AsyncTask<AugmentTask> {
        AsyncTask::new(AugmentTask { base: self.snapshot(), queries, job: job_state(job) })
    }

    /// Augmented queries with the gates from given raw top-1 ids (one per query; DIS / DualDIS).
    #[napi]
    pub fn augment_queries_with_top1(&self, queries: NativeMatrix, top1: Uint32Array) -> napi::Result<NativeAugmented> {
        let n = self.snapshot();
        let rows = queries.rows;
        guarded(|| n.augment_queries_with_top1(queries.view("queries")?, &top1)).map(|(v, w)| NativeAugmented { rows, cols: w as u32, data: Float32Array::new(v) })
    }

    /// Constants for serving from an inner-product engine: score = scale · ip − offset(q).
    #[napi]
    pub fn augmented_info(&self) -> NativeAugmentedInfo {
        let n = self.snapshot();
        NativeAugmentedInfo { scale: n.augmented_scale(), offset_k: n.augmented_offset_k() as u32, extra: n.augmented_extra() as u32, gated: n.augmented_gated() }
    }

    /// Number of query rows identical to a query-bank row (embeddings mode; 0 otherwise).
    #[napi]
    pub fn leaked_queries(&self, queries: NativeMatrix) -> napi::Result<u32> {
        let n = self.snapshot();
        guarded(|| n.leaked_queries(queries.view("queries")?)).map(|c| c as u32)
    }

    /// Number of gallery rows that also appear in the gallery bank.
    #[napi]
    pub fn gallery_bank_overlap(&self) -> u32 {
        self.snapshot().gallery_bank_overlap() as u32
    }
}
