#!/usr/bin/env node
// `npm run test:install`: installs dbnorm the way a user meets it, from a registry, on a machine
// without Rust, and checks that it works. Needs the tarballs of `npm run pack:all` in packages/.
//
// 1. starts a local verdaccio (tools/packaging/registry/, installed on first use) on 127.0.0.1, with the
//    configured npm registry as uplink for third-party dependencies, and publishes every tarball to it;
// 2. in a fresh temp dir, with no cargo/rustc on PATH, `npm install dbnorm` from it and runs
//    packaging/smoke.cjs (fit + search + evaluate on a seeded set): the results must equal the in-repo
//    build's exactly (same kernels, same CPU);
// 3. the same with NAPI_RS_FORCE_WASI=1: the WebAssembly build must load, pick the same top-k lists and
//    metrics, and its scores must agree within WASI_SCORE_BOUND (different kernels: no AVX in WASM, so
//    float32 sums run in another order);
// 4. checks every native binary's ELF header (machine, class), that it is stripped, and for glibc
//    builds that no symbol needs a glibc newer than the baseline; with `npm install --cpu=arm64` it
//    installs the arm64 package and, when qemu-user and an arm64 Node are at hand
//    (tools/packaging/arm64-node.sh), runs the smoke test under qemu and compares it with the x64 results;
// 5. stops the registry (and checks its port is closed) and deletes the temp dir.
// Prints one line per check and "N passed, N failed"; exits 1 on any failure.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { GLIBC_BASELINE, TARGETS, binaryFile, packageName } from './targets.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PACKAGES = path.join(ROOT, 'packages');
const REGISTRY_DIR = path.join(ROOT, 'tools', 'packaging', 'registry');
const VERSION = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
/** Largest |WASM score − native score| accepted (scores are O(1) to O(10) log-domain values). */
const WASI_SCORE_BOUND = 1e-5;

let passed = 0;
let failed = 0;
const check = (name, ok, detail = '') => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` — ${detail}` : ''}`);
  return ok;
};
const info = (s) => console.log(`     ${s}`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-install-'));
let registry = null;

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function portOpen(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => (c.destroy(), resolve(true)));
    c.on('error', () => resolve(false));
  });
}

async function startRegistry() {
  const bin = path.join(REGISTRY_DIR, 'node_modules', '.bin', 'verdaccio');
  if (!fs.existsSync(bin)) {
    info('installing verdaccio into tools/packaging/registry/ (npm ci)');
    execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: REGISTRY_DIR, stdio: 'inherit' });
  }
  const uplink = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).trim() || 'https://registry.npmjs.org/';
  const port = await freePort();
  const dir = path.join(tmp, 'registry');
  fs.mkdirSync(dir);
  const own = (name) => `  '${name}':\n    access: $all\n    publish: $authenticated\n`;
  fs.writeFileSync(
    path.join(dir, 'config.yaml'),
    [
      `storage: ${path.join(dir, 'storage')}`,
      'auth:',
      '  htpasswd:',
      `    file: ${path.join(dir, 'htpasswd')}`,
      '    max_users: 10',
      'uplinks:',
      '  upstream:',
      `    url: ${uplink}`,
      '    timeout: 60s',
      'packages:',
      // dbnorm and its platform packages come only from here (never proxied)
      own('dbnorm').trimEnd(),
      own('dbnorm-*').trimEnd(),
      "  '**':",
      '    access: $all',
      '    proxy: upstream',
      'log: { type: stdout, format: pretty, level: warn }',
      '',
    ].join('\n'),
  );
  const child = spawn(bin, ['--config', path.join(dir, 'config.yaml'), '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  registry = { child, port, url: `http://127.0.0.1:${port}/`, output: () => output };
  for (let i = 0; i < 120; i++) {
    try {
      const r = await fetch(`${registry.url}-/ping`);
      if (r.ok) return registry;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`verdaccio did not start:\n${output}`);
}

async function stopRegistry() {
  if (!registry) return;
  const { child, port } = registry;
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
  registry = null;
  check('registry stopped, its port closed', !(await portOpen(port)), `pid ${child.pid}, port ${port}`);
}

/** A user for publishing; returns the path of an npmrc pointing at the local registry. */
async function npmrc() {
  const r = await fetch(`${registry.url}-/user/org.couchdb.user:ci`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'ci', password: 'ci-password-123', type: 'user', roles: [], date: new Date().toISOString() }),
  });
  const body = await r.json();
  if (!body.token) throw new Error(`could not create a registry user: ${JSON.stringify(body)}`);
  const f = path.join(tmp, 'npmrc');
  const host = registry.url.replace(/^http:/, '');
  fs.writeFileSync(f, `registry=${registry.url}\n${host}:_authToken=${body.token}\nfund=false\naudit=false\nupdate-notifier=false\n`);
  return f;
}

