/**
 * `dbnorm/lancedb`: serve a fitted {@link Normalizer} from a LanceDB table.
 *
 * The table holds the augmented gallery `[g_j ; −b_j]` ({@link Normalizer.augmentedGallery}) in a
 * `vector` column searched with the `dot` distance, the gallery index `dbnorm_index` (the
 * normaliser's item order), an optional user `id` column and any payload columns. A plain inner
 * product over it ranks exactly as the normalised score (spec §4); {@link LanceGallery.search} runs
 * the DIS / DualDIS two-pass rule (raw top-1 first) and converts distances back to normalised
 * scores. `@lancedb/lancedb` and `apache-arrow` are optional peer dependencies, loaded only by this
 * module (importing `dbnorm` itself never loads them).
 *
 * ```ts
 * import { LanceGallery } from 'dbnorm/lancedb';
 * const lg = await LanceGallery.create('/data/lance', 'products', norm, { ids, index: { type: 'ivf_hnsw_sq' } });
 * const top = await lg.search(queries, { k: 10, ef: 64 });   // top.indices, top.scores, top.ids
 * ```
 * @module
 */
import type * as Lance from '@lancedb/lancedb';
import type * as Arrow from 'apache-arrow';

import { type EngineTopK, type Hits, NO_ITEM, checkAbort, checkK, collectHits, servedSearch } from './engines/common.js';
import { DbnormError } from './errors.js';
import type { Matrix, MatrixLike } from './matrix.js';
import type { Normalizer } from './normalizer.js';

export { NO_ITEM, type EngineTopK } from './engines/common.js';

/** A user id: a string, a safe integer, or a bigint. */
export type ItemId = string | number | bigint;

/** Column names dbnorm reserves in the table. */
export const RESERVED_COLUMNS: readonly string[] = ['vector', 'dbnorm_index', 'id'];

/** ANN index of a {@link LanceGallery}: the type and LanceDB's own options, passed through (`distanceType` is always `dot`). */
export type LanceIndexOptions =
  | ({ type: 'ivf_pq' } & Partial<Omit<Lance.IvfPqOptions, 'distanceType'>>)
  | ({ type: 'ivf_hnsw_sq' } & Partial<Omit<Lance.HnswSqOptions, 'distanceType'>>)
  | ({ type: 'ivf_hnsw_pq' } & Partial<Omit<Lance.HnswPqOptions, 'distanceType'>>)
  | ({ type: 'ivf_flat' } & Partial<Omit<Lance.IvfFlatOptions, 'distanceType'>>);

/** Options of {@link LanceGallery.create}. */
export interface LanceGalleryOptions {
  /** One user id per gallery item (all strings, all safe integers or all bigints); stored in column `id`. */
  ids?: ArrayLike<ItemId>;
  /** Payload columns, one value per gallery item each (types inferred by Arrow); names must not be reserved. */
  columns?: Record<string, ArrayLike<unknown>>;
  /** Build an ANN index after writing (default: none, i.e. exact flat search). */
  index?: LanceIndexOptions;
  /** `'create'` (default) fails if the table exists; `'overwrite'` replaces it. */
  mode?: 'create' | 'overwrite';
  /** Rows per written batch (default 65 536; bounds the memory of the augmented copy). */
  batchRows?: number;
  /**
   * Vector space of the table: `'dot'` stores `[g ; −b]` and searches with LanceDB's `dot`
   * distance; `'l2'` stores one more coordinate and searches with squared L2 (same ranking, see
   * {@link LanceGallery}). Default `'dot'`, except `'l2'` for an `ivf_hnsw_sq` index: LanceDB
   * 0.31's HNSW-SQ under `dot` returns wrong neighbours (recall@10 ≈ 0.01 on unit vectors here).
   */
  space?: 'dot' | 'l2';
  /**
   * Zero columns to append so that the stored width is a multiple of `padTo` (inner products and
   * distances are unchanged). PQ indexes need the width divisible by their sub-vector count, and
   * d + 1 rarely is (513 for 512-d): default 16 for `ivf_pq` / `ivf_hnsw_pq`, else 1 (no padding).
   */
  padTo?: number;
  /** `'l2'` space: the bound M ≥ every stored row's norm, as a factor of the largest norm at creation (default 1.25: room for {@link LanceGallery.add}). */
  normBound?: number;
}

