//! The normalisers: one file per method, each compiling its fitted bank statistics into a
//! [`scorer::Scorer`]. Formulas, defaults and tie rules follow `docs/methods.md` (§2–§3).
//!
//! | method | needs | score ℓ(q, j) |
//! |---|---|---|
//! | [`none`] | – | s |
//! | [`is`] | query bank | β_q·s − L_q(j) |
//! | [`dis`] | query bank | β_q·s − γ_q(q)·L_q(j) |
//! | [`dual_is`] | both banks | (β_q+β_g)·s − L_q(j) − L_g(j) |
//! | [`dual_dis`] | both banks | (β_q+β_g)·s − γ_q(q)·L_q(j) − γ_g(q)·L_g(j) |
//! | [`csls`] | query bank | 2s − r_T(q) − r_S(j) |
//! | [`nnn`] | query bank | s − α·mean top-k_b P^q_bj |

pub mod scorer;
pub mod sinkhorn;
pub mod stats;

use crate::control::Control;
use crate::error::{Error, Result};
use crate::matrix::MatRef;
use scorer::Scorer;
use stats::{BankStats, StatsRequest};

/// Declares the method registry: one line per method, `Variant => module`. Each module is one
/// method file exporting `pub const INFO: MethodInfo` (its descriptor). Everything else (the TS
/// facade, the CLI, persistence, the augmented vectors) reads [`Method::info`] / [`METHOD_TABLE`].
macro_rules! registry {
    ($($variant:ident => $module:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// A normalisation method (the registry's variants; descriptors in [`MethodInfo`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Method {
            $($variant),*
        }

        const METHOD_COUNT: usize = [$(stringify!($variant)),*].len();

        impl Method {
            /// Every method, in table order.
            pub const ALL: [Method; METHOD_COUNT] = [$(Method::$variant),*];

            /// The method's descriptor (declared in its own file).
            pub fn info(self) -> &'static MethodInfo {
                match self {
                    $(Method::$variant => &$module::INFO),*
                }
            }
        }

        /// Every descriptor, in table order.
        pub static METHOD_TABLE: [&MethodInfo; METHOD_COUNT] = [$(&$module::INFO),*];
    };
}

// The registry. Adding a method: one new file (descriptor + requests + scorer + tests) and one line here.
registry! {
    None => none,
    Is => is,
    Dis => dis,
    DualIs => dual_is,
    DualDis => dual_dis,
    Csls => csls,
    Nnn => nnn,
    Sn => sn,
    DualSn => dual_sn,
}

/// Whether a parameter is an integer (a count, stored as `usize`, at most 2^32 − 1) or a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Int,
    Float,
}

/// The default of a parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamDefault {
    /// Always this value.
    Always(f64),
    /// This value for cosine embeddings only; required otherwise (β depends on the similarity scale:
    /// β on cosine ≈ 100 × β on ×100 logits, so no default is safe for dot products or logits).
    CosineOnly(f64),
}

/// One method parameter: its TS-facing name, type, default and valid range.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    /// The name the TS API and the CLI use (`betaQuery` → `--beta-query`).
    pub name: &'static str,
    pub kind: ParamKind,
    pub default: ParamDefault,
    /// Lower bound, inclusive or exclusive.
    pub min: f64,
    pub min_inclusive: bool,
    /// Upper bound (inclusive).
    pub max: f64,
    /// One line for help texts.
    pub doc: &'static str,
    get: fn(&Params) -> f64,
    set: fn(&mut Params, f64),
}

impl ParamSpec {
    /// The value of this parameter in `p`.
    pub fn get(&self, p: &Params) -> f64 {
        (self.get)(p)
    }

    /// Sets this parameter in `p` (the value must have passed [`ParamSpec::check`]).
    pub fn set(&self, p: &mut Params, v: f64) {
        (self.set)(p, v)
    }

    /// `ERR_PARAM` unless `v` is in range (and an integer for [`ParamKind::Int`]).
    pub fn check(&self, v: f64) -> Result<()> {
        let lo_ok = if self.min_inclusive { v >= self.min } else { v > self.min };
        let ok = v.is_finite() && lo_ok && v <= self.max && (self.kind == ParamKind::Float || v.fract() == 0.0);
        if ok {
            return Ok(());
        }
        let rel = if self.min_inclusive { "≥" } else { ">" };
        Err(Error::param(match self.kind {
            ParamKind::Int => format!("{} must be an integer {rel} {} and ≤ {}, got {v}", self.name, self.min, self.max),
            ParamKind::Float => format!("{} must be a finite number {rel} {} and ≤ {:e} ({}), got {v}", self.name, self.min, self.max, self.doc),
        }))
    }
}

