// Issue 9 numerics reproductions through the public API: cosine similarity with extreme row norms,
// the finite-score bound on β / nnnAlpha, and batch independence of search / scores.
import { describe, expect, it } from 'vitest';

import { METHODS, Normalizer, similarity, similaritySync } from '../dist/index.js';
import { randomMatrix } from './helpers.js';

describe('numerics', () => {
  it('cosine similarity is finite and scale-free for row norms 1e-30 … 1e30', async () => {
    const d = 16;
    const a = randomMatrix(5, d, 3);
    const b = randomMatrix(4, d, 4);
    const unit = similaritySync(a, b).data;
    for (const s of [1e-30, 1e-25, 1e-19, 1e19, 1e25, 1e30]) {
      const a2 = { data: a.data.map((v) => v * s), rows: 5, cols: d };
      const got = (await similarity(a2, b)).data;
      for (let i = 0; i < got.length; i++) {
        expect(Number.isFinite(got[i])).toBe(true);
        expect(Math.abs(got[i] - unit[i])).toBeLessThan(1e-5);
      }
    }
  });

  it('refuses β or nnnAlpha beyond 1e30 with ERR_PARAM instead of returning ±Inf', () => {
    const g = randomMatrix(50, 8, 1);
    const bank = randomMatrix(40, 8, 2);
    for (const opts of [{ method: 'is', betaQuery: 1e39 }, { method: 'nnn', nnnAlpha: 1e300 }] as const) {
      expect(() => Normalizer.fitSync({ gallery: g, queryBank: bank }, opts)).toThrowError(expect.objectContaining({ code: 'ERR_PARAM' }));
    }
    const n = Normalizer.fitSync({ gallery: g, queryBank: bank }, { method: 'is', betaQuery: 1e30 });
    const q = randomMatrix(3, 8, 5);
    expect(n.scoresSync(q).data.every((v) => Number.isFinite(v))).toBe(true);
    expect(Array.from(n.searchSync(q, { k: 5 }).scores).every((v) => Number.isFinite(v))).toBe(true);
  });

  it("a query's search scores are bit-identical alone and in any batch, for every method", () => {
    const d = 33;
    const g = randomMatrix(1100, d, 7);
    const qb = randomMatrix(120, d, 8);
    const gb = randomMatrix(90, d, 9);
    const q = randomMatrix(160, d, 10);
    const row = (i: number, n: number) => ({ data: q.data.subarray(i * d, (i + n) * d), rows: n, cols: d });
    for (const method of METHODS) {
      const norm = Normalizer.fitSync({ gallery: g, queryBank: qb, galleryBank: gb }, { method, leakGuard: 'off' } as never);
      const k = 4;
      const alone = Array.from({ length: q.rows }, (_, i) => norm.searchSync(row(i, 1), { k }));
      for (const [off, n] of [[0, 2], [5, 17], [20, 33], [0, 160]] as const) {
        const t = norm.searchSync(row(off, n), { k });
        for (let i = 0; i < n; i++) {
          expect(Array.from(t.indices.subarray(i * k, (i + 1) * k))).toEqual(Array.from(alone[off + i].indices));
          expect(Array.from(t.scores.subarray(i * k, (i + 1) * k))).toEqual(Array.from(alone[off + i].scores));
        }
      }
    }
  });
});