/** Options of {@link LanceGallery.search}. */
export interface LanceSearchOptions {
  /** Results per query (integer ≥ 1, clamped to the gallery size). */
  k: number;
  /** IVF partitions probed (IVF indexes). */
  nprobes?: number;
  /** HNSW candidate list size (`ef`, HNSW indexes). */
  ef?: number;
  /** Re-rank `k · refineFactor` candidates with exact distances (recommended with PQ). */
  refineFactor?: number;
  /** SQL filter on the table's columns (e.g. `"category = 'shoes'"`): applied to the normalised pass only; the raw top-1 of DIS / DualDIS is over the whole gallery, as in {@link Normalizer.augmentQueries}. */
  filter?: string;
  /** Payload columns to return (in {@link LanceTopK.columns}). */
  select?: string[];
  /** Ignore the ANN index and search exactly (flat). */
  exact?: boolean;
  /** Checked between engine round trips (a running LanceDB query is not interrupted). */
  signal?: AbortSignal;
}

/** Result of {@link LanceGallery.search}: the {@link EngineTopK} plus ids and payload. */
export interface LanceTopK extends EngineTopK {
  /** User ids, `rows × k` (the gallery index when the table has no `id` column; `null` in empty slots). */
  ids: (ItemId | null)[];
  /** Selected payload columns, each `rows × k` (`null` in empty slots). */
  columns: Record<string, unknown[]>;
}

/** Options of {@link LanceGallery.add}. */
export interface LanceAddOptions {
  /** Ids of the new items (required when the table has an `id` column). */
  ids?: ArrayLike<ItemId>;
  /** Payload values of the new items (every payload column of the table). */
  columns?: Record<string, ArrayLike<unknown>>;
  /** Aborts the statistics computation (before anything is written). */
  signal?: AbortSignal;
}

const META_KEY = 'dbnorm';
const FORMAT = 1;
const CHUNK = 65536;
const QUERY_BATCH = 256;

interface Meta {
  format: number;
  method: string;
  dim: number;
  extra: number;
  metric: string | null;
  idKind: 'none' | 'string' | 'number' | 'bigint';
  columns: string[];
  /** `'dot'`: rows `[g ; −b]`; `'l2'`: rows `[g ; −b ; √(M² − ‖[g ; −b]‖²)]` searched with squared L2. */
  space: 'dot' | 'l2';
  /** M, the norm bound of the `'l2'` space (0 for `'dot'`). */
  bound: number;
  /** Zero columns appended to every stored and query vector (PQ needs the width divisible by its sub-vector count). */
  pad: number;
}

/**
 * The stored vectors of augmented rows `aug` (row-major, width w). In the `'l2'` space each row gets
 * one more coordinate `√(M² − ‖row‖²)` so that ‖[q ; 0] − row′‖² = ‖q‖² + M² − 2⟨q, row⟩ ranks like
 * the inner product (the maximum-inner-product → nearest-neighbour reduction of Bachrach et al.,
 * RecSys 2014). Throws `ERR_PARAM` when a row's norm exceeds M.
 */
function storedRows(aug: Matrix, meta: Meta): Float32Array {
  const w = aug.cols;
  const l2 = meta.space === 'l2' ? 1 : 0;
  const W = w + l2 + meta.pad;
  if (W === w) return aug.data;
  const out = new Float32Array(aug.rows * W);
  if (!l2) {
    for (let i = 0; i < aug.rows; i++) out.set(aug.data.subarray(i * w, (i + 1) * w), i * W);
    return out;
  }
  const m2 = meta.bound * meta.bound;
  for (let i = 0; i < aug.rows; i++) {
    let n2 = 0;
    for (let t = 0; t < w; t++) {
      const v = aug.data[i * w + t]!;
      n2 += v * v;
      out[i * W + t] = v;
    }
    if (n2 > m2) throw new DbnormError('ERR_PARAM', `an augmented row has norm ${Math.sqrt(n2)} above the table's bound M = ${meta.bound} (l2 space): recreate the table with a larger normBound`);
    out[i * W + w] = Math.sqrt(m2 - n2);
  }
  return out;
}

