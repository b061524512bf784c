//! Lean normalisers (`keep: 'statistics'`, `dbnorm::gallery`) and half-precision gallery storage.
//!
//! What is asserted (and why it can fail):
//! - a lean fit (gallery read block by block from its `.npy` file, several blocks) gives statistics,
//!   scores, top-k, reranked lists, augmented vectors, streamed metrics and `addGallery` results
//!   bit-identical to the in-memory fit of the same values, for every method, both metrics, `<f4`
//!   and `<f2` files;
//! - a lean normaliser whose source file changed refuses to search (`ERR_SOURCE`), and `addGallery`
//!   without bank files is `ERR_SOURCE`;
//! - half-precision storage: search equals the search over the widened rows held as `f32` (the
//!   only change is the rounding of the stored gallery), and storage round-trips.

use std::path::{Path, PathBuf};

use dbnorm::control::Control;
use dbnorm::eval::stream::retrieval_metrics_normalized;
use dbnorm::eval::{EvalOptions, GroundTruth};
use dbnorm::gallery::SourceFile;
use dbnorm::kernels::half::HalfKind;
use dbnorm::kernels::similarity::Metric;
use dbnorm::methods::{Method, Params};
use dbnorm::normalizer::Normalizer;
use dbnorm::{ErrorCode, MatRef};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn mat(&mut self, rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols).map(|_| self.unit()).collect()
    }
}

