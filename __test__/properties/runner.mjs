// Property runner, executed in a child process by __test__/properties.test.ts so that a crash or a
// hang is counted by the parent instead of killing the test run.
//
//   node runner.mjs <property> <seed> <count> <start>
//
// Generates `count` cases of <property> with fast-check from <seed> (deterministic), runs cases
// start..count-1 in order and prints, per case, `B <i>` before and `E <i> <json>` after, where json is
// { ok: true } or { ok: false, kind, detail, input }. Failure kinds: `untyped` (anything thrown that is
// not a DbnormError with a known code), `internal` (ERR_INTERNAL: a caught panic), `wrong` (a result
// that disagrees with the float64 reference), `mutated` (an input changed). The parent adds `crash`
// (the process died inside case i) and `hang` (no progress within the per-case bound).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const fc = require('fast-check');
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const lib = require(path.join(root, 'dist', 'index.js'));
const { DbnormError, Normalizer, METHODS, QueryBank, GalleryBank } = lib;

const CODES = new Set(['ERR_SHAPE', 'ERR_NON_FINITE', 'ERR_PARAM', 'ERR_EMPTY_BANK', 'ERR_FORMAT', 'ERR_IO', 'ERR_LEAK', 'ERR_ABORTED']);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-prop-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
// Leak-guard warnings are expected for some generated cases; they must not flood the output.
process.removeAllListeners('warning');
process.on('warning', () => {});

// ------------------------------------------------------------------------------------------------
// generators

/** Mostly ordinary values; sometimes hostile ones. */
const valueArb = fc.oneof(
  { weight: 30, arbitrary: fc.integer({ min: -20, max: 20 }).map((v) => v / 10) },
  { weight: 10, arbitrary: fc.float({ min: -2, max: 2, noNaN: true, noDefaultInfinity: true }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -0, 1e-30, -1e-30, 1e19, -1e19, 1e30, 3e38) },
  { weight: 1, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity) },
);

const dataArb = (n) => fc.array(valueArb, { minLength: n, maxLength: n }).map((a) => Float32Array.from(a));

/** A rows × cols matrix, usually valid; sometimes a hostile stand-in. */
function matrixArb(rows, cols, hostileWeight = 1) {
  const valid = dataArb(rows * cols).map((data) => ({ data, rows, cols }));
  return fc.oneof(
    { weight: 20, arbitrary: valid },
    {
      weight: hostileWeight,
      arbitrary: fc.oneof(
        fc.constantFrom(null, undefined, 7, 'matrix', [], {}),
        valid.map((m) => ({ ...m, data: Float64Array.from(m.data) })),
        valid.map((m) => ({ ...m, data: Array.from(m.data) })),
        valid.map((m) => ({ ...m, rows: m.rows + 1 })),
        valid.map((m) => ({ ...m, cols: -1 })),
        valid.map((m) => ({ ...m, rows: 1.5 })),
        valid.map((m) => ({ ...m, rows: NaN })),
        valid.map((m) => ({ ...m, rows: 2 ** 32 + m.rows })),
        valid.map((m) => ({ ...m, rows: '2' })),
        valid.map((m) => ({ data: m.data, rows: m.rows })),
        valid.map((m) => ({ ...m, data: detached(m.data.length) })),
        valid.map((m) => ({ ...m, data: resizable(m.data) })),
        valid.map((m) => ({ ...m, data: new Float32Array(m.data.length + 3).subarray(3) })),
      ),
    },
  );
}

function detached(n) {
  const a = new Float32Array(n);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

function resizable(src) {
  const ab = new ArrayBuffer(src.byteLength, { maxByteLength: src.byteLength + 64 });
  const a = new Float32Array(ab);
  a.set(src);
  return a;
}

const hostileCount = fc.constantFrom(-1, 0, 1.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32 + 1, 2 ** 53, 1e300, '3', null, true, {});
const countArb = (min, max) => fc.oneof({ weight: 12, arbitrary: fc.integer({ min, max }) }, { weight: 1, arbitrary: hostileCount });

/** Adds an unknown or wrongly typed option key now and then. */
function withJunk(objArb) {
  return fc.tuple(objArb, fc.oneof({ weight: 10, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(['beta', 5], ['metrics', 'cosine'], ['kk', 2], ['signal', 'yes'], ['onProgress', 5]) })).map(([o, junk]) =>
    junk && o && typeof o === 'object' ? { ...o, [junk[0]]: junk[1] } : o,
  );
}

const methodArb = fc.oneof({ weight: 20, arbitrary: fc.constantFrom(...METHODS) }, { weight: 1, arbitrary: fc.constantFrom('IS', 'dualis', '', 5, null) });
const betaArb = fc.oneof({ weight: 12, arbitrary: fc.constantFrom(0.5, 1, 5, 20) }, { weight: 1, arbitrary: fc.constantFrom(0, -1, NaN, Infinity, 1e39, 1e300, '5', null) });

// ------------------------------------------------------------------------------------------------
// float64 references

// A detached view reads as empty (length 0); `from` would throw on it.
const f64 = (m) => (m.data.length === 0 ? new Float64Array(0) : Float64Array.from(m.data));

function simRef(a, b, metric) {
  const A = f64(a);
  const B = f64(b);
  const d = a.cols;
  const out = new Float64Array(a.rows * b.rows);
  const na = [];
  const nb = [];
  for (let i = 0; i < a.rows; i++) na.push(Math.hypot(...A.subarray(i * d, i * d + d)));
  for (let j = 0; j < b.rows; j++) nb.push(Math.hypot(...B.subarray(j * d, j * d + d)));
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < b.rows; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += metric === 'cosine' ? (A[i * d + t] / na[i]) * (B[j * d + t] / nb[j]) : A[i * d + t] * B[j * d + t];
      out[i * b.rows + j] = s;
    }
  return out;
}