const U32_MAX: f64 = u32::MAX as f64;

/// Every parameter any method reads, in display order.
pub static PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "betaQuery",
        kind: ParamKind::Float,
        default: ParamDefault::CosineOnly(20.0),
        min: 0.0,
        min_inclusive: false,
        max: scorer::MAX_PARAM, // the finite-score contract (methods::scorer)
        doc: "an inverse temperature: β_q of the query-bank normaliser",
        get: |p| p.beta_query,
        set: |p, v| p.beta_query = v,
    },
    ParamSpec {
        name: "betaGallery",
        kind: ParamKind::Float,
        default: ParamDefault::CosineOnly(1.0),
        min: 0.0,
        min_inclusive: false,
        max: scorer::MAX_PARAM, // the finite-score contract (methods::scorer)
        doc: "an inverse temperature: β_g of the gallery-bank normaliser",
        get: |p| p.beta_gallery,
        set: |p, v| p.beta_gallery = v,
    },
    ParamSpec {
        name: "k",
        kind: ParamKind::Int,
        default: ParamDefault::Always(1.0),
        min: 1.0,
        min_inclusive: true,
        max: U32_MAX,
        doc: "DIS / DualDIS activation-set size",
        get: |p| p.k as f64,
        set: |p, v| p.k = v as usize,
    },
    ParamSpec {
        name: "cslsK",
        kind: ParamKind::Int,
        default: ParamDefault::Always(10.0),
        min: 1.0,
        min_inclusive: true,
        max: U32_MAX,
        doc: "CSLS neighbourhood K",
        get: |p| p.csls_k as f64,
        set: |p, v| p.csls_k = v as usize,
    },
    ParamSpec {
        name: "nnnK",
        kind: ParamKind::Int,
        default: ParamDefault::Always(128.0),
        min: 1.0,
        min_inclusive: true,
        max: U32_MAX,
        doc: "NNN neighbourhood k",
        get: |p| p.nnn_k as f64,
        set: |p, v| p.nnn_k = v as usize,
    },
    ParamSpec {
        name: "nnnAlpha",
        kind: ParamKind::Float,
        default: ParamDefault::Always(0.75),
        min: 0.0,
        min_inclusive: true,
        max: scorer::MAX_PARAM, // the finite-score contract (methods::scorer)
        doc: "NNN weight α",
        get: |p| p.nnn_alpha,
        set: |p, v| p.nnn_alpha = v,
    },
    ParamSpec {
        name: "tau",
        kind: ParamKind::Float,
        default: ParamDefault::CosineOnly(0.01),
        min: 1.0 / scorer::MAX_PARAM, // β = 1/τ ≤ 1e30: the finite-score contract (methods::scorer)
        min_inclusive: true,
        max: scorer::MAX_PARAM,
        doc: "a temperature: τ of the Sinkhorn methods (divides similarities; 0.01 on cosine as in DBSN)",
        get: |p| p.tau,
        set: |p, v| p.tau = v,
    },
    ParamSpec {
        name: "iterations",
        kind: ParamKind::Int,
        default: ParamDefault::Always(10.0),
        min: 0.0,
        min_inclusive: true,
        max: 100_000.0,
        doc: "Sinkhorn iterations T (each streams the bank × gallery similarities twice; 0 = uniform potentials, the raw ranking)",
        get: |p| p.iterations as f64,
        set: |p, v| p.iterations = v as usize,
    },
    ParamSpec {
        name: "tol",
        kind: ParamKind::Float,
        default: ParamDefault::Always(0.0),
        min: 0.0,
        min_inclusive: true,
        max: scorer::MAX_PARAM,
        doc: "Sinkhorn early stop: L2 error of the bank marginal below which iterations stop (POT's stopThr; 0 = run all iterations)",
        get: |p| p.tol,
        set: |p, v| p.tol = v,
    },
];

/// The spec of the parameter named `name` (TS-facing name).
pub fn param_spec(name: &str) -> Option<&'static ParamSpec> {
    PARAMS.iter().find(|s| s.name == name)
}

