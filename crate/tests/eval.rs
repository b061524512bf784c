//! Integration tests of `dbnorm::eval`: an independent float64 reference (sort-based, tie positions by
//! enumeration), the peer oracles of `../shared/peer-oracles/oracles.json`, and error cases.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use dbnorm::eval::{
    hubness_from_occurrence, hubness_from_scores, hubness_from_topk, k_occurrence_from_scores, k_occurrence_from_topk,
    retrieval_from_ranks, retrieval_metrics, retrieval_metrics_topk, topk_indices, Direction, EvalOptions, GroundTruth,
    HubThreshold, HubnessOptions, RetrievalMetrics, TieMode,
};
use dbnorm::{ErrorCode, MatRef};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

/// SplitMix64: a tiny deterministic generator (no dev-dependency needed).
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
    /// Scores from a small integer set, so ties are everywhere.
    fn tied_matrix(&mut self, rows: usize, cols: usize, levels: usize) -> Vec<f32> {
        (0..rows * cols).map(|_| self.below(levels) as f32).collect()
    }
}

fn mat(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::new(data, rows, cols, "test").unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

#[track_caller]
fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(close(a, b, tol), "{what}: {a} vs {b}");
}

/// Round half to even at one decimal, as QB-Norm's presentation does (numpy `round`).
fn round1(x: f64) -> f64 {
    (x * 10.0).round_ties_even() / 10.0
}

/// `shared/peer-oracles/oracles.json`, found by walking up from the crate directory (the repository sits
/// beside `shared/`), or from `DBNORM_ORACLES`. `None` (with a printed reason) when absent.
fn oracles() -> Option<Value> {
    let path = std::env::var_os("DBNORM_ORACLES").map(PathBuf::from).or_else(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        manifest.ancestors().map(|d| d.join("shared").join("peer-oracles").join("oracles.json")).find(|p| p.is_file())
    });
    match path {
        Some(p) if p.is_file() => {
            let text = std::fs::read_to_string(&p).expect("read oracles.json");
            Some(serde_json::from_str(&text).expect("parse oracles.json"))
        }
        _ => {
            common::shared_missing(&format!(
                "peer oracles not found (no shared/peer-oracles/oracles.json above {}, DBNORM_ORACLES = {:?})",
                env!("CARGO_MANIFEST_DIR"),
                std::env::var_os("DBNORM_ORACLES")
            ));
            None
        }
    }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

// ---------------------------------------------------------------------------------------------------
// Independent float64 reference
// ---------------------------------------------------------------------------------------------------

/// Expected 0-based position of the j-th (1-based) of `p` positives in a shuffled block of `t` tied
/// items, by enumerating every placement (closed form only when that is too many).
struct TiePositions(HashMap<(usize, usize), Vec<f64>>);

impl TiePositions {
    fn get(&mut self, t: usize, p: usize) -> Vec<f64> {
        self.0
            .entry((t, p))
            .or_insert_with(|| {
                let mut count = 1f64;
                for i in 0..p {
                    count = count * (t - i) as f64 / (i + 1) as f64;
                }
                if count > 20_000.0 {
                    return (1..=p).map(|j| j as f64 * (t + 1) as f64 / (p + 1) as f64 - 1.0).collect();
                }
                let mut sums = vec![0.0; p];
                let mut n = 0.0;
                let mut comb: Vec<usize> = (0..p).collect();
                loop {
                    for (s, &c) in sums.iter_mut().zip(&comb) {
                        *s += c as f64;
                    }
                    n += 1.0;
                    // Next p-combination of 0..t in lexicographic order.
                    let mut i = p;
                    loop {
                        if i == 0 {
                            return sums.iter().map(|s| s / n).collect();
                        }
                        i -= 1;
                        if comb[i] < t - p + i {
                            break;
                        }
                    }
                    comb[i] += 1;
                    for k in i + 1..p {
                        comb[k] = comb[k - 1] + 1;
                    }
                }
            })
            .clone()
    }
}

/// Reference `(rank, AP)` of one query: sort the candidates, walk the tied blocks.
fn ref_query(row: &[f64], positives: &[usize], ties: TieMode, tp: &mut TiePositions) -> (f64, f64) {
    if positives.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let is_pos = |j: usize| positives.contains(&j);
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
    let mut positions = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end < order.len() && row[order[end]] == row[order[start]] {
            end += 1;
        }
        let t = end - start;
        let p = order[start..end].iter().filter(|&&j| is_pos(j)).count();
        if p > 0 {
            let within: Vec<f64> = match ties {
                TieMode::Average => tp.get(t, p),
                TieMode::Optimistic => (0..p).map(|j| j as f64).collect(),
                TieMode::Pessimistic => (0..p).map(|j| (t - p + j) as f64).collect(),
            };
            positions.extend(within.iter().map(|w| start as f64 + w));
        }
        start = end;
    }
    let mut unique = positives.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(positions.len(), unique.len());
    let ap =
        positions.iter().enumerate().map(|(i, r)| (i + 1) as f64 / (1.0 + r)).sum::<f64>() / positions.len() as f64;
    (positions[0], ap)
}

