//! A small reader and writer for NumPy `.npy` files holding a 1-D or 2-D float matrix.
//!
//! Accepted: format versions 1.0, 2.0 and 3.0; dtype `<f4` (read as is) or `<f8` (converted to `f32`,
//! rounding to nearest); C order (`fortran_order: False`); shape `(rows, cols)` or `(n,)`. A 1-D array
//! of length `n` is read as **one row**, `1 × n` (NumPy's `atleast_2d` convention). Data are returned
//! row-major, matching [`crate::MatRef`].
//!
//! Everything else is rejected with `ERR_FORMAT` and a message that names the file and says what is
//! wrong (bad magic, unsupported version, dtype such as `<i4` or big-endian `>f4`, Fortran order, 0-D or
//! 3-D shape, malformed header, truncated or trailing data). A file that cannot be opened or read gives
//! `ERR_IO`.
//!
//! Why not a crate such as `npyz`: it adds a dependency for a format this small, and its generic reader
//! neither produces the error messages above (file name + the exact problem) nor exposes the header
//! offset that a caller with a memory-mapped file needs for a zero-copy `<f4` view ([`parse_header`]).
//! Reading from a path streams the data in chunks, so an `<f8` file never sits in memory twice.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use crate::error::{Error, ErrorCode, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Longest header dictionary accepted, in bytes (bounds the header buffer whatever the file says).
pub const MAX_HEADER_LEN: usize = 1 << 16;

/// The element type stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    /// `<f4`: little-endian `f32`.
    F4,
    /// `<f8`: little-endian `f64` (converted to `f32` on read).
    F8,
}

impl NpyDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::F4 => 4,
            NpyDtype::F8 => 8,
        }
    }
}

/// A parsed `.npy` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// `(major, minor)` format version.
    pub version: (u8, u8),
    pub dtype: NpyDtype,
    /// Rows of the matrix (1 for a 1-D array).
    pub rows: usize,
    pub cols: usize,
    /// Byte offset of the first element. NumPy pads headers to 64 bytes, so in a memory-mapped file the
    /// data are aligned for `f32`/`f64` views.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of data bytes that follow the header.
    pub fn data_len(&self) -> usize {
        self.rows * self.cols * self.dtype.size()
    }
}

/// Parses the header at the start of `bytes` (which must hold at least the whole header; the data
/// may be absent). `name` (usually the file path) appears in error messages.
pub fn parse_header(bytes: &[u8], name: &str) -> Result<NpyHeader> {
    let (version, header_len, prefix) = parse_preamble(bytes, name)?;
    let end = prefix + header_len;
    if bytes.len() < end {
        return Err(fmt_err(
            name,
            format!(
                "truncated header: it declares {header_len} bytes but only {} follow",
                bytes.len().saturating_sub(prefix)
            ),
        ));
    }
    parse_dict(&bytes[prefix..end], version, end, name)
}

/// Reads a whole `.npy` image from memory: returns `(data, rows, cols)`, data row-major `f32`.
pub fn parse_npy_f32(bytes: &[u8], name: &str) -> Result<(Vec<f32>, usize, usize)> {
    let h = parse_header(bytes, name)?;
    let data = &bytes[h.data_offset..];
    check_data_len(&h, data.len(), name)?;
    // Bounded by `bytes.len()` (checked just above); `try_reserve` keeps even that from aborting.
    let mut out = Vec::new();
    out.try_reserve_exact(h.rows * h.cols).map_err(|e| {
        Error::new(ErrorCode::Io, format!("{name}: cannot allocate {} values: {e}", h.rows * h.cols))
    })?;
    convert(h.dtype, data, &mut out);
    Ok((out, h.rows, h.cols))
}

