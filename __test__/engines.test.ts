// Serving from vector engines (dbnorm/lancedb, dbnorm/usearch), rerank key types and async
// augmentQueries. LanceDB tables live in a temp dir that is removed afterwards.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { METHODS, Normalizer, type Method } from '../dist/index.js';
import { LanceGallery, NO_ITEM } from '../dist/lancedb.js';
import { UsearchGallery } from '../dist/usearch.js';
import { haveRealData, realSets } from './engines-realdata.js';
import { randomMatrix } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
type M = { data: Float32Array; rows: number; cols: number };

const D = 16;
const gallery = randomMatrix(600, D, 501);
const queryBank = randomMatrix(900, D, 502);
const galleryBank = randomMatrix(300, D, 503);
const queries = randomMatrix(40, D, 504);
const params = { betaQuery: 15, betaGallery: 2, k: 2, cslsK: 7, nnnK: 20, nnnAlpha: 0.6, leakGuard: 'off' as const };

function rows(m: M, from: number, to: number): M {
  return { data: m.data.slice(from * m.cols, to * m.cols), rows: to - from, cols: m.cols };
}

let dir = '';
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-engines-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const code = (c: string) => expect.objectContaining({ code: c });

/**
 * Top-k lists compared position by position against norm.search. A differing id is accepted only as
 * a tie: its normalised score (norm.scores, float32) equals the expected item's bit for bit (an
 * exact tie), or within `1e-6 · max(scale, |score|)` — the float32 rounding of the engine's own
 * inner product (a near tie). Returns the counts of both kinds of swap.
 */
function sameUpToTies(got: { indices: Uint32Array }, want: { indices: Uint32Array; k: number; rows: number }, full: M, scale: number): { exact: number; near: number } {
  const out = { exact: 0, near: 0 };
  expect(got.indices.length).toBe(want.indices.length);
  for (let i = 0; i < want.rows; i++) {
    for (let r = 0; r < want.k; r++) {
      const g = got.indices[i * want.k + r]!;
      const w = want.indices[i * want.k + r]!;
      if (g === w) continue;
      expect(g, `query ${i} rank ${r}`).not.toBe(NO_ITEM);
      const [sg, sw] = [full.data[i * full.cols + g]!, full.data[i * full.cols + w]!];
      if (sg === sw) {
        out.exact++;
        continue;
      }
      expect(Math.abs(sg - sw), `query ${i} rank ${r}: ${g} (${sg}) instead of ${w} (${sw}) is not a tie`).toBeLessThanOrEqual(1e-6 * Math.max(scale, Math.abs(sw)));
      out.near++;
    }
  }
  return out;
}

function recallAt(got: Uint32Array, want: Uint32Array, nq: number, k: number): number {
  let hit = 0;
  for (let i = 0; i < nq; i++) {
    const s = new Set(want.subarray(i * k, (i + 1) * k));
    for (let r = 0; r < k; r++) if (s.has(got[i * k + r]!)) hit++;
  }
  return hit / (nq * k);
}