/// Positives per query in the orientation of `dir` (indices into the other axis).
fn ref_positives(gt: &GroundTruth, nq: usize, ng: usize, dir: Direction) -> Vec<Vec<usize>> {
    let t2v: Vec<Vec<usize>> = match gt {
        GroundTruth::Diagonal => (0..nq).map(|i| vec![i]).collect(),
        GroundTruth::CaptionsPerItem(c) => (0..nq).map(|i| vec![i / c]).collect(),
        GroundTruth::Explicit(l) => l.iter().map(|v| v.iter().map(|&j| j as usize).collect()).collect(),
    };
    match dir {
        Direction::T2v => t2v,
        Direction::V2t => {
            let mut inv = vec![Vec::new(); ng];
            for (i, l) in t2v.iter().enumerate() {
                for &j in l {
                    if !inv[j].contains(&i) {
                        inv[j].push(i);
                    }
                }
            }
            inv
        }
    }
}

struct RefMetrics {
    ranks: Vec<f64>,
    aps: Vec<f64>,
}

fn ref_metrics(s: &[f32], nq: usize, ng: usize, gt: &GroundTruth, dir: Direction, ties: TieMode) -> RefMetrics {
    let mut tp = TiePositions(HashMap::new());
    let pos = ref_positives(gt, nq, ng, dir);
    let (n_queries, n_cands) = match dir {
        Direction::T2v => (nq, ng),
        Direction::V2t => (ng, nq),
    };
    let mut ranks = Vec::new();
    let mut aps = Vec::new();
    for q in 0..n_queries {
        let row: Vec<f64> = (0..n_cands)
            .map(|c| match dir {
                Direction::T2v => s[q * ng + c] as f64,
                Direction::V2t => s[c * ng + q] as f64,
            })
            .collect();
        let (r, ap) = ref_query(&row, &pos[q], ties, &mut tp);
        ranks.push(r);
        aps.push(ap);
    }
    RefMetrics { ranks, aps }
}

fn check_against_ref(m: &RetrievalMetrics, r: &RefMetrics, ks: &[usize], qbnorm: bool, what: &str) {
    assert_eq!(m.ranks.len(), r.ranks.len(), "{what}: rank count");
    for (q, (a, b)) in m.ranks.iter().zip(&r.ranks).enumerate() {
        assert_close(*a, *b, 1e-12, &format!("{what}: rank of query {q}"));
    }
    let ev: Vec<f64> = r.ranks.iter().copied().filter(|x| !x.is_nan()).collect();
    let n = ev.len();
    assert_eq!(m.n, n, "{what}: n");
    assert_eq!(m.skipped, r.ranks.len() - n, "{what}: skipped");
    for (i, &k) in ks.iter().enumerate() {
        assert_eq!(m.recall[i].0, k);
        let hits = ev.iter().filter(|&&x| if qbnorm && k == 1 { x == 0.0 } else { x < k as f64 }).count();
        let want = if n == 0 { f64::NAN } else { 100.0 * hits as f64 / n as f64 };
        assert_close(m.recall[i].1, want, 1e-12, &format!("{what}: R@{k}"));
    }
    if n == 0 {
        assert!(m.median_rank.is_none() && m.mean_rank.is_none() && m.map.is_none(), "{what}: empty");
        return;
    }
    let mut sorted = ev.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    assert_close(m.median_rank.unwrap(), med + 1.0, 1e-12, &format!("{what}: MedR"));
    assert_close(m.mean_rank.unwrap(), ev.iter().sum::<f64>() / n as f64 + 1.0, 1e-12, &format!("{what}: MnR"));
    let aps: Vec<f64> = r.aps.iter().copied().filter(|x| !x.is_nan()).collect();
    assert_close(m.map.unwrap(), aps.iter().sum::<f64>() / n as f64, 1e-12, &format!("{what}: mAP"));
}

