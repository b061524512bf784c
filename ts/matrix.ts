import { DbnormError } from './errors.js';
import { U32_MAX, count, describe, prop } from './validate.js';

/**
 * Anything shaped like a row-major `float32` matrix: element (r, c) is `data[r * cols + c]`.
 * Every API that takes a matrix accepts a {@link Matrix} or a plain object of this shape (which is
 * validated on use).
 */
export interface MatrixLike {
  /** Row-major values, length `rows * cols`. */
  readonly data: Float32Array;
  /** Number of rows (e.g. queries or gallery items). */
  readonly rows: number;
  /** Number of columns (the embedding dimension, or gallery items for a similarity matrix). */
  readonly cols: number;
}

/**
 * A validated row-major `float32` matrix. The constructor checks that `rows` and `cols` are
 * non-negative integers, that `data.length === rows * cols`, and that every value is finite.
 * The data is not copied; dbnorm never writes to it.
 */
export class Matrix implements MatrixLike {
  readonly data: Float32Array;
  readonly rows: number;
  readonly cols: number;

  /**
   * @param data row-major values, length `rows * cols`
   * @param rows number of rows
   * @param cols number of columns
   * @param name used in error messages (default `"matrix"`)
   * @throws {@link DbnormError} `ERR_SHAPE` on a length or shape mismatch, `ERR_NON_FINITE` on NaN/±Infinity
   */
  constructor(data: Float32Array, rows: number, cols: number, name = 'matrix') {
    name = nameOf(name);
    checkShape(data, rows, cols, name);
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      if (!Number.isFinite(v)) {
        const r = cols > 0 ? Math.floor(i / cols) : 0;
        throw new DbnormError('ERR_NON_FINITE', `${name}: value at row ${r}, column ${i - r * cols} is ${v} (must be finite)`);
      }
    }
    this.data = data;
    this.rows = rows;
    this.cols = cols;
  }

  /** Builds a matrix from an array of equal-length rows (copies into a new `Float32Array`). */
  static fromRows(rows: ArrayLike<ArrayLike<number>>, name = 'matrix'): Matrix {
    name = nameOf(name);
    const rowAt = (i: number): ArrayLike<number> => {
      const r = prop(rows, String(i), name, 'ERR_SHAPE') as ArrayLike<number>;
      if (r === null || typeof r !== 'object' || typeof r.length !== 'number') throw new DbnormError('ERR_SHAPE', `${name}: row ${i} must be an array of numbers, got ${describe(r)}`);
      return r;
    };
    if (rows === null || typeof rows !== 'object' || typeof rows.length !== 'number') {
      throw new DbnormError('ERR_SHAPE', `${name}: expected a matrix { data, rows, cols } or an array of rows, got ${describe(rows)}`);
    }
    const n = count(`${name}: number of rows`, rows.length, 0, U32_MAX, 'ERR_SHAPE');
    const d = n > 0 ? count(`${name}: row length`, rowAt(0).length, 0, U32_MAX, 'ERR_SHAPE') : 0;
    if (!Number.isSafeInteger(n * d) || n * d > U32_MAX) throw new DbnormError('ERR_SHAPE', `${name}: ${n} × ${d} values is too large`);
    const data = new Float32Array(n * d);
    for (let i = 0; i < n; i++) {
      const r = rowAt(i);
      if (r.length !== d) {
        throw new DbnormError('ERR_SHAPE', `${name}: row ${i} has ${r.length} values, row 0 has ${d}`);
      }
      for (let j = 0; j < d; j++) data[i * d + j] = r[j]!;
    }
    return new Matrix(data, n, d, name);
  }

  /** Validates a {@link MatrixLike} (returns it unchanged if it already is a `Matrix`). */
  static from(m: MatrixLike, name = 'matrix'): Matrix {
    name = nameOf(name);
    if (m instanceof Matrix) return m;
    if (m === null || typeof m !== 'object') {
      throw new DbnormError('ERR_SHAPE', `${name}: expected a matrix { data, rows, cols }, got ${describe(m)}`);
    }
    const [data, rows, cols] = [prop(m, 'data', name, 'ERR_SHAPE'), prop(m, 'rows', name, 'ERR_SHAPE'), prop(m, 'cols', name, 'ERR_SHAPE')];
    return new Matrix(data as Float32Array, rows as number, cols as number, name);
  }

  /**
   * @internal Checks a {@link MatrixLike}'s shape only (O(1)) and wraps it. Finiteness is then
   * checked by the native call that consumes it — in parallel and, for async calls, off the event
   * loop — with the same `ERR_NON_FINITE` error.
   */
  static shaped(m: MatrixLike, name = 'matrix'): Matrix {
    name = nameOf(name);
    if (m instanceof Matrix) return m;
    if (m === null || typeof m !== 'object') {
      throw new DbnormError('ERR_SHAPE', `${name}: expected a matrix { data, rows, cols }, got ${describe(m)}`);
    }
    const [data, rows, cols] = [prop(m, 'data', name, 'ERR_SHAPE'), prop(m, 'rows', name, 'ERR_SHAPE'), prop(m, 'cols', name, 'ERR_SHAPE')];
    checkShape(data, rows as number, cols as number, name);
    return Matrix.unchecked(data as Float32Array, rows as number, cols as number);
  }

  /** @internal Wraps trusted native output without re-validating it. */
  static unchecked(data: Float32Array, rows: number, cols: number): Matrix {
    const m = Object.create(Matrix.prototype) as { data: Float32Array; rows: number; cols: number };
    m.data = data;
    m.rows = rows;
    m.cols = cols;
    return m as Matrix;
  }

  /** Row `i` as a view (no copy) of length `cols`. */
  row(i: number): Float32Array {
    return this.data.subarray(i * this.cols, (i + 1) * this.cols);
  }

  /** Element (i, j). */
  get(i: number, j: number): number {
    return this.data[i * this.cols + j]!;
  }

  /** The rows as plain arrays (for printing small matrices). */
  toArrays(): number[][] {
    const out: number[][] = [];
    for (let i = 0; i < this.rows; i++) out.push(Array.from(this.row(i)));
    return out;
  }
}

