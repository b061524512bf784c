//! napi glue for `crate::shard`: fit one shard of a fit, save / load it, and merge shards into a
//! [`NativeNormalizer`]. Knows nothing of the statistics; see `crate::shard` for the rules.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{fit_source, job_state, parse_params, probe_gallery_count, run_sync, Code, FitSource, NativeFitInput, NativeJob, NativeNormalizer, NativeParams, Run};
use crate::control::Control;
use crate::normalizer::Normalizer;
use crate::error::Error as DbError;
use crate::normalizer::Mode;
use crate::shard::{self, PartialFit, ShardSpec};

/// Where this shard's slices sit in the whole fit (`start` within `total` per axis; absent = the
/// whole axis).
#[napi(object)]
#[derive(Clone, Copy)]
pub struct NativeShardSpec {
    pub gallery_start: Option<u32>,
    pub gallery_total: Option<u32>,
    pub query_bank_start: Option<u32>,
    pub query_bank_total: Option<u32>,
    pub gallery_bank_start: Option<u32>,
    pub gallery_bank_total: Option<u32>,
}

fn spec(s: &NativeShardSpec) -> crate::Result<ShardSpec> {
    let pair = |a: Option<u32>, b: Option<u32>, what: &str| match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a as usize, b as usize))),
        (None, None) => Ok(None),
        _ => Err(DbError::param(format!("shard {what}: give both start and total"))),
    };
    Ok(ShardSpec {
        gallery: pair(s.gallery_start, s.gallery_total, "gallery")?,
        query_bank: pair(s.query_bank_start, s.query_bank_total, "queryBank")?,
        gallery_bank: pair(s.gallery_bank_start, s.gallery_bank_total, "galleryBank")?,
    })
}

fn fit_partial(input: &NativeFitInput, params: &NativeParams, s: &NativeShardSpec, ctl: &Control) -> crate::Result<PartialFit> {
    probe_gallery_count(input)?;
    let (method, p) = parse_params(params)?;
    let s = spec(s)?;
    match fit_source(input)? {
        FitSource::Embeddings { metric, gallery, query_bank, gallery_bank } => PartialFit::fit_embeddings(method, p, metric, gallery, query_bank, gallery_bank, s, ctl),
        FitSource::Similarities { query_bank_sims, gallery_bank_sims, gallery_count } => PartialFit::fit_similarities(method, p, query_bank_sims, gallery_bank_sims, gallery_count, s, ctl),
    }
}

/// A row range of one axis.
#[napi(object)]
pub struct NativeRange {
    pub start: u32,
    pub count: u32,
    pub total: u32,
}

fn range(r: shard::Range) -> NativeRange {
    NativeRange { start: r.start as u32, count: r.count as u32, total: r.total as u32 }
}

/// What a partial normaliser covers.
#[napi(object)]
pub struct NativePartialInfo {
    pub mode: String,
    pub metric: Option<String>,
    pub dim: u32,
    pub gallery: NativeRange,
    pub query_bank: Option<NativeRange>,
    pub gallery_bank: Option<NativeRange>,
}

/// One shard of a fit, in native memory. It cannot score or search; merge the parts.
#[napi]
pub struct NativePartial {
    inner: Arc<PartialFit>,
}

fn wrap(p: PartialFit) -> NativePartial {
    NativePartial { inner: Arc::new(p) }
}

fn fit_work(input: NativeFitInput, params: NativeParams, s: NativeShardSpec) -> impl FnOnce(&Control) -> crate::Result<PartialFit> + Send + 'static {
    move |ctl| fit_partial(&input, &params, &s, ctl)
}

// Saving and loading are one block each: the signal is checked before the file is touched.
fn save_work(inner: Arc<PartialFit>, path: String) -> impl FnOnce(&Control) -> crate::Result<()> + Send + 'static {
    move |ctl| {
        ctl.check()?;
        shard::file::save(&inner, &path)
    }
}

