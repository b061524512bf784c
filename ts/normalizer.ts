import { type EvaluateOptions, type GroundTruth, type RetrievalMetrics, gtOf, optsOf, retrievalOut } from './eval.js';
import { DbnormError, type ErrorCode, callNative } from './errors.js';
import { type GalleryBank, type QueryBank, bankMatrix } from './bank.js';
import { type RunOptions, runJob } from './job.js';
import { Matrix, type MatrixLike, owned, ownedMatrix } from './matrix.js';
import { npySource, readNpySync } from './npy.js';
import { native } from './native.js';
import { type CandidateIds, candidateIds } from './candidates.js';
import { loadNormalizer, loadNormalizerSync, saveNormalizer, saveNormalizerSync } from './persist.js';
import { METHOD_INFO, type MethodInfo, PARAM_INFO, type ParamInfo, methodInfo } from './methods.js';
import type { METHOD_IDS } from './method-ids.js';
import type { Metric } from './similarity.js';
import { type MergePart, type PartialNormalizer, type ShardOptions, fitPartial, fitPartialSync, mergeParts, mergePartsSync } from './shard.js';
import { RUN_KEYS, count, describe, oneOf, options, path as checkedPath } from './validate.js';

/**
 * A normalisation method (formulas in the README and `docs/methods.md`):
 *
 * | method | banks | score ℓ(q, j) |
 * |---|---|---|
 * | `none` | – | s |
 * | `is` | query | β_q·s − L_q(j) |
 * | `dis` | query | β_q·s − γ_q(q)·L_q(j) |
 * | `dual-is` | query + gallery | (β_q+β_g)·s − L_q(j) − L_g(j) |
 * | `dual-dis` | query + gallery | (β_q+β_g)·s − γ_q(q)·L_q(j) − γ_g(q)·L_g(j) |
 * | `csls` | query | 2s − r_T(q) − r_S(j) |
 * | `nnn` | query | s − α·mean of the k largest bank similarities of j |
 * | `sn` | query | s − h(j), h = −τ·log u: Sinkhorn potentials of query bank × gallery |
 * | `dual-sn` | query + gallery | s − h(j), Sinkhorn over query bank × [gallery ; gallery bank] (DBSN) |
 *
 * with `L_x(j) = log Σ_b exp(β_x·P^x_bj)` over the bank rows and γ the DIS gates on the raw top-1.
 *
 * The union is generated from the Rust method registry at build time (`ts/method-ids.ts`), so every
 * registered method is a `Method`; {@link METHOD_INFO} has each one's banks, parameters and
 * servability.
 */
export type Method = (typeof METHOD_IDS)[number];

/** Every method, in table order (read from the Rust core's method registry, see {@link METHOD_INFO}). */
export const METHODS: readonly Method[] = Object.freeze(METHOD_INFO.map((m) => m.id as Method));

/** Method and parameters. Unset values take the defaults of docs/methods.md §2.2 (see {@link resolveOptions}). */
export interface MethodOptions {
  /** The normalisation method (see {@link Method}). */
  method: Method;
  /**
   * Inverse temperature β_q of the query-bank normaliser (it multiplies similarities; > 0).
   * Default 20 for cosine embeddings; **required** for dot products and precomputed similarities,
   * because a good β depends on the similarity scale (β on cosine ≈ 100 × β on ×100 logits).
   */
  betaQuery?: number;
  /** Inverse temperature β_g of the gallery-bank normaliser (> 0). Default 1 for cosine embeddings; otherwise required. */
  betaGallery?: number;
  /** DIS / DualDIS activation-set size: each bank row's k best gallery items (integer ≥ 1, default 1). */
  k?: number;
  /** CSLS neighbourhood size K (integer ≥ 1, default 10; clamped to the gallery and bank sizes). */
  cslsK?: number;
  /** NNN neighbourhood size k over the bank (integer ≥ 1, default 128; clamped to the bank size). */
  nnnK?: number;
  /** NNN weight α (≥ 0, default 0.75). */
  nnnAlpha?: number;
  /**
   * Sinkhorn temperature τ of `sn` / `dual-sn` (it divides similarities; ≥ 1e-30). Default 0.01 for
   * cosine embeddings (as in DBSN); **required** for dot products and precomputed similarities.
   */
  tau?: number;
  /** Sinkhorn iterations T of `sn` / `dual-sn` (integer 0 … 100000, default 10; 0 keeps the raw ranking). */
  iterations?: number;
  /** Sinkhorn early stop of `sn` / `dual-sn`: L2 error of the bank marginal below which iterations stop (≥ 0, default 0 = off). */
  tol?: number;
}

/** Fully resolved parameters (what a fitted {@link Normalizer} uses). */
export interface ResolvedOptions {
  /** The method. */
  method: Method;
  /** β_q, or `null` if the method does not use it. */
  betaQuery: number | null;
  /** β_g, or `null` if the method does not use it. */
  betaGallery: number | null;
  /** DIS / DualDIS activation-set size. */
  k: number;
  /** CSLS neighbourhood size K. */
  cslsK: number;
  /** NNN neighbourhood size k. */
  nnnK: number;
  /** NNN weight α. */
  nnnAlpha: number;
  /** Sinkhorn temperature τ, or `null` if the method does not use it. */
  tau: number | null;
  /** Sinkhorn iterations. */
  iterations: number;
  /** Sinkhorn early-stop threshold (0 = off). */
  tol: number;
}

/** Top-k result per query: `indices` and `scores` are `rows × k`, row-major, best first (score desc, index asc). */
export interface TopK {
  /** Number of queries. */
  rows: number;
  /** Items per query (the requested k clamped to the gallery size). */
  k: number;
  /** Gallery indices, `rows × k`. */
  indices: Uint32Array;
  /** Normalised scores (higher is better), `rows × k`. */
  scores: Float32Array;
}

/** How an inner product over the augmented vectors maps to the normalised score (see {@link Normalizer.augmentedInfo}). */
export interface AugmentedInfo {
  /** `score = scale · ip − offset(q)`. */
  scale: number;
  /** K of the per-query offset: mean of the K largest raw similarities of q over the gallery (CSLS), 0 for none. */
  offsetK: number;
  /** Augmented columns: 2 for DualDIS, else 1. */
  extra: number;
  /** Whether the query's augmented columns depend on its raw top-1 (DIS, DualDIS). */
  gated: boolean;
}

