//! The napi glue: converts JS values to slices, runs the kernels, returns typed arrays.
//! Knows nothing of any method's math. Every entry point catches panics (a panic never crosses the
//! FFI boundary) and reports errors as `"<CODE>: <message>"`, which the TS facade turns into a
//! `DbnormError` with `code`. Heavy calls exist as `AsyncTask`s (run on the libuv pool, off the event
//! loop) that observe a [`NativeJob`] for abort and progress.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::control::Control;
use crate::error::{Error as DbError, ErrorCode};
use crate::kernels::similarity::{similarity as sim_kernel, Metric};
use crate::matrix::MatRef;
use crate::methods::{Method, Params};
use crate::normalizer::{Mode, Normalizer};

fn to_napi(e: DbError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, e.to_string())
}

/// Builds rayon's global pool once, with workers at a lower scheduling priority (nice +10 on Linux).
///
/// The workers saturate every core during a fit; at equal priority the kernel then delays the Node
/// main thread by whole time slices (tens of ms of event-loop lag). At nice +10 the main thread wins
/// the CPU whenever it is runnable, and on an otherwise idle machine the workers lose nothing.
fn ensure_pool() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // Fails only if a pool was already built (e.g. by an embedder): then keep theirs.
        let _ = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("dbnorm-{i}")).start_handler(|_| lower_priority()).build_global();
    });
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread; with PRIO_PROCESS a thread id selects one thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Runs `f`, converting a panic into `ERR_INTERNAL`.
pub(crate) fn guarded<T>(f: impl FnOnce() -> crate::Result<T>) -> napi::Result<T> {
    ensure_pool();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_napi),
        Err(p) => {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into());
            Err(to_napi(DbError::new(ErrorCode::Internal, format!("internal error (please report): {msg}"))))
        }
    }
}

pub(crate) fn mat<'a>(data: &'a [f32], rows: u32, cols: u32, name: &str) -> crate::Result<MatRef<'a>> {
    MatRef::new(data, rows as usize, cols as usize, name)
}

/// Cancellation flag and progress counters shared between JS and a running native task.
#[napi]
pub struct NativeJob {
    state: Arc<JobState>,
}

#[derive(Default)]
pub(crate) struct JobState {
    aborted: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
    phase: Mutex<String>,
}

/// A snapshot of a job's progress.
#[napi(object)]
pub struct JobProgress {
    pub phase: String,
    pub done: f64,
    pub total: f64,
}

#[napi]
impl NativeJob {
    #[napi(constructor)]
    pub fn new() -> Self {
        NativeJob { state: Arc::new(JobState::default()) }
    }

    /// Requests the running task to stop at its next block boundary.
    #[napi]
    pub fn abort(&self) {
        self.state.aborted.store(true, Ordering::SeqCst);
    }

    #[napi]
    pub fn progress(&self) -> JobProgress {
        JobProgress {
            phase: self.state.phase.lock().map(|p| p.clone()).unwrap_or_default(),
            done: self.state.done.load(Ordering::Relaxed) as f64,
            total: self.state.total.load(Ordering::Relaxed) as f64,
        }
    }
}

