/**
 * `dbnorm eval`: retrieval metrics and hubness before (`none`) and after normalisation, on `.npy`
 * files, in embeddings mode (`--queries --gallery [--query-bank] [--gallery-bank]`) or similarity
 * mode (`--sims [--query-bank-sims] [--gallery-bank-sims]`), for t2v, v2t or both directions.
 *
 * Evaluation computes, per method and direction, the top-k lists (fused search, for hubness) and the
 * exact ranks, MdR, MnR and mAP streamed over the gallery (`Normalizer.evaluate`): the n_q × n_g score
 * matrix is never built, so memory is O(n_q × k) beyond the inputs. Similarity mode holds its input
 * matrix (and its transpose for v2t).
 *
 * Output: a table (default), `--markdown`, or `--json` (one object on stdout, nothing else there).
 * Progress and notes go to stderr. Usage errors exit 2, data/runtime errors exit 1 (see `cli.ts`).
 * @module
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

import cliProgress from 'cli-progress';
import { type Command, InvalidArgumentError, Option } from 'commander';

import { UsageError } from '../cli.js';
import { DbnormError } from '../errors.js';
import { type GroundTruth, evaluate, hubness } from '../eval.js';
import { Matrix } from '../matrix.js';
import { METHODS, type Method, type MethodOptions, Normalizer, type ResolvedOptions, resolveOptions } from '../normalizer.js';
import { readNpy } from '../npy.js';
import { type ResultRow, hubnessRecord, metricsRecord, render } from '../report.js';
import { type ReportRow, report } from '../report-html.js';
import type { TuneResult } from '../tune.js';
import type { Metric } from '../similarity.js';
import { PARAM_INFO, methodInfo, paramFlag } from '../methods.js';
import { addMethodFlags, methodOptions, methodsHelp } from './method-flags.js';
import { intOption, log } from './util.js';

type Direction = 't2v' | 'v2t';

/** The parsed flags (commander's camelCase names). */
interface EvalFlags {
  queries?: string;
  gallery?: string;
  queryBank?: string;
  galleryBank?: string;
  metric?: Metric;
  sims?: string;
  queryBankSims?: string;
  galleryBankSims?: string;
  v2tQueryBankSims?: string;
  v2tGalleryBankSims?: string;
  queryBankGalleryBankSims?: string;
  captionsPerItem?: number;
  gt?: string;
  direction: Direction | 'both';
  method?: string;
  methods?: string;
  betaQuery?: number;
  betaGallery?: number;
  k?: number;
  cslsK?: number;
  nnnK?: number;
  nnnAlpha?: number;
  hubnessK: number;
  skewness: 'all' | 'nonzero';
  hubThreshold: 'mean' | 'peer';
  ties: 'average' | 'optimistic' | 'pessimistic';
  ks: number[];
  qbnormCompat?: boolean;
  json?: boolean;
  markdown?: boolean;
  occurrences?: boolean;
  html?: string;
  tune?: string;
}

/** File flags: option key → flag name, in the order files are loaded and reported. */
const FILE_FLAGS = {
  queries: '--queries',
  gallery: '--gallery',
  queryBank: '--query-bank',
  galleryBank: '--gallery-bank',
  sims: '--sims',
  queryBankSims: '--query-bank-sims',
  galleryBankSims: '--gallery-bank-sims',
  v2tQueryBankSims: '--v2t-query-bank-sims',
  v2tGalleryBankSims: '--v2t-gallery-bank-sims',
  queryBankGalleryBankSims: '--query-bank-gallery-bank-sims',
} as const;
type FileKey = keyof typeof FILE_FLAGS;

function listOption(v: string): number[] {
  const ks = v.split(',').map((x) => Number(x.trim()));
  if (ks.length === 0 || ks.some((k) => !Number.isInteger(k) || k < 1 || k > 0xffffffff)) {
    throw new InvalidArgumentError(`expected a comma-separated list of integers in [1, 4294967295], got '${v}'`);
  }
  return ks;
}

