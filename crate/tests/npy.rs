//! Integration tests of `dbnorm::npy`: round trips, `<f8` input, 1-D shapes, header versions, and
//! `ERR_FORMAT` / `ERR_IO` for every malformed case, from memory and from files.

use std::path::PathBuf;

use dbnorm::npy::{encode_npy_f32, parse_header, parse_npy_f32, read_npy_f32, write_npy_f32, NpyDtype};
use dbnorm::ErrorCode;

/// A fresh path in the system temp directory (unique per process and call site).
fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dbnorm-npy-test-{}-{tag}.npy", std::process::id()))
}

/// A `.npy` image with an arbitrary header dictionary, padded like NumPy, and raw data bytes.
fn build(version: (u8, u8), dict: &str, data: &[u8]) -> Vec<u8> {
    let prefix = if version.0 == 1 { 10 } else { 12 };
    let mut header = dict.to_string();
    let unpadded = prefix + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version.0, version.1]);
    if version.0 == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f4_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f8_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn dict(descr: &str, fortran: &str, shape: &str) -> String {
    format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
}

type Read = dbnorm::Result<(Vec<f32>, usize, usize)>;

/// Parses `bytes` from memory (named `mem.npy`) and from a temporary file: `(memory, file, file path)`.
fn read_both(bytes: &[u8], tag: &str) -> (Read, Read, String) {
    let path = temp_path(tag);
    std::fs::write(&path, bytes).unwrap();
    let from_file = read_npy_f32(&path);
    std::fs::remove_file(&path).unwrap();
    (parse_npy_f32(bytes, "mem.npy"), from_file, path.display().to_string())
}

#[test]
fn round_trip_file_and_memory() {
    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.25).collect();
    let path = temp_path("roundtrip");
    write_npy_f32(&path, &data, 3, 4).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(read_npy_f32(&path).unwrap(), (data.clone(), 3, 4));
    std::fs::remove_file(&path).unwrap();
    assert_eq!(bytes, encode_npy_f32(&data, 3, 4).unwrap());
    assert_eq!(parse_npy_f32(&bytes, "x.npy").unwrap(), (data.clone(), 3, 4));

    // NumPy's layout: header padded so the data start on a 64-byte boundary, ending in '\n'.
    let h = parse_header(&bytes, "x.npy").unwrap();
    assert_eq!((h.version, h.dtype, h.rows, h.cols), ((1, 0), NpyDtype::F4, 3, 4));
    assert_eq!(h.data_offset % 64, 0);
    assert_eq!(bytes[h.data_offset - 1], b'\n');
    assert_eq!(bytes.len(), h.data_offset + 48);
    let text = std::str::from_utf8(&bytes[10..h.data_offset]).unwrap();
    assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"), "{text}");

    // Special values survive bit for bit.
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MIN_POSITIVE, f32::MAX];
    let (back, r, c) = parse_npy_f32(&encode_npy_f32(&special, 2, 3).unwrap(), "s.npy").unwrap();
    assert_eq!((r, c), (2, 3));
    assert!(back.iter().zip(&special).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn large_files_stream_in_chunks() {
    // Over 1 MiB of data, so the file reader crosses chunk boundaries (both element sizes).
    let (rows, cols) = (700, 500);
    let data: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 10007) as f32 / 3.0).collect();
    let path = temp_path("large-f4");
    write_npy_f32(&path, &data, rows, cols).unwrap();
    assert_eq!(read_npy_f32(&path).unwrap(), (data.clone(), rows, cols));
    std::fs::remove_file(&path).unwrap();

    let wide: Vec<f64> = data.iter().map(|&x| x as f64).collect();
    let bytes = build((1, 0), &dict("<f8", "False", &format!("({rows}, {cols})")), &f8_bytes(&wide));
    let (mem, file, _) = read_both(&bytes, "large-f8");
    assert_eq!(mem.unwrap(), (data.clone(), rows, cols));
    assert_eq!(file.unwrap(), (data, rows, cols));
}

