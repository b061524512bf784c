//! Integration tests of `dbnorm::persist`: bit-exact round trips for every method in both modes, and
//! `ERR_FORMAT` / `ERR_IO` (never a panic, never a normaliser) for truncated, corrupted,
//! wrong-version, wrong-endianness, garbage, inconsistent and missing files. Saving is atomic.

use std::fs;
use std::path::{Path, PathBuf};

use dbnorm::control::Control;
use dbnorm::kernels::similarity::Metric;
use dbnorm::methods::stats::BankStats;
use dbnorm::methods::{Method, Params};
use dbnorm::normalizer::{Mode, Normalizer};
use dbnorm::persist::{self, checksum, offsets, sections, FORMAT_VERSION, HEADER_LEN, SECTION_COUNT, TRAILER_LEN};
use dbnorm::{Error, ErrorCode, MatRef};

// ---------------------------------------------------------------------------------------------------
// fixtures

/// A fresh, empty directory in the system temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("dbnorm-persist-test-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic uniform values in [-1, 1).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

const NG: usize = 300; // crosses a 256-item gallery tile
const DIM: usize = 12;
const MQ: usize = 150;
const MG: usize = 90;
const NQ: usize = 40;

struct Fixture {
    label: String,
    norm: Normalizer,
    /// Query input: embeddings (NQ × DIM) or similarities (NQ × NG).
    input: Vec<f32>,
    cols: usize,
}

#[allow(clippy::needless_update)] // parameters added to the table later take their defaults
fn params(cosine: bool) -> Params {
    // Unused parameters carry odd values on purpose: they must round-trip bit for bit too.
    Params {
        beta_query: if cosine { 20.0 } else { 2.5 },
        beta_gallery: if cosine { 1.0 } else { 0.7 + f64::EPSILON },
        k: 3,
        csls_k: 5,
        nnn_k: 7,
        nnn_alpha: 0.6,
        ..Params::default()
    }
}

fn fixtures() -> Vec<Fixture> {
    let ctl = Control::none();
    let gallery = random(NG * DIM, 1);
    let qb = random(MQ * DIM, 2);
    let gb = random(MG * DIM, 3);
    let queries = random(NQ * DIM, 4);
    let qb_sims: Vec<f32> = random(MQ * NG, 5).iter().map(|v| v * 30.0).collect();
    let gb_sims: Vec<f32> = random(MG * NG, 6).iter().map(|v| v * 30.0).collect();
    let q_sims: Vec<f32> = random(NQ * NG, 7).iter().map(|v| v * 30.0).collect();
    let qg_sims: Vec<f32> = random(MQ * MG, 8).iter().map(|v| v * 30.0).collect();
    let mut out = Vec::new();
    for method in Method::ALL {
        for metric in [Metric::Cosine, Metric::Dot] {
            let norm = Normalizer::fit_embeddings(
                method,
                params(metric == Metric::Cosine),
                metric,
                MatRef::new(&gallery, NG, DIM, "gallery").unwrap(),
                Some(MatRef::new(&qb, MQ, DIM, "queryBank").unwrap()),
                Some(MatRef::new(&gb, MG, DIM, "galleryBank").unwrap()),
                &ctl,
            )
            .unwrap();
            out.push(Fixture { label: format!("{}/embeddings-{}", method.as_str(), metric.as_str()), norm, input: queries.clone(), cols: DIM });
        }
        if !method.info().embeddings_only {
            let cross = method.info().cross_bank_sims.then(|| MatRef::new(&qg_sims, MQ, MG, "queryBankGalleryBankSims").unwrap());
            let norm = Normalizer::fit_similarities_with(
                method,
                params(false),
                Some(MatRef::new(&qb_sims, MQ, NG, "queryBankSims").unwrap()),
                Some(MatRef::new(&gb_sims, MG, NG, "galleryBankSims").unwrap()),
                cross,
                None,
                &ctl,
            )
            .unwrap();
            out.push(Fixture { label: format!("{}/similarities", method.as_str()), norm, input: q_sims.clone(), cols: NG });
        }
    }
    // `none` in similarity mode without any matrix: gallery size 0, taken from the input.
    let norm = Normalizer::fit_similarities(Method::None, params(false), None, None, None, &ctl).unwrap();
    out.push(Fixture { label: "none/similarities-unsized".into(), norm, input: q_sims.clone(), cols: NG });
    out
}

/// The fixture with every section present (DualDIS, embeddings, cosine).
fn full_fixture() -> Fixture {
    fixtures().into_iter().find(|f| f.label == "dual-dis/embeddings-cosine").unwrap()
}

// ---------------------------------------------------------------------------------------------------
// comparison

fn bits32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn bits64(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn same_stats(a: &Option<BankStats>, b: &Option<BankStats>, what: &str) {
    match (a, b) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert_eq!(a.bank_rows, b.bank_rows, "{what}: bank_rows");
            assert_eq!(a.lse.as_deref().map(bits64), b.lse.as_deref().map(bits64), "{what}: lse");
            assert_eq!(a.lse_beta.to_bits(), b.lse_beta.to_bits(), "{what}: lse_beta");
            assert_eq!(a.top_k, b.top_k, "{what}: top_k");
            assert_eq!(a.top_mean.as_deref().map(bits64), b.top_mean.as_deref().map(bits64), "{what}: top_mean");
            assert_eq!(a.row_k, b.row_k, "{what}: row_k");
            assert_eq!(a.row_topk_idx, b.row_topk_idx, "{what}: row_topk_idx");
            assert_eq!(a.row_topk_score.as_deref().map(bits32), b.row_topk_score.as_deref().map(bits32), "{what}: row_topk_score");
        }
        _ => panic!("{what}: presence differs"),
    }
}

