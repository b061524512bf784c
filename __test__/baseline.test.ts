// The pure-JS baseline of the benchmark (benchmark/baseline.mjs) must compute what dbnorm computes:
// same fitted statistics, scores within 1e-4 (relative, floor 1) and identical top-k lists except
// where items tie exactly. Small data only: this is a correctness test, not a benchmark.

import { describe, expect, it } from 'vitest';

import * as baseline from '../benchmark/baseline.mjs';
import { Normalizer, evaluateSync, hubnessSync, similaritySync } from '../dist/index.js';
import { maxRelErr, randomMatrix, rng } from './helpers.js';

type Method = 'none' | 'is' | 'dis' | 'dual-is' | 'dual-dis' | 'csls' | 'nnn';
const METHODS: Method[] = ['none', 'is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn'];
// k = 1 leaves some rows ungated for each DIS gate on this data (41/48 and 26/48 gated), so both branches are compared.
const PARAMS = { betaQuery: 20, betaGallery: 1.5, k: 1, cslsK: 4, nnnK: 8, nnnAlpha: 0.75 };

/**
 * Top-k lists equal, except that two different items at the same position must tie exactly in
 * the baseline's scores (then either order is a legitimate tie-break of float differences).
 */
function expectSameTopK(got: Uint32Array, want: Uint32Array, wantScores: Float32Array, k: number, rows: number, ng: number): void {
  expect(got.length).toBe(want.length);
  let differing = 0;
  for (let i = 0; i < rows; i++) {
    for (let r = 0; r < k; r++) {
      const a = got[i * k + r]!;
      const b = want[i * k + r]!;
      if (a === b) continue;
      differing++;
      const sa = wantScores[i * ng + a]!;
      const sb = wantScores[i * ng + b]!;
      expect(Math.abs(sa - sb), `row ${i} rank ${r}: ${a} vs ${b}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(sb)));
    }
  }
  expect(differing).toBeLessThanOrEqual(Math.ceil(0.01 * rows * k));
}

describe('pure-JS baseline equals dbnorm', () => {
  const d = 24;
  const nq = 48;
  const ng = 60;
  const mq = 90;
  const mg = 35;
  const Q = randomMatrix(nq, d, 11);
  const G = randomMatrix(ng, d, 12);
  const R = randomMatrix(mq, d, 13);
  const H = randomMatrix(mg, d, 14);
  const sims = baseline.similarity(Q.data, nq, G.data, ng, d, 'cosine');

  it('similarity (cosine and dot)', () => {
    for (const metric of ['cosine', 'dot'] as const) {
      const want = baseline.similarity(Q.data, nq, G.data, ng, d, metric);
      const got = similaritySync(Q, G, { metric });
      expect(maxRelErr(got.data, want, 1)).toBeLessThan(1e-5);
    }
  });

  for (const method of METHODS) {
    it(`embeddings mode: ${method}`, () => {
      const fitted = baseline.fit(method, {
        gallery: G.data, galleryRows: ng, dim: d, metric: 'cosine',
        queryBank: R.data, queryBankRows: mq, galleryBank: H.data, galleryBankRows: mg,
      }, PARAMS);
      const norm = Normalizer.fitSync({ gallery: G, queryBank: R, galleryBank: H }, { method, ...PARAMS });

      // Fitted statistics.
      const st = norm.stats();
      if (fitted.lq) expect(maxRelErr(st.lseQuery!, fitted.lq, 1)).toBeLessThan(1e-4);
      if (fitted.lg) expect(maxRelErr(st.lseGallery!, fitted.lg, 1)).toBeLessThan(1e-4);
      if (fitted.activeQuery) expect(Array.from(st.activeQuery!)).toEqual(Array.from(fitted.activeQuery));
      if (fitted.activeGallery) expect(Array.from(st.activeGallery!)).toEqual(Array.from(fitted.activeGallery));
      if (fitted.columnMean) expect(maxRelErr(st.topMeanQuery!, fitted.columnMean, 1)).toBeLessThan(1e-4);

      // Scores and top-k.
      const want = baseline.scores(fitted, sims, nq);
      const got = norm.scoresSync(Q);
      expect(maxRelErr(got.data, want, 1)).toBeLessThan(1e-4);
      const k = 5;
      const wantTop = baseline.search(fitted, sims, nq, k);
      const gotTop = norm.searchSync(Q, { k });
      expectSameTopK(gotTop.indices, wantTop.indices, want, k, nq, ng);
      expect(maxRelErr(gotTop.scores, wantTop.scores, 1)).toBeLessThan(1e-4);

      // Evaluation and hubness of the same score matrix (evaluation on the first nq items, so that
      // the ground truth is the diagonal).
      const subWant = new Float32Array(nq * nq);
      for (let i = 0; i < nq; i++) subWant.set(want.subarray(i * ng, i * ng + nq), i * nq);
      const cpi = { captionsPerItem: 1 };
      const ev = evaluateSync({ data: subWant, rows: nq, cols: nq }, cpi);
      const evBase = baseline.evaluate(subWant, nq, nq, { captionsPerItem: 1 });
      expect(ev.R1).toBeCloseTo(evBase.R1, 10);
      expect(ev.R5).toBeCloseTo(evBase.R5, 10);
      expect(ev.R10).toBeCloseTo(evBase.R10, 10);
      expect(ev.MdR).toBeCloseTo(evBase.MdR, 10);
      expect(ev.MnR).toBeCloseTo(evBase.MnR, 10);
      const hb = hubnessSync({ data: want, rows: nq, cols: ng }, { k: 5 });
      const hbBase = baseline.hubness(want, nq, ng, 5);
      expect(Array.from(hb.occurrence)).toEqual(Array.from(hbBase.occurrence));
      expect(hb.skewness).toBeCloseTo(hbBase.skewness, 10);
    });
  }

  it('similarity mode, every method, with exact ties broken by index', () => {
    // Values on a coarse grid (multiples of 1/8): many exact ties in S and in the banks, so both
    // implementations must apply the same tie rules (score descending, then index ascending).
    const r = rng(99);
    const grid = (rows: number, cols: number) => {
      const data = new Float32Array(rows * cols);
      for (let i = 0; i < data.length; i++) data[i] = Math.round((2 * r() - 1) * 8) / 8;
      return { data, rows, cols };
    };
    const n = 30;
    const S = grid(40, n);
    const Pq = grid(50, n);
    const Pg = grid(20, n);
    const p = { ...PARAMS, betaQuery: 3, betaGallery: 2 };
    for (const method of METHODS) {
      const fitted = baseline.fitSimilarities(method, {
        queryBankSims: Pq.data, galleryBankSims: Pg.data, galleryCount: n, queryBankRows: 50, galleryBankRows: 20,
      }, p);
      const norm = Normalizer.fitSimilaritiesSync(
        { queryBankSims: Pq, galleryBankSims: Pg, galleryCount: n },
        method === 'none' ? { method } : { method, ...p },
      );
      const want = baseline.scores(fitted, S.data, 40);
      const got = norm.scoresSync(S);
      expect(maxRelErr(got.data, want, 1), method).toBeLessThan(1e-4);
      const k = 6;
      const wantTop = baseline.search(fitted, S.data, 40, k);
      const gotTop = norm.searchSync(S, { k });
      // On the grid the scores are exact in both (few float operations on dyadic values), so the
      // lists must be identical, ties included.
      expect(Array.from(gotTop.indices), method).toEqual(Array.from(wantTop.indices));
    }
  });
});