/** `dbnorm eval`. */
export function registerEval(program: Command): void {
  const cmd = program
    .command('eval')
    .description('retrieval metrics and hubness before and after hubness reduction, from .npy files')
    .addHelpText('after', `\nMethods:\n${methodsHelp()}`)
    .option('--queries <file>', 'embeddings mode: test queries, n_q × d (e.g. captions)')
    .option('--gallery <file>', 'embeddings mode: test gallery, n_g × d (e.g. images)')
    .option('--query-bank <file>', 'embeddings mode: query-modality bank, m_q × d (e.g. training captions)')
    .option('--gallery-bank <file>', 'embeddings mode: gallery-modality bank, m_g × d (e.g. training images)')
    .addOption(new Option('--metric <metric>', 'embeddings mode: similarity (default cosine)').choices(['cosine', 'dot']))
    .option('--sims <file>', 'similarity mode: test queries × gallery, n_q × n_g')
    .option('--query-bank-sims <file>', 'similarity mode: query bank × gallery, m_q × n_g')
    .option('--gallery-bank-sims <file>', 'similarity mode: gallery bank × gallery, m_g × n_g')
    .option('--v2t-query-bank-sims <file>', 'similarity mode, v2t: gallery-modality bank × test queries, m_g × n_q')
    .option('--v2t-gallery-bank-sims <file>', 'similarity mode, v2t: query-modality bank × test queries, m_q × n_q')
    .option('--query-bank-gallery-bank-sims <file>', 'similarity mode, dual-sn: query bank × gallery bank, m_q × m_g (v2t uses its transpose)')
    .addOption(new Option('--captions-per-item <c>', 'ground truth: query i belongs to item ⌊i/c⌋').argParser(intOption).conflicts('gt'))
    .option('--gt <file>', 'ground truth: JSON array, entry i = the positive gallery index (or an array of them) of query i')
    .addOption(new Option('--direction <dir>', 'direction(s) to evaluate').choices(['t2v', 'v2t', 'both']).default('t2v'))
    .addOption(new Option('--method <method>', `method to compare with none (${METHODS.join(', ')})`).conflicts('methods'))
    .option('--methods <list>', 'comma-separated methods (none is always reported first)');
  addMethodFlags(cmd);
  cmd
    .option('--hubness-k <n>', 'k of the k-occurrence N_k', intOption, 10)
    .addOption(new Option('--skewness <which>', 'skewness shown in the table: over all items or items with N_k > 0').choices(['all', 'nonzero']).default('all'))
    .addOption(new Option('--hub-threshold <base>', 'hubs have N_k ≥ 2μ (mean) or ≥ 2k (peer)').choices(['mean', 'peer']).default('mean'))
    .addOption(new Option('--ties <mode>', 'rank of a ground truth tied with other items').choices(['average', 'optimistic', 'pessimistic']).default('average'))
    .addOption(new Option('--ks <list>', 'comma-separated R@K cut-offs').argParser(listOption).default([1, 5, 10], '1,5,10'))
    .option('--qbnorm-compat', "count R@1 as rank 0 strictly, like QB-Norm's metric.py")
    .addOption(new Option('--json', 'print one JSON object { results: [...] } to stdout').conflicts('markdown'))
    .option('--markdown', 'print a markdown table')
    .option('--occurrences', 'with --json: add each row\'s per-item k-occurrence array (n_items long)')
    .option('--html <file>', 'also write a self-contained HTML report (k-occurrence histograms, hubs, R@K bars, metrics)')
    .option('--tune <file>', 'with --html: a `dbnorm tune --save` result whose tuning curves the report shows')
    .action(async (o: EvalFlags) => {
      await runEval(o);
    });
}

// ---------------------------------------------------------------------------------------------
// planning: everything that can be checked from the flags alone (usage errors, exit 2)

interface Plan {
  mode: 'embeddings' | 'similarities';
  methods: Method[];
  resolved: Map<Method, ResolvedOptions>;
  directions: Direction[];
  files: Partial<Record<FileKey, string>>;
}