/// Every field, the compiled scorer, and the outputs of `scores` and `search`, bit for bit.
fn assert_bit_identical(a: &Normalizer, b: &Normalizer, f: &Fixture) {
    let l = &f.label;
    assert_eq!(a.method, b.method, "{l}: method");
    let (pa, pb) = (a.params, b.params);
    assert_eq!(
        (pa.beta_query.to_bits(), pa.beta_gallery.to_bits(), pa.k, pa.csls_k, pa.nnn_k, pa.nnn_alpha.to_bits()),
        (pb.beta_query.to_bits(), pb.beta_gallery.to_bits(), pb.k, pb.csls_k, pb.nnn_k, pb.nnn_alpha.to_bits()),
        "{l}: params"
    );
    assert_eq!(a.mode, b.mode, "{l}: mode");
    assert_eq!(a.n_gallery, b.n_gallery, "{l}: n_gallery");
    assert_eq!(bits32(&a.gallery), bits32(&b.gallery), "{l}: gallery");
    assert_eq!(bits32(&a.query_bank), bits32(&b.query_bank), "{l}: query_bank");
    assert_eq!(bits32(&a.gallery_bank), bits32(&b.gallery_bank), "{l}: gallery_bank");
    same_stats(&a.query_stats, &b.query_stats, &format!("{l}: query_stats"));
    same_stats(&a.gallery_stats, &b.gallery_stats, &format!("{l}: gallery_stats"));
    let (sa, sb) = (a.scorer(), b.scorer());
    assert_eq!(sa.scale.to_bits(), sb.scale.to_bits(), "{l}: scorer scale");
    assert_eq!(sa.bias.iter().map(|v| bits64(v)).collect::<Vec<_>>(), sb.bias.iter().map(|v| bits64(v)).collect::<Vec<_>>(), "{l}: scorer bias");
    assert_eq!(sa.gate, sb.gate, "{l}: scorer gate");
    assert_eq!((sa.offset_k, sa.n_gallery), (sb.offset_k, sb.n_gallery), "{l}: scorer offset_k / n_gallery");

    let input = MatRef::new(&f.input, NQ, f.cols, "input").unwrap();
    let (ya, ca) = a.scores(input).unwrap();
    let (yb, cb) = b.scores(input).unwrap();
    assert_eq!(ca, cb, "{l}: scores cols");
    assert_eq!(bits32(&ya), bits32(&yb), "{l}: scores");
    for k in [1, 5, NG] {
        let (ia, xa, ka) = a.search(input, k, &Control::none()).unwrap();
        let (ib, xb, kb) = b.search(input, k, &Control::none()).unwrap();
        assert_eq!(ka, kb, "{l}: search k");
        assert_eq!(ia, ib, "{l}: search indices (k = {k})");
        assert_eq!(bits32(&xa), bits32(&xb), "{l}: search scores (k = {k})");
    }
}

fn format_err(r: dbnorm::Result<Normalizer>, what: &str) -> Error {
    match r {
        Ok(_) => panic!("{what}: loaded a normaliser from a bad file"),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::Format, "{what}: {e}");
            e
        }
    }
}

fn catch<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe, what: &str) -> T {
    std::panic::catch_unwind(f).unwrap_or_else(|_| panic!("{what}: panicked"))
}

/// Recomputes the trailing checksum after a deliberate edit (to reach the semantic checks).
fn reseal(bytes: &mut [u8]) {
    let n = bytes.len() - TRAILER_LEN;
    let c = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&c.to_le_bytes());
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Byte offset of section `i` in the file (sections are padded to multiples of 8).
fn section_offset(b: &[u8], i: usize) -> usize {
    let mut off = HEADER_LEN;
    for j in 0..i {
        off += (u64_at(b, offsets::SECTION_LENGTHS + 8 * j) as usize).next_multiple_of(8);
    }
    off
}

// ---------------------------------------------------------------------------------------------------
// round trips

#[test]
fn round_trip_is_bit_exact_for_every_method_and_mode() {
    let dir = TempDir::new("roundtrip");
    let fx = fixtures();
    let sims_methods = Method::ALL.iter().filter(|m| !m.info().embeddings_only).count();
    assert_eq!(fx.len(), Method::ALL.len() * 2 + sims_methods + 1);
    for f in &fx {
        let path = dir.path(&format!("{}.dbn", f.label.replace('/', "_")));
        persist::save(&f.norm, &path).unwrap();
        let loaded = persist::load(&path).unwrap_or_else(|e| panic!("{}: {e}", f.label));
        assert_bit_identical(&f.norm, &loaded, f);
        // The in-memory image is the file, and saving is deterministic.
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes, persist::to_bytes(&f.norm), "{}: file vs to_bytes", f.label);
        assert_eq!(persist::to_bytes(&loaded), bytes, "{}: re-saving a loaded normaliser", f.label);
        assert_bit_identical(&f.norm, &persist::from_bytes(&bytes, "mem").unwrap(), f);
    }
    // Only the saved files remain: no temporary files left behind.
    assert!(dir.entries().iter().all(|e| e.ends_with(".dbn") && !e.starts_with('.')), "{:?}", dir.entries());
}

