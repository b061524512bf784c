//! Where a fitted normaliser's gallery rows live, and the one way every search path reads them.
//!
//! Three stores (all row-major, `dim` wide, rows *prepared for the metric*: unit rows under cosine):
//! - `f32` in memory (the default: [`GalleryView::F32`]);
//! - half precision in memory ([`HalfRows`], opt-in `galleryStorage`): rounded once, widened to `f32`
//!   chunk by chunk by the dispatched [`crate::kernels::half`] kernel; similarities accumulate in `f32`;
//! - a **lean** gallery ([`LeanGallery`], `keep: 'statistics'`): the rows stay in their `.npy` source
//!   file and are read chunk by chunk with positional reads (`pread`), converted to `f32` and prepared
//!   on the fly, plus any rows appended later (`addGallery`) kept prepared in memory.
//!
//! Lean rows are bit-identical to the in-memory ones: the file's values are converted exactly as
//! [`crate::npy::read_npy_f32`] converts them and prepared by the same row normalisation
//! ([`crate::kernels::similarity::normalize_rows_in_place`], per row, so chunking cannot change a bit).
//! Positional reads (not a mapping) keep the process's resident memory independent of the gallery
//! size: the file's pages stay in the page cache, shared and reclaimable, and are never counted as
//! the process's own.
//!
//! # Source files and their checksum
//! A [`SourceFile`] is a reference to a `.npy` file: its path, byte length and CRC-32 (IEEE, over every
//! byte of the file, header included). CRC-32 because `crc32fast` (already the save file's checksum)
//! runs at memory speed with the carry-less-multiply instructions (about 10 GB/s per core here) and its
//! parts combine, so a file is hashed in parallel segments at about the rate it can be read; a full
//! hash rather than size + mtime + samples because those miss an in-place rewrite of unsampled bytes
//! (or a copy that preserved the mtime), and the search reads every byte anyway.
//!
//! What is detected, exactly:
//! - when the reference is resolved (at fit, at load, and at `addGallery` for bank files): a missing or
//!   unreadable file, a different length, or any change of content that alters the CRC-32 (every change
//!   of up to 32 consecutive bits, and any other with probability 1 − 2⁻³²) → `ERR_SOURCE`;
//! - before every later read (each search, scores, rerank, evaluate, addGallery call): a change of the
//!   file's length or modification time since it was verified → `ERR_SOURCE`. A rewrite *during* one call
//!   that keeps the length and the modification time is not detected.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::error::{Error, ErrorCode, Result};
use crate::kernels::half::{narrow, widen, HalfKind};
use crate::kernels::similarity::{normalize_rows_in_place, Metric};
use crate::npy::{check_data_len, parse_header, NpyDtype, MAX_HEADER_LEN};

/// `ERR_SOURCE` with `message`.
pub fn source_err(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Source, message)
}