fn random_explicit(rng: &mut Rng, nq: usize, ng: usize, max_pos: usize) -> Vec<Vec<u32>> {
    (0..nq)
        .map(|_| {
            let p = rng.below(max_pos + 1);
            // Unsorted, possibly with duplicates: the library must normalise.
            (0..p).map(|_| rng.below(ng) as u32).collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// Retrieval: library vs reference
// ---------------------------------------------------------------------------------------------------

const ALL_TIES: [TieMode; 3] = [TieMode::Average, TieMode::Optimistic, TieMode::Pessimistic];
const BOTH_DIRS: [Direction; 2] = [Direction::T2v, Direction::V2t];

fn run_case(s: &[f32], nq: usize, ng: usize, gt: &GroundTruth, what: &str) {
    let ks = vec![1, 2, 3, 5, 10];
    for dir in BOTH_DIRS {
        for ties in ALL_TIES {
            let reference = ref_metrics(s, nq, ng, gt, dir, ties);
            for qbnorm in [false, true] {
                let opts = EvalOptions { direction: dir, ties, ks: ks.clone(), qbnorm_compat: qbnorm };
                let m = retrieval_metrics(mat(s, nq, ng), gt, &opts).unwrap();
                check_against_ref(&m, &reference, &ks, qbnorm, &format!("{what} {dir:?} {ties:?} qbnorm={qbnorm}"));
            }
        }
    }
}

#[test]
fn tie_positions_enumeration_matches_closed_form() {
    let mut tp = TiePositions(HashMap::new());
    for t in 1..=10 {
        for p in 1..=t {
            for (j, e) in tp.get(t, p).iter().enumerate() {
                let closed = (j + 1) as f64 * (t + 1) as f64 / (p + 1) as f64 - 1.0;
                assert_close(*e, closed, 1e-12, &format!("t={t} p={p} j={}", j + 1));
            }
        }
    }
}

#[test]
fn diagonal_matches_reference() {
    let mut rng = Rng(1);
    for trial in 0..40 {
        let n = 1 + rng.below(12);
        let levels = 2 + rng.below(4);
        let s = rng.tied_matrix(n, n, levels);
        run_case(&s, n, n, &GroundTruth::Diagonal, &format!("diag trial {trial} n={n}"));
    }
}

#[test]
fn captions_per_item_matches_reference() {
    let mut rng = Rng(2);
    for trial in 0..40 {
        let c = 1 + rng.below(5);
        let ng = 1 + rng.below(8);
        let nq = c * ng;
        let levels = 2 + rng.below(4);
        let s = rng.tied_matrix(nq, ng, levels);
        run_case(&s, nq, ng, &GroundTruth::CaptionsPerItem(c), &format!("captions trial {trial} {nq}x{ng} c={c}"));
    }
}

#[test]
fn explicit_matches_reference() {
    let mut rng = Rng(3);
    for trial in 0..60 {
        let nq = 1 + rng.below(12);
        let ng = 1 + rng.below(12);
        let levels = 2 + rng.below(4);
        let s = rng.tied_matrix(nq, ng, levels);
        let gt = GroundTruth::Explicit(random_explicit(&mut rng, nq, ng, 4));
        run_case(&s, nq, ng, &gt, &format!("explicit trial {trial} {nq}x{ng}"));
    }
}

#[test]
fn larger_matrices_match_reference() {
    // Wide enough for several (and a ragged last) v2t column block; closed-form tie positions.
    let mut rng = Rng(4);
    let (c, ng) = (3, 150);
    let nq = c * ng;
    let s = rng.tied_matrix(nq, ng, 7);
    run_case(&s, nq, ng, &GroundTruth::CaptionsPerItem(c), "captions 450x150");
    let gt = GroundTruth::Explicit(random_explicit(&mut rng, nq, ng, 6));
    run_case(&s, nq, ng, &gt, "explicit 450x150");
    // Many positives with many distinct scores: the one-pass (binary search) level counter.
    let (nq, ng) = (60, 90);
    let s = rng.tied_matrix(nq, ng, 80);
    let gt = GroundTruth::Explicit(random_explicit(&mut rng, nq, ng, 60));
    run_case(&s, nq, ng, &gt, "explicit 60x90, many levels");
    let s = rng.tied_matrix(40 * 3, 3, 200);
    run_case(&s, 120, 3, &GroundTruth::CaptionsPerItem(40), "v2t with 40 captions per item");
}

#[test]
fn v2t_equals_t2v_on_the_transpose() {
    let mut rng = Rng(5);
    let (c, ng) = (5, 203);
    let nq = c * ng;
    let s = rng.tied_matrix(nq, ng, 9);
    let mut st = vec![0f32; nq * ng];
    for i in 0..nq {
        for j in 0..ng {
            st[j * nq + i] = s[i * ng + j];
        }
    }
    let inv: Vec<Vec<u32>> = (0..ng).map(|j| ((j * c) as u32..((j + 1) * c) as u32).collect()).collect();
    for ties in ALL_TIES {
        let v2t = EvalOptions { direction: Direction::V2t, ties, ..Default::default() };
        let t2v = EvalOptions { direction: Direction::T2v, ties, ..Default::default() };
        let a = retrieval_metrics(mat(&s, nq, ng), &GroundTruth::CaptionsPerItem(c), &v2t).unwrap();
        let b = retrieval_metrics(mat(&st, ng, nq), &GroundTruth::Explicit(inv.clone()), &t2v).unwrap();
        assert_eq!(a, b, "{ties:?}");
    }
}

#[test]
fn output_does_not_depend_on_thread_count() {
    let mut rng = Rng(6);
    let (c, ng) = (5, 300);
    let nq = c * ng;
    let s = rng.tied_matrix(nq, ng, 11);
    let gt = GroundTruth::CaptionsPerItem(c);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut out = Vec::new();
            for direction in BOTH_DIRS {
                let opts = EvalOptions { direction, ..Default::default() };
                out.push(retrieval_metrics(mat(&s, nq, ng), &gt, &opts).unwrap());
            }
            let h = hubness_from_scores(mat(&s, nq, ng), &HubnessOptions::default()).unwrap();
            (out, h)
        })
    };
    // Debug text compares bit-for-bit and treats NaN fields as equal.
    assert_eq!(format!("{:?}", run(1)), format!("{:?}", run(3)));
}

#[test]
fn hand_computed_ties_and_map() {
    // Row [3, 3, 3, 1], positives {0, 1}: a block of T = 3 tied items holding p = 2 positives.
    let s = [3.0f32, 3.0, 3.0, 1.0];
    let gt = GroundTruth::Explicit(vec![vec![1, 0]]);
    let run = |ties| retrieval_metrics(mat(&s, 1, 4), &gt, &EvalOptions { ties, ..Default::default() }).unwrap();
    let avg = run(TieMode::Average);
    // First positive: t/(p+1) = 1/3; positions 1/3 and 5/3; AP = (1/(4/3) + 2/(8/3)) / 2 = 0.75.
    assert_close(avg.ranks[0], 1.0 / 3.0, 1e-15, "avg rank");
    assert_close(avg.map.unwrap(), 0.75, 1e-15, "avg mAP");
    let opt = run(TieMode::Optimistic);
    assert_eq!(opt.ranks[0], 0.0);
    assert_close(opt.map.unwrap(), 1.0, 1e-15, "opt mAP");
    let pes = run(TieMode::Pessimistic);
    assert_eq!(pes.ranks[0], 1.0);
    assert_close(pes.map.unwrap(), (0.5 + 2.0 / 3.0) / 2.0, 1e-15, "pes mAP");

    // A single positive tied with two others at the top: r = 1 (average), R@1 = 0, MedR = MnR = 2.
    let s = [5.0f32, 5.0, 5.0, 0.0];
    let m = retrieval_metrics(mat(&s, 1, 4), &GroundTruth::Explicit(vec![vec![2]]), &EvalOptions::default()).unwrap();
    assert_eq!(m.ranks, vec![1.0]);
    assert_eq!(m.median_rank, Some(2.0));
    assert_eq!(m.mean_rank, Some(2.0));
}