function parseMethods(o: EvalFlags): Method[] {
  if (o.method === undefined && o.methods === undefined) {
    throw new UsageError(`give --method <method> or --methods <list> (methods: ${METHODS.join(', ')})`);
  }
  const names = (o.method !== undefined ? [o.method] : o.methods!.split(',')).map((m) => m.trim()).filter((m) => m !== '');
  if (names.length === 0) throw new UsageError(`${o.method !== undefined ? '--method' : '--methods'} names no method (methods: ${METHODS.join(', ')})`);
  for (const m of names) {
    if (!METHODS.includes(m as Method)) throw new UsageError(`unknown method '${m}' (expected one of ${METHODS.join(', ')})`);
  }
  // `none` first (the "before"), then the requested methods in order, without repeats
  return [...new Set<Method>(['none', ...(names as Method[])])];
}

/** The bank files that play the query-bank and gallery-bank roles when normalising `dir`. */
function bankKeys(mode: Plan['mode'], dir: Direction, method?: Method): { query: FileKey; gallery: FileKey } {
  if (mode === 'embeddings') return dir === 't2v' ? { query: 'queryBank', gallery: 'galleryBank' } : { query: 'galleryBank', gallery: 'queryBank' };
  // dual-sn's gallery bank enters as the query bank × gallery bank matrix (transposed for v2t)
  const cross = method !== undefined && methodInfo(method)!.crossBankSims;
  if (cross) return { query: dir === 't2v' ? 'queryBankSims' : 'v2tQueryBankSims', gallery: 'queryBankGalleryBankSims' };
  return dir === 't2v' ? { query: 'queryBankSims', gallery: 'galleryBankSims' } : { query: 'v2tQueryBankSims', gallery: 'v2tGalleryBankSims' };
}

const BANK_HELP: Record<FileKey, string> = {
  queries: '',
  gallery: '',
  sims: '',
  queryBank: 'query-modality embeddings, e.g. training captions',
  galleryBank: 'gallery-modality embeddings, e.g. training images',
  queryBankSims: 'query bank × test gallery similarities, m_q × n_g',
  galleryBankSims: 'gallery bank × test gallery similarities, m_g × n_g',
  v2tQueryBankSims: 'gallery-modality bank × test queries, m_g × n_q',
  v2tGalleryBankSims: 'query-modality bank × test queries, m_q × n_q',
  queryBankGalleryBankSims: 'query bank × gallery bank similarities, m_q × m_g',
};