/// Reads a `.npy` file: returns `(data, rows, cols)`, data row-major `f32`. Errors: `ERR_IO` if the file
/// cannot be opened or read, or is not a regular file (a FIFO, device, directory or socket is refused
/// before anything is read, without blocking: see [`crate::fileio::open_regular`]); `ERR_FORMAT` if it is
/// not an accepted `.npy` (see the module docs), including a header whose sizes disagree with the
/// file's length — checked before anything is allocated, so no header can make the reader abort.
pub fn read_npy_f32(path: impl AsRef<Path>) -> Result<(Vec<f32>, usize, usize)> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io_err = |e: std::io::Error| Error::new(ErrorCode::Io, format!("{name}: cannot read: {e}"));
    let (mut file, file_len) = crate::fileio::open_regular(path, &name)?;

    // Magic and version, then the header length field, then the header itself: never read past it,
    // and never size a buffer from the header before checking it against the file's length.
    let mut head = Vec::with_capacity(128);
    fill_to(&mut file, &mut head, 8).map_err(io_err)?;
    let prefix = preamble_len(&head, &name)?;
    fill_to(&mut file, &mut head, prefix).map_err(io_err)?;
    let (_, header_len, _) = parse_preamble(&head, &name)?;
    if (prefix + header_len) as u64 > file_len {
        return Err(fmt_err(
            &name,
            format!(
                "truncated header: it declares {header_len} bytes but only {} follow",
                file_len.saturating_sub(prefix as u64)
            ),
        ));
    }
    fill_to(&mut file, &mut head, prefix + header_len).map_err(io_err)?;
    let h = parse_header(&head, &name)?;

    let total = h.data_len();
    // The file's length must match the header before a single element is allocated.
    check_data_len(&h, usize::try_from(file_len - h.data_offset as u64).unwrap_or(usize::MAX), &name)?;
    let mut out = Vec::new();
    out.try_reserve_exact(h.rows * h.cols).map_err(|e| {
        Error::new(ErrorCode::Io, format!("{name}: cannot allocate {} values for shape ({}, {}): {e}", h.rows * h.cols, h.rows, h.cols))
    })?;
    // 1 MiB chunks (a multiple of both element sizes).
    let mut chunk = vec![0u8; (1 << 20).min(total.max(8))];
    let mut done = 0usize;
    while done < total {
        let want = (total - done).min(chunk.len());
        let got = read_full(&mut file, &mut chunk[..want]).map_err(io_err)?;
        done += got;
        if got < want {
            return Err(truncated(&h, done, &name));
        }
        convert(h.dtype, &chunk[..want], &mut out);
    }
    let mut probe = [0u8; 1];
    if read_full(&mut file, &mut probe).map_err(io_err)? > 0 {
        return Err(fmt_err(
            &name,
            format!("trailing bytes after the {total} data bytes of shape ({}, {})", h.rows, h.cols),
        ));
    }
    Ok((out, h.rows, h.cols))
}

/// Reads from `r` until `buf` holds `len` bytes or the input ends.
fn fill_to(r: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    let start = buf.len();
    if start >= len {
        return Ok(());
    }
    buf.resize(len, 0);
    let got = read_full(r, &mut buf[start..])?;
    buf.truncate(start + got);
    Ok(())
}

