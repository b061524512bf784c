#!/usr/bin/env node
// npm run bench:engines — serving a normaliser from LanceDB and usearch (dbnorm/lancedb, dbnorm/usearch).
//
// 1. A synthetic gallery (default 100 000 items, d 128, planted hubs), DualDIS by default:
//    recall@10 of each engine against norm.search (exact) at three settings of its search knob,
//    with the throughput of that recall pass (all QUERIES in one call), and latency (p50 / p99 per
//    request, one request in flight) and throughput (queries/s) at batch 1 and batch 32 next to
//    norm.search on the same gallery, with the ratios engine ÷ norm.search of the same run and the
//    process's CPU time per query (the figure a loaded machine distorts least).
//    A baseline row gives usearch's recall on the raw gallery (no normalisation, cosine) with the
//    same graph parameters: how hard the data set is for a graph index before dbnorm touches it.
// 2. The shared real sets (../shared/realdata): the same recall figures per set and method.
// Writes benchmark/results/engines-<date>-<items>-<engines>.json and prints a Markdown section for
// RESULTS.md on stdout; progress (with elapsed time and load average) goes to stderr.
//
// Index parameters — what a user would pick for a gallery of this size (override with the env):
// - LanceDB IVF-HNSW-SQ: HNSW_PARTITIONS (1: LanceDB advises one graph unless memory forbids),
//   HNSW_M (16), HNSW_EFC (100: efConstruction, the lower end of LanceDB's "100 is a minimum for
//   good quality"; its default 300 triples the build time); knob ef 16 / 64 / 256.
// - LanceDB IVF-PQ: PQ_PARTITIONS (round(√n), LanceDB's own default), sub-vectors of 8 dims over
//   the zero-padded width (PQ_SUBDIM, 8), 8 bits, refineFactor 10 (PQ quantises the bias column
//   too); knob nprobes ≈ 1.5 % / 6 % / 25 % of the partitions.
// - usearch HNSW: connectivity 16, expansion_add 128 (usearch's defaults), f32 and f16, built and
//   searched with all cores (and, in the latency table, with 1 thread); knob expansion_search 16 / 64 / 256.
//
// Environment: ITEMS (100000), DIM (128), QUERIES (1000), LAT1 (200 batch-1 requests), LAT32 (20),
// METHODS (synthetic part; default dual-dis, the two-pass case; e.g. dual-is,dual-dis),
// ENGINES (lancedb,usearch), REAL=0 skips the real sets, BASELINE=0 skips the raw-gallery baseline.
// Everything is written under one temp dir, removed at the end, on an error and on SIGINT /
// SIGTERM. Nothing listens on a port (LanceDB is embedded, usearch in process).
// Never run as a test: the figures are wall-clock and the machine may be shared.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

// LanceDB logs kmeans warnings for small sets ("dataset is too small to have a meaningful index"): errors only.
process.env.LANCEDB_LOG ??= 'error';
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
const HNSW_PARTITIONS = env('HNSW_PARTITIONS', 1);
const HNSW_M = env('HNSW_M', 16);
const HNSW_EFC = env('HNSW_EFC', 100);
const PQ_SUBDIM = env('PQ_SUBDIM', 8);
const K = 10;
const ENGINES = (process.env.ENGINES ?? 'lancedb,usearch').split(',');
const REAL = process.env.REAL !== '0';
const BASELINE = process.env.BASELINE !== '0';
const KNOBS = [16, 64, 256];
const T0 = performance.now();
const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)} +${((performance.now() - T0) / 1000).toFixed(0)}s load ${os.loadavg()[0].toFixed(1)}]`, ...a);
const secs = (t0) => (performance.now() - t0) / 1000;

// One temp dir for every table and index; removed however the run ends.
let dir = null; // made when measuring starts
let resultFile; // benchmark/results/engines-<date>-<items>-<engines>.json, set when a run starts
const cleanup = () => {
  if (dir !== null) fs.rmSync(dir, { recursive: true, force: true });
  dir = null;
};
// Also on an uncaught error ('exit' runs after it), so no run leaves its tables behind.
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: removing ${dir}`);
    cleanup();
    process.exit(130);
  });
}

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

/**
 * Sequential requests of `batch` queries: p50 / p99 latency (ms), queries per second, and the
 * process's CPU time per query (ms, all threads: the engines' pools included) — the figure a loaded
 * machine distorts least, since wall time there includes waiting for a core.
 */
