// End-to-end tests of `dbnorm eval`: small .npy files written here, the CLI run as a child process,
// its numbers checked against plain float64 reference code (helpers.ts), and real data when present.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { writeNpySync } from '../dist/index.js';
import { refLse, refSimilarity, refTopK, rng } from './helpers.js';
import { sharedPath } from './shared.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-cli-eval-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Row {
  method: string;
  params: Record<string, number>;
  metrics: Record<string, number | null>;
  hubness: Record<string, number | null>;
  seconds: number;
  direction: string;
}

function run(args: string[], cwd = dir): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'eval', ...args], { cwd, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function runJson(args: string[], cwd = dir): Row[] {
  const r = run([...args, '--json'], cwd);
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}`);
  const doc = JSON.parse(r.stdout) as { results: Row[] };
  expect(Object.keys(doc)).toEqual(['results']);
  return doc.results;
}

/** A one-line error on stderr, without a stack trace. */
function expectOneLineError(stderr: string, ...parts: (string | RegExp)[]): void {
  const lines = stderr.trim().split('\n');
  const last = lines[lines.length - 1]!;
  // everything before the message is plain progress ("dbnorm eval: --x file: r × c")
  for (const l of lines.slice(0, -1)) expect(l).toMatch(/^dbnorm eval: --[a-z-]+ .+: \d+ × \d+$/);
  for (const p of parts) expect(last).toMatch(typeof p === 'string' ? new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : p);
  expect(stderr).not.toMatch(/\n\s+at /);
}

// ---------------------------------------------------------------------------------------------
// data: a small cross-modal set with a modality gap and two planted hubs

type M = { data: Float32Array; rows: number; cols: number };

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

function makeSet(seed: number, ng: number, c: number, mq: number, mg: number, d: number) {
  const r = rng(seed);
  const unit = (v: number[]): number[] => {
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  };
  const offQ = Array.from({ length: d }, () => 0.4 * gaussian(r));
  const offG = Array.from({ length: d }, () => 0.4 * gaussian(r));
  const concept = (): number[] => unit(Array.from({ length: d }, () => gaussian(r)));
  const view = (cpt: number[], off: number[]): number[] => unit(cpt.map((x, t) => x + (0.8 * gaussian(r)) / Math.sqrt(d) + off[t]!));
  const mat = (rows: number[][]): M => ({ data: Float32Array.from(rows.flat()), rows: rows.length, cols: d });
  const items = Array.from({ length: ng }, concept);
  const gallery = items.map((cpt) => view(cpt, offG));
  const qmean = unit(offQ);
  for (const h of [3, 7]) gallery[h] = unit(gallery[h]!.map((x, t) => 0.6 * x + 0.4 * qmean[t]!));
  const queries = items.flatMap((cpt) => Array.from({ length: c }, () => view(cpt, offQ)));
  const queryBank = Array.from({ length: mq }, () => view(concept(), offQ));
  const galleryBank = Array.from({ length: mg }, () => view(concept(), offG));
  return { queries: mat(queries), gallery: mat(gallery), queryBank: mat(queryBank), galleryBank: mat(galleryBank) };
}

function sims(a: M, b: M): M {
  return { data: Float32Array.from(refSimilarity(a.data, a.rows, b.data, b.rows, a.cols, 'cosine')), rows: a.rows, cols: b.rows };
}

// ---------------------------------------------------------------------------------------------
// float64 references

/** Metrics of a rows × cols score matrix whose row r has positives pos[r] (rank = best positive's). */
function refMetrics(s: ArrayLike<number>, rows: number, cols: number, pos: number[][]) {
  const ranks = pos.map((ps, r) => {
    const best = Math.max(...ps.map((j) => s[r * cols + j]!));
    let above = 0;
    for (let j = 0; j < cols; j++) if (!ps.includes(j) && s[r * cols + j]! > best) above++;
    return above;
  });
  const rec = (k: number): number => (100 * ranks.filter((x) => x < k).length) / rows;
  return { R1: rec(1), R5: rec(5), R10: rec(10), MnR: ranks.reduce((a, b) => a + b, 0) / rows + 1 };
}

function refSkewness(s: ArrayLike<number>, rows: number, cols: number, k: number): number {
  const nk = new Array<number>(cols).fill(0);
  for (const list of refTopK(s, rows, cols, k)) for (const j of list) nk[j]!++;
  const mu = (k * rows) / cols;
  const m2 = nk.reduce((a, x) => a + (x - mu) ** 2, 0) / cols;
  const m3 = nk.reduce((a, x) => a + (x - mu) ** 3, 0) / cols;
  return m3 / m2 ** 1.5;
}

function transpose(s: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = s[i * cols + j]!;
  return out;
}

/** Inverted softmax: β·S − L(j), L over the bank P (m × cols). */
function refIs(s: ArrayLike<number>, rows: number, cols: number, p: ArrayLike<number>, m: number, beta: number): Float64Array {
  const l = refLse(p, m, cols, beta);
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = beta * s[i * cols + j]! - l[j]!;
  return out;
}

function expectMetrics(row: Row, want: ReturnType<typeof refMetrics>): void {
  for (const key of ['R1', 'R5', 'R10'] as const) expect(row.metrics[key]).toBeCloseTo(want[key], 9);
  expect(row.metrics.MnR).toBeCloseTo(want.MnR, 9);
}

// ---------------------------------------------------------------------------------------------
// files

const NG = 40;
const C = 3;
const D = 16;
const one = makeSet(7, NG, 1, 60, 50, D);
const caps = makeSet(11, NG, C, 90, 50, D);
const f = (name: string): string => path.join(dir, name);

function save(prefix: string, set: ReturnType<typeof makeSet>): void {
  writeNpySync(f(`${prefix}q.npy`), set.queries);
  writeNpySync(f(`${prefix}g.npy`), set.gallery);
  writeNpySync(f(`${prefix}qb.npy`), set.queryBank);
  writeNpySync(f(`${prefix}gb.npy`), set.galleryBank);
  writeNpySync(f(`${prefix}s.npy`), sims(set.queries, set.gallery));
  writeNpySync(f(`${prefix}pq.npy`), sims(set.queryBank, set.gallery));
  writeNpySync(f(`${prefix}pg.npy`), sims(set.galleryBank, set.gallery));
  // v2t banks: visual bank × test captions, caption bank × test captions
  writeNpySync(f(`${prefix}v2t-pq.npy`), sims(set.galleryBank, set.queries));
  writeNpySync(f(`${prefix}v2t-pg.npy`), sims(set.queryBank, set.queries));
}
save('', one);
save('c-', caps);

const emb = (p = ''): string[] => ['--queries', f(`${p}q.npy`), '--gallery', f(`${p}g.npy`), '--query-bank', f(`${p}qb.npy`), '--gallery-bank', f(`${p}gb.npy`)];
const simArgs = (p = ''): string[] => ['--sims', f(`${p}s.npy`), '--query-bank-sims', f(`${p}pq.npy`), '--gallery-bank-sims', f(`${p}pg.npy`)];

const diagonal = Array.from({ length: NG }, (_, i) => [i]);
const captionsT2v = Array.from({ length: NG * C }, (_, i) => [Math.floor(i / C)]);
const captionsV2t = Array.from({ length: NG }, (_, j) => Array.from({ length: C }, (_, t) => j * C + t));

// ---------------------------------------------------------------------------------------------

describe('dbnorm eval: embeddings mode', () => {
  it('--json prints one object with none first, then the method, with params, metrics, hubness, seconds, direction', () => {
    const r = run([...emb(), '--method', 'dual-dis', '--json']);
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout) as { results: Row[] };
    expect(doc.results.map((x) => [x.method, x.direction])).toEqual([
      ['none', 't2v'],
      ['dual-dis', 't2v'],
    ]);
    const [none, dd] = doc.results as [Row, Row];
    expect(Object.keys(dd)).toEqual(['method', 'params', 'metrics', 'hubness', 'seconds', 'direction']);
    expect(none.params).toEqual({});
    expect(dd.params).toEqual({ betaQuery: 20, betaGallery: 1, k: 1 }); // library defaults for cosine
    expect(Object.keys(dd.metrics)).toEqual(['R1', 'R5', 'R10', 'MdR', 'MnR', 'mAP', 'n']);
    expect(dd.metrics.n).toBe(NG);
    expect(dd.hubness.k).toBe(10);
    for (const key of ['skewness', 'skewnessNonzero', 'robinHood', 'gini', 'antihubRate', 'hubOccurrence', 'groupieRatio', 'hubs']) {
      expect(typeof dd.hubness[key]).toBe('number');
    }
    expect(dd.seconds).toBeGreaterThan(0);
    // progress goes to stderr as plain lines (not a terminal)
    expect(r.stderr).toMatch(/\[2\/2\] t2v dual-dis: R@1 /);
  });

  it('t2v: none and IS agree with a float64 reference (R@K, MnR, N_k skewness)', () => {
    const rows = runJson([...emb(), '--method', 'is', '--beta-query', '15', '--hubness-k', '5']);
    const s = refSimilarity(one.queries.data, NG, one.gallery.data, NG, D, 'cosine');
    expectMetrics(rows[0]!, refMetrics(s, NG, NG, diagonal));
    expect(rows[0]!.hubness.k).toBe(5);
    expect(rows[0]!.hubness.skewness).toBeCloseTo(refSkewness(s, NG, NG, 5), 9);
    const p = refSimilarity(one.queryBank.data, 60, one.gallery.data, NG, D, 'cosine');
    const is = refIs(s, NG, NG, p, 60, 15);
    expect(rows[1]!.params).toEqual({ betaQuery: 15 });
    expectMetrics(rows[1]!, refMetrics(is, NG, NG, diagonal));
    expect(rows[1]!.hubness.skewness).toBeCloseTo(refSkewness(is, NG, NG, 5), 9);
    // the planted hubs are there, and IS reduces them
    expect(rows[0]!.hubness.skewness!).toBeGreaterThan(rows[1]!.hubness.skewness!);
  });

  it('v2t swaps the banks: IS for v2t uses the gallery bank against the test queries (never the t2v normalisation)', () => {
    const rows = runJson([...emb(), '--method', 'is', '--direction', 'both']);
    expect(rows.map((x) => `${x.direction} ${x.method}`)).toEqual(['t2v none', 't2v is', 'v2t none', 'v2t is']);
    const st = transpose(refSimilarity(one.queries.data, NG, one.gallery.data, NG, D, 'cosine'), NG, NG); // items × captions
    expectMetrics(rows[2]!, refMetrics(st, NG, NG, diagonal));
    const pv = refSimilarity(one.galleryBank.data, 50, one.queries.data, NG, D, 'cosine'); // visual bank × test captions
    expectMetrics(rows[3]!, refMetrics(refIs(st, NG, NG, pv, 50, 20), NG, NG, diagonal));
    expect(rows[3]!.hubness.skewness).toBeCloseTo(refSkewness(refIs(st, NG, NG, pv, 50, 20), NG, NG, 10), 9);
  });

  it('--methods: none is reported first even when listed later; dot products need β (exit 2 with the explanation)', () => {
    const rows = runJson([...emb(), '--methods', 'csls,none,nnn', '--csls-k', '5']);
    expect(rows.map((x) => x.method)).toEqual(['none', 'csls', 'nnn']);
    expect(rows[1]!.params).toEqual({ cslsK: 5 });
    expect(rows[2]!.params).toEqual({ nnnK: 128, nnnAlpha: 0.75 });
    const r = run([...emb(), '--method', 'dual-is', '--metric', 'dot', '--beta-query', '10']);
    expect(r.status).toBe(2);
    expectOneLineError(r.stderr, '--beta-gallery is required', 'inverse temperature');
    expect(runJson([...emb(), '--method', 'dual-is', '--metric', 'dot', '--beta-query', '10', '--beta-gallery', '2'])[1]!.params).toEqual({ betaQuery: 10, betaGallery: 2 });
  });

  it('captions per item: explicit, inferred and --gt give the same t2v and v2t (min over captions) results', () => {
    const base = [...emb('c-'), '--method', 'dis', '--direction', 'both', '--k', '2'];
    const explicit = runJson([...base, '--captions-per-item', String(C)]);
    const r = run([...base, '--json']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/ground truth: 3 captions per item/);
    const inferred = (JSON.parse(r.stdout) as { results: Row[] }).results;
    writeFileSync(f('gt.json'), JSON.stringify(captionsT2v.map((x, i) => (i % 2 ? x : x[0]))));
    const fromGt = runJson([...base, '--gt', f('gt.json')]);
    const strip = (rows: Row[]) => rows.map(({ seconds: _s, ...x }) => x);
    expect(strip(inferred)).toEqual(strip(explicit));
    expect(strip(fromGt)).toEqual(strip(explicit));
    const s = refSimilarity(caps.queries.data, NG * C, caps.gallery.data, NG, D, 'cosine');
    expectMetrics(explicit[0]!, refMetrics(s, NG * C, NG, captionsT2v));
    expect(explicit[2]!.direction).toBe('v2t');
    expect(explicit[2]!.metrics.n).toBe(NG);
    expectMetrics(explicit[2]!, refMetrics(transpose(s, NG * C, NG), NG, NG * C, captionsV2t));
  });

  it('--markdown and the default table', () => {
    const md = run([...emb(), '--method', 'is', '--markdown']);
    expect(md.status).toBe(0);
    const lines = md.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^\| dir \| method \| R@1 \| R@5 \| R@10 \| MdR \| MnR \| N10 skew \| hubs \| time \(s\) \|$/);
    expect(lines[1]).toMatch(/^\|(---\|)+$/);
    expect(lines[2]).toMatch(/^\| t2v \| none \| /);
    expect(lines[3]).toMatch(/^\| t2v \| is \| /);
    const human = run([...emb(), '--method', 'is', '--skewness', 'nonzero', '--ks', '1,2']);
    expect(human.status).toBe(0);
    expect(human.stdout).toMatch(/^dir\s+method\s+R@1\s+R@2\s+MdR/);
    expect(human.stdout).toMatch(/over items with N_k > 0/);
  });
});

describe('dbnorm eval: similarity mode', () => {
  it('t2v and v2t agree with embeddings mode (v2t with its own bank matrices)', () => {
    const a = runJson([...emb('c-'), '--methods', 'dual-is,csls', '--direction', 'both', '--beta-query', '20', '--beta-gallery', '1']);
    const b = runJson([
      ...simArgs('c-'),
      '--v2t-query-bank-sims',
      f('c-v2t-pq.npy'),
      '--v2t-gallery-bank-sims',
      f('c-v2t-pg.npy'),
      '--methods',
      'dual-is,csls',
      '--direction',
      'both',
      '--beta-query',
      '20',
      '--beta-gallery',
      '1',
    ]);
    expect(b.map((x) => `${x.direction} ${x.method}`)).toEqual(['t2v none', 't2v dual-is', 't2v csls', 'v2t none', 'v2t dual-is', 'v2t csls']);
    for (let i = 0; i < a.length; i++) {
      for (const key of ['R1', 'R5', 'R10', 'MdR', 'MnR', 'n']) expect(b[i]!.metrics[key]).toBeCloseTo(a[i]!.metrics[key]!, 6);
      expect(b[i]!.hubness.skewness).toBeCloseTo(a[i]!.hubness.skewness!, 6);
      expect(b[i]!.params).toEqual(a[i]!.params);
    }
  });

  it('v2t: none works on Sᵀ alone; a bank method without v2t bank matrices is a usage error', () => {
    const rows = runJson(['--sims', f('s.npy'), '--method', 'none', '--direction', 'v2t']);
    expect(rows.map((x) => `${x.direction} ${x.method}`)).toEqual(['v2t none']);
    const r = run([...simArgs(), '--method', 'is', '--beta-query', '20', '--direction', 'both']);
    expect(r.status).toBe(2);
    expectOneLineError(r.stderr, '--v2t-query-bank-sims', 'transposed');
    const nob = run(['--sims', f('s.npy'), '--query-bank-sims', f('pq.npy'), '--method', 'is']);
    expect(nob.status).toBe(2);
    expectOneLineError(nob.stderr, /--beta-query is required/);
  });
});

describe('dbnorm eval: errors', () => {
  const header = (descr: string, shape: string, fortran = false): Buffer => {
    let dict = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': ${shape}, }`;
    dict += ' '.repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + '\n';
    const b = Buffer.alloc(10);
    b.write('\x93NUMPY', 0, 'latin1');
    b[6] = 1;
    b.writeUInt16LE(dict.length, 8);
    return Buffer.concat([b, Buffer.from(dict, 'latin1')]);
  };
  const bad: [string, Buffer, RegExp][] = [
    ['int.npy', Buffer.concat([header('<i4', `(${NG}, ${D})`), Buffer.alloc(NG * D * 4)]), /unsupported dtype '<i4'/],
    ['fortran.npy', Buffer.concat([header('<f4', `(${NG}, ${D})`, true), Buffer.alloc(NG * D * 4)]), /fortran_order/],
    ['truncated.npy', Buffer.concat([header('<f4', `(${NG}, ${D})`), Buffer.alloc(100)]), /truncated/],
    ['garbage.npy', Buffer.from('this is not a numpy file at all\n'), /bad magic/],
  ];
  for (const [name, bytes, what] of bad) {
    it(`${name}: exit 1, one line naming the file and the problem`, () => {
      writeFileSync(f(name), bytes);
      const r = run(['--queries', f('q.npy'), '--gallery', f(name), '--method', 'none']);
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expectOneLineError(r.stderr, f(name), 'ERR_FORMAT', what);
    });
  }

  it('a missing file is a usage error (exit 2) naming the flag and the file', () => {
    const r = run(['--queries', f('q.npy'), '--gallery', f('nope.npy'), '--method', 'none']);
    expect(r.status).toBe(2);
    expectOneLineError(r.stderr, '--gallery', f('nope.npy'), 'no such file');
  });

  it('usage errors exit 2: no method, both --method and --methods, mixed modes, unknown method, missing bank', () => {
    const cases: [string[], string | RegExp][] = [
      [['--queries', f('q.npy'), '--gallery', f('g.npy')], '--method'],
      [[...emb(), '--method', 'is', '--methods', 'csls'], /cannot be used with/],
      [['--queries', f('q.npy'), '--gallery', f('g.npy'), '--sims', f('s.npy'), '--method', 'none'], 'cannot be mixed'],
      [['--queries', f('q.npy'), '--method', 'none'], '--gallery'],
      [[...emb(), '--method', 'qbnorm'], "unknown method 'qbnorm'"],
      [['--queries', f('q.npy'), '--gallery', f('g.npy'), '--method', 'is'], '--query-bank'],
      [['--queries', f('q.npy'), '--gallery', f('g.npy'), '--query-bank', f('qb.npy'), '--method', 'is', '--direction', 'v2t'], /--gallery-bank.*swap roles/],
      [[...emb(), '--method', 'is', '--direction', 'sideways'], /Allowed choices/],
      [[...emb(), '--method', 'is', '--json', '--markdown'], /cannot be used with/],
      [[...emb(), '--method', 'is', '--gt', f('gt.json'), '--captions-per-item', '2'], /cannot be used with/],
    ];
    for (const [args, msg] of cases) {
      const r = run(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expectOneLineError(r.stderr, msg);
    }
  });

  it('runtime errors exit 1: shape mismatches, a wrong caption count, bad ground truth', () => {
    writeNpySync(f('wide.npy'), { data: new Float32Array(NG * (D + 1)).fill(0.1), rows: NG, cols: D + 1 });
    const zero = new Float32Array(one.gallery.data);
    zero.fill(0, 5 * D, 6 * D);
    writeNpySync(f('zero-row.npy'), { data: zero, rows: NG, cols: D });
    writeFileSync(f('bad-gt.json'), '{"not": "an array"}');
    writeFileSync(f('range-gt.json'), JSON.stringify(diagonal.map((x, i) => (i === 4 ? [NG + 3] : x))));
    const cases: [string[], (string | RegExp)[]][] = [
      [['--queries', f('q.npy'), '--gallery', f('wide.npy'), '--method', 'none'], ['ERR_SHAPE', f('wide.npy'), 'dim 17']],
      [['--sims', f('s.npy'), '--query-bank-sims', f('c-v2t-pq.npy'), '--method', 'is', '--beta-query', '5'], ['ERR_SHAPE', f('c-v2t-pq.npy'), 'one column per gallery item']],
      [[...emb(), '--method', 'none', '--captions-per-item', '2'], ['ERR_SHAPE', '--captions-per-item 2']],
      [['--queries', f('q.npy'), '--gallery', f('zero-row.npy'), '--method', 'none'], ['ERR_NON_FINITE', `t2v none: ${f('zero-row.npy')}: row 5 has zero norm`]],
      [[...emb(), '--method', 'none', '--gt', f('bad-gt.json')], ['ERR_FORMAT', f('bad-gt.json'), 'JSON array']],
      [[...emb(), '--method', 'none', '--gt', f('range-gt.json')], ['ERR_SHAPE', f('range-gt.json'), `gallery item ${NG + 3}`]],
    ];
    for (const [args, parts] of cases) {
      const r = run(args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expectOneLineError(r.stderr, ...parts);
    }
  });
});