impl Default for NativeJob {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn with_control<T>(job: &Option<Arc<JobState>>, f: impl FnOnce(&Control) -> crate::Result<T>) -> crate::Result<T> {
    match job {
        None => f(&Control::none()),
        Some(st) => {
            let abort = || st.aborted.load(Ordering::Relaxed);
            let progress = |phase: &str, done: usize, total: usize| {
                if let Ok(mut p) = st.phase.lock() {
                    if p.as_str() != phase {
                        *p = phase.to_string();
                    }
                }
                st.total.store(total as u64, Ordering::Relaxed);
                st.done.store(done as u64, Ordering::Relaxed);
            };
            let ctl = Control::new(Some(&abort), Some(&progress));
            ctl.check()?;
            f(&ctl)
        }
    }
}

pub(crate) fn job_state(job: Option<&NativeJob>) -> Option<Arc<JobState>> {
    job.map(|j| j.state.clone())
}

// ---------------------------------------------------------------------------------------------
// similarity

fn similarity_impl(a: &[f32], a_rows: u32, b: &[f32], b_rows: u32, dim: u32, metric: &str) -> crate::Result<Vec<f32>> {
    let metric = Metric::parse(metric)?;
    sim_kernel(mat(a, a_rows, dim, "a")?, mat(b, b_rows, dim, "b")?, metric)
}

/// `a` (aRows×dim) against `b` (bRows×dim): row-major f32 similarity matrix aRows×bRows.
#[napi]
pub fn similarity_sync(a: Float32Array, a_rows: u32, b: Float32Array, b_rows: u32, dim: u32, metric: String) -> napi::Result<Float32Array> {
    guarded(|| similarity_impl(&a, a_rows, &b, b_rows, dim, &metric)).map(Float32Array::new)
}

pub struct SimilarityTask {
    a: Float32Array,
    a_rows: u32,
    b: Float32Array,
    b_rows: u32,
    dim: u32,
    metric: String,
}

impl Task for SimilarityTask {
    type Output = Vec<f32>;
    type JsValue = Float32Array;
    fn compute(&mut self) -> napi::Result<Vec<f32>> {
        guarded(|| similarity_impl(&self.a, self.a_rows, &self.b, self.b_rows, self.dim, &self.metric))
    }
    fn resolve(&mut self, _env: Env, out: Vec<f32>) -> napi::Result<Float32Array> {
        Ok(Float32Array::new(out))
    }
}

/// Async [`similarity_sync`].
#[napi(ts_return_type = "Promise<Float32Array>")]
pub fn similarity(a: Float32Array, a_rows: u32, b: Float32Array, b_rows: u32, dim: u32, metric: String) -> AsyncTask<SimilarityTask> {
    AsyncTask::new(SimilarityTask { a, a_rows, b, b_rows, dim, metric })
}

// ---------------------------------------------------------------------------------------------
// normaliser

/// Every method parameter, explicit (the TS facade applies defaults).
#[napi(object)]
#[derive(Clone)]
pub struct NativeParams {
    pub method: String,
    pub beta_query: f64,
    pub beta_gallery: f64,
    pub k: u32,
    pub csls_k: u32,
    pub nnn_k: u32,
    pub nnn_alpha: f64,
}

fn parse_params(p: &NativeParams) -> crate::Result<(Method, Params)> {
    Ok((
        Method::parse(&p.method)?,
        Params {
            beta_query: p.beta_query,
            beta_gallery: p.beta_gallery,
            k: p.k as usize,
            csls_k: p.csls_k as usize,
            nnn_k: p.nnn_k as usize,
            nnn_alpha: p.nnn_alpha,
        },
    ))
}

/// A row-major f32 matrix handed over from JS.
#[napi(object)]
pub struct NativeMatrix {
    pub data: Float32Array,
    pub rows: u32,
    pub cols: u32,
}

impl NativeMatrix {
    pub(crate) fn view(&self, name: &str) -> crate::Result<MatRef<'_>> {
        mat(&self.data, self.rows, self.cols, name)
    }
}

/// Inputs of a fit, in either mode.
#[napi(object)]
pub struct NativeFitInput {
    /// "embeddings" or "similarities".
    pub mode: String,
    pub metric: Option<String>,
    pub gallery: Option<NativeMatrix>,
    pub query_bank: Option<NativeMatrix>,
    pub gallery_bank: Option<NativeMatrix>,
    pub query_bank_sims: Option<NativeMatrix>,
    pub gallery_bank_sims: Option<NativeMatrix>,
    pub gallery_count: Option<u32>,
}

fn opt_view<'a>(m: &'a Option<NativeMatrix>, name: &str) -> crate::Result<Option<MatRef<'a>>> {
    m.as_ref().map(|m| m.view(name)).transpose()
}

fn fit_impl(input: &NativeFitInput, params: &NativeParams, ctl: &Control) -> crate::Result<Normalizer> {
    let (method, p) = parse_params(params)?;
    match input.mode.as_str() {
        "embeddings" => {
            let metric = Metric::parse(input.metric.as_deref().unwrap_or("cosine"))?;
            let g = opt_view(&input.gallery, "gallery")?.ok_or_else(|| DbError::shape("gallery is required in embeddings mode"))?;
            Normalizer::fit_embeddings(method, p, metric, g, opt_view(&input.query_bank, "queryBank")?, opt_view(&input.gallery_bank, "galleryBank")?, ctl)
        }
        "similarities" => Normalizer::fit_similarities(
            method,
            p,
            opt_view(&input.query_bank_sims, "queryBankSims")?,
            opt_view(&input.gallery_bank_sims, "galleryBankSims")?,
            input.gallery_count.map(|c| c as usize),
            ctl,
        ),
        other => Err(DbError::param(format!("mode must be 'embeddings' or 'similarities', got '{other}'"))),
    }
}

