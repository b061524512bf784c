import { DbnormError } from './errors.js';
import { Matrix } from './matrix.js';
import { count, finite, options } from './validate.js';

/** Option keys of {@link SyntheticOptions}. */
const SYNTHETIC_KEYS = ['seed', 'dim', 'gallery', 'captionsPerItem', 'queryBank', 'galleryBank', 'hubFraction', 'hubPull', 'queryNoise', 'galleryNoise', 'queryOffset', 'galleryOffset'] as const;

/** Largest element count of one generated matrix (a `Float32Array` of 2^31 − 1 elements is 8 GB). */
const MAX_ELEMENTS = 2 ** 31 - 1;

/** Parameters of {@link syntheticBenchmark}. Every field has a default. */
export interface SyntheticOptions {
  /** PRNG seed (default 42). Same seed → bit-identical data. */
  seed?: number;
  /** Embedding dimension (default 256). */
  dim?: number;
  /** Test gallery items (default 2000). */
  gallery?: number;
  /** Test queries per gallery item (default 1; queries are item-major: query i ↔ item ⌊i / c⌋). */
  captionsPerItem?: number;
  /** Query-bank rows (default 10000). */
  queryBank?: number;
  /** Gallery-bank rows (default 2000). */
  galleryBank?: number;
  /** Fraction of gallery items turned into planted hubs (default 0.03). */
  hubFraction?: number;
  /** How far a planted hub is pulled toward the mean query direction, 0..1 (default 0.2). */
  hubPull?: number;
  /** Noise norm of a caption around its concept (default 2.0; a concept has norm 1). */
  queryNoise?: number;
  /** Noise norm of a gallery vector around its concept (default 1.5). */
  galleryNoise?: number;
  /** Length of the offset shared by all queries — the "modality gap" (default 0.9). */
  queryOffset?: number;
  /** Length of the offset shared by all gallery items (default 0.6). */
  galleryOffset?: number;
}

/** A seeded synthetic cross-modal benchmark (see {@link syntheticBenchmark}). All matrices are unit-row `float32`. */
export interface SyntheticBenchmark {
  /** Test queries (captions), (gallery · captionsPerItem) × dim, item-major. */
  queries: Matrix;
  /** Test gallery, gallery × dim. */
  gallery: Matrix;
  /** Query bank (fresh captions), queryBank × dim. */
  queryBank: Matrix;
  /** Gallery bank (fresh gallery vectors), galleryBank × dim. */
  galleryBank: Matrix;
  /** Query i's positive is gallery item ⌊i / captionsPerItem⌋. */
  captionsPerItem: number;
  /** Indices of the planted hubs in the gallery. */
  hubs: Uint32Array;
}

/** mulberry32: a small, fast, seedable 32-bit PRNG (public-domain algorithm). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(u: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let x = 0;
    let y = 0;
    let r = 0;
    do {
      x = 2 * u() - 1;
      y = 2 * u() - 1;
      r = x * x + y * y;
    } while (r === 0 || r >= 1);
    const f = Math.sqrt((-2 * Math.log(r)) / r);
    spare = y * f;
    return x * f;
  };
}

function unit(v: Float64Array): Float64Array {
  let s = 0;
  for (const x of v) s += x * x;
  const inv = 1 / Math.sqrt(s);
  for (let i = 0; i < v.length; i++) v[i]! *= inv;
  return v;
}

/**
 * Generates a seeded synthetic cross-modal retrieval benchmark with planted hubs.
 *
 * Each item is a random unit *concept* c ∈ ℝ^d. Its gallery vector is `norm(c + σ_g·ε + o_g)` and
 * each of its captions is `norm(c + σ_q·ε + o_q)`, where ε is Gaussian noise and `o_q`, `o_g` are
 * fixed random offsets shared by all queries / all gallery items (the modality gap of CLIP-like
 * models). Then a fraction of gallery items become **planted hubs**: they are pulled toward the
 * mean direction of the query distribution, `g ← norm((1 − λ)·g + λ·μ_q)`, so they are similar to
 * *every* query and crowd the top of many result lists. The banks are fresh concepts drawn the same
 * way (query bank: captions; gallery bank: gallery vectors, with the same hub fraction), so they
 * can reveal which test items attract everything without touching the test queries.
 */
