// Pure-JavaScript baseline for dbnorm.
//
// This is how the methods look when a careful JavaScript developer writes them
// without native code: typed arrays, plain loops, no WASM and no dependencies.
// It exists so that users (and the benchmark) can compare the native library
// against a readable, correct implementation. It follows the method
// specification (log-domain scores, max-shifted log-sum-exp in float64,
// activation sets from each bank row's top-k over the gallery, gates on the raw
// top-1, ties broken by score descending then index ascending).
//
// Layout conventions: every matrix is a row-major typed array. Embeddings are
// `rows × dim`; similarity matrices are `queries × gallery` or
// `bank × gallery`. Inputs are never modified.
//
// Methods: none, is, dis, dual-is, dual-dis, csls, nnn.

export const METHODS = Object.freeze(['none', 'is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn']);

export const DEFAULTS = Object.freeze({
  k: 1, // DIS / DualDIS activation-set size
  cslsK: 10,
  nnnK: 128,
  nnnAlpha: 0.75,
});

const NEEDS_QUERY_BANK = new Set(['is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn']);
const NEEDS_GALLERY_BANK = new Set(['dual-is', 'dual-dis']);
const NEEDS_BETA_QUERY = new Set(['is', 'dis', 'dual-is', 'dual-dis']);
const NEEDS_BETA_GALLERY = new Set(['dual-is', 'dual-dis']);
const NEEDS_ACTIVATION = new Set(['dis', 'dual-dis']);

// Top-k selections up to this size use an insertion buffer; larger ones sort.
const INSERTION_TOPK_LIMIT = 64;

// ---------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------

function fail(message) {
  throw new Error(`dbnorm baseline: ${message}`);
}

function checkCount(name, value, { allowZero = true } = {}) {
  if (!Number.isInteger(value) || value < 0) fail(`${name} must be a non-negative integer, got ${value}`);
  if (!allowZero && value === 0) fail(`${name} must be at least 1`);
}

function checkMatrix(name, data, rows, cols) {
  if (data == null || typeof data.length !== 'number') fail(`${name} must be a typed array`);
  if (data.length !== rows * cols) {
    fail(`${name} has ${data.length} values, expected ${rows} × ${cols} = ${rows * cols}`);
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) fail(`${name} contains a non-finite value at flat index ${i}`);
  }
}

function checkMetric(metric) {
  if (metric !== 'cosine' && metric !== 'dot') fail(`metric must be "cosine" or "dot", got ${metric}`);
}

function positiveParam(name, value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(`${name} must be a finite number, got ${value}`);
  if (value <= 0) fail(`${name} must be > 0, got ${value}`);
  return value;
}

function countParam(name, value) {
  if (!Number.isInteger(value)) fail(`${name} must be an integer, got ${value}`);
  if (value < 1) fail(`${name} must be at least 1, got ${value}`);
  return value;
}

// ---------------------------------------------------------------------------
// Similarities
// ---------------------------------------------------------------------------

/** Dot product of row `i` of `a` and row `j` of `b` (both of width d), accumulated in float64. */
function dotRows(a, aOff, b, bOff, d) {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let t = 0;
  const end4 = d - (d % 4);
  for (; t < end4; t += 4) {
    s0 += a[aOff + t] * b[bOff + t];
    s1 += a[aOff + t + 1] * b[bOff + t + 1];
    s2 += a[aOff + t + 2] * b[bOff + t + 2];
    s3 += a[aOff + t + 3] * b[bOff + t + 3];
  }
  for (; t < d; t++) s0 += a[aOff + t] * b[bOff + t];
  return (s0 + s1) + (s2 + s3);
}

/**
 * Per-row scale factors: 1/‖row‖ for cosine, 1 for dot. A zero row under
 * cosine is an error (its direction is undefined).
 */