/// A method's descriptor: everything the rest of the library needs to know about it.
#[derive(Clone, Copy, Debug)]
pub struct MethodInfo {
    /// The public name (`"dual-dis"`).
    pub id: &'static str,
    /// The score in one line, for help texts.
    pub summary: &'static str,
    /// Whether the method needs a query-modality bank.
    pub query_bank: bool,
    /// Whether the method needs a gallery-modality bank.
    pub gallery_bank: bool,
    /// The parameters it reads (names in [`PARAMS`]).
    pub params: &'static [&'static str],
    /// Whether its ranking equals a plain inner product of augmented vectors `[g; −b]·[q; γ]`
    /// (docs/methods.md §4; `augmentedGallery` / `augmentQueries`).
    pub bias_reducible: bool,
    /// The scorer bias variants exported as augmented columns, one column each.
    pub augmented: &'static [usize],
    /// The method's code in save files (never reuse or renumber one).
    pub persist_code: u8,
    /// Statistics wanted from the query bank and from the gallery bank (`None`: bank not used).
    pub requests: fn(&Params) -> (Option<StatsRequest>, Option<StatsRequest>),
    /// Compiles fitted statistics (and the method's own fitted state) into a scorer for a gallery
    /// of `n` items. The banks the method declares are `Some` (guaranteed by the normaliser).
    pub scorer: fn(&Params, Option<&BankStats>, Option<&BankStats>, &MethodState, usize) -> Scorer,
    /// Whether the method needs embeddings (refused in similarity mode with `ERR_PARAM`): DN, InvGC
    /// and DisSimLocal transform or average vectors.
    pub embeddings_only: bool,
    /// Whether its per-item data depend on the whole gallery (SN / DBSN potentials, plain InvGC):
    /// `addGallery` then refits from the kept banks instead of appending per-item statistics.
    pub gallery_dependent: bool,
    /// Checks a [`MethodState`] against the normaliser's sizes (names present, lengths); run on
    /// every rebuild (load, merge, `addGallery`) before the scorer is compiled, so the scorer may
    /// index its state freely. `Err` says what is wrong (a loaded file is then `ERR_FORMAT`).
    /// Default: the method keeps no state. A method with state sets this, e.g. with
    /// [`MethodState::check_exact`].
    pub check_state: fn(&Params, &MethodState, &StateShape) -> std::result::Result<(), String>,
    /// The method's own fitting step, run after the bank statistics on the whole fit input: returns
    /// the [`MethodState`] its scorer reads (SN / DBSN: the Sinkhorn potentials). `None`: the state
    /// stays empty.
    pub fit_state: Option<FitStateFn>,
    /// Similarity mode: whether the method needs the query bank × gallery bank matrix P^qh
    /// (`queryBankGalleryBankSims`, m_q × m_g, cross-modal; DBSN) in place of `galleryBankSims`.
    pub cross_bank_sims: bool,
}

/// The sizes a [`MethodState`] is checked against (see [`MethodInfo::check_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateShape {
    pub n_gallery: usize,
    /// Embedding dimension; 0 in similarity mode.
    pub dim: usize,
    /// Rows of the query bank / gallery bank the statistics were fitted from (0: bank not used).
    pub query_bank_rows: usize,
    pub gallery_bank_rows: usize,
}

/// A method's own fitting step (see [`MethodInfo::fit_state`]): parameters, the fit inputs, the
/// query-bank and gallery-bank statistics (as requested), and the abort / progress hooks.
pub type FitStateFn = fn(&Params, &FitInputs, Option<&BankStats>, Option<&BankStats>, &Control) -> Result<MethodState>;