/** Options of {@link Normalizer.fit} and {@link Normalizer.fitSimilarities}. */
export interface FitOptions extends MethodOptions, RunOptions {
  /**
   * Leak guard (embeddings mode). `'warn'` (default) emits a process warning (code `DBNORM_LEAK`)
   * the first time queries identical to query-bank rows are scored, or when gallery items appear in
   * the gallery bank; `'strict'` throws `ERR_LEAK` instead; `'off'` skips the check. Normalising
   * with the test queries themselves inflates results.
   */
  leakGuard?: 'warn' | 'strict' | 'off';
  /**
   * What the fitted normaliser keeps (embeddings mode; default `'all'`). `'statistics'` keeps only the
   * per-gallery statistics and activation data: the gallery must be a `.npy` file (a path, or a
   * matrix from `readNpy(path, { mmap: true })`); it is read block by block at fit and again at
   * every search, and the saved file references it (path, length, CRC-32) instead of copying it. A
   * changed source file is refused (`ERR_SOURCE`). Banks given as files are referenced too, so
   * `addGallery` reads them again; banks given as in-memory matrices are dropped after the fit, and
   * `addGallery` is then `ERR_SOURCE`. Results are bit-identical to `'all'`.
   */
  keep?: 'all' | 'statistics';
  /**
   * How the fitted gallery is stored for search (default `'float32'`). `'float16'` / `'bfloat16'`
   * halve its memory (and the bytes a search reads); similarities are computed from the rounded
   * values with float32 accumulation, so scores differ from `'float32'` by the rounding (see README
   * "Large galleries" for the measured top-10 agreement). Not with `keep: 'statistics'`.
   */
  galleryStorage?: GalleryStorage;
}

/** Storage of a fitted gallery (see {@link FitOptions.galleryStorage}). */
export type GalleryStorage = 'float32' | 'float16' | 'bfloat16';

/** How a normaliser holds its gallery ({@link Normalizer.storage}). */
export interface StorageInfo {
  /** `'statistics'`: a lean normaliser reading its gallery from `gallerySource`. */
  keep: 'all' | 'statistics';
  /** The in-memory storage of the gallery rows (`'float32'` for a lean one). */
  galleryStorage: GalleryStorage;
  /** A lean normaliser's gallery file. */
  gallerySource: string | null;
  /** A lean normaliser's query-bank file (read again by `addGallery`), when the fit read the bank from a file. */
  queryBankSource: string | null;
  /** A lean normaliser's gallery-bank file (read again by `addGallery`), when the fit read the bank from a file. */
  galleryBankSource: string | null;
  /** Bytes of gallery rows held in memory (a lean normaliser: rows added by `addGallery` only). */
  galleryBytes: number;
}

/**
 * Options of a sharded fit: `shard` says which slice of the whole fit this process sees (see
 * {@link ShardOptions}); the fit returns a {@link PartialNormalizer} to save and later merge with
 * {@link Normalizer.merge}.
 */
export type ShardedFitOptions = FitOptions & {
  /** Which slice of the whole fit this process sees. */
  shard: ShardOptions;
};


/** New gallery items in similarity mode: their similarities to the fit-time banks (rows in bank order). */
export interface AddGallerySimilarities {
  /** Query bank × new items (m_q × n_new). */
  queryBankSims?: MatrixLike;
  /** Gallery bank × new items (m_g × n_new). */
  galleryBankSims?: MatrixLike;
  /** Number of new items, needed only when no matrix is given (method `none`). */
  count?: number;
}

/** Embeddings-mode fit input. All matrices are row-major `float32`, one item per row, same dimension. */
export interface FitData {
  /** The gallery (n_g × d), e.g. test images; or the path of a `.npy` file (mapped, or with `keep: 'statistics'` read in blocks). */
  gallery: MatrixLike | string;
  /** Query-modality bank (m_q × d), e.g. training captions, or a `.npy` path. Needed by every method except `none`. */
  queryBank?: MatrixLike | QueryBank | string;
  /** Gallery-modality bank (m_g × d), e.g. training images, or a `.npy` path. Needed by `dual-is` and `dual-dis`. Must not contain gallery items. */
  galleryBank?: MatrixLike | GalleryBank | string;
  /** Default `'cosine'`. */
  metric?: Metric;
}

/** Similarity-mode fit input: precomputed matrices on the same scale as the query × gallery scores. */
export interface FitSimilaritiesData {
  /** Query bank × gallery similarities (m_q × n_g), cross-modal. */
  queryBankSims?: MatrixLike | QueryBank;
  /** Gallery bank × gallery similarities (m_g × n_g), same modality. */
  galleryBankSims?: MatrixLike | GalleryBank;
  /**
   * Query bank × gallery bank similarities (m_q × m_g), cross-modal, bank rows in the order of
   * `queryBankSims`: the gallery-bank rows of `dual-sn` (DBSN), which then needs no `galleryBankSims`.
   */
  queryBankGalleryBankSims?: MatrixLike;
  /** Gallery size, needed only for `none` when no bank matrix is given. */
  galleryCount?: number;
}

/** The option keys of {@link MethodOptions} (from the method table). */
export const METHOD_OPTION_KEYS: readonly string[] = Object.freeze(['method', ...PARAM_INFO.map((p) => p.name)]);

function needs(method: Method): MethodInfo {
  return methodInfo(method)!;
}

function checkParam(spec: ParamInfo, v: unknown): number {
  const lo = spec.minInclusive ? v !== undefined && typeof v === 'number' && v >= spec.min : typeof v === 'number' && v > spec.min;
  const ok = typeof v === 'number' && Number.isFinite(v) && lo && v <= spec.max && (spec.kind === 'float' || Number.isSafeInteger(v));
  if (ok) return v;
  const rel = spec.minInclusive ? '≥' : '>';
  throw new DbnormError(
    'ERR_PARAM',
    spec.kind === 'int'
      ? `${spec.name} must be an integer ${rel} ${spec.min} and ≤ ${spec.max} (${spec.doc}), got ${describe(v)}`
      : `${spec.name} must be a finite number ${rel} ${spec.min} (${spec.doc}), got ${describe(v)}`,
  );
}

/**
 * Applies the defaults of the method table and validates every parameter (types, ranges, and the
 * option keys: an unknown key is `ERR_PARAM` naming the nearest valid one).
 * @param cosineEmbeddings whether β defaults apply (embeddings mode with cosine similarity)
 * @param extraKeys further option keys the caller accepts besides the method parameters
 *   (default: the keys of {@link RunOptions} and `leakGuard`)
 * @throws {@link DbnormError} `ERR_PARAM`
 */
export function resolveOptions(opts: MethodOptions, cosineEmbeddings: boolean, extraKeys: readonly string[] = [...RUN_KEYS, 'leakGuard']): ResolvedOptions {
  if (opts === null || typeof opts !== 'object') throw new DbnormError('ERR_PARAM', `options { method, ... } are required, got ${describe(opts)}`);
  if (!Array.isArray(extraKeys) || extraKeys.some((k) => typeof k !== 'string')) throw new DbnormError('ERR_PARAM', 'extraKeys must be an array of option names');
  const o = options<Record<string, unknown>>('options', opts, [...METHOD_OPTION_KEYS, ...extraKeys], false);
  const method = o.method;
  const info = typeof method === 'string' ? methodInfo(method) : undefined;
  if (info === undefined) {
    throw new DbnormError('ERR_PARAM', `unknown method ${describe(method)} (expected one of ${METHODS.join(', ')})`);
  }
  const why = cosineEmbeddings ? '' : ' for dot-product embeddings and precomputed similarities';
  const out: Record<string, number | null> = {};
  for (const spec of PARAM_INFO) {
    const v = o[spec.name];
    if (spec.defaultCosineOnly && !info.params.includes(spec.name)) {
      out[spec.name] = null; // β of a method that does not read it
    } else if (v === undefined) {
      if (spec.defaultCosineOnly && !cosineEmbeddings) {
        throw new DbnormError(
          'ERR_PARAM',
          spec.name === 'tau'
            ? `tau is required${why}: τ is a temperature relative to the similarity scale (τ on ×100 logits ≈ 100 × τ on cosine), ` +
                `so no default is safe; e.g. 0.01 for cosine-scale scores, 1 for ×100 logits`
            : `${spec.name} is required${why}: β is an inverse temperature relative to the similarity scale ` +
                `(β on cosine ≈ 100 × β on ×100 logits), so no default is safe; e.g. 20 for cosine-scale scores, 0.2 for ×100 logits`,
        );
      }
      out[spec.name] = spec.default;
    } else {
      out[spec.name] = checkParam(spec, v);
    }
  }
  return { method: method as Method, ...out } as unknown as ResolvedOptions;
}

