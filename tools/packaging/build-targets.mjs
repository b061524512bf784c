#!/usr/bin/env node
// Builds the addon for every published target (tools/packaging/targets.mjs) and places each binary in its
// npm/<target>/ package, stripped. Usage: node tools/packaging/build-targets.mjs [abi ...]
//
// Native Linux targets go through `napi build -x` (cargo-zigbuild + zig as the linker), which is what
// lets one x86-64 machine link arm64 and musl binaries and pin the glibc baseline. zig and
// cargo-zigbuild come from PyPI into `.venv-cross/` (git-ignored); see `ensureCrossTools`.
// The WASI build needs no zig: rustc links it with its bundled wasm-ld against emnapi's archives.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { TARGETS, binaryFile } from './targets.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const VENV = path.join(ROOT, '.venv-cross');
// Versions that install and work together here (cargo-zigbuild splits `.2.17` off the triple for zig).
const PYPI_PINS = ['ziglang==0.17.0', 'cargo-zigbuild==0.24.0'];

const log = (s) => process.stderr.write(`[build-targets] ${s}\n`);

/** Makes `zig` (via python-zig) and `cargo-zigbuild` available; returns the PATH to use. */
export function ensureCrossTools() {
  const bin = path.join(VENV, 'bin');
  if (!fs.existsSync(path.join(bin, 'cargo-zigbuild'))) {
    log(`installing ${PYPI_PINS.join(' ')} into .venv-cross/`);
    execFileSync('python3', ['-m', 'venv', VENV], { stdio: 'inherit' });
    execFileSync(path.join(bin, 'pip'), ['install', '--quiet', ...PYPI_PINS], { stdio: 'inherit' });
  }
  // cargo-zigbuild finds zig through the `ziglang` Python module; a `zig` shim on PATH is what napi's
  // `-x` check and our own tools look for.
  const shim = path.join(bin, 'zig');
  if (!fs.existsSync(shim)) {
    fs.writeFileSync(shim, `#!/bin/sh\nexec "${path.join(bin, 'python3')}" -m ziglang "$@"\n`, { mode: 0o755 });
  }
  return `${bin}${path.delimiter}${process.env.PATH}`;
}

function ensureRustTarget(triple) {
  const installed = execFileSync('rustup', ['target', 'list', '--installed'], { encoding: 'utf8' }).split('\n');
  if (!installed.includes(triple)) {
    log(`rustup target add ${triple}`);
    execFileSync('rustup', ['target', 'add', triple], { stdio: 'inherit' });
  }
}

function napiBin() {
  return path.join(ROOT, 'node_modules', '.bin', 'napi');
}

/** Builds one target; returns the path of the placed binary. */
export function buildTarget(t, env) {
  ensureRustTarget(t.triple);
  const out = path.join(ROOT, 'target', 'napi-dist', t.abi);
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  const args = ['build', '--platform', '--release', '--strip', '--manifest-path', 'crate/Cargo.toml', '--target', t.build, '--output-dir', out, '--no-js', '--dts', 'index.d.cts'];
  const buildEnv = { ...env };
  if (t.abi === 'wasm32-wasi') {
    // WASM SIMD: the portable kernels auto-vectorise to simd128 (Node ≥ 16.4 has it on by default).
    buildEnv.RUSTFLAGS = '-C target-feature=+simd128';
  } else {
    args.push('-x');
  }
  log(`napi ${args.join(' ')}`);
  const r = spawnSync(napiBin(), args, { cwd: ROOT, env: buildEnv, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`napi build for ${t.build} failed (exit ${r.status})`);
  const pkgDir = path.join(ROOT, 'npm', t.abi);
  const bin = binaryFile(t);
  fs.copyFileSync(path.join(out, bin), path.join(pkgDir, bin));
  if (t.abi === 'wasm32-wasi') {
    // the WASI glue napi writes next to the .wasm: the package's entry point and its worker
    for (const f of fs.readdirSync(out)) {
      if (/^(dbnorm\.wasi(-browser)?\.(c?js|mjs)|wasi-worker(-browser)?\.mjs)$/.test(f)) fs.copyFileSync(path.join(out, f), path.join(pkgDir, f));
    }
  }
  return path.join(pkgDir, bin);
}

/** Copies the WASI build next to the in-repo loader, so `NAPI_RS_FORCE_WASI=1` works from the checkout. */
export function linkWasiIntoCheckout() {
  const pkgDir = path.join(ROOT, 'npm', 'wasm32-wasi');
  for (const f of fs.readdirSync(pkgDir)) {
    if (/\.(wasm|cjs|mjs|js)$/.test(f)) fs.copyFileSync(path.join(pkgDir, f), path.join(ROOT, 'ts', 'native', f));
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const want = process.argv.slice(2);
  const targets = want.length ? TARGETS.filter((t) => want.includes(t.abi) || want.includes(t.triple)) : TARGETS;
  if (want.length && targets.length !== want.length) throw new Error(`unknown target in ${want.join(' ')}; known: ${TARGETS.map((t) => t.abi).join(' ')}`);
  const env = { ...process.env, PATH: ensureCrossTools() };
  for (const t of targets) {
    const p = buildTarget(t, env);
    log(`${t.abi}: ${path.relative(ROOT, p)} (${(fs.statSync(p).size / 1e6).toFixed(2)} MB)`);
    if (t.abi === 'wasm32-wasi' && fs.existsSync(path.join(ROOT, 'ts', 'native'))) linkWasiIntoCheckout();
  }
}
