// dbnorm against the peers' own code (issue 13, "checked against the peers' own code").
//
// The fixtures in __test__/fixtures/peer-oracles/ were written by tools/peer-oracles/run.sh, which
// runs kiez 0.5.0, nnn-retrieval 1.0.1 and POT 0.9.7 in their own Python venvs (see
// tools/peer-oracles/README.md for versions, conventions and the peers' known deviations). Inputs:
// `synthetic` (seeded, committed in inputs-synthetic.json) and `real` (rows of
// ../shared/realdata/crosslingual_fasttext/aligned/en-fr, named by file and row range in each case,
// read here from ../shared: the shared data may not be copied into the repository).
//
// Wired oracles (fixture case → dbnorm method; keep this list current):
//   nnn.json   nnn/*                → 'nnn'      (NNNRanker; scores + whole ranking)
//   kiez.json  csls/nc10            → 'csls'     (kiez CSLS on cosine distance, cslsK = n_candidates)
//   nnn.json   dn/*                 → 'dn'       (DNRanker; λ, nnnK, nnnAlpha)           [needs method dn]
//   pot.json   sn/*, dual-sn/*      → 'sn', 'dual-sn' (POT sinkhorn_knopp potentials u)  [needs methods sn, dual-sn]
//   kiez.json  mp-normal/*          → 'mp'       (Gaussian)                               [needs method mp]
//   kiez.json  ls-standard, ls-nicdm → 'ls'     (local scaling, NICDM)                   [needs method ls]
//   kiez.json  dsl/*                → 'dsl'      (DisSimLocal, up to kiez's batch shift)  [needs method dsl]
// A block whose method is not in the registry yet is reported as a vitest `todo` naming the
// method (never a silent skip); once the method lands, its block runs.
//
// Tolerances: dbnorm computes inner products in float32 and returns float32 scores; the oracles are
// float64. Scores are compared with |got − want| ≤ ATOL + RTOL·|want| (ATOL = RTOL = 2e-5 unless a
// block says otherwise). Rankings: the oracle data are continuous and have no exact ties, so top
// lists are compared position by position, except that two ids may swap where the oracle's scores
// differ by less than the score tolerance (near-ties compared as sets).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { METHODS, Normalizer, readNpySync } from '../dist/index.js';
import { sharedPath } from './shared.js';

type Mat = { data: Float32Array; rows: number; cols: number };
type Inputs = { queries: Mat; gallery: Mat; queryBank: Mat; galleryBank: Mat };
type SliceRef = { file: string; start: number; rows: number };
type InputsRef = { kind: 'synthetic'; file: string } | { kind: 'shared-slice'; slice: Record<keyof Inputs, SliceRef> };
interface OracleCase {
  name: string;
  data: 'synthetic' | 'real';
  inputs: InputsRef;
}
interface OracleFile<C extends OracleCase> {
  peer: string;
  environment: { python: string; packages: Record<string, string> };
  cases: C[];
}

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, 'fixtures', 'peer-oracles');
const ATOL = 2e-5;
const RTOL = 2e-5;

function fixture<C extends OracleCase>(name: string): OracleFile<C> {
  return JSON.parse(readFileSync(path.join(fixtures, name), 'utf8')) as OracleFile<C>;
}

// ---- inputs -------------------------------------------------------------------------------------

const synthetic: Inputs = (() => {
  const doc = JSON.parse(readFileSync(path.join(fixtures, 'inputs-synthetic.json'), 'utf8')) as {
    matrices: Record<keyof Inputs, { rows: number; cols: number; data: number[] }>;
  };
  const m = (k: keyof Inputs): Mat => ({ rows: doc.matrices[k].rows, cols: doc.matrices[k].cols, data: Float32Array.from(doc.matrices[k].data) });
  return { queries: m('queries'), gallery: m('gallery'), queryBank: m('queryBank'), galleryBank: m('galleryBank') };
})();

const sharedRoot = sharedPath('realdata/crosslingual_fasttext/aligned/en-fr', 'peer-oracle real-data cases');
const realCache = new Map<string, Inputs>();

