/**
 * Sharded fits on the command line:
 *
 * - `dbnorm fit … --out n.dbn [--shard gallery=i/n,bank=j/m]` fits a normaliser from `.npy` files,
 *   or with `--shard` one shard of it: gallery slice i of n and bank slice j of m (0-based, even
 *   split: slice i covers rows ⌊i·N/n⌋ .. ⌊(i+1)·N/n⌋), reading only those rows from the files.
 * - `dbnorm merge part*.dbn --out n.dbn` merges the shards into the full normaliser.
 *
 * Exit codes as for `eval`: 0 ok, 2 usage error (flags, missing files), 1 data / runtime error
 * (including `ERR_MERGE`: overlapping, missing or mismatched parts).
 * @module
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';

import type { Command } from 'commander';

import { UsageError } from '../cli.js';
import { DbnormError } from '../errors.js';
import { Matrix } from '../matrix.js';
import { METHODS, type Method, Normalizer } from '../normalizer.js';
import { readNpy } from '../npy.js';
import { evenSplit } from '../shard.js';
import type { Metric } from '../similarity.js';
import { methodOptions } from './method-flags.js';
import { log } from './util.js';

interface FitFlags {
  gallery?: string;
  queryBank?: string;
  galleryBank?: string;
  metric?: Metric;
  queryBankSims?: string;
  galleryBankSims?: string;
  queryBankGalleryBankSims?: string;
  galleryCount?: number;
  method: string;
  out: string;
  shard?: { gallery: [number, number]; bank: [number, number] };
  [param: string]: unknown;
}

/** Parses `gallery=i/n,bank=j/m` (either part optional; default 0/1). */
export function parseShard(v: string): { gallery: [number, number]; bank: [number, number] } {
  const out: { gallery: [number, number]; bank: [number, number] } = { gallery: [0, 1], bank: [0, 1] };
  const seen = new Set<string>();
  for (const part of v.split(',')) {
    const m = /^\s*(gallery|bank)\s*=\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(part);
    if (!m) throw new UsageError(`--shard: expected gallery=i/n,bank=j/m (0 ≤ i < n), got '${v}'`);
    const [, axis, i, n] = m as unknown as [string, 'gallery' | 'bank', string, string];
    if (seen.has(axis)) throw new UsageError(`--shard: ${axis} given twice`);
    seen.add(axis);
    const [a, b] = [Number(i), Number(n)];
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || b < 1 || a >= b) throw new UsageError(`--shard: ${axis}=${i}/${n} needs 0 ≤ i < n`);
    out[axis] = [a, b];
  }
  return out;
}

/** Header of a `.npy` file: data offset and shape, when it is `<f4`, C order, 2-D; else null. */
function npyHeader(fd: number, path: string): { offset: number; rows: number; cols: number } | null {
  const pre = Buffer.alloc(12);
  const got = readSync(fd, pre, 0, 12, 0);
  if (got < 10 || pre.toString('latin1', 0, 6) !== '\x93NUMPY') return null;
  const major = pre[6]!;
  const hl = major === 1 ? pre.readUInt16LE(8) : got >= 12 ? pre.readUInt32LE(8) : -1;
  const h0 = major === 1 ? 10 : 12;
  if (hl < 0 || hl > 1 << 20) return null;
  const h = Buffer.alloc(hl);
  if (readSync(fd, h, 0, hl, h0) !== hl) return null;
  const text = h.toString('latin1');
  if (!/'descr':\s*'<f4'/.test(text) || !/'fortran_order':\s*False/.test(text)) return null;
  const shape = /'shape':\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)/.exec(text);
  if (!shape) return null;
  const [rows, cols] = [Number(shape[1]), Number(shape[2])];
  const offset = h0 + hl;
  if (fstatSync(fd).size !== offset + rows * cols * 4) throw new DbnormError('ERR_FORMAT', `${path}: the header declares ${rows}×${cols} float32 values, the file size disagrees`);
  return { offset, rows, cols };
}

/** Row count of a `.npy` file (reads its header only; other layouts are read whole). */
async function npyRows(path: string): Promise<number> {
  const fd = openSync(path, 'r');
  try {
    const h = npyHeader(fd, path);
    if (h) return h.rows;
  } finally {
    closeSync(fd);
  }
  return (await readNpy(path)).rows;
}

