//! Streamed retrieval metrics: R@K, MdR, MnR and mAP of a fitted [`Normalizer`] on test queries,
//! without materialising the `n_q × n_g` score matrix.
//!
//! A query's rank needs only, for each distinct score of its positives (a *level*), how many gallery
//! items score strictly above it and how many score exactly it ([`super::ranks`] turns those counts
//! into ranks and average precisions under every [`TieMode`]). Those counts are sums over gallery
//! chunks, so a pass over the gallery accumulates them per query:
//!
//! 1. **context pass** — the raw similarities of each (query tile × gallery tile) give the row's raw
//!    top-1 (which selects the DIS / DualDIS variant), the CSLS offset (mean of its K largest raw
//!    similarities) and the raw similarities of its positives; methods without a gate or offset skip
//!    the gallery tiles that hold none of the tile's positives;
//! 2. **count pass** — the tiles are recomputed, normalised exactly as `Normalizer::scores` does
//!    (`(scale·s − bias[v][j] − offset) as f32`), and compared with the levels.
//!
//! The tiles have exactly the shapes `Normalizer::scores` uses (64-query × `TILE_COLS` blocks of the
//! `dot_rows` kernel over the same slices), so every score is bit-identical to the materialised
//! matrix's and so are the metrics (tests assert equality). Memory: one `tile_rows × TILE_COLS` tile
//! per worker plus a few numbers per query — `O(n_q)` for the ranks, independent of `n_g`.
//!
//! Similarity mode streams the given `n_q × n_g` similarities a block of rows at a time through
//! `Normalizer::scores` (rows are scored independently, so the scores are the same).

use rayon::prelude::*;

use super::ranks::{
    check_ks, count_levels, rank_from_levels, rank_query, summarize, Direction, EvalOptions, GroundTruth, Positives,
    RetrievalMetrics, Scratch,
};
use crate::control::Control;
use crate::error::{Error, Result};
use crate::kernels::dot::dot_rows;
use crate::kernels::similarity::{prepare, TILE_COLS};
use crate::kernels::topk::TopValues;
use crate::matrix::MatRef;
use crate::methods::scorer::{Gate, Scorer};
use crate::normalizer::{Mode, Normalizer};

/// Queries per chunk: the same as `Normalizer::scores` (abort / progress granularity).
const QUERY_CHUNK: usize = 2048;
/// Queries per tile: the row blocks of `kernels::similarity::dot_abt_par`, which `Normalizer::scores`
/// uses, so that every similarity is computed by the same kernel call shape (tests assert equality).
const TILE_QUERIES: usize = 64;

/// Retrieval metrics of `norm` on `input` (the same input as `Normalizer::scores`: query embeddings
/// `n_q × d` in embeddings mode, raw similarities `n_q × n_g` in similarity mode), equal to
/// `retrieval_metrics(scores, gt, opts)` on the materialised scores.
///
/// `gt` is in the orientation queries × gallery items. `opts.direction` must be `T2v`: the other
/// direction is the same computation on a normaliser fitted the other way round (gallery = the test
/// queries), with the ground truth transposed (`ERR_PARAM` otherwise). Errors as `Normalizer::scores`
/// and `retrieval_metrics`; `ERR_NON_FINITE` if a normalised score of a query with positives is NaN.
pub fn retrieval_metrics_normalized(
    norm: &Normalizer,
    input: MatRef<'_>,
    gt: &GroundTruth,
    opts: &EvalOptions,
    ctl: &Control,
) -> Result<RetrievalMetrics> {
    check_ks(&opts.ks)?;
    if opts.direction != Direction::T2v {
        return Err(Error::param(
            "streamed evaluation ranks the gallery for each query (t2v); for v2t fit a normaliser with the \
             test queries as its gallery and pass the ground truth transposed",
        ));
    }
    let (ranks, aps) = match norm.mode {
        Mode::Embeddings { metric, dim } => {
            if input.cols != dim {
                return Err(Error::shape(format!("queries have dim {}, gallery has dim {dim}", input.cols)));
            }
            input.check_finite("queries")?;
            let pos = Positives::resolve(gt, input.rows, norm.n_gallery, Direction::T2v)?;
            let q = prepare(input, metric, "queries")?;
            {
                norm.check_sources()?;
                rank_embeddings(norm.scorer(), &q, input.rows, norm.gallery_view(dim), norm.n_gallery, dim, &pos, opts, ctl)?
            }
        }
        Mode::Similarities => rank_similarities(norm, input, gt, opts, ctl)?,
    };
    summarize(ranks, Some(aps), None, &opts.ks, opts.qbnorm_compat)
}

