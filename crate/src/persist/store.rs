//! How the gallery section (section 0) is stored when the gallery is not held as `f32`: a lean
//! normaliser's source references (header flag [`FLAG_LEAN`]) or a half-precision gallery
//! ([`FLAG_F16`] / [`FLAG_BF16`]). The section keeps its element type (`f32` words); its bytes are
//! then the record below, zero-padded to a whole word, each word the little-endian `u32` of 4 bytes
//! (stored and read back bit-exactly, never interpreted as a float).
//!
//! Half precision: the `n_gallery × dim` 16-bit values, little-endian.
//!
//! Lean record (little-endian): `u32` record version (1); the gallery reference; a `u8` presence flag
//! then a reference for the query bank, and the same for the gallery bank; `u64` rows appended by
//! `addGallery`; their prepared values (`f32`, rows × dim). A reference is `u64` file length, `u32`
//! CRC-32 (IEEE) of the whole file, `u32` path length, the path (UTF-8). Loading re-opens the gallery
//! file and verifies its length and checksum (`ERR_SOURCE` when missing or changed); bank files are
//! verified when `addGallery` reads them.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, ErrorCode, Result};
use crate::gallery::{HalfRows, Lean, LeanGallery, SourceFile, SourceRef};
use crate::kernels::half::HalfKind;
use crate::kernels::similarity::Metric;
use crate::normalizer::Normalizer;

/// Header flag bit: section 0 holds a lean record.
pub const FLAG_LEAN: u8 = 4;
/// Header flag bit: section 0 holds float16 values.
pub const FLAG_F16: u8 = 8;
/// Header flag bit: section 0 holds bfloat16 values.
pub const FLAG_BF16: u8 = 16;
/// Every flag bit of this module.
pub const STORE_FLAGS: u8 = FLAG_LEAN | FLAG_F16 | FLAG_BF16;

fn words(mut bytes: Vec<u8>) -> Vec<f32> {
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
    bytes.chunks_exact(4).map(|c| f32::from_bits(u32::from_le_bytes(c.try_into().unwrap()))).collect()
}

fn bytes_of(words: &[f32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_bits().to_le_bytes()).collect()
}

fn put_ref(out: &mut Vec<u8>, r: &SourceRef) {
    let p = r.path.to_string_lossy();
    out.extend_from_slice(&r.file_len.to_le_bytes());
    out.extend_from_slice(&r.crc.to_le_bytes());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(p.as_bytes());
}

/// The header flag bits and section-0 words of `n` when its gallery is not held as `f32`.
pub fn encode(n: &Normalizer) -> Option<(u8, Vec<f32>)> {
    if let Some(l) = &n.lean {
        let mut out = Vec::new();
        out.extend_from_slice(&1u32.to_le_bytes());
        put_ref(&mut out, &l.gallery.source.reference());
        for r in [&l.query_bank, &l.gallery_bank] {
            out.push(r.is_some() as u8);
            if let Some(r) = r {
                put_ref(&mut out, r);
            }
        }
        let dim = l.gallery.dim();
        out.extend_from_slice(&((l.gallery.appended.len() / dim.max(1)) as u64).to_le_bytes());
        for v in &l.gallery.appended {
            out.extend_from_slice(&v.to_le_bytes());
        }
        return Some((FLAG_LEAN, words(out)));
    }
    if let Some(h) = &n.half {
        // Two values per word, low half first (no byte copy of a possibly large gallery).
        let w: Vec<f32> = h.data.chunks(2).map(|p| f32::from_bits(p[0] as u32 | (p.get(1).copied().unwrap_or(0) as u32) << 16)).collect();
        return Some((if h.kind == HalfKind::F16 { FLAG_F16 } else { FLAG_BF16 }, w));
    }
    None
}

fn fmt_err(name: &str, msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Format, format!("{name}: invalid dbnorm file: {msg}"))
}

struct Cursor<'a> {
    b: &'a [u8],
    name: &'a str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.b.len() {
            return Err(fmt_err(self.name, "inconsistent file: the gallery source record ends early"));
        }
        let (a, r) = self.b.split_at(n);
        self.b = r;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn reference(&mut self) -> Result<SourceRef> {
        let file_len = self.u64()?;
        let crc = self.u32()?;
        let len = self.u32()? as usize;
        let p = std::str::from_utf8(self.take(len)?).map_err(|_| fmt_err(self.name, "inconsistent file: a source path is not UTF-8"))?;
        if p.is_empty() {
            return Err(fmt_err(self.name, "inconsistent file: an empty source path"));
        }
        Ok(SourceRef { path: PathBuf::from(p), file_len, crc })
    }
}

