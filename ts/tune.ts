/**
 * `tune`: picks each method's parameters (β_q, β_g, k, CSLS K, NNN k and α) from the banks alone.
 *
 * The query bank and the gallery bank are usually paired training data (captions of training
 * images). A held-out part of them is a labelled retrieval task that never touches a test set: per
 * cross-validation fold, some gallery-bank rows become a pseudo gallery, the query-bank rows that
 * describe them become pseudo queries, and the methods are fitted on the remaining rows. The
 * similarity blocks of each fold are computed once (natively, off the event loop) and every
 * parameter setting is a cheap pass over them. See `crate/src/tune.rs` for the search.
 * @module
 */
import { DbnormError, awaitNative } from './errors.js';
import { type GalleryBank, type QueryBank, bankMatrix } from './bank.js';
import { type RunOptions, runJob } from './job.js';
import { type MatrixLike, ownedMatrix } from './matrix.js';
import { methodInfo, paramFlag } from './methods.js';
import { native } from './native.js';
import { METHODS, type Method, type MethodOptions, resolveOptions } from './normalizer.js';
import type { Metric } from './similarity.js';

/** The banks, as for {@link Normalizer.fit} (and nothing else: a tuner never sees test data). */
export interface TuneData {
  /** Query-modality bank (m_q × d), e.g. training captions. */
  queryBank: MatrixLike | QueryBank;
  /** Gallery-modality bank (m_g × d), e.g. training images; the items the query-bank rows describe. */
  galleryBank: MatrixLike | GalleryBank;
  /** Default `'cosine'`. */
  metric?: Metric;
}

/** Which query-bank rows describe which gallery-bank rows. */
export type TunePairs =
  /** Query-bank row i describes gallery-bank row ⌊i / c⌋ (item-major captions; c = 1: row by row). */
  | {
      /** Captions per gallery-bank item c (≥ 1). */
      captionsPerItem: number;
    }
  /** Explicit `[queryBankRow, galleryBankRow]` pairs; rows in no pair stay in the banks. */
  | {
      /** `[queryBankRow, galleryBankRow]` pairs. */
      pairs: ReadonlyArray<readonly [number, number]>;
    };

/** Candidate values of each parameter before refinement (defaults: log-spaced grids for cosine). */
export interface TuneGrid {
  /** β_q values (> 0; default 1, 2, 5, 10, 20, 50, 100, 200). */
  betaQuery?: number[];
  /** β_g values (> 0; default 0.5, 1, 2, 5, 10, 20, 50, 100). */
  betaGallery?: number[];
  /** DIS / DualDIS activation-set sizes (integers ≥ 1; default 1, 2, 3, 5, 10). */
  k?: number[];
  /** CSLS K values (integers ≥ 1; default 1, 2, 5, 10, 20, 50, 100). */
  cslsK?: number[];
  /** NNN k values (integers ≥ 1; default 1, 4, 16, 64, 128, 256, 512). */
  nnnK?: number[];
  /** NNN α values (≥ 0; default 0.25, 0.5, 0.75, 1). */
  nnnAlpha?: number[];
}

/** Options of {@link tune}. */
export interface TuneOptions extends RunOptions {
  /** Methods to tune (default: every method but `none`, restricted to `is`/`dis`/`csls`/`nnn` … as given). */
  methods?: readonly Method[];
  /** Objective: `'R@K'` (any K ≥ 1, e.g. `'R@1'`), `'mAP'`, `'MRR'` or `'rsum'` (R@1+R@5+R@10). Default `'R@1'`. */
  metric?: string;
  /** How the banks are paired. */
  pairs: TunePairs;
  /** Coarse grids (each list replaces the default list of that parameter). */
  grid?: TuneGrid;
  /** Cross-validation folds (default 3); each holds out its own disjoint items. */
  folds?: number;
  /** Held-out items per fold (default 1000; lowered to fit `maxBlockMB`). */
  holdout?: number;
  /** Refinement rounds after the coarse grid (default 2). */
  refine?: number;
  /** Seed of the fold assignment (default 0). Same seed, same result. */
  seed?: number;
  /** Memory budget for the cached similarity blocks of all folds, MiB (default 512). */
  maxBlockMB?: number;
}

/** Parameters in {@link MethodOptions} keys (only those the method uses). */
export type TunedParams = Omit<MethodOptions, 'method'>;