describe('rerank candidate key types', () => {
  const norm = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method: 'dual-dis', ...params });
  const q = rows(queries, 0, 3);
  const lists = [
    [5, 17, 300, 2],
    [599, 0, 42, 7],
    [1, 2, 3, 4],
  ];
  const flat = Uint32Array.from(lists.flat());
  const want = norm.rerankSync(q, flat);

  it('BigUint64Array, number[][] and bigint[][] give the Uint32Array result', async () => {
    for (const c of [BigUint64Array.from(lists.flat(), (v) => BigInt(v)), lists, lists.map((r) => r.map((v) => BigInt(v)))]) {
      const got = await norm.rerank(q, c);
      expect(Array.from(got.indices)).toEqual(Array.from(want.indices));
      expect(Array.from(got.scores)).toEqual(Array.from(want.scores));
    }
  });

  it('rejects ids that are not non-negative safe integers, or out of range, with coded errors', () => {
    const bad: [unknown, string][] = [
      [[[5, 17, 300, -1], lists[1], lists[2]], 'ERR_PARAM'],
      [[[5, 17, 300, 1.5], lists[1], lists[2]], 'ERR_PARAM'],
      [[[5, 17, 300, NaN], lists[1], lists[2]], 'ERR_PARAM'],
      [[[5, 17, 300, '3'], lists[1], lists[2]], 'ERR_PARAM'],
      [[[5, 17, 300, 2 ** 53], lists[1], lists[2]], 'ERR_PARAM'],
      [[[5, 17, 300, 600], lists[1], lists[2]], 'ERR_SHAPE'],
      [[[5, 17, 300, 2 ** 32], lists[1], lists[2]], 'ERR_PARAM'],
      [[[5, 17, 300, -1n], lists[1], lists[2]], 'ERR_PARAM'],
      [BigUint64Array.from([...lists.flat().slice(0, 11), 600n].map(BigInt)), 'ERR_SHAPE'],
      [BigUint64Array.from([...lists.flat().slice(0, 11), 2n ** 60n].map(BigInt)), 'ERR_PARAM'],
      [Uint32Array.from([...lists.flat().slice(0, 11), 600]), 'ERR_SHAPE'],
      [Uint32Array.from(lists.flat().slice(0, 11)), 'ERR_SHAPE'],
      [[[1, 2], [3]], 'ERR_SHAPE'],
      [[lists[0], lists[1]], 'ERR_SHAPE'],
      [null, 'ERR_PARAM'],
      [new Float64Array(12), 'ERR_PARAM'],
      [[[1, 2, 3, 4], null, [1, 2, 3, 4]], 'ERR_PARAM'],
    ];
    for (const [c, want] of bad) {
      expect(() => norm.rerankSync(q, c as never), String(c)).toThrowError(code(want));
    }
  });
});

describe('augmented vectors for external engines', () => {
  for (const method of ['dis', 'dual-dis', 'is', 'csls'] as Method[]) {
    it(`${method}: augmentQueriesAsync equals augmentQueries; given top-1 ids reproduce the raw-search gates`, async () => {
      const norm = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method, ...params });
      const sync = norm.augmentQueries(queries);
      const asyncOut = await norm.augmentQueriesAsync(queries);
      expect(Array.from(asyncOut.data)).toEqual(Array.from(sync.data));
      const raw = norm.searchSync(queries, { k: 1 });
      const none = Normalizer.fitSync({ gallery }, { method: 'none' }).searchSync(queries, { k: 1 });
      void raw;
      const viaTop1 = norm.augmentQueries(queries, { top1: none.indices });
      expect(Array.from(viaTop1.data)).toEqual(Array.from(sync.data));
    });
  }

  it('augmentQueriesAsync honours an aborted signal and validates like search', async () => {
    const norm = Normalizer.fitSync({ gallery, queryBank }, { method: 'dis', ...params });
    await expect(norm.augmentQueriesAsync(queries, { signal: AbortSignal.abort() })).rejects.toThrowError(code('ERR_ABORTED'));
    await expect(norm.augmentQueriesAsync(randomMatrix(2, D + 1, 1))).rejects.toThrowError(code('ERR_SHAPE'));
    const bad = randomMatrix(2, D, 1);
    bad.data[3] = NaN;
    await expect(norm.augmentQueriesAsync(bad)).rejects.toThrowError(code('ERR_NON_FINITE'));
    expect(() => norm.augmentQueries(queries, { top1: new Uint32Array(queries.rows).fill(600) })).toThrowError(code('ERR_SHAPE'));
    expect(() => norm.augmentQueries(queries, { top1: new Uint32Array(queries.rows + 1) })).toThrowError(code('ERR_SHAPE'));
  });

  it('augmentedGallery(range) returns exactly those rows; augmentedInfo converts inner products to scores', () => {
    const norm = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method: 'csls', ...params });
    const all = norm.augmentedGallery();
    const part = norm.augmentedGallery({ start: 100, count: 7 });
    expect(part.rows).toBe(7);
    expect(Array.from(part.data)).toEqual(Array.from(all.data.subarray(100 * all.cols, 107 * all.cols)));
    expect(() => norm.augmentedGallery({ start: 598, count: 3 })).toThrowError(code('ERR_SHAPE'));
    expect(() => norm.augmentedGallery({ start: -1 })).toThrowError(code('ERR_PARAM'));
    expect(norm.augmentedInfo()).toEqual({ scale: 2, offsetK: 7, extra: 1, gated: false });
    expect(Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method: 'dual-dis', ...params }).augmentedInfo()).toEqual({ scale: 17, offsetK: 0, extra: 2, gated: true });
  });
});