const lse = (xs) => {
  const m = Math.max(...xs);
  return m + Math.log(xs.reduce((s, x) => s + Math.exp(x - m), 0));
};
const topMean = (xs, k) => {
  const s = [...xs].sort((x, y) => y - x).slice(0, Math.min(k, xs.length));
  return s.reduce((a, b) => a + b, 0) / s.length;
};

/**
 * Float64 scores of the methods with closed forms here (none, is, dual-is, csls, nnn), from the
 * query × gallery similarities S (nq × ng), bank × gallery P_q (mq × ng) and P_g (mg × ng).
 * `null` for dis / dual-dis (checked for shape, finiteness and ranking consistency only).
 */
function methodRef(method, o, S, nq, ng, Pq, mq, Pg, mg) {
  const col = (P, m, j) => Array.from({ length: m }, (_, b) => P[b * ng + j]);
  const out = new Float64Array(nq * ng);
  for (let i = 0; i < nq; i++) {
    const row = Array.from(S.subarray(i * ng, i * ng + ng));
    for (let j = 0; j < ng; j++) {
      const s = S[i * ng + j];
      let v;
      switch (method) {
        case 'none':
          v = s;
          break;
        case 'is':
          v = o.betaQuery * s - lse(col(Pq, mq, j).map((x) => o.betaQuery * x));
          break;
        case 'dual-is':
          v = (o.betaQuery + o.betaGallery) * s - lse(col(Pq, mq, j).map((x) => o.betaQuery * x)) - lse(col(Pg, mg, j).map((x) => o.betaGallery * x));
          break;
        case 'csls':
          v = 2 * s - topMean(row, o.cslsK) - topMean(col(Pq, mq, j), o.cslsK);
          break;
        case 'nnn':
          v = s - o.nnnAlpha * topMean(col(Pq, mq, j), o.nnnK);
          break;
        default:
          return null;
      }
      out[i * ng + j] = v;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// checks

class Fail extends Error {
  constructor(kind, detail) {
    super(detail);
    this.kind = kind;
  }
}

function close(got, ref, tol, what) {
  if (got.length !== ref.length) throw new Fail('wrong', `${what}: length ${got.length}, expected ${ref.length}`);
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i];
    const g = got[i];
    if (!Number.isFinite(r)) continue; // the reference itself overflowed: only finiteness is checked below
    if (!Number.isFinite(g) || Math.abs(g - r) > tol(r, i)) throw new Fail('wrong', `${what}[${i}] = ${g}, float64 reference ${r}`);
  }
}

function allFinite(a, what) {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) throw new Fail('wrong', `${what}[${i}] = ${a[i]} (not finite) from finite inputs`);
}

const finiteInput = (m) => m && m.data && Array.prototype.every.call(m.data, Number.isFinite);

/** Checks a top-k list against full scores: best first (score desc, index asc), scores equal. */
function checkTopK(top, scores, ng, k, what) {
  const kk = Math.min(k, ng);
  if (top.k !== kk) throw new Fail('wrong', `${what}: k = ${top.k}, expected min(${k}, ${ng}) = ${kk}`);
  for (let i = 0; i < top.rows; i++) {
    const row = Array.from(scores.subarray(i * ng, i * ng + ng));
    const order = row.map((s, j) => [s, j]).sort((x, y) => y[0] - x[0] || x[1] - y[1]);
    for (let r = 0; r < kk; r++) {
      const j = top.indices[i * kk + r];
      const s = top.scores[i * kk + r];
      if (Math.abs(s - row[j]) > 1e-4 * (1 + Math.abs(row[j]))) throw new Fail('wrong', `${what}: row ${i} rank ${r} item ${j} score ${s}, scores() says ${row[j]}`);
      const want = order[r][0];
      if (Math.abs(s - want) > 1e-4 * (1 + Math.abs(want))) throw new Fail('wrong', `${what}: row ${i} rank ${r} score ${s}, the ${r}-th best is ${want}`);
    }
  }
}

/** Deep snapshot of the typed arrays and plain values reachable from `v`. */
function snapshot(v, seen = new Set()) {
  if (v === null || typeof v !== 'object') return v;
  if (seen.has(v)) return '[cycle]';
  seen.add(v);
  if (ArrayBuffer.isView(v)) {
    try {
      return { __ta: v.constructor.name, bytes: Buffer.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).toString('base64') };
    } catch {
      return '[unreadable view]';
    }
  }
  if (v instanceof Normalizer) return '[normalizer]';
  const out = Array.isArray(v) ? [] : {};
  for (const k of Object.keys(v)) out[k] = snapshot(v[k], seen);
  return out;
}