#[test]
fn header_fields_are_as_documented() {
    let f = full_fixture();
    let b = persist::to_bytes(&f.norm);
    assert_eq!(&b[..8], b"\x89DBNORM\n");
    assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), FORMAT_VERSION);
    assert_eq!(&b[12..16], &[0x0D, 0x0C, 0x0B, 0x0A]);
    assert_eq!(b[offsets::METHOD], 4); // dual-dis
    assert_eq!((b[offsets::MODE], b[offsets::METRIC], b[offsets::FLAGS]), (1, 1, 3));
    assert_eq!(f64::from_le_bytes(b[offsets::BETA_QUERY..offsets::BETA_QUERY + 8].try_into().unwrap()), 20.0);
    assert_eq!(u64_at(&b, offsets::K), 3);
    assert_eq!(u64_at(&b, offsets::N_GALLERY), NG as u64);
    assert_eq!(u64_at(&b, offsets::DIM), DIM as u64);
    assert_eq!(u64_at(&b, offsets::QUERY_BANK_ROWS), MQ as u64);
    assert_eq!(u64_at(&b, offsets::GALLERY_BANK_ROWS), MG as u64);
    assert_eq!(u64_at(&b, offsets::QUERY_STATS), MQ as u64);
    assert_eq!(u64_at(&b, offsets::GALLERY_STATS), MG as u64);
    assert_eq!(u32::from_le_bytes(b[offsets::SECTION_COUNT..offsets::SECTION_COUNT + 4].try_into().unwrap()), SECTION_COUNT as u32);
    // dual-dis: lse and row lists of both banks, no top-mean.
    // (version 3: the parameter and state tables, sections 11 and 12, are always present)
    assert_eq!(u32::from_le_bytes(b[offsets::PRESENT..offsets::PRESENT + 4].try_into().unwrap()), 0b1_1110_1110_1111);
    assert_eq!(FORMAT_VERSION, 3);
    assert_eq!(u64_at(&b, offsets::SECTION_LENGTHS + 8 * sections::PARAMS), 0, "dual-dis reads header parameters only");
    assert_eq!(u64_at(&b, offsets::SECTION_LENGTHS + 8 * sections::STATE), 0, "dual-dis keeps no state");
    assert_eq!(u64_at(&b, offsets::SECTION_LENGTHS), (NG * DIM * 4) as u64);
    assert_eq!(section_offset(&b, SECTION_COUNT) + TRAILER_LEN, b.len());
    assert_eq!(u32::from_le_bytes(b[b.len() - 4..].try_into().unwrap()), checksum(&b[..b.len() - 4]));
}

// ---------------------------------------------------------------------------------------------------
// truncation and corruption

#[test]
fn truncation_at_every_header_offset_and_in_the_body_is_err_format() {
    let dir = TempDir::new("truncate");
    for f in fixtures().iter().filter(|f| ["dual-dis/embeddings-cosine", "csls/similarities", "none/similarities-unsized"].contains(&f.label.as_str())) {
        let b = persist::to_bytes(&f.norm);
        let mut cuts: Vec<usize> = (0..=HEADER_LEN).collect();
        let body = b.len() - HEADER_LEN;
        cuts.extend([HEADER_LEN + 1, HEADER_LEN + 4, HEADER_LEN + body / 3, HEADER_LEN + body / 2, b.len() - 5, b.len() - 4, b.len() - 1]);
        for i in 0..SECTION_COUNT {
            cuts.push(section_offset(&b, i));
            cuts.push(section_offset(&b, i) + 3);
        }
        cuts.retain(|&c| c < b.len());
        for &cut in &cuts {
            let what = format!("{}: cut at {cut} of {}", f.label, b.len());
            let e = format_err(catch(|| persist::from_bytes(&b[..cut], "mem"), &what), &what);
            assert!(e.message.starts_with("mem: "), "{what}: error names the source: {e}");
            // The same through a file.
            let p = dir.path("cut.dbn");
            fs::write(&p, &b[..cut]).unwrap();
            let e = format_err(catch(|| persist::load(&p), &what), &what);
            assert!(e.message.contains(&p.display().to_string()), "{what}: error names the file: {e}");
        }
        // Extra bytes after the checksum are rejected too.
        let mut longer = b.clone();
        longer.push(0);
        format_err(persist::from_bytes(&longer, "mem"), "one trailing byte");
    }
}

#[test]
fn flipped_bytes_fail_the_checksum() {
    let f = full_fixture();
    let b = persist::to_bytes(&f.norm);
    let end = b.len() - TRAILER_LEN;
    let mut positions = vec![HEADER_LEN, HEADER_LEN + 1, end - 1, end - 8];
    for i in 0..SECTION_COUNT {
        if u64_at(&b, offsets::SECTION_LENGTHS + 8 * i) > 0 {
            positions.push(section_offset(&b, i) + 2);
        }
    }
    for t in 1..20 {
        positions.push(HEADER_LEN + (end - HEADER_LEN) * t / 20);
    }
    for &pos in &positions {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut c = b.clone();
            c[pos] ^= mask;
            let what = format!("flip 0x{mask:02x} at {pos}");
            let e = format_err(catch(|| persist::from_bytes(&c, "mem"), &what), &what);
            assert!(e.message.contains("checksum"), "{what}: {e}");
        }
    }
    // The stored checksum itself.
    for pos in end..b.len() {
        let mut c = b.clone();
        c[pos] ^= 0x10;
        assert!(format_err(persist::from_bytes(&c, "mem"), "flip in checksum").message.contains("checksum"));
    }
}

