import { DbnormError, awaitNative, callNative } from './errors.js';
import type { RunOptions } from './job.js';
import { Matrix, type MatrixLike, owned } from './matrix.js';
import { native } from './native.js';
import { RUN_KEYS, oneOf, options } from './validate.js';

/** How embeddings are compared: `cosine` L2-normalises rows on the fly (inputs untouched), `dot` does not. */
export type Metric = 'cosine' | 'dot';

/** Options of {@link similarity}. */
export interface SimilarityOptions {
  /** Default `'cosine'`. */
  metric?: Metric;
}

function check(a: MatrixLike, b: MatrixLike, opts?: SimilarityOptions): [Matrix, Matrix, Metric] {
  const ma = Matrix.shaped(a, 'a');
  const mb = Matrix.shaped(b, 'b');
  if (ma.cols !== mb.cols) {
    throw new DbnormError('ERR_SHAPE', `a has dim ${ma.cols}, b has dim ${mb.cols} (they must agree)`);
  }
  const o = options<SimilarityOptions & RunOptions>('similarity options', opts, ['metric', ...RUN_KEYS]);
  const metric = o.metric === undefined ? 'cosine' : oneOf('metric', o.metric, ['cosine', 'dot'] as const);
  return [ma, mb, metric];
}

/**
 * Similarity of every row of `a` (n×d) with every row of `b` (m×d): an n×m row-major `float32`
 * matrix, computed as a blocked multi-threaded matrix product off the event loop.
 *
 * @throws {@link DbnormError} `ERR_SHAPE` (dims differ), `ERR_NON_FINITE` (NaN/Inf, or a zero row under cosine), `ERR_PARAM` (bad metric)
 */
export async function similarity(a: MatrixLike, b: MatrixLike, opts?: SimilarityOptions): Promise<Matrix> {
  const [ma, mb, metric] = check(a, b, opts);
  const [da, db] = [await owned(ma.data, 'a'), await owned(mb.data, 'b')]; // the async call owns its input
  const out = await awaitNative(native.similarity(da, ma.rows, db, mb.rows, ma.cols, metric));
  return Matrix.unchecked(out, ma.rows, mb.rows);
}

/** Synchronous {@link similarity}: blocks the event loop, so use it for small inputs only. */
export function similaritySync(a: MatrixLike, b: MatrixLike, opts?: SimilarityOptions): Matrix {
  const [ma, mb, metric] = check(a, b, opts);
  const out = callNative(() => native.similaritySync(ma.data, ma.rows, mb.data, mb.rows, ma.cols, metric));
  return Matrix.unchecked(out, ma.rows, mb.rows);
}