/** A short printable form of a case input. */
function show(v, depth = 0) {
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || typeof v !== 'object') return String(v);
  if (ArrayBuffer.isView(v)) {
    let body = '';
    try {
      body = Array.from(v.slice(0, 12), (x) => show(x)).join(',') + (v.length > 12 ? ',…' : '');
    } catch {
      body = 'detached';
    }
    return `${v.constructor.name}(${v.length})[${body}]`;
  }
  if (depth > 4) return '…';
  if (Array.isArray(v)) return `[${v.slice(0, 12).map((x) => show(x, depth + 1)).join(', ')}${v.length > 12 ? ', …' : ''}]`;
  return `{${Object.entries(v).map(([k, x]) => `${k}: ${show(x, depth + 1)}`).join(', ')}}`;
}

// ------------------------------------------------------------------------------------------------
// properties: each is { arb, run(case) } where run returns nothing or throws a Fail

const dims = (maxRows, maxCols) => fc.record({ r1: fc.integer({ min: 0, max: maxRows }), r2: fc.integer({ min: 0, max: maxRows }), d: fc.integer({ min: 1, max: maxCols }) });

/** Embeddings-mode or similarity-mode fit input plus queries, and method options. */
const fitCaseArb = fc
  .record({
    ng: fc.integer({ min: 1, max: 6 }),
    d: fc.integer({ min: 1, max: 4 }),
    mq: fc.integer({ min: 0, max: 6 }),
    mg: fc.integer({ min: 0, max: 5 }),
    nq: fc.integer({ min: 0, max: 4 }),
    sims: fc.boolean(),
    metric: fc.oneof({ weight: 10, arbitrary: fc.constantFrom('cosine', 'dot') }, { weight: 1, arbitrary: fc.constantFrom('l2', 5) }),
    async: fc.boolean(),
  })
  .chain((c) =>
    fc.record({
      c: fc.constant(c),
      gallery: matrixArb(c.ng, c.d),
      queryBank: matrixArb(c.mq, c.sims ? c.ng : c.d),
      galleryBank: matrixArb(c.mg, c.sims ? c.ng : c.d),
      queries: matrixArb(c.nq, c.sims ? c.ng : c.d),
      opts: withJunk(
        fc.record(
          {
            method: methodArb,
            betaQuery: betaArb,
            betaGallery: betaArb,
            k: countArb(1, 3),
            cslsK: countArb(1, 4),
            nnnK: countArb(1, 4),
            nnnAlpha: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(0, 0.5, 1) }, { weight: 1, arbitrary: fc.constantFrom(-1, NaN, 1e300) }),
            leakGuard: fc.oneof({ weight: 10, arbitrary: fc.constant('off') }, { weight: 1, arbitrary: fc.constantFrom('warn', 'strict', 'loud') }),
          },
          { requiredKeys: ['method'] },
        ),
      ),
      k: countArb(0, 7),
    }),
  );

async function fitFrom(x) {
  const { c } = x;
  if (c.sims) {
    const data = { queryBankSims: x.queryBank, galleryBankSims: x.galleryBank };
    return c.async ? Normalizer.fitSimilarities(data, x.opts) : Normalizer.fitSimilaritiesSync(data, x.opts);
  }
  const data = { gallery: x.gallery, queryBank: x.queryBank, galleryBank: x.galleryBank, metric: c.metric };
  return c.async ? Normalizer.fit(data, x.opts) : Normalizer.fitSync(data, x.opts);
}

/** The float64 reference scores of a fitted case (or null when the method has no closed form here). */
function fitRef(x, norm) {
  const { c } = x;
  const o = norm.options;
  const ng = norm.galleryCount;
  let S;
  let Pq;
  let Pg;
  if (c.sims) {
    S = f64(x.queries);
    Pq = x.queryBank && x.queryBank.data ? f64(x.queryBank) : new Float64Array(0);
    Pg = x.galleryBank && x.galleryBank.data ? f64(x.galleryBank) : new Float64Array(0);
  } else {
    S = simRef(x.queries, x.gallery, c.metric);
    Pq = x.queryBank && x.queryBank.data ? simRef(x.queryBank, x.gallery, c.metric) : new Float64Array(0);
    Pg = x.galleryBank && x.galleryBank.data ? simRef(x.galleryBank, x.gallery, c.metric) : new Float64Array(0);
  }
  return methodRef(o.method, o, S, x.queries.rows, ng, Pq, Pq.length / ng, Pg, Pg.length / ng);
}

function scoreTol(x, norm) {
  const o = norm.options;
  const beta = (o.betaQuery ?? 0) + (o.betaGallery ?? 0) + 2;
  let scale = 1;
  for (const m of [x.gallery, x.queryBank, x.galleryBank, x.queries]) if (m && m.data && m.data.length > 0) for (const v of m.data) scale = Math.max(scale, Math.abs(v));
  const sMax = x.c.sims ? scale : x.c.metric === 'cosine' ? 1 : scale * scale * x.c.d;
  return (r) => 2e-4 * (1 + beta * sMax + Math.abs(r));
}

const validMatrix = (m) => m && m.data instanceof Float32Array && Number.isInteger(m.rows) && Number.isInteger(m.cols) && m.rows >= 0 && m.cols >= 0 && m.data.length === m.rows * m.cols;

