//! File access shared by the `.npy` reader/writer ([`crate::npy`]) and the save file
//! ([`crate::persist`]): nothing a path points at can hang, crash or clobber.
//!
//! # Reading: [`open_regular`]
//!
//! The path is opened with `O_NONBLOCK | O_NOCTTY` (Unix), then `fstat` is called **on the open
//! descriptor**, and anything but a regular file (FIFO, character or block device, directory,
//! socket) is refused with `ERR_IO` before a single byte is read. Opening a FIFO for reading with
//! `O_NONBLOCK` returns at once (a blocking open waits for a writer forever, which used to park a
//! libuv worker per call), and because the type check is on the descriptor there is no window in
//! which the path can be swapped for something else. The returned length is the one `fstat` saw:
//! readers check every size declared in a header against it before allocating.
//!
//! # Writing: [`write_atomic`]
//!
//! 1. The target is classified with `lstat`: absent or a regular file → written; a **symbolic
//!    link** → followed: the data are written atomically to the link's final target (which must be
//!    an existing regular file; a dangling link is refused) and the link itself stays a link; any
//!    other type (device node, FIFO, socket, directory) → refused with `ERR_IO`, untouched.
//! 2. On Linux the data go to an **anonymous** file (`O_TMPFILE`) in the target's directory, are
//!    flushed and `fsync`ed, then given a temporary name with `linkat` and renamed over the target.
//!    A process killed while writing leaves nothing behind: the kernel frees an unnamed file when
//!    its descriptor closes. The only window in which a name exists is between `linkat` and
//!    `rename` (two system calls, no data written in between).
//! 3. Elsewhere, or when the filesystem has no `O_TMPFILE` support, a named temporary file
//!    `.<name>.<pid>.<n>.tmp` is created exclusively next to the target and removed on every error
//!    path, including a panic while writing (a drop guard). Only a kill during the write can leave
//!    that file behind.
//!
//! The directory is `fsync`ed after the rename (best effort) so the replacement is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, ErrorCode, Result};

fn io_err(name: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Io, format!("{name}: {what}: {e}"))
}

/// A human word for a non-regular file type, for error messages.
fn kind_of(ft: fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading, refusing anything but a regular file without blocking (see the module
/// docs). Returns the file and its length in bytes. `name` names the file in errors (`ERR_IO`).
pub fn open_regular(path: &Path, name: &str) -> Result<(File, u64)> {
    #[cfg(unix)]
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| io_err(name, "cannot open", e))?
    };
    #[cfg(not(unix))]
    let file = {
        // No non-blocking open here: check the type first (a FIFO cannot be swapped in on these
        // platforms without the same privileges that could replace the file's contents anyway).
        let m = fs::metadata(path).map_err(|e| io_err(name, "cannot open", e))?;
        if !m.is_file() {
            return Err(Error::new(ErrorCode::Io, format!("{name}: cannot read: {} is not a regular file", kind_of(m.file_type()))));
        }
        File::open(path).map_err(|e| io_err(name, "cannot open", e))?
    };
    let meta = file.metadata().map_err(|e| io_err(name, "cannot read", e))?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorCode::Io,
            format!("{name}: cannot read: it is {}, not a regular file", kind_of(meta.file_type())),
        ));
    }
    #[cfg(unix)]
    {
        // Back to blocking reads (it makes no difference for a regular file; this keeps the
        // descriptor ordinary for anything the caller does with it).
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: `fd` is an open descriptor owned by `file` for the duration of both calls.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
    Ok((file, meta.len()))
}

