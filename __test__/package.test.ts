import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const node = process.execPath;

describe('package entry points', () => {
  it('loads from CommonJS (require) by package name', () => {
    const out = execFileSync(node, ['-e', "const d = require('dbnorm'); console.log(typeof d.Normalizer.fit, typeof d.similaritySync, d.METHODS.length)"], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(out.trim()).toBe('function function 9');
  });

  it('loads from ESM (import) by package name, the same single copy as require', () => {
    const script =
      "import * as d from 'dbnorm'; import { createRequire } from 'node:module';" +
      "const c = createRequire(import.meta.url)('dbnorm');" +
      'console.log(typeof d.Normalizer, d.Normalizer === c.Normalizer, d.default === c);';
    const out = execFileSync(node, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    expect(out.trim()).toBe('function true true');
  });

  it('ships type declarations for both entry points', () => {
    const pkg = require(path.join(root, 'package.json')) as { exports: Record<string, Record<string, { types: string }>> };
    const fs = require('node:fs') as typeof import('node:fs');
    for (const cond of ['import', 'require']) {
      expect(fs.existsSync(path.join(root, pkg.exports['.']![cond]!.types))).toBe(true);
    }
  });
});

describe('dbnorm demo', () => {
  it('prints one JSON object with every method, and the planted hubs are found', () => {
    const r = spawnSync(node, [path.join(root, 'dist/cli.js'), 'demo', '--json', '--gallery', '500', '--query-bank', '2000', '--gallery-bank', '500'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout) as { results: { method: string; metrics: Record<string, number>; hubness: Record<string, number>; seconds: number }[] };
    expect(doc.results.map((x) => x.method)).toEqual(['none', 'is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn', 'sn', 'dual-sn']);
    const by = Object.fromEntries(doc.results.map((x) => [x.method, x]));
    // the synthetic data has planted hubs: raw retrieval is hub-ridden, and inverted softmax undoes it
    expect(by.none!.hubness.skewness).toBeGreaterThan(3);
    expect(by.is!.hubness.skewness).toBeLessThan(by.none!.hubness.skewness / 2);
    expect(by['dual-is']!.metrics.R1).toBeGreaterThan(by.none!.metrics.R1 + 10);
    for (const x of doc.results) expect(x.seconds).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/synthetic benchmark/);
  });

  it('exits 2 with a one-line message on a usage error', () => {
    const r = spawnSync(node, [path.join(root, 'dist/cli.js'), 'demo', '--gallery', 'many'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\s+at /);
  });
});
