//! Sharded fits (`dbnorm::shard`): random shard grids (1–5 gallery × 1–5 bank shards) on every
//! method in both modes, each part saved and loaded through the partial file format, merged in a
//! shuffled order, and compared with the one-shot fit; and every refusal of `merge`.
//!
//! What is asserted (and why it can fail): merged scores within 2 ulp of float32 of the one-shot
//! scores; the activation sets / row lists and the CSLS / NNN top-K means bit-identical (exact
//! selections); the log-sum-exps bit-identical with one bank shard and within 1e-14 relative with
//! several (log-add-exp vs one streamed sum). The counts of bit-identical scores are printed.

use dbnorm::control::Control;
use dbnorm::kernels::similarity::Metric;
use dbnorm::methods::{Method, Params};
use dbnorm::normalizer::Normalizer;
use dbnorm::shard::{even_split, file, merge, PartialFit, ShardSpec};
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
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn mat(&mut self, rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols).map(|_| self.unit()).collect()
    }
    /// Like `mat` but with many exact ties (values on a coarse grid), to exercise the tie rules.
    fn coarse(&mut self, rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols).map(|_| (self.below(41) as f32 - 20.0) / 20.0).collect()
    }
}

fn params() -> Params {
    Params { beta_query: 20.0, beta_gallery: 1.5, k: 2, csls_k: 7, nnn_k: 9, nnn_alpha: 0.75, ..Params::default() }
}

/// Distance in float32 ulps (both finite).
fn ulps(a: f32, b: f32) -> u64 {
    // Map the float order onto the integers (sign-magnitude → two's complement).
    let map = |x: f32| -> i64 {
        let b = x.to_bits();
        if b & 0x8000_0000 != 0 { -((b & 0x7FFF_FFFF) as i64) } else { b as i64 }
    };
    (map(a) - map(b)).unsigned_abs()
}

fn slice_rows(data: &[f32], cols: usize, start: usize, count: usize) -> Vec<f32> {
    data[start * cols..(start + count) * cols].to_vec()
}

fn slice_block(data: &[f32], cols: usize, r0: usize, nr: usize, c0: usize, nc: usize) -> Vec<f32> {
    (r0..r0 + nr).flat_map(|r| data[r * cols + c0..r * cols + c0 + nc].to_vec()).collect()
}

struct Problem {
    n: usize,
    mq: usize,
    mg: usize,
    d: usize,
    gallery: Vec<f32>,
    qbank: Vec<f32>,
    gbank: Vec<f32>,
    queries: Vec<f32>,
    /// Similarity mode: bank × gallery and query × gallery matrices.
    qsims: Vec<f32>,
    gsims: Vec<f32>,
    test_sims: Vec<f32>,
    nq: usize,
}

fn problem(rng: &mut Rng, ties: bool) -> Problem {
    let d = 8 + rng.below(12);
    let big = rng.below(3) == 0;
    let n = 20 + rng.below(if big { 700 } else { 200 });
    let big = rng.below(3) == 0;
    let mq = 20 + rng.below(if big { 1300 } else { 300 });
    let mg = 20 + rng.below(300);
    let nq = 17;
    let m = |r: &mut Rng, a, b| if ties { r.coarse(a, b) } else { r.mat(a, b) };
    Problem {
        n,
        mq,
        mg,
        d,
        gallery: rng.mat(n, d),
        qbank: rng.mat(mq, d),
        gbank: rng.mat(mg, d),
        queries: rng.mat(nq, d),
        qsims: m(rng, mq, n),
        gsims: m(rng, mg, n),
        test_sims: m(rng, nq, n),
        nq,
    }
}

fn one_shot(method: Method, p: &Problem, emb: bool) -> Normalizer {
    let ctl = Control::none();
    if emb {
        Normalizer::fit_embeddings(
            method,
            params(),
            Metric::Cosine,
            MatRef::new(&p.gallery, p.n, p.d, "g").unwrap(),
            Some(MatRef::new(&p.qbank, p.mq, p.d, "q").unwrap()),
            Some(MatRef::new(&p.gbank, p.mg, p.d, "b").unwrap()),
            &ctl,
        )
        .unwrap()
    } else {
        Normalizer::fit_similarities(method, params(), Some(MatRef::new(&p.qsims, p.mq, p.n, "q").unwrap()), Some(MatRef::new(&p.gsims, p.mg, p.n, "b").unwrap()), Some(p.n), &ctl).unwrap()
    }
}

