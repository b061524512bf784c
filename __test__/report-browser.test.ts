// The HTML report in a real browser: headless Debian `chromium` driven by `playwright-core`.
// Generates reports with `dbnorm eval --html` (synthetic data, and the shared en-fr set when
// present, with a tuning result), opens them with every network request blocked, and checks that the
// charts rendered (SVG elements with non-empty boxes, bars and histogram paths drawn), that nothing
// was fetched and nothing logged an error. Screenshots go to __test__/artifacts/ (git-ignored).
// Chromium is installed with apt-get when absent and this process may (root); otherwise the test is
// skipped with the reason printed.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { report, syntheticBenchmark, writeNpySync } from '../dist/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const artifacts = path.join(root, '__test__', 'artifacts');
mkdirSync(artifacts, { recursive: true });

function findChromium(): string | null {
  for (const p of ['/usr/bin/chromium', '/usr/bin/chromium-browser']) if (existsSync(p)) return p;
  return null;
}

function ensureChromium(): { path: string | null; reason: string } {
  let p = findChromium();
  if (p) return { path: p, reason: '' };
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) return { path: null, reason: 'chromium is not installed and this process is not root (cannot apt-get install it)' };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const upd = spawnSync('apt-get', ['update', '-qq'], { env, encoding: 'utf8', timeout: 300_000 });
  const inst = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium'], { env, encoding: 'utf8', timeout: 600_000 });
  p = findChromium();
  if (p) return { path: p, reason: '' };
  return { path: null, reason: `apt-get install chromium failed (update ${upd.status}, install ${inst.status}): ${(inst.stderr || upd.stderr || '').split('\n')[0]}` };
}

const chrome = ensureChromium();
if (!chrome.path) console.log(`skipping browser report tests: ${chrome.reason}`);

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

interface Rendered {
  svgs: { w: number; h: number; label: string; marks: number }[];
  errors: string[];
  requests: string[];
}

async function render(file: string, shot: string, width = 1180, smallShot?: string): Promise<Rendered> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: chrome.path!, args: ARGS, headless: true });
  try {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file://')) return route.continue();
      requests.push(url);
      return route.abort();
    });
    await page.goto('file://' + file);
    const svgs = await page.$$eval('svg', (els) =>
      els.map((e) => {
        const r = e.getBoundingClientRect();
        // drawn marks with a non-empty box: bars, histogram paths, curve points
        const marks = [...e.querySelectorAll('rect.bar, path, polyline, circle')].filter((m) => {
          const b = (m as SVGGraphicsElement).getBBox();
          return b.width > 0 || b.height > 0;
        }).length;
        return { w: r.width, h: r.height, label: e.getAttribute('aria-label') ?? '', marks };
      }),
    );
    await page.screenshot({ path: shot, fullPage: true });
    if (smallShot) {
      // a compact copy (the README's figure is made from it): the same layout at half the pixel density
      const small = await browser.newPage({ viewport: { width, height: 600 }, deviceScaleFactor: 0.5 });
      await small.route('**/*', (route) => (route.request().url().startsWith('file://') ? route.continue() : route.abort()));
      await small.goto('file://' + file);
      await small.screenshot({ path: smallShot, fullPage: true });
    }
    return { svgs, errors, requests };
  } finally {
    await browser.close();
  }
}

