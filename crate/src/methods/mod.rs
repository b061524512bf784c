//! The normalisers: one file per method, each compiling its fitted bank statistics into a
//! [`scorer::Scorer`]. Formulas, defaults and tie rules follow `spec/methods.md` (§2–§3).
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

pub mod csls;
pub mod dis;
pub mod dual_dis;
pub mod dual_is;
pub mod is;
pub mod nnn;
pub mod none;
pub mod scorer;
pub mod stats;

use crate::error::{Error, Result};
use stats::{BankStats, StatsRequest};

/// A normalisation method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    None,
    Is,
    Dis,
    DualIs,
    DualDis,
    Csls,
    Nnn,
}

impl Method {
    pub const ALL: [Method; 7] = [Method::None, Method::Is, Method::Dis, Method::DualIs, Method::DualDis, Method::Csls, Method::Nnn];

    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::param(format!("unknown method '{s}' (expected one of none, is, dis, dual-is, dual-dis, csls, nnn)")))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Is => "is",
            Method::Dis => "dis",
            Method::DualIs => "dual-is",
            Method::DualDis => "dual-dis",
            Method::Csls => "csls",
            Method::Nnn => "nnn",
        }
    }

    /// Statistics wanted from the query bank and from the gallery bank (`None`: bank not used).
    pub fn requests(self, p: &Params) -> (Option<StatsRequest>, Option<StatsRequest>) {
        match self {
            Method::None => none::requests(p),
            Method::Is => is::requests(p),
            Method::Dis => dis::requests(p),
            Method::DualIs => dual_is::requests(p),
            Method::DualDis => dual_dis::requests(p),
            Method::Csls => csls::requests(p),
            Method::Nnn => nnn::requests(p),
        }
    }

    /// Compiles fitted statistics into a scorer for a gallery of `n` items.
    pub fn scorer(self, p: &Params, q: Option<&BankStats>, g: Option<&BankStats>, n: usize) -> scorer::Scorer {
        match self {
            Method::None => none::scorer(p, n),
            Method::Is => is::scorer(p, q.expect("query bank stats"), n),
            Method::Dis => dis::scorer(p, q.expect("query bank stats"), n),
            Method::DualIs => dual_is::scorer(p, q.expect("query bank stats"), g.expect("gallery bank stats"), n),
            Method::DualDis => dual_dis::scorer(p, q.expect("query bank stats"), g.expect("gallery bank stats"), n),
            Method::Csls => csls::scorer(p, q.expect("query bank stats"), n),
            Method::Nnn => nnn::scorer(p, q.expect("query bank stats"), n),
        }
    }

    pub fn needs_query_bank(self) -> bool {
        self.requests(&Params::default()).0.is_some()
    }

    pub fn needs_gallery_bank(self) -> bool {
        self.requests(&Params::default()).1.is_some()
    }

    /// Whether β values are meaningful for this method.
    pub fn uses_beta(self) -> bool {
        matches!(self, Method::Is | Method::Dis | Method::DualIs | Method::DualDis)
    }
}

/// Method parameters. The TS facade fills defaults (spec §2.2); here every value is explicit.
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
}

impl Default for Params {
    fn default() -> Self {
        Params { beta_query: 20.0, beta_gallery: 1.0, k: 1, csls_k: 10, nnn_k: 128, nnn_alpha: 0.75 }
    }
}

impl Params {
    /// Rejects out-of-range values for `method` with `ERR_PARAM`.
    pub fn validate(&self, method: Method) -> Result<()> {
        // Upper bound: the finite-score contract (see `scorer::MAX_PARAM`).
        let pos = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= scorer::MAX_PARAM {
                Ok(())
            } else {
                Err(Error::param(format!("{name} must be a finite number in (0, {:e}] (an inverse temperature), got {v}", scorer::MAX_PARAM)))
            }
        };
        match method {
            Method::Is | Method::Dis => pos("betaQuery", self.beta_query)?,
            Method::DualIs | Method::DualDis => {
                pos("betaQuery", self.beta_query)?;
                pos("betaGallery", self.beta_gallery)?;
            }
            _ => {}
        }
        if matches!(method, Method::Dis | Method::DualDis) && self.k == 0 {
            return Err(Error::param("k must be an integer ≥ 1, got 0"));
        }
        if method == Method::Csls && self.csls_k == 0 {
            return Err(Error::param("cslsK must be an integer ≥ 1, got 0"));
        }
        if method == Method::Nnn {
            if self.nnn_k == 0 {
                return Err(Error::param("nnnK must be an integer ≥ 1, got 0"));
            }
            if !(self.nnn_alpha.is_finite() && self.nnn_alpha >= 0.0 && self.nnn_alpha <= scorer::MAX_PARAM) {
                return Err(Error::param(format!("nnnAlpha must be a finite number in [0, {:e}], got {}", scorer::MAX_PARAM, self.nnn_alpha)));
            }
        }
        Ok(())
    }
}
