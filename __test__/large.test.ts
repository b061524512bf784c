// Large-gallery paths (issue 11): streamed evaluation equals the materialised one bit for bit (synthetic
// sets with heavy ties and many positives, and the real sets in ../shared/realdata), and the offline
// verbs `dbnorm fit / search / rerank` agree with the library.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { type GroundTruth, METHODS, METHOD_INFO, Matrix, type Method, Normalizer, evaluate, readNpy, readNpySync, writeNpySync } from '../dist/index.js';
import { rng } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-large-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Integer-valued rows (dot products of small integers tie a lot). */
function quantised(rows: number, cols: number, seed: number): Matrix {
  const r = rng(seed);
  return new Matrix(Float32Array.from({ length: rows * cols }, () => Math.round(r() * 4 - 2)), rows, cols);
}

function gaussianMatrix(rows: number, cols: number, seed: number): Matrix {
  const r = rng(seed);
  return new Matrix(Float32Array.from({ length: rows * cols }, () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())), rows, cols);
}

const OPTS: Partial<Record<Method, object>> = {
  is: { betaQuery: 4 },
  dis: { betaQuery: 4, k: 2 },
  'dual-is': { betaQuery: 4, betaGallery: 2 },
  'dual-dis': { betaQuery: 4, betaGallery: 2, k: 2 },
  csls: { cslsK: 5 },
  nnn: { nnnK: 8, nnnAlpha: 0.5 },
  sn: { tau: 0.5 },
  'dual-sn': { tau: 0.5, iterations: 5 },
};

/** Methods that run in similarity mode (the others need embeddings and are refused there). */
const SIM_METHODS = METHODS.filter((m) => !METHOD_INFO.find((i) => i.id === m)!.embeddingsOnly);

function methodOpts(method: Method): { method: Method } {
  return { method, ...(OPTS[method] ?? {}) };
}

/** Streamed and materialised metrics of `norm` on `q`, for every tie mode and the QB-Norm switch: equal. */
async function expectSame(norm: Normalizer, q: Matrix, gt: GroundTruth, what: string): Promise<void> {
  const full = await norm.scores(q);
  for (const ties of ['average', 'optimistic', 'pessimistic'] as const) {
    for (const qbnormCompat of [false, true]) {
      const opts = { ties, qbnormCompat, ks: [1, 5, 10, 50] };
      const want = await evaluate(full, gt, opts);
      const got = await norm.evaluate(q, gt, opts);
      // toEqual compares NaN as equal and numbers with Object.is: bit-identical results
      expect(got, `${what} ${ties} ${qbnormCompat}`).toEqual(want);
      expect(norm.evaluateSync(q, gt, opts)).toEqual(want);
    }
  }
}

describe('streamed evaluation (Normalizer.evaluate) equals evaluate(scores)', () => {
  const g = quantised(70, 6, 1);
  const q = quantised(140, 6, 2);
  const qb = quantised(90, 6, 3);
  const gb = quantised(60, 6, 4);
  const positives = Array.from({ length: 140 }, (_, i) => (i % 7 === 0 ? [] : i % 3 === 0 ? [i % 70, (i * 11) % 70, (i * 29) % 70, i % 70] : [Math.floor(i / 2)]));

  for (const method of METHODS) {
    it(`${method}: ties, captions, many positives; both directions`, async () => {
      const t2v = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb, metric: 'dot' }, methodOpts(method));
      await expectSame(t2v, q, { captionsPerItem: 2 }, `${method} captions`);
      await expectSame(t2v, q, { positives }, `${method} explicit`);
      // v2t: the gallery items query a normaliser fitted on the captions (banks swap roles)
      const v2t = await Normalizer.fit({ gallery: q, queryBank: gb, galleryBank: qb, metric: 'dot' }, methodOpts(method));
      const inv = Array.from({ length: 70 }, (_, j) => [2 * j, 2 * j + 1]);
      await expectSame(v2t, g, { positives: inv }, `${method} v2t`);
    });
  }

  it('similarity mode', async () => {
    const s = quantised(50, 40, 5);
    const qs = quantised(30, 40, 6);
    const gs = quantised(20, 40, 7);
    const hs = quantised(30, 20, 8); // query bank × gallery bank (dual-sn)
    for (const method of SIM_METHODS) {
      const norm = await Normalizer.fitSimilarities({ queryBankSims: qs, galleryBankSims: gs, queryBankGalleryBankSims: hs, galleryCount: 40 }, methodOpts(method));
      await expectSame(norm, s, { positives: Array.from({ length: 50 }, (_, i) => [i % 40, (i * 3) % 40]) }, `sims ${method}`);
    }
  });

  it('rejects v2t and a wrong width with coded errors', async () => {
    const norm = await Normalizer.fit({ gallery: g, metric: 'dot' }, { method: 'none' });
    await expect(norm.evaluate(q, { captionsPerItem: 2 }, { direction: 'v2t' } as object)).rejects.toMatchObject({ code: 'ERR_PARAM' });
    await expect(norm.evaluate(quantised(4, 5, 9), 'diagonal')).rejects.toMatchObject({ code: 'ERR_SHAPE' });
    await expect(norm.evaluate(q, 'diagonal')).rejects.toMatchObject({ code: 'ERR_SHAPE' });
  });
});

