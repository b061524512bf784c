/**
 * `dbnorm tune`: picks each method's parameters from paired banks alone (no test data), prints a
 * table and the flags to pass to `dbnorm eval`; `--json` prints exactly one object
 * `{ results: [{ method, params, score, spread, defaultScore }], best: { method, params } }`.
 * @module
 */
import { writeFileSync } from 'node:fs';

import { type Command, InvalidArgumentError, Option } from 'commander';

import { UsageError } from '../cli.js';
import { METHODS, type Method } from '../normalizer.js';
import { methodInfo } from '../methods.js';
import { readNpy } from '../npy.js';
import type { Metric } from '../similarity.js';
import { type TunePairs, tune, tuneFlags } from '../tune.js';
import { intOption, log, positiveOption } from './util.js';

interface TuneFlags {
  queryBank: string;
  galleryBank: string;
  captionsPerItem?: number;
  methods?: string;
  metric: string;
  folds: number;
  holdout: number;
  refine: number;
  seed: number;
  maxBlockMb: number;
  similarity: Metric;
  json?: boolean;
  save?: string;
  progress?: boolean;
}

function seedOption(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError(`expected an integer ≥ 0, got '${v}'`);
  return n;
}

function fmt(x: number | null): string {
  return x === null ? '–' : (100 * x).toFixed(2);
}

/** `dbnorm tune`. */
export function registerTune(program: Command): void {
  program
    .command('tune')
    .description('tune method parameters (β, k, CSLS K, NNN k/α) on held-out folds of paired banks; never reads test data')
    .requiredOption('--query-bank <file>', 'query-modality bank, m_q × d (.npy), e.g. training captions')
    .requiredOption('--gallery-bank <file>', 'gallery-modality bank, m_g × d (.npy), the items the query-bank rows describe')
    .option('--captions-per-item <c>', 'query-bank row i describes gallery-bank row ⌊i/c⌋ (default 1: paired row by row)', intOption)
    .option('--methods <list>', `comma-separated methods (default: ${METHODS.filter((m) => m !== 'none' && methodInfo(m)!.tunable).join(',')})`)
    .option('--metric <m>', "objective: R@K, mAP, MRR or rsum", 'R@1')
    .option('--folds <n>', 'cross-validation folds', intOption, 3)
    .option('--holdout <n>', 'held-out items per fold (lowered to fit --max-block-mb)', intOption, 1000)
    .option('--refine <n>', 'refinement rounds after the coarse grid', (v) => (v === '0' ? 0 : intOption(v)), 2)
    .option('--seed <n>', 'seed of the fold assignment', seedOption, 0)
    .option('--max-block-mb <mb>', 'memory budget for the cached similarity blocks (MiB)', positiveOption, 512)
    .addOption(new Option('--similarity <s>', 'similarity of the embeddings').choices(['cosine', 'dot']).default('cosine'))
    .option('--json', 'print one JSON object on stdout')
    .option('--save <file>', 'also write the full result (every trial, for `dbnorm eval --html --tune <file>`) as JSON')
    .option('--progress', 'print progress to stderr')
    .action(async (flags: TuneFlags) => {
      const methods = flags.methods?.split(',').map((m) => m.trim()) as Method[] | undefined;
      if (methods) {
        for (const m of methods) if (!METHODS.includes(m)) throw new UsageError(`unknown method '${m}' (expected one of ${METHODS.join(', ')})`);
      }
      const [queryBank, galleryBank] = await Promise.all([readNpy(flags.queryBank), readNpy(flags.galleryBank)]);
      const pairs: TunePairs = { captionsPerItem: flags.captionsPerItem ?? 1 };
      const t0 = performance.now();
      const r = await tune(
        { queryBank, galleryBank, metric: flags.similarity },
        {
          methods,
          metric: flags.metric,
          pairs,
          folds: flags.folds,
          holdout: flags.holdout,
          refine: flags.refine,
          seed: flags.seed,
          maxBlockMB: flags.maxBlockMb,
          onProgress: flags.progress ? (p) => log(`${p.phase} ${p.done}/${p.total}`) : undefined,
        },
      );
      const secs = (performance.now() - t0) / 1000;
      if (flags.save !== undefined) writeFileSync(flags.save, JSON.stringify(r));
      if (flags.json) {
        const out = {
          results: r.results.map((x) => ({ method: x.method, params: x.params, score: x.score, spread: x.spread, defaultScore: x.defaultScore })),
          best: r.best,
        };
        process.stdout.write(JSON.stringify(out) + '\n');
        return;
      }
      const lines = [`objective ${r.metric} on ${r.folds} fold(s) of ${r.holdoutItems} held-out items (${r.holdoutQueries.join('/')} queries); ${r.evaluations} evaluations in ${secs.toFixed(1)} s`, ''];
      const head = ['method', 'tuned', '± spread', 'default', 'flags'];
      const rows = r.results.map((x) => [x.method, fmt(x.score), fmt(x.spread), fmt(x.defaultScore), tuneFlags(x.method, x.params)]);
      const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
      lines.push(head.map((h, i) => h.padEnd(w[i]!)).join('  '));
      for (const row of rows) lines.push(row.map((c, i) => c.padEnd(w[i]!)).join('  '));
      lines.push('', `best: ${r.best.method}`, `  dbnorm eval ... ${tuneFlags(r.best.method, r.best.params)}`);
      process.stdout.write(lines.join('\n') + '\n');
    });
}
