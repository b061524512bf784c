/**
 * Fits that shard and merge: {@link PartialNormalizer} (one shard of a fit) and the helpers behind
 * `Normalizer.fit(data, { shard })` and `Normalizer.merge(parts)`.
 *
 * Every statistic a method fits is a reduction over bank rows (log-sum-exps, top-K values) or over
 * gallery items (each bank row's k best items), so a fit splits into a grid of independent shards:
 * shard (i, j) sees gallery slice i and bank slice j, and keeps the un-reduced states (log-sum-exps
 * in `f64`, the top-K *values*, the row lists). Merging log-add-exps and re-selects them; see
 * `crate/src/shard/mod.rs` for what is bit-identical to the one-shot fit.
 * @module
 */
import { DbnormError, awaitNative, callNative } from './errors.js';
import { type RunOptions, runJob } from './job.js';
import { native } from './native.js';
import type { Metric } from './similarity.js';
import type { Method, ResolvedOptions } from './normalizer.js';
import { optionsFromNative } from './persist.js';

type NativePartial = InstanceType<typeof native.NativePartial>;
type NativeNormalizer = InstanceType<typeof native.NativeNormalizer>;
type NativeShardSpec = import('./native/index.cjs').NativeShardSpec;

/**
 * Which slice of the whole fit this process sees: `[start, total]` per axis, the slice's row count
 * being the rows of the data passed. An axis left out is whole (start 0, total = its rows).
 *
 * Embeddings mode: `gallery` rows `start..start+rows` of the whole gallery, `queryBank` /
 * `galleryBank` rows of the whole banks. Similarity mode: the bank × gallery matrices passed are the
 * blocks `queryBank` rows × `gallery` columns (and `galleryBank` rows × `gallery` columns).
 */
export interface ShardOptions {
  /** `[start, total]` of the gallery slice. */
  gallery?: readonly [start: number, total: number];
  /** `[start, total]` of the query-bank slice. */
  queryBank?: readonly [start: number, total: number];
  /** `[start, total]` of the gallery-bank slice. */
  galleryBank?: readonly [start: number, total: number];
}

/** A row range `start .. start + count` of an axis of `total` rows. */
export interface ShardRange {
  /** First row. */
  start: number;
  /** Rows in the slice. */
  count: number;
  /** Rows of the whole axis. */
  total: number;
}

/** What a {@link PartialNormalizer} covers. */
export interface ShardCoverage {
  /** Gallery rows. */
  gallery: ShardRange;
  /** Query-bank rows (absent when the method uses no query bank). */
  queryBank?: ShardRange;
  /** Gallery-bank rows (absent when the method uses no gallery bank). */
  galleryBank?: ShardRange;
}

const AXES = ['gallery', 'queryBank', 'galleryBank'] as const;

/** Validates `shard` (`ERR_PARAM`) into the native form; row counts are checked natively. @internal */
export function resolveShard(shard: unknown): NativeShardSpec {
  if (shard === null || typeof shard !== 'object' || Array.isArray(shard)) {
    throw new DbnormError('ERR_PARAM', 'shard must be an object { gallery?: [start, total], queryBank?: [start, total], galleryBank?: [start, total] }');
  }
  for (const key of Object.keys(shard)) {
    if (!(AXES as readonly string[]).includes(key)) throw new DbnormError('ERR_PARAM', `unknown shard key '${key}' (expected gallery, queryBank, galleryBank)`);
  }
  const out: NativeShardSpec = {};
  for (const axis of AXES) {
    const v = (shard as Record<string, unknown>)[axis];
    if (v === undefined) continue;
    if (!Array.isArray(v) || v.length !== 2) throw new DbnormError('ERR_PARAM', `shard.${axis} must be [start, total], got ${JSON.stringify(v)}`);
    const [start, total] = v as unknown[];
    for (const [name, x, min] of [['start', start, 0], ['total', total, 1]] as const) {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > 0xffffffff) {
        throw new DbnormError('ERR_PARAM', `shard.${axis} ${name} must be an integer ≥ ${min} and < 2^32, got ${String(x)}`);
      }
    }
    (out as Record<string, number>)[`${axis}Start`] = start as number;
    (out as Record<string, number>)[`${axis}Total`] = total as number;
  }
  return out;
}

