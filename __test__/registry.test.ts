// The framework that every registered method goes through, driven by its descriptor (issue 13):
// the generated `Method` union, fit with `{ method }` alone, search / scores / rerank, save/load,
// addGallery (appended or refitted), the embeddings-only refusal, the servability refusal of the
// augmented vectors and the sharded-fit refusal. Each test loops over the registry, so a new method
// is covered as soon as it is registered.
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { DbnormError, METHODS, Normalizer } from '../dist/index.js';
import { METHOD_IDS } from '../dist/method-ids.js';
import { METHOD_INFO, PARAM_INFO } from '../dist/methods.js';
import { randomMatrix } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-registry-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code + ': ' + (e as DbnormError).message;
  }
  throw new Error('did not throw');
}

const d = 8;
const gallery = randomMatrix(24, d, 11);
const queryBank = randomMatrix(40, d, 12);
const galleryBank = randomMatrix(30, d, 13);
const queries = randomMatrix(6, d, 14);
const extra = randomMatrix(5, d, 15);

/** Every parameter a method reads with a value (β and other cosine-only defaults are required off cosine embeddings). */
function allParams(id: string): Record<string, number> {
  const m = METHOD_INFO.find((x) => x.id === id)!;
  return Object.fromEntries(PARAM_INFO.filter((p) => m.params.includes(p.name)).map((p) => [p.name, p.default]));
}

function same(a: { indices: Uint32Array; scores: Float32Array }, b: { indices: Uint32Array; scores: Float32Array }): void {
  expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
  expect(Array.from(a.scores)).toEqual(Array.from(b.scores));
}

describe('the Method type follows the registry', () => {
  it('ts/method-ids.ts (generated at build time) lists exactly the registry ids, in order', () => {
    expect([...METHOD_IDS]).toEqual(METHOD_INFO.map((m) => m.id));
    expect([...METHODS]).toEqual([...METHOD_IDS]);
    // The committed source is the generated one (a stale file fails here, not only at build time).
    const src = readFileSync(path.join(root, 'ts/method-ids.ts'), 'utf8');
    expect(src).toContain(`[${METHOD_INFO.map((m) => `'${m.id}'`).join(', ')}]`);
  });

  it('every descriptor has the generic flags', () => {
    for (const m of METHOD_INFO) {
      expect(typeof m.embeddingsOnly, m.id).toBe('boolean');
      expect(typeof m.galleryDependent, m.id).toBe('boolean');
      expect(typeof m.shardable, m.id).toBe('boolean');
      // shardable implies mergeable data: no gallery dependence, no vector transform
      if (m.shardable) expect(m.galleryDependent || m.embeddingsOnly, m.id).toBe(false);
    }
    // the first seven methods are bias-reducible and shardable
    for (const id of ['none', 'is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn']) {
      expect(METHOD_INFO.find((m) => m.id === id), id).toMatchObject({ biasReducible: true, shardable: true, embeddingsOnly: false, galleryDependent: false });
    }
  });
});