#[test]
fn every_flipped_header_byte_is_rejected() {
    for f in fixtures().iter().filter(|f| ["dual-dis/embeddings-cosine", "nnn/similarities"].contains(&f.label.as_str())) {
        let b = persist::to_bytes(&f.norm);
        for pos in 0..HEADER_LEN {
            for mask in [0x01u8, 0x40, 0xFF] {
                let mut c = b.clone();
                c[pos] ^= mask;
                let what = format!("{}: header flip 0x{mask:02x} at {pos}", f.label);
                format_err(catch(|| persist::from_bytes(&c, "mem"), &what), &what);
            }
        }
    }
}

#[test]
fn wrong_version_is_reported_with_the_numbers() {
    let b = persist::to_bytes(&full_fixture().norm);
    for v in [0u32, 2, 4, 7, u32::MAX] {
        let mut c = b.clone();
        c[offsets::VERSION..offsets::VERSION + 4].copy_from_slice(&v.to_le_bytes());
        reseal(&mut c);
        let e = format_err(persist::from_bytes(&c, "model.dbn"), "version");
        assert_eq!(e.message, format!("model.dbn: unsupported format version {v} (this build reads 1 and 3)"));
        assert_eq!(e.to_string(), format!("ERR_FORMAT: model.dbn: unsupported format version {v} (this build reads 1 and 3)"));
    }
}

#[test]
fn wrong_endianness_marker_is_rejected() {
    let b = persist::to_bytes(&full_fixture().norm);
    // The marker as a big-endian writer would store it.
    let mut c = b.clone();
    c[offsets::ENDIAN..offsets::ENDIAN + 4].copy_from_slice(&[0x0A, 0x0B, 0x0C, 0x0D]);
    reseal(&mut c);
    assert!(format_err(persist::from_bytes(&c, "mem"), "BE marker").message.contains("wrong endianness"));
    // A whole big-endian preamble (version byte-swapped too) is diagnosed as endianness, not version.
    c[offsets::VERSION..offsets::VERSION + 4].copy_from_slice(&1u32.to_be_bytes());
    assert!(format_err(persist::from_bytes(&c, "mem"), "BE preamble").message.contains("wrong endianness"));
    // Any other marker value.
    let mut c = b.clone();
    c[offsets::ENDIAN] = 0x55;
    assert!(format_err(persist::from_bytes(&c, "mem"), "bad marker").message.contains("endianness marker"));
}

#[test]
fn garbage_files_are_err_format() {
    let dir = TempDir::new("garbage");
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("one byte".into(), vec![0x89]),
        ("text".into(), b"hello, this is not a normaliser\n".to_vec()),
        ("magic only".into(), b"\x89DBNORM\n".to_vec()),
        ("npy".into(), b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }".to_vec()),
    ];
    for (i, n) in [1usize, 7, 8, 100, 263, 264, 265, 10_000].into_iter().enumerate() {
        let bytes: Vec<u8> = random(n, 100 + i as u64).iter().map(|v| (v.to_bits() >> 7) as u8).collect();
        cases.push((format!("{n} random bytes"), bytes.clone()));
        // Right magic, version and marker, random everything else.
        let mut m = bytes;
        m.resize(n.max(16), 0);
        m[..8].copy_from_slice(b"\x89DBNORM\n");
        m[8..12].copy_from_slice(&1u32.to_le_bytes());
        m[12..16].copy_from_slice(&[0x0D, 0x0C, 0x0B, 0x0A]);
        cases.push((format!("{n} random bytes after a valid preamble"), m));
    }
    for (what, bytes) in &cases {
        format_err(catch(|| persist::from_bytes(bytes, "mem"), what), what);
        let p = dir.path("garbage.dbn");
        fs::write(&p, bytes).unwrap();
        format_err(catch(|| persist::load(&p), what), what);
    }
}

#[test]
fn huge_declared_lengths_fail_before_allocating() {
    let b = persist::to_bytes(&full_fixture().norm);
    for (i, len) in [(0usize, 1u64 << 62), (3, u64::MAX - 7), (5, 1 << 40), (10, 4 * (1 << 50))] {
        let mut c = b.clone();
        let off = offsets::SECTION_LENGTHS + 8 * i;
        c[off..off + 8].copy_from_slice(&len.to_le_bytes());
        reseal(&mut c);
        let t = std::time::Instant::now();
        let e = format_err(catch(|| persist::from_bytes(&c, "mem"), "huge length"), "huge length");
        assert!(t.elapsed().as_millis() < 500, "{e}");
    }
}

/// Edits a valid file so that the checksum still matches and only the semantic checks can object.
fn semantic_case(b: &[u8], what: &str, edit: impl FnOnce(&mut Vec<u8>), expect: &str) {
    let mut c = b.to_vec();
    edit(&mut c);
    reseal(&mut c);
    let e = format_err(catch(|| persist::from_bytes(&c, "mem"), what), what);
    assert!(e.message.contains(expect), "{what}: expected '{expect}' in: {e}");
}

