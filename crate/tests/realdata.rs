//! Real-data checks (`../shared/realdata`, read at run time; skipped with a printed reason when
//! absent). R@K and N_k skewness are computed here with plain code (no `dbnorm::eval`).
//!
//! - `crosslingual_fasttext/aligned/en-fr` reproduces the README's float64-reference numbers: raw
//!   cosine R@1 71.0, IS (β 10) 73.5, CSLS (K 10) 75.2 (± 0.25), and N10 skewness < 0.7 for IS, DIS,
//!   DualIS and DualDIS (β_q 10, β_g 1, k 1).
//! - A method × dataset table (R@1, R@10, N10 skewness) at the documented cosine defaults for the
//!   four language pairs, `flickr8k_clip100` and `hm_products_clip1126`, and the "does no harm" check
//!   on hm_products: no method lowers R@1 by more than 1 point.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use dbnorm::control::Control;
use dbnorm::kernels::similarity::Metric;
use dbnorm::methods::{Method, Params};
use dbnorm::normalizer::Normalizer;
use dbnorm::MatRef;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------

fn realdata() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/realdata");
    if p.join("README.md").is_file() {
        Some(p)
    } else {
        common::shared_missing(&format!("{} is absent; real-data tests need ../shared/realdata", p.display()));
        None
    }
}