function realInputs(ref: Record<keyof Inputs, SliceRef>): Inputs {
  const key = JSON.stringify(ref);
  const hit = realCache.get(key);
  if (hit) return hit;
  const root = path.resolve(sharedRoot!, '..', '..', '..', '..');
  const slice = (s: SliceRef): Mat => {
    const m = readNpySync(path.join(root, s.file));
    expect(s.start + s.rows).toBeLessThanOrEqual(m.rows);
    return { rows: s.rows, cols: m.cols, data: m.data.slice(s.start * m.cols, (s.start + s.rows) * m.cols) };
  };
  const out = { queries: slice(ref.queries), gallery: slice(ref.gallery), queryBank: slice(ref.queryBank), galleryBank: slice(ref.galleryBank) };
  realCache.set(key, out);
  return out;
}

/** The cases of a fixture whose inputs are available (the real slice needs ../shared). */
function available<C extends OracleCase>(cases: C[]): C[] {
  return cases.filter((c) => c.data === 'synthetic' || sharedRoot !== null);
}

function inputsOf(c: OracleCase): Inputs {
  if (c.inputs.kind === 'synthetic') return synthetic;
  return realInputs(c.inputs.slice);
}

// ---- float64 references (independent of the library) --------------------------------------------

/** Cosine similarity, float64, rows of a × rows of b (row-major). */
function cosine(a: Mat, b: Mat): Float64Array {
  const d = a.cols;
  const norms = (m: Mat): Float64Array => {
    const out = new Float64Array(m.rows);
    for (let i = 0; i < m.rows; i++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += m.data[i * d + t]! ** 2;
      out[i] = Math.sqrt(s);
    }
    return out;
  };
  const na = norms(a);
  const nb = norms(b);
  const out = new Float64Array(a.rows * b.rows);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < b.rows; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += a.data[i * d + t]! * b.data[j * d + t]!;
      out[i * b.rows + j] = s / (na[i]! * nb[j]!);
    }
  return out;
}

function transpose(m: Float64Array, rows: number, cols: number): Mat {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) data[j * rows + i] = m[i * cols + j]!;
  return { rows: cols, cols: rows, data };
}

function f32(m: Float64Array, rows: number, cols: number): Mat {
  return { rows, cols, data: Float32Array.from(m) };
}

// ---- comparisons --------------------------------------------------------------------------------

/** The largest |got − want| / (atol + rtol·|want|): ≤ 1 means within tolerance. */
function worst(got: ArrayLike<number>, want: ArrayLike<number>, atol = ATOL, rtol = RTOL): { ratio: number; at: number; abs: number } {
  expect(got.length).toBe(want.length);
  let ratio = 0;
  let at = -1;
  let abs = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!);
    abs = Math.max(abs, e);
    const r = e / (atol + rtol * Math.abs(want[i]!));
    if (!(r <= ratio)) {
      ratio = r;
      at = i;
    }
  }
  return { ratio, at, abs };
}

function expectClose(label: string, got: ArrayLike<number>, want: ArrayLike<number>, atol = ATOL, rtol = RTOL): number {
  const w = worst(got, want, atol, rtol);
  if (!(w.ratio <= 1)) {
    throw new Error(`${label}: element ${w.at} got ${got[w.at]} want ${want[w.at]} (|err| ${Math.abs(got[w.at]! - want[w.at]!)} > ${atol} + ${rtol}·|want|)`);
  }
  return w.abs;
}

/**
 * Top lists (rows × k ids, best first) equal position by position, except that ids may swap where
 * the oracle's scores (`wantScores`, aligned with `want`) differ by less than the tolerance.
 */