const properties = {
  similarity: {
    arb: dims(5, 6).chain((dm) =>
      fc.record({
        a: matrixArb(dm.r1, dm.d),
        b: matrixArb(dm.r2, dm.d),
        opts: withJunk(fc.oneof({ weight: 10, arbitrary: fc.record({ metric: fc.constantFrom('cosine', 'dot') }) }, { weight: 1, arbitrary: fc.constantFrom(undefined, null, { metric: 'l2' }, { metric: 3 }, 'cosine') })),
        async: fc.boolean(),
      }),
    ),
    async run(x) {
      const r = x.async ? await lib.similarity(x.a, x.b, x.opts) : lib.similaritySync(x.a, x.b, x.opts);
      const metric = (x.opts && x.opts.metric) || 'cosine';
      if (r.rows !== x.a.rows || r.cols !== x.b.rows) throw new Fail('wrong', `shape ${r.rows}×${r.cols}, expected ${x.a.rows}×${x.b.rows}`);
      if (!finiteInput(x.a) || !finiteInput(x.b)) throw new Fail('wrong', 'non-finite input accepted');
      const ref = simRef(x.a, x.b, metric);
      allFinite(r.data, 'similarity');
      const A = f64(x.a);
      const B = f64(x.b);
      close(r.data, ref, (v, idx) => {
        if (metric === 'cosine') return 1e-5 * 4;
        const i = Math.floor(idx / x.b.rows);
        const j = idx % x.b.rows;
        let mag = 0;
        for (let t = 0; t < x.a.cols; t++) mag += Math.abs(A[i * x.a.cols + t] * B[j * x.a.cols + t]);
        return 1e-6 * mag + 1e-30;
      }, 'similarity');
    },
  },

  fitScoresSearch: {
    arb: fitCaseArb,
    async run(x) {
      const norm = await fitFrom(x);
      const useAsync = x.c.async;
      const sc = useAsync ? await norm.scores(x.queries) : norm.scoresSync(x.queries);
      const ng = norm.galleryCount;
      if (sc.rows !== x.queries.rows || sc.cols !== ng) throw new Fail('wrong', `scores shape ${sc.rows}×${sc.cols}, expected ${x.queries.rows}×${ng}`);
      allFinite(sc.data, 'scores');
      const ref = fitRef(x, norm);
      if (ref) close(sc.data, ref, scoreTol(x, norm), `scores(${norm.options.method})`);
      const top = useAsync ? await norm.search(x.queries, { k: x.k }) : norm.searchSync(x.queries, { k: x.k });
      checkTopK(top, sc.data, ng, x.k, 'search');
    },
  },

  mutateAndRerank: {
    arb: fitCaseArb.chain((x) =>
      fc.record({
        x: fc.constant(x),
        op: fc.constantFrom('rerank', 'addGallery', 'augment', 'stats'),
        cands: fc.oneof(
          { weight: 8, arbitrary: fc.array(fc.array(fc.integer({ min: 0, max: x.c.ng - 1 }), { maxLength: 5 }), { minLength: x.c.nq, maxLength: x.c.nq }) },
          { weight: 1, arbitrary: fc.constantFrom(null, 5, [[-1]], [[1.5]], [[2 ** 32 + 1]], [[NaN]], [['0']], new Float64Array(2), [[99]]) },
        ),
        added: fc.integer({ min: 0, max: 3 }).chain((n) =>
          fc.oneof(
            { weight: 6, arbitrary: matrixArb(n, x.c.d) },
            { weight: 6, arbitrary: fc.record({ queryBankSims: matrixArb(x.c.mq, n), galleryBankSims: matrixArb(x.c.mg, n) }, { requiredKeys: [] }) },
            { weight: 2, arbitrary: fc.record({ count: countArb(0, 3) }) },
          ),
        ),
      }),
    ),
    async run({ x, op, cands, added }) {
      const norm = await fitFrom(x);
      const ng = norm.galleryCount;
      if (op === 'rerank') {
        const sc = norm.scoresSync(x.queries);
        // Similarity mode takes the candidates' raw similarities (n_q × c, aligned with the ids).
        let input = x.queries;
        if (x.c.sims && Array.isArray(cands) && cands.every((l) => Array.isArray(l) && l.length === (cands[0]?.length ?? 0) && l.every((j) => Number.isInteger(j) && j >= 0 && j < ng))) {
          const c = cands[0]?.length ?? 0;
          input = { data: Float32Array.from(cands.flatMap((l, i) => l.map((j) => x.queries.data[i * ng + j]))), rows: cands.length, cols: c };
        }
        const top = x.c.async ? await norm.rerank(input, cands) : norm.rerankSync(input, cands);
        // The DIS / DualDIS gate and the CSLS offset are taken over the candidates (documented), so
        // only the candidate-independent methods are compared with scores(); every list must be best first.
        const independent = ['none', 'is', 'dual-is', 'nnn'].includes(norm.options.method);
        for (let i = 0; i < top.rows; i++) {
          for (let r = 1; r < top.k; r++) if (!(top.scores[i * top.k + r - 1] >= top.scores[i * top.k + r])) throw new Fail('wrong', `rerank row ${i} is not best first at rank ${r}`);
          if (!independent) continue;
          const sorted = Array.from(cands[i], (j) => sc.data[i * ng + j]).sort((a, b) => b - a);
          for (let r = 0; r < Math.min(top.k, sorted.length); r++) {
            const got = top.scores[i * top.k + r];
            if (Math.abs(got - sorted[r]) > 1e-4 * (1 + Math.abs(sorted[r]))) throw new Fail('wrong', `rerank row ${i} rank ${r}: ${got}, scores() gives ${sorted[r]}`);
          }
        }
      } else if (op === 'addGallery') {
        const n = x.c.async ? await norm.addGallery(added) : norm.addGallerySync(added);
        const grew = norm.galleryCount - ng;
        if (!Number.isInteger(n) || grew < 0) throw new Fail('wrong', `addGallery returned ${n}, gallery ${ng} → ${norm.galleryCount}`);
        const sc = norm.scoresSync(x.queries);
        if (sc.cols !== norm.galleryCount) throw new Fail('wrong', `scores after addGallery have ${sc.cols} columns, gallery has ${norm.galleryCount}`);
        allFinite(sc.data, 'scores after addGallery');
      } else if (op === 'augment') {
        const g = norm.augmentedGallery();
        const q = norm.augmentQueries(x.queries);
        const sc = norm.scoresSync(x.queries);
        // Inner products rank like the method: ip(i, j) − score(i, j) is constant in j (up to a positive scale).
        for (let i = 0; i < q.rows; i++) {
          const ips = [];
          for (let j = 0; j < g.rows; j++) {
            let s = 0;
            for (let t = 0; t < g.cols; t++) s += q.data[i * q.cols + t] * g.data[j * g.cols + t];
            ips.push(s);
          }
          const row = Array.from(sc.data.subarray(i * ng, i * ng + ng));
          const best = (a) => a.indexOf(Math.max(...a));
          const bi = best(ips);
          if (Math.abs(row[bi] - Math.max(...row)) > 1e-3 * (1 + Math.abs(Math.max(...row))) * (1 + norm.options.betaQuery + (norm.options.betaGallery ?? 0)))
            throw new Fail('wrong', `augment row ${i}: inner-product top-1 ${bi} scores ${row[bi]}, best score ${Math.max(...row)}`);
        }
      } else {
        const s = norm.stats();
        if (s === null || typeof s !== 'object') throw new Fail('wrong', 'stats() returned no object');
      }
    },
  },

  evaluateHubness: {
    arb: fc
      .record({ nq: fc.integer({ min: 0, max: 6 }), ng: fc.integer({ min: 1, max: 6 }) })
      .chain((c) =>
        fc.record({
          c: fc.constant(c),
          scores: fc.oneof(
            { weight: 10, arbitrary: fc.array(fc.integer({ min: -3, max: 3 }), { minLength: c.nq * c.ng, maxLength: c.nq * c.ng }).map((a) => ({ data: Float32Array.from(a, (v) => v / 2), rows: c.nq, cols: c.ng })) },
            { weight: 1, arbitrary: matrixArb(c.nq, c.ng, 5) },
          ),
          gt: fc.oneof(
            { weight: 6, arbitrary: fc.constant(undefined) },
            { weight: 3, arbitrary: fc.constant('diagonal') },
            { weight: 3, arbitrary: fc.record({ captionsPerItem: countArb(1, 3) }) },
            { weight: 3, arbitrary: fc.record({ positives: fc.array(fc.array(fc.integer({ min: 0, max: c.ng - 1 }), { maxLength: 2 }), { minLength: c.nq, maxLength: c.nq }) }) },
            { weight: 1, arbitrary: fc.constantFrom(null, 'diag', { positives: null }, { positives: [[-1]] }, { positives: [[2 ** 32]] }, { captionsPerItem: 2 ** 32 + 1 }) },
          ),
          eopts: withJunk(
            fc.record(
              {
                ties: fc.oneof({ weight: 8, arbitrary: fc.constantFrom('average', 'optimistic', 'pessimistic') }, { weight: 1, arbitrary: fc.constantFrom('best', 3) }),
                ks: fc.oneof({ weight: 8, arbitrary: fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 3 }) }, { weight: 1, arbitrary: fc.constantFrom([], [0], [-1], [1.5], [2 ** 32 + 1], 'x') }),
                direction: fc.oneof({ weight: 8, arbitrary: fc.constantFrom('t2v', 'v2t') }, { weight: 1, arbitrary: fc.constantFrom('x2y', 1) }),
              },
              { requiredKeys: [] },
            ),
          ),
          hopts: withJunk(fc.record({ k: countArb(1, 4), hubFactor: fc.constantFrom(2, 1, 0.5) }, { requiredKeys: [] })),
          galleryCount: fc.oneof({ weight: 10, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: hostileCount }),
          which: fc.constantFrom('evaluate', 'hubness'),
          async: fc.boolean(),
        }),
      ),
    async run(x) {
      if (x.which === 'hubness') {
        const opts = x.galleryCount === undefined ? x.hopts : { ...x.hopts, galleryCount: x.galleryCount };
        const h = x.async ? await lib.hubness(x.scores, opts) : lib.hubnessSync(x.scores, opts);
        // Reference: N_k(j) from top-k lists under the tie rule (score desc, index asc).
        const { rows, cols, data } = x.scores;
        const k = Math.min(h.k, cols);
        const occ = new Array(cols).fill(0);
        for (let i = 0; i < rows; i++) {
          const order = Array.from(data.subarray(i * cols, i * cols + cols), (s, j) => [s, j]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
          for (let r = 0; r < k; r++) occ[order[r][1]]++;
        }
        if (Array.from(h.occurrence).join() !== occ.join()) throw new Fail('wrong', `N_k = [${Array.from(h.occurrence)}], reference [${occ}]`);
        return;
      }
      const opts = x.galleryCount === undefined ? x.eopts : { ...x.eopts, galleryCount: x.galleryCount };
      const r = x.async ? await lib.evaluate(x.scores, x.gt, opts) : lib.evaluateSync(x.scores, x.gt, opts);
      for (const { k, value } of r.recall) {
        if (!(value >= 0 && value <= 100) && !Number.isNaN(value)) throw new Fail('wrong', `R@${k} = ${value}`);
      }
      // Reference ranks for the diagonal ground truth, t2v, strict ties (optimistic / pessimistic).
      const ties = opts?.ties ?? 'average';
      const diag = x.gt === undefined || x.gt === 'diagonal';
      if (diag && (opts?.direction ?? 't2v') === 't2v' && ties !== 'average' && x.scores.rows <= x.scores.cols) {
        const { rows, cols, data } = x.scores;
        for (let i = 0; i < rows; i++) {
          const s = data[i * cols + i];
          let gt = 0;
          let eq = 0;
          for (let j = 0; j < cols; j++) if (j !== i) (data[i * cols + j] > s ? gt++ : data[i * cols + j] === s ? eq++ : 0);
          const want = ties === 'optimistic' ? gt : gt + eq;
          if (r.ranks[i] !== want) throw new Fail('wrong', `query ${i}: rank ${r.ranks[i]}, reference (${ties}) ${want}`);
        }
        for (const { k, value } of r.recall) {
          const want = (100 * Array.from(r.ranks).filter((v) => v < k).length) / rows;
          if (rows > 0 && Math.abs(value - want) > 1e-9) throw new Fail('wrong', `R@${k} = ${value}, from the ranks ${want}`);
        }
      }
    },
  },

  npy: {
    arb: fc.record({
      m: dims(4, 5).chain((dm) => matrixArb(dm.r1, dm.d, 2)),
      damage: fc.oneof(
        { weight: 4, arbitrary: fc.constant(null) },
        { weight: 3, arbitrary: fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }) },
        { weight: 2, arbitrary: fc.record({ cut: fc.nat() }) },
        { weight: 1, arbitrary: fc.record({ shape: fc.constantFrom('(200000, 100000)', '(18446744073709551615, 2)', '(3, 4, 5)', '()', '(-1, 2)') }) },
      ),
      path: fc.oneof({ weight: 12, arbitrary: fc.constant('ok') }, { weight: 1, arbitrary: fc.constantFrom('', null, 5, '/dev/null', '/', '/nonexistent/x.npy', '\0bad') }),
      async: fc.boolean(),
    }),
    async run(x) {
      const p = x.path === 'ok' ? path.join(tmp, 'm.npy') : x.path;
      if (x.async) await lib.writeNpy(p, x.m);
      else lib.writeNpySync(p, x.m);
      if (p !== path.join(tmp, 'm.npy')) throw new Fail('wrong', `writeNpy to ${show(p)} succeeded`);
      let bytes = readFileSync(p);
      if (x.damage) {
        bytes = Buffer.from(bytes);
        if ('at' in x.damage && bytes.length) bytes[x.damage.at % bytes.length] = x.damage.byte;
        if ('cut' in x.damage) bytes = bytes.subarray(0, x.damage.cut % (bytes.length + 1));
        if ('shape' in x.damage) bytes = Buffer.from(bytes.toString('latin1').replace(/'shape': \([^)]*\)/, `'shape': ${x.damage.shape}`), 'latin1');
        writeFileSync(p, bytes);
      }
      const r = x.async ? await lib.readNpy(p) : lib.readNpySync(p);
      if (r.data.length !== r.rows * r.cols) throw new Fail('wrong', `read ${r.data.length} values for ${r.rows}×${r.cols}`);
      if (!x.damage) {
        const same = r.rows === (x.m.rows === 0 ? 0 : x.m.rows) && Buffer.compare(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength), Buffer.from(x.m.data.buffer, x.m.data.byteOffset, x.m.data.byteLength)) === 0;
        if (!same) throw new Fail('wrong', `round trip changed the matrix (${x.m.rows}×${x.m.cols} → ${r.rows}×${r.cols})`);
      }
    },
  },

  saveLoad: {
    arb: fitCaseArb.chain((x) =>
      fc.record({
        x: fc.constant(x),
        damage: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }) }, { weight: 1, arbitrary: fc.record({ cut: fc.nat() }) }),
        path: fc.oneof({ weight: 12, arbitrary: fc.constant('ok') }, { weight: 1, arbitrary: fc.constantFrom('', null, 7, '/dev/null', '/', '/nonexistent/x.dbn') }),
      }),
    ),
    async run({ x, damage, path: which }) {
      const norm = await fitFrom(x);
      const p = which === 'ok' ? path.join(tmp, 'n.dbn') : which;
      if (x.c.async) await norm.save(p);
      else norm.saveSync(p);
      if (which !== 'ok') throw new Fail('wrong', `save to ${show(which)} succeeded`);
      if (damage) {
        let b = Buffer.from(readFileSync(p));
        if ('at' in damage) b[damage.at % b.length] ^= damage.xor;
        else b = b.subarray(0, damage.cut % b.length);
        writeFileSync(p, b);
      }
      const back = x.c.async ? await Normalizer.load(p, { leakGuard: 'off' }) : Normalizer.loadSync(p, { leakGuard: 'off' });
      if (damage) throw new Fail('wrong', `a damaged file (${show(damage)}) loaded`);
      const a = norm.scoresSync(x.queries);
      const b = back.scoresSync(x.queries);
      if (Buffer.compare(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength), Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength)) !== 0)
        throw new Fail('wrong', 'scores of the loaded normaliser differ from the original');
    },
  },

  banks: {
    arb: dims(8, 4).chain((dm) =>
      fc.record({
        src: fc.oneof(
          { weight: 6, arbitrary: matrixArb(dm.r1, dm.d) },
          { weight: 3, arbitrary: fc.array(fc.array(fc.constantFrom(0, 1, -1, 0.5), { minLength: dm.d, maxLength: dm.d }), { maxLength: dm.r1 }) },
          { weight: 1, arbitrary: fc.constantFrom([[1, 2], [3]], [null], 'rows', [[NaN, 1]]) },
        ),
        opts: withJunk(
          fc.record(
            {
              subsample: countArb(0, 6),
              seed: fc.oneof({ weight: 8, arbitrary: fc.nat(100) }, { weight: 1, arbitrary: hostileCount }),
              dedupe: fc.oneof({ weight: 8, arbitrary: fc.boolean() }, { weight: 1, arbitrary: fc.constantFrom('yes', 1, null) }),
            },
            { requiredKeys: [] },
          ),
        ),
        cls: fc.constantFrom('query', 'gallery'),
        async: fc.boolean(),
      }),
    ),
    async run(x) {
      const C = x.cls === 'query' ? QueryBank : GalleryBank;
      const bank = x.async ? await C.from(x.src, x.opts) : C.fromSync(x.src, x.opts);
      const s = bank.summary ?? bank.stats?.() ?? null;
      const rowsIn = Array.isArray(x.src) ? x.src.length : x.src.rows;
      const size = s?.size ?? bank.size ?? bank.rows;
      if (typeof size === 'number' && (size > rowsIn || (x.opts?.subsample !== undefined && size > x.opts.subsample))) throw new Fail('wrong', `bank of ${size} rows from ${rowsIn} (subsample ${x.opts?.subsample})`);
    },
  },

  cli: {
    arb: fc.record({
      verb: fc.constantFrom('eval', 'demo', 'bogus', '--help'),
      args: fc.array(
        fc.constantFrom(
          ['--methods', ''],
          ['--methods', ',,,'],
          ['--methods', 'is,none'],
          ['--methods', 'isx'],
          ['--ks', '4294967297'],
          ['--ks', '1,5'],
          ['--ks', '-1'],
          ['--captions-per-item', '4294967297'],
          ['--captions-per-item', '1'],
          ['--queries', 'Q'],
          ['--gallery', 'G'],
          ['--query-bank', 'Q'],
          ['--queries', 'HUGE'],
          ['--gallery', '/dev/null'],
          ['--gt', 'BOMGT'],
          ['--sims', 'G'],
          ['--metric', 'l2'],
          ['--beta-query', '1e39'],
          ['--unknown-flag'],
        ),
        { maxLength: 5 },
      ),
    }),
    async run(x) {
      const files = cliFiles();
      const argv = [x.verb, ...x.args.flat().map((a) => files[a] ?? a)];
      if (x.verb === 'demo') argv.push('--help'); // the full demo is covered elsewhere; keep each case short
      const r = spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), ...argv], { encoding: 'utf8', timeout: 120_000 });
      if (r.signal) throw new Fail(r.signal === 'SIGTERM' ? 'hang' : 'crash', `dbnorm ${argv.join(' ')}: killed by ${r.signal}`);
      if (![0, 1, 2].includes(r.status)) throw new Fail('crash', `dbnorm ${argv.join(' ')}: exit ${r.status}\n${r.stderr.slice(0, 400)}`);
      if (/panicked|RUST_BACKTRACE|\n\s+at .*\(.*:\d+:\d+\)/.test(r.stderr)) throw new Fail('untyped', `dbnorm ${argv.join(' ')}: stack trace on stderr\n${r.stderr.slice(0, 400)}`);
    },
  },
};


