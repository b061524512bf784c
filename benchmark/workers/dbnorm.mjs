// Benchmark child process for the dbnorm contender. One task per process (JSON in argv[2]); prints
// one JSON line. Inputs are read from the workload's .npy files and wrapped in validated `Matrix`
// objects once, outside every timed region (validation is a one-time cost per matrix).

import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import { hashArrays, readNpy, writeNpy } from '../lib/data.mjs';
import { childMain, memory, now, percentile, resetPeak, timeReps } from '../lib/proc.mjs';

const lib = await import(process.env.DBNORM_DIST ? pathToFileURL(path.resolve(process.env.DBNORM_DIST)).href : new URL('../../dist/index.mjs', import.meta.url).href);
const { Matrix, Normalizer, similarity, evaluate, METHOD_INFO } = lib;

const load = (dir, name) => {
  const m = readNpy(path.join(dir, `${name}.npy`));
  return new Matrix(m.data, m.rows, m.cols, name);
};
const slice = (m, rows) => new Matrix(m.data.subarray(0, rows * m.cols), rows, m.cols);

function fitOpts(method, p) {
  return { method, betaQuery: p.betaQuery, betaGallery: p.betaGallery, k: p.k, cslsK: p.cslsK, nnnK: p.nnnK, nnnAlpha: p.nnnAlpha };
}

function statsHash(norm) {
  const s = norm.stats();
  return hashArrays(s.lseQuery, s.lseGallery, s.topMeanQuery, s.activeQuery, s.activeGallery);
}

function loadFitData(dir, method) {
  const gallery = load(dir, 'gallery');
  // the banks the method's descriptor asks for (registry-driven: new methods need no edit here)
  const info = METHOD_INFO.find((m) => m.id === method);
  const needQ = info ? info.queryBank : method !== 'none';
  const needG = info ? info.galleryBank : method === 'dual-is' || method === 'dual-dis';
  return {
    gallery,
    queryBank: needQ ? load(dir, 'query_bank') : undefined,
    galleryBank: needG ? load(dir, 'gallery_bank') : undefined,
    metric: 'cosine',
  };
}

