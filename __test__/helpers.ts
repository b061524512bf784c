// Shared test utilities: a seeded PRNG and plain float64 reference code written independently of
// the library (no imports from it).

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** rows×cols uniform values in [-1, 1). */
export function randomMatrix(rows: number, cols: number, seed: number): { data: Float32Array; rows: number; cols: number } {
  const r = rng(seed);
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = 2 * r() - 1;
  return { data, rows, cols };
}

/** Plain float64 similarity: rows of a against rows of b. */
export function refSimilarity(a: Float32Array, n: number, b: Float32Array, m: number, d: number, metric: 'cosine' | 'dot'): Float64Array {
  const norm = (x: Float32Array, rows: number): Float64Array => {
    const out = new Float64Array(rows * d);
    for (let i = 0; i < rows; i++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += x[i * d + t]! * x[i * d + t]!;
      const f = metric === 'cosine' ? 1 / Math.sqrt(s) : 1;
      for (let t = 0; t < d; t++) out[i * d + t] = x[i * d + t]! * f;
    }
    return out;
  };
  const na = norm(a, n);
  const nb = norm(b, m);
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += na[i * d + t]! * nb[j * d + t]!;
      out[i * m + j] = s;
    }
  return out;
}

/** L_j = log Σ_b exp(β·P_bj), max-shifted, float64; P is m×n. */
export function refLse(p: ArrayLike<number>, m: number, n: number, beta: number): Float64Array {
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let mx = -Infinity;
    for (let b = 0; b < m; b++) mx = Math.max(mx, beta * p[b * n + j]!);
    let z = 0;
    for (let b = 0; b < m; b++) z += Math.exp(beta * p[b * n + j]! - mx);
    out[j] = mx + Math.log(z);
  }
  return out;
}

/** Top-k indices of each row (score desc, index asc). */
export function refTopK(s: ArrayLike<number>, rows: number, cols: number, k: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < rows; i++) {
    const idx = Array.from({ length: cols }, (_, j) => j);
    idx.sort((x, y) => s[i * cols + y]! - s[i * cols + x]! || x - y);
    out.push(idx.slice(0, k));
  }
  return out;
}

/** Top-k lists equal except for swaps among (near-)equal reference scores. */
export function sameTopK(got: ArrayLike<number>, want: number[][], ref: ArrayLike<number>, cols: number, k: number, tol = 1e-6): boolean {
  for (let i = 0; i < want.length; i++) {
    for (let r = 0; r < k; r++) {
      const g = got[i * k + r]!;
      const w = want[i]![r]!;
      if (g !== w && Math.abs(ref[i * cols + g]! - ref[i * cols + w]!) > tol * Math.max(1, Math.abs(ref[i * cols + w]!))) return false;
    }
  }
  return true;
}

export function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>, floor = 1e-3): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / Math.max(floor, Math.abs(want[i]!)));
  return worst;
}
