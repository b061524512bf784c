//! napi glue for [`crate::bank::BankBuilder`].

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{guarded, run_sync, Code, Run};
use crate::bank::BankBuilder;
use crate::control::Control;
use crate::error::{Error as DbError, ErrorCode};

/// Builds a bank from row blocks in native memory.
#[napi]
pub struct NativeBankBuilder {
    inner: Arc<Mutex<Option<BankBuilder>>>,
}

fn append_impl(inner: &Mutex<Option<BankBuilder>>, block: &[f32], rows: u32) -> crate::Result<()> {
    let mut g = inner.lock().map_err(|_| DbError::new(ErrorCode::Internal, "bank builder lock poisoned"))?;
    let b = g.as_mut().ok_or_else(|| DbError::param("this bank builder is finished"))?;
    b.append(block, rows as usize)
}

fn append_work(inner: Arc<Mutex<Option<BankBuilder>>>, block: Float32Array, rows: u32) -> impl FnOnce(&Control) -> crate::Result<()> + Send + 'static {
    move |_| append_impl(&inner, &block, rows)
}

#[napi(object)]
pub struct NativeBankOut {
    pub data: Float32Array,
    pub rows: u32,
    pub cols: u32,
    pub source_rows: f64,
    pub duplicates_dropped: f64,
    pub subsampled: bool,
}

#[napi]
impl NativeBankBuilder {
    /// `subsample` 0 = keep every row.
    #[napi(constructor)]
    pub fn new(dim: u32, subsample: u32, seed: f64, dedupe: bool) -> napi::Result<Self, Code> {
        let cap = if subsample == 0 { None } else { Some(subsample as usize) };
        guarded(|| BankBuilder::new(dim as usize, cap, seed as u64, dedupe)).map(|b| NativeBankBuilder { inner: Arc::new(Mutex::new(Some(b))) })
    }

    #[napi]
    pub fn append_sync(&self, block: Float32Array, rows: u32) -> napi::Result<(), Code> {
        run_sync(append_work(self.inner.clone(), block, rows), |()| ())
    }

    /// Appends off the event loop (blocks are applied in call order when awaited in turn).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn append(&self, block: Float32Array, rows: u32) -> AsyncTask<Run<(), ()>> {
        Run::spawn(append_work(self.inner.clone(), block, rows), None, |()| ())
    }

    #[napi]
    pub fn finish(&self) -> napi::Result<NativeBankOut, Code> {
        guarded(|| {
            let mut g = self.inner.lock().map_err(|_| DbError::new(ErrorCode::Internal, "bank builder lock poisoned"))?;
            let b = g.take().ok_or_else(|| DbError::param("this bank builder is finished"))?;
            let (data, s) = b.finish();
            Ok((data, s))
        })
        .map(|(data, s)| NativeBankOut {
            data: Float32Array::new(data),
            rows: s.size as u32,
            cols: s.dim as u32,
            source_rows: s.source_rows as f64,
            duplicates_dropped: s.duplicates_dropped as f64,
            subsampled: s.subsampled,
        })
    }
}
