// `dbnorm fit --shard` and `dbnorm merge` end to end (child processes): a sharded fit merged from
// its part files equals the one-shot `dbnorm fit` (same top-10 lists and scores), in both modes;
// exit codes 0 / 2 (usage) / 1 (runtime, e.g. ERR_MERGE).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { Normalizer, writeNpySync } from '../dist/index.js';
import { randomMatrix } from './helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist', 'cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-cli-shard-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

const f = (name: string) => path.join(dir, name);
writeNpySync(f('g.npy'), randomMatrix(211, 12, 1));
writeNpySync(f('q.npy'), randomMatrix(307, 12, 2));
writeNpySync(f('b.npy'), randomMatrix(163, 12, 3));
writeNpySync(f('qs.npy'), randomMatrix(307, 211, 4));
writeNpySync(f('bs.npy'), randomMatrix(163, 211, 5));
const queries = randomMatrix(23, 12, 6);
const testSims = randomMatrix(23, 211, 7);

describe('dbnorm fit --shard / merge', () => {
  for (const [mode, inputs, extra, input] of [
    ['embeddings', ['--gallery', 'g.npy', '--query-bank', 'q.npy', '--gallery-bank', 'b.npy'], [], queries],
    ['similarities', ['--query-bank-sims', 'qs.npy', '--gallery-bank-sims', 'bs.npy'], ['--beta-query', '0.5', '--beta-gallery', '0.2'], testSims],
  ] as const) {
    it(`${mode}: 3 × 2 shards merged equal the one-shot fit`, () => {
      const tag = mode.slice(0, 3);
      for (let i = 0; i < 3; i++) {
        for (let j = 0; j < 2; j++) {
          const r = run(['fit', ...inputs, '--method', 'dual-dis', ...extra, '--out', `${tag}-part-${i}-${j}.dbn`, '--shard', `gallery=${i}/3,bank=${j}/2`]);
          expect(r.status, r.stderr).toBe(0);
        }
      }
      const parts = readdirSync(dir).filter((n) => n.startsWith(`${tag}-part-`));
      expect(parts).toHaveLength(6);
      expect(run(['merge', ...parts, '--out', `${tag}-merged.dbn`]).status).toBe(0);
      expect(run(['fit', ...inputs, '--method', 'dual-dis', ...extra, '--out', `${tag}-full.dbn`]).status).toBe(0);
      const [a, b] = [Normalizer.loadSync(f(`${tag}-merged.dbn`), { leakGuard: 'off' }), Normalizer.loadSync(f(`${tag}-full.dbn`), { leakGuard: 'off' })];
      const [x, y] = [a.searchSync(input, { k: 10 }), b.searchSync(input, { k: 10 })];
      expect(Array.from(x.indices)).toEqual(Array.from(y.indices));
      expect(Array.from(x.scores)).toEqual(Array.from(y.scores));
      // a missing part: runtime error (ERR_MERGE), exit 1
      const r = run(['merge', ...parts.slice(1), '--out', `${tag}-bad.dbn`]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/ERR_MERGE: .*missing/);
    }, 120_000); // ten child processes: a limit for loaded machines, not a timing target
  }

  it('usage errors exit 2', () => {
    expect(run(['merge', 'nope.dbn', '--out', 'x.dbn']).status).toBe(2);
    expect(run(['merge', '--out', 'x.dbn']).status).toBe(2);
    for (const spec of ['gallery=3/3', 'gallery=1', 'bank=0/0', 'gallery=0/2,gallery=1/2', 'rows=0/2']) {
      const r = run(['fit', '--gallery', 'g.npy', '--query-bank', 'q.npy', '--method', 'is', '--out', 'x.dbn', '--shard', spec]);
      expect(r.status, spec).toBe(2);
    }
    expect(run(['fit', '--gallery', 'g.npy', '--query-bank-sims', 'qs.npy', '--method', 'is', '--out', 'x.dbn']).status).toBe(2);
    // more shards than rows: a runtime parameter error
    expect(run(['fit', '--gallery', 'g.npy', '--query-bank', 'q.npy', '--method', 'is', '--out', 'x.dbn', '--shard', 'gallery=0/500']).status).toBe(1);
  }, 120_000);
});