/**
 * The even split used by the CLI's `--shard gallery=i/n,bank=j/m`: shard `i` (0-based) of `n` over
 * `total` rows covers `⌊i·total/n⌋ .. ⌊(i+1)·total/n⌋` (sizes differ by at most one).
 * @throws {@link DbnormError} `ERR_PARAM` unless `0 ≤ i < n ≤ total`
 */
export function evenSplit(i: number, n: number, total: number): ShardRange {
  for (const [name, v] of [['i', i], ['n', n], ['total', total]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new DbnormError('ERR_PARAM', `${name} must be a non-negative integer, got ${String(v)}`);
  }
  if (n === 0 || i >= n) throw new DbnormError('ERR_PARAM', `shard ${i}/${n}: expected 0 ≤ i < n`);
  if (n > total) throw new DbnormError('ERR_PARAM', `cannot split ${total} rows into ${n} non-empty shards`);
  const at = (k: number): number => Number((BigInt(k) * BigInt(total)) / BigInt(n));
  return { start: at(i), count: at(i + 1) - at(i), total };
}

function partialError(what: string): DbnormError {
  return new DbnormError('ERR_PARTIAL', `${what} needs a full normaliser; this is a partial one (one shard of a fit): merge the parts with Normalizer.merge first`);
}

/**
 * One shard of a fit: what `Normalizer.fit(data, { ..., shard })` returns. Save it, load it, and
 * merge all shards with `Normalizer.merge(parts)`. It cannot score or search: those methods throw
 * `ERR_PARTIAL`.
 */
export class PartialNormalizer {
  readonly #native: NativePartial;
  /** The resolved parameters (must agree across the parts of one fit). */
  readonly options: Readonly<ResolvedOptions>;

  /** @internal */
  constructor(n: NativePartial, options: ResolvedOptions) {
    this.#native = n;
    this.options = Object.freeze({ ...options });
  }

  /** @internal The native handle (for merging). */
  static handle(p: PartialNormalizer): NativePartial {
    return p.#native;
  }

  /** The method. */
  get method(): Method {
    return this.options.method;
  }

  /** `'embeddings'` or `'similarities'`. */
  get mode(): 'embeddings' | 'similarities' {
    return this.#native.info().mode as 'embeddings' | 'similarities';
  }

  /** The similarity metric (embeddings mode) or `null`. */
  get metric(): Metric | null {
    return (this.#native.info().metric ?? null) as Metric | null;
  }

  /** Embedding dimension (0 in similarity mode). */
  get dim(): number {
    return this.#native.info().dim;
  }

  /** Always `true` (a {@link Normalizer} has no such property). */
  get partial(): true {
    return true;
  }

  /** The slices this shard covers (a bank the method does not use is absent). */
  get shard(): ShardCoverage {
    const i = this.#native.info();
    return { gallery: i.gallery, ...(i.queryBank ? { queryBank: i.queryBank } : {}), ...(i.galleryBank ? { galleryBank: i.galleryBank } : {}) };
  }

  /** Saves the shard (the save-file format, version 2 with the partial flag; atomic write). */
  async save(path: string): Promise<void> {
    await awaitNative(this.#native.save(checkPath(path)));
  }

  /** Synchronous {@link PartialNormalizer.save}. */
  saveSync(path: string): void {
    const p = checkPath(path);
    callNative(() => this.#native.saveSync(p));
  }

  /**
   * Loads a shard saved by {@link PartialNormalizer.save}.
   * @throws {@link DbnormError} `ERR_FORMAT` (not a partial file, corrupted, inconsistent), `ERR_IO`
   */
  static async load(path: string): Promise<PartialNormalizer> {
    const n = await awaitNative(native.NativePartial.load(checkPath(path)));
    return new PartialNormalizer(n, optionsFromNative(n.fittedParams()));
  }

  /** Synchronous {@link PartialNormalizer.load}. */
  static loadSync(path: string): PartialNormalizer {
    const p = checkPath(path);
    const n = callNative(() => native.NativePartial.loadSync(p));
    return new PartialNormalizer(n, optionsFromNative(n.fittedParams()));
  }

  /** Always throws `ERR_PARTIAL`: merge the parts first. */
  search(..._args: unknown[]): never {
    throw partialError('search');
  }

  /** Always throws `ERR_PARTIAL`. */
  searchSync(..._args: unknown[]): never {
    throw partialError('searchSync');
  }

  /** Always throws `ERR_PARTIAL`. */
  scores(..._args: unknown[]): never {
    throw partialError('scores');
  }

  /** Always throws `ERR_PARTIAL`. */
  scoresSync(..._args: unknown[]): never {
    throw partialError('scoresSync');
  }

  /** Always throws `ERR_PARTIAL`. */
  rerank(..._args: unknown[]): never {
    throw partialError('rerank');
  }

  /** Always throws `ERR_PARTIAL`. */
  rerankSync(..._args: unknown[]): never {
    throw partialError('rerankSync');
  }

  /** Always throws `ERR_PARTIAL`. */
  augmentedGallery(): never {
    throw partialError('augmentedGallery');
  }

  /** Always throws `ERR_PARTIAL`. */
  augmentQueries(..._args: unknown[]): never {
    throw partialError('augmentQueries');
  }

  /** Always throws `ERR_PARTIAL`. */
  addGallery(..._args: unknown[]): never {
    throw partialError('addGallery');
  }
}

function checkPath(path: unknown): string {
  if (typeof path !== 'string' || path.length === 0) {
    throw new DbnormError('ERR_PARAM', `path must be a non-empty string, got ${path === null ? 'null' : typeof path}`);
  }
  return path;
}

/** A part to merge: a {@link PartialNormalizer} or the path of a saved one. */
export type MergePart = PartialNormalizer | string;

async function loadParts(parts: readonly MergePart[]): Promise<PartialNormalizer[]> {
  checkParts(parts);
  return Promise.all(parts.map((p) => (typeof p === 'string' ? PartialNormalizer.load(p) : p)));
}

function checkParts(parts: unknown): asserts parts is readonly MergePart[] {
  if (!Array.isArray(parts)) throw new DbnormError('ERR_MERGE', 'parts must be an array of partial normalisers or paths');
  if (parts.length === 0) throw new DbnormError('ERR_MERGE', 'no parts to merge');
  parts.forEach((p, i) => {
    if (!(p instanceof PartialNormalizer) && typeof p !== 'string') {
      throw new DbnormError('ERR_MERGE', `parts[${i}] is not a PartialNormalizer or a path${p !== null && typeof p === 'object' && 'search' in p ? ' (a full normaliser cannot be merged)' : ''}`);
    }
  });
}

/** Merges parts into a native normaliser and its options (behind `Normalizer.merge`). @internal */
export async function mergeParts(parts: readonly MergePart[], opts?: RunOptions): Promise<{ native: NativeNormalizer; options: ResolvedOptions }> {
  const loaded = await loadParts(parts);
  const m = new native.NativeMerger();
  for (const p of loaded) m.add(PartialNormalizer.handle(p));
  const n = await runJob(opts, (job) => m.finish(job));
  return { native: n, options: optionsFromNative(n.fittedParams()) };
}

/** Synchronous {@link mergeParts}. @internal */
export function mergePartsSync(parts: readonly MergePart[]): { native: NativeNormalizer; options: ResolvedOptions } {
  checkParts(parts);
  const m = new native.NativeMerger();
  for (const p of parts) m.add(PartialNormalizer.handle(typeof p === 'string' ? PartialNormalizer.loadSync(p) : p));
  const n = callNative(() => m.finishSync());
  return { native: n, options: optionsFromNative(n.fittedParams()) };
}

/** Fits one shard off the event loop from an already validated fit input. @internal */
export async function fitPartial(input: import('./native/index.cjs').NativeFitInput, params: import('./native/index.cjs').NativeParams, resolved: ResolvedOptions, shard: unknown, opts?: RunOptions): Promise<PartialNormalizer> {
  const spec = resolveShard(shard);
  const n = await runJob(opts, (job) => native.NativePartial.fit(input, params, spec, job));
  return new PartialNormalizer(n, resolved);
}

/** Synchronous {@link fitPartial}. @internal */
export function fitPartialSync(input: import('./native/index.cjs').NativeFitInput, params: import('./native/index.cjs').NativeParams, resolved: ResolvedOptions, shard: unknown): PartialNormalizer {
  const spec = resolveShard(shard);
  return new PartialNormalizer(callNative(() => native.NativePartial.fitSync(input, params, spec)), resolved);
}
