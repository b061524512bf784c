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

/// Parses a `galleryStorage` value.
fn storage_kind(s: Option<&str>) -> crate::Result<Option<crate::kernels::half::HalfKind>> {
    use crate::kernels::half::HalfKind;
    match s {
        None | Some("float32") => Ok(None),
        Some("float16") => Ok(Some(HalfKind::F16)),
        Some("bfloat16") => Ok(Some(HalfKind::Bf16)),
        Some(o) => Err(crate::Error::param(format!("galleryStorage must be 'float32', 'float16' or 'bfloat16', got '{o}'"))),
    }
}

/// Applies a fit's `galleryStorage` to the fitted normaliser.
pub(crate) fn apply_storage(n: Normalizer, storage: Option<&str>) -> crate::Result<Normalizer> {
    match storage_kind(storage)? {
        None => Ok(n),
        k => n.with_gallery_storage(k),
    }
}

/// The lean fit (`keep: 'statistics'`): `Ok(None)` unless `input.keep` asks for it. The gallery is read
/// from `gallery_path` block by block; each bank from its path when given (then referenced for
/// `addGallery`), else from its matrix.
pub(crate) fn fit_lean(input: &super::NativeFitInput, method: crate::methods::Method, p: crate::methods::Params, ctl: &Control) -> crate::Result<Option<Normalizer>> {
    use crate::gallery::SourceFile;
    use crate::kernels::similarity::Metric;
    match input.keep.as_deref() {
        None | Some("all") => return Ok(None),
        Some("statistics") => {}
        Some(o) => return Err(crate::Error::param(format!("keep must be 'all' or 'statistics', got '{o}'"))),
    }
    if input.mode != "embeddings" {
        return Err(crate::Error::param("keep: 'statistics' applies to embeddings-mode fits (a similarity-mode normaliser holds no gallery)"));
    }
    if storage_kind(input.gallery_storage.as_deref())?.is_some() {
        return Err(crate::Error::param("keep: 'statistics' reads the gallery from its source file; galleryStorage applies to a gallery held in memory"));
    }
    let metric = Metric::parse(input.metric.as_deref().unwrap_or("cosine"))?;
    let path = input.gallery_path.as_deref().ok_or_else(|| crate::Error::param("keep: 'statistics' needs the gallery as a .npy file (a path, or a matrix from readNpy(path, { mmap: true }))"))?;
    let gallery = SourceFile::open(std::path::Path::new(path), None, "gallery")?;
    // Banks: read whole from their files (they are not kept), or viewed from the given matrices.
    let read_bank = |path: &Option<String>, name: &str| -> crate::Result<Option<(std::sync::Arc<SourceFile>, Vec<f32>)>> {
        let Some(path) = path else { return Ok(None) };
        let f = SourceFile::open(std::path::Path::new(path), None, name)?;
        let mut v = Vec::new();
        f.read_rows(0, f.rows, &mut v)?;
        Ok(Some((std::sync::Arc::new(f), v)))
    };
    let qf = read_bank(&input.query_bank_path, "queryBank")?;
    let gf = read_bank(&input.gallery_bank_path, "galleryBank")?;
    fn view<'a>(f: &'a Option<(std::sync::Arc<SourceFile>, Vec<f32>)>, m: &'a Option<NativeMatrix>, name: &str) -> crate::Result<Option<crate::MatRef<'a>>> {
        match (f, m) {
            (Some((src, v)), _) => crate::MatRef::new(v, src.rows, src.cols, name).map(Some),
            (None, Some(m)) => m.view(name).map(Some),
            (None, None) => Ok(None),
        }
    }
    let (qm, gm) = (view(&qf, &input.query_bank, "queryBank")?, view(&gf, &input.gallery_bank, "galleryBank")?);
    let sources = (qf.as_ref().map(|f| f.0.reference()), gf.as_ref().map(|f| f.0.reference()));
    Normalizer::fit_embeddings_lean(method, p, metric, gallery, qm, gm, sources, ctl).map(Some)
}

/// How a normaliser holds its gallery.
#[napi(object)]
pub struct NativeStorageInfo {
    /// "all" or "statistics" (lean: the gallery is read from `gallery_source`).
    pub keep: String,
    /// "float32", "float16" or "bfloat16" (a lean gallery: the dtype of its file, as read).
    pub gallery_storage: String,
    /// The lean gallery's source file.
    pub gallery_source: Option<String>,
    /// The lean normaliser's bank files (for `addGallery`), when the fit read the banks from files.
    pub query_bank_source: Option<String>,
    pub gallery_bank_source: Option<String>,
    /// Bytes of gallery rows held in memory.
    pub gallery_bytes: f64,
}

#[napi]
impl NativeNormalizer {
    #[napi]
    pub fn storage_info(&self) -> NativeStorageInfo {
        let n = self.snapshot();
        let path = |s: &Option<crate::gallery::SourceRef>| s.as_ref().map(|f| f.path.display().to_string());
        match &n.lean {
            Some(l) => NativeStorageInfo {
                keep: "statistics".into(),
                gallery_storage: "float32".into(),
                gallery_source: Some(l.gallery.source.path.display().to_string()),
                query_bank_source: path(&l.query_bank),
                gallery_bank_source: path(&l.gallery_bank),
                gallery_bytes: (l.gallery.appended.len() * 4) as f64,
            },
            None => NativeStorageInfo {
                keep: "all".into(),
                gallery_storage: n.gallery_storage().map(|k| k.as_str()).unwrap_or("float32").into(),
                gallery_source: None,
                query_bank_source: None,
                gallery_bank_source: None,
                gallery_bytes: (n.gallery.len() * 4 + n.half.as_ref().map(|h| h.data.len() * 2).unwrap_or(0)) as f64,
            },
        }
    }

    /// A copy of this normaliser with its gallery stored as `storage` ("float32", "float16", "bfloat16").
    #[napi]
    pub fn with_gallery_storage(&self, storage: String) -> napi::Result<NativeNormalizer, Code> {
        let n = (*self.snapshot()).clone();
        let out = guarded(|| apply_storage(n, Some(&storage)).and_then(|n| if storage == "float32" { n.with_gallery_storage(None) } else { Ok(n) }))?;
        Ok(NativeNormalizer::from_normalizer(out))
    }
}
