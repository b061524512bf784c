#!/usr/bin/env node
// Half-precision gallery storage (issue 11): float16 vs bfloat16 vs float32.
//
//   node benchmark/half.mjs [--reps 200] [--no-write]
//
// 1. Top-10 agreement with float32 (share of query lists identical in order, and the mean overlap of
//    the sets) on the shared real sets (../shared/realdata: crosslingual en-fr/es/ru/ar, flickr8k,
//    hm products; every method) and on the synthetic `online` workload (100k × 512 gallery, 2000
//    queries, dual-dis; benchmark/lib/data.mjs).
// 2. Search latency / throughput on `online`: one query at a time (the memory-bound single-query
//    path; median of --reps) and batches of 2000, for each storage, measured in one run, interleaved.
// Appends a section to benchmark/RESULTS.md unless --no-write.
import { existsSync, readFileSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Normalizer, Matrix, readNpySync } = require('../dist/index.js');

const here = path.dirname(fileURLToPath(import.meta.url));
const REAL = path.resolve(here, '../../shared/realdata');
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const REPS = arg('reps', 200);
const STORAGES = ['float16', 'bfloat16'];
const METHODS = ['is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn'];

function rows(m, idx) {
  const d = m.cols;
  const out = new Float32Array(idx.length * d);
  idx.forEach((r, i) => out.set(m.data.subarray(r * d, (r + 1) * d), i * d));
  return new Matrix(out, idx.length, d);
}

function realSets() {
  if (!existsSync(REAL)) return [];
  const out = [];
  for (const lang of ['fr', 'es', 'ru', 'ar']) {
    const dir = path.join(REAL, 'crosslingual_fasttext/aligned', `en-${lang}`);
    const r = (n) => readNpySync(path.join(dir, n));
    out.push({ name: `crosslingual en-${lang}`, gallery: r('gallery_test.npy'), queries: r('query_test.npy'), queryBank: r('query_bank.npy'), galleryBank: r('gallery_bank.npy') });
  }
  {
    const dir = path.join(REAL, 'flickr8k_clip100');
    const ix = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8'));
    const text = readNpySync(path.join(dir, 'text.npy'));
    const image = readNpySync(path.join(dir, 'image.npy'));
    const caps = (imgs) => {
      const s = new Set(imgs);
      return ix.caption_to_image.map((im, c) => [c, im]).filter(([, im]) => s.has(im)).map(([c]) => c);
    };
    out.push({ name: 'flickr8k_clip100', gallery: rows(image, ix.test_images), queries: rows(text, caps(ix.test_images)), queryBank: rows(text, caps(ix.train_images)), galleryBank: rows(image, ix.train_images) });
  }
  {
    const dir = path.join(REAL, 'hm_products_clip1126');
    const s = JSON.parse(readFileSync(path.join(dir, 'split.json'), 'utf8'));
    const text = readNpySync(path.join(dir, 'text.npy'));
    const image = readNpySync(path.join(dir, 'image.npy'));
    out.push({ name: 'hm_products_clip1126', gallery: rows(image, s.test), queries: rows(text, s.test), queryBank: rows(text, s.train), galleryBank: rows(image, s.train) });
  }
  return out;
}

/** Synthetic `online`: the bench's shape (100k × 512, banks 5000 / 1000, 2000 queries), unit rows with a modality gap. */
function online() {
  const dim = 512;
  let s = 12345;
  const r = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const off = (k) => Float32Array.from({ length: dim }, (_, t) => 0.3 * Math.sin(k * 7 + t));
  const make = (n, o) => {
    const data = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) {
      let nn = 0;
      for (let t = 0; t < dim; t++) {
        const v = r() + r() - 1 + o[t];
        data[i * dim + t] = v;
        nn += v * v;
      }
      const inv = 1 / Math.sqrt(nn);
      for (let t = 0; t < dim; t++) data[i * dim + t] *= inv;
    }
    return new Matrix(data, n, dim);
  };
  const [oq, og] = [off(1), off(2)];
  return { name: 'online (synthetic 100k × 512)', gallery: make(100000, og), queries: make(2000, oq), queryBank: make(5000, oq), galleryBank: make(1000, og) };
}

function agreement(a, b, k) {
  let same = 0;
  let overlap = 0;
  for (let i = 0; i < a.rows; i++) {
    const x = a.indices.subarray(i * k, (i + 1) * k);
    const y = b.indices.subarray(i * k, (i + 1) * k);
    if (x.every((v, j) => v === y[j])) same++;
    const sx = new Set(x);
    overlap += y.filter((v) => sx.has(v)).length / k;
  }
  return { identical: same / a.rows, overlap: overlap / a.rows };
}

