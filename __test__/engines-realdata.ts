// The shared real sets as fit inputs (read from ../shared/realdata; never copied into the repo).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { readNpySync } from '../dist/index.js';

type M = { data: Float32Array; rows: number; cols: number };

export interface RealSet {
  name: string;
  gallery: M;
  queries: M;
  queryBank: M;
  galleryBank: M;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared', 'realdata');

/** Whether the real sets are present; under CI=true their absence is a failure, not a skip. */
export function haveRealData(): boolean {
  const ok = fs.existsSync(root);
  if (!ok && process.env.CI === 'true') throw new Error(`${root} is missing (CI provides ../shared/realdata)`);
  if (!ok) console.log(`skipping real-data engine tests: ${root} not found`);
  return ok;
}

function pick(m: M, rows: number[]): M {
  const data = new Float32Array(rows.length * m.cols);
  rows.forEach((r, i) => data.set(m.data.subarray(r * m.cols, (r + 1) * m.cols), i * m.cols));
  return { data, rows: rows.length, cols: m.cols };
}

export function realSets(): RealSet[] {
  const out: RealSet[] = [];
  const cl = path.join(root, 'crosslingual_fasttext', 'aligned', 'en-fr');
  const r = (f: string) => readNpySync(path.join(cl, f)) as M;
  out.push({ name: 'crosslingual en-fr', gallery: r('gallery_test.npy'), queries: r('query_test.npy'), queryBank: r('query_bank.npy'), galleryBank: r('gallery_bank.npy') });

  const fl = path.join(root, 'flickr8k_clip100');
  const idx = JSON.parse(fs.readFileSync(path.join(fl, 'index.json'), 'utf8')) as { caption_to_image: number[]; test_images: number[]; train_images: number[] };
  const image = readNpySync(path.join(fl, 'image.npy')) as M;
  const text = readNpySync(path.join(fl, 'text.npy')) as M;
  const test = new Set(idx.test_images);
  const capsOf = (inTest: boolean) => idx.caption_to_image.map((img, c) => [img, c] as const).filter(([img]) => test.has(img) === inTest).map(([, c]) => c);
  out.push({ name: 'flickr8k', gallery: pick(image, idx.test_images), queries: pick(text, capsOf(true)), queryBank: pick(text, capsOf(false)), galleryBank: pick(image, idx.train_images) });

  const hm = path.join(root, 'hm_products_clip1126');
  const split = JSON.parse(fs.readFileSync(path.join(hm, 'split.json'), 'utf8')) as { test: number[]; train: number[] };
  const img = readNpySync(path.join(hm, 'image.npy')) as M;
  const txt = readNpySync(path.join(hm, 'text.npy')) as M;
  out.push({ name: 'hm products', gallery: pick(img, split.test), queries: pick(txt, split.test), queryBank: pick(txt, split.train), galleryBank: pick(img, split.train) });
  return out;
}