#[test]
fn infinite_scores_are_ranked_and_nan_is_rejected() {
    // -inf excludes an item without disturbing the others.
    let s = [f32::NEG_INFINITY, 2.0, 1.0, 3.0, f32::NEG_INFINITY, 1.0, 0.0, 0.0, f32::INFINITY];
    let m = retrieval_metrics(mat(&s, 3, 3), &GroundTruth::Diagonal, &EvalOptions::default()).unwrap();
    assert_eq!(m.ranks, vec![2.0, 2.0, 0.0]);
    let mut bad = s;
    bad[4] = f32::NAN;
    let e = retrieval_metrics(mat(&bad, 3, 3), &GroundTruth::Diagonal, &EvalOptions::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::NonFinite);
    assert!(e.message.contains("row 1, column 1"), "{}", e.message);
    let e = hubness_from_scores(mat(&bad, 3, 3), &HubnessOptions { k: 1, ..Default::default() }).unwrap_err();
    assert_eq!(e.code, ErrorCode::NonFinite);
}

#[test]
fn ground_truth_and_parameter_errors() {
    let s = vec![0.0f32; 12];
    let m = mat(&s, 4, 3);
    let opts = EvalOptions::default();
    let code = |gt: GroundTruth, opts: &EvalOptions| retrieval_metrics(m, &gt, opts).unwrap_err().code;
    assert_eq!(code(GroundTruth::Diagonal, &opts), ErrorCode::Shape);
    assert_eq!(code(GroundTruth::CaptionsPerItem(2), &opts), ErrorCode::Shape);
    assert_eq!(code(GroundTruth::CaptionsPerItem(0), &opts), ErrorCode::Param);
    assert_eq!(code(GroundTruth::Explicit(vec![vec![0]; 3]), &opts), ErrorCode::Shape);
    assert_eq!(code(GroundTruth::Explicit(vec![vec![0], vec![3], vec![], vec![1]]), &opts), ErrorCode::Shape);
    let zero_k = EvalOptions { ks: vec![1, 0], ..Default::default() };
    assert_eq!(code(GroundTruth::Explicit(vec![vec![0]; 4]), &zero_k), ErrorCode::Param);
    let e = retrieval_metrics(mat(&s, 6, 2), &GroundTruth::CaptionsPerItem(2), &opts).unwrap_err();
    assert!(e.message.contains("2 captions per item"), "{}", e.message);

    // Skipped queries: an empty list in t2v, a never-listed item in v2t.
    let gt = GroundTruth::Explicit(vec![vec![0], vec![], vec![1], vec![1]]);
    let t2v = retrieval_metrics(m, &gt, &opts).unwrap();
    assert_eq!((t2v.n, t2v.skipped), (3, 1));
    assert!(t2v.ranks[1].is_nan());
    let v2t = retrieval_metrics(m, &gt, &EvalOptions { direction: Direction::V2t, ..Default::default() }).unwrap();
    assert_eq!((v2t.n, v2t.skipped), (2, 1));
    assert!(v2t.ranks[2].is_nan());

    // Everything skipped: metrics undefined, not an error.
    let none = retrieval_metrics(m, &GroundTruth::Explicit(vec![vec![]; 4]), &opts).unwrap();
    assert_eq!(none.n, 0);
    assert!(none.recall.iter().all(|(_, v)| v.is_nan()));
    assert_eq!((none.median_rank, none.mean_rank, none.map), (None, None, None));
}

#[test]
fn summary_from_given_ranks() {
    let m = retrieval_from_ranks(vec![0.0, 0.5, 3.0, f64::NAN, 9.0], &[1, 5, 10], false).unwrap();
    assert_eq!(m.n, 4);
    assert_eq!(m.skipped, 1);
    assert_eq!(m.recall, vec![(1, 50.0), (5, 75.0), (10, 100.0)]);
    assert_eq!(m.median_rank, Some(2.75));
    assert_eq!(m.mean_rank, Some(12.5 / 4.0 + 1.0));
    assert_eq!(m.map, None);
    let q = retrieval_from_ranks(vec![0.0, 0.5, 3.0, 9.0], &[1], true).unwrap();
    assert_eq!(q.recall, vec![(1, 25.0)]);
    assert_close(q.geometric_mean_recall(&[1]).unwrap(), 25.0, 1e-12, "gmean");
    assert_eq!(q.geometric_mean_recall(&[1, 5]), None);
}

// ---------------------------------------------------------------------------------------------------
// Retrieval from top-k lists
// ---------------------------------------------------------------------------------------------------