async function latency(search, queries, batch, n) {
  const times = [];
  for (let w = 0; w < 3; w++) await search(rows(queries, 0, batch));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let r = 0; r < n; r++) {
    const from = (r * batch) % (queries.rows - batch);
    const s = performance.now();
    await search(rows(queries, from, from + batch));
    times.push(performance.now() - s);
  }
  const total = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { batch, requests: n, p50: pct(times, 50), p99: pct(times, 99), qps: (n * batch) / total, cpuMsPerQuery: (cpu.user + cpu.system) / 1000 / (n * batch) };
}

/** Recall of one knob setting, with the throughput of the recall pass (all queries in one call). */
async function measure(out, engine, knob, build, search, queries, want) {
  const t0 = performance.now();
  const got = await search(queries);
  const s = secs(t0);
  out.push({ engine, knob, recall: recall(got.indices, want.indices, queries.rows), build: build.toFixed(1), passQps: queries.rows / s });
  log(`  ${engine} ${knob}: recall@10 ${out.at(-1).recall.toFixed(3)} (${(queries.rows / s).toFixed(0)} q/s over ${queries.rows} queries)`);
}

const hnswParams = () => ({ type: 'ivf_hnsw_sq', numPartitions: HNSW_PARTITIONS, m: HNSW_M, efConstruction: HNSW_EFC });
const pqPartitions = (n) => Math.max(2, Math.round(Math.sqrt(n)));
const pqProbes = (parts) => [Math.max(1, Math.round(parts / 64)), Math.max(2, Math.round(parts / 16)), Math.max(4, Math.round(parts / 4))];
const pqWidth = (norm) => Math.ceil((norm.dim + norm.augmentedInfo().extra) / 16) * 16;

async function knobs(norm, queries, want, label) {
  const out = [];
  let hnsw = null;
  let pq = null;
  let t0;
  if (ENGINES.includes('lancedb')) {
    // LanceDB, IVF-HNSW-SQ (dbnorm's l2 space), knob: ef (all partitions probed).
    const hp = hnswParams();
    const hnswName = `LanceDB IVF-HNSW-SQ (${hp.numPartitions} partition${hp.numPartitions > 1 ? 's' : ''}, m ${hp.m}, efConstruction ${hp.efConstruction})`;
    log(`build ${hnswName} over ${norm.galleryCount} items`);
    t0 = performance.now();
    hnsw = await LanceGallery.create(dir, `${label}_hnsw`, norm, { mode: 'overwrite', index: hp });
    const buildHnsw = secs(t0);
    log(`  built in ${buildHnsw.toFixed(1)} s`);
    for (const ef of KNOBS) await measure(out, hnswName, `ef ${ef}`, buildHnsw, (q) => hnsw.search(q, { k: K, ef, nprobes: hp.numPartitions }), queries, want);
    // LanceDB, IVF-PQ (dot space, padded to a multiple of 16), knob: nprobes, refineFactor 10.
    const parts = pqPartitions(norm.galleryCount);
    const sub = pqWidth(norm) / PQ_SUBDIM;
    const pqName = `LanceDB IVF-PQ (${parts} partitions, ${sub} sub-vectors, refine ×10)`;
    log(`build ${pqName}`);
    t0 = performance.now();
    pq = await LanceGallery.create(dir, `${label}_pq`, norm, { mode: 'overwrite', index: { type: 'ivf_pq', numPartitions: parts, numSubVectors: sub } });
    const buildPq = secs(t0);
    log(`  built in ${buildPq.toFixed(1)} s`);
    for (const nprobes of pqProbes(parts)) await measure(out, pqName, `nprobes ${nprobes}`, buildPq, (q) => pq.search(q, { k: K, nprobes, refineFactor: 10 }), queries, want);
  }
  // usearch HNSW, f32 and f16, knob: expansion_search (fixed when the index object is made: reloaded per setting).
  const us = {};
  for (const quantization of ENGINES.includes('usearch') ? ['f32', 'f16'] : []) {
    log(`build usearch HNSW ${quantization} (connectivity 16, expansion_add 128, ${os.cpus().length} threads)`);
    t0 = performance.now();
    const g = await UsearchGallery.create(norm, { quantization, connectivity: 16, expansionAdd: 128 });
    const build = secs(t0);
    log(`  built in ${build.toFixed(1)} s`);
    const saved = path.join(dir, `${label}_usearch_${quantization}`);
    await g.save(saved);
    for (const ef of KNOBS) {
      const u = await UsearchGallery.load(saved, { expansionSearch: ef, view: true, leakGuard: 'off' });
      await measure(out, `usearch HNSW ${quantization}`, `expansion_search ${ef}`, build, (q) => u.search(q, { k: K }), queries, want);
      us[`${quantization}-${ef}`] = u;
    }
    // usearch spreads a batch over threads it starts per call: one thread is the other choice on a busy server.
    us[`${quantization}-64-t1`] = await UsearchGallery.load(saved, { expansionSearch: 64, threads: 1, view: true, leakGuard: 'off' });
  }
  return { recalls: out, hnsw, pq, us };
}

