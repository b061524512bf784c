//! The save-file format: encoding a [`Normalizer`] to bytes and decoding (with every check) from a
//! byte stream of known length. No filesystem access here; files are [`super::file`]'s job. The
//! layout and the order of the checks are in the [module docs](super).

use std::io::{self, Read, Write};

use crate::npy::read_full;

use crate::error::{Error, ErrorCode, Result};
use crate::kernels::similarity::Metric;
use crate::methods::stats::{BankStats, StatsRequest};
use crate::methods::{Method, Params};
use crate::normalizer::{Mode, Normalizer};

/// The 8 magic bytes every file starts with.
pub const MAGIC: [u8; 8] = *b"\x89DBNORM\n";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Written as a little-endian `u32`; read back byte-swapped it reveals a big-endian file.
pub const ENDIAN_MARKER: u32 = 0x0A0B_0C0D;
/// Bytes of the version-1 header, section table included.
pub const HEADER_LEN: usize = 264;
/// Bytes of the trailing checksum.
pub const TRAILER_LEN: usize = 4;
/// Number of body sections in version 1.
pub const SECTION_COUNT: usize = 11;

/// Byte offsets of the header fields (see the module docs).
pub mod offsets {
    pub const VERSION: usize = 8;
    pub const ENDIAN: usize = 12;
    pub const METHOD: usize = 16;
    pub const MODE: usize = 17;
    pub const METRIC: usize = 18;
    pub const FLAGS: usize = 19;
    pub const RESERVED: usize = 20;
    pub const BETA_QUERY: usize = 24;
    pub const BETA_GALLERY: usize = 32;
    pub const K: usize = 40;
    pub const CSLS_K: usize = 48;
    pub const NNN_K: usize = 56;
    pub const NNN_ALPHA: usize = 64;
    pub const N_GALLERY: usize = 72;
    pub const DIM: usize = 80;
    pub const QUERY_BANK_ROWS: usize = 88;
    pub const GALLERY_BANK_ROWS: usize = 96;
    /// Query-bank statistics descriptor (bank_rows, lse_beta, top_k, row_k); the gallery bank's is 32 bytes later.
    pub const QUERY_STATS: usize = 104;
    pub const GALLERY_STATS: usize = 136;
    pub const SECTION_COUNT: usize = 168;
    pub const PRESENT: usize = 172;
    pub const SECTION_LENGTHS: usize = 176;
}

/// Section indices in the body (see the module docs).
pub mod sections {
    pub const GALLERY: usize = 0;
    pub const QUERY_BANK: usize = 1;
    pub const GALLERY_BANK: usize = 2;
    /// First section of the query-bank statistics: `lse`, `top_mean`, row indices, row scores.
    pub const QUERY_STATS: usize = 3;
    /// First section of the gallery-bank statistics.
    pub const GALLERY_STATS: usize = 7;
}

/// The CRC-32 (IEEE) used as the file checksum.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

// ---------------------------------------------------------------------------------------------
// element types

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    F32,
    F64,
    U32,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::F32 | Kind::U32 => 4,
            Kind::F64 => 8,
        }
    }
}

/// Element type of each section.
const KINDS: [Kind; SECTION_COUNT] = [
    Kind::F32,
    Kind::F32,
    Kind::F32,
    Kind::F64,
    Kind::F64,
    Kind::U32,
    Kind::F32,
    Kind::F64,
    Kind::F64,
    Kind::U32,
    Kind::F32,
];

const SECTION_NAMES: [&str; SECTION_COUNT] = [
    "gallery",
    "queryBank",
    "galleryBank",
    "queryBank lse",
    "queryBank top-mean",
    "queryBank row top-k indices",
    "queryBank row top-k scores",
    "galleryBank lse",
    "galleryBank top-mean",
    "galleryBank row top-k indices",
    "galleryBank row top-k scores",
];

/// Sections 0–2 are always present (possibly empty).
const ALWAYS_PRESENT: u32 = 0b111;
const ALL_SECTIONS: u32 = (1 << SECTION_COUNT) - 1;

enum SecRef<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    U32(&'a [u32]),
}

impl SecRef<'_> {
    fn byte_len(&self) -> usize {
        match self {
            SecRef::F32(v) => v.len() * 4,
            SecRef::F64(v) => v.len() * 8,
            SecRef::U32(v) => v.len() * 4,
        }
    }
}