fn read_exact_at(file: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, off)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut done, mut off) = (0usize, off);
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], off) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => {
                    done += k;
                    off += k as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Length and modification time of an open file (what is re-checked before every read).
fn stamp_of(file: &File) -> std::io::Result<(u64, Option<SystemTime>)> {
    let m = file.metadata()?;
    Ok((m.len(), m.modified().ok()))
}

/// A verified reference to a `.npy` file holding a `rows × cols` matrix (see the module docs).
#[derive(Debug)]
pub struct SourceFile {
    /// The path as resolved at fit (absolute when it could be made so).
    pub path: PathBuf,
    /// Byte length of the whole file.
    pub file_len: u64,
    /// CRC-32 (IEEE) of every byte of the file.
    pub crc: u32,
    pub dtype: NpyDtype,
    pub rows: usize,
    pub cols: usize,
    data_offset: u64,
    file: File,
    stamp: (u64, Option<SystemTime>),
}

/// Segment size of the parallel checksum.
const CRC_SEGMENT: u64 = 32 << 20;

impl SourceFile {
    /// Opens `path`, parses and checks its `.npy` header (the reader's coded errors: `ERR_IO`,
    /// `ERR_FORMAT`) and computes its CRC-32. With `expect = Some((len, crc))`, a different length or
    /// checksum (or a missing file) is `ERR_SOURCE` naming `what` ("gallery", "queryBank", ...).
    pub fn open(path: &Path, expect: Option<(u64, u32)>, what: &str) -> Result<SourceFile> {
        let name = path.display().to_string();
        let opened = crate::fileio::open_regular(path, &name);
        let (file, file_len) = match (opened, expect) {
            (Ok(f), _) => f,
            (Err(e), Some(_)) => return Err(source_err(format!("the {what} source file is not reachable: {}", e.message))),
            (Err(e), None) => return Err(e),
        };
        if let Some((len, _)) = expect {
            if len != file_len {
                return Err(source_err(format!("{name}: the {what} source file changed since the fit ({file_len} bytes, {len} when fitted)")));
            }
        }
        let head_len = file_len.min((MAX_HEADER_LEN + 16) as u64) as usize;
        let mut head = vec![0u8; head_len];
        read_exact_at(&file, &mut head, 0).map_err(|e| Error::new(ErrorCode::Io, format!("{name}: cannot read: {e}")))?;
        let h = parse_header(&head, &name)?;
        check_data_len(&h, (file_len - h.data_offset as u64) as usize, &name)?;
        let stamp = stamp_of(&file).map_err(|e| Error::new(ErrorCode::Io, format!("{name}: cannot read: {e}")))?;
        let crc = file_crc(&file, file_len, &name)?;
        if let Some((_, want)) = expect {
            if want != crc {
                return Err(source_err(format!("{name}: the {what} source file changed since the fit (CRC-32 0x{crc:08x}, 0x{want:08x} when fitted)")));
            }
        }
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(SourceFile { path, file_len, crc, dtype: h.dtype, rows: h.rows, cols: h.cols, data_offset: h.data_offset as u64, file, stamp })
    }

    /// `ERR_SOURCE` if the file's length or modification time changed since it was verified.
    pub fn check_unchanged(&self, what: &str) -> Result<()> {
        let now = stamp_of(&self.file).map_err(|e| source_err(format!("{}: the {what} source file is not readable: {e}", self.path.display())))?;
        if now != self.stamp {
            return Err(source_err(format!("{}: the {what} source file changed after it was verified (length or modification time)", self.path.display())));
        }
        // The path may now name another file (replaced by a rename, or removed).
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.len(), m.modified().ok()) == self.stamp => Ok(()),
            Ok(_) => Err(source_err(format!("{}: the {what} source path now names another file (replaced after it was verified)", self.path.display()))),
            Err(e) => Err(source_err(format!("{}: the {what} source file is no longer reachable: {e}", self.path.display()))),
        }
    }

    /// Rows `r0..r0 + n` converted to `f32` (exactly as the `.npy` reader converts them), appended to `out`.
    pub fn read_rows(&self, r0: usize, n: usize, out: &mut Vec<f32>) -> Result<()> {
        debug_assert!(r0 + n <= self.rows);
        let es = self.dtype.size();
        let off = self.data_offset + (r0 * self.cols * es) as u64;
        let count = n * self.cols;
        let io = |e: std::io::Error| source_err(format!("{}: cannot read rows {r0}..{}: {e}", self.path.display(), r0 + n));
        if self.dtype == NpyDtype::F4 && cfg!(target_endian = "little") {
            let start = out.len();
            out.resize(start + count, 0.0);
            let dst = &mut out[start..];
            // SAFETY: a `[f32]` viewed as its bytes (every byte pattern is a valid f32; the target is
            // little-endian, the file's byte order).
            let bytes = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, dst.len() * 4) };
            return read_exact_at(&self.file, bytes, off).map_err(io);
        }
        thread_local! {
            static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BYTES.with(|b| {
            let mut b = b.borrow_mut();
            b.resize(count * es, 0);
            read_exact_at(&self.file, &mut b, off).map_err(io)?;
            crate::npy::convert_into(self.dtype, &b, out);
            Ok(())
        })
    }
}

