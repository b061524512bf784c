//! What a path can point at: `.npy` and save-file reading and writing never crash, hang or clobber.
//!
//! - Headers declaring sizes beyond the file are `ERR_FORMAT` before anything is allocated (the
//!   122-byte `.npy` of shape (200000, 100000) used to abort the process).
//! - FIFOs, devices, directories and sockets are refused with `ERR_IO` without blocking (reading a
//!   FIFO used to block forever), and saving never replaces them.
//! - Saving over a symbolic link writes to the link's target and keeps the link; a dangling link is
//!   refused.
//! - A failed, panicking or killed save leaves no temporary file.
//!
//! Hang detection: calls that could block run on a helper thread; the test fails (instead of
//! hanging the suite) if one has not returned after 60 s — a hang detector, not a timing target.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use dbnorm::control::Control;
use dbnorm::fileio::write_atomic;
use dbnorm::kernels::similarity::Metric;
use dbnorm::methods::{Method, Params};
use dbnorm::normalizer::Normalizer;
use dbnorm::npy::{read_npy_f32, write_npy_f32};
use dbnorm::{persist, ErrorCode, MatRef};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("dbnorm-files-test-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn normaliser() -> Normalizer {
    let g: Vec<f32> = (0..40 * 8).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let p = Params { beta_query: 20.0, beta_gallery: 1.0, k: 3, csls_k: 5, nnn_k: 5, nnn_alpha: 0.5, ..Params::default() };
    Normalizer::fit_embeddings(Method::None, p, Metric::Cosine, MatRef::new(&g, 40, 8, "gallery").unwrap(), None, None, &Control::none())
        .unwrap()
}

/// Runs `f` on a helper thread; panics if it has not returned after 60 s (it would hang forever).
fn no_hang<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what}: blocked (no result after 60 s)"))
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs::symlink_metadata(p).map(|m| m.file_type().is_fifo()).unwrap_or(false)
}

