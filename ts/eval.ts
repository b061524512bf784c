import { DbnormError, awaitNative, callNative } from './errors.js';
import { type RunOptions, checkRun, progressError } from './job.js';
import { Matrix, type MatrixLike, owned } from './matrix.js';
import { native } from './native.js';
import { RUN_KEYS, U32_MAX, bool, count, describe, finite, oneOf, options, prop } from './validate.js';
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

/** How a correct item tied with other candidates is ranked (docs/methods.md §5). */
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

/** Hubness of a retrieval result (docs/methods.md §6). Rates are fractions in [0, 1]. */
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
  return typeof x === 'object' && x !== null && 'indices' in x;
}

const EVAL_KEYS = ['direction', 'ties', 'ks', 'qbnormCompat', 'galleryCount'] as const;
const HUB_KEYS = ['k', 'hubFactor', 'hubThreshold', 'galleryCount'] as const;

function input(x: MatrixLike | TopK, nGallery?: unknown): NIn {
  if (isTopK(x)) {
    const indices = prop(x, 'indices', 'top-k', 'ERR_SHAPE');
    if (!(indices instanceof Uint32Array)) throw new DbnormError('ERR_SHAPE', `top-k: indices must be a Uint32Array, got ${describe(indices)}`);
    const rows = count('top-k rows', prop(x, 'rows', 'top-k', 'ERR_SHAPE'), 0, U32_MAX, 'ERR_SHAPE');
    const k = count('top-k k', prop(x, 'k', 'top-k', 'ERR_SHAPE'), 0, U32_MAX, 'ERR_SHAPE');
    if (indices.length !== rows * k) {
      throw new DbnormError('ERR_SHAPE', `top-k: indices has ${indices.length} entries, expected rows·k = ${rows}·${k}`);
    }
    if (nGallery === undefined) {
      throw new DbnormError('ERR_PARAM', 'galleryCount is required with top-k input (the lists do not say how many items exist)');
    }
    return { indices, rows, k, nGallery: count('galleryCount', nGallery, 1) };
  }
  const m = Matrix.shaped(x as MatrixLike, 'scores');
  return { scores: { data: m.data, rows: m.rows, cols: m.cols }, rows: m.rows, k: 0, nGallery: m.cols };
}

function gtOf(gt: GroundTruth | undefined): import('./native/index.cjs').NativeGroundTruth {
  if (gt === undefined || gt === 'diagonal') return { kind: 'diagonal' };
  if (gt !== null && typeof gt === 'object' && 'captionsPerItem' in gt) {
    const o = options<{ captionsPerItem: number }>('groundTruth', gt, ['captionsPerItem'], false);
    return { kind: 'captions', captionsPerItem: count('captionsPerItem', o.captionsPerItem, 1) };
  }
  if (gt !== null && typeof gt === 'object' && 'positives' in gt) {
    const o = options<{ positives: ArrayLike<ArrayLike<number>> }>('groundTruth', gt, ['positives'], false);
    const p = o.positives;
    if (p === null || typeof p !== 'object' || typeof p.length !== 'number') throw new DbnormError('ERR_PARAM', `positives must be an array of index lists, got ${describe(p)}`);
    const n = count('positives.length', p.length);
    const lists: ArrayLike<number>[] = [];
    const offsets = new Uint32Array(n + 1);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const r = p[i];
      if (r === null || typeof r !== 'object' || typeof r.length !== 'number') throw new DbnormError('ERR_PARAM', `positives[${i}] must be an array of indices, got ${describe(r)}`);
      lists.push(r);
      total = count('the number of positives', total + r.length);
      offsets[i + 1] = total;
    }
    const items = new Uint32Array(total);
    for (let i = 0, o = 0; i < n; i++) {
      const r = lists[i]!;
      for (let j = 0; j < r.length; j++) items[o++] = count(`positives[${i}][${j}]`, r[j], 0, U32_MAX);
    }
    return { kind: 'explicit', offsets, items };
  }
  throw new DbnormError('ERR_PARAM', `groundTruth must be 'diagonal', { captionsPerItem } or { positives }, got ${describe(gt)}`);
}