// ---------------------------------------------------------------------------------------------

const real = sharedPath('realdata/crosslingual_fasttext/aligned/en-fr', 'real-data eval tests') ?? '';
const haveReal = real !== '';

describe.skipIf(!haveReal)('dbnorm eval on real data (crosslingual_fasttext en-fr)', () => {
  const check = (rows: Row[]): void => {
    expect(rows.map((x) => x.method)).toEqual(['none', 'is']);
    const [none, is] = rows as [Row, Row];
    expect(none.metrics.n).toBe(400);
    expect(Math.abs(none.metrics.R1! - 71.0)).toBeLessThanOrEqual(0.05);
    expect(Math.abs(none.hubness.skewness! - 1.96)).toBeLessThanOrEqual(0.02);
    expect(Math.abs(is.metrics.R1! - 73.5)).toBeLessThanOrEqual(0.05);
    expect(is.params).toEqual({ betaQuery: 10 });
    expect(is.hubness.skewness!).toBeLessThan(none.hubness.skewness! / 2);
  };

  it('embeddings: raw R@1 71.0, N10 skewness 1.96; IS (β 10) R@1 73.5', () => {
    check(runJson(['--queries', 'query_test.npy', '--gallery', 'gallery_test.npy', '--query-bank', 'query_bank.npy', '--gallery-bank', 'gallery_bank.npy', '--method', 'is', '--beta-query', '10'], real));
  });

  it('similarities: the same numbers from sims_test.npy and sims_qbank_test.npy', () => {
    check(runJson(['--sims', 'sims_test.npy', '--query-bank-sims', 'sims_qbank_test.npy', '--method', 'is', '--beta-query', '10'], real));
  });
});
