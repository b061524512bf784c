// Tuned vs default parameters on the shared real sets (../shared/realdata), computed end to end:
// `tune` sees only the paired banks; the tuned and the default parameters are then fitted on the
// banks against the test gallery, and R@1 (t2v, %) and N10 skewness are measured on the test split.
// Prints a markdown table (the README's) and, with --json, the raw numbers.
//   node benchmark/tune-realdata.mjs [--json] [--folds 3] [--seed 0]
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Normalizer, evaluate, hubness, readNpySync, tune } = require('../dist/index.js');

const here = path.dirname(fileURLToPath(import.meta.url));
const REAL = path.resolve(here, '../../shared/realdata');
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const folds = Number(arg('folds', '3'));
const seed = Number(arg('seed', '0'));
const METHODS = ['is', 'dis', 'dual-is', 'dual-dis', 'csls', 'nnn'];

function rows(m, idx) {
  const d = m.cols;
  const out = new Float32Array(idx.length * d);
  idx.forEach((r, i) => out.set(m.data.subarray(r * d, (r + 1) * d), i * d));
  return { data: out, rows: idx.length, cols: d };
}

/** Each set: `banks()` (what tune sees) and `test()` (loaded only after tuning). */
function sets() {
  const out = [];
  for (const lang of ['fr', 'es', 'ru', 'ar']) {
    const dir = path.join(REAL, 'crosslingual_fasttext/aligned', `en-${lang}`);
    out.push({
      name: `crosslingual en-${lang}`,
      banks: () => ({ queryBank: readNpySync(path.join(dir, 'query_bank.npy')), galleryBank: readNpySync(path.join(dir, 'gallery_bank.npy')), pairs: { captionsPerItem: 1 } }),
      test: () => ({ queries: readNpySync(path.join(dir, 'query_test.npy')), gallery: readNpySync(path.join(dir, 'gallery_test.npy')), gt: 'diagonal' }),
    });
  }
  {
    const dir = path.join(REAL, 'flickr8k_clip100');
    const index = () => JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8'));
    const captionsOf = (ix, images) => {
      const pos = new Map(images.map((im, i) => [im, i]));
      const caps = [];
      ix.caption_to_image.forEach((im, c) => {
        if (pos.has(im)) caps.push([c, pos.get(im)]);
      });
      return caps;
    };
    out.push({
      name: 'flickr8k_clip100',
      banks: () => {
        const ix = index();
        const caps = captionsOf(ix, ix.train_images);
        return {
          queryBank: rows(readNpySync(path.join(dir, 'text.npy')), caps.map((c) => c[0])),
          galleryBank: rows(readNpySync(path.join(dir, 'image.npy')), ix.train_images),
          pairs: { pairs: caps.map((c, i) => [i, c[1]]) },
        };
      },
      test: () => {
        const ix = index();
        const caps = captionsOf(ix, ix.test_images);
        return {
          queries: rows(readNpySync(path.join(dir, 'text.npy')), caps.map((c) => c[0])),
          gallery: rows(readNpySync(path.join(dir, 'image.npy')), ix.test_images),
          gt: { positives: caps.map((c) => [c[1]]) },
        };
      },
    });
  }
  {
    const dir = path.join(REAL, 'hm_products_clip1126');
    const split = () => JSON.parse(readFileSync(path.join(dir, 'split.json'), 'utf8'));
    out.push({
      name: 'hm_products_clip1126',
      banks: () => {
        const s = split();
        return { queryBank: rows(readNpySync(path.join(dir, 'text.npy')), s.train), galleryBank: rows(readNpySync(path.join(dir, 'image.npy')), s.train), pairs: { captionsPerItem: 1 } };
      },
      test: () => {
        const s = split();
        return { queries: rows(readNpySync(path.join(dir, 'text.npy')), s.test), gallery: rows(readNpySync(path.join(dir, 'image.npy')), s.test), gt: 'diagonal' };
      },
    });
  }
  return out;
}

async function measure(test, banks, method, params) {
  const norm = await Normalizer.fit({ gallery: test.gallery, queryBank: banks.queryBank, galleryBank: banks.galleryBank }, { method, ...params, leakGuard: 'off' });
  const scores = await norm.scores(test.queries);
  const m = await evaluate(scores, test.gt);
  const h = await hubness(scores, { k: 10 });
  return { R1: m.R1, skew: h.skewness };
}

export async function run() {
  if (!existsSync(REAL)) throw new Error(`no ${REAL}`);
  const rowsOut = [];
  for (const set of sets()) {
    const banks = set.banks();
    const t = await tune({ queryBank: banks.queryBank, galleryBank: banks.galleryBank }, { methods: METHODS, pairs: banks.pairs, metric: 'R@1', folds, seed });
    const test = set.test(); // loaded only now: the tuner above never saw it
    const raw = await measure(test, banks, 'none', {});
    for (const r of t.results) {
      const def = await measure(test, banks, r.method, {});
      const tuned = await measure(test, banks, r.method, r.params);
      rowsOut.push({ set: set.name, method: r.method, params: r.params, cvTuned: r.score, cvDefault: r.defaultScore, raw, def, tuned, best: t.best.method === r.method });
    }
  }
  return rowsOut;
}

const fmtP = (p) => Object.entries(p).map(([k, v]) => `${k} ${+Number(v).toPrecision(3)}`).join(', ');
const rowsOut = await run();
if (process.argv.includes('--json')) {
  console.log(JSON.stringify(rowsOut, null, 2));
} else {
  const lines = [
    `| set | method | tuned params | bank CV R@1 tuned / default | test R@1 none | test R@1 default | test R@1 tuned | N10 skew none | skew default | skew tuned |`,
    `|---|---|---|---|---|---|---|---|---|---|`,
  ];
  for (const r of rowsOut) {
    const b = r.best ? ' **(best)**' : '';
    lines.push(
      `| ${r.set} | ${r.method}${b} | ${fmtP(r.params)} | ${(100 * r.cvTuned).toFixed(1)} / ${(100 * r.cvDefault).toFixed(1)} | ${r.raw.R1.toFixed(1)} | ${r.def.R1.toFixed(1)} | ${r.tuned.R1.toFixed(1)} | ${r.raw.skew.toFixed(2)} | ${r.def.skew.toFixed(2)} | ${r.tuned.skew.toFixed(2)} |`,
    );
  }
  const d = rowsOut.map((r) => r.tuned.R1 - r.def.R1);
  const bestRows = rowsOut.filter((r) => r.best);
  const db = bestRows.map((r) => r.tuned.R1 - r.def.R1);
  lines.push(
    '',
    `Test R@1, tuned − default: better in ${d.filter((x) => x > 1e-9).length}, equal in ${d.filter((x) => Math.abs(x) <= 1e-9).length}, worse in ${d.filter((x) => x < -1e-9).length} of ${d.length} rows; mean ${(d.reduce((a, x) => a + x, 0) / d.length).toFixed(2)} points. ` +
      `The method tune picks (best): mean ${(db.reduce((a, x) => a + x, 0) / db.length).toFixed(2)} points over that method's defaults, test R@1 ${bestRows.map((r) => r.tuned.R1.toFixed(1)).join(' / ')} vs raw ${bestRows.map((r) => r.raw.R1.toFixed(1)).join(' / ')}.`,
  );
  console.log(lines.join('\n'));
}
