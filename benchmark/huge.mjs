#!/usr/bin/env node
// Opt-in workload `huge` (issue 11): the offline large-gallery job through the CLI.
//
//   node benchmark/huge.mjs                       full size: 4M × 512 gallery (8 GB), query bank 100k,
//                                                 gallery bank 20k, 10k queries (needs ~17 GB free disk)
//   node benchmark/huge.mjs --scale 0.05          the same shape scaled down (rows × 0.05)
//   node benchmark/huge.mjs --scale 0.02 --gallery-scale 0.25 --lean
//                                                 banks and queries at scale 0.02, gallery at 0.25 (1M rows):
//                                                 shows peak RSS against gallery size at a bounded cost
//   options: --dim 512 --method dual-is --k 100 --threads N --keep-dir (keep the temp dir) --no-write
//            --lean (fit --keep statistics) --gallery-storage float16|bfloat16 (in-memory half gallery)
//
// Writes the inputs as .npy into a fresh temp dir (streamed, never held in memory), measures the
// page-cache read bandwidth of the gallery file, then runs `dbnorm fit` and `dbnorm search` as child
// processes under /usr/bin/time (peak RSS, wall time). Reports the fraction of the page-cache bandwidth
// that each verb's gallery traffic reached (gallery bytes ÷ wall time ÷ bandwidth: a lower bound, since
// the wall time includes the GEMM). The temp dir is removed at the end (also on failure). Appends a
// section to benchmark/RESULTS.md unless --no-write.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = process.argv[i + 1];
  return typeof def === 'number' ? Number(v) : v;
}
const flag = (name) => process.argv.includes(`--${name}`);

const scale = arg('scale', 1);
const galleryScale = arg('gallery-scale', scale);
const dim = arg('dim', 512);
const lean = flag('lean');
const storage = arg('gallery-storage', undefined);
const sizes = {
  gallery: Math.round(4_000_000 * galleryScale),
  queryBank: Math.round(100_000 * scale),
  galleryBank: Math.round(20_000 * scale),
  queries: Math.round(10_000 * scale),
};
const method = arg('method', 'dual-is');
const k = arg('k', 100);
const threads = arg('threads', undefined);

// ---------------------------------------------------------------------------
// data: unit vectors around a per-modality offset (a modality gap, as in CLIP), written block by block

function npyHeader(rows, cols) {
  let dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  dict = dict.padEnd(total - 11, ' ') + '\n';
  const h = Buffer.alloc(10);
  h.write('\x93NUMPY', 0, 'latin1');
  h[6] = 1;
  h.writeUInt16LE(dict.length, 8);
  return Buffer.concat([h, Buffer.from(dict, 'latin1')]);
}

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

function writeSet(file, rows, seed, offset) {
  const r = xorshift(seed);
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, npyHeader(rows, dim));
  const block = 8192;
  const buf = new Float32Array(block * dim);
  for (let r0 = 0; r0 < rows; r0 += block) {
    const n = Math.min(block, rows - r0);
    for (let i = 0; i < n; i++) {
      let norm = 0;
      for (let t = 0; t < dim; t++) {
        // sum of two uniforms: a cheap bell shape
        const v = r() + r() - 1 + offset[t];
        buf[i * dim + t] = v;
        norm += v * v;
      }
      const inv = 1 / Math.sqrt(norm);
      for (let t = 0; t < dim; t++) buf[i * dim + t] *= inv;
    }
    fs.writeSync(fd, new Uint8Array(buf.buffer, 0, n * dim * 4));
  }
  fs.closeSync(fd);
  return fs.statSync(file).size;
}

/** Page-cache read bandwidth (bytes/s) of `file`: read twice in 64 MiB chunks, the second pass timed. */
function cacheBandwidth(file) {
  const chunk = Buffer.allocUnsafe(64 << 20);
  const pass = () => {
    const fd = fs.openSync(file, 'r');
    const t0 = process.hrtime.bigint();
    let total = 0;
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      total += n;
    }
    fs.closeSync(fd);
    return total / (Number(process.hrtime.bigint() - t0) / 1e9);
  };
  pass();
  return pass();
}