#[test]
fn inconsistent_contents_with_a_valid_checksum_are_err_format() {
    let b = persist::to_bytes(&full_fixture().norm);
    let qidx = section_offset(&b, sections::QUERY_STATS + 2);
    let qlse = section_offset(&b, sections::QUERY_STATS);
    let gscore = section_offset(&b, sections::GALLERY_STATS + 3);
    semantic_case(&b, "row index out of range", |c| c[qidx..qidx + 4].copy_from_slice(&(NG as u32).to_le_bytes()), "out of range");
    semantic_case(&b, "NaN lse", |c| c[qlse + 16..qlse + 24].copy_from_slice(&f64::NAN.to_le_bytes()), "must be finite");
    semantic_case(&b, "inf lse", |c| c[qlse..qlse + 8].copy_from_slice(&f64::INFINITY.to_le_bytes()), "must be finite");
    semantic_case(&b, "unsorted row list", |c| c[gscore + 4..gscore + 8].copy_from_slice(&1e30f32.to_le_bytes()), "not sorted");
    semantic_case(&b, "method none with statistics", |c| c[offsets::METHOD] = 0, "does not use");
    semantic_case(&b, "method is with a gallery bank", |c| c[offsets::METHOD] = 1, "does not use");
    semantic_case(&b, "unknown method", |c| c[offsets::METHOD] = 200, "unknown method code 200");
    semantic_case(&b, "bad mode", |c| c[offsets::MODE] = 7, "mode/metric");
    semantic_case(&b, "similarity mode with embeddings", |c| (c[offsets::MODE], c[offsets::METRIC]) = (2, 0), "similarity mode");
    semantic_case(&b, "unknown flag", |c| c[offsets::FLAGS] |= 0x40, "flags");
    semantic_case(&b, "missing gallery statistics flag", |c| c[offsets::FLAGS] = 1, "needs galleryBank statistics");
    semantic_case(&b, "reserved byte", |c| c[offsets::RESERVED + 2] = 1, "reserved");
    semantic_case(&b, "n_gallery off by one", |c| c[offsets::N_GALLERY..offsets::N_GALLERY + 8].copy_from_slice(&(NG as u64 + 1).to_le_bytes()), "inconsistent");
    semantic_case(&b, "dim changed", |c| c[offsets::DIM..offsets::DIM + 8].copy_from_slice(&6u64.to_le_bytes()), "gallery holds");
    semantic_case(&b, "bank rows changed", |c| c[offsets::QUERY_BANK_ROWS..offsets::QUERY_BANK_ROWS + 8].copy_from_slice(&(MQ as u64 - 1).to_le_bytes()), "queryBank holds");
    semantic_case(&b, "stats rows changed", |c| c[offsets::QUERY_STATS..offsets::QUERY_STATS + 8].copy_from_slice(&(MQ as u64 + 2).to_le_bytes()), "row top-k indices holds");
    semantic_case(&b, "zero stats rows", |c| c[offsets::GALLERY_STATS..offsets::GALLERY_STATS + 8].copy_from_slice(&0u64.to_le_bytes()), "0 rows");
    semantic_case(&b, "row k changed", |c| c[offsets::QUERY_STATS + 24..offsets::QUERY_STATS + 32].copy_from_slice(&2u64.to_le_bytes()), "row lists keep");
    semantic_case(&b, "k changed", |c| c[offsets::K..offsets::K + 8].copy_from_slice(&4u64.to_le_bytes()), "row lists keep");
    semantic_case(&b, "lse beta differs", |c| c[offsets::BETA_QUERY..offsets::BETA_QUERY + 8].copy_from_slice(&21f64.to_le_bytes()), "uses β");
    semantic_case(&b, "negative beta", |c| c[offsets::BETA_GALLERY..offsets::BETA_GALLERY + 8].copy_from_slice(&(-1f64).to_le_bytes()), "invalid parameters");
    semantic_case(&b, "NaN in gallery", |c| c[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&f32::NAN.to_le_bytes()), "gallery[0]");

    // NNN / CSLS files: the top-K mean.
    let nnn = fixtures().into_iter().find(|f| f.label == "nnn/similarities").unwrap();
    let b = persist::to_bytes(&nnn.norm);
    let top = section_offset(&b, sections::QUERY_STATS + 1);
    semantic_case(&b, "NaN top mean", |c| c[top..top + 8].copy_from_slice(&f64::NAN.to_le_bytes()), "must be finite");
    semantic_case(&b, "top K changed", |c| c[offsets::QUERY_STATS + 16..offsets::QUERY_STATS + 24].copy_from_slice(&8u64.to_le_bytes()), "top-K mean uses K");
    semantic_case(&b, "negative alpha", |c| c[offsets::NNN_ALPHA..offsets::NNN_ALPHA + 8].copy_from_slice(&(-0.5f64).to_le_bytes()), "invalid parameters");
    semantic_case(&b, "similarity mode with a dim", |c| c[offsets::DIM] = 1, "similarity mode");
}

