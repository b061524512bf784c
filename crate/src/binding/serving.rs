//! napi glue for the serving features of a fitted normaliser: appending gallery items, re-ranking
//! candidates, augmented vectors for inner-product indexes, and the leak guard.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{guarded, job_state, js_err, leak_count, run_sync, Code, NativeJob, NativeMatrix, NativeNormalizer, NativeTopK, Run, Slot};
use crate::control::Control;
use crate::error::{Error as DbError, ErrorCode};
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

type AugmentedPair = (Vec<f32>, usize);

fn augment_work(n: Arc<Normalizer>, queries: NativeMatrix) -> impl FnOnce(&Control) -> crate::Result<AugmentedPair> + Send + 'static {
    move |ctl| n.augment_queries(queries.view("queries")?, ctl)
}

fn augment_out(rows: u32) -> impl FnMut(AugmentedPair) -> NativeAugmented + Send + 'static {
    move |(v, w)| NativeAugmented { rows, cols: w as u32, data: Float32Array::new(v) }
}

/// Installs an extended normaliser, unless the slot moved on since `base` was taken (a mutation
/// the caller did not serialize): then `ERR_BUSY` instead of silently dropping the other's items.
fn install(target: &Slot, base: &Arc<Normalizer>, out: Option<Normalizer>) -> crate::Result<u32> {
    let Some(out) = out else {
        return Ok(base.n_gallery as u32);
    };
    let n = out.n_gallery as u32;
    if !Arc::ptr_eq(&target.get(), base) {
        return Err(DbError::new(ErrorCode::Busy, "the gallery changed while addGallery ran (another addGallery was not awaited); nothing was added"));
    }
    target.set(out);
    Ok(n)
}

/// The extended normaliser, or `None` when no item is added (zero rows: a no-op).
type Extended = (Arc<Normalizer>, Option<Normalizer>);

fn add_work(base: Arc<Normalizer>, input: NativeAddInput) -> impl FnOnce(&Control) -> crate::Result<Extended> + Send + 'static {
    move |ctl| {
        let count = add_count(&input)?;
        if count == 0 {
            return Ok((base, None));
        }
        super::probe_alloc::<[f64; 4]>(base.n_gallery.saturating_add(count), "the new gallery size")?;
        let out = add_impl(&base, &input, ctl)?;
        Ok((base, Some(out)))
    }
}

/// Number of new items the input describes.
fn add_count(input: &NativeAddInput) -> crate::Result<usize> {
    match &input.items {
        Some(items) => Ok(items.rows as usize),
        None => input
            .count
            .map(|c| c as usize)
            .or(input.query_bank_sims.as_ref().map(|m| m.cols as usize))
            .or(input.gallery_bank_sims.as_ref().map(|m| m.cols as usize))
            .ok_or_else(|| DbError::shape("no new items given")),
    }
}

type TopPair = (Vec<u32>, Vec<f32>);

fn rerank_work(n: Arc<Normalizer>, input: NativeMatrix, candidates: Uint32Array, c: u32, guard: bool) -> impl FnOnce(&Control) -> crate::Result<(TopPair, u32)> + Send + 'static {
    move |ctl| {
        ctl.check()?;
        let leaked = leak_count(&n, &input, guard)?;
        Ok((n.rerank(input.view("input")?, &candidates, c as usize)?, leaked))
    }
}

fn rerank_out(rows: u32, c: u32) -> impl FnMut((TopPair, u32)) -> NativeTopK + Send + 'static {
    move |((i, s), leaked)| NativeTopK { rows, k: c, indices: Uint32Array::new(i), scores: Float32Array::new(s), leaked }
}

/// The result of an async `addGallery`: installed on the main thread when the work is done.
pub struct Added {
    target: Slot,
}

impl Added {
    fn out(self) -> impl FnMut(Extended) -> AddOutcome + Send + 'static {
        move |(base, out)| match install(&self.target, &base, out) {
            Ok(n) => AddOutcome { gallery_count: n, error: None, code: None },
            Err(e) => AddOutcome { gallery_count: base.n_gallery as u32, error: Some(e.message), code: Some(e.code.as_str().into()) },
        }
    }
}

/// What an async `addGallery` did: the new gallery size, or the coded reason nothing was added.
#[napi(object)]
pub struct AddOutcome {
    pub gallery_count: u32,
    pub error: Option<String>,
    pub code: Option<String>,
}