function rowScales(name, x, rows, d, metric) {
  const scale = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    if (metric === 'dot') {
      scale[i] = 1;
      continue;
    }
    const n2 = dotRows(x, i * d, x, i * d, d);
    if (!(n2 > 0)) fail(`${name} row ${i} is a zero vector, which has no cosine similarity`);
    scale[i] = 1 / Math.sqrt(n2);
  }
  return scale;
}

/** Writes the similarities of row `i` of `a` against every row of `b` into `out[outOff ..]`. */
function similarityRow(a, i, aScale, b, bRows, bScale, d, out, outOff) {
  const aOff = i * d;
  const si = aScale[i];
  for (let j = 0; j < bRows; j++) {
    out[outOff + j] = dotRows(a, aOff, b, j * d, d) * si * bScale[j];
  }
}

/**
 * Similarity matrix between the rows of `a` (aRows × d) and `b` (bRows × d).
 * `cosine` normalises the rows on the fly (inputs are not modified); `dot` does not.
 * @returns {Float32Array} aRows × bRows, row-major.
 */
export function similarity(a, aRows, b, bRows, d, metric = 'cosine') {
  checkCount('aRows', aRows);
  checkCount('bRows', bRows);
  checkCount('d', d, { allowZero: false });
  checkMetric(metric);
  checkMatrix('a', a, aRows, d);
  checkMatrix('b', b, bRows, d);
  const aScale = rowScales('a', a, aRows, d, metric);
  const bScale = rowScales('b', b, bRows, d, metric);
  const out = new Float32Array(aRows * bRows);
  for (let i = 0; i < aRows; i++) similarityRow(a, i, aScale, b, bRows, bScale, d, out, i * bRows);
  return out;
}

// ---------------------------------------------------------------------------
// Top-k selection (score descending, then index ascending)
// ---------------------------------------------------------------------------

/**
 * Indices of the k largest of values[off .. off+n), ordered by value descending
 * and index ascending on ties. Writes k indices into outIdx[outOff ..] and, if
 * given, their values into outVal[outOff ..].
 */
function topK(values, off, n, k, outIdx, outVal, outOff) {
  if (k > INSERTION_TOPK_LIMIT) {
    const order = new Uint32Array(n);
    for (let j = 0; j < n; j++) order[j] = j;
    order.sort((x, y) => {
      const vx = values[off + x];
      const vy = values[off + y];
      return vx > vy ? -1 : vx < vy ? 1 : x - y;
    });
    for (let r = 0; r < k; r++) {
      outIdx[outOff + r] = order[r];
      if (outVal) outVal[outOff + r] = values[off + order[r]];
    }
    return;
  }
  // Sorted insertion buffer. Indices arrive in ascending order, so an equal
  // value never displaces an earlier (lower) index.
  const bestIdx = new Int32Array(k);
  const bestVal = new Float64Array(k);
  let count = 0;
  for (let j = 0; j < n; j++) {
    const v = values[off + j];
    let p;
    if (count < k) {
      p = count++;
    } else if (v > bestVal[k - 1]) {
      p = k - 1;
    } else {
      continue;
    }
    while (p > 0 && bestVal[p - 1] < v) {
      bestVal[p] = bestVal[p - 1];
      bestIdx[p] = bestIdx[p - 1];
      p--;
    }
    bestVal[p] = v;
    bestIdx[p] = j;
  }
  for (let r = 0; r < k; r++) {
    outIdx[outOff + r] = bestIdx[r];
    if (outVal) outVal[outOff + r] = bestVal[r];
  }
}

/** Index of the largest value in values[off .. off+n); the lowest index wins ties. */
function argmax(values, off, n) {
  let best = 0;
  let bestVal = values[off];
  for (let j = 1; j < n; j++) {
    if (values[off + j] > bestVal) {
      bestVal = values[off + j];
      best = j;
    }
  }
  return best;
}

/** Mean of the k largest of values[off .. off+n) (tie-independent). */
function meanTopK(values, off, n, k) {
  const idx = new Uint32Array(k);
  const val = new Float64Array(k);
  topK(values, off, n, k, idx, val, 0);
  let s = 0;
  for (let r = 0; r < k; r++) s += val[r];
  return s / k;
}