/// Resolves where a save to `path` writes (see the module docs, step 1). `ERR_IO` for a target that
/// must not be replaced.
pub fn resolve_target(path: &Path, name: &str) -> Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(e) => Err(io_err(name, "cannot write", e)),
        Ok(m) if m.is_file() => Ok(path.to_path_buf()),
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::canonicalize(path)
                .map_err(|e| io_err(name, "cannot write through the symbolic link (its target cannot be resolved)", e))?;
            let tm = fs::metadata(&target).map_err(|e| io_err(name, "cannot write through the symbolic link", e))?;
            if !tm.is_file() {
                return Err(Error::new(
                    ErrorCode::Io,
                    format!(
                        "{name}: cannot write: the symbolic link points at {} ({}), which is not a regular file; refusing to replace it",
                        target.display(),
                        kind_of(tm.file_type())
                    ),
                ));
            }
            Ok(target)
        }
        Ok(m) => Err(Error::new(
            ErrorCode::Io,
            format!("{name}: cannot write: it is {}, not a regular file; refusing to replace it", kind_of(m.file_type())),
        )),
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name(dir: &Path, file_name: &std::ffi::OsStr) -> PathBuf {
    dir.join(format!(
        ".{}.{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes a named temporary file when dropped, unless disarmed (covers `?` returns and panics).
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Writes a file atomically at `path` (see the module docs): `write` is given a buffered writer and
/// may be called more than once (a fallback restarts from scratch). `ERR_IO` on any filesystem
/// failure, in which case the target is untouched and no temporary file remains.
pub fn write_atomic(path: &Path, write: impl Fn(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let name = path.display().to_string();
    let target = resolve_target(path, &name)?;
    let file_name = target
        .file_name()
        .ok_or_else(|| Error::new(ErrorCode::Io, format!("{name}: cannot write: not a file path")))?
        .to_owned();
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    #[cfg(target_os = "linux")]
    if let Some(done) = linux::write_anonymous(&dir, &file_name, &target, &name, &write) {
        return done;
    }
    write_named(&dir, &file_name, &target, &name, &write)
}

/// Writes `file` through a 1 MiB buffer, flushes and syncs it.
fn fill_and_sync(file: File, name: &str, write: &dyn Fn(&mut dyn Write) -> io::Result<()>) -> Result<File> {
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write(&mut w).map_err(|e| io_err(name, "cannot write", e))?;
    let file = w.into_inner().map_err(|e| io_err(name, "cannot write", e.into_error()))?;
    file.sync_all().map_err(|e| io_err(name, "cannot sync", e))?;
    Ok(file)
}

fn rename_into_place(tmp: &Path, target: &Path, dir: &Path, name: &str) -> Result<()> {
    fs::rename(tmp, target).map_err(|e| io_err(name, "cannot replace", e))?;
    // Make the rename durable (best effort: not every platform can sync a directory).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_named(
    dir: &Path,
    file_name: &std::ffi::OsStr,
    target: &Path,
    name: &str,
    write: &dyn Fn(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let tmp = temp_name(dir, file_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(name, "cannot create a temporary file next to it", e))?;
    let mut guard = TempGuard(Some(tmp.clone()));
    drop(fill_and_sync(file, name, write)?);
    rename_into_place(&tmp, target, dir, name)?;
    guard.0 = None;
    Ok(())
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;

    /// The `O_TMPFILE` path. `None` when the filesystem cannot create anonymous files (the caller
    /// falls back to a named temporary file); otherwise the outcome.
    pub(super) fn write_anonymous(
        dir: &Path,
        file_name: &std::ffi::OsStr,
        target: &Path,
        name: &str,
        write: &dyn Fn(&mut dyn Write) -> io::Result<()>,
    ) -> Option<Result<()>> {
        let file = match OpenOptions::new().write(true).mode(0o666).custom_flags(libc::O_TMPFILE).open(dir) {
            Ok(f) => f,
            // Not supported by this kernel or filesystem: fall back.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)) => {
                return None
            }
            Err(e) => return Some(Err(io_err(name, "cannot create a temporary file next to it", e))),
        };
        let file = match fill_and_sync(file, name, write) {
            Ok(f) => f,
            Err(e) => return Some(Err(e)),
        };
        let tmp = temp_name(dir, file_name);
        if let Err(e) = link_fd(&file, &tmp) {
            // No /proc and no CAP_DAC_READ_SEARCH: write again through a named file.
            let _ = e;
            return None;
        }
        drop(file);
        let mut guard = TempGuard(Some(tmp.clone()));
        let out = rename_into_place(&tmp, target, dir, name);
        if out.is_ok() {
            guard.0 = None;
        }
        Some(out)
    }

    /// Gives the anonymous file `file` the name `to` (`linkat` through `/proc/self/fd`, else with
    /// `AT_EMPTY_PATH`, which needs `CAP_DAC_READ_SEARCH`).
    fn link_fd(file: &File, to: &Path) -> io::Result<()> {
        let to_c = CString::new(to.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fd = file.as_raw_fd();
        let proc_path = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a formatted path");
        // SAFETY: both strings are NUL-terminated and live across the call; `fd` is open.
        let r = unsafe { libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), libc::AT_FDCWD, to_c.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
        if r == 0 {
            return Ok(());
        }
        let empty = CString::new("").expect("empty string");
        // SAFETY: as above.
        let r = unsafe { libc::linkat(fd, empty.as_ptr(), libc::AT_FDCWD, to_c.as_ptr(), libc::AT_EMPTY_PATH) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