#[napi]
impl NativeNormalizer {
    /// Appends gallery items (returns the new gallery size). Blocks the event loop.
    #[napi]
    pub fn add_gallery_sync(&self, input: NativeAddInput) -> napi::Result<u32, Code> {
        let target = self.slot();
        run_sync(add_work(self.snapshot(), input), |(base, out)| install(&target, &base, out))?.map_err(js_err)
    }

    /// Appends gallery items on the thread pool; the normaliser switches to the extended state when
    /// the promise resolves (work already running keeps the old state).
    #[napi(ts_return_type = "Promise<AddOutcome>")]
    pub fn add_gallery(&self, input: NativeAddInput, job: Option<&NativeJob>) -> AsyncTask<Run<Extended, AddOutcome>> {
        Run::spawn(add_work(self.snapshot(), input), job_state(job), Added { target: self.slot() }.out())
    }

    #[napi]
    pub fn rerank_sync(&self, input: NativeMatrix, candidates: Uint32Array, c: u32, guard: bool) -> napi::Result<NativeTopK, Code> {
        let rows = input.rows;
        run_sync(rerank_work(self.snapshot(), input, candidates, c, guard), rerank_out(rows, c))
    }

    #[napi(ts_return_type = "Promise<NativeTopK>")]
    pub fn rerank(&self, input: NativeMatrix, candidates: Uint32Array, c: u32, guard: bool, job: Option<&NativeJob>) -> AsyncTask<Run<(TopPair, u32), NativeTopK>> {
        let rows = input.rows;
        Run::spawn(rerank_work(self.snapshot(), input, candidates, c, guard), job_state(job), rerank_out(rows, c))
    }

    /// Augmented gallery rows `start..start + count` (default: all).
    #[napi]
    pub fn augmented_gallery(&self, start: Option<u32>, count: Option<u32>) -> napi::Result<NativeAugmented, Code> {
        let n = self.snapshot();
        let range = start.map(|s| (s as usize, count.map(|c| c as usize).unwrap_or(n.n_gallery.saturating_sub(s as usize))));
        guarded(|| n.augmented_gallery_rows(range)).map(|(v, w)| NativeAugmented { rows: (v.len() / w.max(1)) as u32, cols: w as u32, data: Float32Array::new(v) })
    }

    #[napi]
    pub fn augment_queries(&self, queries: NativeMatrix) -> napi::Result<NativeAugmented, Code> {
        let n = self.snapshot();
        let rows = queries.rows;
        guarded(|| n.augment_queries(queries.view("queries")?, &crate::control::Control::none())).map(|(v, w)| NativeAugmented { rows, cols: w as u32, data: Float32Array::new(v) })
    }

    /// `augment_queries` on the thread pool (the raw search of DIS / DualDIS runs off the event loop).
    #[napi(ts_return_type = "Promise<NativeAugmented>")]
    pub fn augment_queries_async(&self, queries: NativeMatrix, job: Option<&NativeJob>) -> AsyncTask<Run<AugmentedPair, NativeAugmented>> {
        let rows = queries.rows;
        Run::spawn(augment_work(self.snapshot(), queries), job_state(job), augment_out(rows))
    }

    /// Augmented queries with the gates from given raw top-1 ids (one per query; DIS / DualDIS).
    #[napi]
    pub fn augment_queries_with_top1(&self, queries: NativeMatrix, top1: Uint32Array) -> napi::Result<NativeAugmented, Code> {
        let n = self.snapshot();
        let rows = queries.rows;
        guarded(|| n.augment_queries_with_top1(queries.view("queries")?, &top1)).map(|(v, w)| NativeAugmented { rows, cols: w as u32, data: Float32Array::new(v) })
    }

    /// Constants for serving from an inner-product engine: score = scale · ip − offset(q).
    #[napi]
    pub fn augmented_info(&self) -> napi::Result<NativeAugmentedInfo, Code> {
        let n = self.snapshot();
        guarded(|| n.check_servable())?;
        Ok(NativeAugmentedInfo { scale: n.augmented_scale(), offset_k: n.augmented_offset_k() as u32, extra: n.augmented_extra() as u32, gated: n.augmented_gated() })
    }

    /// Number of query rows identical to a query-bank row (embeddings mode; 0 otherwise).
    #[napi]
    pub fn leaked_queries(&self, queries: NativeMatrix) -> napi::Result<u32, Code> {
        let n = self.snapshot();
        guarded(|| n.leaked_queries(queries.view("queries")?)).map(|c| c as u32)
    }

    /// Number of gallery rows that also appear in the gallery bank.
    #[napi]
    pub fn gallery_bank_overlap(&self) -> u32 {
        self.snapshot().gallery_bank_overlap() as u32
    }
}
