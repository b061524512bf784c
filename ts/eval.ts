import { DbnormError, awaitNative, callNative } from './errors.js';
import type { RunOptions } from './job.js';
import { Matrix, type MatrixLike } from './matrix.js';
import { native } from './native.js';
import type { TopK } from './normalizer.js';

/**
 * Which gallery items are correct for which query (indices in the text→visual orientation: rows of
 * the score matrix are queries, columns gallery items, whatever the direction evaluated).
 * - `'diagonal'` (default): query i ↔ item i.
 * - `{ captionsPerItem: c }`: item-major contiguous captions, query i ↔ item ⌊i / c⌋ (COCO, Flickr, MSR-VTT files).
 * - `{ positives }`: an explicit list of correct items per query.
 */
export type GroundTruth =
  | 'diagonal'
  | {
      /** Captions per item c (query i ↔ item ⌊i / c⌋). */
      captionsPerItem: number;
    }
  | {
      /** Correct gallery indices of each query. */
      positives: ArrayLike<ArrayLike<number>>;
    };

/** How a correct item tied with other candidates is ranked (spec §5). */
export type TieMode = 'average' | 'optimistic' | 'pessimistic';

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  /** `'t2v'` (default): rows are queries. `'v2t'`: every gallery item queries the rows; its rank is that of its best caption. */
  direction?: 't2v' | 'v2t';
  /** Default `'average'` (expected position in the tied block). */
  ties?: TieMode;
  /** The K of every reported R@K (default `[1, 5, 10]`). */
  ks?: number[];
  /** Count R@1 as rank 0 strictly, like QB-Norm's metric.py (default false). */
  qbnormCompat?: boolean;
}

/**
 * Retrieval metrics (values unrounded). `R1`, `R5`, … are percentages for each requested K;
 * `MdR = median(rank) + 1`, `MnR = mean(rank) + 1`, ranks 0-based. Fields that cannot be determined
 * from top-k lists (ranks beyond the lists) are `null`.
 */
export interface RetrievalMetrics {
  /** R@K per requested K, as `{ k, value }` in the requested order (percent). */
  recall: {
    /** The K of R@K. */
    k: number;
    /** R@K in percent (NaN when undetermined, e.g. K beyond top-k lists). */
    value: number;
  }[];
  /** Median rank (1-based). */
  MdR: number | null;
  /** Mean rank (1-based). */
  MnR: number | null;
  /** Mean average precision over all positives, in [0, 1]. */
  mAP: number | null;
  /** Queries evaluated. */
  n: number;
  /** Queries skipped for having no positive. */
  skipped: number;
  /** 0-based rank per query (NaN: skipped; +Infinity: outside its top-k list). */
  ranks: Float64Array;
  /** `R1`, `R5`, `R10`, … for each requested K. */
  [recallAtK: `R${number}`]: number;
}

/** Options of {@link hubness}. */
export interface HubnessOptions {
  /** Neighbourhood size k of the k-occurrence N_k (default 10). */
  k?: number;
  /** Hub factor h (default 2): hubs have N_k ≥ h·threshold base. */
  hubFactor?: number;
  /** `'mean'` (default): base μ = k·n_q/n_g, valid for any shape. `'peer'`: base k, as scikit-hubness (right only when n_q = n_g). */
  hubThreshold?: 'mean' | 'peer';
}

/** Hubness of a retrieval result (spec §6). Rates are fractions in [0, 1]. */
export interface Hubness {
  /** Neighbourhood size k. */
  k: number;
  /** N_k(j): how many queries have gallery item j in their top-k. */
  occurrence: Uint32Array;
  /** μ = k·n_q/n_g. */
  meanOccurrence: number;
  /** Population skewness of N_k over all items (zeros included); NaN if N_k is constant. */
  skewness: number;
  /** The same over items with N_k > 0 (the official DBNorm code's convention). */
  skewnessNonzero: number;
  /** Robin Hood index Σ|N_k − μ| / (2·k·n_q): the share of occurrences to move to equalise. */
  robinHood: number;
  /** Gini coefficient of N_k. */
  gini: number;
  /** Atkinson index with ε = 0.5. */
  atkinson: number;
  /** Fraction of items that are in no top-k list. */
  antihubRate: number;
  /** The N_k threshold applied (h·μ or h·k). */
  hubThreshold: number;
  /** Hub indices, ascending. */
  hubs: Uint32Array;
  /** Fraction of all top-k slots taken by hubs. */
  hubOccurrence: number;
  /** Largest N_k over all top-k slots. */
  groupieRatio: number;
}