function expectSameRanking(label: string, got: ArrayLike<number>, want: ArrayLike<number>, wantScores: ArrayLike<number>, rows: number, k: number): void {
  for (let i = 0; i < rows; i++) {
    for (let r = 0; r < k; r++) {
      const g = got[i * k + r]!;
      const w = want[i * k + r]!;
      if (g === w) continue;
      // g must be one of the oracle's ids whose score is within tolerance of position r's
      const ws = wantScores[i * k + r]!;
      let tie = false;
      for (let t = 0; t < k; t++) {
        if (want[i * k + t] === g && Math.abs(wantScores[i * k + t]! - ws) <= ATOL + RTOL * Math.abs(ws)) tie = true;
      }
      if (!tie) throw new Error(`${label}: query ${i} rank ${r}: got id ${g}, oracle ${w} (not a near-tie)`);
    }
  }
}

/** dbnorm's scores at the oracle's (query, candidate) pairs. */
function atCandidates(scores: Float32Array, nG: number, cand: number[], rows: number, c: number): Float64Array {
  const out = new Float64Array(rows * c);
  for (let i = 0; i < rows; i++) for (let t = 0; t < c; t++) out[i * c + t] = scores[i * nG + cand[i * c + t]!]!;
  return out;
}

/** Registers `body` when `method` is in the registry, else a visible todo. */
function whenMethod(method: string, title: string, body: () => void): void {
  if ((METHODS as readonly string[]).includes(method)) describe(title, body);
  else it.todo(`${title} (method '${method}' is not in the registry yet)`);
}

const measured: string[] = [];

// ---- nnn-retrieval: NNN and DN ------------------------------------------------------------------

interface NnnCase extends OracleCase {
  method: 'nnn' | 'dn';
  params: { nnnK: number; nnnAlpha: number; lambda?: number };
  queries: number;
  k: number;
  alignmentMeans: number[];
  indices: number[];
  scores: number[];
}

const nnnFile = fixture<NnnCase>('nnn.json');

describe('peer oracle files', () => {
  it('name their peers, versions and cases', () => {
    expect(nnnFile.peer).toBe('nnn-retrieval');
    expect(nnnFile.environment.packages['nnn-retrieval']).toBe('1.0.1');
    const kiez = fixture('kiez.json');
    expect(kiez.peer).toBe('kiez');
    expect(kiez.environment.packages.kiez).toBe('0.5.0');
    const pot = fixture('pot.json');
    expect(pot.peer).toBe('POT');
    for (const f of [nnnFile, kiez, pot]) {
      expect(f.cases.length).toBeGreaterThan(0);
      expect(f.cases.some((c) => c.data === 'synthetic')).toBe(true);
      expect(f.cases.some((c) => c.data === 'real')).toBe(true);
    }
  });
});

function nnnBlock(method: 'nnn' | 'dn'): void {
  for (const c of available(nnnFile.cases.filter((c) => c.method === method))) {
    it(`${c.name}: search and scores equal ${method === 'nnn' ? 'NNNRanker' : 'DNRanker'}.search`, () => {
      const x = inputsOf(c);
      const opts = method === 'nnn' ? { method, nnnK: c.params.nnnK, nnnAlpha: c.params.nnnAlpha } : { method, lambda: c.params.lambda, nnnK: c.params.nnnK, nnnAlpha: c.params.nnnAlpha };
      const data = method === 'nnn' ? { gallery: x.gallery, queryBank: x.queryBank } : { gallery: x.gallery, queryBank: x.queryBank, galleryBank: x.galleryBank };
      const norm = Normalizer.fitSync(data, { ...opts, leakGuard: 'off' } as Parameters<typeof Normalizer.fitSync>[1]);
      const top = norm.searchSync(x.queries, { k: c.k });
      expect(top.k).toBe(c.k);
      const err = expectClose(`${c.name} top scores`, top.scores, c.scores);
      expectSameRanking(`${c.name} ranking`, top.indices, c.indices, c.scores, c.queries, c.k);
      // every oracle (query, item) score, through scores()
      const all = norm.scoresSync(x.queries);
      const nG = x.gallery.rows;
      expectClose(`${c.name} scores()`, atCandidates(all.data, nG, c.indices, c.queries, c.k), c.scores);
      if (method === 'nnn') {
        // the per-item bias of the augmented gallery [g; −b] is α × the peer's alignment mean
        const aug = norm.augmentedGallery();
        expect(norm.augmentedInfo()).toMatchObject({ scale: 1, extra: 1, gated: false });
        const bias = Float64Array.from({ length: nG }, (_, j) => -aug.data[j * aug.cols + aug.cols - 1]!);
        expectClose(`${c.name} bias`, bias, c.alignmentMeans.map((m) => c.params.nnnAlpha * m));
      }
      measured.push(`${c.name}: max |Δscore| ${err.toExponential(2)}`);
    });
  }
}

