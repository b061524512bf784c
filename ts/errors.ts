/**
 * Errors thrown by dbnorm. Every error has a stable {@link ErrorCode} in `code`.
 *
 * | code | meaning |
 * |---|---|
 * | `ERR_SHAPE` | lengths, row/column counts or dimensions disagree (`queryBank has dim 384, gallery has dim 512`) |
 * | `ERR_NON_FINITE` | NaN/±Infinity in an input, or a zero row under cosine similarity |
 * | `ERR_PARAM` | a parameter is missing or out of range (β ≤ 0, k = 0, unknown method, β missing where it has no default) |
 * | `ERR_EMPTY_BANK` | the method needs a bank that is missing or has no rows |
 * | `ERR_FORMAT` | a file is malformed, truncated, of the wrong version or corrupted |
 * | `ERR_IO` | a file could not be read or written |
 * | `ERR_LEAK` | test queries are query-bank rows, or gallery items are gallery-bank rows (with `leakGuard: 'strict'`) |
 * | `ERR_ABORTED` | the operation was cancelled through an `AbortSignal` (the error's `name` is `AbortError`) |
 * | `ERR_BUSY` | `addGallerySync` was called while an asynchronous `addGallery` on the same normaliser is pending |
 * | `ERR_INTERNAL` | a bug in dbnorm (please report it) |
 * | `ERR_NO_BINDING` | no native or WebAssembly build of dbnorm fits this machine (the message names the platform, the packages tried and the fix) |
 * | `ERR_PARTIAL` | the operation needs a full normaliser but got a partial one (one shard of a fit; merge the parts first) |
 * | `ERR_MERGE` | partial normalisers cannot be merged: they overlap, leave rows uncovered, or disagree (method, β, metric, dimension, totals) |
 * | `ERR_SOURCE` | a lean normaliser's (`keep: 'statistics'`) gallery or bank source file is missing, unreadable or changed since the fit, or `addGallery` needs banks it does not reference |
 *
 * @module
 */

/** Stable error codes (see the table in {@link DbnormError}). */
export type ErrorCode =
  | 'ERR_SHAPE'
  | 'ERR_NON_FINITE'
  | 'ERR_PARAM'
  | 'ERR_EMPTY_BANK'
  | 'ERR_FORMAT'
  | 'ERR_IO'
  | 'ERR_LEAK'
  | 'ERR_ABORTED'
  | 'ERR_BUSY'
  | 'ERR_INTERNAL'
  | 'ERR_NO_BINDING'
  | 'ERR_PARTIAL'
  | 'ERR_MERGE'
  | 'ERR_SOURCE';

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'ERR_SHAPE',
  'ERR_NON_FINITE',
  'ERR_PARAM',
  'ERR_EMPTY_BANK',
  'ERR_FORMAT',
  'ERR_IO',
  'ERR_LEAK',
  'ERR_ABORTED',
  'ERR_BUSY',
  'ERR_INTERNAL',
  'ERR_NO_BINDING',
  'ERR_PARTIAL',
  'ERR_MERGE',
  'ERR_SOURCE',
]);

/**
 * The one error class of dbnorm. `code` is stable across versions; `message` says what was expected
 * and what was given. Aborted operations reject with `code: 'ERR_ABORTED'` and `name: 'AbortError'`.
 */
export class DbnormError extends Error {
  /** The stable error code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = code === 'ERR_ABORTED' ? 'AbortError' : 'DbnormError';
  }
}

/**
 * Converts an error thrown by the native addon into a {@link DbnormError}. The addon sets the stable
 * code as the error's `code`; an argument-conversion error of napi itself (a value of the wrong type
 * reached the addon) becomes `ERR_PARAM`; anything else is `ERR_INTERNAL`.
 */
export function fromNative(e: unknown): DbnormError {
  if (e instanceof DbnormError) return e;
  const err = e instanceof Error ? e : undefined;
  const code = err ? (err as { code?: unknown }).code : undefined;
  const message = err ? err.message : String(e);
  if (typeof code === 'string' && CODES.has(code)) return new DbnormError(code as ErrorCode, message);
  if (typeof code === 'string' && /Expected$|^InvalidArg$/.test(code)) return new DbnormError('ERR_PARAM', message);
  if (err instanceof RangeError || err instanceof TypeError) return new DbnormError('ERR_PARAM', message);
  return new DbnormError('ERR_INTERNAL', `internal error (please report): ${message}`);
}

/** Runs a native call, rethrowing its errors as {@link DbnormError}. @internal */
export function callNative<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromNative(e);
  }
}

/** Awaits a native promise, rethrowing its errors as {@link DbnormError}. @internal */
export async function awaitNative<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw fromNative(e);
  }
}