/// Top-k per query: `indices` and `scores` are rows×k row-major, best first.
#[napi(object)]
pub struct NativeTopK {
    pub rows: u32,
    pub k: u32,
    pub indices: Uint32Array,
    pub scores: Float32Array,
}

/// A fitted normaliser living in native memory. `inner` is swapped atomically by operations that
/// extend it (`addGallery`); running tasks keep the snapshot they started with.
#[napi]
pub struct NativeNormalizer {
    inner: Slot,
}

/// The shared, swappable state of a [`NativeNormalizer`].
#[derive(Clone)]
pub(crate) struct Slot(Arc<RwLock<Arc<Normalizer>>>);

impl Slot {
    /// The current state (cheap: an `Arc` clone).
    pub(crate) fn get(&self) -> Arc<Normalizer> {
        self.0.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(crate) fn set(&self, n: Normalizer) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(n),
            Err(p) => *p.into_inner() = Arc::new(n),
        }
    }
}

impl NativeNormalizer {
    pub(crate) fn from_normalizer(n: Normalizer) -> Self {
        NativeNormalizer { inner: Slot(Arc::new(RwLock::new(Arc::new(n)))) }
    }

    /// The current state (cheap: an `Arc` clone).
    pub(crate) fn snapshot(&self) -> Arc<Normalizer> {
        self.inner.get()
    }

    pub(crate) fn slot(&self) -> Slot {
        self.inner.clone()
    }

    pub(crate) fn replace(&self, n: Normalizer) {
        self.inner.set(n)
    }
}

pub struct FitTask {
    input: NativeFitInput,
    params: NativeParams,
    job: Option<Arc<JobState>>,
}

impl Task for FitTask {
    type Output = Normalizer;
    type JsValue = NativeNormalizer;
    fn compute(&mut self) -> napi::Result<Normalizer> {
        guarded(|| with_control(&self.job, |ctl| fit_impl(&self.input, &self.params, ctl)))
    }
    fn resolve(&mut self, _env: Env, out: Normalizer) -> napi::Result<NativeNormalizer> {
        Ok(NativeNormalizer::from_normalizer(out))
    }
}

pub struct ScoresTask {
    inner: Arc<Normalizer>,
    input: NativeMatrix,
    job: Option<Arc<JobState>>,
}

impl Task for ScoresTask {
    type Output = (Vec<f32>, usize);
    type JsValue = Float32Array;
    fn compute(&mut self) -> napi::Result<(Vec<f32>, usize)> {
        let (inner, input) = (&self.inner, &self.input);
        guarded(|| with_control(&self.job, |ctl| inner.scores_with(input.view("input")?, ctl)))
    }
    fn resolve(&mut self, _env: Env, out: (Vec<f32>, usize)) -> napi::Result<Float32Array> {
        Ok(Float32Array::new(out.0))
    }
}

pub struct SearchTask {
    inner: Arc<Normalizer>,
    input: NativeMatrix,
    k: u32,
    job: Option<Arc<JobState>>,
}

fn topk_out(rows: u32, (i, s, k): (Vec<u32>, Vec<f32>, usize)) -> NativeTopK {
    NativeTopK { rows, k: k as u32, indices: Uint32Array::new(i), scores: Float32Array::new(s) }
}

impl Task for SearchTask {
    type Output = (Vec<u32>, Vec<f32>, usize);
    type JsValue = NativeTopK;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let (inner, input, k) = (&self.inner, &self.input, self.k);
        guarded(|| with_control(&self.job, |ctl| inner.search(input.view("input")?, k as usize, ctl)))
    }
    fn resolve(&mut self, _env: Env, out: Self::Output) -> napi::Result<NativeTopK> {
        Ok(topk_out(self.input.rows, out))
    }
}

