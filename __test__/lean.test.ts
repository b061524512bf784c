// Lean normalisers (`keep: 'statistics'`) and half-precision gallery storage (issue 11), through the
// public API and the CLI: results bit-identical to the in-memory fit, saved files that reference the
// gallery, a changed source refused with ERR_SOURCE, addGallery with and without bank files, and the
// float16 / bfloat16 storage round trips.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { DbnormError, Matrix, type Method, Normalizer, readNpySync, writeNpySync } from '../dist/index.js';
import { rng } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-lean-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function gaussian(rows: number, cols: number, seed: number): Matrix {
  const r = rng(seed);
  return new Matrix(Float32Array.from({ length: rows * cols }, () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())), rows, cols);
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof DbnormError ? e.code : `not a DbnormError: ${String(e)}`;
  }
  return 'no error';
}

async function codeOfAsync(f: () => Promise<unknown>): Promise<string> {
  try {
    await f();
  } catch (e) {
    return e instanceof DbnormError ? e.code : `not a DbnormError: ${String(e)}`;
  }
  return 'no error';
}

const g = gaussian(1500, 16, 1);
const qb = gaussian(300, 16, 2);
const gb = gaussian(200, 16, 3);
const q = gaussian(25, 16, 4);
const items = gaussian(7, 16, 5);
const f = (n: string) => path.join(dir, n);
writeNpySync(f('g.npy'), g);
writeNpySync(f('qb.npy'), qb);
writeNpySync(f('gb.npy'), gb);
writeNpySync(f('q.npy'), q);

const METHODS_UNDER_TEST: Method[] = ['is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn', 'none'];

describe("keep: 'statistics'", () => {
  for (const method of METHODS_UNDER_TEST) {
    it(`${method}: lean fit, search, rerank, evaluate, save/load and addGallery equal the in-memory fit`, async () => {
      const full = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb }, { method });
      const lean = await Normalizer.fit({ gallery: f('g.npy'), queryBank: f('qb.npy'), galleryBank: f('gb.npy') }, { method, keep: 'statistics' });
      expect(lean.storage.keep).toBe('statistics');
      expect(lean.storage.gallerySource).toBe(f('g.npy'));
      expect(lean.storage.galleryBytes).toBe(0);
      expect(full.storage).toMatchObject({ keep: 'all', galleryStorage: 'float32', gallerySource: null });
      expect(lean.galleryCount).toBe(1500);
      expect(await lean.search(q, { k: 10 })).toEqual(await full.search(q, { k: 10 }));
      expect(lean.searchSync(q, { k: 3 })).toEqual(full.searchSync(q, { k: 3 }));
      expect(await lean.scores(q)).toEqual(await full.scores(q));
      const cand = Uint32Array.from({ length: 25 * 40 }, (_, i) => (i * 7919) % 1500);
      expect(await lean.rerank(q, cand)).toEqual(await full.rerank(q, cand));
      const gt = { positives: Array.from({ length: 25 }, (_, i) => [i * 13, i * 29 + 1]) };
      expect(await lean.evaluate(q, gt)).toEqual(await full.evaluate(q, gt));
      // saved: references, far smaller than the gallery
      await lean.save(f(`lean-${method}.dbn`));
      await full.save(f(`full-${method}.dbn`));
      expect(statSync(f(`lean-${method}.dbn`)).size).toBeLessThan(1500 * 16 * 4);
      const back = await Normalizer.load(f(`lean-${method}.dbn`));
      expect(back.storage.keep).toBe('statistics');
      expect(await back.search(q, { k: 10 })).toEqual(await full.search(q, { k: 10 }));
      // addGallery reads the bank files again
      const l2 = (await Normalizer.load(f(`lean-${method}.dbn`)));
      await l2.addGallery(items);
      await full.addGallery(items);
      expect(l2.galleryCount).toBe(1507);
      expect(await l2.search(q, { k: 10 })).toEqual(await full.search(q, { k: 10 }));
    });
  }

  it('a mapped matrix is referenced by its path; in-memory banks leave addGallery refused with ERR_SOURCE', async () => {
    const mapped = readNpySync(f('g.npy'), { mmap: true });
    const lean = await Normalizer.fit({ gallery: mapped, queryBank: qb }, { method: 'is', keep: 'statistics' });
    expect(lean.storage.gallerySource).toBe(f('g.npy'));
    expect(lean.storage.queryBankSource).toBeNull();
    expect(await codeOfAsync(() => lean.addGallery(items))).toBe('ERR_SOURCE');
    // an in-memory gallery cannot be referenced
    expect(await codeOfAsync(() => Normalizer.fit({ gallery: g, queryBank: qb }, { method: 'is', keep: 'statistics' }))).toBe('ERR_PARAM');
    expect(codeOf(() => Normalizer.fitSync({ gallery: f('g.npy'), queryBank: qb }, { method: 'is', keep: 'statistics', galleryStorage: 'float16' }))).toBe('ERR_PARAM');
    expect(codeOf(() => Normalizer.fitSync({ gallery: f('g.npy'), queryBank: qb }, { method: 'is', keep: 'everything' as 'all' }))).toBe('ERR_PARAM');
    // a method that fits a state over the whole gallery (Sinkhorn) is refused, not approximated
    expect(await codeOfAsync(() => Normalizer.fit({ gallery: f('g.npy'), queryBank: f('qb.npy'), galleryBank: f('gb.npy') }, { method: 'dual-sn', keep: 'statistics' }))).toBe('ERR_PARAM');
  });

  it('a changed gallery file is refused at search (ERR_SOURCE) and on load (ERR_SOURCE)', async () => {
    writeNpySync(f('g2.npy'), g);
    const lean = Normalizer.fitSync({ gallery: f('g2.npy'), queryBank: f('qb.npy') }, { method: 'is', keep: 'statistics' });
    await lean.save(f('g2.dbn'));
    expect(lean.searchSync(q, { k: 5 }).rows).toBe(25);
    // the same length, one value changed, the modification time moved on
    const changed = new Matrix(Float32Array.from(g.data), g.rows, g.cols);
    changed.data[100] = 7;
    writeNpySync(f('g2.npy'), changed);
    const t = new Date(Date.now() + 5000);
    utimesSync(f('g2.npy'), t, t);
    expect(codeOf(() => lean.searchSync(q, { k: 5 }))).toBe('ERR_SOURCE');
    expect(await codeOfAsync(() => lean.search(q, { k: 5 }))).toBe('ERR_SOURCE');
    expect(await codeOfAsync(() => Normalizer.load(f('g2.dbn')))).toBe('ERR_SOURCE');
    rmSync(f('g2.npy'));
    expect(await codeOfAsync(() => Normalizer.load(f('g2.dbn')))).toBe('ERR_SOURCE');
  });
});

