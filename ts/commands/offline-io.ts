/**
 * Shared I/O of the offline verbs (`fit`, `search`, `rerank`): integer `.npy` files (candidate lists
 * in, result indices out), JSON-lines results, user ids, `--threads`, and progress with ETA on stderr.
 * @module
 */
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';

import cliProgress from 'cli-progress';

import { UsageError } from '../cli.js';
import { DbnormError } from '../errors.js';
import type { TopK } from '../normalizer.js';
import { log } from './util.js';

/** A usage error unless `path` is an existing regular file. */
export function inputFile(flag: string, path: string | undefined): string {
  if (path === undefined) throw new UsageError(`${flag} is required`);
  const st = statSync(path, { throwIfNoEntry: false });
  if (st === undefined) throw new UsageError(`${flag} ${path}: no such file`);
  if (!st.isFile()) throw new UsageError(`${flag} ${path}: not a regular file`);
  return path;
}

/**
 * `--threads N`: the size of the native worker pool. Must run before the first native computation
 * (the pool is built once, on first use, and reads `RAYON_NUM_THREADS`).
 */
export function applyThreads(n: number | undefined): void {
  if (n !== undefined) process.env.RAYON_NUM_THREADS = String(n);
}

function formatError(path: string, what: string): DbnormError {
  return new DbnormError('ERR_FORMAT', `${path}: invalid .npy: ${what}`);
}

const INT_DTYPES = { '<i8': 8, '<u8': 8, '<i4': 4, '<u4': 4 } as const;

/**
 * Reads a 2-D C-order integer `.npy` (`<i8`, `<u8`, `<i4`, `<u4`) of candidate gallery ids as a flat
 * `Uint32Array` (rows × cols). Rejects negative ids and ids ≥ 2³² − 1 with `ERR_FORMAT`; the header's
 * size is checked against the file length before anything is read.
 */
export function readIdsNpy(path: string): { ids: Uint32Array; rows: number; cols: number } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new DbnormError('ERR_IO', `${path}: cannot read: ${(e as Error).message}`);
  }
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw formatError(path, 'not a .npy file (bad magic)');
  const major = buf[6]!;
  const hlenSize = major === 1 ? 2 : major === 2 || major === 3 ? 4 : 0;
  if (hlenSize === 0) throw formatError(path, `unsupported format version ${major}`);
  if (buf.length < 8 + hlenSize) throw formatError(path, 'truncated header');
  const hlen = hlenSize === 2 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = 8 + hlenSize + hlen;
  if (start > buf.length) throw formatError(path, 'truncated header');
  const header = buf.toString('latin1', 8 + hlenSize, start);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shape === undefined) throw formatError(path, 'header lacks descr, fortran_order or shape');
  if (!(descr in INT_DTYPES)) throw formatError(path, `dtype '${descr}' is not an integer id type (expected <i8, <u8, <i4 or <u4)`);
  if (fortran === 'True') throw formatError(path, 'Fortran order is not supported (save with C order)');
  const dims = shape.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (dims.length !== 2 || dims.some((d) => !Number.isSafeInteger(d) || d < 0)) throw formatError(path, `expected a 2-D shape (rows, cols), got (${shape})`);
  const [rows, cols] = dims as [number, number];
  const size = INT_DTYPES[descr as keyof typeof INT_DTYPES];
  const want = rows * cols * size;
  if (buf.length - start !== want) throw formatError(path, `shape (${rows}, ${cols}) of ${descr} needs ${want} data bytes, the file has ${buf.length - start}`);
  const ids = new Uint32Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) {
    const o = start + i * size;
    const v = size === 8 ? (descr === '<i8' ? Number(buf.readBigInt64LE(o)) : Number(buf.readBigUInt64LE(o))) : descr === '<i4' ? buf.readInt32LE(o) : buf.readUInt32LE(o);
    if (v < 0 || v >= 0xffffffff) throw formatError(path, `id ${v} at row ${Math.floor(i / Math.max(1, cols))}, column ${i % Math.max(1, cols)} is not a gallery index`);
    ids[i] = v;
  }
  return { ids, rows, cols };
}

/** `.npy` v1.0 header for a C-order 2-D array of `descr`, padded so the data starts at a multiple of 64. */
function npyHeader(descr: string, rows: number, cols: number): Buffer {
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  dict = dict.padEnd(total - 10 - 1, ' ') + '\n';
  const h = Buffer.alloc(10);
  h.write('\x93NUMPY', 0, 'latin1');
  h[6] = 1;
  h[7] = 0;
  h.writeUInt16LE(dict.length, 8);
  return Buffer.concat([h, Buffer.from(dict, 'latin1')]);
}

