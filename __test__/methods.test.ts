// The method registry: the Rust core's table is the one source of truth; the facade, the CLI and
// persistence read it. Plus the CLI fixes of issue 9 (empty --methods, --ks wrap-around, BOM gt).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { DbnormError, METHODS, Normalizer, resolveOptions, writeNpySync } from '../dist/index.js';
import { METHOD_INFO, PARAM_INFO } from '../dist/methods.js';
import { randomMatrix } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-methods-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DbnormError);
    return (e as DbnormError).code + ': ' + (e as DbnormError).message;
  }
  throw new Error('did not throw');
}

describe('method table', () => {
  it('METHODS, banks and parameters come from the native table', () => {
    expect(METHODS).toEqual(METHOD_INFO.map((m) => m.id));
    expect(METHODS).toEqual(['none', 'is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn', 'sn', 'dual-sn']);
    expect(PARAM_INFO.map((p) => p.name)).toEqual(['betaQuery', 'betaGallery', 'k', 'cslsK', 'nnnK', 'nnnAlpha', 'tau', 'iterations', 'tol']);
    const dd = METHOD_INFO.find((m) => m.id === 'dual-dis')!;
    expect(dd).toMatchObject({ queryBank: true, galleryBank: true, augmentedColumns: 2, persistCode: 4 });
    expect(dd.params).toEqual(['betaQuery', 'betaGallery', 'k']);
    expect(METHOD_INFO.find((m) => m.id === 'none')).toMatchObject({ queryBank: false, galleryBank: false, params: [] });
  });

  it('resolveOptions applies the table defaults (β only for cosine embeddings)', () => {
    expect(resolveOptions({ method: 'dual-dis' }, true)).toEqual({ method: 'dual-dis', betaQuery: 20, betaGallery: 1, k: 1, cslsK: 10, nnnK: 128, nnnAlpha: 0.75, tau: null, iterations: 10, tol: 0 });
    expect(resolveOptions({ method: 'csls', betaQuery: 3 }, false)).toMatchObject({ betaQuery: null, betaGallery: null });
    expect(code(() => resolveOptions({ method: 'is' }, false))).toMatch(/ERR_PARAM: betaQuery is required/);
    expect(code(() => resolveOptions({ method: 'nnn', nnnK: 2 ** 32 }, true))).toMatch(/ERR_PARAM: nnnK must be an integer/);
    expect(code(() => resolveOptions({ method: 'dis', k: 1.5 }, true))).toMatch(/ERR_PARAM: k must be an integer/);
  });

  it('an unknown option key is ERR_PARAM naming the nearest valid one', () => {
    expect(code(() => resolveOptions({ method: 'is', beta: 5 } as never, true))).toMatch(/unknown option 'beta' \(did you mean 'betaQuery'\?\)/);
    expect(code(() => resolveOptions({ method: 'nnn', nnnAplha: 1 } as never, true))).toMatch(/did you mean 'nnnAlpha'/);
    const g = randomMatrix(4, 3, 1);
    const q = randomMatrix(6, 3, 2);
    expect(code(() => Normalizer.fitSync({ gallery: g, queryBank: q }, { method: 'is', beta: 5 } as never))).toMatch(/ERR_PARAM: .*unknown option 'beta'/);
  });

  it('augmented vectors have the table\'s column count for every method', () => {
    const g = randomMatrix(20, 4, 3);
    const q = randomMatrix(30, 4, 4);
    const gb = randomMatrix(25, 4, 5);
    for (const m of METHOD_INFO) {
      const n = Normalizer.fitSync({ gallery: g, queryBank: q, galleryBank: gb }, { method: m.id as never, nnnK: 5 });
      expect(n.augmentedGallery().cols).toBe(4 + m.augmentedColumns);
    }
  });
});

describe('CLI method flags', () => {
  const m = randomMatrix(12, 4, 7);
  writeNpySync(path.join(dir, 'q.npy'), m);
  writeNpySync(path.join(dir, 'g.npy'), m);
  writeNpySync(path.join(dir, 'qb.npy'), randomMatrix(20, 4, 8));
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'eval', '--queries', 'q.npy', '--gallery', 'g.npy', '--query-bank', 'qb.npy', ...args], { cwd: dir, encoding: 'utf8' });

  it("--methods '' and ',,,' are usage errors (exit 2)", () => {
    for (const v of ['', ',,,', ' , ']) {
      const r = run('--methods', v);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/names no method/);
    }
  });

  it('--ks and integer flags beyond 2^32 − 1 are usage errors, not wrapped', () => {
    for (const args of [['--ks', '4294967297'], ['--k', '4294967297'], ['--hubness-k', '4294967296'], ['--captions-per-item', '4294967297']]) {
      const r = run('--method', 'is', ...args);
      expect(r.status, args.join(' ') + r.stderr).toBe(2);
    }
  });

  it('--help lists every method and parameter flag from the table', () => {
    const r = spawnSync(process.execPath, [cli, 'eval', '--help'], { encoding: 'utf8' });
    for (const id of METHODS) expect(r.stdout).toContain(`  ${id} `);
    for (const f of ['--beta-query', '--beta-gallery', '--k', '--csls-k', '--nnn-k', '--nnn-alpha']) expect(r.stdout).toContain(f);
  });

  it('a gt.json with a UTF-8 BOM is accepted', () => {
    writeFileSync(path.join(dir, 'gt.json'), '\ufeff' + JSON.stringify(Array.from({ length: 12 }, (_, i) => i)));
    const r = run('--method', 'is', '--gt', 'gt.json', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).results.map((x: { method: string }) => x.method)).toEqual(['none', 'is']);
  });
});
