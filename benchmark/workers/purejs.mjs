// Benchmark child process for the pure-JS contender (benchmark/baseline.mjs). Same tasks and output
// shape as workers/dbnorm.mjs.

import path from 'node:path';

import * as base from '../baseline.mjs';
import { hashArrays, readNpy, writeNpy } from '../lib/data.mjs';
import { childMain, memory, resetPeak, timeReps } from '../lib/proc.mjs';

const load = (dir, name) => readNpy(path.join(dir, `${name}.npy`));

function fitData(dir, method) {
  const g = load(dir, 'gallery');
  const needQ = method !== 'none';
  const needG = method === 'dual-is' || method === 'dual-dis';
  const r = needQ ? load(dir, 'query_bank') : null;
  const h = needG ? load(dir, 'gallery_bank') : null;
  return {
    gallery: g.data, galleryRows: g.rows, dim: g.cols, metric: 'cosine',
    queryBank: r?.data ?? null, queryBankRows: r?.rows ?? 0,
    galleryBank: h?.data ?? null, galleryBankRows: h?.rows ?? 0,
  };
}

/** Same data with the banks cut to their first `rows` rows (a cheap warm-up for the JIT). */
function smallFitData(d, rows) {
  const qr = Math.min(rows, d.queryBankRows);
  const gr = Math.min(rows, d.galleryBankRows);
  return {
    ...d,
    queryBank: d.queryBank && d.queryBank.subarray(0, qr * d.dim), queryBankRows: qr,
    galleryBank: d.galleryBank && d.galleryBank.subarray(0, gr * d.dim), galleryBankRows: gr,
  };
}

function params(p) {
  return { betaQuery: p.betaQuery, betaGallery: p.betaGallery, k: p.k, cslsK: p.cslsK, nnnK: p.nnnK, nnnAlpha: p.nnnAlpha };
}

const tasks = {
  async similarity(t) {
    const q = load(t.dir, 'queries');
    const g = load(t.dir, 'gallery');
    const wr = Math.min(q.rows, 64);
    const first = base.similarity(q.data.subarray(0, wr * q.cols), wr, g.data, g.rows, q.cols); // warm-up (JIT)
    void first;
    const { seconds, result } = await timeReps(() => base.similarity(q.data, q.rows, g.data, g.rows, q.cols), t.reps);
    return { seconds, flops: 2 * q.rows * g.rows * q.cols, hash: hashArrays(result) };
  },

  async fit(t) {
    const d = fitData(t.dir, t.method);
    const p = params(t.params);
    base.fit(t.method, smallFitData(d, 200), p); // warm-up (JIT)
    const base0 = memory().rss;
    const canReset = resetPeak();
    const { seconds } = await timeReps(() => base.fit(t.method, d, p), t.reps);
    const peak = memory().hwm;
    const rows = d.queryBankRows + d.galleryBankRows;
    return {
      seconds,
      flops: 2 * rows * d.galleryRows * d.dim,
      elements: rows * d.galleryRows,
      memory: { rssBeforeBytes: base0, peakBytes: canReset ? peak : null, extraPeakBytes: canReset ? peak - base0 : null },
    };
  },

  async e2e(t) {
    const q = load(t.dir, 'queries');
    const out = {};
    for (const method of t.methods) {
      const d = fitData(t.dir, method);
      const p = params(t.params);
      const run = (data, nq) => {
        const fitted = base.fit(method, data, p);
        const sims = base.similarity(q.data.subarray(0, nq * q.cols), nq, data.gallery, data.galleryRows, data.dim);
        const top = base.search(fitted, sims, nq, t.topk);
        const scores = base.scores(fitted, sims, nq);
        const metrics = nq % data.galleryRows === 0 ? base.evaluate(scores, nq, data.galleryRows, { captionsPerItem: t.captionsPerItem }) : null;
        return { top, metrics, nq };
      };
      // Warm-up on a small slice: compiles every code path without doubling the (long) run time.
      run(smallFitData(d, 200), Math.min(q.rows, 100));
      const { seconds, result } = await timeReps(() => run(d, q.rows), t.reps);
      if (t.outDir) writeNpy(path.join(t.outDir, `topk_${method}.npy`), result.top.indices, [result.nq, result.top.k]);
      out[method] = { seconds, topkHash: hashArrays(result.top.indices), metrics: result.metrics };
    }
    return { methods: out };
  },

  async lse(t) {
    const p = load(t.dir, t.matrix);
    const data = { queryBankSims: p.data, galleryCount: p.cols, queryBankRows: p.rows };
    base.fitSimilarities('is', { ...data, queryBankRows: Math.min(p.rows, 50), queryBankSims: p.data.subarray(0, Math.min(p.rows, 50) * p.cols) }, { betaQuery: t.beta });
    const { seconds, result } = await timeReps(() => base.fitSimilarities('is', data, { betaQuery: t.beta }), t.reps);
    return { seconds, elements: p.rows * p.cols, hash: hashArrays(result.lq) };
  },
};

await childMain(tasks);