/** One evaluated setting. */
export interface TuneTrial {
  /** The setting (keys of {@link MethodOptions}). */
  params: TunedParams;
  /** Mean held-out score over the folds. */
  score: number;
  /** Score per fold. */
  foldScores: number[];
}

/** Tuning result of one method. */
export interface TuneMethodResult {
  /** The method. */
  method: Method;
  /** Best parameters (pass them to `Normalizer.fit` with `method`). */
  params: TunedParams;
  /** Mean held-out score of `params` over the folds. */
  score: number;
  /** Standard deviation of that score across folds (0 with one fold). */
  spread: number;
  /** The default parameters' mean score on the same folds (`null` without defaults, e.g. dot products). */
  defaultScore: number | null;
  /** Score of `params` per fold. */
  foldScores: number[];
  /** Score of the defaults per fold (`null` without defaults). */
  defaultFoldScores: number[] | null;
  /** Every setting evaluated (tuning curves). */
  trials: TuneTrial[];
}

/** Result of {@link tune}. */
export interface TuneResult {
  /** One entry per tuned method, in the order asked. */
  results: TuneMethodResult[];
  /** The best method and its parameters. */
  best: {
    /** The method with the best held-out score. */
    method: Method;
    /** Its parameters. */
    params: TunedParams;
  };
  /** The objective. */
  metric: string;
  /** Cross-validation folds used. */
  folds: number;
  /** Held-out items per fold actually used. */
  holdoutItems: number;
  /** Pseudo queries per fold. */
  holdoutQueries: number[];
  /** Settings × folds scored. */
  evaluations: number;
  /** β log-sum-exp passes computed (each over one fold's bank block). */
  lsePasses: number;
}

const DATA_KEYS = new Set(['queryBank', 'galleryBank', 'metric']);
const OPTION_KEYS = new Set(['methods', 'metric', 'pairs', 'grid', 'folds', 'holdout', 'refine', 'seed', 'maxBlockMB', 'signal', 'onProgress']);
const GRID_KEYS = ['betaQuery', 'betaGallery', 'k', 'cslsK', 'nnnK', 'nnnAlpha'] as const;
const DEFAULT_GRID: Required<TuneGrid> = {
  betaQuery: [1, 2, 5, 10, 20, 50, 100, 200],
  betaGallery: [0.5, 1, 2, 5, 10, 20, 50, 100],
  k: [1, 2, 3, 5, 10],
  cslsK: [1, 2, 5, 10, 20, 50, 100],
  nnnK: [1, 4, 16, 64, 128, 256, 512],
  nnnAlpha: [0.25, 0.5, 0.75, 1],
};

/** Which {@link MethodOptions} keys each method reads (from the Rust core's method registry). */
export const TUNED_KEYS: Readonly<Record<Method, ReadonlyArray<keyof TunedParams>>> = Object.freeze(
  Object.fromEntries(METHODS.map((m) => [m, methodInfo(m)!.params as ReadonlyArray<keyof TunedParams>])) as Record<Method, ReadonlyArray<keyof TunedParams>>,
);

function int(name: string, v: unknown, min: number, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 0xffffffff) {
    throw new DbnormError('ERR_PARAM', `${name} must be an integer ≥ ${min}, got ${String(v)}`);
  }
  return v;
}

