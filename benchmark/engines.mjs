#!/usr/bin/env node
// npm run bench:engines — serving a normaliser from LanceDB and usearch (dbnorm/lancedb, dbnorm/usearch).
//
// 1. A synthetic gallery (default 100 000 items, d 128, planted hubs), DualIS and DualDIS:
//    recall@10 of each engine against norm.search (exact) at three settings of its search knob
//    (LanceDB IVF-HNSW-SQ: ef; LanceDB IVF-PQ: nprobes with refineFactor; usearch HNSW f32 / f16:
//    expansion_search), and latency (p50 / p99 per request, one request in flight) and throughput
//    (queries/s) at batch 1 and batch 32 next to norm.search on the same gallery.
// 2. The shared real sets (../shared/realdata): the same recall figures per set and method.
// Writes benchmark/results/engines-<date>.json and prints a Markdown section for RESULTS.md.
// Environment: ITEMS (100000), DIM (128), QUERIES (1000), LAT1 (200 batch-1 requests), LAT32 (20),
// METHODS (synthetic part; default dual-dis, the two-pass case; e.g. dual-is,dual-dis),
// ENGINES (lancedb,usearch), REAL=0 skips the real sets.
// Never run as a test: the figures are wall-clock and the machine may be shared.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Normalizer, syntheticBenchmark, readNpySync } = require('../dist/index.js');
const { LanceGallery } = require('../dist/lancedb.js');
const { UsearchGallery } = require('../dist/usearch.js');

const here = path.dirname(fileURLToPath(import.meta.url));
const env = (n, d) => (process.env[n] === undefined ? d : Number(process.env[n]));
const ITEMS = env('ITEMS', 100000);
const DIM = env('DIM', 128);
const QUERIES = env('QUERIES', 1000);
const LAT1 = env('LAT1', 200);
const LAT32 = env('LAT32', 20);
const K = 10;
const ENGINES = (process.env.ENGINES ?? 'lancedb,usearch').split(',');
const REAL = process.env.REAL !== '0';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-bench-engines-'));
const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

function rows(m, from, to) {
  return { data: m.data.subarray(from * m.cols, to * m.cols), rows: to - from, cols: m.cols };
}

function recall(got, want, nq) {
  let hit = 0;
  for (let i = 0; i < nq; i++) {
    const s = new Set(want.subarray(i * K, (i + 1) * K));
    for (let r = 0; r < K; r++) if (s.has(got[i * K + r])) hit++;
  }
  return hit / (nq * K);
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** Sequential requests of `batch` queries: p50 / p99 latency (ms) and queries per second. */
async function latency(search, queries, batch, n) {
  const times = [];
  for (let w = 0; w < 3; w++) await search(rows(queries, 0, batch));
  const t0 = performance.now();
  for (let r = 0; r < n; r++) {
    const from = (r * batch) % (queries.rows - batch);
    const s = performance.now();
    await search(rows(queries, from, from + batch));
    times.push(performance.now() - s);
  }
  const total = (performance.now() - t0) / 1000;
  return { batch, requests: n, p50: pct(times, 50), p99: pct(times, 99), qps: (n * batch) / total };
}

async function knobs(norm, queries, want, label) {
  const out = [];
  const nq = queries.rows;
  const t = (s) => s.toFixed(1);
  let t0 = performance.now();
  let hnsw = null;
  let pq = null;
  if (ENGINES.includes('lancedb')) {
  // LanceDB, IVF-HNSW-SQ (dbnorm's l2 space), knob: ef.
  t0 = performance.now();
  const hnswParts = Math.max(1, Math.round(norm.galleryCount / 25000));
  hnsw = await LanceGallery.create(dir, `${label}_hnsw`, norm, { mode: 'overwrite', index: { type: 'ivf_hnsw_sq', numPartitions: Math.max(1, Math.round(norm.galleryCount / 25000)), m: 16, efConstruction: 64 } });
  const buildHnsw = (performance.now() - t0) / 1000;
  for (const ef of [16, 64, 256]) {
    const got = await hnsw.search(queries, { k: K, ef, nprobes: hnswParts });
    out.push({ engine: `LanceDB IVF-HNSW-SQ (${hnswParts} partitions, all probed)`, knob: `ef ${ef}`, recall: recall(got.indices, want.indices, nq), build: t(buildHnsw) });
  }
  // LanceDB, IVF-PQ (dot space, padded to a multiple of 16), knob: nprobes, refineFactor 10.
  const parts = Math.max(2, Math.round(Math.sqrt(norm.galleryCount)));
  t0 = performance.now();
  pq = await LanceGallery.create(dir, `${label}_pq`, norm, { mode: 'overwrite', index: { type: 'ivf_pq', numPartitions: parts, numSubVectors: Math.ceil((norm.dim + norm.augmentedInfo().extra) / 16) * 2 } });
  const buildPq = (performance.now() - t0) / 1000;
  for (const nprobes of [Math.max(1, Math.round(parts / 64)), Math.max(2, Math.round(parts / 16)), Math.max(4, Math.round(parts / 4))]) {
    const got = await pq.search(queries, { k: K, nprobes, refineFactor: 10 });
    out.push({ engine: `LanceDB IVF-PQ (${parts} partitions, refine ×10)`, knob: `nprobes ${nprobes}`, recall: recall(got.indices, want.indices, nq), build: t(buildPq) });
  }
  }
  // usearch HNSW, f32 and f16, knob: expansion_search (set at load time).
  const us = {};
  for (const quantization of ENGINES.includes('usearch') ? ['f32', 'f16'] : []) {
    t0 = performance.now();
    const g = await UsearchGallery.create(norm, { quantization, connectivity: 16, expansionAdd: 128 });
    const build = (performance.now() - t0) / 1000;
    const saved = path.join(dir, `${label}_usearch_${quantization}`);
    await g.save(saved);
    for (const ef of [16, 64, 256]) {
      const u = await UsearchGallery.load(saved, { expansionSearch: ef, view: true, leakGuard: 'off' });
      const got = await u.search(queries, { k: K });
      out.push({ engine: `usearch HNSW ${quantization}`, knob: `expansion_search ${ef}`, recall: recall(got.indices, want.indices, nq), build: t(build) });
      us[`${quantization}-${ef}`] = u;
    }
  }
  return { recalls: out, hnsw, pq, us };
}

const report = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.cpus().length, loadavgStart: os.loadavg(), items: ITEMS, dim: DIM, queries: QUERIES, synthetic: {}, real: {} };