function plan(o: EvalFlags): Plan {
  const emb = o.queries !== undefined || o.gallery !== undefined || o.queryBank !== undefined || o.galleryBank !== undefined || o.metric !== undefined;
  const sim =
    o.sims !== undefined ||
    o.queryBankSims !== undefined ||
    o.galleryBankSims !== undefined ||
    o.v2tQueryBankSims !== undefined ||
    o.v2tGalleryBankSims !== undefined ||
    o.queryBankGalleryBankSims !== undefined;
  if (emb && sim) {
    throw new UsageError('embeddings flags (--queries, --gallery, --query-bank, --gallery-bank, --metric) and similarity flags (--sims, --*-sims) cannot be mixed');
  }
  if (!emb && !sim) throw new UsageError('give --queries and --gallery (embeddings mode) or --sims (similarity mode)');
  const mode = emb ? 'embeddings' : 'similarities';
  if (mode === 'embeddings' && (o.queries === undefined || o.gallery === undefined)) {
    throw new UsageError(`embeddings mode needs both --queries and --gallery (missing ${o.queries === undefined ? '--queries' : '--gallery'})`);
  }
  if (mode === 'similarities' && o.sims === undefined) throw new UsageError('similarity mode needs --sims (test queries × gallery, n_q × n_g)');

  const methods = parseMethods(o);
  const directions: Direction[] = o.direction === 'both' ? ['t2v', 'v2t'] : [o.direction];

  // β defaults apply only to cosine embeddings; elsewhere the library explains why β is required
  const cosine = mode === 'embeddings' && (o.metric ?? 'cosine') === 'cosine';
  const resolved = new Map<Method, ResolvedOptions>();
  for (const method of methods) {
    const opts = methodOptions(method, o as unknown as Record<string, unknown>);
    try {
      resolved.set(method, resolveOptions(opts, cosine));
    } catch (e) {
      if (e instanceof DbnormError) {
        const msg = e.message.replace(/^(\w+)\b/, (name) => (PARAM_INFO.some((p) => p.name === name) ? paramFlag(name) : name));
        throw new UsageError(`method '${method}': ${msg}`);
      }
      throw e;
    }
  }

  // banks per direction (docs/methods.md §5: for v2t the banks swap roles)
  for (const dir of directions) {
    for (const method of methods) {
      const keys = bankKeys(mode, dir, method);
      for (const role of ['query', 'gallery'] as const) {
        const key = keys[role];
        if ((role === 'query' ? methodInfo(method)!.queryBank : methodInfo(method)!.galleryBank) && o[key] === undefined) {
          const swap =
            dir === 'v2t'
              ? mode === 'embeddings'
                ? `; for v2t the banks swap roles, so the v2t ${role} bank is ${FILE_FLAGS[key]}`
                : '; v2t is normalised on the transposed scores, so the t2v bank matrices cannot be reused'
              : '';
          throw new UsageError(`method '${method}' needs a ${role} bank for ${dir}: pass ${FILE_FLAGS[key]} (${BANK_HELP[key]})${swap}`);
        }
      }
    }
  }
  if (mode === 'similarities' && !directions.includes('v2t')) {
    for (const key of ['v2tQueryBankSims', 'v2tGalleryBankSims'] as const) {
      if (o[key] !== undefined) log(`dbnorm eval: warning: ${FILE_FLAGS[key]} is only used with --direction v2t or both; ignored`);
    }
  }

  const files: Partial<Record<FileKey, string>> = {};
  for (const key of Object.keys(FILE_FLAGS) as FileKey[]) {
    const path = o[key];
    if (path === undefined) continue;
    const st = statSync(path, { throwIfNoEntry: false });
    if (st === undefined) throw new UsageError(`${FILE_FLAGS[key]} ${path}: no such file`);
    if (!st.isFile()) throw new UsageError(`${FILE_FLAGS[key]} ${path}: not a regular file`);
    files[key] = path;
  }
  if (o.gt !== undefined) {
    const st = statSync(o.gt, { throwIfNoEntry: false });
    if (st === undefined) throw new UsageError(`--gt ${o.gt}: no such file`);
    if (!st.isFile()) throw new UsageError(`--gt ${o.gt}: not a regular file`);
  }
  return { mode, methods, resolved, directions, files };
}

// ---------------------------------------------------------------------------------------------
// data: loading and shape checks (runtime errors, exit 1)

type Loaded = Partial<Record<FileKey, Matrix>>;

function shapeError(msg: string): DbnormError {
  return new DbnormError('ERR_SHAPE', msg);
}