enum SecVec {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U32(Vec<u32>),
}

fn pad8(len: usize) -> usize {
    (8 - len % 8) % 8
}

// ---------------------------------------------------------------------------------------------
// codes

fn method_code(m: Method) -> u8 {
    m.info().persist_code
}

fn method_from_code(c: u8) -> Option<Method> {
    Method::from_persist_code(c)
}

const MODE_EMBEDDINGS: u8 = 1;
const MODE_SIMILARITIES: u8 = 2;
const METRIC_NONE: u8 = 0;
const METRIC_COSINE: u8 = 1;
const METRIC_DOT: u8 = 2;
const FLAG_QUERY_STATS: u8 = 1;
const FLAG_GALLERY_STATS: u8 = 2;

// ---------------------------------------------------------------------------------------------
// writing

fn put_u32(h: &mut [u8], off: usize, v: u32) {
    h[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(h: &mut [u8], off: usize, v: u64) {
    h[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_f64(h: &mut [u8], off: usize, v: f64) {
    h[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn section_refs<'a>(n: &'a Normalizer, store: Option<&'a [f32]>) -> [Option<SecRef<'a>>; SECTION_COUNT] {
    let q = n.query_stats.as_ref();
    let g = n.gallery_stats.as_ref();
    fn lse(s: Option<&BankStats>) -> Option<SecRef<'_>> {
        s.and_then(|s| s.lse.as_deref()).map(SecRef::F64)
    }
    fn top(s: Option<&BankStats>) -> Option<SecRef<'_>> {
        s.and_then(|s| s.top_mean.as_deref()).map(SecRef::F64)
    }
    fn idx(s: Option<&BankStats>) -> Option<SecRef<'_>> {
        s.and_then(|s| s.row_topk_idx.as_deref()).map(SecRef::U32)
    }
    fn sc(s: Option<&BankStats>) -> Option<SecRef<'_>> {
        s.and_then(|s| s.row_topk_score.as_deref()).map(SecRef::F32)
    }
    [
        Some(SecRef::F32(store.unwrap_or(&n.gallery))),
        Some(SecRef::F32(&n.query_bank)),
        Some(SecRef::F32(&n.gallery_bank)),
        lse(q),
        top(q),
        idx(q),
        sc(q),
        lse(g),
        top(g),
        idx(g),
        sc(g),
    ]
}

fn encode_header(n: &Normalizer, secs: &[Option<SecRef<'_>>; SECTION_COUNT], store_flags: u8) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    put_u32(&mut h, offsets::VERSION, FORMAT_VERSION);
    put_u32(&mut h, offsets::ENDIAN, ENDIAN_MARKER);
    h[offsets::METHOD] = method_code(n.method);
    let (mode, metric, dim) = match n.mode {
        Mode::Embeddings { metric, dim } => (MODE_EMBEDDINGS, if metric == Metric::Cosine { METRIC_COSINE } else { METRIC_DOT }, dim),
        Mode::Similarities => (MODE_SIMILARITIES, METRIC_NONE, 0),
    };
    h[offsets::MODE] = mode;
    h[offsets::METRIC] = metric;
    h[offsets::FLAGS] = if n.query_stats.is_some() { FLAG_QUERY_STATS } else { 0 } | if n.gallery_stats.is_some() { FLAG_GALLERY_STATS } else { 0 } | store_flags;
    let p = &n.params;
    put_f64(&mut h, offsets::BETA_QUERY, p.beta_query);
    put_f64(&mut h, offsets::BETA_GALLERY, p.beta_gallery);
    put_u64(&mut h, offsets::K, p.k as u64);
    put_u64(&mut h, offsets::CSLS_K, p.csls_k as u64);
    put_u64(&mut h, offsets::NNN_K, p.nnn_k as u64);
    put_f64(&mut h, offsets::NNN_ALPHA, p.nnn_alpha);
    put_u64(&mut h, offsets::N_GALLERY, n.n_gallery as u64);
    put_u64(&mut h, offsets::DIM, dim as u64);
    let rows = |len: usize| len.checked_div(dim).unwrap_or(0) as u64;
    put_u64(&mut h, offsets::QUERY_BANK_ROWS, rows(n.query_bank.len()));
    put_u64(&mut h, offsets::GALLERY_BANK_ROWS, rows(n.gallery_bank.len()));
    for (off, s) in [(offsets::QUERY_STATS, &n.query_stats), (offsets::GALLERY_STATS, &n.gallery_stats)] {
        if let Some(s) = s {
            put_u64(&mut h, off, s.bank_rows as u64);
            put_f64(&mut h, off + 8, s.lse_beta);
            put_u64(&mut h, off + 16, s.top_k as u64);
            put_u64(&mut h, off + 24, s.row_k as u64);
        }
    }
    put_u32(&mut h, offsets::SECTION_COUNT, SECTION_COUNT as u32);
    let mut present = 0u32;
    for (i, s) in secs.iter().enumerate() {
        if let Some(s) = s {
            present |= 1 << i;
            put_u64(&mut h, offsets::SECTION_LENGTHS + 8 * i, s.byte_len() as u64);
        }
    }
    put_u32(&mut h, offsets::PRESENT, present);
    h
}

/// A writer that feeds everything it writes to the checksum.
struct Hashing<'w, W: Write + ?Sized> {
    w: &'w mut W,
    crc: crc32fast::Hasher,
    buf: Vec<u8>,
}

impl<W: Write + ?Sized> Hashing<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.w.write_all(bytes)
    }

    /// Writes little-endian elements through a bounded staging buffer.
    fn put_elems<T: Copy, const N: usize>(&mut self, v: &[T], le: impl Fn(T) -> [u8; N]) -> io::Result<()> {
        const CHUNK: usize = 1 << 16;
        let mut buf = std::mem::take(&mut self.buf);
        for c in v.chunks(CHUNK) {
            buf.clear();
            for &x in c {
                buf.extend_from_slice(&le(x));
            }
            self.put(&buf)?;
        }
        self.buf = buf;
        Ok(())
    }
}

