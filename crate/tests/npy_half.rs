//! `<f2` (.npy half precision) input: exact widening to f32, from bytes and from a file, and coded errors.

use dbnorm::npy::{parse_header, parse_npy_f32, read_npy_f32, NpyDtype};
use dbnorm::ErrorCode;

fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out.extend(data);
    out
}

#[test]
fn f2_is_widened_exactly() {
    // 1, −2, 0.5, 65504 (largest half), 2^−24 (smallest subnormal), −0
    let bits: [u16; 6] = [0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x8000];
    let want = [1.0f32, -2.0, 0.5, 65504.0, 2f32.powi(-24), -0.0];
    let data: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    let bytes = npy("<f2", "(2, 3)", &data);
    assert_eq!(parse_header(&bytes, "h.npy").unwrap().dtype, NpyDtype::F2);
    let (v, rows, cols) = parse_npy_f32(&bytes, "h.npy").unwrap();
    assert_eq!((rows, cols), (2, 3));
    assert_eq!(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    let dir = std::env::temp_dir().join(format!("dbnorm-npy-half-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.npy");
    std::fs::write(&path, &bytes).unwrap();
    let (f, r, c) = read_npy_f32(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((f, r, c), (v, rows, cols));
}

#[test]
fn truncated_or_big_endian_f2_is_a_format_error() {
    let data = [0u8; 11]; // 5.5 halves for a 2 × 3 shape
    let e = parse_npy_f32(&npy("<f2", "(2, 3)", &data), "t.npy").unwrap_err();
    assert_eq!(e.code, ErrorCode::Format);
    assert!(e.message.contains("t.npy"), "{}", e.message);
    let e = parse_npy_f32(&npy(">f2", "(1, 2)", &[0; 4]), "b.npy").unwrap_err();
    assert_eq!(e.code, ErrorCode::Format);
    assert!(e.message.contains("big-endian"), "{}", e.message);
}