/** Runs the CLI under /usr/bin/time: { wall seconds, peak RSS bytes, stderr }. */
function timed(args) {
  const full = ['-f', '__TIME__ %M %e', process.execPath, CLI, ...args];
  const r = spawnSync('/usr/bin/time', full, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const m = /__TIME__ (\d+) ([\d.]+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`dbnorm ${args[0]} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return { seconds: Number(m[2]), rss: Number(m[1]) * 1024, stderr: r.stderr };
}

const GB = 1e9;
const fmt = (b) => (b >= GB ? `${(b / GB).toFixed(2)} GB` : `${(b / 1e6).toFixed(0)} MB`);

function main() {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} not found: run npm run build first`);
  const galleryBytes = sizes.gallery * dim * 4;
  const need = (sizes.gallery + sizes.queryBank + sizes.galleryBank + sizes.queries) * dim * 4 * (lean ? 1.1 : 2.1); // inputs + the .dbn
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-huge-'));
  const st = fs.statfsSync(dir);
  if (st.bavail * st.bsize < need) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`${dir}: ${fmt(st.bavail * st.bsize)} free, the workload needs about ${fmt(need)} (use --scale)`);
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const load0 = os.loadavg()[0];
  console.error(`huge: scale ${scale}: gallery ${sizes.gallery} × ${dim} (${fmt(galleryBytes)}), query bank ${sizes.queryBank}, gallery bank ${sizes.galleryBank}, queries ${sizes.queries}; ${method}, k ${k}; ${dir}`);
  try {
    const r = xorshift(7);
    const offQ = Array.from({ length: dim }, () => 0.3 * (r() - 0.5));
    const offG = Array.from({ length: dim }, () => 0.3 * (r() - 0.5));
    const f = (n) => path.join(dir, n);
    const t0 = Date.now();
    writeSet(f('g.npy'), sizes.gallery, 1, offG);
    writeSet(f('qb.npy'), sizes.queryBank, 2, offQ);
    writeSet(f('gb.npy'), sizes.galleryBank, 3, offG);
    writeSet(f('q.npy'), sizes.queries, 4, offQ);
    const genSeconds = (Date.now() - t0) / 1000;
    const bw = cacheBandwidth(f('g.npy'));
    console.error(`huge: inputs written in ${genSeconds.toFixed(1)} s; page-cache read bandwidth ${fmt(bw)}/s`);
    const th = threads === undefined ? [] : ['--threads', String(threads)];
    const store = [...(lean ? ['--keep', 'statistics'] : []), ...(storage ? ['--gallery-storage', storage] : [])];
    const fit = timed(['fit', '--gallery', f('g.npy'), '--query-bank', f('qb.npy'), '--gallery-bank', f('gb.npy'), '--method', method, '--out', f('n.dbn'), ...th, ...store]);
    console.error(`huge: fit ${fit.seconds} s, peak RSS ${fmt(fit.rss)}`);
    const dbnBytes = fs.statSync(f('n.dbn')).size;
    const search = timed(['search', '--normalizer', f('n.dbn'), '--queries', f('q.npy'), '--k', String(k), '--out', f('top.npy'), '--scores-out', f('s.npy'), ...th]);
    console.error(`huge: search ${search.seconds} s, peak RSS ${fmt(search.rss)}`);
    const result = {
      date: new Date().toISOString(),
      cpu,
      cores: os.cpus().length,
      load1Before: load0,
      load1After: os.loadavg()[0],
      scale,
      galleryScale,
      lean,
      storage: storage ?? 'float32',
      dim,
      sizes,
      method,
      k,
      galleryBytes,
      dbnBytes,
      pageCacheBandwidth: bw,
      fit: { seconds: fit.seconds, peakRss: fit.rss, galleryBandwidthFraction: galleryBytes / fit.seconds / bw },
      search: {
        seconds: search.seconds,
        peakRss: search.rss,
        queriesPerSecond: sizes.queries / search.seconds,
        dbnBandwidthFraction: dbnBytes / search.seconds / bw,
        galleryBandwidthFraction: galleryBytes / search.seconds / bw,
      },
    };
    console.log(JSON.stringify(result, null, 2));
    if (!flag('no-write')) {
      const md = [
        '',
        `## huge (issue 11), ${result.date.slice(0, 16)} UTC, scale ${scale}${galleryScale !== scale ? `, gallery scale ${galleryScale}` : ''}${lean ? ', lean (--keep statistics)' : ''}${storage ? `, --gallery-storage ${storage}` : ''}`,
        '',
        `${cpu}, ${result.cores} cores, **shared** (1-min load ${load0.toFixed(1)} before, ${result.load1After.toFixed(1)} after). ` +
          `Gallery ${sizes.gallery.toLocaleString('en')} × ${dim} float32 (${fmt(galleryBytes)}), query bank ${sizes.queryBank.toLocaleString('en')}, ` +
          `gallery bank ${sizes.galleryBank.toLocaleString('en')}, ${sizes.queries.toLocaleString('en')} queries, ${method}, k = ${k}; through \`dbnorm fit\` / \`dbnorm search\`.`,
        '',
        '| step | wall | peak RSS | notes |',
        '|---|---|---|---|',
        `| fit (read .npy, fit, save .dbn of ${fmt(dbnBytes)}) | ${fit.seconds.toFixed(1)} s | ${fmt(fit.rss)} | gallery bytes / wall = ${((100 * galleryBytes) / fit.seconds / bw).toFixed(1)} % of page-cache bandwidth (${fmt(bw)}/s) |`,
        `| search (load .dbn, top-${k}, write .npy) | ${search.seconds.toFixed(1)} s | ${fmt(search.rss)} | ${(sizes.queries / search.seconds).toFixed(0)} queries/s; ${lean ? 'gallery file' : '.dbn'} bytes / wall = ${((100 * (lean ? galleryBytes : dbnBytes)) / search.seconds / bw).toFixed(1)} % of page-cache bandwidth (a lower bound: the wall time includes the products) |`,
        '',
      ].join('\n');
      fs.appendFileSync(path.join(HERE, 'RESULTS.md'), md);
    }
  } finally {
    if (!flag('keep-dir')) fs.rmSync(dir, { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  console.error(`huge: ${e.message}`);
  process.exitCode = 1;
}
