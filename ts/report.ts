/**
 * Result rows and their rendering (human table, markdown, JSON), shared by `dbnorm demo` and
 * `dbnorm eval`.
 * @module
 */
import type { Hubness, RetrievalMetrics } from './eval.js';

/** One method's results, as printed by the CLI and emitted in its `--json` output. */
export interface ResultRow {
  /** The method (`none` = raw scores). */
  method: string;
  /** The parameters the method ran with (β values, k, …). */
  params: Record<string, number | string | null>;
  /** Retrieval metrics: `R1`, `R5`, `R10` (percent), `MdR`, `MnR`, `mAP`, `n`. */
  metrics: Record<string, number | null>;
  /** Hubness of the top-k lists: `k`, `skewness`, `skewnessNonzero`, `robinHood`, `gini`, `atkinson` (ε = 0.5), `meanOccurrence`, `hubThreshold`, `antihubRate`, `hubOccurrence`, `groupieRatio`, `hubs` (count). */
  hubness: Record<string, number | null>;
  /** Per-item k-occurrence N_k (only with `dbnorm eval --occurrences`), n_items long. */
  occurrence?: number[];
  /** Wall time of fit + scoring, seconds. */
  seconds: number;
  /** Optional label (e.g. the direction). */
  direction?: string;
}

/** Plain-object form of retrieval metrics (drops the per-query ranks). */
export function metricsRecord(m: RetrievalMetrics): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const { k, value } of m.recall) out[`R${k}`] = Number.isNaN(value) ? null : value;
  out.MdR = m.MdR;
  out.MnR = m.MnR;
  out.mAP = m.mAP;
  out.n = m.n;
  return out;
}

/** Plain-object form of hubness (drops the per-item occurrence). */
export function hubnessRecord(h: Hubness): Record<string, number | null> {
  const nn = (v: number): number | null => (Number.isNaN(v) ? null : v);
  return {
    k: h.k,
    skewness: nn(h.skewness),
    skewnessNonzero: nn(h.skewnessNonzero),
    robinHood: nn(h.robinHood),
    gini: nn(h.gini),
    atkinson: nn(h.atkinson),
    meanOccurrence: nn(h.meanOccurrence),
    hubThreshold: nn(h.hubThreshold),
    antihubRate: nn(h.antihubRate),
    hubOccurrence: nn(h.hubOccurrence),
    groupieRatio: nn(h.groupieRatio),
    hubs: h.hubs.length,
  };
}

const fmt = (v: number | null | undefined, digits: number): string =>
  v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits);

function columns(rows: ResultRow[]): { head: string[]; cells: string[][] } {
  const recallKeys = [...new Set(rows.flatMap((r) => Object.keys(r.metrics).filter((k) => /^R\d+$/.test(k))))];
  const k = rows[0]?.hubness.k ?? 10;
  const withDir = rows.some((r) => r.direction !== undefined);
  const head = [
    ...(withDir ? ['dir'] : []),
    'method',
    ...recallKeys.map((x) => x.replace(/^R/, 'R@')),
    'MdR',
    'MnR',
    `N${k} skew`,
    'hubs',
    'time (s)',
  ];
  const cells = rows.map((r) => [
    ...(withDir ? [r.direction ?? ''] : []),
    r.method,
    ...recallKeys.map((x) => fmt(r.metrics[x], 1)),
    fmt(r.metrics.MdR, 1),
    fmt(r.metrics.MnR, 1),
    fmt(r.hubness.skewness, 2),
    fmt(r.hubness.hubs, 0),
    fmt(r.seconds, 3),
  ]);
  return { head, cells };
}

/** A fixed-width table for terminals. */
export function humanTable(rows: ResultRow[]): string {
  const { head, cells } = columns(rows);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => (i <= (head[0] === 'dir' ? 1 : 0) ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ');
  return [line(head), w.map((x) => '-'.repeat(x)).join('  '), ...cells.map(line)].join('\n');
}

/** A GitHub-flavoured markdown table. */
export function markdownTable(rows: ResultRow[]): string {
  const { head, cells } = columns(rows);
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...cells.map((c) => `| ${c.join(' | ')} |`)].join('\n');
}

/** The `--json` document: `{ "results": [ { method, params, metrics, hubness, seconds } ] }`. */
export function jsonReport(rows: ResultRow[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ ...extra, results: rows }, null, 2);
}

/** Renders rows in the requested format. */
export function render(rows: ResultRow[], format: 'human' | 'markdown' | 'json', extra: Record<string, unknown> = {}): string {
  if (format === 'json') return jsonReport(rows, extra);
  if (format === 'markdown') return markdownTable(rows);
  return humanTable(rows);
}