/// Per-query state of the context pass.
struct RowCtx {
    pos: Vec<u32>,
    /// Raw similarity of each positive (same order as `pos`).
    pos_raw: Vec<f32>,
    top1: usize,
    best: f32,
    top_vals: Option<TopValues>,
}

#[allow(clippy::too_many_arguments)]
fn rank_embeddings(
    sc: &Scorer,
    q: &[f32],
    nq: usize,
    gallery: crate::gallery::GalleryView<'_>,
    ng: usize,
    dim: usize,
    pos: &Positives<'_>,
    opts: &EvalOptions,
    ctl: &Control,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut ranks = vec![f64::NAN; nq];
    let mut aps = vec![f64::NAN; nq];
    let needs_ctx = !matches!(sc.gate, Gate::None) || sc.offset_k > 0;
    let n_tiles = ng.div_ceil(TILE_COLS);
    for r0 in (0..nq).step_by(QUERY_CHUNK) {
        ctl.check()?;
        let rows = (nq - r0).min(QUERY_CHUNK);
        let tr = TILE_QUERIES;
        let results: Vec<Result<()>> = ranks[r0..r0 + rows]
            .par_chunks_mut(tr)
            .zip(aps[r0..r0 + rows].par_chunks_mut(tr))
            .enumerate()
            .map(|(t, (r_out, ap_out))| {
                let i0 = r0 + t * tr;
                let tm = r_out.len();
                let a = &q[i0 * dim..(i0 + tm) * dim];
                let mut buf = vec![0f32; tm * TILE_COLS.min(ng.max(1))];
                let mut gbuf = Vec::new();
                let mut tile = |jb: usize, buf: &mut Vec<f32>| -> Result<usize> {
                    let j0 = jb * TILE_COLS;
                    let tn = (ng - j0).min(TILE_COLS);
                    buf.resize(tm * tn, 0.0);
                    dot_rows(a, tm, gallery.rows(j0, tn, &mut gbuf)?, tn, dim, buf, tn);
                    Ok(tn)
                };
                let mut ctx: Vec<RowCtx> = (0..tm)
                    .map(|r| {
                        let mut p = Vec::new();
                        pos.fill(i0 + r, &mut p);
                        let n = p.len();
                        RowCtx {
                            pos: p,
                            pos_raw: vec![0.0; n],
                            top1: 0,
                            best: f32::NEG_INFINITY,
                            top_vals: (sc.offset_k > 0).then(|| TopValues::new(sc.offset_k.min(ng))),
                        }
                    })
                    .collect();
                if ctx.iter().all(|c| c.pos.is_empty()) {
                    return Ok(());
                }
                // 1. context pass
                for jb in 0..n_tiles {
                    let j0 = jb * TILE_COLS;
                    let j1 = (j0 + TILE_COLS).min(ng);
                    let has_pos = |c: &RowCtx| {
                        let s = c.pos.partition_point(|&j| (j as usize) < j0);
                        s < c.pos.len() && (c.pos[s] as usize) < j1
                    };
                    if !needs_ctx && !ctx.iter().any(has_pos) {
                        continue;
                    }
                    let tn = tile(jb, &mut buf)?;
                    for (r, c) in ctx.iter_mut().enumerate() {
                        let row = &buf[r * tn..(r + 1) * tn];
                        if needs_ctx {
                            // First index of the row maximum, as `Scorer::row_context`.
                            for (jj, &s) in row.iter().enumerate() {
                                if s > c.best {
                                    c.best = s;
                                    c.top1 = j0 + jj;
                                }
                            }
                            if let Some(tv) = c.top_vals.as_mut() {
                                tv.extend(row);
                            }
                        }
                        let s = c.pos.partition_point(|&j| (j as usize) < j0);
                        for (i, &j) in c.pos.iter().enumerate().skip(s) {
                            if j as usize >= j1 {
                                break;
                            }
                            c.pos_raw[i] = row[j as usize - j0];
                        }
                    }
                }
                // Levels: the positives' normalised scores, descending and distinct, with multiplicities.
                struct Lv {
                    v: usize,
                    off: f64,
                    levels: Vec<f32>,
                    mult: Vec<u32>,
                    above: Vec<u32>,
                    equal: Vec<u32>,
                }
                let mut lv: Vec<Option<Lv>> = Vec::with_capacity(tm);
                for c in &ctx {
                    if c.pos.is_empty() {
                        lv.push(None);
                        continue;
                    }
                    let v = sc.variant_of(if matches!(sc.gate, Gate::None) { 0 } else { c.top1 });
                    let off = c.top_vals.as_ref().map(|tv| tv.mean()).unwrap_or(0.0);
                    let mut levels: Vec<f32> =
                        c.pos.iter().zip(&c.pos_raw).map(|(&j, &s)| score(sc, s, v, j as usize, off)).collect();
                    if let Some(x) = levels.iter().position(|x| x.is_nan()) {
                        return Err(nan_error(i0 + lv.len(), c.pos[x] as usize));
                    }
                    levels.sort_unstable_by(|a, b| b.total_cmp(a));
                    let mut mult: Vec<u32> = Vec::new();
                    let mut w = 0;
                    for i in 0..levels.len() {
                        let x = levels[i];
                        if w > 0 && levels[w - 1] == x {
                            mult[w - 1] += 1;
                        } else {
                            levels[w] = x;
                            mult.push(1);
                            w += 1;
                        }
                    }
                    levels.truncate(w);
                    lv.push(Some(Lv { v, off, above: vec![0; w], equal: vec![0; w], levels, mult }));
                }
                // 2. count pass
                let mut normed: Vec<f32> = Vec::with_capacity(TILE_COLS);
                let (mut a_tmp, mut e_tmp) = (Vec::new(), Vec::new());
                for jb in 0..n_tiles {
                    if jb % 16 == 0 {
                        ctl.check()?;
                    }
                    let j0 = jb * TILE_COLS;
                    let tn = tile(jb, &mut buf)?;
                    for (r, l) in lv.iter_mut().enumerate() {
                        let Some(l) = l.as_mut() else { continue };
                        normed.clear();
                        normed.extend(buf[r * tn..(r + 1) * tn].iter().enumerate().map(|(jj, &s)| score(sc, s, l.v, j0 + jj, l.off)));
                        if let Some(x) = normed.iter().position(|x| x.is_nan()) {
                            return Err(nan_error(i0 + r, j0 + x));
                        }
                        count_levels(&normed, &l.levels, &mut a_tmp, &mut e_tmp);
                        for (acc, x) in l.above.iter_mut().zip(&a_tmp) {
                            *acc += x;
                        }
                        for (acc, x) in l.equal.iter_mut().zip(&e_tmp) {
                            *acc += x;
                        }
                    }
                }
                for (r, l) in lv.iter().enumerate() {
                    if let Some(l) = l {
                        (r_out[r], ap_out[r]) = rank_from_levels(&l.mult, &l.above, &l.equal, ctx[r].pos.len(), opts.ties);
                    }
                }
                Ok(())
            })
            .collect();
        results.into_iter().collect::<Result<()>>()?;
        ctl.progress("evaluate", r0 + rows, nq);
    }
    Ok((ranks, aps))
}

