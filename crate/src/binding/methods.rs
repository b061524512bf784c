//! The method registry, exposed once to JavaScript: the TS facade, the CLI and persistence read
//! [`method_table`] instead of keeping their own lists of methods, banks, parameters and defaults.

use napi_derive::napi;

use crate::methods::{ParamDefault, ParamKind, METHOD_TABLE, PARAMS};

/// One method parameter (see `crate::methods::ParamSpec`).
#[napi(object)]
pub struct NativeParamSpec {
    /// TS-facing name (`betaQuery`).
    pub name: String,
    /// "int" or "float".
    pub kind: String,
    /// The default value.
    pub default: f64,
    /// Whether the default applies only to cosine embeddings (β): required otherwise.
    pub default_cosine_only: bool,
    pub min: f64,
    pub min_inclusive: bool,
    pub max: f64,
    pub doc: String,
}

/// One method's descriptor (see `crate::methods::MethodInfo`).
#[napi(object)]
pub struct NativeMethodInfo {
    pub id: String,
    pub summary: String,
    pub query_bank: bool,
    pub gallery_bank: bool,
    /// Names of the parameters it reads.
    pub params: Vec<String>,
    pub bias_reducible: bool,
    pub augmented_columns: u32,
    pub persist_code: u32,
    /// Similarity mode: needs the query bank × gallery bank matrix instead of galleryBankSims (DBSN).
    pub cross_bank_sims: bool,
    /// Whether `tune` can search its parameters.
    pub tunable: bool,
}

/// The registry: every method (table order) and every parameter.
#[napi(object)]
pub struct NativeMethodTable {
    pub methods: Vec<NativeMethodInfo>,
    pub params: Vec<NativeParamSpec>,
}

/// The method registry of the Rust core (the single source of truth for methods).
#[napi]
pub fn method_table() -> NativeMethodTable {
    NativeMethodTable {
        methods: METHOD_TABLE
            .iter()
            .map(|m| NativeMethodInfo {
                id: m.id.into(),
                summary: m.summary.into(),
                query_bank: m.query_bank,
                gallery_bank: m.gallery_bank,
                params: m.params.iter().map(|p| p.to_string()).collect(),
                bias_reducible: m.bias_reducible,
                augmented_columns: m.augmented_columns() as u32,
                persist_code: m.persist_code as u32,
                cross_bank_sims: m.cross_bank_sims,
                tunable: crate::methods::Method::parse(m.id).is_ok_and(crate::tune::tunable),
            })
            .collect(),
        params: PARAMS
            .iter()
            .map(|p| {
                let (default, default_cosine_only) = match p.default {
                    ParamDefault::Always(v) => (v, false),
                    ParamDefault::CosineOnly(v) => (v, true),
                };
                NativeParamSpec {
                    name: p.name.into(),
                    kind: match p.kind {
                        ParamKind::Int => "int".into(),
                        ParamKind::Float => "float".into(),
                    },
                    default,
                    default_cosine_only,
                    min: p.min,
                    min_inclusive: p.min_inclusive,
                    max: p.max,
                    doc: p.doc.into(),
                }
            })
            .collect(),
    }
}
