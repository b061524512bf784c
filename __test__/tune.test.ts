// `tune` (API and CLI): the default is always a candidate (never worse on the tuner's own folds),
// results are deterministic for a seed, only banks are accepted (test data cannot be passed in),
// and the CLI's --json prints exactly the documented object.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { DbnormError, Normalizer, TUNED_KEYS, tune, writeNpySync } from '../dist/index.js';
import { rng } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-tune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Paired banks: `items` concepts, `c` noisy captions each (item-major), a few hub items. */
function paired(items: number, c: number, d: number, seed: number) {
  const r = rng(seed);
  const g = () => r() - 0.5;
  const hub = Array.from({ length: d }, g);
  const gb = new Float32Array(items * d);
  const qb = new Float32Array(items * c * d);
  for (let i = 0; i < items; i++) {
    const concept = Array.from({ length: d }, g);
    const pull = i % 20 === 0 ? 1.5 : 0;
    for (let t = 0; t < d; t++) gb[i * d + t] = concept[t]! + 0.8 * g() + pull * hub[t]!;
    for (let k = 0; k < c; k++) for (let t = 0; t < d; t++) qb[(i * c + k) * d + t] = concept[t]! + 1.2 * g() + 0.3 * hub[t]!;
  }
  return { queryBank: { data: qb, rows: items * c, cols: d }, galleryBank: { data: gb, rows: items, cols: d } };
}

const banks = paired(300, 3, 24, 5);