/// Writes `n` in the version-1 format to `w` (which should be buffered).
pub fn write_to<W: Write + ?Sized>(n: &Normalizer, w: &mut W) -> io::Result<()> {
    let store = super::store::encode(n);
    let secs = section_refs(n, store.as_ref().map(|s| &s.1[..]));
    let header = encode_header(n, &secs, store.as_ref().map(|s| s.0).unwrap_or(0));
    let mut hw = Hashing { w, crc: crc32fast::Hasher::new(), buf: Vec::new() };
    hw.put(&header)?;
    for s in secs.iter().flatten() {
        match s {
            SecRef::F32(v) => hw.put_elems(v, f32::to_le_bytes)?,
            SecRef::F64(v) => hw.put_elems(v, f64::to_le_bytes)?,
            SecRef::U32(v) => hw.put_elems(v, u32::to_le_bytes)?,
        }
        hw.put(&[0u8; 8][..pad8(s.byte_len())])?;
    }
    let crc = hw.crc.clone().finalize();
    hw.w.write_all(&crc.to_le_bytes())
}

/// The whole file image of `n` in memory.
pub fn to_bytes(n: &Normalizer) -> Vec<u8> {
    let mut out = Vec::new();
    write_to(n, &mut out).expect("writing to a Vec cannot fail");
    out
}

// ---------------------------------------------------------------------------------------------
// reading

fn fmt_err(name: &str, what: impl std::fmt::Display) -> Error {
    Error::format(format!("{name}: {what}"))
}

fn get_u32(h: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(h[off..off + 4].try_into().unwrap())
}

fn get_u64(h: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(h[off..off + 8].try_into().unwrap())
}

fn get_f64(h: &[u8], off: usize) -> f64 {
    f64::from_le_bytes(h[off..off + 8].try_into().unwrap())
}