/** Largest norm of the augmented rows of `norm` (streamed in chunks). */
function maxRowNorm(norm: Normalizer, batchRows: number): number {
  let best = 0;
  for (let start = 0; start < norm.galleryCount; start += batchRows) {
    const a = norm.augmentedGallery({ start, count: Math.min(batchRows, norm.galleryCount - start) });
    for (let i = 0; i < a.rows; i++) {
      let n2 = 0;
      for (let t = 0; t < a.cols; t++) n2 += a.data[i * a.cols + t]! * a.data[i * a.cols + t]!;
      best = Math.max(best, n2);
    }
  }
  return Math.sqrt(best);
}

// Both loaded with require (not import()): LanceDB is CommonJS and checks Arrow classes with
// instanceof, so the tables built here must come from the same (CommonJS) apache-arrow build.
async function lance(): Promise<typeof Lance> {
  try {
    return require('@lancedb/lancedb') as typeof Lance;
  } catch (e) {
    throw new DbnormError('ERR_PARAM', `dbnorm/lancedb needs the optional peer dependency @lancedb/lancedb (npm i -E @lancedb/lancedb@0.31.0 apache-arrow): ${(e as Error).message}`);
  }
}

async function arrow(): Promise<typeof Arrow> {
  try {
    return require('apache-arrow') as typeof Arrow;
  } catch (e) {
    throw new DbnormError('ERR_PARAM', `dbnorm/lancedb needs the optional peer dependency apache-arrow: ${(e as Error).message}`);
  }
}

