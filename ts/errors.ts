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
 * | `ERR_INTERNAL` | a bug in dbnorm (please report it) |
 * | `ERR_NO_BINDING` | no native or WebAssembly build of dbnorm fits this machine (the message names the platform, the packages tried and the fix) |
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
  | 'ERR_INTERNAL'
  | 'ERR_NO_BINDING';

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'ERR_SHAPE',
  'ERR_NON_FINITE',
  'ERR_PARAM',
  'ERR_EMPTY_BANK',
  'ERR_FORMAT',
  'ERR_IO',
  'ERR_LEAK',
  'ERR_ABORTED',
  'ERR_INTERNAL',
  'ERR_NO_BINDING',
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

/** Converts an error thrown by the native addon (`"ERR_X: message"`) into a {@link DbnormError}. */
export function fromNative(e: unknown): unknown {
  if (e instanceof DbnormError) return e;
  if (e instanceof Error) {
    const m = /^(ERR_[A-Z_]+): ([\s\S]*)$/.exec(e.message);
    if (m && CODES.has(m[1]!)) return new DbnormError(m[1] as ErrorCode, m[2]!);
  }
  return e;
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
