//! napi glue for `crate::persist`: save a fitted normaliser to a file and load it back, sync and
//! async. The async variants read and write on the libuv thread pool; saving works on a snapshot
//! taken when it is called (later changes to the normaliser do not affect a running save).

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{job_state, run_sync, Code, NativeJob, NativeNormalizer, NativeParams, Run};
use crate::control::Control;
use crate::normalizer::Normalizer;

// Saving and loading are one block each: the signal is checked before the file is touched, and an
// abort while it runs rejects when it ends (the TS facade re-checks the signal).
fn save_work(inner: Arc<Normalizer>, path: String) -> impl FnOnce(&Control) -> crate::Result<()> + Send + 'static {
    move |ctl| {
        ctl.check()?;
        crate::persist::save(&inner, &path)
    }
}

fn load_work(path: String) -> impl FnOnce(&Control) -> crate::Result<Normalizer> + Send + 'static {
    move |ctl| {
        ctl.check()?;
        crate::persist::load(&path)
    }
}

#[napi]
impl NativeNormalizer {
    /// Saves to `path` (atomically: a temporary file next to it, renamed over it). Blocks the event
    /// loop for the whole write. `ERR_IO` if the file cannot be written.
    #[napi]
    pub fn save_sync(&self, path: String) -> napi::Result<(), Code> {
        run_sync(save_work(self.snapshot(), path), |()| ())
    }

    /// Async `saveSync` (writes on the libuv thread pool).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save(&self, path: String, job: Option<&NativeJob>) -> AsyncTask<Run<(), ()>> {
        Run::spawn(save_work(self.snapshot(), path), job_state(job), |()| ())
    }

    /// Loads a file written by `save`. `ERR_IO` if it cannot be read, `ERR_FORMAT` if it is
    /// truncated, corrupted, of another format version or endianness, or inconsistent.
    #[napi(factory)]
    pub fn load_sync(path: String) -> napi::Result<NativeNormalizer, Code> {
        run_sync(load_work(path), NativeNormalizer::from_normalizer)
    }

    /// Async `loadSync` (reads on the libuv thread pool).
    #[napi(ts_return_type = "Promise<NativeNormalizer>")]
    pub fn load(path: String, job: Option<&NativeJob>) -> AsyncTask<Run<Normalizer, NativeNormalizer>> {
        Run::spawn(load_work(path), job_state(job), NativeNormalizer::from_normalizer)
    }

    /// The method and every parameter, as stored (what a loaded normaliser's options are rebuilt from).
    #[napi]
    pub fn fitted_params(&self) -> NativeParams {
        let inner = self.snapshot();
        super::params_out(inner.method, &inner.params)
    }
}