function writeAll(path: string, parts: Buffer[]): void {
  let fd: number;
  try {
    fd = openSync(path, 'w');
  } catch (e) {
    throw new DbnormError('ERR_IO', `${path}: cannot write: ${(e as Error).message}`);
  }
  try {
    for (const p of parts) {
      let off = 0;
      while (off < p.length) off += writeSync(fd, p, off, p.length - off);
    }
  } catch (e) {
    throw new DbnormError('ERR_IO', `${path}: cannot write: ${(e as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/** Writes top-k indices as `<i8` (rows × k) `.npy`. */
export function writeIndicesNpy(path: string, top: TopK): void {
  const data = new BigInt64Array(top.indices.length);
  for (let i = 0; i < data.length; i++) data[i] = BigInt(top.indices[i]!);
  writeAll(path, [npyHeader('<i8', top.rows, top.k), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

/** Writes top-k scores as `<f4` (rows × k) `.npy`. */
export function writeScoresNpy(path: string, top: TopK): void {
  const s = top.scores;
  writeAll(path, [npyHeader('<f4', top.rows, top.k), Buffer.from(s.buffer, s.byteOffset, s.byteLength)]);
}

/** Reads one id per line (trailing empty line allowed); `n` lines are required, one per gallery item. */
export function readIds(path: string, n: number): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new DbnormError('ERR_IO', `${path}: cannot read: ${(e as Error).message}`);
  }
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length !== n) throw new DbnormError('ERR_SHAPE', `${path}: ${lines.length} ids, but the gallery has ${n} items (one id per line)`);
  return lines;
}

/** Writes one JSON object per query: `{"query": i, "ids": [...], "scores": [...]}` (ids = gallery indices or user ids). */
export function writeJsonl(path: string, top: TopK, ids: string[] | undefined): void {
  const parts: Buffer[] = [];
  let chunk = '';
  for (let q = 0; q < top.rows; q++) {
    const idx = Array.from(top.indices.subarray(q * top.k, (q + 1) * top.k));
    const scores = Array.from(top.scores.subarray(q * top.k, (q + 1) * top.k));
    chunk += JSON.stringify({ query: q, ids: ids ? idx.map((j) => ids[j]!) : idx, scores }) + '\n';
    if (chunk.length > 1 << 20) {
      parts.push(Buffer.from(chunk, 'utf8'));
      chunk = '';
    }
  }
  parts.push(Buffer.from(chunk, 'utf8'));
  writeAll(path, parts);
}

/** Output kind from the `--out` extension (usage error otherwise). */
export function outKind(path: string | undefined): 'npy' | 'jsonl' {
  if (path === undefined) throw new UsageError('--out is required (.npy for indices, .jsonl for ids and scores)');
  if (path.endsWith('.npy')) return 'npy';
  if (path.endsWith('.jsonl')) return 'jsonl';
  throw new UsageError(`--out ${path}: expected a .npy or .jsonl file name`);
}

/** Progress of one long phase on stderr: a bar with ETA on a terminal, a line every ~10 % otherwise. */
export interface PhaseProgress {
  update(p: { phase: string; done: number; total: number }): void;
  stop(): void;
}

export function phaseProgress(verb: string): PhaseProgress {
  const t0 = Date.now();
  if (!process.stderr.isTTY) {
    let lastPhase = '';
    let lastDecile = -1;
    return {
      update: ({ phase, done, total }) => {
        if (total <= 0) return;
        const decile = Math.floor((10 * done) / total);
        if (phase === lastPhase && decile === lastDecile) return;
        lastPhase = phase;
        lastDecile = decile;
        const elapsed = (Date.now() - t0) / 1000;
        const eta = done > 0 && done < total ? `, ETA ${((elapsed * (total - done)) / done).toFixed(0)} s` : '';
        log(`dbnorm ${verb}: ${phase} ${done}/${total} (${((100 * done) / total).toFixed(0)}%${eta})`);
      },
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `dbnorm ${verb} [{bar}] {percentage}% | ETA {eta_formatted} | {phase}`, hideCursor: true, clearOnComplete: true, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let current = '';
  return {
    update: ({ phase, done, total }) => {
      if (total <= 0) return;
      if (!started || phase !== current) {
        if (started) bar.stop();
        bar.start(total, done, { phase });
        started = true;
        current = phase;
      } else {
        bar.update(done, { phase });
      }
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
