/**
 * Validation at the API boundary: every count, size and index that crosses into native code, and
 * every option object. One place, so the rules hold everywhere: a count is a safe non-negative
 * integer in range (no floats, negatives, NaN, or values that would wrap to 32 bits), an option
 * object has only known keys (a typo is `ERR_PARAM` naming the key and the nearest valid one), and
 * reading an option never lets a foreign exception (a throwing getter) escape untyped.
 * @internal
 * @module
 */
import { DbnormError, type ErrorCode } from './errors.js';

/** Largest value a `u32` count or index can hold. */
export const U32_MAX = 0xffffffff;

/** A short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '…' : v}'`;
  if (typeof v !== 'object') return typeof v;
  try {
    return (v as object).constructor?.name ?? 'object';
  } catch {
    return 'object';
  }
}

/**
 * A count, size or index: an integer in `[min, max]` (default `[0, 2^32 − 1]`). Rejects non-numbers,
 * floats, NaN, ±Infinity, negatives and values beyond `max` (which would wrap in a `u32`).
 */
export function count(name: string, v: unknown, min = 0, max = U32_MAX, code: ErrorCode = 'ERR_PARAM'): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new DbnormError(code, `${name} must be an integer in [${min}, ${max}], got ${describe(v)}`);
  }
  return v;
}

/** A finite number `> min` (`inclusive`: `≥ min`). */
export function finite(name: string, v: unknown, min = -Infinity, inclusive = true): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (inclusive ? v < min : v <= min)) {
    throw new DbnormError('ERR_PARAM', `${name} must be a finite number ${inclusive ? '≥' : '>'} ${min}, got ${describe(v)}`);
  }
  return v;
}

/** A boolean. */
export function bool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new DbnormError('ERR_PARAM', `${name} must be a boolean, got ${describe(v)}`);
  return v;
}

/** One of a fixed set of strings. */
export function oneOf<T extends string>(name: string, v: unknown, choices: readonly T[]): T {
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) {
    throw new DbnormError('ERR_PARAM', `${name} must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}

/** A non-empty file path. */
export function path(v: unknown, name = 'path'): string {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) {
    throw new DbnormError('ERR_PARAM', `${name} must be a non-empty string without NUL bytes, got ${describe(v)}`);
  }
  return v;
}

/** Levenshtein distance (small strings: option names). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

/** The known name closest to `key` (a prefix or substring match first, then edit distance), if any is close. */
export function nearest(key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase();
  const contains = known.filter((c) => c.length > 1 && (c.toLowerCase().startsWith(k) || k.startsWith(c.toLowerCase()) || c.toLowerCase().includes(k)));
  if (contains.length > 0 && k.length >= 2) return contains.sort((a, b) => a.length - b.length)[0];
  let best: string | undefined;
  let bd = Infinity;
  for (const c of known) {
    const dd = distance(k, c.toLowerCase());
    if (dd < bd) [best, bd] = [c, dd];
  }
  return bd <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/**
 * Reads an option object: `undefined`/`null` → `{}` when `optional`; anything but a plain object
 * → `ERR_PARAM`. Every own enumerable key must be in `known` (a typo is `ERR_PARAM` naming the key
 * and the nearest valid one). The known keys are read once, into a fresh object, so a getter runs
 * once and an exception it throws becomes `ERR_PARAM`.
 */
export function options<T extends object>(what: string, o: unknown, known: readonly string[], optional = true): Partial<T> {
  if (o === undefined || o === null) {
    if (optional) return {};
    throw new DbnormError('ERR_PARAM', `${what} must be an options object, got ${describe(o)}`);
  }
  if (typeof o !== 'object' || Array.isArray(o) || ArrayBuffer.isView(o)) {
    throw new DbnormError('ERR_PARAM', `${what} must be an options object, got ${describe(o)}`);
  }
  let keys: string[];
  try {
    keys = Object.keys(o);
  } catch (e) {
    throw new DbnormError('ERR_PARAM', `${what}: cannot list the option keys (${(e as Error)?.message ?? String(e)})`);
  }
  for (const key of keys) {
    if (!known.includes(key)) {
      const near = nearest(key, known);
      throw new DbnormError('ERR_PARAM', `${what}: unknown option '${key}'${near ? ` (did you mean '${near}'?)` : ` (known: ${known.join(', ')})`}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const key of known) {
    let v: unknown;
    try {
      v = (o as Record<string, unknown>)[key];
    } catch (e) {
      throw new DbnormError('ERR_PARAM', `${what}: reading option '${key}' threw: ${(e as Error)?.message ?? String(e)}`);
    }
    if (v !== undefined) out[key] = v;
  }
  return out as Partial<T>;
}

/** Reads one property of a caller's object, turning a throwing getter into `code`. */
export function prop(o: object, key: string, what: string, code: ErrorCode = 'ERR_PARAM'): unknown {
  try {
    return (o as Record<string, unknown>)[key];
  } catch (e) {
    throw new DbnormError(code, `${what}: reading '${key}' threw: ${(e as Error)?.message ?? String(e)}`);
  }
}

/** `signal` must be an `AbortSignal` (or absent). */
export function signal(v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw new DbnormError('ERR_PARAM', `signal must be an AbortSignal, got ${describe(v)}`);
  return v;
}

/** `onProgress` must be a function (or absent). */
export function callback<F>(name: string, v: unknown): F | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'function') throw new DbnormError('ERR_PARAM', `${name} must be a function, got ${describe(v)}`);
  return v as F;
}

/** The keys of {@link RunOptions}. */
export const RUN_KEYS = ['signal', 'onProgress'] as const;