/** usearch on the raw gallery (no normalisation, cosine) against exact raw search: the data set's own difficulty. */
async function baseline(data, queries) {
  const out = [];
  log('baseline: exact raw top-10 (method none)');
  const raw = await Normalizer.fit({ gallery: data.gallery }, { method: 'none', leakGuard: 'off' });
  const want = await raw.search(queries, { k: K });
  log('baseline: build usearch HNSW f32 on the raw gallery (cos metric, connectivity 16, expansion_add 128)');
  const { Index } = require('usearch');
  const t0 = performance.now();
  const index = new Index({ dimensions: data.gallery.cols, metric: 'cos', quantization: 'f32', connectivity: 16, expansion_add: 128, expansion_search: 64, multi: false });
  index.add(BigUint64Array.from({ length: data.gallery.rows }, (_, i) => BigInt(i)), data.gallery.data, 0);
  const build = secs(t0);
  log(`  built in ${build.toFixed(1)} s`);
  const file = path.join(dir, 'baseline.usearch');
  index.save(file);
  for (const ef of KNOBS) {
    const u = new Index({ dimensions: data.gallery.cols, metric: 'cos', quantization: 'f32', connectivity: 16, expansion_add: 128, expansion_search: ef, multi: false });
    u.view(file);
    const search = async (q) => {
      const m = u.search(Array.from({ length: q.rows }, (_, i) => q.data.subarray(i * q.cols, (i + 1) * q.cols)), K, 0);
      return { indices: Uint32Array.from(m.keys, Number) };
    };
    await measure(out, 'usearch HNSW f32, raw gallery (no normalisation; against exact raw search)', `expansion_search ${ef}`, build, search, queries, want);
  }
  return out;
}

let report;
if (process.env.RENDER) {
  // RENDER=benchmark/results/engines-….json: print the Markdown of a saved run (nothing is measured).
  report = JSON.parse(fs.readFileSync(process.env.RENDER, 'utf8'));
} else {
  report = await measureAll();
}
console.log(markdown(report));

/** Writes the report so far (after every section: a run cut short keeps what it measured). */
function save(report) {
  fs.mkdirSync(path.dirname(resultFile), { recursive: true });
  fs.writeFileSync(resultFile, JSON.stringify(report, null, 2));
}