function checkShapes(p: Plan, m: Loaded): { nq: number; ng: number } {
  const f = p.files;
  const dims = (key: FileKey): string => `${f[key]} (${m[key]!.rows} × ${m[key]!.cols})`;
  if (p.mode === 'embeddings') {
    const q = m.queries!;
    const g = m.gallery!;
    if (q.cols !== g.cols) throw shapeError(`--queries ${f.queries} has dim ${q.cols}, --gallery ${f.gallery} has dim ${g.cols}`);
    for (const key of ['queryBank', 'galleryBank'] as const) {
      const b = m[key];
      if (b && b.cols !== g.cols) throw shapeError(`${FILE_FLAGS[key]} ${f[key]} has dim ${b.cols}, --gallery ${f.gallery} has dim ${g.cols}`);
      if (b && b.rows === 0) throw shapeError(`${FILE_FLAGS[key]} ${dims(key)} has no rows`);
    }
    if (q.rows === 0 || g.rows === 0) throw shapeError(`${q.rows === 0 ? `--queries ${dims('queries')}` : `--gallery ${dims('gallery')}`} has no rows`);
    return { nq: q.rows, ng: g.rows };
  }
  const s = m.sims!;
  if (s.rows === 0 || s.cols === 0) throw shapeError(`--sims ${dims('sims')} is empty`);
  const want: [FileKey, number, string][] = [
    ['queryBankSims', s.cols, 'gallery items'],
    ['galleryBankSims', s.cols, 'gallery items'],
    ['v2tQueryBankSims', s.rows, 'test queries'],
    ['v2tGalleryBankSims', s.rows, 'test queries'],
  ];
  for (const [key, cols, what] of want) {
    const b = m[key];
    if (b && b.cols !== cols) throw shapeError(`${FILE_FLAGS[key]} ${dims(key)} must have one column per ${what.slice(0, -1)}: --sims ${dims('sims')} has ${cols} ${what}`);
    if (b && b.rows === 0) throw shapeError(`${FILE_FLAGS[key]} ${dims(key)} has no rows`);
  }
  const h = m.queryBankGalleryBankSims;
  if (h) {
    if (h.rows === 0 || h.cols === 0) throw shapeError(`--query-bank-gallery-bank-sims ${dims('queryBankGalleryBankSims')} is empty`);
    const q = m.queryBankSims;
    if (q && q.rows !== h.rows) throw shapeError(`--query-bank-gallery-bank-sims ${dims('queryBankGalleryBankSims')} must have one row per query-bank row: --query-bank-sims ${dims('queryBankSims')} has ${q.rows}`);
    const v = m.v2tQueryBankSims;
    if (v && v.rows !== h.cols) throw shapeError(`--query-bank-gallery-bank-sims ${dims('queryBankGalleryBankSims')} must have one column per gallery-bank row: --v2t-query-bank-sims ${dims('v2tQueryBankSims')} has ${v.rows}`);
  }
  return { nq: s.rows, ng: s.cols };
}

/** Ground truth in the t2v orientation: positives of each query among the gallery items. */
type Truth = { kind: 'diagonal' } | { kind: 'captions'; c: number } | { kind: 'explicit'; positives: number[][] };

function readGt(path: string, nq: number, ng: number): Truth {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new DbnormError('ERR_IO', `${path}: cannot read: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text); // a UTF-8 BOM is allowed
  } catch (e) {
    throw new DbnormError('ERR_FORMAT', `${path}: invalid ground truth: not JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (!Array.isArray(doc)) throw new DbnormError('ERR_FORMAT', `${path}: invalid ground truth: expected a JSON array (entry i = positives of query i)`);
  if (doc.length !== nq) throw shapeError(`${path}: ground truth has ${doc.length} entries, but there are ${nq} queries`);
  const positives = doc.map((entry: unknown, i) => {
    const list = Array.isArray(entry) ? (entry as unknown[]) : [entry];
    return list.map((v) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
        throw new DbnormError('ERR_FORMAT', `${path}: invalid ground truth: entry ${i} must be a gallery index or an array of them, got ${JSON.stringify(entry)}`);
      }
      if (v >= ng) throw shapeError(`${path}: entry ${i} names gallery item ${v}, but the gallery has ${ng} items`);
      return v;
    });
  });
  return { kind: 'explicit', positives };
}

function groundTruth(o: EvalFlags, nq: number, ng: number, source: string): Truth {
  if (o.gt !== undefined) return readGt(o.gt, nq, ng);
  if (o.captionsPerItem !== undefined) {
    const c = o.captionsPerItem;
    if (nq !== c * ng) throw shapeError(`--captions-per-item ${c}: ${source} has ${nq} queries and ${ng} gallery items, expected ${c} × ${ng} = ${c * ng} queries`);
    return c === 1 ? { kind: 'diagonal' } : { kind: 'captions', c };
  }
  if (nq === ng) return { kind: 'diagonal' };
  if (nq % ng === 0) {
    log(`dbnorm eval: ground truth: ${nq / ng} captions per item, item-major (${nq} queries, ${ng} items); pass --captions-per-item or --gt to override`);
    return { kind: 'captions', c: nq / ng };
  }
  throw shapeError(`${source}: ${nq} queries and ${ng} gallery items: the default ground truth (query i ↔ item i, or c = n_q/n_g captions per item) does not apply; pass --gt`);
}

