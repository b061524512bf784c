//! Saving and loading a fitted [`Normalizer`]: a versioned, checksummed, little-endian binary file.
//!
//! # Layout (format version 1)
//!
//! All integers and floats are little-endian; `f64` parameters are stored bit-exactly.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `89 44 42 4E 4F 52 4D 0A` (`\x89DBNORM\n`) |
//! | 8 | 4 | format version `u32` = 1 |
//! | 12 | 4 | endianness marker `u32` 0x0A0B0C0D (on disk `0D 0C 0B 0A`) |
//! | 16 | 1 | method (0 none, 1 is, 2 dis, 3 dual-is, 4 dual-dis, 5 csls, 6 nnn) |
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
//! | 168 | 4 | section count `u32` = 11 |
//! | 172 | 4 | section presence bitmask `u32` (bit i: section i present; bits 0–2 always set) |
//! | 176 | 88 | section table: 11 × byte length `u64` (unpadded; 0 for an absent section) |
//! | 264 | … | body: the sections in table order, each zero-padded to a multiple of 8 bytes |
//! | end − 4 | 4 | CRC-32 (IEEE) `u32` of every preceding byte (header and body) |
//!
//! Sections: 0 prepared gallery `f32` (n_gallery × dim; unit rows under cosine), 1 prepared query
//! bank `f32`, 2 prepared gallery bank `f32` (both kept for `addGallery`), then for the query bank
//! (3–6) and the gallery bank (7–10): `lse` `f64` (n_gallery), `top_mean` `f64` (n_gallery),
//! per-bank-row top-k gallery indices `u32` and scores `f32` (bank_rows × row_k, best first).
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