async function measureAll() {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-bench-engines-'));
  const report = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.cpus().length, nice: os.getPriority(), loadavgStart: os.loadavg(), loadavgSamples: [], items: ITEMS, dim: DIM, queries: QUERIES, engines: ENGINES, params: { HNSW_PARTITIONS, HNSW_M, HNSW_EFC, PQ_SUBDIM, knobs: KNOBS }, synthetic: {}, real: {} };
  const sampler = setInterval(() => report.loadavgSamples.push(os.loadavg()[0]), 30000);
  resultFile = path.join(here, 'results', `engines-${report.date.slice(0, 10)}-${ITEMS}-${ENGINES.join('+')}.json`);

  try {
    log(`synthetic gallery ${ITEMS} × ${DIM}; temp dir ${dir}`);
    let t0 = performance.now();
    const data = syntheticBenchmark({ seed: 3, dim: DIM, gallery: ITEMS, queryBank: 5000, galleryBank: 2000 });
    log(`  generated in ${secs(t0).toFixed(1)} s`);
    const queries = rows(data.queries, 0, Math.min(QUERIES, data.queries.rows));
    if (BASELINE && ENGINES.includes('usearch')) {
      report.baseline = await baseline(data, queries);
      save(report);
    }
    for (const method of (process.env.METHODS ?? 'dual-dis').split(',')) {
      log(`fit ${method}`);
      t0 = performance.now();
      const norm = await Normalizer.fit({ gallery: data.gallery, queryBank: data.queryBank, galleryBank: data.galleryBank }, { method, leakGuard: 'off' });
      log(`  fitted in ${secs(t0).toFixed(1)} s`);
      const want = await norm.search(queries, { k: K });
      const label = `syn_${method.replace('-', '_')}`;
      const { recalls, hnsw, pq, us } = await knobs(norm, queries, want, label);
      log('flat LanceDB table');
      const flat = !ENGINES.includes('lancedb') ? null : await LanceGallery.create(dir, `${label}_flat`, norm, { mode: 'overwrite' });
      const nf = flat ? Math.min(200, queries.rows) : 0;
      const flatGot = flat ? await flat.search(rows(queries, 0, nf), { k: K }) : null;
      const flatWant = await norm.search(rows(queries, 0, nf), { k: K });
      let same = 0;
      for (let i = 0; i < nf; i++) if (flatGot.indices.subarray(i * K, (i + 1) * K).every((v, r) => v === flatWant.indices[i * K + r])) same++;
      log(`  flat: top-10 identical for ${same}/${nf} queries`);
      log('latency');
      const lat = [];
      const parts = pqPartitions(norm.galleryCount);
      const midProbes = pqProbes(parts)[1];
      const contenders = [
        ['norm.search (exact, in process)', (q) => norm.search(q, { k: K })],
        ['LanceDB flat (exact)', (q) => flat.search(q, { k: K })],
        ['LanceDB IVF-HNSW-SQ ef 64', (q) => hnsw.search(q, { k: K, ef: 64, nprobes: HNSW_PARTITIONS })],
        [`LanceDB IVF-PQ nprobes ${midProbes}, refine ×10`, (q) => pq.search(q, { k: K, nprobes: midProbes, refineFactor: 10 })],
        ['usearch HNSW f32 ef 64', (q) => us['f32-64'].search(q, { k: K })],
        ['usearch HNSW f32 ef 64, 1 thread', (q) => us['f32-64-t1'].search(q, { k: K })],
        ['usearch HNSW f16 ef 64', (q) => us['f16-64'].search(q, { k: K })],
      ];
      for (const [name, f] of contenders.filter(([name]) => (name.startsWith('LanceDB') ? ENGINES.includes('lancedb') : name.startsWith('usearch') ? ENGINES.includes('usearch') : true))) {
        for (const [batch, n] of [[1, name.startsWith('LanceDB flat') ? Math.min(LAT1, 50) : LAT1], [32, name.startsWith('LanceDB flat') ? Math.min(LAT32, 5) : LAT32]]) {
          lat.push({ contender: name, ...(await latency(f, data.queries, batch, n)) });
          const x = lat.at(-1);
          log(`  ${name}, batch ${batch}: p50 ${x.p50.toFixed(2)} ms, p99 ${x.p99.toFixed(2)} ms, ${x.qps.toFixed(0)} q/s, CPU ${x.cpuMsPerQuery.toFixed(2)} ms/query`);
        }
      }
      for (const x of lat) {
        const ref = lat.find((y) => y.contender.startsWith('norm.search') && y.batch === x.batch);
        x.qpsRatio = x.qps / ref.qps;
        x.p50Ratio = x.p50 / ref.p50;
      }
      report.synthetic[method] = { recalls, flatIdenticalLists: `${same}/${nf}`, latency: lat };
      save(report);
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
          log(`real ${name} ${method} (gallery ${s.gallery.rows} × ${s.gallery.cols}, ${s.queries.rows} queries)`);
          const norm = await Normalizer.fit({ gallery: s.gallery, queryBank: s.queryBank, galleryBank: s.galleryBank }, { method, leakGuard: 'off' });
          const want = await norm.search(s.queries, { k: K });
          const { recalls } = await knobs(norm, s.queries, want, `real_${name.replace(/\W/g, '_')}_${method.replace('-', '_')}`);
          report.real[`${name} / ${method}`] = { gallery: s.gallery.rows, dim: s.gallery.cols, queries: s.queries.rows, recalls };
          save(report);
        }
      }
    }
  } finally {
    clearInterval(sampler);
    log(`removing ${dir}`);
    cleanup();
  }
  report.loadavgEnd = os.loadavg();
  report.wallSeconds = secs(T0);
  save(report);
  log(`wrote ${resultFile}`);
  return report;
}