/// Fits shard (gi of gn) × (bi of bn): both banks split into `bn` even slices.
fn shard(method: Method, p: &Problem, emb: bool, (gi, gn): (usize, usize), (bi, bn): (usize, usize), params: Params) -> PartialFit {
    let (g0, gc) = even_split(gi, gn, p.n).unwrap();
    let (q0, qc) = even_split(bi, bn, p.mq).unwrap();
    let (b0, bc) = even_split(bi, bn, p.mg).unwrap();
    let spec = ShardSpec { gallery: Some((g0, p.n)), query_bank: Some((q0, p.mq)), gallery_bank: Some((b0, p.mg)) };
    let ctl = Control::none();
    if emb {
        let g = slice_rows(&p.gallery, p.d, g0, gc);
        let q = slice_rows(&p.qbank, p.d, q0, qc);
        let b = slice_rows(&p.gbank, p.d, b0, bc);
        PartialFit::fit_embeddings(
            method,
            params,
            Metric::Cosine,
            MatRef::new(&g, gc, p.d, "g").unwrap(),
            Some(MatRef::new(&q, qc, p.d, "q").unwrap()),
            Some(MatRef::new(&b, bc, p.d, "b").unwrap()),
            spec,
            &ctl,
        )
        .unwrap()
    } else {
        let q = slice_block(&p.qsims, p.n, q0, qc, g0, gc);
        let b = slice_block(&p.gsims, p.n, b0, bc, g0, gc);
        PartialFit::fit_similarities(method, params, Some(MatRef::new(&q, qc, gc, "q").unwrap()), Some(MatRef::new(&b, bc, gc, "b").unwrap()), Some(gc), spec, &ctl).unwrap()
    }
}

fn grid(method: Method, p: &Problem, emb: bool, gn: usize, bn: usize) -> Vec<PartialFit> {
    let mut parts = Vec::new();
    for gi in 0..gn {
        for bi in 0..bn {
            let part = shard(method, p, emb, (gi, gn), (bi, bn), params());
            // Every part goes through the file format.
            let bytes = file::to_bytes(&part);
            let back = file::from_bytes(&bytes, "part").unwrap();
            assert_eq!(back, part, "partial file round trip");
            parts.push(back);
        }
    }
    parts
}

fn scores(norm: &Normalizer, p: &Problem, emb: bool) -> Vec<f32> {
    if emb {
        norm.scores(MatRef::new(&p.queries, p.nq, p.d, "q").unwrap()).unwrap().0
    } else {
        norm.scores(MatRef::new(&p.test_sims, p.nq, p.n, "s").unwrap()).unwrap().0
    }
}

