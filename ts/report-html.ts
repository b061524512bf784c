/**
 * A self-contained HTML report of an evaluation: one file, no scripts, no network at view time.
 * Charts are inline SVG drawn here (a few dozen lines of scales and axes; no chart library is
 * needed for histograms, bars and lines, and inlining one would add ~200 kB to every report).
 *
 * Per direction: k-occurrence histograms (log count axis) of each method overlaid on the raw
 * ranking, the top hubs before / after (index or id and N_k), R@K bars and the metrics table; the
 * parameters and data shapes; and, when a {@link TuneResult} is given, the tuning curves.
 * @module
 */
import type { ResultRow } from './report.js';
import { TUNED_KEYS, type TuneResult } from './tune.js';
import type { Method } from './normalizer.js';

/** One evaluated method of one direction, with its per-item k-occurrence. */
export interface ReportRow extends Omit<ResultRow, 'occurrence'> {
  /** N_k of every ranked item (length n_items of the direction). */
  occurrence: ArrayLike<number>;
}

/** Input of {@link report}. */
export interface ReportInput {
  /** Page title. */
  title?: string;
  /** Data shapes, e.g. `{ queries: [25000, 512], gallery: [5000, 512] }` (or free text). */
  shapes?: Record<string, readonly number[] | string>;
  /** Every row (all methods, all directions); `direction` groups them (default `'t2v'`). */
  rows: ReportRow[];
  /** Item labels per direction (default: the item index). */
  ids?: Partial<Record<string, readonly string[]>>;
  /** A tuning result: adds the tuning curves (score vs β, or vs K / k). */
  tune?: TuneResult;
  /** Hubs listed per method (default 10). */
  topHubs?: number;
}

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#9c755f', '#ff9da7', '#bab0ac'];
const RAW = '#7f7f7f';

function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function num(v: number | null | undefined, digits: number): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

