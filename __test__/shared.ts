// Test inputs from ../shared (real data, peer oracles), beside the repository. Absent locally, the
// tests that need them are skipped with a printed reason; under CI=true (CI always has ../shared)
// their absence is a failing test, so a run cannot pass while silently checking less.
import { existsSync } from 'node:fs';
import path from 'node:path';

import { describe, it } from 'vitest';

export const sharedRoot = path.resolve(__dirname, '..', '..', 'shared');

const ci = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';

/** The absolute path of `rel` under ../shared if it exists; otherwise `null` (and a failing test under CI). */
export function sharedPath(rel: string, what: string): string | null {
  const p = path.join(sharedRoot, rel);
  if (existsSync(p)) return p;
  if (ci) {
    describe(`../shared (${what})`, () => {
      it(`${rel} is present (CI=true: missing data is a failure, not a skip)`, () => {
        throw new Error(`${p} not found: ${what} need ../shared beside the repository`);
      });
    });
  } else {
    console.log(`skipping ${what}: ${p} not found (../shared is absent)`);
  }
  return null;
}
