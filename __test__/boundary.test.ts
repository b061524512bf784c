// Issue 9, API boundary: every reproduction is a regression test. Counts and indices are validated
// (no wrap-around, no truncation), option objects are key-checked, every public entry point throws
// only coded DbnormErrors, addGallery is serialized, onProgress exceptions never escape, and the
// native error code arrives on the error itself.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { DbnormError, Normalizer, QueryBank, evaluate, evaluateSync, hubness, hubnessSync, similarity, similaritySync } from '../dist/index.js';
import { randomMatrix } from './helpers.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-boundary-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code + ': ' + (e as DbnormError).message;
  }
  throw new Error('did not throw');
}

async function acode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code + ': ' + (e as DbnormError).message;
  }
  throw new Error('did not reject');
}

const g = randomMatrix(12, 4, 1);
const qb = randomMatrix(30, 4, 2);
const gb = randomMatrix(20, 4, 3);
const q = randomMatrix(3, 4, 4);
const top = { rows: 2, k: 2, indices: new Uint32Array([0, 1, 1, 2]), scores: new Float32Array(4) };
const scores = randomMatrix(5, 5, 9);

describe('counts and indices', () => {
  it('hubness galleryCount: negative, float, NaN, ≥ 2^32 are ERR_PARAM (sync and async)', async () => {
    for (const galleryCount of [-1, 1.5, NaN, 2 ** 31, 2 ** 32, 2 ** 32 + 3, '3' as unknown as number]) {
      expect(code(() => hubnessSync(top, { k: 2, galleryCount }))).toMatch(/^ERR_PARAM: galleryCount/);
      expect(await acode(hubness(top, { k: 2, galleryCount }))).toMatch(/^ERR_PARAM: galleryCount/);
    }
    expect(hubnessSync(top, { k: 2, galleryCount: 3 }).occurrence).toEqual(new Uint32Array([1, 2, 1]));
  });

  it('evaluate ks and captionsPerItem beyond 2^32 − 1 are ERR_PARAM, not wrapped to 1', async () => {
    expect(await acode(evaluate(scores, 'diagonal', { ks: [2 ** 32 + 1] }))).toMatch(/^ERR_PARAM: ks\[0\]/);
    expect(code(() => evaluateSync(scores, 'diagonal', { ks: [1, 0.5] }))).toMatch(/^ERR_PARAM: ks\[1\]/);
    expect(code(() => evaluateSync(scores, { captionsPerItem: 2 ** 32 + 1 }))).toMatch(/^ERR_PARAM: captionsPerItem/);
    expect(code(() => evaluateSync(scores, { positives: [[2 ** 32 + 1], [], [], [], []] }))).toMatch(/^ERR_PARAM: positives\[0\]\[0\]/);
  });

  it('rerank candidate ids ≥ 2^32, negative or fractional are ERR_PARAM (item 3 is never reranked)', async () => {
    const n = Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'is', leakGuard: 'off' });
    const one = randomMatrix(1, 4, 5);
    for (const bad of [2 ** 32 + 3, -1, 1.5, NaN]) {
      expect(code(() => n.rerankSync(one, [[bad, 5]]))).toMatch(/^ERR_PARAM: candidates\[0\]\[0\]/);
      expect(await acode(n.rerank(one, [[bad, 5]]))).toMatch(/^ERR_PARAM/);
    }
    expect(code(() => n.rerankSync(one, new Float64Array([3, 5]) as unknown as Uint32Array))).toMatch(/^ERR_PARAM: candidates must be/);
    expect(code(() => n.rerankSync(one, [[12, 5]]))).toMatch(/^ERR_SHAPE: candidate id 12 is out of range/);
  });

  it('addGallery count: negative or fractional is ERR_PARAM', async () => {
    const n = Normalizer.fitSimilaritiesSync({ galleryCount: 3 }, { method: 'none' });
    for (const count of [-1, 1.5, 2 ** 32]) {
      expect(code(() => n.addGallerySync({ count }))).toMatch(/^ERR_PARAM: count/);
      expect(await acode(n.addGallery({ count }))).toMatch(/^ERR_PARAM: count/);
    }
    expect(n.addGallerySync({ count: 2 })).toBe(5);
  });

  it('fitSimilarities galleryCount: negative, float, 2^32 are ERR_PARAM', () => {
    for (const galleryCount of [-1, 2.5, 2 ** 32]) {
      expect(code(() => Normalizer.fitSimilaritiesSync({ galleryCount }, { method: 'none' }))).toMatch(/^ERR_PARAM: galleryCount/);
    }
  });

  it('search k: 0, float, ≥ 2^32 are ERR_PARAM', () => {
    const n = Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'is', leakGuard: 'off' });
    for (const k of [0, 1.5, 2 ** 32, -3]) expect(code(() => n.searchSync(q, { k }))).toMatch(/^ERR_PARAM: k/);
  });
});

