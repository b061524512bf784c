//! A borrowed row-major `f32` matrix view and its validation.

use crate::error::{Error, Result};

/// A borrowed row-major matrix: element (r, c) is `data[r * cols + c]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> MatRef<'a> {
    /// Checks `data.len() == rows * cols`; `name` appears in the error message.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, name: &str) -> Result<Self> {
        let want = rows.checked_mul(cols).ok_or_else(|| Error::shape(format!("{name}: {rows}×{cols} overflows")))?;
        if data.len() != want {
            return Err(Error::shape(format!(
                "{name}: expected rows·cols = {rows}·{cols} = {want} values, got {}",
                data.len()
            )));
        }
        Ok(MatRef { data, rows, cols })
    }

    /// Row `r` as a slice of length `cols`.
    #[inline]
    pub fn row(&self, r: usize) -> &'a [f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Errors with `ERR_NON_FINITE` naming the first NaN/±Inf entry.
    pub fn check_finite(&self, name: &str) -> Result<()> {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 16;
        let bad_chunk = self.data.par_chunks(CHUNK).position_first(|c| c.iter().any(|v| !v.is_finite()));
        if let Some(i) = bad_chunk.and_then(|c| self.data[c * CHUNK..].iter().position(|v| !v.is_finite()).map(|i| c * CHUNK + i)) {
            let (r, c) = (i / self.cols.max(1), i % self.cols.max(1));
            return Err(Error::non_finite(format!("{name}: value at row {r}, column {c} is {} (must be finite)", self.data[i])));
        }
        Ok(())
    }
}