/// A tiny `.npy` reader: little-endian f32, C order, 1-D or 2-D. Returns (data, rows, cols).
fn npy(path: &Path) -> (Vec<f32>, usize, usize) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY", "{}: not a .npy file", path.display());
    let (hlen, h0) = if b[6] == 1 { (u16::from_le_bytes([b[8], b[9]]) as usize, 10) } else { (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12) };
    let header = std::str::from_utf8(&b[h0..h0 + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{}: unsupported header {header}", path.display());
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let dims: Vec<usize> = shape[..shape.find(')').unwrap()].split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let data: Vec<f32> = b[h0 + hlen..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (rows, cols) = (dims[0], dims.get(1).copied().unwrap_or(1));
    assert_eq!(data.len(), rows * cols, "{}: size", path.display());
    (data, rows, cols)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn rows_of(data: &[f32], d: usize, idx: &[usize]) -> Vec<f32> {
    idx.iter().flat_map(|&i| data[i * d..(i + 1) * d].to_vec()).collect()
}

/// One retrieval problem in embeddings form (cosine). `gt[i]`: the gallery items that count as
/// correct for query i (a single one unless stated).
struct Dataset {
    name: String,
    d: usize,
    queries: Vec<f32>,
    gallery: Vec<f32>,
    query_bank: Vec<f32>,
    gallery_bank: Vec<f32>,
    gt: Vec<Vec<usize>>,
}

impl Dataset {
    fn nq(&self) -> usize {
        self.queries.len() / self.d
    }
    fn ng(&self) -> usize {
        self.gallery.len() / self.d
    }
}

fn crosslingual(root: &Path, pair: &str, equiv: bool) -> Dataset {
    let dir = root.join("crosslingual_fasttext/aligned").join(pair);
    let (q, nq, d) = npy(&dir.join("query_test.npy"));
    let (g, ng, _) = npy(&dir.join("gallery_test.npy"));
    let (r, _, _) = npy(&dir.join("query_bank.npy"));
    let (h, _, _) = npy(&dir.join("gallery_bank.npy"));
    assert_eq!(nq, ng);
    let gt = if equiv {
        json(&dir.join("gt_equiv.json"))["gt_equiv"].as_array().unwrap().iter().map(indices).collect()
    } else {
        (0..nq).map(|i| vec![i]).collect()
    };
    Dataset { name: pair.to_string(), d, queries: q, gallery: g, query_bank: r, gallery_bank: h, gt }
}

/// Flickr8k protocol (README): queries = the captions of the test images, gallery = the test images,
/// query bank = the captions of the train images, gallery bank = the train images. The ground truth
/// is built from `caption_to_image` (not assumed item-major).
fn flickr(root: &Path) -> Dataset {
    let dir = root.join("flickr8k_clip100");
    let (img, _, d) = npy(&dir.join("image.npy"));
    let (txt, nt, _) = npy(&dir.join("text.npy"));
    let idx = json(&dir.join("index.json"));
    let c2i = indices(&idx["caption_to_image"]);
    let (test, train) = (indices(&idx["test_images"]), indices(&idx["train_images"]));
    assert_eq!((c2i.len(), test.len(), train.len()), (nt, 50, 50));
    let qcap: Vec<usize> = (0..nt).filter(|&c| test.contains(&c2i[c])).collect();
    let bcap: Vec<usize> = (0..nt).filter(|&c| train.contains(&c2i[c])).collect();
    assert_eq!((qcap.len(), bcap.len()), (250, 250));
    let gt = qcap.iter().map(|&c| vec![test.iter().position(|&t| t == c2i[c]).unwrap()]).collect();
    Dataset { name: "flickr8k".into(), d, queries: rows_of(&txt, d, &qcap), gallery: rows_of(&img, d, &test), query_bank: rows_of(&txt, d, &bcap), gallery_bank: rows_of(&img, d, &train), gt }
}

/// hm_products: text row i describes image row i; test 500 / train 626 from `split.json`.
fn hm_products(root: &Path) -> Dataset {
    let dir = root.join("hm_products_clip1126");
    let (img, _, d) = npy(&dir.join("image.npy"));
    let (txt, _, _) = npy(&dir.join("text.npy"));
    let split = json(&dir.join("split.json"));
    let (test, train) = (indices(&split["test"]), indices(&split["train"]));
    let ds = Dataset {
        name: "hm_products".into(),
        d,
        queries: rows_of(&txt, d, &test),
        gallery: rows_of(&img, d, &test),
        query_bank: rows_of(&txt, d, &train),
        gallery_bank: rows_of(&img, d, &train),
        gt: (0..test.len()).map(|i| vec![i]).collect(),
    };
    // The shipped test similarities are these cosines (sanity check of the split and the order).
    let (sims, nq, ng) = npy(&dir.join("sims_test_t2i.npy"));
    assert_eq!((nq, ng), (500, 500));
    let (i, j) = (17, 333);
    let dot: f64 = (0..d).map(|t| ds.queries[i * d + t] as f64 * ds.gallery[j * d + t] as f64).sum();
    assert!((dot - sims[i * ng + j] as f64).abs() < 1e-5, "hm_products: sims_test_t2i does not match text·image");
    ds
}

// ---------------------------------------------------------------------------------------------------
// Metrics (plain code)
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Metrics {
    r1: f64,
    r10: f64,
    skew: f64,
    /// R@1 by the library's top-1 (ties → lowest index) — differs from `r1` only at exact ties.
    r1_top1: f64,
}

/// Population skewness of N_k over all items (zeros included); NaN if every N_k is equal.
fn skewness(nk: &[usize]) -> f64 {
    let n = nk.len() as f64;
    let mu = nk.iter().sum::<usize>() as f64 / n;
    let m2 = nk.iter().map(|&x| (x as f64 - mu).powi(2)).sum::<f64>() / n;
    let m3 = nk.iter().map(|&x| (x as f64 - mu).powi(3)).sum::<f64>() / n;
    if m2 == 0.0 {
        f64::NAN
    } else {
        m3 / m2.powf(1.5)
    }
}

/// R@1, R@10 (0-based rank with tie averaging, docs/methods.md §5: r = c + t/(p+1) where c items that are not
/// correct score strictly above the best correct item, t non-correct items tie with it and p correct
/// items (that one included) share its score) from the full f32 score matrix; N10 skewness from the library's top-10
/// (score desc, index asc).
fn evaluate(n: &Normalizer, ds: &Dataset) -> Metrics {
    let (nq, ng) = (ds.nq(), ds.ng());
    let q = MatRef::new(&ds.queries, nq, ds.d, "queries").unwrap();
    let (sc, _) = n.scores(q).unwrap();
    let (top, _, k) = n.search(q, 10, &Control::none()).unwrap();
    assert_eq!(k, 10.min(ng));
    let (mut h1, mut h10, mut h1t) = (0usize, 0usize, 0usize);
    let mut nk = vec![0usize; ng];
    for i in 0..nq {
        let row = &sc[i * ng..(i + 1) * ng];
        let pos = &ds.gt[i];
        let best = pos.iter().map(|&j| row[j]).fold(f32::NEG_INFINITY, f32::max);
        let above = (0..ng).filter(|j| !pos.contains(j) && row[*j] > best).count();
        let ties = (0..ng).filter(|j| !pos.contains(j) && row[*j] == best).count();
        let p = pos.iter().filter(|&&j| row[j] == best).count();
        let r = above as f64 + ties as f64 / (p as f64 + 1.0);
        h1 += (r < 1.0) as usize;
        h10 += (r < 10.0) as usize;
        h1t += pos.contains(&(top[i * k] as usize)) as usize;
        for &j in &top[i * k..(i + 1) * k] {
            nk[j as usize] += 1;
        }
    }
    assert_eq!(nk.iter().sum::<usize>(), nq * k);
    let pct = |h: usize| 100.0 * h as f64 / nq as f64;
    Metrics { r1: pct(h1), r10: pct(h10), skew: skewness(&nk), r1_top1: pct(h1t) }
}

fn fit(ds: &Dataset, method: Method, p: Params) -> Normalizer {
    fn m(v: &[f32], d: usize) -> MatRef<'_> {
        MatRef::new(v, v.len() / d, d, "x").unwrap()
    }
    Normalizer::fit_embeddings(method, p, Metric::Cosine, m(&ds.gallery, ds.d), Some(m(&ds.query_bank, ds.d)), Some(m(&ds.gallery_bank, ds.d)), &Control::none()).unwrap()
}

/// The documented defaults for cosine embeddings (docs/methods.md §2.2, §3.5, §3.6).
fn defaults() -> Params {
    Params { beta_query: 20.0, beta_gallery: 1.0, k: 1, csls_k: 10, nnn_k: 128, nnn_alpha: 0.75, ..Params::default() }
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

#[test]
fn crosslingual_en_fr_reproduces_readme() {
    let Some(root) = realdata() else { return };
    let t0 = Instant::now();
    let ds = crosslingual(&root, "en-fr", false);
    let p = Params { beta_query: 10.0, beta_gallery: 1.0, k: 1, ..defaults() };
    let raw = evaluate(&fit(&ds, Method::None, p), &ds);
    let is = evaluate(&fit(&ds, Method::Is, p), &ds);
    let csls = evaluate(&fit(&ds, Method::Csls, Params { csls_k: 10, ..p }), &ds);
    println!("en-fr (query i ↔ gallery i, no gt_equiv): raw R@1 {:.2} skew {:.3}; IS β10 R@1 {:.2} skew {:.3}; CSLS K10 R@1 {:.2} skew {:.3}", raw.r1, raw.skew, is.r1, is.skew, csls.r1, csls.skew);
    // With gt_equiv (a hit on any identical-vector row counts) — informational.
    let eq = crosslingual(&root, "en-fr", true);
    let raw_eq = evaluate(&fit(&eq, Method::None, p), &eq);
    let is_eq = evaluate(&fit(&eq, Method::Is, p), &eq);
    let csls_eq = evaluate(&fit(&eq, Method::Csls, p), &eq);
    println!(
        "en-fr with gt_equiv: raw R@1 {:.2}, IS β10 {:.2}, CSLS K10 {:.2}. Same as without: the duplicated gallery vectors tie exactly \
         and a tie-averaged rank of 0.5 counts as a hit. R@1 by the lowest-index top-1 instead: raw {:.2}, IS {:.2}, CSLS {:.2}",
        raw_eq.r1, is_eq.r1, csls_eq.r1, raw.r1_top1, is.r1_top1, csls.r1_top1
    );
    for (name, a, b) in [("raw", raw.r1, raw_eq.r1), ("IS", is.r1, is_eq.r1), ("CSLS", csls.r1, csls_eq.r1)] {
        assert_eq!(a, b, "en-fr {name}: R@1 with and without gt_equiv (tie averaging)");
    }
    for (name, got, want) in [("raw cosine", raw.r1, 71.0), ("IS β=10", is.r1, 73.5), ("CSLS K=10", csls.r1, 75.2)] {
        assert!((got - want).abs() <= 0.25, "en-fr {name}: R@1 {got:.2}, README {want}");
    }
    // README skewness values (float64 reference): raw 1.96, IS 0.57, CSLS 0.42.
    for (name, got, want) in [("raw cosine", raw.skew, 1.96), ("IS β=10", is.skew, 0.57), ("CSLS K=10", csls.skew, 0.42)] {
        assert!((got - want).abs() <= 0.01, "en-fr {name}: N10 skewness {got:.3}, README {want}");
    }
    for m in [Method::Is, Method::Dis, Method::DualIs, Method::DualDis] {
        let r = evaluate(&fit(&ds, m, p), &ds);
        println!("en-fr {} (β_q 10, β_g 1, k 1): R@1 {:.2} R@10 {:.2} N10 skewness {:.3}", m.as_str(), r.r1, r.r10, r.skew);
        assert!(r.skew < 0.7, "en-fr {}: N10 skewness {:.3} (raw {:.3}) should drop below 0.7", m.as_str(), r.skew, raw.skew);
    }
    println!("en-fr checks took {:.2?}", t0.elapsed());
}

#[test]
fn realdata_table_and_hm_products_does_no_harm() {
    let Some(root) = realdata() else { return };
    let t0 = Instant::now();
    let mut sets: Vec<Dataset> = ["en-fr", "en-es", "en-ru", "en-ar"].iter().map(|p| crosslingual(&root, p, false)).collect();
    sets.push(flickr(&root));
    sets.push(hm_products(&root));
    let p = defaults();
    println!("\nDocumented cosine defaults: β_q 20, β_g 1, k 1, cslsK 10, nnnK 128, nnnAlpha 0.75. Cells: R@1 / R@10 / N10 skewness.");
    print!("{:<10}", "method");
    for ds in &sets {
        print!(" | {:^21}", format!("{} ({}×{})", ds.name, ds.nq(), ds.ng()));
    }
    println!();
    let mut hm_raw = f64::NAN;
    let mut harm = Vec::new();
    for m in Method::ALL {
        print!("{:<10}", m.as_str());
        for ds in &sets {
            let r = evaluate(&fit(ds, m, p), ds);
            print!(" | {:>5.1} / {:>5.1} / {:>5.2}", r.r1, r.r10, r.skew);
            if ds.name == "hm_products" {
                if m == Method::None {
                    hm_raw = r.r1;
                } else if r.r1 < hm_raw - 1.0 {
                    // The README's "does no harm" claim covers the stage-1 methods (save-file codes 0–6).
                    // The issue-13 methods are reported, not asserted: e.g. sn at its cosine default τ 0.01
                    // lowers hm_products R@1 (83.4 vs 85.0), a finding stated in the README table.
                    if m.info().persist_code <= 6 {
                        harm.push(format!("{}: R@1 {:.2} vs raw {:.2}", m.as_str(), r.r1, hm_raw));
                    } else {
                        eprintln!("note: {} lowers hm_products R@1 to {:.2} (raw {:.2})", m.as_str(), r.r1, hm_raw);
                    }
                }
            }
        }
        println!();
    }
    // The language pairs again with the en-fr settings of the README (β_q 10).
    let p10 = Params { beta_query: 10.0, ..p };
    println!("\nCross-lingual with β_q 10 (README's en-fr setting), R@1 / R@10 / N10 skewness:");
    for m in [Method::Is, Method::Dis, Method::DualIs, Method::DualDis] {
        print!("{:<10}", m.as_str());
        for ds in &sets[..4] {
            let r = evaluate(&fit(ds, m, p10), ds);
            print!(" | {:>5.1} / {:>5.1} / {:>5.2}", r.r1, r.r10, r.skew);
        }
        println!();
    }
    println!("table took {:.2?}", t0.elapsed());
    assert!(harm.is_empty(), "hm_products: methods at documented defaults lower R@1 by more than 1 point: {}", harm.join("; "));
}

