//! napi glue for `crate::npy`: read and write `.npy` matrices, sync and async.
//!
//! Reading uses the crate's streaming reader ([`crate::npy::read_npy_f32`]): the file is read in 1 MiB
//! chunks straight into the `Vec<f32>` that becomes the JavaScript `Float32Array` (handed over without
//! a copy), so a file is in memory once, even for `<f8` input that is converted on the fly. A memory
//! map (e.g. `memmap2`) would save nothing here and add a dependency: JavaScript needs a buffer it
//! owns (a mapped file can be changed or truncated underneath it, which is undefined behaviour for a
//! live view), and `<f8` files need a conversion pass anyway.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{run_sync, Code, Run};
use crate::control::Control;
use crate::error::Error as DbError;

/// A matrix read from a `.npy` file: `data` row-major, `rows × cols` (a 1-D array is one row).
#[napi(object)]
pub struct NativeNpy {
    pub data: Float32Array,
    pub rows: u32,
    pub cols: u32,
}

type Read = (Vec<f32>, usize, usize);

fn read_impl(path: &str) -> crate::Result<Read> {
    let (data, rows, cols) = crate::npy::read_npy_f32(path)?;
    if u32::try_from(rows).is_err() || u32::try_from(cols).is_err() {
        return Err(DbError::shape(format!("{path}: shape ({rows}, {cols}) has more than 2^32 - 1 rows or columns")));
    }
    Ok((data, rows, cols))
}

fn npy_out((data, rows, cols): Read) -> NativeNpy {
    NativeNpy { data: Float32Array::new(data), rows: rows as u32, cols: cols as u32 }
}

fn write_work(path: String, data: Float32Array, rows: u32, cols: u32) -> impl FnOnce(&Control) -> crate::Result<()> + Send + 'static {
    move |_| crate::npy::write_npy_f32(&path, &data, rows as usize, cols as usize)
}

/// Reads a `.npy` file (`<f4` or `<f8`, C order, 1-D or 2-D). `ERR_IO` if it cannot be read,
/// `ERR_FORMAT` (naming the file and the problem) if it is not an accepted `.npy`.
#[napi]
pub fn read_npy_sync(path: String) -> napi::Result<NativeNpy, Code> {
    run_sync(move |_| read_impl(&path), npy_out)
}

/// Async [`read_npy_sync`] (reads on the libuv thread pool).
#[napi(ts_return_type = "Promise<NativeNpy>")]
pub fn read_npy(path: String) -> AsyncTask<Run<Read, NativeNpy>> {
    Run::spawn(move |_| read_impl(&path), None, npy_out)
}

/// Writes a row-major `rows × cols` matrix as a version 1.0 `<f4` C-order `.npy` file.
/// `ERR_SHAPE` if `data.length != rows·cols`, `ERR_IO` if the file cannot be written.
#[napi]
pub fn write_npy_sync(path: String, data: Float32Array, rows: u32, cols: u32) -> napi::Result<(), Code> {
    run_sync(write_work(path, data, rows, cols), |()| ())
}

/// Async [`write_npy_sync`].
#[napi(ts_return_type = "Promise<void>")]
pub fn write_npy(path: String, data: Float32Array, rows: u32, cols: u32) -> AsyncTask<Run<(), ()>> {
    Run::spawn(write_work(path, data, rows, cols), None, |()| ())
}