/// Validates the fixed-size prefix (magic, version, endianness) of the `got` bytes available.
fn check_preamble(h: &[u8], name: &str) -> Result<()> {
    if h.is_empty() {
        return Err(fmt_err(name, "empty file (not a saved dbnorm normaliser)"));
    }
    let m = h.len().min(8);
    if h[..m] != MAGIC[..m] {
        return Err(fmt_err(name, "not a saved dbnorm normaliser (bad magic bytes)"));
    }
    if h.len() < offsets::VERSION + 4 {
        return Err(fmt_err(name, format!("truncated header: {} bytes, a version {FORMAT_VERSION} header has {HEADER_LEN}", h.len())));
    }
    let version = get_u32(h, offsets::VERSION);
    let marker = if h.len() >= offsets::ENDIAN + 4 { Some(get_u32(h, offsets::ENDIAN)) } else { None };
    if version != FORMAT_VERSION {
        // A big-endian writer would have stored both the version and the marker byte-swapped.
        if version.swap_bytes() == FORMAT_VERSION && marker == Some(ENDIAN_MARKER.swap_bytes()) {
            return Err(fmt_err(name, "wrong endianness: the file was written big-endian; this build reads little-endian files"));
        }
        return Err(fmt_err(name, format!("unsupported format version {version} (this build reads {FORMAT_VERSION})")));
    }
    match marker {
        None => Err(fmt_err(name, format!("truncated header: {} bytes, a version {FORMAT_VERSION} header has {HEADER_LEN}", h.len()))),
        Some(ENDIAN_MARKER) => Ok(()),
        Some(m) if m == ENDIAN_MARKER.swap_bytes() => Err(fmt_err(name, "wrong endianness: the file was written big-endian; this build reads little-endian files")),
        Some(m) => Err(fmt_err(name, format!("wrong endianness marker 0x{m:08x} (expected 0x{ENDIAN_MARKER:08x}): corrupted header"))),
    }
}

/// Structural check of the section table against the file size; returns the section byte lengths.
fn check_lengths(h: &[u8], file_len: u64, name: &str) -> Result<[usize; SECTION_COUNT]> {
    let count = get_u32(h, offsets::SECTION_COUNT);
    if count as usize != SECTION_COUNT {
        return Err(fmt_err(name, format!("corrupted header: {count} sections declared, version {FORMAT_VERSION} has {SECTION_COUNT}")));
    }
    let present = get_u32(h, offsets::PRESENT);
    if present & !ALL_SECTIONS != 0 || present & ALWAYS_PRESENT != ALWAYS_PRESENT {
        return Err(fmt_err(name, format!("corrupted header: invalid section bitmask 0x{present:x}")));
    }
    let mut total: u64 = (HEADER_LEN + TRAILER_LEN) as u64;
    let mut lens = [0u64; SECTION_COUNT];
    for i in 0..SECTION_COUNT {
        let len = get_u64(h, offsets::SECTION_LENGTHS + 8 * i);
        if present & (1 << i) == 0 && len != 0 {
            return Err(fmt_err(name, format!("corrupted header: absent section '{}' has length {len}", SECTION_NAMES[i])));
        }
        if !len.is_multiple_of(KINDS[i].size() as u64) {
            return Err(fmt_err(name, format!("corrupted header: section '{}' has {len} bytes, not a multiple of {}", SECTION_NAMES[i], KINDS[i].size())));
        }
        let padded = len.checked_add(7).map(|l| l / 8 * 8);
        total = match padded.and_then(|p| total.checked_add(p)) {
            Some(t) => t,
            None => return Err(fmt_err(name, format!("corrupted header: section '{}' declares {len} bytes", SECTION_NAMES[i]))),
        };
        lens[i] = len;
    }
    if total != file_len {
        let what = if total > file_len { "truncated or corrupted" } else { "trailing bytes or corrupted header" };
        return Err(fmt_err(name, format!("{what}: the header declares {total} bytes, the file has {file_len}")));
    }
    // Every length is now bounded by the actual file size.
    let mut out = [0usize; SECTION_COUNT];
    for i in 0..SECTION_COUNT {
        out[i] = usize::try_from(lens[i]).map_err(|_| fmt_err(name, "file too large for this platform"))?;
    }
    Ok(out)
}

/// An empty vector with room for `count` elements, or the allocation error (never an abort).
fn reserved<T>(count: usize) -> std::result::Result<Vec<T>, std::collections::TryReserveError> {
    let mut v = Vec::new();
    v.try_reserve_exact(count)?;
    Ok(v)
}

struct Reader<'r, R: Read> {
    r: &'r mut R,
    crc: crc32fast::Hasher,
    buf: Vec<u8>,
    name: &'r str,
}