function optsOf(o: Partial<EvaluateOptions>): import('./native/index.cjs').NativeEvalOptions {
  const raw = o.ks ?? [1, 5, 10];
  if (!Array.isArray(raw)) throw new DbnormError('ERR_PARAM', `ks must be an array of integers ≥ 1, got ${describe(raw)}`);
  const ks = raw.map((k, i) => count(`ks[${i}]`, k, 1));
  return {
    direction: o.direction === undefined ? 't2v' : oneOf('direction', o.direction, ['t2v', 'v2t'] as const),
    ties: o.ties === undefined ? 'average' : oneOf('ties', o.ties, ['average', 'optimistic', 'pessimistic'] as const),
    ks,
    qbnormCompat: o.qbnormCompat === undefined ? false : bool('qbnormCompat', o.qbnormCompat),
  };
}

function retrievalOut(r: import('./native/index.cjs').NativeRetrieval): RetrievalMetrics {
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

function hubOpts(o: Partial<HubnessOptions>): import('./native/index.cjs').NativeHubnessOptions {
  const k = count('hubness k', o.k ?? 10, 1);
  const hubFactor = finite('hubFactor', o.hubFactor ?? 2, 0, false);
  return { k, hubFactor, threshold: o.hubThreshold === undefined ? 'mean' : oneOf('hubThreshold', o.hubThreshold, ['mean', 'peer'] as const) };
}

/** A copy of the input arrays only the library holds (the async call owns its input, see `owned`). */
async function ownEval(i: NIn): Promise<NIn> {
  return {
    ...i,
    scores: i.scores && { ...i.scores, data: await owned(i.scores.data, 'scores') },
    indices: i.indices && (await owned(i.indices, 'indices')),
  };
}

/** Top-k lists longer than k are cut to their first k entries (the lists are best first). */
/** Hubness returns one occurrence count per gallery item in a `Uint32Array`, which Node caps at 2^32 bytes. */
const MAX_HUB_GALLERY = 2 ** 30 - 1;

function hubInput(x: MatrixLike | TopK, k: number, nGallery?: unknown): NIn {
  if (nGallery !== undefined) count('galleryCount', nGallery, 1, MAX_HUB_GALLERY);
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
  const o = options<EvaluateOptions & { galleryCount?: number } & RunOptions>('evaluate options', opts, [...EVAL_KEYS, ...RUN_KEYS]);
  const run = checkRun(o);
  const i = input(scores, o.galleryCount);
  const [gt, eo] = [gtOf(groundTruth), optsOf(o)];
  const own = await ownEval(i);
  return retrievalOut(await oneBlock(run, 'evaluate', i.rows, () => native.evaluate(own, gt, eo)));
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
  try {
    opts?.onProgress?.({ phase, done: total, total });
  } catch (e) {
    throw progressError(e); // the operation rejects with the callback's error (see RunOptions)
  }
  return out;
}

/** Synchronous {@link evaluate}: blocks the event loop, so use it for small inputs only. */
export function evaluateSync(scores: MatrixLike | TopK, groundTruth?: GroundTruth, opts?: EvaluateOptions & { galleryCount?: number }): RetrievalMetrics {
  const o = options<EvaluateOptions & { galleryCount?: number }>('evaluate options', opts, EVAL_KEYS);
  const i = input(scores, o.galleryCount);
  const [gt, eo] = [gtOf(groundTruth), optsOf(o)];
  return retrievalOut(callNative(() => native.evaluateSync(i, gt, eo)));
}

/**
 * Hubness of a score matrix (top-k per row, ties by lower index) or of top-k lists (pass
 * `galleryCount`; lists longer than `k` are cut to their first k).
 */
export async function hubness(scores: MatrixLike | TopK, opts?: HubnessOptions & { galleryCount?: number } & RunOptions): Promise<Hubness> {
  const r = options<HubnessOptions & { galleryCount?: number } & RunOptions>('hubness options', opts, [...HUB_KEYS, ...RUN_KEYS]);
  const run = checkRun(r);
  const o = hubOpts(r);
  const i = await ownEval(hubInput(scores, o.k, r.galleryCount));
  return hubOut(await oneBlock(run, 'hubness', i.rows, () => native.hubness(i, o)));
}

/** Synchronous {@link hubness}: small inputs only. */
export function hubnessSync(scores: MatrixLike | TopK, opts?: HubnessOptions & { galleryCount?: number }): Hubness {
  const r = options<HubnessOptions & { galleryCount?: number }>('hubness options', opts, HUB_KEYS);
  const o = hubOpts(r);
  const i = hubInput(scores, o.k, r.galleryCount);
  return hubOut(callNative(() => native.hubnessSync(i, o)));
}
