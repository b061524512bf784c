// Every public entry point throws only DbnormError, for any input: ~58 000 calls with hostile
// values, in a child process (a crash fails the test) and a scratch directory (writeNpy may write).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));

it('hostile arguments to every entry point: coded DbnormErrors only', () => {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'dbnorm-any-input-'));
  try {
    const r = spawnSync(process.execPath, [path.join(here, 'fixtures/any-input.mjs')], { cwd, encoding: 'utf8', timeout: 300_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { total: number; untyped: string[] };
    expect(out.total).toBeGreaterThan(50_000);
    expect(out.untyped).toEqual([]);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}, 320_000);