#[test]
fn non_zero_padding_is_err_format() {
    // Sizes that need padding: a 5 × 3 gallery is 60 bytes (4 bytes of padding).
    let g = random(15, 21);
    let q = random(9, 22);
    let norm = Normalizer::fit_embeddings(
        Method::Is,
        Params::default(),
        Metric::Cosine,
        MatRef::new(&g, 5, 3, "gallery").unwrap(),
        Some(MatRef::new(&q, 3, 3, "queryBank").unwrap()),
        None,
        &Control::none(),
    )
    .unwrap();
    let b = persist::to_bytes(&norm);
    assert_eq!(u64_at(&b, offsets::SECTION_LENGTHS), 60);
    assert_eq!(section_offset(&b, 1), HEADER_LEN + 64);
    assert!(persist::from_bytes(&b, "mem").is_ok());
    for pad in 60..64 {
        semantic_case(&b, "non-zero padding", |c| c[HEADER_LEN + pad] = 1, "non-zero padding");
    }
}

#[test]
fn structural_header_damage_is_err_format() {
    let b = persist::to_bytes(&full_fixture().norm);
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("section count", Box::new(|c| c[offsets::SECTION_COUNT] = 12)),
        ("presence bit of an always-present section", Box::new(|c| c[offsets::PRESENT] &= !1)),
        ("presence bit beyond the table", Box::new(|c| c[offsets::PRESENT + 2] = 0x80)),
        ("length of an absent section", Box::new(|c| c[offsets::SECTION_LENGTHS + 8 * 4] = 8)),
        ("length not a multiple of the element size", Box::new(|c| c[offsets::SECTION_LENGTHS + 8 * 3] ^= 4)),
        ("lengths moved between sections", Box::new(|c| {
            // Same total: 8 bytes taken from the gallery and given to the query-bank lse.
            let g = u64_at(c, offsets::SECTION_LENGTHS) - 8;
            let l = u64_at(c, offsets::SECTION_LENGTHS + 24) + 8;
            c[offsets::SECTION_LENGTHS..offsets::SECTION_LENGTHS + 8].copy_from_slice(&g.to_le_bytes());
            c[offsets::SECTION_LENGTHS + 24..offsets::SECTION_LENGTHS + 32].copy_from_slice(&l.to_le_bytes());
        })),
    ];
    for (what, edit) in cases {
        let mut c = b.clone();
        edit(&mut c);
        reseal(&mut c);
        format_err(catch(|| persist::from_bytes(&c, "mem"), what), what);
    }
}

// ---------------------------------------------------------------------------------------------------
// files

#[test]
fn missing_files_and_directories_are_err_io() {
    let dir = TempDir::new("io");
    let e = persist::load(dir.path("does-not-exist.dbn")).err().unwrap();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert!(e.message.contains("does-not-exist.dbn"), "{e}");
    let e = persist::load(&dir.0).err().unwrap();
    assert_eq!(e.code, ErrorCode::Io, "{e}");

    let f = full_fixture();
    // Into a directory that does not exist.
    let e = persist::save(&f.norm, dir.path("no/such/dir/x.dbn")).err().unwrap();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    // Onto an existing directory: it stays, and no temporary file is left behind.
    fs::create_dir(dir.path("sub")).unwrap();
    let e = persist::save(&f.norm, dir.path("sub")).err().unwrap();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert!(dir.path("sub").is_dir());
    assert_eq!(dir.entries(), vec!["sub".to_string()]);
}

#[test]
fn saving_replaces_atomically() {
    let dir = TempDir::new("atomic");
    let fx = fixtures();
    let a = fx.iter().find(|f| f.label == "dual-dis/embeddings-cosine").unwrap();
    let b = fx.iter().find(|f| f.label == "is/similarities").unwrap();
    let p = dir.path("model.dbn");
    persist::save(&a.norm, &p).unwrap();
    persist::save(&b.norm, &p).unwrap();
    assert_eq!(dir.entries(), vec!["model.dbn".to_string()]);
    assert_bit_identical(&b.norm, &persist::load(&p).unwrap(), b);
    // A relative path (resolved against the working directory).
    let rel_name = format!("persist-relative-test-{}.dbn", std::process::id());
    let rel = Path::new(&rel_name);
    let abs = std::env::current_dir().unwrap().join(rel);
    persist::save(&b.norm, rel).unwrap();
    assert_eq!(persist::load(&abs).unwrap().n_gallery, NG);
    fs::remove_file(abs).unwrap();
    // Concurrent saves to one path: every reader sees one complete file.
    std::thread::scope(|s| {
        for t in 0..4 {
            let (p, f) = (&p, if t % 2 == 0 { a } else { b });
            s.spawn(move || {
                for _ in 0..5 {
                    persist::save(&f.norm, p).unwrap();
                    persist::load(p).unwrap();
                }
            });
        }
    });
    assert_eq!(dir.entries(), vec!["model.dbn".to_string()]);
}

#[test]
fn larger_normaliser_round_trips() {
    // More rows than a bank block (1024) and a gallery spanning several tiles.
    let (n, d, m) = (1500, 32, 2100);
    let g = random(n * d, 11);
    let q = random(m * d, 12);
    let gb = random(m * d, 13);
    let norm = Normalizer::fit_embeddings(
        Method::DualDis,
        Params { k: 2, ..Params::default() },
        Metric::Cosine,
        MatRef::new(&g, n, d, "gallery").unwrap(),
        Some(MatRef::new(&q, m, d, "queryBank").unwrap()),
        Some(MatRef::new(&gb, m, d, "galleryBank").unwrap()),
        &Control::none(),
    )
    .unwrap();
    let dir = TempDir::new("large");
    let p = dir.path("large.dbn");
    persist::save(&norm, &p).unwrap();
    let loaded = persist::load(&p).unwrap();
    let queries = random(NQ * d, 14);
    let f = Fixture { label: "large dual-dis".into(), norm, input: queries, cols: d };
    assert!(matches!(loaded.mode, Mode::Embeddings { dim: 32, .. }));
    // `assert_bit_identical` searches with k up to NG; fine since n > NG.
    assert_bit_identical(&f.norm, &loaded, &f);
}

