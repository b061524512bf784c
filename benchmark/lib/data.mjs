// Benchmark data: seeded synthetic cross-modal embeddings with planted hubs, .npy I/O and hashing.
// Dependency-free on purpose: the pure-JS contender loads its inputs through this file too.
//
// The data model (fast enough to generate the COCO-5k shape in a few seconds in plain JS):
//   every gallery item i has a random unit "concept" c_i;
//   gallery item      g_i = norm(c_i + σ_g·ε + o_g)
//   its captions   q_(i,r) = norm(c_i + σ_q·ε + o_q),  r = 0 .. captionsPerItem−1 (item-major)
// with ε a Gaussian vector of norm ≈ 1 and o_q, o_g fixed "modality offsets" shared by every
// query / every gallery vector (the modality gap of CLIP-like encoders). A small fraction of the
// gallery (and of the gallery bank) are planted hubs, pulled toward the mean query direction so
// that they are close to every query. The banks are fresh concepts drawn the same way.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Workload shapes (issue 6). d = 512 everywhere. `queries` = gallery × captionsPerItem. */
export const WORKLOADS = {
  quick: { dim: 512, gallery: 1000, queryBank: 5000, galleryBank: 1000, captionsPerItem: 1 },
  coco: { dim: 512, gallery: 5000, queryBank: 100000, galleryBank: 20000, captionsPerItem: 5 },
  // online: a 100k gallery; the banks only feed the fit (not timed as part of the latency figures)
  // and the queries are a pool the latency loops draw from.
  online: { dim: 512, gallery: 100000, queryBank: 5000, galleryBank: 1000, queries: 2000 },
  // large: 1M gallery, 10k query bank, 10k queries; no gallery bank (IS / DIS family).
  large: { dim: 512, gallery: 1000000, queryBank: 10000, galleryBank: 0, queries: 10000 },
};

const DEFAULT_MODEL = {
  querySigma: 3.0,
  gallerySigma: 2.0,
  queryOffset: 0.8,
  galleryOffset: 0.5,
  hubFraction: 0.02,
  hubPull: 0.15,
};

// ---------------------------------------------------------------------------
// PRNG: sfc32 (a small, fast 32-bit generator) seeded through splitmix32. Gaussians by the polar
// Box–Muller method.
// ---------------------------------------------------------------------------

function splitmix32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** A seeded generator of uniform [0, 1) doubles and standard normal doubles. */
export function makeRandom(seed) {
  const init = splitmix32(seed);
  let a = init(), b = init(), c = init(), d = init() | 1;
  const u32 = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) u32();
  const uniform = () => (u32() + 0.5) / 4294967296;
  let spare = 0;
  let haveSpare = false;
  const normal = () => {
    if (haveSpare) {
      haveSpare = false;
      return spare;
    }
    let x, y, r;
    do {
      x = 2 * uniform() - 1;
      y = 2 * uniform() - 1;
      r = x * x + y * y;
    } while (r >= 1 || r === 0);
    const f = Math.sqrt((-2 * Math.log(r)) / r);
    spare = y * f;
    haveSpare = true;
    return x * f;
  };
  return { uniform, normal, u32 };
}

function fillUnitGaussian(rand, v) {
  let s = 0;
  for (let t = 0; t < v.length; t++) {
    const x = rand.normal();
    v[t] = x;
    s += x * x;
  }
  const inv = 1 / Math.sqrt(s);
  for (let t = 0; t < v.length; t++) v[t] *= inv;
  return v;
}

/** out[off..off+d) = norm(concept + sigma·ε/√d + offset), optionally pulled toward `pullTo`. */
function embed(rand, concept, sigma, offset, out, off, pull, pullTo) {
  const d = concept.length;
  const sd = sigma / Math.sqrt(d);
  let s = 0;
  const tmp = embed.tmp && embed.tmp.length === d ? embed.tmp : (embed.tmp = new Float64Array(d));
  for (let t = 0; t < d; t++) {
    const x = concept[t] + sd * rand.normal() + offset[t];
    tmp[t] = x;
    s += x * x;
  }
  let inv = 1 / Math.sqrt(s);
  if (pull > 0) {
    s = 0;
    for (let t = 0; t < d; t++) {
      const x = (1 - pull) * tmp[t] * inv + pull * pullTo[t];
      tmp[t] = x;
      s += x * x;
    }
    inv = 1 / Math.sqrt(s);
  }
  for (let t = 0; t < d; t++) out[off + t] = tmp[t] * inv;
}

