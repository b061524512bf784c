/**
 * `dbnorm search` and `dbnorm rerank`: the offline re-ranking job on a saved normaliser (`dbnorm fit`).
 * - `search --normalizer n.dbn --queries q.npy --k 100 --out top.npy|top.jsonl [--scores-out s.npy] [--ids ids.txt]`
 * - `rerank --normalizer n.dbn --queries q.npy --candidates cand.npy --out top.npy|top.jsonl [...]`
 *
 * `.npy` output holds the gallery indices (`<i8`, n_q × k, best first); `--scores-out` the normalised
 * scores (`<f4`). `.jsonl` holds one `{"query", "ids", "scores"}` object per query, with `--ids`
 * mapping gallery indices to user ids (one per line). Exit codes as `eval`: 0 ok, 2 usage, 1 runtime.
 * @module
 */
import type { Command } from 'commander';

import { UsageError } from '../cli.js';
import { DbnormError } from '../errors.js';
import { Normalizer, type TopK } from '../normalizer.js';
import { readNpy } from '../npy.js';
import { applyThreads, inputFile, outKind, phaseProgress, readIds, readIdsNpy, writeIndicesNpy, writeJsonl, writeScoresNpy } from './offline-io.js';
import { intOption, log } from './util.js';

interface SearchFlags {
  normalizer?: string;
  queries?: string;
  candidates?: string;
  k?: number;
  out?: string;
  scoresOut?: string;
  ids?: string;
  threads?: number;
}

function common(cmd: Command): Command {
  return cmd
    .option('--normalizer <file>', 'a normaliser saved by `dbnorm fit` (.dbn)')
    .option('--queries <file>', 'query embeddings, n_q × d (.npy)')
    .option('--out <file>', 'results: .npy (gallery indices, <i8, n_q × k) or .jsonl (ids and scores per query)')
    .option('--scores-out <file>', 'with a .npy --out: the normalised scores (<f4, n_q × k)')
    .option('--ids <file>', 'with a .jsonl --out: one user id per gallery item, one per line')
    .option('--threads <n>', 'worker threads (default: all cores)', intOption);
}

export function registerSearch(program: Command): void {
  common(program.command('search').description('top-k gallery items per query under a saved normaliser'))
    .option('--k <n>', 'results per query (clamped to the gallery size)', intOption, 100)
    .action(async (o: SearchFlags) => {
      await run('search', o);
    });
  common(program.command('rerank').description("re-rank a first-stage retriever's candidate lists under a saved normaliser"))
    .option('--candidates <file>', 'candidate gallery indices per query, n_q × c integer .npy (<i8, <i4, <u4, <u8)')
    .action(async (o: SearchFlags) => {
      await run('rerank', o);
    });
}

async function run(verb: 'search' | 'rerank', o: SearchFlags): Promise<void> {
  const dbn = inputFile('--normalizer', o.normalizer);
  const queries = inputFile('--queries', o.queries);
  const candidates = verb === 'rerank' ? inputFile('--candidates', o.candidates) : undefined;
  const kind = outKind(o.out);
  if (o.scoresOut !== undefined && kind !== 'npy') throw new UsageError('--scores-out goes with a .npy --out (a .jsonl --out holds the scores)');
  if (o.scoresOut !== undefined && !o.scoresOut.endsWith('.npy')) throw new UsageError(`--scores-out ${o.scoresOut}: expected a .npy file name`);
  if (o.ids !== undefined && kind !== 'jsonl') throw new UsageError('--ids goes with a .jsonl --out (a .npy --out holds gallery indices)');
  const idsFile = o.ids === undefined ? undefined : inputFile('--ids', o.ids);
  applyThreads(o.threads);
  const t0 = performance.now();
  const norm = await Normalizer.load(dbn);
  if (norm.mode !== 'embeddings') throw new DbnormError('ERR_PARAM', `${dbn}: a similarity-mode normaliser cannot ${verb} query embeddings`);
  const q = await readNpy(queries, { mmap: true });
  log(`dbnorm ${verb}: ${dbn}: ${norm.method} over ${norm.galleryCount} items; --queries ${queries}: ${q.rows} × ${q.cols}`);
  const ids = idsFile === undefined ? undefined : readIds(idsFile, norm.galleryCount);
  const progress = phaseProgress(verb);
  let top: TopK;
  try {
    if (verb === 'search') {
      top = await norm.search(q, { k: o.k!, onProgress: (p) => progress.update(p) });
    } else {
      const c = readIdsNpy(candidates!);
      if (c.rows !== q.rows) throw new DbnormError('ERR_SHAPE', `--candidates ${candidates} has ${c.rows} rows, --queries ${queries} has ${q.rows}`);
      const bad = c.ids.findIndex((j) => j >= norm.galleryCount);
      if (bad >= 0) throw new DbnormError('ERR_SHAPE', `--candidates ${candidates}: id ${c.ids[bad]} at row ${Math.floor(bad / c.cols)} is out of range for a gallery of ${norm.galleryCount} items`);
      top = await norm.rerank(q, c.ids);
      progress.update({ phase: 'rerank', done: q.rows, total: q.rows });
    }
  } finally {
    progress.stop();
  }
  if (kind === 'npy') {
    writeIndicesNpy(o.out!, top);
    if (o.scoresOut !== undefined) writeScoresNpy(o.scoresOut, top);
  } else {
    writeJsonl(o.out!, top, ids);
  }
  log(`dbnorm ${verb}: ${top.rows} × ${top.k} written to ${o.out}${o.scoresOut ? ` and ${o.scoresOut}` : ''} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
}
