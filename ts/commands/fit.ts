/**
 * `dbnorm fit`: fits a normaliser on a gallery and its banks (`.npy` embeddings) and saves it to a
 * `.dbn` file for `dbnorm search` / `dbnorm rerank`. Exit codes as `eval`: 0 ok, 2 usage, 1 runtime.
 * @module
 */
import { type Command, Option } from 'commander';

import { UsageError } from '../cli.js';
import { DbnormError } from '../errors.js';
import { METHODS, type Method, type MethodOptions, Normalizer, resolveOptions } from '../normalizer.js';
import { readNpy } from '../npy.js';
import type { Metric } from '../similarity.js';
import { applyThreads, inputFile, phaseProgress } from './offline-io.js';
import { intOption, log, nonNegativeOption, positiveOption } from './util.js';

interface FitFlags {
  gallery?: string;
  queryBank?: string;
  galleryBank?: string;
  metric: Metric;
  method?: string;
  betaQuery?: number;
  betaGallery?: number;
  k?: number;
  cslsK?: number;
  nnnK?: number;
  nnnAlpha?: number;
  out?: string;
  threads?: number;
}

/** The method-parameter flags shared by `fit` (same names and defaults as `eval`). */
export function methodOptionsOf(o: Pick<FitFlags, 'method' | 'betaQuery' | 'betaGallery' | 'k' | 'cslsK' | 'nnnK' | 'nnnAlpha'>, cosine: boolean): MethodOptions {
  if (o.method === undefined) throw new UsageError(`--method is required (one of ${METHODS.join(', ')})`);
  if (!METHODS.includes(o.method as Method)) throw new UsageError(`unknown method '${o.method}' (expected one of ${METHODS.join(', ')})`);
  const opts: MethodOptions = { method: o.method as Method, betaQuery: o.betaQuery, betaGallery: o.betaGallery, k: o.k, cslsK: o.cslsK, nnnK: o.nnnK, nnnAlpha: o.nnnAlpha };
  try {
    resolveOptions(opts, cosine);
  } catch (e) {
    if (e instanceof DbnormError) throw new UsageError(`method '${o.method}': ${e.message.replace(/^betaQuery\b/, '--beta-query').replace(/^betaGallery\b/, '--beta-gallery')}`);
    throw e;
  }
  return opts;
}

export function registerFit(program: Command): void {
  program
    .command('fit')
    .description('fit a normaliser on a gallery and banks (.npy embeddings) and save it (.dbn)')
    .option('--gallery <file>', 'gallery embeddings, n_g × d')
    .option('--query-bank <file>', 'query-modality bank, m_q × d (e.g. training captions)')
    .option('--gallery-bank <file>', 'gallery-modality bank, m_g × d (e.g. training images)')
    .addOption(new Option('--metric <metric>', 'similarity').choices(['cosine', 'dot']).default('cosine'))
    .option('--method <method>', `method (${METHODS.join(', ')})`)
    .option('--beta-query <b>', 'β_q (default 20 for cosine, else required)', positiveOption)
    .option('--beta-gallery <b>', 'β_g (default 1 for cosine, else required)', positiveOption)
    .option('--k <n>', 'DIS / DualDIS activation-set size (default 1)', intOption)
    .option('--csls-k <n>', 'CSLS neighbourhood K (default 10)', intOption)
    .option('--nnn-k <n>', 'NNN neighbourhood k (default 128)', intOption)
    .option('--nnn-alpha <a>', 'NNN weight α (default 0.75)', nonNegativeOption)
    .option('--out <file>', 'the saved normaliser (.dbn)')
    .option('--threads <n>', 'worker threads (default: all cores)', intOption)
    .action(async (o: FitFlags) => {
      await runFit(o);
    });
}

async function runFit(o: FitFlags): Promise<void> {
  const gallery = inputFile('--gallery', o.gallery);
  const queryBank = o.queryBank === undefined ? undefined : inputFile('--query-bank', o.queryBank);
  const galleryBank = o.galleryBank === undefined ? undefined : inputFile('--gallery-bank', o.galleryBank);
  if (o.out === undefined) throw new UsageError('--out is required (the .dbn file to write)');
  const opts = methodOptionsOf(o, o.metric === 'cosine');
  const needs = { query: !['none'].includes(opts.method), gallery: opts.method === 'dual-is' || opts.method === 'dual-dis' };
  if (needs.query && queryBank === undefined) throw new UsageError(`method '${opts.method}' needs --query-bank (query-modality embeddings, e.g. training captions)`);
  if (needs.gallery && galleryBank === undefined) throw new UsageError(`method '${opts.method}' needs --gallery-bank (gallery-modality embeddings, e.g. training images)`);
  applyThreads(o.threads);
  const t0 = performance.now();
  const [g, qb, gb] = await Promise.all([readNpy(gallery), queryBank && needs.query ? readNpy(queryBank) : undefined, galleryBank && needs.gallery ? readNpy(galleryBank) : undefined]);
  log(`dbnorm fit: --gallery ${gallery}: ${g.rows} × ${g.cols}${qb ? `; --query-bank: ${qb.rows} × ${qb.cols}` : ''}${gb ? `; --gallery-bank: ${gb.rows} × ${gb.cols}` : ''}`);
  const progress = phaseProgress('fit');
  let norm: Normalizer;
  try {
    norm = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb, metric: o.metric }, { ...opts, onProgress: (p) => progress.update(p) });
  } finally {
    progress.stop();
  }
  await norm.save(o.out);
  log(`dbnorm fit: ${opts.method} on ${g.rows} items saved to ${o.out} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
}
