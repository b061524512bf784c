//! Every input the cargo-fuzz targets (`crate/fuzz`, `npm run fuzz`) ever failed on, replayed with the
//! same checks as the targets: `crate/tests/fuzz-regressions/<target>/<finding>`.
//!
//! - `npy`: a matrix whose length matches its shape, or `ERR_FORMAT`.
//! - `persist`: the first byte selects the mode (even: the trailing CRC-32 is recomputed before
//!   loading); a loaded file re-encodes to the same bytes, anything else is `ERR_FORMAT`.

use std::path::PathBuf;

use dbnorm::ErrorCode;

fn findings(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("README"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn persist_check(data: &[u8]) -> dbnorm::Result<()> {
    let Some((&mode, rest)) = data.split_first() else { return Ok(()) };
    let mut bytes = rest.to_vec();
    if mode & 1 == 0 && bytes.len() >= 4 {
        let n = bytes.len() - 4;
        let crc = dbnorm::persist::checksum(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }
    let n = dbnorm::persist::from_bytes(&bytes, "fuzz.dbn")?;
    assert_eq!(dbnorm::persist::to_bytes(&n), bytes, "a loaded file must re-encode to itself");
    Ok(())
}

#[test]
fn persist_findings_are_refused_or_canonical() {
    let all = findings("persist");
    assert!(!all.is_empty());
    for (name, data) in all {
        if let Err(e) = persist_check(&data) {
            assert_eq!(e.code, ErrorCode::Format, "{name}: {e}");
        }
    }
}

/// The finding itself, spelled out: a `none` normaliser whose (absent) gallery-bank statistics
/// descriptor holds a non-zero β is `ERR_FORMAT`, not a normaliser that re-encodes differently.
#[test]
fn stats_descriptor_without_stats_is_err_format() {
    let data = &findings("persist").into_iter().find(|(n, _)| n == "stats-descriptor-without-stats").unwrap().1;
    let e = persist_check(data).unwrap_err();
    assert_eq!(e.code, ErrorCode::Format);
    assert!(e.message.contains("galleryBank statistics descriptor is non-zero"), "{e}");
}

#[test]
fn npy_findings_give_a_consistent_matrix_or_err_format() {
    for (name, data) in findings("npy") {
        match dbnorm::npy::parse_npy_f32(&data, "fuzz.npy") {
            Ok((v, r, c)) => assert_eq!(v.len(), r * c, "{name}"),
            Err(e) => assert_eq!(e.code, ErrorCode::Format, "{name}: {e}"),
        }
    }
}