#[test]
fn f8_is_converted_to_f32() {
    let wide = [0.1f64, -1.0 / 3.0, 1e300, 2.5, -0.0, 7.0];
    let bytes = build((1, 0), &dict("<f8", "False", "(2, 3)"), &f8_bytes(&wide));
    let want: Vec<f32> = wide.iter().map(|&x| x as f32).collect();
    let (mem, file, _) = read_both(&bytes, "f8");
    assert_eq!(mem.unwrap(), (want.clone(), 2, 3));
    assert_eq!(file.unwrap(), (want.clone(), 2, 3));
    assert_eq!(want[2], f32::INFINITY);
    assert_eq!(parse_header(&bytes, "f8.npy").unwrap().dtype, NpyDtype::F8);
}

#[test]
fn shapes_versions_and_header_spellings() {
    let v = [1.0f32, 2.0, 3.0];
    // 1-D of length n reads as one row (1 × n).
    let one_d = build((1, 0), &dict("<f4", "False", "(3,)"), &f4_bytes(&v));
    assert_eq!(parse_npy_f32(&one_d, "a.npy").unwrap(), (v.to_vec(), 1, 3));
    // Versions 2.0 and 3.0 have a 4-byte header length.
    for version in [(2, 0), (3, 0)] {
        let b = build(version, &dict("<f4", "False", "(3, 1)"), &f4_bytes(&v));
        let (mem, file, _) = read_both(&b, &format!("v{}", version.0));
        assert_eq!(mem.unwrap(), (v.to_vec(), 3, 1));
        assert_eq!(file.unwrap(), (v.to_vec(), 3, 1));
        assert_eq!(parse_header(&b, "v.npy").unwrap().version, version);
    }
    // Empty matrices.
    let empty = build((1, 0), &dict("<f4", "False", "(0, 5)"), &[]);
    assert_eq!(parse_npy_f32(&empty, "e.npy").unwrap(), (vec![], 0, 5));
    let empty_1d = build((1, 0), &dict("<f4", "False", "(0,)"), &[]);
    assert_eq!(parse_npy_f32(&empty_1d, "e.npy").unwrap(), (vec![], 1, 0));
    // Key order, double quotes, no trailing comma, extra spaces, Python 2 long suffix.
    let odd = build((1, 0), "{ \"shape\" : ( 1 , 3L ) , \"fortran_order\": False,'descr':'<f4' }", &f4_bytes(&v));
    assert_eq!(parse_npy_f32(&odd, "o.npy").unwrap(), (v.to_vec(), 1, 3));
}