function toNativeParams(r: ResolvedOptions): import('./native/index.cjs').NativeParams {
  // Every parameter of the method table by name (generic: a new table entry needs no code here).
  // A β the method does not read resolves to null; the core still wants a valid number for it.
  const values: Record<string, number> = {};
  const all = r as unknown as Record<string, number | null>;
  for (const spec of PARAM_INFO) values[spec.name] = all[spec.name] ?? spec.default;
  return { method: r.method, values };
}

function nm(m: Matrix): import('./native/index.cjs').NativeMatrix {
  return { data: m.data, rows: m.rows, cols: m.cols };
}

function bankCheck(method: Method, which: 'query' | 'gallery', m: Matrix | undefined, name: string): void {
  const needed = which === 'query' ? needs(method).queryBank : needs(method).galleryBank;
  if (needed && (m === undefined || m.rows === 0)) {
    throw new DbnormError(
      'ERR_EMPTY_BANK',
      `method '${method}' needs a non-empty ${name}; got ${m === undefined ? 'none' : '0 rows'}`,
    );
  }
}

type NativeNormalizer = InstanceType<typeof native.NativeNormalizer>;

function checkGuard(v: unknown): 'warn' | 'strict' | 'off' {
  return v === undefined ? 'warn' : oneOf('leakGuard', v, ['warn', 'strict', 'off'] as const);
}

/** A copy of every matrix of a native input object that only the library holds (see `owned`). */
async function ownInput<T extends object>(input: T): Promise<T> {
  const out: Record<string, unknown> = { ...(input as Record<string, unknown>) };
  for (const [key, v] of Object.entries(out)) {
    if (v !== null && typeof v === 'object' && 'data' in v && (v as { data: unknown }).data instanceof Float32Array) {
      const m = v as import('./native/index.cjs').NativeMatrix;
      out[key] = { ...m, data: await owned(m.data, key) };
    }
  }
  return out as T;
}

const FIT_DATA_KEYS = ['gallery', 'queryBank', 'galleryBank', 'metric'] as const;
const FIT_SIMS_KEYS = ['queryBankSims', 'galleryBankSims', 'queryBankGalleryBankSims', 'galleryCount'] as const;

function prepareFit(raw: FitData, opts: MethodOptions, extraKeys: readonly string[]) {
  if (raw === null || typeof raw !== 'object') throw new DbnormError('ERR_SHAPE', `fit data { gallery, queryBank?, galleryBank? } is required, got ${describe(raw)}`);
  const data = options<FitData>('fit data', raw, FIT_DATA_KEYS, false) as FitData;
  const metric = data.metric ?? 'cosine';
  if (metric !== 'cosine' && metric !== 'dot') throw new DbnormError('ERR_PARAM', `metric must be 'cosine' or 'dot', got ${describe(metric)}`);
  const resolved = resolveOptions(opts, metric === 'cosine', extraKeys);
  const gallery = Matrix.shaped(data.gallery as MatrixLike, 'gallery');
  if (gallery.rows === 0) throw new DbnormError('ERR_SHAPE', 'gallery has 0 rows (need at least one item)');
  const need = needs(resolved.method);
  // Every given bank is validated (shapes here, finiteness natively); the method uses what it needs.
  const qAll = data.queryBank === undefined ? undefined : bankMatrix(data.queryBank as MatrixLike | QueryBank, 'query', 'embeddings', 'queryBank');
  const gAll = data.galleryBank === undefined ? undefined : bankMatrix(data.galleryBank as MatrixLike | GalleryBank, 'gallery', 'embeddings', 'galleryBank');
  const queryBank = need.queryBank ? qAll : undefined;
  const galleryBank = need.galleryBank ? gAll : undefined;
  bankCheck(resolved.method, 'query', queryBank, 'queryBank');
  bankCheck(resolved.method, 'gallery', galleryBank, 'galleryBank');
  for (const [m, name] of [[qAll, 'queryBank'], [gAll, 'galleryBank']] as const) {
    if (m && m.rows > 0 && m.cols !== gallery.cols) throw new DbnormError('ERR_SHAPE', `${name} has dim ${m.cols}, gallery has dim ${gallery.cols}`);
  }
  const input = {
    mode: 'embeddings',
    metric,
    gallery: nm(gallery),
    queryBank: qAll && nm(qAll),
    galleryBank: gAll && nm(gAll),
  };
  return { input, resolved };
}

/** Option keys of a fit besides the method and run options. */
const FIT_STORE_KEYS = ['leakGuard', 'keep', 'galleryStorage'] as const;

function storeOptions(o: { keep?: unknown; galleryStorage?: unknown }): { keep: 'all' | 'statistics'; galleryStorage: GalleryStorage | undefined } {
  const keep = o.keep === undefined ? 'all' : oneOf('keep', o.keep, ['all', 'statistics'] as const);
  const galleryStorage = o.galleryStorage === undefined ? undefined : oneOf('galleryStorage', o.galleryStorage, ['float32', 'float16', 'bfloat16'] as const);
  if (keep === 'statistics' && galleryStorage !== undefined && galleryStorage !== 'float32') {
    throw new DbnormError('ERR_PARAM', "keep: 'statistics' reads the gallery from its source file; galleryStorage applies to a gallery held in memory");
  }
  return { keep, galleryStorage };
}

/** Fit data with every path replaced by its mapped matrix. */
async function mapPaths(data: FitData): Promise<FitData> {
  return mapPathsSync(data);
}

function mapPathsSync(data: FitData): FitData {
  if (data === null || typeof data !== 'object') return data;
  // Read through the validating accessor (a hostile getter or proxy gives a coded error).
  const d = options<FitData>('fit data', data, FIT_DATA_KEYS, false) as FitData;
  if (typeof d.gallery !== 'string' && typeof d.queryBank !== 'string' && typeof d.galleryBank !== 'string') return d;
  const out: Record<string, unknown> = { ...d };
  for (const key of ['gallery', 'queryBank', 'galleryBank'] as const) {
    const v = out[key];
    if (typeof v === 'string') out[key] = readNpySync(v, { mmap: true });
  }
  return out as unknown as FitData;
}