impl<R: Read> Reader<'_, R> {
    /// Fills `self.buf[..len]` (hashing it); a short read means the file shrank under us.
    fn fill(&mut self, len: usize) -> Result<()> {
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let got = read_full(self.r, &mut self.buf[..len]).map_err(|e| Error::new(ErrorCode::Io, format!("{}: cannot read: {e}", self.name)))?;
        if got < len {
            return Err(fmt_err(self.name, "truncated: the file ended early (was it modified while loading?)"));
        }
        self.crc.update(&self.buf[..len]);
        Ok(())
    }

    fn section(&mut self, i: usize, len: usize) -> Result<SecVec> {
        const CHUNK: usize = 1 << 20; // a multiple of every element size
        let kind = KINDS[i];
        // `len` was checked against the file size: this allocation is bounded by it.
        let count = len / kind.size();
        let oom = |e: std::collections::TryReserveError| {
            Error::new(ErrorCode::Io, format!("{}: cannot allocate {len} bytes for section '{}': {e}", self.name, SECTION_NAMES[i]))
        };
        let mut out = match kind {
            Kind::F32 => SecVec::F32(reserved(count).map_err(oom)?),
            Kind::F64 => SecVec::F64(reserved(count).map_err(oom)?),
            Kind::U32 => SecVec::U32(reserved(count).map_err(oom)?),
        };
        let mut left = len;
        while left > 0 {
            let want = left.min(CHUNK);
            self.fill(want)?;
            let b = &self.buf[..want];
            match &mut out {
                SecVec::F32(v) => v.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()))),
                SecVec::F64(v) => v.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()))),
                SecVec::U32(v) => v.extend(b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()))),
            }
            left -= want;
        }
        let pad = pad8(len);
        if pad > 0 {
            self.fill(pad)?;
            if self.buf[..pad].iter().any(|&b| b != 0) {
                return Err(fmt_err(self.name, format!("corrupted file: non-zero padding after section '{}'", SECTION_NAMES[i])));
            }
        }
        Ok(out)
    }
}

/// Reads a normaliser from `r`, whose total length is `file_len` bytes; `name` names the source in errors.
pub fn read_from<R: Read>(r: &mut R, file_len: u64, name: &str) -> Result<Normalizer> {
    let io_err = |e: io::Error| Error::new(ErrorCode::Io, format!("{name}: cannot read: {e}"));
    let mut h = vec![0u8; (file_len.min(HEADER_LEN as u64)) as usize];
    let got = read_full(r, &mut h).map_err(io_err)?;
    h.truncate(got);
    if crate::shard::file::is_partial_header(&h) {
        return Err(Error::new(ErrorCode::Partial, format!("{name}: a partial normaliser (one shard of a fit): merge the parts first (Normalizer.merge, `dbnorm merge`)")));
    }
    check_preamble(&h, name)?;
    if h.len() < HEADER_LEN {
        return Err(fmt_err(name, format!("truncated header: {} bytes, a version {FORMAT_VERSION} header has {HEADER_LEN}", h.len())));
    }
    let lens = check_lengths(&h, file_len, name)?;

    let mut rd = Reader { r, crc: crc32fast::Hasher::new(), buf: Vec::new(), name };
    rd.crc.update(&h);
    let present = get_u32(&h, offsets::PRESENT);
    let mut secs: Vec<Option<SecVec>> = Vec::with_capacity(SECTION_COUNT);
    for (i, &len) in lens.iter().enumerate() {
        secs.push(if present & (1 << i) != 0 { Some(rd.section(i, len)?) } else { None });
    }
    let computed = rd.crc.clone().finalize();
    let mut t = [0u8; TRAILER_LEN];
    if read_full(rd.r, &mut t).map_err(io_err)? < TRAILER_LEN {
        return Err(fmt_err(name, "truncated: the checksum is missing (was the file modified while loading?)"));
    }
    let mut probe = [0u8; 1];
    if read_full(rd.r, &mut probe).map_err(io_err)? > 0 {
        return Err(fmt_err(name, "trailing bytes after the checksum (was the file modified while loading?)"));
    }
    let stored = u32::from_le_bytes(t);
    if stored != computed {
        return Err(fmt_err(name, format!("checksum mismatch (stored 0x{stored:08x}, computed 0x{computed:08x}): the file is corrupted")));
    }
    build(&h, secs, name)
}

/// Reads a normaliser from an in-memory file image; `name` names it in errors.
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Normalizer> {
    let mut r = bytes;
    read_from(&mut r, bytes.len() as u64, name)
}

// ---------------------------------------------------------------------------------------------
// semantic checks and assembly