/// Encodes a row-major `rows × cols` `f32` matrix as a version 1.0 `.npy` image (`<f4`, C order,
/// header padded to 64 bytes). `ERR_SHAPE` if `data.len() != rows·cols`.
pub fn encode_npy_f32(data: &[f32], rows: usize, cols: usize) -> Result<Vec<u8>> {
    if Some(data.len()) != rows.checked_mul(cols) {
        return Err(Error::shape(format!("npy: expected rows·cols = {rows}·{cols} values, got {}", data.len())));
    }
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let header_len = u16::try_from(dict.len()).map_err(|_| Error::shape("npy: header too long"))?;
    let mut out = Vec::with_capacity(10 + dict.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes a row-major `rows × cols` `f32` matrix as a version 1.0 `.npy` file (see
/// [`encode_npy_f32`]), atomically and with the same rules as a save file
/// ([`crate::fileio::write_atomic`]: a symbolic link is written through, a device node, FIFO, socket or
/// directory is refused, an interrupted write leaves no temporary file on Linux). `ERR_SHAPE` on a
/// length mismatch, `ERR_IO` if the file cannot be written.
pub fn write_npy_f32(path: impl AsRef<Path>, data: &[f32], rows: usize, cols: usize) -> Result<()> {
    let bytes = encode_npy_f32(data, rows, cols)?;
    crate::fileio::write_atomic(path.as_ref(), |w: &mut dyn Write| w.write_all(&bytes))
}

fn fmt_err(name: &str, what: impl std::fmt::Display) -> Error {
    Error::format(format!("{name}: invalid .npy file: {what}"))
}

fn truncated(h: &NpyHeader, found: usize, name: &str) -> Error {
    fmt_err(name, format!("truncated data: shape ({}, {}) needs {} bytes, found {found}", h.rows, h.cols, h.data_len()))
}

fn check_data_len(h: &NpyHeader, found: usize, name: &str) -> Result<()> {
    let want = h.data_len();
    if found < want {
        return Err(truncated(h, found, name));
    }
    if found > want {
        return Err(fmt_err(
            name,
            format!("{} trailing bytes after the {want} data bytes of shape ({}, {})", found - want, h.rows, h.cols),
        ));
    }
    Ok(())
}

/// Appends the little-endian elements of `bytes` (a whole number of elements) to `out` as `f32`.
fn convert(dtype: NpyDtype, bytes: &[u8], out: &mut Vec<f32>) {
    match dtype {
        NpyDtype::F4 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        NpyDtype::F8 => out.extend(
            bytes.chunks_exact(8).map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32),
        ),
    }
}

/// Reads until `buf` is full or the end of the input; returns the number of bytes read (shared
/// with `persist`).
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Checks the magic string and version; returns the preamble length (10 for v1, 12 for v2/v3).
fn preamble_len(bytes: &[u8], name: &str) -> Result<usize> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        let shown: Vec<String> = bytes.iter().take(6).map(|b| format!("{b:02x}")).collect();
        return Err(fmt_err(
            name,
            format!("bad magic: expected \\x93NUMPY, found [{}] (not a .npy file, or truncated)", shown.join(" ")),
        ));
    }
    match (bytes[6], bytes[7]) {
        (1, 0) => Ok(10),
        (2, 0) | (3, 0) => Ok(12),
        (major, minor) => {
            Err(fmt_err(name, format!("unsupported format version {major}.{minor} (expected 1.0, 2.0 or 3.0)")))
        }
    }
}

