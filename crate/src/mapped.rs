//! Memory-mapped `.npy` matrices: a file's pages are read by the kernel on demand (and shared with the
//! page cache) instead of being copied into the process.
//!
//! [`map_npy`] validates the file exactly as [`crate::npy::read_npy_f32`] does (regular file, header,
//! data length against the file length; the same coded errors) and maps it copy-on-write
//! (`MAP_PRIVATE`): a write through the mapping changes private pages only, never the file. A `<f4`
//! file whose data start 4-byte aligned (every file written by NumPy or this crate: headers are padded
//! to 64 bytes) is viewed in place ([`MappedNpy::as_f32`]); `<f2` and `<f8` are converted on request
//! ([`MappedNpy::to_f32`]).
//!
//! Caveat of every mapping: if another process truncates the file while it is mapped, touching the lost
//! pages raises `SIGBUS`. Map files that are not being rewritten.

use std::path::Path;

use memmap2::{MmapMut, MmapOptions};

use crate::error::{Error, ErrorCode, Result};
use crate::npy::{check_data_len, parse_header, NpyDtype};

/// A mapped `.npy` file holding a `rows × cols` row-major matrix.
pub struct MappedNpy {
    map: Option<MmapMut>,
    offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub dtype: NpyDtype,
}

/// Maps `path` (see the module docs). Errors: `ERR_IO` (cannot open / map, not a regular file),
/// `ERR_FORMAT` (not an accepted `.npy`, or sizes that disagree with the file length).
pub fn map_npy(path: impl AsRef<Path>) -> Result<MappedNpy> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let (file, file_len) = crate::fileio::open_regular(path, &name)?;
    if file_len == 0 {
        // An empty file cannot be mapped; let the parser say what is wrong with it.
        parse_header(&[], &name)?;
    }
    // SAFETY: a private (copy-on-write) mapping of a regular file; see the module docs for truncation.
    let map = unsafe { MmapOptions::new().map_copy(&file) }
        .map_err(|e| Error::new(ErrorCode::Io, format!("{name}: cannot map: {e}")))?;
    let h = parse_header(&map, &name)?;
    check_data_len(&h, map.len() - h.data_offset, &name)?;
    let elems = h.rows * h.cols;
    Ok(MappedNpy { map: (elems > 0).then_some(map), offset: h.data_offset, rows: h.rows, cols: h.cols, dtype: h.dtype })
}

impl MappedNpy {
    fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[self.offset..self.offset + self.rows * self.cols * self.dtype.size()],
            None => &[],
        }
    }

    /// The data in place, when the file is `<f4` with 4-byte-aligned data (else `None`: use [`Self::to_f32`]).
    pub fn as_f32(&self) -> Option<&[f32]> {
        if self.dtype != NpyDtype::F4 {
            return None;
        }
        let b = self.bytes();
        if b.is_empty() {
            return Some(&[]);
        }
        if b.as_ptr().align_offset(std::mem::align_of::<f32>()) != 0 || cfg!(target_endian = "big") {
            return None;
        }
        // SAFETY: aligned (checked), `b.len()` is `4·rows·cols` bytes inside the live mapping, and every
        // bit pattern is a valid f32.
        Some(unsafe { std::slice::from_raw_parts(b.as_ptr() as *const f32, b.len() / 4) })
    }

    /// Mutable pointer to the in-place `<f4` data (for handing the mapping to an owner that frees it);
    /// `None` when [`Self::as_f32`] is `None` or the matrix is empty.
    pub fn as_f32_mut_ptr(&mut self) -> Option<*mut f32> {
        if self.rows * self.cols == 0 {
            return None;
        }
        let p = self.as_f32()?.as_ptr() as *mut f32;
        Some(p)
    }

    /// The data converted to `f32` (a copy; `<f2` widened exactly, `<f8` rounded to nearest).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        crate::npy::convert_into(self.dtype, self.bytes(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dbnorm-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn mapped_equals_read_for_every_dtype_and_bad_files_keep_their_errors() {
        let v: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
        let p = write("a.npy", &crate::npy::encode_npy_f32(&v, 3, 4).unwrap());
        let m = map_npy(&p).unwrap();
        assert_eq!((m.rows, m.cols), (3, 4));
        assert_eq!(m.as_f32().unwrap(), &v[..]);
        assert_eq!(m.to_f32(), v);
        // a truncated file: the same coded error as the reader
        let full = std::fs::read(&p).unwrap();
        let t = write("t.npy", &full[..full.len() - 3]);
        let (a, b) = (map_npy(&t).err().unwrap(), crate::npy::read_npy_f32(&t).unwrap_err());
        assert_eq!((a.code, &a.message), (b.code, &b.message));
        let e = write("e.npy", b"");
        assert_eq!(map_npy(&e).err().unwrap().code, ErrorCode::Format);
        assert_eq!(map_npy(e.with_extension("missing")).err().unwrap().code, ErrorCode::Io);
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}
