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
import { PARAM_INFO, methodInfo, paramFlag } from '../methods.js';
import { addMethodFlags, methodOptions } from './method-flags.js';
import { parseShard, runShardedFit } from './shard.js';
import { intOption, log } from './util.js';

interface FitFlags {
  gallery?: string;
  queryBank?: string;
  galleryBank?: string;
  metric?: Metric;
  method?: string;
  shard?: unknown;
  queryBankSims?: string;
  galleryBankSims?: string;
  queryBankGalleryBankSims?: string;
  galleryCount?: number;
  out?: string;
  threads?: number;
  keep?: 'all' | 'statistics';
  galleryStorage?: 'float32' | 'float16' | 'bfloat16';
  /** Method parameters, one flag per registry parameter (`--beta-query` → `betaQuery`). */
  [param: string]: unknown;
}

/** Method and parameters from the flags (names, defaults and ranges from the method registry). */
function methodOptionsOf(o: FitFlags, cosine: boolean): MethodOptions {
  if (o.method === undefined) throw new UsageError(`--method is required (one of ${METHODS.join(', ')})`);
  if (!METHODS.includes(o.method as Method)) throw new UsageError(`unknown method '${o.method}' (expected one of ${METHODS.join(', ')})`);
  const opts = methodOptions(o.method as Method, o);
  try {
    resolveOptions(opts, cosine);
  } catch (e) {
    if (e instanceof DbnormError) {
      const msg = e.message.replace(/^(\w+)\b/, (name) => (PARAM_INFO.some((p) => p.name === name) ? paramFlag(name) : name));
      throw new UsageError(`method '${o.method}': ${msg}`);
    }
    throw e;
  }
  return opts;
}

export function registerFit(program: Command): void {
  const cmd = program
    .command('fit')
    .description('fit a normaliser on a gallery and banks (.npy embeddings) and save it (.dbn)')
    .option('--gallery <file>', 'gallery embeddings, n_g × d')
    .option('--query-bank <file>', 'query-modality bank, m_q × d (e.g. training captions)')
    .option('--gallery-bank <file>', 'gallery-modality bank, m_g × d (e.g. training images)')
    .addOption(new Option('--metric <metric>', 'similarity (default cosine)').choices(['cosine', 'dot']))
    .option('--query-bank-sims <file>', 'similarity mode: query bank × gallery, m_q × n_g')
    .option('--gallery-bank-sims <file>', 'similarity mode: gallery bank × gallery, m_g × n_g')
    .option('--query-bank-gallery-bank-sims <file>', 'similarity mode, dual-sn: query bank × gallery bank, m_q × m_g')
    .option('--gallery-count <n>', 'similarity mode: gallery size when no matrix is given (method none)', intOption)
    .option('--shard <spec>', 'fit one shard: gallery=i/n,bank=j/m (0-based, even split); merge the parts with dbnorm merge', parseShard)
    .option('--method <method>', `method (${METHODS.join(', ')})`);
  addMethodFlags(cmd);
  cmd
    .option('--out <file>', 'the saved normaliser (.dbn)')
    .addOption(new Option('--keep <what>', "statistics: keep only per-gallery statistics and reference the gallery file (read again at search; the .dbn stays small)").choices(['all', 'statistics']))
    .addOption(new Option('--gallery-storage <type>', 'in-memory gallery precision for search (default float32)').choices(['float32', 'float16', 'bfloat16']))
    .option('--threads <n>', 'worker threads (default: all cores)', intOption)
    .action(async (o: FitFlags) => {
      // Shards and similarity-mode fits read row/column slices of the files (ts/commands/shard.ts).
      if (o.shard !== undefined || o.queryBankSims !== undefined || o.galleryBankSims !== undefined || o.queryBankGalleryBankSims !== undefined || o.galleryCount !== undefined) {
        if (o.keep === 'statistics' || o.galleryStorage !== undefined) throw new UsageError('--keep and --gallery-storage apply to a one-shot embeddings fit (not --shard or similarity inputs)');
        if (o.method === undefined) throw new UsageError(`--method is required (one of ${METHODS.join(', ')})`);
        if (o.out === undefined) throw new UsageError('--out is required (the .dbn file to write)');
        applyThreads(o.threads);
        await runShardedFit(o as Parameters<typeof runShardedFit>[0]);
        return;
      }
      await runFit(o);
    });
}

async function runFit(o: FitFlags): Promise<void> {
  const gallery = inputFile('--gallery', o.gallery);
  const queryBank = o.queryBank === undefined ? undefined : inputFile('--query-bank', o.queryBank);
  const galleryBank = o.galleryBank === undefined ? undefined : inputFile('--gallery-bank', o.galleryBank);
  if (o.out === undefined) throw new UsageError('--out is required (the .dbn file to write)');
  const metric: Metric = o.metric ?? 'cosine';
  const opts = methodOptionsOf(o, metric === 'cosine');
  const info = methodInfo(opts.method)!;
  const needs = { query: info.queryBank, gallery: info.galleryBank };
  if (needs.query && queryBank === undefined) throw new UsageError(`method '${opts.method}' needs --query-bank (query-modality embeddings, e.g. training captions)`);
  if (needs.gallery && galleryBank === undefined) throw new UsageError(`method '${opts.method}' needs --gallery-bank (gallery-modality embeddings, e.g. training images)`);
  applyThreads(o.threads);
  const t0 = performance.now();
  if (o.keep === 'statistics') {
    if (o.galleryStorage !== undefined && o.galleryStorage !== 'float32') throw new UsageError('--gallery-storage applies to a gallery held in memory, not to --keep statistics');
    // Lean: the native fit reads the files itself (the gallery block by block); nothing is mapped here.
    log(`dbnorm fit: --gallery ${gallery} (keep statistics: read in blocks, referenced by the .dbn)`);
    const progress = phaseProgress('fit');
    let lean: Normalizer;
    try {
      lean = await Normalizer.fit(
        { gallery, queryBank: needs.query ? queryBank : undefined, galleryBank: needs.gallery ? galleryBank : undefined, metric },
        { ...opts, keep: 'statistics', onProgress: (p) => progress.update(p) },
      );
    } finally {
      progress.stop();
    }
    await lean.save(o.out);
    log(`dbnorm fit: ${opts.method} on ${lean.galleryCount} × ${lean.dim} items (lean) saved to ${o.out} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
    return;
  }
  const [g, qb, gb] = await Promise.all([readNpy(gallery, { mmap: true }), queryBank && needs.query ? readNpy(queryBank, { mmap: true }) : undefined, galleryBank && needs.gallery ? readNpy(galleryBank, { mmap: true }) : undefined]);
  log(`dbnorm fit: --gallery ${gallery}: ${g.rows} × ${g.cols}${qb ? `; --query-bank: ${qb.rows} × ${qb.cols}` : ''}${gb ? `; --gallery-bank: ${gb.rows} × ${gb.cols}` : ''}`);
  const progress = phaseProgress('fit');
  let norm: Normalizer;
  try {
    norm = await Normalizer.fit({ gallery: g, queryBank: qb, galleryBank: gb, metric }, { ...opts, galleryStorage: o.galleryStorage, onProgress: (p) => progress.update(p) });
  } finally {
    progress.stop();
  }
  await norm.save(o.out);
  log(`dbnorm fit: ${opts.method} on ${g.rows} items saved to ${o.out} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
}
