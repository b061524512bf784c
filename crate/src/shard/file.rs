//! Saving and loading a [`PartialFit`]: the save-file format of [`crate::persist`] at **format
//! version 2 with the partial flag** (flags bit 2). A version-1 reader rejects it (unknown
//! version); [`crate::persist::load`] recognises it and answers `ERR_PARTIAL`.
//!
//! # Layout (format version 2, partial)
//!
//! The preamble, codes, parameter block, section rules (element types, zero padding to 8 bytes,
//! presence bitmask) and the CRC-32 trailer are those of version 1; the shard block replaces the
//! size fields, so the section table starts later.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `\x89DBNORM\n` |
//! | 8 | 4 | format version `u32` = 2 |
//! | 12 | 4 | endianness marker `u32` 0x0A0B0C0D |
//! | 16 | 4 | method, mode, metric, flags (bit 0 query-bank statistics, bit 1 gallery-bank statistics, bit 2 partial — always set) |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 48 | β_q `f64`, β_g `f64`, k `u64`, cslsK `u64`, nnnK `u64`, nnnAlpha `f64` (as version 1) |
//! | 72 | 32 | gallery start, count, total, dim (`u64`; dim 0 in similarity mode) |
//! | 104 | 48 | query bank: start, count, total `u64`, lse β `f64`, top_k, row_k `u64` (zeros if absent) |
//! | 152 | 48 | gallery bank, same layout |
//! | 200 | 4 | section count `u32` = 11 |
//! | 204 | 4 | section presence bitmask `u32` (bits 0–2 always set) |
//! | 208 | 88 | section table: 11 × byte length `u64` |
//! | 296 | … | body: the sections in table order, each zero-padded to a multiple of 8 bytes |
//! | end − 4 | 4 | CRC-32 (IEEE) of every preceding byte |
//!
//! Sections: 0 the shard's prepared gallery rows `f32` (count × dim), 1 its query-bank rows, 2 its
//! gallery-bank rows; per bank (3–6 query, 7–10 gallery): `lse` `f64` (gallery count), top-K
//! values `f32` (gallery count × top_k, largest first), row top-k **global** gallery indices `u32`
//! and scores `f32` (bank count × row_k, best first).
//!
//! Loading checks, in order (each failure `ERR_FORMAT` naming the file): magic, version, marker,
//! every declared length against the file size (before allocating), checksum, then consistency
//! (ranges inside their totals, lengths, finiteness, index ranges, sorted lists, valid parameters).

use std::io::{self, Read, Write};
use std::path::Path;

use super::{PartialBank, PartialFit, Range};
use crate::error::{Error, ErrorCode, Result};
use crate::kernels::similarity::Metric;
use crate::methods::{Method, Params};
use crate::normalizer::Mode;
use crate::persist::{ENDIAN_MARKER, MAGIC};

/// The format version of partial files.
pub const PARTIAL_FORMAT_VERSION: u32 = 2;
/// Header flag: the file holds one shard of a fit.
pub const FLAG_PARTIAL: u8 = 4;
const FLAG_Q: u8 = 1;
const FLAG_G: u8 = 2;
/// Header bytes, section table included.
pub const PARTIAL_HEADER_LEN: usize = 296;
const SECTIONS: usize = 11;
const OFF_FLAGS: usize = 19;
const OFF_GALLERY: usize = 72;
const OFF_Q: usize = 104;
const OFF_G: usize = 152;
const OFF_COUNT: usize = 200;
const OFF_PRESENT: usize = 204;
const OFF_LENS: usize = 208;
/// Element size and name of each section.
const KINDS: [(usize, &str); SECTIONS] = [
    (4, "gallery"),
    (4, "queryBank"),
    (4, "galleryBank"),
    (8, "queryBank lse"),
    (4, "queryBank top-K values"),
    (4, "queryBank row top-k indices"),
    (4, "queryBank row top-k scores"),
    (8, "galleryBank lse"),
    (4, "galleryBank top-K values"),
    (4, "galleryBank row top-k indices"),
    (4, "galleryBank row top-k scores"),
];

/// Method codes: the order of [`Method::ALL`], which is the version-1 coding.
fn method_code(m: Method) -> u8 {
    Method::ALL.iter().position(|&x| x == m).expect("every method is listed") as u8
}

fn pad8(len: usize) -> usize {
    (8 - len % 8) % 8
}

enum Sec<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    U32(&'a [u32]),
}

impl Sec<'_> {
    fn bytes(&self) -> usize {
        match self {
            Sec::F32(v) => v.len() * 4,
            Sec::F64(v) => v.len() * 8,
            Sec::U32(v) => v.len() * 4,
        }
    }
}