/**
 * The issue's segfault: an async call must own its input for its whole duration. The caller's
 * buffer is resizable or transferable and is shrunk or transferred away while the call is in
 * flight; the call must then give a coded error or the same result as on an untouched copy.
 */
properties.asyncBuffers = {
  arb: fc.record({
    op: fc.constantFrom('similarity', 'fit', 'search', 'addGallery', 'evaluate', 'hubness', 'writeNpy', 'QueryBank.from'),
    rows: fc.integer({ min: 200, max: 1500 }),
    cols: fc.constantFrom(16, 64),
    attack: fc.constantFrom('resize', 'transfer'),
    delay: fc.constantFrom('microtask', 'timeout0', 'timeout2'),
    seed: fc.nat(1000),
  }),
  async run(x) {
    const n = x.rows * x.cols;
    const ab = new ArrayBuffer(4 * n, { maxByteLength: 4 * n });
    const a = new Float32Array(ab);
    for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37 + x.seed);
    const copy = { data: a.slice(), rows: x.rows, cols: x.cols };
    const hostile = { data: a, rows: x.rows, cols: x.cols };
    const small = { data: Float32Array.from({ length: 8 * x.cols }, (_, i) => Math.cos(i + x.seed)), rows: 8, cols: x.cols };
    const file = path.join(tmp, 'async.npy');
    const call = (m) => {
      switch (x.op) {
        case 'similarity':
          return lib.similarity(m, small, { metric: 'dot' }).then((r) => r.data);
        case 'fit':
          return Normalizer.fit({ gallery: small, queryBank: m }, { method: 'is', leakGuard: 'off' }).then((nz) => nz.scoresSync(small).data);
        case 'search':
          return baseNorm(small).search(m, { k: 3 }).then((t) => t.scores);
        case 'addGallery': {
          const nz = baseNorm(small, true);
          return nz.addGallery(m).then(() => nz.scoresSync(small).data);
        }
        case 'evaluate':
          return lib.evaluate(m, { positives: Array.from({ length: m.rows }, (_, i) => [i % m.cols]) }).then((r) => Float64Array.from(r.ranks));
        case 'hubness':
          return lib.hubness(m, { k: 2 }).then((h) => h.occurrence);
        case 'writeNpy':
          return lib.writeNpy(file, m).then(() => lib.readNpySync(file).data);
        default:
          return QueryBank.from(m).then((b) => Float32Array.of(b.size ?? b.summary?.size ?? 0));
      }
    };
    // The reference first, on an untouched copy (a coded error there makes the case vacuous).
    let want;
    try {
      want = await call(copy);
    } catch (e) {
      if (e instanceof DbnormError && CODES.has(e.code)) return;
      throw e;
    }
    const p = call(hostile);
    if (x.delay === 'microtask') await null;
    else await new Promise((r) => setTimeout(r, x.delay === 'timeout0' ? 0 : 2));
    if (x.attack === 'resize') ab.resize(0);
    else structuredClone(ab, { transfer: [ab] });
    const got = await p; // a DbnormError here is a pass (handled by runCase)
    if (got.length !== want.length || got.some((v, i) => !(v === want[i] || (Number.isNaN(v) && Number.isNaN(want[i])))))
      throw new Fail('wrong', `${x.op}: the result changed when the input buffer was ${x.attack === 'resize' ? 'shrunk' : 'transferred'} mid-call`);
  },
  // The attack detaches or shrinks the input on purpose: the immutability check does not apply.
  mutates: true,
};

