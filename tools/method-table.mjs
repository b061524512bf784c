// The README's method tables, generated from the method registry (every registered method, no list
// here): what each method needs and how it can be served, and its real-data figures: t2v R@1 (%) and
// N10 skewness on the shared real sets (../shared/realdata), each method fitted with `{ method }`
// alone (its documented cosine defaults) on the sets' banks against the test gallery.
// Run by hand after `npm run build`; paste the output into README.md ("Methods").
//   node tools/method-table.mjs [--capabilities] [--realdata] [--json]   (default: both tables)
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Normalizer, evaluate, hubness, readNpySync } = require('../dist/index.js');
const { METHOD_INFO } = require('../dist/methods.js');

const here = path.dirname(fileURLToPath(import.meta.url));
const REAL = path.resolve(here, '../../shared/realdata');
const args = process.argv.slice(2);
const want = (f) => args.includes(f) || (!args.includes('--capabilities') && !args.includes('--realdata'));

/** The capability table: straight from the descriptors. */
export function capabilityTable() {
  const lines = [
    '| method | banks | inputs | served from a vector index | `addGallery` | sharded fit | parameters |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const m of METHOD_INFO) {
    const banks = m.queryBank ? (m.galleryBank ? 'query + gallery' : 'query') : '–';
    const inputs = m.embeddingsOnly ? 'embeddings only' : m.crossBankSims ? 'embeddings or similarities (then also query bank × gallery bank)' : 'embeddings or similarities';
    const serve = m.biasReducible ? `exactly (augmented vectors, +${m.augmentedColumns} column${m.augmentedColumns > 1 ? 's' : ''})` : 'no: re-rank candidates (`rerank`)';
    const add = m.galleryDependent ? 'refits (embeddings); similarity mode: `ERR_UNSUPPORTED`' : 'appends';
    lines.push(`| \`${m.id}\` | ${banks} | ${inputs} | ${serve} | ${add} | ${m.shardable ? 'yes' : 'no (`ERR_UNSUPPORTED`)'} | ${m.params.map((p) => `\`${p}\``).join(', ') || '–'} |`);
  }
  return lines.join('\n');
}

function rows(m, idx) {
  const d = m.cols;
  const out = new Float32Array(idx.length * d);
  idx.forEach((r, i) => out.set(m.data.subarray(r * d, (r + 1) * d), i * d));
  return { data: out, rows: idx.length, cols: d };
}

/** The shared real sets: test queries, gallery, ground truth, and the banks. */
function sets() {
  const out = [];
  for (const lang of ['fr', 'es', 'ru', 'ar']) {
    const dir = path.join(REAL, 'crosslingual_fasttext/aligned', `en-${lang}`);
    const r = (f) => readNpySync(path.join(dir, f));
    out.push({ name: `en-${lang}`, load: () => ({ queries: r('query_test.npy'), gallery: r('gallery_test.npy'), queryBank: r('query_bank.npy'), galleryBank: r('gallery_bank.npy'), gt: 'diagonal' }) });
  }
  {
    const dir = path.join(REAL, 'flickr8k_clip100');
    out.push({
      name: 'flickr8k',
      load: () => {
        const ix = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8'));
        const text = readNpySync(path.join(dir, 'text.npy'));
        const image = readNpySync(path.join(dir, 'image.npy'));
        const caps = (images) => {
          const pos = new Map(images.map((im, i) => [im, i]));
          const c = [];
          ix.caption_to_image.forEach((im, k) => pos.has(im) && c.push([k, pos.get(im)]));
          return c;
        };
        const test = caps(ix.test_images);
        const train = caps(ix.train_images);
        return {
          queries: rows(text, test.map((c) => c[0])),
          gallery: rows(image, ix.test_images),
          queryBank: rows(text, train.map((c) => c[0])),
          galleryBank: rows(image, ix.train_images),
          gt: { positives: test.map((c) => [c[1]]) },
        };
      },
    });
  }
  {
    const dir = path.join(REAL, 'hm_products_clip1126');
    out.push({
      name: 'hm-products',
      load: () => {
        const s = JSON.parse(readFileSync(path.join(dir, 'split.json'), 'utf8'));
        const text = readNpySync(path.join(dir, 'text.npy'));
        const image = readNpySync(path.join(dir, 'image.npy'));
        return { queries: rows(text, s.test), gallery: rows(image, s.test), queryBank: rows(text, s.train), galleryBank: rows(image, s.train), gt: 'diagonal' };
      },
    });
  }
  return out;
}

/** R@1 (%) and N10 skewness of every registered method with its defaults, per set. */
export async function realData() {
  if (!existsSync(REAL)) throw new Error(`no ${REAL} (the shared real sets)`);
  const out = [];
  for (const set of sets()) {
    const d = set.load();
    for (const m of METHOD_INFO) {
      try {
        const norm = await Normalizer.fit({ gallery: d.gallery, queryBank: d.queryBank, galleryBank: d.galleryBank }, { method: m.id, leakGuard: 'off' });
        const scores = await norm.scores(d.queries);
        const r = await evaluate(scores, d.gt);
        const h = await hubness(scores, { k: 10 });
        out.push({ set: set.name, method: m.id, R1: r.R1, skew: h.skewness });
      } catch (e) {
        out.push({ set: set.name, method: m.id, error: `${e.code ?? ''} ${e.message}`.trim() });
      }
    }
  }
  return out;
}

function realDataTable(res) {
  const names = [...new Set(res.map((r) => r.set))];
  const lines = [`| method | ${names.map((n) => `${n} R@1 / skew`).join(' | ')} |`, `|---|${names.map(() => '---').join('|')}|`];
  for (const m of METHOD_INFO) {
    const cells = names.map((n) => {
      const r = res.find((x) => x.set === n && x.method === m.id);
      return r.error ? `error (${r.error.split(':')[0]})` : `${r.R1.toFixed(1)} / ${r.skew.toFixed(2)}`;
    });
    lines.push(`| \`${m.id}\` | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

if (want('--capabilities') && !args.includes('--json')) console.log(capabilityTable() + '\n');
if (want('--realdata')) {
  const res = await realData();
  console.log(args.includes('--json') ? JSON.stringify(res, null, 2) : realDataTable(res));
}
