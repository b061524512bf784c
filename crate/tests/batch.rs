//! Batch independence and the finite-score contract (issue 9).
//!
//! - A query's scores, top-k and reranked candidates are bit-identical whether it is searched alone,
//!   in a batch of any size 1..=40, or in a big batch (several query blocks), for every method and
//!   both metrics; `scores()` agrees bit for bit with `search()` and `rerank()` on the same items;
//!   the same holds on 1- and 2-thread pools.
//! - Finite scores: parameters beyond `MAX_PARAM` are `ERR_PARAM`; at the bound every path (fit,
//!   scores, search, rerank, augmented vectors) is finite under cosine and ranks exactly as the f64
//!   scores; a dot-metric / similarity-mode score beyond the f32 range is `ERR_PARAM`, never ±Inf.

use dbnorm::control::Control;
use dbnorm::kernels::similarity::Metric;
use dbnorm::methods::scorer::MAX_PARAM;
use dbnorm::methods::{Method, Params};
use dbnorm::normalizer::Normalizer;
use dbnorm::{ErrorCode, MatRef};

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
    fn v(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

fn mat(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::new(data, rows, cols, "test").unwrap()
}

fn params() -> Params {
    Params { beta_query: 20.0, beta_gallery: 1.0, k: 2, csls_k: 10, nnn_k: 16, nnn_alpha: 0.75, ..Params::default() }
}

struct Data {
    d: usize,
    ng: usize,
    nq: usize,
    g: Vec<f32>,
    qb: Vec<f32>,
    gb: Vec<f32>,
    q: Vec<f32>,
}

fn data() -> Data {
    // ng spans two gallery chunks (1024) with a tail; d is odd (SIMD tails); nq reaches several
    // query blocks (> 128 queries: the multi-block path).
    let (d, ng, nq) = (37, 1100, 300);
    let mut r = Rng(42);
    Data { d, ng, nq, g: r.v(ng * d), qb: r.v(200 * d), gb: r.v(150 * d), q: r.v(nq * d) }
}

fn fit(m: Method, metric: Metric, x: &Data, p: Params) -> Normalizer {
    Normalizer::fit_embeddings(m, p, metric, mat(&x.g, x.ng, x.d), Some(mat(&x.qb, 200, x.d)), Some(mat(&x.gb, 150, x.d)), &Control::none()).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn a_query_scores_the_same_alone_and_in_any_batch() {
    let x = data();
    let k = 7;
    for metric in [Metric::Cosine, Metric::Dot] {
        for m in Method::ALL {
            let n = fit(m, metric, &x, params());
            // Every query alone: the reference.
            let mut alone_idx = Vec::new();
            let mut alone_sc = Vec::new();
            let mut alone_full = Vec::new();
            for i in 0..x.nq {
                let q = mat(&x.q[i * x.d..(i + 1) * x.d], 1, x.d);
                let (ii, ss, ke) = n.search(q, k, &Control::none()).unwrap();
                assert_eq!(ke, k);
                alone_idx.extend(ii);
                alone_sc.extend(bits(&ss));
                alone_full.extend(bits(&n.scores(q).unwrap().0));
            }
            // Search scores are the scores() values at the returned items.
            for i in 0..x.nq {
                for r in 0..k {
                    let j = alone_idx[i * k + r] as usize;
                    assert_eq!(alone_sc[i * k + r], alone_full[i * x.ng + j], "{} {metric:?}: search vs scores, query {i}", m.as_str());
                }
            }
            // Batches of every size 1..=40 at varying offsets, and the whole set (several blocks).
            let mut sizes: Vec<(usize, usize)> = (1..=40).map(|b| ((b * 37) % (x.nq - b), b)).collect();
            sizes.push((0, x.nq));
            for (off, b) in sizes {
                let q = mat(&x.q[off * x.d..(off + b) * x.d], b, x.d);
                let (ii, ss, _) = n.search(q, k, &Control::none()).unwrap();
                assert_eq!(ii, alone_idx[off * k..(off + b) * k], "{} {metric:?}: top-k of batch {b} at {off}", m.as_str());
                assert_eq!(bits(&ss), alone_sc[off * k..(off + b) * k], "{} {metric:?}: scores of batch {b} at {off}", m.as_str());
                if b == x.nq || b % 8 == 1 {
                    let full = n.scores(q).unwrap().0;
                    assert_eq!(bits(&full), alone_full[off * x.ng..(off + b) * x.ng], "{} {metric:?}: scores() of batch {b}", m.as_str());
                }
            }
            // Rerank of the search's own candidates (which contain the raw top-1 only by chance,
            // so only the raw-context-free methods are compared value for value).
            if matches!(m, Method::None | Method::Is | Method::DualIs | Method::Nnn) {
                let q = mat(&x.q, x.nq, x.d);
                let (ri, rs) = n.rerank(q, &alone_idx, k).unwrap();
                assert_eq!(ri, alone_idx, "{}: rerank order", m.as_str());
                assert_eq!(bits(&rs), alone_sc, "{}: rerank scores", m.as_str());
            }
        }
    }
}

#[test]
fn batches_are_also_independent_of_the_thread_count() {
    let x = data();
    let pools: Vec<rayon::ThreadPool> = [1, 2].iter().map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).collect();
    for m in [Method::DualDis, Method::Csls] {
        let n = fit(m, Metric::Cosine, &x, params());
        let runs: Vec<(Vec<u32>, Vec<u32>, Vec<u32>)> = pools
            .iter()
            .map(|p| {
                p.install(|| {
                    let (i, s, _) = n.search(mat(&x.q, x.nq, x.d), 5, &Control::none()).unwrap();
                    let (i1, s1, _) = n.search(mat(&x.q[..3 * x.d], 3, x.d), 5, &Control::none()).unwrap();
                    (i, bits(&s), bits(&s1).into_iter().chain(i1).collect())
                })
            })
            .collect();
        assert!(runs[0] == runs[1], "{}: 1 vs 2 threads", m.as_str());
    }
}

#[test]
fn parameters_beyond_the_bound_are_refused() {
    let x = data();
    let cases: Vec<(Method, Params)> = vec![
        (Method::Is, Params { beta_query: 1e39, ..params() }),
        (Method::DualIs, Params { beta_gallery: MAX_PARAM * 1.0001, ..params() }),
        (Method::Dis, Params { beta_query: f64::INFINITY, ..params() }),
        (Method::Nnn, Params { nnn_alpha: 1e300, ..params() }),
    ];
    for (m, p) in cases {
        let e = Normalizer::fit_embeddings(m, p, Metric::Cosine, mat(&x.g, x.ng, x.d), Some(mat(&x.qb, 200, x.d)), Some(mat(&x.gb, 150, x.d)), &Control::none()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Param, "{}: {}", m.as_str(), e.message);
    }
}

/// At the bound (β = 1e30, α = 1e30) under cosine every path is finite, and search ranks exactly as
/// the f64 scores ℓ = scale·s − bias (sorted with the tie rule) computed here from the raw
/// similarities of the `none` method and the fitted biases.
#[test]
fn scores_at_the_bound_are_finite_and_rank_as_f64() {
    let x = data();
    let big = Params { beta_query: MAX_PARAM, beta_gallery: MAX_PARAM, nnn_alpha: MAX_PARAM, ..params() };
    let q = mat(&x.q[..20 * x.d], 20, x.d);
    let raw = fit(Method::None, Metric::Cosine, &x, params()).scores(q).unwrap().0;
    for m in Method::ALL {
        let n = fit(m, Metric::Cosine, &x, big);
        let (full, _) = n.scores(q).unwrap();
        assert!(full.iter().all(|v| v.is_finite()), "{}: scores()", m.as_str());
        let (idx, sc, ke) = n.search(q, 10, &Control::none()).unwrap();
        assert!(sc.iter().all(|v| v.is_finite()), "{}: search", m.as_str());
        let cands: Vec<u32> = (0..20).flat_map(|_| 0..x.ng as u32).collect();
        let (ri, rs) = n.rerank(q, &cands, x.ng).unwrap();
        assert!(rs.iter().all(|v| v.is_finite()), "{}: rerank", m.as_str());
        let (ag, _) = n.augmented_gallery().unwrap();
        assert!(ag.iter().all(|v| v.is_finite()), "{}: augmented gallery", m.as_str());
        let sc_ = n.scorer();
        for i in 0..20 {
            // rerank over every item = an independent full f64 sort (its context is the full row)
            assert_eq!(ri[i * x.ng..i * x.ng + ke], idx[i * ke..(i + 1) * ke], "{}: search vs full rerank, query {i}", m.as_str());
            if sc_.variants() == 1 && sc_.offset_k == 0 {
                let row = &raw[i * x.ng..(i + 1) * x.ng];
                let mut l: Vec<(f64, u32)> = row.iter().enumerate().map(|(j, &s)| (sc_.scale * s as f64 - sc_.bias[0][j], j as u32)).collect();
                dbnorm::kernels::topk::sort_ranked(&mut l);
                let want: Vec<u32> = l[..ke].iter().map(|p| p.1).collect();
                assert_eq!(idx[i * ke..(i + 1) * ke], want[..], "{}: f64 ranking, query {i}", m.as_str());
            }
        }
    }
}

/// Dot metric / precomputed similarities: s is bounded only by the input, so a score beyond f32 is a
/// coded error (never ±Inf); just inside, the scores are finite.
#[test]
fn scores_beyond_f32_are_refused_not_infinite() {
    let (ng, mq) = (5, 4);
    let bank: Vec<f32> = (0..mq * ng).map(|i| (i % 7) as f32 * 1e36).collect();
    let n = Normalizer::fit_similarities(Method::Is, Params { beta_query: 20.0, ..params() }, Some(mat(&bank, mq, ng)), None, None, &Control::none()).unwrap();
    let q: Vec<f32> = vec![3e38, -3e38, 1.0, 0.0, 2e37];
    let e = n.scores(mat(&q, 1, ng)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Param, "{}", e.message);
    let e = n.search(mat(&q, 1, ng), 3, &Control::none()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Param, "{}", e.message);
    let e = n.rerank(mat(&q[..3], 1, 3), &[0, 1, 2], 3).unwrap_err();
    assert_eq!(e.code, ErrorCode::Param, "{}", e.message);
    // ×1e-30: everything fits
    let small: Vec<f32> = q.iter().map(|v| v * 1e-30).collect();
    let (s, _) = n.scores(mat(&small, 1, ng)).unwrap();
    assert!(s.iter().all(|v| v.is_finite()));
    // The fit itself is range-safe: β·P up to 20·6e36 in the log-sum-exp.
    assert!(n.query_stats.as_ref().unwrap().lse.as_ref().unwrap().iter().all(|v| v.is_finite()));
}