// ---------------------------------------------------------------------------
// Bank statistics, consumed one bank row at a time
// ---------------------------------------------------------------------------

/**
 * Streaming per-gallery statistics of one bank: a log-sum-exp of β·P over the
 * bank axis (float64 state (m, z) per gallery column, max-shifted), the
 * activation set (union of each bank row's top-k gallery items) and the top-K
 * values of each column (a min-heap per column, for CSLS / NNN).
 */
class BankAccumulator {
  constructor(galleryCount, { beta = 0, activationK = 0, columnK = 0 }) {
    this.ng = galleryCount;
    this.rows = 0;
    this.beta = beta;
    if (beta > 0) {
      this.lseMax = new Float64Array(galleryCount).fill(-Infinity);
      this.lseSum = new Float64Array(galleryCount);
    }
    this.activationK = activationK;
    if (activationK > 0) {
      this.active = new Uint8Array(galleryCount);
      this.rowTop = new Uint32Array(activationK);
    }
    this.columnK = columnK;
    if (columnK > 0) {
      this.heap = new Float64Array(galleryCount * columnK); // min-heap per column
    }
  }

  /** Consumes one bank row: its similarities to every gallery item. */
  addRow(row, off) {
    const ng = this.ng;
    if (this.beta > 0) {
      const beta = this.beta;
      const m = this.lseMax;
      const z = this.lseSum;
      for (let j = 0; j < ng; j++) {
        const x = beta * row[off + j];
        if (x > m[j]) {
          z[j] = z[j] * Math.exp(m[j] - x) + 1; // exp(-inf) = 0 on the first row
          m[j] = x;
        } else {
          z[j] += Math.exp(x - m[j]);
        }
      }
    }
    if (this.activationK > 0) {
      topK(row, off, ng, this.activationK, this.rowTop, null, 0);
      for (let r = 0; r < this.activationK; r++) this.active[this.rowTop[r]] = 1;
    }
    if (this.columnK > 0) {
      const K = this.columnK;
      const heap = this.heap;
      const size = this.rows; // number of values already pushed into every heap
      for (let j = 0; j < ng; j++) {
        const base = j * K;
        const v = row[off + j];
        if (size < K) {
          // Push and sift up.
          let c = size;
          while (c > 0) {
            const parent = (c - 1) >> 1;
            if (heap[base + parent] <= v) break;
            heap[base + c] = heap[base + parent];
            c = parent;
          }
          heap[base + c] = v;
        } else if (v > heap[base]) {
          // Replace the minimum and sift down.
          let c = 0;
          for (;;) {
            const l = 2 * c + 1;
            if (l >= K) break;
            const r = l + 1;
            const child = r < K && heap[base + r] < heap[base + l] ? r : l;
            if (heap[base + child] >= v) break;
            heap[base + c] = heap[base + child];
            c = child;
          }
          heap[base + c] = v;
        }
      }
    }
    this.rows++;
  }

  /** L(j) = LSE_b(β P_bj) as a Float64Array. */
  logSumExp() {
    const out = new Float64Array(this.ng);
    for (let j = 0; j < this.ng; j++) out[j] = this.lseMax[j] + Math.log(this.lseSum[j]);
    return out;
  }