/**
 * Rows `start .. start+count` (and, when given, columns `c0 .. c0+nc`) of a `.npy` matrix, reading
 * only those rows for `<f4` C-order files (other accepted layouts are read whole, then sliced).
 */
async function npySlice(path: string, start: number, count: number, cols?: [number, number]): Promise<Matrix> {
  const fd = openSync(path, 'r');
  try {
    const h = npyHeader(fd, path);
    if (h) {
      if (start + count > h.rows) throw new DbnormError('ERR_SHAPE', `${path}: rows ${start}..${start + count} exceed its ${h.rows} rows`);
      const [c0, nc] = cols ?? [0, h.cols];
      if (c0 + nc > h.cols) throw new DbnormError('ERR_SHAPE', `${path}: columns ${c0}..${c0 + nc} exceed its ${h.cols} columns`);
      const out = new Float32Array(count * nc);
      const row = Buffer.alloc(h.cols * 4);
      // Row by row when slicing columns; whole rows are read straight into the output.
      if (nc === h.cols) {
        const bytes = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
        let done = 0;
        while (done < bytes.length) {
          const n = readSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 26), h.offset + start * h.cols * 4 + done);
          if (n === 0) throw new DbnormError('ERR_FORMAT', `${path}: truncated`);
          done += n;
        }
      } else {
        for (let r = 0; r < count; r++) {
          if (readSync(fd, row, 0, row.length, h.offset + (start + r) * h.cols * 4) !== row.length) throw new DbnormError('ERR_FORMAT', `${path}: truncated`);
          out.set(new Float32Array(row.buffer, row.byteOffset + c0 * 4, nc), r * nc);
        }
      }
      return new Matrix(out, count, nc, path);
    }
  } finally {
    closeSync(fd);
  }
  const m = await readNpy(path);
  const [c0, nc] = cols ?? [0, m.cols];
  if (start + count > m.rows || c0 + nc > m.cols) throw new DbnormError('ERR_SHAPE', `${path}: the slice exceeds its ${m.rows}×${m.cols} shape`);
  const out = new Float32Array(count * nc);
  for (let r = 0; r < count; r++) out.set(m.data.subarray((start + r) * m.cols + c0, (start + r) * m.cols + c0 + nc), r * nc);
  return new Matrix(out, count, nc, path);
}

function mustExist(flag: string, path: string | undefined): void {
  if (path === undefined) return;
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UsageError(`${flag} ${path}: no such file`);
  }
  if (!st.isFile()) throw new UsageError(`${flag} ${path}: not a regular file`);
}