fn bank_secs(b: Option<&PartialBank>) -> [Option<Sec<'_>>; 4] {
    match b {
        None => [None, None, None, None],
        Some(b) => [
            b.lse.as_deref().map(Sec::F64),
            b.top_values.as_deref().map(Sec::F32),
            b.row_topk_idx.as_deref().map(Sec::U32),
            b.row_topk_score.as_deref().map(Sec::F32),
        ],
    }
}

fn put(h: &mut [u8], off: usize, b: &[u8]) {
    h[off..off + b.len()].copy_from_slice(b);
}

/// The file image of `p`, header and body, followed by its checksum.
pub fn write_to<W: Write>(p: &PartialFit, w: &mut W) -> io::Result<()> {
    let [q0, q1, q2, q3] = bank_secs(p.query_stats.as_ref());
    let [g0, g1, g2, g3] = bank_secs(p.gallery_stats.as_ref());
    let secs: [Option<Sec>; SECTIONS] = [Some(Sec::F32(&p.gallery)), Some(Sec::F32(&p.query_bank)), Some(Sec::F32(&p.gallery_bank)), q0, q1, q2, q3, g0, g1, g2, g3];
    let mut h = [0u8; PARTIAL_HEADER_LEN];
    put(&mut h, 0, &MAGIC);
    put(&mut h, 8, &PARTIAL_FORMAT_VERSION.to_le_bytes());
    put(&mut h, 12, &ENDIAN_MARKER.to_le_bytes());
    h[16] = method_code(p.method);
    let (mode, metric, dim) = match p.mode {
        Mode::Embeddings { metric, dim } => (1u8, if metric == Metric::Cosine { 1u8 } else { 2 }, dim),
        Mode::Similarities => (2, 0, 0),
    };
    h[17] = mode;
    h[18] = metric;
    h[OFF_FLAGS] = FLAG_PARTIAL | if p.query_stats.is_some() { FLAG_Q } else { 0 } | if p.gallery_stats.is_some() { FLAG_G } else { 0 };
    let pr = &p.params;
    put(&mut h, 24, &pr.beta_query.to_le_bytes());
    put(&mut h, 32, &pr.beta_gallery.to_le_bytes());
    put(&mut h, 40, &(pr.k as u64).to_le_bytes());
    put(&mut h, 48, &(pr.csls_k as u64).to_le_bytes());
    put(&mut h, 56, &(pr.nnn_k as u64).to_le_bytes());
    put(&mut h, 64, &pr.nnn_alpha.to_le_bytes());
    let gr = p.gallery_range;
    for (i, v) in [gr.start, gr.count, gr.total, dim].into_iter().enumerate() {
        put(&mut h, OFF_GALLERY + 8 * i, &(v as u64).to_le_bytes());
    }
    for (off, b) in [(OFF_Q, &p.query_stats), (OFF_G, &p.gallery_stats)] {
        if let Some(b) = b {
            for (i, v) in [b.range.start, b.range.count, b.range.total].into_iter().enumerate() {
                put(&mut h, off + 8 * i, &(v as u64).to_le_bytes());
            }
            put(&mut h, off + 24, &b.lse_beta.to_le_bytes());
            put(&mut h, off + 32, &(b.top_k as u64).to_le_bytes());
            put(&mut h, off + 40, &(b.row_k as u64).to_le_bytes());
        }
    }
    put(&mut h, OFF_COUNT, &(SECTIONS as u32).to_le_bytes());
    let mut present = 0u32;
    for (i, s) in secs.iter().enumerate() {
        if let Some(s) = s {
            present |= 1 << i;
            put(&mut h, OFF_LENS + 8 * i, &(s.bytes() as u64).to_le_bytes());
        }
    }
    put(&mut h, OFF_PRESENT, &present.to_le_bytes());

    let mut crc = crc32fast::Hasher::new();
    let mut out = |b: &[u8], w: &mut W| -> io::Result<()> {
        crc.update(b);
        w.write_all(b)
    };
    out(&h, w)?;
    let mut buf = Vec::with_capacity(1 << 16);
    for s in secs.iter().flatten() {
        macro_rules! chunks {
            ($v:expr) => {
                for c in $v.chunks(1 << 14) {
                    buf.clear();
                    for x in c {
                        buf.extend_from_slice(&x.to_le_bytes());
                    }
                    out(&buf, w)?;
                }
            };
        }
        match s {
            Sec::F32(v) => chunks!(v),
            Sec::F64(v) => chunks!(v),
            Sec::U32(v) => chunks!(v),
        }
        out(&[0u8; 8][..pad8(s.bytes())], w)?;
    }
    let c = crc.finalize();
    w.write_all(&c.to_le_bytes())
}