/** The native input of a lean fit: paths for the gallery (required) and for banks that are files. */
function prepareLeanFit(raw: FitData, opts: MethodOptions, extraKeys: readonly string[]) {
  if (raw === null || typeof raw !== 'object') throw new DbnormError('ERR_SHAPE', `fit data { gallery, queryBank?, galleryBank? } is required, got ${describe(raw)}`);
  const data = options<FitData>('fit data', raw, FIT_DATA_KEYS, false) as FitData;
  const metric = data.metric ?? 'cosine';
  if (metric !== 'cosine' && metric !== 'dot') throw new DbnormError('ERR_PARAM', `metric must be 'cosine' or 'dot', got ${describe(metric)}`);
  const resolved = resolveOptions(opts, metric === 'cosine', extraKeys);
  const pathOf = (v: unknown): string | undefined => (typeof v === 'string' ? checkedPath(v) : npySource(v));
  const galleryPath = pathOf(data.gallery);
  if (galleryPath === undefined) {
    throw new DbnormError('ERR_PARAM', "keep: 'statistics' needs the gallery as a .npy file: a path, or a matrix from readNpy(path, { mmap: true })");
  }
  const need = needs(resolved.method);
  const bank = (v: unknown, which: 'query' | 'gallery', name: string) => {
    if (v === undefined) return { path: undefined, m: undefined };
    const p = pathOf(v);
    if (p !== undefined) return { path: p, m: undefined };
    return { path: undefined, m: bankMatrix(v as MatrixLike, which, 'embeddings', name) };
  };
  const q = bank(data.queryBank, 'query', 'queryBank');
  const g = bank(data.galleryBank, 'gallery', 'galleryBank');
  if (need.queryBank && q.path === undefined) bankCheck(resolved.method, 'query', q.m, 'queryBank');
  if (need.galleryBank && g.path === undefined) bankCheck(resolved.method, 'gallery', g.m, 'galleryBank');
  const input = {
    mode: 'embeddings',
    metric,
    keep: 'statistics',
    galleryPath,
    queryBankPath: q.path,
    galleryBankPath: g.path,
    queryBank: q.m && nm(q.m),
    galleryBank: g.m && nm(g.m),
  };
  return { input, resolved };
}

function prepareFitSims(raw: FitSimilaritiesData, opts: MethodOptions, extraKeys: readonly string[]) {
  if (raw === null || typeof raw !== 'object') throw new DbnormError('ERR_SHAPE', `fit data { queryBankSims?, galleryBankSims? } is required, got ${describe(raw)}`);
  const data = options<FitSimilaritiesData>('fit data', raw, FIT_SIMS_KEYS, false) as FitSimilaritiesData;
  const resolved = resolveOptions(opts, false, extraKeys);
  const need = needs(resolved.method);
  if (need.embeddingsOnly) {
    throw new DbnormError(
      'ERR_PARAM',
      `method '${resolved.method}' needs embeddings (it transforms or averages vectors); it cannot be fitted from precomputed similarities: use Normalizer.fit with embeddings`,
    );
  }
  const qAll = data.queryBankSims === undefined ? undefined : bankMatrix(data.queryBankSims, 'query', 'similarities', 'queryBankSims');
  const gAll = data.galleryBankSims === undefined ? undefined : bankMatrix(data.galleryBankSims, 'gallery', 'similarities', 'galleryBankSims');
  const q = need.queryBank ? qAll : undefined;
  // DBSN's gallery bank enters as the query bank × gallery bank matrix, not as galleryBankSims.
  const cross = need.crossBankSims;
  const g = need.galleryBank && !cross ? gAll : undefined;
  bankCheck(resolved.method, 'query', q, 'queryBankSims');
  if (!cross) bankCheck(resolved.method, 'gallery', g, 'galleryBankSims');
  if (q && g && q.cols !== g.cols) {
    throw new DbnormError('ERR_SHAPE', `galleryBankSims has ${g.cols} columns (gallery items), queryBankSims has ${q.cols}`);
  }
  const hAll = data.queryBankGalleryBankSims === undefined ? undefined : Matrix.shaped(data.queryBankGalleryBankSims, 'queryBankGalleryBankSims');
  if (cross && (hAll === undefined || hAll.rows === 0 || hAll.cols === 0)) {
    throw new DbnormError(
      'ERR_EMPTY_BANK',
      `method '${resolved.method}' needs a non-empty queryBankGalleryBankSims (query bank × gallery bank, m_q × m_g) in similarity mode; got ${hAll === undefined ? 'none' : '0 rows'}`,
    );
  }
  if (hAll && qAll && hAll.rows > 0 && qAll.rows > 0 && hAll.rows !== qAll.rows) {
    throw new DbnormError('ERR_SHAPE', `queryBankGalleryBankSims has ${hAll.rows} rows, queryBankSims has ${qAll.rows} (both are query-bank rows)`);
  }
  let galleryCount: number | undefined;
  if (data.galleryCount !== undefined) galleryCount = count('galleryCount', data.galleryCount, 1);
  const input = { mode: 'similarities', queryBankSims: qAll && nm(qAll), galleryBankSims: gAll && nm(gAll), queryBankGalleryBankSims: hAll && nm(hAll), galleryCount };
  return { input, resolved };
}

/**
 * A fitted hubness normaliser: per-gallery statistics from the banks, kept in native memory.
 * Create one with {@link Normalizer.fit} (embeddings) or {@link Normalizer.fitSimilarities}
 * (precomputed matrices), then score or search queries as often as you like; a fitted normaliser
 * is immutable and safe to share between concurrent requests.
 *
 * ```ts
 * const norm = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method: 'dual-dis' });
 * const top = await norm.search(queries, { k: 10 });   // top.indices: Uint32Array, rows × 10
 * ```
 */
export class Normalizer {
  readonly #native: NativeNormalizer;
  /** The resolved parameters. */
  readonly options: Readonly<ResolvedOptions>;

  private constructor(n: NativeNormalizer, options: ResolvedOptions) {
    this.#native = n;
    this.options = Object.freeze({ ...options });
  }

  /**
   * Fits from embeddings, off the event loop. The bank × gallery similarities are streamed block by
   * block and never held in memory at once.
   * @throws {@link DbnormError} `ERR_SHAPE`, `ERR_NON_FINITE`, `ERR_PARAM`, `ERR_EMPTY_BANK`, `ERR_ABORTED`
   */
  static fit(data: FitData, opts: ShardedFitOptions): Promise<PartialNormalizer>;
  static fit(data: FitData, opts: FitOptions): Promise<Normalizer>;
  static async fit(data: FitData, opts: FitOptions): Promise<Normalizer | PartialNormalizer> {
    const o = options<ShardedFitOptions>('options', opts, [...METHOD_OPTION_KEYS, ...RUN_KEYS, ...FIT_STORE_KEYS, 'shard']);
    const guard = checkGuard(o.leakGuard);
    const store = storeOptions(o);
    if (store.keep === 'statistics') {
      if (o.shard !== undefined) throw new DbnormError('ERR_PARAM', "keep: 'statistics' cannot be combined with shard (merge the parts, then refit lean)");
      const { input, resolved } = prepareLeanFit(data, opts, [...RUN_KEYS, ...FIT_STORE_KEYS]);
      const n = await runJob(o, (job) => native.NativeNormalizer.fit(input, toNativeParams(resolved), job));
      return new Normalizer(n, resolved).#withGuard(guard);
    }
    const { input, resolved } = prepareFit(await mapPaths(data), opts, [...RUN_KEYS, ...FIT_STORE_KEYS, 'shard']);
    if (o.shard !== undefined && store.galleryStorage !== undefined) throw new DbnormError('ERR_PARAM', 'galleryStorage cannot be combined with shard (set it when merging is done: withGalleryStorage)');
    const owned = { ...(await ownInput(input)), galleryStorage: store.galleryStorage };
    if (o.shard !== undefined) return fitPartial(owned, toNativeParams(resolved), resolved, o.shard, o);
    const n = await runJob(o, (job) => native.NativeNormalizer.fit(owned, toNativeParams(resolved), job));
    return new Normalizer(n, resolved).#withGuard(guard);
  }