function pickHubs(rand, n, fraction) {
  const want = Math.min(n, Math.max(1, Math.round(fraction * n)));
  const hubs = new Uint8Array(n);
  let got = 0;
  while (got < want) {
    const i = Math.floor(rand.uniform() * n);
    if (!hubs[i]) {
      hubs[i] = 1;
      got++;
    }
  }
  return hubs;
}

/**
 * Generates one workload. Returns row-major Float32Arrays (unit rows) and the planted hubs.
 * Each matrix has its own PRNG stream (seed + a per-matrix constant), so shapes can change
 * without reshuffling the other matrices.
 */
export function generate(shape, seed = 1, model = DEFAULT_MODEL) {
  const d = shape.dim;
  const ng = shape.gallery;
  const c = shape.captionsPerItem ?? 1;
  const nq = shape.queries ?? ng * c;
  const m = { ...DEFAULT_MODEL, ...model };
  const base = makeRandom(seed);
  const oq = fillUnitGaussian(base, new Float64Array(d)).map((x) => x * m.queryOffset);
  const og = fillUnitGaussian(base, new Float64Array(d)).map((x) => x * m.galleryOffset);
  const muQ = Float64Array.from(oq).map((x) => x / m.queryOffset); // unit mean-query direction

  // Test concepts, gallery and its hubs.
  const rc = makeRandom(seed * 7919 + 1);
  const concepts = new Float64Array(ng * d);
  const tmp = new Float64Array(d);
  for (let i = 0; i < ng; i++) concepts.set(fillUnitGaussian(rc, tmp), i * d);
  const rg = makeRandom(seed * 7919 + 2);
  const hubMask = pickHubs(rg, ng, m.hubFraction);
  const gallery = new Float32Array(ng * d);
  for (let i = 0; i < ng; i++) {
    embed(rg, concepts.subarray(i * d, (i + 1) * d), m.gallerySigma, og, gallery, i * d, hubMask[i] ? m.hubPull : 0, muQ);
  }
  // Queries: item-major captions of the test concepts (a pool of `queries` rows cycling over the items
  // when the workload gives an explicit query count, e.g. online / large).
  const rq = makeRandom(seed * 7919 + 3);
  const queries = new Float32Array(nq * d);
  for (let i = 0; i < nq; i++) {
    const item = shape.queries !== undefined ? i % ng : Math.floor(i / c);
    embed(rq, concepts.subarray(item * d, (item + 1) * d), m.querySigma, oq, queries, i * d, 0, muQ);
  }
  // Banks: fresh concepts.
  const rb = makeRandom(seed * 7919 + 4);
  const queryBank = new Float32Array(shape.queryBank * d);
  for (let i = 0; i < shape.queryBank; i++) embed(rb, fillUnitGaussian(rb, tmp), m.querySigma, oq, queryBank, i * d, 0, muQ);
  const rh = makeRandom(seed * 7919 + 5);
  const galleryBank = new Float32Array(shape.galleryBank * d);
  const bankHubs = pickHubs(rh, Math.max(1, shape.galleryBank), m.hubFraction);
  for (let i = 0; i < shape.galleryBank; i++) {
    embed(rh, fillUnitGaussian(rh, tmp), m.gallerySigma, og, galleryBank, i * d, bankHubs[i] ? m.hubPull : 0, muQ);
  }
  const hubs = [];
  for (let i = 0; i < ng; i++) if (hubMask[i]) hubs.push(i);
  return {
    dim: d,
    captionsPerItem: shape.queries !== undefined ? null : c,
    arrays: {
      gallery: { data: gallery, rows: ng, cols: d },
      queries: { data: queries, rows: nq, cols: d },
      query_bank: { data: queryBank, rows: shape.queryBank, cols: d },
      gallery_bank: { data: galleryBank, rows: shape.galleryBank, cols: d },
    },
    hubs: Uint32Array.from(hubs),
  };
}