describe('galleryStorage: float16 / bfloat16', () => {
  it('halves the gallery bytes, survives save/load, agrees with float32 on almost every top-10 list', async () => {
    const full = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb }, { method: 'dual-is' });
    const queries = gaussian(200, 16, 9);
    const ref = await full.search(queries, { k: 10 });
    for (const s of ['float16', 'bfloat16'] as const) {
      const h = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb }, { method: 'dual-is', galleryStorage: s });
      expect(h.storage.galleryStorage).toBe(s);
      expect(h.storage.galleryBytes).toBe(1500 * 16 * 2);
      expect(full.withGalleryStorage(s).storage.galleryStorage).toBe(s);
      expect(await full.withGalleryStorage(s).search(queries, { k: 10 })).toEqual(await h.search(queries, { k: 10 }));
      const top = await h.search(queries, { k: 10 });
      let same = 0;
      for (let i = 0; i < 200; i++) {
        const a = ref.indices.subarray(i * 10, i * 10 + 10).join();
        if (a === top.indices.subarray(i * 10, i * 10 + 10).join()) same++;
      }
      // float16 keeps 11 significant bits of unit rows: nearly every list is unchanged here
      expect(same / 200, s).toBeGreaterThan(s === 'float16' ? 0.9 : 0.6);
      await h.save(f(`${s}.dbn`));
      const back = await Normalizer.load(f(`${s}.dbn`));
      expect(back.storage.galleryStorage).toBe(s);
      expect(await back.search(queries, { k: 10 })).toEqual(top);
      expect(statSync(f(`${s}.dbn`)).size).toBeLessThan(statSync(f('full-dual-is.dbn')).size);
      expect(h.withGalleryStorage('float32').storage.galleryBytes).toBe(1500 * 16 * 4);
    }
    expect(codeOf(() => full.withGalleryStorage('float8' as 'float16'))).toBe('ERR_PARAM');
    const big = new Matrix(Float32Array.from(g.data, (v) => v * 1e5), g.rows, g.cols);
    expect(await codeOfAsync(() => Normalizer.fit({ gallery: big, metric: 'dot' }, { method: 'none', galleryStorage: 'float16' }))).toBe('ERR_PARAM');
  });
});

describe('dbnorm fit --keep statistics / --gallery-storage', () => {
  function run(args: string[]) {
    const r = spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  }
  it('fits lean through the CLI and searches with results equal to the in-memory fit', async () => {
    for (const [extra, out] of [[['--keep', 'statistics'], 'cli-lean.dbn'], [['--gallery-storage', 'float16'], 'cli-f16.dbn'], [[], 'cli-full.dbn']] as const) {
      const r = run(['fit', '--gallery', 'g.npy', '--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--method', 'dual-dis', '--out', out, ...extra]);
      expect(r.status, r.stderr).toBe(0);
      const s = run(['search', '--normalizer', out, '--queries', 'q.npy', '--k', '10', '--out', `${out}.top.npy`]);
      expect(s.status, s.stderr).toBe(0);
    }
    expect(readFileSync(f('cli-lean.dbn.top.npy'))).toEqual(readFileSync(f('cli-full.dbn.top.npy')));
    expect(statSync(f('cli-lean.dbn')).size).toBeLessThan(statSync(f('cli-f16.dbn')).size);
    expect(statSync(f('cli-f16.dbn')).size).toBeLessThan(statSync(f('cli-full.dbn')).size);
    const lean = await Normalizer.load(f('cli-lean.dbn'));
    expect(lean.storage.gallerySource).toBe(f('g.npy'));
    const bad = run(['fit', '--gallery', 'g.npy', '--query-bank', 'qb.npy', '--method', 'is', '--out', 'x.dbn', '--keep', 'statistics', '--gallery-storage', 'float16']);
    expect(bad.status).toBe(2);
  });
});
