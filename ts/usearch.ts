/**
 * `dbnorm/usearch`: serve a fitted {@link Normalizer} from an in-process usearch HNSW index.
 *
 * The index holds the augmented gallery `[g_j ; −b_j]` ({@link Normalizer.augmentedGallery}) under
 * the inner-product metric, keyed by gallery index; {@link UsearchGallery.search} runs the DIS /
 * DualDIS two-pass rule and converts distances back to normalised scores. `usearch` is an optional
 * peer dependency, loaded only by this module (importing `dbnorm` never loads it).
 *
 * usearch searches synchronously on the calling thread (spread over `threads` workers for a batch),
 * so a search holds the event loop for its duration: keep batches small on a latency-sensitive
 * server, or use `dbnorm/lancedb`, whose queries run off the event loop.
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';

import type * as USearch from 'usearch';

import { type EngineTopK, NO_ITEM, checkAbort, checkK, collectHits, servedSearch } from './engines/common.js';
import { DbnormError } from './errors.js';
import type { Matrix, MatrixLike } from './matrix.js';
import { Normalizer } from './normalizer.js';

export { NO_ITEM, type EngineTopK } from './engines/common.js';

/** A user id: a string or a safe integer. */
export type UsearchItemId = string | number;

/** Options of {@link UsearchGallery.create}. */
export interface UsearchGalleryOptions {
  /** One user id per gallery item (strings or safe integers); kept beside the index and saved with it. */
  ids?: ArrayLike<UsearchItemId>;
  /** Vector storage: `'f32'` (default) or `'f16'` (half the memory; the bias columns are then rounded to f16 too). */
  quantization?: 'f32' | 'f16';
  /** HNSW graph degree M (default 16). */
  connectivity?: number;
  /** Candidate list size while building (default 128). */
  expansionAdd?: number;
  /** Candidate list size while searching, the recall knob (default 64). */
  expansionSearch?: number;
  /** Threads for adding and batch search (default 0: all cores). */
  threads?: number;
}

/** Options of {@link UsearchGallery.search}. */
export interface UsearchSearchOptions {
  /** Results per query (integer ≥ 1, clamped to the gallery size). */
  k: number;
  /** Checked between the two passes. */
  signal?: AbortSignal;
}

/** Result of {@link UsearchGallery.search}: the {@link EngineTopK} plus ids. */
export interface UsearchTopK extends EngineTopK {
  /** User ids, `rows × k` (the gallery index when no ids were given; `null` in empty slots). */
  ids: (UsearchItemId | null)[];
}

interface Config {
  quantization: 'f32' | 'f16';
  connectivity: number;
  expansionAdd: number;
  expansionSearch: number;
  threads: number;
}

const FORMAT = 1;
const CHUNK = 65536;

// Loaded with require (not import()): the CommonJS build, the one the type import above describes.
async function usearch(): Promise<typeof USearch> {
  try {
    return require('usearch') as typeof USearch;
  } catch (e) {
    throw new DbnormError('ERR_PARAM', `dbnorm/usearch needs the optional peer dependency usearch (npm i usearch@2.26): ${(e as Error).message}`);
  }
}