/** Ground truth for the matrix whose rows are queries (t2v) or items (v2t, each item's positives = its captions). */
function truthFor(t: Truth, dir: Direction, nq: number, ng: number): GroundTruth {
  if (dir === 't2v') {
    if (t.kind === 'diagonal') return 'diagonal';
    if (t.kind === 'captions') return { captionsPerItem: t.c };
    return { positives: t.positives };
  }
  if (t.kind === 'diagonal') return 'diagonal';
  const items: number[][] = Array.from({ length: ng }, () => []);
  if (t.kind === 'captions') {
    for (let i = 0; i < nq; i++) items[Math.floor(i / t.c)]!.push(i);
  } else {
    t.positives.forEach((ps, i) => {
      for (const j of new Set(ps)) items[j]!.push(i);
    });
  }
  return { positives: items };
}

function transpose(m: Matrix): Matrix {
  const { rows, cols, data } = m;
  const out = new Float32Array(rows * cols);
  const B = 64;
  for (let i0 = 0; i0 < rows; i0 += B) {
    const i1 = Math.min(rows, i0 + B);
    for (let j0 = 0; j0 < cols; j0 += B) {
      const j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * rows + i] = data[i * cols + j]!;
    }
  }
  return Matrix.unchecked(out, cols, rows);
}

// ---------------------------------------------------------------------------------------------
// progress (stderr): a bar on a terminal, plain lines otherwise

interface Reporter {
  /** `fraction` ∈ [0, 1] of task `index` (0-based), currently in `phase`. */
  update(index: number, label: string, phase: string, fraction: number): void;
  finished(index: number, label: string, summary: string): void;
  stop(): void;
}