#[test]
fn malformed_inputs_are_format_errors_naming_the_file() {
    let v = f4_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let good = build((1, 0), &dict("<f4", "False", "(2, 2)"), &v);
    let mut bad_magic = good.clone();
    bad_magic[1] = b'X';
    let mut bad_version = good.clone();
    bad_version[6] = 4;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad magic", bad_magic, "bad magic"),
        ("not npy at all", b"hello, world\n".to_vec(), "bad magic"),
        ("empty file", vec![], "bad magic"),
        ("version 4.0", bad_version, "unsupported format version 4.0"),
        ("truncated length field", good[..9].to_vec(), "truncated header"),
        ("truncated header", good[..40].to_vec(), "truncated header"),
        ("int32", build((1, 0), &dict("<i4", "False", "(2, 2)"), &v), "unsupported dtype '<i4'"),
        ("complex64", build((1, 0), &dict("<c8", "False", "(2, 2)"), &v), "unsupported dtype '<c8'"),
        ("big-endian f4", build((1, 0), &dict(">f4", "False", "(2, 2)"), &v), "big-endian"),
        ("big-endian f8", build((1, 0), &dict(">f8", "False", "(2, 2)"), &v), "big-endian"),
        (
            "structured dtype",
            build((1, 0), "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", &v),
            "structured",
        ),
        ("fortran order", build((1, 0), &dict("<f4", "True", "(2, 2)"), &v), "fortran_order: True"),
        ("truncated data", build((1, 0), &dict("<f4", "False", "(2, 2)"), &v[..10]), "truncated data"),
        ("trailing data", build((1, 0), &dict("<f4", "False", "(1, 2)"), &v), "trailing bytes"),
        ("3-D", build((1, 0), &dict("<f4", "False", "(1, 2, 2)"), &v), "1-D or 2-D"),
        ("0-D", build((1, 0), &dict("<f4", "False", "()"), &v[..4]), "1-D or 2-D"),
        ("garbage bool", build((1, 0), &dict("<f4", "Flase", "(2, 2)"), &v), "malformed header"),
        ("garbage shape", build((1, 0), &dict("<f4", "False", "(2, x)"), &v), "malformed header"),
        ("negative dim", build((1, 0), &dict("<f4", "False", "(-2, 2)"), &v), "malformed header"),
        ("missing key", build((1, 0), "{'descr': '<f4', 'shape': (2, 2), }", &v), "missing 'fortran_order'"),
        (
            "unknown key",
            build((1, 0), &format!("{{'x': 1, {}", &dict("<f4", "False", "(2, 2)")[1..]), &v),
            "unexpected key",
        ),
        ("not a dict", build((1, 0), "['descr', '<f4']", &v), "malformed header"),
        ("text after dict", build((1, 0), &format!("{}xyz", dict("<f4", "False", "(2, 2)")), &v), "after '}'"),
        (
            "unterminated",
            build((1, 0), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)", &v),
            "malformed header",
        ),
        ("huge shape", build((1, 0), &dict("<f4", "False", "(99999999999999, 99999999999999)"), &v), "too large"),
    ];
    for (what, bytes, needle) in cases {
        let (mem, file, path) = read_both(&bytes, &what.replace(' ', "_"));
        let mem = mem.expect_err(what);
        assert_eq!(mem.code, ErrorCode::Format, "{what}: {}", mem.message);
        assert!(mem.message.starts_with("mem.npy: "), "{what}: {}", mem.message);
        assert!(mem.message.contains(needle), "{what}: {:?} lacks {needle:?}", mem.message);
        let file = file.expect_err(what);
        assert_eq!(file.code, ErrorCode::Format, "{what} (file): {}", file.message);
        assert!(file.message.contains(&path), "{what} (file): {} does not name {path}", file.message);
        assert!(file.message.contains(needle), "{what} (file): {:?} lacks {needle:?}", file.message);
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let path = temp_path("does-not-exist");
    let e = read_npy_f32(&path).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io);
    assert!(e.message.contains(&path.display().to_string()), "{}", e.message);
    let e = write_npy_f32(std::env::temp_dir().join("no-such-dir-dbnorm/x.npy"), &[1.0], 1, 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io);
    assert!(e.message.contains("no-such-dir-dbnorm"), "{}", e.message);
}

#[test]
fn write_checks_the_shape() {
    let e = write_npy_f32(temp_path("shape"), &[1.0, 2.0, 3.0], 2, 2).unwrap_err();
    assert_eq!(e.code, ErrorCode::Shape);
    assert!(!temp_path("shape").exists());
    assert_eq!(encode_npy_f32(&[1.0], 2, 2).unwrap_err().code, ErrorCode::Shape);
}

#[test]
fn header_alone_is_enough_for_parse_header() {
    // A memory-mapped caller may parse the header from a prefix and view the data in place.
    let data: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let bytes = encode_npy_f32(&data, 2, 3).unwrap();
    let h = parse_header(&bytes, "m.npy").unwrap();
    let prefix = &bytes[..h.data_offset];
    assert_eq!(parse_header(prefix, "m.npy").unwrap(), h);
    assert_eq!(h.data_len(), 24);
}