// ---------------------------------------------------------------------------
// .npy (version 1.0, little-endian float32 / uint32, C order)
// ---------------------------------------------------------------------------

const DESCR = { Float32Array: '<f4', Uint32Array: '<u4', Float64Array: '<f8', Uint8Array: '|u1' };
const CTOR = { '<f4': Float32Array, '<u4': Uint32Array, '<f8': Float64Array, '|u1': Uint8Array };

export function writeNpy(file, data, shape) {
  const descr = DESCR[data.constructor.name];
  if (!descr) throw new Error(`writeNpy: unsupported array type ${data.constructor.name}`);
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const fd = fs.openSync(file + '.tmp', 'w');
  try {
    fs.writeSync(fd, pre);
    fs.writeSync(fd, Buffer.from(header, 'latin1'));
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const CHUNK = 1 << 28;
    for (let o = 0; o < bytes.length; o += CHUNK) fs.writeSync(fd, bytes.subarray(o, Math.min(bytes.length, o + CHUNK)));
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(file + '.tmp', file);
}

/** Reads a 1-D or 2-D .npy; returns { data, rows, cols }. */
export function readNpy(file) {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(4096);
    fs.readSync(fd, head, 0, head.length, 0);
    if (head.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not a .npy file`);
    const major = head[6];
    const hlen = major === 1 ? head.readUInt16LE(8) : head.readUInt32LE(8);
    const start = major === 1 ? 10 : 12;
    const header = head.toString('latin1', start, start + hlen);
    const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
    if (/'fortran_order':\s*True/.test(header)) throw new Error(`${file}: Fortran order is not supported`);
    const dims = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
    const Ctor = CTOR[descr];
    if (!Ctor) throw new Error(`${file}: unsupported dtype ${descr}`);
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Ctor(n);
    const bytes = new Uint8Array(data.buffer);
    const CHUNK = 1 << 28;
    let pos = start + hlen;
    for (let o = 0; o < bytes.length; ) {
      const got = fs.readSync(fd, bytes, o, Math.min(CHUNK, bytes.length - o), pos);
      if (got <= 0) throw new Error(`${file}: truncated`);
      o += got;
      pos += got;
    }
    return { data, rows: dims[0] ?? 1, cols: dims.length > 1 ? dims[1] : 1 };
  } finally {
    fs.closeSync(fd);
  }
}

/** sha256 (first 16 hex digits) of the bytes of one or more typed arrays. */
export function hashArrays(...arrays) {
  const h = createHash('sha256');
  for (const a of arrays) {
    if (a == null) continue;
    h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}

/**
 * Makes sure the workload's .npy files exist in `dir` (generated once per seed and shape, then
 * reused). Returns a description { dir, shape, files, generatedSeconds, hash }.
 */
export function ensureWorkload(dir, name, shape, seed) {
  fs.mkdirSync(dir, { recursive: true });
  const meta = path.join(dir, 'meta.json');
  const key = JSON.stringify({ name, shape, seed, model: DEFAULT_MODEL, v: 1 });
  if (fs.existsSync(meta)) {
    const m = JSON.parse(fs.readFileSync(meta, 'utf8'));
    if (m.key === key) return { ...m, reused: true };
  }
  const t0 = performance.now();
  const w = generate(shape, seed);
  const generatedSeconds = (performance.now() - t0) / 1000;
  const hashes = {};
  for (const [k, m] of Object.entries(w.arrays)) {
    if (m.rows === 0) continue;
    writeNpy(path.join(dir, `${k}.npy`), m.data, [m.rows, m.cols]);
    hashes[k] = hashArrays(m.data);
  }
  writeNpy(path.join(dir, 'hubs.npy'), w.hubs, [w.hubs.length]);
  const out = { key, name, shape, seed, captionsPerItem: w.captionsPerItem, hubs: w.hubs.length, hashes, generatedSeconds };
  fs.writeFileSync(meta, JSON.stringify(out, null, 2));
  return { ...out, reused: false };
}