fn load_work(path: String) -> impl FnOnce(&Control) -> crate::Result<PartialFit> + Send + 'static {
    move |ctl| {
        ctl.check()?;
        shard::file::load(&path)
    }
}

#[napi]
impl NativePartial {
    /// Fits one shard synchronously (small inputs only).
    #[napi(factory)]
    pub fn fit_sync(input: NativeFitInput, params: NativeParams, shard: NativeShardSpec) -> napi::Result<NativePartial, Code> {
        run_sync(fit_work(input, params, shard), wrap)
    }

    /// Fits one shard on the libuv thread pool; observes `job`.
    #[napi(ts_return_type = "Promise<NativePartial>")]
    pub fn fit(input: NativeFitInput, params: NativeParams, shard: NativeShardSpec, job: Option<&NativeJob>) -> AsyncTask<Run<PartialFit, NativePartial>> {
        Run::spawn(fit_work(input, params, shard), job_state(job), wrap)
    }

    #[napi]
    pub fn save_sync(&self, path: String) -> napi::Result<(), Code> {
        run_sync(save_work(self.inner.clone(), path), |()| ())
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn save(&self, path: String, job: Option<&NativeJob>) -> AsyncTask<Run<(), ()>> {
        Run::spawn(save_work(self.inner.clone(), path), job_state(job), |()| ())
    }

    #[napi(factory)]
    pub fn load_sync(path: String) -> napi::Result<NativePartial, Code> {
        run_sync(load_work(path), wrap)
    }

    #[napi(ts_return_type = "Promise<NativePartial>")]
    pub fn load(path: String, job: Option<&NativeJob>) -> AsyncTask<Run<PartialFit, NativePartial>> {
        Run::spawn(load_work(path), job_state(job), wrap)
    }

    #[napi]
    pub fn fitted_params(&self) -> NativeParams {
        super::params_out(self.inner.method, &self.inner.params)
    }

    #[napi]
    pub fn info(&self) -> NativePartialInfo {
        let p = &self.inner;
        let (mode, metric) = match p.mode {
            Mode::Embeddings { metric, .. } => ("embeddings", Some(metric.as_str().to_string())),
            Mode::Similarities => ("similarities", None),
        };
        NativePartialInfo {
            mode: mode.into(),
            metric,
            dim: p.dim() as u32,
            gallery: range(p.gallery_range),
            query_bank: p.query_stats.as_ref().map(|b| range(b.range)),
            gallery_bank: p.gallery_stats.as_ref().map(|b| range(b.range)),
        }
    }
}

/// Collects parts (`add`), then merges them (`finish`) into a full normaliser.
#[napi]
pub struct NativeMerger {
    parts: Vec<Arc<PartialFit>>,
}

fn merge_work(parts: Vec<Arc<PartialFit>>) -> impl FnOnce(&Control) -> crate::Result<Normalizer> + Send + 'static {
    move |ctl| shard::merge(&parts, ctl)
}

#[napi]
impl NativeMerger {
    #[napi(constructor)]
    pub fn new() -> Self {
        NativeMerger { parts: Vec::new() }
    }

    /// Adds a part (shared, not copied).
    #[napi]
    pub fn add(&mut self, part: &NativePartial) {
        self.parts.push(part.inner.clone());
    }

    /// Merges synchronously.
    #[napi]
    pub fn finish_sync(&self) -> napi::Result<NativeNormalizer, Code> {
        run_sync(merge_work(self.parts.clone()), NativeNormalizer::from_normalizer)
    }

    /// Merges on the libuv thread pool.
    #[napi(ts_return_type = "Promise<NativeNormalizer>")]
    pub fn finish(&self, job: Option<&NativeJob>) -> AsyncTask<Run<Normalizer, NativeNormalizer>> {
        Run::spawn(merge_work(self.parts.clone()), job_state(job), NativeNormalizer::from_normalizer)
    }
}

impl Default for NativeMerger {
    fn default() -> Self {
        Self::new()
    }
}