function engineCall<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof DbnormError) throw e;
    throw new DbnormError('ERR_IO', `usearch ${what} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function positive(name: string, v: unknown, def: number, min = 1): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new DbnormError('ERR_PARAM', `${name} must be an integer ≥ ${min}, got ${String(v)}`);
  return v;
}

function checkIds(ids: ArrayLike<UsearchItemId>, n: number): UsearchItemId[] {
  if (ids === null || typeof ids !== 'object' || ids.length !== n) throw new DbnormError('ERR_SHAPE', `ids must have one id per item (${n})`);
  const out = Array.from(ids);
  for (let i = 0; i < n; i++) {
    const v = out[i];
    if (typeof v !== 'string' && !(typeof v === 'number' && Number.isSafeInteger(v))) throw new DbnormError('ERR_PARAM', `ids[${i}] must be a string or a safe integer, got ${String(v)}`);
  }
  return out;
}

function resolveConfig(opts: UsearchGalleryOptions): Config {
  if (opts === null || typeof opts !== 'object') throw new DbnormError('ERR_PARAM', 'options must be an object');
  for (const key of Object.keys(opts)) {
    if (!['ids', 'quantization', 'connectivity', 'expansionAdd', 'expansionSearch', 'threads'].includes(key)) throw new DbnormError('ERR_PARAM', `unknown option '${key}'`);
  }
  const quantization = opts.quantization ?? 'f32';
  if (quantization !== 'f32' && quantization !== 'f16') throw new DbnormError('ERR_PARAM', `quantization must be 'f32' or 'f16', got '${String(quantization)}'`);
  return {
    quantization,
    connectivity: positive('connectivity', opts.connectivity, 16, 2),
    expansionAdd: positive('expansionAdd', opts.expansionAdd, 128),
    expansionSearch: positive('expansionSearch', opts.expansionSearch, 64),
    threads: positive('threads', opts.threads, 0, 0),
  };
}

/**
 * A normalised gallery in a usearch HNSW index (inner-product metric). Build it from a fitted
 * normaliser ({@link UsearchGallery.create}), search it, append to it, and save / load index and
 * normaliser together ({@link UsearchGallery.save}, {@link UsearchGallery.load}).
 */
export class UsearchGallery {
  /** The usearch index (keys are gallery indices). */
  readonly index: USearch.Index;
  /** The normaliser (its gallery is the index's items, keyed by gallery index). */
  readonly normalizer: Normalizer;
  readonly #config: Config;
  #ids: UsearchItemId[] | null;
  #pending: Promise<unknown> = Promise.resolve();

  private constructor(index: USearch.Index, norm: Normalizer, config: Config, ids: UsearchItemId[] | null) {
    this.index = index;
    this.normalizer = norm;
    this.#config = config;
    this.#ids = ids;
  }

  static async #make(norm: Normalizer, config: Config): Promise<USearch.Index> {
    const u = await usearch();
    const w = norm.dim + norm.augmentedInfo().extra;
    return engineCall('Index', () => new u.Index({ dimensions: w, metric: 'ip' as USearch.MetricKind, quantization: config.quantization as USearch.ScalarKind, connectivity: config.connectivity, expansion_add: config.expansionAdd, expansion_search: config.expansionSearch, multi: false }));
  }

  /**
   * Builds the index from `norm`'s augmented gallery (keys `0 .. n_g − 1`).
   * @throws {@link DbnormError} `ERR_PARAM` (not embeddings mode, bad options, missing peer dependency), `ERR_SHAPE`
   */
  static async create(norm: Normalizer, opts: UsearchGalleryOptions = {}): Promise<UsearchGallery> {
    if (norm.mode !== 'embeddings') throw new DbnormError('ERR_PARAM', 'a UsearchGallery needs a normaliser fitted from embeddings');
    const config = resolveConfig(opts);
    const n = norm.galleryCount;
    if (n === 0) throw new DbnormError('ERR_SHAPE', 'the normaliser has an empty gallery');
    const ids = opts.ids === undefined ? null : checkIds(opts.ids, n);
    const index = await UsearchGallery.#make(norm, config);
    const g = new UsearchGallery(index, norm, config, ids);
    g.#append(0, n);
    return g;
  }

  #append(start: number, end: number): void {
    for (let s = start; s < end; s += CHUNK) {
      const count = Math.min(CHUNK, end - s);
      const aug = this.normalizer.augmentedGallery({ start: s, count });
      const keys = BigUint64Array.from({ length: count }, (_, i) => BigInt(s + i));
      engineCall('add', () => this.index.add(keys, aug.data, this.#config.threads));
    }
  }

  /** Number of gallery items. */
  get size(): number {
    return this.normalizer.galleryCount;
  }

  /**
   * Normalised top-k per query (`queries`: n_q × d embeddings) from the HNSW index: the
   * {@link Normalizer.search} result, approximately (recall in `benchmark/RESULTS.md`), plus ids.
   * @throws {@link DbnormError} `ERR_SHAPE`, `ERR_NON_FINITE`, `ERR_PARAM`, `ERR_ABORTED`
   */
  async search(queries: MatrixLike, opts: UsearchSearchOptions): Promise<UsearchTopK> {
    if (opts === null || typeof opts !== 'object') throw new DbnormError('ERR_PARAM', 'options { k, ... } are required');
    await this.#pending.catch(() => undefined);
    const k = checkK(opts.k, this.size);
    const run = async (v: Matrix, kk: number): Promise<ReturnType<typeof collectHits>> => {
      checkAbort(opts.signal);
      if (v.rows === 0) return collectHits(0, kk, [], [], []);
      const rows: Float32Array[] = Array.from({ length: v.rows }, (_, i) => v.data.subarray(i * v.cols, (i + 1) * v.cols));
      const m = engineCall('search', () => this.index.search(rows, kk, this.#config.threads)) as USearch.BatchMatches | USearch.Matches;
      const counts = 'counts' in m ? m.counts : BigUint64Array.of(BigInt(m.keys.length));
      const stride = 'counts' in m ? m.k : m.keys.length;
      const qi: number[] = [];
      const idx: number[] = [];
      const ip: number[] = [];
      for (let i = 0; i < v.rows; i++) {
        for (let j = 0; j < Number(counts[i]); j++) {
          qi.push(i);
          idx.push(Number(m.keys[i * stride + j]));
          ip.push(1 - m.distances[i * stride + j]!);
        }
      }
      return collectHits(v.rows, kk, qi, idx, ip);
    };
    const top = await servedSearch(this.normalizer, queries, k, opts.signal, run);
    const ids = Array.from(top.indices, (j) => (j === NO_ITEM ? null : this.#ids ? this.#ids[j]! : j));
    return { ...top, ids };
  }

  /**
   * Appends gallery items (n_new × d): statistics from the normaliser's banks
   * ({@link Normalizer.addGallery}), augmented rows added under keys `n_g .. n_g + n_new − 1`. Items
   * already in the index are never rewritten (their biases depend only on the item and the banks;
   * DIS / DualDIS activation sets live in the normaliser and act on the query).
   * @returns the new gallery size
   */
  async add(items: MatrixLike, opts: { ids?: ArrayLike<UsearchItemId>; signal?: AbortSignal } = {}): Promise<number> {
    const run = this.#pending.catch(() => undefined).then(async () => {
      const rows = (items as { rows?: unknown } | null)?.rows;
      if (typeof rows !== 'number' || !Number.isSafeInteger(rows) || rows < 0) throw new DbnormError('ERR_SHAPE', 'items must be a matrix { data, rows, cols }');
      if ((this.#ids === null) !== (opts.ids === undefined)) {
        throw new DbnormError('ERR_PARAM', this.#ids ? 'this gallery has ids: give ids for the new items' : 'this gallery was created without ids');
      }
      const ids = opts.ids === undefined ? null : checkIds(opts.ids, rows);
      const n0 = this.normalizer.galleryCount;
      const n1 = await this.normalizer.addGallery(items, { signal: opts.signal });
      this.#append(n0, n1);
      if (ids) this.#ids!.push(...ids);
      return n1;
    });
    this.#pending = run;
    return run;
  }

  /**
   * Saves index and normaliser together into directory `dir` (created if needed): `index.usearch`,
   * `normalizer.dbn` and `gallery.json` (format, options, ids). Each file is written beside its
   * target and renamed over it.
   * @throws {@link DbnormError} `ERR_IO`
   */
  async save(dir: string): Promise<void> {
    await this.#pending.catch(() => undefined);
    try {
      await fs.promises.mkdir(dir, { recursive: true });
    } catch (e) {
      throw new DbnormError('ERR_IO', `cannot create ${dir}: ${(e as Error).message}`);
    }
    const tmp = (f: string) => path.join(dir, `.${f}.${process.pid}.tmp`);
    engineCall('save', () => this.index.save(tmp('index.usearch')));
    await this.normalizer.save(path.join(dir, 'normalizer.dbn'));
    const meta = { format: FORMAT, method: this.normalizer.method, size: this.size, config: this.#config, ids: this.#ids };
    try {
      await fs.promises.writeFile(tmp('gallery.json'), JSON.stringify(meta));
      await fs.promises.rename(tmp('index.usearch'), path.join(dir, 'index.usearch'));
      await fs.promises.rename(tmp('gallery.json'), path.join(dir, 'gallery.json'));
    } catch (e) {
      throw new DbnormError('ERR_IO', `cannot write ${dir}: ${(e as Error).message}`);
    }
  }

  /**
   * Loads a gallery saved by {@link UsearchGallery.save}. `expansionSearch` overrides the saved
   * search knob; `view: true` memory-maps the index instead of reading it (read-only: no
   * {@link UsearchGallery.add}).
   * @throws {@link DbnormError} `ERR_IO`, `ERR_FORMAT` (missing or inconsistent files)
   */
  static async load(dir: string, opts: { expansionSearch?: number; threads?: number; view?: boolean; leakGuard?: 'warn' | 'strict' | 'off' } = {}): Promise<UsearchGallery> {
    let meta: { format: number; method: string; size: number; config: Config; ids: UsearchItemId[] | null };
    try {
      meta = JSON.parse(await fs.promises.readFile(path.join(dir, 'gallery.json'), 'utf8'));
    } catch (e) {
      throw new DbnormError((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ERR_IO' : 'ERR_FORMAT', `cannot read ${path.join(dir, 'gallery.json')}: ${(e as Error).message}`);
    }
    if (meta?.format !== FORMAT) throw new DbnormError('ERR_FORMAT', `${dir}: gallery format ${String(meta?.format)}, expected ${FORMAT}`);
    const norm = await Normalizer.load(path.join(dir, 'normalizer.dbn'), { leakGuard: opts.leakGuard });
    const config = resolveConfig({ ...meta.config, expansionSearch: opts.expansionSearch ?? meta.config.expansionSearch, threads: opts.threads ?? meta.config.threads });
    if (norm.method !== meta.method || norm.galleryCount !== meta.size || (meta.ids !== null && meta.ids.length !== meta.size)) {
      throw new DbnormError('ERR_FORMAT', `${dir}: normalizer.dbn (${norm.method}, ${norm.galleryCount} items) does not match gallery.json (${meta.method}, ${meta.size} items)`);
    }
    const index = await UsearchGallery.#make(norm, config);
    const file = path.join(dir, 'index.usearch');
    engineCall('load', () => (opts.view ? index.view(file) : index.load(file)));
    if (index.size() !== meta.size) throw new DbnormError('ERR_FORMAT', `${file} holds ${index.size()} vectors, expected ${meta.size}`);
    return new UsearchGallery(index, norm, config, meta.ids);
  }
}
