/**
 * Engine-independent part of serving a normaliser from a vector engine: the two-pass query of
 * spec §4 over the augmented vectors (`[g ; −b]` stored, `[q ; γ…]` queried with an inner product)
 * and the conversion of the engine's inner products back into normalised scores.
 * @internal
 * @module
 */
import { DbnormError } from '../errors.js';
import { Matrix, type MatrixLike } from '../matrix.js';
import type { Normalizer, TopK } from '../normalizer.js';

/** Index marking an empty slot of a {@link EngineTopK} row (fewer hits than `k`, e.g. under a filter). */
export const NO_ITEM = 0xffffffff;

/** What an engine returned for a batch: `rows × k` slots, best first, padded with {@link NO_ITEM}. */
export interface Hits {
  /** Gallery indices (the normaliser's item order), {@link NO_ITEM} in empty slots. */
  indices: Uint32Array;
  /** Inner products `⟨query, stored vector⟩` (1 − the engine's `dot` / `ip` distance). */
  ips: Float64Array;
  /** Number of filled slots per query. */
  counts: Uint32Array;
}

/**
 * The top-k of an engine-backed search: the {@link TopK} of {@link Normalizer.search} plus the
 * number of hits per query. Rows with fewer than `k` hits (a filter, or an approximate index that
 * found fewer) are padded with index `0xffffffff` and score `-Infinity`.
 */
export interface EngineTopK extends TopK {
  /** Hits per query (≤ k). */
  counts: Uint32Array;
}

/** Runs one batch of vectors (`rows × (d + e)`) through the engine: `raw` is the ungated first pass. */
export type EngineQuery = (vectors: Matrix, k: number, raw: boolean) => Promise<Hits>;

/** Checks `k` (integer ≥ 1) and clamps it to the gallery size. */
export function checkK(k: unknown, galleryCount: number): number {
  if (typeof k !== 'number' || !Number.isSafeInteger(k) || k < 1) throw new DbnormError('ERR_PARAM', `k must be an integer ≥ 1, got ${String(k)}`);
  return Math.min(k, Math.max(1, galleryCount));
}

/** Throws `ERR_ABORTED` if `signal` fired. */
export function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new DbnormError('ERR_ABORTED', 'the operation was aborted');
}

/**
 * Sorts engine rows into {@link Hits}: per query, inner product descending, ties by gallery index
 * ascending (the order of {@link Normalizer.search}), at most `k` per query.
 */
export function collectHits(rows: number, k: number, query: ArrayLike<number>, index: ArrayLike<number>, ip: ArrayLike<number>): Hits {
  const per: number[][] = Array.from({ length: rows }, () => []);
  for (let r = 0; r < index.length; r++) {
    const qi = query[r]!;
    if (qi >= 0 && qi < rows) per[qi]!.push(r);
  }
  const indices = new Uint32Array(rows * k).fill(NO_ITEM);
  const ips = new Float64Array(rows * k).fill(-Infinity);
  const counts = new Uint32Array(rows);
  for (let i = 0; i < rows; i++) {
    const list = per[i]!;
    list.sort((a, b) => ip[b]! - ip[a]! || index[a]! - index[b]!);
    const n = Math.min(k, list.length);
    for (let j = 0; j < n; j++) {
      indices[i * k + j] = index[list[j]!]!;
      ips[i * k + j] = ip[list[j]!]!;
    }
    counts[i] = n;
  }
  return { indices, ips, counts };
}

/**
 * Normalised top-k through an engine: for DIS / DualDIS (and CSLS, whose score has a per-query
 * offset) a first ungated pass with `[q ; 0…]` finds each query's raw top-1 (top-K), then the gated
 * queries `[q ; γ…]` (from {@link Normalizer.augmentQueries} with those ids) retrieve the top-k, and
 * `score = scale · ip − offset(q)`. Both passes are one batched engine call each.
 */
export async function servedSearch(norm: Normalizer, queries: MatrixLike, k: number, signal: AbortSignal | undefined, run: EngineQuery): Promise<EngineTopK> {
  checkAbort(signal);
  const q = Matrix.shaped(queries, 'queries');
  const info = norm.augmentedInfo();
  const n = norm.galleryCount;
  let aug: Matrix;
  let offset: Float64Array | null = null;
  if (info.gated || info.offsetK > 0) {
    // Validates the queries (dimension, finite values, leak guard) and prepares them for the metric.
    const base = info.gated ? norm.augmentQueries(q, { top1: new Uint32Array(q.rows) }) : norm.augmentQueries(q);
    const raw = base.data.slice();
    const w = base.cols;
    const d = w - info.extra;
    for (let i = 0; i < base.rows; i++) raw.fill(0, i * w + d, (i + 1) * w);
    const kRaw = Math.max(1, Math.min(info.offsetK, n));
    const hits = await run(Matrix.unchecked(raw, base.rows, w), kRaw, true);
    checkAbort(signal);
    // An approximate index may return nothing for a query (e.g. IVF with few probes on a tiny
    // gallery): its gates are then 0 (as when the raw top-1 is outside the activation sets, i.e.
    // the raw vector) and its CSLS offset 0.
    if (info.offsetK > 0) {
      offset = new Float64Array(base.rows);
      for (let i = 0; i < base.rows; i++) {
        let s = 0;
        const c = hits.counts[i]!;
        for (let j = 0; j < c; j++) s += hits.ips[i * kRaw + j]!;
        offset[i] = c > 0 ? s / c : 0;
      }
    }
    if (info.gated) {
      const top1 = new Uint32Array(base.rows);
      for (let i = 0; i < base.rows; i++) top1[i] = hits.counts[i] === 0 ? 0 : hits.indices[i * kRaw]!;
      aug = norm.augmentQueries(q, { top1 });
      for (let i = 0; i < base.rows; i++) if (hits.counts[i] === 0) aug.data.fill(0, i * w + d, (i + 1) * w);
    } else {
      aug = base;
    }
  } else {
    aug = norm.augmentQueries(q);
  }
  const hits = await run(aug, k, false);
  checkAbort(signal);
  const scores = new Float32Array(aug.rows * k);
  for (let i = 0; i < aug.rows; i++) {
    const off = offset ? offset[i]! : 0;
    for (let j = 0; j < k; j++) {
      const ip = hits.ips[i * k + j]!;
      scores[i * k + j] = j < hits.counts[i]! ? info.scale * ip - off : -Infinity;
    }
  }
  return { rows: aug.rows, k, indices: hits.indices, scores, counts: hits.counts };
}