/// The whole input of a fit, as a method's fitting step sees it.
pub enum FitInputs<'a> {
    /// Row-major `f32` vectors prepared for the metric (unit rows under cosine): the gallery
    /// (n_g × dim) and the banks (m_q × dim, m_g × dim; empty when not given or not used).
    Embeddings { gallery: &'a [f32], query_bank: &'a [f32], gallery_bank: &'a [f32], dim: usize },
    /// Precomputed matrices (row-major `f32`): query bank × gallery (m_q × n_g), gallery bank ×
    /// gallery (m_g × n_g), query bank × gallery bank (m_q × m_g), each `None` when not given.
    Similarities { n_gallery: usize, query_bank_sims: Option<MatRef<'a>>, gallery_bank_sims: Option<MatRef<'a>>, query_gallery_bank_sims: Option<MatRef<'a>> },
}

impl MethodInfo {
    /// Defaults of the descriptor fields a method may leave out (`..MethodInfo::BASE`). New optional
    /// capabilities get a field here with the "not used" default, so existing method files compile
    /// unchanged. (The id, banks, params, code, requests and scorer are always given explicitly.)
    pub const BASE: MethodInfo = MethodInfo {
        id: "",
        summary: "",
        query_bank: false,
        gallery_bank: false,
        params: &[],
        bias_reducible: false,
        augmented: &[],
        persist_code: u8::MAX,
        requests: |_| (None, None),
        scorer: |_, _, _, _, _| unreachable!("MethodInfo::BASE has no scorer"),
        embeddings_only: false,
        gallery_dependent: false,
        check_state: |_, s, _| s.check_exact(&[]),
        fit_state: None,
        cross_bank_sims: false,
    };
}

/// Method-specific fitted data beyond the bank statistics (e.g. DN's means, SN's Sinkhorn
/// potentials): named `f64` vectors, kept with the normaliser and persisted as-is. Empty for the
/// methods whose scorer is compiled from [`BankStats`] alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodState {
    /// `(name, values)` pairs in insertion order; names are unique.
    pub vectors: Vec<(String, Vec<f64>)>,
}

impl MethodState {
    /// The vector named `name`.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.vectors.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// Sets (or replaces) the vector named `name`.
    pub fn set(&mut self, name: &str, values: Vec<f64>) {
        match self.vectors.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = values,
            None => self.vectors.push((name.to_string(), values)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// `Ok` iff the state holds exactly the vectors `want` (name, length), in any order.
    pub fn check_exact(&self, want: &[(&str, usize)]) -> std::result::Result<(), String> {
        for (name, values) in &self.vectors {
            match want.iter().find(|(n, _)| n == name) {
                None if want.is_empty() => return Err(format!("the method keeps no state, got vector '{name}'")),
                None => return Err(format!("unexpected state vector '{name}' (expected {})", want.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))),
                Some(&(_, len)) if values.len() != len => return Err(format!("state vector '{name}' holds {} values, expected {len}", values.len())),
                Some(_) => {}
            }
        }
        match want.iter().find(|(n, _)| self.get(n).is_none()) {
            Some((n, _)) => Err(format!("state vector '{n}' is missing")),
            None => Ok(()),
        }
    }
}

impl MethodInfo {
    /// Number of augmented columns (see [`MethodInfo::augmented`]).
    pub fn augmented_columns(&self) -> usize {
        self.augmented.len()
    }

    /// Whether β_q / β_g are meaningful.
    pub fn uses(&self, param: &str) -> bool {
        self.params.contains(&param)
    }
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let ids: Vec<&str> = METHOD_TABLE.iter().map(|i| i.id).collect();
            Error::param(format!("unknown method '{s}' (expected one of {})", ids.join(", ")))
        })
    }

    pub fn as_str(self) -> &'static str {
        self.info().id
    }

    /// The method with save-file code `c`.
    pub fn from_persist_code(c: u8) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.info().persist_code == c)
    }

    /// Statistics wanted from the query bank and from the gallery bank (`None`: bank not used).
    pub fn requests(self, p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
        (self.info().requests)(p)
    }

    /// Compiles fitted statistics and state into a scorer for a gallery of `n` items.
    pub fn scorer(self, p: &Params, q: Option<&BankStats>, g: Option<&BankStats>, state: &MethodState, n: usize) -> Scorer {
        (self.info().scorer)(p, q, g, state, n)
    }

    pub fn needs_query_bank(self) -> bool {
        self.info().query_bank
    }

    pub fn needs_gallery_bank(self) -> bool {
        self.info().gallery_bank
    }

    /// Whether β values are meaningful for this method.
    pub fn uses_beta(self) -> bool {
        self.info().uses("betaQuery")
    }
}

/// Method parameters. The TS facade fills defaults (from [`PARAMS`]); here every value is explicit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Inverse temperature of the query-bank normaliser (multiplies similarities), > 0.
    pub beta_query: f64,
    /// Inverse temperature of the gallery-bank normaliser, > 0.
    pub beta_gallery: f64,
    /// Activation-set size of DIS / DualDIS (each bank row's k best gallery items), ≥ 1.
    pub k: usize,
    /// CSLS neighbourhood size K, ≥ 1 (clamped per axis).
    pub csls_k: usize,
    /// NNN neighbourhood size k, ≥ 1 (clamped to the bank size).
    pub nnn_k: usize,
    /// NNN weight α ≥ 0.
    pub nnn_alpha: f64,
    /// Sinkhorn temperature τ (SN / DBSN; divides similarities), ≥ 1e-30.
    pub tau: f64,
    /// Sinkhorn iterations T ≥ 0 (SN / DBSN).
    pub iterations: usize,
    /// Sinkhorn early-stop threshold ≥ 0 on the bank-marginal error (0 = off).
    pub tol: f64,
}

