import { defineConfig } from 'vitest/config';

// Per-test and per-hook bounds are hang detectors, not timing targets: tests are sized by work and
// must pass on a loaded machine (2 cores shared by several jobs), where a round trip of a few
// hundred milliseconds can take many seconds. The 5 s default failed the suite under load.
export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
