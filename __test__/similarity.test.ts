import { describe, expect, it } from 'vitest';

import { DbnormError, Matrix, similarity, similaritySync } from '../dist/index.js';
import { maxRelErr, randomMatrix, refSimilarity } from './helpers.js';

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 3, 3],
  [7, 5, 15],
  [33, 17, 17],
  [300, 1030, 33],
  [2, 2100, 513],
];

describe('similarity', () => {
  for (const [n, m, d] of SHAPES) {
    for (const metric of ['cosine', 'dot'] as const) {
      it(`${metric} ${n}×${m}×${d} matches a float64 reference`, async () => {
        const a = randomMatrix(n, d, n * 31 + d);
        const b = randomMatrix(m, d, m * 17 + d + 1);
        const want = refSimilarity(a.data, n, b.data, m, d, metric);
        const got = await similarity(a, b, { metric });
        expect(got.rows).toBe(n);
        expect(got.cols).toBe(m);
        expect(got.data).toBeInstanceOf(Float32Array);
        // f32 products over d terms: absolute error ≲ 1e-6·√d·|terms|
        const floor = metric === 'cosine' ? 1e-3 : Math.sqrt(d) * 0.05;
        expect(maxRelErr(got.data, want, floor)).toBeLessThan(1e-4);
        const sync = similaritySync(a, b, { metric });
        expect(Array.from(sync.data)).toEqual(Array.from(got.data));
      });
    }
  }

  it('defaults to cosine and leaves inputs untouched', () => {
    const a = randomMatrix(4, 6, 1);
    const b = randomMatrix(5, 6, 2);
    const [ca, cb] = [a.data.slice(), b.data.slice()];
    const s = similaritySync(a, b);
    const ref = refSimilarity(a.data, 4, b.data, 5, 6, 'cosine');
    expect(maxRelErr(s.data, ref)).toBeLessThan(1e-5);
    expect(a.data).toEqual(ca);
    expect(b.data).toEqual(cb);
  });

  it('rejects bad input with stable codes and leaves it untouched', async () => {
    const a = randomMatrix(2, 3, 3);
    const copy = a.data.slice();
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(DbnormError);
        return (e as DbnormError).code;
      }
      return undefined;
    };
    expect(code(() => similaritySync({ data: a.data, rows: 2, cols: 4 }, a))).toBe('ERR_SHAPE');
    expect(code(() => similaritySync(a, randomMatrix(2, 4, 1)))).toBe('ERR_SHAPE');
    const nan = a.data.slice();
    nan[4] = NaN;
    expect(code(() => similaritySync({ data: nan, rows: 2, cols: 3 }, a))).toBe('ERR_NON_FINITE');
    const inf = a.data.slice();
    inf[0] = -Infinity;
    expect(code(() => similaritySync(a, { data: inf, rows: 2, cols: 3 }))).toBe('ERR_NON_FINITE');
    expect(code(() => similaritySync({ data: new Float32Array(6), rows: 2, cols: 3 }, a))).toBe('ERR_NON_FINITE');
    expect(code(() => similaritySync(a, a, { metric: 'l2' as 'dot' }))).toBe('ERR_PARAM');
    expect(code(() => similaritySync({ data: [1, 2] as unknown as Float32Array, rows: 1, cols: 2 }, a))).toBe('ERR_SHAPE');
    await expect(similarity({ data: a.data, rows: 3, cols: 3 }, a)).rejects.toMatchObject({ code: 'ERR_SHAPE' });
    expect(a.data).toEqual(copy);
  });

  it('Matrix validates shape and finiteness', () => {
    expect(() => new Matrix(new Float32Array(5), 2, 3)).toThrowError(/rows·cols = 2·3 = 6 values, got 5/);
    expect(() => new Matrix(new Float32Array([1, NaN]), 1, 2)).toThrowError(DbnormError);
    expect(() => new Matrix(new Float32Array(0), -1, 0)).toThrowError(/non-negative integer/);
    const m = Matrix.fromRows([
      [1, 2],
      [3, 4],
    ]);
    expect(m.get(1, 0)).toBe(3);
    expect(Array.from(m.row(1))).toEqual([3, 4]);
  });

  it('runs off the event loop: a timer fires while a large similarity runs', async () => {
    const a = randomMatrix(3000, 256, 5);
    const b = randomMatrix(3000, 256, 6);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const p = similarity(a, b, { metric: 'dot' });
    // The timer can only tick while the event loop is free: a call that did the work synchronously
    // would leave no tick before its promise settles (no wall-clock bound: sized by work).
    const out = await p;
    clearInterval(timer);
    expect(out.rows).toBe(3000);
    expect(ticks).toBeGreaterThan(0);
  });
});
