import { DbnormError, awaitNative, callNative } from './errors.js';
import { type Progress, type RunOptions, checkRun, progressError } from './job.js';
import { Matrix, type MatrixLike, owned } from './matrix.js';
import { RUN_KEYS, bool, count, options } from './validate.js';
import { native } from './native.js';

/** Options for building a bank. {@link QueryBank.from} / {@link GalleryBank.from} also take `signal` (checked between blocks) and `onProgress` (rows consumed, phase `"bank"`, at most every ~50 ms and once at the end; `total` is 0 while a stream's length is unknown). */
export interface BankOptions {
  /** Keep at most this many rows, chosen uniformly at random (seeded reservoir sampling). Bank size is the main knob of QB-Norm/DBNorm experiments. */
  subsample?: number;
  /** Seed of the subsample (default 0). Same seed and input → the same bank. */
  seed?: number;
  /** Drop rows bit-identical to an earlier row, before sampling (e.g. an image repeated once per caption). Default false. */
  dedupe?: boolean;
}

/** What a bank holds and how it was built. */
export interface BankSummary {
  /** `'embeddings'` (rows are vectors) or `'similarities'` (rows are bank items' similarities to the gallery). */
  kind: 'embeddings' | 'similarities';
  /** Rows kept. */
  size: number;
  /** Values per row: the embedding dimension, or the gallery size for similarities. */
  dim: number;
  /** Rows offered. */
  sourceRows: number;
  /** Rows dropped as duplicates. */
  duplicatesDropped: number;
  /** Whether subsampling dropped rows. */
  subsampled: boolean;
}

/** Rows as a matrix, an array of rows, or blocks of either. */
export type BankBlock = MatrixLike | ArrayLike<Float32Array | ArrayLike<number>>;

/** A bank source: one block, or an (async) iterable of blocks that streams a bank larger than memory. */
export type BankSource = BankBlock | Iterable<BankBlock> | AsyncIterable<BankBlock>;

function isMatrixLike(x: unknown): x is MatrixLike {
  return typeof x === 'object' && x !== null && 'data' in x && 'rows' in x && 'cols' in x;
}

function blockOf(b: BankBlock, name: string): Matrix {
  if (isMatrixLike(b)) return Matrix.shaped(b, name);
  const rows = b as ArrayLike<ArrayLike<number>>;
  return Matrix.fromRows(rows, name);
}

function isAsyncIterable(x: unknown): x is AsyncIterable<BankBlock> {
  return typeof x === 'object' && x !== null && Symbol.asyncIterator in x;
}

/** A source is a single block (matrix, or rows) unless it is an iterable whose items are blocks. */
function isBlockIterable(x: unknown): x is Iterable<BankBlock> {
  if (isMatrixLike(x) || typeof x !== 'object' || x === null || !(Symbol.iterator in x)) return false;
  const first = (x as unknown as ArrayLike<unknown>)[0];
  // an array of rows has numbers (or Float32Array rows) inside; an array of blocks has matrices / arrays of rows
  if (Array.isArray(x)) return first !== undefined && (isMatrixLike(first) || (Array.isArray(first) && typeof first[0] !== 'number'));
  return true;
}

function checkOpts(o: BankOptions | undefined): { subsample: number; seed: number; dedupe: boolean } {
  const subsample = o?.subsample ?? 0;
  if (o?.subsample !== undefined && (!Number.isInteger(subsample) || subsample < 1 || subsample > 0xffffffff)) {
    throw new DbnormError('ERR_PARAM', `subsample must be an integer ≥ 1, got ${String(o.subsample)}`);
  }
  const seed = count('seed', o?.seed ?? 0, 0, Number.MAX_SAFE_INTEGER);
  return { subsample, seed, dedupe: o?.dedupe === undefined ? false : bool('dedupe', o.dedupe) };
}

type Builder = InstanceType<typeof native.NativeBankBuilder>;

const BANK_KEYS = ['subsample', 'seed', 'dedupe'] as const;

/** Calls `onProgress`; an exception it throws rejects the operation (see RunOptions). */
function progress(f: RunOptions['onProgress'], p: Progress): void {
  try {
    f?.(p);
  } catch (e) {
    throw progressError(e);
  }
}

