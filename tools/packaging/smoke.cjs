#!/usr/bin/env node
// Smoke test of an installed dbnorm: fit + search + evaluate on a small seeded synthetic set, for
// three methods. Prints one JSON object: which build loaded ("native" or "wasm32-wasi"), and per method
// the top-k indices, the top-k scores (float32 values), and the retrieval metrics.
// Usage: node smoke.cjs [path-or-name-of-dbnorm]   (default: 'dbnorm' resolved from the cwd)
const path = require('node:path');
const { createRequire } = require('node:module');

const target = process.argv[2] ?? 'dbnorm';
const req = createRequire(path.join(process.cwd(), 'noop.js'));
const dbnorm = req(target);
// which build loaded (dist/native.js is not an export of the package: load it by file path)
const backend = require(path.join(path.dirname(req.resolve(`${target}/package.json`)), 'dist', 'native.js')).backend;

async function main() {
  const data = dbnorm.syntheticBenchmark({ seed: 7, gallery: 150, queryBank: 600, galleryBank: 300, dim: 48 });
  const out = { backend, node: process.version, arch: process.arch, methods: {} };
  for (const method of ['dual-is', 'dual-dis', 'csls']) {
    const norm = await dbnorm.Normalizer.fit({ gallery: data.gallery, queryBank: data.queryBank, galleryBank: data.galleryBank }, { method });
    const top = await norm.search(data.queries, { k: 10 });
    const m = await dbnorm.evaluate(await norm.scores(data.queries), { captionsPerItem: data.captionsPerItem }, { ks: [1, 5, 10] });
    out.methods[method] = {
      indices: Array.from(top.indices),
      scores: Array.from(top.scores),
      metrics: { recall: m.recall.map((r) => r.value), MdR: m.MdR, MnR: m.MnR },
    };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