/// A 2-D `.npy` v1 image declaring `shape` with `data` bytes after the header.
fn npy(shape: &str, data: &[u8], version: u8) -> Vec<u8> {
    let prefix = if version == 1 { 10 } else { 12 };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = prefix + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_header_sizes_are_checked_against_the_file_before_allocating() {
    let dir = TempDir::new("npy-huge");
    // The reproduction: a small file declaring 200000 × 100000 floats (80 GB).
    let bytes = npy("(200000, 100000)", &[0u8; 58], 1);
    assert!(bytes.len() < 200);
    let p = dir.path("huge.npy");
    fs::write(&p, &bytes).unwrap();
    let e = read_npy_f32(&p).unwrap_err();
    assert_eq!(e.code, ErrorCode::Format, "{e}");
    assert!(e.message.contains("truncated data"), "{e}");
    let e = dbnorm::npy::parse_npy_f32(&bytes, "mem").unwrap_err();
    assert_eq!(e.code, ErrorCode::Format, "{e}");
    // Shapes whose byte count overflows, and one whose element count is huge with a valid length.
    for shape in ["(18446744073709551615, 2)", "(4611686018427387904, 4)", "(0, 18446744073709551615)"] {
        fs::write(&p, npy(shape, &[0u8; 16], 1)).unwrap();
        let e = read_npy_f32(&p).unwrap_err();
        assert_eq!(e.code, ErrorCode::Format, "{shape}: {e}");
    }
    // A v2 header length field of 4 GiB: refused before a header buffer is sized from it.
    let mut v2 = npy("(1, 1)", &[0u8; 4], 2);
    v2[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&p, &v2).unwrap();
    let e = read_npy_f32(&p).unwrap_err();
    assert_eq!(e.code, ErrorCode::Format, "{e}");
    assert!(dbnorm::npy::parse_header(&v2, "mem").is_err());
    // A header that claims more bytes than the file has (but under the header cap).
    v2[8..12].copy_from_slice(&60_000u32.to_le_bytes());
    fs::write(&p, &v2).unwrap();
    let e = read_npy_f32(&p).unwrap_err();
    assert_eq!(e.code, ErrorCode::Format, "{e}");
    assert!(e.message.contains("truncated header"), "{e}");
    // Still fine: an exact file.
    fs::write(&p, npy("(2, 1)", &[0, 0, 128, 63, 0, 0, 0, 64], 1)).unwrap();
    assert_eq!(read_npy_f32(&p).unwrap(), (vec![1.0, 2.0], 2, 1));
}

#[test]
fn fifos_are_refused_without_blocking() {
    let dir = TempDir::new("fifo");
    let f = dir.path("pipe");
    mkfifo(&f);
    let p = f.clone();
    let e = no_hang("read_npy_f32(FIFO)", move || read_npy_f32(&p)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert!(e.message.contains("FIFO") && e.message.contains("not a regular file"), "{e}");
    let p = f.clone();
    let e = no_hang("persist::load(FIFO)", move || persist::load(&p).map(|_| ())).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    // Many at once (more than libuv's 4 workers would hold): each returns.
    let handles: Vec<_> = (0..8).map(|_| {
        let p = f.clone();
        std::thread::spawn(move || persist::load(&p).map(|_| ()).unwrap_err().code)
    }).collect();
    let codes = no_hang("8 concurrent loads", move || handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>());
    assert!(codes.iter().all(|&c| c == ErrorCode::Io));
    // Writing to a FIFO (which would block until a reader appears) is refused; the FIFO stays.
    let p = f.clone();
    let e = no_hang("save(FIFO)", move || persist::save(&normaliser(), &p)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    let p = f.clone();
    let e = no_hang("write_npy(FIFO)", move || write_npy_f32(&p, &[1.0], 1, 1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert!(is_fifo(&f));
    assert_eq!(dir.entries(), vec!["pipe".to_string()]);
}

#[test]
fn directories_sockets_and_devices_are_refused() {
    let dir = TempDir::new("special");
    fs::create_dir(dir.path("sub")).unwrap();
    let sock = dir.path("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for p in [dir.path("sub"), sock.clone(), PathBuf::from("/dev/null"), PathBuf::from("/dev/zero")] {
        let q = p.clone();
        let e = no_hang("read_npy_f32", move || read_npy_f32(&q)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Io, "{}: {e}", p.display());
        let q = p.clone();
        let e = no_hang("persist::load", move || persist::load(&q).map(|_| ())).unwrap_err();
        assert_eq!(e.code, ErrorCode::Io, "{}: {e}", p.display());
    }
    let n = normaliser();
    for p in [dir.path("sub"), sock.clone()] {
        let e = persist::save(&n, &p).unwrap_err();
        assert_eq!(e.code, ErrorCode::Io, "{}: {e}", p.display());
        assert!(e.message.contains("refusing to replace"), "{e}");
        let e = write_npy_f32(&p, &[1.0], 1, 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::Io, "{}: {e}", p.display());
    }
    assert!(dir.path("sub").is_dir());
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    assert_eq!(dir.entries(), vec!["sock".to_string(), "sub".to_string()]);
}

/// A device node: created in the temp directory with `mknod` when running as root (a copy of
/// `/dev/null`'s device numbers), so a regression replaces a disposable node, never `/dev/null`.
#[test]
fn device_nodes_are_never_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let dir = TempDir::new("device");
    let dev = dir.path("null");
    let c = std::ffi::CString::new(dev.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } == 0;
    if !made {
        // Not root: no device node can be created; the type check is the same code as for FIFOs.
        println!("not root: device-node case covered by the FIFO and socket cases only");
        return;
    }
    let e = persist::save(&normaliser(), &dev).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    let e = write_npy_f32(&dev, &[1.0], 1, 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    // Through a symbolic link, too.
    std::os::unix::fs::symlink(&dev, dir.path("link")).unwrap();
    let e = persist::save(&normaliser(), dir.path("link")).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert!(fs::symlink_metadata(&dev).unwrap().file_type().is_char_device());
    assert_eq!(dir.entries(), vec!["link".to_string(), "null".to_string()]);
}

#[test]
fn saving_over_a_symlink_writes_its_target_and_keeps_the_link() {
    let dir = TempDir::new("symlink");
    fs::create_dir(dir.path("real")).unwrap();
    let target = dir.path("real/model.dbn");
    fs::write(&target, b"old contents").unwrap();
    let link = dir.path("model.dbn");
    std::os::unix::fs::symlink("real/model.dbn", &link).unwrap();
    let n = normaliser();
    persist::save(&n, &link).unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert_eq!(fs::read(&target).unwrap(), persist::to_bytes(&n), "the target holds the new file");
    assert_eq!(persist::load(&link).unwrap().n_gallery, 40);
    // A chain of links resolves to the final target.
    std::os::unix::fs::symlink(&link, dir.path("chain")).unwrap();
    write_npy_f32(dir.path("chain"), &[3.0, 4.0], 1, 2).unwrap();
    assert_eq!(read_npy_f32(&target).unwrap(), (vec![3.0, 4.0], 1, 2));
    assert!(fs::symlink_metadata(dir.path("chain")).unwrap().file_type().is_symlink());
    // A dangling link is refused and stays.
    std::os::unix::fs::symlink("nowhere/x.dbn", dir.path("dangling")).unwrap();
    let e = persist::save(&n, dir.path("dangling")).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert!(fs::symlink_metadata(dir.path("dangling")).unwrap().file_type().is_symlink());
    // A link to a directory is refused.
    std::os::unix::fs::symlink("real", dir.path("dirlink")).unwrap();
    let e = persist::save(&n, dir.path("dirlink")).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert_eq!(dir.entries(), ["chain", "dangling", "dirlink", "model.dbn", "real"].map(String::from).to_vec());
    let mut real: Vec<_> = fs::read_dir(dir.path("real")).unwrap().map(|e| e.unwrap().file_name()).collect();
    real.sort();
    assert_eq!(real, vec![std::ffi::OsString::from("model.dbn")]);
}

#[test]
fn failed_and_panicking_writes_leave_nothing_behind() {
    let dir = TempDir::new("fail");
    let p = dir.path("out.bin");
    fs::write(&p, b"keep me").unwrap();
    let e = write_atomic(&p, |w: &mut dyn Write| {
        w.write_all(&[7u8; 3 << 20])?;
        Err(io::Error::other("disk on fire"))
    })
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Io);
    assert!(e.message.contains("disk on fire"), "{e}");
    let r = std::panic::catch_unwind(|| {
        let _ = write_atomic(&p, |w: &mut dyn Write| {
            w.write_all(&[7u8; 3 << 20])?;
            panic!("boom")
        });
    });
    assert!(r.is_err());
    assert_eq!(fs::read(&p).unwrap(), b"keep me");
    assert_eq!(dir.entries(), vec!["out.bin".to_string()]);
    // An empty path and a path ending in `..` are `ERR_IO`, not a panic.
    assert_eq!(persist::save(&normaliser(), "").unwrap_err().code, ErrorCode::Io);
    assert_eq!(write_npy_f32(dir.path(".."), &[1.0], 1, 1).unwrap_err().code, ErrorCode::Io);
}

const CHILD_ENV: &str = "DBNORM_FILES_TEST_CHILD_DIR";

/// Child half of [`a_killed_save_leaves_no_temporary_file`]: starts a save, writes 8 MiB, tells the
/// parent (a marker file) and then waits to be killed inside the write.
#[test]
fn child_process_for_kill_test() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let _ = write_atomic(&dir.join("model.dbn"), |w: &mut dyn Write| {
        w.write_all(&vec![1u8; 8 << 20])?;
        w.flush()?;
        fs::write(dir.join("started"), b"1")?;
        loop {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

#[test]
fn a_killed_save_leaves_no_temporary_file() {
    let dir = TempDir::new("kill");
    fs::write(dir.path("model.dbn"), b"previous").unwrap();
    for trial in 0..3 {
        let _ = fs::remove_file(dir.path("started"));
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_process_for_kill_test", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir.0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait (bounded) until the child is inside the write.
        let mut waited = 0;
        while !dir.path("started").exists() {
            std::thread::sleep(Duration::from_millis(20));
            waited += 1;
            assert!(waited < 3000, "trial {trial}: the child never started writing");
        }
        child.kill().unwrap(); // SIGKILL: no destructor or handler runs
        child.wait().unwrap();
        assert_eq!(dir.entries(), vec!["model.dbn".to_string(), "started".to_string()], "trial {trial}");
        assert_eq!(fs::read(dir.path("model.dbn")).unwrap(), b"previous", "trial {trial}");
    }
}
