// Writes seed inputs for the cargo-fuzz targets (valid files the fuzzer mutates):
// `.npy` images (versions 1–3, <f4/<f8, 1-D/2-D, empty) and saved normalisers (every method, both
// modes). Usage: node tools/fuzz-seeds.mjs <corpus dir>  (needs `npm run build` first).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { METHODS, METHOD_INFO, PARAM_INFO, Normalizer } = require('../dist/index.js');

const out = process.argv[2] ?? 'crate/fuzz/corpus';
mkdirSync(path.join(out, 'npy'), { recursive: true });
mkdirSync(path.join(out, 'persist'), { recursive: true });

function npy(version, descr, shape, data) {
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pre = version === 1 ? 10 : 12;
  const unpadded = pre + dict.length + 1;
  dict += ' '.repeat(Math.ceil(unpadded / 64) * 64 - unpadded) + '\n';
  const head = Buffer.alloc(pre);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]).copy(head);
  if (version === 1) head.writeUInt16LE(dict.length, 8);
  else head.writeUInt32LE(dict.length, 8);
  return Buffer.concat([head, Buffer.from(dict, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

const f4 = new Float32Array([1, -2, 0.5, 3, 4, 5]);
const f8 = new Float64Array([1, -2, 0.5, 3, 4, 5]);
const seeds = {
  'v1-f4-2x3': npy(1, '<f4', '(2, 3)', f4),
  'v1-f8-3x2': npy(1, '<f8', '(3, 2)', f8),
  'v2-f4-6': npy(2, '<f4', '(6,)', f4),
  'v3-f8-1x6': npy(3, '<f8', '(1, 6)', f8),
  'v1-f4-0x3': npy(1, '<f4', '(0, 3)', new Float32Array(0)),
};
for (const [name, bytes] of Object.entries(seeds)) writeFileSync(path.join(out, 'npy', name), bytes);

// Saved normalisers: small, so mutations reach every section. The persist target reads the first
// byte as a mode (even = reseal the checksum), so each seed is written with a leading 0.
const rand = (n, seed) => {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
};
const m = (rows, cols, seed, f = 1) => ({ data: rand(rows * cols, seed).map((v) => v * f), rows, cols });
const tmp = path.join(os.tmpdir(), `dbnorm-fuzz-seed-${process.pid}.dbn`);
for (const method of METHODS) {
  const opts = { method, k: 2, cslsK: 2, nnnK: 2 };
  // leakGuard applies to embeddings-mode fits only (fitSimilarities refuses the key)
  // similarity mode: every parameter the method reads, so cosine-only defaults (β, τ) are given
  const info = METHOD_INFO.find((x) => x.id === method);
  const simOpts = { ...opts, ...Object.fromEntries(PARAM_INFO.filter((p) => p.defaultCosineOnly && info.params.includes(p.name)).map((p) => [p.name, p.default])), betaQuery: 0.5, betaGallery: 0.5 };
  const emb = Normalizer.fitSync({ gallery: m(5, 3, 1), queryBank: m(4, 3, 2), galleryBank: m(3, 3, 3) }, { ...opts, leakGuard: 'off' });
  emb.saveSync(tmp);
  writeFileSync(path.join(out, 'persist', `${method}-emb`), Buffer.concat([Buffer.from([0]), readFileSync(tmp)]));
  if (info.embeddingsOnly) continue;
  const sims = await Normalizer.fitSimilarities({ queryBankSims: m(4, 5, 4, 5), galleryBankSims: m(3, 5, 5, 5) }, simOpts);
  sims.saveSync(tmp);
  writeFileSync(path.join(out, 'persist', `${method}-sims`), Buffer.concat([Buffer.from([0]), readFileSync(tmp)]));
}
rmSync(tmp, { force: true });
// Version-1 files (still read): the committed fixtures written by the version-1 build.
const v1 = new URL('../crate/tests/fixtures/format-v1/', import.meta.url);
for (const f of ['dual-dis-embeddings.dbn', 'csls-similarities.dbn']) {
  writeFileSync(path.join(out, 'persist', `v1-${f}`), Buffer.concat([Buffer.from([0]), readFileSync(new URL(f, v1))]));
}
console.log(`seeds written to ${out}`);