/** "Nice" tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(+v.toPrecision(12));
  return out;
}

interface Frame {
  w: number;
  h: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

const FRAME: Frame = { w: 520, h: 260, left: 56, right: 14, top: 28, bottom: 40 };

function svgOpen(title: string, f: Frame = FRAME, cls = 'chart'): string {
  return `<svg class="${cls}" xmlns="http://www.w3.org/2000/svg" width="${f.w}" height="${f.h}" viewBox="0 0 ${f.w} ${f.h}" role="img" aria-label="${esc(title)}"><text x="${f.left}" y="16" class="t">${esc(title)}</text>`;
}

function axes(f: Frame, xt: { v: number; x: number; label: string }[], yt: { y: number; label: string }[], xlabel: string, ylabel: string): string {
  const x0 = f.left;
  const y0 = f.h - f.bottom;
  let s = `<line x1="${x0}" y1="${y0}" x2="${f.w - f.right}" y2="${y0}" class="ax"/><line x1="${x0}" y1="${f.top}" x2="${x0}" y2="${y0}" class="ax"/>`;
  for (const t of xt) s += `<line x1="${t.x}" y1="${y0}" x2="${t.x}" y2="${y0 + 4}" class="ax"/><text x="${t.x}" y="${y0 + 15}" class="tk" text-anchor="middle">${esc(t.label)}</text>`;
  for (const t of yt) s += `<line x1="${x0 - 4}" y1="${t.y}" x2="${f.w - f.right}" y2="${t.y}" class="grid"/><text x="${x0 - 6}" y="${t.y + 3}" class="tk" text-anchor="end">${esc(t.label)}</text>`;
  s += `<text x="${(x0 + f.w - f.right) / 2}" y="${f.h - 6}" class="lb" text-anchor="middle">${esc(xlabel)}</text>`;
  s += `<text transform="translate(12 ${(f.top + y0) / 2}) rotate(-90)" class="lb" text-anchor="middle">${esc(ylabel)}</text>`;
  return s;
}

function legend(items: { label: string; color: string }[], f: Frame = FRAME): string {
  let x = f.w - f.right;
  let s = '';
  for (const it of [...items].reverse()) {
    const w = 14 + it.label.length * 6.2;
    x -= w + 8;
    s += `<rect x="${x}" y="7" width="10" height="10" fill="${it.color}"/><text x="${x + 14}" y="16" class="tk">${esc(it.label)}</text>`;
  }
  return s;
}

/** Histogram of N_k (bins of integer width) as step lines, log10(1 + count) axis. */
function occurrenceChart(title: string, series: { label: string; color: string; occ: ArrayLike<number>; dash?: boolean }[]): string {
  const f = FRAME;
  const maxN = Math.max(1, ...series.map((s) => Array.from(s.occ).reduce((a, b) => Math.max(a, b), 0)));
  const width = Math.max(1, Math.ceil((maxN + 1) / 40));
  const nb = Math.floor(maxN / width) + 1;
  const counts = series.map((s) => {
    const c = new Array<number>(nb).fill(0);
    for (let i = 0; i < s.occ.length; i++) c[Math.floor(s.occ[i]! / width)]!++;
    return c;
  });
  const maxC = Math.max(1, ...counts.flat());
  const ly = (c: number): number => Math.log10(1 + c);
  const X = (b: number): number => f.left + (b / nb) * (f.w - f.left - f.right);
  const Y = (c: number): number => f.h - f.bottom - (ly(c) / ly(maxC)) * (f.h - f.top - f.bottom);
  const xt = ticks(0, maxN + 1, 6).map((v) => ({ v, x: X(v / width), label: String(v) }));
  const yt = [0, 1, 10, 100, 1000, 10000, 100000].filter((c) => c <= maxC * 1.0001).map((c) => ({ y: Y(c), label: String(c) }));
  let s = svgOpen(title) + axes(f, xt, yt, `N_k (bin width ${width})`, 'items (log scale)');
  series.forEach((ser, i) => {
    let d = `M${X(0).toFixed(1)},${Y(0).toFixed(1)}`;
    counts[i]!.forEach((c, b) => {
      d += `L${X(b).toFixed(1)},${Y(c).toFixed(1)}L${X(b + 1).toFixed(1)},${Y(c).toFixed(1)}`;
    });
    d += `L${X(nb).toFixed(1)},${Y(0).toFixed(1)}`;
    s += `<path d="${d}" fill="${ser.color}" fill-opacity="${ser.dash ? 0.12 : 0.22}" stroke="${ser.color}" stroke-width="1.5"${ser.dash ? ' stroke-dasharray="4 3"' : ''}/>`;
  });
  return s + legend(series) + '</svg>';
}

/** Grouped bars: groups = K, one bar per method. */
function recallChart(title: string, rows: ReportRow[], colors: Map<string, string>): string {
  const f = FRAME;
  const ks = [...new Set(rows.flatMap((r) => Object.keys(r.metrics).filter((k) => /^R\d+$/.test(k))))];
  const vals = rows.flatMap((r) => ks.map((k) => r.metrics[k] ?? 0));
  const lo = 0;
  const hi = Math.min(100, Math.max(1, ...vals) * 1.05);
  const Y = (v: number): number => f.h - f.bottom - ((v - lo) / (hi - lo)) * (f.h - f.top - f.bottom);
  const gw = (f.w - f.left - f.right) / Math.max(1, ks.length);
  const bw = (gw * 0.8) / Math.max(1, rows.length);
  const xt = ks.map((k, i) => ({ v: i, x: f.left + gw * (i + 0.5), label: k.replace(/^R/, 'R@') }));
  const yt = ticks(lo, hi, 5).map((v) => ({ y: Y(v), label: String(v) }));
  let s = svgOpen(title) + axes(f, xt, yt, '', 'recall (%)');
  ks.forEach((k, i) => {
    rows.forEach((r, j) => {
      const v = r.metrics[k] ?? 0;
      const x = f.left + gw * i + gw * 0.1 + bw * j;
      s += `<rect class="bar" x="${x.toFixed(1)}" y="${Y(v).toFixed(1)}" width="${Math.max(1, bw - 1).toFixed(1)}" height="${Math.max(0.5, Y(lo) - Y(v)).toFixed(1)}" fill="${colors.get(r.method)}"><title>${esc(`${r.method} ${k.replace(/^R/, 'R@')} = ${num(v, 2)}`)}</title></rect>`;
    });
  });
  return s + legend(rows.map((r) => ({ label: r.method, color: colors.get(r.method)! }))) + '</svg>';
}