function reporter(total: number): Reporter {
  if (!process.stderr.isTTY) {
    return {
      update: () => {},
      finished: (index, label, summary) => log(`dbnorm eval: [${index + 1}/${total}] ${label}: ${summary}`),
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: 'dbnorm eval [{bar}] {percentage}% | {task}', hideCursor: true, clearOnComplete: true, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total * 100, 0, { task: 'starting' });
  return {
    update: (index, label, phase, fraction) => bar.update(Math.round((index + Math.min(1, Math.max(0, fraction))) * 100), { task: `${label}: ${phase}` }),
    finished: (index, label, summary) => bar.update((index + 1) * 100, { task: `${label}: ${summary}` }),
    stop: () => bar.stop(),
  };
}

// ---------------------------------------------------------------------------------------------
// running

/** The parameters a method actually uses (for the report). */
function paramsOf(r: ResolvedOptions): Record<string, number | string | null> {
  const rec = r as unknown as Record<string, number | null>;
  return Object.fromEntries(methodInfo(r.method)!.params.map((name) => [name, rec[name] ?? null]));
}

/** Rewrites the library's role names in an error message into the files that play the role. */
function withFiles(e: unknown, label: string, roles: Record<string, string | undefined>): unknown {
  if (!(e instanceof DbnormError)) return e;
  const m = /^(queries|gallery|queryBank|galleryBank|similarities|queryBankSims|galleryBankSims)\b(:?)/.exec(e.message);
  const file = m ? roles[m[1]!] : undefined;
  // "gallery: row 3 has zero norm" → "g.npy: row 3 has zero norm"; "gallery has dim 5" → "gallery g.npy has dim 5"
  const msg = file === undefined ? e.message : m![2] ? `${file}:${e.message.slice(m![0].length)}` : `${m![1]} ${file}${e.message.slice(m![0].length)}`;
  return new DbnormError(e.code, `${label}: ${msg}`);
}

async function runEval(o: EvalFlags): Promise<void> {
  if (o.tune !== undefined && o.html === undefined) throw new UsageError('--tune <file> adds tuning curves to the HTML report: pass --html <file> too');
  const p = plan(o);
  const keys = Object.keys(p.files) as FileKey[];
  const mats = await Promise.all(keys.map((k) => readNpy(p.files[k]!)));
  const m: Loaded = {};
  keys.forEach((k, i) => {
    m[k] = mats[i];
    log(`dbnorm eval: ${FILE_FLAGS[k]} ${p.files[k]}: ${mats[i]!.rows} × ${mats[i]!.cols}`);
  });
  const { nq, ng } = checkShapes(p, m);
  const source = p.mode === 'embeddings' ? `--queries ${p.files.queries} / --gallery ${p.files.gallery}` : `--sims ${p.files.sims}`;
  const truth = groundTruth(o, nq, ng, source);
  const metric: Metric = o.metric ?? 'cosine';

  // ranked items per direction: gallery items for t2v, test queries (captions) for v2t
  const hubK = new Map<Direction, number>();
  for (const dir of p.directions) {
    const n = dir === 't2v' ? ng : nq;
    hubK.set(dir, Math.min(o.hubnessK, n));
    if (o.hubnessK > n) log(`dbnorm eval: warning: --hubness-k ${o.hubnessK} exceeds the ${n} items ranked for ${dir}; using k = ${n}`);
  }
  const tasks = p.directions.flatMap((dir) => p.methods.map((method) => ({ dir, method })));
  const progress = reporter(tasks.length);
  const rows: ResultRow[] = [];
  const occurrences: Uint32Array[] = [];
  let simsT: Matrix | undefined;
  let crossT: Matrix | undefined;
  try {
    for (const [index, { dir, method }] of tasks.entries()) {
      const label = `${dir} ${method}`;
      const resolved = p.resolved.get(method)!;
      const bk = bankKeys(p.mode, dir, method);
      const cross = p.mode === 'similarities' && methodInfo(method)!.crossBankSims;
      const qb = methodInfo(method)!.queryBank ? m[bk.query] : undefined;
      const gb = methodInfo(method)!.galleryBank && !cross ? m[bk.gallery] : undefined;
      // dual-sn: query bank × gallery bank; for v2t the banks swap roles, so the matrix is transposed
      const hb = cross ? (dir === 't2v' ? m.queryBankGalleryBankSims : (crossT ??= transpose(m.queryBankGalleryBankSims!))) : undefined;
      // rows of the evaluated matrix: queries for t2v, gallery items for v2t (normalised on Sᵀ)
      let input: Matrix;
      let cols: number;
      const roles: Record<string, string | undefined> = {};
      if (p.mode === 'embeddings') {
        const [qs, gs] = dir === 't2v' ? (['queries', 'gallery'] as const) : (['gallery', 'queries'] as const);
        input = m[qs]!;
        cols = m[gs]!.rows;
        Object.assign(roles, { queries: p.files[qs], gallery: p.files[gs], queryBank: p.files[bk.query], galleryBank: p.files[bk.gallery] });
      } else {
        input = dir === 't2v' ? m.sims! : (simsT ??= transpose(m.sims!));
        cols = input.cols;
        Object.assign(roles, { similarities: p.files.sims, queryBankSims: p.files[bk.query], galleryBankSims: p.files[bk.gallery] });
      }
      const k = hubK.get(dir)!;
      const opts: MethodOptions = { method, ...resolvedToOptions(resolved) };
      const t0 = performance.now();
      const onFit = (x: { done: number; total: number }): void => progress.update(index, label, 'fit', 0.5 * (x.done / Math.max(1, x.total)));
      const onSearch = (x: { done: number; total: number }): void => progress.update(index, label, 'top-k', 0.5 + 0.3 * (x.done / Math.max(1, x.total)));
      let seconds: number;
      let norm: Normalizer;
      let top: Awaited<ReturnType<Normalizer['search']>>;
      try {
        progress.update(index, label, 'fit', 0);
        norm =
          p.mode === 'embeddings'
            ? await Normalizer.fit({ gallery: dir === 't2v' ? m.gallery! : m.queries!, queryBank: qb, galleryBank: gb, metric }, { ...opts, onProgress: onFit })
            : await Normalizer.fitSimilarities({ queryBankSims: qb, galleryBankSims: gb, queryBankGalleryBankSims: hb, galleryCount: cols }, { ...opts, onProgress: onFit });
        top = await norm.search(input, { k, onProgress: onSearch });
        seconds = (performance.now() - t0) / 1000;
      } catch (e) {
        throw withFiles(e, label, roles);
      }
      // ranks streamed over the gallery (the n_q × n_g score matrix is never built)
      const gt = truthFor(truth, dir, nq, ng);
      const onEval = (x: { done: number; total: number }): void => progress.update(index, label, 'metrics', 0.8 + 0.2 * (x.done / Math.max(1, x.total)));
      let metrics: Awaited<ReturnType<typeof evaluate>>;
      try {
        metrics = await norm.evaluate(input, gt, { ties: o.ties, ks: o.ks, qbnormCompat: o.qbnormCompat === true, onProgress: onEval });
      } catch (e) {
        throw withFiles(e, label, roles);
      }
      const hub = await hubness(top, { k, hubThreshold: o.hubThreshold, galleryCount: cols });
      const row: ResultRow = { method, params: paramsOf(resolved), metrics: metricsRecord(metrics), hubness: hubnessRecord(hub), seconds, direction: dir };
      rows.push(row);
      occurrences.push(hub.occurrence);
      if (o.occurrences) row.occurrence = Array.from(hub.occurrence);
      const r1 = row.metrics[`R${o.ks[0]}`];
      const skew = o.skewness === 'nonzero' ? row.hubness.skewnessNonzero : row.hubness.skewness;
      progress.finished(
        index,
        label,
        `R@${o.ks[0]} ${r1 == null ? '–' : r1.toFixed(1)}, N${k} skewness ${skew == null ? '–' : skew.toFixed(2)} (${seconds.toFixed(3)} s)`,
      );
    }
  } finally {
    progress.stop();
  }

  if (o.html !== undefined) {
    const tune = o.tune === undefined ? undefined : (JSON.parse(readFileSync(o.tune, 'utf8')) as TuneResult);
    const shapes = Object.fromEntries(keys.map((k) => [FILE_FLAGS[k], [m[k]!.rows, m[k]!.cols]]));
    const reportRows: ReportRow[] = rows.map((r, i) => ({ ...r, occurrence: occurrences[i]! }));
    const title = `dbnorm eval: ${keys.map((k) => `${FILE_FLAGS[k]} ${basename(p.files[k]!)}`).join(' ')}`;
    writeFileSync(o.html, report({ title, shapes, rows: reportRows, tune }));
    log(`dbnorm eval: wrote ${o.html}`);
  }
  if (o.json) {
    process.stdout.write(render(rows, 'json') + '\n');
    return;
  }
  const format = o.markdown ? 'markdown' : 'human';
  const shown = o.skewness === 'nonzero' ? rows.map((r) => ({ ...r, hubness: { ...r.hubness, skewness: r.hubness.skewnessNonzero ?? null } })) : rows;
  const notes = [
    `R@K in %; MdR/MnR 1-based (ties: ${o.ties}${o.qbnormCompat ? ', QB-Norm R@1' : ''}); N${rows[0]?.hubness.k ?? o.hubnessK} skew over ${o.skewness === 'nonzero' ? 'items with N_k > 0' : 'all items'}; time = fit + top-k search.`,
  ];
  process.stdout.write(render(shown, format) + '\n\n' + notes.join('\n') + '\n');
}

function resolvedToOptions(r: ResolvedOptions): Omit<MethodOptions, 'method'> {
  const rec = r as unknown as Record<string, number | null>;
  return Object.fromEntries(PARAM_INFO.filter((p) => rec[p.name] !== null && rec[p.name] !== undefined).map((p) => [p.name, rec[p.name]]));
}
