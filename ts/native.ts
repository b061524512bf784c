/**
 * Loads the native addon through the loader that `napi build` generates (`ts/native/index.cjs`).
 * That loader tries, in order: `NAPI_RS_NATIVE_LIBRARY_PATH`, a local `dbnorm.<platform>.node` next
 * to it (a from-source build), the per-platform package (`dbnorm-linux-x64-gnu`, …), and then the
 * WebAssembly fallback (`dbnorm-wasm32-wasi`). `NAPI_RS_FORCE_WASI=1` (or `true`) makes it take the
 * WebAssembly build first.
 *
 * When nothing loads, this module replaces the loader's generic message with a
 * {@link DbnormError} `ERR_NO_BINDING` that names the platform, architecture and libc it detected,
 * the packages and files it tried (with why each failed), and how to fix it.
 * @internal
 * @module
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { DbnormError } from './errors.js';

type Binding = typeof import('./native/index.cjs');

/** Published binary packages (npm/<abi>/), the same list as `napi.targets` in package.json. */
const SUPPORTED: readonly string[] = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'linux-arm64-musl'];
const WASI_PACKAGE = 'dbnorm-wasm32-wasi';

/** `glibc 2.36`, `musl` or `unknown libc` (Linux), or '' elsewhere. */
function detectLibc(): string {
  if (process.platform !== 'linux') return '';
  try {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    if (header?.glibcVersionRuntime) return `glibc ${header.glibcVersionRuntime}`;
  } catch {
    // fall through to the file-system probe
  }
  try {
    if (readFileSync('/usr/bin/ldd', 'utf8').includes('musl')) return 'musl';
  } catch {
    // no ldd
  }
  return 'unknown libc';
}

/** The platform package the loader looks for on this machine, e.g. `linux-x64-gnu`. */
function expectedAbi(libc: string): string {
  const arch = process.arch;
  if (process.platform === 'linux') return `linux-${arch}-${libc === 'musl' ? 'musl' : 'gnu'}`;
  if (process.platform === 'win32') return `win32-${arch}-msvc`;
  return `${process.platform}-${arch}`;
}

/** Flattens the loader's `cause` chain / arrays into one line per failed attempt. */
function causes(e: unknown, out: string[] = [], depth = 0): string[] {
  if (depth > 20 || e == null) return out;
  if (Array.isArray(e)) {
    for (const x of e) causes(x, out, depth + 1);
    return out;
  }
  if (e instanceof Error) {
    const first = e.message.split('\n')[0]!;
    if (!/^Cannot find native binding|^Failed to load native binding/.test(first)) out.push(first);
    causes((e as { cause?: unknown }).cause, out, depth + 1);
  }
  return out;
}

/** Builds the `ERR_NO_BINDING` error (exported for tests). @internal */
export function noBindingError(loaderError: unknown): DbnormError {
  const libc = detectLibc();
  const abi = expectedAbi(libc);
  const here = `${process.platform} ${process.arch}${libc ? ` ${libc}` : ''}`;
  const tried = [`dbnorm-${abi}`, `ts/native/dbnorm.${abi}.node (a from-source build)`, WASI_PACKAGE];
  const reasons = [...new Set(causes(loaderError))];
  const fit = SUPPORTED.includes(abi)
    ? `dbnorm publishes ${`dbnorm-${abi}`} for this machine: reinstall with optional dependencies ` +
      '(not --omit=optional / --no-optional; if npm skipped them, delete node_modules and package-lock.json and run npm install again)'
    : `dbnorm publishes no native package for ${abi} (native builds: ${SUPPORTED.join(', ')}); ` +
      `install the WebAssembly build with \`npm install ${WASI_PACKAGE}\` (slower, works everywhere Node ≥ 20 runs)`;
  return new DbnormError(
    'ERR_NO_BINDING',
    `no dbnorm binding loads on this machine (detected ${here}). ` +
      `Tried: ${tried.join(', ')}.` +
      (reasons.length ? ` Failures: ${reasons.join(' | ')}.` : '') +
      ` Fix: ${fit}; or build from source with Rust (cargo ≥ 1.88): \`npm run build\` in a dbnorm checkout.`,
  );
}

function load(): Binding {
  // napi-rs 3 treats only `true`/`error` as "force WASI"; accept the common `1` too.
  const force = process.env.NAPI_RS_FORCE_WASI;
  const normalise = force === '1';
  if (normalise) process.env.NAPI_RS_FORCE_WASI = 'true';
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(path.join(__dirname, '..', 'ts', 'native', 'index.cjs')) as Binding;
  } catch (e) {
    throw noBindingError(e);
  } finally {
    if (normalise) process.env.NAPI_RS_FORCE_WASI = force;
  }
}

export const native: Binding = load();

/** Which build loaded: `'native'` or `'wasm32-wasi'`. @internal */
export const backend: string = (native as { __napiBindingTarget?: string }).__napiBindingTarget ?? 'native';