function pairsCsr(pairs: TunePairs, mq: number, mg: number): { offsets: Uint32Array; items: Uint32Array } {
  if (pairs === null || typeof pairs !== 'object') throw new DbnormError('ERR_PARAM', 'pairs ({ captionsPerItem } or { pairs: [[q, g], ...] }) is required');
  if ('captionsPerItem' in pairs) {
    const c = int('pairs.captionsPerItem', pairs.captionsPerItem, 1, 1);
    if (mq !== mg * c) {
      throw new DbnormError('ERR_SHAPE', `captionsPerItem ${c}: the query bank must have galleryBank.rows × ${c} = ${mg * c} rows (item-major), got ${mq}`);
    }
    const offsets = new Uint32Array(mq + 1);
    const items = new Uint32Array(mq);
    for (let i = 0; i < mq; i++) {
      offsets[i + 1] = i + 1;
      items[i] = Math.floor(i / c);
    }
    return { offsets, items };
  }
  if ('pairs' in pairs && Array.isArray(pairs.pairs)) {
    const count = new Uint32Array(mq);
    for (const p of pairs.pairs) {
      if (!Array.isArray(p) || p.length !== 2) throw new DbnormError('ERR_PARAM', 'each pair must be [queryBankRow, galleryBankRow]');
      const [q, g] = p;
      if (!Number.isInteger(q) || q < 0 || q >= mq) throw new DbnormError('ERR_PARAM', `pair query row ${String(q)} out of range 0..${mq - 1}`);
      if (!Number.isInteger(g) || g < 0 || g >= mg) throw new DbnormError('ERR_PARAM', `pair gallery row ${String(g)} out of range 0..${mg - 1}`);
      count[q]!++;
    }
    const offsets = new Uint32Array(mq + 1);
    for (let i = 0; i < mq; i++) offsets[i + 1] = offsets[i]! + count[i]!;
    const items = new Uint32Array(offsets[mq]!);
    const fill = offsets.slice(0, mq);
    for (const [q, g] of pairs.pairs) items[fill[q]!++] = g;
    return { offsets, items };
  }
  throw new DbnormError('ERR_PARAM', 'pairs must be { captionsPerItem } or { pairs: [[q, g], ...] }');
}

function paramsOf(method: Method, p: { betaQuery: number; betaGallery: number; k: number; cslsK: number; nnnK: number; nnnAlpha: number }): TunedParams {
  const out: TunedParams = {};
  for (const key of TUNED_KEYS[method]) (out as Record<string, number>)[key] = (p as Record<string, number>)[key]!;
  return out;
}

function std(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) * (b - m), 0) / (xs.length - 1));
}

/**
 * Tunes each method's parameters on paired banks, off the event loop.
 *
 * ```ts
 * const t = await tune({ queryBank, galleryBank }, { pairs: { captionsPerItem: 5 }, metric: 'R@1' });
 * const norm = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method: t.best.method, ...t.best.params });
 * ```
 *
 * Guarantees: the default parameters are always a candidate and win ties, so each method's
 * `score ≥ defaultScore` on the tuner's own folds; deterministic for a `seed`.
 * @throws {@link DbnormError} `ERR_PARAM` / `ERR_SHAPE` on bad input, `ERR_ABORTED` when aborted
 */
