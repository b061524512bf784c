// DN and InvGC through the public surface (docs/methods.md §3.7, §3.9): defaults alone on cosine
// embeddings, fit/search/scores/rerank/save/load/addGallery/augmented vectors, refusals.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DbnormError, Normalizer } from '../dist/index.js';
import { randomMatrix } from './helpers.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-dn-invgc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const D = 16;
const gallery = randomMatrix(60, D, 11);
const queryBank = randomMatrix(90, D, 12);
const galleryBank = randomMatrix(70, D, 13);
const queries = randomMatrix(25, D, 14);

function errCode(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code;
  }
  throw new Error('did not throw');
}

function cosine(a: Float32Array, i: number, b: Float32Array, j: number): number {
  let d = 0, na = 0, nb = 0;
  for (let x = 0; x < D; x++) {
    d += a[i * D + x] * b[j * D + x];
    na += a[i * D + x] ** 2;
    nb += b[j * D + x] ** 2;
  }
  return d / Math.sqrt(na * nb);
}

describe.each(['dn', 'invgc'] as const)('%s', (method) => {
  it('works with { method } alone and its search, scores and rerank agree', async () => {
    const n = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method });
    expect(n.method).toBe(method);
    const sc = await n.scores(queries);
    expect(sc.rows).toBe(25);
    expect(sc.cols).toBe(60);
    const top = await n.search(queries, { k: 5 });
    for (let i = 0; i < 25; i++) {
      const row = Array.from(sc.data.subarray(i * 60, (i + 1) * 60));
      const best = Math.max(...row);
      expect(top.scores[i * 5]).toBe(best);
      expect(row[top.indices[i * 5]]).toBe(best);
    }
    const cands = Array.from({ length: 25 }, (_, i) => Array.from({ length: 10 }, (_, r) => (i + r * 6) % 60));
    const rr = await n.rerank(queries, cands);
    expect(rr.rows).toBe(25);
    for (let i = 0; i < 25; i++) {
      for (let r = 0; r < rr.k; r++) expect(rr.scores[i * rr.k + r]).toBe(sc.data[i * 60 + rr.indices[i * rr.k + r]]);
    }
    // it changes the ranking relative to raw cosine somewhere (the method does something)
    const raw = await Normalizer.fit({ gallery }, { method: 'none' });
    expect(Array.from(sc.data)).not.toEqual(Array.from((await raw.scores(queries)).data));
  });

  it('addGallery equals a fit on the concatenated gallery; inputs are not mutated', async () => {
    const before = [gallery.data.slice(), queryBank.data.slice(), galleryBank.data.slice()];
    const head = { data: gallery.data.slice(0, 40 * D), rows: 40, cols: D };
    const tail = { data: gallery.data.slice(40 * D), rows: 20, cols: D };
    const part = await Normalizer.fit({ gallery: head, queryBank, galleryBank }, { method });
    await part.addGallery(tail);
    const whole = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method });
    const [a, b] = [await part.scores(queries), await whole.scores(queries)];
    for (let t = 0; t < a.data.length; t++) expect(Math.abs(a.data[t] - b.data[t])).toBeLessThan(1e-6);
    expect([gallery.data, queryBank.data, galleryBank.data]).toEqual(before);
  });

  it('augmented vectors reproduce the scores', async () => {
    const n = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method });
    const ag = n.augmentedGallery();
    const aq = n.augmentQueries(queries);
    const { scale } = n.augmentedInfo();
    const sc = await n.scores(queries);
    const w = ag.cols;
    for (let i = 0; i < 25; i++) {
      for (let j = 0; j < 60; j++) {
        let ip = 0;
        for (let x = 0; x < w; x++) ip += aq.data[i * w + x] * ag.data[j * w + x];
        expect(Math.abs(scale * ip - sc.data[i * 60 + j])).toBeLessThan(1e-5);
      }
    }
  });

  it('similarity mode and a missing bank are refused with coded errors', () => {
    const sims = randomMatrix(90, 60, 15);
    const gsims = randomMatrix(70, 60, 18);
    expect(errCode(() => Normalizer.fitSimilaritiesSync({ queryBankSims: sims, galleryBankSims: gsims }, { method, ...(method === 'invgc' ? { rateGallery: 0.5, rateQuery: 0.5 } : {}) }))).toBe('ERR_PARAM');
    expect(errCode(() => Normalizer.fitSync({ gallery, queryBank }, { method }))).toBe('ERR_EMPTY_BANK');
  });
});

describe('dn parameters', () => {
  it('lambda 0 ranks as nnn; lambda and nnnAlpha are read', async () => {
    const dn0 = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method: 'dn', lambda: 0, nnnK: 7, nnnAlpha: 0.6 });
    const nnn = await Normalizer.fit({ gallery, queryBank }, { method: 'nnn', nnnK: 7, nnnAlpha: 0.6 });
    expect(Array.from((await dn0.scores(queries)).data)).toEqual(Array.from((await nnn.scores(queries)).data));
    const dn1 = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method: 'dn', lambda: 1, nnnK: 7, nnnAlpha: 0.6 });
    expect(Array.from((await dn1.scores(queries)).data)).not.toEqual(Array.from((await nnn.scores(queries)).data));
    expect(dn1.options).toMatchObject({ lambda: 1, nnnK: 7, nnnAlpha: 0.6 });
    expect(errCode(() => Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method: 'dn', lambda: -1 }))).toBe('ERR_PARAM');
  });
});

describe('invgc parameters', () => {
  it('rates 0 give the raw cosine; rates are required for dot; plain refuses addGallery', async () => {
    const n = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method: 'invgc', rateGallery: 0, rateQuery: 0 });
    const sc = await n.scores(queries);
    for (let i = 0; i < 25; i++) for (let j = 0; j < 60; j++) expect(Math.abs(sc.data[i * 60 + j] - cosine(queries.data, i, gallery.data, j))).toBeLessThan(1e-5);
    expect(errCode(() => Normalizer.fitSync({ gallery, queryBank, galleryBank, metric: 'dot' }, { method: 'invgc' }))).toBe('ERR_PARAM');
    const plain = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method: 'invgc', invgcVariant: 1 });
    expect(errCode(() => plain.addGallerySync(randomMatrix(2, D, 16)))).toBe('ERR_PARAM');
    expect(errCode(() => Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method: 'invgc', poolRate: 0 }))).toBe('ERR_PARAM');
  });
});

describe.each([
  ['dn', { lambda: 0.3, nnnK: 5, nnnAlpha: 0.4 }],
  ['invgc', { rateGallery: 0.2, rateQuery: 0.9, poolRate: 0.1 }],
] as const)('%s save / load', (method, params) => {
  // UNFINISHED here: needs n13-frame's save format v3 (parameters by name + MethodState), not yet in
  // main; on this branch a loaded dn/invgc gets default parameters and an empty state. Enable on merge.
  it.skip('round-trips scores and parameters (needs save format v3)', async () => {
    const n = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method, ...params });
    const p = path.join(dir, `${method}.dbn`);
    await n.save(p);
    const m = await Normalizer.load(p);
    expect(m.options).toMatchObject(params);
    expect(Array.from((await m.scores(queries)).data)).toEqual(Array.from((await n.scores(queries)).data));
    // and the loaded one still extends exactly
    await m.addGallery(randomMatrix(3, D, 17));
    await n.addGallery(randomMatrix(3, D, 17));
    expect(Array.from((await m.scores(queries)).data)).toEqual(Array.from((await n.scores(queries)).data));
  });
});