  /** Mean of the top-K values of each column (K clamped to the bank size). */
  columnTopMean() {
    const K = this.columnK;
    const n = Math.min(K, this.rows);
    const out = new Float64Array(this.ng);
    for (let j = 0; j < this.ng; j++) {
      let s = 0;
      for (let r = 0; r < n; r++) s += this.heap[j * K + r];
      out[j] = s / n;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------
// Fitting
// ---------------------------------------------------------------------------

function resolveOptions(method, opts, galleryCount, queryBankRows) {
  if (!METHODS.includes(method)) fail(`unknown method "${method}" (expected one of ${METHODS.join(', ')})`);
  const o = opts ?? {};
  const params = { method };
  if (NEEDS_BETA_QUERY.has(method)) {
    if (o.betaQuery === undefined) fail(`${method} needs betaQuery: the baseline has no default because β depends on the similarity scale`);
    params.betaQuery = positiveParam('betaQuery', o.betaQuery);
  }
  if (NEEDS_BETA_GALLERY.has(method)) {
    if (o.betaGallery === undefined) fail(`${method} needs betaGallery: the baseline has no default because β depends on the similarity scale`);
    params.betaGallery = positiveParam('betaGallery', o.betaGallery);
  }
  const effective = {};
  if (NEEDS_ACTIVATION.has(method)) {
    params.k = countParam('k', o.k ?? DEFAULTS.k);
    effective.k = Math.min(params.k, galleryCount);
  }
  if (method === 'csls') {
    params.cslsK = countParam('cslsK', o.cslsK ?? DEFAULTS.cslsK);
    effective.cslsKBank = Math.min(params.cslsK, queryBankRows);
    effective.cslsKQuery = Math.min(params.cslsK, galleryCount);
  }
  if (method === 'nnn') {
    params.nnnK = countParam('nnnK', o.nnnK ?? DEFAULTS.nnnK);
    const alpha = o.nnnAlpha ?? DEFAULTS.nnnAlpha;
    if (typeof alpha !== 'number' || !Number.isFinite(alpha)) fail(`nnnAlpha must be a finite number, got ${alpha}`);
    if (alpha < 0) fail(`nnnAlpha must be >= 0, got ${alpha}`);
    params.nnnAlpha = alpha;
    effective.nnnK = Math.min(params.nnnK, queryBankRows);
  }
  return { params, effective };
}

function checkBanks(method, queryBankRows, galleryBankRows) {
  if (NEEDS_QUERY_BANK.has(method) && queryBankRows === 0) fail(`${method} needs a non-empty query bank`);
  if (NEEDS_GALLERY_BANK.has(method) && galleryBankRows === 0) fail(`${method} needs a non-empty gallery bank`);
}

function makeAccumulators(params, effective, ng) {
  const m = params.method;
  const query = NEEDS_QUERY_BANK.has(m)
    ? new BankAccumulator(ng, {
        beta: NEEDS_BETA_QUERY.has(m) ? params.betaQuery : 0,
        activationK: NEEDS_ACTIVATION.has(m) ? effective.k : 0,
        columnK: m === 'csls' ? effective.cslsKBank : m === 'nnn' ? effective.nnnK : 0,
      })
    : null;
  const gallery = NEEDS_GALLERY_BANK.has(m)
    ? new BankAccumulator(ng, {
        beta: params.betaGallery,
        activationK: m === 'dual-dis' ? effective.k : 0,
      })
    : null;
  return { query, gallery };
}

function finishFit(params, effective, ng, acc) {
  const m = params.method;
  const fitted = { ...params, galleryCount: ng, effective };
  if (NEEDS_BETA_QUERY.has(m)) fitted.lq = acc.query.logSumExp();
  if (NEEDS_BETA_GALLERY.has(m)) fitted.lg = acc.gallery.logSumExp();
  if (m === 'dis' || m === 'dual-dis') fitted.activeQuery = acc.query.active;
  if (m === 'dual-dis') fitted.activeGallery = acc.gallery.active;
  // Per-gallery bias for CSLS (r_S, mean top-K of the column) and NNN (mean top-k, before α).
  if (m === 'csls' || m === 'nnn') fitted.columnMean = acc.query.columnTopMean();
  return fitted;
}

/**
 * Fits a method from embeddings. Bank × gallery similarities are computed one
 * bank row at a time and consumed immediately (no whole bank matrix is kept).
 *
 * @param {string} method none | is | dis | dual-is | dual-dis | csls | nnn
 * @param {object} data { gallery, galleryRows, queryBank, queryBankRows, galleryBank, galleryBankRows, dim, metric }
 * @param {object} opts { betaQuery, betaGallery, k, cslsK, nnnK, nnnAlpha }
 * @returns fitted object with per-gallery statistics (lq, lg: Float64Array;
 *   activeQuery, activeGallery: Uint8Array; columnMean: Float64Array).
 */
export function fit(method, data, opts = {}) {
  const {
    gallery, galleryRows,
    queryBank = null, queryBankRows = 0,
    galleryBank = null, galleryBankRows = 0,
    dim, metric = 'cosine',
  } = data;
  checkCount('galleryRows', galleryRows, { allowZero: false });
  checkCount('queryBankRows', queryBankRows);
  checkCount('galleryBankRows', galleryBankRows);
  checkCount('dim', dim, { allowZero: false });
  checkMetric(metric);
  const { params, effective } = resolveOptions(method, opts, galleryRows, queryBankRows);
  checkBanks(method, queryBankRows, galleryBankRows);
  const useQueryBank = NEEDS_QUERY_BANK.has(method);
  const useGalleryBank = NEEDS_GALLERY_BANK.has(method);
  checkMatrix('gallery', gallery, galleryRows, dim);
  if (useQueryBank) checkMatrix('queryBank', queryBank, queryBankRows, dim);
  if (useGalleryBank) checkMatrix('galleryBank', galleryBank, galleryBankRows, dim);

  const ng = galleryRows;
  const acc = makeAccumulators(params, effective, ng);
  const gScale = rowScales('gallery', gallery, ng, dim, metric);
  const row = new Float32Array(ng); // similarities are float32, as from the library's kernels
  if (useQueryBank) {
    const bScale = rowScales('queryBank', queryBank, queryBankRows, dim, metric);
    for (let b = 0; b < queryBankRows; b++) {
      similarityRow(queryBank, b, bScale, gallery, ng, gScale, dim, row, 0);
      acc.query.addRow(row, 0);
    }
  }
  if (useGalleryBank) {
    const bScale = rowScales('galleryBank', galleryBank, galleryBankRows, dim, metric);
    for (let b = 0; b < galleryBankRows; b++) {
      similarityRow(galleryBank, b, bScale, gallery, ng, gScale, dim, row, 0);
      acc.gallery.addRow(row, 0);
    }
  }
  return finishFit(params, effective, ng, acc);
}

/**
 * Fits a method from precomputed bank similarities (all on the scale of the
 * query × gallery similarities that will be scored).
 *
 * @param {string} method
 * @param {object} data { queryBankSims (queryBankRows × galleryCount), galleryBankSims (galleryBankRows × galleryCount), galleryCount, queryBankRows, galleryBankRows }
 * @param {object} opts { betaQuery, betaGallery, k, cslsK, nnnK, nnnAlpha }
 */
export function fitSimilarities(method, data, opts = {}) {
  const {
    queryBankSims = null, galleryBankSims = null,
    galleryCount, queryBankRows = 0, galleryBankRows = 0,
  } = data;
  checkCount('galleryCount', galleryCount, { allowZero: false });
  checkCount('queryBankRows', queryBankRows);
  checkCount('galleryBankRows', galleryBankRows);
  const { params, effective } = resolveOptions(method, opts, galleryCount, queryBankRows);
  checkBanks(method, queryBankRows, galleryBankRows);
  const useQueryBank = NEEDS_QUERY_BANK.has(method);
  const useGalleryBank = NEEDS_GALLERY_BANK.has(method);
  if (useQueryBank) checkMatrix('queryBankSims', queryBankSims, queryBankRows, galleryCount);
  if (useGalleryBank) checkMatrix('galleryBankSims', galleryBankSims, galleryBankRows, galleryCount);

  const ng = galleryCount;
  const acc = makeAccumulators(params, effective, ng);
  if (useQueryBank) for (let b = 0; b < queryBankRows; b++) acc.query.addRow(queryBankSims, b * ng);
  if (useGalleryBank) for (let b = 0; b < galleryBankRows; b++) acc.gallery.addRow(galleryBankSims, b * ng);
  return finishFit(params, effective, ng, acc);
}

// ---------------------------------------------------------------------------
// Scoring and search
// ---------------------------------------------------------------------------

/** Normalised scores of query row i, in float64, written to out[0 .. ng). */
function scoreRow(fitted, sims, i, ng, out) {
  const off = i * ng;
  switch (fitted.method) {
    case 'none':
      for (let j = 0; j < ng; j++) out[j] = sims[off + j];
      break;
    case 'is': {
      const bq = fitted.betaQuery;
      const lq = fitted.lq;
      for (let j = 0; j < ng; j++) out[j] = bq * sims[off + j] - lq[j];
      break;
    }
    case 'dis': {
      const bq = fitted.betaQuery;
      const gated = fitted.activeQuery[argmax(sims, off, ng)] === 1;
      const lq = fitted.lq;
      for (let j = 0; j < ng; j++) out[j] = bq * sims[off + j] - (gated ? lq[j] : 0);
      break;
    }
    case 'dual-is': {
      const beta = fitted.betaQuery + fitted.betaGallery;
      const lq = fitted.lq;
      const lg = fitted.lg;
      for (let j = 0; j < ng; j++) out[j] = beta * sims[off + j] - lq[j] - lg[j];
      break;
    }
    case 'dual-dis': {
      const beta = fitted.betaQuery + fitted.betaGallery;
      const top = argmax(sims, off, ng);
      const gq = fitted.activeQuery[top] === 1 ? 1 : 0;
      const gg = fitted.activeGallery[top] === 1 ? 1 : 0;
      const lq = fitted.lq;
      const lg = fitted.lg;
      for (let j = 0; j < ng; j++) out[j] = beta * sims[off + j] - gq * lq[j] - gg * lg[j];
      break;
    }
    case 'csls': {
      const rT = meanTopK(sims, off, ng, fitted.effective.cslsKQuery);
      const rS = fitted.columnMean;
      for (let j = 0; j < ng; j++) out[j] = 2 * sims[off + j] - rT - rS[j];
      break;
    }
    case 'nnn': {
      const alpha = fitted.nnnAlpha;
      const bias = fitted.columnMean;
      for (let j = 0; j < ng; j++) out[j] = sims[off + j] - alpha * bias[j];
      break;
    }
    default:
      fail(`unknown method "${fitted.method}"`);
  }
}

function checkFitted(fitted, sims, nq) {
  if (fitted == null || !METHODS.includes(fitted.method)) fail('fitted must come from fit() or fitSimilarities()');
  checkCount('nq', nq);
  checkMatrix('sims', sims, nq, fitted.galleryCount);
}

/**
 * Normalised scores for query × gallery similarities `sims` (nq × ng).
 * Computed in float64 and returned as float32.
 * @returns {Float32Array} nq × ng
 */
export function scores(fitted, sims, nq) {
  checkFitted(fitted, sims, nq);
  const ng = fitted.galleryCount;
  const out = new Float32Array(nq * ng);
  const row = new Float64Array(ng);
  for (let i = 0; i < nq; i++) {
    scoreRow(fitted, sims, i, ng, row);
    out.set(row, i * ng);
  }
  return out;
}

/**
 * Top-k gallery items per query by normalised score (ranked on the float64
 * scores; ties: score descending, then index ascending). k is clamped to ng.
 * @returns {{ indices: Uint32Array, scores: Float32Array, k: number }} nq × k each
 */
export function search(fitted, sims, nq, k = 10) {
  checkFitted(fitted, sims, nq);
  countParam('k', k);
  const ng = fitted.galleryCount;
  const kk = Math.min(k, ng);
  const indices = new Uint32Array(nq * kk);
  const values = new Float64Array(nq * kk);
  const row = new Float64Array(ng);
  for (let i = 0; i < nq; i++) {
    scoreRow(fitted, sims, i, ng, row);
    topK(row, 0, ng, kk, indices, values, i * kk);
  }
  return { indices, scores: Float32Array.from(values), k: kk };
}

// ---------------------------------------------------------------------------
// Evaluation and hubness
// ---------------------------------------------------------------------------

/**
 * Text-to-item retrieval metrics. Caption i belongs to item floor(i / c) with
 * c = captionsPerItem (default nq / ng, which must be an integer). The 0-based
 * rank of the ground truth averages ties: r = (#strictly above) + (#other items
 * tied with it) / 2.
 * @returns {{ R1: number, R5: number, R10: number, MdR: number, MnR: number }}
 */
export function evaluate(scoreMatrix, nq, ng, { captionsPerItem } = {}) {
  checkCount('nq', nq);
  checkCount('ng', ng, { allowZero: false });
  checkMatrix('scores', scoreMatrix, nq, ng);
  const c = captionsPerItem ?? nq / ng;
  if (!Number.isInteger(c) || c < 1) fail(`captionsPerItem must be a positive integer, got ${c} (nq=${nq}, ng=${ng})`);
  if (nq !== c * ng) fail(`${nq} queries do not match ${ng} items with ${c} captions each`);
  if (nq === 0) return { R1: NaN, R5: NaN, R10: NaN, MdR: NaN, MnR: NaN };
  const ranks = new Float64Array(nq);
  for (let i = 0; i < nq; i++) {
    const off = i * ng;
    const gt = Math.floor(i / c);
    const v = scoreMatrix[off + gt];
    let above = 0;
    let tied = 0;
    for (let j = 0; j < ng; j++) {
      if (j === gt) continue;
      const x = scoreMatrix[off + j];
      if (x > v) above++;
      else if (x === v) tied++;
    }
    ranks[i] = above + tied / 2;
  }
  let r1 = 0, r5 = 0, r10 = 0, sum = 0;
  for (let i = 0; i < nq; i++) {
    const r = ranks[i];
    if (r < 1) r1++;
    if (r < 5) r5++;
    if (r < 10) r10++;
    sum += r;
  }
  const sorted = Float64Array.from(ranks).sort();
  const mid = nq >> 1;
  const median = nq % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return {
    R1: (100 * r1) / nq,
    R5: (100 * r5) / nq,
    R10: (100 * r10) / nq,
    MdR: median + 1,
    MnR: sum / nq + 1,
  };
}

/**
 * k-occurrence N_k of every gallery item (ties: score descending, index
 * ascending) and its population skewness over all items, zeros included
 * (NaN when every item has the same N_k).
 * @returns {{ occurrence: Uint32Array, skewness: number, k: number }}
 */
export function hubness(scoreMatrix, nq, ng, k = 10) {
  checkCount('nq', nq);
  checkCount('ng', ng, { allowZero: false });
  countParam('k', k);
  checkMatrix('scores', scoreMatrix, nq, ng);
  const kk = Math.min(k, ng);
  const occurrence = new Uint32Array(ng);
  const idx = new Uint32Array(kk);
  for (let i = 0; i < nq; i++) {
    topK(scoreMatrix, i * ng, ng, kk, idx, null, 0);
    for (let r = 0; r < kk; r++) occurrence[idx[r]]++;
  }
  let allEqual = true;
  for (let j = 1; j < ng; j++) if (occurrence[j] !== occurrence[0]) allEqual = false;
  if (allEqual) return { occurrence, skewness: NaN, k: kk };
  const mu = (kk * nq) / ng;
  let m2 = 0, m3 = 0;
  for (let j = 0; j < ng; j++) {
    const dlt = occurrence[j] - mu;
    m2 += dlt * dlt;
    m3 += dlt * dlt * dlt;
  }
  m2 /= ng;
  m3 /= ng;
  return { occurrence, skewness: m3 / Math.pow(m2, 1.5), k: kk };
}