/// CRC-32 of the whole file, hashed in parallel segments and combined in order.
fn file_crc(file: &File, len: u64, name: &str) -> Result<u32> {
    let segs = len.div_ceil(CRC_SEGMENT).max(1);
    let parts: Vec<Result<crc32fast::Hasher>> = (0..segs)
        .into_par_iter()
        .map(|s| {
            let (a, b) = (s * CRC_SEGMENT, ((s + 1) * CRC_SEGMENT).min(len));
            let mut h = crc32fast::Hasher::new();
            let mut buf = vec![0u8; (1 << 20).min((b - a) as usize)];
            let mut o = a;
            while o < b {
                let k = ((b - o) as usize).min(buf.len());
                read_exact_at(file, &mut buf[..k], o).map_err(|e| Error::new(ErrorCode::Io, format!("{name}: cannot read: {e}")))?;
                h.update(&buf[..k]);
                o += k as u64;
            }
            Ok(h)
        })
        .collect();
    let mut total = crc32fast::Hasher::new();
    for p in parts {
        total.combine(&p?);
    }
    Ok(total.finalize())
}

/// The checks a fit applies to raw gallery values, with gallery-wide row numbers: finite values
/// (`ERR_NON_FINITE`, the wording of [`crate::MatRef::check_finite`]) and, under cosine, no zero row.
pub fn check_raw_rows(raw: &[f32], dim: usize, r0: usize, metric: Metric, name: &str) -> Result<()> {
    if let Some(i) = raw.iter().position(|v| !v.is_finite()) {
        return Err(Error::non_finite(format!("{name}: value at row {}, column {} is {} (must be finite)", r0 + i / dim, i % dim, raw[i])));
    }
    if metric == Metric::Cosine {
        if let Some(r) = raw.chunks(dim).position(|row| row.iter().all(|&v| v == 0.0)) {
            return Err(Error::non_finite(format!("{name}: row {} has zero norm (cosine similarity is undefined)", r0 + r)));
        }
    }
    Ok(())
}

/// A gallery read from its source file (see the module docs), plus rows appended after the fit.
#[derive(Debug)]
pub struct LeanGallery {
    pub source: Arc<SourceFile>,
    pub metric: Metric,
    /// Rows appended by `addGallery`, prepared (`appended.len() / dim` rows after the file's).
    pub appended: Vec<f32>,
}

impl LeanGallery {
    pub fn dim(&self) -> usize {
        self.source.cols
    }

    /// Rows in the file.
    pub fn file_rows(&self) -> usize {
        self.source.rows
    }

    /// Prepared rows `j0..j0 + n` appended to `out` (file rows read and prepared, then appended rows).
    fn read_prepared(&self, j0: usize, n: usize, out: &mut Vec<f32>) -> Result<()> {
        let (nf, d) = (self.file_rows(), self.dim());
        let f1 = (j0 + n).min(nf);
        if j0 < f1 {
            let start = out.len();
            self.source.read_rows(j0, f1 - j0, out)?;
            if self.metric == Metric::Cosine {
                normalize_rows_in_place(&mut out[start..], d, "gallery")
                    .map_err(|_| source_err(format!("{}: rows {j0}..{f1} changed since the fit (a zero row)", self.source.path.display())))?;
            }
        }
        let a0 = j0.max(nf);
        if a0 < j0 + n {
            out.extend_from_slice(&self.appended[(a0 - nf) * d..(j0 + n - nf) * d]);
        }
        Ok(())
    }
}

/// A reference to a file (no open descriptor): what a lean normaliser keeps of its bank files, opened
/// and verified again ([`SourceFile::open`] with the length and checksum) when `addGallery` needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRef {
    pub path: PathBuf,
    pub file_len: u64,
    pub crc: u32,
}

impl SourceFile {
    /// The reference to this file.
    pub fn reference(&self) -> SourceRef {
        SourceRef { path: self.path.clone(), file_len: self.file_len, crc: self.crc }
    }
}

/// What a lean normaliser (`keep: 'statistics'`) references instead of holding: the gallery (read from
/// its file) and, when the fit read them from files, the banks (read again by `addGallery`).
#[derive(Debug)]
pub struct Lean {
    pub gallery: LeanGallery,
    pub query_bank: Option<SourceRef>,
    pub gallery_bank: Option<SourceRef>,
}

/// Prepared gallery rows rounded to 16 bits (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct HalfRows {
    pub kind: HalfKind,
    pub dim: usize,
    pub data: Vec<u16>,
}

