//! Save-file loader: any byte string gives a normaliser or `ERR_FORMAT`; never a panic or abort.
//! The first byte picks a mode: odd → the remaining bytes are loaded as they are (the checksum
//! check guards everything); even → the trailing CRC-32 is recomputed first ("resealed"), so the
//! fuzzer reaches the structural and semantic checks behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 == 0 && bytes.len() >= 4 {
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }
    match dbnorm::persist::from_bytes(&bytes, "fuzz.dbn") {
        Ok(n) => {
            // A loaded normaliser re-encodes to the same bytes.
            assert_eq!(dbnorm::persist::to_bytes(&n), bytes);
        }
        Err(e) => assert_eq!(e.code, dbnorm::ErrorCode::Format, "{e}"),
    }
});