/** `dbnorm fit` for a shard (`--shard`) or in similarity mode (`--*-sims`); the `fit` verb delegates here. */
export async function runShardedFit(o: FitFlags): Promise<void> {
  if (!METHODS.includes(o.method as Method)) throw new UsageError(`unknown method '${o.method}' (expected one of ${METHODS.join(', ')})`);
  const method = o.method as Method;
  const emb = o.gallery !== undefined || o.queryBank !== undefined || o.galleryBank !== undefined || o.metric !== undefined;
  const sim = o.queryBankSims !== undefined || o.galleryBankSims !== undefined || o.queryBankGalleryBankSims !== undefined || o.galleryCount !== undefined;
  if (emb && sim) throw new UsageError('embeddings flags (--gallery, --query-bank, --gallery-bank, --metric) and similarity flags (--*-sims, --gallery-count) cannot be mixed');
  if (!emb && !sim) throw new UsageError('give --gallery (embeddings mode) or --query-bank-sims / --gallery-bank-sims (similarity mode)');
  if (emb && o.gallery === undefined) throw new UsageError('embeddings mode needs --gallery');
  for (const [flag, key] of [
    ['--gallery', 'gallery'],
    ['--query-bank', 'queryBank'],
    ['--gallery-bank', 'galleryBank'],
    ['--query-bank-sims', 'queryBankSims'],
    ['--gallery-bank-sims', 'galleryBankSims'],
    ['--query-bank-gallery-bank-sims', 'queryBankGalleryBankSims'],
  ] as const) {
    mustExist(flag, o[key]);
  }
  const params = methodOptions(method, o);
  const t0 = performance.now();
  const sh = o.shard;
  const [gi, gn] = sh?.gallery ?? [0, 1];
  const [bi, bn] = sh?.bank ?? [0, 1];
  const slice = async (file: string | undefined, i: number, n: number) => {
    if (file === undefined) return undefined;
    const total = await npyRows(file);
    const r = evenSplit(i, n, total);
    return { m: await npySlice(file, r.start, r.count), r };
  };
  let result: Normalizer | import('../shard.js').PartialNormalizer;
  if (emb) {
    const g = (await slice(o.gallery, gi, gn))!;
    const q = await slice(o.queryBank, bi, bn);
    const b = await slice(o.galleryBank, bi, bn);
    const data = { gallery: g.m, queryBank: q?.m, galleryBank: b?.m, metric: o.metric ?? 'cosine' };
    if (sh) {
      const shard = { gallery: [g.r.start, g.r.total] as const, ...(q ? { queryBank: [q.r.start, q.r.total] as const } : {}), ...(b ? { galleryBank: [b.r.start, b.r.total] as const } : {}) };
      result = await Normalizer.fit(data, { ...params, shard });
    } else result = await Normalizer.fit(data, params);
  } else {
    // Gallery columns: from the first bank matrix's width, or --gallery-count.
    const files = [o.queryBankSims, o.galleryBankSims].filter((f): f is string => f !== undefined);
    let n = o.galleryCount;
    if (files.length > 0) {
      const fd = openSync(files[0]!, 'r');
      try {
        n = npyHeader(fd, files[0]!)?.cols ?? (await readNpy(files[0]!)).cols;
      } finally {
        closeSync(fd);
      }
    }
    if (n === undefined) throw new UsageError('similarity mode needs --query-bank-sims, --gallery-bank-sims or --gallery-count');
    const gr = evenSplit(gi, gn, n);
    const bank = async (file: string | undefined) => {
      if (file === undefined) return undefined;
      const r = evenSplit(bi, bn, await npyRows(file));
      return { m: await npySlice(file, r.start, r.count, [gr.start, gr.count]), r };
    };
    const q = await bank(o.queryBankSims);
    const b = await bank(o.galleryBankSims);
    // dual-sn: query bank × gallery bank, the same query-bank rows as --query-bank-sims, every column
    let h: Matrix | undefined;
    if (o.queryBankGalleryBankSims !== undefined) {
      const r = evenSplit(bi, bn, await npyRows(o.queryBankGalleryBankSims));
      h = await npySlice(o.queryBankGalleryBankSims, r.start, r.count);
    }
    const data = { queryBankSims: q?.m, galleryBankSims: b?.m, queryBankGalleryBankSims: h, galleryCount: gr.count };
    if (sh) {
      const shard = { gallery: [gr.start, gr.total] as const, ...(q ? { queryBank: [q.r.start, q.r.total] as const } : {}), ...(b ? { galleryBank: [b.r.start, b.r.total] as const } : {}) };
      result = await Normalizer.fitSimilarities(data, { ...params, shard });
    } else result = await Normalizer.fitSimilarities(data, params);
  }
  await result.save(o.out);
  const what = sh ? `shard gallery=${gi}/${gn},bank=${bi}/${bn} (gallery rows ${'shard' in result ? `${result.shard.gallery.start}..${result.shard.gallery.start + result.shard.gallery.count} of ${result.shard.gallery.total}` : ''})` : 'full fit';
  log(`dbnorm fit: ${method}, ${what} → ${o.out} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
}

async function runMerge(parts: string[], o: { out: string }): Promise<void> {
  if (parts.length === 0) throw new UsageError('merge: give the part files');
  for (const p of parts) mustExist('part', p);
  const t0 = performance.now();
  const n = await Normalizer.merge(parts, { leakGuard: 'off' });
  await n.save(o.out);
  log(`dbnorm merge: ${parts.length} parts → ${o.out}: ${n.method}, ${n.galleryCount} gallery items (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
}

/** Registers `merge` (the `fit` verb, in ./fit.ts, delegates shards to {@link runShardedFit}). */
export function registerShard(program: Command): void {
  program
    .command('merge')
    .description('merge the partial normalisers of a sharded fit into the full normaliser')
    .argument('<parts...>', 'the part files (any order)')
    .requiredOption('--out <file>', 'where to save the merged normaliser')
    .action(async (parts: string[], o: { out: string }) => {
      await runMerge(parts, o);
    });
}