type NIn = import('./native/index.cjs').NativeEvalInput;

function isTopK(x: unknown): x is TopK {
  return typeof x === 'object' && x !== null && 'indices' in x && (x as TopK).indices instanceof Uint32Array;
}

function input(x: MatrixLike | TopK, nGallery?: number): NIn {
  if (isTopK(x)) {
    if (!Number.isInteger(x.rows) || !Number.isInteger(x.k) || x.indices.length !== x.rows * x.k) {
      throw new DbnormError('ERR_SHAPE', `top-k: indices has ${x.indices.length} entries, expected rows·k = ${x.rows}·${x.k}`);
    }
    if (nGallery === undefined) {
      throw new DbnormError('ERR_PARAM', 'galleryCount is required with top-k input (the lists do not say how many items exist)');
    }
    return { indices: x.indices, rows: x.rows, k: x.k, nGallery };
  }
  const m = Matrix.shaped(x as MatrixLike, 'scores');
  return { scores: { data: m.data, rows: m.rows, cols: m.cols }, rows: m.rows, k: 0, nGallery: m.cols };
}

/** @internal */
export function gtOf(gt: GroundTruth | undefined): import('./native/index.cjs').NativeGroundTruth {
  if (gt === undefined || gt === 'diagonal') return { kind: 'diagonal' };
  if (typeof gt === 'object' && 'captionsPerItem' in gt) {
    const c = gt.captionsPerItem;
    if (!Number.isInteger(c) || c < 1) throw new DbnormError('ERR_PARAM', `captionsPerItem must be an integer ≥ 1, got ${String(c)}`);
    return { kind: 'captions', captionsPerItem: c };
  }
  if (typeof gt === 'object' && 'positives' in gt) {
    const p = gt.positives;
    const offsets = new Uint32Array(p.length + 1);
    let total = 0;
    for (let i = 0; i < p.length; i++) {
      total += p[i]!.length;
      offsets[i + 1] = total;
    }
    const items = new Uint32Array(total);
    for (let i = 0, o = 0; i < p.length; i++) {
      for (let j = 0; j < p[i]!.length; j++) {
        const v = p[i]![j]!;
        if (!Number.isInteger(v) || v < 0) throw new DbnormError('ERR_PARAM', `positives[${i}][${j}] must be a non-negative integer, got ${String(v)}`);
        items[o++] = v;
      }
    }
    return { kind: 'explicit', offsets, items };
  }
  throw new DbnormError('ERR_PARAM', "groundTruth must be 'diagonal', { captionsPerItem } or { positives }");
}

/** @internal */
export function optsOf(o: EvaluateOptions | undefined): import('./native/index.cjs').NativeEvalOptions {
  const ks = o?.ks ?? [1, 5, 10];
  for (const k of ks) if (!Number.isInteger(k) || k < 1) throw new DbnormError('ERR_PARAM', `every K of ks must be an integer ≥ 1, got ${String(k)}`);
  return { direction: o?.direction ?? 't2v', ties: o?.ties ?? 'average', ks, qbnormCompat: o?.qbnormCompat ?? false };
}

/** @internal */
export function retrievalOut(r: import('./native/index.cjs').NativeRetrieval): RetrievalMetrics {
  const out = {
    recall: r.recallK.map((k, i) => ({ k, value: r.recall[i]! })),
    MdR: r.medianRank ?? null,
    MnR: r.meanRank ?? null,
    mAP: r.map ?? null,
    n: r.n,
    skipped: r.skipped,
    ranks: r.ranks,
  } as RetrievalMetrics;
  r.recallK.forEach((k, i) => {
    out[`R${k}`] = r.recall[i]!;
  });
  return out;
}

function hubOpts(o: HubnessOptions | undefined): import('./native/index.cjs').NativeHubnessOptions {
  const k = o?.k ?? 10;
  if (!Number.isInteger(k) || k < 1) throw new DbnormError('ERR_PARAM', `hubness k must be an integer ≥ 1, got ${String(k)}`);
  const hubFactor = o?.hubFactor ?? 2;
  if (!Number.isFinite(hubFactor) || hubFactor <= 0) throw new DbnormError('ERR_PARAM', `hubFactor must be a finite number > 0, got ${String(hubFactor)}`);
  return { k, hubFactor, threshold: o?.hubThreshold ?? 'mean' };
}