describe.each(METHOD_INFO.map((m) => [m.id, m] as const))('method %s through every API', (id, info) => {
  const method = id as (typeof METHODS)[number];

  it('embeddings: fit with { method } alone, search/scores/rerank agree, save/load is exact', async () => {
    const n = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method });
    const top = await n.search(queries, { k: 5 });
    expect(top.k).toBe(5);
    const all = await n.scores(queries);
    expect(all.rows * all.cols).toBe(queries.rows * gallery.rows);
    for (let i = 0; i < top.rows; i++) {
      for (let r = 0; r < top.k; r++) expect(top.scores[i * top.k + r]).toBe(all.data[i * all.cols + top.indices[i * top.k + r]!]);
    }
    const re = n.rerankSync(queries, top.indices);
    expect(Array.from(re.indices)).toEqual(Array.from(top.indices));
    const file = path.join(dir, `${id}-emb.dbn`);
    await n.save(file);
    const back = await Normalizer.load(file);
    expect(back.method).toBe(method);
    expect(back.options).toEqual(n.options);
    same(await back.search(queries, { k: 5 }), top);
  });

  it('embeddings: addGallery appends or refits, and equals a fit on the whole gallery', async () => {
    const n = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method });
    await n.addGallery(extra);
    const whole = { data: new Float32Array([...gallery.data, ...extra.data]), rows: gallery.rows + extra.rows, cols: d };
    const fresh = await Normalizer.fit({ gallery: whole, queryBank, galleryBank }, { method });
    const a = await n.search(queries, { k: 7 });
    const b = await fresh.search(queries, { k: 7 });
    expect(Array.from(a.indices)).toEqual(Array.from(b.indices));
    for (let i = 0; i < a.scores.length; i++) expect(a.scores[i]).toBeCloseTo(b.scores[i]!, 4);
  });

  it('similarity mode: refused with ERR_PARAM naming the method when embeddings-only, else fit/search/save/load', async () => {
    const qbs = randomMatrix(40, gallery.rows, 21);
    const gbs = randomMatrix(30, gallery.rows, 22);
    const cross = info.crossBankSims ? { queryBankGalleryBankSims: randomMatrix(40, 30, 26) } : {};
    const fit = () => Normalizer.fitSimilaritiesSync({ queryBankSims: qbs, galleryBankSims: gbs, ...cross } as never, { method, ...allParams(id) } as never);
    if (info.embeddingsOnly) {
      expect(code(fit)).toMatch(new RegExp(`^ERR_PARAM: method '${id}' needs embeddings`));
      return;
    }
    const n = fit();
    const sims = randomMatrix(3, gallery.rows, 23);
    const top = n.searchSync(sims, { k: 4 });
    const file = path.join(dir, `${id}-sims.dbn`);
    n.saveSync(file);
    same(Normalizer.loadSync(file).searchSync(sims, { k: 4 }), top);
    const add = () => n.addGallerySync({ queryBankSims: randomMatrix(40, 2, 24), galleryBankSims: randomMatrix(30, 2, 25) });
    if (info.galleryDependent) expect(code(add)).toMatch(/^ERR_UNSUPPORTED: method .* depends on the whole gallery/);
    else expect(add()).toBe(gallery.rows + 2);
  });

  it('augmented vectors: served exactly when bias-reducible, else ERR_UNSUPPORTED', async () => {
    const n = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method });
    if (!info.biasReducible) {
      expect(code(() => n.augmentedGallery())).toMatch(/^ERR_UNSUPPORTED: method .* is not bias-reducible/);
      expect(code(() => n.augmentQueries(queries))).toMatch(/^ERR_UNSUPPORTED/);
      expect(code(() => n.augmentedInfo())).toMatch(/^ERR_UNSUPPORTED/);
      await expect(n.augmentQueriesAsync(queries)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
      return;
    }
    const g = n.augmentedGallery();
    const q = n.augmentQueries(queries);
    const info2 = n.augmentedInfo();
    const top = await n.search(queries, { k: 3 });
    // the augmented inner product ranks as the method (ties aside: random data has none)
    for (let i = 0; i < queries.rows; i++) {
      const ip = Array.from({ length: g.rows }, (_, j) => {
        let s = 0;
        for (let t = 0; t < g.cols; t++) s += q.data[i * q.cols + t]! * g.data[j * g.cols + t]!;
        return info2.scale * s;
      });
      const best = ip.indexOf(Math.max(...ip));
      expect(best, `${id} query ${i}`).toBe(top.indices[i * 3]);
    }
  });

  it('sharded fit: merges to the one-shot fit when shardable, else ERR_UNSUPPORTED', async () => {
    const half = gallery.rows / 2;
    const slice = (m: typeof gallery, a: number, b: number) => ({ data: m.data.slice(a * m.cols, b * m.cols), rows: b - a, cols: m.cols });
    const part = (a: number, b: number) => Normalizer.fitSync({ gallery: slice(gallery, a, b), queryBank, galleryBank }, { method, shard: { gallery: [a, gallery.rows] } } as never);
    if (!info.shardable) {
      expect(code(() => part(0, half))).toMatch(new RegExp(`^ERR_UNSUPPORTED: method '${id}' cannot be fitted in shards`));
      return;
    }
    const merged = Normalizer.mergeSync([part(0, half), part(half, gallery.rows)] as never);
    const one = Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method });
    same(merged.searchSync(queries, { k: 5 }), one.searchSync(queries, { k: 5 }));
  });
});
