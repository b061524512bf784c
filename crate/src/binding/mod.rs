//! The napi glue: converts JS values to slices, runs the kernels, returns typed arrays.
//! Knows nothing of any method's math. Every entry point catches panics (a panic never crosses the
//! FFI boundary) and reports errors with the stable code as the napi error's `code` (see
//! [`task::Code`]); the TS facade rethrows them as `DbnormError`. Every operation is written once
//! as a work closure plus an output conversion and scheduled by the one generic task
//! ([`task::Run`], off the event loop, observing a [`NativeJob`] for abort and progress) or run by
//! its synchronous twin ([`task::run_sync`]).

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

pub(crate) use task::{js_err, run_sync, Code, Run};

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
pub(crate) fn guarded_core<T>(f: impl FnOnce() -> crate::Result<T>) -> crate::Result<T> {
    ensure_pool();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into());
            Err(DbError::new(ErrorCode::Internal, format!("internal error (please report): {msg}")))
        }
    }
}

/// [`guarded_core`] with the error in its JavaScript form.
pub(crate) fn guarded<T>(f: impl FnOnce() -> crate::Result<T>) -> napi::Result<T, Code> {
    guarded_core(f).map_err(js_err)
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

fn similarity_work(a: Float32Array, a_rows: u32, b: Float32Array, b_rows: u32, dim: u32, metric: String) -> impl FnOnce(&Control) -> crate::Result<Vec<f32>> + Send + 'static {
    move |_| similarity_impl(&a, a_rows, &b, b_rows, dim, &metric)
}

/// `a` (aRows×dim) against `b` (bRows×dim): row-major f32 similarity matrix aRows×bRows.
#[napi]
pub fn similarity_sync(a: Float32Array, a_rows: u32, b: Float32Array, b_rows: u32, dim: u32, metric: String) -> napi::Result<Float32Array, Code> {
    run_sync(similarity_work(a, a_rows, b, b_rows, dim, metric), Float32Array::new)
}

/// Async [`similarity_sync`].
#[napi(ts_return_type = "Promise<Float32Array>")]
pub fn similarity(a: Float32Array, a_rows: u32, b: Float32Array, b_rows: u32, dim: u32, metric: String) -> AsyncTask<Run<Vec<f32>, Float32Array>> {
    Run::spawn(similarity_work(a, a_rows, b, b_rows, dim, metric), None, Float32Array::new)
}

// ---------------------------------------------------------------------------------------------
// normaliser

/// A method and its parameters by name (the names of `crate::methods::PARAMS`; the TS facade
/// applies the table's defaults and passes every parameter). Generic so that a parameter added to
/// the table needs no binding code.
#[napi(object)]
#[derive(Clone)]
pub struct NativeParams {
    pub method: String,
    /// Parameter values by TS-facing name (`betaQuery`, `cslsK`, ...). A missing name takes the
    /// table default; an unknown name or an out-of-range value is `ERR_PARAM`.
    pub values: std::collections::HashMap<String, f64>,
}

fn parse_params(p: &NativeParams) -> crate::Result<(Method, Params)> {
    let method = Method::parse(&p.method)?;
    let mut params = Params::default();
    for (name, &v) in &p.values {
        let spec = crate::methods::param_spec(name).ok_or_else(|| DbError::param(format!("unknown parameter '{name}'")))?;
        spec.check(v)?;
        spec.set(&mut params, v);
    }
    Ok((method, params))
}

/// The [`NativeParams`] of a fitted method: every parameter of the table by name.
pub(crate) fn params_out(method: Method, p: &Params) -> NativeParams {
    NativeParams { method: method.as_str().to_string(), values: crate::methods::PARAMS.iter().map(|s| (s.name.to_string(), s.get(p))).collect() }
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
    /// Similarity mode: query bank × gallery bank (m_q × m_g, cross-modal; DBSN).
    pub query_bank_gallery_bank_sims: Option<NativeMatrix>,
    /// `keep: 'statistics'` ("statistics") or the default "all" (see `large::fit_lean`).
    pub keep: Option<String>,
    /// Lean fit: the `.npy` files the gallery and the banks are read from (a bank path replaces its matrix).
    pub gallery_path: Option<String>,
    pub query_bank_path: Option<String>,
    pub gallery_bank_path: Option<String>,
    /// "float32" (default), "float16" or "bfloat16": how the fitted gallery is stored for search.
    pub gallery_storage: Option<String>,
}

