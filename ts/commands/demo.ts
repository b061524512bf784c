import type { Command } from 'commander';

import { evaluate, hubness } from '../eval.js';
import { METHODS, Normalizer, type Method } from '../normalizer.js';
import { type ResultRow, hubnessRecord, metricsRecord, render } from '../report.js';
import { syntheticBenchmark } from '../synthetic.js';
import { intOption, log } from './util.js';

/** `dbnorm demo`: every method on a seeded synthetic benchmark with planted hubs. */
export function registerDemo(program: Command): void {
  // time (s) = fit + top-10 search; metrics come from the full score matrix, hubness from the top-10 lists
  program
    .command('demo')
    .description('run every method on a seeded synthetic cross-modal benchmark with planted hubs and print a table')
    .option('--seed <n>', 'PRNG seed', intOption, 42)
    .option('--gallery <n>', 'test gallery items (queries: one per item)', intOption, 2000)
    .option('--query-bank <n>', 'query-bank rows', intOption, 10000)
    .option('--gallery-bank <n>', 'gallery-bank rows', intOption, 2000)
    .option('--dim <n>', 'embedding dimension', intOption, 256)
    .option('--methods <list>', 'comma-separated methods', METHODS.join(','))
    .option('--json', 'print one JSON object to stdout')
    .option('--markdown', 'print a markdown table')
    .action(async (o: { seed: number; gallery: number; queryBank: number; galleryBank: number; dim: number; methods: string; json?: boolean; markdown?: boolean }) => {
      const methods = o.methods.split(',').map((m) => m.trim()) as Method[];
      const t0 = performance.now();
      const data = syntheticBenchmark({ seed: o.seed, gallery: o.gallery, queryBank: o.queryBank, galleryBank: o.galleryBank, dim: o.dim });
      log(
        `synthetic benchmark (seed ${o.seed}): ${data.queries.rows} queries, ${data.gallery.rows} gallery items ` +
          `(${data.hubs.length} planted hubs), query bank ${data.queryBank.rows}, gallery bank ${data.galleryBank.rows}, d ${o.dim} ` +
          `— generated in ${((performance.now() - t0) / 1000).toFixed(2)} s`,
      );
      const rows: ResultRow[] = [];
      for (const method of methods) {
        const t = performance.now();
        const norm = await Normalizer.fit({ gallery: data.gallery, queryBank: data.queryBank, galleryBank: data.galleryBank }, { method });
        const top = await norm.search(data.queries, { k: 10 });
        const seconds = (performance.now() - t) / 1000;
        const gt = { captionsPerItem: data.captionsPerItem };
        // ranks (MdR, MnR) need every score; the demo's gallery is small enough to materialise them
        const m = await evaluate(await norm.scores(data.queries), gt, { ks: [1, 5, 10] });
        const h = await hubness(top, { k: 10, galleryCount: data.gallery.rows });
        const { method: _m, ...params } = norm.options;
        rows.push({ method, params, metrics: metricsRecord(m), hubness: hubnessRecord(h), seconds });
      }
      const format = o.json ? 'json' : o.markdown ? 'markdown' : 'human';
      process.stdout.write(render(rows, format, format === 'json' ? { dataset: 'synthetic', seed: o.seed } : {}) + '\n');
    });
}