describe('nnn-retrieval NNNRanker → nnn', () => nnnBlock('nnn'));
whenMethod('dn', 'nnn-retrieval DNRanker → dn', () => nnnBlock('dn'));

// ---- kiez: CSLS, mutual proximity, local scaling / NICDM, DisSimLocal ---------------------------

interface KiezCase extends OracleCase {
  reducer: 'mp-normal' | 'ls-standard' | 'ls-nicdm' | 'dsl' | 'csls';
  params: { n_candidates: number; n_candidates_effective: number; metric: string };
  dslShift: 'batch-min' | 'none' | null;
  queries: number;
  candidates: number;
  candidateIndices: number[];
  reducedDistances: number[];
  topIndices: number[];
}

const kiezFile = fixture<KiezCase>('kiez.json');

/**
 * One kiez reducer against a dbnorm method. `options` maps a case to dbnorm's options (`null`: the
 * case has no exact counterpart, named in `why`); `score` maps kiez's distance to dbnorm's score.
 * `upToConstant`: compare after removing one constant per case (DisSimLocal's batch shift).
 */
function kiezBlock(
  reducer: KiezCase['reducer'],
  method: string,
  options: (c: KiezCase, x: Inputs) => Record<string, unknown> | null,
  score: (d: number) => number,
  upToConstant = false,
): void {
  for (const c of available(kiezFile.cases.filter((c) => c.reducer === reducer))) {
    const x = inputsOf(c);
    const opts = options(c, x);
    if (opts === null) continue;
    it(`${c.name}: scores on kiez's candidates and rerank of its candidate lists`, () => {
      const norm = Normalizer.fitSync({ gallery: x.gallery, queryBank: x.queryBank }, { method, ...opts, leakGuard: 'off' } as Parameters<typeof Normalizer.fitSync>[1]);
      const rows = c.queries;
      const k = c.candidates;
      const want = Float64Array.from(c.reducedDistances, score);
      const got = atCandidates(norm.scoresSync(x.queries).data, x.gallery.rows, c.candidateIndices, rows, k);
      if (upToConstant) {
        // kiez (dis_sim.py) adds −min to every distance of the batch when the minimum is negative
        let shift = 0;
        for (let i = 0; i < got.length; i++) shift += got[i]! - want[i]!;
        shift /= got.length;
        if (c.dslShift === 'none') expect(Math.abs(shift)).toBeLessThan(ATOL);
        for (let i = 0; i < want.length; i++) want[i] += shift;
      }
      const err = expectClose(`${c.name} scores`, got, want);
      // rerank over the same candidate lists: kiez's sorted lists (ascending distance = descending score)
      const top = norm.rerankSync(x.queries, Uint32Array.from(c.candidateIndices));
      expect(top.k).toBe(k);
      const topWant = new Float64Array(rows * k);
      for (let i = 0; i < rows; i++) {
        for (let t = 0; t < k; t++) {
          const id = c.topIndices[i * k + t]!;
          const pos = c.candidateIndices.slice(i * k, (i + 1) * k).indexOf(id);
          topWant[i * k + t] = want[i * k + pos]!;
        }
      }
      expectSameRanking(`${c.name} rerank`, top.indices, c.topIndices, topWant, rows, k);
      expectClose(`${c.name} rerank scores`, top.scores, topWant);
      measured.push(`${c.name}: max |Δscore| ${err.toExponential(2)}`);
    });
  }
}

// CSLS: kiez's 2d − r_test − r_train on d = 1 − cos is −(2s − r_T − r_S), K = n_candidates on both sides.
describe('kiez CSLS → csls', () => kiezBlock('csls', 'csls', (c) => ({ cslsK: c.params.n_candidates }), (d) => -d));