// ---------------------------------------------------------------------------------------------
// real data

const real = path.resolve(root, '..', 'shared', 'realdata');
const haveReal = existsSync(real);
if (!haveReal && process.env.CI === 'true') throw new Error(`${real} is missing: under CI=true ../shared/realdata is required`);
if (!haveReal) console.log(`skipping real-data streamed-evaluation tests: ${real} not found`);

describe.skipIf(!haveReal)('streamed evaluation on ../shared/realdata', { timeout: 60_000 }, () => {
  it('crosslingual_fasttext en-fr, en-ru: every method (cosine embeddings)', async () => {
    for (const pair of ['en-fr', 'en-ru']) {
      const d = path.join(real, 'crosslingual_fasttext', 'aligned', pair);
      const [q, g, qb, gb] = ['query_test', 'gallery_test', 'query_bank', 'gallery_bank'].map((f) => readNpySync(path.join(d, `${f}.npy`))) as [Matrix, Matrix, Matrix, Matrix];
      for (const method of METHODS) {
        const norm = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb }, methodOpts(method));
        await expectSame(norm, q, 'diagonal', `${pair} ${method}`);
      }
    }
  });

  it('flickr8k_clip100: 5 captions per image, t2i and i2t', async () => {
    const d = path.join(real, 'flickr8k_clip100');
    const index = JSON.parse(readFileSync(path.join(d, 'index.json'), 'utf8')) as { caption_to_image: number[]; test_images: number[]; train_images: number[] };
    const image = readNpySync(path.join(d, 'image.npy'));
    const text = readNpySync(path.join(d, 'text.npy'));
    const pick = (m: Matrix, rows: number[]): Matrix => {
      const out = new Float32Array(rows.length * m.cols);
      rows.forEach((r, i) => out.set(m.data.subarray(r * m.cols, (r + 1) * m.cols), i * m.cols));
      return new Matrix(out, rows.length, m.cols);
    };
    const captionsOf = (imgs: number[]): number[] => imgs.flatMap((im) => index.caption_to_image.flatMap((x, c) => (x === im ? [c] : [])));
    const testCaps = captionsOf(index.test_images);
    const pos = testCaps.map((c) => [index.test_images.indexOf(index.caption_to_image[c]!)]);
    const [q, g, qb, gb] = [pick(text, testCaps), pick(image, index.test_images), pick(text, captionsOf(index.train_images)), pick(image, index.train_images)];
    const inv = index.test_images.map((_, j) => pos.flatMap((p, i) => (p[0] === j ? [i] : [])));
    for (const method of METHODS) {
      const t2i = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb }, methodOpts(method));
      await expectSame(t2i, q, { positives: pos }, `flickr t2i ${method}`);
      const i2t = await Normalizer.fit({ gallery: q, queryBank: gb, galleryBank: qb }, methodOpts(method));
      await expectSame(i2t, g, { positives: inv }, `flickr i2t ${method}`);
    }
  });

  it('hm_products_clip1126: similarity mode', async () => {
    const d = path.join(real, 'hm_products_clip1126');
    const s = readNpySync(path.join(d, 'sims_test_t2i.npy'));
    const qs = readNpySync(path.join(d, 'sims_qbank_test_t2i.npy'));
    for (const method of ['none', 'is', 'dis', 'csls', 'nnn'] as Method[]) {
      const norm = await Normalizer.fitSimilarities({ queryBankSims: qs, galleryCount: s.cols }, { ...methodOpts(method), ...(method === 'is' || method === 'dis' ? { betaQuery: 20 } : {}) });
      await expectSame(norm, s, 'diagonal', `hm ${method}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// dbnorm fit / search / rerank

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Reads a C-order 2-D `.npy` written by the verbs (`<i8` or `<f4`). */
function readOut(file: string): { descr: string; rows: number; cols: number; values: number[] } {
  const b = readFileSync(path.join(dir, file));
  const hlen = b.readUInt16LE(8);
  const header = b.toString('latin1', 10, 10 + hlen);
  const descr = /'descr': '([^']+)'/.exec(header)![1]!;
  const [rows, cols] = /'shape': \((\d+), (\d+)\)/.exec(header)!.slice(1).map(Number) as [number, number];
  const start = 10 + hlen;
  expect(start % 64).toBe(0);
  const values: number[] = [];
  for (let i = 0; i < rows * cols; i++) values.push(descr === '<i8' ? Number(b.readBigInt64LE(start + 8 * i)) : b.readFloatLE(start + 4 * i));
  return { descr, rows, cols, values };
}

function writeIdsNpy(file: string, rows: number, cols: number, ids: number[], descr = '<i8'): void {
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  dict = dict.padEnd(64 - 11, ' ') + '\n';
  const h = Buffer.alloc(10);
  h.write('\x93NUMPY', 0, 'latin1');
  h[6] = 1;
  h.writeUInt16LE(dict.length, 8);
  const size = descr === '<i8' ? 8 : 4;
  const data = Buffer.alloc(rows * cols * size);
  ids.forEach((v, i) => (size === 8 ? data.writeBigInt64LE(BigInt(v), i * 8) : data.writeInt32LE(v, i * 4)));
  writeFileSync(path.join(dir, file), Buffer.concat([h, Buffer.from(dict, 'latin1'), data]));
}

describe('dbnorm fit / search / rerank', () => {
  const g = gaussianMatrix(300, 16, 11);
  const q = gaussianMatrix(40, 16, 12);
  const qb = gaussianMatrix(200, 16, 13);
  const gb = gaussianMatrix(150, 16, 14);
  for (const [f, m] of [['g.npy', g], ['q.npy', q], ['qb.npy', qb], ['gb.npy', gb]] as const) writeNpySync(path.join(dir, f), m);

  it('fit + search (.npy and .jsonl) match Normalizer.fit + search', async () => {
    const fit = run(['fit', '--gallery', 'g.npy', '--query-bank', 'qb.npy', '--gallery-bank', 'gb.npy', '--method', 'dual-dis', '--beta-query', '15', '--k', '2', '--out', 'n.dbn', '--threads', '1']);
    expect(fit.status, fit.stderr).toBe(0);
    expect(fit.stdout).toBe('');
    const norm = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb }, { method: 'dual-dis', betaQuery: 15, k: 2 });
    const want = await norm.search(q, { k: 7 });

    const s = run(['search', '--normalizer', 'n.dbn', '--queries', 'q.npy', '--k', '7', '--out', 'top.npy', '--scores-out', 's.npy']);
    expect(s.status, s.stderr).toBe(0);
    const idx = readOut('top.npy');
    expect([idx.descr, idx.rows, idx.cols]).toEqual(['<i8', 40, 7]);
    expect(idx.values).toEqual(Array.from(want.indices));
    const sc = readOut('s.npy');
    expect([sc.descr, sc.rows, sc.cols]).toEqual(['<f4', 40, 7]);
    expect(Float32Array.from(sc.values)).toEqual(want.scores);

    writeFileSync(path.join(dir, 'ids.txt'), Array.from({ length: 300 }, (_, j) => `item-${j}`).join('\n') + '\n');
    const j = run(['search', '--normalizer', 'n.dbn', '--queries', 'q.npy', '--k', '7', '--out', 'top.jsonl', '--ids', 'ids.txt']);
    expect(j.status, j.stderr).toBe(0);
    const lines = readFileSync(path.join(dir, 'top.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { query: number; ids: string[]; scores: number[] });
    expect(lines).toHaveLength(40);
    expect(lines[3]!.query).toBe(3);
    expect(lines[3]!.ids).toEqual(Array.from(want.indices.subarray(21, 28)).map((x) => `item-${x}`));
    expect(Float32Array.from(lines[3]!.scores)).toEqual(want.scores.subarray(21, 28));
  }, 60_000);

  it('rerank: candidate lists (<i8 and <i4) re-scored like Normalizer.rerank', async () => {
    expect(run(['fit', '--gallery', 'g.npy', '--query-bank', 'qb.npy', '--method', 'is', '--beta-query', '10', '--out', 'is.dbn']).status).toBe(0);
    const norm = await Normalizer.fit({ gallery: g, queryBank: qb }, { method: 'is', betaQuery: 10 });
    const r = rng(3);
    const cand = Array.from({ length: 40 * 12 }, () => Math.floor(r() * 300));
    const want = await norm.rerank(q, Uint32Array.from(cand));
    for (const descr of ['<i8', '<i4']) {
      writeIdsNpy('cand.npy', 40, 12, cand, descr);
      const out = run(['rerank', '--normalizer', 'is.dbn', '--queries', 'q.npy', '--candidates', 'cand.npy', '--out', 'rr.npy', '--scores-out', 'rs.npy']);
      expect(out.status, out.stderr).toBe(0);
      expect(readOut('rr.npy').values).toEqual(Array.from(want.indices));
      expect(Float32Array.from(readOut('rs.npy').values)).toEqual(want.scores);
    }
  }, 60_000);

  it('usage errors exit 2, data errors exit 1, each with one line', () => {
    const oneLine = (stderr: string, re: RegExp): void => {
      const last = stderr.trim().split('\n').pop()!;
      expect(last).toMatch(re);
      expect(stderr).not.toMatch(/\n\s+at /);
    };
    expect(run(['fit', '--gallery', 'g.npy', '--method', 'none', '--out', 'n.dbn']).status).toBe(0);
    writeIdsNpy('cand.npy', 40, 12, Array.from({ length: 480 }, (_, i) => i % 300));
    let x = run(['fit', '--gallery', 'g.npy', '--method', 'is', '--out', 'x.dbn']);
    expect(x.status).toBe(2);
    oneLine(x.stderr, /needs --query-bank/);
    x = run(['fit', '--gallery', 'nope.npy', '--method', 'none', '--out', 'x.dbn']);
    expect(x.status).toBe(2);
    oneLine(x.stderr, /--gallery nope\.npy: no such file/);
    x = run(['fit', '--gallery', 'g.npy', '--method', 'bogus', '--out', 'x.dbn']);
    expect(x.status).toBe(2);
    x = run(['search', '--normalizer', 'n.dbn', '--queries', 'q.npy', '--out', 'top.csv']);
    expect(x.status).toBe(2);
    oneLine(x.stderr, /expected a \.npy or \.jsonl/);
    x = run(['search', '--normalizer', 'n.dbn', '--queries', 'q.npy', '--out', 'top.npy', '--ids', 'ids.txt']);
    expect(x.status).toBe(2);
    x = run(['search', '--normalizer', 'g.npy', '--queries', 'q.npy', '--out', 'top.npy']);
    expect(x.status).toBe(1);
    oneLine(x.stderr, /^dbnorm: error: ERR_/);
    writeNpySync(path.join(dir, 'q5.npy'), gaussianMatrix(3, 5, 1));
    x = run(['search', '--normalizer', 'n.dbn', '--queries', 'q5.npy', '--out', 'top.npy']);
    expect(x.status).toBe(1);
    oneLine(x.stderr, /ERR_SHAPE/);
    writeIdsNpy('bad.npy', 40, 2, Array.from({ length: 80 }, (_, i) => (i === 5 ? 300 : 1)));
    x = run(['rerank', '--normalizer', 'n.dbn', '--queries', 'q.npy', '--candidates', 'bad.npy', '--out', 'rr.npy']);
    expect(x.status).toBe(1);
    oneLine(x.stderr, /ERR_SHAPE.*id 300 at row 2/);
    writeFileSync(path.join(dir, 'trunc.npy'), readFileSync(path.join(dir, 'cand.npy')).subarray(0, 100));
    x = run(['rerank', '--normalizer', 'n.dbn', '--queries', 'q.npy', '--candidates', 'trunc.npy', '--out', 'rr.npy']);
    expect(x.status).toBe(1);
    oneLine(x.stderr, /ERR_FORMAT.*trunc\.npy/);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------
// memory-mapped and half-precision inputs

function npyBytes(descr: string, rows: number, cols: number, data: Buffer): Buffer {
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  dict = dict.padEnd(64 - 11, ' ') + '\n';
  const h = Buffer.alloc(10);
  h.write('\x93NUMPY', 0, 'latin1');
  h[6] = 1;
  h.writeUInt16LE(dict.length, 8);
  return Buffer.concat([h, Buffer.from(dict, 'latin1'), data]);
}

describe('readNpy(path, { mmap: true })', () => {
  it('mapped <f4 equals the plain read, and fit/search/evaluate on it are bit-identical', async () => {
    const g = gaussianMatrix(500, 12, 21);
    const q = gaussianMatrix(60, 12, 22);
    const qb = gaussianMatrix(80, 12, 23);
    writeNpySync(path.join(dir, 'mg.npy'), g);
    writeNpySync(path.join(dir, 'mq.npy'), q);
    writeNpySync(path.join(dir, 'mqb.npy'), qb);
    const mapped = readNpySync(path.join(dir, 'mg.npy'), { mmap: true });
    expect([mapped.rows, mapped.cols]).toEqual([500, 12]);
    expect(mapped.data).toEqual(g.data);
    const [mg, mq, mqb] = await Promise.all(['mg', 'mq', 'mqb'].map((f) => readNpy(path.join(dir, `${f}.npy`), { mmap: true })));
    const a = await Normalizer.fit({ gallery: mg!, queryBank: mqb! }, { method: 'csls', cslsK: 4 });
    const b = await Normalizer.fit({ gallery: g, queryBank: qb }, { method: 'csls', cslsK: 4 });
    expect(await a.search(mq!, { k: 9 })).toEqual(await b.search(q, { k: 9 }));
    const gt = { positives: Array.from({ length: 60 }, (_, i) => [i, i + 100]) };
    expect(await a.evaluate(mq!, gt)).toEqual(await b.evaluate(q, gt));
    // writes through the mapping stay private: the file is unchanged
    mapped.data[0] = 42;
    expect(readNpySync(path.join(dir, 'mg.npy')).data[0]).toBe(g.data[0]);
  });

  it('<f2 and <f8 files (converted), and bad files keep their coded errors', () => {
    const half = Buffer.alloc(8);
    [0x3c00, 0xc000, 0x3800, 0x7bff].forEach((b, i) => half.writeUInt16LE(b, 2 * i));
    writeFileSync(path.join(dir, 'h.npy'), npyBytes('<f2', 2, 2, half));
    for (const mmap of [false, true]) expect(Array.from(readNpySync(path.join(dir, 'h.npy'), { mmap }).data)).toEqual([1, -2, 0.5, 65504]);
    const f8 = Buffer.alloc(16);
    f8.writeDoubleLE(0.1, 0);
    f8.writeDoubleLE(-3, 8);
    writeFileSync(path.join(dir, 'd.npy'), npyBytes('<f8', 1, 2, f8));
    expect(readNpySync(path.join(dir, 'd.npy'), { mmap: true }).data).toEqual(Float32Array.from([0.1, -3]));
    // truncated, NaN, missing: the same codes as the plain reader
    writeFileSync(path.join(dir, 'tr.npy'), npyBytes('<f4', 2, 2, Buffer.alloc(12)));
    const nan = Buffer.alloc(16);
    nan.writeFloatLE(NaN, 4);
    writeFileSync(path.join(dir, 'nan.npy'), npyBytes('<f4', 2, 2, nan));
    for (const [f, code] of [['tr.npy', 'ERR_FORMAT'], ['nan.npy', 'ERR_NON_FINITE'], ['missing.npy', 'ERR_IO']] as const) {
      const file = path.join(dir, f);
      expect(() => readNpySync(file, { mmap: true }), f).toThrow(expect.objectContaining({ code }));
      expect(() => readNpySync(file), f).toThrow(expect.objectContaining({ code }));
    }
  });
});