fn params() -> Params {
    Params { beta_query: 20.0, beta_gallery: 1.5, k: 2, csls_k: 7, nnn_k: 9, nnn_alpha: 0.75, ..Params::default() }
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("dbnorm-lean-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `v` as `<f4` or (`half`) `<f2`; returns the values a reader sees.
fn write_npy(p: &Path, v: &[f32], rows: usize, cols: usize, half: bool) -> Vec<f32> {
    dbnorm::npy::write_npy_f32(p, v, rows, cols).unwrap();
    if half {
        let mut bytes = std::fs::read(p).unwrap();
        let h = dbnorm::npy::parse_header(&bytes, "x").unwrap();
        bytes.truncate(h.data_offset);
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[at + 2] = b'2';
        for &x in v {
            bytes.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
        }
        std::fs::write(p, bytes).unwrap();
    }
    dbnorm::npy::read_npy_f32(p).unwrap().0
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn lean_fit_and_every_search_path_are_bit_identical_to_the_in_memory_fit() {
    let (n, d, mq, mg, nq) = (1300, 12, 300, 200, 37);
    let mut rng = Rng(11);
    let g = rng.mat(n, d);
    let qb = rng.mat(mq, d);
    let gb = rng.mat(mg, d);
    let q = rng.mat(nq, d);
    let extra = rng.mat(9, d);
    let dir = dir();
    let qbp = dir.join("qb.npy");
    dbnorm::npy::write_npy_f32(&qbp, &qb, mq, d).unwrap();
    let gbp = dir.join("gb.npy");
    dbnorm::npy::write_npy_f32(&gbp, &gb, mg, d).unwrap();
    let ctl = Control::none();
    let cands: Vec<u32> = (0..nq * 50).map(|i| ((i * 7919 + i / 50 * 13) % n) as u32).collect();
    let mut checked = 0;
    for half in [false, true] {
        let gp = dir.join(if half { "g2.npy" } else { "g4.npy" });
        let gv = write_npy(&gp, &g, n, d, half);
        for metric in [Metric::Cosine, Metric::Dot] {
            for method in Method::ALL {
                let p = params();
                let (qm, gm) = (MatRef::new(&qb, mq, d, "qb").unwrap(), MatRef::new(&gb, mg, d, "gb").unwrap());
                if method.info().fit_state.is_some() {
                    // a state fitted over the whole gallery, or a transformed gallery: refused, not silently approximated
                    let e = Normalizer::fit_lean_blocked(method, p, metric, SourceFile::open(&gp, None, "gallery").unwrap(), Some(qm), Some(gm), (None, None), 512, &ctl).unwrap_err();
                    assert_eq!(e.code, ErrorCode::Param, "{method:?}");
                    checked += 1;
                    continue;
                }
                let full = Normalizer::fit_embeddings(method, p, metric, MatRef::new(&gv, n, d, "g").unwrap(), Some(qm), Some(gm), &ctl).unwrap();
                let srcs = (Some(SourceFile::open(&qbp, None, "queryBank").unwrap().reference()), Some(SourceFile::open(&gbp, None, "galleryBank").unwrap().reference()));
                let lean = Normalizer::fit_lean_blocked(method, p, metric, SourceFile::open(&gp, None, "gallery").unwrap(), Some(qm), Some(gm), srcs, 512, &ctl).unwrap();
                let what = format!("{method:?} {metric:?} half-file {half}");
                assert!(lean.gallery.is_empty() && lean.query_bank.is_empty() && lean.gallery_bank.is_empty(), "{what}: lean holds no rows");
                assert_eq!(lean.query_stats, full.query_stats, "{what}: query-bank statistics");
                assert_eq!(lean.gallery_stats, full.gallery_stats, "{what}: gallery-bank statistics");
                assert_eq!(lean.gallery_bank_overlap(), full.gallery_bank_overlap(), "{what}");
                let qm = MatRef::new(&q, nq, d, "q").unwrap();
                let (a, b) = (full.scores(qm).unwrap(), lean.scores(qm).unwrap());
                assert_eq!(bits(&a.0), bits(&b.0), "{what}: scores");
                for (k, qn) in [(10, nq), (7, 1), (1300, 3)] {
                    let qs = MatRef::new(&q[..qn * d], qn, d, "q").unwrap();
                    let (a, b) = (full.search(qs, k, &ctl).unwrap(), lean.search(qs, k, &ctl).unwrap());
                    assert_eq!((&a.0, bits(&a.1)), (&b.0, bits(&b.1)), "{what}: search k {k} queries {qn}");
                }
                let (a, b) = (full.rerank(qm, &cands, 50).unwrap(), lean.rerank(qm, &cands, 50).unwrap());
                assert_eq!((&a.0, bits(&a.1)), (&b.0, bits(&b.1)), "{what}: rerank");
                if let (Ok(a), Ok(b)) = (full.augmented_gallery_rows(Some((500, 700))), lean.augmented_gallery_rows(Some((500, 700)))) {
                    assert_eq!(bits(&a.0), bits(&b.0), "{what}: augmented gallery");
                }
                if let (Ok(a), Ok(b)) = (full.augment_queries(qm, &ctl), lean.augment_queries(qm, &ctl)) {
                    assert_eq!(bits(&a.0), bits(&b.0), "{what}: augmented queries");
                }
                let pos = GroundTruth::Explicit((0..nq).map(|i| vec![(i * 31 % n) as u32, (i * 17 % n) as u32]).collect());
                let (a, b) = (
                    retrieval_metrics_normalized(&full, qm, &pos, &EvalOptions::default(), &ctl).unwrap(),
                    retrieval_metrics_normalized(&lean, qm, &pos, &EvalOptions::default(), &ctl).unwrap(),
                );
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{what}: streamed metrics");
                // addGallery: the banks are read again from their files
                let em = MatRef::new(&extra, 9, d, "items").unwrap();
                let (fa, la) = (full.add_gallery_embeddings(em, &ctl).unwrap(), lean.add_gallery_embeddings(em, &ctl).unwrap());
                assert_eq!(fa.query_stats, la.query_stats, "{what}: addGallery statistics");
                assert_eq!(fa.gallery_stats, la.gallery_stats, "{what}: addGallery statistics");
                let (a, b) = (fa.search(qm, 15, &ctl).unwrap(), la.search(qm, 15, &ctl).unwrap());
                assert_eq!((&a.0, bits(&a.1)), (&b.0, bits(&b.1)), "{what}: search after addGallery");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 2 * Method::ALL.len());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_changed_or_unreachable_source_is_refused() {
    let (n, d) = (600, 8);
    let mut rng = Rng(5);
    let g = rng.mat(n, d);
    let qb = rng.mat(50, d);
    let dir = dir().join("changed");
    std::fs::create_dir_all(&dir).unwrap();
    let gp = dir.join("g.npy");
    dbnorm::npy::write_npy_f32(&gp, &g, n, d).unwrap();
    let ctl = Control::none();
    let qm = MatRef::new(&qb, 50, d, "qb").unwrap();
    // banks in memory only: addGallery cannot reach them
    let lean = Normalizer::fit_embeddings_lean(Method::Is, params(), Metric::Cosine, SourceFile::open(&gp, None, "gallery").unwrap(), Some(qm), None, (None, None), &ctl).unwrap();
    let q = MatRef::new(&g[..3 * d], 3, d, "q").unwrap();
    assert!(lean.search(q, 5, &ctl).is_ok());
    let e = lean.add_gallery_embeddings(q, &ctl).unwrap_err();
    assert_eq!(e.code, ErrorCode::Source, "{}", e.message);
    assert!(e.message.contains("in-memory queryBank"), "{}", e.message);
    // the gallery file is rewritten with one value changed: every read path refuses
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut g2 = g.clone();
    g2[5] += 0.5;
    dbnorm::npy::write_npy_f32(&gp, &g2, n, d).unwrap();
    for e in [lean.search(q, 5, &ctl).err(), lean.scores(q).err(), lean.rerank(q, &[1, 2, 3], 1).err()] {
        let e = e.expect("refused");
        assert_eq!(e.code, ErrorCode::Source, "{}", e.message);
    }
    // re-verifying against the fit's checksum (what loading a saved lean normaliser does)
    let src = &lean.lean.as_ref().unwrap().gallery.source;
    let e = SourceFile::open(&gp, Some((src.file_len, src.crc)), "gallery").unwrap_err();
    assert_eq!(e.code, ErrorCode::Source);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn half_storage_searches_the_rounded_gallery_and_converts_back() {
    let (n, d, nq) = (3000, 16, 40);
    let mut rng = Rng(9);
    let g = rng.mat(n, d);
    let qb = rng.mat(400, d);
    let q = rng.mat(nq, d);
    let ctl = Control::none();
    let qm = MatRef::new(&q, nq, d, "q").unwrap();
    for kind in [HalfKind::F16, HalfKind::Bf16] {
        for method in [Method::DualDis, Method::Csls, Method::Is] {
            let gbm = if method == Method::DualDis { Some(MatRef::new(&qb[..200 * d], 200, d, "gb").unwrap()) } else { None };
            let full = Normalizer::fit_embeddings(method, params(), Metric::Cosine, MatRef::new(&g, n, d, "g").unwrap(), Some(MatRef::new(&qb, 400, d, "qb").unwrap()), gbm, &ctl).unwrap();
            let h = full.clone().with_gallery_storage(Some(kind)).unwrap();
            assert!(h.gallery.is_empty());
            assert_eq!(h.gallery_storage(), Some(kind));
            // the reference: the same statistics, the widened rows held as f32
            let mut widened = full.clone();
            widened.gallery = h.half.as_ref().unwrap().to_f32();
            for k in [10, 1] {
                for qn in [nq, 1] {
                    let qs = MatRef::new(&q[..qn * d], qn, d, "q").unwrap();
                    let (a, b) = (widened.search(qs, k, &ctl).unwrap(), h.search(qs, k, &ctl).unwrap());
                    assert_eq!((&a.0, bits(&a.1)), (&b.0, bits(&b.1)), "{kind:?} {method:?} k {k} nq {qn}");
                }
            }
            let (a, b) = (widened.scores(qm).unwrap(), h.scores(qm).unwrap());
            assert_eq!(bits(&a.0), bits(&b.0));
            // and back to f32: the widened rows
            let back = h.clone().with_gallery_storage(None).unwrap();
            assert_eq!(bits(&back.gallery), bits(&widened.gallery));
            // rounding error bound of the stored rows (unit rows under cosine)
            let rel = if kind == HalfKind::F16 { 2f32.powi(-11) } else { 2f32.powi(-8) };
            assert!(full.gallery.iter().zip(&widened.gallery).all(|(x, y)| (x - y).abs() <= rel * x.abs() + 6e-8));
        }
    }
    // similarity mode has no gallery to store
    let sims = rng.mat(50, 20);
    let s = Normalizer::fit_similarities(Method::Is, params(), Some(MatRef::new(&sims, 50, 20, "s").unwrap()), None, None, &ctl).unwrap();
    assert_eq!(s.with_gallery_storage(Some(HalfKind::F16)).unwrap_err().code, ErrorCode::Param);
}

#[test]
fn lean_and_half_normalisers_save_and_load_to_the_same_results() {
    let (n, d, nq) = (700, 8, 20);
    let mut rng = Rng(21);
    let g = rng.mat(n, d);
    let qb = rng.mat(120, d);
    let gb = rng.mat(90, d);
    let q = rng.mat(nq, d);
    let dir = dir().join("persist");
    std::fs::create_dir_all(&dir).unwrap();
    let (gp, qbp, gbp) = (dir.join("g.npy"), dir.join("qb.npy"), dir.join("gb.npy"));
    dbnorm::npy::write_npy_f32(&gp, &g, n, d).unwrap();
    dbnorm::npy::write_npy_f32(&qbp, &qb, 120, d).unwrap();
    dbnorm::npy::write_npy_f32(&gbp, &gb, 90, d).unwrap();
    let ctl = Control::none();
    let qm = MatRef::new(&q, nq, d, "q").unwrap();
    let (qbm, gbm) = (MatRef::new(&qb, 120, d, "qb").unwrap(), MatRef::new(&gb, 90, d, "gb").unwrap());
    let refs = || (Some(SourceFile::open(&qbp, None, "queryBank").unwrap().reference()), Some(SourceFile::open(&gbp, None, "galleryBank").unwrap().reference()));
    let lean = Normalizer::fit_embeddings_lean(Method::DualDis, params(), Metric::Cosine, SourceFile::open(&gp, None, "gallery").unwrap(), Some(qbm), Some(gbm), refs(), &ctl).unwrap();
    let lean = lean.add_gallery_embeddings(MatRef::new(&q[..3 * d], 3, d, "items").unwrap(), &ctl).unwrap();
    let file = dir.join("lean.dbn");
    dbnorm::persist::save(&lean, &file).unwrap();
    // the file holds references, not the gallery: far smaller than n·d floats
    assert!(std::fs::metadata(&file).unwrap().len() < (n * d * 4) as u64, "lean file is small");
    let back = dbnorm::persist::load(&file).unwrap();
    assert!(back.lean.is_some());
    let (a, b) = (lean.search(qm, 10, &ctl).unwrap(), back.search(qm, 10, &ctl).unwrap());
    assert_eq!((&a.0, bits(&a.1)), (&b.0, bits(&b.1)), "lean: search after load");
    let (a, b) = (lean.add_gallery_embeddings(qm, &ctl).unwrap(), back.add_gallery_embeddings(qm, &ctl).unwrap());
    assert_eq!(a.gallery_stats, b.gallery_stats, "lean: addGallery after load");
    // half precision round trip
    let full = Normalizer::fit_embeddings(Method::Csls, params(), Metric::Cosine, MatRef::new(&g, n, d, "g").unwrap(), Some(qbm), None, &ctl).unwrap();
    for kind in [HalfKind::F16, HalfKind::Bf16] {
        let h = full.clone().with_gallery_storage(Some(kind)).unwrap();
        let hf = dir.join("half.dbn");
        dbnorm::persist::save(&h, &hf).unwrap();
        let hb = dbnorm::persist::load(&hf).unwrap();
        assert_eq!(hb.half, h.half);
        let (a, b) = (h.search(qm, 10, &ctl).unwrap(), hb.search(qm, 10, &ctl).unwrap());
        assert_eq!((&a.0, bits(&a.1)), (&b.0, bits(&b.1)), "{kind:?}: search after load");
    }
    // a changed gallery file: loading the lean file is refused with ERR_SOURCE
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut g2 = g.clone();
    g2[3] = -g2[3];
    dbnorm::npy::write_npy_f32(&gp, &g2, n, d).unwrap();
    let e = dbnorm::persist::load(&file).unwrap_err();
    assert_eq!(e.code, ErrorCode::Source, "{}", e.message);
    // a changed bank file: search still works (banks are not read), addGallery is refused
    dbnorm::npy::write_npy_f32(&gp, &g, n, d).unwrap();
    let back = dbnorm::persist::load(&file).unwrap();
    dbnorm::npy::write_npy_f32(&gbp, &gb[..89 * d], 89, d).unwrap();
    assert!(back.search(qm, 5, &ctl).is_ok());
    assert_eq!(back.add_gallery_embeddings(qm, &ctl).unwrap_err().code, ErrorCode::Source);
    std::fs::remove_dir_all(&dir).ok();
}