  /** Synchronous {@link Normalizer.fit}: blocks the event loop, so use it for small inputs only. */
  static fitSync(data: FitData, opts: MethodOptions & Pick<FitOptions, 'leakGuard'> & { shard: ShardOptions }): PartialNormalizer;
  static fitSync(data: FitData, opts: MethodOptions & Pick<FitOptions, 'leakGuard'>): Normalizer;
  static fitSync(data: FitData, opts: MethodOptions & Pick<FitOptions, 'leakGuard' | 'keep' | 'galleryStorage'>): Normalizer | PartialNormalizer {
    const o = options<ShardedFitOptions>('options', opts, [...METHOD_OPTION_KEYS, ...FIT_STORE_KEYS, 'shard']);
    const guard = checkGuard(o.leakGuard);
    const store = storeOptions(o);
    if (store.keep === 'statistics') {
      if (o.shard !== undefined) throw new DbnormError('ERR_PARAM', "keep: 'statistics' cannot be combined with shard (merge the parts, then refit lean)");
      const { input, resolved } = prepareLeanFit(data, opts, FIT_STORE_KEYS);
      return new Normalizer(callNative(() => native.NativeNormalizer.fitSync(input, toNativeParams(resolved))), resolved).#withGuard(guard);
    }
    const { input, resolved } = prepareFit(mapPathsSync(data), opts, [...FIT_STORE_KEYS, 'shard']);
    if (o.shard !== undefined && store.galleryStorage !== undefined) throw new DbnormError('ERR_PARAM', 'galleryStorage cannot be combined with shard (set it when merging is done: withGalleryStorage)');
    if (o.shard !== undefined) return fitPartialSync(input, toNativeParams(resolved), resolved, o.shard);
    return new Normalizer(callNative(() => native.NativeNormalizer.fitSync({ ...input, galleryStorage: store.galleryStorage }, toNativeParams(resolved))), resolved).#withGuard(guard);
  }