describe('tune', () => {
  it('never picks a setting worse than the default on its own folds, and is deterministic', async () => {
    const opts = { pairs: { captionsPerItem: 3 }, folds: 2, holdout: 80, seed: 3 } as const;
    const a = await tune(banks, opts);
    expect(a.results.map((r) => r.method)).toEqual(['is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn']);
    for (const r of a.results) {
      expect(r.defaultScore).not.toBeNull();
      expect(r.score).toBeGreaterThanOrEqual(r.defaultScore!);
      expect(r.foldScores).toHaveLength(2);
      expect(Object.keys(r.params).sort()).toEqual([...TUNED_KEYS[r.method]].sort());
      // the reported best is the maximum over every evaluated setting, default included
      expect(Math.max(...r.trials.map((t) => t.score))).toBe(r.score);
      expect(r.trials.length).toBeGreaterThan(3);
    }
    const best = a.results.find((r) => r.method === a.best.method)!;
    expect(best.score).toBe(Math.max(...a.results.map((r) => r.score)));
    const b = await tune(banks, opts);
    expect(b).toEqual(a);
    // tuned params go straight into a fit
    const norm = await Normalizer.fit({ gallery: banks.galleryBank, queryBank: banks.queryBank, galleryBank: banks.galleryBank }, { method: a.best.method, ...a.best.params, leakGuard: 'off' });
    expect(norm.options.method).toBe(a.best.method);
  });

  it('accepts only the banks: test matrices cannot be passed in', async () => {
    for (const extra of ['gallery', 'queries', 'testQueries']) {
      const err = await tune({ ...banks, [extra]: banks.galleryBank } as never, { pairs: { captionsPerItem: 3 } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DbnormError);
      expect((err as DbnormError).code).toBe('ERR_PARAM');
      expect((err as DbnormError).message).toMatch(/test data must never be passed/);
    }
  });

  it('validates its options', async () => {
    const bad = async (opts: object, code: string) => {
      const err = await tune(banks, opts as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(opts)).toBeInstanceOf(DbnormError);
      expect((err as DbnormError).code).toBe(code);
    };
    await bad({ pairs: { captionsPerItem: 2 } }, 'ERR_SHAPE');
    await bad({ pairs: { captionsPerItem: 3 }, metric: 'R@0' }, 'ERR_PARAM');
    await bad({ pairs: { captionsPerItem: 3 }, methods: ['bogus'] }, 'ERR_PARAM');
    await bad({ pairs: { captionsPerItem: 3 }, folds: 0 }, 'ERR_PARAM');
    await bad({ pairs: { captionsPerItem: 3 }, grid: { betaQuery: [] } }, 'ERR_PARAM');
    await bad({ pairs: { captionsPerItem: 3 }, grid: { k: [0] } }, 'ERR_PARAM');
    await bad({ pairs: { captionsPerItem: 3 }, grid: { beta: [1] } }, 'ERR_PARAM');
    await bad({ pairs: { pairs: [[0, 9999]] } }, 'ERR_PARAM');
    await bad({ pairs: { captionsPerItem: 3 }, bogus: 1 }, 'ERR_PARAM');
  });

  it('explicit pairs equal captionsPerItem pairs', async () => {
    const opts = { methods: ['is', 'csls'] as const, folds: 1, holdout: 60, seed: 1 };
    const a = await tune(banks, { ...opts, methods: [...opts.methods], pairs: { captionsPerItem: 3 } });
    const pairs = Array.from({ length: 900 }, (_, i) => [i, Math.floor(i / 3)] as const);
    const b = await tune(banks, { ...opts, methods: [...opts.methods], pairs: { pairs } });
    expect(b.results).toEqual(a.results);
  });

  it('owns its input: the caller changing its buffers during the call does not change the result', async () => {
    const opts = { methods: ['is' as const, 'dual-is' as const], pairs: { captionsPerItem: 3 }, folds: 1, holdout: 60 };
    const want = await tune(banks, opts);
    const mine = { queryBank: { ...banks.queryBank, data: banks.queryBank.data.slice() }, galleryBank: { ...banks.galleryBank, data: banks.galleryBank.data.slice() } };
    const p = tune(mine, opts);
    mine.queryBank.data.fill(0);
    mine.galleryBank.data.fill(0);
    expect(await p).toEqual(want);
  });

  it('aborts and reports progress', async () => {
    const ac = new AbortController();
    ac.abort();
    const err = await tune(banks, { pairs: { captionsPerItem: 3 }, signal: ac.signal }).catch((e: unknown) => e);
    expect((err as DbnormError).code).toBe('ERR_ABORTED');
    const phases = new Set<string>();
    await tune(banks, { pairs: { captionsPerItem: 3 }, methods: ['is'], folds: 1, holdout: 40, onProgress: (p) => phases.add(p.phase) });
    expect(phases.has('tune')).toBe(true);
  });
});

function runCli(args: string[], cwd: string) {
  return spawnSync(process.execPath, [cli, 'tune', ...args], { cwd, encoding: 'utf8' });
}

describe('dbnorm tune (CLI)', () => {
  writeNpySync(path.join(dir, 'qb.npy'), banks.queryBank);
  writeNpySync(path.join(dir, 'gb.npy'), banks.galleryBank);

  it('--json prints exactly { results: [{ method, params, score, spread, defaultScore }], best }', () => {
    const r = runCli(['--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--captions-per-item', '3', '--methods', 'is,dual-dis,nnn', '--folds', '2', '--holdout', '80', '--json'], dir);
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { results: Record<string, unknown>[]; best: { method: string; params: Record<string, number> } };
    expect(Object.keys(doc)).toEqual(['results', 'best']);
    expect(doc.results.map((x) => x.method)).toEqual(['is', 'dual-dis', 'nnn']);
    for (const x of doc.results) {
      expect(Object.keys(x)).toEqual(['method', 'params', 'score', 'spread', 'defaultScore']);
      expect(x.score as number).toBeGreaterThanOrEqual(x.defaultScore as number);
    }
    expect(Object.keys(doc.best)).toEqual(['method', 'params']);
  });

  it('prints a table with the eval flags, and has no way to take test files', () => {
    const r = runCli(['--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--captions-per-item', '3', '--methods', 'is', '--folds', '1'], dir);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/dbnorm eval \.\.\. --methods is --beta-query [0-9.]+/);
    const bad = runCli(['--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--queries', 'qb.npy'], dir);
    expect(bad.status).toBe(2);
    const badMethod = runCli(['--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--methods', 'nope'], dir);
    expect(badMethod.status).toBe(2);
  });
});

const real = path.resolve(root, '..', 'shared', 'realdata', 'crosslingual_fasttext', 'aligned', 'en-fr');
const haveReal = existsSync(real);
if (!haveReal && process.env.CI === 'true') throw new Error(`CI=true but ${real} is missing`);
if (!haveReal) console.log(`skipping real-data tune test: ${real} not found (../shared/realdata is absent)`);

describe.runIf(haveReal)('tune on the shared en-fr banks', () => {
  it('sees only the two bank files (a directory holding nothing else) and never loses to the default on its folds', () => {
    const only = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-tune-banks-'));
    try {
      symlinkSync(path.join(real, 'query_bank.npy'), path.join(only, 'qb.npy'));
      symlinkSync(path.join(real, 'gallery_bank.npy'), path.join(only, 'gb.npy'));
      const r = runCli(['--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--json'], only);
      expect(r.status, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout) as { results: { method: string; score: number; defaultScore: number }[] };
      expect(doc.results).toHaveLength(6);
      for (const x of doc.results) expect(x.score).toBeGreaterThanOrEqual(x.defaultScore);
    } finally {
      rmSync(only, { recursive: true, force: true });
    }
  });
});