#[test]
fn random_grids_match_the_one_shot_fit() {
    let mut rng = Rng(0x5EED_0015);
    let mut total = 0usize;
    let mut identical = 0usize;
    let mut max_ulps = 0u64;
    let mut max_ulps_scaled = 0u64;
    let mut by_case: Vec<String> = Vec::new();
    // Gallery-dependent methods (SN / DBSN) cannot be fitted by shards (their potentials need the whole gallery).
    for method in Method::ALL.into_iter().filter(|m| !m.info().gallery_dependent) {
        for emb in [true, false] {
            for round in 0..4 {
                let ties = !emb && round % 2 == 1;
                let p = problem(&mut rng, ties);
                let gn = 1 + rng.below(5.min(p.n));
                // `none` uses no bank: bank shards would be duplicates (refused, see below).
                let bn = if method == Method::None { 1 } else { 1 + rng.below(5) };
                let full = one_shot(method, &p, emb);
                let mut parts = grid(method, &p, emb, gn, bn);
                // Merge order must not matter.
                for i in (1..parts.len()).rev() {
                    parts.swap(i, rng.below(i + 1));
                }
                let merged = merge(&parts, &Control::none()).unwrap();
                assert_eq!(merged.n_gallery, full.n_gallery);
                assert_eq!(merged.gallery, full.gallery, "stored gallery");
                assert_eq!(merged.query_bank, full.query_bank, "stored query bank");
                assert_eq!(merged.gallery_bank, full.gallery_bank, "stored gallery bank");
                let case = format!("{} {} n={} mq={} mg={} grid {gn}×{bn}{}", method.as_str(), if emb { "emb" } else { "sims" }, p.n, p.mq, p.mg, if ties { " ties" } else { "" });
                // Similarity mode reads the very same f32 similarities in every layout; embeddings
                // mode recomputes them per shard, and the GEMM rounds an entry differently depending
                // on the bank row's position in its block (gallery positions do not matter, see the
                // next test), so with bank shards the inputs already differ by float32 rounding.
                let exact = !emb || bn == 1;
                let bits64 = |v: &Option<Vec<f64>>| v.as_ref().map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                let bits32 = |v: &Option<Vec<f32>>| v.as_ref().map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                for (a, b) in [(&merged.query_stats, &full.query_stats), (&merged.gallery_stats, &full.gallery_stats)] {
                    assert_eq!(a.is_some(), b.is_some());
                    let (Some(a), Some(b)) = (a, b) else { continue };
                    assert_eq!((a.bank_rows, a.top_k, a.row_k), (b.bank_rows, b.top_k, b.row_k), "{case}");
                    assert_eq!(a.row_topk_idx, b.row_topk_idx, "{case}: row lists");
                    let close = |x: &Option<Vec<f64>>, y: &Option<Vec<f64>>, tol: f64, what: &str| {
                        for (j, (u, v)) in x.iter().flatten().zip(y.iter().flatten()).enumerate() {
                            assert!((u - v).abs() <= tol * v.abs().max(1.0), "{case}: {what}[{j}] {u} vs {v}");
                        }
                    };
                    if exact {
                        assert_eq!(bits32(&a.row_topk_score), bits32(&b.row_topk_score), "{case}: row scores");
                        assert_eq!(bits64(&a.top_mean), bits64(&b.top_mean), "{case}: top-K means");
                    } else {
                        let (x, y) = (a.row_topk_score.as_ref().map(|v| v.iter().map(|&s| s as f64).collect()), b.row_topk_score.as_ref().map(|v| v.iter().map(|&s| s as f64).collect()));
                        close(&x, &y, 1e-6, "row scores");
                        close(&a.top_mean, &b.top_mean, 1e-6, "top-K mean");
                    }
                    if bn == 1 {
                        assert_eq!(bits64(&a.lse), bits64(&b.lse), "{case}: L with one bank shard");
                    } else {
                        close(&a.lse, &b.lse, if exact { 1e-14 } else { 1e-6 }, "L");
                    }
                }
                let (s1, s2) = (scores(&merged, &p, emb), scores(&full, &p, emb));
                let mut ident = 0;
                let cols = full.n_gallery;
                for (i, (&a, &b)) in s1.iter().zip(&s2).enumerate() {
                    let u = if exact {
                        // 2 ulp of float32 of the score itself.
                        ulps(a, b)
                    } else {
                        // Inputs differ by float32 rounding: 2 ulp at the scale of the row's scores
                        // (a score that cancels to near 0 keeps the absolute error of its terms).
                        let row = &s2[i / cols * cols..(i / cols + 1) * cols];
                        let mag = row.iter().fold(0f32, |m, x| m.max(x.abs()));
                        let ulp = f32::from_bits(mag.to_bits() + 1) - mag;
                        ((a - b).abs() / ulp).ceil() as u64
                    };
                    assert!(u <= 2, "{case}: score {i}: {a} vs {b} ({u} ulp{})", if exact { "" } else { " at the row scale" });
                    if exact {
                        max_ulps = max_ulps.max(u);
                    } else {
                        max_ulps_scaled = max_ulps_scaled.max(u);
                    }
                    ident += usize::from(a.to_bits() == b.to_bits());
                }
                total += s1.len();
                identical += ident;
                by_case.push(format!("{case}: {ident}/{} bit-identical", s1.len()));
            }
        }
    }
    for c in &by_case {
        println!("{c}");
    }
    println!("shard grids: {identical}/{total} scores bit-identical; max {max_ulps} ulp (similarity mode, gallery-only shards), max {max_ulps_scaled} ulp at the row scale (embeddings mode with bank shards)");
}