/// Rebuilds the gallery store of `n` (loaded with an empty `f32` gallery) from the section-0 words
/// and the header flags. `ERR_FORMAT` for an inconsistent record, `ERR_SOURCE` for a lean gallery
/// whose source file is missing or changed.
pub fn decode(n: &mut Normalizer, flags: u8, section: &[f32], metric: Metric, dim: usize, name: &str) -> Result<()> {
    let count = n.n_gallery.checked_mul(dim).ok_or_else(|| fmt_err(name, "inconsistent file: n_gallery·dim overflows"))?;
    match flags & STORE_FLAGS {
        FLAG_F16 | FLAG_BF16 => {
            let kind = if flags & FLAG_F16 != 0 { HalfKind::F16 } else { HalfKind::Bf16 };
            // Two values per word, low half first; no intermediate copies (the gallery may be large).
            if section.len() != count.div_ceil(2) || (count % 2 == 1 && section[section.len() - 1].to_bits() >> 16 != 0) {
                return Err(fmt_err(name, format!("inconsistent file: the {} gallery holds {} words, expected {} values", kind.as_str(), section.len(), count)));
            }
            let mut data = Vec::new();
            data.try_reserve_exact(count).map_err(|e| Error::new(ErrorCode::Io, format!("{name}: cannot allocate the gallery: {e}")))?;
            for w in section {
                let b = w.to_bits();
                data.push(b as u16);
                data.push((b >> 16) as u16);
            }
            data.truncate(count);
            // Non-finite: every exponent bit set (f16: 5 bits 0x7C00; bf16: 8 bits 0x7F80).
            let exp = if kind == HalfKind::F16 { 0x7C00 } else { 0x7F80 };
            if data.iter().any(|&v| v & exp == exp) {
                return Err(fmt_err(name, "inconsistent file: a non-finite half-precision gallery value"));
            }
            n.half = Some(Arc::new(HalfRows { kind, dim, data }));
            Ok(())
        }
        FLAG_LEAN => {
            let bytes = bytes_of(section);
            let mut c = Cursor { b: &bytes, name };
            if c.u32()? != 1 {
                return Err(fmt_err(name, "inconsistent file: unknown gallery source record version"));
            }
            let g = c.reference()?;
            let mut banks = [None, None];
            for b in banks.iter_mut() {
                match c.u8()? {
                    0 => {}
                    1 => *b = Some(c.reference()?),
                    _ => return Err(fmt_err(name, "inconsistent file: bad bank reference flag")),
                }
            }
            let appended_rows = usize::try_from(c.u64()?).map_err(|_| fmt_err(name, "inconsistent file: appended rows"))?;
            let want = appended_rows.checked_mul(dim).and_then(|v| v.checked_mul(4)).filter(|&l| l <= c.b.len());
            let Some(len) = want else { return Err(fmt_err(name, "inconsistent file: appended rows beyond the record")) };
            let appended: Vec<f32> = c.take(len)?.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            if c.b.len() >= 4 || c.b.iter().any(|&b| b != 0) || appended.iter().any(|v| !v.is_finite()) {
                return Err(fmt_err(name, "inconsistent file: trailing bytes or non-finite values in the gallery source record"));
            }
            let src = SourceFile::open(&g.path, Some((g.file_len, g.crc)), "gallery")?;
            if src.cols != dim || src.rows.checked_add(appended_rows) != Some(n.n_gallery) {
                return Err(Error::new(
                    ErrorCode::Source,
                    format!("{}: the gallery source file holds {} × {}, the normaliser expects {} × {dim} ({appended_rows} rows added after the fit)", src.path.display(), src.rows, src.cols, n.n_gallery - appended_rows.min(n.n_gallery)),
                ));
            }
            let [query_bank, gallery_bank] = banks;
            n.lean = Some(Arc::new(Lean { gallery: LeanGallery { source: Arc::new(src), metric, appended }, query_bank, gallery_bank }));
            Ok(())
        }
        _ => Err(fmt_err(name, "corrupted header: conflicting gallery storage flags")),
    }
}
