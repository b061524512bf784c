/**
 * Reading and writing NumPy `.npy` matrices natively (Rust), for evaluation tools and tests.
 *
 * Accepted on read: format versions 1.0–3.0, dtype `<f4` (as is), `<f2` (widened exactly) or `<f8` (rounded to `float32`),
 * C order, shape `(rows, cols)` or `(n,)` (read as one row, `1 × n`). Anything else — another dtype
 * such as `<i4` or `>f4`, Fortran order, a 3-D array, a truncated or garbage file — is rejected with
 * `ERR_FORMAT` and a one-line message that names the file and the problem; an unreadable file gives
 * `ERR_IO`. Files are written as version 1.0, `<f4`, C order.
 * @module
 */
import { awaitNative, callNative } from './errors.js';
import { Matrix, type MatrixLike, owned } from './matrix.js';
import { native } from './native.js';
import { path as checkedPath } from './validate.js';

function toMatrix(r: import('./native/index.cjs').NativeNpy, path: string): Matrix {
  return new Matrix(r.data, r.rows, r.cols, path);
}

function checkPath(p: unknown): string {
  return checkedPath(p);
}

/**
 * Reads a `.npy` file into a row-major `float32` {@link Matrix}, off the event loop. The file is
 * streamed into the matrix's buffer (in memory once). The values are validated like any `Matrix`.
 * @param path the file (its name appears in error messages)
 * @throws {@link DbnormError} `ERR_FORMAT` (not an accepted `.npy`), `ERR_IO` (cannot read),
 *   `ERR_NON_FINITE` (NaN or ±Infinity in the data; the message names the file, row and column)
 */
export async function readNpy(path: string, opts?: ReadNpyOptions): Promise<Matrix> {
  const p = checkPath(path);
  if (opts?.mmap === true) return readMapped(p);
  return toMatrix(await awaitNative(native.readNpy(p)), p);
}

/** Synchronous {@link readNpy}: blocks the event loop while reading, so use it for small files. */
export function readNpySync(path: string, opts?: ReadNpyOptions): Matrix {
  const p = checkPath(path);
  if (opts?.mmap === true) return readMapped(p);
  return toMatrix(callNative(() => native.readNpySync(p)), p);
}

/** Options of {@link readNpy}. */
export interface ReadNpyOptions {
  /**
   * Memory-map the file instead of reading it (default false). A `<f4` file is then viewed in place:
   * its pages are loaded on demand and shared with the page cache, so a gallery larger than free
   * memory can be passed anywhere a {@link Matrix} goes (writes to `data` stay private to the process,
   * never reaching the file). `<f2` and `<f8` files are converted into memory. Same validation and
   * coded errors as a plain read. The file must not be truncated by another process while mapped.
   * The values are validated natively (one pass over the file) before the call returns.
   */
  mmap?: boolean;
}

/** The source file of each matrix returned by a mapped read (for `keep: 'statistics'` fits). */
const SOURCES = new WeakMap<Float32Array, string>();

/**
 * @internal The `.npy` file a matrix was read from with `readNpy(path, { mmap: true })`, if any.
 */
export function npySource(m: unknown): string | undefined {
  if (m === null || typeof m !== 'object') return undefined;
  const data = (m as { data?: unknown }).data;
  return data instanceof Float32Array ? SOURCES.get(data) : undefined;
}

function readMapped(p: string): Matrix {
  const r = callNative(() => native.readNpyMappedSync(p));
  SOURCES.set(r.data, p);
  // Validated natively (finite values, shape): skip the JS pass over a possibly huge mapping.
  return Matrix.unchecked(r.data, r.rows, r.cols);
}

/**
 * Writes a matrix as a `.npy` file (version 1.0, `<f4`, C order, shape `(rows, cols)`), off the
 * event loop. Replaces an existing file.
 * @throws {@link DbnormError} `ERR_SHAPE` (`data.length ≠ rows·cols`), `ERR_IO` (cannot write)
 */
export async function writeNpy(path: string, matrix: MatrixLike): Promise<void> {
  const p = checkPath(path);
  const m = shapeOnly(matrix);
  const data = await owned(m.data, 'matrix'); // the async write owns its input (see `owned`)
  await awaitNative(native.writeNpy(p, data, m.rows, m.cols));
}

/** Synchronous {@link writeNpy}. */
export function writeNpySync(path: string, matrix: MatrixLike): void {
  const p = checkPath(path);
  const m = shapeOnly(matrix);
  callNative(() => native.writeNpySync(p, m.data, m.rows, m.cols));
}

/** Writing checks the shape only (values are written as they are). */
function shapeOnly(m: MatrixLike): MatrixLike {
  return Matrix.shaped(m, 'matrix');
}
