// Tuning speed on the `coco` bank shape: a paired query bank of 100 000 captions (5 per item) and a
// gallery bank of 20 000 items, d = 512 (the synthetic model of lib/data.mjs, generated so that
// the banks are paired: bank captions describe bank items). Prints settings evaluated per second,
// the time spent building the cached similarity blocks and the search time.
//   node benchmark/tune.mjs [--shape coco|quick] [--folds 3] [--methods is,dual-dis,...]
import os from 'node:os';
import { createRequire } from 'node:module';

import { WORKLOADS, generate } from './lib/data.mjs';

const require = createRequire(import.meta.url);
const { tune } = require('../dist/index.js');

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const shapeName = arg('shape', 'coco');
const w = WORKLOADS[shapeName];
const c = w.captionsPerItem;
const items = w.queryBank / c;
const t0 = performance.now();
// gallery (items) and its item-major captions (queries) are paired by construction
const g = generate({ dim: w.dim, gallery: items, captionsPerItem: c, queryBank: 0, galleryBank: 0 }, 11);
const queryBank = g.arrays.queries;
const galleryBank = g.arrays.gallery;
const tGen = (performance.now() - t0) / 1000;
const methods = arg('methods', 'is,dis,dual-is,dual-dis,csls,nnn').split(',');
const folds = Number(arg('folds', '3'));
let tBlocks = null;
const tStart = performance.now();
const r = await tune(
  { queryBank, galleryBank },
  {
    methods,
    pairs: { captionsPerItem: c },
    folds,
    metric: 'R@1',
    onProgress: (p) => {
      if (p.phase === 'tune:blocks' && p.done === p.total && tBlocks === null) tBlocks = (performance.now() - tStart) / 1000;
    },
  },
);
const total = (performance.now() - tStart) / 1000;
const search = total - (tBlocks ?? 0);
const settings = r.results.reduce((a, m) => a + m.trials.length, 0);
const out = {
  cpu: os.cpus()[0]?.model,
  cores: os.cpus().length,
  loadavg: os.loadavg(),
  shape: { queryBank: queryBank.rows, galleryBank: galleryBank.rows, dim: w.dim, captionsPerItem: c },
  folds,
  holdoutItems: r.holdoutItems,
  holdoutQueries: r.holdoutQueries,
  generateSeconds: +tGen.toFixed(1),
  blockSeconds: tBlocks === null ? null : +tBlocks.toFixed(2),
  searchSeconds: +search.toFixed(2),
  settings,
  evaluations: r.evaluations,
  lsePasses: r.lsePasses,
  settingsPerSecond: +(settings / search).toFixed(1),
  settingsPerSecondInclBlocks: +(settings / total).toFixed(1),
  results: r.results.map((m) => ({ method: m.method, params: m.params, score: +m.score.toFixed(4), defaultScore: m.defaultScore && +m.defaultScore.toFixed(4), trials: m.trials.length })),
};
console.log(JSON.stringify(out, null, 2));
