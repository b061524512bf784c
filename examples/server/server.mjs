#!/usr/bin/env node
// npm run example:server — a normalised-retrieval HTTP service on 127.0.0.1.
//   POST /search {"vector":[...d floats], "k":10}  or  {"vectors":[[...],[...]], "k":10}
//   GET  /healthz
// Environment: PORT (default 3000; 0 = any free port), ITEMS (default 20000), DIM (default 128),
// MAX_K (100), MAX_BATCH (64), BODY_LIMIT bytes (1 MiB), INDEX=1 for an IVF-HNSW-SQ index.
// The LanceDB table lives in a temp dir removed on exit. Prints "listening <url>" when ready.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { DEFAULT_LIMITS, buildApp } from './app.mjs';
import { buildGallery } from './gallery.mjs';

const env = (name, def) => (process.env[name] === undefined ? def : Number(process.env[name]));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbnorm-server-'));
const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });

try {
  const t0 = performance.now();
  const { gallery } = await buildGallery(dir, { items: env('ITEMS', 20000), dim: env('DIM', 128), index: process.env.INDEX === '1' });
  const limits = { maxK: env('MAX_K', DEFAULT_LIMITS.maxK), maxBatch: env('MAX_BATCH', DEFAULT_LIMITS.maxBatch), bodyLimit: env('BODY_LIMIT', DEFAULT_LIMITS.bodyLimit) };
  const app = buildApp(gallery, limits);
  const url = await app.listen({ host: '127.0.0.1', port: env('PORT', 3000) });
  console.error(`gallery of ${gallery.size} items (DualIS) ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`listening ${url}`);
  const stop = async () => {
    await app.close();
    cleanup();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (e) {
  cleanup();
  console.error(e);
  process.exit(1);
}