/**
 * A query bank or gallery bank: rows copied once into native memory the bank owns (so the caller
 * may reuse or mutate its buffers afterwards), validated once (finite, consistent width), optionally
 * de-duplicated and subsampled. Build with {@link QueryBank.from} / {@link GalleryBank.from} (or the
 * `Sync` / `fromSimilarities` variants) and pass it to {@link Normalizer.fit} as `queryBank` /
 * `galleryBank` (or to {@link Normalizer.fitSimilarities} as `queryBankSims` / `galleryBankSims`).
 */
export abstract class Bank {
  readonly #matrix: Matrix;
  readonly #summary: BankSummary;

  /** @internal Use the static factories of {@link QueryBank} / {@link GalleryBank}. */
  constructor(matrix: Matrix, summary: BankSummary) {
    this.#matrix = matrix;
    this.#summary = Object.freeze({ ...summary });
  }

  /** Which bank this is. */
  abstract readonly role: 'query' | 'gallery';

  /** Rows kept. */
  get size(): number {
    return this.#summary.size;
  }

  /** Values per row. */
  get dim(): number {
    return this.#summary.dim;
  }

  /** `'embeddings'` or `'similarities'`. */
  get kind(): 'embeddings' | 'similarities' {
    return this.#summary.kind;
  }

  /** Size, dimension, and how many rows de-duplication and subsampling dropped. */
  summary(): BankSummary {
    return this.#summary;
  }

  /** @internal The bank rows (do not mutate). */
  get matrix(): Matrix {
    return this.#matrix;
  }

  /** @internal Builds from blocks, synchronously. */
  protected static collectSync(source: BankBlock | Iterable<BankBlock>, opts: BankOptions | undefined, name: string, kind: BankSummary['kind']): [Matrix, BankSummary] {
    const o = options<BankOptions>(`${name} options`, opts, BANK_KEYS);
    const acc = new Accumulator(o, name);
    for (const raw of isBlockIterable(source) ? source : [source as BankBlock]) acc.add(raw);
    return acc.finish(kind);
  }

  /** @internal Builds from (async) blocks; each block is copied / hashed off the event loop. */
  protected static async collect(source: BankSource, opts: (BankOptions & RunOptions) | undefined, name: string, kind: BankSummary['kind']): Promise<[Matrix, BankSummary]> {
    const all = options<BankOptions & RunOptions>(`${name} options`, opts, [...BANK_KEYS, ...RUN_KEYS]);
    const o = { ...all, ...checkRun(all) };
    checkOpts(o);
    const acc = new Accumulator(o, name);
    const blocks: Iterable<BankBlock> | AsyncIterable<BankBlock> = isAsyncIterable(source)
      ? source
      : isBlockIterable(source)
        ? source
        : [source as BankBlock];
    const total = isMatrixLike(source) ? source.rows : 0;
    let done = 0;
    let last = 0;
    for await (const raw of blocks) {
      if (o?.signal?.aborted) throw new DbnormError('ERR_ABORTED', `${name}: building the bank was aborted`);
      done += await acc.addAsync(raw);
      const now = performance.now();
      if (o?.onProgress && now - last >= 50) {
        last = now;
        progress(o.onProgress, { phase: 'bank', done, total });
      }
    }
    const out = acc.finish(kind);
    progress(o.onProgress, { phase: 'bank', done, total: done });
    return out;
  }
}

/** Feeds validated blocks of one width to a native bank builder. */
class Accumulator {
  #builder: Builder | undefined;
  #dim = -1;

  constructor(
    private readonly opts: BankOptions | undefined,
    private readonly name: string,
  ) {}

  #accept(raw: BankBlock): [Builder, Matrix] | undefined {
    const m = blockOf(raw, this.name);
    if (m.rows === 0) return undefined;
    if (this.#builder === undefined) {
      this.#dim = m.cols;
      this.#builder = start(m.cols, this.opts);
    } else if (m.cols !== this.#dim) {
      throw new DbnormError('ERR_SHAPE', `${this.name}: a block has ${m.cols} values per row, the first had ${this.#dim}`);
    }
    return [this.#builder, m];
  }

  add(raw: BankBlock): void {
    const r = this.#accept(raw);
    if (r) callNative(() => r[0].appendSync(r[1].data, r[1].rows));
  }

  /** Appends off the event loop; returns the rows offered. */
  async addAsync(raw: BankBlock): Promise<number> {
    const r = this.#accept(raw);
    if (!r) return 0;
    const data = await owned(r[1].data, this.name); // the async append owns its block (see `owned`)
    await awaitNative(r[0].append(data, r[1].rows));
    return r[1].rows;
  }

