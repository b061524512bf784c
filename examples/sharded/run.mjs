// npm run example:sharded — a sharded fit, locally.
//
// Writes one synthetic set as .npy files to a directory standing in for shared storage, runs
// G × B shard processes (`dbnorm fit --shard gallery=i/G,bank=j/B`, each reading only its slices),
// `dbnorm merge`s the parts, runs the one-shot `dbnorm fit` on the whole set, and compares the two
// normalisers (top-10 lists and scores of the test queries). Wall time and peak RSS per process
// are printed. Options: --gallery N --bank M --dim D --method m --gallery-shards G --bank-shards B
// --parallel P (shard processes at once; default 2) --keep (keep the directory).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Normalizer, readNpySync, syntheticBenchmark, writeNpySync } = require('../../dist/index.js');

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const n = Number(opt('gallery', 20000));
const m = Number(opt('bank', 20000));
const dim = Number(opt('dim', 128));
const method = opt('method', 'dual-dis');
const G = Number(opt('gallery-shards', 2));
const B = Number(opt('bank-shards', 2));
const parallel = Number(opt('parallel', 2));
const keep = args.includes('--keep');

const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-sharded-'));
const f = (name) => path.join(dir, name);
console.log(`shared storage: ${dir}`);
console.log(`synthetic set: gallery ${n}, query bank ${m}, gallery bank ${m}, dim ${dim}; method ${method}; grid ${G} × ${B}; ${parallel} processes at a time; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`);
const data = syntheticBenchmark({ gallery: n, queryBank: m, galleryBank: m, dim, seed: 7 });
writeNpySync(f('gallery.npy'), data.gallery);
writeNpySync(f('query_bank.npy'), data.queryBank);
writeNpySync(f('gallery_bank.npy'), data.galleryBank);

function worker(cliArgs) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, 'worker.mjs'), ...cliArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`dbnorm ${cliArgs.join(' ')} exited ${code}: ${err.trim()}`));
      resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

const inputs = ['--gallery', f('gallery.npy'), '--query-bank', f('query_bank.npy'), '--gallery-bank', f('gallery_bank.npy'), '--method', method];
const jobs = [];
for (let i = 0; i < G; i++) for (let j = 0; j < B; j++) jobs.push({ name: `shard g${i}/${G} b${j}/${B}`, args: ['fit', ...inputs, '--shard', `gallery=${i}/${G},bank=${j}/${B}`, '--out', f(`part-${i}-${j}.dbn`)] });

const rows = [];
const t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(parallel, jobs.length) }, async () => {
    while (next < jobs.length) {
      const job = jobs[next++];
      rows.push({ name: job.name, ...(await worker(job.args)) });
    }
  }),
);
const shardsWall = (performance.now() - t0) / 1000;
const merge = await worker(['merge', ...jobs.map((j) => j.args.at(-1)), '--out', f('merged.dbn')]);
rows.push({ name: 'merge', ...merge });
const full = await worker(['fit', ...inputs, '--out', f('full.dbn')]);
rows.push({ name: 'one-shot fit', ...full });

console.log('\nprocess                 wall (s)   peak RSS (MB)');
for (const r of rows.sort((a, b) => a.name.localeCompare(b.name))) console.log(`${r.name.padEnd(22)} ${r.wallS.toFixed(2).padStart(9)} ${r.peakRssMB.toFixed(0).padStart(15)}`);
console.log(`all shards, ${parallel} at a time: ${shardsWall.toFixed(2)} s wall; shards + merge ${(shardsWall + merge.wallS).toFixed(2)} s vs one-shot ${full.wallS.toFixed(2)} s`);

const a = Normalizer.loadSync(f('merged.dbn'), { leakGuard: 'off' });
const b = Normalizer.loadSync(f('full.dbn'), { leakGuard: 'off' });
const queries = data.queries;
const [x, y] = [a.searchSync(queries, { k: 10 }), b.searchSync(queries, { k: 10 })];
let sameLists = 0;
for (let q = 0; q < x.rows; q++) {
  let same = true;
  for (let r = 0; r < 10; r++) same &&= x.indices[q * 10 + r] === y.indices[q * 10 + r];
  sameLists += same ? 1 : 0;
}
let identical = 0;
let maxAbs = 0;
for (let i = 0; i < x.scores.length; i++) {
  identical += x.scores[i] === y.scores[i] ? 1 : 0;
  maxAbs = Math.max(maxAbs, Math.abs(x.scores[i] - y.scores[i]));
}
console.log(`merged vs one-shot: identical top-10 lists for ${sameLists}/${x.rows} queries; top-10 scores bit-identical ${identical}/${x.scores.length}, max |Δ| ${maxAbs.toExponential(2)}`);
if (!keep) rmSync(dir, { recursive: true, force: true });
if (sameLists !== x.rows) process.exitCode = 1;
