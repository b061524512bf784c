/**
 * Saving and loading fitted normalisers (internal helpers behind `Normalizer.save` / `Normalizer.load`).
 *
 * The file is a versioned little-endian binary (layout in `crate/src/persist.rs`): a header with the
 * format version, an endianness marker, the method and every parameter, the mode and metric, the
 * gallery size, dimension and bank sizes, and a section table; then the prepared gallery and banks
 * (embeddings mode), the per-gallery statistics and the per-bank-row top-k lists; then a CRC-32 of
 * everything before it. Writes are atomic (a temporary file renamed over the target). Loading a
 * truncated, corrupted, wrong-version or wrong-endianness file throws `ERR_FORMAT`.
 * @internal
 * @module
 */
import { DbnormError, callNative } from './errors.js';
import { type RunOptions, runJob } from './job.js';
import { PARAM_INFO, methodInfo } from './methods.js';
import { native } from './native.js';
import { path as checkedPath } from './validate.js';
import type { Method, ResolvedOptions } from './normalizer.js';

type NativeNormalizer = InstanceType<typeof native.NativeNormalizer>;
type NativeParams = import('./native/index.cjs').NativeParams;

/** Whether `method` reads parameter `name` (β of other methods resolves to `null`, see `resolveOptions`). */
function uses(method: Method, name: string): boolean {
  return methodInfo(method)?.params.includes(name) ?? false;
}

function checkPath(p: unknown): string {
  return checkedPath(p);
}

/** The resolved options of a normaliser, rebuilt from its stored method and parameters. @internal */
export function optionsFromNative(p: NativeParams): ResolvedOptions {
  const method = p.method as Method;
  const out: Record<string, unknown> = { method };
  // Every parameter of the method table by name; a cosine-only default (β) of a method that does
  // not read it is null, as `resolveOptions` gives it.
  for (const spec of PARAM_INFO) out[spec.name] = spec.defaultCosineOnly && !uses(method, spec.name) ? null : p.values[spec.name];
  return out as unknown as ResolvedOptions;
}

/** A loaded native normaliser and its options. @internal */
export interface Loaded {
  native: NativeNormalizer;
  options: ResolvedOptions;
}

function loaded(n: NativeNormalizer): Loaded {
  return { native: n, options: optionsFromNative(n.fittedParams()) };
}

/** Writes `n` to `path` on the libuv thread pool. @internal */
export async function saveNormalizer(n: NativeNormalizer, path: string, opts?: RunOptions): Promise<void> {
  const p = checkPath(path);
  await runJob(opts, (job) => n.save(p, job));
  if (opts?.signal?.aborted) throw new DbnormError('ERR_ABORTED', 'save was aborted (the file may have been written)');
}

/** Writes `n` to `path`, blocking the event loop. @internal */
export function saveNormalizerSync(n: NativeNormalizer, path: string): void {
  const p = checkPath(path);
  callNative(() => n.saveSync(p));
}

/** Reads a saved normaliser on the libuv thread pool. @internal */
export async function loadNormalizer(path: string, opts?: RunOptions): Promise<Loaded> {
  const p = checkPath(path);
  const n = await runJob(opts, (job) => native.NativeNormalizer.load(p, job));
  if (opts?.signal?.aborted) throw new DbnormError('ERR_ABORTED', 'load was aborted');
  return loaded(n);
}

/** Reads a saved normaliser, blocking the event loop. @internal */
export function loadNormalizerSync(path: string): Loaded {
  const p = checkPath(path);
  return loaded(callNative(() => native.NativeNormalizer.loadSync(p)));
}