/// Full ranking of a row (score descending, index ascending).
fn ref_order(row: &[f32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..row.len() as u32).collect();
    order.sort_by(|&a, &b| row[b as usize].partial_cmp(&row[a as usize]).unwrap().then(a.cmp(&b)));
    order
}

#[test]
fn topk_lists_match_full_ranking() {
    let mut rng = Rng(7);
    for trial in 0..60 {
        let nq = 1 + rng.below(15);
        let ng = 1 + rng.below(15);
        let k = 1 + rng.below(ng);
        let levels = 2 + rng.below(5);
        let s = rng.tied_matrix(nq, ng, levels);
        let gt = match trial % 3 {
            0 if nq == ng => GroundTruth::Diagonal,
            1 => GroundTruth::Explicit(random_explicit(&mut rng, nq, ng, 3)),
            _ => GroundTruth::Explicit((0..nq).map(|_| vec![rng.below(ng) as u32]).collect()),
        };
        let lists = topk_indices(mat(&s, nq, ng), k).unwrap();
        let pos = ref_positives(&gt, nq, ng, Direction::T2v);
        // Reference: position of the first positive in the full ranking, unknown (inf) beyond k.
        let mut ranks = Vec::new();
        let mut all_in = true;
        let mut aps = Vec::new();
        for q in 0..nq {
            let order = ref_order(&s[q * ng..(q + 1) * ng]);
            assert_eq!(&order[..k], &lists[q * k..(q + 1) * k], "top-k list of query {q}");
            if pos[q].is_empty() {
                ranks.push(f64::NAN);
                continue;
            }
            let mut unique = pos[q].clone();
            unique.sort_unstable();
            unique.dedup();
            let places: Vec<usize> =
                order.iter().enumerate().filter(|(_, j)| unique.contains(&(**j as usize))).map(|(r, _)| r).collect();
            ranks.push(if places[0] < k { places[0] as f64 } else { f64::INFINITY });
            all_in &= places.iter().all(|&r| r < k);
            aps.push(
                places.iter().enumerate().map(|(i, &r)| (i + 1) as f64 / (1.0 + r as f64)).sum::<f64>()
                    / places.len() as f64,
            );
        }
        let ks = vec![1, 2, 3, 5, 10, 20];
        let opts = EvalOptions { ks: ks.clone(), ..Default::default() };
        let m = retrieval_metrics_topk(&lists, nq, k, ng, &gt, &opts).unwrap();
        let what = format!("trial {trial}: {nq}x{ng} k={k}");
        assert_eq!(m.ranks.len(), nq);
        for (a, b) in m.ranks.iter().zip(&ranks) {
            assert!(close(*a, *b, 0.0), "{what}: {a} vs {b}");
        }
        let ev: Vec<f64> = ranks.iter().copied().filter(|r| !r.is_nan()).collect();
        let n = ev.len();
        assert_eq!(m.n, n);
        for (i, &kk) in ks.iter().enumerate() {
            let want = if n == 0 || kk > k {
                f64::NAN
            } else {
                100.0 * ev.iter().filter(|&&r| r < kk as f64).count() as f64 / n as f64
            };
            assert_close(m.recall[i].1, want, 1e-12, &format!("{what}: R@{kk}"));
        }
        let finite = ev.iter().all(|r| r.is_finite());
        assert_eq!(m.mean_rank.is_some(), n > 0 && finite, "{what}: mean defined");
        if let Some(mn) = m.mean_rank {
            assert_close(mn, ev.iter().sum::<f64>() / n as f64 + 1.0, 1e-12, &what);
        }
        let mut sorted = ev.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let med = (n > 0).then(|| if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 });
        match med {
            Some(v) if v.is_finite() => assert_close(m.median_rank.unwrap(), v + 1.0, 1e-12, &what),
            _ => assert_eq!(m.median_rank, None, "{what}"),
        }
        if n > 0 && all_in {
            assert_close(m.map.unwrap(), aps.iter().sum::<f64>() / n as f64, 1e-12, &what);
        } else {
            assert_eq!(m.map, None, "{what}");
        }
    }
}

#[test]
fn topk_errors() {
    let lists = [0u32, 1, 1, 0];
    let opts = EvalOptions::default();
    let gt = GroundTruth::Diagonal;
    let code = |l: &[u32], nq, k, ng, o: &EvalOptions| retrieval_metrics_topk(l, nq, k, ng, &gt, o).unwrap_err().code;
    assert_eq!(code(&lists, 2, 3, 2, &opts), ErrorCode::Shape);
    assert_eq!(code(&[0, 5, 1, 0], 2, 2, 2, &opts), ErrorCode::Shape);
    assert_eq!(code(&lists, 2, 0, 2, &opts), ErrorCode::Param);
    let v2t = EvalOptions { direction: Direction::V2t, ..Default::default() };
    assert_eq!(code(&lists, 2, 2, 2, &v2t), ErrorCode::Param);
    assert!(retrieval_metrics_topk(&lists, 2, 2, 2, &gt, &opts).is_ok());
}

// ---------------------------------------------------------------------------------------------------
// Hubness
// ---------------------------------------------------------------------------------------------------

struct RefHub {
    occ: Vec<u32>,
    skew: f64,
    skew_nz: f64,
    robin: f64,
    gini: f64,
    atkinson: f64,
    antihub: f64,
    hubs: Vec<u32>,
    hub_occ: f64,
    groupie: f64,
}