export async function tune(data: TuneData, opts: TuneOptions): Promise<TuneResult> {
  if (data === null || typeof data !== 'object') throw new DbnormError('ERR_SHAPE', 'tune data { queryBank, galleryBank } is required');
  for (const k of Object.keys(data)) {
    if (!DATA_KEYS.has(k)) throw new DbnormError('ERR_PARAM', `tune data takes only queryBank, galleryBank and metric (the banks); got '${k}' — test data must never be passed to the tuner`);
  }
  if (opts === null || typeof opts !== 'object') throw new DbnormError('ERR_PARAM', 'tune options { pairs, ... } are required');
  for (const k of Object.keys(opts)) {
    if (!OPTION_KEYS.has(k)) throw new DbnormError('ERR_PARAM', `unknown tune option '${k}'`);
  }
  const metric = data.metric ?? 'cosine';
  if (metric !== 'cosine' && metric !== 'dot') throw new DbnormError('ERR_PARAM', `metric must be 'cosine' or 'dot', got '${String(metric)}'`);
  if (data.queryBank === undefined || data.galleryBank === undefined) throw new DbnormError('ERR_EMPTY_BANK', 'tune needs both a queryBank and a galleryBank (paired)');
  const qb = bankMatrix(data.queryBank, 'query', 'embeddings', 'queryBank');
  const gb = bankMatrix(data.galleryBank, 'gallery', 'embeddings', 'galleryBank');
  if (qb.cols !== gb.cols) throw new DbnormError('ERR_SHAPE', `queryBank has dim ${qb.cols}, galleryBank has dim ${gb.cols}`);
  const methods = (opts.methods ?? METHODS.filter((m) => m !== 'none' && methodInfo(m)!.tunable)).slice();
  if (!Array.isArray(methods) || methods.length === 0) throw new DbnormError('ERR_PARAM', 'methods must be a non-empty list');
  for (const m of methods) if (!METHODS.includes(m)) throw new DbnormError('ERR_PARAM', `unknown method '${String(m)}' (expected one of ${METHODS.join(', ')})`);
  const objective = opts.metric ?? 'R@1';
  if (typeof objective !== 'string') throw new DbnormError('ERR_PARAM', 'metric must be a string such as R@1');
  const grid: Required<TuneGrid> = { ...DEFAULT_GRID };
  if (opts.grid !== undefined) {
    if (opts.grid === null || typeof opts.grid !== 'object') throw new DbnormError('ERR_PARAM', 'grid must be an object');
    for (const k of Object.keys(opts.grid)) {
      if (!(GRID_KEYS as readonly string[]).includes(k)) throw new DbnormError('ERR_PARAM', `unknown grid key '${k}' (expected ${GRID_KEYS.join(', ')})`);
      const v = (opts.grid as Record<string, unknown>)[k];
      if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
        throw new DbnormError('ERR_PARAM', `grid.${k} must be a non-empty list of finite numbers`);
      }
      if (['k', 'cslsK', 'nnnK'].includes(k) && !v.every((x: number) => Number.isInteger(x) && x >= 1 && x <= 0xffffffff)) {
        throw new DbnormError('ERR_PARAM', `grid.${k} values must be integers ≥ 1`);
      }
      (grid as Record<string, number[]>)[k] = v.slice();
    }
  }
  const folds = int('folds', opts.folds, 1, 3);
  const holdout = int('holdout', opts.holdout, 10, 1000);
  const refine = int('refine', opts.refine, 0, 2);
  const seed = int('seed', opts.seed, 0, 0);
  const maxBlockMB = opts.maxBlockMB ?? 512;
  if (typeof maxBlockMB !== 'number' || !Number.isFinite(maxBlockMB) || maxBlockMB <= 0) throw new DbnormError('ERR_PARAM', `maxBlockMB must be a number > 0, got ${String(maxBlockMB)}`);
  const { offsets, items } = pairsCsr(opts.pairs, qb.rows, gb.rows);
  // Defaults (cosine only: for dot products β has no default, so there is no default candidate).
  let defaults: ReturnType<typeof resolveOptions> | null = null;
  if (metric === 'cosine') defaults = resolveOptions({ method: 'dual-dis' }, true);
  const nativeDefaults = defaults && {
    betaQuery: defaults.betaQuery ?? 20,
    betaGallery: defaults.betaGallery ?? 1,
    k: defaults.k,
    cslsK: defaults.cslsK,
    nnnK: defaults.nnnK,
    nnnAlpha: defaults.nnnAlpha,
  };
  const cfg = { methods, objective, metric, folds, holdout, refine, seed, maxBlockMb: maxBlockMB, grid, defaults: nativeDefaults ?? undefined };
  // The native task reads copies only the library holds (see `owned`): the caller may change its
  // buffers during the await without affecting the run.
  // (both copies start before the first await, so inputs up to one chunk are copied synchronously)
  const [qo, go] = await Promise.all([ownedMatrix(qb, 'queryBank'), ownedMatrix(gb, 'galleryBank')]);
  const r = await runJob(opts, (job) =>
    awaitNative(native.tune({ data: qo.data, rows: qo.rows, cols: qo.cols }, { data: go.data, rows: go.rows, cols: go.cols }, offsets, items, cfg, job)),
  );
  const results: TuneMethodResult[] = r.methods.map((m) => {
    const method = m.method as Method;
    return {
      method,
      params: paramsOf(method, m.best.params),
      score: m.best.mean,
      spread: std(m.best.foldScores),
      defaultScore: m.default ? m.default.mean : null,
      foldScores: m.best.foldScores,
      defaultFoldScores: m.default ? m.default.foldScores : null,
      trials: m.trials.map((t) => ({ params: paramsOf(method, t.params), score: t.mean, foldScores: t.foldScores })),
    };
  });
  const b = results[r.best]!;
  return {
    results,
    best: { method: b.method, params: b.params },
    metric: objective,
    folds,
    holdoutItems: r.holdoutItems,
    holdoutQueries: r.holdoutQueries,
    evaluations: r.evaluations,
    lsePasses: r.lsePasses,
  };
}

/** CLI flags equivalent to a method and its tuned parameters (`--methods dual-dis --beta-query 30 …`). */
export function tuneFlags(method: Method, params: TunedParams): string {
  const parts = [`--methods ${method}`];
  for (const key of TUNED_KEYS[method]) {
    const v = params[key];
    if (v !== undefined) parts.push(`${paramFlag(key)} ${+v.toPrecision(6)}`);
  }
  return parts.join(' ');
}
