#!/usr/bin/env node
// dbnorm benchmark (issue 6): dbnorm against a pure-JS baseline (benchmark/baseline.mjs), a numpy
// reference (benchmark/reference.py) and the machine's own limits (memory bandwidth, numpy GEMM).
//
//   npm run bench                  quick + coco + online (about 10 minutes on 2 cores)
//   npm run bench -- --quick       the quick workload and the probes only (under a minute)
//   npm run bench -- --large       also the opt-in 1M-gallery workload
//   npm run bench -- --only coco   selected workloads (comma-separated)
//
// Every contender runs in its own child process (so that each has its own peak RSS), on the same
// .npy inputs, interleaved round by round; ratios are computed per round and summarised by their
// median. Results: a markdown section appended to benchmark/RESULTS.md and the raw numbers in
// benchmark/results/<date>.json. Options: --rounds N, --no-numpy, --no-js, --no-write,
// --seed N, --wait-idle SECONDS (wait for a 1-minute load average < 0.5 before starting).

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { WORKLOADS, ensureWorkload } from './lib/data.mjs';
import { median } from './lib/proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const METHODS = ['none', 'is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn'];
// Cosine-scale parameters shared by every contender (the library's defaults for cosine embeddings).
const PARAMS = { betaQuery: 20, betaGallery: 1, k: 1, cslsK: 10, nnnK: 128, nnnAlpha: 0.75 };
const TOPK = 10;
// A round during which other processes used more than this many cores (on average) is repeated,
// at most REPEAT_DISTURBED times per figure.
const DISTURBED_CORES = 0.3;
const REPEAT_DISTURBED = 3;
const DISTURB = { repeated: 0, maxForeignKept: 0 };

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