try {
  log(`synthetic gallery ${ITEMS} × ${DIM}`);
  const data = syntheticBenchmark({ seed: 3, dim: DIM, gallery: ITEMS, queryBank: 5000, galleryBank: 2000 });
  const queries = rows(data.queries, 0, Math.min(QUERIES, data.queries.rows));
  for (const method of (process.env.METHODS ?? 'dual-dis').split(',')) {
    log(`fit ${method}`);
    const norm = await Normalizer.fit({ gallery: data.gallery, queryBank: data.queryBank, galleryBank: data.galleryBank }, { method, leakGuard: 'off' });
    const want = await norm.search(queries, { k: K });
    log('engines: build + recall');
    const { recalls, hnsw, us } = await knobs(norm, queries, want, `syn_${method.replace('-', '_')}`);
    log('flat table');
    const flat = !ENGINES.includes('lancedb') ? null : await LanceGallery.create(dir, `syn_${method.replace('-', '_')}_flat`, norm, { mode: 'overwrite' });
    const nf = flat ? Math.min(200, queries.rows) : 0;
    const flatGot = flat ? await flat.search(rows(queries, 0, nf), { k: K }) : null;
    const flatWant = await norm.search(rows(queries, 0, nf), { k: K });
    let same = 0;
    for (let i = 0; i < nf; i++) if (flatGot.indices.subarray(i * K, (i + 1) * K).every((v, r) => v === flatWant.indices[i * K + r])) same++;
    log('latency');
    const lat = [];
    const contenders = [
      ['norm.search (exact, in process)', (q) => norm.search(q, { k: K })],
      ['LanceDB flat (exact)', (q) => flat.search(q, { k: K })],
      ['LanceDB IVF-HNSW-SQ ef 64', (q) => hnsw.search(q, { k: K, ef: 64, nprobes: Math.max(1, Math.round(norm.galleryCount / 25000)) })],
      ['usearch HNSW f32 ef 64', (q) => us['f32-64'].search(q, { k: K })],
    ];
    for (const [name, f] of contenders.filter(([name]) => (name.startsWith('LanceDB') ? ENGINES.includes('lancedb') : name.startsWith('usearch') ? ENGINES.includes('usearch') : true))) {
      for (const [batch, n] of [[1, name.startsWith('LanceDB flat') ? Math.min(LAT1, 50) : LAT1], [32, name.startsWith('LanceDB flat') ? Math.min(LAT32, 5) : LAT32]]) {
        lat.push({ contender: name, ...(await latency(f, data.queries, batch, n)) });
        log(name, batch, JSON.stringify(lat.at(-1)));
      }
    }
    report.synthetic[method] = { recalls, flatIdenticalLists: `${same}/${nf}`, latency: lat };
  }

  const shared = path.resolve(here, '..', '..', 'shared', 'realdata');
  if (REAL && fs.existsSync(shared)) {
    const cl = path.join(shared, 'crosslingual_fasttext', 'aligned', 'en-fr');
    const hm = path.join(shared, 'hm_products_clip1126');
    const split = JSON.parse(fs.readFileSync(path.join(hm, 'split.json'), 'utf8'));
    const pick = (m, idx) => {
      const out = new Float32Array(idx.length * m.cols);
      idx.forEach((r, i) => out.set(m.data.subarray(r * m.cols, (r + 1) * m.cols), i * m.cols));
      return { data: out, rows: idx.length, cols: m.cols };
    };
    const img = readNpySync(path.join(hm, 'image.npy'));
    const txt = readNpySync(path.join(hm, 'text.npy'));
    const sets = {
      'crosslingual en-fr': { gallery: readNpySync(path.join(cl, 'gallery_test.npy')), queries: readNpySync(path.join(cl, 'query_test.npy')), queryBank: readNpySync(path.join(cl, 'query_bank.npy')), galleryBank: readNpySync(path.join(cl, 'gallery_bank.npy')) },
      'hm products': { gallery: pick(img, split.test), queries: pick(txt, split.test), queryBank: pick(txt, split.train), galleryBank: pick(img, split.train) },
    };
    for (const [name, s] of Object.entries(sets)) {
      for (const method of ['dual-is', 'dual-dis']) {
        log(`real ${name} ${method}`);
        const norm = await Normalizer.fit({ gallery: s.gallery, queryBank: s.queryBank, galleryBank: s.galleryBank }, { method, leakGuard: 'off' });
        const want = await norm.search(s.queries, { k: K });
        const { recalls } = await knobs(norm, s.queries, want, `real_${name.replace(/\W/g, '_')}_${method.replace('-', '_')}`);
        report.real[`${name} / ${method}`] = recalls;
      }
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
report.loadavgEnd = os.loadavg();
fs.mkdirSync(path.join(here, 'results'), { recursive: true });
const file = path.join(here, 'results', `engines-${report.date.slice(0, 10)}-${ITEMS}-${ENGINES.join('+')}.json`);
fs.writeFileSync(file, JSON.stringify(report, null, 2));
log(`wrote ${file}`);

// Markdown
const md = [];
md.push(`## ${report.date} — serving from engines (npm run bench:engines)`, '');
md.push(`- Machine: ${report.cpu}, ${report.cores} cores; **shared and loaded** (1-min load average ${report.loadavgStart[0].toFixed(1)} at the start, ${report.loadavgEnd[0].toFixed(1)} at the end): absolute times are noisy, compare within one table.`);
md.push(`- Synthetic gallery ${ITEMS} × ${DIM} (planted hubs), query bank 5000, gallery bank 2000, ${QUERIES} queries; recall@10 against norm.search (exact) of the same normaliser; k = 10.`, '');
for (const [method, r] of Object.entries(report.synthetic)) {
  md.push(`**${method}, ${ITEMS} items** (engines: ${ENGINES.join(', ')})${r.flatIdenticalLists !== '0/0' ? ` — flat LanceDB table: top-10 lists identical to norm.search for ${r.flatIdenticalLists} queries` : ''}`, '');
  md.push('| engine | knob | recall@10 | build (s) |', '|---|---|---|---|');
  for (const x of r.recalls) md.push(`| ${x.engine} | ${x.knob} | ${x.recall.toFixed(3)} | ${x.build} |`);
  md.push('', '| contender | batch | p50 (ms) | p99 (ms) | queries/s |', '|---|---|---|---|---|');
  for (const x of r.latency) md.push(`| ${x.contender} | ${x.batch} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} | ${x.qps.toFixed(0)} |`);
  md.push('');
}
for (const [name, recalls] of Object.entries(report.real)) {
  md.push(`**${name}** — recall@10: ${recalls.map((x) => `${x.engine} ${x.knob}: ${x.recall.toFixed(3)}`).join('; ')}`, '');
}
console.log(md.join('\n'));