fn take_f32(s: &mut Option<SecVec>) -> Option<Vec<f32>> {
    match s.take() {
        Some(SecVec::F32(v)) => Some(v),
        _ => None,
    }
}

fn take_f64(s: &mut Option<SecVec>) -> Option<Vec<f64>> {
    match s.take() {
        Some(SecVec::F64(v)) => Some(v),
        _ => None,
    }
}

fn take_u32(s: &mut Option<SecVec>) -> Option<Vec<u32>> {
    match s.take() {
        Some(SecVec::U32(v)) => Some(v),
        _ => None,
    }
}

fn to_usize(v: u64, field: &str, name: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| fmt_err(name, format!("inconsistent file: {field} = {v} does not fit this platform")))
}

fn check_len(got: usize, rows: usize, cols: usize, what: &str, expect: &str, name: &str) -> Result<()> {
    match rows.checked_mul(cols) {
        Some(want) if want == got => Ok(()),
        _ => Err(fmt_err(name, format!("inconsistent file: {what} holds {got} values, expected {expect} = {rows}·{cols}"))),
    }
}

fn check_finite_f64(v: &[f64], what: &str, name: &str) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(j) => Err(fmt_err(name, format!("inconsistent file: {what}[{j}] is {} (must be finite)", v[j]))),
    }
}

fn check_finite_f32(v: &[f32], what: &str, name: &str) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(j) => Err(fmt_err(name, format!("inconsistent file: {what}[{j}] is {} (must be finite)", v[j]))),
    }
}

/// Checks one bank's statistics against what `method` requested from it and assembles them.
#[allow(clippy::too_many_arguments)]
fn build_stats(h: &[u8], desc_off: usize, first: usize, secs: &mut [Option<SecVec>], req: StatsRequest, n: usize, bank: &str, name: &str) -> Result<BankStats> {
    let bank_rows = to_usize(get_u64(h, desc_off), &format!("{bank} rows"), name)?;
    let lse_beta = get_f64(h, desc_off + 8);
    let top_k = to_usize(get_u64(h, desc_off + 16), &format!("{bank} top-K"), name)?;
    let row_k = to_usize(get_u64(h, desc_off + 24), &format!("{bank} row k"), name)?;
    if bank_rows == 0 {
        return Err(fmt_err(name, format!("inconsistent file: {bank} statistics fitted from 0 rows")));
    }
    let lse = take_f64(&mut secs[first]);
    let top_mean = take_f64(&mut secs[first + 1]);
    let row_topk_idx = take_u32(&mut secs[first + 2]);
    let row_topk_score = take_f32(&mut secs[first + 3]);
    let presence = |has: bool, wanted: bool, what: &str| -> Result<()> {
        if has != wanted {
            return Err(fmt_err(
                name,
                format!("inconsistent file: {bank} {what} is {} but the method {} it", if has { "present" } else { "missing" }, if wanted { "needs" } else { "does not use" }),
            ));
        }
        Ok(())
    };
    presence(lse.is_some(), req.lse_beta.is_some(), "log-sum-exp")?;
    presence(top_mean.is_some(), req.top_values.is_some(), "top-K mean")?;
    presence(row_topk_idx.is_some(), req.row_topk.is_some(), "row top-k indices")?;
    presence(row_topk_score.is_some(), req.row_topk.is_some(), "row top-k scores")?;
    if let (Some(l), Some(beta)) = (&lse, req.lse_beta) {
        check_len(l.len(), n, 1, &format!("{bank} log-sum-exp"), "n_gallery", name)?;
        check_finite_f64(l, &format!("{bank} log-sum-exp"), name)?;
        if lse_beta.to_bits() != beta.to_bits() {
            return Err(fmt_err(name, format!("inconsistent file: {bank} log-sum-exp uses β = {lse_beta}, the parameters say {beta}")));
        }
    }
    if let (Some(t), Some(k)) = (&top_mean, req.top_values) {
        if top_k != k.min(bank_rows) {
            return Err(fmt_err(name, format!("inconsistent file: {bank} top-K mean uses K = {top_k}, expected min({k}, {bank_rows})")));
        }
        check_len(t.len(), n, 1, &format!("{bank} top-K mean"), "n_gallery", name)?;
        check_finite_f64(t, &format!("{bank} top-K mean"), name)?;
    }
    if let (Some(idx), Some(sc), Some(k)) = (&row_topk_idx, &row_topk_score, req.row_topk) {
        if row_k != k.min(n) || row_k == 0 {
            return Err(fmt_err(name, format!("inconsistent file: {bank} row lists keep {row_k} items, expected min({k}, {n})")));
        }
        check_len(idx.len(), bank_rows, row_k, &format!("{bank} row top-k indices"), "bank rows·k", name)?;
        check_len(sc.len(), bank_rows, row_k, &format!("{bank} row top-k scores"), "bank rows·k", name)?;
        if let Some(p) = idx.iter().position(|&j| j as usize >= n) {
            return Err(fmt_err(name, format!("inconsistent file: {bank} row top-k index {} at position {p} is out of range (gallery has {n} items)", idx[p])));
        }
        check_finite_f32(sc, &format!("{bank} row top-k scores"), name)?;
        for (b, (ri, rs)) in idx.chunks(row_k).zip(sc.chunks(row_k)).enumerate() {
            for r in 1..row_k {
                let ok = rs[r - 1] > rs[r] || (rs[r - 1] == rs[r] && ri[r - 1] < ri[r]);
                if !ok {
                    return Err(fmt_err(name, format!("inconsistent file: {bank} row {b}'s top-k list is not sorted best first")));
                }
            }
        }
    }
    Ok(BankStats { bank_rows, lse, lse_beta, top_k, top_mean, row_k, row_topk_idx, row_topk_score })
}

