// SN and DualSN (DBSN, Sinkhorn normalisation) through the public API: defaults alone, both input
// modes, fit / fitSync / fitSimilarities, search / scores / rerank, the augmented vectors, the
// required τ outside cosine, and a float64 reference written here (log-domain Sinkhorn, plain loops).
import { describe, expect, it } from 'vitest';

import { DbnormError, Normalizer, resolveOptions } from '../dist/index.js';
import { METHOD_INFO } from '../dist/methods.js';
import { randomMatrix, refSimilarity } from './helpers.js';

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code + ': ' + (e as DbnormError).message;
  }
  throw new Error('did not throw');
}

/** log Σ exp(x_i / τ) over a list, max-shifted, float64. */
function lse(xs: number[], tau: number): number {
  let mx = -Infinity;
  for (const x of xs) mx = Math.max(mx, x / tau);
  let z = 0;
  for (const x of xs) z += Math.exp(x / tau - mx);
  return mx + Math.log(z);
}

/**
 * Reference Sinkhorn bias h_j = −τ·log u_j for the first `ng` rows of `rows` (n × m, gallery-side
 * rows × query bank): uniform marginals, T iterations, each updating v then u (docs/methods.md).
 */
function refBias(rows: number[][], ng: number, tau: number, iters: number): number[] {
  const n = rows.length;
  const m = rows[0]!.length;
  const lu = new Array<number>(n).fill(-Math.log(n));
  const lv = new Array<number>(m).fill(-Math.log(m));
  for (let t = 0; t < iters; t++) {
    for (let b = 0; b < m; b++) lv[b] = -Math.log(m) - lse(rows.map((r, i) => r[b]! + tau * lu[i]!), tau);
    for (let i = 0; i < n; i++) lu[i] = -Math.log(n) - lse(rows[i]!.map((x, b) => x + tau * lv[b]!), tau);
  }
  return lu.slice(0, ng).map((l) => -tau * l);
}

/** Rows of the transposed m × n matrix `p` (flat, row-major). */
function columns(p: ArrayLike<number>, m: number, n: number): number[][] {
  return Array.from({ length: n }, (_, j) => Array.from({ length: m }, (_, b) => p[b * n + j]!));
}

const D = 8;
const [NG, MQ, MG, NQ] = [40, 60, 30, 7];
const g = randomMatrix(NG, D, 11);
const qb = randomMatrix(MQ, D, 12);
const gb = randomMatrix(MG, D, 13);
const q = randomMatrix(NQ, D, 14);

describe('sn and dual-sn: registry and options', () => {
  it('are in the table with their codes, parameters and flags', () => {
    const sn = METHOD_INFO.find((m) => m.id === 'sn')!;
    const dual = METHOD_INFO.find((m) => m.id === 'dual-sn')!;
    expect(sn).toMatchObject({ queryBank: true, galleryBank: false, biasReducible: true, augmentedColumns: 1, persistCode: 7, crossBankSims: false });
    expect(dual).toMatchObject({ queryBank: true, galleryBank: true, biasReducible: true, augmentedColumns: 1, persistCode: 8, crossBankSims: true });
    expect(sn.params).toEqual(['tau', 'iterations', 'tol']);
    expect(dual.params).toEqual(['tau', 'iterations', 'tol']);
  });

  it('τ defaults to 0.01 on cosine embeddings only; the error says why', () => {
    expect(resolveOptions({ method: 'sn' }, true)).toMatchObject({ method: 'sn', tau: 0.01, iterations: 10, tol: 0 });
    expect(resolveOptions({ method: 'is' }, true)).toMatchObject({ tau: null });
    expect(code(() => resolveOptions({ method: 'dual-sn' }, false))).toMatch(/ERR_PARAM: tau is required .*temperature/);
    expect(code(() => resolveOptions({ method: 'sn', tau: 0 }, true))).toMatch(/ERR_PARAM: tau must be/);
    expect(code(() => resolveOptions({ method: 'sn', tau: 1e-31 }, true))).toMatch(/ERR_PARAM: tau must be/);
    expect(code(() => resolveOptions({ method: 'sn', iterations: 1.5 }, true))).toMatch(/ERR_PARAM: iterations must be an integer/);
    expect(code(() => resolveOptions({ method: 'sn', iterations: 100001 }, true))).toMatch(/ERR_PARAM: iterations must be an integer/);
    expect(code(() => resolveOptions({ method: 'sn', tol: -1 }, true))).toMatch(/ERR_PARAM: tol must be/);
    expect(resolveOptions({ method: 'sn', iterations: 0 }, true)).toMatchObject({ iterations: 0 });
  });
});

