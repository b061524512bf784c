import { describe, expect, it } from 'vitest';

import { Normalizer } from '../dist/index.js';
import { maxRelErr, randomMatrix, refLse, refSimilarity, refTopK, sameTopK } from './helpers.js';

describe('inverted softmax (the foundation slice)', () => {
  it('hand-worked 3×3 example (docs/methods.md §3.4 matrices, β = 10)', () => {
    const S = new Float32Array([0.9, 0.8, 0.1, 0.2, 0.6, 0.65, -0.5, -0.1, -0.3]);
    const Pq = new Float32Array([0.8, 0.3, 0.2, 0.7, 0.6, 0.1]);
    // L_q(j) = log(e^{10·P_0j} + e^{10·P_1j}) worked by hand:
    //   j=0: log(e^8 + e^7) = 8 + log(1 + e^-1) = 8.3132617
    //   j=1: log(e^3 + e^6) = 6 + log(1 + e^-3) = 6.0485874
    //   j=2: log(e^2 + e^1) = 2 + log(1 + e^-1) = 2.3132617
    const L = [8 + Math.log(1 + Math.exp(-1)), 6 + Math.log(1 + Math.exp(-3)), 2 + Math.log(1 + Math.exp(-1))];
    expect(L[0]).toBeCloseTo(8.313262, 6);
    const norm = Normalizer.fitSimilaritiesSync({ queryBankSims: { data: Pq, rows: 2, cols: 3 } }, { method: 'is', betaQuery: 10 });
    const got = norm.scoresSync({ data: S, rows: 3, cols: 3 });
    const want = [0, 1, 2].flatMap((i) => [0, 1, 2].map((j) => 10 * S[i * 3 + j]! - L[j]!));
    expect(maxRelErr(got.data, want, 1)).toBeLessThan(1e-6);
    // row 0: (0.6867, 1.9514, −1.3133) → item 1; row 1: (−6.3133, −0.0486, 4.1867) → item 2;
    // row 2: (−13.3133, −7.0486, −5.3133) → item 2 (IS normalises every row; DIS would leave row 2 raw)
    const top = norm.searchSync({ data: S, rows: 3, cols: 3 }, { k: 1 });
    expect(Array.from(top.indices)).toEqual([1, 2, 2]);
    expect(top.scores[0]).toBeCloseTo(8 - L[1]!, 5);
  });

  const shapes: [number, number, number, number][] = [
    [1, 1, 1, 1],
    [5, 3, 7, 15],
    [40, 300, 1100, 17],
    [64, 70, 2, 128],
  ];
  for (const [nq, ng, mq, d] of shapes) {
    it(`embeddings mode ${nq} queries × ${ng} gallery, bank ${mq}, d ${d} matches a float64 reference`, async () => {
      const q = randomMatrix(nq, d, 1 + d);
      const g = randomMatrix(ng, d, 2 + d);
      const bank = randomMatrix(mq, d, 3 + d);
      const beta = 20;
      const S = refSimilarity(q.data, nq, g.data, ng, d, 'cosine');
      const P = refSimilarity(bank.data, mq, g.data, ng, d, 'cosine');
      const L = refLse(P, mq, ng, beta);
      const want = new Float64Array(nq * ng);
      for (let i = 0; i < nq; i++) for (let j = 0; j < ng; j++) want[i * ng + j] = beta * S[i * ng + j]! - L[j]!;
      const norm = await Normalizer.fit({ gallery: g, queryBank: bank }, { method: 'is', betaQuery: beta });
      const scores = await norm.scores(q);
      expect(maxRelErr(scores.data, want, 1)).toBeLessThan(1e-4);
      const k = Math.min(5, ng);
      const top = await norm.search(q, { k });
      expect(top.k).toBe(k);
      expect(sameTopK(top.indices, refTopK(want, nq, ng, k), want, ng, k, 1e-4)).toBe(true);
      expect(maxRelErr(top.scores, Array.from(top.indices).map((j, r) => want[Math.floor(r / k) * ng + j]!), 1)).toBeLessThan(1e-4);
    });
  }

  it('k larger than the gallery is clamped; k = 0 and β ≤ 0 are errors; inputs are unchanged', async () => {
    const g = randomMatrix(4, 8, 11);
    const bank = randomMatrix(6, 8, 12);
    const q = randomMatrix(2, 8, 13);
    const copies = [g.data.slice(), bank.data.slice(), q.data.slice()];
    const norm = Normalizer.fitSync({ gallery: g, queryBank: bank }, { method: 'is' });
    expect(norm.options.betaQuery).toBe(20);
    expect(norm.searchSync(q, { k: 10 }).k).toBe(4);
    expect(() => norm.searchSync(q, { k: 0 })).toThrowError(expect.objectContaining({ code: 'ERR_PARAM' }));
    await expect(norm.search(q, { k: 0 })).rejects.toMatchObject({ code: 'ERR_PARAM' });
    for (const betaQuery of [0, -1, NaN, Infinity]) {
      expect(() => Normalizer.fitSync({ gallery: g, queryBank: bank }, { method: 'is', betaQuery })).toThrowError(
        expect.objectContaining({ code: 'ERR_PARAM' }),
      );
    }
    expect(() => Normalizer.fitSync({ gallery: g, queryBank: randomMatrix(3, 7, 1) }, { method: 'is' })).toThrowError(
      expect.objectContaining({ code: 'ERR_SHAPE', message: 'queryBank has dim 7, gallery has dim 8' }),
    );
    expect(() => norm.searchSync(randomMatrix(2, 9, 1), { k: 1 })).toThrowError(expect.objectContaining({ code: 'ERR_SHAPE' }));
    expect([g.data, bank.data, q.data]).toEqual(copies);
  });
});