const tasks = {
  async similarity(t) {
    const q = load(t.dir, 'queries');
    const g = load(t.dir, 'gallery');
    const first = await similarity(q, g); // warm-up
    const { seconds } = await timeReps(() => similarity(q, g), t.reps);
    return { seconds, flops: 2 * q.rows * g.rows * q.cols, hash: hashArrays(first.data) };
  },

  async fit(t) {
    const data = loadFitData(t.dir, t.method);
    const opts = fitOpts(t.method, t.params);
    const inputBytes = [data.gallery, data.queryBank, data.galleryBank].reduce((s, m) => s + (m ? m.data.byteLength : 0), 0);
    // Warm-up: the full fit, or one on the first rows of the banks (thread pool, page faults of the code).
    const warm = t.warmup === 'small'
      ? { ...data, queryBank: data.queryBank && slice(data.queryBank, Math.min(2000, data.queryBank.rows)), galleryBank: data.galleryBank && slice(data.galleryBank, Math.min(2000, data.galleryBank.rows)) }
      : data;
    await Normalizer.fit(warm, opts);
    globalThis.gc?.();
    const base = memory().rss;
    const canReset = resetPeak();
    const { seconds, result } = await timeReps(() => Normalizer.fit(data, opts), t.reps);
    const peak = memory().hwm;
    const rows = (data.queryBank?.rows ?? 0) + (data.galleryBank?.rows ?? 0);
    return {
      seconds,
      flops: 2 * rows * data.gallery.rows * data.gallery.cols,
      elements: rows * data.gallery.rows,
      statsHash: statsHash(result),
      memory: { inputBytes, rssBeforeBytes: base, peakBytes: canReset ? peak : null, extraPeakBytes: canReset ? peak - base : null },
    };
  },

  async e2e(t) {
    const queries = load(t.dir, 'queries');
    const out = {};
    const c = t.captionsPerItem;
    for (const method of t.methods) {
      const data = loadFitData(t.dir, method);
      const opts = fitOpts(method, t.params);
      const run = async () => {
        const norm = await Normalizer.fit(data, opts);
        const scores = await norm.scores(queries);
        const top = await norm.search(queries, { k: t.topk });
        const metrics = await evaluate(scores, { captionsPerItem: c });
        return { norm, top, metrics };
      };
      await run(); // warm-up
      const { seconds, result } = await timeReps(run, t.reps);
      if (t.outDir) writeNpy(path.join(t.outDir, `topk_${method}.npy`), result.top.indices, [result.top.rows, result.top.k]);
      const m = result.metrics;
      out[method] = {
        seconds,
        topkHash: hashArrays(result.top.indices),
        statsHash: statsHash(result.norm),
        metrics: { R1: m.R1, R5: m.R5, R10: m.R10, MdR: m.MdR, MnR: m.MnR },
      };
    }
    return { methods: out };
  },

  /**
   * Every registered method (or `t.methods`): one fit (cosine defaults, plus the bench's β/k
   * parameters) and one `search` of every query (k = topk), each timed once after a warm-up search.
   * Per-method times next to each other; the contests above time one method against other engines.
   */
  async methods(t) {
    const queries = load(t.dir, 'queries');
    const out = {};
    for (const method of t.methods ?? METHOD_INFO.map((m) => m.id)) {
      try {
        const data = loadFitData(t.dir, method);
        const t0 = now();
        const norm = await Normalizer.fit(data, { ...fitOpts(method, t.params), leakGuard: 'off' });
        const fitSeconds = now() - t0;
        await norm.search(slice(queries, Math.min(queries.rows, 200)), { k: t.topk }); // warm-up
        const t1 = now();
        const top = await norm.search(queries, { k: t.topk });
        out[method] = { fitSeconds, searchSeconds: now() - t1, queries: queries.rows, topkHash: hashArrays(top.indices) };
      } catch (e) {
        out[method] = { error: `${e.code ?? ''} ${e.message}`.trim() };
      }
    }
    return { methods: out };
  },

  /** Fits once, then times `search` of every query (k = topk). */
  async search(t) {
    const data = loadFitData(t.dir, t.method);
    const queries = load(t.dir, 'queries');
    const t0 = now();
    const norm = await Normalizer.fit(data, fitOpts(t.method, t.params));
    const fitSeconds = now() - t0;
    const warmRows = Math.min(queries.rows, 1000);
    await norm.search(slice(queries, warmRows), { k: t.topk }); // warm-up
    const base = memory().rss;
    const canReset = resetPeak();
    const { seconds, result } = await timeReps(() => norm.search(queries, { k: t.topk }), t.reps);
    const peak = memory().hwm;
    if (t.outDir) writeNpy(path.join(t.outDir, `search_${t.method}.npy`), result.indices, [result.rows, result.k]);
    return {
      seconds, fitSeconds, flops: 2 * queries.rows * data.gallery.rows * data.gallery.cols,
      topkHash: hashArrays(result.indices),
      memory: { extraPeakBytes: canReset ? peak - base : null },
    };
  },

  async lse(t) {
    const p = load(t.dir, t.matrix);
    const opts = { method: 'is', betaQuery: t.beta };
    await Normalizer.fitSimilarities({ queryBankSims: p }, opts);
    const { seconds, result } = await timeReps(() => Normalizer.fitSimilarities({ queryBankSims: p }, opts), t.reps);
    return { seconds, elements: p.rows * p.cols, hash: hashArrays(result.stats().lseQuery) };
  },

  /** Computes a bank × gallery similarity matrix once and writes it (input of the `lse` task). */
  async writeSims(t) {
    const a = load(t.dir, t.a);
    const b = load(t.dir, t.b);
    const s = await similarity(a, b);
    writeNpy(path.join(t.dir, `${t.name}.npy`), s.data, [s.rows, s.cols]);
    return { rows: s.rows, cols: s.cols };
  },

  async identity(t) {
    const queries = load(t.dir, 'queries');
    const out = {};
    for (const method of t.methods) {
      const norm = await Normalizer.fit(loadFitData(t.dir, method), fitOpts(method, t.params));
      const top = await norm.search(queries, { k: t.topk });
      const scores = t.scores ? await norm.scores(queries) : null;
      out[method] = {
        statsHash: statsHash(norm),
        topkHash: hashArrays(top.indices, top.scores),
        scoresHash: scores ? hashArrays(scores.data) : null,
      };
    }
    const q = t.similarityRows ? slice(queries, Math.min(t.similarityRows, queries.rows)) : queries;
    const s = await similarity(q, load(t.dir, 'gallery'));
    return { threads: process.env.RAYON_NUM_THREADS ?? null, methods: out, similarityHash: hashArrays(s.data) };
  },

  /**
   * Largest event-loop delay during one async fit, with the library's defaults and again with
   * `leakGuard: 'off'` (the guard's overlap check runs on the main thread once the fit resolves).
   */
  async eventloop(t) {
    const data = loadFitData(t.dir, t.method);
    const base = fitOpts(t.method, t.params);
    const measure = async (opts) => {
      // Largest gap between 1 ms timer ticks, as a second, independent measure.
      let last = now();
      let maxGap = 0;
      const h = monitorEventLoopDelay({ resolution: 1 });
      let progressCalls = 0;
      const tick = setInterval(() => {
        const n = now();
        maxGap = Math.max(maxGap, n - last);
        last = n;
      }, 1);
      h.enable();
      const t0 = now();
      await Normalizer.fit(data, { ...opts, onProgress: () => progressCalls++ });
      const seconds = now() - t0;
      await new Promise((r) => setTimeout(r, 20)); // let the last tick land
      h.disable();
      clearInterval(tick);
      return {
        seconds,
        maxDelayMs: h.max / 1e6,
        p99DelayMs: h.percentile(99) / 1e6,
        meanDelayMs: h.mean / 1e6,
        maxTimerGapMs: maxGap * 1000,
        progressCalls,
      };
    };
    const out = await measure(base);
    out.leakGuardOff = await measure({ ...base, leakGuard: 'off' });
    return out;
  },

  async online(t) {
    const data = loadFitData(t.dir, t.method);
    const opts = fitOpts(t.method, t.params);
    const t0 = now();
    const norm = await Normalizer.fit(data, opts);
    const fitSeconds = now() - t0;
    const pool = load(t.dir, 'queries');
    const batchOf = (i, b) => {
      const start = (i * b) % (pool.rows - b + 1);
      return new Matrix(pool.data.subarray(start * pool.cols, (start + b) * pool.cols), b, pool.cols);
    };
    const ng = data.gallery.rows;
    const hasRerank = typeof norm.rerank === 'function';
    // Candidate lists for rerank (flat, rows × c): c distinct pseudo-random gallery items per query,
    // the same in the numpy contender. rerank scores and sorts all c of them; the gate (DIS/DualDIS)
    // is taken over the candidates (see Normalizer.rerank).
    const candidatesFor = (i, b, c) => {
      const out = new Uint32Array(b * c);
      for (let r = 0; r < b; r++) {
        let x = (i * b + r + 1) * 2654435761 >>> 0;
        const step = 40503; // odd, coprime with any power of two; distinct over c < ng / gcd steps
        for (let j = 0; j < c; j++) out[r * c + j] = (x + j * step) % ng;
      }
      return out;
    };
    const lat = async (fn, b, reps) => {
      for (let i = 0; i < Math.min(10, reps); i++) await fn(batchOf(i, b), i); // warm-up
      const ms = [];
      for (let i = 0; i < reps; i++) {
        const q = batchOf(i + 17, b);
        const s = performance.now();
        await fn(q, i);
        ms.push(performance.now() - s);
      }
      return { p50Ms: percentile(ms, 50), p95Ms: percentile(ms, 95), minMs: Math.min(...ms), reps };
    };
    const out = { fitSeconds, gallery: ng, search: {}, searchSync: {}, rerank: null, rerankSync: null };
    if (t.outDir) {
      // Results on the first 8 pool queries, compared with numpy's by the orchestrator.
      const q8 = batchOf(0, 8);
      writeNpy(path.join(t.outDir, 'online_search.npy'), (await norm.search(q8, { k: t.topk })).indices, [8, t.topk]);
      if (hasRerank) writeNpy(path.join(t.outDir, 'online_rerank.npy'), (await norm.rerank(q8, candidatesFor(0, 8, t.candidates))).indices, [8, t.candidates]);
    }
    for (const b of t.batches) {
      const reps = t.reps[b];
      out.search[b] = await lat((q) => norm.search(q, { k: t.topk }), b, reps);
      out.searchSync[b] = await lat((q) => norm.searchSync(q, { k: t.topk }), b, reps);
    }
    if (hasRerank) {
      out.rerank = {};
      out.rerankSync = typeof norm.rerankSync === 'function' ? {} : null;
      const c = t.candidates;
      for (const b of t.batches) {
        const reps = t.reps[b];
        const cand = (b2, i) => candidatesFor(i, b2, c);
        out.rerank[b] = await lat((q, i) => norm.rerank(q, cand(q.rows, i)), b, reps);
        if (out.rerankSync) out.rerankSync[b] = await lat((q, i) => norm.rerankSync(q, cand(q.rows, i)), b, reps);
      }
    } else {
      out.rerankMissing = 'Normalizer.rerank is not in this build of dbnorm';
    }
    return out;
  },
};

await childMain(tasks);
