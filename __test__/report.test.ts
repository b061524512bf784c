// `dbnorm eval --json --occurrences` and every hubness measure in --json (Atkinson checked against a
// float64 reference from the occurrence array); `report()` is self-contained HTML.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { report, syntheticBenchmark, writeNpySync } from '../dist/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const b = syntheticBenchmark({ gallery: 120, queryBank: 400, galleryBank: 150, dim: 16, captionsPerItem: 2, seed: 9 });
writeNpySync(path.join(dir, 'q.npy'), b.queries);
writeNpySync(path.join(dir, 'g.npy'), b.gallery);
writeNpySync(path.join(dir, 'qb.npy'), b.queryBank);
writeNpySync(path.join(dir, 'gb.npy'), b.galleryBank);

interface Row {
  method: string;
  direction: string;
  hubness: Record<string, number | null>;
  occurrence?: number[];
}

function evalJson(extra: string[]): Row[] {
  const r = spawnSync(process.execPath, [cli, 'eval', '--queries', 'q.npy', '--gallery', 'g.npy', '--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--methods', 'is,dual-dis', '--direction', 'both', '--json', ...extra], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return (JSON.parse(r.stdout) as { results: Row[] }).results;
}

describe('dbnorm eval --json hubness measures and --occurrences', () => {
  it('occurrence arrays only on request; Atkinson, Gini, Robin Hood match float64 references', () => {
    expect(evalJson([]).every((r) => r.occurrence === undefined)).toBe(true);
    const rows = evalJson(['--occurrences']);
    expect(rows).toHaveLength(6);
    for (const r of rows) {
      const occ = r.occurrence!;
      const [nItems, nRows] = r.direction === 't2v' ? [120, 240] : [240, 120];
      expect(occ).toHaveLength(nItems);
      const k = r.hubness.k!;
      expect(occ.reduce((a, x) => a + x, 0)).toBe(k * nRows);
      const mu = (k * nRows) / nItems;
      const rootMean = occ.reduce((a, x) => a + Math.sqrt(x), 0) / nItems;
      expect(r.hubness.atkinson).toBeCloseTo(1 - (rootMean * rootMean) / mu, 12);
      expect(r.hubness.meanOccurrence).toBeCloseTo(mu, 12);
      const robin = occ.reduce((a, x) => a + Math.abs(x - mu), 0) / (2 * k * nRows);
      expect(r.hubness.robinHood).toBeCloseTo(robin, 12);
      const s = [...occ].sort((a, c) => a - c);
      const gini = s.reduce((a, x, i) => a + (2 * (i + 1) - nItems - 1) * x, 0) / (nItems * s.reduce((a, x) => a + x, 0));
      expect(r.hubness.gini).toBeCloseTo(gini, 10);
      for (const key of ['skewness', 'skewnessNonzero', 'antihubRate', 'hubOccurrence', 'groupieRatio', 'hubThreshold', 'hubs']) expect(r.hubness).toHaveProperty(key);
    }
  });

  it('--html writes one self-contained file', () => {
    evalJson(['--html', 'r.html']);
    const html = readFileSync(path.join(dir, 'r.html'), 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).not.toMatch(/<script|<link|<img|@import|url\(/i);
    expect(html.match(/https?:\/\/[^"]+/g)?.every((u) => u === 'http://www.w3.org/2000/svg')).toBe(true);
    // per direction: R@K bars + one histogram per method (overlaid on none)
    expect(html.match(/<svg /g)).toHaveLength(2 * (1 + 2));
    expect(html).toContain('Top hubs before (none)');
  });

  it('--tune without --html is a usage error', () => {
    const r = spawnSync(process.execPath, [cli, 'eval', '--queries', 'q.npy', '--gallery', 'g.npy', '--tune', 't.json'], { cwd: dir, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--html/);
  });
});

describe('report()', () => {
  it('escapes labels and lists ids of hubs', () => {
    const rows = [
      { method: 'none', params: {}, metrics: { R1: 10 }, hubness: { k: 1 }, seconds: 0, direction: 't2v', occurrence: [3, 0, 1] },
      { method: 'is', params: { betaQuery: 20 }, metrics: { R1: 20 }, hubness: { k: 1 }, seconds: 0, direction: 't2v', occurrence: [1, 1, 2] },
    ];
    const html = report({ title: '<b>x</b>', rows, ids: { t2v: ['cat<1>', 'dog', 'eel'] } });
    expect(html).toContain('&lt;b&gt;x&lt;/b&gt;');
    expect(html).toContain('cat&lt;1&gt; (#0)</td><td>3</td><td>1</td>');
    expect(html).not.toContain('<b>x</b>');
  });
});