  #withGuard(g: 'warn' | 'strict' | 'off'): this {
    this.#leakGuard = g;
    if (g !== 'off' && this.mode === 'embeddings') {
      const n = this.#native.galleryBankOverlap();
      if (n > 0) {
        const msg = `${n} gallery items also appear in the gallery bank: each gets a near-constant e^{β_g} term (the gallery bank must not contain gallery items)`;
        if (g === 'strict') throw new DbnormError('ERR_LEAK', msg);
        process.emitWarning(msg, { code: 'DBNORM_LEAK' });
      }
    }
    return this;
  }

  /**
   * Fits from precomputed similarities (e.g. ×100 logits from CLIP4Clip). β has no default here.
   * Score later with query × gallery similarity matrices of the same scale.
   */
  static fitSimilarities(data: FitSimilaritiesData, opts: MethodOptions & RunOptions & { shard: ShardOptions }): Promise<PartialNormalizer>;
  static fitSimilarities(data: FitSimilaritiesData, opts: MethodOptions & RunOptions): Promise<Normalizer>;
  static async fitSimilarities(data: FitSimilaritiesData, opts: MethodOptions & RunOptions): Promise<Normalizer | PartialNormalizer> {
    const { input, resolved } = prepareFitSims(data, opts, [...RUN_KEYS, 'shard']);
    const o = options<RunOptions & { shard?: ShardOptions }>('options', opts, [...METHOD_OPTION_KEYS, ...RUN_KEYS, 'shard']);
    const owned = await ownInput(input);
    if (o.shard !== undefined) return fitPartial(owned, toNativeParams(resolved), resolved, o.shard, o);
    const n = await runJob(o, (job) => native.NativeNormalizer.fit(owned, toNativeParams(resolved), job));
    return new Normalizer(n, resolved);
  }

  /** Synchronous {@link Normalizer.fitSimilarities}: small inputs only. */
  static fitSimilaritiesSync(data: FitSimilaritiesData, opts: MethodOptions & { shard: ShardOptions }): PartialNormalizer;
  static fitSimilaritiesSync(data: FitSimilaritiesData, opts: MethodOptions): Normalizer;
  static fitSimilaritiesSync(data: FitSimilaritiesData, opts: MethodOptions): Normalizer | PartialNormalizer {
    const { input, resolved } = prepareFitSims(data, opts, ['shard']);
    const shard = (opts as { shard?: ShardOptions }).shard;
    if (shard !== undefined) return fitPartialSync(input, toNativeParams(resolved), resolved, shard);
    return new Normalizer(callNative(() => native.NativeNormalizer.fitSync(input, toNativeParams(resolved))), resolved);
  }

  /** The method. */
  get method(): Method {
    return this.options.method;
  }

  /** Number of gallery items (0 only for a `none` similarity-mode normaliser fitted with neither matrices nor `galleryCount`). */
  get galleryCount(): number {
    return this.#native.galleryCount;
  }

  /** `'embeddings'` or `'similarities'`: what {@link Normalizer.scores} and {@link Normalizer.search} take. */
  get mode(): 'embeddings' | 'similarities' {
    return this.#native.mode as 'embeddings' | 'similarities';
  }

  /** Embedding dimension (0 in similarity mode). */
  get dim(): number {
    return this.#native.dim;
  }

  /** How this normaliser holds its gallery: lean (`keep: 'statistics'`) or in memory, and in which precision. */
  get storage(): StorageInfo {
    const s = this.#native.storageInfo();
    return {
      keep: s.keep as 'all' | 'statistics',
      galleryStorage: s.galleryStorage as GalleryStorage,
      gallerySource: s.gallerySource ?? null,
      queryBankSource: s.queryBankSource ?? null,
      galleryBankSource: s.galleryBankSource ?? null,
      galleryBytes: s.galleryBytes,
    };
  }

  /**
   * A copy of this normaliser with its gallery stored as `storage` (see {@link FitOptions.galleryStorage});
   * this one is unchanged. Converting back to `'float32'` gives the rounded values, widened.
   * @throws {@link DbnormError} `ERR_PARAM` (similarity mode, a lean normaliser, a value beyond the format's range)
   */
  withGalleryStorage(storage: GalleryStorage): Normalizer {
    const s = oneOf('galleryStorage', storage, ['float32', 'float16', 'bfloat16'] as const);
    return new Normalizer(callNative(() => this.#native.withGalleryStorage(s)), this.options).#withGuard(this.#leakGuard);
  }

  /** The similarity metric (embeddings mode) or `null`. */
  get metric(): Metric | null {
    return this.#native.metric as Metric | null;
  }

  #input(input: MatrixLike): Matrix {
    const m = Matrix.shaped(input, this.mode === 'embeddings' ? 'queries' : 'similarities');
    if (this.mode === 'embeddings' && m.cols !== this.dim) {
      throw new DbnormError('ERR_SHAPE', `queries have dim ${m.cols}, gallery has dim ${this.dim}`);
    }
    if (this.mode === 'similarities' && this.galleryCount > 0 && m.cols !== this.galleryCount) {
      throw new DbnormError('ERR_SHAPE', `similarities have ${m.cols} columns, the fitted gallery has ${this.galleryCount} items`);
    }
    return m;
  }

  #cols(m: Matrix): number {
    return this.mode === 'embeddings' ? this.galleryCount : m.cols;
  }

  /** Whether the native task should count leaked queries (the leak guard, off the event loop). */
  get #guarding(): boolean {
    return this.#leakGuard !== 'off' && this.mode === 'embeddings';
  }

  /**
   * The full normalised score matrix, queries × gallery (row-major `float32`, higher is better).
   * `input` is query embeddings (n_q × d) in embeddings mode, or query × gallery similarities
   * (n_q × n_g) in similarity mode. Prefer {@link Normalizer.search} when only the top-k is needed.
   */
  async scores(input: MatrixLike, opts?: RunOptions): Promise<Matrix> {
    const o = options<RunOptions>('scores options', opts, RUN_KEYS);
    const m = this.#input(input);
    const own = await ownedMatrix(m, 'queries');
    const out = await runJob(o, (job) => this.#native.scores(nm(own), this.#guarding, job));
    this.#leaked(out.leaked, m.rows);
    return Matrix.unchecked(out.data, m.rows, this.#cols(m));
  }

  /** Synchronous {@link Normalizer.scores}: small inputs only. */
  scoresSync(input: MatrixLike): Matrix {
    const m = this.#input(input);
    const out = callNative(() => this.#native.scoresSync(nm(m), this.#guarding));
    this.#leaked(out.leaked, m.rows);
    return Matrix.unchecked(out.data, m.rows, this.#cols(m));
  }

  /**
   * Top-k gallery items per query under the normalised score, fused (the full score matrix is never
   * built). `k` is clamped to the gallery size.
   */
  async search(input: MatrixLike, opts: { k: number } & RunOptions): Promise<TopK> {
    const o = options<{ k: number } & RunOptions>('search options', opts, ['k', ...RUN_KEYS], false);
    const m = this.#input(input);
    const k = count('k', o.k, 1);
    const own = await ownedMatrix(m, 'queries');
    return this.#topk(await runJob(o, (job) => this.#native.search(nm(own), k, this.#guarding, job)));
  }

  /**
   * Retrieval metrics (R@K, MdR, MnR, mAP) of this normaliser's scores on `input`, streamed over the
   * gallery: equal to `evaluate(await this.scores(input), groundTruth, opts)` — bit for bit — without
   * building the n_q × n_g score matrix (memory: a few numbers per query). Rows of `input` are the
   * queries (t2v); for v2t, fit a normaliser with the other modality as gallery.
   */
  async evaluate(input: MatrixLike, groundTruth?: GroundTruth, opts?: Omit<EvaluateOptions, 'direction'> & RunOptions): Promise<RetrievalMetrics> {
    const o = options<EvaluateOptions & RunOptions>('evaluate options', opts, ['ties', 'ks', 'qbnormCompat', 'direction', ...RUN_KEYS]);
    const [g, eo] = [gtOf(groundTruth), this.#evalOpts(o)];
    const own = await ownedMatrix(this.#input(input), 'queries');
    return retrievalOut(await runJob(o, (job) => this.#native.evaluate(nm(own), g, eo, job)));
  }

  /** Synchronous {@link Normalizer.evaluate}: small inputs only. */
  evaluateSync(input: MatrixLike, groundTruth?: GroundTruth, opts?: Omit<EvaluateOptions, 'direction'>): RetrievalMetrics {
    const o = options<EvaluateOptions>('evaluate options', opts, ['ties', 'ks', 'qbnormCompat', 'direction']);
    const [g, eo] = [gtOf(groundTruth), this.#evalOpts(o)];
    const m = this.#input(input);
    return retrievalOut(callNative(() => this.#native.evaluateSync(nm(m), g, eo)));
  }

  #evalOpts(o: EvaluateOptions): import('./native/index.cjs').NativeEvalOptions {
    if (o.direction === 'v2t') {
      throw new DbnormError('ERR_PARAM', 'Normalizer.evaluate ranks the gallery for each query (t2v); for v2t fit a normaliser with the test queries as gallery');
    }
    return optsOf(o);
  }

  /** Synchronous {@link Normalizer.search}: small inputs only. */
  searchSync(input: MatrixLike, opts: { k: number }): TopK {
    const o = options<{ k: number }>('search options', opts, ['k'], false);
    const m = this.#input(input);
    const k = count('k', o.k, 1);
    return this.#topk(callNative(() => this.#native.searchSync(nm(m), k, this.#guarding)));
  }

  #topk(t: import('./native/index.cjs').NativeTopK): TopK {
    this.#leaked(t.leaked, t.rows);
    return { rows: t.rows, k: t.k, indices: t.indices, scores: t.scores };
  }

  /**
   * Appends gallery items after fit. Their statistics come from the banks stored at fit, so for every
   * bank-based method the result equals fitting on the whole gallery (activation sets included).
   * Embeddings mode: `items` is n_new × d. Similarity mode: pass the new items' bank similarities
   * `{ queryBankSims: m_q × n_new, galleryBankSims: m_g × n_new }` (bank rows in fit order).
   * Zero new items is a no-op. A gallery-dependent method (its {@link MethodInfo.galleryDependent}:
   * SN / DBSN, plain InvGC) is refitted from the stored banks over the whole new gallery (the cost of
   * a fit); in similarity mode it throws `ERR_UNSUPPORTED` (the old bank × gallery similarities are
   * not kept: fit again).
   *
   * Mutations are serialized: concurrent `addGallery` calls are applied in call order, and
   * {@link Normalizer.addGallerySync} while one is pending throws `ERR_BUSY` (nothing is lost or
   * half-applied). Searches already running keep the gallery they started with.
   * @returns the new gallery size
   */
  async addGallery(items: MatrixLike | AddGallerySimilarities, opts?: RunOptions): Promise<number> {
    const o = options<RunOptions>('addGallery options', opts, RUN_KEYS);
    const input = this.#addInput(items);
    this.#pendingAdds++;
    const run = this.#adding
      .then(async () => {
        const own = await ownInput(input);
        const out = await runJob(o, (job) => this.#native.addGallery(own, job));
        if (out.error !== undefined && out.error !== null) throw new DbnormError((out.code ?? 'ERR_INTERNAL') as ErrorCode, out.error);
        return out.galleryCount;
      })
      .finally(() => {
        this.#pendingAdds--; // before the caller's continuation runs
      });
    this.#adding = run.catch(() => undefined);
    return run;
  }

  /**
   * Synchronous {@link Normalizer.addGallery}: small inputs only.
   * @throws {@link DbnormError} `ERR_BUSY` while an asynchronous `addGallery` on this normaliser is pending
   */
  addGallerySync(items: MatrixLike | AddGallerySimilarities): number {
    if (this.#pendingAdds > 0) {
      throw new DbnormError('ERR_BUSY', `addGallerySync: ${this.#pendingAdds} asynchronous addGallery call(s) on this normaliser are pending; await them first (mutations are serialized, never interleaved)`);
    }
    const input = this.#addInput(items);
    return callNative(() => this.#native.addGallerySync(input));
  }

  #adding: Promise<unknown> = Promise.resolve();
  #pendingAdds = 0;

  #addInput(items: MatrixLike | AddGallerySimilarities): import('./native/index.cjs').NativeAddInput {
    if (items === null || typeof items !== 'object') throw new DbnormError('ERR_SHAPE', `addGallery: expected new items, got ${describe(items)}`);
    if (this.mode === 'embeddings') {
      const m = Matrix.shaped(items as MatrixLike, 'items');
      if (m.cols !== this.dim) throw new DbnormError('ERR_SHAPE', `new gallery items have dim ${m.cols}, gallery has dim ${this.dim}`);
      return { items: nm(m) };
    }
    const s = options<AddGallerySimilarities>('addGallery items', items, ['queryBankSims', 'galleryBankSims', 'count'], false);
    const q = s.queryBankSims === undefined ? undefined : Matrix.shaped(s.queryBankSims, 'queryBankSims');
    const g = s.galleryBankSims === undefined ? undefined : Matrix.shaped(s.galleryBankSims, 'galleryBankSims');
    const c = s.count === undefined ? undefined : count('count', s.count, 0);
    if (q === undefined && g === undefined && c === undefined) throw new DbnormError('ERR_SHAPE', 'addGallery: give queryBankSims / galleryBankSims, or count (method none)');
    return { queryBankSims: q && nm(q), galleryBankSims: g && nm(g), count: c };
  }

  #rerankInput(input: MatrixLike, candidates: CandidateIds): [Matrix, Uint32Array, number] {
    const m = Matrix.shaped(input, this.mode === 'embeddings' ? 'queries' : 'candidateSims');
    const [ids, c] = candidateIds(candidates, m.rows);
    return [m, ids, c];
  }

  /**
   * Re-scores candidate gallery ids per query — what an approximate nearest-neighbour index over the
   * raw vectors returned — with the normalised score, best first. `input` is query embeddings
   * (n_q × d) or, in similarity mode, the candidates' raw similarities (n_q × c, aligned with
   * `candidates`). `candidates` is n_q × c gallery indices: a flat `Uint32Array` or `BigUint64Array`
   * (usearch's keys), or one list per query of numbers or bigints; every id must be a non-negative
   * safe integer below the gallery size (`ERR_PARAM` / `ERR_SHAPE` otherwise).
   * The DIS/DualDIS gate and the CSLS offset are taken over the candidates: exact when they contain
   * the query's raw top-1 (top-K for CSLS), as a raw nearest-neighbour index returns them.
   */
  async rerank(input: MatrixLike, candidates: CandidateIds, opts?: RunOptions): Promise<TopK> {
    const o = options<RunOptions>('rerank options', opts, RUN_KEYS);
    const [m, ids, c] = this.#rerankInput(input, candidates);
    const own = await ownedMatrix(m, 'queries');
    const ownIds = await owned(ids, 'candidates');
    return this.#topk(await runJob(o, (job) => this.#native.rerank(nm(own), ownIds, c, this.#guarding, job)));
  }

  /** Synchronous {@link Normalizer.rerank} (an online request: one or a few queries). */
  rerankSync(input: MatrixLike, candidates: CandidateIds): TopK {
    const [m, ids, c] = this.#rerankInput(input, candidates);
    return this.#topk(callNative(() => this.#native.rerankSync(nm(m), ids, c, this.#guarding)));
  }

  /**
   * Gallery vectors for a plain inner-product index that returns exactly the normalised ranking
   * (docs/methods.md §4): row j is `[g_j ; −b_j]` with `g_j` as compared (unit rows under cosine) and the
   * per-item bias `b_j` (IS: L_q/β_q; DualIS: (L_q+L_g)/(β_q+β_g); CSLS: r_S/2; NNN: α·mean). DIS
   * adds one column −L_q/β_q and DualDIS two (−L_q, −L_g over β_q+β_g); query them with
   * {@link Normalizer.augmentQueries}, which applies the gates. n_g × (d + 1), or d + 2 for `dual-dis`.
   * Use an inner-product metric (a cosine index would renormalise) and keep the extra columns in
   * full precision. Embeddings mode only. `range` selects rows `start .. start + count` (e.g. the
   * items a {@link Normalizer.addGallery} appended).
   * @throws {@link DbnormError} `ERR_UNSUPPORTED` if the method is not bias-reducible
   *   ({@link MethodInfo.biasReducible}; re-rank candidates with {@link Normalizer.rerank} instead)
   */
  augmentedGallery(range?: { start?: number; count?: number }): Matrix {
    let start: number | undefined;
    let rows: number | undefined;
    if (range !== undefined) {
      if (range === null || typeof range !== 'object') throw new DbnormError('ERR_PARAM', 'range must be { start?, count? }');
      start = count('range.start', range.start ?? 0);
      rows = count('range.count', range.count ?? Math.max(0, this.galleryCount - start));
    }
    const a = callNative(() => this.#native.augmentedGallery(start, rows));
    return Matrix.unchecked(a.data, a.rows, a.cols);
  }

  /**
   * Query vectors matching {@link Normalizer.augmentedGallery}: `[q ; 1]` (q as compared), or for DIS
   * and DualDIS `[q ; γ_q (; γ_g)]` with the gates of the raw top-1 (found here by a raw search: the
   * spec's two-pass rule; blocks the event loop — prefer {@link Normalizer.augmentQueriesAsync}).
   * Querying with `[q ; 0…]` gives the raw ranking from the same index. With `opts.top1` (one raw
   * top-1 gallery index per query, e.g. what an inner-product engine returned for `[q ; 0…]`) the
   * gates come from those ids and no search runs.
   * @throws {@link DbnormError} `ERR_UNSUPPORTED` if the method is not bias-reducible
   */
  augmentQueries(queries: MatrixLike, opts?: { top1?: CandidateIds }): Matrix {
    const m = this.#input(queries);
    const o = options<{ top1?: CandidateIds }>('augmentQueries options', opts, ['top1']);
    const top1 = o.top1 === undefined ? undefined : candidateIds(o.top1, m.rows);
    if (top1 !== undefined && top1[1] !== 1 && m.rows > 0) throw new DbnormError('ERR_SHAPE', `top1 must hold one id per query, got ${top1[1]}`);
    if (this.#guarding) this.#leaked(callNative(() => this.#native.leakedQueries(nm(m))), m.rows);
    const a = callNative(() => (top1 ? this.#native.augmentQueriesWithTop1(nm(m), top1[0]) : this.#native.augmentQueries(nm(m))));
    return Matrix.unchecked(a.data, a.rows, a.cols);
  }

  /** {@link Normalizer.augmentQueries} off the event loop (DIS/DualDIS run a raw search), with `signal`. */
  async augmentQueriesAsync(queries: MatrixLike, opts?: RunOptions): Promise<Matrix> {
    const o = options<RunOptions>('augmentQueriesAsync options', opts, RUN_KEYS);
    const m = this.#input(queries);
    const own = await ownedMatrix(m, 'queries');
    if (this.#guarding) this.#leaked(callNative(() => this.#native.leakedQueries(nm(own))), own.rows);
    const a = await runJob(o, (job) => this.#native.augmentQueriesAsync(nm(own), job));
    return Matrix.unchecked(a.data, a.rows, a.cols);
  }

  /**
   * How to turn an engine's inner product over the augmented vectors back into the normalised score:
   * `score = scale · ⟨[q ; γ…], [g ; −b]⟩ − offset(q)`, where `offset(q)` is the mean of the
   * `offsetK` largest raw similarities of q over the gallery (CSLS), else 0; `extra` is the number of
   * augmented columns and `gated` says whether the query columns need the raw top-1 (DIS, DualDIS).
   * @throws {@link DbnormError} `ERR_UNSUPPORTED` if the method is not bias-reducible
   */
  augmentedInfo(): AugmentedInfo {
    return callNative(() => this.#native.augmentedInfo());
  }

  /** Leak guard: test queries identical to query-bank rows inflate results (counted by the native task). */
  #leaked(n: number, rows: number): void {
    if (n === 0 || !this.#guarding) return;
    const msg = `${n} of ${rows} queries are identical to query-bank rows: normalising with the test queries themselves inflates results (build the bank from training data)`;
    if (this.#leakGuard === 'strict') throw new DbnormError('ERR_LEAK', msg);
    if (!this.#warnedLeak) {
      this.#warnedLeak = true;
      process.emitWarning(msg, { code: 'DBNORM_LEAK' });
    }
  }

  #leakGuard: 'warn' | 'strict' | 'off' = 'warn';
  #warnedLeak = false;

  /**
   * Fitted per-gallery statistics, for inspection: `lseQuery[j] = L_q(j)`, `lseGallery[j] = L_g(j)`,
   * `topMeanQuery[j]` (CSLS r_S / NNN mean before α), and activation sets as 0/1 bytes.
   */
  stats(): {
    /** L_q(j) per gallery item (IS, DIS, DualIS, DualDIS). */
    lseQuery?: Float64Array;
    /** L_g(j) per gallery item (DualIS, DualDIS). */
    lseGallery?: Float64Array;
    /** Mean of the K largest query-bank similarities per item (CSLS r_S; NNN before α). */
    topMeanQuery?: Float64Array;
    /** 1 where the item is in the query bank's activation set (DIS, DualDIS). */
    activeQuery?: Uint8Array;
    /** 1 where the item is in the gallery bank's activation set (DualDIS). */
    activeGallery?: Uint8Array;
  } {
    return this.#native.stats();
  }

  /**
   * Saves this normaliser to `path`, off the event loop: method, parameters, fitted statistics and
   * (embeddings mode) the prepared gallery and banks, in dbnorm's versioned binary format with a
   * checksum. The file is written next to `path` and renamed over it, so a crash never leaves a
   * half-written file. Load it with {@link Normalizer.load}.
   * @throws {@link DbnormError} `ERR_IO` (the file cannot be written)
   */
  async save(path: string, opts?: RunOptions): Promise<void> {
    const o = options<RunOptions>('save options', opts, RUN_KEYS);
    await saveNormalizer(this.#native, path, o);
  }

  /** Synchronous {@link Normalizer.save}: blocks the event loop while writing, so use it for small normalisers. */
  saveSync(path: string): void {
    saveNormalizerSync(this.#native, path);
  }

  /**
   * Merges the shards of a sharded fit ({@link PartialNormalizer}s or paths of saved ones, in any
   * order) into the full normaliser, off the event loop. Equal to the one-shot fit: bit-identical
   * where every statistic is an exact selection or concatenation, else within float32 rounding
   * (see `crate/src/shard/mod.rs`).
   * @throws {@link DbnormError} `ERR_MERGE` (no parts; parts that overlap, leave gallery or bank rows
   *   uncovered, or disagree on method, parameters, mode, metric, dimension or totals), `ERR_FORMAT`, `ERR_IO`
   */
  static async merge(parts: readonly MergePart[], opts?: RunOptions & Pick<FitOptions, 'leakGuard'>): Promise<Normalizer> {
    const o = options<RunOptions & Pick<FitOptions, 'leakGuard'>>('options', opts, [...RUN_KEYS, 'leakGuard']);
    const guard = checkGuard(o.leakGuard);
    const { native: n, options: resolved } = await mergeParts(parts, o);
    return new Normalizer(n, resolved).#withGuard(guard);
  }

  /** Synchronous {@link Normalizer.merge}: small fits only. */
  static mergeSync(parts: readonly MergePart[], opts?: Pick<FitOptions, 'leakGuard'>): Normalizer {
    const guard = checkGuard(options<Pick<FitOptions, 'leakGuard'>>('options', opts, ['leakGuard']).leakGuard);
    const { native: n, options: resolved } = mergePartsSync(parts);
    return new Normalizer(n, resolved).#withGuard(guard);
  }

  /**
   * Loads a normaliser saved by {@link Normalizer.save}, off the event loop. Its {@link Normalizer.options},
   * scores and search results are identical, bit for bit, to the saved normaliser's. The leak guard
   * mode is not stored in the file: pass `opts.leakGuard` again (default `'warn'`).
   * @throws {@link DbnormError} `ERR_FORMAT` (truncated, corrupted, another format version or
   *   endianness, inconsistent contents; the message names the file), `ERR_IO` (cannot read)
   */
  static async load(path: string, opts?: Pick<FitOptions, 'leakGuard'> & RunOptions): Promise<Normalizer> {
    const o = options<FitOptions>('load options', opts, ['leakGuard', ...RUN_KEYS]);
    const guard = checkGuard(o.leakGuard);
    const { native: n, options: resolved } = await loadNormalizer(path, o);
    return new Normalizer(n, resolved).#withGuard(guard);
  }

  /** Synchronous {@link Normalizer.load}: blocks the event loop while reading, so use it for small files. */
  static loadSync(path: string, opts?: Pick<FitOptions, 'leakGuard'>): Normalizer {
    const guard = checkGuard(options<FitOptions>('load options', opts, ['leakGuard']).leakGuard);
    const { native: n, options: resolved } = loadNormalizerSync(path);
    return new Normalizer(n, resolved).#withGuard(guard);
  }
}
