//! Saving to and loading from paths: the file-descriptor side of persistence. Encoding and decoding
//! are [`super::format`]'s; the rules for what a path may point at are [`crate::fileio`]'s.

use std::io;
use std::path::Path;

use super::format::{read_from, write_to};
use crate::error::Result;
use crate::fileio::{open_regular, write_atomic};
use crate::normalizer::Normalizer;

/// Saves `n` to `path` atomically (see [`crate::fileio::write_atomic`]): the data are written to a
/// temporary file in the target's directory (anonymous on Linux), synced, and renamed over the
/// target. A symbolic link is followed (its target is replaced, the link stays); a device node,
/// FIFO, socket or directory is refused. `ERR_IO` on any filesystem failure, in which case the
/// target is untouched and no temporary file remains.
pub fn save(n: &Normalizer, path: impl AsRef<Path>) -> Result<()> {
    write_atomic(path.as_ref(), |w: &mut dyn io::Write| write_to(n, w))
}

/// Loads a normaliser saved by [`save`] (format version 3, or a version-1 file). `ERR_IO` if the file cannot be opened or read or is not a
/// regular file (refused without blocking, e.g. on a FIFO), `ERR_FORMAT` (naming the file and the
/// problem) if it is not a valid file.
pub fn load(path: impl AsRef<Path>) -> Result<Normalizer> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let (file, len) = open_regular(path, &name)?;
    let mut r = io::BufReader::with_capacity(1 << 16, file);
    read_from(&mut r, len, &name)
}