impl Default for Params {
    fn default() -> Self {
        // The table's defaults (cosine-only β defaults included: the cosine-embeddings case).
        let mut p = Params { beta_query: 0.0, beta_gallery: 0.0, k: 0, csls_k: 0, nnn_k: 0, nnn_alpha: 0.0, tau: 0.0, iterations: 0, tol: 0.0 };
        for s in PARAMS {
            let (ParamDefault::Always(v) | ParamDefault::CosineOnly(v)) = s.default;
            s.set(&mut p, v);
        }
        p
    }
}

impl Params {
    /// Rejects out-of-range values of the parameters `method` reads with `ERR_PARAM` (ranges from [`PARAMS`]).
    pub fn validate(&self, method: Method) -> Result<()> {
        for name in method.info().params {
            let spec = param_spec(name).ok_or_else(|| Error::new(crate::error::ErrorCode::Internal, format!("method '{}' names unknown parameter '{name}'", method.as_str())))?;
            spec.check(spec.get(self))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        let mut codes = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for (m, info) in Method::ALL.into_iter().zip(METHOD_TABLE.iter()) {
            // consts are not guaranteed one address, so compare by identity of content
            assert_eq!(m.info().id, info.id);
            assert_eq!(m.info().persist_code, info.persist_code);
            assert!(codes.insert(info.persist_code), "duplicate persist code {}", info.persist_code);
            assert!(ids.insert(info.id), "duplicate id {}", info.id);
            assert_eq!(Method::parse(info.id).unwrap(), m);
            assert_eq!(Method::from_persist_code(info.persist_code), Some(m));
            for p in info.params {
                assert!(param_spec(p).is_some(), "{}: unknown param {p}", info.id);
            }
            // statistics are requested only from declared banks (a method may use a bank without its
            // statistics: SN / DBSN stream it in their own fitting step)
            let (rq, rg) = m.requests(&Params::default());
            assert!(!rq.is_some() || info.query_bank, "{}", info.id);
            assert!(!rg.is_some() || info.gallery_bank, "{}", info.id);
            assert!(rq.is_some() || rg.is_some() || info.fit_state.is_some() || !info.query_bank, "{}: a bank nobody reads", info.id);
            // β_g is read only by methods with a gallery bank; P^qh only by methods with both banks
            assert!(!info.uses("betaGallery") || info.gallery_bank, "{}", info.id);
            assert!(!info.cross_bank_sims || (info.query_bank && info.gallery_bank), "{}", info.id);
        }
        // persisted codes of the first format version never change
        let v1: Vec<(&str, u8)> = METHOD_TABLE.iter().map(|i| (i.id, i.persist_code)).collect();
        assert_eq!(v1[..7], [("none", 0), ("is", 1), ("dis", 2), ("dual-is", 3), ("dual-dis", 4), ("csls", 5), ("nnn", 6)]);
        // issue 13's codes
        for (id, code) in [("sn", 7), ("dual-sn", 8)] {
            assert_eq!(Method::parse(id).unwrap().info().persist_code, code, "{id}");
        }
    }

    #[test]
    fn validate_reads_the_param_table() {
        let ok = Params::default();
        for m in Method::ALL {
            ok.validate(m).unwrap();
        }
        let bad = Params { k: 0, ..Params::default() };
        assert!(bad.validate(Method::Dis).is_err());
        assert!(bad.validate(Method::Is).is_ok(), "is does not read k");
        let bad = Params { beta_query: f64::NAN, ..Params::default() };
        assert!(bad.validate(Method::Is).is_err());
        assert!(bad.validate(Method::Csls).is_ok());
        let bad = Params { nnn_alpha: -1.0, ..Params::default() };
        let e = bad.validate(Method::Nnn).unwrap_err();
        assert!(e.message.contains("nnnAlpha"), "{}", e.message);
        let big = Params { nnn_k: (u32::MAX as usize) + 1, ..Params::default() };
        assert!(big.validate(Method::Nnn).is_err());
        assert!(param_spec("k").unwrap().check(1.5).is_err());
    }
}