/** Tuning curve of one method: the best mean score at each value of its first parameter. */
function tuneChart(t: TuneResult, m: TuneResult['results'][number], color: string): string {
  const key = TUNED_KEYS[m.method as Method][0];
  if (key === undefined) return '';
  const best = new Map<number, number>();
  for (const tr of m.trials) {
    const v = tr.params[key];
    if (v === undefined) continue;
    best.set(v, Math.max(best.get(v) ?? -Infinity, tr.score));
  }
  const pts = [...best.entries()].sort((a, b) => a[0] - b[0]);
  if (pts.length === 0) return '';
  const f = FRAME;
  const log = key !== 'nnnAlpha';
  const tx = (v: number): number => (log ? Math.log10(v) : v);
  const xs = pts.map((p) => tx(p[0]));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) === Math.min(...xs) ? Math.min(...xs) + 1 : Math.max(...xs)];
  const ys = pts.map((p) => 100 * p[1]).concat(m.defaultScore === null ? [] : [100 * m.defaultScore]);
  const pad = Math.max(0.5, (Math.max(...ys) - Math.min(...ys)) * 0.1);
  const [y0, y1] = [Math.min(...ys) - pad, Math.max(...ys) + pad];
  const X = (v: number): number => f.left + ((tx(v) - x0) / (x1 - x0)) * (f.w - f.left - f.right);
  const Y = (v: number): number => f.h - f.bottom - ((100 * v - y0) / (y1 - y0)) * (f.h - f.top - f.bottom);
  const xt = log
    ? ticks(x0, x1, 5).filter((v) => Number.isInteger(v) || x1 - x0 < 2).map((v) => ({ v, x: X(10 ** v), label: String(+(10 ** v).toPrecision(2)) }))
    : ticks(x0, x1, 5).map((v) => ({ v, x: X(v), label: String(v) }));
  const yt = ticks(y0, y1, 5).map((v) => ({ y: Y(v / 100), label: v.toFixed(1) }));
  let s = svgOpen(`${m.method}: held-out ${t.metric} vs ${key}`) + axes(f, xt, yt, `${key}${log ? ' (log scale)' : ''}`, `${t.metric} (%)`);
  if (m.defaultScore !== null) {
    s += `<line x1="${f.left}" x2="${f.w - f.right}" y1="${Y(m.defaultScore).toFixed(1)}" y2="${Y(m.defaultScore).toFixed(1)}" stroke="${RAW}" stroke-dasharray="5 4"/>`;
  }
  s += `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ')}"/>`;
  for (const p of pts) s += `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${key} ${+p[0].toPrecision(4)}: ${(100 * p[1]).toFixed(2)}`)}</title></circle>`;
  const bv = m.params[key];
  if (bv !== undefined) s += `<circle cx="${X(bv).toFixed(1)}" cy="${Y(m.score).toFixed(1)}" r="6" fill="none" stroke="#000"/>`;
  return s + legend([{ label: 'best at value', color }, ...(m.defaultScore === null ? [] : [{ label: 'default', color: RAW }])]) + '</svg>';
}

function topIndices(occ: ArrayLike<number>, n: number): number[] {
  const idx = Array.from({ length: occ.length }, (_, i) => i);
  idx.sort((a, b) => occ[b]! - occ[a]! || a - b);
  return idx.slice(0, n);
}

const METRIC_COLS: [string, string, number][] = [
  ['MdR', 'MdR', 1],
  ['MnR', 'MnR', 1],
  ['mAP', 'mAP', 3],
];
const HUB_COLS: [string, string, number][] = [
  ['skewness', 'skew', 2],
  ['skewnessNonzero', 'skew (N>0)', 2],
  ['robinHood', 'Robin Hood', 3],
  ['gini', 'Gini', 3],
  ['atkinson', 'Atkinson', 3],
  ['antihubRate', 'antihubs', 3],
  ['hubOccurrence', 'hub occ.', 3],
  ['groupieRatio', 'max N/slots', 4],
  ['hubs', 'hubs', 0],
];

/**
 * Renders the report as one self-contained HTML string (inline CSS and SVG; no scripts, no
 * external resources).
 */
export function report(input: ReportInput): string {
  const rows = input.rows;
  const dirs = [...new Set(rows.map((r) => r.direction ?? 't2v'))];
  const methods = [...new Set(rows.map((r) => r.method))];
  const colors = new Map<string, string>(methods.map((m, i) => [m, m === 'none' ? RAW : PALETTE[i % PALETTE.length]!]));
  const nTop = input.topHubs ?? 10;
  const title = input.title ?? 'dbnorm report';
  const parts: string[] = [];
  parts.push(`<h1>${esc(title)}</h1>`);
  if (input.shapes && Object.keys(input.shapes).length > 0) {
    parts.push('<h2>Data</h2><table><tr><th>matrix</th><th>shape</th></tr>');
    for (const [k, v] of Object.entries(input.shapes)) parts.push(`<tr><td>${esc(k)}</td><td>${esc(Array.isArray(v) ? v.join(' × ') : v)}</td></tr>`);
    parts.push('</table>');
  }
  parts.push('<h2>Parameters</h2><table><tr><th>method</th><th>parameters</th></tr>');
  for (const m of methods) {
    const r = rows.find((x) => x.method === m)!;
    const p = Object.entries(r.params).map(([k, v]) => `${k} = ${v}`).join(', ') || '–';
    parts.push(`<tr><td><span class="sw" style="background:${colors.get(m)}"></span>${esc(m)}</td><td>${esc(p)}</td></tr>`);
  }
  parts.push('</table>');
  for (const dir of dirs) {
    const dr = rows.filter((r) => (r.direction ?? 't2v') === dir);
    const ids = input.ids?.[dir];
    const label = (i: number): string => (ids && ids[i] !== undefined ? `${ids[i]} (#${i})` : `#${i}`);
    const k = dr[0]?.hubness.k ?? 10;
    parts.push(`<section class="dir"><h2>Direction ${esc(dir)}</h2>`);
    // metrics table
    const ks = [...new Set(dr.flatMap((r) => Object.keys(r.metrics).filter((x) => /^R\d+$/.test(x))))];
    parts.push('<table class="metrics"><tr><th>method</th>' + ks.map((x) => `<th>${x.replace(/^R/, 'R@')}</th>`).join('') + METRIC_COLS.map((c) => `<th>${c[1]}</th>`).join('') + HUB_COLS.map((c) => `<th>${c[1]}</th>`).join('') + '</tr>');
    for (const r of dr) {
      parts.push(
        `<tr><td><span class="sw" style="background:${colors.get(r.method)}"></span>${esc(r.method)}</td>` +
          ks.map((x) => `<td>${num(r.metrics[x], 1)}</td>`).join('') +
          METRIC_COLS.map((c) => `<td>${num(r.metrics[c[0]], c[2])}</td>`).join('') +
          HUB_COLS.map((c) => `<td>${num(r.hubness[c[0]], c[2])}</td>`).join('') +
          '</tr>',
      );
    }
    parts.push(`</table><p class="note">R@K in %; hubness of the top-${k} lists (N${k}).</p>`);
    parts.push('<div class="charts">');
    parts.push(recallChart(`${dir}: R@K`, dr, colors));
    const raw = dr.find((r) => r.method === 'none');
    for (const r of dr) {
      if (r === raw) continue;
      const series = [...(raw ? [{ label: 'none', color: RAW, occ: raw.occurrence, dash: true }] : []), { label: r.method, color: colors.get(r.method)!, occ: r.occurrence }];
      parts.push(occurrenceChart(`${dir}: N${k} histogram, ${raw ? 'none vs ' : ''}${r.method}`, series));
    }
    if (!raw || dr.length === 1) {
      parts.push(occurrenceChart(`${dir}: N${k} histogram`, dr.map((r) => ({ label: r.method, color: colors.get(r.method)!, occ: r.occurrence }))));
    }
    parts.push('</div>');
    // top hubs
    const base = raw ?? dr[0]!;
    const others = dr.filter((r) => r !== base);
    parts.push(`<h3>Top hubs before (${esc(base.method)}) and their N${k} after each method</h3><table class="hubs"><tr><th>item</th><th>${esc(base.method)}</th>` + others.map((r) => `<th>${esc(r.method)}</th>`).join('') + '</tr>');
    for (const i of topIndices(base.occurrence, nTop)) {
      parts.push(`<tr><td>${esc(label(i))}</td><td>${base.occurrence[i]}</td>` + others.map((r) => `<td>${r.occurrence[i]}</td>`).join('') + '</tr>');
    }
    parts.push('</table>');
    if (others.length > 0) {
      parts.push(`<h3>Top hubs after each method (item: N${k})</h3><table class="hubs"><tr><th>method</th><th>hubs</th></tr>`);
      for (const r of others) {
        parts.push(`<tr><td>${esc(r.method)}</td><td>${topIndices(r.occurrence, nTop).map((i) => `${esc(label(i))}: ${r.occurrence[i]}`).join(', ')}</td></tr>`);
      }
      parts.push('</table>');
    }
    parts.push('</section>');
  }
  if (input.tune) {
    const t = input.tune;
    parts.push(`<section><h2>Tuning (${esc(t.metric)}, ${t.folds} fold(s) of ${t.holdoutItems} held-out bank items)</h2>`);
    parts.push('<table><tr><th>method</th><th>tuned parameters</th><th>held-out score</th><th>± spread</th><th>default</th></tr>');
    for (const m of t.results) {
      const p = Object.entries(m.params).map(([k, v]) => `${k} = ${+Number(v).toPrecision(4)}`).join(', ');
      parts.push(`<tr><td>${esc(m.method)}${m.method === t.best.method ? ' (best)' : ''}</td><td>${esc(p)}</td><td>${num(100 * m.score, 2)}</td><td>${num(100 * m.spread, 2)}</td><td>${m.defaultScore === null ? '–' : num(100 * m.defaultScore, 2)}</td></tr>`);
    }
    parts.push('</table><div class="charts">');
    t.results.forEach((m, i) => parts.push(tuneChart(t, m, colors.get(m.method) ?? PALETTE[i % PALETTE.length]!)));
    parts.push('</div></section>');
  }
  const css = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1120px}h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #eee;background:#fff}.t{font-size:13px;font-weight:600}.tk{font-size:11px;fill:#444}.lb{font-size:11px;fill:#222}
.ax{stroke:#333}.grid{stroke:#eee}.sw{display:inline-block;width:10px;height:10px;margin-right:6px}.note{color:#666;font-size:12px}`;
  return `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title><style>${css}</style></head><body>\n${parts.join('\n')}\n<p class="note">Generated by dbnorm. Self-contained: inline SVG, no scripts, no external resources.</p></body></html>\n`;
}