#[test]
fn normalisers_extended_by_add_gallery_round_trip() {
    // Row top-k lists are re-merged and the gallery grows: the loaded file must pass every check.
    let ctl = Control::none();
    let (n0, n1) = (2, 298); // n0 < k: the row lists widen when items are added
    let g = random(NG * DIM, 31);
    let qb = random(MQ * DIM, 32);
    let gb = random(MG * DIM, 33);
    let queries = random(NQ * DIM, 34);
    let dir = TempDir::new("addgallery");
    // Gallery-dependent methods (SN / DBSN) refit on addGallery instead (the framework's refit).
    for method in Method::ALL.into_iter().filter(|m| !m.info().gallery_dependent) {
        let part = Normalizer::fit_embeddings(
            method,
            params(true),
            Metric::Cosine,
            MatRef::new(&g[..n0 * DIM], n0, DIM, "gallery").unwrap(),
            Some(MatRef::new(&qb, MQ, DIM, "queryBank").unwrap()),
            Some(MatRef::new(&gb, MG, DIM, "galleryBank").unwrap()),
            &ctl,
        )
        .unwrap();
        let grown = part.add_gallery_embeddings(MatRef::new(&g[n0 * DIM..], n1, DIM, "items").unwrap(), &ctl).unwrap();
        let p = dir.path("grown.dbn");
        persist::save(&grown, &p).unwrap();
        let loaded = persist::load(&p).unwrap_or_else(|e| panic!("{}: {e}", method.as_str()));
        let f = Fixture { label: format!("{} + addGallery", method.as_str()), norm: grown, input: queries.clone(), cols: DIM };
        assert_bit_identical(&f.norm, &loaded, &f);
    }
    // Similarity mode.
    let qs = random(MQ * NG, 35);
    let gs = random(MG * NG, 36);
    let cols = |m: &[f32], rows: usize, a: usize, b: usize| -> Vec<f32> { (0..rows).flat_map(|r| m[r * NG + a..r * NG + b].to_vec()).collect() };
    for method in [Method::Dis, Method::DualDis, Method::Nnn] {
        let (q0, g0) = (cols(&qs, MQ, 0, n0), cols(&gs, MG, 0, n0));
        let (q1, g1) = (cols(&qs, MQ, n0, NG), cols(&gs, MG, n0, NG));
        let part = Normalizer::fit_similarities(
            method,
            params(false),
            Some(MatRef::new(&q0, MQ, n0, "q").unwrap()),
            Some(MatRef::new(&g0, MG, n0, "g").unwrap()),
            None,
            &ctl,
        )
        .unwrap();
        let grown = part.add_gallery_similarities(Some(MatRef::new(&q1, MQ, n1, "q").unwrap()), Some(MatRef::new(&g1, MG, n1, "g").unwrap()), n1, &ctl).unwrap();
        let loaded = persist::from_bytes(&persist::to_bytes(&grown), "mem").unwrap_or_else(|e| panic!("{}: {e}", method.as_str()));
        let f = Fixture { label: format!("{} + addGallery (similarities)", method.as_str()), norm: grown, input: random(NQ * NG, 37), cols: NG };
        assert_bit_identical(&f.norm, &loaded, &f);
    }
}

// ---------------------------------------------------------------------------------------------------
// version 3: parameters by name and method state; version-1 files still load

/// Files written by the version-1 build (commit 0cca107, `crate/tests/fixtures/format-v1/`) load and
/// score exactly as they did then.
#[test]
fn version_1_files_still_load_and_score_as_before() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1");
    let expected: std::collections::HashMap<String, serde_json::Value> = serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let lcg = |n: usize, seed: u32| -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                ((s as f64 / 4294967296.0) * 2.0 - 1.0) as f32
            })
            .collect()
    };
    for (file, key, input, cols) in [("dual-dis-embeddings.dbn", "dualDisEmbeddings", lcg(4 * 6, 4), 6), ("csls-similarities.dbn", "cslsSimilarities", lcg(3 * 5, 6), 5)] {
        let bytes = fs::read(dir.join(file)).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1, "{file} is a version-1 file");
        let n = persist::from_bytes(&bytes, file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(n.state.is_empty());
        let (scores, _) = n.scores(MatRef::new(&input, input.len() / cols, cols, "input").unwrap()).unwrap();
        let want: Vec<f32> = expected[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(bits32(&scores), bits32(&want), "{file}");
        // Re-saved, it is a version-3 file that loads to the same normaliser.
        let v3 = persist::to_bytes(&n);
        assert_eq!(u32::from_le_bytes(v3[8..12].try_into().unwrap()), FORMAT_VERSION);
        let again = persist::from_bytes(&v3, "v3").unwrap();
        assert_eq!(persist::to_bytes(&again), v3);
        // Truncated anywhere (header included) it is ERR_FORMAT.
        for cut in 0..bytes.len() {
            format_err(catch(|| persist::from_bytes(&bytes[..cut], "v1"), "cut v1"), "cut v1");
        }
    }
}