describe('importing the root package loads no engine', () => {
  it('require("dbnorm") leaves @lancedb/lancedb, apache-arrow and usearch unloaded; the subpaths load from CJS and ESM', () => {
    const cjs = execFileSync(
      process.execPath,
      ['-e', "require('dbnorm'); const l = Object.keys(require.cache).filter((k) => /@lancedb|apache-arrow|usearch/.test(k)); const L = require('dbnorm/lancedb'); const U = require('dbnorm/usearch'); console.log(l.length, typeof L.LanceGallery.create, typeof U.UsearchGallery.create)"],
      { cwd: root, encoding: 'utf8' },
    );
    expect(cjs.trim()).toBe('0 function function');
    const esm = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', "import { LanceGallery } from 'dbnorm/lancedb'; import { UsearchGallery } from 'dbnorm/usearch'; import { createRequire } from 'node:module'; const r = createRequire(import.meta.url); console.log(LanceGallery === r('dbnorm/lancedb').LanceGallery, typeof UsearchGallery.load)"],
      { cwd: root, encoding: 'utf8' },
    );
    expect(esm.trim()).toBe('true function');
  });
});

describe('LanceGallery', () => {
  it('exact (flat) search equals norm.search for every method on synthetic data, with ids and scores', async () => {
    for (const method of METHODS) {
      const norm = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method, ...params });
      const ids = Array.from({ length: gallery.rows }, (_, j) => `item-${j}`);
      const lg = await LanceGallery.create(dir, `syn_${method.replace('-', '_')}`, norm, { ids });
      const want = norm.searchSync(queries, { k: 10 });
      const got = await lg.search(queries, { k: 10 });
      sameUpToTies(got, want, norm.scoresSync(queries), norm.augmentedInfo().scale);
      expect(got.rows).toBe(queries.rows);
      expect(got.k).toBe(10);
      expect(Array.from(got.counts)).toEqual(new Array(queries.rows).fill(10));
      for (let t = 0; t < want.scores.length; t++) expect(Math.abs(got.scores[t]! - want.scores[t]!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(want.scores[t]!)));
      expect(got.ids.slice(0, 10)).toEqual(Array.from(got.indices.subarray(0, 10), (j) => `item-${j}`));
    }
  }, 120_000);

  it('payload columns, select and filter; the DIS gate ignores the filter (raw top-1 over the whole gallery)', async () => {
    const norm = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method: 'dual-dis', ...params });
    const parity = Array.from({ length: gallery.rows }, (_, j) => (j % 2 === 0 ? 'even' : 'odd'));
    const lg = await LanceGallery.create(dir, 'payload', norm, { ids: Array.from({ length: gallery.rows }, (_, j) => 1000 + j), columns: { parity, rank: Array.from({ length: gallery.rows }, (_, j) => j) } });
    const got = await lg.search(queries, { k: 5, filter: "parity = 'even'", select: ['parity', 'rank'] });
    // Reference: the full normalised score matrix restricted to even items.
    const full = norm.scoresSync(queries);
    for (let i = 0; i < queries.rows; i++) {
      const even = Array.from({ length: gallery.rows / 2 }, (_, h) => 2 * h).sort((a, b) => full.data[i * full.cols + b]! - full.data[i * full.cols + a]! || a - b);
      for (let r = 0; r < 5; r++) {
        const g = got.indices[i * 5 + r]!;
        if (g !== even[r]) expect(full.data[i * full.cols + g]).toBe(full.data[i * full.cols + even[r]!]);
        expect(got.columns.parity![i * 5 + r]).toBe('even');
        expect(got.columns.rank![i * 5 + r]).toBe(g);
        expect(got.ids[i * 5 + r]).toBe(1000 + g);
      }
    }
    // No queries: an empty result.
    const empty = await lg.search({ data: new Float32Array(0), rows: 0, cols: D }, { k: 3 });
    expect([empty.rows, empty.indices.length, empty.ids.length]).toEqual([0, 0, 0]);
    // A filter nothing matches: empty, padded rows.
    const none = await lg.search(rows(queries, 0, 2), { k: 3, filter: 'rank < 0' });
    expect(Array.from(none.counts)).toEqual([0, 0]);
    expect(Array.from(none.indices)).toEqual(new Array(6).fill(NO_ITEM));
    expect(none.ids).toEqual(new Array(6).fill(null));
    expect(Array.from(none.scores)).toEqual(new Array(6).fill(-Infinity));
  }, 60_000);

  it('open() checks the normaliser; add() appends rows and equals fitting on the whole gallery', async () => {
    for (const method of ['dis', 'dual-dis', 'nnn'] as Method[]) {
      const whole = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method, ...params });
      const part = Normalizer.fitSync({ gallery: rows(gallery, 0, 450), queryBank, galleryBank }, { method, ...params });
      const name = `grow_${method.replace('-', '_')}`;
      const lg = await LanceGallery.create(dir, name, part, { ids: Array.from({ length: 450 }, (_, j) => BigInt(j)) });
      await expect(lg.add(rows(gallery, 450, 600))).rejects.toThrowError(code('ERR_PARAM'));
      expect(await lg.add(rows(gallery, 450, 600), { ids: Array.from({ length: 150 }, (_, j) => BigInt(450 + j)) })).toBe(600);
      expect(await lg.table.countRows()).toBe(600);
      const got = await lg.search(queries, { k: 10 });
      sameUpToTies(got, whole.searchSync(queries, { k: 10 }), whole.scoresSync(queries), whole.augmentedInfo().scale);
      expect(got.ids[0]).toBe(BigInt(got.indices[0]!));
      // Reopen with the extended normaliser (saved and loaded), and refuse other normalisers.
      const file = path.join(dir, `${name}.dbn`);
      await part.save(file);
      const reopened = await LanceGallery.open(dir, name, await Normalizer.load(file, { leakGuard: 'off' }));
      expect(Array.from((await reopened.search(queries, { k: 10 })).indices)).toEqual(Array.from(got.indices));
      // fit(all) is the same normaliser as fit(part) + add(rest), bit for bit: it opens the table too.
      await expect(LanceGallery.open(dir, name, whole)).resolves.toBeInstanceOf(LanceGallery);
      const other = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method, ...params, betaQuery: 16, nnnAlpha: 0.5 });
      await expect(LanceGallery.open(dir, name, other)).rejects.toThrowError(code('ERR_SHAPE'));
      await expect(LanceGallery.open(dir, name, Normalizer.fitSync({ gallery: rows(gallery, 0, 450), queryBank, galleryBank }, { method, ...params }))).rejects.toThrowError(code('ERR_SHAPE'));
    }
  }, 120_000);

  it('validates every request with coded errors', async () => {
    const norm = Normalizer.fitSync({ gallery, queryBank }, { method: 'is', ...params });
    const lg = await LanceGallery.create(dir, 'validate', norm);
    await expect(LanceGallery.create(dir, 'validate', norm)).rejects.toThrowError(code('ERR_IO'));
    await expect(lg.search(queries, { k: 0 })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(lg.search(queries, { k: 1.5 })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(lg.search(randomMatrix(2, D + 2, 1), { k: 3 })).rejects.toThrowError(code('ERR_SHAPE'));
    const nan = randomMatrix(2, D, 1);
    nan.data[0] = Infinity;
    await expect(lg.search(nan, { k: 3 })).rejects.toThrowError(code('ERR_NON_FINITE'));
    await expect(lg.search(queries, { k: 3, select: ['nope'] })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(lg.search(queries, { k: 3, nprobes: 0 })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(lg.search(queries, { k: 3, filter: 'no_such_column = 1' })).rejects.toThrowError(code('ERR_IO'));
    await expect(lg.search(queries, { k: 3, signal: AbortSignal.abort() })).rejects.toThrowError(code('ERR_ABORTED'));
    await expect(LanceGallery.create(dir, 'v2', norm, { ids: [1, 2] })).rejects.toThrowError(code('ERR_SHAPE'));
    await expect(LanceGallery.create(dir, 'v2', norm, { columns: { vector: new Array(600).fill(0) } })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(LanceGallery.create(dir, 'v2', norm, { index: { type: 'ivf_pq', distanceType: 'l2' } as never })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(LanceGallery.create(dir, 'v2', norm, { bogus: 1 } as never)).rejects.toThrowError(code('ERR_PARAM'));
    await expect(LanceGallery.open(dir, 'no_such_table', norm)).rejects.toThrowError(code('ERR_IO'));
    const sims = Normalizer.fitSimilaritiesSync({ queryBankSims: randomMatrix(30, 20, 3) }, { method: 'is', betaQuery: 5 });
    await expect(LanceGallery.create(dir, 'v3', sims)).rejects.toThrowError(code('ERR_PARAM'));
  }, 60_000);

  it('with an IVF-HNSW-SQ index (l2 space): approximate, recall@10 rises with ef; exact search still exact', async () => {
    const g = randomMatrix(3000, D, 601);
    const norm = Normalizer.fitSync({ gallery: g, queryBank, galleryBank }, { method: 'dual-dis', ...params });
    const lg = await LanceGallery.create(dir, 'hnsw', norm, { index: { type: 'ivf_hnsw_sq', numPartitions: 2, m: 8, efConstruction: 64 } });
    expect((await lg.table.listIndices()).length).toBe(1);
    const want = norm.searchSync(queries, { k: 10 });
    const lo = recallAt((await lg.search(queries, { k: 10, ef: 10, nprobes: 2 })).indices, want.indices, queries.rows, 10);
    const hi = recallAt((await lg.search(queries, { k: 10, ef: 200, nprobes: 2, refineFactor: 4 })).indices, want.indices, queries.rows, 10);
    const exact = await lg.search(queries, { k: 10, exact: true });
    sameUpToTies(exact, want, norm.scoresSync(queries), norm.augmentedInfo().scale);
    expect(hi).toBeGreaterThanOrEqual(lo);
    expect(hi).toBeGreaterThan(0.9);
    // Appending keeps the l2 space consistent (new rows get their own extra coordinate).
    const more = randomMatrix(50, D, 602);
    await lg.add(more);
    const whole = Normalizer.fitSync({ gallery: { data: Float32Array.from([...g.data, ...more.data]), rows: 3050, cols: D }, queryBank, galleryBank }, { method: 'dual-dis', ...params });
    sameUpToTies(await lg.search(queries, { k: 10, exact: true }), whole.searchSync(queries, { k: 10 }), whole.scoresSync(queries), 17);
  }, 120_000);

  it('IVF-PQ index in the dot space with refineFactor', async () => {
    const g = randomMatrix(3000, D, 611);
    const norm = Normalizer.fitSync({ gallery: g, queryBank, galleryBank }, { method: 'is', ...params });
    const lg = await LanceGallery.create(dir, 'ivfpq', norm, { index: { type: "ivf_pq", numPartitions: 4, numSubVectors: 4 }, padTo: 8 });
    const want = norm.searchSync(queries, { k: 10 });
    const r = recallAt((await lg.search(queries, { k: 10, nprobes: 4, refineFactor: 20 })).indices, want.indices, queries.rows, 10);
    expect(r).toBeGreaterThan(0.9);
  }, 120_000);
});

describe('UsearchGallery', () => {
  it('recall@10 against norm.search is high at a large ef, for f32 and f16 storage; ids are returned', async () => {
    for (const method of ['dual-dis', 'csls'] as Method[]) {
      const norm = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method, ...params });
      const want = norm.searchSync(queries, { k: 10 });
      for (const quantization of ['f32', 'f16'] as const) {
        const ug = await UsearchGallery.create(norm, { quantization, expansionSearch: 600, ids: Array.from({ length: gallery.rows }, (_, j) => `g${j}`) });
        const got = await ug.search(queries, { k: 10 });
        expect(recallAt(got.indices, want.indices, queries.rows, 10)).toBeGreaterThan(quantization === 'f32' ? 0.97 : 0.9);
        expect(got.ids[0]).toBe(`g${got.indices[0]}`);
      }
    }
  }, 60_000);

  it('save/load round-trips index and normaliser; add() appends; errors are coded', async () => {
    const part = Normalizer.fitSync({ gallery: rows(gallery, 0, 500), queryBank, galleryBank }, { method: 'dis', ...params });
    const whole = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method: 'dis', ...params });
    const ug = await UsearchGallery.create(part, { expansionSearch: 600 });
    expect(await ug.add(rows(gallery, 500, 600))).toBe(600);
    expect(ug.index.size()).toBe(600);
    const got = await ug.search(queries, { k: 10 });
    expect(recallAt(got.indices, whole.searchSync(queries, { k: 10 }).indices, queries.rows, 10)).toBeGreaterThan(0.97);
    const saved = path.join(dir, 'usearch-gallery');
    await ug.save(saved);
    const back = await UsearchGallery.load(saved, { leakGuard: 'off' });
    expect(back.size).toBe(600);
    const again = await back.search(queries, { k: 10 });
    expect(Array.from(again.indices)).toEqual(Array.from(got.indices));
    expect(Array.from(again.scores)).toEqual(Array.from(got.scores));
    await expect(ug.search(queries, { k: 0 })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(ug.search(randomMatrix(1, D - 1, 2), { k: 3 })).rejects.toThrowError(code('ERR_SHAPE'));
    await expect(ug.add(rows(gallery, 0, 2), { ids: ['a', 'b'] })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(UsearchGallery.create(part, { quantization: 'i8' as never })).rejects.toThrowError(code('ERR_PARAM'));
    await expect(UsearchGallery.load(path.join(dir, 'missing'))).rejects.toThrowError(code('ERR_IO'));
    fs.writeFileSync(path.join(saved, 'gallery.json'), '{"format": 9}');
    await expect(UsearchGallery.load(saved)).rejects.toThrowError(code('ERR_FORMAT'));
  }, 60_000);
});

describe('exactness on the shared real sets (flat LanceDB table vs norm.search, top-10)', () => {
  const have = haveRealData();
  for (const set of have ? realSets() : []) {
    it(`${set.name}: identical top-10 for all seven methods up to exact / float32-rounding ties`, async () => {
      const swaps: Record<string, { exact: number; near: number }> = {};
      for (const method of METHODS) {
        const norm = await Normalizer.fit({ gallery: set.gallery, queryBank: set.queryBank, galleryBank: set.galleryBank }, { method, leakGuard: 'off' });
        const lg = await LanceGallery.create(dir, `real_${set.name.replace(/[^a-z0-9]/gi, '_')}_${method.replace('-', '_')}`, norm);
        const want = await norm.search(set.queries, { k: 10 });
        swaps[method] = sameUpToTies(await lg.search(set.queries, { k: 10 }), want, await norm.scores(set.queries), norm.augmentedInfo().scale);
      }
      console.log(`${set.name}: tie swaps (exact, near) per method ${JSON.stringify(swaps)}`);
    }, 180_000);
  }
});