/// Per-gallery statistics exposed for inspection and for the facade's derived features.
#[napi(object)]
pub struct NativeStats {
    pub lse_query: Option<Float64Array>,
    pub lse_gallery: Option<Float64Array>,
    pub top_mean_query: Option<Float64Array>,
    pub active_query: Option<Uint8Array>,
    pub active_gallery: Option<Uint8Array>,
}

#[napi]
impl NativeNormalizer {
    /// Fits synchronously (small inputs only: blocks the event loop).
    #[napi(factory)]
    pub fn fit_sync(input: NativeFitInput, params: NativeParams) -> napi::Result<NativeNormalizer> {
        guarded(|| fit_impl(&input, &params, &Control::none())).map(NativeNormalizer::from_normalizer)
    }

    /// Fits on the libuv thread pool; observes `job` for abort / progress.
    #[napi(ts_return_type = "Promise<NativeNormalizer>")]
    pub fn fit(input: NativeFitInput, params: NativeParams, job: Option<&NativeJob>) -> AsyncTask<FitTask> {
        AsyncTask::new(FitTask { input, params, job: job_state(job) })
    }

    #[napi]
    pub fn scores_sync(&self, input: NativeMatrix) -> napi::Result<Float32Array> {
        guarded(|| self.snapshot().scores(input.view("input")?)).map(|(v, _)| Float32Array::new(v))
    }

    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn scores(&self, input: NativeMatrix, job: Option<&NativeJob>) -> AsyncTask<ScoresTask> {
        AsyncTask::new(ScoresTask { inner: self.snapshot(), input, job: job_state(job) })
    }

    #[napi]
    pub fn search_sync(&self, input: NativeMatrix, k: u32) -> napi::Result<NativeTopK> {
        let rows = input.rows;
        guarded(|| self.snapshot().search(input.view("input")?, k as usize, &Control::none())).map(|o| topk_out(rows, o))
    }

    #[napi(ts_return_type = "Promise<NativeTopK>")]
    pub fn search(&self, input: NativeMatrix, k: u32, job: Option<&NativeJob>) -> AsyncTask<SearchTask> {
        AsyncTask::new(SearchTask { inner: self.snapshot(), input, k, job: job_state(job) })
    }

    #[napi(getter)]
    pub fn method(&self) -> String {
        self.snapshot().method.as_str().to_string()
    }

    #[napi(getter)]
    pub fn gallery_count(&self) -> u32 {
        self.snapshot().n_gallery as u32
    }

    /// "embeddings" or "similarities".
    #[napi(getter)]
    pub fn mode(&self) -> String {
        match self.snapshot().mode {
            Mode::Embeddings { .. } => "embeddings".into(),
            Mode::Similarities => "similarities".into(),
        }
    }

    /// Embedding dimension (0 in similarity mode).
    #[napi(getter)]
    pub fn dim(&self) -> u32 {
        match self.snapshot().mode {
            Mode::Embeddings { dim, .. } => dim as u32,
            Mode::Similarities => 0,
        }
    }

    #[napi(getter)]
    pub fn metric(&self) -> Option<String> {
        match self.snapshot().mode {
            Mode::Embeddings { metric, .. } => Some(metric.as_str().into()),
            Mode::Similarities => None,
        }
    }

    #[napi]
    pub fn stats(&self) -> NativeStats {
        let inner = self.snapshot();
        let n = inner.n_gallery;
        let q = inner.query_stats.as_ref();
        let g = inner.gallery_stats.as_ref();
        let bits = |s: Option<&crate::methods::stats::BankStats>| s.and_then(|s| s.activation(n)).map(|a| Uint8Array::new(a.into_iter().map(u8::from).collect()));
        NativeStats {
            lse_query: q.and_then(|s| s.lse.clone()).map(Float64Array::new),
            lse_gallery: g.and_then(|s| s.lse.clone()).map(Float64Array::new),
            top_mean_query: q.and_then(|s| s.top_mean.clone()).map(Float64Array::new),
            active_query: bits(q),
            active_gallery: bits(g),
        }
    }
}

// Sub-modules with further `#[napi]` items. Declared after `NativeNormalizer` so that napi-derive has
// parsed the struct before it expands their `impl NativeNormalizer` blocks.
mod bank;
mod eval;
mod methods;
mod npy;
mod persist;
mod serving;
