//! napi glue for [`crate::tune`]: runs the search on the libuv pool and converts the result. The
//! TS facade hands over buffers only the library holds (its own copies, see `ts/matrix.ts` `owned`),
//! so no caller can resize or detach them mid-run.


use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{job_state, NativeJob, NativeMatrix, Run};
use crate::error::Error as DbError;
use crate::kernels::similarity::{prepare, Metric};
use crate::matrix::MatRef;
use crate::methods::{Method, Params};
use crate::tune::{self, Evaluated, Grid, Objective, TuneConfig, TuneData, TuneResult};

/// Method parameters without the method (every value explicit).
#[napi(object)]
#[derive(Clone)]
pub struct NativeTuneParams {
    pub beta_query: f64,
    pub beta_gallery: f64,
    pub k: u32,
    pub csls_k: u32,
    pub nnn_k: u32,
    pub nnn_alpha: f64,
}

/// Coarse grids (every list non-empty).
#[napi(object)]
pub struct NativeTuneGrid {
    pub beta_query: Vec<f64>,
    pub beta_gallery: Vec<f64>,
    pub k: Vec<u32>,
    pub csls_k: Vec<u32>,
    pub nnn_k: Vec<u32>,
    pub nnn_alpha: Vec<f64>,
}

#[napi(object)]
pub struct NativeTuneConfig {
    pub methods: Vec<String>,
    /// "R@K", "mAP", "MRR" or "rsum".
    pub objective: String,
    /// "cosine" or "dot".
    pub metric: String,
    pub folds: u32,
    pub holdout: u32,
    pub refine: u32,
    pub seed: u32,
    /// Budget for all folds' similarity blocks, in MiB.
    pub max_block_mb: f64,
    pub grid: NativeTuneGrid,
    pub defaults: Option<NativeTuneParams>,
}

#[napi(object)]
pub struct NativeTuneTrial {
    pub params: NativeTuneParams,
    pub fold_scores: Vec<f64>,
    pub mean: f64,
}

#[napi(object)]
pub struct NativeTuneMethod {
    pub method: String,
    pub best: NativeTuneTrial,
    pub default: Option<NativeTuneTrial>,
    pub trials: Vec<NativeTuneTrial>,
}

#[napi(object)]
pub struct NativeTuneResult {
    pub methods: Vec<NativeTuneMethod>,
    pub best: u32,
    pub holdout_items: u32,
    pub holdout_queries: Vec<u32>,
    pub evaluations: u32,
    pub lse_passes: u32,
}

fn params_in(p: &NativeTuneParams) -> Params {
    Params { beta_query: p.beta_query, beta_gallery: p.beta_gallery, k: p.k as usize, csls_k: p.csls_k as usize, nnn_k: p.nnn_k as usize, nnn_alpha: p.nnn_alpha, ..Params::default() }
}

fn params_out(p: &Params) -> NativeTuneParams {
    NativeTuneParams { beta_query: p.beta_query, beta_gallery: p.beta_gallery, k: p.k as u32, csls_k: p.csls_k as u32, nnn_k: p.nnn_k as u32, nnn_alpha: p.nnn_alpha }
}

fn trial_out(e: &Evaluated) -> NativeTuneTrial {
    NativeTuneTrial { params: params_out(&e.params), fold_scores: e.fold_scores.clone(), mean: e.mean }
}

fn result_out(r: TuneResult) -> NativeTuneResult {
    NativeTuneResult {
        methods: r
            .methods
            .iter()
            .map(|m| NativeTuneMethod { method: m.method.as_str().into(), best: trial_out(&m.best), default: m.default.as_ref().map(trial_out), trials: m.trials.iter().map(trial_out).collect() })
            .collect(),
        best: r.best as u32,
        holdout_items: r.holdout_items as u32,
        holdout_queries: r.holdout_queries.iter().map(|&q| q as u32).collect(),
        evaluations: r.evaluations as u32,
        lse_passes: r.lse_passes as u32,
    }
}

/// Owned inputs of a tuning run.
pub struct TuneTask {
    query_bank: NativeMatrix,
    gallery_bank: NativeMatrix,
    offsets: Uint32Array,
    items: Uint32Array,
    cfg: NativeTuneConfig,
}

impl TuneTask {
    fn run(&self, ctl: &crate::control::Control) -> crate::Result<TuneResult> {
        let c = &self.cfg;
        let metric = Metric::parse(&c.metric)?;
        let (qc, gc) = (self.query_bank.cols as usize, self.gallery_bank.cols as usize);
        if qc != gc {
            return Err(DbError::shape(format!("queryBank has {qc} columns but galleryBank has {gc}")));
        }
        let qm: MatRef = self.query_bank.view("queryBank")?;
        let gm: MatRef = self.gallery_bank.view("galleryBank")?;
        qm.check_finite("queryBank")?;
        gm.check_finite("galleryBank")?;
        let qp = prepare(qm, metric, "queryBank")?;
        let gp = prepare(gm, metric, "galleryBank")?;
        let methods = c.methods.iter().map(|m| Method::parse(m)).collect::<crate::Result<Vec<_>>>()?;
        if !(c.max_block_mb.is_finite() && c.max_block_mb > 0.0) {
            return Err(DbError::param(format!("maxBlockMB must be a finite number > 0, got {}", c.max_block_mb)));
        }
        let g = &c.grid;
        let cfg = TuneConfig {
            methods,
            objective: Objective::parse(&c.objective)?,
            grid: Grid {
                beta_query: g.beta_query.clone(),
                beta_gallery: g.beta_gallery.clone(),
                k: g.k.iter().map(|&v| v as usize).collect(),
                csls_k: g.csls_k.iter().map(|&v| v as usize).collect(),
                nnn_k: g.nnn_k.iter().map(|&v| v as usize).collect(),
                nnn_alpha: g.nnn_alpha.clone(),
            },
            folds: c.folds as usize,
            holdout: c.holdout as usize,
            refine: c.refine as usize,
            seed: c.seed as u64,
            max_block_floats: (c.max_block_mb * 1024.0 * 1024.0 / 4.0) as usize,
            defaults: c.defaults.as_ref().map(params_in),
        };
        let data = TuneData { query_bank: &qp, gallery_bank: &gp, dim: qc, offsets: &self.offsets, items: &self.items };
        tune::tune(&data, &cfg, ctl)
    }
}

/// Tunes method parameters on paired banks (see [`crate::tune`]). `offsets`/`items` map each
/// query-bank row to the gallery-bank rows it describes (CSR, `offsets.length == queryBank.rows + 1`).
/// The caller passes buffers it owns exclusively for the duration of the call (the TS facade copies).
#[napi(ts_return_type = "Promise<NativeTuneResult>")]
pub fn tune(query_bank: NativeMatrix, gallery_bank: NativeMatrix, offsets: Uint32Array, items: Uint32Array, cfg: NativeTuneConfig, job: Option<&NativeJob>) -> AsyncTask<Run<TuneResult, NativeTuneResult>> {
    let task = TuneTask { query_bank, gallery_bank, offsets, items, cfg };
    Run::spawn(move |ctl| task.run(ctl), job_state(job), result_out)
}
