//! napi glue for `crate::persist`: save a fitted normaliser to a file and load it back, sync and
//! async. The async variants read and write on the libuv thread pool; saving works on a snapshot
//! taken when it is called (later changes to the normaliser do not affect a running save).

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{guarded, NativeNormalizer, NativeParams};
use crate::normalizer::Normalizer;

pub struct SaveTask {
    inner: Arc<Normalizer>,
    path: String,
}

impl Task for SaveTask {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> napi::Result<()> {
        guarded(|| crate::persist::save(&self.inner, &self.path))
    }
    fn resolve(&mut self, _env: Env, _out: ()) -> napi::Result<()> {
        Ok(())
    }
}

pub struct LoadTask {
    path: String,
}

impl Task for LoadTask {
    type Output = Normalizer;
    type JsValue = NativeNormalizer;
    fn compute(&mut self) -> napi::Result<Normalizer> {
        guarded(|| crate::persist::load(&self.path))
    }
    fn resolve(&mut self, _env: Env, out: Normalizer) -> napi::Result<NativeNormalizer> {
        Ok(NativeNormalizer::from_normalizer(out))
    }
}

#[napi]
impl NativeNormalizer {
    /// Saves to `path` (atomically: a temporary file next to it, renamed over it). Blocks the event
    /// loop for the whole write. `ERR_IO` if the file cannot be written.
    #[napi]
    pub fn save_sync(&self, path: String) -> napi::Result<()> {
        let inner = self.snapshot();
        guarded(|| crate::persist::save(&inner, &path))
    }

    /// Async `saveSync` (writes on the libuv thread pool).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save(&self, path: String) -> AsyncTask<SaveTask> {
        AsyncTask::new(SaveTask { inner: self.snapshot(), path })
    }

    /// Loads a file written by `save`. `ERR_IO` if it cannot be read, `ERR_FORMAT` if it is
    /// truncated, corrupted, of another format version or endianness, or inconsistent.
    #[napi(factory)]
    pub fn load_sync(path: String) -> napi::Result<NativeNormalizer> {
        guarded(|| crate::persist::load(&path)).map(NativeNormalizer::from_normalizer)
    }

    /// Async `loadSync` (reads on the libuv thread pool).
    #[napi(ts_return_type = "Promise<NativeNormalizer>")]
    pub fn load(path: String) -> AsyncTask<LoadTask> {
        AsyncTask::new(LoadTask { path })
    }

    /// The method and every parameter, as stored (what a loaded normaliser's options are rebuilt from).
    #[napi]
    pub fn fitted_params(&self) -> NativeParams {
        let inner = self.snapshot();
        let p = &inner.params;
        NativeParams {
            method: inner.method.as_str().to_string(),
            beta_query: p.beta_query,
            beta_gallery: p.beta_gallery,
            k: u32::try_from(p.k).unwrap_or(u32::MAX),
            csls_k: u32::try_from(p.csls_k).unwrap_or(u32::MAX),
            nnn_k: u32::try_from(p.nnn_k).unwrap_or(u32::MAX),
            nnn_alpha: p.nnn_alpha,
        }
    }
}
