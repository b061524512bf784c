import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DbnormError, METHODS, METHOD_INFO, PARAM_INFO, type Method, Normalizer } from '../dist/index.js';
import { randomMatrix } from './helpers.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-persist-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEADER_LEN = 280; // format version 3, documented in crate/src/persist/mod.rs

const NG = 300;
const D = 16;
const gallery = randomMatrix(NG, D, 1);
const queryBank = randomMatrix(150, D, 2);
const galleryBank = randomMatrix(90, D, 3);
const queries = randomMatrix(25, D, 4);
const scale = (m: { data: Float32Array; rows: number; cols: number }, f: number) => ({ ...m, data: m.data.map((v) => v * f) });
const qbSims = scale(randomMatrix(150, NG, 5), 30);
const gbSims = scale(randomMatrix(90, NG, 6), 30);
const qSims = scale(randomMatrix(25, NG, 7), 30);

const bits = (a: Float32Array | Float64Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);

interface Case {
  label: string;
  norm: Normalizer;
  input: { data: Float32Array; rows: number; cols: number };
}

function cases(): Case[] {
  const out: Case[] = [];
  for (const method of METHODS) {
    const info = METHOD_INFO.find((m) => m.id === method)!;
    const extra = { k: 3, cslsK: 5, nnnK: 7, nnnAlpha: 0.6 };
    // Off cosine embeddings every cosine-only default (β, τ) is required: the method's own, from the table.
    const required = Object.fromEntries(PARAM_INFO.filter((p) => p.defaultCosineOnly && info.params.includes(p.name)).map((p) => [p.name, p.default]));
    out.push({ label: `${method}/cosine`, norm: Normalizer.fitSync({ gallery, queryBank, galleryBank }, { method, ...extra, leakGuard: 'off' }), input: queries });
    out.push({
      label: `${method}/dot`,
      norm: Normalizer.fitSync({ gallery, queryBank, galleryBank, metric: 'dot' }, { method, ...required, betaQuery: 2.5, betaGallery: 0.7, ...extra, leakGuard: 'off' }),
      input: queries,
    });
    if (info.embeddingsOnly) continue;
    const cross = info.crossBankSims ? { queryBankGalleryBankSims: randomMatrix(queryBank.rows, galleryBank.rows, 31) } : {};
    out.push({
      label: `${method}/similarities`,
      norm: Normalizer.fitSimilaritiesSync({ queryBankSims: qbSims, galleryBankSims: gbSims, ...cross } as never, { method, ...required, betaQuery: 0.2, betaGallery: 0.05, ...extra }),
      input: qSims,
    });
  }
  return out;
}

function expectIdentical(a: Normalizer, b: Normalizer, c: Case): void {
  expect(b.options, c.label).toEqual(a.options);
  expect([b.method, b.mode, b.metric, b.dim, b.galleryCount], c.label).toEqual([a.method, a.mode, a.metric, a.dim, a.galleryCount]);
  expect(bits(b.scoresSync(c.input).data), c.label).toEqual(bits(a.scoresSync(c.input).data));
  for (const k of [1, 10, NG]) {
    const [x, y] = [a.searchSync(c.input, { k }), b.searchSync(c.input, { k })];
    expect(y.indices, `${c.label} k=${k}`).toEqual(x.indices);
    expect(bits(y.scores), `${c.label} k=${k}`).toEqual(bits(x.scores));
  }
  const [sa, sb] = [a.stats(), b.stats()];
  for (const key of ['lseQuery', 'lseGallery', 'topMeanQuery'] as const) {
    expect(sb[key] === undefined, `${c.label} ${key}`).toBe(sa[key] === undefined);
    if (sa[key]) expect(bits(sb[key]!), `${c.label} ${key}`).toEqual(bits(sa[key]!));
  }
  expect(sb.activeQuery, c.label).toEqual(sa.activeQuery);
  expect(sb.activeGallery, c.label).toEqual(sa.activeGallery);
}

async function rejection(p: Promise<unknown>): Promise<DbnormError> {
  try {
    await p;
  } catch (e) {
    return e as DbnormError;
  }
  throw new Error('expected a rejection');
}

function thrown(f: () => unknown): DbnormError {
  try {
    f();
  } catch (e) {
    return e as DbnormError;
  }
  throw new Error('expected an error');
}