export function syntheticBenchmark(opts: SyntheticOptions = {}): SyntheticBenchmark {
  const o = options<SyntheticOptions>('syntheticBenchmark options', opts, SYNTHETIC_KEYS);
  const seed = count('seed', o.seed ?? 42);
  const d = count('dim', o.dim ?? 256, 1);
  const nG = count('gallery', o.gallery ?? 2000, 1);
  const c = count('captionsPerItem', o.captionsPerItem ?? 1, 1);
  const nQB = count('queryBank', o.queryBank ?? 10000, 1);
  const nGB = count('galleryBank', o.galleryBank ?? 2000, 1);
  const unitInterval = (name: string, v: number): number => {
    finite(name, v, 0);
    if (v > 1) throw new DbnormError('ERR_PARAM', `${name} must be in [0, 1], got ${v}`);
    return v;
  };
  const hubFrac = unitInterval('hubFraction', o.hubFraction ?? 0.03);
  const pull = unitInterval('hubPull', o.hubPull ?? 0.2);
  const sq = finite('queryNoise', o.queryNoise ?? 2.0, 0);
  const sg = finite('galleryNoise', o.galleryNoise ?? 1.5, 0);
  const offQ = finite('queryOffset', o.queryOffset ?? 0.9, 0);
  const offG = finite('galleryOffset', o.galleryOffset ?? 0.6, 0);
  for (const [name, rows] of [['queries', nG * c], ['gallery', nG], ['queryBank', nQB], ['galleryBank', nGB]] as const) {
    if (rows * d > MAX_ELEMENTS) {
      throw new DbnormError('ERR_SHAPE', `synthetic ${name} would have ${rows} × ${d} elements (at most ${MAX_ELEMENTS} per matrix)`);
    }
  }
  const u = rng(seed);
  const g = gaussian(u);
  const randUnit = (): Float64Array => unit(Float64Array.from({ length: d }, () => g()));
  const scale = (v: Float64Array, s: number): Float64Array => v.map((x) => x * s);
  const oq = scale(randUnit(), offQ);
  const og = scale(randUnit(), offG);
  // Noise has per-coordinate sd σ/√d, so its norm is ≈ σ (a concept has norm 1).
  const perDim = 1 / Math.sqrt(d);
  const embed = (concept: Float64Array, sigma: number, off: Float64Array): Float64Array => {
    const v = new Float64Array(d);
    for (let t = 0; t < d; t++) v[t] = concept[t]! + sigma * perDim * g() + off[t]!;
    return unit(v);
  };
  // Mean query direction: the expectation of a caption is ≈ the offset o_q (concepts average out).
  const muQ = unit(Float64Array.from(oq));
  const makeGallery = (n: number): { m: Float32Array; hubs: number[] } => {
    const m = new Float32Array(n * d);
    const hubs: number[] = [];
    const nh = Math.max(1, Math.round(hubFrac * n));
    const hubSet = new Set<number>();
    while (hubSet.size < Math.min(nh, n)) hubSet.add(Math.floor(u() * n));
    for (let i = 0; i < n; i++) {
      let v = embed(randUnit(), sg, og);
      if (hubSet.has(i)) {
        v = unit(v.map((x, t) => (1 - pull) * x + pull * muQ[t]!));
        hubs.push(i);
      }
      m.set(v, i * d);
    }
    return { m, hubs };
  };
  // Test concepts: gallery items and their captions.
  const concepts = Array.from({ length: nG }, randUnit);
  const qm = new Float32Array(nG * c * d);
  for (let i = 0; i < nG; i++) for (let r = 0; r < c; r++) qm.set(embed(concepts[i]!, sq, oq), (i * c + r) * d);
  const gm = new Float32Array(nG * d);
  const hubSet = new Set<number>();
  const nh = Math.max(1, Math.round(hubFrac * nG));
  while (hubSet.size < Math.min(nh, nG)) hubSet.add(Math.floor(u() * nG));
  for (let i = 0; i < nG; i++) {
    let v = embed(concepts[i]!, sg, og);
    if (hubSet.has(i)) v = unit(v.map((x, t) => (1 - pull) * x + pull * muQ[t]!));
    gm.set(v, i * d);
  }
  // Banks: fresh concepts.
  const qbm = new Float32Array(nQB * d);
  for (let i = 0; i < nQB; i++) qbm.set(embed(randUnit(), sq, oq), i * d);
  const gb = makeGallery(nGB);
  return {
    queries: new Matrix(qm, nG * c, d, 'queries'),
    gallery: new Matrix(gm, nG, d, 'gallery'),
    queryBank: new Matrix(qbm, nQB, d, 'queryBank'),
    galleryBank: new Matrix(gb.m, nGB, d, 'galleryBank'),
    captionsPerItem: c,
    hubs: Uint32Array.from([...hubSet].sort((a, b) => a - b)),
  };
}
