// The example server (examples/server): request validation and results, driven with fastify's
// inject — nothing listens. The LanceDB table lives in a temp dir removed afterwards.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// @ts-expect-error plain ESM example without type declarations
import { buildApp } from '../examples/server/app.mjs';
import { Normalizer, syntheticBenchmark } from '../dist/index.js';
import { LanceGallery } from '../dist/lancedb.js';

const DIM = 24;
const limits = { maxK: 20, maxBatch: 4, bodyLimit: 16 * 1024 };
let dir = '';
let app: { inject: (o: unknown) => Promise<{ statusCode: number; json: () => any }>; close: () => Promise<void> };
let gallery: { search: (q: unknown, o: unknown) => Promise<any>; size: number; normalizer: { method: string } };
let queries: { data: Float32Array; rows: number; cols: number };

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-server-test-'));
  // As examples/server/gallery.mjs builds it (that file imports 'dbnorm' by name, which vitest's
  // module runner does not resolve to the CommonJS build).
  const data = syntheticBenchmark({ seed: 7, dim: DIM, gallery: 800, queryBank: 1500, galleryBank: 400 });
  const norm = await Normalizer.fit({ gallery: data.gallery, queryBank: data.queryBank, galleryBank: data.galleryBank }, { method: 'dual-is' });
  gallery = await LanceGallery.create(dir, 'gallery', norm, { ids: Array.from({ length: 800 }, (_, j) => `item-${j}`) });
  queries = data.queries;
  app = buildApp(gallery, limits);
}, 120_000);

afterAll(async () => {
  await app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const row = (i: number) => Array.from(queries.data.subarray(i * DIM, (i + 1) * DIM));
const post = (payload: unknown) =>
  app.inject({ method: 'POST', url: '/search', headers: { 'content-type': 'application/json' }, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) });

describe('example server', () => {
  it('GET /healthz', async () => {
    const r = await app.inject({ method: 'GET', url: '/healthz' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ status: 'ok', method: 'dual-is', items: 800, dim: DIM });
  });

  it('POST /search answers a vector or a batch with the LanceGallery (DualIS) result', async () => {
    const one = await post({ vector: row(3), k: 5 });
    expect(one.statusCode).toBe(200);
    const want = await gallery.search({ data: queries.data.slice(3 * DIM, 6 * DIM), rows: 3, cols: DIM }, { k: 5 });
    expect(one.json().results[0].ids).toEqual(want.ids.slice(0, 5));
    const batch = await post({ vectors: [row(3), row(4), row(5)], k: 5 });
    expect(batch.statusCode).toBe(200);
    const body = batch.json();
    expect(body.results.map((r: { ids: string[] }) => r.ids)).toEqual([0, 1, 2].map((i) => want.ids.slice(i * 5, i * 5 + 5)));
    expect(body.results[1].scores).toEqual(Array.from(want.scores.subarray(5, 10)));
  });

  it('rejects every malformed request with 400 (413 for an oversized body) and a coded error; valid requests still work', async () => {
    const v = row(0);
    const cases: [unknown, number, string][] = [
      [{ vector: v.slice(1), k: 5 }, 400, 'ERR_SHAPE'],
      [{ vectors: [v, v.slice(2)], k: 5 }, 400, 'ERR_SHAPE'],
      ['{"vector":[1e999' + ',0'.repeat(DIM - 1) + '],"k":5}', 400, 'ERR_NON_FINITE'],
      [{ vector: v.map(() => 0), k: 5 }, 400, 'ERR_NON_FINITE'],
      [{ vector: v, k: 21 }, 400, 'ERR_PARAM'],
      [{ vector: v, k: 0 }, 400, 'ERR_PARAM'],
      [{ vector: v, k: 2.5 }, 400, 'ERR_PARAM'],
      [{ vector: v }, 400, 'ERR_SHAPE'],
      [{ vectors: [v, v, v, v, v], k: 5 }, 400, 'ERR_SHAPE'],
      [{ vectors: [], k: 5 }, 400, 'ERR_SHAPE'],
      [{ vector: v, vectors: [v], k: 5 }, 400, 'ERR_SHAPE'],
      [{ vector: v.map(String), k: 5 }, 400, 'ERR_PARAM'],
      [{ vector: v, k: 5, extra: 1 }, 400, 'ERR_PARAM'],
      ['{"vector": [1, 2,', 400, 'ERR_PARAM'],
      [{ vector: v, k: 5, pad: 'x'.repeat(20_000) }, 413, 'ERR_SHAPE'],
    ];
    for (const [payload, status, code] of cases) {
      const r = await post(payload);
      expect({ status: r.statusCode, code: r.json().error?.code }, JSON.stringify(payload).slice(0, 80)).toEqual({ status, code });
    }
    const ok = await post({ vector: v, k: 3 });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().results[0].ids).toHaveLength(3);
  });
});
