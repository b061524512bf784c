import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { GalleryBank, METHODS, Normalizer, QueryBank, evaluate, evaluateSync, hubness, hubnessSync, similarity, similaritySync } from '../dist/index.js';
import { randomMatrix } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'dbnorm-immut-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Snapshots every given buffer and checks it is bit-identical after `f`. */
async function untouched(buffers: ArrayLike<number>[], f: () => unknown): Promise<void> {
  const before = buffers.map((b) => Array.from(b));
  await f();
  buffers.forEach((b, i) => expect(Array.from(b)).toEqual(before[i]));
}

describe('inputs are never mutated', () => {
  const D = 12;
  const gallery = randomMatrix(40, D, 1);
  const queryBank = randomMatrix(90, D, 2);
  const galleryBank = randomMatrix(30, D, 3);
  const queries = randomMatrix(40, D, 4);
  const all = [gallery.data, queryBank.data, galleryBank.data, queries.data];

  it('similarity, banks', async () => {
    await untouched(all, async () => {
      await similarity(queries, gallery);
      similaritySync(queries, gallery, { metric: 'dot' });
      QueryBank.fromSync(queryBank, { dedupe: true, subsample: 50 });
      await GalleryBank.from(galleryBank);
    });
  });

  // sn / dual-sn: gallery-dependent, fitted state — addGallery refits, save needs the next format and
  // sharding is refused by the framework (issue 13, n13-frame); excluded here until that lands.
  for (const method of METHODS) {
    it(`${method}: fit, scores, search, rerank, augmented vectors, addGallery, save/load, evaluation`, async () => {
      const cand = new Uint32Array(queries.rows * 5).map((_, i) => (i * 7) % gallery.rows);
      const candCopy = cand.slice();
      await untouched(all, async () => {
        const n = await Normalizer.fit({ gallery, queryBank, galleryBank }, { method, leakGuard: 'off' });
        const s = await n.scores(queries);
        n.scoresSync(queries);
        const top = await n.search(queries, { k: 5 });
        n.searchSync(queries, { k: 5 });
        await n.rerank(queries, cand);
        n.rerankSync(queries, cand);
        n.augmentedGallery();
        n.augmentQueries(queries);
        const file = path.join(dir, `${method}.dbn`);
        await n.save(file);
        await Normalizer.load(file);
        n.addGallerySync(randomMatrix(3, D, 5));
        await untouched([s.data, top.indices, top.scores], async () => {
          await evaluate(s, 'diagonal');
          evaluateSync(s, 'diagonal', { direction: 'v2t', ties: 'pessimistic' });
          await hubness(s, { k: 3 });
          hubnessSync(top, { k: 5, galleryCount: gallery.rows });
        });
      });
      expect(Array.from(cand)).toEqual(Array.from(candCopy));
    });
  }

  it('similarity mode', async () => {
    const S = randomMatrix(10, 20, 6);
    const Pq = randomMatrix(30, 20, 7);
    const Pg = randomMatrix(15, 20, 8);
    await untouched([S.data, Pq.data, Pg.data], async () => {
      const n = await Normalizer.fitSimilarities({ queryBankSims: Pq, galleryBankSims: Pg }, { method: 'dual-dis', betaQuery: 5, betaGallery: 2 });
      await n.scores(S);
      await n.search(S, { k: 4 });
    });
  });
});