/// The whole file image in memory.
pub fn to_bytes(p: &PartialFit) -> Vec<u8> {
    let mut v = Vec::new();
    write_to(p, &mut v).expect("writing to a Vec cannot fail");
    v
}

/// Saves atomically with [`crate::fileio::write_atomic`] (the rules of [`crate::persist::save`]).
/// `ERR_IO` on failure.
pub fn save(p: &PartialFit, path: impl AsRef<Path>) -> Result<()> {
    crate::fileio::write_atomic(path.as_ref(), |mut w: &mut dyn Write| write_to(p, &mut w))
}

fn ferr(name: &str, what: impl std::fmt::Display) -> Error {
    Error::format(format!("{name}: {what}"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn f64_at(b: &[u8], off: usize) -> f64 {
    f64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// Whether `header` (at least 20 bytes) starts a partial file: magic, version 2, partial flag.
pub fn is_partial_header(header: &[u8]) -> bool {
    header.len() >= 20 && header[..8] == MAGIC && u32_at(header, 8) == PARTIAL_FORMAT_VERSION && header[OFF_FLAGS] & FLAG_PARTIAL != 0
}

/// Loads a file written by [`save`]. `ERR_IO` if it cannot be read, `ERR_FORMAT` if it is not a
/// valid partial file (a full normaliser file included: load that with [`crate::persist::load`]).
pub fn load(path: impl AsRef<Path>) -> Result<PartialFit> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let (mut f, len) = crate::fileio::open_regular(path, &name)?;
    // The header is checked against the file length before the body is read (see `from_bytes`).
    let mut head = vec![0u8; (len.min(PARTIAL_HEADER_LEN as u64)) as usize];
    f.read_exact(&mut head).map_err(|e| Error::new(ErrorCode::Io, format!("{name}: cannot read: {e}")))?;
    check_header(&head, len, &name)?;
    let mut bytes = head;
    bytes.reserve_exact(len as usize - bytes.len());
    f.read_to_end(&mut bytes).map_err(|e| Error::new(ErrorCode::Io, format!("{name}: cannot read: {e}")))?;
    from_bytes(&bytes, &name)
}

/// Structural checks of the header against the file length; returns the section byte lengths.
fn check_header(h: &[u8], file_len: u64, name: &str) -> Result<[usize; SECTIONS]> {
    if h.len() < 8 || h[..8] != MAGIC {
        return Err(ferr(name, "not a saved dbnorm normaliser (bad magic bytes)"));
    }
    if h.len() < PARTIAL_HEADER_LEN {
        return Err(ferr(name, format!("truncated header: {} bytes, a partial header has {PARTIAL_HEADER_LEN}", h.len())));
    }
    let version = u32_at(h, 8);
    if version != PARTIAL_FORMAT_VERSION || h[OFF_FLAGS] & FLAG_PARTIAL == 0 {
        return Err(ferr(name, format!("not a partial normaliser (format version {version}, flags 0x{:02x}); a full normaliser loads with Normalizer.load", h[OFF_FLAGS])));
    }
    if u32_at(h, 12) != ENDIAN_MARKER {
        return Err(ferr(name, "wrong endianness marker: corrupted header or a big-endian file"));
    }
    if u32_at(h, OFF_COUNT) as usize != SECTIONS {
        return Err(ferr(name, format!("corrupted header: {} sections declared, expected {SECTIONS}", u32_at(h, OFF_COUNT))));
    }
    let present = u32_at(h, OFF_PRESENT);
    if present & !((1 << SECTIONS) - 1) != 0 || present & 0b111 != 0b111 {
        return Err(ferr(name, format!("corrupted header: invalid section bitmask 0x{present:x}")));
    }
    let mut total = (PARTIAL_HEADER_LEN + 4) as u64;
    let mut lens = [0usize; SECTIONS];
    for (i, &(size, sname)) in KINDS.iter().enumerate() {
        let len = u64_at(h, OFF_LENS + 8 * i);
        if (present & (1 << i) == 0 && len != 0) || len % size as u64 != 0 {
            return Err(ferr(name, format!("corrupted header: section '{sname}' declares {len} bytes")));
        }
        total = len.checked_add(7).map(|l| l / 8 * 8).and_then(|l| total.checked_add(l)).ok_or_else(|| ferr(name, format!("corrupted header: section '{sname}' declares {len} bytes")))?;
        lens[i] = len as usize;
    }
    if total != file_len {
        return Err(ferr(name, format!("{}: the header declares {total} bytes, the file has {file_len}", if total > file_len { "truncated or corrupted" } else { "trailing bytes or corrupted header" })));
    }
    Ok(lens)
}

/// Reads a partial file image; `name` names it in errors.
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<PartialFit> {
    let lens = check_header(&bytes[..bytes.len().min(PARTIAL_HEADER_LEN)], bytes.len() as u64, name)?;
    let body_end = bytes.len() - 4;
    let stored = u32_at(bytes, body_end);
    let computed = crc32fast::hash(&bytes[..body_end]);
    if stored != computed {
        return Err(ferr(name, format!("checksum mismatch (stored 0x{stored:08x}, computed 0x{computed:08x}): the file is corrupted")));
    }
    let h = &bytes[..PARTIAL_HEADER_LEN];
    let present = u32_at(h, OFF_PRESENT);
    let mut off = PARTIAL_HEADER_LEN;
    let mut raw: Vec<Option<&[u8]>> = Vec::with_capacity(SECTIONS);
    for (i, &len) in lens.iter().enumerate() {
        if present & (1 << i) != 0 {
            raw.push(Some(&bytes[off..off + len]));
            if bytes[off + len..off + len + pad8(len)].iter().any(|&b| b != 0) {
                return Err(ferr(name, format!("corrupted file: non-zero padding after section '{}'", KINDS[i].1)));
            }
        } else {
            raw.push(None);
        }
        off += len + pad8(len);
    }
    let f32s = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<f32>>();
    let f64s = |b: &[u8]| b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<f64>>();
    let u32s = |b: &[u8]| b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<u32>>();

    let bad = |what: String| ferr(name, format!("inconsistent file: {what}"));
    let usz = |v: u64, what: &str| usize::try_from(v).map_err(|_| bad(format!("{what} = {v} does not fit this platform")));
    let method = Method::ALL.get(h[16] as usize).copied().ok_or_else(|| ferr(name, format!("unknown method code {}", h[16])))?;
    let flags = h[OFF_FLAGS];
    if flags & !(FLAG_PARTIAL | FLAG_Q | FLAG_G) != 0 || u32_at(h, 20) != 0 {
        return Err(ferr(name, "corrupted header: unknown flags or non-zero reserved bytes"));
    }
    let params = Params {
        beta_query: f64_at(h, 24),
        beta_gallery: f64_at(h, 32),
        k: usz(u64_at(h, 40), "k")?,
        csls_k: usz(u64_at(h, 48), "cslsK")?,
        nnn_k: usz(u64_at(h, 56), "nnnK")?,
        nnn_alpha: f64_at(h, 64),
        ..Params::default()
    };
    params.validate(method).map_err(|e| bad(format!("invalid parameters for method '{}': {}", method.as_str(), e.message)))?;
    let range = |off: usize, what: &str| -> Result<Range> {
        Range::new(usz(u64_at(h, off), what)?, usz(u64_at(h, off + 8), what)?, usz(u64_at(h, off + 16), what)?, what).map_err(|e| bad(e.message))
    };
    let gr = range(OFF_GALLERY, "gallery")?;
    let dim = usz(u64_at(h, OFF_GALLERY + 24), "dim")?;
    let mode = match (h[17], h[18]) {
        (1, 1) => Mode::Embeddings { metric: Metric::Cosine, dim },
        (1, 2) => Mode::Embeddings { metric: Metric::Dot, dim },
        (2, 0) => Mode::Similarities,
        (m, t) => return Err(ferr(name, format!("corrupted header: invalid mode/metric codes {m}/{t}"))),
    };
    let emb = matches!(mode, Mode::Embeddings { .. });
    if emb == (dim == 0) {
        return Err(bad(format!("dim {dim} in {} mode", if emb { "embeddings" } else { "similarity" })));
    }
    let check_len = |got: usize, want: Option<usize>, what: &str| -> Result<()> {
        if Some(got) != want {
            return Err(bad(format!("{what} holds {got} values, expected {}", want.map_or("an overflowing count".into(), |w| w.to_string()))));
        }
        Ok(())
    };
    let finite32 = |v: &[f32], what: &str| -> Result<()> { v.iter().position(|x| !x.is_finite()).map_or(Ok(()), |i| Err(bad(format!("{what}[{i}] is not finite")))) };
    let gallery = f32s(raw[0].unwrap());
    let query_bank = f32s(raw[1].unwrap());
    let gallery_bank = f32s(raw[2].unwrap());
    check_len(gallery.len(), if emb { gr.count.checked_mul(dim) } else { Some(0) }, "gallery")?;
    finite32(&gallery, "gallery")?;
    let (rq, rg) = method.requests(&params);
    let mut banks = [None, None];
    for (slot, (req, flag, off, first, bname, stored)) in [(rq, FLAG_Q, OFF_Q, 3, "queryBank", &query_bank), (rg, FLAG_G, OFF_G, 7, "galleryBank", &gallery_bank)].into_iter().enumerate() {
        let has = flags & flag != 0;
        let Some(req) = req else {
            if has || !stored.is_empty() || (first..first + 4).any(|i| raw[i].is_some()) {
                return Err(bad(format!("{bname} data present but method '{}' does not use that bank", method.as_str())));
            }
            continue;
        };
        if !has {
            return Err(bad(format!("method '{}' needs {bname} statistics, none stored", method.as_str())));
        }
        let br = range(off, bname)?;
        let lse_beta = f64_at(h, off + 24);
        let top_k = usz(u64_at(h, off + 32), "top_k")?;
        let row_k = usz(u64_at(h, off + 40), "row_k")?;
        check_len(stored.len(), if emb { br.count.checked_mul(dim) } else { Some(0) }, bname)?;
        finite32(stored, bname)?;
        let presence = |i: usize, wanted: bool| -> Result<()> {
            if raw[i].is_some() != wanted {
                return Err(bad(format!("section '{}' is {} but the method {} it", KINDS[i].1, if wanted { "missing" } else { "present" }, if wanted { "needs" } else { "does not use" })));
            }
            Ok(())
        };
        presence(first, req.lse_beta.is_some())?;
        presence(first + 1, req.top_values.is_some())?;
        presence(first + 2, req.row_topk.is_some())?;
        presence(first + 3, req.row_topk.is_some())?;
        let lse = raw[first].map(f64s);
        if let (Some(l), Some(beta)) = (&lse, req.lse_beta) {
            check_len(l.len(), Some(gr.count), &format!("{bname} lse"))?;
            if let Some(i) = l.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!("{bname} lse[{i}] is not finite")));
            }
            if lse_beta.to_bits() != beta.to_bits() {
                return Err(bad(format!("{bname} lse uses β = {lse_beta}, the parameters say {beta}")));
            }
        }
        let top_values = raw[first + 1].map(f32s);
        if let (Some(t), Some(k)) = (&top_values, req.top_values) {
            if top_k != k.min(br.count) {
                return Err(bad(format!("{bname} keeps top-{top_k} values, expected min({k}, {})", br.count)));
            }
            check_len(t.len(), gr.count.checked_mul(top_k), &format!("{bname} top-K values"))?;
            finite32(t, &format!("{bname} top-K values"))?;
            if t.chunks(top_k).any(|c| c.windows(2).any(|w| w[0] < w[1])) {
                return Err(bad(format!("{bname} top-K values are not sorted largest first")));
            }
        }
        let row_topk_idx = raw[first + 2].map(u32s);
        let row_topk_score = raw[first + 3].map(f32s);
        if let (Some(idx), Some(sc), Some(k)) = (&row_topk_idx, &row_topk_score, req.row_topk) {
            if row_k != k.min(gr.count) {
                return Err(bad(format!("{bname} row lists keep {row_k} items, expected min({k}, {})", gr.count)));
            }
            check_len(idx.len(), br.count.checked_mul(row_k), &format!("{bname} row top-k indices"))?;
            check_len(sc.len(), br.count.checked_mul(row_k), &format!("{bname} row top-k scores"))?;
            if let Some(p) = idx.iter().position(|&j| (j as usize) < gr.start || j as usize >= gr.end()) {
                return Err(bad(format!("{bname} row top-k index {} is outside the shard's gallery rows {}..{}", idx[p], gr.start, gr.end())));
            }
            finite32(sc, &format!("{bname} row top-k scores"))?;
            for (ri, rs) in idx.chunks(row_k).zip(sc.chunks(row_k)) {
                if (1..row_k).any(|r| !(rs[r - 1] > rs[r] || (rs[r - 1] == rs[r] && ri[r - 1] < ri[r]))) {
                    return Err(bad(format!("{bname} row top-k lists are not sorted best first")));
                }
            }
        }
        banks[slot] = Some(PartialBank { range: br, lse, lse_beta, top_k, top_values, row_k, row_topk_idx, row_topk_score });
    }
    let [query_stats, gallery_stats] = banks;
    Ok(PartialFit { method, params, mode, gallery_range: gr, gallery, query_bank, gallery_bank, query_stats, gallery_stats })
}