/// Magic, version and header length: returns `(version, header_len, prefix_len)`.
fn parse_preamble(bytes: &[u8], name: &str) -> Result<((u8, u8), usize, usize)> {
    let prefix = preamble_len(bytes, name)?;
    if bytes.len() < prefix {
        return Err(fmt_err(name, "truncated header: the header length field is incomplete"));
    }
    let header_len = if prefix == 10 {
        usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    // NumPy's own reader refuses headers above 10 000 bytes by default; real headers are < 1 KiB.
    if header_len > MAX_HEADER_LEN {
        return Err(fmt_err(name, format!("header of {header_len} bytes is too long (at most {MAX_HEADER_LEN} accepted)")));
    }
    Ok(((bytes[6], bytes[7]), header_len, prefix))
}

/// Parses the header dictionary, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &[u8], version: (u8, u8), data_offset: usize, name: &str) -> Result<NpyHeader> {
    let garbage = |what: &str| {
        let shown = String::from_utf8_lossy(text);
        fmt_err(name, format!("malformed header ({what}): {:?}", shown.trim_end()))
    };
    let mut p = Parser { s: text, i: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{').map_err(|_| garbage("expected '{'"))?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| garbage("expected a quoted key"))?;
        p.skip_ws();
        p.expect(b':').map_err(|_| garbage("expected ':' after a key"))?;
        p.skip_ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err(fmt_err(
                        name,
                        "unsupported dtype: structured arrays are not supported (expected '<f4' or '<f8')",
                    ));
                }
                descr = Some(p.string().ok_or_else(|| garbage("'descr' must be a quoted string"))?);
            }
            "fortran_order" => {
                fortran = Some(p.boolean().ok_or_else(|| garbage("'fortran_order' must be True or False"))?)
            }
            "shape" => shape = Some(p.tuple().ok_or_else(|| garbage("'shape' must be a tuple of integers"))?),
            other => return Err(garbage(&format!("unexpected key '{other}'"))),
        }
        p.skip_ws();
        if p.eat(b',') {
            continue;
        }
        p.skip_ws();
        p.expect(b'}').map_err(|_| garbage("expected ',' or '}'"))?;
        break;
    }
    if !p.rest().iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
        return Err(garbage("unexpected text after '}'"));
    }
    let descr = descr.ok_or_else(|| garbage("missing 'descr'"))?;
    let fortran = fortran.ok_or_else(|| garbage("missing 'fortran_order'"))?;
    let shape = shape.ok_or_else(|| garbage("missing 'shape'"))?;

    let dtype = match descr.as_str() {
        "<f4" => NpyDtype::F4,
        "<f8" => NpyDtype::F8,
        d if d.starts_with('>') => {
            return Err(fmt_err(
                name,
                format!("unsupported dtype '{d}': big-endian data are not supported (expected '<f4' or '<f8')"),
            ))
        }
        d => return Err(fmt_err(name, format!("unsupported dtype '{d}' (expected '<f4' or '<f8')"))),
    };
    if fortran {
        return Err(fmt_err(
            name,
            "fortran_order: True is not supported (save a C-ordered array, e.g. numpy.ascontiguousarray)",
        ));
    }
    let shown = || format!("({})", shape.iter().map(u64::to_string).collect::<Vec<_>>().join(", "));
    let (rows, cols) = match shape.as_slice() {
        [n] => (1, *n),
        [r, c] => (*r, *c),
        _ => return Err(fmt_err(name, format!("expected a 1-D or 2-D array, got shape {}", shown()))),
    };
    let too_big = || fmt_err(name, format!("shape {} is too large", shown()));
    let rows = usize::try_from(rows).map_err(|_| too_big())?;
    let cols = usize::try_from(cols).map_err(|_| too_big())?;
    rows.checked_mul(cols).and_then(|n| n.checked_mul(dtype.size())).ok_or_else(too_big)?;
    Ok(NpyHeader { version, dtype, rows, cols, data_offset })
}

/// A cursor over the header bytes (ASCII is all that matters; other bytes fail to parse).
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn rest(&self) -> &[u8] {
        &self.s[self.i.min(self.s.len())..]
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }
    fn expect(&mut self, b: u8) -> std::result::Result<(), ()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(())
        }
    }
    /// A single- or double-quoted string without escapes.
    fn string(&mut self) -> Option<String> {
        let q = self.peek().filter(|&b| b == b'\'' || b == b'"')?;
        self.i += 1;
        let start = self.i;
        while self.peek()? != q {
            if self.peek()? == b'\\' {
                return None;
            }
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.s[start..self.i]).ok()?.to_owned();
        self.i += 1;
        Some(s)
    }
    fn boolean(&mut self) -> Option<bool> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.rest().starts_with(word) {
                self.i += word.len();
                return Some(v);
            }
        }
        None
    }
    /// `()`, `(n,)`, `(a, b)`, ... of non-negative integers (a Python 2 `L` suffix is accepted).
    fn tuple(&mut self) -> Option<Vec<u64>> {
        if !self.eat(b'(') {
            return None;
        }
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Some(out);
            }
            let start = self.i;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.i += 1;
            }
            if self.i == start {
                return None;
            }
            out.push(std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()?);
            self.eat(b'L');
            self.skip_ws();
            if !self.eat(b',') {
                self.skip_ws();
                return self.eat(b')').then_some(out);
            }
        }
    }
}
