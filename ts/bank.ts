import { DbnormError, callNative } from './errors.js';
import { Matrix, type MatrixLike } from './matrix.js';
import { native } from './native.js';

/** Options for building a bank. */
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
  if (isMatrixLike(b)) return Matrix.from(b, name);
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
  const seed = o?.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER) throw new DbnormError('ERR_PARAM', `seed must be a non-negative integer, got ${String(seed)}`);
  return { subsample, seed, dedupe: o?.dedupe ?? false };
}

type Builder = InstanceType<typeof native.NativeBankBuilder>;

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

  /** @internal */
  protected constructor(matrix: Matrix, summary: BankSummary) {
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

  /** @internal */
  protected static start(dim: number, o: BankOptions | undefined): Builder {
    const { subsample, seed, dedupe } = checkOpts(o);
    if (!Number.isInteger(dim) || dim < 1) throw new DbnormError('ERR_SHAPE', `bank rows have dim ${dim}`);
    return callNative(() => new native.NativeBankBuilder(dim, subsample, seed, dedupe));
  }

  /** @internal */
  protected static finish(b: Builder, kind: BankSummary['kind']): [Matrix, BankSummary] {
    const out = callNative(() => b.finish());
    const m = Matrix.unchecked(out.data, out.rows, out.cols);
    return [m, { kind, size: out.rows, dim: out.cols, sourceRows: out.sourceRows, duplicatesDropped: out.duplicatesDropped, subsampled: out.subsampled }];
  }

  /** @internal Builds from blocks, synchronously. */
  protected static collectSync(source: BankBlock | Iterable<BankBlock>, o: BankOptions | undefined, name: string, kind: BankSummary['kind']): [Matrix, BankSummary] {
    const blocks: Iterable<BankBlock> = isBlockIterable(source) ? source : [source as BankBlock];
    let b: Builder | undefined;
    let dim = -1;
    for (const raw of blocks) {
      const m = blockOf(raw, name);
      if (m.rows === 0) continue;
      if (b === undefined) {
        dim = m.cols;
        b = Bank.start(dim, o);
      } else if (m.cols !== dim) {
        throw new DbnormError('ERR_SHAPE', `${name}: a block has ${m.cols} values per row, the first had ${dim}`);
      }
      callNative(() => b!.append(m.data, m.rows));
    }
    if (b === undefined) throw new DbnormError('ERR_EMPTY_BANK', `${name}: no rows given`);
    return Bank.finish(b, kind);
  }

  /** @internal Builds from (async) blocks. */
  protected static async collect(source: BankSource, o: BankOptions | undefined, name: string, kind: BankSummary['kind']): Promise<[Matrix, BankSummary]> {
    if (!isAsyncIterable(source)) return Bank.collectSync(source as BankBlock | Iterable<BankBlock>, o, name, kind);
    let b: Builder | undefined;
    let dim = -1;
    for await (const raw of source) {
      const m = blockOf(raw, name);
      if (m.rows === 0) continue;
      if (b === undefined) {
        dim = m.cols;
        b = Bank.start(dim, o);
      } else if (m.cols !== dim) {
        throw new DbnormError('ERR_SHAPE', `${name}: a block has ${m.cols} values per row, the first had ${dim}`);
      }
      callNative(() => b!.append(m.data, m.rows));
    }
    if (b === undefined) throw new DbnormError('ERR_EMPTY_BANK', `${name}: no rows given`);
    return Bank.finish(b, kind);
  }
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

  private constructor(m: Matrix, s: BankSummary) {
    super(m, s);
  }

  /** From embeddings: a matrix, an array of rows, or an (async) iterable of such blocks. */
  static async from(source: BankSource, opts?: BankOptions): Promise<QueryBank> {
    const [m, s] = await Bank.collect(source, opts, 'queryBank', 'embeddings');
    return new QueryBank(m, s);
  }

  /** Synchronous {@link QueryBank.from} (no async iterables). */
  static fromSync(source: BankBlock | Iterable<BankBlock>, opts?: BankOptions): QueryBank {
    const [m, s] = Bank.collectSync(source, opts, 'queryBank', 'embeddings');
    return new QueryBank(m, s);
  }

  /** From precomputed query bank × gallery similarities (m_q × n_g; rows are bank items). */
  static fromSimilarities(sims: MatrixLike, opts?: BankOptions): QueryBank {
    const [m, s] = Bank.collectSync(sims, opts, 'queryBankSims', 'similarities');
    return new QueryBank(m, s);
  }
}

/**
 * Gallery-modality items outside the gallery (e.g. training images), m_g × d. Must not contain
 * gallery items (the fit's leak guard checks).
 */
export class GalleryBank extends Bank {
  readonly role = 'gallery' as const;

  private constructor(m: Matrix, s: BankSummary) {
    super(m, s);
  }

  /** From embeddings: a matrix, an array of rows, or an (async) iterable of such blocks. */
  static async from(source: BankSource, opts?: BankOptions): Promise<GalleryBank> {
    const [m, s] = await Bank.collect(source, opts, 'galleryBank', 'embeddings');
    return new GalleryBank(m, s);
  }

  /** Synchronous {@link GalleryBank.from} (no async iterables). */
  static fromSync(source: BankBlock | Iterable<BankBlock>, opts?: BankOptions): GalleryBank {
    const [m, s] = Bank.collectSync(source, opts, 'galleryBank', 'embeddings');
    return new GalleryBank(m, s);
  }

  /** From precomputed gallery bank × gallery similarities (m_g × n_g). */
  static fromSimilarities(sims: MatrixLike, opts?: BankOptions): GalleryBank {
    const [m, s] = Bank.collectSync(sims, opts, 'galleryBankSims', 'similarities');
    return new GalleryBank(m, s);
  }
}

/** @internal Resolves a fit input that may be a bank: checks its role and kind, returns its rows. */
export function bankMatrix(x: MatrixLike | Bank, role: 'query' | 'gallery', kind: BankSummary['kind'], name: string): Matrix {
  if (x instanceof Bank) {
    if (x.role !== role) throw new DbnormError('ERR_PARAM', `${name} must be a ${role === 'query' ? 'QueryBank' : 'GalleryBank'}, got a ${x.role === 'query' ? 'QueryBank' : 'GalleryBank'}`);
    if (x.kind !== kind) throw new DbnormError('ERR_PARAM', `${name}: this bank holds ${x.kind}, the fit needs ${kind}`);
    return x.matrix;
  }
  return Matrix.from(x, name);
}