fn name_entry(name: &str, tail: &[u8]) -> Vec<u8> {
    let mut v = (name.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(tail);
    v
}

#[test]
fn method_state_encodes_and_decodes_exactly() {
    use dbnorm::methods::MethodState;
    use dbnorm::persist::format::{decode_state, encode_state};
    let mut s = MethodState::default();
    s.set("muQuery", vec![0.5, -1.25, f64::MIN_POSITIVE, 1e300]);
    s.set("empty", vec![]);
    s.set("potentials·é", (0..1000).map(|i| (i as f64).sin()).collect());
    let back = decode_state(&encode_state(&s), "mem").unwrap();
    assert_eq!(back, s);
    assert_eq!(decode_state(&[], "mem").unwrap(), MethodState::default());
    // Malformed tables are ERR_FORMAT (never a panic, never a huge allocation).
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("truncated name length", vec![1, 0]),
        ("name longer than the section", name_entry("abc", &[])[..5].to_vec()),
        ("empty name", name_entry("", &0u64.to_le_bytes())),
        ("non-UTF-8 name", { let mut v = name_entry("ab", &0u64.to_le_bytes()); v[4] = 0xff; v }),
        ("count beyond the section", name_entry("x", &u64::MAX.to_le_bytes())),
        ("count of 2^61 (overflows bytes)", name_entry("x", &(1u64 << 61).to_le_bytes())),
        ("values cut short", name_entry("x", &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 240, 63])),
        ("NaN value", name_entry("x", &[1u64.to_le_bytes(), f64::NAN.to_le_bytes()].concat())),
        ("duplicate name", [name_entry("x", &0u64.to_le_bytes()), name_entry("x", &0u64.to_le_bytes())].concat()),
    ];
    for (what, b) in bad {
        let e = catch(|| decode_state(&b, "mem"), what).expect_err(what);
        assert_eq!(e.code, ErrorCode::Format, "{what}: {e}");
    }
}

/// A normaliser of a method that keeps no state, written with a state: the loader reads the state
/// section and the method's `check_state` refuses it with ERR_FORMAT naming the vector.
#[test]
fn unexpected_method_state_in_a_file_is_err_format() {
    let mut n = full_fixture().norm;
    n.state.set("sinkhornU", vec![1.0; 3]);
    let b = persist::to_bytes(&n);
    assert!(u64_at(&b, offsets::SECTION_LENGTHS + 8 * sections::STATE) > 0);
    let e = format_err(persist::from_bytes(&b, "mem"), "state");
    assert!(e.message.contains("keeps no state, got vector 'sinkhornU'"), "{e}");
}

/// The parameter table accepts the method's own non-header parameters only, each once and in
/// range; today's methods read header parameters only, so every non-empty table is refused.
#[test]
fn parameter_table_entries_are_checked() {
    use dbnorm::persist::format::write_with;
    let n = full_fixture().norm;
    let write = |params: &[u8]| {
        let mut v = Vec::new();
        write_with(&n, params, &[], &mut v).unwrap();
        v
    };
    // the writer's own (empty) table loads
    persist::from_bytes(&write(&[]), "mem").unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unknown name", name_entry("temperature", &1.0f64.to_le_bytes()), "unknown parameter 'temperature'"),
        ("a header parameter by name", name_entry("betaQuery", &5.0f64.to_le_bytes()), "parameter 'betaQuery' is not stored by name"),
        ("a parameter the method does not read", name_entry("nnnK", &5.0f64.to_le_bytes()), "parameter 'nnnK' is not stored by name"),
        ("cut entry", name_entry("k", &[0, 0]), "ends inside an entry"),
    ];
    for (what, table, msg) in cases {
        let e = format_err(catch(|| persist::from_bytes(&write(&table), "mem"), what), what);
        assert!(e.message.contains(msg), "{what}: {e}");
    }
    // Every parameter outside the header block round-trips by name (generic over the table): the
    // decoder sets exactly what the encoder wrote, and refuses out-of-range values.
    for spec in dbnorm::methods::PARAMS.iter().filter(|p| !persist::format::HEADER_PARAMS.contains(&p.name)) {
        let owner = Method::ALL.into_iter().find(|m| m.info().uses(spec.name)).expect("every parameter has a method");
        let mut p = Params::default();
        let v = if spec.min_inclusive { spec.min } else { spec.min + 1.0 };
        let table = name_entry(spec.name, &v.to_le_bytes());
        let mut p2 = Params::default();
        spec.set(&mut p, v);
        // other non-header params of the owner are required: add them with their defaults
        let mut full = table.clone();
        for other in owner.info().params.iter().filter(|o| **o != spec.name && !persist::format::HEADER_PARAMS.contains(o)) {
            let s = dbnorm::methods::param_spec(other).unwrap();
            full.extend(name_entry(other, &s.get(&Params::default()).to_le_bytes()));
        }
        persist::format::decode_params(&full, owner, &mut p2, "mem").unwrap();
        assert_eq!(spec.get(&p2).to_bits(), spec.get(&p).to_bits(), "{}", spec.name);
        let e = persist::format::decode_params(&name_entry(spec.name, &f64::NAN.to_le_bytes()), owner, &mut p2, "mem").unwrap_err();
        assert_eq!(e.code, ErrorCode::Format, "{}", spec.name);
    }
}