#[test]
fn gallery_only_shards_are_bit_identical() {
    // One bank shard: every statistic is a concatenation or an exact selection.
    let mut rng = Rng(77);
    // Gallery-dependent methods (SN / DBSN) cannot be fitted by shards (their potentials need the whole gallery).
    for method in Method::ALL.into_iter().filter(|m| !m.info().gallery_dependent) {
        for emb in [true, false] {
            let p = problem(&mut rng, false);
            let full = one_shot(method, &p, emb);
            let merged = merge(&grid(method, &p, emb, 1 + rng.below(5), 1), &Control::none()).unwrap();
            let (a, b) = (scores(&merged, &p, emb), scores(&full, &p, emb));
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{} {}", method.as_str(), emb);
        }
    }
}

#[test]
fn gallery_ranges_may_split_the_banks_differently() {
    let mut rng = Rng(21);
    for emb in [true, false] {
        let p = problem(&mut rng, false);
        let full = one_shot(Method::DualDis, &p, emb);
        let mut parts: Vec<PartialFit> = (0..2).map(|j| shard(Method::DualDis, &p, emb, (0, 2), (j, 2), params())).collect();
        parts.extend((0..3).map(|j| shard(Method::DualDis, &p, emb, (1, 2), (j, 3), params())));
        let merged = merge(&parts, &Control::none()).unwrap();
        assert_eq!(merged.query_bank, full.query_bank);
        let (a, b) = (scores(&merged, &p, emb), scores(&full, &p, emb));
        for (x, y) in a.iter().zip(&b) {
            assert!(ulps(*x, *y) <= 2 || (x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }
}

fn code<T: std::fmt::Debug>(r: dbnorm::Result<T>) -> ErrorCode {
    r.expect_err("expected an error").code
}

#[test]
fn merge_refuses_bad_part_sets() {
    let mut rng = Rng(9);
    let p = problem(&mut rng, false);
    let ctl = Control::none();
    for emb in [true, false] {
        let parts = grid(Method::DualDis, &p, emb, 3, 2);
        assert!(merge(&parts, &ctl).is_ok());
        // nothing
        assert_eq!(code(merge::<PartialFit>(&[], &ctl)), ErrorCode::Merge);
        // missing part (a gap in the bank of one gallery range, then a whole gallery range)
        let mut gap = parts.clone();
        gap.remove(3);
        let e = merge(&gap, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::Merge);
        assert!(e.message.contains("missing"), "{}", e.message);
        let gap2: Vec<PartialFit> = parts.iter().filter(|q| q.gallery_range.start != 0).cloned().collect();
        assert!(merge(&gap2, &ctl).unwrap_err().message.contains("gallery rows 0.."));
        // duplicate part, and overlapping gallery ranges from another split
        let mut dup = parts.clone();
        dup.push(parts[1].clone());
        let e = merge(&dup, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::Merge);
        assert!(e.message.contains("overlap"), "{}", e.message);
        let mut other = parts.clone();
        other.push(shard(Method::DualDis, &p, emb, (0, 2), (0, 2), params()));
        assert!(merge(&other, &ctl).unwrap_err().message.contains("overlap"));
        // mismatches: β, method, totals
        let mut beta = parts.clone();
        beta[4] = shard(Method::DualDis, &p, emb, (2, 3), (0, 2), Params { beta_query: 19.0, ..params() });
        let e = merge(&beta, &ctl).unwrap_err();
        assert_eq!(e.code, ErrorCode::Merge);
        assert!(e.message.contains("parameters"), "{}", e.message);
        let mut meth = parts.clone();
        meth[0] = shard(Method::DualIs, &p, emb, (0, 3), (0, 2), params());
        assert!(merge(&meth, &ctl).unwrap_err().message.contains("method"));
        let mut tot = parts.clone();
        tot[2].gallery_range.total += 1;
        assert!(merge(&tot, &ctl).unwrap_err().message.contains("gallery total"));
        let mut qt = parts.clone();
        qt[5].query_stats.as_mut().unwrap().range.total += 1;
        assert!(merge(&qt, &ctl).unwrap_err().message.contains("queryBank total"));
    }
    // mode / metric / dimension
    let e = merge(&[grid(Method::Is, &p, true, 1, 1).remove(0), grid(Method::Is, &p, false, 1, 1).remove(0)], &ctl).unwrap_err();
    assert!(e.code == ErrorCode::Merge && e.message.contains("mode"), "{}", e.message);
    // parts of two different fits (same shapes, different data)
    let q = problem(&mut Rng(9), false);
    let mut other = Problem { gallery: Rng(1).mat(q.n, q.d), ..q };
    other.n = p.n;
    let mut mixed = grid(Method::Dis, &p, true, 2, 1);
    mixed[1] = shard(Method::Dis, &other, true, (1, 2), (0, 1), params());
    let _ = merge(&mixed, &ctl); // different gallery halves are legitimately different rows: accepted
    let mut same_rows = grid(Method::Dis, &p, true, 1, 2);
    same_rows[1] = shard(Method::Dis, &other, true, (0, 1), (1, 2), params());
    let e = merge(&same_rows, &ctl).unwrap_err();
    assert!(e.code == ErrorCode::Merge && e.message.contains("different gallery rows"), "{}", e.message);
}

#[test]
fn partial_files_are_marked_and_checked() {
    let mut rng = Rng(3);
    let p = problem(&mut rng, false);
    let part = grid(Method::Csls, &p, true, 2, 2).remove(1);
    let bytes = file::to_bytes(&part);
    // The full-normaliser loader recognises a partial and answers ERR_PARTIAL.
    let dir = std::env::temp_dir().join(format!("dbnorm-shard-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.dbn");
    file::save(&part, &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(code(dbnorm::persist::load(&path)), ErrorCode::Partial);
    assert_eq!(file::load(&path).unwrap(), part);
    // A full normaliser is not a partial.
    let full = one_shot(Method::Csls, &p, true);
    let fpath = dir.join("f.dbn");
    dbnorm::persist::save(&full, &fpath).unwrap();
    assert_eq!(code(file::load(&fpath)), ErrorCode::Format);
    std::fs::remove_dir_all(&dir).unwrap();
    // Corruption anywhere: ERR_FORMAT, never a panic.
    for i in (0..bytes.len()).step_by(7) {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        assert_eq!(code(file::from_bytes(&b, "x")), ErrorCode::Format, "flip at {i}");
    }
    for cut in [0, 10, 100, 296, bytes.len() - 1] {
        assert_eq!(code(file::from_bytes(&bytes[..cut], "x")), ErrorCode::Format, "cut at {cut}");
    }
}

#[test]
fn shard_ranges_are_validated() {
    let mut rng = Rng(5);
    let p = problem(&mut rng, false);
    let g = MatRef::new(&p.gallery, p.n, p.d, "g").unwrap();
    let q = MatRef::new(&p.qbank, p.mq, p.d, "q").unwrap();
    let fit = |spec: ShardSpec| PartialFit::fit_embeddings(Method::Is, params(), Metric::Cosine, g, Some(q), None, spec, &Control::none());
    assert!(fit(ShardSpec { gallery: Some((0, p.n)), ..Default::default() }).is_ok());
    assert_eq!(code(fit(ShardSpec { gallery: Some((1, p.n)), ..Default::default() })), ErrorCode::Param);
    assert_eq!(code(fit(ShardSpec { gallery: Some((0, p.n - 1)), ..Default::default() })), ErrorCode::Param);
    assert_eq!(code(fit(ShardSpec { query_bank: Some((usize::MAX, p.mq)), ..Default::default() })), ErrorCode::Param);
    assert_eq!(code(PartialFit::fit_embeddings(Method::Is, params(), Metric::Cosine, g, None, None, ShardSpec::default(), &Control::none())), ErrorCode::EmptyBank);
    // even_split: sizes differ by at most one and tile the axis
    for total in [1usize, 2, 7, 100, 1001] {
        for n in 1..=5.min(total) {
            let mut next = 0;
            for i in 0..n {
                let (s, c) = even_split(i, n, total).unwrap();
                assert_eq!(s, next);
                assert!(c == total / n || c == total / n + 1);
                next = s + c;
            }
            assert_eq!(next, total);
        }
    }
    assert_eq!(code(even_split(3, 3, 10)), ErrorCode::Param);
    assert_eq!(code(even_split(0, 4, 3)), ErrorCode::Param);
}