whenMethod('mp', 'kiez MutualProximity(normal) → mp', () =>
  // exact when kiez's neighbourhoods are the whole gallery row and bank column
  kiezBlock('mp-normal', 'mp', (c, x) => (c.params.n_candidates >= Math.max(x.gallery.rows, x.queryBank.rows) ? {} : null), (d) => 1 - d),
);
whenMethod('ls', 'kiez LocalScaling(standard) → ls', () => kiezBlock('ls-standard', 'ls', (c) => ({ lsK: c.params.n_candidates }), (d) => -d));
whenMethod('ls', 'kiez LocalScaling(nicdm) → ls NICDM', () => kiezBlock('ls-nicdm', 'ls', (c) => ({ lsK: c.params.n_candidates, lsVariant: 1 }), (d) => -d));
whenMethod('dsl', 'kiez DisSimLocal → dsl', () => kiezBlock('dsl', 'dsl', (c) => ({ dslK: c.params.n_candidates }), (d) => -d, true));

// ---- POT: Sinkhorn (SN / DBSN) ------------------------------------------------------------------

interface PotCase extends OracleCase {
  method: 'sn' | 'dual-sn';
  params: { tau: number; iterations: number; stopThr: number };
  shape: [number, number];
  u: number[];
  v: number[];
  bias: number[];
}

const potFile = fixture<PotCase>('pot.json');

function potBlock(method: 'sn' | 'dual-sn'): void {
  for (const c of available(potFile.cases.filter((c) => c.method === method))) {
    it(`${c.name}: scores = cos − (−τ log u) with POT's u, embeddings and similarity mode`, () => {
      const x = inputsOf(c);
      const nQ = x.queries.rows;
      const nG = x.gallery.rows;
      expect(c.bias.length).toBe(nG);
      const s = cosine(x.queries, x.gallery);
      const want = new Float64Array(nQ * nG);
      for (let i = 0; i < nQ; i++) for (let j = 0; j < nG; j++) want[i * nG + j] = s[i * nG + j]! - c.bias[j]!;
      const opts = { method, tau: c.params.tau, iterations: c.params.iterations, tol: 0 } as Parameters<typeof Normalizer.fitSync>[1];
      const emb = Normalizer.fitSync(
        method === 'sn' ? { gallery: x.gallery, queryBank: x.queryBank } : { gallery: x.gallery, queryBank: x.queryBank, galleryBank: x.galleryBank },
        { ...opts, leakGuard: 'off' },
      );
      const err = expectClose(`${c.name} embeddings scores`, emb.scoresSync(x.queries).data, want);
      // similarity mode: P^q (query bank × gallery) and, for DBSN, P^qh (query bank × gallery bank)
      const pq = transpose(cosine(x.gallery, x.queryBank), nG, x.queryBank.rows);
      const sims =
        method === 'sn'
          ? { queryBankSims: pq }
          : { queryBankSims: pq, queryBankGalleryBankSims: f32(cosine(x.queryBank, x.galleryBank), x.queryBank.rows, x.galleryBank.rows) };
      const sim = Normalizer.fitSimilaritiesSync(sims as Parameters<typeof Normalizer.fitSimilaritiesSync>[0], opts);
      expectClose(`${c.name} similarity-mode scores`, sim.scoresSync(f32(s, nQ, nG)).data, want);
      measured.push(`${c.name}: max |Δscore| ${err.toExponential(2)}`);
    });
  }
}

whenMethod('sn', 'POT sinkhorn_knopp → sn', () => potBlock('sn'));
whenMethod('dual-sn', 'POT sinkhorn_knopp (stacked gallery bank) → dual-sn', () => potBlock('dual-sn'));

describe('measured errors', () => {
  it('prints the largest score difference per case', () => {
    // runs last (vitest runs tests in file order); a record for the report, not an assertion target
    console.log(`peer oracles, max |dbnorm − peer| per case:\n  ${measured.join('\n  ')}`);
    expect(measured.length).toBeGreaterThan(0);
  });
});
