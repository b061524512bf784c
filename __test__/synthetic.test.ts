// syntheticBenchmark: deterministic output and boundary validation of its options.
import { describe, expect, it } from 'vitest';
import { DbnormError, syntheticBenchmark } from '../dist/index.js';

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code;
  }
  return undefined;
}

const small = { dim: 8, gallery: 20, queryBank: 30, galleryBank: 10 };

describe('syntheticBenchmark', () => {
  it('is deterministic per seed, unit-row, with the requested shapes', () => {
    const a = syntheticBenchmark({ ...small, seed: 7, captionsPerItem: 2 });
    const b = syntheticBenchmark({ ...small, seed: 7, captionsPerItem: 2 });
    const c = syntheticBenchmark({ ...small, seed: 8, captionsPerItem: 2 });
    expect(a.queries.rows).toBe(40);
    expect(a.gallery.rows).toBe(20);
    expect(a.queryBank.rows).toBe(30);
    expect(a.galleryBank.rows).toBe(10);
    expect(Buffer.from(a.gallery.data.buffer).equals(Buffer.from(b.gallery.data.buffer))).toBe(true);
    expect(Buffer.from(a.gallery.data.buffer).equals(Buffer.from(c.gallery.data.buffer))).toBe(false);
    for (let i = 0; i < a.gallery.rows; i++) {
      let s = 0;
      for (let t = 0; t < 8; t++) s += a.gallery.data[i * 8 + t]! ** 2;
      expect(Math.abs(s - 1)).toBeLessThan(1e-5);
    }
    expect(a.hubs.length).toBeGreaterThan(0);
  });

  it('refuses unknown keys, bad counts and out-of-range fractions with coded errors', () => {
    expect(code(() => syntheticBenchmark({ ...small, gallry: 5 } as never))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark({ ...small, gallery: 0 }))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark({ ...small, gallery: 2.5 }))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark({ ...small, dim: -1 }))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark({ ...small, seed: Number.NaN }))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark({ ...small, hubFraction: 1.5 }))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark({ ...small, hubPull: -0.1 }))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark({ ...small, queryNoise: Infinity }))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark({ ...small, galleryOffset: '1' as never }))).toBe('ERR_PARAM');
    expect(code(() => syntheticBenchmark('x' as never))).toBe('ERR_PARAM');
    // Sizes whose matrices could not be allocated are refused before any allocation.
    expect(code(() => syntheticBenchmark({ dim: 65536, gallery: 40000 }))).toBe('ERR_SHAPE');
  });
});
