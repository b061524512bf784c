//! One generic napi task for every asynchronous call, and its synchronous twin.
//!
//! An operation is a *work* closure computing a Rust value (given a [`Control`] for abort and
//! progress) plus an *output* conversion into the JavaScript value. [`Run`] schedules the work on
//! the libuv thread pool and converts on the main thread; [`run_sync`] does both on the calling
//! thread. The two share everything but scheduling. (The shape follows napi-rs's `AsyncTask` as
//! node-rs uses it; the code is ours.)
//!
//! Errors carry the stable code as the napi error status, so JavaScript sees `err.code ===
//! 'ERR_SHAPE'` directly (napi 3 takes any `AsRef<str>` status) and the message without a prefix.

use std::sync::Arc;

use napi::bindgen_prelude::*;

use super::{guarded_core, with_control, JobState};
use crate::control::Control;
use crate::error::Error as DbError;

/// The stable error code (`"ERR_SHAPE"`), used as the napi error status.
#[derive(Clone, Copy, Debug)]
pub struct Code(pub &'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// A result whose error reaches JavaScript with `code` set to one of the stable codes.
pub type JsResult<T> = std::result::Result<T, napi::Error<Code>>;

/// The JavaScript-facing form of a core error.
pub(crate) fn js_err(e: DbError) -> napi::Error<Code> {
    napi::Error::new(Code(e.code.as_str()), e.message)
}

type Work<O> = Box<dyn FnOnce(&Control) -> crate::Result<O> + Send>;
type Output<O, J> = Box<dyn FnMut(O) -> J + Send>;

/// An asynchronous operation: `work` on the thread pool (observing `job`), `out` on the main thread.
pub struct Run<O: Send + 'static, J> {
    work: Option<Work<O>>,
    job: Option<Arc<JobState>>,
    out: Output<O, J>,
    err: Option<DbError>,
}

impl<O: Send + 'static, J: ToNapiValue + TypeName> Run<O, J> {
    /// Schedules `work` (observing `job` for abort and progress) and converts its value with `out`.
    pub(crate) fn spawn(work: impl FnOnce(&Control) -> crate::Result<O> + Send + 'static, job: Option<Arc<JobState>>, out: impl FnMut(O) -> J + Send + 'static) -> AsyncTask<Self> {
        AsyncTask::new(Run { work: Some(Box::new(work)), job, out: Box::new(out), err: None })
    }
}

impl<O: Send + 'static, J: ToNapiValue + TypeName> Task for Run<O, J> {
    type Output = O;
    type JsValue = J;

    fn compute(&mut self) -> napi::Result<O> {
        let work = self.work.take();
        let job = &self.job;
        let r = guarded_core(move || match work {
            Some(w) => with_control(job, w),
            None => Err(DbError::new(crate::error::ErrorCode::Internal, "task computed twice")),
        });
        r.map_err(|e| {
            let msg = e.message.clone();
            self.err = Some(e);
            napi::Error::new(Status::GenericFailure, msg)
        })
    }

    fn resolve(&mut self, _env: Env, out: O) -> napi::Result<J> {
        Ok((self.out)(out))
    }

    fn reject(&mut self, env: Env, err: napi::Error) -> napi::Result<J> {
        match self.err.take() {
            // A JS error object with `code` set, handed to napi as the rejection value.
            Some(e) => Err(napi::Error::from(JsError::from(js_err(e)).into_unknown(env))),
            None => Err(err),
        }
    }
}

/// The synchronous twin of [`Run::spawn`]: the same work and output, on the calling thread.
pub fn run_sync<O, J>(work: impl FnOnce(&Control) -> crate::Result<O>, out: impl FnOnce(O) -> J) -> JsResult<J> {
    guarded_core(|| work(&Control::none())).map(out).map_err(js_err)
}
