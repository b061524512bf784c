//! Saving and loading a fitted [`Normalizer`]: a versioned, checksummed, little-endian binary file.
//!
//! # Versions
//!
//! This build writes **version 3** and reads versions 1 and 3. Version 2 is the partial-fit file
//! (one shard of a fit, [`crate::shard::file`]; loading one here is `ERR_PARTIAL`). Version 3 is
//! version 1 plus two sections (11 parameters by name, 12 method state), so its section table is
//! two entries longer and its header 280 bytes instead of 264; every other field is unchanged.
//!
//! # Layout (format version 3; version 1 differs only where noted)
//!
//! All integers and floats are little-endian; `f64` parameters are stored bit-exactly.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `89 44 42 4E 4F 52 4D 0A` (`\x89DBNORM\n`) |
//! | 8 | 4 | format version `u32` = 3 (1 in version-1 files) |
//! | 12 | 4 | endianness marker `u32` 0x0A0B0C0D (on disk `0D 0C 0B 0A`) |
//! | 16 | 1 | method: its registry `persist_code` (0 none, 1 is, 2 dis, 3 dual-is, 4 dual-dis, 5 csls, 6 nnn, then 7 sn, 8 dual-sn, 9 dn, 10 invgc, 11 mp, 12 ls, 13 dsl) |
//! | 17 | 1 | mode (1 embeddings, 2 similarities) |
//! | 18 | 1 | metric (0 none — similarity mode, 1 cosine, 2 dot) |
//! | 19 | 1 | flags: bit 0 query-bank statistics present, bit 1 gallery-bank statistics present; bits 2–4 how section 0 holds the gallery ([`store`]: 4 lean source references, 8 float16, 16 bfloat16; 0 `f32` rows) |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 8 | β_q `f64` |
//! | 32 | 8 | β_g `f64` |
//! | 40 | 8 | k `u64` (DIS / DualDIS) |
//! | 48 | 8 | cslsK `u64` |
//! | 56 | 8 | nnnK `u64` |
//! | 64 | 8 | nnnAlpha `f64` |
//! | 72 | 8 | n_gallery `u64` |
//! | 80 | 8 | dim `u64` (0 in similarity mode) |
//! | 88 | 8 | stored query-bank rows `u64` (embeddings mode; else 0) |
//! | 96 | 8 | stored gallery-bank rows `u64` |
//! | 104 | 32 | query-bank statistics: bank_rows `u64`, lse_beta `f64`, top_k `u64`, row_k `u64` (0 if absent) |
//! | 136 | 32 | gallery-bank statistics, same layout |
//! | 168 | 4 | section count `u32` = 13 (11 in version 1) |
//! | 172 | 4 | section presence bitmask `u32` (bit i: section i present; bits 0–2, and 11–12 in version 3, always set) |
//! | 176 | 104 | section table: 13 × byte length `u64` (unpadded; 0 for an absent section); version 1: 11 × 8 = 88 bytes |
//! | 280 | … | body (at 264 in version 1): the sections in table order, each zero-padded to a multiple of 8 bytes |
//! | end − 4 | 4 | CRC-32 (IEEE) `u32` of every preceding byte (header and body) |
//!
//! Sections: 0 prepared gallery `f32` (n_gallery × dim; unit rows under cosine), 1 prepared query
//! bank `f32`, 2 prepared gallery bank `f32` (both kept for `addGallery`), then for the query bank
//! (3–6) and the gallery bank (7–10): `lse` `f64` (n_gallery), `top_mean` `f64` (n_gallery),
//! per-bank-row top-k gallery indices `u32` and scores `f32` (bank_rows × row_k, best first).
//! The gallery section holds whatever the normaliser compares queries with (`Normalizer.gallery`):
//! for methods that transform the gallery (DN, InvGC) that is the transformed gallery.
//!
//! Version 3 adds two byte sections with their own little-endian encoding:
//!
//! - **11, parameters by name**: for every parameter the method reads that is not in the header
//!   block (offsets 24–71: β_q, β_g, k, cslsK, nnnK, nnnAlpha), one entry `u32` name length, UTF-8
//!   name (the `PARAMS` table's name), `f64` value. Generic: a parameter added to the table
//!   persists without format code. On load, an unknown name, a header parameter, a parameter the
//!   method does not read, a repeated or out-of-range entry, or a missing parameter of the method
//!   is `ERR_FORMAT`.
//! - **12, method state** (`Normalizer.state`, e.g. DN means or Sinkhorn potentials): per vector
//!   `u32` name length, UTF-8 name, `u64` value count, the values `f64`. Names are unique and values
//!   finite; every count is checked against the bytes left in the section (itself checked against
//!   the file size) before anything is allocated; the method's `check_state` then checks the names
//!   and lengths against the normaliser's sizes (`ERR_FORMAT` otherwise).
//!
//! # Loading
//!
//! Checks run in this order, each failing with `ERR_FORMAT` naming the file: magic → version →
//! endianness marker → every declared length against the actual file size (before anything is
//! allocated, so a corrupt header cannot cause a huge allocation) → checksum → semantic
//! consistency (lengths agree with n_gallery, dim and the bank rows, the method's statistics are
//! present, indices are in range, statistics are finite, parameters are valid). Every allocation
//! is sized by a length already checked against the file size and made with `try_reserve`, so no
//! header can abort the process. Filesystem failures are `ERR_IO`.
//!
//! # Files
//!
//! [`load`] refuses anything but a regular file (FIFO, device, directory, socket) before reading a
//! byte and without blocking; [`save`] writes atomically and never replaces a device node, FIFO,
//! socket or directory; saving over a symbolic link writes to the link's target and keeps the link;
//! a process killed mid-save leaves no temporary file on Linux. See [`crate::fileio`] for the exact
//! rules.
//!
//! Code layout: [`format`] (encode/decode, pure) and [`file`] (paths and file descriptors).

pub mod file;
pub mod format;
pub mod store;

pub use file::{load, save};
pub use format::{checksum, from_bytes, offsets, read_from, sections, to_bytes, write_to, ENDIAN_MARKER, FORMAT_VERSION, HEADER_LEN, MAGIC, SECTION_COUNT, TRAILER_LEN};