describe('option objects', () => {
  it('unknown keys are ERR_PARAM naming the nearest valid key, in every entry point', async () => {
    const n = Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'is', leakGuard: 'off' });
    const cases: [() => unknown, RegExp][] = [
      [() => Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'is', beta: 5 } as never), /unknown option 'beta' \(did you mean 'betaQuery'\?\)/],
      [() => Normalizer.fitSync({ gallery: g, qeuryBank: qb } as never, { method: 'is' }), /unknown option 'qeuryBank' \(did you mean 'queryBank'\?\)/],
      [() => Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'is', leakguard: 'off' } as never), /did you mean 'leakGuard'/],
      [() => n.searchSync(q, { k: 1, kk: 2 } as never), /unknown option 'kk'/],
      [() => evaluateSync(scores, 'diagonal', { dir: 't2v' } as never), /unknown option 'dir' \(did you mean 'direction'\?\)/],
      [() => hubnessSync(scores, { hubfactor: 2 } as never), /did you mean 'hubFactor'/],
      [() => similaritySync(q, g, { metrc: 'dot' } as never), /did you mean 'metric'/],
      [() => QueryBank.fromSync(qb, { dedup: true } as never), /did you mean 'dedupe'/],
      [() => Normalizer.loadSync(path.join(dir, 'x.dbn'), { leakGaurd: 'off' } as never), /did you mean 'leakGuard'/],
    ];
    for (const [f, re] of cases) expect(code(f)).toMatch(new RegExp('^ERR_PARAM: .*' + re.source));
    expect(await acode(n.search(q, { k: 1, signl: undefined } as never))).toMatch(/did you mean 'signal'/);
  });

  it('wrong types anywhere are coded errors, never TypeError or napi conversion errors', async () => {
    const n = Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'is', leakGuard: 'off' });
    const throwing = { get method(): string { throw new Error('boom'); } };
    const sync: (() => unknown)[] = [
      () => QueryBank.fromSync(qb, { dedupe: 'yes' as never }),
      () => evaluateSync(scores, 'diagonal', { direction: 5 as never }),
      () => evaluateSync(scores, 'diagonal', { ties: 'best' as never }),
      () => evaluateSync(scores, 'diagonal', { qbnormCompat: 1 as never }),
      () => evaluateSync(scores, null as never),
      () => evaluateSync(scores, 'diag' as never),
      () => evaluateSync(scores, { positives: null } as never),
      () => evaluateSync(null as never),
      () => hubnessSync(scores, { hubThreshold: 3 as never }),
      () => n.saveSync(''),
      () => n.searchSync(q, 5 as never),
      () => n.searchSync(q, null as never),
      () => n.scoresSync({ data: [1, 2] as never, rows: 1, cols: 2 }),
      () => n.scoresSync({ data: new Float32Array(8), rows: 2, cols: '4' as never }),
      () => n.rerankSync(q, [null as never, [1], [1]]),
      () => Normalizer.fitSync({ gallery: g, queryBank: qb }, throwing as never),
      () => Normalizer.fitSync(null as never, { method: 'is' }),
      () => Normalizer.fitSync({ gallery: g, queryBank: qb }, 'is' as never),
      () => n.scoresSync({ get data(): Float32Array { throw new Error('getter'); }, rows: 1, cols: 4 }),
      () => similaritySync(q, g, { metric: 'l2' as never }),
    ];
    for (const f of sync) expect(code(f)).toMatch(/^ERR_(PARAM|SHAPE): /);
    const ac = new AbortController();
    const asyncs: (() => Promise<unknown>)[] = [
      () => n.search(q, { k: 1, signal: {} as never }),
      () => n.search(q, { k: 1, signal: ac as never }),
      () => n.scores(q, { onProgress: 5 as never }),
      () => n.save(''),
      () => Normalizer.load(''),
      () => evaluate(scores, null as never),
      () => hubness(scores, { signal: 'x' as never }),
      () => similarity(q, g, 'cosine' as never),
      () => QueryBank.from(qb, { dedupe: 1 as never }),
    ];
    for (const f of asyncs) expect(await acode(f())).toMatch(/^ERR_(PARAM|SHAPE): /);
  });

  it('the stable code comes from the native error itself (no message prefix)', () => {
    const msg = code(() => Normalizer.fitSync({ gallery: { data: new Float32Array([NaN, 1]), rows: 1, cols: 2 }, queryBank: randomMatrix(2, 2, 1) }, { method: 'is' }));
    expect(msg).toMatch(/^ERR_NON_FINITE: gallery/);
    expect(msg).not.toMatch(/ERR_NON_FINITE: ERR_/);
  });
});

