//! `.npy` parser: any byte string gives a matrix whose size matches its header, or a coded error;
//! never a panic, an abort or an allocation sized by the header alone.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = dbnorm::npy::parse_header(data, "fuzz.npy") {
        assert!(h.data_offset <= data.len());
    }
    match dbnorm::npy::parse_npy_f32(data, "fuzz.npy") {
        Ok((v, rows, cols)) => assert_eq!(v.len(), rows * cols),
        Err(e) => assert!(matches!(e.code, dbnorm::ErrorCode::Format | dbnorm::ErrorCode::Io), "{e}"),
    }
});