function parseArgs(argv) {
  const o = { quick: false, large: false, only: null, rounds: null, numpy: true, js: true, write: true, seed: 1, waitIdle: 0, label: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--large') o.large = true;
    else if (a === '--only') o.only = val().split(',');
    else if (a === '--rounds') o.rounds = Number(val());
    else if (a === '--no-numpy') o.numpy = false;
    else if (a === '--no-js') o.js = false;
    else if (a === '--no-write') o.write = false;
    else if (a === '--seed') o.seed = Number(val());
    else if (a === '--wait-idle') o.waitIdle = Number(val());
    else if (a === '--label') o.label = val();
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 17).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  let workloads = o.quick ? ['quick'] : ['quick', 'coco', 'online'];
  if (o.large) workloads.push('large');
  if (o.only) {
    for (const w of o.only) if (!WORKLOADS[w]) throw new Error(`unknown workload ${w} (${Object.keys(WORKLOADS).join(', ')})`);
    workloads = o.only;
  }
  o.workloads = workloads;
  o.rounds ??= o.quick ? 1 : 5;
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const log = (...a) => console.error('[bench]', ...a);

// ---------------------------------------------------------------------------
// Environment, load and interference
// ---------------------------------------------------------------------------

function tryRun(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function machineInfo() {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  const lscpu = tryRun('lscpu', []);
  const family = lscpu && /CPU family:\s*(\d+)/.exec(lscpu)?.[1];
  const model = lscpu && /^Model:\s*(\d+)/m.exec(lscpu)?.[1];
  const flags = fs.existsSync('/proc/cpuinfo') ? /flags\s*:(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '' : '';
  return {
    cpu,
    cpuFamilyModel: family ? `family ${family} model ${model}` : null,
    avx512: / avx512f /.test(flags + ' '),
    cores: os.availableParallelism?.() ?? os.cpus().length,
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
  };
}

function versions() {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const commit = tryRun('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = tryRun('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no', '--', 'crate', 'ts']);
  return {
    dbnorm: pkg.version,
    commit: commit ? commit + (dirty ? ' (+ uncommitted library changes)' : '') : null,
    node: process.version,
    rustc: tryRun('rustc', ['--version']),
  };
}

/** CPU busy ticks of the whole machine and of this process tree (self + waited-for children). */
function cpuSample() {
  try {
    const stat = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = stat;
    const busy = user + nice + system + irq + softirq + (steal ?? 0);
    const self = fs.readFileSync('/proc/self/stat', 'utf8');
    const f = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number);
    const own = f[11] + f[12] + f[13] + f[14]; // utime stime cutime cstime
    return { busy, own, t: performance.now() / 1000 };
  } catch {
    return null;
  }
}

/** Average number of cores that processes other than the benchmark kept busy between two samples. */
function foreignCores(a, b) {
  if (!a || !b) return null;
  const hz = 100;
  return Math.max(0, (b.busy - a.busy - (b.own - a.own)) / hz / (b.t - a.t));
}

async function waitIdle(seconds) {
  const t0 = Date.now();
  while (os.loadavg()[0] >= 0.5 && (Date.now() - t0) / 1000 < seconds) {
    log(`load average ${os.loadavg()[0].toFixed(2)} ≥ 0.5, waiting (up to ${seconds} s)…`);
    await new Promise((r) => setTimeout(r, 10000));
  }
  return os.loadavg();
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

function runChild(cmd, args, { env = process.env, timeoutMs = 30 * 60 * 1000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop();
      if (code !== 0 || !last) {
        reject(new Error(`${path.basename(cmd)} ${args.slice(0, 2).join(' ')} failed (${signal ?? code}):\n${err.slice(-3000)}`));
        return;
      }
      try {
        resolve(JSON.parse(last));
      } catch (e) {
        reject(new Error(`unparsable child output: ${last.slice(0, 500)}\n${err.slice(-1000)}`));
      }
    });
  });
}

const nodeWorker = (which, task, env) => runChild(process.execPath, ['--expose-gc', path.join(HERE, 'workers', `${which}.mjs`), JSON.stringify(task)], { env: { ...process.env, ...env } });

/**
 * The dbnorm WebAssembly build (dbnorm-wasm32-wasi, `npm run build:targets -- wasm32-wasi`) as a
 * contender in the quick workload: the same dbnorm worker with `NAPI_RS_FORCE_WASI=1`, so a user
 * sees what the fallback costs. Available when the loader really loads it (checked once).
 */
const WASM_ENV = { NAPI_RS_FORCE_WASI: '1' };
const wasm = (() => {
  const r = spawnSync(process.execPath, ['-e', "console.log(require('./dist/native.js').backend)"], { cwd: ROOT, env: { ...process.env, ...WASM_ENV }, encoding: 'utf8' });
  const backend = r.stdout.trim();
  return backend === 'wasm32-wasi' ? { available: true } : { available: false, reason: `no WASI build next to the loader (got '${backend || r.stderr.trim().split('\n')[0]}'): run \`npm run build:targets -- wasm32-wasi\`` };
})();
const wasmWorker = (task) => nodeWorker('dbnorm', task, WASM_ENV);

// numpy: the venv, and the environment it runs fastest in.
const numpy = { available: false, reason: null, python: null, env: process.env, envName: 'inherited', probes: {} };

const NUMPY_ARGS = ['--beta-query', String(PARAMS.betaQuery), '--beta-gallery', String(PARAMS.betaGallery), '--k', String(PARAMS.k),
  '--csls-k', String(PARAMS.cslsK), '--nnn-k', String(PARAMS.nnnK), '--nnn-alpha', String(PARAMS.nnnAlpha), '--topk', String(TOPK)];

const runNumpy = (args, env = numpy.env) => runChild(numpy.python, [path.join(HERE, 'reference.py'), ...args], { env });

function setupNumpy() {
  if (!opts.numpy) {
    numpy.reason = 'disabled with --no-numpy';
    return;
  }
  const venv = path.join(HERE, '.venv');
  const py = path.join(venv, 'bin', 'python');
  const base = [process.env.PYTHON, 'python3', 'python'].find((p) => p && spawnSync(p, ['--version']).status === 0);
  if (!fs.existsSync(py)) {
    if (!base) {
      numpy.reason = 'no Python interpreter found (python3 / python / $PYTHON)';
      return;
    }
    log(`creating ${path.relative(ROOT, venv)} with ${base} and installing benchmark/requirements.txt…`);
    const mk = spawnSync(base, ['-m', 'venv', venv], { stdio: 'inherit' });
    if (mk.status !== 0) {
      numpy.reason = `could not create a virtual environment with ${base} -m venv`;
      return;
    }
  }
  const check = spawnSync(py, ['-c', 'import numpy, threadpoolctl'], { stdio: 'ignore' });
  if (check.status !== 0) {
    const pip = spawnSync(py, ['-m', 'pip', 'install', '-q', '-r', path.join(HERE, 'requirements.txt')], { stdio: 'inherit' });
    if (pip.status !== 0) {
      numpy.reason = 'pip install -r benchmark/requirements.txt failed';
      return;
    }
  }
  numpy.available = true;
  numpy.python = py;
}

/**
 * This machine may set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which can pick a slower OpenBLAS kernel.
 * The floors are against numpy at its best, so probe GEMM with the inherited environment and with
 * those variables unset, and run every numpy contender in the faster one (both numbers are kept).
 */
async function chooseNumpyEnv(probeArgs) {
  const clean = { ...process.env };
  const unset = Object.keys(clean).filter((k) => /^OPENBLAS_(CORETYPE|L2_SIZE)$/.test(k));
  for (const k of unset) delete clean[k];
  const inherited = await runNumpy(probeArgs, process.env);
  numpy.probes.gemmInherited = inherited;
  if (!unset.length) {
    numpy.probes.gemmClean = null;
    numpy.env = process.env;
    numpy.envName = 'inherited (no OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE set)';
    return inherited;
  }
  const cleaned = await runNumpy(probeArgs, clean);
  numpy.probes.gemmClean = cleaned;
  const useClean = cleaned.gflops >= inherited.gflops;
  numpy.env = useClean ? clean : process.env;
  numpy.envName = useClean ? `${unset.join(', ')} unset` : `inherited (${unset.map((k) => `${k}=${process.env[k]}`).join(', ')})`;
  return useClean ? cleaned : inherited;
}

const blasOf = (o) => (o?.blas ?? []).map((b) => `${b.internal_api} ${b.version} (${b.architecture}, ${b.num_threads} threads)`).join('; ') || 'unknown';

// ---------------------------------------------------------------------------
// Interleaved contests
// ---------------------------------------------------------------------------

/**
 * Runs each contender once per round, in an order rotated every round. `contenders` maps a name to
 * a function returning a child's output; `pick(name, out)` returns { key: seconds[] }. Returns the
 * per-key samples, per-round medians and raw outputs.
 */
async function contest(label, contenders, rounds, pick) {
  const names = Object.keys(contenders).filter((n) => contenders[n]);
  const res = { rounds: [], raw: Object.fromEntries(names.map((n) => [n, []])), foreignCores: [], repeatedRounds: 0 };
  let retries = opts.quick ? 0 : REPEAT_DISTURBED;
  for (let r = 0; r < rounds; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length]);
    const round = {};
    const raw = {};
    const a = cpuSample();
    for (const n of order) {
      const t0 = performance.now();
      const out = await contenders[n](r);
      raw[n] = out;
      for (const [key, secs] of Object.entries(pick(n, out))) (round[key] ??= {})[n] = secs;
      log(`${label} round ${r + 1}/${rounds} ${n}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    const foreign = foreignCores(a, cpuSample());
    if (foreign != null && foreign > DISTURBED_CORES && retries > 0) {
      // Other processes competed for the cores during this round: discard it and run it again.
      retries--;
      res.repeatedRounds++;
      DISTURB.repeated++;
      log(`${label} round ${r + 1}: other processes used ${foreign.toFixed(2)} cores, repeating the round`);
      await quiet(60);
      r--;
      continue;
    }
    res.foreignCores.push(foreign);
    if (foreign != null) DISTURB.maxForeignKept = Math.max(DISTURB.maxForeignKept, foreign);
    for (const n of names) res.raw[n].push(raw[n]);
    res.rounds.push(round);
  }
  return res;
}

/** Waits (up to `seconds`) until processes other than this benchmark use < DISTURBED_CORES cores over 3 s. */
async function quiet(seconds) {
  const t0 = Date.now();
  for (;;) {
    const a = cpuSample();
    await new Promise((r) => setTimeout(r, 3000));
    const f = foreignCores(a, cpuSample());
    if (f == null || f < DISTURBED_CORES || (Date.now() - t0) / 1000 >= seconds) return f;
    log(`other processes use ${f.toFixed(2)} cores, waiting…`);
  }
}

/** Summary of one key of a contest: medians per contender and pairwise per-round speedups. */
function summarise(res, key, work = null) {
  const names = new Set(res.rounds.flatMap((r) => Object.keys(r[key] ?? {})));
  const out = { contenders: {}, speedup: {}, foreignCoresMax: Math.max(0, ...res.foreignCores.filter((x) => x != null)), repeatedRounds: res.repeatedRounds };
  for (const n of names) {
    const all = res.rounds.flatMap((r) => r[key]?.[n] ?? []);
    const med = median(all);
    out.contenders[n] = { medianSeconds: med, minSeconds: Math.min(...all), runs: all.length, samples: all };
    if (work) out.contenders[n].rate = work / med;
  }
  for (const other of ['numpy', 'numpy-inplace', 'purejs', 'wasm']) {
    if (!names.has('dbnorm') || !names.has(other)) continue;
    // t_other / t_dbnorm per round (each side's median within the round): > 1 means dbnorm is faster.
    const per = res.rounds.filter((r) => r[key]?.dbnorm && r[key]?.[other]).map((r) => median(r[key][other]) / median(r[key].dbnorm));
    out.speedup[other] = { median: median(per), min: Math.min(...per), max: Math.max(...per), perRound: per };
  }
  return out;
}

// ---------------------------------------------------------------------------
// Probes: memory bandwidth and GEMM
// ---------------------------------------------------------------------------

let bandwidthBinary = null;
function buildBandwidthProbe(tmp) {
  const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0);
  if (!cc) return { error: 'no C compiler (cc / gcc / clang): C probe skipped' };
  const bin = path.join(tmp, 'bandwidth-probe');
  const src = path.join(HERE, 'probes', 'bandwidth.c');
  const r = spawnSync(cc, ['-O3', '-march=native', '-ffast-math', '-fopenmp', src, '-o', bin], { encoding: 'utf8' });
  if (r.status !== 0) return { error: `C probe did not compile: ${r.stderr.slice(0, 300)}` };
  bandwidthBinary = bin;
  return { compiler: cc };
}

/** Bytes/s of reading `npyFile` once: the C probe (1..cores threads) and numpy (sum, gemv); best wins. */
async function bandwidthProbe(npyFile) {
  const out = { file: path.basename(npyFile), c: null, numpy: null };
  if (bandwidthBinary) {
    out.c = await runChild(bandwidthBinary, [npyFile, '15', String(os.availableParallelism?.() ?? os.cpus().length)]);
  }
  if (numpy.available) out.numpy = await runNumpy(['--probe-bandwidth', '--input', path.dirname(npyFile), '--repeats', '9']);
  const cands = [];
  if (out.c) for (const [t, v] of Object.entries(out.c.threads)) cands.push({ how: `C sum loop, ${t} thread${t === '1' ? '' : 's'}`, bps: v.bytes_per_second, seconds: v.median_seconds });
  if (out.numpy) {
    cands.push({ how: 'numpy a.sum() (1 thread)', bps: out.numpy.sum_bytes_per_second, seconds: out.numpy.sum_seconds });
    cands.push({ how: 'numpy a @ ones (BLAS sgemv)', bps: out.numpy.gemv_bytes_per_second, seconds: out.numpy.gemv_seconds });
  }
  cands.sort((a, b) => b.bps - a.bps);
  out.candidates = cands;
  out.best = cands[0] ?? null;
  out.bytes = out.c?.bytes ?? out.numpy?.bytes;
  return out;
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

const TMP = path.join(os.tmpdir(), 'dbnorm-bench');

async function prepareData(name) {
  const dir = path.join(TMP, `${name}-seed${opts.seed}`);
  const t0 = performance.now();
  const meta = ensureWorkload(dir, name, WORKLOADS[name], opts.seed);
  log(`${name}: data ${meta.reused ? 'reused' : 'generated'} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${dir})`);
  return { dir, meta };
}

async function ensureSims(dir, a, b, name) {
  if (!fs.existsSync(path.join(dir, `${name}.npy`))) await nodeWorker('dbnorm', { task: 'writeSims', dir, a, b, name });
}

const secondsPick = (_n, out) => ({ main: Array.isArray(out.seconds) ? out.seconds : out.times ?? out.similarity_times ?? out.fit_times });

async function similarityContest(w, rounds, withJs, reps) {
  const res = await contest(`${w.name} similarity`, {
    dbnorm: () => nodeWorker('dbnorm', { task: 'similarity', dir: w.dir, reps }),
    numpy: numpy.available && (() => runNumpy(['--input', w.dir, '--out', path.join(w.dir, 'np-out'), '--task', 'similarity', '--repeats', String(reps), ...NUMPY_ARGS])),
    purejs: withJs && (() => nodeWorker('purejs', { task: 'similarity', dir: w.dir, reps: 1 })),
    wasm: withJs && wasm.available && (() => wasmWorker({ task: 'similarity', dir: w.dir, reps: 1 })),
  }, rounds, secondsPick);
  const flops = res.raw.dbnorm[0].flops;
  const s = summarise(res, 'main', flops / 1e9);
  s.gflop = flops / 1e9;
  s.outputHash = res.raw.dbnorm[0].hash;
  return s;
}

async function fitContest(w, rounds, withJs, reps, method, warmup) {
  const res = await contest(`${w.name} fit ${method}`, {
    dbnorm: () => nodeWorker('dbnorm', { task: 'fit', dir: w.dir, method, params: PARAMS, reps, warmup }),
    numpy: numpy.available && (() => runNumpy(['--input', w.dir, '--out', path.join(w.dir, 'np-out'), '--task', 'fit', '--method', method, '--repeats', String(reps), '--warmup', warmup, '--measure-memory', ...NUMPY_ARGS])),
    'numpy-inplace': numpy.available && (() => runNumpy(['--input', w.dir, '--out', path.join(w.dir, 'np-out'), '--task', 'fit', '--method', method, '--repeats', String(reps), '--warmup', warmup, '--measure-memory', '--lse', 'inplace', ...NUMPY_ARGS])),
    purejs: withJs && (() => nodeWorker('purejs', { task: 'fit', dir: w.dir, method, params: PARAMS, reps: 1 })),
    wasm: withJs && wasm.available && (() => wasmWorker({ task: 'fit', dir: w.dir, method, params: PARAMS, reps: 1, warmup })),
  }, rounds, secondsPick);
  const d = res.raw.dbnorm[0];
  const s = summarise(res, 'main', d.flops / 1e9);
  s.method = method;
  s.gflopEquivalent = d.flops / 1e9;
  s.elements = d.elements;
  s.inputBytes = d.memory.inputBytes;
  const mem = (arr, get) => {
    const v = arr.map(get).filter((x) => x != null);
    return v.length ? Math.max(...v) : null;
  };
  s.memory = {
    dbnorm: { extraPeakBytes: mem(res.raw.dbnorm, (o) => o.memory.extraPeakBytes), peakRssBytes: mem(res.raw.dbnorm, (o) => o.memory.peakBytes) },
    numpy: res.raw.numpy ? { extraPeakBytes: mem(res.raw.numpy, (o) => o.memory?.extra_peak_bytes), peakRssBytes: mem(res.raw.numpy, (o) => o.memory?.peak_bytes) } : null,
    'numpy-inplace': res.raw['numpy-inplace'] ? { extraPeakBytes: mem(res.raw['numpy-inplace'], (o) => o.memory?.extra_peak_bytes), peakRssBytes: mem(res.raw['numpy-inplace'], (o) => o.memory?.peak_bytes) } : null,
    purejs: res.raw.purejs ? { extraPeakBytes: mem(res.raw.purejs, (o) => o.memory.extraPeakBytes), peakRssBytes: mem(res.raw.purejs, (o) => o.memory.peakBytes) } : null,
  };
  s.statsHash = d.statsHash;
  return s;
}

async function lseContest(w, rounds, withJs, reps, matrix) {
  const res = await contest(`${w.name} log-sum-exp`, {
    dbnorm: () => nodeWorker('dbnorm', { task: 'lse', dir: w.dir, matrix, beta: PARAMS.betaQuery, reps }),
    numpy: numpy.available && (() => runNumpy(['--input', w.dir, '--task', 'lse', '--matrix', matrix, '--repeats', String(reps), ...NUMPY_ARGS])),
    'numpy-inplace': numpy.available && (() => runNumpy(['--input', w.dir, '--task', 'lse', '--matrix', matrix, '--repeats', String(reps), '--lse', 'inplace', ...NUMPY_ARGS])),
    purejs: withJs && (() => nodeWorker('purejs', { task: 'lse', dir: w.dir, matrix, beta: PARAMS.betaQuery, reps: 1 })),
  }, rounds, secondsPick);
  const elements = res.raw.dbnorm[0].elements;
  const s = summarise(res, 'main');
  s.elements = elements;
  for (const c of Object.values(s.contenders)) c.nsPerElement = (c.medianSeconds / elements) * 1e9;
  return s;
}

async function searchContest(w, rounds, reps, method) {
  const outs = { dbnorm: path.join(w.dir, 'out-dbnorm'), numpy: path.join(w.dir, 'out-numpy') };
  for (const d of Object.values(outs)) fs.mkdirSync(d, { recursive: true });
  const res = await contest(`${w.name} search ${method}`, {
    dbnorm: () => nodeWorker('dbnorm', { task: 'search', dir: w.dir, method, params: PARAMS, topk: TOPK, reps, outDir: outs.dbnorm }),
    numpy: numpy.available && (() => runNumpy(['--input', w.dir, '--out', outs.numpy, '--task', 'query', '--method', method, '--repeats', String(reps), ...NUMPY_ARGS])),
  }, rounds, secondsPick);
  const flops = res.raw.dbnorm[0].flops;
  const s = summarise(res, 'main', flops / 1e9);
  s.method = method;
  s.gflop = flops / 1e9;
  s.extraPeakBytes = res.raw.dbnorm[0].memory.extraPeakBytes;
  s.topkAgreement = agreement(path.join(outs.dbnorm, `search_${method}.npy`), path.join(outs.numpy, `search_${method}.npy`));
  return s;
}

function agreement(fileA, fileB, prefix = Infinity) {
  // Fraction of queries whose top-k lists (or their first `prefix` entries) are identical (both
  // written as uint32 .npy).
  if (!fs.existsSync(fileA) || !fs.existsSync(fileB)) return null;
  const read = (f) => {
    const buf = fs.readFileSync(f);
    const hlen = buf.readUInt16LE(8);
    const header = buf.toString('latin1', 10, 10 + hlen);
    const dims = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').filter((x) => x.trim()).map(Number);
    const data = new Uint32Array(buf.buffer.slice(buf.byteOffset + 10 + hlen, buf.byteOffset + buf.length));
    return { data, rows: dims[0], cols: dims[1] };
  };
  const a = read(fileA);
  const b = read(fileB);
  if (a.rows !== b.rows || a.cols !== b.cols) return null;
  let same = 0;
  let sameTop1 = 0;
  const cols = Math.min(a.cols, prefix);
  for (let i = 0; i < a.rows; i++) {
    let eq = true;
    for (let j = 0; j < cols; j++) if (a.data[i * a.cols + j] !== b.data[i * b.cols + j]) eq = false;
    if (eq) same++;
    if (a.data[i * a.cols] === b.data[i * b.cols]) sameTop1++;
  }
  return { identicalLists: same / a.rows, identicalTop1: sameTop1 / a.rows };
}

async function e2eContest(w, rounds, withJs, reps) {
  const outs = { dbnorm: path.join(w.dir, 'out-dbnorm'), numpy: path.join(w.dir, 'out-numpy'), purejs: path.join(w.dir, 'out-purejs'), wasm: path.join(w.dir, 'out-wasm') };
  for (const d of Object.values(outs)) fs.mkdirSync(d, { recursive: true });
  const c = w.meta.captionsPerItem;
  const res = await contest(`${w.name} end-to-end`, {
    dbnorm: () => nodeWorker('dbnorm', { task: 'e2e', dir: w.dir, methods: METHODS, params: PARAMS, topk: TOPK, captionsPerItem: c, reps, outDir: outs.dbnorm }),
    numpy: numpy.available && (() => runNumpy(['--input', w.dir, '--out', outs.numpy, '--task', 'e2e', '--method', METHODS.join(','), '--repeats', String(reps), '--captions-per-item', String(c), ...NUMPY_ARGS])),
    purejs: withJs && (() => nodeWorker('purejs', { task: 'e2e', dir: w.dir, methods: METHODS, params: PARAMS, topk: TOPK, captionsPerItem: c, reps: 1, outDir: outs.purejs })),
    wasm: withJs && wasm.available && (() => wasmWorker({ task: 'e2e', dir: w.dir, methods: METHODS, params: PARAMS, topk: TOPK, captionsPerItem: c, reps: 1, outDir: outs.wasm })),
  }, rounds, (_n, out) => Object.fromEntries(Object.entries(out.methods).map(([m, v]) => [m, v.seconds])));
  const per = {};
  for (const m of METHODS) {
    per[m] = summarise(res, m);
    per[m].metrics = {
      dbnorm: res.raw.dbnorm[0].methods[m].metrics,
      numpy: res.raw.numpy?.[0]?.methods[m].metrics ?? null,
      purejs: res.raw.purejs?.[0]?.methods[m].metrics ?? null,
    };
    per[m].topkAgreement = {
      numpy: agreement(path.join(outs.dbnorm, `topk_${m}.npy`), path.join(outs.numpy, `topk_${m}.npy`)),
      purejs: agreement(path.join(outs.dbnorm, `topk_${m}.npy`), path.join(outs.purejs, `topk_${m}.npy`)),
      wasm: agreement(path.join(outs.dbnorm, `topk_${m}.npy`), path.join(outs.wasm, `topk_${m}.npy`)),
    };
  }
  return per;
}

async function identityCheck(w, methods, { scores, similarityRows }) {
  const task = { task: 'identity', dir: w.dir, methods, params: PARAMS, topk: TOPK, scores, similarityRows };
  const t1 = await nodeWorker('dbnorm', task, { RAYON_NUM_THREADS: '1' });
  const t2 = await nodeWorker('dbnorm', task, { RAYON_NUM_THREADS: String(Math.max(2, os.availableParallelism?.() ?? 2)) });
  const diffs = [];
  for (const m of methods) {
    for (const k of ['statsHash', 'topkHash', 'scoresHash']) if (t1.methods[m][k] !== t2.methods[m][k]) diffs.push(`${m}.${k}`);
  }
  if (t1.similarityHash !== t2.similarityHash) diffs.push('similarity');
  return { threads: [t1.threads, t2.threads], identical: diffs.length === 0, differences: diffs, hashes: { [t1.threads]: t1, [t2.threads]: t2 } };
}

async function workloadQuick(rounds) {
  const { dir, meta } = await prepareData('quick');
  const w = { name: 'quick', dir, meta };
  await ensureSims(dir, 'query_bank', 'gallery', 'lse_sims');
  const reps = opts.quick ? 5 : 3;
  const js = opts.js;
  return {
    data: meta,
    similarity: await similarityContest(w, rounds, js, reps),
    fit: await fitContest(w, rounds, js, reps, 'dual-dis', 'full'),
    lse: await lseContest(w, rounds, js, reps, 'lse_sims'),
    e2e: await e2eContest(w, rounds, js, reps),
    identity: await identityCheck(w, METHODS, { scores: true }),
  };
}

async function workloadCoco(rounds) {
  const { dir, meta } = await prepareData('coco');
  const w = { name: 'coco', dir, meta };
  await ensureSims(dir, 'gallery_bank', 'gallery', 'lse_sims');
  const out = { data: meta };
  out.similarity = await similarityContest(w, rounds, false, 1);
  out.fit = await fitContest(w, rounds, false, 1, 'dual-dis', 'small');
  out.lse = await lseContest(w, rounds, false, 1, 'lse_sims');
  out.search = await searchContest(w, rounds, 1, 'dual-dis');
  await quiet(120);
  const ev = await nodeWorker('dbnorm', { task: 'eventloop', dir, method: 'dual-dis', params: PARAMS });
  out.eventLoop = ev;
  out.identity = await identityCheck(w, ['dual-dis'], { scores: false, similarityRows: 2000 });
  return out;
}

async function workloadOnline() {
  const { dir, meta } = await prepareData('online');
  const bw = await bandwidthProbe(path.join(dir, 'gallery.npy'));
  const batches = [1, 8, 64];
  const reps = { 1: 300, 8: 100, 64: 30 };
  const outs = { dbnorm: path.join(dir, 'out-dbnorm'), numpy: path.join(dir, 'out-numpy') };
  for (const d of Object.values(outs)) fs.mkdirSync(d, { recursive: true });
  await quiet(120);
  const dbn = await nodeWorker('dbnorm', { task: 'online', dir, method: 'dual-dis', params: PARAMS, topk: TOPK, batches, reps, candidates: 1000, outDir: outs.dbnorm });
  let np = null;
  let agree = null;
  if (numpy.available) {
    np = await runNumpy(['--input', dir, '--out', outs.numpy, '--task', 'online', '--method', 'dual-dis', '--batches', batches.join(','),
      '--online-reps', '200', '--candidates', '1000', ...NUMPY_ARGS]);
    const f = (name) => [path.join(outs.dbnorm, `${name}.npy`), path.join(outs.numpy, `${name}.npy`)];
    agree = {
      online_search: agreement(...f('online_search')),
      online_rerank: agreement(...f('online_rerank')),
      online_rerank_top10: agreement(...f('online_rerank'), TOPK),
    };
  }
  // The probe's reading varies on a shared VM: probe again after the latency runs and keep the best.
  const bw2 = await bandwidthProbe(path.join(dir, 'gallery.npy'));
  const bandwidth = { ...bw, candidates: [...bw.candidates, ...bw2.candidates.map((c) => ({ ...c, how: `${c.how}, after` }))].sort((a, b) => b.bps - a.bps) };
  bandwidth.best = bandwidth.candidates[0] ?? null;
  bandwidth.after = { c: bw2.c, numpy: bw2.numpy };
  return { data: meta, bandwidth, dbnorm: dbn, numpy: np, agreement: agree };
}

async function workloadLarge() {
  const { dir, meta } = await prepareData('large');
  const w = { name: 'large', dir, meta };
  // numpy is skipped here: its straightforward fit and Q·Gᵀ would materialise 10k × 1M float32
  // matrices (40 GB each).
  const res = await contest('large fit dis', {
    dbnorm: () => nodeWorker('dbnorm', { task: 'fit', dir, method: 'dis', params: PARAMS, reps: 1, warmup: 'small' }),
  }, 1, secondsPick);
  const fit = summarise(res, 'main', res.raw.dbnorm[0].flops / 1e9);
  fit.memory = res.raw.dbnorm[0].memory;
  const sres = await contest('large search dis', {
    dbnorm: () => nodeWorker('dbnorm', { task: 'search', dir, method: 'dis', params: PARAMS, topk: TOPK, reps: 1 }),
  }, 1, secondsPick);
  const search = summarise(sres, 'main', sres.raw.dbnorm[0].flops / 1e9);
  search.extraPeakBytes = sres.raw.dbnorm[0].memory.extraPeakBytes;
  const bw = await bandwidthProbe(path.join(dir, 'gallery.npy'));
  return { data: meta, fit, search, bandwidth: bw, numpySkipped: 'a straightforward numpy fit / Q·Gᵀ would materialise 10k × 1M float32 matrices (40 GB each)' };
}

// ---------------------------------------------------------------------------
// Floors (issue 14; the bit-identity and memory rows are kept from issue 6)
// ---------------------------------------------------------------------------

/** The issue's floors, each a ratio of two figures measured in this run. */
function floors(r) {
  const f = [];
  const add = (name, value, threshold, pass, margin, note = '') => f.push({ name, value, threshold, pass, margin, note });
  const probe = r.probes.gemm?.chosen?.gflops;
  const cf = r.workloads.coco?.fit;
  if (cf?.contenders?.dbnorm && probe && cf.gflopEquivalent) {
    // fit time ÷ the time numpy's GEMM would take for the bank products alone
    const ideal = cf.gflopEquivalent / probe;
    const x = cf.contenders.dbnorm.medianSeconds / ideal;
    add('DualDIS coco fit time ÷ (bank-product FLOPs ÷ numpy GEMM probe)', x, 1.2, x <= 1.2, 1.2 / x, `${fmtS(cf.contenders.dbnorm.medianSeconds)} vs ${fmtS(ideal)} (${cf.gflopEquivalent.toFixed(0)} GFLOP at ${probe.toFixed(0)} GFLOP/s)`);
  }
  const cs = r.workloads.coco?.similarity?.contenders?.dbnorm;
  if (cs?.rate && probe) {
    const x = cs.rate / probe;
    add('similarity Q·Gᵀ (coco) throughput ÷ numpy GEMM probe', x, 0.95, x >= 0.95, x / 0.95, `${cs.rate.toFixed(0)} vs ${probe.toFixed(0)} GFLOP/s`);
  }
  for (const wl of ['quick', 'coco']) {
    const l = r.workloads[wl]?.lse?.contenders?.dbnorm;
    if (l?.nsPerElement != null) add(`log-sum-exp pass (${wl}), ns per element`, l.nsPerElement, 1.0, l.nsPerElement <= 1.0, 1.0 / l.nsPerElement, `${r.machine.cores} cores, AVX-512 ${r.machine.avx512 ? 'yes' : 'no'}`);
  }
  const e2e = r.workloads.quick?.e2e;
  if (e2e) {
    for (const m of METHODS) {
      const sp = e2e[m]?.speedup?.numpy;
      if (sp) add(`quick end-to-end speed-up vs numpy: ${m}`, sp.median, 2, sp.median >= 2, sp.median / 2, `per-round range ${sp.min.toFixed(2)}–${sp.max.toFixed(2)}; vs pure JS ${fmtX(e2e[m]?.speedup?.purejs?.median)} (reported, no floor)`);
    }
  }
  const on = r.workloads.online;
  if (on?.dbnorm && on.bandwidth?.best) {
    const probeMs = on.bandwidth.best.seconds * 1000;
    const p50 = on.dbnorm.search['1'].p50Ms;
    add('online single-query search p50 ÷ one read of the gallery at probe bandwidth', p50 / probeMs, 1.2, p50 / probeMs <= 1.2, 1.2 / (p50 / probeMs),
      `p50 ${p50.toFixed(2)} ms vs ${probeMs.toFixed(2)} ms (${on.bandwidth.best.how})`);
  }
  const ev = r.workloads.coco?.eventLoop;
  if (ev) add('max event-loop delay during async coco fit, ms', ev.maxDelayMs, 20, ev.maxDelayMs < 20, 20 / ev.maxDelayMs, `timer-gap max ${ev.maxTimerGapMs.toFixed(1)} ms; default options`);
  if (ev?.leakGuardOff) add("max event-loop delay during async coco fit with leakGuard: 'off', ms", ev.leakGuardOff.maxDelayMs, 20, ev.leakGuardOff.maxDelayMs < 20, 20 / ev.leakGuardOff.maxDelayMs, `timer-gap max ${ev.leakGuardOff.maxTimerGapMs.toFixed(1)} ms; informational`);
  for (const wl of ['quick', 'coco']) {
    const id = r.workloads[wl]?.identity;
    if (id) add(`bit-identical results across thread counts (${wl})`, id.identical ? 'identical' : `differs: ${id.differences.join(', ')}`, 'identical', id.identical, null, `RAYON_NUM_THREADS ${id.threads.join(' vs ')}`);
  }
  if (cf?.memory?.dbnorm?.extraPeakBytes != null) {
    const gb = cf.memory.dbnorm.extraPeakBytes / 1e9;
    add('DualDIS fit extra peak memory (coco), GB', gb, 0.5, gb < 0.5, 0.5 / gb);
  }
  return f;
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

const fmtS = (s) => (s == null ? '–' : s >= 1 ? `${s.toFixed(2)} s` : s >= 1e-3 ? `${(s * 1e3).toFixed(1)} ms` : `${(s * 1e6).toFixed(0)} µs`);
const fmtX = (x) => (x == null ? '–' : `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`);
const fmtB = (b) => (b == null ? '–' : b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(0)} MB`);
const fmtN = (x, d = 1) => (x == null ? '–' : x.toFixed(d));

function markdown(r) {
  const L = [];
  const m = r.machine;
  const v = r.versions;
  L.push(`## ${r.date}${r.label ? ` — ${r.label}` : ''} (${r.mode})`, '');
  L.push(`- Machine: ${m.cpu}${m.cpuFamilyModel ? ` (${m.cpuFamilyModel})` : ''}, ${m.cores} cores, ${fmtB(m.memoryBytes)} RAM, AVX-512 ${m.avx512 ? 'yes' : 'no'}; ${m.kernel}`);
  L.push(`- Versions: dbnorm ${v.dbnorm} (${v.commit ?? 'no git'}), node ${v.node}, ${v.rustc ?? 'rustc unknown'}, numpy ${r.numpy.version ?? '–'}, BLAS ${r.numpy.blas ?? '–'}; numpy environment: ${r.numpy.envName}${r.numpy.reason ? ` — numpy skipped: ${r.numpy.reason}` : ''}`);
  L.push(`- Load: 1-min load average ${r.load.start.map((x) => x.toFixed(2)).join(' / ')} (1/5/15 min) at the start${r.load.start[0] >= 0.5 ? ' — **above 0.5: other work was running on the machine**' : ''}; CPU used by other processes during each workload: ${Object.entries(r.load.foreignCores).map(([k, x]) => `${k} ${x == null ? '?' : x.toFixed(2)} cores`).join(', ')}; ${r.load.repeatedRounds} round(s) repeated because other processes used > ${DISTURBED_CORES} cores during them; the busiest kept round had ${fmtN(r.load.maxForeignCoresInKeptRounds, 2)} cores of other work`);
  L.push(`- numpy reference: the straightforward vectorised code of benchmark/reference.py (float32 matmuls, whole bank matrices, a float64 log-sum-exp written as one expression); "numpy, in-place LSE" is the same with the float64 steps done in place (\`--lse inplace\`).`);
  L.push(`- Method: every contender runs in its own child process on the same .npy inputs, interleaved (order rotated each round), ${r.options.rounds} round(s); times are medians of all timed runs after a warm-up; speed-ups are t(other)/t(dbnorm) per round, median over rounds (range in the JSON). β_q = ${PARAMS.betaQuery}, β_g = ${PARAMS.betaGallery}, k = ${PARAMS.k}, CSLS K = ${PARAMS.cslsK}, NNN k = ${PARAMS.nnnK}, α = ${PARAMS.nnnAlpha}; cosine; top-${TOPK}.`);
  L.push('');
  // Probes
  const g = r.probes.gemm;
  L.push('**Machine limits**', '', '| probe | value |', '|---|---|');
  if (g?.chosen) {
    L.push(`| numpy GEMM ${g.chosen.m}×${g.chosen.n}×${g.chosen.d} (chosen env) | ${fmtN(g.chosen.gflops, 0)} GFLOP/s (${blasOf(g.chosen)}) |`);
    if (g.inherited && g.clean) L.push(`| numpy GEMM, inherited env / OPENBLAS vars unset | ${fmtN(g.inherited.gflops, 0)} (${g.inherited.blas?.[0]?.architecture}) / ${fmtN(g.clean.gflops, 0)} (${g.clean.blas?.[0]?.architecture}) GFLOP/s |`);
  }
  for (const [wl, bw] of Object.entries(r.probes.bandwidth)) {
    if (!bw?.best) continue;
    L.push(`| memory bandwidth, reading the ${wl} gallery (${fmtB(bw.bytes)}) | **${fmtN(bw.best.bps / 1e9)} GB/s** (${bw.best.how}; ${fmtS(bw.best.seconds)} per read); others: ${bw.candidates.slice(1).map((c) => `${c.how} ${fmtN(c.bps / 1e9)}`).join(', ')} |`);
  }
  L.push('');
  const gemm = g?.chosen?.gflops;
  const row = (label, s, rate, unit) => {
    const c = s.contenders;
    const cell = (n) => (c[n] ? `${fmtS(c[n].medianSeconds)}${rate && c[n].rate ? ` (${fmtN(c[n].rate, rate === 'g' ? 1 : 0)} ${unit})` : ''}` : '–');
    return `| ${label} | ${cell('dbnorm')} | ${cell('numpy')} | ${cell('purejs')} | ${fmtX(s.speedup.numpy?.median)} | ${fmtX(s.speedup.purejs?.median)} |`;
  };
  for (const [wl, w] of Object.entries(r.workloads)) {
    if (!w || w.error) {
      if (w?.error) L.push(`**${wl}**: failed — ${w.error}`, '');
      continue;
    }
    const sh = w.data.shape;
    L.push(`**${wl}** — gallery ${sh.gallery}, query bank ${sh.queryBank}, gallery bank ${sh.galleryBank}, queries ${sh.queries ?? sh.gallery * sh.captionsPerItem}, d ${sh.dim}; ${w.data.hubs} planted hubs`, '');
    if (wl === 'online') {
      const d = w.dbnorm;
      const n = w.numpy;
      const bw = w.bandwidth.best;
      L.push(`| latency (gallery ${d.gallery}, k ${TOPK}) | dbnorm search p50 / p95 | dbnorm searchSync p50 / p95 | numpy p50 / p95 | dbnorm rerank 1000 candidates p50 / p95 | numpy rerank 1000 candidates p50 / p95 |`, '|---|---|---|---|---|---|');
      for (const b of ['1', '8', '64']) {
        const pp = (x) => (x ? `${fmtN(x.p50Ms ?? x.p50_ms, 2)} / ${fmtN(x.p95Ms ?? x.p95_ms, 2)} ms` : '–');
        L.push(`| batch ${b} | ${pp(d.search[b])} | ${pp(d.searchSync[b])} | ${pp(n?.online?.[b])} | ${d.rerank ? pp(d.rerank[b]) : 'not available'} | ${pp(n?.rerank?.[b])} |`);
      }
      L.push('');
      if (bw) L.push(`Reading the gallery once takes ${fmtS(bw.seconds)} at the probe's ${fmtN(bw.bps / 1e9)} GB/s; dbnorm's single-query search p50 is ${fmtN(d.search['1'].p50Ms / (bw.seconds * 1e3), 2)}× that (sync: ${fmtN(d.searchSync['1'].p50Ms / (bw.seconds * 1e3), 2)}×), i.e. it streams the gallery at ${fmtN(w.data.shape.gallery * w.data.shape.dim * 4 / (d.search['1'].p50Ms / 1e3) / 1e9)} GB/s. dbnorm fit (DualDIS, banks ${sh.queryBank} + ${sh.galleryBank}) took ${fmtS(d.fitSeconds)}.${d.rerankMissing ? ` Rerank: ${d.rerankMissing}.` : ''}${w.agreement ? ` Results on 8 queries identical to numpy's: search ${fmtN(100 * (w.agreement.online_search?.identicalLists ?? NaN), 0)}% of lists, rerank ${fmtN(100 * (w.agreement.online_rerank_top10?.identicalLists ?? NaN), 0)}% of top-${TOPK} lists and ${fmtN(100 * (w.agreement.online_rerank?.identicalLists ?? NaN), 0)}% of the full 1000-candidate orders (near-equal scores may swap: the two sides sum the dot products in different orders).` : ''}`, '');
      continue;
    }
    if (wl === 'large') {
      L.push(`| figure | dbnorm |`, '|---|---|');
      L.push(`| DIS fit (query bank ${sh.queryBank} × gallery ${sh.gallery}) | ${fmtS(w.fit.contenders.dbnorm.medianSeconds)} (${fmtN(w.fit.contenders.dbnorm.rate, 0)} GFLOP/s${gemm ? `, ${fmtN((100 * w.fit.contenders.dbnorm.rate) / gemm, 0)}% of numpy GEMM` : ''}); extra peak ${fmtB(w.fit.memory.extraPeakBytes)} |`);
      L.push(`| DIS search, ${sh.queries} queries, top-${TOPK} | ${fmtS(w.search.contenders.dbnorm.medianSeconds)} (${fmtN(w.search.contenders.dbnorm.rate, 0)} GFLOP/s); extra peak ${fmtB(w.search.extraPeakBytes)} |`, '');
      L.push(`numpy: skipped — ${w.numpySkipped}.`, '');
      continue;
    }
    L.push('| figure | dbnorm | numpy | pure JS | dbnorm speed-up vs numpy | vs pure JS |', '|---|---|---|---|---|---|');
    L.push(row(`similarity Q·Gᵀ (${fmtN(w.similarity.gflop, 1)} GFLOP)`, w.similarity, 'g', 'GFLOP/s'));
    L.push(row(`DualDIS fit (${fmtN(w.fit.gflopEquivalent, 0)} GFLOP of bank products)`, w.fit, 'g', 'GFLOP/s'));
    const fi = w.fit.contenders['numpy-inplace'];
    if (fi) L.push(`| DualDIS fit, numpy with an in-place LSE | ${fmtS(w.fit.contenders.dbnorm.medianSeconds)} | ${fmtS(fi.medianSeconds)} (${fmtN(fi.rate, 1)} GFLOP/s) | | ${fmtX(w.fit.speedup['numpy-inplace']?.median)} | |`);
    const lse = w.lse;
    const lc = (n) => (lse.contenders[n] ? `${fmtS(lse.contenders[n].medianSeconds)} (${fmtN(lse.contenders[n].nsPerElement, 2)} ns/elt)` : '–');
    L.push(`| log-sum-exp pass over a ${fmtN(lse.elements / 1e6, 0)}M-element bank matrix | ${lc('dbnorm')} | ${lc('numpy')} | ${lc('purejs')} | ${fmtX(lse.speedup.numpy?.median)} | ${fmtX(lse.speedup.purejs?.median)} |`);
    if (lse.contenders['numpy-inplace']) L.push(`| log-sum-exp pass, numpy with an in-place LSE | ${lc('dbnorm')} | ${lc('numpy-inplace')} | | ${fmtX(lse.speedup['numpy-inplace']?.median)} | |`);
    if (w.search) L.push(row(`DualDIS search, all ${w.data.shape.gallery * w.data.shape.captionsPerItem} queries, top-${TOPK} (after fit; ${fmtN(w.search.gflop, 0)} GFLOP)`, w.search, 'g', 'GFLOP/s'));
    const fm = w.fit.memory;
    L.push(`| DualDIS fit: extra peak RSS beyond inputs (inputs ${fmtB(w.fit.inputBytes)}) | ${fmtB(fm.dbnorm?.extraPeakBytes)} | ${fmtB(fm.numpy?.extraPeakBytes)}${fm['numpy-inplace'] ? ` (in-place LSE: ${fmtB(fm['numpy-inplace'].extraPeakBytes)})` : ''} | ${fmtB(fm.purejs?.extraPeakBytes)} | | |`);
    if (w.e2e) {
      for (const meth of METHODS) L.push(row(`end-to-end ${meth} (fit + scores + top-${TOPK} + evaluate)`, w.e2e[meth]));
    }
    L.push('');
    if (gemm) {
      const d = w.similarity.contenders.dbnorm.rate;
      const f = w.fit.contenders.dbnorm.rate;
      L.push(`As fractions of numpy's GEMM (${fmtN(gemm, 0)} GFLOP/s): dbnorm similarity ${fmtN((100 * d) / gemm, 0)}%, dbnorm DualDIS fit (bank products + fused LSE, top-k, activation sets) ${fmtN((100 * f) / gemm, 0)}%${w.fit.contenders.numpy ? `, numpy fit ${fmtN((100 * w.fit.contenders.numpy.rate) / gemm, 0)}%` : ''}.`);
    }
    if (w.e2e) {
      const ms = METHODS.map((meth) => {
        const e = w.e2e[meth];
        const a = e.topkAgreement;
        return `${meth} R@1 ${fmtN(e.metrics.dbnorm.R1)}${a.numpy ? `, top-${TOPK} lists identical to numpy ${fmtN(100 * a.numpy.identicalLists)}%` : ''}${a.purejs ? `, to pure JS ${fmtN(100 * a.purejs.identicalLists)}%` : ''}`;
      });
      L.push(`Results agree: ${ms.join('; ')}.`);
    }
    if (w.search?.topkAgreement) L.push(`DualDIS search: top-${TOPK} lists identical to numpy's for ${fmtN(100 * w.search.topkAgreement.identicalLists)}% of queries (top-1 ${fmtN(100 * w.search.topkAgreement.identicalTop1)}%).`);
    if (w.eventLoop) {
      const e = w.eventLoop;
      const off = e.leakGuardOff;
      L.push(`Event loop during the async DualDIS fit (${fmtS(e.seconds)}, default options): max delay ${fmtN(e.maxDelayMs, 2)} ms, p99 ${fmtN(e.p99DelayMs, 2)} ms (largest gap between 1 ms timer ticks ${fmtN(e.maxTimerGapMs, 1)} ms)${off ? `; with \`leakGuard: 'off'\` (no synchronous gallery/gallery-bank overlap check after the fit): max ${fmtN(off.maxDelayMs, 2)} ms, p99 ${fmtN(off.p99DelayMs, 2)} ms` : ''}.`);
    }
    if (w.identity) L.push(`Thread counts (RAYON_NUM_THREADS ${w.identity.threads.join(' vs ')}): ${w.identity.identical ? 'bit-identical fitted statistics, top-k lists' + (wl === 'quick' ? ', full score matrices' : '') + ' and similarities' : `**differences in ${w.identity.differences.join(', ')}**`}.`);
    L.push('');
  }
  const q = r.workloads.quick;
  if (q && !q.error && q.fit?.contenders?.wasm) {
    L.push('**dbnorm native vs dbnorm WebAssembly (the fallback, `NAPI_RS_FORCE_WASI=1`) vs pure JS** — quick workload, medians; ratios are t(other) / t(native) per round', '');
    L.push('| task | native | WASM | pure JS | WASM / native | pure JS / native | pure JS / WASM |', '|---|---|---|---|---|---|---|');
    const tri = (label, s) => {
      const c = s.contenders;
      const t = (n) => (c[n] ? fmtS(c[n].medianSeconds) : '–');
      const jw = c.purejs && c.wasm ? c.purejs.medianSeconds / c.wasm.medianSeconds : null;
      L.push(`| ${label} | ${t('dbnorm')} | ${t('wasm')} | ${t('purejs')} | ${fmtX(s.speedup.wasm?.median)} | ${fmtX(s.speedup.purejs?.median)} | ${fmtX(jw)} |`);
    };
    tri('similarity', q.similarity);
    tri('DualDIS fit', q.fit);
    for (const m of Object.keys(q.e2e ?? {})) if (q.e2e[m].contenders?.wasm) tri(`end-to-end ${m}`, q.e2e[m]);
    const agree = Object.entries(q.e2e ?? {}).map(([m, e]) => (e.topkAgreement?.wasm ? `${m} ${fmtN(100 * e.topkAgreement.wasm.identicalLists, 1)}%` : null)).filter(Boolean);
    if (agree.length) L.push('', `Top-${TOPK} lists of the WASM build identical to the native build's: ${agree.join(', ')}.`);
    L.push('');
  } else if (r.wasm && !r.wasm.available) {
    L.push(`WASM contender skipped: ${r.wasm.reason}`, '');
  }
  if (r.floors.length) L.push('**Floors (issue 14)**', '', '| floor | measured | threshold | result | margin |', '|---|---|---|---|---|');
  for (const f of r.floors) {
    const val = typeof f.value === 'number' ? (f.name.includes('GB') || f.name.includes('ms') ? fmtN(f.value, 2) : fmtX(f.value)) : f.value;
    const thr = typeof f.threshold === 'number' ? (f.name.includes('GB') || f.name.includes('ms') ? `< ${f.threshold}` : f.name.includes('p50') ? `≤ ${f.threshold}×` : `≥ ${f.threshold}×`) : f.threshold;
    L.push(`| ${f.name} | ${val}${f.note ? ` (${f.note})` : ''} | ${thr} | ${f.pass ? 'pass' : '**FAIL**'} | ${f.margin == null ? '' : fmtX(f.margin)} |`);
  }
  L.push('');
  return L.join('\n');
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

async function main() {
  const started = new Date();
  const date = started.toISOString().slice(0, 10);
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.mjs'))) throw new Error('dist/index.mjs is missing: run `npm run build` first');
  fs.mkdirSync(TMP, { recursive: true });
  const load0 = opts.waitIdle > 0 ? await waitIdle(opts.waitIdle) : os.loadavg();
  log(`workloads: ${opts.workloads.join(', ')}; rounds ${opts.rounds}; load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);
  setupNumpy();
  if (!numpy.available) log(`numpy contender skipped: ${numpy.reason}`);
  if (!wasm.available) log(`WASM contender skipped: ${wasm.reason}`);
  const r = {
    date: started.toISOString(),
    label: opts.label,
    mode: opts.quick ? '--quick' : opts.workloads.join(', '),
    machine: machineInfo(),
    versions: versions(),
    options: { rounds: opts.rounds, workloads: opts.workloads, seed: opts.seed, params: PARAMS, topk: TOPK },
    numpy: { available: numpy.available, reason: numpy.reason },
    wasm,
    load: { start: load0, foreignCores: {} },
    probes: { gemm: null, bandwidth: {} },
    workloads: {},
  };
  const cBuild = buildBandwidthProbe(TMP);
  if (cBuild.error) log(cBuild.error);
  r.probes.bandwidthProbeBuild = cBuild;
  if (numpy.available) {
    const m = 5000;
    const chosen = await chooseNumpyEnv(['--probe-gemm', '--m', String(m), '--n', String(m), '--d', '512', '--repeats', '7']);
    r.probes.gemm = { chosen, inherited: numpy.probes.gemmInherited, clean: numpy.probes.gemmClean };
    r.numpy = { ...r.numpy, version: chosen.numpy_version, python: chosen.python_version, blas: blasOf(chosen), envName: numpy.envName };
    log(`numpy ${chosen.numpy_version}, ${blasOf(chosen)}: GEMM ${chosen.gflops.toFixed(0)} GFLOP/s (${numpy.envName})`);
  }
  const run = { quick: () => workloadQuick(opts.rounds), coco: () => workloadCoco(opts.rounds), online: () => workloadOnline(), large: () => workloadLarge() };
  for (const wl of opts.workloads) {
    if (opts.waitIdle > 0) await quiet(opts.waitIdle);
    const a = cpuSample();
    const t0 = performance.now();
    try {
      r.workloads[wl] = await run[wl]();
    } catch (e) {
      log(`${wl} failed: ${e.stack ?? e}`);
      r.workloads[wl] = { error: String(e.message ?? e).slice(0, 2000) };
    }
    r.load.foreignCores[wl] = foreignCores(a, cpuSample());
    log(`${wl}: ${((performance.now() - t0) / 1000).toFixed(0)} s, other processes used ${r.load.foreignCores[wl]?.toFixed(2) ?? '?'} cores on average`);
    if (r.workloads[wl]?.bandwidth) r.probes.bandwidth[wl] = r.workloads[wl].bandwidth;
  }
  if (!r.probes.bandwidth.online && !r.probes.bandwidth.large) {
    // No large gallery in this run: probe a 100k × 512 array (the online gallery's size) instead.
    const dir = path.join(TMP, 'bandwidth');
    const f = path.join(dir, 'gallery.npy');
    if (!fs.existsSync(f)) {
      const { writeNpy } = await import('./lib/data.mjs');
      const a = new Float32Array(100000 * 512);
      for (let i = 0; i < a.length; i++) a[i] = (i % 1024) / 1024;
      fs.mkdirSync(dir, { recursive: true });
      writeNpy(f, a, [100000, 512]);
    }
    r.probes.bandwidth['100k×512 array'] = await bandwidthProbe(path.join(dir, 'gallery.npy'));
  }
  r.load.end = os.loadavg();
  r.load.repeatedRounds = DISTURB.repeated;
  r.load.maxForeignCoresInKeptRounds = DISTURB.maxForeignKept;
  r.floors = floors(r);
  r.seconds = (Date.now() - started.getTime()) / 1000;
  const md = markdown(r);
  console.log(md);
  if (opts.write) {
    const resDir = path.join(HERE, 'results');
    fs.mkdirSync(resDir, { recursive: true });
    let file = path.join(resDir, `${date}.json`);
    for (let i = 2; fs.existsSync(file); i++) file = path.join(resDir, `${date}-${i}.json`);
    fs.writeFileSync(file, JSON.stringify(r, null, 1) + '\n');
    const results = path.join(HERE, 'RESULTS.md');
    if (!fs.existsSync(results)) fs.writeFileSync(results, '# dbnorm benchmark results\n\nEach section is one run of `npm run bench` (appended by benchmark/run.mjs); raw numbers are in benchmark/results/.\n\n');
    fs.appendFileSync(results, md + `\nRaw numbers: benchmark/results/${path.basename(file)}; total ${r.seconds.toFixed(0)} s.\n\n`);
    log(`wrote ${path.relative(ROOT, file)} and appended to benchmark/RESULTS.md (${r.seconds.toFixed(0)} s)`);
  }
  const failed = r.floors.filter((f) => !f.pass);
  log(`floors: ${r.floors.length - failed.length} pass, ${failed.length} fail${failed.length ? ': ' + failed.map((f) => f.name).join('; ') : ''}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