describe('normaliser state', () => {
  it('addGallery with zero rows on dis / dual-dis is a no-op, not a panic (both modes)', async () => {
    for (const method of ['dis', 'dual-dis'] as const) {
      const n = Normalizer.fitSync({ gallery: g, queryBank: qb, galleryBank: gb }, { method, leakGuard: 'off' });
      expect(n.addGallerySync({ data: new Float32Array(0), rows: 0, cols: 4 })).toBe(12);
      expect(await n.addGallery({ data: new Float32Array(0), rows: 0, cols: 4 })).toBe(12);
      const s = Normalizer.fitSimilaritiesSync({ queryBankSims: randomMatrix(7, 6, 1), galleryBankSims: randomMatrix(5, 6, 2) }, { method, betaQuery: 5, betaGallery: 2 });
      const empty = (r: number) => ({ data: new Float32Array(0), rows: r, cols: 0 });
      expect(s.addGallerySync({ queryBankSims: empty(7), galleryBankSims: empty(5) })).toBe(6);
      expect(n.searchSync(q, { k: 3 }).k).toBe(3);
    }
  });

  it('a none normaliser fitted from similarity matrices reports its gallery size; rerank works', () => {
    const n = Normalizer.fitSimilaritiesSync({ queryBankSims: randomMatrix(7, 6, 1) }, { method: 'none' });
    expect(n.galleryCount).toBe(6);
    const t = n.rerankSync({ data: new Float32Array([0.1, 0.9]), rows: 1, cols: 2 }, [[4, 5]]);
    expect(Array.from(t.indices)).toEqual([5, 4]);
  });

  it('addGallerySync during an in-flight async addGallery is ERR_BUSY; nothing is lost', async () => {
    const n = Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'is', leakGuard: 'off' });
    const p = n.addGallery(randomMatrix(5, 4, 11));
    expect(code(() => n.addGallerySync(randomMatrix(2, 4, 12)))).toMatch(/^ERR_BUSY/);
    const p2 = n.addGallery(randomMatrix(3, 4, 13));
    expect(await p).toBe(17);
    expect(await p2).toBe(20);
    expect(n.addGallerySync(randomMatrix(2, 4, 12))).toBe(22);
    expect(n.galleryCount).toBe(22);
  });

  it('rerank, save and load take a signal and honour it', async () => {
    const n = Normalizer.fitSync({ gallery: g, queryBank: qb }, { method: 'is', leakGuard: 'off' });
    const f = path.join(dir, 'sig.dbn');
    const signal = AbortSignal.abort();
    expect(await acode(n.rerank(q, [[0, 1], [1, 2], [2, 3]], { signal }))).toMatch(/^ERR_ABORTED/);
    expect(await acode(n.save(f, { signal }))).toMatch(/^ERR_ABORTED/);
    await n.save(f, { signal: new AbortController().signal });
    expect(await acode(Normalizer.load(f, { signal }))).toMatch(/^ERR_ABORTED/);
    expect((await Normalizer.load(f, { signal: new AbortController().signal })).galleryCount).toBe(12);
  });

  it('an onProgress that throws rejects the operation with that error; nothing escapes as uncaught', async () => {
    const uncaught: unknown[] = [];
    const on = (e: unknown): void => {
      uncaught.push(e);
    };
    process.on('uncaughtException', on);
    try {
      const boom = new Error('progress boom');
      const big = randomMatrix(3000, 16, 7);
      const onProgress = (): void => {
        throw boom;
      };
      const e = await Normalizer.fit({ gallery: randomMatrix(400, 16, 8), queryBank: big }, { method: 'is', onProgress }).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(DbnormError);
      expect((e as DbnormError).code).toBe('ERR_PARAM');
      expect((e as Error & { cause?: unknown }).cause).toBe(boom);
      expect(await acode(evaluate(scores, 'diagonal', { onProgress }))).toMatch(/onProgress threw: progress boom/);
      expect(await acode(QueryBank.from(big, { onProgress }))).toMatch(/onProgress threw/);
      await new Promise((r) => setTimeout(r, 120));
    } finally {
      process.off('uncaughtException', on);
    }
    expect(uncaught).toEqual([]);
  });
});