async function agreementRows(set, methods) {
  const out = [];
  for (const method of methods) {
    const norm = await Normalizer.fit({ gallery: set.gallery, queryBank: set.queryBank, galleryBank: set.galleryBank }, { method });
    const k = Math.min(10, set.gallery.rows);
    const ref = await norm.search(set.queries, { k });
    const row = { set: set.name, method, queries: set.queries.rows };
    for (const s of STORAGES) row[s] = agreement(ref, await norm.withGalleryStorage(s).search(set.queries, { k }), k);
    out.push(row);
  }
  return out;
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function main() {
  const t0 = Date.now();
  const load0 = os.loadavg()[0];
  const rowsOut = [];
  for (const set of realSets()) rowsOut.push(...(await agreementRows(set, METHODS)));
  const on = online();
  rowsOut.push(...(await agreementRows(on, ['dual-dis'])));
  for (const r of rowsOut) console.error(`${r.set} ${r.method}: ${STORAGES.map((s) => `${s} ${(100 * r[s].identical).toFixed(1)}% identical, overlap ${(100 * r[s].overlap).toFixed(2)}%`).join('; ')}`);

  // latency / throughput on online (dual-dis), storages interleaved rep by rep
  const base = await Normalizer.fit({ gallery: on.gallery, queryBank: on.queryBank, galleryBank: on.galleryBank }, { method: 'dual-dis' });
  const norms = { float32: base, float16: base.withGalleryStorage('float16'), bfloat16: base.withGalleryStorage('bfloat16') };
  const one = Object.fromEntries(Object.keys(norms).map((s) => [s, []]));
  const d = on.queries.cols;
  for (let rep = 0; rep < REPS; rep++) {
    const i = rep % on.queries.rows;
    const q = new Matrix(on.queries.data.slice(i * d, (i + 1) * d), 1, d);
    for (const [s, n] of Object.entries(norms)) {
      const t = process.hrtime.bigint();
      n.searchSync(q, { k: 10 });
      one[s].push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }
  const batch = {};
  for (let rep = 0; rep < 3; rep++) {
    for (const [s, n] of Object.entries(norms)) {
      const t = process.hrtime.bigint();
      await n.search(on.queries, { k: 10 });
      (batch[s] ??= []).push(Number(process.hrtime.bigint() - t) / 1e9);
    }
  }
  const lat = Object.fromEntries(Object.keys(norms).map((s) => [s, { singleMs: median(one[s]), batchQps: on.queries.rows / median(batch[s]), galleryBytes: norms[s].storage.galleryBytes }]));
  console.error(JSON.stringify(lat));
  const result = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.cpus().length, load1Before: load0, load1After: os.loadavg()[0], seconds: (Date.now() - t0) / 1000, agreement: rowsOut, latency: lat };
  console.log(JSON.stringify(result, null, 2));
  if (!process.argv.includes('--no-write')) {
    const pct = (x) => `${(100 * x).toFixed(1)} %`;
    const md = [
      '',
      `## Half-precision gallery storage (issue 11), ${result.date.slice(0, 16)} UTC`,
      '',
      `${result.cpu}, ${result.cores} cores, **shared machine** (1-min load ${load0.toFixed(1)} before, ${result.load1After.toFixed(1)} after). \`node benchmark/half.mjs\`.`,
      'Top-10 agreement with the float32 gallery: share of queries whose top-10 list is identical (order included), and the mean set overlap.',
      '',
      '| set | method | queries | float16 identical | float16 overlap | bfloat16 identical | bfloat16 overlap |',
      '|---|---|---:|---:|---:|---:|---:|',
      ...rowsOut.map((r) => `| ${r.set} | ${r.method} | ${r.queries} | ${pct(r.float16.identical)} | ${pct(r.float16.overlap)} | ${pct(r.bfloat16.identical)} | ${pct(r.bfloat16.overlap)} |`),
      '',
      `Search on the synthetic online gallery (100k × 512, dual-dis, k = 10), storages interleaved in one run: single query = median of ${REPS} \`searchSync\` calls; batch = median of 3 × 2000 queries.`,
      '',
      '| storage | gallery bytes | single query | vs float32 | batch throughput | vs float32 |',
      '|---|---:|---:|---:|---:|---:|',
      ...Object.entries(lat).map(([s, l]) => `| ${s} | ${(l.galleryBytes / 1e6).toFixed(0)} MB | ${l.singleMs.toFixed(2)} ms | ${(l.singleMs / lat.float32.singleMs).toFixed(2)}× | ${l.batchQps.toFixed(0)} q/s | ${(l.batchQps / lat.float32.batchQps).toFixed(2)}× |`),
      '',
    ].join('\n');
    appendFileSync(path.join(here, 'RESULTS.md'), md);
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