const baseCache = new Map();
function baseNorm(small, fresh = false) {
  const key = small.cols;
  if (!fresh && baseCache.has(key)) return baseCache.get(key);
  const nz = Normalizer.fitSync({ gallery: small }, { method: 'none', leakGuard: 'off' });
  if (!fresh) baseCache.set(key, nz);
  return nz;
}

let cliFileCache = null;
function cliFiles() {
  if (cliFileCache) return cliFileCache;
  const q = path.join(tmp, 'q.npy');
  const g = path.join(tmp, 'g.npy');
  lib.writeNpySync(q, { data: Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), rows: 6, cols: 4 });
  lib.writeNpySync(g, { data: Float32Array.from({ length: 24 }, (_, i) => Math.cos(i)), rows: 6, cols: 4 });
  const huge = path.join(tmp, 'huge.npy');
  let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (200000, 100000), }";
  dict += ' '.repeat(Math.ceil((dict.length + 11) / 64) * 64 - dict.length - 11) + '\n';
  const head = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, dict.length & 255, dict.length >> 8]);
  writeFileSync(huge, Buffer.concat([head, Buffer.from(dict, 'latin1'), Buffer.alloc(58)]));
  const bom = path.join(tmp, 'gt.json');
  writeFileSync(bom, '\ufeff[0,1,2,3,4,5]');
  cliFileCache = { Q: q, G: g, HUGE: huge, BOMGT: bom };
  return cliFileCache;
}