function checkShape(data: unknown, rows: number, cols: number, name: string): void {
  if (!(data instanceof Float32Array)) {
    throw new DbnormError('ERR_SHAPE', `${name}: data must be a Float32Array, got ${describe(data)}`);
  }
  for (const [what, v] of [['rows', rows], ['cols', cols]] as const) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new DbnormError('ERR_SHAPE', `${name}: ${what} must be a non-negative integer, got ${String(v)}`);
    }
  }
  if (!Number.isSafeInteger(rows * cols) || data.length !== rows * cols) {
    throw new DbnormError('ERR_SHAPE', `${name}: expected rows·cols = ${rows}·${cols} = ${rows * cols} values, got ${data.length}`);
  }
}

function nameOf(name: unknown): string {
  return typeof name === 'string' ? name : 'matrix';
}

/** Elements copied per event-loop turn when an async call takes ownership of its input (4 MB). */
export const OWN_CHUNK = 1 << 20;

type Typed = Float32Array | Uint32Array;

/**
 * @internal Async calls own their input for their whole duration: the native task reads a copy only
 * the library holds, so the caller resizing, transferring or detaching its buffer during an
 * `await` cannot pull memory from under the worker thread (holding a napi reference does not stop a
 * detach). Inputs up to {@link OWN_CHUNK} elements are copied at once; larger ones in chunks, one
 * per event-loop turn, so no single block of the event loop exceeds a few milliseconds. A buffer
 * resized or detached between chunks is `ERR_SHAPE`.
 */
export async function owned<T extends Typed>(src: T, name: string): Promise<T> {
  const n = src.length;
  const dst = (src instanceof Float32Array ? new Float32Array(n) : new Uint32Array(n)) as T;
  for (let off = 0; off < n; off += OWN_CHUNK) {
    if (off > 0) await new Promise<void>((r) => setImmediate(r));
    const changed = (): DbnormError => new DbnormError('ERR_SHAPE', `${name}: the input buffer was resized or detached during the call (async calls copy their input; do not change it until they settle)`);
    if (src.length !== n) throw changed();
    try {
      dst.set(src.subarray(off, Math.min(n, off + OWN_CHUNK)), off);
    } catch {
      // a view whose buffer went away between the length check and the copy (V8 throws a TypeError)
      throw changed();
    }
  }
  return dst;
}

/** @internal {@link owned} for a matrix. */
export async function ownedMatrix(m: MatrixLike, name: string): Promise<Matrix> {
  return Matrix.unchecked(await owned(m.data, name), m.rows, m.cols);
}