fn ref_skew(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let m2 = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let m3 = v.iter().map(|x| (x - mean).powi(3)).sum::<f64>() / n;
    if v.iter().all(|&x| x == v[0]) {
        f64::NAN
    } else {
        m3 / m2.powf(1.5)
    }
}

fn ref_hubness(occ: Vec<u32>, k: usize, nq: usize, h: f64, threshold: HubThreshold) -> RefHub {
    let ng = occ.len();
    let x: Vec<f64> = occ.iter().map(|&v| v as f64).collect();
    let slots = (k * nq) as f64;
    let mu = slots / ng as f64;
    let nz: Vec<f64> = x.iter().copied().filter(|&v| v > 0.0).collect();
    let sum: f64 = x.iter().sum();
    let pair: f64 = x.iter().map(|a| x.iter().map(|b| (a - b).abs()).sum::<f64>()).sum();
    let thr = match threshold {
        HubThreshold::Mean => h * mu,
        HubThreshold::Peer => h * k as f64,
    };
    let hubs: Vec<u32> = (0..ng as u32).filter(|&j| x[j as usize] >= thr).collect();
    RefHub {
        skew: ref_skew(&x),
        skew_nz: if nz.is_empty() { f64::NAN } else { ref_skew(&nz) },
        robin: x.iter().map(|v| (v - mu).abs()).sum::<f64>() / (2.0 * slots),
        gini: if sum == 0.0 { f64::NAN } else { pair / (2.0 * ng as f64 * sum) },
        atkinson: 1.0 - (x.iter().map(|v| v.sqrt()).sum::<f64>() / ng as f64).powi(2) / mu,
        antihub: x.iter().filter(|&&v| v == 0.0).count() as f64 / ng as f64,
        hub_occ: hubs.iter().map(|&j| x[j as usize]).sum::<f64>() / slots,
        groupie: x.iter().copied().fold(0.0, f64::max) / slots,
        hubs,
        occ,
    }
}

#[test]
fn hubness_matches_reference() {
    let mut rng = Rng(8);
    for trial in 0..80 {
        let nq = 1 + rng.below(40);
        let ng = 1 + rng.below(25);
        let k = 1 + rng.below(ng.min(6));
        let levels = 2 + rng.below(6);
        let s = rng.tied_matrix(nq, ng, levels);
        let mut occ = vec![0u32; ng];
        for q in 0..nq {
            for &j in &ref_order(&s[q * ng..(q + 1) * ng])[..k] {
                occ[j as usize] += 1;
            }
        }
        assert_eq!(k_occurrence_from_scores(mat(&s, nq, ng), k).unwrap(), occ, "trial {trial}");
        for threshold in [HubThreshold::Mean, HubThreshold::Peer] {
            let h = [1.5, 2.0, 3.0][rng.below(3)];
            let opts = HubnessOptions { k, hub_factor: h, threshold };
            let got = hubness_from_scores(mat(&s, nq, ng), &opts).unwrap();
            let want = ref_hubness(occ.clone(), k, nq, h, threshold);
            let what = format!("trial {trial} {nq}x{ng} k={k} h={h} {threshold:?}");
            assert_eq!(got.occurrence, want.occ, "{what}");
            assert_close(got.skewness, want.skew, 1e-10, &format!("{what}: skewness"));
            assert_close(got.skewness_nonzero, want.skew_nz, 1e-10, &format!("{what}: skewness nonzero"));
            assert_close(got.robin_hood, want.robin, 1e-12, &format!("{what}: robin hood"));
            assert_close(got.gini, want.gini, 1e-12, &format!("{what}: gini"));
            assert_close(got.atkinson, want.atkinson, 1e-12, &format!("{what}: atkinson"));
            assert_close(got.antihub_rate, want.antihub, 0.0, &format!("{what}: antihub"));
            assert_eq!(got.hubs, want.hubs, "{what}: hubs");
            assert_close(got.hub_occurrence, want.hub_occ, 1e-12, &format!("{what}: hub occurrence"));
            assert_close(got.groupie_ratio, want.groupie, 1e-12, &format!("{what}: groupie"));
            assert_close(got.mean_occurrence, (k * nq) as f64 / ng as f64, 1e-15, &what);
            assert_eq!((got.k, got.n_query, got.n_gallery), (k, nq, ng));

            let lists = topk_indices(mat(&s, nq, ng), k).unwrap();
            assert_eq!(k_occurrence_from_topk(&lists, nq, k, ng).unwrap(), occ, "{what}: from lists");
            let from_lists = hubness_from_topk(&lists, nq, k, ng, &opts).unwrap();
            // Debug text compares NaN fields as equal.
            assert_eq!(format!("{from_lists:?}"), format!("{got:?}"), "{what}: from lists");
        }
    }
}

#[test]
fn skewness_is_nan_exactly_when_occurrences_are_equal() {
    let opts = HubnessOptions::default();
    let flat = hubness_from_occurrence(vec![7; 9], 7, 9, &opts).unwrap();
    assert!(flat.skewness.is_nan() && flat.skewness_nonzero.is_nan());
    assert_eq!((flat.robin_hood, flat.gini), (0.0, 0.0));
    assert!(flat.atkinson.abs() < 1e-15);
    // Large, nearly equal counts: a float m2 could round, the integer test does not.
    let mut occ = vec![1_000_000u32; 1000];
    occ[0] += 1;
    occ[1] -= 1;
    let h = hubness_from_occurrence(occ, 1000, 1_000_000, &opts).unwrap();
    assert!(h.skewness.is_finite() && h.skewness.abs() < 1e-9, "{}", h.skewness);
    // Zeros are included by default and dropped by the nonzero variant.
    let z = hubness_from_occurrence(vec![0, 0, 3, 3], 1, 6, &opts).unwrap();
    assert!(z.skewness.abs() < 1e-15);
    assert!(z.skewness_nonzero.is_nan());
}