describe('sn and dual-sn: embeddings mode', () => {
  it("Normalizer.fit(data, { method: 'sn' }) alone works and matches the float64 reference", async () => {
    const n = await Normalizer.fit({ gallery: g, queryBank: qb }, { method: 'sn' });
    expect(n.options).toMatchObject({ method: 'sn', tau: 0.01, iterations: 10, tol: 0 });
    const pq = refSimilarity(qb.data, MQ, g.data, NG, D, 'cosine');
    const h = refBias(columns(pq, MQ, NG), NG, 0.01, 10);
    const s = refSimilarity(q.data, NQ, g.data, NG, D, 'cosine');
    const sc = await n.scores(q);
    for (let i = 0; i < NQ; i++)
      for (let j = 0; j < NG; j++) expect(Math.abs(sc.data[i * NG + j]! - (s[i * NG + j]! - h[j]!))).toBeLessThan(1e-4);
  });

  it('dual-sn stacks the gallery bank (scored against the query bank) under the gallery', async () => {
    const n = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb }, { method: 'dual-sn', tau: 0.05, iterations: 5 });
    const pq = refSimilarity(qb.data, MQ, g.data, NG, D, 'cosine');
    const ph = refSimilarity(qb.data, MQ, gb.data, MG, D, 'cosine');
    const h = refBias([...columns(pq, MQ, NG), ...columns(ph, MQ, MG)], NG, 0.05, 5);
    const s = refSimilarity(q.data, NQ, g.data, NG, D, 'cosine');
    const sc = n.scoresSync(q);
    for (let i = 0; i < NQ; i++)
      for (let j = 0; j < NG; j++) expect(Math.abs(sc.data[i * NG + j]! - (s[i * NG + j]! - h[j]!))).toBeLessThan(1e-4);
    expect(code(() => Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'dual-sn' }))).toMatch(/ERR_EMPTY_BANK: .*galleryBank/);
  });

  it('fit and fitSync agree; search, scores and rerank agree; augmented vectors reproduce scores', async () => {
    for (const method of ['sn', 'dual-sn'] as const) {
      const a = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb }, { method });
      const b = Normalizer.fitSync({ gallery: g, queryBank: qb, galleryBank: gb }, { method });
      const sc = await a.scores(q);
      expect(b.scoresSync(q).data).toEqual(sc.data);
      const top = await a.search(q, { k: 5 });
      for (let i = 0; i < NQ; i++) {
        const row = Array.from(sc.data.subarray(i * NG, (i + 1) * NG));
        const order = row.map((v, j) => [v, j] as const).sort((x, y) => y[0] - x[0] || x[1] - y[1]);
        expect(Array.from(top.indices.subarray(i * 5, i * 5 + 5))).toEqual(order.slice(0, 5).map((x) => x[1]));
      }
      // rerank over every item gives the search order
      const all = Array.from({ length: NQ }, () => Array.from({ length: NG }, (_, j) => j));
      const rr = await a.rerank(q, all);
      expect(Array.from(rr.indices).filter((_, t) => t % NG < 5)).toEqual(Array.from(top.indices));
      // [g; −h]·[q; 1] = s − h
      const ag = a.augmentedGallery();
      const aq = a.augmentQueries(q);
      expect(a.augmentedInfo()).toMatchObject({ scale: 1, offsetK: 0, extra: 1, gated: false });
      for (let i = 0; i < NQ; i++)
        for (let j = 0; j < NG; j++) {
          let ip = 0;
          for (let t = 0; t < D + 1; t++) ip += aq.data[i * (D + 1) + t]! * ag.data[j * (D + 1) + t]!;
          expect(Math.abs(ip - sc.data[i * NG + j]!)).toBeLessThan(1e-5);
        }
    }
  });

  it('save / load keeps the Sinkhorn potentials: scores bit-identical after a round trip', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-sn-'));
    try {
      for (const method of ['sn', 'dual-sn'] as const) {
        const n = Normalizer.fitSync({ gallery: g, queryBank: qb, galleryBank: qb }, { method, leakGuard: 'off' });
        const f = path.join(dir, `${method}.dbn`);
        n.saveSync(f);
        const m = Normalizer.loadSync(f);
        expect(m.options).toEqual(n.options);
        const a = n.scoresSync(q);
        const b = m.scoresSync(q);
        expect(Buffer.from(b.data.buffer).equals(Buffer.from(a.data.buffer))).toBe(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('iterations: 0 keeps the raw ranking', async () => {
    const n = await Normalizer.fit({ gallery: g, queryBank: qb }, { method: 'sn', iterations: 0 });
    const raw = await Normalizer.fit({ gallery: g }, { method: 'none' });
    expect((await n.search(q, { k: 10 })).indices).toEqual((await raw.search(q, { k: 10 })).indices);
  });
});

describe('sn and dual-sn: similarity mode', () => {
  const pq = Float32Array.from(refSimilarity(qb.data, MQ, g.data, NG, D, 'dot').map((x) => 100 * x));
  const ph = Float32Array.from(refSimilarity(qb.data, MQ, gb.data, MG, D, 'dot').map((x) => 100 * x));
  const s = Float32Array.from(refSimilarity(q.data, NQ, g.data, NG, D, 'dot').map((x) => 100 * x));
  const queryBankSims = { data: pq, rows: MQ, cols: NG };
  const queryBankGalleryBankSims = { data: ph, rows: MQ, cols: MG };

  it('τ is required; fitSimilarities matches the reference on ×100 logits', async () => {
    expect(code(() => Normalizer.fitSimilaritiesSync({ queryBankSims }, { method: 'sn' }))).toMatch(/ERR_PARAM: tau is required/);
    const n = await Normalizer.fitSimilarities({ queryBankSims }, { method: 'sn', tau: 1 });
    const h = refBias(columns(pq, MQ, NG), NG, 1, 10);
    const sc = await n.scores({ data: s, rows: NQ, cols: NG });
    for (let i = 0; i < NQ; i++)
      for (let j = 0; j < NG; j++) {
        const want = s[i * NG + j]! - h[j]!;
        expect(Math.abs(sc.data[i * NG + j]! - want)).toBeLessThan(1e-5 * (1 + Math.abs(want)));
      }
  });

  it('dual-sn needs queryBankGalleryBankSims (not galleryBankSims) and matches the reference', async () => {
    expect(code(() => Normalizer.fitSimilaritiesSync({ queryBankSims }, { method: 'dual-sn', tau: 1 }))).toMatch(/ERR_EMPTY_BANK: .*queryBankGalleryBankSims/);
    const bad = { data: ph.subarray(0, (MQ - 1) * MG), rows: MQ - 1, cols: MG };
    expect(code(() => Normalizer.fitSimilaritiesSync({ queryBankSims, queryBankGalleryBankSims: bad }, { method: 'dual-sn', tau: 1 }))).toMatch(/ERR_SHAPE/);
    const n = Normalizer.fitSimilaritiesSync({ queryBankSims, queryBankGalleryBankSims }, { method: 'dual-sn', tau: 1, iterations: 3 });
    const h = refBias([...columns(pq, MQ, NG), ...columns(ph, MQ, MG)], NG, 1, 3);
    const sc = n.scoresSync({ data: s, rows: NQ, cols: NG });
    for (let i = 0; i < NQ; i++)
      for (let j = 0; j < NG; j++) {
        const want = s[i * NG + j]! - h[j]!;
        expect(Math.abs(sc.data[i * NG + j]! - want)).toBeLessThan(1e-5 * (1 + Math.abs(want)));
      }
    const top = await n.search({ data: s, rows: NQ, cols: NG }, { k: 3 });
    expect(top.k).toBe(3);
  });

  it('a tiny τ on ×100 logits (β·s up to 1e6) stays finite', async () => {
    const n = await Normalizer.fitSimilarities({ queryBankSims, queryBankGalleryBankSims }, { method: 'dual-sn', tau: 1e-4 });
    const sc = await n.scores({ data: s, rows: NQ, cols: NG });
    expect(sc.data.every((x) => Number.isFinite(x))).toBe(true);
  });
});