// ------------------------------------------------------------------------------------------------
// main

async function runCase(prop, x) {
  const before = JSON.stringify(snapshot(x));
  let fail = null;
  try {
    await prop.run(x);
  } catch (e) {
    if (e instanceof Fail) fail = { kind: e.kind, detail: e.message };
    else if (e instanceof DbnormError && CODES.has(e.code)) fail = null;
    else if (e instanceof DbnormError && e.code === 'ERR_INTERNAL') fail = { kind: 'internal', detail: e.message.slice(0, 300) };
    else fail = { kind: 'untyped', detail: `${e?.constructor?.name ?? typeof e}${e?.code ? ` (${e.code})` : ''}: ${String(e?.message ?? e).slice(0, 300)}` };
  }
  if (!fail && !prop.mutates && JSON.stringify(snapshot(x)) !== before) fail = { kind: 'mutated', detail: 'an input changed during the call' };
  return fail;
}

const [name, seedText, countText, startText] = process.argv.slice(2);
const prop = properties[name];
if (!prop && name !== '--list') {
  console.error(`unknown property ${name}; known: ${Object.keys(properties).join(', ')}`);
  process.exit(2);
}
if (name === '--list') {
  console.log(Object.keys(properties).join('\n'));
  process.exit(0);
}
const cases = fc.sample(prop.arb, { seed: Number(seedText), numRuns: Number(countText) });
if (startText === 'show') {
  // `node runner.mjs <property> <seed> <count> show <i>`: print case i (for crash and hang reports).
  console.log(show(cases[Number(process.argv[6])]));
  process.exit(0);
}
for (let i = Number(startText); i < cases.length; i++) {
  process.stdout.write(`B ${i}\n`);
  const fail = await runCase(prop, cases[i]);
  process.stdout.write(`E ${i} ${JSON.stringify(fail ? { ok: false, ...fail, input: show(cases[i]).slice(0, 600) } : { ok: true })}\n`);
}