fn opt_view<'a>(m: &'a Option<NativeMatrix>, name: &str) -> crate::Result<Option<MatRef<'a>>> {
    m.as_ref().map(|m| m.view(name)).transpose()
}

/// `ERR_PARAM` unless `n` per-item values of type `T` can be allocated: a count that crosses the
/// boundary must never size an allocation that aborts the process (allocation failure is not
/// catchable). Probed with `try_reserve_exact` and released at once.
pub(crate) fn probe_alloc<T>(n: usize, what: &str) -> crate::Result<()> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| DbError::param(format!("{what} = {n} needs {} bytes of per-item state, which cannot be allocated", n.saturating_mul(std::mem::size_of::<T>()))))
}

/// `ERR_PARAM` unless a given `galleryCount` can size per-item state (f64 statistics and biases).
pub(crate) fn probe_gallery_count(input: &NativeFitInput) -> crate::Result<()> {
    match input.gallery_count {
        Some(c) => probe_alloc::<[f64; 4]>(c as usize, "galleryCount"),
        None => Ok(()),
    }
}

/// A fit's inputs viewed for its mode; shared by the full fit and the sharded fit.
pub(crate) enum FitSource<'a> {
    Embeddings { metric: Metric, gallery: MatRef<'a>, query_bank: Option<MatRef<'a>>, gallery_bank: Option<MatRef<'a>> },
    Similarities { query_bank_sims: Option<MatRef<'a>>, gallery_bank_sims: Option<MatRef<'a>>, gallery_count: Option<usize> },
}

pub(crate) fn fit_source(input: &NativeFitInput) -> crate::Result<FitSource<'_>> {
    match input.mode.as_str() {
        "embeddings" => Ok(FitSource::Embeddings {
            metric: Metric::parse(input.metric.as_deref().unwrap_or("cosine"))?,
            gallery: opt_view(&input.gallery, "gallery")?.ok_or_else(|| DbError::shape("gallery is required in embeddings mode"))?,
            query_bank: opt_view(&input.query_bank, "queryBank")?,
            gallery_bank: opt_view(&input.gallery_bank, "galleryBank")?,
        }),
        "similarities" => Ok(FitSource::Similarities {
            query_bank_sims: opt_view(&input.query_bank_sims, "queryBankSims")?,
            gallery_bank_sims: opt_view(&input.gallery_bank_sims, "galleryBankSims")?,
            gallery_count: input.gallery_count.map(|c| c as usize),
        }),
        other => Err(DbError::param(format!("mode must be 'embeddings' or 'similarities', got '{other}'"))),
    }
}

fn fit_impl(input: &NativeFitInput, params: &NativeParams, ctl: &Control) -> crate::Result<Normalizer> {
    probe_gallery_count(input)?;
    let (method, p) = parse_params(params)?;
    if let Some(n) = large::fit_lean(input, method, p, ctl)? {
        return Ok(n);
    }
    let n = match fit_source(input)? {
        FitSource::Embeddings { metric, gallery, query_bank, gallery_bank } => Normalizer::fit_embeddings(method, p, metric, gallery, query_bank, gallery_bank, ctl),
        FitSource::Similarities { query_bank_sims, gallery_bank_sims, gallery_count } => {
            let cross = opt_view(&input.query_bank_gallery_bank_sims, "queryBankGalleryBankSims")?;
            Normalizer::fit_similarities_with(method, p, query_bank_sims, gallery_bank_sims, cross, gallery_count, ctl)
        }
    }?;
    large::apply_storage(n, input.gallery_storage.as_deref())
}

/// Top-k per query: `indices` and `scores` are rows×k row-major, best first.
#[napi(object)]
pub struct NativeTopK {
    pub rows: u32,
    pub k: u32,
    pub indices: Uint32Array,
    pub scores: Float32Array,
    /// Leak-guard count: queries identical to a query-bank row (0 unless asked for).
    pub leaked: u32,
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
}

