//! napi glue for large galleries: metrics streamed from a fitted normaliser
//! ([`crate::eval::retrieval_metrics_normalized`]).

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::eval::{gt_of, opts_of, retrieval_out, NativeEvalOptions, NativeGroundTruth, NativeRetrieval};
use super::{guarded, job_state, run_sync, Code, NativeJob, NativeMatrix, NativeNormalizer, Run};
use crate::control::Control;
use crate::eval::{retrieval_metrics_normalized, RetrievalMetrics};
use crate::normalizer::Normalizer;

fn stream_work(
    n: Arc<Normalizer>,
    input: NativeMatrix,
    gt: NativeGroundTruth,
    opts: NativeEvalOptions,
) -> impl FnOnce(&Control) -> crate::Result<RetrievalMetrics> + Send + 'static {
    move |ctl| retrieval_metrics_normalized(&n, input.view("input")?, &gt_of(&gt)?, &opts_of(&opts)?, ctl)
}

#[napi]
impl NativeNormalizer {
    /// Retrieval metrics of the normalised scores of `input` (t2v), streamed: the score matrix is never built.
    #[napi]
    pub fn evaluate_sync(&self, input: NativeMatrix, gt: NativeGroundTruth, opts: NativeEvalOptions) -> napi::Result<NativeRetrieval, Code> {
        run_sync(stream_work(self.snapshot(), input, gt, opts), retrieval_out)
    }

    #[napi(ts_return_type = "Promise<NativeRetrieval>")]
    pub fn evaluate(&self, input: NativeMatrix, gt: NativeGroundTruth, opts: NativeEvalOptions, job: Option<&NativeJob>) -> AsyncTask<Run<RetrievalMetrics, NativeRetrieval>> {
        Run::spawn(stream_work(self.snapshot(), input, gt, opts), job_state(job), retrieval_out)
    }
}

/// A `.npy` file opened as a mapped matrix: `data` views the mapping in place for `<f4` (`mapped`
/// true; the mapping lives as long as the array) and holds a converted copy for `<f2` / `<f8`.
#[napi(object)]
pub struct NativeMappedNpy {
    pub data: Float32Array,
    pub rows: u32,
    pub cols: u32,
    pub mapped: bool,
}

fn rows_u32(n: usize, what: &str, name: &str) -> crate::Result<u32> {
    u32::try_from(n).map_err(|_| crate::Error::shape(format!("{name}: {n} {what} exceed 2^32 − 1")))
}

/// Maps a `.npy` file (see `crate::mapped`), validates its values (finite) and hands it to JS.
#[napi]
pub fn read_npy_mapped_sync(path: String) -> napi::Result<NativeMappedNpy, Code> {
    let (m, rows, cols) = guarded(|| {
        let m = crate::mapped::map_npy(&path)?;
        let (rows, cols) = (rows_u32(m.rows, "rows", &path)?, rows_u32(m.cols, "columns", &path)?);
        Ok((m, rows, cols))
    })?;
    let mut m = m;
    if m.as_f32().is_some() {
        guarded(|| crate::matrix::MatRef::new(m.as_f32().unwrap_or(&[]), m.rows, m.cols, &path)?.check_finite(&path))?;
        if let Some(ptr) = m.as_f32_mut_ptr() {
            let len = m.rows * m.cols;
            // SAFETY: `ptr` points at `len` f32 inside the private mapping owned by `m`, which moves
            // into the finaliser and is dropped (unmapped) only when the JS array is collected.
            let data = unsafe { Float32Array::with_external_data(ptr, len, move |_, _| drop(m)) };
            return Ok(NativeMappedNpy { data, rows, cols, mapped: true });
        }
        return Ok(NativeMappedNpy { data: Float32Array::new(Vec::new()), rows, cols, mapped: true });
    }
    let v = m.to_f32();
    guarded(|| crate::matrix::MatRef::new(&v, m.rows, m.cols, &path)?.check_finite(&path))?;
    Ok(NativeMappedNpy { data: Float32Array::new(v), rows, cols, mapped: false })
}