#[test]
fn hub_thresholds_differ_when_rectangular() {
    // 25 queries, 5 items, k = 1, perfectly uniform: μ = 5. Peers (N ≥ 2k = 2) call every item a hub.
    let opts = |threshold| HubnessOptions { k: 1, hub_factor: 2.0, threshold };
    let mean = hubness_from_occurrence(vec![5; 5], 1, 25, &opts(HubThreshold::Mean)).unwrap();
    assert!(mean.hubs.is_empty());
    assert_eq!(mean.hub_threshold, 10.0);
    let peer = hubness_from_occurrence(vec![5; 5], 1, 25, &opts(HubThreshold::Peer)).unwrap();
    assert_eq!(peer.hubs, vec![0, 1, 2, 3, 4]);
    assert_eq!(peer.hub_occurrence, 1.0);
}

#[test]
fn hubness_errors() {
    let s = vec![0.0f32; 6];
    let m = mat(&s, 2, 3);
    let code = |opts: HubnessOptions| hubness_from_scores(m, &opts).unwrap_err().code;
    assert_eq!(code(HubnessOptions { k: 0, ..Default::default() }), ErrorCode::Param);
    assert_eq!(code(HubnessOptions { k: 4, ..Default::default() }), ErrorCode::Param);
    assert_eq!(code(HubnessOptions { k: 1, hub_factor: 0.0, ..Default::default() }), ErrorCode::Param);
    assert_eq!(code(HubnessOptions { k: 1, hub_factor: f64::NAN, ..Default::default() }), ErrorCode::Param);
    let opts = HubnessOptions { k: 2, ..Default::default() };
    assert_eq!(hubness_from_topk(&[0, 1], 1, 1, 3, &opts).unwrap_err().code, ErrorCode::Param);
    assert_eq!(hubness_from_topk(&[0, 3], 1, 2, 3, &opts).unwrap_err().code, ErrorCode::Shape);
    assert_eq!(hubness_from_topk(&[0, 1, 2], 1, 2, 3, &opts).unwrap_err().code, ErrorCode::Shape);
    assert_eq!(hubness_from_occurrence(vec![], 1, 1, &opts).unwrap_err().code, ErrorCode::Shape);
}

#[test]
fn row_topk_large_k_path_matches_small_k_path() {
    let mut rng = Rng(9);
    let (nq, ng) = (20, 300);
    let s = rng.tied_matrix(nq, ng, 5);
    let k = 150;
    let lists = topk_indices(mat(&s, nq, ng), k).unwrap();
    for q in 0..nq {
        assert_eq!(&lists[q * k..(q + 1) * k], &ref_order(&s[q * ng..(q + 1) * ng])[..k]);
    }
}

// ---------------------------------------------------------------------------------------------------
// Peer oracles
// ---------------------------------------------------------------------------------------------------

#[test]
fn oracle_toy5_distance_hubness() {
    let Some(o) = oracles() else { return };
    let toy = &o["toy5_distance"];
    let d: Vec<Vec<f64>> = toy["distance_matrix"].as_array().unwrap().iter().map(f64s).collect();
    let n = d.len();
    // Distances become scores (higher is better); self is excluded with -inf.
    let mut s = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            s[i * n + j] = if i == j { f32::NEG_INFINITY } else { -(d[i][j] as f32) };
        }
    }
    let per_k = toy["derived_per_k"].as_object().unwrap();
    assert_eq!(per_k.len(), 4);
    for (k_str, want) in per_k {
        let k: usize = k_str.parse().unwrap();
        let lists = topk_indices(mat(&s, n, n), k).unwrap();
        let knn: Vec<u32> = want["knn_lists"].as_array().unwrap().iter().flat_map(u32s).collect();
        assert_eq!(lists, knn, "k={k}: knn lists");
        for threshold in [HubThreshold::Mean, HubThreshold::Peer] {
            let h = hubness_from_scores(mat(&s, n, n), &HubnessOptions { k, hub_factor: 2.0, threshold }).unwrap();
            let what = format!("toy5 k={k} {threshold:?}");
            assert_eq!(h.occurrence, u32s(&want["k_occurrence"]), "{what}");
            match want["k_skewness"].as_f64() {
                Some(v) => assert_close(h.skewness, v, 1e-12, &format!("{what}: skewness")),
                None => assert!(h.skewness.is_nan(), "{what}: skewness should be NaN, got {}", h.skewness),
            }
            assert_close(h.robin_hood, want["robinhood"].as_f64().unwrap(), 1e-12, &format!("{what}: robin hood"));
            assert_close(h.gini, want["gini"].as_f64().unwrap(), 1e-12, &format!("{what}: gini"));
            assert_close(h.atkinson, want["atkinson_eps0_5"].as_f64().unwrap(), 1e-12, &format!("{what}: atkinson"));
            assert_close(
                h.antihub_rate,
                want["antihub_occurrence"].as_f64().unwrap(),
                1e-12,
                &format!("{what}: antihub"),
            );
            assert_eq!(h.hubs, u32s(&want["hubs"]), "{what}: hubs");
            assert_close(
                h.hub_occurrence,
                want["hub_occurrence"].as_f64().unwrap(),
                1e-12,
                &format!("{what}: hub occ"),
            );
            assert_close(h.groupie_ratio, want["groupie_ratio"].as_f64().unwrap(), 1e-12, &format!("{what}: groupie"));
            if k <= 2 {
                // docs/methods.md §7: the nonzero skewness is 1/√2 at k = 1 and k = 2.
                assert_close(h.skewness_nonzero, std::f64::consts::FRAC_1_SQRT_2, 1e-12, &format!("{what}: nonzero"));
            }
        }
    }
    // The peer-test value, to its 10 printed decimals.
    let peer = &toy["hubness_k2_skewness"];
    let h = hubness_from_scores(mat(&s, n, n), &HubnessOptions { k: 2, ..Default::default() }).unwrap();
    assert!((h.skewness - peer["value"].as_f64().unwrap()).abs() < 1e-10, "k=2 skewness {}", h.skewness);
    assert!((h.skewness - -0.2561204163).abs() < 1e-10);
}