describe.runIf(chrome.path !== null)('HTML report in headless Chromium', () => {
  it('a synthetic eval report renders every chart, fetches nothing, logs no error', async () => {
    const b = syntheticBenchmark({ gallery: 200, queryBank: 600, galleryBank: 200, dim: 32, captionsPerItem: 2, seed: 4 });
    const dir = artifacts;
    const files: Record<string, unknown> = { queries: b.queries, gallery: b.gallery, qb: b.queryBank, gb: b.galleryBank };
    for (const [k, m] of Object.entries(files)) writeNpySync(path.join(dir, `${k}.npy`), m as never);
    const html = path.join(dir, 'synthetic-report.html');
    const r = spawnSync(
      process.execPath,
      [cli, 'eval', '--queries', 'queries.npy', '--gallery', 'gallery.npy', '--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--methods', 'is,dual-dis,csls', '--direction', 'both', '--html', html, '--json'],
      { cwd: dir, encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const text = readFileSync(html, 'utf8');
    expect(text).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    const out = await render(html, path.join(artifacts, 'synthetic-report.png'));
    expect(out.errors).toEqual([]);
    expect(out.requests).toEqual([]);
    // per direction: 1 R@K chart + 3 histograms (none vs each method)
    expect(out.svgs).toHaveLength(8);
    for (const s of out.svgs) {
      expect(s.w, s.label).toBeGreaterThan(100);
      expect(s.h, s.label).toBeGreaterThan(100);
      expect(s.marks, s.label).toBeGreaterThan(0);
    }
    const bars = out.svgs.filter((s) => s.label.endsWith('R@K'));
    expect(bars).toHaveLength(2);
    for (const s of bars) expect(s.marks).toBe(4 * 3); // 4 methods × R@1, R@5, R@10
    expect(out.svgs.filter((s) => s.label.includes('histogram')).every((s) => s.marks === 2)).toBe(true);
    expect(statSync(path.join(artifacts, 'synthetic-report.png')).size).toBeGreaterThan(10_000);
  }, 120_000);

  it('report() with a tune result draws the tuning curves', async () => {
    const occ = (n: number, hub: number) => Array.from({ length: n }, (_, i) => (i === 0 ? hub : i % 3));
    const base = { params: {}, seconds: 0.1, direction: 't2v' };
    const rows = [
      { ...base, method: 'none', metrics: { R1: 40, R5: 70, R10: 80 }, hubness: { k: 10, skewness: 3 }, occurrence: occ(50, 40) },
      { ...base, method: 'is', params: { betaQuery: 20 }, metrics: { R1: 45, R5: 74, R10: 83 }, hubness: { k: 10, skewness: 1 }, occurrence: occ(50, 12) },
    ];
    const trial = (b: number, s: number) => ({ params: { betaQuery: b }, score: s, foldScores: [s] });
    const tune = {
      results: [{ method: 'is' as const, params: { betaQuery: 10 }, score: 0.5, spread: 0, defaultScore: 0.45, foldScores: [0.5], defaultFoldScores: [0.45], trials: [trial(20, 0.45), trial(1, 0.3), trial(10, 0.5), trial(100, 0.4)] }],
      best: { method: 'is' as const, params: { betaQuery: 10 } },
      metric: 'R@1',
      folds: 1,
      holdoutItems: 40,
      holdoutQueries: [40],
      evaluations: 4,
      lsePasses: 4,
    };
    const html = path.join(artifacts, 'api-report.html');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(html, report({ title: 'api <report>', shapes: { gallery: [50, 8] }, rows, tune }));
    const out = await render(html, path.join(artifacts, 'api-report.png'));
    expect(out.errors).toEqual([]);
    const curve = out.svgs.find((s) => s.label.startsWith('is: held-out R@1 vs betaQuery'));
    expect(curve).toBeDefined();
    expect(curve!.marks).toBe(1 + 4 + 1); // line, 4 points, the best-setting ring
    expect(readFileSync(html, 'utf8')).toContain('api &lt;report&gt;');
  }, 120_000);

  const real = path.resolve(root, '..', 'shared', 'realdata', 'crosslingual_fasttext', 'aligned', 'en-fr');
  // Under CI=true ../shared is required: the test runs (and fails) when it is missing.
  it.runIf(existsSync(real) || process.env.CI === 'true')('the shared en-fr report (with tuning curves) renders; screenshot kept as an artifact', async () => {
    const f = (n: string) => path.join(real, n);
    const tuneJson = path.join(artifacts, 'en-fr-tune.json');
    const t = spawnSync(process.execPath, [cli, 'tune', '--query-bank', f('query_bank.npy'), '--gallery-bank', f('gallery_bank.npy'), '--save', tuneJson], { encoding: 'utf8' });
    expect(t.status, t.stderr).toBe(0);
    const html = path.join(artifacts, 'report-en-fr.html');
    const r = spawnSync(
      process.execPath,
      [cli, 'eval', '--queries', f('query_test.npy'), '--gallery', f('gallery_test.npy'), '--query-bank', f('query_bank.npy'), '--gallery-bank', f('gallery_bank.npy'), '--methods', 'is,dual-dis,csls,nnn', '--html', html, '--tune', tuneJson, '--json'],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = await render(html, path.join(artifacts, 'report-en-fr.png'), 1180, path.join(artifacts, 'report-en-fr-small.png'));
    expect(out.errors).toEqual([]);
    expect(out.requests).toEqual([]);
    // t2v: R@K + 4 histograms; tuning: 6 curves
    expect(out.svgs).toHaveLength(1 + 4 + 6);
    for (const s of out.svgs) expect(s.marks, s.label).toBeGreaterThan(0);
  }, 180_000);
});