/** Runs an engine call, turning its errors into `DbnormError` (`ERR_IO`, the engine's message kept). */
async function engine<T>(what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof DbnormError) throw e;
    throw new DbnormError('ERR_IO', `LanceDB ${what} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function idKind(ids: ArrayLike<ItemId>, n: number, name: string): Meta['idKind'] {
  if (ids === null || typeof ids !== 'object' || ids.length !== n) {
    throw new DbnormError('ERR_SHAPE', `${name} must have one id per item (${n}), got ${ids === null || typeof ids !== 'object' ? String(ids) : ids.length}`);
  }
  if (n === 0) return 'number';
  const kind = typeof ids[0];
  if (kind !== 'string' && kind !== 'number' && kind !== 'bigint') throw new DbnormError('ERR_PARAM', `${name}[0] must be a string, a safe integer or a bigint`);
  for (let i = 0; i < n; i++) {
    const v = ids[i];
    if (typeof v !== kind || (kind === 'number' && !Number.isSafeInteger(v))) {
      throw new DbnormError('ERR_PARAM', `${name}[${i}] must be a ${kind === 'number' ? 'safe integer' : kind} like ${name}[0], got ${String(v)}`);
    }
  }
  return kind as Meta['idKind'];
}

function checkColumns(columns: Record<string, ArrayLike<unknown>> | undefined, n: number, expected?: string[]): string[] {
  if (columns === undefined) {
    if (expected && expected.length > 0) throw new DbnormError('ERR_PARAM', `the table has payload columns ${expected.join(', ')}: give their values for the new items`);
    return [];
  }
  if (columns === null || typeof columns !== 'object') throw new DbnormError('ERR_PARAM', 'columns must be an object of column name → values');
  const names = Object.keys(columns);
  for (const name of names) {
    if (RESERVED_COLUMNS.includes(name) || name.startsWith('_')) throw new DbnormError('ERR_PARAM', `column name '${name}' is reserved`);
    const v = columns[name];
    if (v === null || typeof v !== 'object' || v.length !== n) throw new DbnormError('ERR_SHAPE', `column '${name}' must have ${n} values`);
  }
  if (expected && (names.length !== expected.length || names.some((c) => !expected.includes(c)))) {
    throw new DbnormError('ERR_PARAM', `payload columns must be exactly ${expected.join(', ') || '(none)'}, got ${names.join(', ') || '(none)'}`);
  }
  return names;
}

/** Builds one Arrow record batch of rows `start .. start + count` of the augmented gallery. */
function batchOf(a: typeof Arrow, norm: Normalizer, start: number, count: number, meta: Meta, ids: ArrayLike<ItemId> | undefined, idOffset: number, columns: Record<string, ArrayLike<unknown>> | undefined): Arrow.Table {
  const aug = norm.augmentedGallery({ start, count });
  const data = storedRows(aug, meta);
  const w = data.length / count;
  const vecType = new a.FixedSizeList(w, new a.Field('item', new a.Float32(), true));
  const child = a.makeData({ type: new a.Float32(), length: count * w, data });
  const cols: Record<string, Arrow.Vector> = {
    dbnorm_index: a.makeVector(Uint32Array.from({ length: count }, (_, i) => start + i)),
    vector: a.makeVector(a.makeData({ type: vecType, length: count, nullCount: 0, child })),
  };
  if (ids && meta.idKind !== 'none') {
    const slice = Array.from({ length: count }, (_, i) => ids[idOffset + i]!);
    cols.id =
      meta.idKind === 'string'
        ? a.vectorFromArray(slice as string[], new a.Utf8())
        : a.makeVector(BigInt64Array.from(slice as (number | bigint)[], (v) => BigInt(v)));
  }
  for (const name of meta.columns) {
    const v = columns![name]!;
    cols[name] = a.vectorFromArray(Array.from({ length: count }, (_, i) => v[idOffset + i]));
  }
  const t = new a.Table(cols);
  // Every batch carries the table's metadata (LanceDB keeps the schema of what is written).
  return new a.Table(new a.Schema(t.schema.fields, new Map([[META_KEY, JSON.stringify(meta)]])), t.batches);
}

/**
 * A normalised gallery stored in a LanceDB table. Create it once from a fitted normaliser
 * ({@link LanceGallery.create}), reopen it later with the same normaliser ({@link LanceGallery.open};
 * save the normaliser with {@link Normalizer.save}), search it, append to it.
 *
 * Concurrency: searches run concurrently; {@link LanceGallery.add} calls are applied in order, and a
 * search issued while an add runs waits for it (so normaliser and table never disagree).
 */
export class LanceGallery {
  /** The LanceDB table. */
  readonly table: Lance.Table;
  /** The normaliser (its gallery is the table's rows, in `dbnorm_index` order). */
  readonly normalizer: Normalizer;
  readonly #meta: Meta;
  #pending: Promise<unknown> = Promise.resolve();
  #broken: string | null = null;

  private constructor(table: Lance.Table, norm: Normalizer, meta: Meta) {
    this.table = table;
    this.normalizer = norm;
    this.#meta = meta;
  }

  /**
   * Writes `norm`'s augmented gallery (n_g rows of d + 1 floats, d + 2 for DualDIS) with the gallery
   * index, ids and payload columns into a new table `tableName`, and optionally builds an ANN index
   * on it (`dot` distance). `db` is a LanceDB connection or a URI to connect to.
   * @throws {@link DbnormError} `ERR_PARAM` (normaliser not in embeddings mode, bad options, missing
   *   peer dependency), `ERR_SHAPE` (ids / columns of the wrong length), `ERR_IO` (LanceDB failed)
   */
  static async create(db: Lance.Connection | string, tableName: string, norm: Normalizer, opts: LanceGalleryOptions = {}): Promise<LanceGallery> {
    if (norm.mode !== 'embeddings') throw new DbnormError('ERR_PARAM', 'a LanceGallery needs a normaliser fitted from embeddings');
    if (typeof tableName !== 'string' || tableName.length === 0) throw new DbnormError('ERR_PARAM', 'tableName must be a non-empty string');
    if (opts === null || typeof opts !== 'object') throw new DbnormError('ERR_PARAM', 'options must be an object');
    for (const key of Object.keys(opts)) {
      if (!['ids', 'columns', 'index', 'mode', 'batchRows', 'space', 'normBound', 'padTo'].includes(key)) throw new DbnormError('ERR_PARAM', `unknown option '${key}'`);
    }
    const mode = opts.mode ?? 'create';
    if (mode !== 'create' && mode !== 'overwrite') throw new DbnormError('ERR_PARAM', `mode must be 'create' or 'overwrite', got '${String(mode)}'`);
    const batchRows = opts.batchRows ?? CHUNK;
    if (!Number.isSafeInteger(batchRows) || batchRows < 1) throw new DbnormError('ERR_PARAM', `batchRows must be an integer ≥ 1, got ${String(batchRows)}`);
    const n = norm.galleryCount;
    if (n === 0) throw new DbnormError('ERR_SHAPE', 'the normaliser has an empty gallery');
    const info = norm.augmentedInfo();
    const space = opts.space ?? (opts.index?.type === 'ivf_hnsw_sq' ? 'l2' : 'dot');
    if (space !== 'dot' && space !== 'l2') throw new DbnormError('ERR_PARAM', `space must be 'dot' or 'l2', got '${String(space)}'`);
    const factor = opts.normBound ?? 1.25;
    if (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 1) throw new DbnormError('ERR_PARAM', `normBound must be a finite number ≥ 1, got ${String(factor)}`);
    const padTo = opts.padTo ?? (opts.index?.type === 'ivf_pq' || opts.index?.type === 'ivf_hnsw_pq' ? 16 : 1);
    if (!Number.isSafeInteger(padTo) || padTo < 1 || padTo > 4096) throw new DbnormError('ERR_PARAM', `padTo must be an integer in 1..4096, got ${String(padTo)}`);
    const width = norm.dim + info.extra + (space === 'l2' ? 1 : 0);
    const meta: Meta = {
      format: FORMAT,
      method: norm.method,
      dim: norm.dim,
      extra: info.extra,
      metric: norm.metric,
      idKind: opts.ids === undefined ? 'none' : idKind(opts.ids, n, 'ids'),
      columns: checkColumns(opts.columns, n),
      space,
      bound: space === 'l2' ? Math.fround(factor * maxRowNorm(norm, batchRows)) : 0,
      pad: (padTo - (width % padTo)) % padTo,
    };
    const indexConfig = opts.index === undefined ? undefined : await indexFor(opts.index, space);
    const conn = typeof db === 'string' ? await engine('connect', async () => (await lance()).connect(db)) : db;
    const a = await arrow();
    const first = batchOf(a, norm, 0, Math.min(batchRows, n), meta, opts.ids, 0, opts.columns);
    const table = await engine('createTable', () => conn.createTable(tableName, first, { mode, schema: first.schema }));
    for (let start = batchRows; start < n; start += batchRows) {
      const count = Math.min(batchRows, n - start);
      const batch = batchOf(a, norm, start, count, meta, opts.ids, start, opts.columns);
      await engine('add', () => table.add(batch));
    }
    if (indexConfig) await engine('createIndex', () => table.createIndex('vector', { config: indexConfig, replace: true }));
    return new LanceGallery(table, norm, meta);
  }

  /**
   * Opens a table written by {@link LanceGallery.create} with the normaliser it was written from
   * (e.g. {@link Normalizer.load} of a saved file). Checks the method, dimension and row count, and
   * that the first and last stored vectors equal the normaliser's augmented rows bit for bit.
   * @throws {@link DbnormError} `ERR_FORMAT` (not a dbnorm table), `ERR_SHAPE` (another normaliser),
   *   `ERR_IO` (LanceDB failed)
   */
  static async open(db: Lance.Connection | string, tableName: string, norm: Normalizer): Promise<LanceGallery> {
    if (norm.mode !== 'embeddings') throw new DbnormError('ERR_PARAM', 'a LanceGallery needs a normaliser fitted from embeddings');
    const conn = typeof db === 'string' ? await engine('connect', async () => (await lance()).connect(db)) : db;
    const table = await engine('openTable', () => conn.openTable(tableName));
    const schema = await engine('schema', () => table.schema());
    const raw = schema.metadata.get(META_KEY);
    let meta: Meta;
    try {
      meta = JSON.parse(raw ?? '') as Meta;
    } catch {
      throw new DbnormError('ERR_FORMAT', `table '${tableName}' was not written by LanceGallery.create (no '${META_KEY}' schema metadata)`);
    }
    if (meta.format !== FORMAT) throw new DbnormError('ERR_FORMAT', `table '${tableName}' has dbnorm table format ${String(meta.format)}, expected ${FORMAT}`);
    const info = norm.augmentedInfo();
    if (meta.method !== norm.method || meta.dim !== norm.dim || meta.extra !== info.extra || meta.metric !== norm.metric) {
      throw new DbnormError('ERR_SHAPE', `table '${tableName}' holds a ${meta.method} gallery of dim ${meta.dim} (${String(meta.metric)}); the normaliser is ${norm.method}, dim ${norm.dim} (${String(norm.metric)})`);
    }
    const rows = await engine('countRows', () => table.countRows());
    if (rows !== norm.galleryCount) throw new DbnormError('ERR_SHAPE', `table '${tableName}' has ${rows} rows, the normaliser's gallery has ${norm.galleryCount} items`);
    const probe = [0, rows - 1];
    const got = await engine('query', () => table.query().where(`dbnorm_index IN (${probe.join(', ')})`).select(['dbnorm_index', 'vector']).toArray());
    for (const j of probe) {
      const row = got.find((r) => Number(r.dbnorm_index) === j);
      const want = storedRows(norm.augmentedGallery({ start: j, count: 1 }), meta);
      const have = row ? Float32Array.from(row.vector as Iterable<number>) : null;
      if (!have || have.length !== want.length || have.some((v, t) => !Object.is(v, want[t]))) {
        throw new DbnormError('ERR_SHAPE', `table '${tableName}' row ${j} differs from the normaliser's augmented gallery: the table was written from another normaliser`);
      }
    }
    return new LanceGallery(table, norm, meta);
  }

  /** Number of gallery items. */
  get size(): number {
    return this.normalizer.galleryCount;
  }

  /**
   * Normalised top-k per query (`queries`: n_q × d embeddings): the {@link Normalizer.search} result
   * computed by LanceDB, plus ids and selected payload. With an exact (flat) table the lists equal
   * `norm.search`'s up to ties within float32 rounding (see the README); with an ANN index they
   * are approximate (recall figures in `benchmark/RESULTS.md`). Scores are `scale · (1 − distance)
   * − offset(q)` (float32 distances, so within ~1e-6 of `norm.search`'s).
   * @throws {@link DbnormError} `ERR_SHAPE`, `ERR_NON_FINITE`, `ERR_PARAM`, `ERR_ABORTED`, `ERR_IO`
   */
  async search(queries: MatrixLike, opts: LanceSearchOptions): Promise<LanceTopK> {
    if (opts === null || typeof opts !== 'object') throw new DbnormError('ERR_PARAM', 'options { k, ... } are required');
    await this.#pending.catch(() => undefined);
    this.#check();
    const k = checkK(opts.k, this.size);
    for (const [name, v] of [['nprobes', opts.nprobes], ['ef', opts.ef], ['refineFactor', opts.refineFactor]] as const) {
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new DbnormError('ERR_PARAM', `${name} must be an integer ≥ 1, got ${String(v)}`);
    }
    if (opts.filter !== undefined && typeof opts.filter !== 'string') throw new DbnormError('ERR_PARAM', 'filter must be a string');
    const select = opts.select ?? [];
    if (!Array.isArray(select) || select.some((c) => !this.#meta.columns.includes(c))) {
      throw new DbnormError('ERR_PARAM', `select must list payload columns of the table (${this.#meta.columns.join(', ') || 'none'})`);
    }
    const payload = new Map<string, Map<number, unknown>>(select.map((c) => [c, new Map()]));
    const ids = new Map<number, ItemId>();
    const run = async (vectors: Matrix, kk: number, raw: boolean): Promise<Hits> => {
      const parts: Hits[] = [];
      for (let from = 0; from < vectors.rows; from += QUERY_BATCH) {
        const to = Math.min(vectors.rows, from + QUERY_BATCH);
        checkAbort(opts.signal);
        parts.push(await this.#query(vectors, from, to, kk, raw, opts, raw ? [] : select, payload, ids));
      }
      return concatHits(parts);
    };
    const top = await servedSearch(this.normalizer, queries, k, opts.signal, run);
    const n = top.rows * top.k;
    const outIds: (ItemId | null)[] = new Array(n);
    const columns: Record<string, unknown[]> = {};
    for (const c of select) columns[c] = new Array(n).fill(null);
    for (let t = 0; t < n; t++) {
      const j = top.indices[t]!;
      if (j === NO_ITEM) {
        outIds[t] = null;
        continue;
      }
      outIds[t] = this.#meta.idKind === 'none' ? j : (ids.get(j) ?? null);
      for (const c of select) columns[c]![t] = payload.get(c)!.get(j) ?? null;
    }
    return { ...top, ids: outIds, columns };
  }

  async #query(v: Matrix, from: number, to: number, k: number, raw: boolean, opts: LanceSearchOptions, select: string[], payload: Map<string, Map<number, unknown>>, ids: Map<number, ItemId>): Promise<Hits> {
    const w = v.cols;
    const l2 = this.#meta.space === 'l2';
    const W = w + (l2 ? 1 : 0) + this.#meta.pad;
    const norm2 = new Float64Array(to - from);
    const row = (i: number): Float32Array => {
      const r = v.data.subarray(i * w, (i + 1) * w);
      if (W === w) return r;
      const out = new Float32Array(W);
      out.set(r);
      for (let t = 0; t < w; t++) norm2[i - from] += r[t]! * r[t]!;
      return out;
    };
    let q = this.table.vectorSearch(row(from)).column('vector').distanceType(l2 ? 'l2' : 'dot').limit(k);
    for (let i = from + 1; i < to; i++) q = q.addQueryVector(row(i));
    if (opts.nprobes !== undefined) q = q.nprobes(opts.nprobes);
    if (opts.ef !== undefined) q = q.ef(opts.ef);
    if (opts.refineFactor !== undefined) q = q.refineFactor(opts.refineFactor);
    if (opts.exact) q = q.bypassVectorIndex();
    if (!raw && opts.filter !== undefined) q = q.where(opts.filter);
    const wantId = !raw && this.#meta.idKind !== 'none';
    const cols = ['dbnorm_index', '_distance', ...(wantId ? ['id'] : []), ...select];
    const t = await engine('search', () => q.select(cols).toArrow());
    const nRows = t.numRows;
    if (nRows === 0) return collectHits(to - from, k, [], [], []);
    const qi = to - from === 1 ? new Int32Array(nRows) : Int32Array.from(t.getChild('query_index')!.toArray() as ArrayLike<number>);
    const idx = Uint32Array.from(t.getChild('dbnorm_index')!.toArray() as ArrayLike<number>);
    const dist = t.getChild('_distance')!.toArray() as Float32Array;
    const m2 = this.#meta.bound * this.#meta.bound;
    // dot: distance = 1 − ip; l2: distance = ‖q‖² + M² − 2·ip.
    const ip = l2 ? Float64Array.from(dist, (x, r) => (norm2[qi[r]!]! + m2 - x) / 2) : Float64Array.from(dist, (x) => 1 - x);
    if (wantId) {
      const col = t.getChild('id')!;
      for (let r = 0; r < nRows; r++) {
        const val = col.get(r) as ItemId;
        ids.set(idx[r]!, this.#meta.idKind === 'number' ? Number(val) : val);
      }
    }
    for (const c of select) {
      const col = t.getChild(c)!;
      const m = payload.get(c)!;
      for (let r = 0; r < nRows; r++) m.set(idx[r]!, col.get(r));
    }
    return collectHits(to - from, k, qi, idx, ip);
  }

  /**
   * Appends gallery items (n_new × d embeddings): their statistics come from the normaliser's stored
   * banks ({@link Normalizer.addGallery}; activation sets updated) and their augmented rows are
   * appended to the table with indices `n_g .. n_g + n_new − 1`. Rows already stored are never
   * rewritten: their biases depend only on the item and the banks (IS, DualIS, CSLS, NNN, and the
   * bias columns of DIS / DualDIS), and the DIS / DualDIS activation sets are not stored in the
   * table but applied to the query at search time from the normaliser. Save the normaliser again
   * afterwards. If writing to LanceDB fails after the normaliser was extended, the gallery refuses
   * further searches (`ERR_IO`): reopen it from a saved normaliser.
   * @returns the new gallery size
   */
  async add(items: MatrixLike, opts: LanceAddOptions = {}): Promise<number> {
    const run = this.#pending.catch(() => undefined).then(() => this.#add(items, opts));
    this.#pending = run;
    return run;
  }

  async #add(items: MatrixLike, opts: LanceAddOptions): Promise<number> {
    this.#check();
    const rows = (items as { rows?: unknown } | null)?.rows;
    if (typeof rows !== 'number' || !Number.isSafeInteger(rows) || rows < 0) throw new DbnormError('ERR_SHAPE', 'items must be a matrix { data, rows, cols }');
    if (this.#meta.idKind !== 'none') {
      if (opts.ids === undefined) throw new DbnormError('ERR_PARAM', 'the table has an id column: give ids for the new items');
      const kind = idKind(opts.ids, rows, 'ids');
      if (rows > 0 && kind !== this.#meta.idKind) throw new DbnormError('ERR_PARAM', `ids must be of kind ${this.#meta.idKind} like the table's, got ${kind}`);
    } else if (opts.ids !== undefined) {
      throw new DbnormError('ERR_PARAM', 'the table has no id column (it was created without ids)');
    }
    checkColumns(opts.columns, rows, this.#meta.columns);
    const a = await arrow();
    const n0 = this.normalizer.galleryCount;
    const n1 = await this.normalizer.addGallery(items, { signal: opts.signal });
    if (n1 === n0) return n1;
    try {
      for (let start = n0; start < n1; start += CHUNK) {
        const count = Math.min(CHUNK, n1 - start);
        await engine('add', () => this.table.add(batchOf(a, this.normalizer, start, count, this.#meta, opts.ids, start - n0, opts.columns)));
      }
    } catch (e) {
      this.#broken = `appending to the table failed after the normaliser was extended (${(e as Error).message}); reopen the gallery from a saved normaliser`;
      throw e;
    }
    return n1;
  }

  #check(): void {
    if (this.#broken !== null) throw new DbnormError('ERR_IO', this.#broken);
  }
}

async function indexFor(opts: LanceIndexOptions, space: 'dot' | 'l2'): Promise<Lance.Index> {
  if (opts === null || typeof opts !== 'object') throw new DbnormError('ERR_PARAM', 'index must be { type, ...options }');
  const { type, ...rest } = opts as { type: string } & Record<string, unknown>;
  if ('distanceType' in rest) throw new DbnormError('ERR_PARAM', "index distanceType is set by dbnorm ('dot', or 'l2' in the l2 space); use the gallery's `space` option");
  const config = { ...rest, distanceType: space };
  const { Index } = await lance();
  switch (type) {
    case 'ivf_pq':
      return Index.ivfPq(config);
    case 'ivf_hnsw_sq':
      return Index.hnswSq(config);
    case 'ivf_hnsw_pq':
      return Index.hnswPq(config);
    case 'ivf_flat':
      return Index.ivfFlat(config);
    default:
      throw new DbnormError('ERR_PARAM', `index type must be 'ivf_pq', 'ivf_hnsw_sq', 'ivf_hnsw_pq' or 'ivf_flat', got '${String(type)}'`);
  }
}

function concatHits(parts: Hits[]): Hits {
  if (parts.length === 0) return { indices: new Uint32Array(0), ips: new Float64Array(0), counts: new Uint32Array(0) };
  if (parts.length === 1) return parts[0]!;
  const cat = <T extends Uint32Array | Float64Array>(xs: T[], make: (n: number) => T): T => {
    const out = make(xs.reduce((s, x) => s + x.length, 0));
    let o = 0;
    for (const x of xs) {
      out.set(x as never, o);
      o += x.length;
    }
    return out;
  };
  return {
    indices: cat(parts.map((p) => p.indices), (n) => new Uint32Array(n)),
    ips: cat(parts.map((p) => p.ips), (n) => new Float64Array(n)),
    counts: cat(parts.map((p) => p.counts), (n) => new Uint32Array(n)),
  };
}