impl HalfRows {
    /// Rounds prepared rows. `ERR_PARAM` if a value exceeds the format's finite range (only possible
    /// under the dot metric: prepared cosine rows are unit vectors).
    pub fn from_f32(kind: HalfKind, rows: &[f32], dim: usize) -> Result<HalfRows> {
        let max = kind.max_finite();
        if let Some(i) = rows.iter().position(|v| v.abs() > max) {
            return Err(Error::param(format!(
                "gallery value {} at row {}, column {} exceeds the largest {} ({max}); use galleryStorage 'float32'",
                rows[i],
                i / dim.max(1),
                i % dim.max(1),
                kind.as_str()
            )));
        }
        let mut data = vec![0u16; rows.len()];
        data.par_chunks_mut(1 << 16).zip(rows.par_chunks(1 << 16)).for_each(|(d, s)| narrow(kind, s, d));
        Ok(HalfRows { kind, dim, data })
    }

    /// All rows widened back to `f32` (what the search sees).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.data.len()];
        out.par_chunks_mut(1 << 16).zip(self.data.par_chunks(1 << 16)).for_each(|(d, s)| widen(self.kind, s, d));
        out
    }
}

/// A borrowed view of a gallery store that yields prepared `f32` rows (see the module docs).
#[derive(Clone, Copy)]
pub enum GalleryView<'a> {
    F32 { data: &'a [f32], dim: usize },
    Half(&'a HalfRows),
    Lean(&'a LeanGallery),
}

impl<'a> GalleryView<'a> {
    /// Row width.
    pub fn dim(&self) -> usize {
        match *self {
            GalleryView::F32 { dim, .. } => dim,
            GalleryView::Half(h) => h.dim,
            GalleryView::Lean(l) => l.dim(),
        }
    }

    /// Prepared rows `j0..j0 + n` (`n × dim`): borrowed from an `f32` store, else written into `scratch`.
    #[inline]
    pub fn rows<'s>(&self, j0: usize, n: usize, scratch: &'s mut Vec<f32>) -> Result<&'s [f32]>
    where
        'a: 's,
    {
        match *self {
            GalleryView::F32 { data, dim } => Ok(&data[j0 * dim..(j0 + n) * dim]),
            GalleryView::Half(h) => {
                let d = h.dim;
                scratch.resize(n * d, 0.0);
                widen(h.kind, &h.data[j0 * d..(j0 + n) * d], &mut scratch[..n * d]);
                Ok(&scratch[..n * d])
            }
            GalleryView::Lean(l) => {
                scratch.clear();
                l.read_prepared(j0, n, scratch)?;
                Ok(&scratch[..])
            }
        }
    }

    /// Gathers the prepared rows `ids` (in order) into `out` (`ids.len() × dim`).
    pub fn gather(&self, ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        let mut one = Vec::new();
        for &j in ids {
            let r = self.rows(j as usize, 1, &mut one)?;
            out.extend_from_slice(r);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dbnorm-gallery-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn write_f2(p: &Path, v: &[f32], rows: usize, cols: usize) {
        let mut bytes = crate::npy::encode_npy_f32(v, rows, cols).unwrap();
        // re-encode as <f2: same header layout with the descr swapped and the data narrowed
        let h = parse_header(&bytes, "x").unwrap();
        bytes.truncate(h.data_offset);
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[at + 2] = b'2';
        for &x in v {
            bytes.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
        }
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn lean_rows_equal_the_prepared_in_memory_rows_for_every_dtype_and_chunking() {
        let (rows, cols) = (37, 5);
        let v: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 101) as f32 - 50.0) * 0.013 + 0.001).collect();
        for dt in ["f4", "f2"] {
            let p = tmp(&format!("g-{dt}.npy"));
            if dt == "f4" {
                crate::npy::write_npy_f32(&p, &v, rows, cols).unwrap();
            } else {
                write_f2(&p, &v, rows, cols);
            }
            let (raw, _, _) = crate::npy::read_npy_f32(&p).unwrap();
            for metric in [Metric::Cosine, Metric::Dot] {
                let mut want = raw.clone();
                if metric == Metric::Cosine {
                    normalize_rows_in_place(&mut want, cols, "g").unwrap();
                }
                let src = SourceFile::open(&p, None, "gallery").unwrap();
                let extra: Vec<f32> = want[..3 * cols].to_vec();
                let lean = LeanGallery { source: Arc::new(src), metric, appended: extra.clone() };
                let view = GalleryView::Lean(&lean);
                let mut all = want.clone();
                all.extend_from_slice(&extra);
                for chunk in [1usize, 4, 16, 40] {
                    let mut j0 = 0;
                    let mut s = Vec::new();
                    while j0 < rows + 3 {
                        let n = chunk.min(rows + 3 - j0);
                        let got = view.rows(j0, n, &mut s).unwrap();
                        assert!(got.iter().zip(&all[j0 * cols..(j0 + n) * cols]).all(|(a, b)| a.to_bits() == b.to_bits()), "{dt} {metric:?} chunk {chunk} at {j0}");
                        j0 += n;
                    }
                }
                let mut g = Vec::new();
                view.gather(&[38, 0, 36, 5], &mut g).unwrap();
                assert_eq!(&g[..cols], &all[38 * cols..39 * cols]);
                assert_eq!(&g[3 * cols..], &all[5 * cols..6 * cols]);
            }
        }
        for dt in ["f4", "f2"] {
            std::fs::remove_file(tmp(&format!("g-{dt}.npy"))).ok();
        }
    }

    #[test]
    fn a_changed_source_is_refused_with_err_source() {
        let p = tmp("changed.npy");
        let v: Vec<f32> = (0..64).map(|i| i as f32 + 1.0).collect();
        crate::npy::write_npy_f32(&p, &v, 16, 4).unwrap();
        let s = SourceFile::open(&p, None, "gallery").unwrap();
        let (len, crc) = (s.file_len, s.crc);
        assert_eq!(crc, crc32fast::hash(&std::fs::read(&p).unwrap()));
        assert!(SourceFile::open(&p, Some((len, crc)), "gallery").is_ok());
        assert!(s.check_unchanged("gallery").is_ok());
        // same length, one value changed
        let mut w = v.clone();
        w[17] = 99.0;
        std::thread::sleep(std::time::Duration::from_millis(20));
        crate::npy::write_npy_f32(&p, &w, 16, 4).unwrap();
        let e = SourceFile::open(&p, Some((len, crc)), "gallery").unwrap_err();
        assert_eq!(e.code, ErrorCode::Source, "{}", e.message);
        assert!(e.message.contains("changed since the fit"), "{}", e.message);
        assert_eq!(s.check_unchanged("gallery").unwrap_err().code, ErrorCode::Source);
        // a different length
        crate::npy::write_npy_f32(&p, &v[..60], 15, 4).unwrap();
        assert_eq!(SourceFile::open(&p, Some((len, crc)), "gallery").unwrap_err().code, ErrorCode::Source);
        // gone
        std::fs::remove_file(&p).unwrap();
        let e = SourceFile::open(&p, Some((len, crc)), "gallery").unwrap_err();
        assert_eq!(e.code, ErrorCode::Source);
        assert!(e.message.contains("not reachable"), "{}", e.message);
        // without an expectation a missing file keeps the reader's ERR_IO
        assert_eq!(SourceFile::open(&p, None, "gallery").unwrap_err().code, ErrorCode::Io);
    }

    #[test]
    fn half_rows_widen_to_the_rounded_values_and_refuse_out_of_range() {
        let v: Vec<f32> = (0..300).map(|i| (i as f32 * 0.1).cos() * 0.05).collect();
        for kind in [HalfKind::F16, HalfKind::Bf16] {
            let h = HalfRows::from_f32(kind, &v, 30).unwrap();
            let all = h.to_f32();
            let mut s = Vec::new();
            let got = GalleryView::Half(&h).rows(3, 4, &mut s).unwrap();
            assert_eq!(got, &all[90..210]);
        }
        let e = HalfRows::from_f32(HalfKind::F16, &[1.0, 70000.0], 2).unwrap_err();
        assert_eq!(e.code, ErrorCode::Param);
        assert!(HalfRows::from_f32(HalfKind::Bf16, &[1.0, 70000.0], 2).is_ok());
    }
}
