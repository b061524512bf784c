//! The one error type of the crate. Every fallible entry point returns [`Result`]; the binding maps
//! [`ErrorCode`] to the stable `code` string that JavaScript sees (`err.code === 'ERR_SHAPE'`).

use std::fmt;

/// Stable error codes. The string form (`as_str`) is part of the public API: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Lengths, row/column counts or dimensions do not agree.
    Shape,
    /// NaN or ±Inf in an input matrix, or a zero row under cosine similarity.
    NonFinite,
    /// A parameter is out of range (β ≤ 0, k = 0, unknown method, ...).
    Param,
    /// A bank that the method needs is missing or has no rows.
    EmptyBank,
    /// A file (saved normaliser, `.npy`) is malformed, truncated, or of the wrong version.
    Format,
    /// Reading or writing a file failed.
    Io,
    /// The operation was cancelled through an `AbortSignal`.
    Aborted,
    /// A mutation (`addGallery`) is already running on this normaliser.
    Busy,
    /// A bug: an internal invariant was violated (or a panic was caught at the FFI boundary).
    Internal,
    /// The operation needs a full normaliser but was given a partial one (one shard of a fit).
    Partial,
    /// Partial normalisers cannot be merged: they overlap, leave rows uncovered, or disagree
    /// (method, parameters, metric, dimension, totals).
    Merge,
    /// A lean normaliser's referenced source file (gallery or bank `.npy`) is missing, unreadable or
    /// changed since the fit, or the operation needs a source it does not reference.
    Source,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Shape => "ERR_SHAPE",
            ErrorCode::NonFinite => "ERR_NON_FINITE",
            ErrorCode::Param => "ERR_PARAM",
            ErrorCode::EmptyBank => "ERR_EMPTY_BANK",
            ErrorCode::Format => "ERR_FORMAT",
            ErrorCode::Io => "ERR_IO",
            ErrorCode::Aborted => "ERR_ABORTED",
            ErrorCode::Busy => "ERR_BUSY",
            ErrorCode::Internal => "ERR_INTERNAL",
            ErrorCode::Partial => "ERR_PARTIAL",
            ErrorCode::Merge => "ERR_MERGE",
            ErrorCode::Source => "ERR_SOURCE",
        }
    }
}

/// An error with a stable [`ErrorCode`] and a message saying what was expected and what was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
    pub fn shape(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Shape, message)
    }
    pub fn param(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Param, message)
    }
    pub fn non_finite(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NonFinite, message)
    }
    pub fn empty_bank(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::EmptyBank, message)
    }
    pub fn format(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Format, message)
    }
    pub fn aborted() -> Self {
        Self::new(ErrorCode::Aborted, "the operation was aborted")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