  finish(kind: BankSummary['kind']): [Matrix, BankSummary] {
    const b = this.#builder;
    if (b === undefined) throw new DbnormError('ERR_EMPTY_BANK', `${this.name}: no rows given`);
    const out = callNative(() => b.finish());
    const m = Matrix.unchecked(out.data, out.rows, out.cols);
    return [m, { kind, size: out.rows, dim: out.cols, sourceRows: out.sourceRows, duplicatesDropped: out.duplicatesDropped, subsampled: out.subsampled }];
  }
}

function start(dim: number, o: BankOptions | undefined): Builder {
  const { subsample, seed, dedupe } = checkOpts(o);
  return callNative(() => new native.NativeBankBuilder(dim, subsample, seed, dedupe));
}

/** @internal A concrete bank class, for the shared static factories. */
type BankClass<T extends Bank> = { new (m: Matrix, s: BankSummary): T; readonly label: string };

/** @internal */
function build<T extends Bank>(cls: BankClass<T>, [m, s]: [Matrix, BankSummary]): T {
  return new cls(m, s);
}

/**
 * Query-modality items that are not test queries (e.g. training captions), m_q × d.
 *
 * ```ts
 * const queryBank = await QueryBank.from(trainCaptionEmbeddings, { subsample: 50_000, seed: 1 });
 * ```
 */
export class QueryBank extends Bank {
  readonly role = 'query' as const;
  /** @internal */
  static readonly label = 'queryBank';

  /** From embeddings: a matrix, an array of rows, or an (async) iterable of such blocks. */
  static async from(source: BankSource, opts?: BankOptions & RunOptions): Promise<QueryBank> {
    return build(QueryBank, await Bank.collect(source, opts, QueryBank.label, 'embeddings'));
  }

  /** Synchronous {@link QueryBank.from} (no async iterables). */
  static fromSync(source: BankBlock | Iterable<BankBlock>, opts?: BankOptions): QueryBank {
    return build(QueryBank, Bank.collectSync(source, opts, QueryBank.label, 'embeddings'));
  }

  /** From precomputed query bank × gallery similarities (m_q × n_g; rows are bank items). */
  static fromSimilarities(sims: MatrixLike, opts?: BankOptions): QueryBank {
    return build(QueryBank, Bank.collectSync(sims, opts, `${QueryBank.label}Sims`, 'similarities'));
  }
}

/**
 * Gallery-modality items outside the gallery (e.g. training images), m_g × d. Must not contain
 * gallery items (the fit's leak guard checks).
 */
export class GalleryBank extends Bank {
  readonly role = 'gallery' as const;
  /** @internal */
  static readonly label = 'galleryBank';

  /** From embeddings: a matrix, an array of rows, or an (async) iterable of such blocks. */
  static async from(source: BankSource, opts?: BankOptions & RunOptions): Promise<GalleryBank> {
    return build(GalleryBank, await Bank.collect(source, opts, GalleryBank.label, 'embeddings'));
  }

  /** Synchronous {@link GalleryBank.from} (no async iterables). */
  static fromSync(source: BankBlock | Iterable<BankBlock>, opts?: BankOptions): GalleryBank {
    return build(GalleryBank, Bank.collectSync(source, opts, GalleryBank.label, 'embeddings'));
  }

  /** From precomputed gallery bank × gallery similarities (m_g × n_g). */
  static fromSimilarities(sims: MatrixLike, opts?: BankOptions): GalleryBank {
    return build(GalleryBank, Bank.collectSync(sims, opts, `${GalleryBank.label}Sims`, 'similarities'));
  }
}

/** @internal Resolves a fit input that may be a bank: checks its role and kind, returns its rows. */
export function bankMatrix(x: MatrixLike | Bank, role: 'query' | 'gallery', kind: BankSummary['kind'], name: string): Matrix {
  if (x instanceof Bank) {
    if (x.role !== role) throw new DbnormError('ERR_PARAM', `${name} must be a ${role === 'query' ? 'QueryBank' : 'GalleryBank'}, got a ${x.role === 'query' ? 'QueryBank' : 'GalleryBank'}`);
    if (x.kind !== kind) throw new DbnormError('ERR_PARAM', `${name}: this bank holds ${x.kind}, the fit needs ${kind}`);
    return x.matrix;
  }
  return Matrix.shaped(x, name);
}