#[test]
fn oracle_qbnorm_eval_metric_cases() {
    let Some(o) = oracles() else { return };
    let cases = o["qbnorm_eval_metric_cases"]["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 4);
    let ks = vec![1, 5, 10, 50];
    for (name, case) in cases {
        let rows: Vec<Vec<f64>> = case["sims"].as_array().unwrap().iter().map(f64s).collect();
        let (nq, ng) = (rows.len(), rows[0].len());
        let s: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let gt = GroundTruth::CaptionsPerItem(nq / ng);
        for (dir, key) in [(Direction::T2v, "t2v"), (Direction::V2t, "v2t")] {
            let want = &case[key];
            let get = |f: &str| want[f].as_f64().unwrap();
            let opts = EvalOptions { direction: dir, ties: TieMode::Average, ks: ks.clone(), qbnorm_compat: true };
            let m = retrieval_metrics(mat(&s, nq, ng), &gt, &opts).unwrap();
            let what = format!("{name} {key}");
            for (k, field) in [(1, "R1"), (5, "R5"), (10, "R10"), (50, "R50")] {
                assert_eq!(round1(m.recall_at(k).unwrap()), get(field), "{what}: {field}");
            }
            assert_eq!(round1(m.median_rank.unwrap()), get("MedR"), "{what}: MedR");
            assert_eq!(round1(m.mean_rank.unwrap()), get("MeanR"), "{what}: MeanR");
            let gm = m.geometric_mean_recall(&[1, 5, 10]).unwrap();
            assert_eq!(round1(gm), get("geometric_mean_R1-R5-R10"), "{what}: gmean");

            // dbnorm's default differs from QB-Norm only in R@1, and only for a GT tied at the top.
            let plain =
                retrieval_metrics(mat(&s, nq, ng), &gt, &EvalOptions { qbnorm_compat: false, ..opts.clone() }).unwrap();
            assert_eq!(plain.ranks, m.ranks);
            assert_eq!(plain.median_rank, m.median_rank);
            if name == "tie_partial_4x4" && key == "t2v" {
                assert_eq!(plain.recall_at(1), Some(50.0), "{what}: default R@1");
                assert_eq!(round1(plain.median_rank.unwrap()), 1.8);
                assert_eq!(round1(plain.mean_rank.unwrap()), 1.9);
            } else {
                assert_eq!(plain.recall, m.recall, "{what}");
            }
        }
    }
}

#[test]
fn oracle_rectangular_convention_example() {
    let Some(o) = oracles() else { return };
    let ex = &o["rectangular_convention_example"];
    let lists: Vec<u32> = ex["nn_ind"].as_array().unwrap().iter().flat_map(u32s).collect();
    let nq = ex["n_query"].as_u64().unwrap() as usize;
    let ng = ex["n_gallery"].as_u64().unwrap() as usize;
    let k = ex["k"].as_u64().unwrap() as usize;
    let want = &ex["unambiguous"];
    let get = |f: &str| want[f].as_f64().unwrap();
    for (threshold, thr) in [(HubThreshold::Mean, 1.2), (HubThreshold::Peer, 2.0)] {
        let h = hubness_from_topk(&lists, nq, k, ng, &HubnessOptions { k, hub_factor: 2.0, threshold }).unwrap();
        let what = format!("rectangular {threshold:?}");
        assert_eq!(h.occurrence, u32s(&want["k_occurrence"]), "{what}");
        assert_close(h.skewness, get("k_skewness"), 1e-12, &format!("{what}: skewness"));
        assert_close(h.antihub_rate, get("antihub_occurrence"), 1e-12, &format!("{what}: antihub"));
        assert_close(h.robin_hood, get("robinhood"), 1e-12, &format!("{what}: robin hood"));
        assert_close(h.hub_occurrence, get("hub_occurrence (slots = k*n_query)"), 1e-12, &format!("{what}: hub occ"));
        assert_close(h.groupie_ratio, get("groupie_ratio (max/(k*n_query))"), 1e-12, &format!("{what}: groupie"));
        assert_close(h.hub_threshold, thr, 1e-15, &format!("{what}: threshold"));
        assert_eq!(h.hubs, vec![0], "{what}: hubs");
        assert_close(h.mean_occurrence, 0.6, 1e-15, &what);
    }
}