/** Top-k lists longer than k are cut to their first k entries (the lists are best first). */
function hubInput(x: MatrixLike | TopK, k: number, nGallery?: number): NIn {
  const i = input(x, nGallery);
  if (i.indices && i.k !== k) {
    if (i.k < k) throw new DbnormError('ERR_PARAM', `top-k lists have k = ${i.k}, fewer than the hubness k = ${k}`);
    const cut = new Uint32Array(i.rows * k);
    for (let r = 0; r < i.rows; r++) cut.set(i.indices.subarray(r * i.k, r * i.k + k), r * k);
    return { ...i, indices: cut, k };
  }
  return i;
}

function hubOut(h: import('./native/index.cjs').NativeHubness): Hubness {
  return {
    k: h.k,
    occurrence: h.occurrence,
    meanOccurrence: h.meanOccurrence,
    skewness: h.skewness,
    skewnessNonzero: h.skewnessNonzero,
    robinHood: h.robinHood,
    gini: h.gini,
    atkinson: h.atkinson,
    antihubRate: h.antihubRate,
    hubThreshold: h.hubThreshold,
    hubs: h.hubs,
    hubOccurrence: h.hubOccurrence,
    groupieRatio: h.groupieRatio,
  };
}

/**
 * Retrieval metrics of a score matrix (queries × gallery, higher is better) or of top-k lists
 * (then pass `galleryCount`). Ranks are computed in O(n_g) per query, off the event loop.
 *
 * With top-k input, R@K is exact for K ≤ k and NaN beyond; MdR/MnR/mAP are `null` unless determined
 * by the lists. `v2t` needs the full score matrix.
 */
export async function evaluate(scores: MatrixLike | TopK, groundTruth?: GroundTruth, opts?: EvaluateOptions & { galleryCount?: number } & RunOptions): Promise<RetrievalMetrics> {
  const i = input(scores, opts?.galleryCount);
  return retrievalOut(await oneBlock(opts, 'evaluate', i.rows, () => native.evaluate(i, gtOf(groundTruth), optsOf(opts))));
}

/**
 * Runs a one-pass native evaluation off the event loop with {@link RunOptions}: it is a single block
 * (milliseconds for COCO-sized inputs), so the signal is checked before it starts and an abort while
 * it runs rejects when it ends; progress is reported once, at the end.
 */
async function oneBlock<T>(opts: RunOptions | undefined, phase: string, total: number, run: () => Promise<T>): Promise<T> {
  const aborted = (): DbnormError => new DbnormError('ERR_ABORTED', `${phase} was aborted`);
  if (opts?.signal?.aborted) throw aborted();
  const out = await awaitNative(run());
  if (opts?.signal?.aborted) throw aborted();
  opts?.onProgress?.({ phase, done: total, total });
  return out;
}

/** Synchronous {@link evaluate}: blocks the event loop, so use it for small inputs only. */
export function evaluateSync(scores: MatrixLike | TopK, groundTruth?: GroundTruth, opts?: EvaluateOptions & { galleryCount?: number }): RetrievalMetrics {
  const i = input(scores, opts?.galleryCount);
  return retrievalOut(callNative(() => native.evaluateSync(i, gtOf(groundTruth), optsOf(opts))));
}

/**
 * Hubness of a score matrix (top-k per row, ties by lower index) or of top-k lists (pass
 * `galleryCount`; lists longer than `k` are cut to their first k).
 */
export async function hubness(scores: MatrixLike | TopK, opts?: HubnessOptions & { galleryCount?: number } & RunOptions): Promise<Hubness> {
  const o = hubOpts(opts);
  const i = hubInput(scores, o.k, opts?.galleryCount);
  return hubOut(await oneBlock(opts, 'hubness', i.rows, () => native.hubness(i, o)));
}

/** Synchronous {@link hubness}: small inputs only. */
export function hubnessSync(scores: MatrixLike | TopK, opts?: HubnessOptions & { galleryCount?: number }): Hubness {
  const o = hubOpts(opts);
  return hubOut(callNative(() => native.hubnessSync(hubInput(scores, o.k, opts?.galleryCount), o)));
}