fn build(h: &[u8], mut secs: Vec<Option<SecVec>>, name: &str) -> Result<Normalizer> {
    let method = method_from_code(h[offsets::METHOD]).ok_or_else(|| fmt_err(name, format!("unknown method code {}", h[offsets::METHOD])))?;
    let flags = h[offsets::FLAGS];
    if flags & !(FLAG_QUERY_STATS | FLAG_GALLERY_STATS | super::store::STORE_FLAGS) != 0 || get_u32(h, offsets::RESERVED) != 0 {
        return Err(fmt_err(name, "corrupted header: unknown flags or non-zero reserved bytes"));
    }
    let params = Params {
        beta_query: get_f64(h, offsets::BETA_QUERY),
        beta_gallery: get_f64(h, offsets::BETA_GALLERY),
        k: to_usize(get_u64(h, offsets::K), "k", name)?,
        csls_k: to_usize(get_u64(h, offsets::CSLS_K), "cslsK", name)?,
        nnn_k: to_usize(get_u64(h, offsets::NNN_K), "nnnK", name)?,
        nnn_alpha: get_f64(h, offsets::NNN_ALPHA),
        ..Params::default()
    };
    params.validate(method).map_err(|e| fmt_err(name, format!("invalid parameters for method '{}': {}", method.as_str(), e.message)))?;
    let n = to_usize(get_u64(h, offsets::N_GALLERY), "n_gallery", name)?;
    // Gallery indices are u32; and n_gallery sizes per-item state (e.g. a `none` normaliser in
    // similarity mode stores no section of that length), so probe that state's allocation instead
    // of letting a corrupt header abort the process (fuzz finding).
    if n > u32::MAX as usize {
        return Err(fmt_err(name, format!("inconsistent file: n_gallery = {n} exceeds 2^32 - 1 gallery items")));
    }
    if Vec::<f64>::new().try_reserve_exact(n.saturating_mul(4)).is_err() {
        return Err(fmt_err(name, format!("inconsistent file: n_gallery = {n} needs more per-item memory than can be allocated")));
    }
    let dim = to_usize(get_u64(h, offsets::DIM), "dim", name)?;
    let q_rows = to_usize(get_u64(h, offsets::QUERY_BANK_ROWS), "queryBank rows", name)?;
    let g_rows = to_usize(get_u64(h, offsets::GALLERY_BANK_ROWS), "galleryBank rows", name)?;
    let mode = match (h[offsets::MODE], h[offsets::METRIC]) {
        (MODE_EMBEDDINGS, METRIC_COSINE) => Mode::Embeddings { metric: Metric::Cosine, dim },
        (MODE_EMBEDDINGS, METRIC_DOT) => Mode::Embeddings { metric: Metric::Dot, dim },
        (MODE_SIMILARITIES, METRIC_NONE) => Mode::Similarities,
        (m, t) => return Err(fmt_err(name, format!("corrupted header: invalid mode/metric codes {m}/{t}"))),
    };
    let mut gallery = take_f32(&mut secs[sections::GALLERY]).unwrap_or_default();
    // A gallery not held as f32 (lean references or half precision, `super::store`): decoded after
    // the statistics; the f32 checks below see an empty gallery.
    let store = flags & super::store::STORE_FLAGS;
    let store_words = if store != 0 { std::mem::take(&mut gallery) } else { Vec::new() };
    let lean = store & super::store::FLAG_LEAN != 0;
    let query_bank = take_f32(&mut secs[sections::QUERY_BANK]).unwrap_or_default();
    let gallery_bank = take_f32(&mut secs[sections::GALLERY_BANK]).unwrap_or_default();
    match mode {
        Mode::Embeddings { .. } => {
            if n == 0 || dim == 0 {
                return Err(fmt_err(name, format!("inconsistent file: embeddings mode with {n} gallery items of dim {dim}")));
            }
            if store == 0 {
                check_len(gallery.len(), n, dim, "gallery", "n_gallery·dim", name)?;
            }
            check_len(query_bank.len(), q_rows, dim, "queryBank", "rows·dim", name)?;
            check_len(gallery_bank.len(), g_rows, dim, "galleryBank", "rows·dim", name)?;
            check_finite_f32(&gallery, "gallery", name)?;
            check_finite_f32(&query_bank, "queryBank", name)?;
            check_finite_f32(&gallery_bank, "galleryBank", name)?;
        }
        Mode::Similarities => {
            if store != 0 || dim != 0 || q_rows != 0 || g_rows != 0 || !gallery.is_empty() || !query_bank.is_empty() || !gallery_bank.is_empty() {
                return Err(fmt_err(name, "inconsistent file: similarity mode stores no embeddings"));
            }
            if n == 0 && method != Method::None {
                return Err(fmt_err(name, format!("inconsistent file: method '{}' with 0 gallery items", method.as_str())));
            }
        }
    }
    let (rq, rg) = method.requests(&params);
    let mut stats = [None, None];
    for (slot, (req, flag, desc, first, bank, stored_rows)) in [
        (rq, FLAG_QUERY_STATS, offsets::QUERY_STATS, sections::QUERY_STATS, "queryBank", q_rows),
        (rg, FLAG_GALLERY_STATS, offsets::GALLERY_STATS, sections::GALLERY_STATS, "galleryBank", g_rows),
    ]
    .into_iter()
    .enumerate()
    {
        let has = flags & flag != 0;
        match req {
            None if has => return Err(fmt_err(name, format!("inconsistent file: {bank} statistics present but method '{}' does not use that bank", method.as_str()))),
            None => {
                // Found by fuzzing: a non-zero descriptor without statistics was accepted (and
                // re-encoded as zeros), so two different files loaded as the same normaliser.
                if h[desc..desc + 32].iter().any(|&b| b != 0) {
                    return Err(fmt_err(name, format!("corrupted header: {bank} statistics descriptor is non-zero but no {bank} statistics are stored")));
                }
                if (first..first + 4).any(|i| secs[i].is_some()) {
                    return Err(fmt_err(name, format!("inconsistent file: {bank} statistics sections present without {bank} statistics")));
                }
            }
            Some(_) if !has => return Err(fmt_err(name, format!("inconsistent file: method '{}' needs {bank} statistics, none stored", method.as_str()))),
            Some(r) => {
                let s = build_stats(h, desc, first, &mut secs, r, n, bank, name)?;
                if matches!(mode, Mode::Embeddings { .. }) && !lean && s.bank_rows != stored_rows {
                    return Err(fmt_err(name, format!("inconsistent file: {bank} statistics from {} rows, {stored_rows} rows stored", s.bank_rows)));
                }
                stats[slot] = Some(s);
            }
        }
    }
    let [query_stats, gallery_stats] = stats;
    let mut out = Normalizer::rebuild(method, params, mode.clone(), n, gallery, query_bank, gallery_bank, query_stats, gallery_stats, Default::default())
        .map_err(|e| fmt_err(name, format!("inconsistent file: {}", e.message)))?;
    if let (true, Mode::Embeddings { metric, dim }) = (store != 0, mode) {
        super::store::decode(&mut out, flags, &store_words, metric, dim, name)?;
    }
    Ok(out)
}