describe('Normalizer.save / Normalizer.load', () => {
  const all = cases();
  const full = all.find((c) => c.label === 'dual-dis/cosine')!;

  it('round-trips every method in both modes bit-exactly (async and sync)', async () => {
    for (const c of all) {
      const f1 = path.join(dir, `${c.label.replace('/', '_')}-async.dbn`);
      const f2 = path.join(dir, `${c.label.replace('/', '_')}-sync.dbn`);
      await c.norm.save(f1);
      c.norm.saveSync(f2);
      expect(readFileSync(f1).equals(readFileSync(f2)), c.label).toBe(true);
      const a = await Normalizer.load(f1);
      const b = Normalizer.loadSync(f2);
      expect(a).toBeInstanceOf(Normalizer);
      expectIdentical(c.norm, a, c);
      expectIdentical(c.norm, b, c);
      // Async search on a loaded normaliser too.
      const [x, y] = [await c.norm.search(c.input, { k: 10 }), await a.search(c.input, { k: 10 })];
      expect(y.indices).toEqual(x.indices);
      expect(bits(y.scores)).toEqual(bits(x.scores));
    }
    // No temporary files are left next to the saved ones.
    expect(readdirSync(dir).filter((f) => !f.endsWith('.dbn'))).toEqual([]);
  });

  it('keeps null betas null and explicit parameters exact', async () => {
    const f = path.join(dir, 'opts.dbn');
    const n = Normalizer.fitSync({ gallery, queryBank }, { method: 'nnn', nnnK: 33, nnnAlpha: 0.1 + 0.2, leakGuard: 'off' });
    await n.save(f);
    const m = await Normalizer.load(f);
    expect(m.options).toEqual(n.options);
    expect(m.options).toMatchObject({ method: 'nnn', betaQuery: null, betaGallery: null, k: 1, cslsK: 10, nnnK: 33, nnnAlpha: 0.1 + 0.2 });
    const is = Normalizer.fitSimilaritiesSync({ queryBankSims: qbSims }, { method: 'is', betaQuery: 1 / 3 });
    is.saveSync(f);
    expect(Normalizer.loadSync(f).options).toEqual(is.options);
    expect(is.options).toMatchObject({ method: 'is', betaQuery: 1 / 3, betaGallery: null, k: 1, cslsK: 10, nnnK: 128, nnnAlpha: 0.75 });
  });

  it('overwrites an existing file', async () => {
    const f = path.join(dir, 'over.dbn');
    await full.norm.save(f);
    const other = all.find((c) => c.label === 'csls/similarities')!;
    await other.norm.save(f);
    expectIdentical(other.norm, await Normalizer.load(f), other);
  });

  it('rejects truncated files with ERR_FORMAT naming the file (sync and async)', async () => {
    const f = path.join(dir, 'full.dbn');
    full.norm.saveSync(f);
    const bytes = readFileSync(f);
    const cuts = [...Array.from({ length: HEADER_LEN + 1 }, (_, i) => i), HEADER_LEN + 1, (bytes.length / 2) | 0, bytes.length - 5, bytes.length - 4, bytes.length - 1];
    const t = path.join(dir, 'truncated.dbn');
    for (const cut of cuts) {
      writeFileSync(t, bytes.subarray(0, cut));
      const e = thrown(() => Normalizer.loadSync(t));
      expect(e, `cut ${cut}`).toBeInstanceOf(DbnormError);
      expect(e.code, `cut ${cut}: ${e.message}`).toBe('ERR_FORMAT');
      expect(e.message).toContain(t);
    }
    for (const cut of [0, 7, 100, HEADER_LEN, bytes.length - 1]) {
      writeFileSync(t, bytes.subarray(0, cut));
      const e = await rejection(Normalizer.load(t));
      expect(e).toBeInstanceOf(DbnormError);
      expect(e.code).toBe('ERR_FORMAT');
    }
  });

  it('rejects flipped bytes (checksum), a wrong version and a wrong endianness marker', async () => {
    const bytes = readFileSync(path.join(dir, 'full.dbn'));
    const t = path.join(dir, 'corrupt.dbn');
    const end = bytes.length - 4;
    for (const pos of [HEADER_LEN, HEADER_LEN + 1000, (bytes.length / 3) | 0, (bytes.length / 2) | 0, end - 1, end, bytes.length - 1]) {
      const c = Buffer.from(bytes);
      c[pos]! ^= 0x20;
      writeFileSync(t, c);
      const e = thrown(() => Normalizer.loadSync(t));
      expect([e.code, e.message.includes('checksum')], `flip at ${pos}: ${e.message}`).toEqual(['ERR_FORMAT', true]);
      const a = await rejection(Normalizer.load(t));
      expect(a.code).toBe('ERR_FORMAT');
    }
    for (const pos of [16, 24, 72, 80, 104, 200]) {
      const c = Buffer.from(bytes);
      c[pos]! ^= 0x01;
      writeFileSync(t, c);
      expect(thrown(() => Normalizer.loadSync(t)).code, `header flip at ${pos}`).toBe('ERR_FORMAT');
    }
    const v = Buffer.from(bytes);
    v.writeUInt32LE(2, 8);
    writeFileSync(t, v);
    const ev = thrown(() => Normalizer.loadSync(t));
    expect(ev.code).toBe('ERR_FORMAT');
    expect(ev.message).toContain('unsupported format version 2 (this build reads 1 and 3)');
    const w = Buffer.from(bytes);
    w.writeUInt32BE(0x0a0b0c0d, 12);
    writeFileSync(t, w);
    const ew = await rejection(Normalizer.load(t));
    expect(ew.code).toBe('ERR_FORMAT');
    expect(ew.message).toContain('wrong endianness');
  });

  it('rejects garbage files', async () => {
    const t = path.join(dir, 'garbage.dbn');
    for (const content of [Buffer.alloc(0), Buffer.from('not a normaliser'), Buffer.from(randomMatrix(1, 300, 9).data.buffer)]) {
      writeFileSync(t, content);
      expect(thrown(() => Normalizer.loadSync(t)).code).toBe('ERR_FORMAT');
      expect((await rejection(Normalizer.load(t))).code).toBe('ERR_FORMAT');
    }
  });

  it('reports missing files and unwritable paths as ERR_IO, bad arguments as ERR_PARAM', async () => {
    const missing = path.join(dir, 'missing.dbn');
    const e = thrown(() => Normalizer.loadSync(missing));
    expect(e).toBeInstanceOf(DbnormError);
    expect(e.code).toBe('ERR_IO');
    expect(e.message).toContain(missing);
    expect((await rejection(Normalizer.load(missing))).code).toBe('ERR_IO');
    const nowhere = path.join(dir, 'no', 'such', 'dir', 'x.dbn');
    expect(thrown(() => full.norm.saveSync(nowhere)).code).toBe('ERR_IO');
    expect((await rejection(full.norm.save(nowhere))).code).toBe('ERR_IO');
    expect(existsSync(path.join(dir, 'no'))).toBe(false);
    expect(thrown(() => Normalizer.loadSync(dir)).code).toBe('ERR_IO');
    expect(thrown(() => Normalizer.loadSync('' as string)).code).toBe('ERR_PARAM');
    expect((await rejection(Normalizer.load(42 as unknown as string))).code).toBe('ERR_PARAM');
    expect(thrown(() => full.norm.saveSync(undefined as unknown as string)).code).toBe('ERR_PARAM');
    expect((await rejection(full.norm.save(''))).code).toBe('ERR_PARAM');
  });

  it('stays healthy after every failure: the original and a fresh load still work', async () => {
    const f = path.join(dir, 'healthy.dbn');
    await full.norm.save(f);
    const m = await Normalizer.load(f);
    expectIdentical(full.norm, m, full);
    const c = await Promise.all(
      Array.from({ length: 8 }, (_, i) => Normalizer.load(i % 2 ? f : path.join(dir, 'missing.dbn')).then(
        () => 'ok',
        (e: DbnormError) => e.code,
      )),
    );
    expect(c).toEqual(['ERR_IO', 'ok', 'ERR_IO', 'ok', 'ERR_IO', 'ok', 'ERR_IO', 'ok']);
  });

  it('every method name survives', () => {
    const names = new Set<Method>();
    for (const c of all) names.add(Normalizer.loadSync(path.join(dir, `${c.label.replace('/', '_')}-sync.dbn`)).method);
    expect([...names].sort()).toEqual([...METHODS].sort());
  });
});