/// A normalised score exactly as `Scorer` materialises it.
#[inline(always)]
fn score(sc: &Scorer, s: f32, v: usize, j: usize, off: f64) -> f32 {
    (sc.scale * s as f64 - sc.bias[v][j] - off) as f32
}

fn nan_error(q: usize, j: usize) -> Error {
    Error::non_finite(format!("scores: value at row {q}, column {j} is NaN (scores must not be NaN)"))
}

fn rank_similarities(
    norm: &Normalizer,
    input: MatRef<'_>,
    gt: &GroundTruth,
    opts: &EvalOptions,
    ctl: &Control,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (nq, ng) = (input.rows, input.cols);
    let pos = Positives::resolve(gt, nq, ng, Direction::T2v)?;
    let mut ranks = vec![f64::NAN; nq];
    let mut aps = vec![f64::NAN; nq];
    // About 16 MiB of scores per block.
    let block = ((1usize << 22) / ng.max(1)).clamp(1, 4096);
    for r0 in (0..nq).step_by(block) {
        ctl.check()?;
        let rows = (nq - r0).min(block);
        let view = MatRef::new(&input.data[r0 * ng..(r0 + rows) * ng], rows, ng, "similarities")?;
        let (scores, _) = norm.scores(view)?;
        if let Some(i) = scores.iter().position(|x| x.is_nan()) {
            return Err(nan_error(r0 + i / ng.max(1), i % ng.max(1)));
        }
        ranks[r0..r0 + rows].par_iter_mut().zip(aps[r0..r0 + rows].par_iter_mut()).enumerate().for_each_init(
            Scratch::default,
            |s, (r, (rk, ap))| {
                pos.fill(r0 + r, &mut s.pos);
                (*rk, *ap) = rank_query(&scores[r * ng..(r + 1) * ng], opts.ties, s);
            },
        );
        ctl.progress("evaluate", r0 + rows, nq);
    }
    Ok((ranks, aps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{retrieval_metrics, TieMode};
    use crate::kernels::similarity::Metric;
    use crate::methods::{Method, Params};

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Small integer-valued embeddings under `dot` make many exact score ties.
    fn data(rows: usize, dim: usize, seed: &mut u64, quantised: bool) -> Vec<f32> {
        (0..rows * dim).map(|_| if quantised { (lcg(seed) * 2.0).round() } else { lcg(seed) }).collect()
    }

    const METHODS: [Method; 7] =
        [Method::None, Method::Is, Method::Dis, Method::DualIs, Method::DualDis, Method::Csls, Method::Nnn];

    fn assert_same(a: &RetrievalMetrics, b: &RetrievalMetrics, what: &str) {
        // Bit-identical, NaN-aware.
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.ranks), bits(&b.ranks), "{what}: ranks");
        assert_eq!(format!("{:?}", a.recall), format!("{:?}", b.recall), "{what}: recall");
        assert_eq!(a.median_rank.map(f64::to_bits), b.median_rank.map(f64::to_bits), "{what}: MdR");
        assert_eq!(a.mean_rank.map(f64::to_bits), b.mean_rank.map(f64::to_bits), "{what}: MnR");
        assert_eq!(a.map.map(f64::to_bits), b.map.map(f64::to_bits), "{what}: mAP");
        assert_eq!((a.n, a.skipped), (b.n, b.skipped), "{what}: counts");
    }

    fn check(nq: usize, ng: usize, dim: usize, quantised: bool, metric: Metric, gts: &[GroundTruth]) {
        let mut s = 5u64 + nq as u64;
        let q = data(nq, dim, &mut s, quantised);
        let g = data(ng, dim, &mut s, quantised);
        let qb = data(300, dim, &mut s, quantised);
        let gb = data(200, dim, &mut s, quantised);
        let params = Params { beta_query: 5.0, beta_gallery: 2.0, k: 2, csls_k: 7, nnn_k: 9, nnn_alpha: 0.5, ..Params::default() };
        for method in METHODS {
            let norm = Normalizer::fit_embeddings(
                method,
                params,
                metric,
                MatRef::new(&g, ng, dim, "g").unwrap(),
                Some(MatRef::new(&qb, 300, dim, "qb").unwrap()),
                Some(MatRef::new(&gb, 200, dim, "gb").unwrap()),
                &Control::none(),
            )
            .unwrap();
            let qv = MatRef::new(&q, nq, dim, "queries").unwrap();
            let (full, _) = norm.scores(qv).unwrap();
            let full = MatRef::new(&full, nq, ng, "scores").unwrap();
            for gt in gts {
                for ties in [TieMode::Average, TieMode::Optimistic, TieMode::Pessimistic] {
                    for qbnorm_compat in [false, true] {
                        let opts = EvalOptions { ties, ks: vec![1, 5, 10, 50], qbnorm_compat, ..Default::default() };
                        let want = retrieval_metrics(full, gt, &opts).unwrap();
                        let got = retrieval_metrics_normalized(&norm, qv, gt, &opts, &Control::none()).unwrap();
                        assert_same(&got, &want, &format!("{method:?} {nq}x{ng} {gt:?} {ties:?}"));
                    }
                }
            }
        }
    }

    fn explicit(nq: usize, ng: usize) -> GroundTruth {
        GroundTruth::Explicit(
            (0..nq)
                .map(|i| match i % 5 {
                    0 => vec![],
                    1 => vec![(i % ng) as u32],
                    // many positives, unsorted, with a duplicate, spread over several gallery tiles
                    2 => (0..20).map(|t| ((i * 7 + t * 97) % ng) as u32).rev().chain([(i % ng) as u32]).collect(),
                    _ => vec![((i * 3) % ng) as u32, ((i * 3 + ng / 2) % ng) as u32],
                })
                .collect(),
        )
    }

    #[test]
    fn streamed_equals_materialised_with_ties_and_many_positives() {
        // dot products of small integers: heavy ties
        check(60, 60, 6, true, Metric::Dot, &[GroundTruth::Diagonal, explicit(60, 60)]);
        check(90, 30, 5, true, Metric::Dot, &[GroundTruth::CaptionsPerItem(3), explicit(90, 30)]);
    }

    #[test]
    fn streamed_equals_materialised_across_chunks_and_tiles() {
        // > QUERY_CHUNK queries and > TILE_COLS gallery items: several chunks and tiles, ragged edges
        check(2100, 1100, 8, false, Metric::Cosine, &[explicit(2100, 1100)]);
        check(2200, 1100, 4, true, Metric::Dot, &[GroundTruth::CaptionsPerItem(2)]);
    }

    #[test]
    fn similarity_mode_equals_materialised() {
        let (nq, ng, mq, mg) = (70, 50, 40, 30);
        let mut s = 9u64;
        let sims = data(nq * ng, 1, &mut s, true);
        let qbs = data(mq * ng, 1, &mut s, true);
        let gbs = data(mg * ng, 1, &mut s, true);
        let params = Params { beta_query: 3.0, beta_gallery: 2.0, k: 2, csls_k: 5, nnn_k: 4, nnn_alpha: 0.5, ..Params::default() };
        for method in METHODS {
            let norm = Normalizer::fit_similarities(
                method,
                params,
                Some(MatRef::new(&qbs, mq, ng, "q").unwrap()),
                Some(MatRef::new(&gbs, mg, ng, "g").unwrap()),
                Some(ng),
                &Control::none(),
            )
            .unwrap();
            let input = MatRef::new(&sims, nq, ng, "sims").unwrap();
            let (full, _) = norm.scores(input).unwrap();
            let full = MatRef::new(&full, nq, ng, "scores").unwrap();
            for gt in [explicit(nq, ng)] {
                let opts = EvalOptions::default();
                let want = retrieval_metrics(full, &gt, &opts).unwrap();
                let got = retrieval_metrics_normalized(&norm, input, &gt, &opts, &Control::none()).unwrap();
                assert_same(&got, &want, &format!("sims {method:?}"));
            }
        }
    }

    #[test]
    fn v2t_and_bad_shapes_are_errors() {
        let mut s = 1u64;
        let g = data(10, 3, &mut s, false);
        let norm = Normalizer::fit_embeddings(
            Method::None,
            Params::default(),
            Metric::Cosine,
            MatRef::new(&g, 10, 3, "g").unwrap(),
            None,
            None,
            &Control::none(),
        )
        .unwrap();
        let q = MatRef::new(&g, 10, 3, "q").unwrap();
        let v2t = EvalOptions { direction: Direction::V2t, ..Default::default() };
        let e = retrieval_metrics_normalized(&norm, q, &GroundTruth::Diagonal, &v2t, &Control::none()).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Param);
        let q2 = MatRef::new(&g[..9], 3, 3, "q").unwrap();
        let e = retrieval_metrics_normalized(&norm, q2, &GroundTruth::Diagonal, &EvalOptions::default(), &Control::none()).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Shape);
    }
}