fn topk_out(rows: u32, leaked: u32) -> impl FnMut((Vec<u32>, Vec<f32>, usize)) -> NativeTopK + Send + 'static {
    move |(i, s, k)| NativeTopK { rows, k: k as u32, indices: Uint32Array::new(i), scores: Float32Array::new(s), leaked }
}

/// Scores of queries with the leak-guard count (queries identical to query-bank rows).
#[napi(object)]
pub struct NativeScores {
    pub data: Float32Array,
    /// Queries identical to a query-bank row (0 unless the guard was asked for, embeddings mode).
    pub leaked: u32,
}

/// The leak guard, inside the task: how many query rows equal a query-bank row (embeddings mode).
pub(crate) fn leak_count(n: &Normalizer, input: &NativeMatrix, guard: bool) -> crate::Result<u32> {
    if !guard || !matches!(n.mode, Mode::Embeddings { .. }) {
        return Ok(0);
    }
    n.leaked_queries(input.view("queries")?).map(|c| c as u32)
}

type Leak<T> = (T, u32);

fn scores_work(n: Arc<Normalizer>, input: NativeMatrix, guard: bool) -> impl FnOnce(&Control) -> crate::Result<Leak<Vec<f32>>> + Send + 'static {
    move |ctl| {
        let leaked = leak_count(&n, &input, guard)?;
        Ok((n.scores_with(input.view("input")?, ctl)?.0, leaked))
    }
}

fn scores_out((data, leaked): Leak<Vec<f32>>) -> NativeScores {
    NativeScores { data: Float32Array::new(data), leaked }
}

type TopOut = (Vec<u32>, Vec<f32>, usize);

fn search_work(n: Arc<Normalizer>, input: NativeMatrix, k: u32, guard: bool) -> impl FnOnce(&Control) -> crate::Result<Leak<TopOut>> + Send + 'static {
    move |ctl| {
        let leaked = leak_count(&n, &input, guard)?;
        Ok((n.search(input.view("input")?, k as usize, ctl)?, leaked))
    }
}

fn search_out(rows: u32) -> impl FnMut(Leak<TopOut>) -> NativeTopK + Send + 'static {
    move |(t, leaked)| topk_out(rows, leaked)(t)
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
    pub fn fit_sync(input: NativeFitInput, params: NativeParams) -> napi::Result<NativeNormalizer, Code> {
        run_sync(move |ctl| fit_impl(&input, &params, ctl), NativeNormalizer::from_normalizer)
    }

    /// Fits on the libuv thread pool; observes `job` for abort / progress.
    #[napi(ts_return_type = "Promise<NativeNormalizer>")]
    pub fn fit(input: NativeFitInput, params: NativeParams, job: Option<&NativeJob>) -> AsyncTask<Run<Normalizer, NativeNormalizer>> {
        Run::spawn(move |ctl| fit_impl(&input, &params, ctl), job_state(job), NativeNormalizer::from_normalizer)
    }

    /// Scores (`guard`: also count queries identical to query-bank rows, in the same call).
    #[napi]
    pub fn scores_sync(&self, input: NativeMatrix, guard: bool) -> napi::Result<NativeScores, Code> {
        run_sync(scores_work(self.snapshot(), input, guard), scores_out)
    }

    #[napi(ts_return_type = "Promise<NativeScores>")]
    pub fn scores(&self, input: NativeMatrix, guard: bool, job: Option<&NativeJob>) -> AsyncTask<Run<Leak<Vec<f32>>, NativeScores>> {
        Run::spawn(scores_work(self.snapshot(), input, guard), job_state(job), scores_out)
    }

    #[napi]
    pub fn search_sync(&self, input: NativeMatrix, k: u32, guard: bool) -> napi::Result<NativeTopK, Code> {
        let rows = input.rows;
        run_sync(search_work(self.snapshot(), input, k, guard), search_out(rows))
    }

    #[napi(ts_return_type = "Promise<NativeTopK>")]
    pub fn search(&self, input: NativeMatrix, k: u32, guard: bool, job: Option<&NativeJob>) -> AsyncTask<Run<Leak<TopOut>, NativeTopK>> {
        let rows = input.rows;
        Run::spawn(search_work(self.snapshot(), input, k, guard), job_state(job), search_out(rows))
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
mod large;
mod methods;
mod npy;
mod persist;
mod serving;
mod shard;
mod task;
mod tune;
