// The published shape of dbnorm: platform package layout, types as consumers see them, and the
// loader's error when no binding fits. The registry install test (npm run test:install) is heavier
// and lives outside `npm test`.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  version: string;
  files: string[];
  exports: Record<string, unknown>;
  optionalDependencies?: Record<string, string>;
  napi: { binaryName: string; targets: string[] };
};
// napi-rs' names for the published triples
const ABI: Record<string, string> = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'aarch64-unknown-linux-musl': 'linux-arm64-musl',
  'wasm32-wasip1-threads': 'wasm32-wasi',
};

describe('platform packages', () => {
  it('napi.targets and npm/<target>/ name the same packages, at the version of dbnorm', () => {
    const abis = pkg.napi.targets.map((t) => ABI[t]);
    expect(abis.every(Boolean)).toBe(true);
    expect(new Set(fs.readdirSync(path.join(root, 'npm')).filter((d) => fs.statSync(path.join(root, 'npm', d)).isDirectory()))).toEqual(new Set(abis));
    // pack:all adds them to the packed package.json only; here they would break `npm ci` (the
    // platform packages are in no lock file)
    expect(pkg.optionalDependencies).toBeUndefined();
    for (const a of abis) {
      const p = JSON.parse(fs.readFileSync(path.join(root, 'npm', a!, 'package.json'), 'utf8')) as { name: string; version: string; files: string[]; os?: string[]; cpu?: string[]; libc?: string[] };
      expect(p.name).toBe(`dbnorm-${a}`);
      expect(p.version).toBe(pkg.version);
      if (a === 'wasm32-wasi') {
        // installed everywhere (no cpu/os filter): it is the fallback where no native package fits
        expect(p.cpu).toBeUndefined();
        expect(p.files).toContain('dbnorm.wasm32-wasi.wasm');
      } else {
        expect(p.files).toEqual([`dbnorm.${a}.node`]);
        expect(p.os).toEqual(['linux']);
        expect(p.cpu).toEqual([a!.includes('arm64') ? 'arm64' : 'x64']);
        expect(p.libc).toEqual([a!.endsWith('musl') ? 'musl' : 'glibc']);
      }
    }
  });

  it('the main tarball ships the loader and dist, and no binary of its own', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
    const files = (JSON.parse(out) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files).toContain('ts/native/index.cjs');
    expect(files).toContain('dist/index.d.ts');
    expect(files).toContain('dist/index.d.mts');
    expect(files).toContain('dist/native/index.d.cts');
    expect(files.filter((f) => f.endsWith('.node') || f.endsWith('.wasm'))).toEqual([]);
    // source maps carry their sources inline, so they point at nothing unshipped
    const map = JSON.parse(fs.readFileSync(path.join(root, 'dist', 'index.js.map'), 'utf8')) as { sourcesContent?: string[] };
    expect(map.sourcesContent?.length).toBeGreaterThan(0);
  }, 120_000);
});

describe('types as a consumer sees them', () => {
  it('attw (node10, node16 CJS/ESM, bundler), publint --strict and strict consumers in four module modes', () => {
    const r = spawnSync(process.execPath, [path.join(root, 'tools', 'packaging', 'test-types.mjs')], { cwd: root, encoding: 'utf8' });
    expect(r.stdout).toMatch(/^6 passed, 0 failed$/m);
    expect(r.status).toBe(0);
  }, 600_000);
});

describe('loader', () => {
  it('no binding fits: DbnormError ERR_NO_BINDING naming platform, arch, libc, the packages tried and the fix', () => {
    // an install of the main package without its optional platform packages
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-nobinding-'));
    try {
      const inst = path.join(dir, 'node_modules', 'dbnorm');
      fs.mkdirSync(path.join(inst, 'ts', 'native'), { recursive: true });
      fs.cpSync(path.join(root, 'dist'), path.join(inst, 'dist'), { recursive: true });
      fs.copyFileSync(path.join(root, 'package.json'), path.join(inst, 'package.json'));
      fs.copyFileSync(path.join(root, 'ts', 'native', 'index.cjs'), path.join(inst, 'ts', 'native', 'index.cjs'));
      const script = "try { require('dbnorm'); console.log('{}') } catch (e) { console.log(JSON.stringify({ code: e.code, name: e.name, message: e.message, isDbnorm: e instanceof Error })) }";
      const env = { ...process.env, NAPI_RS_FORCE_WASI: '', NAPI_RS_NATIVE_LIBRARY_PATH: '' };
      const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', env })) as { code: string; name: string; message: string };
      expect(out.code).toBe('ERR_NO_BINDING');
      expect(out.name).toBe('DbnormError');
      expect(out.message).toContain(`detected ${process.platform} ${process.arch}`);
      if (process.platform === 'linux') expect(out.message).toMatch(/(glibc \d+\.\d+|musl)/);
      expect(out.message).toMatch(/dbnorm-linux-(x64|arm64)-(gnu|musl)/);
      expect(out.message).toContain('dbnorm-wasm32-wasi');
      expect(out.message).toMatch(/optional dependencies/);
      expect(out.message).toMatch(/cargo/);
      expect(out.message).not.toMatch(/npm has a bug/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports which build loaded (the checkout loads its native build)', () => {
    const out = execFileSync(process.execPath, ['-e', "console.log(require('./dist/native.js').backend)"], { cwd: root, encoding: 'utf8', env: { ...process.env, NAPI_RS_FORCE_WASI: '' } });
    expect(out.trim()).toBe('native');
  });
});
