import { describe, expect, it } from 'vitest';

import { GalleryBank, Normalizer, QueryBank } from '../dist/index.js';
import { randomMatrix } from './helpers.js';

const D = 16;

describe('QueryBank / GalleryBank', () => {
  it('copies once: mutating the source afterwards has no effect, and fits equal the matrix path', () => {
    const src = randomMatrix(200, D, 1);
    const g = randomMatrix(40, D, 2);
    const q = randomMatrix(10, D, 3);
    const bank = QueryBank.fromSync(src);
    expect(bank.summary()).toEqual({ kind: 'embeddings', size: 200, dim: D, sourceRows: 200, duplicatesDropped: 0, subsampled: false });
    const want = Normalizer.fitSync({ gallery: g, queryBank: src }, { method: 'is' }).scoresSync(q);
    src.data.fill(0.5);
    const got = Normalizer.fitSync({ gallery: g, queryBank: bank }, { method: 'is' }).scoresSync(q);
    expect(Array.from(got.data)).toEqual(Array.from(want.data));
  });

  it('de-duplicates identical rows and subsamples with a seed', () => {
    const base = randomMatrix(50, D, 4);
    const rows: Float32Array[] = [];
    for (let r = 0; r < 5; r++) for (let i = 0; i < 50; i++) rows.push(base.data.slice(i * D, (i + 1) * D)); // each row 5×
    const dd = QueryBank.fromSync(rows, { dedupe: true });
    expect(dd.summary()).toMatchObject({ size: 50, duplicatesDropped: 200, sourceRows: 250 });
    const s1 = QueryBank.fromSync(rows, { dedupe: true, subsample: 20, seed: 3 });
    const s2 = QueryBank.fromSync(rows, { dedupe: true, subsample: 20, seed: 3 });
    const s3 = QueryBank.fromSync(rows, { dedupe: true, subsample: 20, seed: 4 });
    expect(s1.summary()).toMatchObject({ size: 20, subsampled: true, duplicatesDropped: 200 });
    expect(Array.from(s1.matrix.data)).toEqual(Array.from(s2.matrix.data));
    expect(Array.from(s1.matrix.data)).not.toEqual(Array.from(s3.matrix.data));
  });

  it('streams blocks from an async iterable (a bank larger than memory would stream from disk)', async () => {
    const src = randomMatrix(1000, D, 5);
    async function* blocks() {
      for (let r = 0; r < 1000; r += 128) {
        yield { data: src.data.slice(r * D, Math.min(1000, r + 128) * D), rows: Math.min(128, 1000 - r), cols: D };
      }
    }
    const streamed = await GalleryBank.from(blocks(), { subsample: 300, seed: 9 });
    const whole = GalleryBank.fromSync(src, { subsample: 300, seed: 9 });
    expect(streamed.size).toBe(300);
    expect(Array.from(streamed.matrix.data)).toEqual(Array.from(whole.matrix.data));
  });

  it('rejects misuse with coded errors', () => {
    const g = randomMatrix(10, D, 6);
    const gb = GalleryBank.fromSync(randomMatrix(5, D, 7));
    expect(() => Normalizer.fitSync({ gallery: g, queryBank: gb as unknown as QueryBank }, { method: 'is' })).toThrowError(expect.objectContaining({ code: 'ERR_PARAM' }));
    expect(() => QueryBank.fromSync([])).toThrowError(expect.objectContaining({ code: 'ERR_EMPTY_BANK' }));
    expect(() => QueryBank.fromSync(randomMatrix(3, D, 1), { subsample: 0 })).toThrowError(expect.objectContaining({ code: 'ERR_PARAM' }));
    expect(() => QueryBank.fromSync([[1, 2], [3]])).toThrowError(expect.objectContaining({ code: 'ERR_SHAPE' }));
    expect(() => QueryBank.fromSync([[1, NaN]])).toThrowError(expect.objectContaining({ code: 'ERR_NON_FINITE' }));
    const sims = QueryBank.fromSimilarities(randomMatrix(30, 10, 8));
    expect(sims.kind).toBe('similarities');
    expect(() => Normalizer.fitSync({ gallery: g, queryBank: sims }, { method: 'is' })).toThrowError(expect.objectContaining({ code: 'ERR_PARAM' }));
    const n = Normalizer.fitSimilaritiesSync({ queryBankSims: sims }, { method: 'is', betaQuery: 5 });
    expect(n.galleryCount).toBe(10);
  });

  it('validates a given bank even when the method does not use it', () => {
    const bad = randomMatrix(4, D, 9);
    bad.data[3] = NaN;
    expect(() => Normalizer.fitSync({ gallery: randomMatrix(5, D, 1), queryBank: randomMatrix(6, D, 2), galleryBank: bad }, { method: 'is' })).toThrowError(
      expect.objectContaining({ code: 'ERR_NON_FINITE' }),
    );
  });
});

describe('bank building off the event loop', () => {
  it('reports progress to the total and honours an aborted signal', async () => {
    const src = randomMatrix(3000, D, 11);
    async function* blocks() {
      for (let r = 0; r < 3000; r += 500) yield { data: src.data.slice(r * D, (r + 500) * D), rows: 500, cols: D };
    }
    const seen: { done: number; total: number }[] = [];
    const bank = await QueryBank.from(blocks(), { dedupe: true, onProgress: (p) => seen.push(p) });
    expect(bank.size).toBe(3000);
    expect(seen[seen.length - 1]).toMatchObject({ done: 3000, total: 3000 });
    await expect(QueryBank.from(blocks(), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });
});