function markdown(report) {
  // The Markdown section for RESULTS.md.
  const { items: ITEMS, dim: DIM, queries: QUERIES } = report;
  const { HNSW_PARTITIONS, HNSW_M, HNSW_EFC, PQ_SUBDIM } = report.params;
  const ENGINES = report.engines;
  const f3 = (x) => x.toFixed(3);
  const loads = report.loadavgSamples.length ? report.loadavgSamples : [report.loadavgStart[0]];
  const md = [];
  md.push(`## ${report.date} — serving from engines, ${ITEMS} items (npm run bench:engines)`, '');
  md.push(`- Machine: ${report.cpu}, ${report.cores} cores; shared (1-min load average ${report.loadavgStart[0].toFixed(1)} at the start, ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} sampled every 30 s, ${report.loadavgEnd ? `${report.loadavgEnd[0].toFixed(1)} at the end` : 'run cut short'}; process niceness ${report.nice ?? 'unknown'}): absolute times are noisy, the ratios within one table are the figures to read.${report.wallSeconds ? ` Wall time of the run ${(report.wallSeconds / 60).toFixed(1)} min.` : ''}`);
  md.push(`- Synthetic gallery ${ITEMS} × ${DIM} (planted hubs), query bank 5000, gallery bank 2000, ${QUERIES} queries; recall@10 against norm.search (exact) of the same normaliser; k = 10. "pass q/s": all ${QUERIES} queries in one search call (both passes for DualDIS).`);
  md.push(`- Index parameters: LanceDB IVF-HNSW-SQ ${HNSW_PARTITIONS} partition(s), m ${HNSW_M}, efConstruction ${HNSW_EFC} (l2 space); IVF-PQ √n partitions, ${PQ_SUBDIM}-dim sub-vectors, 8 bits, refineFactor 10; usearch connectivity 16, expansion_add 128.`, '');
  if (report.baseline) {
    md.push(`**Baseline: the raw gallery** (no normalisation, cosine; usearch HNSW f32 against exact raw search) — ${report.baseline.map((x) => `${x.knob}: ${f3(x.recall)}`).join('; ')} (build ${report.baseline[0].build} s).`, '');
  }
  for (const [method, r] of Object.entries(report.synthetic)) {
    md.push(`**${method}, ${ITEMS} items** (engines: ${ENGINES.join(', ')})${r.flatIdenticalLists !== '0/0' ? ` — flat LanceDB table: top-10 lists identical to norm.search for ${r.flatIdenticalLists} queries` : ''}`, '');
    md.push('| engine | knob | recall@10 | pass q/s | build (s) |', '|---|---|---|---|---|');
    for (const x of r.recalls) md.push(`| ${x.engine} | ${x.knob} | ${f3(x.recall)} | ${x.passQps.toFixed(0)} | ${x.build} |`);
    const cpu = r.latency.some((x) => x.cpuMsPerQuery !== undefined);
    md.push('', `| contender | batch | p50 (ms) | p99 (ms) | queries/s | q/s ÷ norm.search | p50 ÷ norm.search |${cpu ? ' CPU ms / query |' : ''}`, `|---|---|---|---|---|---|---|${cpu ? '---|' : ''}`);
    for (const x of r.latency) md.push(`| ${x.contender} | ${x.batch} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} | ${x.qps.toFixed(0)} | ${x.qpsRatio.toFixed(2)} | ${x.p50Ratio.toFixed(2)} |${cpu ? ` ${x.cpuMsPerQuery.toFixed(2)} |` : ''}`);
    md.push('');
  }
  if (Object.keys(report.real).length) {
    md.push('**Real sets** — recall@10 against norm.search at the three knob settings (low / mid / high):', '');
    const names = Object.keys(report.real);
    const engines = [...new Set(names.flatMap((n) => report.real[n].recalls.map((x) => x.engine.replace(/ \(\d+ partitions?,.*\)$/, ''))))];
    md.push(`| set / method (gallery × d) | ${engines.join(' | ')} |`, `|---|${engines.map(() => '---').join('|')}|`);
    for (const n of names) {
      const r = report.real[n];
      const cell = (e) => r.recalls.filter((x) => x.engine.replace(/ \(\d+ partitions?,.*\)$/, '') === e).map((x) => f3(x.recall)).join(' / ');
      md.push(`| ${n} (${r.gallery} × ${r.dim}) | ${engines.map(cell).join(' | ')} |`);
    }
    const knobsOf = (e) => report.real[names[0]].recalls.filter((x) => x.engine.startsWith(e)).map((x) => x.knob);
    md.push('', `Knobs: HNSW-SQ ${knobsOf('LanceDB IVF-HNSW-SQ').join(' / ')}; IVF-PQ (√n partitions) per set: ${names.map((n) => `${n} ${report.real[n].recalls.filter((x) => x.engine.startsWith('LanceDB IVF-PQ')).map((x) => x.knob.replace('nprobes ', '')).join('/')} of ${pqPartitions(report.real[n].gallery)}`).join('; ')}; usearch ${knobsOf('usearch HNSW f32').join(' / ')}.`, '');
  }
  return md.join('\n');
}