/** The environment of a machine without Rust: PATH without any directory holding cargo or rustc. */
function envWithoutRust(extra = {}) {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter((d) => d && !['cargo', 'rustc', 'rustup'].some((b) => fs.existsSync(path.join(d, b))));
  const env = { ...process.env, PATH: dirs.join(path.delimiter), CARGO_HOME: path.join(tmp, 'no-cargo'), RUSTUP_HOME: path.join(tmp, 'no-rustup'), ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
  return env;
}

function npm(args, cwd, env, userconfig) {
  const r = spawnSync('npm', [...args, '--userconfig', userconfig, '--cache', path.join(tmp, 'npm-cache'), '--loglevel=error'], { cwd, env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function smoke(node, cwd, env, prefix = []) {
  const r = spawnSync(prefix.length ? prefix[0] : node, [...prefix.slice(1), ...(prefix.length ? [node] : []), path.join(cwd, 'smoke.cjs')], { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`smoke test failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Compares two smoke outputs: identical top-k lists and metrics; returns the largest score difference. */
function compare(a, b) {
  let maxDiff = 0;
  const problems = [];
  for (const m of Object.keys(a.methods)) {
    const x = a.methods[m];
    const y = b.methods[m];
    if (!y) {
      problems.push(`${m} missing`);
      continue;
    }
    if (JSON.stringify(x.indices) !== JSON.stringify(y.indices)) problems.push(`${m}: top-k lists differ`);
    if (JSON.stringify(x.metrics) !== JSON.stringify(y.metrics)) problems.push(`${m}: metrics differ (${JSON.stringify(x.metrics)} vs ${JSON.stringify(y.metrics)})`);
    for (let i = 0; i < x.scores.length; i++) maxDiff = Math.max(maxDiff, Math.abs(x.scores[i] - y.scores[i]));
  }
  return { maxDiff, problems };
}

/** ELF facts from readelf: machine, class, NEEDED libraries, stripped, highest GLIBC_x.y symbol version. */
function elf(file) {
  const h = execFileSync('readelf', ['-h', file], { encoding: 'utf8' });
  const d = execFileSync('readelf', ['-d', file], { encoding: 'utf8' });
  const s = execFileSync('readelf', ['-S', '-W', file], { encoding: 'utf8' });
  const v = execFileSync('readelf', ['-V', '-W', file], { encoding: 'utf8' });
  const glibc = [...v.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)]);
  glibc.sort((p, q) => p[0] - q[0] || p[1] - q[1] || p[2] - q[2]);
  const top = glibc.at(-1);
  return {
    machine: /Machine:\s+(.*)/.exec(h)?.[1].trim(),
    class: /Class:\s+(\S+)/.exec(h)?.[1],
    needed: [...d.matchAll(/\(NEEDED\)\s+Shared library: \[(.*?)\]/g)].map((m) => m[1]),
    stripped: !/\s\.symtab\s/.test(s) && !/\s\.debug_info\s/.test(s),
    maxGlibc: top ? top.slice(0, top[2] ? 3 : 2).join('.') : null,
  };
}
const versionLE = (a, b) => {
  const p = a.split('.').map(Number);
  const q = b.split('.').map(Number);
  for (let i = 0; i < Math.max(p.length, q.length); i++) if ((p[i] ?? 0) !== (q[i] ?? 0)) return (p[i] ?? 0) < (q[i] ?? 0);
  return true;
};

function checkBinaries() {
  for (const t of TARGETS) {
    const tgz = path.join(PACKAGES, `${packageName(t)}-${VERSION}.tgz`);
    const dir = path.join(tmp, 'unpacked', t.abi);
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('tar', ['-xzf', tgz, '-C', dir]);
    const file = path.join(dir, 'package', binaryFile(t));
    const size = fs.statSync(file).size;
    if (t.abi === 'wasm32-wasi') {
      const magic = fs.readFileSync(file).subarray(0, 4);
      check(`${t.abi}: WebAssembly module`, magic.equals(Buffer.from([0, 0x61, 0x73, 0x6d])), `${(size / 1e6).toFixed(2)} MB`);
      continue;
    }
    const e = elf(file);
    const wantMachine = t.machine === 'aarch64' ? 'AArch64' : 'Advanced Micro Devices X86-64';
    check(`${t.abi}: ELF ${e.class} ${e.machine}`, e.class === 'ELF64' && e.machine === wantMachine, `${(size / 1e6).toFixed(2)} MB`);
    check(`${t.abi}: stripped (no .symtab, no debug info)`, e.stripped);
    if (t.abi.endsWith('-gnu')) {
      check(`${t.abi}: highest GLIBC symbol version ≤ ${GLIBC_BASELINE}`, e.maxGlibc !== null && versionLE(e.maxGlibc, GLIBC_BASELINE), `highest GLIBC_${e.maxGlibc}; needs ${e.needed.join(', ')}`);
    } else {
      check(`${t.abi}: links musl, not glibc`, e.maxGlibc === null && !e.needed.includes('libc.so.6') && e.needed.some((n) => /^libc\.(musl-.*\.so\.1|so)$/.test(n)), `needs ${e.needed.join(', ')}`);
    }
  }
}

/** An arm64 Node under qemu, when packaging/arm64-node.sh has prepared one (target/arm64-node). */
function arm64Runner() {
  const qemu = ['qemu-aarch64-static', 'qemu-aarch64'].find((q) => spawnSync('sh', ['-c', `command -v ${q}`]).status === 0);
  const node = path.join(ROOT, 'target', 'arm64-node', 'node', 'bin', 'node');
  const sysroot = path.join(ROOT, 'target', 'arm64-node', 'sysroot');
  if (!qemu) return { reason: 'qemu-user is not installed (Debian: qemu-user-static)' };
  if (!fs.existsSync(node) || !fs.existsSync(sysroot)) return { reason: 'no arm64 Node prepared (run tools/packaging/arm64-node.sh)' };
  return { prefix: [qemu, '-L', sysroot], node };
}

async function main() {
  const missing = [`dbnorm-${VERSION}.tgz`, ...TARGETS.map((t) => `${packageName(t)}-${VERSION}.tgz`)].filter((f) => !fs.existsSync(path.join(PACKAGES, f)));
  if (missing.length) throw new Error(`missing tarballs in packages/: ${missing.join(', ')} — run \`npm run pack:all\` first`);

  checkBinaries();

  await startRegistry();
  info(`verdaccio on ${registry.url} (pid ${registry.child.pid})`);
  const rc = await npmrc();
  const env = envWithoutRust();
  check('no cargo on the install PATH', spawnSync('sh', ['-c', 'command -v cargo || command -v rustc'], { env }).status !== 0);
  for (const f of fs.readdirSync(PACKAGES).filter((f) => f.endsWith(`-${VERSION}.tgz`))) {
    npm(['publish', path.join(PACKAGES, f), '--registry', registry.url, '--ignore-scripts'], tmp, env, rc);
  }
  const published = JSON.parse(npm(['view', `dbnorm@${VERSION}`, 'optionalDependencies', '--json'], tmp, env, rc));
  check('dbnorm published with its optional platform packages at the same version', TARGETS.every((t) => published[packageName(t)] === VERSION), JSON.stringify(published));

  // --- the host (linux x64 glibc) install -----------------------------------------------------
  const app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
  fs.copyFileSync(path.join(ROOT, 'tools', 'packaging', 'smoke.cjs'), path.join(app, 'smoke.cjs'));
  npm(['install', `dbnorm@${VERSION}`], app, env, rc);
  const nm = path.join(app, 'node_modules');
  check('npm install dbnorm: native package for this machine installed', fs.existsSync(path.join(nm, 'dbnorm-linux-x64-gnu', 'dbnorm.linux-x64-gnu.node')));
  check('npm install dbnorm: WebAssembly fallback installed', fs.existsSync(path.join(nm, 'dbnorm-wasm32-wasi', 'dbnorm.wasm32-wasi.wasm')));
  check('npm install dbnorm: other platforms skipped', ['linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl'].every((a) => !fs.existsSync(path.join(nm, `dbnorm-${a}`))));
  check('installed dbnorm ships no source build of its own', !fs.readdirSync(path.join(nm, 'dbnorm', 'ts', 'native')).some((f) => f.endsWith('.node') || f.endsWith('.wasm')));

  // smoke.cjs resolves 'dbnorm' from its cwd; for the reference, point it at the checkout
  const refRun = spawnSync(process.execPath, [path.join(ROOT, 'tools', 'packaging', 'smoke.cjs'), ROOT], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (refRun.status !== 0) throw new Error(`reference smoke run failed: ${refRun.stderr}`);
  const ref = JSON.parse(refRun.stdout);
  check('in-repo reference run used the native build', ref.backend === 'native');

  const native = smoke(process.execPath, app, env);
  check('installed: native build loaded', native.backend === 'native');
  const n = compare(ref, native);
  check('installed native results equal the in-repo build (bit-identical scores, same lists and metrics)', n.problems.length === 0 && n.maxDiff === 0, n.problems.join('; ') || `max |Δscore| ${n.maxDiff}`);

  const wasi = smoke(process.execPath, app, envWithoutRust({ NAPI_RS_FORCE_WASI: '1' }));
  check('installed, NAPI_RS_FORCE_WASI=1: WebAssembly build loaded', wasi.backend === 'wasm32-wasi', `backend ${wasi.backend}`);
  const w = compare(ref, wasi);
  check(`WASI results: same top-k lists and metrics, scores within ${WASI_SCORE_BOUND}`, w.problems.length === 0 && w.maxDiff <= WASI_SCORE_BOUND, `${w.problems.join('; ') || 'lists and metrics identical'}; max |Δscore| ${w.maxDiff.toExponential(2)}${w.maxDiff === 0 ? ' (bit-identical)' : ''}`);

  // no native package fits: the loader falls back to WebAssembly by itself
  const fb = path.join(tmp, 'fallback');
  fs.cpSync(app, fb, { recursive: true });
  fs.rmSync(path.join(fb, 'node_modules', 'dbnorm-linux-x64-gnu'), { recursive: true });
  const auto = smoke(process.execPath, fb, env);
  check('without a fitting native package the WebAssembly build is chosen automatically', auto.backend === 'wasm32-wasi' && compare(wasi, auto).maxDiff === 0);
  // and nothing at all: the coded error
  fs.rmSync(path.join(fb, 'node_modules', 'dbnorm-wasm32-wasi'), { recursive: true });
  const none = spawnSync(process.execPath, ['-e', "try { require('dbnorm') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }"], { cwd: fb, env, encoding: 'utf8' });
  const err = JSON.parse(none.stdout || '{}');
  check(
    'no binding at all: ERR_NO_BINDING naming platform, libc, packages tried and the fix',
    err.code === 'ERR_NO_BINDING' && /linux x64 glibc \d/.test(err.message) && /dbnorm-linux-x64-gnu/.test(err.message) && /dbnorm-wasm32-wasi/.test(err.message) && /optional dependencies/.test(err.message) && /cargo/.test(err.message),
    err.message?.slice(0, 160),
  );

  // --- arm64 ----------------------------------------------------------------------------------
  const arm = path.join(tmp, 'app-arm64');
  fs.mkdirSync(arm);
  fs.writeFileSync(path.join(arm, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
  fs.copyFileSync(path.join(ROOT, 'tools', 'packaging', 'smoke.cjs'), path.join(arm, 'smoke.cjs'));
  npm(['install', `dbnorm@${VERSION}`, '--cpu=arm64', '--os=linux', '--libc=glibc'], arm, env, rc);
  check('npm install --cpu=arm64: dbnorm-linux-arm64-gnu installed', fs.existsSync(path.join(arm, 'node_modules', 'dbnorm-linux-arm64-gnu', 'dbnorm.linux-arm64-gnu.node')));
  const runner = arm64Runner();
  if (runner.prefix) {
    const a = smoke(runner.node, arm, env, runner.prefix);
    check('arm64 under qemu: native build loaded', a.backend === 'native' && a.arch === 'arm64', `node ${a.node} ${a.arch}`);
    const c = compare(ref, a);
    check(`arm64 under qemu: same top-k lists and metrics as x64, scores within ${WASI_SCORE_BOUND}`, c.problems.length === 0 && c.maxDiff <= WASI_SCORE_BOUND, `${c.problems.join('; ') || 'lists and metrics identical'}; max |Δscore| ${c.maxDiff.toExponential(2)}`);
  } else {
    info(`arm64 smoke not run: ${runner.reason}; the arm64 binaries were checked by ELF header above`);
  }
}

let status = 0;
try {
  await main();
} catch (e) {
  check('test:install ran to the end', false, `${e.message}${e.cause ? ` (${e.cause.message ?? e.cause})` : ''}`);
  if (registry) console.log(registry.output().slice(-2000));
} finally {
  await stopRegistry();
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
if (failed) status = 1;
process.exit(status);
